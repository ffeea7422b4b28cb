"""The GPU plan on the CPU (results/gpu/PLAN.md): its specs load and are the runs the issues
ask for, the choice on validation follows the rule, the test specs it writes load, and
results/gpu/run.sh parses and each step group fits one device call. Nothing here trains or
needs a GPU: where capture "on" needs CUDA, torch.cuda.is_available is stubbed as in
tests/test_grid.py."""
import io
import json
import os
import re
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lab_utils import analysis, grid
from lab_utils.config import config_dict, make_config

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "results" / "gpu" / "run.sh"
CIFAR_SCREEN = ROOT / "results" / "cifar-stem-screen-val" / "grid.yaml"
FAST_SCREEN = ROOT / "results" / "fast-screen-gpu-val" / "grid.yaml"
LAB_CACHE = ROOT / "results" / "lab-compile-cache" / "grid.yaml"
STEM_ABLATION = ROOT / "results" / "cifar-stem-ablation" / "grid.yaml"
LAB30 = ["decode-cache", "lab-floor", "lab-cold", "lab-warm", "fast-screen", "choose-fast",
         "fast-test-seed0", "fast-test-seed1", "fast-test-seed2"]
STEM94 = ["decode-cache", "cifar-screen-lr0.2-wd0.0005", "cifar-screen-lr0.1-wd0.0005",
          "cifar-screen-lr0.1-wd0.001", "choose-cifar", "cifar-test-seed0", "cifar-test-seed1",
          "cifar-test-seed2"]
ABLATION = ["decode-cache"] + [f"ablation-stem-dropout{d}-aug{a}-seed{s}" for s in (0, 1)
                               for d in ("0.0", "0.5") for a in ("none", "lab")]


