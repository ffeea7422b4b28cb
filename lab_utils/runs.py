"""Run directories: what a training run leaves on disk, written so that nothing is lost.

A run directory holds `config.json`, `history.csv` (one row per finished epoch: the
lab's train and test metrics, the learning rate and the epoch's time (train and test
passes), then, when measured, validation and clean-train metrics and their time),
`checkpoint.pt` (the state to resume from), and, once the run ends, `metrics.json` and
`predictions.csv` (true label, predicted label and confidence for every test image).
Every file is replaced atomically, so an interrupt leaves the last finished epoch intact.
"""
from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .paths import atomic_write_bytes, atomic_write_text, resolve



def new_run_dir(run_dir: str, recipe: str = "lab") -> Path:
    """`run_dir` resolved against the repository root; a fresh `runs/<time>-<recipe>`
    when it is empty."""
    if not run_dir:
        return resolve(f"runs/{datetime.now():%Y%m%d-%H%M%S}-{recipe}")
    return resolve(run_dir)


def save_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_history(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Write the finished epochs to `history.csv`, atomically (full float precision)."""
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(rows).to_csv(index=False))


def save_predictions(run_dir: Path, predictions: pd.DataFrame) -> None:
    """Write the test-set predictions to `predictions.csv`, atomically."""
    atomic_write_text(run_dir / "predictions.csv", predictions.to_csv(index=False))


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write the resumable state to `checkpoint.pt`, atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run_dir / "checkpoint.pt", buf.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The state saved by `save_checkpoint`, or None when the run has none yet."""
    path = Path(run_dir) / "checkpoint.pt"
    return torch.load(path, weights_only=False) if path.is_file() else None


def load_history(run_dir: str | Path) -> pd.DataFrame:
    """A run's `history.csv` as a DataFrame (one row per finished epoch)."""
    return pd.read_csv(resolve(run_dir) / "history.csv")


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's `config.json`."""
    return json.loads((resolve(run_dir) / "config.json").read_text())


def load_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's `metrics.json`, or None while the run is unfinished."""
    path = resolve(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_predictions(run_dir: str | Path) -> pd.DataFrame:
    """A finished run's test-set predictions: columns index, true, pred, confidence."""
    return pd.read_csv(resolve(run_dir) / "predictions.csv")


def is_finished(run_dir: str | Path) -> bool:
    """True once a run has written its final metrics."""
    return (resolve(run_dir) / "metrics.json").is_file()
