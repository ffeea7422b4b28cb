"""`fit`: the lab's training loop, with run directories, resume and the fast data path.

Metric definitions are the lab's: train loss and accuracy are accumulated over the
batches of an epoch in train mode (dropout on, augmented images, weights changing);
test loss and accuracy are measured in eval mode after the epoch. Optionally a fixed
subset of training images is also measured in eval mode without augmentation ("clean
train accuracy"), the direct test of the lab's open question (notebook 05).
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from . import runs
from .capture import cudagraph_skips, for_training
from .config import EVAL_BATCH_SIZE, ConfigError, LabConfig, validate
from .device import autocast_for, machine, precision_name, select_device, uses_channels_last
from .data import (CLASSES, CLEAN_SUBSET_SEED, SYNTHETIC_DIR, TensorLoader, dataset_labels,
                   fixed_subset, load_datasets, load_tensors, test_transform,
                   val_split)
from .model import build_model

WORKERS_MESSAGE = (
    "The DataLoader's {num_workers} worker processes failed ({error}). This is common in "
    "Jupyter on Windows and macOS: use num_workers=0, or loader='tensor' (the default), "
    "which needs no worker processes.")


@dataclass
class RunResult:
    """What `fit` returns: the run directory, its history and its final metrics."""

    run_dir: Path
    history: pd.DataFrame
    metrics: dict[str, Any]


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


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names where and what to try."""

    def __init__(self, batch: int, loss: float, message: str = ""):
        super().__init__(message or f"the training loss became {loss} at batch {batch}")
        self.batch, self.loss = batch, loss

    def explained(self, epoch: int, n_batches: int, lr: float, done: int, run_dir: Path
                  ) -> "DivergedError":
        """The same error with `DIVERGED_MESSAGE`: where it happened, what is kept, and a
        learning rate that can work (the lab's 0.01, or a tenth of one at or below it)."""
        return DivergedError(self.batch, self.loss, DIVERGED_MESSAGE.format(
            epoch=epoch, batch=self.batch, n_batches=n_batches, loss=self.loss, lr=lr,
            done=done, run_dir=runs.shown(run_dir), suggest=0.01 if lr > 0.01 else lr / 10))


def evaluate(model: nn.Module, batches: Iterable, device: torch.device, tta_flip: bool,
             precision: str, keep_predictions: bool = False
             ) -> tuple[float, float, pd.DataFrame | None]:
    """Mean cross-entropy and accuracy (%) of `model` in eval mode over `batches`.

    With `tta_flip`, each image's softmax is averaged with its mirror image's. With
    `keep_predictions`, also returns a DataFrame of true label, predicted label and
    confidence (the top softmax probability) per image, in loader order.
    """
    model.eval()  # Dropout off, BatchNorm uses its running statistics
    autocast, _ = autocast_for(device, precision)
    loss_sum, correct, n, kept = 0.0, 0, 0, []
    with torch.inference_mode():  # no gradients are needed to measure
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            with autocast:
                probs = model(x).float().softmax(1)
                if tta_flip:
                    probs = (probs + model(x.flip(3)).float().softmax(1)) / 2
            loss_sum += nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum")
            confidence, pred = probs.max(1)
            correct += (pred == y).sum()
            n += len(y)
            if keep_predictions:
                kept.append(torch.stack([y.float(), pred.float(), confidence]).T.cpu())
    preds = None
    if keep_predictions:
        arr = torch.cat(kept).numpy()
        preds = pd.DataFrame({"index": np.arange(len(arr)), "true": arr[:, 0].astype(int),
                              "pred": arr[:, 1].astype(int), "confidence": arr[:, 2].round(5)})
    return float(loss_sum) / n, 100.0 * float(correct) / n, preds


def train_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer,
                criterion: nn.Module, device: torch.device, scheduler_per_batch, precision: str
                ) -> tuple[float, float]:
    """One epoch of training in train mode: the lab's loop. Returns the loss and accuracy
    (%) accumulated over the epoch's batches, the lab's definition of train metrics.

    `scheduler_per_batch`, if given, is stepped after every batch (one-cycle); a
    per-epoch scheduler is the caller's. Raises `DivergedError` naming the first batch
    whose loss is NaN or infinite.
    """
    model.train()  # Dropout on, BatchNorm normalises with each batch's statistics
    autocast, scaler = autocast_for(device, precision)
    loss_sum, correct, n, losses = 0.0, 0, 0, []
    for x, y in batches:
        if len(y) < 2:
            # BatchNorm cannot normalise one sample at layer4's 1x1 feature map; a last
            # batch of one is skipped instead of crashing the epoch.
            continue
        x, y = x.to(device), y.to(device)
        with autocast:
            out = model(x)
            loss = criterion(out, y)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler_per_batch is not None:
            scheduler_per_batch.step()
        # Sums stay tensors: reading a GPU number every batch would stall the GPU.
        loss_sum += loss.detach().float() * len(y)
        correct += (out.argmax(1) == y).sum()
        n += len(y)
        losses.append(loss.detach())
        if device.type == "cpu" or len(losses) % 50 == 0:  # a check is a GPU sync
            _check_finite(losses)
    _check_finite(losses)
    return float(loss_sum) / max(n, 1), 100.0 * float(correct) / max(n, 1)


