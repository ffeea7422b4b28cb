"""`fit`: the lab's training loop, with run directories, resume and the fast data path.

Metric definitions are the lab's: train loss and accuracy are accumulated over the
batches of an epoch in train mode (dropout on, augmented images, weights changing);
test loss and accuracy are measured in eval mode after the epoch. Optionally a fixed
subset of training images is also measured in eval mode without augmentation ("clean
train accuracy"), the direct test of the lab's open question (notebook 05).
"""
from __future__ import annotations

import platform
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from . import runs
from .config import LAB, ConfigError, LabConfig, config_dict, validate
from .data import (CLASSES, CLEAN_SUBSET_SEED, SYNTHETIC_DIR, TensorLoader, fixed_subset,
                   load_datasets, load_tensors, make_dataloaders, make_loaders)
from .model import build_model

WORKERS_MESSAGE = (
    "The DataLoader's {num_workers} worker processes failed ({error}). This is common in "
    "Jupyter on Windows and macOS: use num_workers=0, or data_path='tensor' (the default), "
    "which needs no worker processes.")

# Fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"resume", "device", "num_workers", "data_dir", "data_path"}


@dataclass
class RunResult:
    """What `fit` returns: the run directory, its history and its final metrics."""

    run_dir: Path
    history: pd.DataFrame
    metrics: dict[str, Any]


def select_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; other names are taken as given."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A human-readable name of `device` for provenance (GPU model, or CPU and threads)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"CPU ({name}, {torch.get_num_threads()} threads)"
    return device.type


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state(data_gen: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": data_gen.get_state(),
             "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_gen.set_state(state["data"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast
    measured faster than fp32 (see lab_utils.bench); elsewhere it would be slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_for(device: torch.device, amp: bool = True):
    """(autocast context, grad scaler or None) for `device`: bf16 on GPUs that support it,
    fp16 with a grad scaler on older GPUs, bf16 on CPUs with native bf16, else fp32."""
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return torch.autocast("cuda", dtype=dtype), scaler
    if amp and device.type == "cpu" and cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16), None
    return nullcontext(), None


def precision_name(device: torch.device, amp: bool = True) -> str:
    """The compute precision `autocast_for` picks on `device`: bfloat16, float16 or float32."""
    autocast, _ = autocast_for(device, amp)
    return str(getattr(autocast, "fast_dtype", "float32")).replace("torch.", "")


def uses_channels_last(device: torch.device) -> bool:
    """channels_last (NHWC) memory layout: faster for convolutions on CUDA and on the CPU
    (oneDNN), measured by lab_utils.bench; MPS keeps the default."""
    return device.type in ("cuda", "cpu")


def evaluate(model: nn.Module, batches: Iterable, device: torch.device,
             tta_flip: bool = False, keep_predictions: bool = False, amp: bool = True
             ) -> tuple[float, float, pd.DataFrame | None]:
    """Mean cross-entropy and accuracy (%) of `model` in eval mode over `batches`.

    With `tta_flip`, each image's softmax is averaged with its mirror image's. With
    `keep_predictions`, also returns a DataFrame of true label, predicted label and
    confidence (the top softmax probability) per image, in loader order.
    """
    model.eval()
    autocast, _ = autocast_for(device, amp)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n, kept = 0, []
    with torch.inference_mode():
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                probs = model(x).float().softmax(1)
                if tta_flip:
                    probs = (probs + model(x.flip(3)).float().softmax(1)) / 2
            loss_sum += nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum")
            conf, pred = probs.max(1)
            correct += (pred == y).sum()
            n += len(y)
            if keep_predictions:
                kept.append(torch.stack([y.float(), pred.float(), conf]).T.cpu())
    preds = None
    if keep_predictions:
        arr = torch.cat(kept).numpy()
        preds = pd.DataFrame({"index": np.arange(len(arr)), "true": arr[:, 0].astype(int),
                              "pred": arr[:, 1].astype(int), "confidence": arr[:, 2].round(5)})
    return loss_sum.item() / n, 100.0 * correct.item() / n, preds


