"""The lab's defaults, the named recipes, and the checks every entry point runs.

Every notebook, the ablation runner and the benchmark build their settings through
`make_config`, so the lab's numbers live here and nowhere else.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

# The CI-scale switch: pytest sets it (tests/conftest.py) so that every notebook runs on
# a tiny generated dataset for a moment instead of on CIFAR-10 for half an hour.
SMOKE_ENV = "LAB_SMOKE"

DEVICES = ("auto", "cpu", "cuda", "mps")
DATASETS = ("cifar10", "synthetic")
DATA_PATHS = ("tensor", "dataloader")
AUGMENTS = ("lab", "none")
SCHEDULES = ("multistep", "onecycle")
STEMS = ("imagenet", "cifar")
MAX_CROP_PADDING = 16


@dataclass
class LabConfig:
    """Every knob of a training run; the defaults are the lab's recipe (Experiment 7)."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [7, 12])
    gamma: float = 0.1
    dropout: float = 0.5
    pretrained: bool = True
    data_dir: str = "data/cifar10"
    run_dir: str = ""  # empty: a new timestamped folder under runs/
    seed: int = 0
    device: str = "auto"
    num_workers: int = 2
    resume: bool = False
    # Beyond the lab: how data is fed, what is measured, and the faster recipes.
    recipe: str = "lab"
    dataset: str = "cifar10"
    data_path: str = "tensor"
    augment: str = "lab"
    crop_padding: int = 4  # the lab's RandomCrop(32, padding=4); 0 leaves only the flip
    train_subset: int = 0  # 0: the whole training split
    clean_train_subset: int = 0  # >0: also measure this many training images in eval mode
    schedule: str = "multistep"
    nesterov: bool = False
    label_smoothing: float = 0.0
    tta_flip: bool = False
    stem: str = "imagenet"
    amp: bool = True  # mixed precision where it is faster: CUDA, and CPUs with native bf16


LAB = LabConfig()

# Recipes beyond the lab. Each entry overrides the lab's values; whatever a user sets
# explicitly to something other than the lab's default wins over the recipe.
RECIPES: dict[str, dict[str, Any]] = {
    "lab": {},
    # One-cycle LR, larger batches, label smoothing, no dropout and flip test-time
    # augmentation: the usual fast-training tricks (fast.ai, airbench), same model. The
    # flip without the random crop: in 5 epochs the crop regularises more than it helps
    # (each pixel less of padding gained test accuracy; README, Results).
    "fast": dict(epochs=5, batch_size=256, lr=0.2, schedule="onecycle", nesterov=True,
                 label_smoothing=0.1, dropout=0.0, tta_flip=True, crop_padding=0,
                 milestones=[]),
    # The common CIFAR ResNet-18: 3x3 stride-1 stem, no max-pool. About 15x the compute
    # of the lab's model per image, so meant for a GPU.
    "cifar_stem": dict(epochs=30, batch_size=256, lr=0.2, schedule="onecycle", nesterov=True,
                       label_smoothing=0.1, dropout=0.0, tta_flip=True, stem="cifar",
                       pretrained=False, milestones=[]),
}


class ConfigError(ValueError):
    """A parameter has a value the lab cannot use; the message names it and what is allowed."""


def _bad(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"parameter {name}={value!r} is not allowed: {allowed}")


def validate(cfg: LabConfig) -> LabConfig:
    """Check every field of `cfg` before any data is loaded or time is spent.

    Raises `ConfigError` naming the parameter, the value given and what is allowed;
    returns `cfg` unchanged when it is fine. Device availability is checked too, so a
    run asking for `cuda` on a machine without one fails here rather than mid-epoch.
    """
    def positive_int(name: str, minimum: int = 1, maximum: int | None = None,
                     meaning: str = "") -> None:
        v = getattr(cfg, name)
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= minimum and (
            maximum is None or v <= maximum)
        if not ok:
            allowed = (f"an integer >= {minimum}" if maximum is None
                       else f"an integer in {minimum}..{maximum}")
            raise _bad(name, v, allowed + (f" ({meaning})" if meaning else ""))

    def number_in(name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
        v = getattr(cfg, name)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok:
            ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
            raise _bad(name, v, f"a number in {interval}")

    def one_of(name: str, choices: tuple[str, ...]) -> None:
        v = getattr(cfg, name)
        if v not in choices:
            raise _bad(name, v, "one of " + ", ".join(repr(c) for c in choices))

    def boolean(name: str) -> None:
        v = getattr(cfg, name)
        if not isinstance(v, bool):
            raise _bad(name, v, "True or False")

    positive_int("epochs")
    positive_int("batch_size")
    number_in("lr", 0, float("inf"), True, True)
    number_in("momentum", 0, 1, False, True)
    number_in("weight_decay", 0, float("inf"), False, True)
    number_in("gamma", 0, 1, True, False)
    number_in("dropout", 0, 1, False, True)
    number_in("label_smoothing", 0, 1, False, True)
    positive_int("seed", 0)
    positive_int("num_workers", 0)
    positive_int("train_subset", 0)
    positive_int("clean_train_subset", 0)
    positive_int("crop_padding", 0, MAX_CROP_PADDING, "pixels of zero padding around the "
                 "32x32 image before the random crop")
    for name in ("pretrained", "resume", "nesterov", "tta_flip", "amp"):
        boolean(name)
    one_of("recipe", tuple(RECIPES))
    one_of("dataset", DATASETS)
    one_of("data_path", DATA_PATHS)
    one_of("augment", AUGMENTS)
    one_of("schedule", SCHEDULES)
    one_of("stem", STEMS)
    if not isinstance(cfg.data_dir, str) or not cfg.data_dir:
        raise _bad("data_dir", cfg.data_dir, "a non-empty path string")
    if not isinstance(cfg.run_dir, str):
        raise _bad("run_dir", cfg.run_dir, "a path string ('' for a new folder under runs/)")

    m = cfg.milestones
    if not isinstance(m, (list, tuple)) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in m):
        raise _bad("milestones", m, "a list of integer epochs, e.g. [7, 12] (on papermill's "
                   "command line: -y \"milestones: [7, 12]\")")
    if any(b <= a for a, b in zip(m, m[1:])) or any(x < 1 for x in m):
        raise _bad("milestones", m, "strictly increasing epochs >= 1, e.g. [7, 12]")
    if m and m[-1] > cfg.epochs:
        raise _bad("milestones", m, f"epochs no later than the last epoch (epochs={cfg.epochs})")
    if cfg.momentum == 0 and cfg.nesterov:
        raise _bad("nesterov", cfg.nesterov, "False when momentum=0 (Nesterov needs momentum)")

    check_device(cfg.device)
    return cfg