def _check_finite(losses: list[torch.Tensor]) -> None:
    finite = torch.isfinite(torch.stack(losses)) if losses else torch.ones(0, dtype=torch.bool)
    if not finite.all():
        first = int((~finite).nonzero()[0])
        raise DivergedError(first + 1, losses[first].item())


@dataclass
class Batches:
    """What `build_batches` returns: the loaders of one run and a description of the data."""

    train: Iterable
    test: Iterable
    val: Iterable | None
    clean: Iterable | None
    description: str


def _too_big(name: str, value: int, what: str) -> ConfigError:
    return ConfigError(f"parameter {name}={value} does not fit the data: {what}")


def split_indices(cfg: LabConfig, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
    """(train, validation, clean-train) indices into the training split, as `cfg` says.

    The validation images are held out first (class-balanced, the same for every run);
    `train_subset` is drawn from the rest, and the clean-train images from what is trained
    on (at most `clean_train_subset`; all of them when there are fewer). Raises
    `ConfigError` naming the parameter when a size does not fit the data found.
    """
    n_total = len(labels)
    per_class = torch.bincount(labels, minlength=len(CLASSES))
    if cfg.val_size:
        if cfg.val_size // len(CLASSES) >= int(per_class.min()):
            raise _too_big("val_size", cfg.val_size, f"the training split has {n_total} images, "
                           f"{int(per_class.min())} in its smallest class; hold out fewer "
                           "(e.g. a tenth) so that every class keeps training images")
        train_idx, val_idx = val_split(labels, cfg.val_size)
    else:
        train_idx, val_idx = torch.arange(n_total), torch.zeros(0, dtype=torch.long)
    if cfg.train_subset:
        if cfg.train_subset > len(train_idx):
            raise _too_big("train_subset", cfg.train_subset, f"only {len(train_idx)} training "
                           f"images are left (split: {n_total}, val_size={cfg.val_size}); "
                           "use a smaller subset or 0 for all of them")
        train_idx = train_idx[fixed_subset(len(train_idx), cfg.train_subset)]
    if cfg.batch_size > len(train_idx):
        raise _too_big("batch_size", cfg.batch_size, f"only {len(train_idx)} images are "
                       "trained on; use a batch no larger than that")
    clean_idx = torch.zeros(0, dtype=torch.long)
    if cfg.clean_train_subset:
        n_clean = min(cfg.clean_train_subset, len(train_idx))
        clean_idx = train_idx[fixed_subset(len(train_idx), n_clean, seed=CLEAN_SUBSET_SEED)]
    return train_idx, val_idx, clean_idx


def build_batches(cfg: LabConfig, device: torch.device, gen: torch.Generator) -> Batches:
    """The training, test, validation and clean-train batches of a run, on either loader:
    "tensor" (uint8 images on the device, augmented per batch) or "dataloader" (the lab's
    per-image transforms in worker processes)."""
    augment = cfg.augment == "lab"
    nhwc = uses_channels_last(device)
    if cfg.loader == "tensor":
        images, labels = load_tensors(cfg.data_dir, cfg.dataset, "train")
        test_images, test_labels = load_tensors(cfg.data_dir, cfg.dataset, "test")
        train_idx, val_idx, clean_idx = split_indices(cfg, labels)

        def measure(idx: torch.Tensor) -> TensorLoader | None:
            return TensorLoader(images[idx], labels[idx], EVAL_BATCH_SIZE, device,
                                channels_last=nhwc) if len(idx) else None

        train = TensorLoader(images[train_idx], labels[train_idx], cfg.batch_size, device,
                             shuffle=True, augment=augment, generator=gen,
                             channels_last=nhwc, padding=cfg.crop_padding)
        test = TensorLoader(test_images, test_labels, EVAL_BATCH_SIZE, device,
                            channels_last=nhwc)
        n_test = len(test_labels)
    else:
        train_ds, test_ds = load_datasets(cfg.data_dir, cfg.dataset, cfg.augment,
                                          cfg.crop_padding)
        # The same images through the test transform, for the measurements (no second
        # load: ImageFolder and CIFAR10 both apply `transform` per item).
        plain_ds = copy.copy(train_ds)
        plain_ds.transform = test_transform()
        train_idx, val_idx, clean_idx = split_indices(cfg, dataset_labels(train_ds))
        workers = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                       persistent_workers=cfg.num_workers > 0)

        def loader(ds, batch_size: int, **kw) -> Iterable:
            made = DataLoader(ds, batch_size, **workers, **kw)
            return WorkerErrorsExplained(made, cfg.num_workers) if cfg.num_workers else made

        def measure(idx: torch.Tensor) -> Iterable | None:
            return loader(Subset(plain_ds, idx.tolist()), EVAL_BATCH_SIZE) if len(idx) else None

        train = loader(Subset(train_ds, train_idx.tolist()), cfg.batch_size, shuffle=True,
                       generator=gen)
        test = loader(test_ds, EVAL_BATCH_SIZE)
        n_test = len(test_ds)
    if cfg.dataset == "synthetic":
        data = f"generated images (not CIFAR-10) from {SYNTHETIC_DIR}"
    else:
        data = f"CIFAR-10 from {cfg.data_dir}"
    data += f": {len(train_idx)} train / {len(val_idx)} val / {n_test} test images"
    return Batches(train, test, measure(val_idx), measure(clean_idx), data)


