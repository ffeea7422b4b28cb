"""The Chinese edition is in step with the English one: every markdown cell translated from the
English text as it is now (its fingerprint), with the same numbers, code cells and outputs byte for
byte, and the committed Chinese notebooks exactly what a build gives."""
import json
from pathlib import Path

import pytest

from lab_utils import translate

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = translate.english_notebooks(ROOT)
CHINESE = ROOT / "notebooks" / translate.LANG


@pytest.mark.parametrize("notebook", ENGLISH, ids=lambda p: p.name)
def test_every_markdown_cell_has_an_up_to_date_translation_with_the_same_numbers(notebook):
    source = translate.load_source(translate.source_path(ROOT, notebook))
    assert translate.problems(notebook, source) == []


@pytest.mark.parametrize("notebook", ENGLISH, ids=lambda p: p.name)
def test_the_committed_chinese_notebook_is_what_a_build_gives(notebook):
    built = translate.build_one(notebook, translate.load_source(translate.source_path(ROOT,
                                                                                      notebook)))
    committed = json.loads((CHINESE / notebook.name).read_text(encoding="utf-8"))
    assert committed == built, (f"notebooks/{translate.LANG}/{notebook.name} is out of step: run "
                                "python -m lab_utils.translate")
    english = json.loads(notebook.read_text(encoding="utf-8"))
    for en, zh in zip(english["cells"], committed["cells"]):  # code and outputs: the English
        assert (en["id"], en["cell_type"], en["metadata"]) == (zh["id"], zh["cell_type"],
                                                               zh["metadata"])
        if en["cell_type"] == "code":
            assert en == zh
    assert "代码单元及其输出与英文版逐字相同" in "".join(committed["cells"][0]["source"])


def test_a_changed_english_cell_or_a_changed_number_stops_the_build(tmp_path):
    notebook = ENGLISH[0]
    source = translate.load_source(translate.source_path(ROOT, notebook))
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "markdown"
                and any(ch.isdigit() for ch in "".join(c["source"])))
    edited = tmp_path / notebook.name
    cell["source"] = ["".join(cell["source"]) + " One more sentence."]
    edited.write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(translate.TranslationError, match=f"{cell['id']}.*English text changed"):
        translate.build_one(edited, source)
    # The translation of an unchanged cell with a number changed is refused too.
    wrong = {k: dict(v) for k, v in source.items()}
    entry = wrong[cell["id"]]
    digit = next(ch for ch in entry["zh"] if ch.isdigit())
    entry["zh"] = entry["zh"].replace(digit, str((int(digit) + 1) % 10), 1)
    with pytest.raises(translate.TranslationError, match="numbers"):
        translate.build_one(notebook, wrong)
    # A markdown cell added in English with no translation is named.
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    nb["cells"].append({"cell_type": "markdown", "id": "new-cell", "metadata": {},
                        "source": ["A new paragraph."]})
    edited.write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(translate.TranslationError, match="new-cell.*no translation"):
        translate.build_one(edited, source)


def test_the_provenance_note_is_translated_with_its_command_and_values_kept():
    note = ("**Provenance of the outputs below.** Executed on CPU (x, 2 threads) on 2026-12-02 by"
            "\n\n```bash\npython -m lab_utils.publish notebooks/01_dataset.ipynb -p data_dir d\n```"
            "\n\nwhich injected these values:\n\n```python\ndata_dir = 'd'\n```\n\nRunning this "
            "notebook yourself uses the defaults in the cell above.")
    zh = translate.translate_note(note)
    assert zh.startswith("**以下输出的来源。** 运行设备：CPU (x, 2 threads)，日期 2026-12-02，运行命令：")
    assert "python -m lab_utils.publish notebooks/01_dataset.ipynb -p data_dir d" in zh
    assert "data_dir = 'd'" in zh and "Running" not in zh and "injected" not in zh
