"""Run directories: the life of a training run on disk, written so that nothing is lost.

A run directory holds `config.json`, `history.csv` (one row per finished epoch: the
lab's train and test metrics, the learning rate and the epoch's time (train and test
passes), then, when measured, validation and clean-train metrics and their time),
`checkpoint.pt` (the state to resume from), and, once the run ends, `metrics.json` and
`predictions.csv` (true label, predicted label and confidence for every test image).
`start` creates a run directory or refuses to overwrite one, and resumes an unfinished
one; `save_epoch` and `finish` write as the run goes. Every file is replaced atomically,
so an interrupt, a full disk or a failed write leaves the last finished epoch intact;
a file that cannot be written or read raises `RunDirError` naming it and what to do.
"""
from __future__ import annotations

import errno
import io
import json
import pickle
import subprocess
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch

from .config import RENAMED, ConfigError, LabConfig, config_dict, saved_config
from .paths import atomic_write_bytes, repo_root, resolve

CONFIG, HISTORY, CHECKPOINT = "config.json", "history.csv", "checkpoint.pt"
METRICS, PREDICTIONS = "metrics.json", "predictions.csv"
# Fields that may change between an interrupted run and its resumption (a run directory
# may also be moved, e.g. from runs/ into results/).
RESUMABLE_CHANGES = {"resume", "device", "num_workers", "data_dir", "loader", "run_dir",
                     "capture"}


class RunDirError(OSError):
    """A run directory's file cannot be written or read; the message names the file,
    what happened and what to do, and says what of the run is still safe."""


@dataclass
class Started:
    """What `start` found: the run directory, and the saved state to resume from (None
    for a new run) or, for a run that had already ended, `finished` True; `commit` is the
    code the run started with (a resumed run keeps its first start's)."""

    run_dir: Path
    checkpoint: dict[str, Any] | None
    finished: bool = False
    commit: str = ""


def new_run_dir(run_dir: str, preset: str) -> Path:
    """`run_dir` resolved against the repository root; a fresh `runs/<time>-<preset>`
    when it is empty."""
    if not run_dir:
        return resolve(f"runs/{datetime.now():%Y%m%d-%H%M%S}-{preset}")
    return resolve(run_dir)


def display_path(path: str | Path) -> str:
    """`path` as a reader should see it: relative to the repository root when inside it
    (a committed output never prints the folder of the machine that made it)."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def start(cfg: LabConfig) -> Started:
    """The run directory `cfg` names: a new one (written by `begin`, once the run has
    started), or, with `resume=True`, the run saved there, checked to be made with `cfg`
    (up to `RESUMABLE_CHANGES`). A directory that already holds a run is never overwritten:
    without `resume` that is a `ConfigError` saying what to pass instead."""
    run_dir = new_run_dir(cfg.run_dir, cfg.preset)
    if not (run_dir / CONFIG).is_file():
        return Started(run_dir, None, commit=commit())
    if not cfg.resume:
        raise ConfigError(
            f"parameter run_dir={display_path(run_dir)!r} already holds a run; pass resume=True to "
            "continue it, or choose another run_dir (or '' for a new one)")
    check_resumable(run_dir, cfg)
    if is_finished(run_dir):
        return Started(run_dir, None, finished=True)
    checkpoint = load_checkpoint(run_dir)
    return Started(run_dir, checkpoint, commit=(checkpoint or {}).get("commit") or commit())


def check_resumable(run_dir: Path, cfg: LabConfig) -> None:
    """Raise `ConfigError` unless the run saved in `run_dir` was made with `cfg` (up to the
    parameters that may change between an interrupt and its resumption)."""
    saved = saved_config(load_config(run_dir))
    now = config_dict(cfg)
    diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved[k] != now[k])
    if diff:
        raise ConfigError(
            f"parameter resume=True but run_dir={display_path(run_dir)!r} was started with different "
            + ", ".join(f"{k}={saved[k]!r} (now {now[k]!r})" for k in diff)
            + "; resume with the same parameters or choose another run_dir")


def begin(run: Started, cfg: LabConfig) -> None:
    """Write a new run's `config.json`, once its model and data are ready: a run that fails
    before (missing weights, bad data) leaves no empty run directory behind."""
    if run.checkpoint is None and not (run.run_dir / CONFIG).is_file():
        _write(run.run_dir / CONFIG, _json(config_dict(cfg)), run.run_dir, done=0)


def save_epoch(run_dir: Path, history: list[dict[str, float]], state: dict[str, Any]) -> None:
    """After a finished epoch: the resumable `state` (model, optimizer, scheduler, RNG
    states) to `checkpoint.pt`, then the rows to `history.csv`. The checkpoint goes first,
    so a history row always has a checkpoint at least as new to resume from."""
    buf = io.BytesIO()
    torch.save({**state, "history": history}, buf)
    done = len(history) - 1  # until both files are replaced, the epoch before is what is safe
    _write(run_dir / CHECKPOINT, buf.getvalue(), run_dir, done)
    _write(run_dir / HISTORY, pd.DataFrame(history).to_csv(index=False).encode(), run_dir, done)


@contextmanager
def report_interrupt(run_dir: Path, history: list) -> Iterator[None]:
    """Around the epochs: an interrupt (Ctrl-C, the stop button) says what is kept and how
    to continue, then goes on as an interrupt."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"Interrupted: {len(history)} finished epoch(s) are saved in {display_path(run_dir)}. "
              "Run again with resume=True to continue.")
        raise