class WorkerErrorsExplained:
    """A DataLoader whose worker processes' failures raise `WORKERS_MESSAGE` (what to
    change) instead of multiprocessing's own error."""

    def __init__(self, loader: DataLoader, num_workers: int):
        self.loader, self.num_workers = loader, num_workers

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        try:
            yield from self.loader
        except (RuntimeError, BrokenPipeError, EOFError, AttributeError) as err:
            raise RuntimeError(WORKERS_MESSAGE.format(num_workers=self.num_workers,
                                                      error=err)) from err


def model_and_optimizer(cfg: LabConfig, device: torch.device
                        ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The lab's model on `device` (channels_last where that is faster) and its SGD
    optimizer, as `cfg` says; on CUDA with cuDNN's autotuner and the fused SGD kernel."""
    model = build_model(cfg)
    model = model.to(device)
    if uses_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    cuda = device.type == "cuda"
    if cuda:
        # Time each convolution's algorithms once per shape and keep the fastest.
        torch.backends.cudnn.benchmark = True
    # On CUDA one fused kernel updates every weight: one launch instead of one per tensor.
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                                fused=True if cuda else None)
    return model, optimizer


def epoch_line(row: dict[str, float], epochs: int) -> str:
    """One epoch of the history as a line of text (what `fit` prints)."""
    parts = [f"epoch {row['epoch']:>2}/{epochs}",
             f"train loss {row['train_loss']:.3f} acc {row['train_acc']:5.2f}%"]
    for name in ("val", "clean_train", "test"):
        if f"{name}_acc" in row:
            parts.append(f"{name.replace('_', ' ')} loss {row[f'{name}_loss']:.3f} "
                         f"acc {row[f'{name}_acc']:5.2f}%")
    parts += [f"lr {row['lr']:.0e}", f"{row['epoch_time_s']:.1f} s"]
    return " | ".join(parts)


DIVERGED_MESSAGE = (
    "Training diverged in epoch {epoch}, batch {batch} of {n_batches}: the loss became "
    "{loss} at learning rate {lr:.3g}. The {done} finished epoch(s) before it are saved in "
    "{run_dir}. Try lr={suggest:.3g} (the lab's 0.01 trains this model; at or below it, a "
    "tenth of the lr that diverged), or a warm-up (schedule='onecycle'); "
    "check the data for broken images if the loss was large from the start.")




def make_scheduler(cfg: LabConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """(scheduler, the same scheduler if it steps every batch else None), as `cfg` says:
    the lab's MultiStepLR, stepped once per epoch, or one-cycle, stepped every batch."""
    if cfg.schedule == "onecycle":
        s = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps_per_epoch)
        return s, s
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma), None


def measure(model: nn.Module, batches: Batches, device: torch.device, cfg: LabConfig
            ) -> dict[str, float]:
    """Beyond the lab: the validation split and the clean-train images in eval mode, and
    the time it took (these change nothing in training)."""
    t0, row = time.perf_counter(), {}
    for name, measured in (("val", batches.val), ("clean_train", batches.clean)):
        if measured is not None:
            row[f"{name}_loss"], row[f"{name}_acc"], _ = evaluate(
                model, measured, device, cfg.tta_flip, cfg.precision)
    if row:
        row["measure_time_s"] = round(time.perf_counter() - t0, 2)
    return row


