"""The student editions (notebooks/student/, notebooks/zh-CN/student/) are generated from
their teacher editions by nbgrader, stay in step with them, and behave as a student meets
them: every stub fails its check with "not written yet", and nothing else goes wrong."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from lab_utils.student import LANGUAGES, edition_dir, teacher_notebooks

ROOT = Path(__file__).resolve().parents[1]
TEACHER = teacher_notebooks(ROOT)  # English; the Chinese teacher edition is built from it
STUDENT = edition_dir(ROOT)
STUDENTS = [p for lang in LANGUAGES for p in sorted(edition_dir(ROOT, lang).glob("*.ipynb"))]


def cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [{"type": c["cell_type"], "source": "".join(c["source"]),
             "nbgrader": c["metadata"].get("nbgrader"), "outputs": c.get("outputs", [])}
            for c in nb["cells"]]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_committed_student_edition_is_in_step_with_the_notebooks(tmp_path, lang):
    pytest.importorskip("nbgrader", reason="the teachers' tool: pip install -e '.[teacher]'")
    from lab_utils.student import generate

    fresh = generate(tmp_path, lang=lang)
    assert [p.name for p in fresh] == [p.name for p in TEACHER]
    for path in fresh:
        assert cells(path) == cells(edition_dir(ROOT, lang) / path.name), (
            f"the {lang} student edition of {path.name} is out of step with its teacher "
            "edition: run python -m lab_utils.student")


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.name)
def test_every_notebook_has_a_task_with_a_check_and_a_written_question(path):
    graded = [c for c in cells(path) if c["nbgrader"]]
    tasks = [c for c in graded if c["type"] == "code" and c["nbgrader"]["solution"]]
    checks = [c for c in graded if c["type"] == "code" and c["nbgrader"]["grade"]]
    questions = [c for c in graded if c["type"] == "markdown" and c["nbgrader"]["solution"]]
    assert tasks and len(checks) == len(tasks) and 1 <= len(questions) <= 2
    for task in tasks:
        assert "### BEGIN SOLUTION" in task["source"] and "### END SOLUTION" in task["source"]
        solution = task["source"].split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        assert "lab_utils" not in solution  # the code a student writes, in full
    for check in checks:  # one call after the student's cell
        assert check["source"].startswith("check_") and "\n" not in check["source"].strip()
    for q in questions:
        assert q["source"].startswith("**Question") and "### BEGIN SOLUTION" in q["source"]
        assert re.match(r"\*\*Question( \d)? \((\d) points?\)\.\*\*", q["source"])
        assert int(re.match(r".*?\((\d) point", q["source"])[1]) == q["nbgrader"]["points"]
        assert "**Rubric (" in q["source"].split("### BEGIN SOLUTION")[1]
    # Every task's heading shows its points: those of its check.
    headings = [int(m) for c in cells(path) if c["type"] == "markdown"
                for m in re.findall(r"^## Your task: .*\((\d) points?\)$", c["source"], re.M)]
    assert headings == [c["nbgrader"]["points"] for c in checks]


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_the_student_edition_has_stubs_no_answers_and_no_outputs(path):
    student = cells(path)
    assert all(not c["outputs"] for c in student)
    text = "\n".join(c["source"] for c in student)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    stubs = [c for c in student if c["nbgrader"] and c["nbgrader"]["solution"]]
    assert all("raise NotImplementedError()" in c["source"] for c in stubs if c["type"] == "code")
    from lab_utils.student import TEXT_STUB
    stub = TEXT_STUB["zh-CN" if "zh-CN" in path.parts else "en"]
    assert all(stub in c["source"] for c in stubs if c["type"] == "markdown")
    # The note says where committed outputs came from; a student's notebook has none.
    from lab_utils.translate import is_provenance_note
    assert not any(is_provenance_note(c["source"]) for c in student if c["type"] == "markdown")


def test_every_stub_fails_its_check_with_its_message():
    """The student editions' imports, stubs and checks, run as a student first meets them:
    each check says its function is "not written yet". (The rest of each notebook is the
    teacher edition's, which CI executes in full; the in-step tests keep them equal, and the
    Chinese student edition's code cells are the English one's, checked below, so they need not
    run again.) All six notebooks' cells run in one kernel, one notebook after the other."""
    from nbclient import NotebookClient

    combined, graded = nbformat.v4.new_notebook(), []
    for path in sorted(STUDENT.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        imports = next(c for c in nb.cells if c.cell_type == "code"
                       and c.source.lstrip().startswith(("import", "from")))
        imports.metadata["from"] = str(path.relative_to(ROOT))
        cells = [c for c in nb.cells if c.cell_type == "code" and "nbgrader" in c.metadata]
        for c in cells:
            c.metadata["from"] = str(path.relative_to(ROOT))
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


def test_the_chinese_student_edition_runs_the_english_code():
    for path in sorted(STUDENT.glob("*.ipynb")):
        zh = edition_dir(ROOT, "zh-CN") / path.name
        code = lambda p: [c for c in cells(p) if c["type"] == "code"]  # noqa: E731
        assert code(zh) == code(path), zh
