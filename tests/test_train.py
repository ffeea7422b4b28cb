"""fit: learns, writes its run directory, survives interrupts and resumes exactly."""
import json
import re
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
    # fp32 whatever "auto" picks on this CPU (bf16 on some): the numbers below compare with fp32.
    params = dict(data_dir=str(synthetic_dir), run_dir=str(run_dir), epochs=3,
                  milestones=[2], pretrained=False, batch_size=16, device="cpu",
                  num_workers=0, clean_train_subset=0, precision="fp32")
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
    # Learning, with margins that hold on every CPU's kernels (seeds 0-2 on three CPUs gave
    # a final train loss of 0.13-0.60 of the first and 30-60% test accuracy on 40 images):
    assert h.train_loss.iloc[-1] < 2 / 3 * h.train_loss.iloc[0]
    assert h.test_acc.iloc[-1] >= 20  # twice chance (10%)
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
    two = dict(loader=loader, epochs=2, milestones=[1])  # the resumed epoch crosses the decay
    full = fit(small(synthetic_dir, tmp_path / "full", **two), progress=False)

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    cfg = small(synthetic_dir, tmp_path / "cut", **two)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, progress=False, on_epoch_end=stop_after_first)
    assert len(runs.load_history(tmp_path / "cut")) == 1
    resumed = fit(small(synthetic_dir, tmp_path / "cut", resume=True, **two), progress=False)
    pd.testing.assert_frame_equal(resumed.history[METRICS], full.history[METRICS])


def test_killed_process_keeps_finished_epochs_and_resumes_exactly(synthetic_dir, tmp_path):
    run_dir = tmp_path / "killed"
    # The child pauses after its first epoch, so the kill lands mid-run, between epochs 1 and 2.
    code = (f"import time; from lab_utils.config import make_config; "
            f"from lab_utils.train import fit; "
            f"fit(make_config(data_dir={str(synthetic_dir)!r}, run_dir={str(run_dir)!r}, "
            f"epochs=3, milestones=[2], pretrained=False, batch_size=16, device='cpu', "
            f"num_workers=0, clean_train_subset=0, precision='fp32'), progress=False, "
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

    def nan_in_second_epoch(model, batches, optimizer, criterion, device):
        calls.append(1)
        if len(calls) == 2:  # a model whose output turns NaN at the third batch of epoch 2
            seen = []
            inner = model

            def model(x, inner=inner):
                seen.append(1)
                return inner(x) * (float("nan") if len(seen) == 3 else 1.0)
            model.train = inner.train
        return real(model, batches, optimizer, criterion, device)
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


@pytest.mark.parametrize("flags, auto", [
    ("avx2 avx512f avx512_bf16", "bfloat16"),  # an AMD EPYC (Zen 4) or Ryzen laptop: bf16 wins
    ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "float32"),  # an Intel Xeon with AMX
    ("avx2 fma", "float32"),  # no native bf16: never
    ("", "float32"),  # no /proc/cpuinfo (macOS, Windows): fp32
])
def test_auto_precision_on_a_cpu_follows_its_instruction_set(flags, auto, monkeypatch):
    from lab_utils import device

    monkeypatch.setattr(device, "_cpuinfo", lambda: {"flags": flags})
    cpu = torch.device("cpu")
    assert device.precision_name(cpu, "auto") == auto
    assert device.precision_name(cpu, "bf16") == "bfloat16"
    assert device.precision_name(cpu, "fp32") == "float32"


def test_a_bf16_run_on_the_cpu_trains_and_records_its_precision(synthetic_dir, tmp_path):
    result = fit(small(synthetic_dir, tmp_path / "bf16", epochs=1, milestones=[],
                       precision="bf16"), progress=False)
    assert result.metrics["precision"] == "bfloat16"
    assert result.history.train_loss.iloc[0] > 0


