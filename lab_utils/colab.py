"""The repository's URL, one setting: every notebook's Colab setup cell clones it and the
READMEs' "Open in Colab" links point at it.

    python -m lab_utils.colab https://github.com/you/resnet18-cifar10-lab

writes the URL into `pyproject.toml` (`[project.urls] Repository`, the setting), the setup
cells of every notebook (both editions, both languages, so the student editions stay in step
with their teacher editions) and the READMEs' links, replacing whatever URL they held; a
teacher publishing a copy of this repository runs it once and commits the result, and the
repository's tests, which read the URL from the setting, pass on the copy.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .paths import repo_root

PLACEHOLDER = "https://github.com/<your-account>/resnet18-cifar10-lab"
URL_LINE = re.compile(r'^Repository = "(?P<url>[^"]+)"', re.M)
VALID = re.compile(r"^https://github\.com/(?P<path>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)$")


def repository_url(root: Path | None = None) -> str:
    """The URL in `pyproject.toml`'s `[project.urls] Repository`."""
    match = URL_LINE.search((root or repo_root()).joinpath("pyproject.toml").read_text())
    if not match:
        raise ValueError("pyproject.toml has no 'Repository = \"...\"' line under [project.urls]")
    return match.group("url")


def files(root: Path) -> list[Path]:
    """The files that hold the URL: every notebook (teacher and student editions, every
    language) and both READMEs."""
    return sorted((root / "notebooks").rglob("*.ipynb")) + [root / "README.md",
                                                            root / "README.zh-CN.md"]


def _colab_path(url: str) -> str:
    return "colab.research.google.com/github/" + url.removeprefix("https://github.com/") + "/"


def set_repository(url: str, root: Path | None = None) -> list[Path]:
    """Replace the current repository URL by `url` everywhere it is used; the files changed.

    Raises `ValueError` unless `url` is a GitHub repository's address
    (https://github.com/OWNER/NAME), so that a typo cannot reach six notebooks."""
    root = root or repo_root()
    url = url.rstrip("/").removesuffix(".git")
    if not VALID.match(url):
        raise ValueError(f"{url!r} is not a GitHub repository's address: write "
                         "https://github.com/OWNER/NAME (the copy students will clone)")
    old = repository_url(root)
    changed = []
    pyproject = root / "pyproject.toml"
    pyproject.write_text(URL_LINE.sub(f'Repository = "{url}"', pyproject.read_text(), count=1))
    for path in files(root):
        text = path.read_text(encoding="utf-8")
        new = text.replace(_colab_path(old), _colab_path(url)).replace(old, url)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return [pyproject, *changed]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="https://github.com/OWNER/NAME of your copy")
    args = parser.parse_args(argv)
    try:
        for path in set_repository(args.url):
            print(f"updated {path.relative_to(repo_root())}")
    except ValueError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
