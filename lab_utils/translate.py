"""The Chinese edition: built from the English notebooks and a translation source, never by hand.

    python -m lab_utils.translate            # writes notebooks/zh-CN/NN_*.ipynb
    python -m lab_utils.translate --todo     # the English text of every cell still to translate

The translation source is `notebooks/zh-CN/translations/NN_*.yaml`: for every markdown cell of
the English notebook, by its cell id, the Chinese text (`zh`) and a fingerprint of the English
text it translates (`en`). A build copies the English notebook cell for cell: code cells and
their outputs byte for byte (identifiers, check names and printed messages stay English), every
markdown cell replaced by its translation, the provenance note that `lab_utils.publish` writes
translated phrase by phrase. It refuses, naming the cells, when a markdown cell has no
translation or its English text changed since it was translated (the fingerprint differs), and
when a translation's numbers differ from the English cell's: nothing stale is ever built.
`tests/test_translate.py` checks the same, and that the committed Chinese notebooks are what a
build gives; `python -m lab_utils.student` then makes the Chinese student edition.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import yaml

from .paths import repo_root
from .publish import NOTE_MARKER

LANG = "zh-CN"
NOTE_MARKER_ZH = "**以下输出的来源。**"
# The publish note's fixed phrases, in the order they appear (publish.provenance_note).
NOTE_PHRASES = [
    (NOTE_MARKER + " Executed on ", NOTE_MARKER_ZH + " 运行设备："),
    (" by\n\n```bash", "，运行命令：\n\n```bash"),
    ("which injected these values:", "注入了这些值："),
    ("Running this notebook yourself uses the defaults in the cell above.",
     "自己运行这个 notebook 时，使用的是上面单元中的默认值。"),
]
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def is_provenance_note(text: str) -> bool:
    """Whether a markdown cell's text is the publish note, in English or in its translation:
    the student editions drop it, since a student's notebook has no outputs yet."""
    return text.startswith(NOTE_MARKER) or text.startswith(NOTE_MARKER_ZH)


class TranslationError(ValueError):
    """A Chinese notebook cannot be built: the message lists the cells to translate again."""


def fingerprint(text: str) -> str:
    """The English text's fingerprint kept beside its translation (12 hex digits of SHA-1)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def numbers(text: str) -> list[str]:
    """The numbers a text quotes, in sorted order (what a translation must keep)."""
    return sorted(NUMBER.findall(text))


def source_path(root: Path, notebook: Path) -> Path:
    return root / "notebooks" / LANG / "translations" / f"{notebook.stem}.yaml"


def load_source(path: Path) -> dict:
    # BaseLoader: every key and value a string (a cell id such as 11455396 is not a number)
    return (yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}) \
        if path.is_file() else {}


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def translate_note(text: str) -> str:
    """The provenance note of `lab_utils.publish` in Chinese (commands and values as they are)."""
    for en, zh in NOTE_PHRASES:
        text = text.replace(en, zh)
    return re.sub(r" on (\d{4}-\d{2}-\d{2})，运行命令", r"，日期 \1，运行命令", text)


def problems(notebook: Path, source: dict) -> list[str]:
    """What stops `notebook` from being built with the translations `source`: each markdown
    cell without a translation, with a changed English text, or with other numbers."""
    found = []
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "markdown" or _text(cell).startswith(NOTE_MARKER):
            continue
        entry, text = source.get(cell["id"]), _text(cell)
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        where = f"{notebook.name} cell {cell['id']} ({first!r})"
        if not entry or not entry.get("zh"):
            found.append(f"{where}: no translation")
        elif entry.get("en") != fingerprint(text):
            found.append(f"{where}: the English text changed since it was translated")
        elif numbers(entry["zh"]) != numbers(text):
            found.append(f"{where}: the translation's numbers {numbers(entry['zh'])} differ from "
                         f"the English {numbers(text)}")
    return found


def build_one(notebook: Path, source: dict) -> dict:
    """The Chinese notebook of `notebook` (raises `TranslationError` on any problem)."""
    found = problems(notebook, source)
    if found:
        raise TranslationError("cannot build the Chinese edition of " + notebook.name + ":\n  "
                               + "\n  ".join(found) + "\nTranslate these cells in "
                               f"notebooks/{LANG}/translations/{notebook.stem}.yaml (python -m "
                               "lab_utils.translate --todo prints their English text).")
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    out = copy.deepcopy(nb)
    for cell in out["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = _text(cell)
        cell["source"] = _lines(translate_note(text) if text.startswith(NOTE_MARKER)
                                else source[cell["id"]]["zh"].rstrip("\n"))
    return out


def english_notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("0*.ipynb"))


def build(root: Path | None = None) -> list[Path]:
    """Write every Chinese notebook; returns the paths written."""
    root = root or repo_root()
    written = []
    for notebook in english_notebooks(root):
        out = build_one(notebook, load_source(source_path(root, notebook)))
        path = root / "notebooks" / LANG / notebook.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def todo(root: Path | None = None) -> str:
    """The English text of every markdown cell that has no up-to-date translation, as YAML
    entries ready to fill in (`zh` left empty)."""
    root = root or repo_root()
    parts = []
    for notebook in english_notebooks(root):
        source = load_source(source_path(root, notebook))
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            text = _text(cell)
            if cell["cell_type"] != "markdown" or text.startswith(NOTE_MARKER):
                continue
            entry = source.get(cell["id"]) or {}
            if entry.get("en") != fingerprint(text) or not entry.get("zh"):
                parts.append(f"# {notebook.name}\n{cell['id']}:\n  en: {fingerprint(text)}\n"
                             "  zh: |\n" + "".join(f"    # {line}\n" for line in
                                                   text.splitlines()))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--todo", action="store_true",
                        help="print the cells still to translate, and build nothing")
    args = parser.parse_args(argv)
    if args.todo:
        print(todo() or "every markdown cell has an up-to-date translation")
        return
    try:
        for path in build():
            print(f"wrote {path.relative_to(repo_root())}")
    except TranslationError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
