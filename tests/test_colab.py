"""The repository URL is one setting: six identical setup cells and the README's Colab links
follow it, and `python -m lab_utils.colab URL` changes all of them at once."""
import json
import re
import shutil
from pathlib import Path

import pytest

from lab_utils.colab import repository_url, set_repository

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))  # the teacher edition, in English


def setup_cells(root: Path) -> list[str]:
    return ["".join(json.loads(nb.read_text())["cells"][2]["source"])
            for nb in sorted((root / "notebooks").glob("*.ipynb"))]


def test_every_setup_cell_is_the_same_and_clones_the_configured_repository():
    cells = setup_cells(ROOT)
    assert len(cells) == 6 and len(set(cells)) == 1
    assert f'REPO_URL = "{repository_url()}"' in cells[0]
    owner_repo = repository_url().removeprefix("https://github.com/")
    for readme in ("README.md", "README.zh-CN.md"):
        links = re.findall(r"https://colab\.research\.google\.com/github/([^)\s]+)", (ROOT / readme).read_text())
        assert all(link.startswith(f"{owner_repo}/blob/main/notebooks/") for link in links)
        for edition in ("", "student/"):
            names = sorted(l.rsplit("/", 1)[1] for l in links
                           if l.rsplit("/", 1)[0].endswith("notebooks/" + edition.rstrip("/"))
                           or (not edition and l.rsplit("/", 1)[0].endswith("notebooks")))
            assert names == sorted(p.name for p in NOTEBOOKS), (readme, edition)


def test_one_command_fills_a_new_url_everywhere(tmp_path):
    for name in ("pyproject.toml", "README.md", "README.zh-CN.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    old = repository_url(tmp_path)
    set_repository("https://github.com/teacher/lab-2027/", tmp_path)
    assert repository_url(tmp_path) == "https://github.com/teacher/lab-2027"
    cells = setup_cells(tmp_path)
    assert len(set(cells)) == 1 and 'REPO_URL = "https://github.com/teacher/lab-2027"' in cells[0]
    readme = (tmp_path / "README.md").read_text()
    for edition in ("", "student/"):
        assert (f"colab.research.google.com/github/teacher/lab-2027/blob/main/notebooks/"
                f"{edition}04_train.ipynb") in readme
    assert old not in readme and old not in "".join(cells)
    # Every edition's setup cell follows, so each student edition stays its teacher edition's.
    for nb in (tmp_path / "notebooks").rglob("0*.ipynb"):
        assert old not in nb.read_text(), nb
        assert "".join(json.loads(nb.read_text())["cells"][2]["source"]) == cells[0], nb


@pytest.mark.parametrize("url", ["github.com/me/repo", "https://gitlab.com/me/repo",
                                 "https://github.com/me", "https://github.com/me/repo/tree/main"])
def test_a_url_that_is_not_a_github_repository_is_refused(tmp_path, url):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with pytest.raises(ValueError, match="not a GitHub repository's address"):
        set_repository(url, tmp_path)
    assert repository_url(tmp_path) == repository_url(ROOT)