def fit(cfg: LabConfig, progress: bool = True, on_epoch_end: Callable | None = None,
        train_epoch: Callable = train_epoch) -> RunResult:
    """Train the lab's model as `cfg` says: each epoch `train_epoch`, the schedule's step,
    the test pass (`evaluate`), the measurements beyond the lab, then the epoch saved.

    `train_epoch` is the epoch's loop, replaceable by your own with the same arguments
    (notebook 04). The run directory's life is `lab_utils.runs`: a directory holding a
    run is never overwritten, every finished epoch is saved at once (an interrupt keeps
    it), and `resume=True` continues from the checkpoint to the same history as an
    uninterrupted run (on the CPU, bit for bit). A NaN or infinite loss stops the run with
    `DivergedError` saying where and what to try. With `progress`, one line per epoch;
    `on_epoch_end` is called with each row. Where `capture` says so (CUDA only), training
    runs through CUDA graphs (`lab_utils.capture`); the test pass is eager either way.
    """
    validate(cfg)
    run = runs.start(cfg)
    if run.finished:
        return _finished(run.run_dir, cfg.epochs, progress)
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    # The model first: missing ImageNet weights should fail before the data is loaded.
    model, optimizer = model_and_optimizer(cfg, device)
    train_model = for_training(model, device, cfg.capture)  # CUDA graphs: lab_utils.capture
    skips_before = cudagraph_skips()  # a process-wide count: this run's are the difference
    data_gen = torch.Generator().manual_seed(cfg.seed)
    batches = build_batches(cfg, device, data_gen)
    scheduler, per_batch = make_scheduler(cfg, optimizer, len(batches.train))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history = _restore(run.checkpoint, model, optimizer, scheduler, data_gen)
    if progress:
        print(f"{batches.description}; run directory {runs.shown(run.run_dir)}")

    preds = None
    with runs.interrupt_keeps(run.run_dir, history):
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            t0, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            try:
                train_loss, train_acc = train_epoch(train_model, batches.train, optimizer,
                                                    criterion, device, per_batch, cfg.precision)
            except DivergedError as err:
                raise err.explained(epoch, len(batches.train), lr, len(history),
                                    run.run_dir) from None
            if per_batch is None:
                scheduler.step()
            test_loss, test_acc, preds = evaluate(model, batches.test, device, cfg.tta_flip,
                                                  cfg.precision, epoch == cfg.epochs)
            row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                       test_loss=test_loss, test_acc=test_acc, lr=lr,
                       epoch_time_s=round(time.perf_counter() - t0, 2))
            history.append({**row, **measure(model, batches, device, cfg)})
            runs.save_epoch(run.run_dir, history, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(data_gen), "epoch": epoch,
                "commit": run.commit})
            if progress:
                print(epoch_line(history[-1], cfg.epochs), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(history[-1])

    if preds is None:  # resumed after the last epoch was saved but before the run ended
        _, _, preds = evaluate(model, batches.test, device, cfg.tta_flip, cfg.precision, True)
    metrics = final_metrics(cfg, history, device, batches.description,
                            captured=train_model is not model, skips=cudagraph_skips() - skips_before)
    runs.finish(run.run_dir, preds, metrics, run.commit)
    return RunResult(run.run_dir, pd.DataFrame(history), metrics)


def _finished(run_dir: Path, epochs: int, progress: bool) -> RunResult:
    """A run that had already ended, read back (with its epochs printed, as `fit` would)."""
    result = RunResult(run_dir, runs.load_history(run_dir), runs.load_metrics(run_dir))
    if progress:
        print(f"{runs.shown(run_dir)} holds a finished run; its epochs:")
        for row in result.history.to_dict("records"):
            print(epoch_line(row, epochs))
    return result


def _restore(checkpoint: dict[str, Any] | None, model: nn.Module,
             optimizer: torch.optim.Optimizer, scheduler, data_gen: torch.Generator
             ) -> list[dict[str, float]]:
    """Load a checkpoint's states into the run's objects; its history (empty when new)."""
    if checkpoint is None:
        return []
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    _set_rng_state(checkpoint["rng"], data_gen)
    return list(checkpoint["history"])


def final_metrics(cfg: LabConfig, history: list[dict[str, float]], device: torch.device,
                  data: str, captured: bool, skips: int) -> dict[str, Any]:
    """What `metrics.json` holds: the final epoch's numbers, the times, and the data,
    machine, precision and seed that produced them."""
    final = history[-1]
    metrics = {
        "final_epoch": final["epoch"], "test_acc": final["test_acc"],
        "test_loss": final["test_loss"], "train_acc": final["train_acc"],
        **{k: final[k] for k in ("val_acc", "clean_train_acc") if k in final},
        "wall_time_s": round(sum(r["epoch_time_s"] for r in history), 1),
        "measure_time_s": round(sum(r.get("measure_time_s", 0) for r in history), 1),
        **machine(device), "precision": precision_name(device, cfg.precision),
        "captured": captured, "data": data, "seed": cfg.seed, "recipe": cfg.recipe,
    }
    if captured:
        metrics["cudagraph_skips"] = skips  # 0: every graph this run compiled was captured
    return metrics
