"""An nbgrader course folder for this lab, set up by one command.

    python -m lab_utils.course ~/courses/dl-lab            # English notebooks
    python -m lab_utils.course ~/courses/dl-lab --lang zh-CN

writes into the folder: `nbgrader_config.py` (the course root, a cell timeout that fits,
autograding on generated data, and run, data and checkpoint files kept out of every copy
nbgrader makes), the teacher edition of the six notebooks as the assignment's source
(`source/lab/`), and the committed results the notebooks read (`results/`), so that the
released, submitted and autograded notebooks find them. Then, in that folder:

    nbgrader generate_assignment lab    # release/lab/: the student edition
    nbgrader autograde lab              # after collecting: the check cells score the tasks

`notebooks/TEACHING.md` has the whole cycle, with times.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import nbformat

from .paths import package_repo, repo_root, results_dir
from .student import ASSIGNMENT, LANGUAGES, nbgrader_settings, teacher_notebooks, without_provenance

# What no copy of a submission needs: runs, data, checkpoints and the handed-out runs.
IGNORED = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "runs", "data", "*.pt",
           "*.zip", "*.tar.gz"]
# Seconds a cell may take under autograding (nbgrader's default is 30): on generated data
# the longest cells take a few seconds; the margin is for a busy grading machine.
CELL_TIMEOUT = 120

CONFIG = '''# nbgrader's settings for this lab (written by python -m lab_utils.course).
import os

c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course!r}  # what release_assignment, fetch and collect name
c.CourseDirectory.ignore = {ignore!r}
c.ExecutePreprocessor.timeout = {timeout}
{stubs}
# Autograding runs every cell: on generated data (LAB_SMOKE=1) the notebooks train and
# load for seconds instead of half an hour, and the check cells test the students' code
# exactly as on CIFAR-10. Remove this line to autograde on the real data.
os.environ.setdefault("LAB_SMOKE", "1")
'''


def results_read(notebooks: list[Path]) -> list[str]:
    """The folders and files under results/ that `notebooks` name in their code cells."""
    names = set()
    for path in notebooks:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                names |= set(re.findall(r"results/([\w.-]+)", "".join(cell["source"])))
    return sorted(names)


def set_up(folder: str | Path, lang: str = "en") -> Path:
    """Write the course folder (see the module docstring) and return it. An existing
    `nbgrader_config.py` or source assignment is replaced; students' submissions, the
    gradebook and feedback are left alone."""
    root = Path(folder).expanduser().resolve()
    repo = package_repo() or repo_root()
    notebooks = teacher_notebooks(repo, lang)
    if not notebooks:
        raise FileNotFoundError(
            f"no notebooks of {lang!r} in {repo / 'notebooks'}: install lab_utils from the "
            "repository (pip install -e path/to/repo), whose notebooks this command copies")
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True, exist_ok=True)
    for path in notebooks:  # without the note on the committed outputs: released without them
        nb = nbformat.read(path, as_version=4)
        nb.cells = without_provenance(nb.cells)
        nbformat.write(nb, source / path.name)
    results = results_dir()
    for name in results_read(notebooks):
        src, dst = results / name, root / "results" / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.pt", "*.ipynb"))
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    (root / "nbgrader_config.py").write_text(CONFIG.format(
        root=str(root), course=root.name, ignore=IGNORED, timeout=CELL_TIMEOUT,
        stubs=nbgrader_settings(lang)))
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the course folder to set up (made if missing)")
    parser.add_argument("--lang", default="en", choices=LANGUAGES,
                        help="the notebooks' language (default: en)")
    args = parser.parse_args(argv)
    root = set_up(args.folder, args.lang)
    print(f"course folder ready: {root}\n  cd {root} && nbgrader generate_assignment "
          f"{ASSIGNMENT}   # then release, collect, nbgrader autograde {ASSIGNMENT}")


if __name__ == "__main__":
    main()