def test_each_epoch_prints_one_line_of_text_and_an_estimate_before(synthetic_dir, tmp_path,
                                                                   capsys, monkeypatch):
    from lab_utils import progress
    from lab_utils.publish import visible_text

    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # a progress line after every batch
    monkeypatch.setattr(progress, "WARMUP_BATCHES", 1)
    monkeypatch.setattr(progress, "TIMED_BATCHES", 2)
    fit(small(synthetic_dir, tmp_path / "p", epochs=2, milestones=[1], val_size=20))
    raw = capsys.readouterr().out
    assert re.search(r"epoch 1/2: batch 1/\d+, [\d,]+ images/s, [\d.]+ s left in this epoch", raw)
    lines = visible_text(raw).splitlines()
    assert [l for l in lines if "batch 1/" in l] == []  # the epoch line replaced it
    estimate = [i for i, l in enumerate(lines) if l.startswith("Estimated time: about ")]
    epochs = [i for i, l in enumerate(lines) if l.startswith("epoch")]
    assert len(estimate) == 1 and len(epochs) == 2 and estimate[0] < epochs[0]
    assert "for 2 epoch(s) on this machine" in lines[estimate[0]]
    first, last = lines[epochs[0]], lines[epochs[1]]
    assert re.search(r"\| about [\d.]+ (s|min) left$", first)
    assert last.startswith("epoch  2/2 | train loss") and "| val loss" in last
    assert "| lr 1e-03 |" in last and last.endswith(" s")
    metrics = runs.load_metrics(tmp_path / "p")
    assert metrics["estimated_s"] > 0  # how close it came: a committed run, not this test


def test_epoch_line_holds_every_measured_metric_in_a_fixed_order():
    from lab_utils.train import epoch_line
    row = dict(epoch=3, train_loss=1.23456, train_acc=55.555, test_loss=1.5, test_acc=50.0,
               lr=0.001, epoch_time_s=12.34, clean_train_loss=1.1, clean_train_acc=60.0)
    assert epoch_line(row, 15) == ("epoch  3/15 | train loss 1.235 acc 55.55% | clean train "
                                   "loss 1.100 acc 60.00% | test loss 1.500 acc 50.00% | "
                                   "lr 1e-03 | 12.3 s")
    assert epoch_line(row, 15, left_s=150).endswith("| 12.3 s | about 2.5 min left")
    assert epoch_line({**row, "epoch": 15}, 15, left_s=0).endswith("| 12.3 s")
    with_val = epoch_line({**row, "val_loss": 2.0, "val_acc": 40.0}, 15)
    assert with_val.index("val loss") < with_val.index("clean train") < with_val.index("test")


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
    """One-cycle is stepped every batch through the optimizer the loop gets, label smoothing
    reaches the loss, and with tta_flip the reported test accuracy and loss are those of
    each image's softmax averaged with its mirror's."""
    import numpy as np

    from lab_utils.data import CIFAR10_MEAN, CIFAR10_STD, load_tensors
    from lab_utils.augment import normalize
    from lab_utils.model import build_model
    from lab_utils.train import train_epoch

    seen = []

    def spy(model, loader, optimizer, criterion, device):
        seen.append((criterion.label_smoothing, type(optimizer.per_batch).__name__))
        return train_epoch(model, loader, optimizer, criterion, device)

    # lr 0.01, not the preset's 0.2: so few images at 0.2 saturate the softmax, and then
    # the flipped and the plain predictions cannot be told apart.
    cfg = small(synthetic_dir, tmp_path / "fast", preset="fast", epochs=2, batch_size=32,
                lr=0.01)
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
        plain = model(x).softmax(1)
        probs = (plain + model(x.flip(3)).softmax(1)) / 2
    # Compared through the saved confidences and the loss, not an accuracy on 40 images:
    # a near-tie computed by other kernels (batching, memory layout) may flip one image.
    preds = runs.load_predictions(result.run_dir)
    assert np.allclose(preds.confidence, probs.max(1).values.numpy(), atol=2e-4)
    assert not np.allclose(preds.confidence, plain.max(1).values.numpy(), atol=2e-4)
    loss = torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels).item()
    plain_loss = torch.nn.functional.nll_loss(plain.clamp_min(1e-12).log(), labels).item()
    assert result.history.test_loss.iloc[-1] == pytest.approx(loss, rel=1e-3)
    assert abs(plain_loss - loss) > 1e-2 * loss  # so the check above can tell them apart


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
    run_dir, two = tmp_path / "full", dict(epochs=2, milestones=[1])
    with pytest.raises(runs.RunDirError, match=r"cannot write .*checkpoint.pt: the disk is full\. "
                       r"The run's 1 finished epoch\(s\) .* are kept.*resume=True"):
        fit(small(synthetic_dir, run_dir, **two), progress=False)
    monkeypatch.undo()
    assert len(runs.load_history(run_dir)) == 1  # epoch 1 intact
    resumed = fit(small(synthetic_dir, run_dir, resume=True, **two), progress=False)
    full = fit(small(synthetic_dir, tmp_path / "whole", **two), progress=False)
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


