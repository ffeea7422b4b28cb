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
                  num_workers=0, clean_train_subset=0)
    params.update(kw)
    return make_config(**params)


def cut_with_saved_config(synthetic_dir, run_dir, edit) -> None:
    """A 2-epoch run interrupted after its first epoch, its config.json changed by `edit`
    (as an older version of lab_utils would have saved it)."""
    def stop(row):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(small(synthetic_dir, run_dir, epochs=2, milestones=[]), progress=False,
            on_epoch_end=stop)
    saved = json.loads((run_dir / "config.json").read_text())
    edit(saved)
    (run_dir / "config.json").write_text(json.dumps(saved))


def test_fit_learns_and_writes_a_complete_run_directory(synthetic_dir, tmp_path):
    result = fit(small(synthetic_dir, tmp_path / "run", clean_train_subset=50), progress=False)
    h = runs.load_history(result.run_dir)
    assert list(h.columns) == METRICS + ["epoch_time_s", "clean_train_loss", "clean_train_acc",
                                         "measure_time_s"]
    assert len(h) == 3 and h.lr.tolist() == pytest.approx([0.01, 0.01, 0.001])
    assert h.test_acc.iloc[-1] > 30  # chance is 10%
    preds = runs.load_predictions(result.run_dir)
    assert len(preds) == 40 and set(preds.columns) == {"index", "true", "pred", "confidence"}
    acc = 100 * (preds.true == preds.pred).mean()
    assert acc == pytest.approx(h.test_acc.iloc[-1])
    assert runs.load_metrics(result.run_dir)["test_acc"] == h.test_acc.iloc[-1]
    state = runs.load_checkpoint(result.run_dir)
    assert {"model", "optimizer", "scheduler", "rng", "history"} <= set(state)


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_resume_after_interrupt_gives_the_uninterrupted_history(synthetic_dir, tmp_path,
                                                                loader):
    full = fit(small(synthetic_dir, tmp_path / "full", loader=loader), progress=False)

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    cfg = small(synthetic_dir, tmp_path / "cut", loader=loader)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, progress=False, on_epoch_end=stop_after_first)
    assert len(runs.load_history(tmp_path / "cut")) == 1
    resumed = fit(small(synthetic_dir, tmp_path / "cut", loader=loader, resume=True),
                  progress=False)
    pd.testing.assert_frame_equal(resumed.history[METRICS], full.history[METRICS])


def test_killed_process_keeps_finished_epochs_and_resumes_exactly(synthetic_dir, tmp_path):
    run_dir = tmp_path / "killed"
    # The child pauses after its first epoch, so the kill lands mid-run, between epochs 1 and 2.
    code = (f"import time; from lab_utils.config import make_config; "
            f"from lab_utils.train import fit; "
            f"fit(make_config(data_dir={str(synthetic_dir)!r}, run_dir={str(run_dir)!r}, "
            f"epochs=3, milestones=[2], pretrained=False, batch_size=16, device='cpu', "
            f"num_workers=0, clean_train_subset=0), progress=False, "
            f"on_epoch_end=lambda row: time.sleep(30))")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "history.csv").is_file():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    kept = runs.load_history(run_dir)
    assert len(kept) == 1 and not runs.is_finished(run_dir)  # killed mid-run, epoch 1 kept
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
    cut_with_saved_config(synthetic_dir, tmp_path / "old", lambda saved: saved.pop("crop_padding"))
    with pytest.raises(ConfigError, match="crop_padding=4 \\(now 2\\)"):
        fit(small(synthetic_dir, tmp_path / "old", epochs=2, milestones=[], crop_padding=2,
                  resume=True), progress=False)
    resumed = fit(small(synthetic_dir, tmp_path / "old", epochs=2, milestones=[],
                        resume=True), progress=False)
    assert len(resumed.history) == 2


def test_failing_dataloader_workers_get_a_message_with_the_fix(synthetic_dir, tmp_path,
                                                                monkeypatch):
    from torch.utils.data import DataLoader

    def broken(*args, **kwargs):
        raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")
    monkeypatch.setattr(DataLoader, "__iter__", broken)
    cfg = small(synthetic_dir, tmp_path / "w", loader="dataloader", num_workers=2)
    with pytest.raises(RuntimeError, match="use num_workers=0, or loader='tensor'"):
        fit(cfg, progress=False)
    # Without workers the original error is not dressed up as a worker problem.
    cfg = small(synthetic_dir, tmp_path / "w0", loader="dataloader", num_workers=0)
    with pytest.raises(RuntimeError, match="^DataLoader worker"):
        fit(cfg, progress=False)


def test_old_run_directories_with_old_names_still_resume(synthetic_dir, tmp_path):
    def as_before_the_renames(saved):
        saved["data_path"], saved["amp"] = saved.pop("loader"), saved.pop("precision") == "auto"
        del saved["val_size"], saved["arch"]
    cut_with_saved_config(synthetic_dir, tmp_path / "old", as_before_the_renames)
    assert len(fit(small(synthetic_dir, tmp_path / "old", epochs=2, milestones=[], resume=True),
                   progress=False).history) == 2


