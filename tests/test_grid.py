"""The grid runner: specs, skipping finished runs, resuming cut ones, and the committed specs."""
from pathlib import Path

import pytest

from lab_utils import grid
from lab_utils.config import ConfigError, make_config
from lab_utils.runs import check_resumable, is_finished

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
preset: fast
parameters: {epochs: 2, data_dir: data/x}
grid: {seed: [0, 1], crop_padding: [0, 2]}
runs: [{seed: 5, crop_padding: 4, name: extra}]
name: "crop{crop_padding}-s{seed}"
"""


def write(tmp_path, text=SPEC):
    spec = tmp_path / "grid.yaml"
    spec.write_text(text)
    return spec


def test_a_spec_lists_every_combination_then_its_single_runs(tmp_path):
    runs = grid.load_spec(write(tmp_path))
    assert [r.run_dir.name for r in runs] == ["crop0-s0", "crop2-s0", "crop0-s1", "crop2-s1",
                                              "extra"]
    assert all(r.run_dir.parent == tmp_path and r.params["preset"] == "fast" for r in runs)
    cfg = make_config(**runs[1].params)  # the preset first, then the spec's values
    assert (cfg.preset, cfg.epochs, cfg.crop_padding, cfg.lr) == ("fast", 2, 2, 0.2)
    assert runs[1].params["resume"] is True


@pytest.mark.parametrize("text, message", [
    ("grid: {seed: [0]}\n", "must be a mapping with 'name'"),
    ("grid: {seed: [0]}\nname: x\nbogus: 1\n", "it has \\['bogus', 'grid', 'name'\\]"),
    ("grid: {seed: [0, 1]}\nname: same\n", "two runs are named 'same'"),
    ("grid: {seed: [0]}\nname: '{dropuot}'\n", "name '\\{dropuot\\}' uses 'dropuot'"),
    ("grid: {lr: [-1]}\nname: 'lr{lr}'\n", "lr=-1 is not allowed"),
    ("grid: {seed: [0]\n", "cannot be read"),
])
def test_bad_specs_fail_before_any_run_naming_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        grid.load_spec(write(tmp_path, text))


def test_run_grid_skips_finished_runs_and_reruns_unfinished(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(grid, "_run_notebook",
                        lambda nb, out, run: calls.append(run.run_dir.name) or 0)
    monkeypatch.setattr(grid, "check_resumable", lambda run_dir, cfg: None)
    (tmp_path / "crop0-s0").mkdir()
    (tmp_path / "crop0-s0" / "metrics.json").write_text("{}")
    dirs = grid.run_grid(write(tmp_path), notebooks_out=tmp_path / "nb")
    assert len(dirs) == 5 and calls == ["crop2-s0", "crop0-s1", "crop2-s1", "extra"]


def test_run_grid_only_runs_the_named_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(grid, "_run_notebook",
                        lambda nb, out, run: calls.append(run.run_dir.name) or 0)
    grid.run_grid(write(tmp_path), notebooks_out=tmp_path / "nb", only=["extra", "crop2-s1"])
    assert calls == ["crop2-s1", "extra"]
    with pytest.raises(ConfigError, match="--only names crop9-s0, which it does not have; "
                                          "its runs are crop0-s0, crop2-s0"):
        grid.run_grid(write(tmp_path), only=["crop9-s0"])


def test_in_process_runs_train_in_the_calling_thread(tmp_path, monkeypatch):
    import threading
    # CUDA graph trees keep per-thread state: a captured run must not move to a worker.
    threads = []
    monkeypatch.setattr(grid, "fit", lambda cfg, progress: threads.append(
        threading.current_thread()))
    grid.run_grid(write(tmp_path), in_process=True, only=["extra"])
    assert threads == [threading.main_thread()]


def test_run_grid_reports_failed_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "_run_notebook", lambda nb, out, run: 1)
    with pytest.raises(RuntimeError, match="failed.*crop0-s0.*run the same command again"):
        grid.run_grid(write(tmp_path), notebooks_out=tmp_path / "nb")


def test_in_process_grid_trains_resumes_and_refuses_a_changed_spec(synthetic_dir, tmp_path):
    text = (f"parameters: {{data_dir: '{synthetic_dir}', pretrained: false, epochs: 1, "
            "milestones: [], batch_size: 32, device: cpu, clean_train_subset: 0}\n"
            "grid: {seed: [0, 1]}\nname: 's{seed}'\n")
    spec = write(tmp_path, text)
    dirs = grid.run_grid(spec, in_process=True)
    assert all(is_finished(d) for d in dirs)
    before = (dirs[0] / "history.csv").read_text()
    grid.run_grid(spec, in_process=True)  # nothing left to do
    assert (dirs[0] / "history.csv").read_text() == before
    write(tmp_path, text.replace("epochs: 1,", "epochs: 1, lr: 0.02,"))
    with pytest.raises(ConfigError, match="started with different lr=0.01 \\(now 0.02\\)"):
        grid.run_grid(spec, in_process=True)


def test_a_specs_preset_is_every_runs_preset_unless_a_run_gives_its_own(tmp_path):
    spec = write(tmp_path, "preset: fast\nruns: [{seed: 0}, {preset: cifar_stem, seed: 1}, "
                           "{recipe: quick, seed: 2}]\nname: '{recipe}-{preset}-s{seed}'\n")
    runs = grid.load_spec(spec)
    assert [r.params["preset"] for r in runs] == ["fast", "cifar_stem", "quick"]
    assert [r.run_dir.name for r in runs] == ["fast-fast-s0", "cifar_stem-cifar_stem-s1",
                                              "quick-quick-s2"]  # the old name still formats


# Every committed spec with the folder its runs went to: its own, or the --out folder of a
# spec run again on another machine (results/gpu/run.sh runs fast-test's on a GPU).
SPECS = [(spec, spec.parent) for spec in sorted(ROOT.glob("results/**/*.yaml"))] + [
    (ROOT / "results" / "fast-test" / "grid.yaml", ROOT / "results" / "fast-test-gpu")]
# Specs written before their runs (the GPU plans, results/gpu/PLAN.md; runs that need
# ImageNet weights): none of their runs exists yet. Every other spec must have one.
PREPARED = {"ablation-pretrained", "cifar-stem-screen-val", "fast-screen-gpu-val",
            "lab-compile-cache", "cifar-stem-ablation"}


@pytest.mark.parametrize("spec, folder", SPECS,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_run_is_what_its_spec_says(spec, folder, monkeypatch):
    import torch
    # Checked as on a GPU machine, so that the specs of GPU runs (results/gpu) are too.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    runs = grid.load_spec(spec, out=folder)
    assert runs
    checked = 0
    for run in runs:
        if is_finished(run.run_dir):
            check_resumable(run.run_dir, make_config(**run.params))
            checked += 1
    if folder.name in PREPARED:
        assert checked == 0, f"{folder.name} has runs now: take it out of PREPARED"
    else:
        assert checked, f"none of {spec.relative_to(ROOT)}'s runs is in {folder.name}/"
    committed = {p.parent for p in folder.glob("*/metrics.json")}
    if spec.name == "grid.yaml":  # a grid's folder holds its runs and nothing else
        assert committed <= {r.run_dir for r in runs}


def test_the_papermill_path_passes_the_runs_values_and_no_preset_file(tmp_path, monkeypatch):
    """Both paths build a run's config by make_config's rule: papermill gets the run's values
    (its preset among them) and the notebook applies the preset, as --in-process does."""
    import json as _json

    seen = []
    monkeypatch.setattr(grid.subprocess, "run",
                        lambda cmd: seen.append(cmd) or type("Done", (), {"returncode": 0}))
    grid.run_grid(write(tmp_path), notebooks_out=tmp_path / "nb", only=["extra"])
    cmd, = seen
    assert "-f" not in cmd
    params = _json.loads(cmd[cmd.index("-y") + 1])
    assert params["preset"] == "fast" and params["crop_padding"] == 4 and params["seed"] == 5
    in_process = make_config(**grid.load_spec(write(tmp_path))[-1].params)
    assert make_config(**params) == in_process