def test_divergence_under_one_cycle_names_the_batch_lr_and_the_peak_to_change(synthetic_dir,
                                                                             tmp_path):
    from lab_utils.train import DivergedError

    cfg = small(synthetic_dir, tmp_path / "oc", preset="fast", epochs=2, lr=1e30,
                momentum=0.0, nesterov=False)
    with pytest.raises(DivergedError) as err:
        fit(cfg, progress=False)
    msg = str(err.value)
    # The lr at the batch that diverged is the warm-up's, far below the peak cfg.lr ...
    lr_at_batch = float(re.search(r"at learning rate ([\d.e+]+)", msg).group(1))
    assert lr_at_batch < cfg.lr / 2
    # ... and what to try is said in the units of the lr parameter, the peak.
    assert "(one-cycle: your lr=1e+30 is its peak)" in msg and "Try lr=0.01 " in msg


def test_the_loop_is_handed_a_watched_loss_that_scales_fp16_gradients_keeping_its_value():
    from lab_utils.train import DivergedError, WatchedLoss

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    watched = WatchedLoss(torch.nn.CrossEntropyLoss(), scaler, torch.device("cpu"))
    w = torch.randn(4, 10, requires_grad=True)
    y = torch.tensor([1, 2, 3, 4])
    loss = watched(w, y)
    plain = torch.nn.functional.cross_entropy(w, y)
    assert loss.item() == pytest.approx(plain.item())
    loss.backward()
    expected = torch.autograd.grad(plain, w)[0] * 1024
    torch.testing.assert_close(w.grad, expected)
    with pytest.raises(DivergedError, match="at batch 2"):
        watched(w * float("inf"), y)


def test_a_loop_that_returns_nonsense_or_trains_nothing_stops_before_the_epoch_is_saved(
        synthetic_dir, tmp_path):
    from lab_utils.train import train_epoch

    def no_step(model, loader, optimizer, criterion, device):
        for x, y in loader:
            criterion(model(x), y).backward()
        return 1.0, 50.0

    def returns(value):
        def loop(model, loader, optimizer, criterion, device):
            train_epoch(model, loader, optimizer, criterion, device)
            return value
        loop.__name__ = "my_train_epoch"
        return loop

    cases = [(no_step, "never called optimizer.step\\(\\)"),
             (lambda *a: (1.0, 50.0), "took no batch from the loader"),
             (returns(None), "returned None; return \\(loss, accuracy in %\\)"),
             (returns((float("nan"), 50.0)), "returned the loss nan"),
             (returns((1.0, 5000.0)), "returned the accuracy 5000.0: a percentage"),
             (returns(torch.tensor([1.0, 2.0, 3.0])), "return \\(loss, accuracy in %\\)")]
    for i, (loop, message) in enumerate(cases):
        with pytest.raises(ConfigError, match=message):
            fit(small(synthetic_dir, tmp_path / f"bad{i}"), progress=False, train_epoch=loop)
        assert not (tmp_path / f"bad{i}" / "history.csv").exists()  # nothing saved as done


def test_a_resumed_run_says_where_it_resumes(synthetic_dir, tmp_path, capsys):
    cut_with_saved_config(synthetic_dir, tmp_path / "r", lambda saved: None)
    capsys.readouterr()
    fit(small(synthetic_dir, tmp_path / "r", epochs=2, milestones=[], resume=True))
    assert "Resuming from epoch 2 of 2: epochs 1-1 are saved." in capsys.readouterr().out


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(synthetic_dir, tmp_path,
                                                                  monkeypatch):
    from lab_utils.model import WeightsUnavailableError

    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError):
        fit(small(synthetic_dir, tmp_path / "never", pretrained=True), progress=False)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ConfigError, match="test_subset=999 does not fit the data"):
        fit(small(synthetic_dir, tmp_path / "never2", test_subset=999), progress=False)
    assert not (tmp_path / "never2").exists()