def test_validation_split_is_fixed_balanced_and_never_trained_on(synthetic_dir, tmp_path):
    from lab_utils.data import load_tensors
    from lab_utils.train import build_batches, split_indices

    _, labels = load_tensors(synthetic_dir, split="train")
    splits = [split_indices(small(synthetic_dir, tmp_path / "s", val_size=40, seed=s,
                                  clean_train_subset=30), labels) for s in (0, 1)]
    (train0, val0, clean0), (train1, val1, _) = splits
    assert torch.equal(val0, val1) and torch.equal(train0, train1)  # whatever the seed
    assert torch.bincount(labels[val0], minlength=10).tolist() == [4] * 10
    assert not set(val0.tolist()) & set(train0.tolist())
    assert set(clean0.tolist()) <= set(train0.tolist())
    assert len(train0) + len(val0) == len(labels)
    result = fit(small(synthetic_dir, tmp_path / "v", val_size=40, epochs=1, milestones=[]),
                 progress=False)
    assert {"val_loss", "val_acc"} <= set(result.history.columns)
    assert "80 train / 40 val / 40 test" in result.metrics["data"]
    for loader in ("tensor", "dataloader"):
        b = build_batches(small(synthetic_dir, tmp_path / "b", val_size=40, loader=loader),
                          torch.device("cpu"), torch.Generator())
        assert sum(len(y) for _, y in b.val) == 40 and sum(len(y) for _, y in b.train) == 80


@pytest.mark.parametrize("params, message", [
    (dict(train_subset=500), "train_subset=500 does not fit the data: only 120 training"),
    (dict(val_size=40, train_subset=100), "train_subset=100 .*only 80 training images"),
    (dict(val_size=120), "val_size=120 does not fit the data: the training split has 120"),
    (dict(batch_size=200), "batch_size=200 does not fit the data: only 120 images"),
])
def test_sizes_that_do_not_fit_the_data_name_the_parameter(synthetic_dir, tmp_path, params,
                                                           message):
    with pytest.raises(ConfigError, match=message):
        fit(small(synthetic_dir, tmp_path / "big", **params), progress=False)


