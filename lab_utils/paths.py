"""Where things live: the repository root, the committed results, and relative paths.

A notebook runs with `notebooks/` as its working directory in JupyterLab and with the
repository root under papermill; resolving `data/...` and `runs/...` against the root
makes both land in the same place, and `results/...` is found in a course folder too.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


CACHE_ENV = "LAB_CACHE_DIR"  # lab_utils's own folder: caches, generated data, runs outside a repo


def cache_home() -> Path:
    """The user's folder of lab_utils: $LAB_CACHE_DIR, else ~/.cache/lab_utils."""
    return Path(os.environ.get(CACHE_ENV) or
                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lab_utils")


def package_repo() -> Path | None:
    """The repository lab_utils was installed from (`pip install -e`), or None."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "notebooks").is_dir() and (here / "lab_utils").is_dir() else None


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding `lab_utils/` and
    `notebooks/`. Outside a repository (a course folder, a fetched assignment, a plain pip
    install) it is the user's folder `cache_home()`: data and runs then never land in the
    working folder, so a student's download or training never reaches a submission."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "lab_utils").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return cache_home()


def results_dir() -> Path:
    """The committed results the notebooks read (`results/`): the nearest `results/` folder
    at or above the working directory (a repository, or a course folder that
    `python -m lab_utils.course` set up), else the one of the repository lab_utils was
    installed from (`pip install -e`)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir():
            return folder / "results"
    return Path(__file__).resolve().parent.parent / "results"


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path: `path` itself if absolute, one under `results/` in `results_dir()`,
    anything else relative to `repo_root()`."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == "results":
        return results_dir().joinpath(*p.parts[1:])
    return repo_root() / p


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader (or a crash) sees the old file or the new
    one, never half of one: write a temporary file beside it, then rename over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
