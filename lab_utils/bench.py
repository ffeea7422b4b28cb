"""Speed benchmark: the fast tensor path against the lab's per-image DataLoader path.

    python -m lab_utils.bench --data-dir data/cifar10-jpeg

Measures on the current device, with the lab's model and batch size, after warm-up, in
fp32 and in bf16 autocast: training images/s of the model alone on a batch already in
memory, of the fast tensor path and of the lab's per-image DataLoader path (loading and
augmentation included); and, unless `--no-epoch`, one full epoch (train and test) for
each path. On CUDA it measures the model alone and the tensor path again with the
training step captured as CUDA graphs (`capture="on"`, lab_utils.capture), in the precision
"auto" picks (images/s only). Also names the precision the automatic rule
("auto") picks here, so that a reader can check it is the faster one. Prints one JSON
object. Timings live here, never in tests.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import torch

from .config import DATASETS, LAB, LOADERS, make_config
from .device import describe_device, precision_name, select_device, uses_channels_last
from .progress import EpochProgress
from .train import build_batches, evaluate, for_the_loop, model_and_optimizer, train_epoch

# What the benchmark compares; fp16 needs a GPU and is not measured.
BENCH_PRECISIONS = ("fp32", "bf16")  # the precisions measured (config.PRECISIONS: those allowed)
WARMUP, STEPS = 5, 30  # batches before timing, batches timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loop_objects(cfg, device):
    """The model, optimizer and criterion `fit` hands the loop, for `cfg` on `device`."""
    model, opt = model_and_optimizer(cfg, device)
    return for_the_loop(cfg, model, opt, None, device)


def images_per_second(cfg, device, batches, warmup: int, steps: int) -> float:
    """Training images/s over `steps` batches of `batches` (loading included), after
    `warmup` batches of the same epoch."""
    model, opt, criterion = _loop_objects(cfg, device)
    it = iter(batches)
    train_epoch(model, itertools.islice(it, warmup), opt, criterion, device)
    seen = 0

    def counted():
        nonlocal seen
        for x, y in itertools.islice(it, steps):
            seen += len(y)
            yield x, y

    _sync(device)
    t0 = time.perf_counter()
    train_epoch(model, counted(), opt, criterion, device)
    _sync(device)
    return seen / (time.perf_counter() - t0)


def model_images_per_second(cfg, device, warmup: int, steps: int) -> float:
    """Training images/s of the model alone, on one batch already on the device."""
    model, opt, criterion = _loop_objects(cfg, device)
    x = torch.randn(cfg.batch_size, 3, 32, 32, device=device)
    if uses_channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)
    batches = [(x, y)] * (warmup + steps)
    train_epoch(model, batches[:warmup], opt, criterion, device)
    _sync(device)
    t0 = time.perf_counter()
    train_epoch(model, batches[warmup:], opt, criterion, device)
    _sync(device)
    return cfg.batch_size * steps / (time.perf_counter() - t0)


def epoch_seconds(cfg, device, train_b, test_b) -> float:
    """Wall time of one full lab epoch: training over the whole split, then the test pass."""
    model, opt, criterion = _loop_objects(cfg, device)
    _sync(device)
    t0 = time.perf_counter()
    train_epoch(model, train_b, opt, criterion, device)
    evaluate(model.model, test_b, device, False, cfg.precision)
    _sync(device)
    return time.perf_counter() - t0


def progress_overhead_us(batches: int = 20_000) -> float:
    """Microseconds that `EpochProgress` adds to each batch (its clock reading and counts):
    plain Python on the host, the same whatever device trains, set against a training
    step of milliseconds."""
    data = [((), range(128))] * batches
    t0 = time.perf_counter()
    for _ in data:
        pass
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in EpochProgress(data, 1, 1, show=False):
        pass
    return round((time.perf_counter() - t0 - plain) / batches * 1e6, 2)


def run(data_dir: str, dataset: str = LAB.dataset, device: str = LAB.device,
        num_workers: int = LAB.num_workers, warmup: int = WARMUP, steps: int = STEPS,
        full_epoch: bool = True, loaders: tuple[str, ...] = LOADERS) -> dict:
    """Run the benchmark and return its figures as a dict (what `main` prints as JSON)."""
    base = make_config(data_dir=data_dir, dataset=dataset, device=device,
                       num_workers=num_workers, pretrained=False, clean_train_subset=0,
                       capture="off")
    dev = select_device(base.device)
    result = {
        "device": str(dev), "device_name": describe_device(dev), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch_size": base.batch_size,
        "auto_precision": precision_name(dev, "auto"),
        "channels_last": uses_channels_last(dev), "dataloader_workers": num_workers,
        "progress_overhead_us_per_batch": progress_overhead_us(),
        "model_only_img_s": {p: round(model_images_per_second(
            dataclasses.replace(base, precision=p), dev, warmup, steps)) for p in BENCH_PRECISIONS},
    }
    # The fast path and the lab's per-image path (the lab computed in fp32), each in both
    # precisions: the automatic rule must pick the faster one on every machine.
    for loader, precision in itertools.product(loaders, BENCH_PRECISIONS):
        cfg = dataclasses.replace(base, loader=loader, precision=precision)
        batches = build_batches(cfg, dev, torch.Generator().manual_seed(0))
        figures = {"train_img_s": round(images_per_second(cfg, dev, batches.train, warmup,
                                                          steps))}
        if full_epoch:
            figures["epoch_s"] = round(epoch_seconds(cfg, dev, batches.train, batches.test), 1)
        result[f"{loader}_{precision}"] = figures
        result["data"] = batches.description
    if dev.type == "cuda":
        # The captured step, in the precision "auto" picks: the first warm-up batches
        # compile and record it, so the images/s are steady-state. (Whole epochs with
        # compilation included are the training runs' business: results/gpu/run.sh.)
        cfg = dataclasses.replace(base, loader="tensor", capture="on")
        batches = build_batches(cfg, dev, torch.Generator().manual_seed(0))
        result["captured"] = {
            "precision": precision_name(dev, "auto"),
            "model_only_img_s": round(model_images_per_second(cfg, dev, warmup, steps)),
            "tensor_train_img_s": round(images_per_second(cfg, dev, batches.train, warmup,
                                                          steps))}
    if full_epoch and set(loaders) == set(LOADERS):
        result["epoch_ratio_tensor_over_dataloader_fp32"] = round(
            result["tensor_fp32"]["epoch_s"] / result["dataloader_fp32"]["epoch_s"], 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=LAB.data_dir)
    parser.add_argument("--dataset", default=LAB.dataset, choices=DATASETS)
    parser.add_argument("--device", default=LAB.device)
    parser.add_argument("--num-workers", type=int, default=LAB.num_workers)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--no-epoch", action="store_true", help="skip the full-epoch timings")
    parser.add_argument("--loaders", default=",".join(LOADERS),
                        help="the data paths to measure, comma-separated")
    args = parser.parse_args(argv)
    loaders = tuple(args.loaders.split(","))
    if not loaders or set(loaders) - set(LOADERS):
        parser.error(f"--loaders {args.loaders!r}: name {' or '.join(LOADERS)}, or both")
    print(json.dumps(run(args.data_dir, args.dataset, args.device, args.num_workers,
                         args.warmup, args.steps, not args.no_epoch, loaders)))


if __name__ == "__main__":
    main()