def check_device(device: str) -> None:
    """Raise `ConfigError` unless `device` is known and present on this machine."""
    import torch

    base = device.split(":")[0] if isinstance(device, str) else device
    if base not in DEVICES or (":" in device and base != "cuda"):
        raise _bad("device", device, "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise _bad("device", device, "a device this machine has: no CUDA GPU is visible "
                       "here; use 'auto' or 'cpu'")
        if ":" in device:
            idx = device.split(":")[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise _bad("device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if base == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise _bad("device", device, "a device this machine has: MPS (Apple GPU) is not "
                   "available here; use 'auto' or 'cpu'")


def make_config(**params: Any) -> LabConfig:
    """Build and validate a `LabConfig` from keyword parameters (the notebook's cell).

    Unknown names are an error, not a warning: papermill only warns about a `-p` name
    the notebook does not declare, and a typo such as `-p epoch 3` would otherwise
    silently train for 15 epochs. A `recipe` other than "lab" fills in its values for
    every parameter still at the lab's default.
    """
    known = {f.name for f in dataclasses.fields(LabConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; known parameters: "
                          + ", ".join(sorted(known)))
    recipe = params.get("recipe", "lab")
    if recipe not in RECIPES:
        raise _bad("recipe", recipe, "one of " + ", ".join(repr(r) for r in RECIPES))
    merged = dict(RECIPES[recipe])
    for name, value in params.items():
        if name not in merged or value != getattr(LAB, name):
            merged[name] = value
    if isinstance(merged.get("milestones"), tuple):
        merged["milestones"] = list(merged["milestones"])
    return validate(LabConfig(**merged))


def notebook_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The training parameters defined in a notebook's namespace (pass `globals()`).

    Papermill writes its `-p` values into a cell starting with "# Parameters" and only
    warns about names the notebook does not declare; this reads that cell from IPython's
    input history (`In`) and raises `ConfigError` for any name that is not a parameter.
    """
    known = {f.name for f in dataclasses.fields(LabConfig)}
    for source in namespace.get("In", []):
        if source.lstrip().startswith("# Parameters"):
            given = {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)}
            if given - known:
                raise ConfigError(
                    f"unknown parameter(s) {', '.join(sorted(given - known))} passed to "
                    f"papermill; known parameters: {', '.join(sorted(known))}")
    return {name: namespace[name] for name in known if name in namespace}


def smoke_scale() -> bool:
    """True when the CI-scale switch (environment variable LAB_SMOKE=1) is on."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def ci_scale(cfg: LabConfig, keep_run_dir: bool = False) -> LabConfig:
    """Shrink `cfg` to a seconds-long run on generated data when LAB_SMOKE=1, else return it.

    The schedule keeps its shape (one milestone, one decay) so that the plotting and
    analysis code paths are the ones a real run takes. The run goes to a fresh folder
    under runs/smoke/ unless `keep_run_dir`.
    """
    if not smoke_scale():
        return cfg
    small = dict(dataset="synthetic", epochs=2, batch_size=32, pretrained=False,
                 num_workers=0, device="cpu", milestones=[1] if cfg.milestones else [],
                 clean_train_subset=min(cfg.clean_train_subset, 200))
    if not keep_run_dir:
        # A smoke run never writes into (or collides with) a real run's folder.
        small["run_dir"] = f"runs/smoke/{os.getpid()}-{time.time_ns()}"
    return validate(dataclasses.replace(cfg, **small))


def config_dict(cfg: LabConfig) -> dict[str, Any]:
    """The config as a plain dict (what `config.json` of a run directory holds)."""
    return dataclasses.asdict(cfg)
