"""The lab's defaults, the presets, and the checks every entry point runs.

Every notebook, the grid runner and the benchmark build their settings through
`make_config`, so the lab's numbers live here (`LabConfig`) and nowhere else. A preset
is a papermill parameter file in `lab_utils/presets/`; it is applied first and every
value given after it wins, in papermill (`-f preset.yaml -p name value`) and in Python
(`make_config(recipe="fast", crop_padding=4)`) alike.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .device import device_problem, select_device

# The CI-scale switch: pytest sets it (tests/conftest.py) so that every notebook runs on
# a tiny generated dataset for a moment instead of on CIFAR-10 for half an hour.
SMOKE_ENV = "LAB_SMOKE"

DATASETS = ("cifar10", "synthetic")
LOADERS = ("tensor", "dataloader")
AUGMENTS = ("lab", "none")
SCHEDULES = ("multistep", "onecycle")
STEMS = ("imagenet", "cifar")
ARCHS = ("resnet18", "resnet34", "plain18", "plain34")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CAPTURES = ("auto", "on", "off")
MAX_CROP_PADDING = 16
NUM_CLASSES = 10
# Test, validation and clean-train passes only measure, so they use larger batches.
EVAL_BATCH_SIZE = 512
PRESET_DIR = Path(__file__).parent / "presets"
# Parameters renamed since runs were first saved: old config.json files still load.
# amp (True/False) became precision ("auto"/"fp32").
RENAMED = {"data_path": "loader", "amp": "precision"}
OLD_VALUES = {"amp": {True: "auto", False: "fp32"}}


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
    # Beyond the lab: how data is fed, what is measured, and the faster presets.
    recipe: str = "lab"  # the preset applied first: lab_utils/presets/<recipe>.yaml
    dataset: str = "cifar10"
    loader: str = "tensor"  # "tensor": whole batches on the device; "dataloader": the lab's
    augment: str = "lab"
    crop_padding: int = 4  # the lab's RandomCrop(32, padding=4); 0 leaves only the flip
    train_subset: int = 0  # 0: the whole training split
    val_size: int = 0  # >0: hold out this many training images (class-balanced, fixed)
    clean_train_subset: int = 10_000  # training images also measured in eval mode (0: off)
    schedule: str = "multistep"
    nesterov: bool = False
    label_smoothing: float = 0.0
    tta_flip: bool = False
    arch: str = "resnet18"  # plain18/plain34: the same network without shortcuts
    stem: str = "imagenet"
    precision: str = "auto"  # auto: bf16/fp16 autocast on CUDA, fp32 elsewhere; or fp32, bf16, fp16
    capture: str = "auto"  # CUDA graphs of the training step (lab_utils.capture): auto, on or off


LAB = LabConfig()


def preset_names() -> list[str]:
    """The presets `recipe` may name: "lab" (the defaults) and every file in presets/."""
    return ["lab"] + sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The parameter file of preset `name`, for papermill's `-f`."""
    return PRESET_DIR / f"{name}.yaml"


def load_preset(name: str) -> dict[str, Any]:
    """The values preset `name` sets (empty for "lab"), read as papermill reads `-f`."""
    if name == "lab":
        return {}
    path = preset_path(name)
    if not isinstance(name, str) or not path.is_file():
        raise _bad("recipe", name, "one of " + ", ".join(repr(r) for r in preset_names()))
    return yaml.safe_load(path.read_text()) or {}


class ConfigError(ValueError):
    """A parameter has a value the lab cannot use; the message names it and what is allowed."""


def _bad(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"parameter {name}={value!r} is not allowed: {allowed}")


