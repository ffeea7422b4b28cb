"""Execute a notebook for committing: real outputs, a provenance note, no clutter.

    python -m lab_utils.publish notebooks/04_train.ipynb -p pretrained False \\
        -p data_dir data/cifar10-jpeg -p train_subset 5000

runs the notebook through papermill with the given values (`-f` a parameter file such as
a preset first, then `-p`, the last value winning, as on papermill's own command line) and
writes it back in place with its outputs, after the changes a reader on GitHub needs:
papermill's injected-parameters cell becomes a markdown note saying what was injected, on
which device, by which command (a committed injected cell would override the defaults for
the next reader); execution counts run 1, 2, 3, ... without the gap the removed cell
leaves; printed text keeps what a carriage return left visible (progress lines are
rewritten in place while a run trains, `lab_utils.progress`); and papermill's and
widgets' metadata are dropped.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .paths import resolve

NOTE_MARKER = "**Provenance of the outputs below.**"


def provenance_note(params: dict[str, Any], command: str, device: str) -> str:
    """The markdown that replaces papermill's injected cell in a committed notebook."""
    lines = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    return (f"{NOTE_MARKER} Executed on {device} on {datetime.date.today():%Y-%m-%d} by\n\n"
            f"```bash\n{command}\n```\n\n"
            + (f"which injected these values:\n\n```python\n{lines}\n```\n\n" if params else "")
            + "Running this notebook yourself uses the defaults in the cell above.")


def visible_text(text: str) -> str:
    """`text` as a terminal or JupyterLab shows it: on every line, what the last carriage
    return left."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _tidy_streams(outputs: list) -> list:
    """Consecutive prints to one stream merged, with `visible_text` of each."""
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream" and merged[-1].name == out.name):
            merged[-1].text += out.text
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out.text = visible_text(out.text)
    return merged


def tidy(nb: nbformat.NotebookNode, note: str) -> nbformat.NotebookNode:
    """Replace the injected cell (or an old provenance note) by `note`, renumber the
    execution counts, keep the visible text of printed output and drop papermill's and
    widgets' metadata, in place."""
    cells = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or (cell.cell_type == "markdown"
                                             and cell.source.startswith(NOTE_MARKER)):
            continue
        cells.append(cell)
        if "parameters" in tags:
            cells.append(nbformat.v4.new_markdown_cell(note))
    count = 0
    for cell in cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _tidy_streams(cell.outputs)
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = count
    nb.cells = cells
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nbformat.validator.normalize(nb)
    return nb


def publish(notebook: str | Path, params: dict[str, Any], preset: str | None = None,
            out: str | Path | None = None) -> Path:
    """Execute `notebook` with `params` (after the preset file `preset`, if any) through
    papermill from the repository root and write the tidied result to `out` (default:
    the notebook itself). Returns the path written."""
    import papermill as pm

    from .config import LAB
    from .device import describe_device, select_device

    values = {**(yaml.safe_load(Path(preset).read_text()) if preset else {}), **params}
    command = "python -m lab_utils.publish " + " ".join(
        [shlex.quote(str(notebook))] + (["-f", shlex.quote(str(preset))] if preset else [])
        + [f"-p {k} {shlex.quote(str(v))}" for k, v in params.items()])
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / "executed.ipynb"
        pm.execute_notebook(str(resolve(notebook)), str(executed), parameters=values,
                            cwd=str(resolve(".")), progress_bar=False)
        nb = nbformat.read(executed, as_version=4)
    # The device the notebook's `device` parameter picks on this machine (the kernel's).
    device = describe_device(select_device(values.get("device", LAB.device)))
    note = provenance_note(values, command, device)
    target = resolve(out or notebook)
    nbformat.write(tidy(nb, note), target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("-f", dest="preset", help="a parameter file applied first")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--out", help="where to write (default: the notebook itself)")
    args = parser.parse_args(argv)

    def value(text: str) -> Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    print(publish(args.notebook, {k: value(v) for k, v in args.p}, args.preset, args.out))


if __name__ == "__main__":
    sys.exit(main())
