"""`fit`: the lab's training loop, with run directories, resume and the fast data path.

Metric definitions are the lab's: train loss and accuracy are accumulated over the
batches of an epoch in train mode (dropout on, augmented images, weights changing);
test loss and accuracy are measured in eval mode after the epoch. Optionally a fixed
subset of training images is also measured in eval mode without augmentation ("clean
train accuracy"), the direct test of the lab's open question (notebook 05).

The epoch's loop has the lab's shape, `train_epoch(model, loader, optimizer, criterion,
device) -> (loss, accuracy)`, and a student's own loop of that shape trains every preset:
`fit` hands it a model that runs in the run's precision, an optimizer whose `step` also
steps a per-batch schedule (one-cycle) and scales fp16 gradients, and a criterion that
stops the run at the first batch whose loss is not finite.
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
from .config import EVAL_BATCH_SIZE, LAB, NUM_CLASSES, ConfigError, LabConfig, validate
from .device import autocast_for, machine, precision_name, select_device, uses_channels_last
from .data import (CLEAN_SUBSET_SEED, TEST_SUBSET_SEED, TensorLoader,
                   dataset_labels, fixed_subset, load_datasets, load_tensors, test_transform,
                   val_split)
from .model import build_model
from .progress import EpochProgress, RunEstimate, duration, status

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

    def explained(self, epoch: int, n_batches: int, lr_now: float, cfg: LabConfig, done: int,
                  run_dir: Path) -> "DivergedError":
        """The same error with `DIVERGED_MESSAGE`: where it happened, the learning rate at
        that batch, what is kept, and a value of the `lr` parameter that can work (the
        lab's 0.01, or a tenth of yours at or below it)."""
        peak = (f" (one-cycle: your lr={cfg.lr:g} is its peak)"
                if cfg.schedule == "onecycle" else "")
        return DivergedError(self.batch, self.loss, DIVERGED_MESSAGE.format(
            epoch=epoch, batch=self.batch, n_batches=n_batches, loss=self.loss, lr=lr_now,
            peak=peak, done=done, run_dir=runs.display_path(run_dir), lr_given=cfg.lr,
            suggest=LAB.lr if cfg.lr > LAB.lr else cfg.lr / 10))


DIVERGED_MESSAGE = (
    "Training diverged in epoch {epoch}, batch {batch} of {n_batches}: the loss became "
    "{loss} at learning rate {lr:.3g}{peak}. The {done} finished epoch(s) before it are "
    "saved in {run_dir}. Try lr={suggest:.3g} (the lab's 0.01 trains this model; at or "
    "below it, a tenth of your lr={lr_given:g}), or a warm-up (schedule='onecycle'); "
    "check the data for broken images if the loss was large from the start.")


def evaluate(model: nn.Module, batches: Iterable, device: torch.device, tta_flip: bool,
             precision: str, keep_predictions: bool = False
             ) -> tuple[float, float, pd.DataFrame | None]:
    """Mean cross-entropy and accuracy (%) of `model` in eval mode over `batches`.

    With `tta_flip`, each image's softmax is averaged with its mirror image's, and the loss
    is the cross-entropy of that average. With `keep_predictions`, also returns a DataFrame
    of true label, predicted label and confidence (the top softmax probability) per image,
    in loader order.
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


def train_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                criterion: nn.Module, device: torch.device) -> tuple[float, float]:
    """One epoch of training: the lab's `train(epoch)`. Returns the epoch's loss (the mean
    over its images) and accuracy (%), accumulated over its batches in train mode.

    `fit` passes the run's precision in `model`, a per-batch schedule in `optimizer.step`
    and the check for a diverging loss in `criterion`, so this loop is the same for every
    preset; the library's checks compare a student's loop with it.
    """
    model.train()  # Dropout on, BatchNorm normalises with each batch's statistics
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        # Sums stay tensors: reading a GPU number every batch would stall the GPU.
        loss_sum += loss.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    return float(loss_sum) / max(n, 1), 100.0 * float(correct) / max(n, 1)


class InPrecision(nn.Module):
    """`model` run under the run's autocast (bf16 or fp16), returning fp32 outputs, so that
    a loop written in plain fp32 PyTorch trains in the run's precision."""

    def __init__(self, model: nn.Module, autocast):
        super().__init__()
        self.model, self.autocast = model, autocast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast:
            return self.model(x).float()


class StepsSchedule:
    """The optimizer a loop sees: `step` also unscales fp16 gradients (the scaler) and
    steps a per-batch schedule, and this epoch's steps are counted (a loop that never steps
    has trained nothing). Everything else is the wrapped optimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, per_batch, scaler):
        self.optimizer, self.per_batch, self.scaler, self.steps = optimizer, per_batch, scaler, 0

    def step(self, closure=None) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.per_batch is not None:
            self.per_batch.step()
        self.steps += 1

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


class WatchedLoss:
    """The criterion a loop sees: the run's loss, whose every batch is checked for NaN or
    infinity (`DivergedError` names the first such batch), and whose gradient is scaled for
    fp16 while its value stays the true loss."""

    def __init__(self, criterion: nn.Module, scaler, device: torch.device):
        self.criterion, self.scaler = criterion, scaler
        self.check_every = 1 if device.type == "cpu" else 50  # a check is a GPU sync
        self.losses: list[torch.Tensor] = []
        self.label_smoothing = criterion.label_smoothing

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(out, y)
        self.losses.append(loss.detach())
        if len(self.losses) % self.check_every == 0:
            self.check()
        if self.scaler.is_enabled():
            scaled = self.scaler.scale(loss)
            loss = loss.detach() + (scaled - scaled.detach())  # value: loss; gradient: scaled
        return loss

    def check(self) -> None:
        """Raise `DivergedError` naming the first batch so far whose loss is not finite."""
        if not self.losses:
            return
        finite = torch.isfinite(torch.stack(self.losses))
        if not finite.all():
            first = int((~finite).nonzero()[0])
            raise DivergedError(first + 1, self.losses[first].item())


def for_the_loop(cfg: LabConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                 per_batch, device: torch.device
                 ) -> tuple[InPrecision, StepsSchedule, WatchedLoss]:
    """What an epoch's loop is handed (module docstring): `model` in the run's precision
    (and captured, where `capture` says so; its weights stay `model`'s), the optimizer that
    also steps `per_batch`, and the watched loss with the run's label smoothing."""
    autocast, scaler = autocast_for(device, cfg.precision)
    return (InPrecision(for_training(model, device, cfg.capture), autocast),
            StepsSchedule(optimizer, per_batch, scaler),
            WatchedLoss(nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), scaler,
                        device))


@dataclass
class Batches:
    """What `build_batches` returns: the loaders of one run and a description of the data;
    `test` is the per-epoch test pass (a fixed subset with `test_subset`), `final_test` the
    last epoch's (all test images)."""

    train: Iterable
    test: Iterable
    final_test: Iterable
    val: Iterable | None
    clean: Iterable | None
    description: str
    sizes: dict[str, int]


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
    per_class = torch.bincount(labels, minlength=NUM_CLASSES)
    if cfg.val_size:
        if cfg.val_size // NUM_CLASSES >= int(per_class.min()):
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


def _test_indices(cfg: LabConfig, n_test: int) -> torch.Tensor:
    """The per-epoch test pass's images: all, or a fixed subset of `test_subset`."""
    if cfg.test_subset > n_test:
        raise _too_big("test_subset", cfg.test_subset, f"the test split has {n_test} images; "
                       "use fewer, or 0 to test on all of them every epoch")
    if not cfg.test_subset:
        return torch.arange(n_test)
    return fixed_subset(n_test, cfg.test_subset, seed=TEST_SUBSET_SEED)


def build_batches(cfg: LabConfig, device: torch.device, gen: torch.Generator) -> Batches:
    """The training, test, validation and clean-train batches of a run, on either loader:
    "tensor" (uint8 images on the device, augmented per batch) or "dataloader" (the lab's
    per-image transforms in worker processes). A last training batch of a single image is
    left out of every epoch: BatchNorm cannot normalise one image at layer4's 1x1 map."""
    augment = cfg.augment == "lab"
    nhwc = uses_channels_last(device)
    if cfg.loader == "tensor":
        images, labels = load_tensors(cfg.data_dir, cfg.dataset, "train")
        test_images, test_labels = load_tensors(cfg.data_dir, cfg.dataset, "test")
        train_idx, val_idx, clean_idx = split_indices(cfg, labels)
        test_idx = _test_indices(cfg, len(test_labels))

        def eval_loader(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
            return TensorLoader(x[idx], y[idx], EVAL_BATCH_SIZE, device,
                                channels_last=nhwc) if len(idx) else None

        train = TensorLoader(images[train_idx], labels[train_idx], cfg.batch_size, device,
                             shuffle=True, augment=augment, generator=gen,
                             channels_last=nhwc, padding=cfg.crop_padding, drop_single=True)
        measured = [eval_loader(images, labels, i) for i in (val_idx, clean_idx)]
        all_test = torch.arange(len(test_labels))
        test = eval_loader(test_images, test_labels, test_idx)
        final = test if len(test_idx) == len(all_test) else \
            eval_loader(test_images, test_labels, all_test)
        n_test = len(test_labels)
    else:
        train_ds, test_ds = load_datasets(cfg.data_dir, cfg.dataset, cfg.augment,
                                          cfg.crop_padding)
        # The same images through the test transform, for the measurements (no second
        # load: ImageFolder and CIFAR10 both apply `transform` per item).
        plain_ds = copy.copy(train_ds)
        plain_ds.transform = test_transform()
        train_idx, val_idx, clean_idx = split_indices(cfg, dataset_labels(train_ds))
        n_test = len(test_ds)
        test_idx = _test_indices(cfg, n_test)
        workers = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                       persistent_workers=cfg.num_workers > 0)

        def loader(ds, batch_size: int, **kw) -> Iterable:
            made = DataLoader(ds, batch_size, **workers, **kw)
            return WorkerErrorsExplained(made, cfg.num_workers) if cfg.num_workers else made

        def eval_loader(ds, idx: torch.Tensor) -> Iterable | None:
            return loader(Subset(ds, idx.tolist()), EVAL_BATCH_SIZE) if len(idx) else None

        train = loader(Subset(train_ds, train_idx.tolist()), cfg.batch_size, shuffle=True,
                       generator=gen, drop_last=len(train_idx) % cfg.batch_size == 1)
        measured = [eval_loader(plain_ds, i) for i in (val_idx, clean_idx)]
        final = loader(test_ds, EVAL_BATCH_SIZE)
        test = final if len(test_idx) == n_test else eval_loader(test_ds, test_idx)
    if cfg.dataset == "synthetic":
        data = "generated images (not CIFAR-10)"
    else:
        data = f"CIFAR-10 from {cfg.data_dir}"
    data += f": {len(train_idx)} train / {len(val_idx)} val / {n_test} test images"
    if len(test_idx) < n_test:
        data += f" ({len(test_idx)} of them tested after each epoch but the last)"
    sizes = {"train": len(train_idx), "val": len(val_idx), "clean_train": len(clean_idx),
             "test": len(test_idx), "final_test": n_test}
    return Batches(train, test, final, *measured, data, sizes)


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


def epoch_line(row: dict[str, float], epochs: int, left_s: float | None = None) -> str:
    """One epoch of the history as a line of text (what `fit` prints), with the time the
    run still needs when `left_s` is given."""
    parts = [f"epoch {row['epoch']:>2}/{epochs}",
             f"train loss {row['train_loss']:.3f} acc {row['train_acc']:5.2f}%"]
    for name in ("val", "clean_train", "test"):
        if f"{name}_acc" in row:
            parts.append(f"{name.replace('_', ' ')} loss {row[f'{name}_loss']:.3f} "
                         f"acc {row[f'{name}_acc']:5.2f}%")
    parts += [f"lr {row['lr']:.0e}", f"{row['epoch_time_s']:.1f} s"]
    if left_s is not None and row["epoch"] < epochs:
        parts.append(f"about {duration(left_s)} left")
    return " | ".join(parts)


def make_scheduler(cfg: LabConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """(scheduler, the same scheduler if it steps every batch else None), as `cfg` says:
    the lab's MultiStepLR, stepped once per epoch, or one-cycle, stepped every batch."""
    if cfg.schedule == "onecycle":
        s = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps_per_epoch)
        return s, s
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma), None