def validate(cfg: LabConfig) -> LabConfig:
    """Check every field of `cfg` before any data is loaded or time is spent.

    Raises `ConfigError` naming the parameter, the value given and what is allowed;
    returns `cfg` unchanged when it is fine. Device availability is checked too, so a
    run asking for `cuda` on a machine without one fails here rather than mid-epoch.
    Sizes that depend on the data found (subsets, batch size) are checked when the
    data is loaded (`lab_utils.train.build_batches`).
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
    positive_int("val_size", 0)
    if cfg.val_size % NUM_CLASSES:
        raise _bad("val_size", cfg.val_size, f"a multiple of {NUM_CLASSES} (the validation "
                   "split takes the same number of images from every class), e.g. 5000")
    positive_int("crop_padding", 0, MAX_CROP_PADDING, "pixels of zero padding around the "
                 "32x32 image before the random crop")
    for name in ("pretrained", "resume", "nesterov", "tta_flip"):
        boolean(name)
    one_of("recipe", tuple(preset_names()))
    one_of("dataset", DATASETS)
    one_of("loader", LOADERS)
    one_of("augment", AUGMENTS)
    one_of("schedule", SCHEDULES)
    one_of("arch", ARCHS)
    one_of("stem", STEMS)
    one_of("precision", PRECISIONS)
    one_of("capture", CAPTURES)
    if cfg.precision == "fp16" and not cfg.device.startswith("cuda"):
        raise _bad("precision", cfg.precision, "'fp16' only with device='cuda' (fp16 autocast "
                   "needs a GPU; use 'auto', 'fp32' or 'bf16')")
    if cfg.arch.startswith("plain") and cfg.pretrained:
        raise _bad("pretrained", cfg.pretrained, f"False with arch={cfg.arch!r} (ImageNet "
                   "weights exist only for the networks with shortcuts)")
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

    problem = device_problem(cfg.device)
    if problem:
        raise _bad("device", cfg.device, problem)
    if cfg.capture == "on" and select_device(cfg.device).type != "cuda":
        raise _bad("capture", cfg.capture, "'on' only on a CUDA GPU (CUDA graphs remove the "
                   "launch overhead of a GPU; a CPU has none to remove): use 'auto' or 'off', "
                   f"or device='cuda' (device={cfg.device!r} here)")
    return cfg


def upgrade_names(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with renamed parameters under their new names (`RENAMED`), so that old
    `config.json` files and old commands keep working; both names at once is an error."""
    params = dict(params)
    for old, new in RENAMED.items():
        if old in params:
            if new in params and params[new] != OLD_VALUES.get(old, {}).get(params[old],
                                                                             params[old]):
                raise ConfigError(f"parameter {old}={params[old]!r} is the old name of {new}, "
                                  f"which is also given ({new}={params[new]!r}); pass only {new}")
            value = params.pop(old)
            params[new] = OLD_VALUES.get(old, {}).get(value, value)
    return params