def test_test_subset_tests_fixed_images_each_epoch_and_all_of_them_at_the_end(synthetic_dir,
                                                                            tmp_path):
    result = fit(small(synthetic_dir, tmp_path / "t", test_subset=20), progress=False)
    h = result.history
    assert h.test_images.tolist() == [20, 20, 40]
    assert len(runs.load_predictions(result.run_dir)) == 40
    assert "(20 of them tested after each epoch but the last)" in result.metrics["data"]


def test_a_last_training_batch_of_one_image_is_left_out_by_both_loaders(synthetic_dir, tmp_path):
    from lab_utils.train import build_batches

    for loader in ("tensor", "dataloader"):
        b = build_batches(small(synthetic_dir, tmp_path / "b", train_subset=33, loader=loader),
                          torch.device("cpu"), torch.Generator())
        sizes = [len(y) for _, y in b.train]
        assert sizes == [16, 16] and len(b.train) == 2, loader


def test_worker_errors_are_explained_mid_epoch_and_the_loader_keeps_its_length():
    from lab_utils.train import WorkerErrorsExplained

    class Dies:
        def __len__(self):
            return 5

        def __iter__(self):
            yield 1
            raise EOFError("worker pipe closed")
    wrapped = WorkerErrorsExplained(Dies(), num_workers=3)
    assert len(wrapped) == 5
    it = iter(wrapped)
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="3 worker processes failed \\(worker pipe closed\\)"):
        next(it)


def test_a_run_to_look_inside_is_found_or_named_with_what_to_run(synthetic_dir, tmp_path,
                                                                 monkeypatch):
    """Notebook 06's run_dir: a missing folder, a folder without checkpoint.pt and an
    unfinished run each get their own message with the command to run; "newest" takes the
    newest finished run under runs/."""
    monkeypatch.chdir(tmp_path)  # outside a repository runs/ is in the user's folder: this test's
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    train = "in notebook 04 set preset = 'quick' and run it"
    with pytest.raises(runs.RunDirError, match="no finished run with a checkpoint under .*"
                       "Train one: in notebook 04"):
        runs.trained_run(runs.NEWEST, train)
    done = fit(small(synthetic_dir, tmp_path / "runs" / "done", epochs=1, milestones=[]),
               progress=False).run_dir
    assert runs.trained_run(runs.NEWEST, train) == done
    with pytest.raises(runs.RunDirError, match="run_dir='runs/typo' does not exist. The runs "
                       "under runs/ are: done. Copy the line notebook 04 printed"):
        runs.trained_run("runs/typo", train)
    (tmp_path / "copied").mkdir()
    for name in ("config.json", "history.csv", "metrics.json", "predictions.csv"):
        (tmp_path / "copied" / name).write_bytes((done / name).read_bytes())
    with pytest.raises(runs.RunDirError, match="holds no checkpoint.pt.*packed"):
        runs.trained_run("copied", train)
    cut_with_saved_config(synthetic_dir, tmp_path / "runs" / "cut", lambda saved: None)
    with pytest.raises(runs.RunDirError, match="is unfinished \\(1 of 2 epochs.*resume = True"):
        runs.trained_run("runs/cut", train)


def test_a_packed_run_has_the_model_and_no_optimizer_state(synthetic_dir, tmp_path):
    import zipfile

    done = fit(small(synthetic_dir, tmp_path / "done", epochs=1, milestones=[]),
               progress=False).run_dir
    out = runs.pack(done, tmp_path / "done.zip")
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == sorted(f"done/{n}" for n in (
            "config.json", "history.csv", "metrics.json", "predictions.csv", "checkpoint.pt"))
        z.extractall(tmp_path / "unpacked")
    state = runs.load_checkpoint(tmp_path / "unpacked" / "done")
    assert set(state) == {"model", "history", "epoch", "commit"}
    assert runs.trained_run(tmp_path / "unpacked" / "done", "x") == tmp_path / "unpacked" / "done"
    full = (done / "checkpoint.pt").stat().st_size
    assert out.stat().st_size < 0.7 * full  # no momentum buffers: about half a checkpoint
