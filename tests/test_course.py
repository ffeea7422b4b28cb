"""A class's whole nbgrader cycle on generated data: the course folder that
`python -m lab_utils.course` sets up, the student edition generated there, three submissions
(right, two tasks wrong, blank), autograding, and the scores. Notebook 03 stands in for the six,
kept to what the cycle needs so that it runs in seconds: its imports, its parameters, the cell
that reads committed results (which the course folder must provide), and its four tasks, checks
and questions; the cycle is the same for every notebook, nbval runs every notebook in full, and
test_checks.py tests every check on its reference solution and typical mistakes."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab_utils.course import results_read, set_up
from lab_utils.student import ASSIGNMENT, teacher_notebooks

ROOT = Path(__file__).resolve().parents[1]
KEPT = "03_model.ipynb"


def slimmed(path: Path) -> None:
    """Keep a notebook's first import cell, its parameters cell, its cells that read
    results/, and its graded cells (nbgrader's metadata), in their order."""
    nb = nbformat.read(path, as_version=4)
    first_import = next(i for i, c in enumerate(nb.cells)
                        if c.cell_type == "code" and "from lab_utils" in c.source)
    nb.cells = [c for i, c in enumerate(nb.cells) if i == first_import
                or "nbgrader" in c.metadata or "parameters" in c.metadata.get("tags", [])
                or (c.cell_type == "code" and "results/" in c.source)]
    for c in nb.cells:  # the results cell's figure: not what the cycle tests
        c.source = "\n".join(line for line in c.source.splitlines() if "plot_runs" not in line)
    nbformat.write(nb, path)


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join([str(exe), os.environ.get("PATH", "")])}
    done = subprocess.run([str(exe / "nbgrader"), *args, "--log-level=WARN"], cwd=course,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def solve_wrongly(nb: nbformat.NotebookNode) -> None:
    """Two typical mistakes: a residual block without its shortcut, BatchNorm's running
    variance updated with the biased variance."""
    broken = 0
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "residual_block":
            cell.source = cell.source.replace("return torch.relu(f + shortcut)",
                                              "return torch.relu(f)")
            broken += 1
        if grade_id == "batchnorm":
            cell.source = cell.source.replace("x.var(dim=(0, 2, 3), unbiased=True)",
                                              "x.var(dim=(0, 2, 3), unbiased=False)")
            broken += 1
    assert broken == 2


def test_the_course_folder_holds_the_config_the_assignment_and_the_results(tmp_path):
    course = set_up(tmp_path / "course")
    assert sorted(p.name for p in (course / "source" / ASSIGNMENT).glob("*.ipynb")) == [
        p.name for p in teacher_notebooks(ROOT)]
    config = (course / "nbgrader_config.py").read_text()
    assert "c.ExecutePreprocessor.timeout = 120" in config and "'runs'" in config
    # Every results/ folder a notebook reads is there, so the notebooks run in the course.
    read = results_read(teacher_notebooks(ROOT))
    assert read and all((course / "results" / name).exists() for name in read)
    assert not list((course / "results").rglob("*.pt"))


@pytest.mark.skipif(shutil.which("nbgrader", path=str(Path(sys.executable).parent)) is None,
                    reason="the teachers' tool: pip install -e '.[teacher]'")
def test_a_class_is_graded_full_full_minus_two_tasks_and_zero(tmp_path):
    from nbgrader.api import Gradebook

    course = set_up(tmp_path / "course")
    source = course / "source" / ASSIGNMENT
    for nb in source.glob("*.ipynb"):
        if nb.name != KEPT:
            nb.unlink()
    slimmed(source / KEPT)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    released = course / "release" / ASSIGNMENT
    for student in ("right", "wrong", "blank"):
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        if student == "blank":  # the student edition as released
            shutil.copy(released / KEPT, folder / KEPT)
        else:
            nb = nbformat.read(source / KEPT, as_version=4)  # the reference solutions
            if student == "wrong":
                solve_wrongly(nb)
            nbformat.write(nb, folder / KEPT)
        (folder / "runs").mkdir()  # what a student's own training leaves: never copied on
        (folder / "runs" / "checkpoint.pt").write_bytes(b"x" * 1000)
    nbgrader(course, "autograde", ASSIGNMENT, "--force")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        code = {s: sum(g.score for nb in gb.find_submission(ASSIGNMENT, s).notebooks
                       for g in nb.grades if g.auto_score is not None)
                for s in ("right", "wrong", "blank")}
        full = sum(c.max_score for nb in gb.find_assignment(ASSIGNMENT).notebooks
                   for c in nb.grade_cells if not c.cell_type == "markdown")
        manual = sum(g.needs_manual_grade for nb in gb.find_submission(ASSIGNMENT, "right")
                     .notebooks for g in nb.grades)
    assert full == 10  # 03: the lab's model 2, the block 3, ResNet-18 2, BatchNorm 3
    assert code == {"right": full, "wrong": full - 3 - 3, "blank": 0}
    assert manual == 2  # 03's two written answers, for the teacher
    assert not list((course / "autograded").rglob("runs"))
    # The right submission ran without an error in the course folder (results/ found there).
    for nb in (course / "autograded" / "right" / ASSIGNMENT).glob("*.ipynb"):
        errors = [o for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"
                  for o in c.outputs if o.output_type == "error"]
        assert not errors, (nb.name, errors[:1])
