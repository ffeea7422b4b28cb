"""The lab's defaults, the presets, and the checks every entry point runs.

Every notebook, the grid runner and the benchmark build their settings through
`make_config`, so the lab's numbers live here (`LabConfig`) and nowhere else. A preset
is a papermill parameter file in `lab_utils/presets/`; it is applied first and every
value given after it wins, in papermill (`-f preset.yaml -p name value`) and in Python
(`make_config(preset="fast", crop_padding=4)`) alike.
"""
from __future__ import annotations

import ast
import atexit
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .device import DEVICE_CHOICES, device_problem, select_device

# The CI-scale switch: pytest sets it (tests/conftest.py) so that every notebook runs on
# a tiny generated dataset for a moment instead of on CIFAR-10 for half an hour.
SMOKE_ENV = "LAB_SMOKE"

DATASETS = ("cifar10", "synthetic")
LOADERS = ("tensor", "dataloader")
AUGMENTS = ("lab", "none")
SCHEDULES = ("multistep", "onecycle")
STEMS = ("imagenet", "cifar")
ARCHS = ("resnet18", "resnet34", "plain18", "plain34")  # names the `arch` parameter allows
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # names the `precision` parameter allows
CAPTURES = ("auto", "on", "off")
MAX_CROP_PADDING = 16
# CIFAR-10's classes in label order (the image-folder copies sort into the same order).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASSES)
# Test, validation and clean-train passes only measure, so they use larger batches.
EVAL_BATCH_SIZE = 512
PRESET_DIR = Path(__file__).parent / "presets"
# Parameters renamed since runs were first saved: old config.json files, specs and commands
# still work. amp (True/False) became precision ("auto"/"fp32"); recipe became preset.
RENAMED = {"data_path": "loader", "amp": "precision", "recipe": "preset"}
OLD_VALUES = {"amp": {True: "auto", False: "fp32"}}


class Rule:
    """What values one parameter allows: `problem(value)` says what is allowed, or None."""

    def __init__(self, allowed: str, ok: Callable[[Any], bool]):
        self.allowed, self.ok = allowed, ok

    def problem(self, value: Any) -> str | None:
        return None if self.ok(value) else self.allowed


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(minimum: int, maximum: int | None = None, meaning: str = "") -> Rule:
    allowed = (f"an integer >= {minimum}" if maximum is None
               else f"an integer in {minimum}..{maximum}") + (f" ({meaning})" if meaning else "")
    return Rule(allowed, lambda v: _is_int(v) and v >= minimum
                and (maximum is None or v <= maximum))


def number(lo: float, hi: float, lo_open: bool, hi_open: bool) -> Rule:
    def ok(v: Any) -> bool:
        return (isinstance(v, (int, float)) and not isinstance(v, bool)
                and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))
    return Rule(f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}", ok)


def one_of(*choices: str) -> Rule:
    return Rule("one of " + ", ".join(repr(c) for c in choices), lambda v: v in choices)


BOOLEAN = Rule("True or False", lambda v: isinstance(v, bool))
PATH = Rule("a non-empty path string", lambda v: isinstance(v, str) and bool(v))
MILESTONES = Rule("a list of integer epochs, e.g. [7, 12] (on papermill's command line: "
                  "-y \"milestones: [7, 12]\")",
                  lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) for x in v))
ANY_PRESET = Rule("a preset name", lambda v: isinstance(v, str))  # which exist: validate
ANY_DEVICE = Rule(DEVICE_CHOICES, lambda v: isinstance(v, str))  # what this machine has: device_problem


