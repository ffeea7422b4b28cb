"""The training notebook's parameters cell: every knob, the lab's defaults, names checked."""
import dataclasses
import json
import re
from pathlib import Path

import papermill as pm
import pytest

from lab_utils.config import LAB, LabConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "notebooks" / "04_train.ipynb"


def test_parameters_cell_holds_every_knob_with_the_labs_default():
    declared = pm.inspect_notebook(str(TRAIN))
    fields = {f.name for f in dataclasses.fields(LabConfig)}
    assert set(declared) == fields
    for name, p in declared.items():
        assert json.loads(json.dumps(eval(p["default"]))) == json.loads(
            json.dumps(getattr(LAB, name))), name


def test_every_notebook_has_one_parameters_cell_at_most_and_no_injected_cell():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        tags = [t for c in cells for t in c.get("metadata", {}).get("tags", [])]
        assert tags.count("parameters") <= 1, nb.name
        # A committed injected-parameters cell would override the lab's defaults on rerun.
        assert "injected-parameters" not in tags, nb.name


def test_papermill_with_an_unknown_parameter_fails(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter.*epoch"):
        pm.execute_notebook(str(TRAIN), str(tmp_path / "out.ipynb"), parameters={"epoch": 3},
                            cwd=str(ROOT), progress_bar=False)


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_ends_with_exercises_and_collapsed_answers(path):
    cells = json.loads(path.read_text())["cells"]
    last = "".join(cells[-1]["source"])
    exercises = last[last.index("## Exercises"):]
    n_questions = len(re.findall(r"^\d+\. ", exercises, flags=re.M))
    assert 3 <= n_questions <= 5, path.name
    assert exercises.count("<details>") == n_questions == exercises.count("</details>")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_read_on_github(path):
    nb = json.loads(path.read_text())
    text = path.read_text()
    assert "application/vnd.jupyter.widget" not in text, "widgets render as frozen bars on GitHub"
    # A student's run shows no warnings: nothing went to stderr when the outputs were made.
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert path.stat().st_size < 500_000, "keep committed notebooks under 500 KB"
    counts = [c["execution_count"] for c in nb["cells"]
              if c["cell_type"] == "code" and c.get("execution_count") is not None]
    assert counts == list(range(1, len(counts) + 1)), "execution counts jump"
    tagged = [i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", [])]
    if tagged and counts:  # executed with parameters: the note says what was injected, where
        note = "".join(nb["cells"][tagged[0] + 1]["source"])
        assert note.startswith("**Provenance of the outputs below.** Executed on ")


def test_publish_replaces_the_injected_cell_and_renumbers(tmp_path):
    import nbformat

    from lab_utils.publish import NOTE_MARKER, tidy

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1", execution_count=1)
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("# Parameters\nx = 2", execution_count=2)
    injected.metadata["tags"] = ["injected-parameters"]
    body = nbformat.v4.new_code_cell("x", execution_count=3, outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)])
    nb.cells = [params, injected, body]
    nb.metadata["widgets"] = {"state": {}}
    tidy(nb, f"{NOTE_MARKER} test")
    assert [c.cell_type for c in nb.cells] == ["code", "markdown", "code"]
    assert nb.cells[1].source == f"{NOTE_MARKER} test"
    assert [nb.cells[0].execution_count, nb.cells[2].execution_count] == [1, 2]
    assert nb.cells[2].outputs[0]["execution_count"] == 2 and "widgets" not in nb.metadata
    tidy(nb, f"{NOTE_MARKER} again")  # publishing twice keeps one note
    assert sum(c.source.startswith(NOTE_MARKER) for c in nb.cells) == 1


def test_the_loop_in_notebook_04_is_rendered_from_the_library():
    sources = ["".join(c["source"]) for c in json.loads(TRAIN.read_text())["cells"]
               if c["cell_type"] == "code"]
    assert any("show_source(train_epoch)" in src for src in sources)
    assert "show_source(evaluate)" in sources
    # The only loop written out is the student's own, between the solution markers.
    outside = [re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "", s, flags=re.S) for s in sources]
    assert not any("def train_epoch" in s or "optimizer.zero_grad()" in s for s in outside)


def test_every_setup_cell_is_the_same_and_a_failed_clone_is_an_error():
    setups = {"".join(json.loads(nb.read_text())["cells"][2]["source"]) for nb in NOTEBOOKS}
    assert len(setups) == 1
    setup, = setups
    assert "already cloned" not in setup and "raise RuntimeError(f\"git clone {REPO_URL} failed" in setup


def _edited_training_notebook(tmp_path: Path, edits: dict[str, str]) -> Path:
    """Notebook 04's setup, parameters cell (edited as a student would: `edits` replaces
    lines by name) and its config cell, nothing else: what the parameters rule sees."""
    import nbformat

    nb = nbformat.read(TRAIN, as_version=4)
    keep = []
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            lines = cell.source.splitlines()
            for name, line in edits.items():
                lines = [line if re.match(rf"{name} = ", s) else s for s in lines]
            cell.source = "\n".join(lines)
            keep.append(cell)
        elif cell.cell_type == "code" and "notebook_parameters" in cell.source:  # imports, config
            keep.append(cell)
    keep.append(nbformat.v4.new_code_cell(
        "print('TRAINS', config.preset, config.epochs, config.lr, config.dropout, config.seed)"))
    nb.cells = keep
    path = tmp_path / "edited.ipynb"
    nbformat.write(nb, path)
    return path


def _trains(executed: Path) -> str:
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return re.search(r"TRAINS (.*)", text).group(1)


@pytest.mark.parametrize("params", [{}, {"seed": 1}], ids=["by hand", "papermill -p seed 1"])
def test_an_edited_parameters_cell_means_what_it_says(tmp_path, monkeypatch, params):
    # Outside CI scale: the config as the student's run would get it (nothing is trained).
    monkeypatch.delenv("LAB_SMOKE")
    nb = _edited_training_notebook(tmp_path, {"preset": 'preset = "fast"',
                                              "dropout": "dropout = 0.3"})
    pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters=params, cwd=str(ROOT),
                        progress_bar=False)
    from lab_utils.config import load_preset
    fast = load_preset("fast")
    assert _trains(tmp_path / "out.ipynb") == \
        f"fast {fast['epochs']} {fast['lr']} 0.3 {params.get('seed', 0)}"


def test_publish_gives_the_notebook_a_preset_file_and_values_by_the_same_rule(tmp_path,
                                                                              monkeypatch):
    """`python -m lab_utils.publish NB -f fast.yaml -p dropout 0.3`: the preset file's values,
    then -p, reach the parameters rule as papermill's do."""
    from lab_utils.config import load_preset, preset_path
    from lab_utils.publish import publish

    monkeypatch.delenv("LAB_SMOKE")
    nb = _edited_training_notebook(tmp_path, {})
    out = publish(nb, {"dropout": 0.3}, preset=str(preset_path("fast")), out=tmp_path / "p.ipynb")
    fast = load_preset("fast")
    assert _trains(out) == f"fast {fast['epochs']} {fast['lr']} 0.3 0"