def measure_beyond_the_lab(model: nn.Module, batches: Batches, device: torch.device,
                           cfg: LabConfig) -> dict[str, float]:
    """The validation split and the clean-train images in eval mode, and the time it took
    (these change nothing in training)."""
    t0, row = time.perf_counter(), {}
    for name, loader in (("val", batches.val), ("clean_train", batches.clean)):
        if loader is not None:
            row[f"{name}_loss"], row[f"{name}_acc"], _ = evaluate(
                model, loader, device, cfg.tta_flip, cfg.precision)
    if row:
        row["measure_time_s"] = round(time.perf_counter() - t0, 2)
    return row


def _measuring_seconds(model: nn.Module, batches: Batches, device: torch.device,
                       cfg: LabConfig) -> float:
    """An estimate of one epoch's test and other measuring passes, from timing one test
    batch in eval mode (which changes nothing: no gradients, no BatchNorm update)."""
    # fork_rng: a DataLoader's iterator draws its seed from the global generator, which
    # must be where an uninterrupted run has it, for resume to give the same run.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        x, _ = next(iter(batches.test))
    autocast, _ = autocast_for(device, cfg.precision)
    model.eval()
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast:
        for _ in range(2 if cfg.tta_flip else 1):
            model(x.to(device)).float().sum().item()  # .item(): wait for the device
    per_image = (time.perf_counter() - t0) / len(x)
    sizes = batches.sizes
    return per_image * (sizes["test"] + sizes["val"] + sizes["clean_train"])