def test_divergence_stops_the_run_naming_epoch_batch_and_lr(synthetic_dir, tmp_path,
                                                           monkeypatch):
    import lab_utils.train as train

    real, calls = train.train_epoch, []

    def nan_in_second_epoch(model, batches, optimizer, criterion, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # a loss that turns NaN at the third batch of epoch 2
            seen = []

            def criterion(out, y, base=criterion):
                seen.append(1)
                return base(out, y) * (float("nan") if len(seen) == 3 else 1.0)
        return real(model, batches, optimizer, criterion, *args, **kwargs)
    run_dir = tmp_path / "nan"
    # The message suggests a learning rate that can work: a tenth of 0.01, at the lab's 0.01.
    with pytest.raises(train.DivergedError, match="diverged in epoch 2, batch 3 of 8: the loss "
                       "became nan at learning rate 0.01.*1 finished epoch.*Try lr=0.001 "):
        fit(small(synthetic_dir, run_dir), progress=False, train_epoch=nan_in_second_epoch)
    assert len(runs.load_history(run_dir)) == 1 and not runs.is_finished(run_dir)


def test_a_huge_learning_rate_is_caught_as_divergence(synthetic_dir, tmp_path):
    from lab_utils.train import DivergedError

    with pytest.raises(DivergedError, match="diverged in epoch 1, batch.*Try lr=0.01 "):
        fit(small(synthetic_dir, tmp_path / "huge", lr=1e30, momentum=0.0), progress=False)


def test_cpu_computes_in_fp32_unless_asked(synthetic_dir):
    from lab_utils.device import precision_name

    cpu = torch.device("cpu")
    assert precision_name(cpu, "auto") == "float32"
    assert precision_name(cpu, "bf16") == "bfloat16" and precision_name(cpu, "fp32") == "float32"


def test_each_epoch_prints_one_line_of_text(synthetic_dir, tmp_path, capsys):
    fit(small(synthetic_dir, tmp_path / "p", epochs=2, milestones=[1], val_size=20))
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch")]
    assert len(lines) == 2
    assert lines[1].startswith("epoch  2/2 | train loss") and "| val loss" in lines[1]
    assert "| lr 1e-03 |" in lines[1] and lines[1].endswith(" s")


def test_pretrained_training_loads_the_cached_weights_and_replaces_the_head(
        synthetic_dir, tmp_path, monkeypatch):
    from torchvision.models import resnet18

    from lab_utils.model import weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(123)
    stand_in = resnet18().state_dict()  # torchvision's keys, random values: no network
    path = weights_path()
    assert str(path).startswith(str(tmp_path / "torch"))
    path.parent.mkdir(parents=True)
    torch.save(stand_in, path)
    result = fit(small(synthetic_dir, tmp_path / "pre", pretrained=True, epochs=1,
                       milestones=[], lr=1e-4), progress=False)
    trained = runs.load_checkpoint(result.run_dir)["model"]
    for key in ("conv1.weight", "layer3.1.conv2.weight", "layer4.0.downsample.0.weight"):
        a, b = trained[key].flatten().float(), stand_in[key].flatten()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99, key
    assert "fc.weight" not in trained and trained["fc.1.weight"].shape == (10, 512)


def test_fit_wires_the_presets_schedule_smoothing_and_flip_averaging(synthetic_dir, tmp_path):
    """One-cycle is stepped every batch, label smoothing reaches the loss, and with tta_flip
    the reported test accuracy is that of each image's softmax averaged with its mirror's."""
    from lab_utils.data import CIFAR10_MEAN, CIFAR10_STD, load_tensors
    from lab_utils.augment import normalize
    from lab_utils.model import build_model
    from lab_utils.train import train_epoch

    seen = []

    def spy(model, batches, optimizer, criterion, device, per_batch, precision):
        seen.append((criterion.label_smoothing, type(per_batch).__name__))
        return train_epoch(model, batches, optimizer, criterion, device, per_batch, precision)

    cfg = small(synthetic_dir, tmp_path / "fast", recipe="fast", epochs=2, batch_size=32)
    result = fit(cfg, progress=False, train_epoch=spy)
    assert seen == [(0.1, "OneCycleLR")] * 2
    # One-cycle: the epoch-1 lr is the warm-up's start (max_lr / 25), then it rises.
    lr = result.history.lr.tolist()
    assert lr[0] == pytest.approx(cfg.lr / 25) and lr[1] > lr[0]
    steps = runs.load_checkpoint(result.run_dir)["scheduler"]["_step_count"]
    assert steps == 1 + 2 * -(-120 // 32)  # stepped after every one of the 2 x 4 batches
    # Flip TTA: recompute the final test accuracy from the saved model by hand.
    model = build_model(cfg)
    model.load_state_dict(runs.load_checkpoint(result.run_dir)["model"])
    images, labels = load_tensors(cfg.data_dir, cfg.dataset, "test")
    x = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
    with torch.no_grad():
        model.eval()
        probs = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    acc = 100 * (probs.argmax(1) == labels).float().mean().item()
    assert acc == pytest.approx(result.history.test_acc.iloc[-1], abs=1e-4)


def test_a_failed_write_keeps_every_finished_epoch_and_says_what_to_do(synthetic_dir, tmp_path,
                                                                       monkeypatch):
    import errno

    from lab_utils import paths

    real, calls = paths.atomic_write_bytes, []

    def full_disk_in_epoch_2(path, data):
        calls.append(path.name)
        if path.name == "checkpoint.pt" and calls.count("checkpoint.pt") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)
    monkeypatch.setattr(runs, "atomic_write_bytes", full_disk_in_epoch_2)
    run_dir = tmp_path / "full"
    with pytest.raises(runs.RunDirError, match=r"cannot write .*checkpoint.pt: the disk is full\. "
                       r"The run's 1 finished epoch\(s\) .* are kept.*resume=True"):
        fit(small(synthetic_dir, run_dir), progress=False)
    monkeypatch.undo()
    assert len(runs.load_history(run_dir)) == 1  # epoch 1 intact
    resumed = fit(small(synthetic_dir, run_dir, resume=True), progress=False)
    full = fit(small(synthetic_dir, tmp_path / "whole"), progress=False)
    pd.testing.assert_frame_equal(resumed.history[METRICS], full.history[METRICS])


@pytest.mark.parametrize("name, damage", [
    ("checkpoint.pt", b"PK\x03\x04 not really a zip"),
    ("history.csv", b'epoch,train_loss\n1,"unterminated'),
    ("config.json", b'{"epochs": 3,'),
])
def test_a_damaged_run_file_is_named_with_what_to_do(synthetic_dir, tmp_path, name, damage):
    run_dir = tmp_path / "d"

    def stop(row):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(small(synthetic_dir, run_dir), progress=False, on_epoch_end=stop)
    (run_dir / name).write_bytes(damage)
    with pytest.raises(runs.RunDirError, match=rf"{name} is damaged or cut short .*delete"):
        if name == "history.csv":  # fit resumes from the checkpoint; readers read this file
            runs.load_history(run_dir)
        else:
            fit(small(synthetic_dir, run_dir, resume=True), progress=False)


def test_a_run_records_the_commit_it_started_with(synthetic_dir, tmp_path, monkeypatch):
    answers = iter(["abc123", "def456+changes"])  # the code changes while the run trains
    monkeypatch.setattr(runs, "commit", lambda: next(answers))
    result = fit(small(synthetic_dir, tmp_path / "c", epochs=1, milestones=[]), progress=False)
    m = runs.load_metrics(result.run_dir)
    assert m["commit"] == "abc123" and {"cpu", "cpu_flags", "torch", "device"} <= set(m)
