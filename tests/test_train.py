"""fit: learns, writes its run directory, survives interrupts and resumes exactly."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from lab_utils import runs
from lab_utils.config import ConfigError, make_config
from lab_utils.train import fit

METRICS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"]


def small(synthetic_dir, run_dir, **kw):
    params = dict(data_dir=str(synthetic_dir), run_dir=str(run_dir), epochs=3,
                  milestones=[2], pretrained=False, batch_size=16, device="cpu",
                  num_workers=0)
    params.update(kw)
    return make_config(**params)


def test_fit_learns_and_writes_a_complete_run_directory(synthetic_dir, tmp_path):
    result = fit(small(synthetic_dir, tmp_path / "run", clean_train_subset=50), progress=False)
    h = runs.load_history(result.run_dir)
    assert list(h.columns) == METRICS + ["clean_train_loss", "clean_train_acc", "epoch_time_s"]
    assert len(h) == 3 and h.lr.tolist() == pytest.approx([0.01, 0.01, 0.001])
    assert h.test_acc.iloc[-1] > 30  # chance is 10%
    preds = runs.load_predictions(result.run_dir)
    assert len(preds) == 40 and set(preds.columns) == {"index", "true", "pred", "confidence"}
    acc = 100 * (preds.true == preds.pred).mean()
    assert acc == pytest.approx(h.test_acc.iloc[-1])
    assert runs.load_metrics(result.run_dir)["test_acc"] == h.test_acc.iloc[-1]
    state = runs.load_checkpoint(result.run_dir)
    assert {"model", "optimizer", "scheduler", "rng", "history"} <= set(state)


@pytest.mark.parametrize("data_path", ["tensor", "dataloader"])
def test_resume_after_interrupt_gives_the_uninterrupted_history(synthetic_dir, tmp_path,
                                                                data_path):
    full = fit(small(synthetic_dir, tmp_path / "full", data_path=data_path), progress=False)

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    cfg = small(synthetic_dir, tmp_path / "cut", data_path=data_path)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, progress=False, on_epoch_end=stop_after_first)
    assert len(runs.load_history(tmp_path / "cut")) == 1
    resumed = fit(small(synthetic_dir, tmp_path / "cut", data_path=data_path, resume=True),
                  progress=False)
    pd.testing.assert_frame_equal(resumed.history[METRICS], full.history[METRICS])


def test_killed_process_keeps_finished_epochs_and_resumes_exactly(synthetic_dir, tmp_path):
    run_dir = tmp_path / "killed"
    code = (f"from lab_utils.config import make_config; from lab_utils.train import fit; "
            f"fit(make_config(data_dir={str(synthetic_dir)!r}, run_dir={str(run_dir)!r}, "
            f"epochs=3, milestones=[2], pretrained=False, batch_size=16, device='cpu', "
            f"num_workers=0), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "history.csv").is_file():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = runs.load_history(run_dir)
    assert 1 <= len(kept) <= 3
    resumed = fit(small(synthetic_dir, run_dir, resume=True), progress=False)
    full = fit(small(synthetic_dir, tmp_path / "full"), progress=False)
    pd.testing.assert_frame_equal(resumed.history[METRICS], full.history[METRICS])


def test_last_batch_of_one_sample_does_not_crash(synthetic_dir, tmp_path):
    result = fit(small(synthetic_dir, tmp_path / "one", epochs=1, milestones=[],
                       train_subset=33), progress=False)
    assert len(result.history) == 1


def test_existing_run_is_never_overwritten(synthetic_dir, tmp_path):
    fit(small(synthetic_dir, tmp_path / "run", epochs=1, milestones=[]), progress=False)
    before = (tmp_path / "run" / "history.csv").read_text()
    with pytest.raises(ConfigError, match="already holds a run; pass resume=True"):
        fit(small(synthetic_dir, tmp_path / "run", epochs=1, milestones=[]), progress=False)
    with pytest.raises(ConfigError, match="started with different.*lr=0.01 \\(now 0.1\\)"):
        fit(small(synthetic_dir, tmp_path / "run", epochs=1, milestones=[], lr=0.1,
                  resume=True), progress=False)
    assert (tmp_path / "run" / "history.csv").read_text() == before


def test_run_from_before_a_parameter_existed_resumes_with_its_lab_default(synthetic_dir,
                                                                          tmp_path):
    # Runs started before `crop_padding` existed have no such key in config.json; they
    # used the lab's 4-pixel crop, so they resume with it and refuse any other value.
    def stop(row):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(small(synthetic_dir, tmp_path / "old", epochs=2, milestones=[]), progress=False,
            on_epoch_end=stop)
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    del saved["crop_padding"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="crop_padding=4 \\(now 2\\)"):
        fit(small(synthetic_dir, tmp_path / "old", epochs=2, milestones=[], crop_padding=2,
                  resume=True), progress=False)
    resumed = fit(small(synthetic_dir, tmp_path / "old", epochs=2, milestones=[],
                        resume=True), progress=False)
    assert len(resumed.history) == 2


def test_failing_dataloader_workers_get_a_message_with_the_fix(synthetic_dir, tmp_path,
                                                                monkeypatch):
    import lab_utils.train as train

    def broken(*args, **kwargs):
        raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")
    monkeypatch.setattr(train, "train_epoch", broken)
    cfg = small(synthetic_dir, tmp_path / "w", data_path="dataloader", num_workers=2)
    with pytest.raises(RuntimeError, match="use num_workers=0, or data_path='tensor'"):
        fit(cfg, progress=False)
    # Without workers the original error is not dressed up as a worker problem.
    cfg = small(synthetic_dir, tmp_path / "w0", data_path="dataloader", num_workers=0)
    with pytest.raises(RuntimeError, match="^DataLoader worker"):
        fit(cfg, progress=False)