def finish(run_dir: Path, predictions: pd.DataFrame, metrics: dict[str, Any],
           commit: str) -> None:
    """The end of a run: the test-set predictions, then `metrics.json` (whose presence
    marks the run finished), with `commit`, the code the run started with
    (`Started.commit`)."""
    n = metrics["final_epoch"]  # every epoch is finished and saved by now
    _write(run_dir / PREDICTIONS, predictions.to_csv(index=False).encode(), run_dir, n)
    _write(run_dir / METRICS, _json({**metrics, "commit": commit}), run_dir, n)


def commit() -> str:
    """The git commit of the code that ran ("+changes" when the tree had uncommitted
    changes), or "unknown" outside a git checkout."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=repo_root(), capture_output=True,
                                        text=True, timeout=10)
        head = run("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no", "lab_utils", "notebooks")
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, default=str) + "\n").encode()


def _write(path: Path, data: bytes, run_dir: Path, done: int) -> None:
    """Write `data` to `path` atomically, or raise `RunDirError` saying what to do; the
    file that was there (the last finished epoch's) stays as it was."""
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        why = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
               errno.EROFS: "the file system is read-only"}.get(err.errno,
                                                                err.strerror or str(err))
        raise RunDirError(
            err.errno, f"cannot write {display_path(path)}: {why}. The run's {done} finished "
            f"epoch(s) in {display_path(run_dir)} are kept as they were. Free some space or choose "
            "a writable run_dir, then run the same cell again with resume=True (a new "
            "run_dir starts over).") from err


def _damaged(path: Path, err: Exception) -> RunDirError:
    return RunDirError(
        f"{display_path(path)} is damaged or cut short ({type(err).__name__}: {err}). If the run "
        "was copied, copy it again; otherwise delete the run directory and train it again "
        "(a checkpoint only: delete checkpoint.pt and history.csv together, and the run "
        "starts over from epoch 1).")


def _read(path: Path, parse):
    try:
        return parse(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, RuntimeError, pickle.UnpicklingError,
            zipfile.BadZipFile, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise _damaged(path, err) from None


def load_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The state saved by `save_epoch`, or None when the run has none yet."""
    path = resolve(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    return _read(path, lambda p: torch.load(p, weights_only=False, map_location="cpu"))


def load_history(run_dir: str | Path) -> pd.DataFrame:
    """A run's `history.csv` as a DataFrame (one row per finished epoch)."""
    return _read(resolve(run_dir) / HISTORY, pd.read_csv)


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's `config.json`."""
    return _read(resolve(run_dir) / CONFIG, lambda p: json.loads(p.read_text()))


def load_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's `metrics.json` (a parameter's old name under its new one, as in
    `config.saved_config`), or None while the run is unfinished."""
    path = resolve(run_dir) / METRICS
    if not path.is_file():
        return None
    metrics = _read(path, lambda p: json.loads(p.read_text()))
    return {RENAMED.get(k, k): v for k, v in metrics.items()}


def load_predictions(run_dir: str | Path) -> pd.DataFrame:
    """A finished run's test-set predictions: columns index, true, pred, confidence."""
    return _read(resolve(run_dir) / PREDICTIONS, pd.read_csv)


