"""Reading finished runs back: histories of many runs, confusion matrices, gap summaries.

Everything here works from what a run directory holds (`config.json`, `history.csv`,
`predictions.csv`), so notebook 05 renders from the committed results without training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from . import runs
from .config import saved_config
from .data import CLASSES
from .paths import resolve


def find_runs(folder: str | Path) -> list[Path]:
    """Every run directory (a folder with `history.csv`) directly inside `folder`, sorted."""
    root = resolve(folder)
    return sorted(p for p in root.iterdir() if (p / "history.csv").is_file())


def load_runs(run_dirs: Iterable[str | Path],
              keys: Sequence[str] = ("dropout", "augment", "seed")) -> pd.DataFrame:
    """All epochs of all runs in one long table, with each run's name and the parameters
    `keys` (from its `config.json`, today's names) on every row."""
    frames = []
    for d in run_dirs:
        d = resolve(d)
        cfg = saved_config(runs.load_config(d))
        h = runs.load_history(d)
        h.insert(0, "run", d.name)
        for key in keys:
            h[key] = cfg[key]
        frames.append(h)
    return pd.concat(frames, ignore_index=True)


def confusion_matrix(predictions: pd.DataFrame, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Counts of (true class, predicted class) from a run's `predictions.csv`."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (predictions.true.to_numpy(), predictions.pred.to_numpy()), 1)
    return m


def per_class_accuracy(confusion: np.ndarray, classes: Sequence[str] = CLASSES) -> pd.Series:
    """Accuracy (%) of each true class: the diagonal over the row sums."""
    return pd.Series(100 * np.diag(confusion) / confusion.sum(1), index=list(classes),
                     name="accuracy (%)")


def top_confusions(confusion: np.ndarray, classes: Sequence[str] = CLASSES, k: int = 5
                   ) -> pd.DataFrame:
    """The `k` most frequent mistakes as (true, predicted, count, % of the true class)."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:k]
    rows = [(classes[i], classes[j], int(off[i, j]), 100 * off[i, j] / confusion[i].sum())
            for i, j in zip(*np.unravel_index(order, off.shape))]
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "% of true class"])


def final_epochs(table: pd.DataFrame) -> pd.DataFrame:
    """The last epoch of every run in a `load_runs` table (the number to report: choosing
    the best test epoch would pick the epoch by looking at the test set)."""
    return table.loc[table.groupby("run").epoch.idxmax()].reset_index(drop=True)


def gap_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dropout, augment, epoch): mean and std over seeds of test accuracy, the running
    gap (train_acc - test_acc) and, if measured, the clean gap (clean_train_acc - test_acc)."""
    t = table.assign(running_gap=table.train_acc - table.test_acc)
    cols = ["test_acc", "running_gap"]
    if "clean_train_acc" in t:
        t["clean_gap"] = t.clean_train_acc - t.test_acc
        cols.append("clean_gap")
    g = t.groupby(["dropout", "augment", "epoch"])[cols].agg(["mean", "std", "count"])
    g.columns = [f"{c}_{s}" for c, s in g.columns]
    return g.reset_index()
