"""environment.yml and pyproject.toml name the same packages, with ranges, not pins."""
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def conda_requirements() -> list[str]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    return [d for d in deps if isinstance(d, str) and _name(d) not in ("python", "pip")]


def test_environment_and_pyproject_name_the_same_packages():
    pypi = {_name(r) for r in pyproject_requirements()}
    conda = {CONDA_NAMES.get(_name(r), _name(r)) for r in conda_requirements()}
    assert pypi == conda, f"only in pyproject: {pypi - conda}; only in environment.yml: {conda - pypi}"


def test_requirements_are_ranges_not_pins():
    for r in pyproject_requirements() + conda_requirements():
        assert "==" not in r and ">=" in r, r


def test_environment_installs_the_package_itself_and_python_311():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def test_license_is_an_spdx_string_and_presets_ship_with_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    assert "*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["lab_utils.presets"]


def test_the_version_is_written_once():
    import lab_utils

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lab_utils.__version__"}
    from importlib.metadata import version
    assert version("lab-utils") == lab_utils.__version__