def _checked(name: str, got: Any, progress: EpochProgress, optimizer: StepsSchedule,
             epoch: int) -> tuple[float, float]:
    """The (loss, accuracy) a loop returned, or `ConfigError` saying what is wrong with it,
    so that a run is never saved with an epoch that trained nothing or a broken number."""
    where = f"{name} (passed to fit as train_epoch) in epoch {epoch}"
    if progress.batches == 0:
        raise ConfigError(f"{where} took no batch from the loader: loop `for x, y in loader:`")
    if optimizer.steps == 0:
        raise ConfigError(f"{where} never called optimizer.step(): nothing was trained; "
                          "call it once per batch, after loss.backward()")
    try:
        loss, acc = (float(v) for v in got)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} returned {got!r}; return (loss, accuracy in %), two "
                          "numbers, e.g. return running_loss / len(loader), "
                          "100 * correct / total") from None
    if not np.isfinite(loss) or loss < 0:
        raise ConfigError(f"{where} returned the loss {loss!r}: a finite number >= 0 (the "
                          "mean of the batch losses)")
    if not 0 <= acc <= 100:
        raise ConfigError(f"{where} returned the accuracy {acc!r}: a percentage in 0..100 "
                          "(100 * correct / total)")
    return loss, acc


def fit(cfg: LabConfig, progress: bool = True, on_epoch_end: Callable | None = None,
        train_epoch: Callable = train_epoch) -> RunResult:
    """Train the lab's model as `cfg` says: each epoch `train_epoch`, the schedule's step,
    the test pass (`evaluate`), the measurements beyond the lab, then the epoch saved.

    `train_epoch(model, loader, optimizer, criterion, device)` is the epoch's loop,
    replaceable by your own of the same shape (notebook 04); what it returns is checked.
    The run directory's life is `lab_utils.runs`: a directory holding a run is never
    overwritten, every finished epoch is saved at once (an interrupt keeps it), and
    `resume=True` continues from the checkpoint to the same history as an uninterrupted
    run (on the CPU, bit for bit). A NaN or infinite loss stops the run with `DivergedError`
    saying where and what to try. With `progress`, an estimate of the run's time early in
    its first epoch, a progress line within each epoch and one line per finished epoch;
    `on_epoch_end` is called with each row. Where `capture` says so (CUDA only), training
    runs through CUDA graphs (`lab_utils.capture`); the test pass is eager either way.
    """
    run = runs.start(validate(cfg))
    if run.finished:
        return _finished(run.run_dir, cfg.epochs, progress)
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    # The model first: missing ImageNet weights should fail before the data is loaded.
    model, optimizer = model_and_optimizer(cfg, device)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    batches = build_batches(cfg, device, data_gen)
    scheduler, per_batch = make_scheduler(cfg, optimizer, len(batches.train))
    history = _restore(run.checkpoint, model, optimizer, scheduler, data_gen)
    train_model, stepping, criterion = for_the_loop(cfg, model, optimizer, per_batch, device)
    skips_before = cudagraph_skips()  # a process-wide count: this run's are the difference
    runs.begin(run, cfg)  # only now: a run that failed to start leaves no folder behind
    if progress:
        print(f"{batches.description}; run directory {runs.display_path(run.run_dir)}")
        if history:
            print(f"Resuming from epoch {len(history) + 1} of {cfg.epochs}: epochs 1-"
                  f"{len(history)} are saved.")
    estimate = RunEstimate(cfg.epochs, len(history) + 1,
                           _measuring_seconds(model, batches, device, cfg), progress)
    name, first = getattr(train_epoch, "__name__", "train_epoch"), len(history) + 1
    preds, times = None, []
    with runs.report_interrupt(run.run_dir, history):
        for epoch in range(first, cfg.epochs + 1):
            t0, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            loader = EpochProgress(batches.train, epoch, cfg.epochs, progress,
                                   estimate if epoch == first else None)
            stepping.steps, criterion.losses = 0, []
            try:
                got = train_epoch(train_model, loader, stepping, criterion, device)
                criterion.check()
            except DivergedError as err:
                raise err.explained(epoch, len(batches.train), optimizer.param_groups[0]["lr"],
                                    cfg, len(history), run.run_dir) from None
            train_loss, train_acc = _checked(name, got, loader, stepping, epoch)
            if per_batch is None:
                scheduler.step()
            last = epoch == cfg.epochs
            test_loss, test_acc, preds = evaluate(model, batches.final_test if last else
                                                  batches.test, device, cfg.tta_flip,
                                                  cfg.precision, last)
            row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                       test_loss=test_loss, test_acc=test_acc, lr=lr,
                       epoch_time_s=round(time.perf_counter() - t0, 2))
            if cfg.test_subset:
                row["test_images"] = batches.sizes["final_test" if last else "test"]
            history.append({**row, **measure_beyond_the_lab(model, batches, device, cfg)})
            runs.save_epoch(run.run_dir, history, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(data_gen), "epoch": epoch,
                "commit": run.commit})
            times.append(time.perf_counter() - t0)
            if progress:
                status("")
                print("\r" + epoch_line(history[-1], cfg.epochs, estimate.left(times, epoch)),
                      flush=True)
            if on_epoch_end is not None:
                on_epoch_end(history[-1])

    if preds is None:  # resumed after the last epoch was saved but before the run ended
        _, _, preds = evaluate(model, batches.final_test, device, cfg.tta_flip, cfg.precision,
                               True)
    metrics = final_metrics(cfg, history, device, batches.description,
                            captured=train_model.model is not model,
                            skips=cudagraph_skips() - skips_before)
    if estimate.announced is not None:
        metrics["estimated_s"] = round(estimate.announced, 1)
    runs.finish(run.run_dir, preds, metrics, commit=run.commit)
    return RunResult(run.run_dir, pd.DataFrame(history), metrics)


def _finished(run_dir: Path, epochs: int, progress: bool) -> RunResult:
    """A run that had already ended, read back (with its epochs printed, as `fit` would)."""
    result = RunResult(run_dir, runs.load_history(run_dir), runs.load_metrics(run_dir))
    if progress:
        print(f"{runs.display_path(run_dir)} holds a finished run; its epochs:")
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
        "captured": captured, "data": data, "seed": cfg.seed, "preset": cfg.preset,
    }
    if captured:
        metrics["cudagraph_skips"] = skips  # 0: every graph this run compiled was captured
    return metrics
