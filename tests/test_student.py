"""The student edition (notebooks/student/) is generated from the teacher edition by
nbgrader, stays in step with it, and behaves as a student meets it: every stub fails its
check with "not written yet", and nothing else goes wrong."""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEACHER = sorted((ROOT / "notebooks").glob("*.ipynb"))
STUDENT = ROOT / "notebooks" / "student"


def cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [{"type": c["cell_type"], "source": "".join(c["source"]),
             "nbgrader": c["metadata"].get("nbgrader"), "outputs": c.get("outputs", [])}
            for c in nb["cells"]]


def test_the_committed_student_edition_is_in_step_with_the_notebooks(tmp_path):
    pytest.importorskip("nbgrader", reason="the teachers' tool: pip install -e '.[teacher]'")
    from lab_utils.student import generate

    fresh = generate(tmp_path)
    assert [p.name for p in fresh] == [p.name for p in TEACHER]
    for path in fresh:
        assert cells(path) == cells(STUDENT / path.name), (
            f"notebooks/student/{path.name} is out of step with notebooks/{path.name}: "
            "run python -m lab_utils.student")


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.name)
def test_every_notebook_has_a_task_with_a_check_and_a_written_question(path):
    graded = [c for c in cells(path) if c["nbgrader"]]
    tasks = [c for c in graded if c["type"] == "code" and c["nbgrader"]["solution"]]
    checks = [c for c in graded if c["type"] == "code" and c["nbgrader"]["grade"]]
    questions = [c for c in graded if c["type"] == "markdown" and c["nbgrader"]["solution"]]
    assert tasks and len(checks) == len(tasks) and 1 <= len(questions) <= 2
    for task in tasks:
        assert "### BEGIN SOLUTION" in task["source"] and "### END SOLUTION" in task["source"]
    for check in checks:  # one call after the student's cell
        assert check["source"].startswith("check_") and "\n" not in check["source"].strip()
    for q in questions:
        assert q["source"].startswith("**Question") and "### BEGIN SOLUTION" in q["source"]


@pytest.mark.parametrize("path", sorted(STUDENT.glob("*.ipynb")), ids=lambda p: p.name)
def test_the_student_edition_has_stubs_no_answers_and_no_outputs(path):
    student = cells(path)
    assert all(not c["outputs"] for c in student)
    text = "\n".join(c["source"] for c in student)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    stubs = [c for c in student if c["nbgrader"] and c["nbgrader"]["solution"]]
    assert all("raise NotImplementedError()" in c["source"] for c in stubs if c["type"] == "code")
    assert all("YOUR ANSWER HERE" in c["source"] for c in stubs if c["type"] == "markdown")


def test_every_stub_fails_its_check_with_its_message():
    """The student edition's imports, stubs and checks, run as a student first meets them:
    each check says its function is "not written yet". (The rest of each notebook is the
    teacher edition's, which CI executes in full; the in-step test above keeps them equal.)
    All six notebooks' cells run in one kernel, one notebook after the other."""
    from nbclient import NotebookClient

    combined, graded = nbformat.v4.new_notebook(), []
    for path in sorted(STUDENT.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        imports = next(c for c in nb.cells if c.cell_type == "code"
                       and c.source.lstrip().startswith(("import", "from")))
        imports.metadata["from"] = path.name
        cells = [c for c in nb.cells if c.cell_type == "code" and "nbgrader" in c.metadata]
        for c in cells:
            c.metadata["from"] = path.name
        combined.cells += [imports, *cells]
        graded += cells
    assert len(graded) >= 2 * 6
    NotebookClient(combined, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(STUDENT)}}).execute()
    for cell in combined.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        where = (cell.metadata["from"], cell.source)
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert errors and errors[0].ename == "CheckFailed" \
                and "not written yet" in errors[0].evalue, (where, errors)
        else:  # the imports, and defining a stubbed function or class, raise nothing
            assert not errors, (where, errors)