def is_finished(run_dir: str | Path) -> bool:
    """True once a run has written its final metrics."""
    return (resolve(run_dir) / METRICS).is_file()


NEWEST = "newest"  # the run_dir that means: the newest finished run under runs/


def newest_finished(root: str | Path = "runs") -> Path | None:
    """The most recently finished run directory under `root` (smoke runs aside) that has a
    checkpoint, or None."""
    root = resolve(root)
    found = [p.parent for p in root.glob("*/" + METRICS) if (p.parent / CHECKPOINT).is_file()]
    return max(found, key=lambda d: (d / METRICS).stat().st_mtime, default=None)


def trained_run(run_dir: str | Path, train_command: str) -> Path:
    """The finished run with a checkpoint that `run_dir` names (`NEWEST`: the newest one
    under runs/), for looking inside its model (notebook 06). A missing folder, a folder
    without `checkpoint.pt` and an unfinished run each raise `RunDirError` saying what to
    run instead (`train_command`, the command that trains one)."""
    if str(run_dir) == NEWEST:
        found = newest_finished()
        if found is None:
            raise RunDirError(f"there is no finished run with a checkpoint under "
                              f"{display_path(resolve('runs'))}/ yet. Train one: {train_command}")
        return found
    path = resolve(run_dir)
    if not path.is_dir():
        near = sorted(p.parent.name for p in resolve("runs").glob("*/" + CONFIG))[-5:]
        raise RunDirError(f"run_dir={str(run_dir)!r} does not exist. "
                          + (f"The runs under runs/ are: {', '.join(near)}. " if near else "")
                          + f"Copy the line notebook 04 printed at its end, use run_dir = "
                          f"{NEWEST!r}, or train one: {train_command}")
    if not (path / CHECKPOINT).is_file():
        raise RunDirError(f"{display_path(path)} holds no {CHECKPOINT}: the model's weights "
                          "(checkpoints are not committed). Use a run you trained, a run your "
                          f"teacher packed (python -m lab_utils.runs pack), or train one: "
                          f"{train_command}")
    if not is_finished(path):
        done = len(load_history(path)) if (path / HISTORY).is_file() else 0
        epochs = load_config(path).get("epochs", "?")
        raise RunDirError(f"{display_path(path)} is unfinished ({done} of {epochs} epochs, no "
                          f"{METRICS}). Finish it: in notebook 04 set run_dir = "
                          f"{display_path(path)!r} and resume = True, and run it again; or "
                          f"train another: {train_command}")
    return path


PACKED = (CONFIG, HISTORY, METRICS, PREDICTIONS)


def pack(run_dir: str | Path, out: str | Path) -> Path:
    """A finished run as a zip for students (`out`): its config, history, metrics and
    predictions, and a `checkpoint.pt` holding the model's weights and history only (no
    optimizer, schedule or random state: it cannot be resumed, only looked inside, which
    is all notebook 06 does). Unpacked anywhere, it is a run directory."""
    src = trained_run(run_dir, "train it with notebook 04 (a committed run: the command in its "
                      "provenance, results/README.md), which writes its checkpoint")
    out = resolve(out)
    state = load_checkpoint(src)
    buf = io.BytesIO()
    torch.save({"model": state["model"], "history": state["history"],
                "epoch": state["epoch"], "commit": state.get("commit", "")}, buf)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in PACKED:
            z.write(src / name, f"{src.name}/{name}")
        z.writestr(f"{src.name}/{CHECKPOINT}", buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m lab_utils.runs pack RUN_DIR [OUT.zip]`: pack a finished run for students."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lab_utils.runs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack a finished run for students: weights, history, "
                                    "metrics, predictions and config, no optimizer state")
    p.add_argument("run_dir")
    p.add_argument("out", nargs="?", help="the zip to write (default: RUN_DIR's name + .zip)")
    args = parser.parse_args(argv)
    try:
        out = pack(args.run_dir, args.out or f"{Path(args.run_dir).name}.zip")
    except RunDirError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): students unzip it where they run "
          f"notebook 06 and set run_dir = '{Path(args.run_dir).name}' there")


if __name__ == "__main__":
    main()