def param(default: Any, rule: Rule) -> Any:
    """A `LabConfig` field: its default and the rule for its values, side by side."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


@dataclass
class LabConfig:
    """Every knob of a training run, each with its default (the lab's recipe, Experiment 7)
    and the rule for its values; `validate` applies the rules and the few that tie two
    parameters together."""

    epochs: int = param(15, integer(1))
    batch_size: int = param(128, integer(1))
    lr: float = param(0.01, number(0, float("inf"), True, True))
    momentum: float = param(0.9, number(0, 1, False, True))
    weight_decay: float = param(5e-4, number(0, float("inf"), False, True))
    milestones: list[int] = param([7, 12], MILESTONES)  # epochs after which lr *= gamma
    gamma: float = param(0.1, number(0, 1, True, False))
    dropout: float = param(0.5, number(0, 1, False, True))
    pretrained: bool = param(True, BOOLEAN)  # ImageNet weights; False trains from scratch
    data_dir: str = param("data/cifar10", PATH)
    run_dir: str = param("", Rule("a path string ('' for a new folder under runs/)",
                                  lambda v: isinstance(v, str)))
    seed: int = param(0, integer(0))
    device: str = param("auto", ANY_DEVICE)
    num_workers: int = param(2, integer(0))
    resume: bool = param(False, BOOLEAN)
    # Beyond the lab: how data is fed, what is measured, and the faster presets.
    preset: str = param("lab", ANY_PRESET)  # applied first: presets/<preset>.yaml
    dataset: str = param("cifar10", one_of(*DATASETS))
    loader: str = param("tensor", one_of(*LOADERS))  # tensor: batches on the device; dataloader: the lab's
    augment: str = param("lab", one_of(*AUGMENTS))
    crop_padding: int = param(4, integer(0, MAX_CROP_PADDING, "pixels of zero padding around "
                                         "the 32x32 image before the random crop"))
    train_subset: int = param(0, integer(0))  # 0: the whole training split
    val_size: int = param(0, integer(0))  # >0: hold out this many training images (balanced)
    clean_train_subset: int = param(10_000, integer(0))  # also measured in eval mode (0: off)
    test_subset: int = param(0, integer(0))  # >0: epochs before the last test this many images
    schedule: str = param("multistep", one_of(*SCHEDULES))
    nesterov: bool = param(False, BOOLEAN)
    label_smoothing: float = param(0.0, number(0, 1, False, True))
    tta_flip: bool = param(False, BOOLEAN)
    arch: str = param("resnet18", one_of(*ARCHS))  # plain18/34: the same without shortcuts
    stem: str = param("imagenet", one_of(*STEMS))
    precision: str = param("auto", one_of(*PRECISIONS))  # auto: the faster one here (device.py)
    capture: str = param("auto", one_of(*CAPTURES))  # CUDA graphs of the training step

    def __post_init__(self) -> None:
        # The one rule for milestones after the last epoch (a short trial run): they are
        # dropped, since the schedule never reaches them.
        if isinstance(self.milestones, (list, tuple)) and _is_int(self.epochs):
            self.milestones = [m for m in self.milestones if not (_is_int(m) and m > self.epochs)]


LAB = LabConfig()


def preset_names() -> list[str]:
    """The presets `preset` may name: "lab" (the defaults) and every file in presets/."""
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
        raise _bad("preset", name, "one of " + ", ".join(repr(r) for r in preset_names()))
    return upgrade_names(yaml.safe_load(path.read_text()) or {})


class ConfigError(ValueError):
    """A parameter has a value the lab cannot use; the message names it and what is allowed."""


def _bad(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"parameter {name}={value!r} is not allowed: {allowed}")


def validate(cfg: LabConfig) -> LabConfig:
    """Check every field of `cfg` before any data is loaded or time is spent.

    Each field's own rule (beside its default in `LabConfig`), then the rules that tie
    parameters together. Raises `ConfigError` naming the parameter, the value given and
    what is allowed; returns `cfg` unchanged when it is fine. Device availability is
    checked too, so a run asking for `cuda` on a machine without one fails here rather
    than mid-epoch. Sizes that depend on the data found (subsets, batch size) are checked
    when the data is loaded (`lab_utils.train.split_indices`).
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        problem = f.metadata["rule"].problem(value)
        if problem:
            raise _bad(f.name, value, problem)
    if cfg.preset not in preset_names():
        raise _bad("preset", cfg.preset, "one of " + ", ".join(repr(r) for r in preset_names()))
    problem = device_problem(cfg.device)
    if problem:
        raise _bad("device", cfg.device, problem)
    if cfg.val_size % NUM_CLASSES:
        raise _bad("val_size", cfg.val_size, f"a multiple of {NUM_CLASSES} (the validation "
                   "split takes the same number of images from every class), e.g. 5000")
    if cfg.precision == "fp16" and not cfg.device.startswith("cuda"):
        raise _bad("precision", cfg.precision, "'fp16' only with device='cuda' (fp16 autocast "
                   "needs a GPU; use 'auto', 'fp32' or 'bf16')")
    if cfg.arch.startswith("plain") and cfg.pretrained:
        raise _bad("pretrained", cfg.pretrained, f"False with arch={cfg.arch!r} (ImageNet "
                   "weights exist only for the networks with shortcuts)")
    m = cfg.milestones
    if any(b <= a for a, b in zip(m, m[1:])) or any(x < 1 for x in m):
        raise _bad("milestones", m, "strictly increasing epochs >= 1, e.g. [7, 12]")
    if cfg.momentum == 0 and cfg.nesterov:
        raise _bad("nesterov", cfg.nesterov, "False when momentum=0 (Nesterov needs momentum)")
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

    The preset named by `preset` (default "lab": no changes) is applied first, then every
    value given here, so a value the user gave always wins: `make_config(preset="fast",
    crop_padding=4)` trains the fast preset with the lab's padding. A line is printed
    naming the preset values that were replaced, so nothing changes silently (that also
    covers a preset file given with another preset's name: its values are the user's).
    Every entry point (the notebook's parameters cell through `notebook_parameters`,
    papermill, the grid runner, `publish`, Python) comes through here. Unknown names are an
    error, not a warning: papermill only warns about a `-p` name the notebook does not
    declare, and a typo such as `-p epoch 3` would otherwise silently train for 15 epochs.
    Milestones after the last epoch are dropped (`LabConfig`'s rule), with a printed note.
    """
    params = upgrade_names(params)
    known = {f.name for f in dataclasses.fields(LabConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; known parameters: "
                          + ", ".join(sorted(known)))
    name = params.get("preset", LAB.preset)
    preset = {k: v for k, v in load_preset(name).items() if k != "preset"}
    replaced = [f"{k}={v!r} (preset: {preset[k]!r})" for k, v in params.items()
                if k in preset and preset[k] != v]
    if replaced:
        print(f"Preset {name!r} applied, with your values instead of its own for: "
              + ", ".join(replaced))
    elif preset:
        print(f"Preset {name!r} applied: " + ", ".join(f"{k}={v!r}" for k, v in preset.items()))
    cfg = LabConfig(**{**preset, **params})
    asked = params.get("milestones", preset.get("milestones", LAB.milestones))
    if isinstance(asked, (list, tuple)) and list(asked) != cfg.milestones:
        late = [m for m in asked if m not in cfg.milestones]
        print(f"Note: milestones {late} come after the last epoch (epochs={cfg.epochs}) and "
              "are dropped: the learning rate would never be decayed there.")
    return validate(cfg)


PARAMETERS_CELL = "# Papermill parameters cell"  # how the notebooks' parameters cell begins
INJECTED_CELL = "# Parameters"  # how papermill's injected cell begins


def notebook_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The parameters a notebook's user gave (pass `globals()`), for `make_config`.

    Two rules. A value in the parameters cell counts as given when it differs from the
    lab's default (so a cell edited to `preset = "fast"` and `dropout = 0.3` trains the
    fast preset with dropout 0.3). A value papermill injected (`-f` files and `-p`) counts
    as given whatever it is, and wins over the cell's. The second rule needs to know which
    names papermill set, and IPython's input history `In` (the injected cell's source) is
    the only record of that: a `-p epochs 15` over a preset must count although 15 is the
    lab's default. A cell value set back to the lab's default while choosing a preset in
    the cell cannot be told from an untouched one: pass it with `-p`, or to `make_config`.
    Names papermill injected that are not parameters raise `ConfigError` (papermill itself
    only warns about them).
    """
    known = {f.name for f in dataclasses.fields(LabConfig)}
    defaults = config_dict(LAB)
    history = [s for s in namespace.get("In", []) if isinstance(s, str)]
    injected = _assigned(next((s for s in reversed(history)
                               if s.lstrip().startswith(INJECTED_CELL)), ""))
    if set(injected) - known - set(RENAMED):
        raise ConfigError(
            f"unknown parameter(s) {', '.join(sorted(set(injected) - known - set(RENAMED)))} "
            f"passed to papermill; known parameters: {', '.join(sorted(known))}")
    given = {name: namespace[name] for name in known
             if name in namespace and namespace[name] != defaults[name] and name not in injected}
    # What the cell itself said, for the printed line only: papermill has overwritten it.
    cell = _assigned(next((s for s in reversed(history)
                           if s.lstrip().startswith(PARAMETERS_CELL)), ""))
    overridden = [f"{k}={v!r} (the cell: {cell[k]!r})" for k, v in injected.items()
                  if k in cell and cell[k] != defaults.get(k) and cell[k] != v]
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


def is_smoke() -> bool:
    """True when the CI-scale switch (environment variable LAB_SMOKE=1) is on."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def smoke_scale(cfg: LabConfig, keep_run_dir: bool = False) -> LabConfig:
    """Shrink `cfg` to a seconds-long run on generated data when LAB_SMOKE=1, else return it.

    The schedule keeps its shape (one milestone, one decay) so that the plotting and
    analysis code paths are the ones a real run takes; 64 training images (2 steps an
    epoch) keep it light enough for CI and for autograding on a busy machine. The run goes
    to a fresh folder in `smoke_dir()` unless `keep_run_dir`.
    """
    if not is_smoke():
        return cfg
    small = dict(dataset="synthetic", epochs=2, batch_size=32, pretrained=False,
                 num_workers=0, device="cpu", milestones=[1] if cfg.milestones else [],
                 train_subset=64, val_size=min(cfg.val_size, 100),
                 clean_train_subset=min(cfg.clean_train_subset, 64),
                 test_subset=min(cfg.test_subset, 20), capture="auto")
    if not keep_run_dir:
        # A smoke run never writes into (or collides with) a real run's folder.
        small["run_dir"] = str(smoke_dir() / str(time.time_ns()))
    return validate(dataclasses.replace(cfg, **small))


_SMOKE_DIRS: list[Path] = []


def smoke_dir() -> Path:
    """This process's folder for smoke runs: in the system's temporary folder, not in the
    working folder (an autograded submission stays small), and removed when the process
    ends (a checkpoint is about 90 MB)."""
    if not _SMOKE_DIRS:
        _SMOKE_DIRS.append(Path(tempfile.mkdtemp(prefix="lab_utils-smoke-")))
        atexit.register(shutil.rmtree, _SMOKE_DIRS[0], ignore_errors=True)
    return _SMOKE_DIRS[0]


def config_dict(cfg: LabConfig) -> dict[str, Any]:
    """The config as a plain dict (what `config.json` of a run directory holds)."""
    return dataclasses.asdict(cfg)


def saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's `config.json` as today's parameters: old names renamed, and parameters added
    since the run was saved filled with their lab default (which is what the run used:
    a new parameter's default keeps the old behaviour)."""
    return {**config_dict(LAB), **upgrade_names(saved)}