def train_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer,
                criterion: nn.Module, device: torch.device, scheduler_per_batch=None,
                desc: str = "train", progress: bool = False, amp: bool = True
                ) -> tuple[float, float]:
    """One epoch of training in train mode; returns the loss and accuracy (%) accumulated
    over its batches, the lab's definition of train metrics. `scheduler_per_batch`, if
    given, is stepped after every batch (one-cycle); a per-epoch scheduler is the caller's."""
    model.train()
    autocast, scaler = autocast_for(device, amp)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in tqdm(batches, desc=desc, leave=False, disable=not progress):
        if len(y) < 2:
            # BatchNorm cannot normalise one sample at layer4's 1x1 feature map; a last
            # batch of one is skipped instead of crashing the epoch.
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            out = model(x)
            loss = criterion(out, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler_per_batch is not None:
            scheduler_per_batch.step()
        loss_sum += loss.detach().float() * len(y)
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    return loss_sum.item() / max(n, 1), 100.0 * correct.item() / max(n, 1)


def build_batches(cfg: LabConfig, device: torch.device, gen: torch.Generator):
    """(train, test, clean-train or None, data description) for either data path."""
    augment = cfg.augment == "lab"
    on_gpu = device.type == "cuda"
    nhwc = uses_channels_last(device)
    if cfg.data_path == "tensor":
        train = load_tensors(cfg.data_dir, cfg.dataset, "train")
        test = load_tensors(cfg.data_dir, cfg.dataset, "test")
        if cfg.train_subset:
            idx = fixed_subset(len(train[1]), cfg.train_subset)
            train = (train[0][idx], train[1][idx])
        train_b, test_b = make_loaders(train, test, cfg.batch_size, device, augment, gen,
                                       channels_last=nhwc, padding=cfg.crop_padding)
        clean_b = None
        if cfg.clean_train_subset:
            idx = fixed_subset(len(train[1]), cfg.clean_train_subset, seed=CLEAN_SUBSET_SEED)
            clean_b = TensorLoader(train[0][idx], train[1][idx], 512, device,
                                   channels_last=nhwc)
        sizes = (len(train[1]), len(test[1]))
    else:
        train_ds, test_ds = load_datasets(cfg.data_dir, cfg.dataset, cfg.augment,
                                          cfg.crop_padding)
        if cfg.train_subset:
            train_ds = Subset(train_ds, fixed_subset(len(train_ds), cfg.train_subset).tolist())
        train_b, test_b = make_dataloaders(train_ds, test_ds, cfg.batch_size, cfg.num_workers,
                                           gen, pin_memory=on_gpu)
        clean_b = None
        if cfg.clean_train_subset:
            clean_ds, _ = load_datasets(cfg.data_dir, cfg.dataset, "none")
            if cfg.train_subset:
                clean_ds = Subset(clean_ds, train_ds.indices)
            clean_ds = Subset(clean_ds, fixed_subset(len(clean_ds), cfg.clean_train_subset,
                                                     seed=CLEAN_SUBSET_SEED).tolist())
            clean_b = DataLoader(clean_ds, 512, num_workers=cfg.num_workers)
        sizes = (len(train_ds), len(test_ds))
    if cfg.dataset == "synthetic":
        data = f"generated images (not CIFAR-10) from {SYNTHETIC_DIR}"
    else:
        data = f"CIFAR-10 from {cfg.data_dir}"
    data += f": {sizes[0]} train / {sizes[1]} test images"
    return train_b, test_b, clean_b, data


def model_and_optimizer(cfg: LabConfig, device: torch.device
                        ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The lab's model on `device` (channels_last where that is faster) and its SGD
    optimizer, as `cfg` says."""
    model = build_model(len(CLASSES), cfg.dropout, cfg.pretrained, cfg.stem).to(device)
    if uses_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    return model, optimizer


def _check_resume(run_dir: Path, cfg: LabConfig) -> None:
    saved = runs.load_config(run_dir)
    now = config_dict(cfg)
    # A parameter added after the run was started is missing from its config.json; the run
    # used what that parameter's lab default does (new parameters default to old behaviour).
    saved = {**config_dict(LAB), **saved}
    diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved[k] != now[k])
    if diff:
        raise ConfigError(
            f"parameter resume=True but run_dir={str(run_dir)!r} was started with different "
            + ", ".join(f"{k}={saved[k]!r} (now {now[k]!r})" for k in diff)
            + "; resume with the same parameters or choose another run_dir")


def fit(cfg: LabConfig, progress: bool = True,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None) -> RunResult:
    """Train the lab's model as `cfg` says, writing a run directory as it goes.

    After every epoch the history and a checkpoint (model, optimizer, scheduler and all
    RNG states) are replaced atomically, so an interrupt keeps every finished epoch;
    with `resume=True` the run continues from its checkpoint and ends with the same
    history as an uninterrupted run of the same seed (on the CPU, bit for bit). A run
    directory that already holds a run is never overwritten: pass `resume=True` or
    choose another `run_dir`. `on_epoch_end` is called with each epoch's row.
    """
    validate(cfg)
    run_dir = runs.new_run_dir(cfg.run_dir, cfg.recipe)
    checkpoint = None
    if (run_dir / "config.json").is_file():
        if not cfg.resume:
            raise ConfigError(
                f"parameter run_dir={str(run_dir)!r} already holds a run; pass resume=True to "
                "continue it, or choose another run_dir (or '' for a new one)")
        _check_resume(run_dir, cfg)
        if runs.is_finished(run_dir):
            return RunResult(run_dir, runs.load_history(run_dir), runs.load_metrics(run_dir))
        checkpoint = runs.load_checkpoint(run_dir)

    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    # The model first: missing ImageNet weights should fail before the data is loaded.
    model, optimizer = model_and_optimizer(cfg, device)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    train_b, test_b, clean_b, data_desc = build_batches(cfg, device, data_gen)
    per_batch = None
    if cfg.schedule == "onecycle":
        scheduler = per_batch = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=len(train_b))
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    history: list[dict[str, float]] = []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        history = checkpoint["history"]
        _set_rng_state(checkpoint["rng"], data_gen)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.save_json(run_dir / "config.json", config_dict(cfg))

    start_epoch = len(history) + 1
    preds = None
    bar = tqdm(range(start_epoch, cfg.epochs + 1), desc="epochs", disable=not progress,
               initial=start_epoch - 1, total=cfg.epochs)
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            try:
                train_loss, train_acc = train_epoch(model, train_b, optimizer, criterion,
                                                    device, per_batch, f"epoch {epoch}",
                                                    progress, cfg.amp)
            except (RuntimeError, BrokenPipeError, EOFError, AttributeError) as err:
                if cfg.data_path != "dataloader" or cfg.num_workers == 0:
                    raise
                raise RuntimeError(WORKERS_MESSAGE.format(num_workers=cfg.num_workers,
                                                          error=err)) from err
            if per_batch is None:
                scheduler.step()
            test_loss, test_acc, preds = evaluate(model, test_b, device, cfg.tta_flip,
                                                  keep_predictions=epoch == cfg.epochs,
                                                  amp=cfg.amp)
            row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                       test_loss=test_loss, test_acc=test_acc, lr=lr)
            if clean_b is not None:
                row["clean_train_loss"], row["clean_train_acc"], _ = evaluate(
                    model, clean_b, device, cfg.tta_flip, amp=cfg.amp)
            row["epoch_time_s"] = round(time.perf_counter() - t0, 2)
            history.append(row)
            runs.save_checkpoint(run_dir, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history,
                "rng": _rng_state(data_gen), "epoch": epoch})
            runs.save_history(run_dir, history)
            bar.set_postfix(train_acc=f"{train_acc:.1f}", test_acc=f"{test_acc:.1f}")
            if on_epoch_end is not None:
                on_epoch_end(row)
    except KeyboardInterrupt:
        print(f"Interrupted: {len(history)} finished epoch(s) are saved in {run_dir}. "
              "Run again with resume=True and the same run_dir to continue.")
        raise

    if preds is None:  # resumed after the last epoch was saved but before the run ended
        _, _, preds = evaluate(model, test_b, device, cfg.tta_flip, keep_predictions=True,
                               amp=cfg.amp)
    runs.save_predictions(run_dir, preds)
    final = history[-1]
    metrics = {
        "final_epoch": final["epoch"], "test_acc": final["test_acc"],
        "test_loss": final["test_loss"], "train_acc": final["train_acc"],
        "wall_time_s": round(sum(r["epoch_time_s"] for r in history), 1),
        "device": describe_device(device), "torch": torch.__version__,
        "precision": precision_name(device, cfg.amp),
        "data": data_desc, "seed": cfg.seed, "recipe": cfg.recipe,
    }
    runs.save_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, pd.DataFrame(history), metrics)
