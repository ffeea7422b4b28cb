from pathlib import Path

import pytest

from lab_utils import ablation
from lab_utils.config import ConfigError


def test_grid_parameters_change_only_the_cell(tmp_path):
    p = ablation.grid_parameters(0.0, "none", 3, tmp_path, {"epochs": 5, "milestones": [2, 4]})
    assert p["dropout"] == 0.0 and p["augment"] == "none" and p["seed"] == 3
    assert p["resume"] is True and p["clean_train_subset"] == ablation.CLEAN_SUBSET
    assert p["epochs"] == 5 and p["run_dir"] == str(tmp_path / "dropout0.0-augnone-seed3")
    with pytest.raises(ConfigError, match="milestones"):
        ablation.grid_parameters(0.0, "none", 0, tmp_path, {"epochs": 5})


def test_run_grid_skips_finished_runs_and_reruns_unfinished(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ablation, "_run_notebook",
                        lambda nb, out, params: calls.append(Path(params["run_dir"]).name) or 0)
    done = tmp_path / ablation.run_name(0.5, "lab", 0)
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    half = tmp_path / ablation.run_name(0.0, "none", 0)
    half.mkdir()
    (half / "history.csv").write_text("epoch\n1\n")
    dirs = ablation.run_grid([0], tmp_path, notebooks_out=tmp_path / "nb")
    assert len(dirs) == 4
    assert sorted(calls) == sorted(ablation.run_name(d, a, 0) for d, a in ablation.CELLS
                                   if (d, a) != (0.5, "lab"))


def test_run_grid_reports_failed_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "_run_notebook", lambda nb, out, params: 1)
    with pytest.raises(RuntimeError, match="failed.*run the same command again"):
        ablation.run_grid([0], tmp_path, notebooks_out=tmp_path / "nb")