def make_config(**params: Any) -> LabConfig:
    """Build and validate a `LabConfig` from the parameters a user gave: the one rule.

    The preset named by `recipe` (default "lab": no changes) is applied first, then every
    value given here, so a value the user gave always wins: `make_config(recipe="fast",
    crop_padding=4)` trains the fast preset with the lab's padding. A line is printed
    naming the preset values that were replaced, so nothing changes silently. Every entry
    point (the notebook's parameters cell through `notebook_parameters`, papermill, the
    grid runner, `publish`, Python) comes through here. Unknown names are an error, not a
    warning: papermill only warns about a `-p` name the notebook does not declare, and a
    typo such as `-p epoch 3` would otherwise silently train for 15 epochs. Milestones
    after the last epoch (a short trial run) are dropped with a printed note, since the
    schedule would never reach them.
    """
    params = upgrade_names(params)
    known = {f.name for f in dataclasses.fields(LabConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; known parameters: "
                          + ", ".join(sorted(known)))
    recipe = params.get("recipe", LAB.recipe)
    preset = load_preset(recipe)
    replaced = [f"{k}={v!r} (preset: {preset[k]!r})" for k, v in params.items()
                if k != "recipe" and k in preset and preset[k] != v]
    if replaced:
        print(f"Preset {recipe!r} applied, with your values instead of its own for: "
              + ", ".join(replaced))
    merged = {**preset, **params}
    epochs, milestones = merged.get("epochs", LAB.epochs), merged.get("milestones", LAB.milestones)
    if isinstance(milestones, (list, tuple)) and isinstance(epochs, int):
        late = [m for m in milestones if isinstance(m, int) and m > epochs]
        if late:
            print(f"Note: milestones {late} come after the last epoch (epochs={epochs}) and "
                  "are dropped: the learning rate would never be decayed there.")
        merged["milestones"] = [m for m in milestones if m not in late]
    return validate(LabConfig(**merged))


PARAMETERS_CELL = "# Papermill parameters cell"  # how the notebooks' parameters cell begins
INJECTED_CELL = "# Parameters"  # how papermill's injected cell begins


def notebook_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The parameters a notebook's user gave (pass `globals()`), for `make_config`.

    The one rule for a notebook, run by hand or by papermill: a value counts as given when
    the parameters cell holds something other than the lab's default (edited by hand), or
    when papermill injected it (`-f` files and `-p`, read from IPython's input history
    `In`), the injected value winning over the cell's. So a cell edited to `recipe =
    "fast"` trains the fast preset, a cell edited to `dropout = 0.3` keeps 0.3 when
    papermill also passes `-p seed 1`, and `make_config` applies the preset first and
    prints which of its values the user's replaced. A cell value equal to the lab's
    default cannot be told from an untouched one: to train a preset with one of the lab's
    own values, pass it with papermill's `-p` or to `make_config` in a cell below. Names
    papermill injected that are not parameters raise `ConfigError` (papermill itself only
    warns about them).
    """
    known = {f.name for f in dataclasses.fields(LabConfig)}
    defaults = config_dict(LAB)
    history = [s for s in namespace.get("In", []) if isinstance(s, str)]
    cell = _assigned(next((s for s in reversed(history)
                           if s.lstrip().startswith(PARAMETERS_CELL)), ""))
    injected_src = next((s for s in reversed(history)
                         if s.lstrip().startswith(INJECTED_CELL)), None)
    injected = _assigned(injected_src or "")
    if set(injected) - known - set(RENAMED):
        raise ConfigError(
            f"unknown parameter(s) {', '.join(sorted(set(injected) - known - set(RENAMED)))} "
            f"passed to papermill; known parameters: {', '.join(sorted(known))}")
    # papermill's injected cell has overwritten its names by now: the cell's own values
    # of those come from the cell's source, for the printed line only.
    given = {name: namespace[name] for name in known
             if name in namespace and namespace[name] != defaults[name] and name not in injected}
    overridden = [f"{k}={namespace.get(k, v)!r} (the cell: {cell[k]!r})"
                  for k, v in injected.items() if k in cell and cell[k] != defaults.get(k)
                  and cell[k] != v]
    if overridden:
        print("papermill's values replace the parameters cell's for: " + ", ".join(overridden))
    given.update({k: namespace.get(k, v) for k, v in injected.items()})
    return given


def _assigned(source: str) -> dict[str, Any]:
    """The literal values a cell's source assigns to plain names (`name = literal`)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return {}
    values = {}
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def smoke_scale() -> bool:
    """True when the CI-scale switch (environment variable LAB_SMOKE=1) is on."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def ci_scale(cfg: LabConfig, keep_run_dir: bool = False) -> LabConfig:
    """Shrink `cfg` to a seconds-long run on generated data when LAB_SMOKE=1, else return it.

    The schedule keeps its shape (one milestone, one decay) so that the plotting and
    analysis code paths are the ones a real run takes; 64 training images (2 steps an epoch)
    keep it light enough for CI on a busy machine (notebook 05 makes 8 such runs in a cell). The run goes to a fresh folder under runs/smoke/
    unless `keep_run_dir`.
    """
    if not smoke_scale():
        return cfg
    small = dict(dataset="synthetic", epochs=2, batch_size=32, pretrained=False,
                 num_workers=0, device="cpu", milestones=[1] if cfg.milestones else [],
                 train_subset=64, val_size=min(cfg.val_size, 100),
                 clean_train_subset=min(cfg.clean_train_subset, 64), capture="auto")
    if not keep_run_dir:
        # A smoke run never writes into (or collides with) a real run's folder.
        small["run_dir"] = f"runs/smoke/{os.getpid()}-{time.time_ns()}"
    return validate(dataclasses.replace(cfg, **small))


def config_dict(cfg: LabConfig) -> dict[str, Any]:
    """The config as a plain dict (what `config.json` of a run directory holds)."""
    return dataclasses.asdict(cfg)


def saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's `config.json` as today's parameters: old names renamed, and parameters added
    since the run was saved filled with their lab default (which is what the run used:
    a new parameter's default keeps the old behaviour)."""
    return {**config_dict(LAB), **upgrade_names(saved)}
