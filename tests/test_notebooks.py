"""The training notebook's parameters cell: every knob, the lab's defaults, names checked."""
import dataclasses
import json
from pathlib import Path

import papermill as pm
import pytest

from lab_utils.config import LAB, LabConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "notebooks" / "04_train.ipynb"


def test_parameters_cell_holds_every_knob_with_the_labs_default():
    declared = pm.inspect_notebook(str(TRAIN))
    fields = {f.name for f in dataclasses.fields(LabConfig)}
    assert set(declared) == fields
    for name, p in declared.items():
        assert json.loads(json.dumps(eval(p["default"]))) == json.loads(
            json.dumps(getattr(LAB, name))), name


def test_every_notebook_has_one_parameters_cell_at_most_and_no_injected_cell():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        tags = [t for c in cells for t in c.get("metadata", {}).get("tags", [])]
        assert tags.count("parameters") <= 1, nb.name
        # A committed injected-parameters cell would override the lab's defaults on rerun.
        assert "injected-parameters" not in tags, nb.name


def test_papermill_with_an_unknown_parameter_fails(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter.*epoch"):
        pm.execute_notebook(str(TRAIN), str(tmp_path / "out.ipynb"), parameters={"epoch": 3},
                            cwd=str(ROOT), progress_bar=False)