@pytest.fixture
def gpu(monkeypatch):
    """A machine that says it has a CUDA GPU, so that capture "on" passes make_config."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def given(run: grid.Run) -> dict:
    return {k: v for k, v in run.params.items() if k not in ("run_dir", "resume")}


def test_the_cifar_stem_screen_starts_from_the_preset_and_varies_lr_and_weight_decay(gpu):
    screen = grid.load_spec(CIFAR_SCREEN)
    cfgs = [make_config(**run.params) for run in screen]
    preset = make_config(preset="cifar_stem")
    assert (cfgs[0].lr, cfgs[0].weight_decay) == (preset.lr, preset.weight_decay)  # the baseline
    assert {(c.lr, c.weight_decay) for c in cfgs[1:]} == {(0.1, 5e-4), (0.1, 1e-3)}
    for cfg in cfgs:
        assert (cfg.preset, cfg.stem, cfg.val_size, cfg.seed, cfg.pretrained, cfg.capture) == (
            "cifar_stem", "cifar", 5000, 0, False, "on")
        assert cfg.epochs <= 30 and cfg.clean_train_subset == 0
        # Everything but lr and weight decay is the preset's.
        same = {k: v for k, v in config_dict(cfg).items()
                if k not in ("lr", "weight_decay", "val_size", "clean_train_subset", "capture",
                             "data_dir", "run_dir", "resume")}
        assert same == {k: config_dict(preset)[k] for k in same}


def test_the_cifar_stem_ablation_is_the_committed_ablation_with_the_cifar_stem(gpu):
    stem = {r.run_dir.name: make_config(**r.params) for r in grid.load_spec(STEM_ABLATION)}
    image = {r.run_dir.name: make_config(**r.params) for r in grid.load_spec(
        ROOT / "results" / "ablation" / "grid.yaml")}
    assert stem.keys() == image.keys() and len(stem) == 8
    for name, cfg in stem.items():
        differ = {k for k, v in config_dict(cfg).items() if config_dict(image[name])[k] != v}
        assert differ == {"stem", "capture", "run_dir"}, name
        assert (cfg.stem, cfg.lr, cfg.milestones, cfg.epochs, cfg.batch_size) == (
            "cifar", 0.01, [7, 12], 15, 128)


def test_the_fast_screen_on_the_gpu_keeps_the_first_choice_as_its_record(gpu):
    screen = grid.load_spec(FAST_SCREEN)
    assert len(screen) == 6
    for run in screen:
        cfg = make_config(**run.params)
        assert (cfg.preset, cfg.val_size, cfg.seed, cfg.pretrained, cfg.data_dir) == (
            "fast", 5000, 0, False, "data/cifar10-jpeg")
        assert 6 <= cfg.epochs <= 10 and cfg.crop_padding in (0, 2, 4)
    # The earlier choice stays as it was (results/fast-screen-val, results/fast-test).
    assert yaml.safe_load((ROOT / "results" / "fast-screen-val" / "grid.yaml").read_text())[
        "grid"] == {"seed": [0], "crop_padding": [0, 2, 4], "epochs": [5, 6]}


def test_the_lab_cold_and_warm_runs_differ_only_in_their_folder(gpu):
    cold, warm = grid.load_spec(LAB_CACHE)
    assert (cold.run_dir.name, warm.run_dir.name) == ("lab-cold-seed0", "lab-warm-seed0")
    assert given(cold) == given(warm)
    cfg = make_config(**cold.params)
    assert (cfg.preset, cfg.epochs, cfg.capture, cfg.val_size, cfg.pretrained) == (
        "lab", 15, "on", 0, False)


def fake_run(folder: Path, name: str, val_acc: float | None, finished: bool = True,
             **params) -> Path:
    """A run directory as lab_utils.runs leaves it: config.json, history.csv and, once
    finished, metrics.json (the final epoch's val_acc)."""
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    params = {k: v for k, v in params.items() if k not in ("run_dir", "resume")}
    cfg = config_dict(make_config(**params, run_dir=str(run_dir), resume=True))
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    epochs = cfg["epochs"]
    rows = [dict(epoch=e, train_loss=1.0, train_acc=70.0, test_loss=1.0, test_acc=70.0,
                 lr=0.1, epoch_time_s=2.0) for e in range(1, epochs + 1)]
    if val_acc is not None:  # rising to the final epoch's
        rows = [dict(r, val_loss=1.0, val_acc=val_acc - epochs + r["epoch"]) for r in rows]
    (run_dir / "history.csv").write_text(pd.DataFrame(rows).to_csv(index=False))
    if finished:
        metrics = {"final_epoch": cfg["epochs"], "test_acc": 70.0, "wall_time_s": 20.0,
                   **({} if val_acc is None else {"val_acc": val_acc})}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return run_dir


def screen_runs(spec: Path, folder: Path, vals: dict[str, float]) -> Path:
    """Fake finished runs of a committed screen `spec` in `folder` (its grid.yaml beside
    them), with the final val_acc of each run as `vals` says."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.yaml").write_text(spec.read_text())
    for run in grid.load_spec(folder / "grid.yaml"):
        fake_run(folder, run.run_dir.name, vals[run.run_dir.name], **run.params)
    return folder


FAST_VALS = {"crop0-ep6-seed0": 79.9, "crop0-ep8-seed0": 81.2, "crop0-ep10-seed0": 81.2,
             "crop2-ep6-seed0": 78.0, "crop2-ep8-seed0": 80.6, "crop2-ep10-seed0": 81.1}


def test_the_choice_is_the_highest_val_acc_with_ties_to_fewer_epochs(tmp_path, gpu):
    folder = screen_runs(FAST_SCREEN, tmp_path / "screen", FAST_VALS)
    # crop0 at 8 and 10 epochs tie at 81.2: the fewer epochs win.
    assert analysis.choose_on_validation(folder) == {"crop_padding": 0, "epochs": 8}
    # A list of run directories, in any order, chooses the same.
    dirs = sorted(analysis.find_runs(folder), reverse=True)
    assert analysis.choose_on_validation(dirs) == {"crop_padding": 0, "epochs": 8}
    # The highest wins whatever its epochs; within a tolerance, fewer epochs win.
    vals = {**FAST_VALS, "crop2-ep10-seed0": 81.5}
    other = screen_runs(FAST_SCREEN, tmp_path / "other", vals)
    assert analysis.choose_on_validation(other) == {"crop_padding": 2, "epochs": 10}
    assert analysis.choose_on_validation(other, tolerance=0.5) == {"crop_padding": 0,
                                                                    "epochs": 8}


def test_no_choice_from_an_unfinished_screen_or_one_without_validation(tmp_path, gpu):
    folder = screen_runs(FAST_SCREEN, tmp_path / "screen", FAST_VALS)
    (folder / "crop2-ep10-seed0" / "metrics.json").unlink()
    with pytest.raises(ValueError, match="not finished: crop2-ep10-seed0"):
        analysis.choose_on_validation(folder)
    fake_run(tmp_path / "noval", "a", None, preset="fast", epochs=2)
    with pytest.raises(ValueError, match="no final-epoch val_acc"):
        analysis.choose_on_validation(tmp_path / "noval")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no runs"):
        analysis.choose_on_validation(tmp_path / "empty")


def test_the_fast_test_spec_holds_three_seeds_of_the_choice(tmp_path, gpu):
    folder = screen_runs(FAST_SCREEN, tmp_path / "screen", FAST_VALS)
    out = tmp_path / "fast-test-2" / "grid.yaml"
    with redirect_stdout(io.StringIO()):
        analysis.main(["choose", str(folder), "--write", str(out), "--seeds", "0", "1", "2"])
    test = grid.load_spec(out)
    # The names run.sh's steps fast-test-seed0..2 ask for.
    assert [r.run_dir.name for r in test] == ["fast-seed0", "fast-seed1", "fast-seed2"]
    cfgs = [make_config(**r.params) for r in test]
    assert all(c.val_size == 0 and c.pretrained is False and c.data_dir == "data/cifar10-jpeg"
               and c.clean_train_subset == 0 for c in cfgs)
    assert [(c.preset, c.crop_padding, c.epochs, c.seed) for c in cfgs] == [
        ("fast", 0, 8, 0), ("fast", 0, 8, 1), ("fast", 0, 8, 2)]
    text = out.read_text()
    assert "Chosen: crop0-ep8-seed0" in text and re.search(r"crop2-ep10-seed0 +81.1 +10 +2", text)
    assert "test_acc" not in text  # chosen on validation alone
    # The same choice again leaves the spec as it was; another one is refused.
    with redirect_stdout(io.StringIO()):
        analysis.write_test_spec(folder, out)
    assert out.read_text() == text
    other = screen_runs(FAST_SCREEN, tmp_path / "other", {**FAST_VALS, "crop2-ep6-seed0": 90.0})
    with pytest.raises(ValueError, match="holds another choice"):
        analysis.write_test_spec(other, out)


def test_the_cifar_stem_test_spec_has_three_seeds_on_the_full_training_split(tmp_path, gpu):
    vals = {"lr0.2-wd0.0005-seed0": 93.1, "lr0.1-wd0.0005-seed0": 94.3,
            "lr0.1-wd0.001-seed0": 94.3}
    folder = screen_runs(CIFAR_SCREEN, tmp_path / "screen", vals)
    # A tie (same epochs): the first by run name, lr0.1-wd0.0005.
    assert analysis.choose_on_validation(folder) == {"lr": 0.1, "weight_decay": 5e-4}
    out = tmp_path / "cifar-stem-test" / "grid.yaml"
    with redirect_stdout(io.StringIO()):
        analysis.write_test_spec(folder, out, seeds=[0, 1, 2])
    test = grid.load_spec(out)
    assert [r.run_dir.name for r in test] == ["cifar_stem-seed0", "cifar_stem-seed1",
                                              "cifar_stem-seed2"]
    cfgs = [make_config(**r.params) for r in test]
    assert sorted(c.seed for c in cfgs) == [0, 1, 2]
    assert all((c.preset, c.stem, c.lr, c.weight_decay, c.epochs, c.val_size, c.capture,
                c.pretrained) == ("cifar_stem", "cifar", 0.1, 5e-4, 30, 0, "on", False)
               for c in cfgs)


def dry_run(steps: str | None = None, budget: int | None = None) -> tuple[list[tuple], int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STEPS", "BUDGET", "OUT")}
    env["DRY_RUN"] = "1"
    if steps is not None:
        env["STEPS"] = steps
    if budget is not None:
        env["BUDGET"] = str(budget)
    out = subprocess.run(["bash", str(RUN_SH)], env=env, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    listed = [(m[1], int(m[2]), m[3]) for m in re.finditer(r"^step (\S+) +(\d+) s  (.*)$", out,
                                                           flags=re.M)]
    total = int(re.search(r"^total (\d+) s of step limits, BUDGET (\d+) s", out, re.M)[1])
    return listed, total, out


def test_run_sh_parses():
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True, timeout=30)


@pytest.mark.parametrize("steps, names", [("lab30", LAB30), ("stem94", STEM94),
                                          ("ablation-stem", ABLATION)])
def test_each_issue_is_one_device_call_its_steps_in_order_within_the_budget(steps, names):
    listed, total, out = dry_run(steps)
    assert [name for name, _, _ in listed] == names
    assert total == sum(limit for _, limit, _ in listed) <= 540
    assert "fits" in out
    # The device tool's limit is 600 s a command: BUDGET leaves the setup and summary a margin.
    assert re.search(r"^BUDGET=\$\{BUDGET:-540\}", RUN_SH.read_text(), re.M)


def test_without_a_step_group_the_script_names_them_and_runs_nothing():
    env = {k: v for k, v in os.environ.items() if k not in ("STEPS", "DRY_RUN")}
    done = subprocess.run(["bash", str(RUN_SH)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "STEPS=lab30" in done.stdout


def test_a_dry_run_runs_nothing_and_says_when_steps_do_not_fit(tmp_path):
    before = (ROOT / "results" / "gpu" / "timings.txt").read_text()
    listed, total, out = dry_run("lab30 stem94", budget=540)
    assert [name for name, _, _ in listed] == LAB30 + STEM94[1:]  # decode-cache once
    assert total > 540 and "over by" in out
    assert (ROOT / "results" / "gpu" / "timings.txt").read_text() == before


def test_the_steps_ask_for_runs_the_specs_have(gpu):
    listed, _, _ = dry_run("lab30 stem94 ablation-stem")
    asked = 0
    for name, _, command in listed:
        hit = re.search(r"lab_utils\.grid (\S+) --in-process --only (\S+)", command)
        if hit and Path(ROOT / hit[1]).is_file():  # the test specs exist once chosen
            assert hit[2] in {r.run_dir.name for r in grid.load_spec(ROOT / hit[1])}, name
            asked += 1
    assert asked >= 2 + 3 + 8  # lab-cold/warm, the stem screen, the stem ablation
    commands = {name: command for name, _, command in listed}
    assert "--seeds 0 1 2" in commands["choose-cifar"] and "--seeds 0 1 2" in commands["choose-fast"]
    assert "--only fast-seed1" in commands["fast-test-seed1"]
    assert "--only cifar_stem-seed2" in commands["cifar-test-seed2"]


def test_the_summary_still_reproduces_the_committed_one(monkeypatch):
    """run.sh's summary, run on the committed results, prints the committed summary.txt:
    the new folders add lines only once they hold runs."""
    script = RUN_SH.read_text().split("<<'PY' | tee \"$DIR/summary.txt\"\n")[1].split("\nPY\n")[0]
    summary = (ROOT / "results" / "gpu" / "summary.txt").read_text()
    if any(analysis.find_runs(ROOT / "results" / d) for d in (
            "lab-compile-cache", "cifar-stem-screen-val", "fast-screen-gpu-val",
            "cifar-stem-ablation") if (ROOT / "results" / d).is_dir()):
        pytest.skip("the new runs are committed: summary.txt has their lines")
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(script, "run.sh summary", "exec"), {})
    assert printed.getvalue() == summary
