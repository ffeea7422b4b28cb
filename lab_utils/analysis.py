"""Reading finished runs back: histories of many runs, confusion matrices, gap summaries.

Everything here works from what a run directory holds (`config.json`, `history.csv`,
`predictions.csv`), so notebook 05 renders from the committed results without training.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import yaml

from . import runs
from .config import CLASSES, LAB, NUM_CLASSES, config_dict, make_config, saved_config
from .paths import resolve


def find_runs(folder: str | Path) -> list[Path]:
    """Every run directory (a folder with `history.csv`) directly inside `folder`, sorted."""
    root = resolve(folder)
    return sorted(p for p in root.iterdir() if (p / runs.HISTORY).is_file())


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
        h["finished"] = runs.is_finished(d)
        if not h.finished.iloc[0]:
            print(f"Note: {d.name} is unfinished ({len(h)} of {cfg['epochs']} epochs, no "
                  "metrics.json): its last epoch is not a final epoch, and final_epochs leaves "
                  "it out.")
        frames.append(h)
    return pd.concat(frames, ignore_index=True)


def confusion_matrix(predictions: pd.DataFrame, num_classes: int = NUM_CLASSES) -> np.ndarray:
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
    """The last epoch of every finished run in a `load_runs` table (the number to report:
    choosing the best test epoch would pick the epoch by looking at the test set); an
    unfinished run has no final epoch yet and is left out."""
    if "finished" in table:
        table = table[table.finished]
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


# Choosing on a validation split (README, "How choices are made"): a screen's runs hold out
# val_size training images; the rule, written in the screen's spec before it runs, picks one
# setting by its final-epoch val_acc alone (the test set is not looked at), and the test spec
# measures that setting once on the test set with several seeds on the full training split.
NOT_CHOICES = ("run_dir", "resume")  # differ between any two runs and choose nothing
# Parameters of a test spec that every run shares, the lab recipe's run too (the rest belong
# to the chosen preset's runs).
SHARED_KEYS = ("dataset", "data_dir", "loader", "device", "precision", "pretrained",
               "val_size", "clean_train_subset")


def _screen(run_dirs_or_folder: str | Path | Iterable[str | Path]
            ) -> tuple[pd.DataFrame, list[str], list[dict]]:
    """(table, the parameters that differ across the runs, each run's saved parameters)."""
    if isinstance(run_dirs_or_folder, (str, Path)):
        dirs = find_runs(run_dirs_or_folder)
    else:
        dirs = sorted(resolve(d) for d in run_dirs_or_folder)
    if not dirs:
        raise ValueError(f"no runs to choose from in {run_dirs_or_folder}")
    unfinished = [d.name for d in dirs if not runs.is_finished(d)]
    if unfinished:
        raise ValueError("the screen is not finished: " + ", ".join(unfinished) + " have no "
                         "metrics.json yet; run its spec again to finish them, then choose")
    configs, vals = [], []
    for d in dirs:
        configs.append(saved_config(runs.load_config(d)))
        metrics = runs.load_metrics(d) or {}
        val = metrics.get("val_acc")
        if val is None:
            history = runs.load_history(d)
            val = history.val_acc.iloc[-1] if "val_acc" in history else None
        if val is None or not np.isfinite(val):
            raise ValueError(f"run {d.name} has no final-epoch val_acc (val_size "
                             f"{configs[-1]['val_size']}): a choice needs a validation split")
        vals.append(float(val))
    varied = [k for k in configs[0] if k not in NOT_CHOICES
              and len({json.dumps(c[k], sort_keys=True) for c in configs}) > 1]
    table = pd.DataFrame({"run": [d.name for d in dirs], "val_acc": vals,
                          "epochs": [c["epochs"] for c in configs],
                          **{k: [c[k] for c in configs] for k in varied if k != "epochs"}})
    return table, varied, configs


def _pick(table: pd.DataFrame, tolerance: float = 0.0) -> int:
    """The row the rule picks: the highest val_acc (runs within `tolerance` points of it
    count as tied), ties to fewer epochs, then to the higher val_acc, then by run name
    (the order `find_runs` gives)."""
    tied = table[table.val_acc >= table.val_acc.max() - tolerance]
    return int(tied.sort_values(["epochs", "val_acc"], ascending=[True, False],
                                kind="stable").index[0])


def choose_on_validation(run_dirs_or_folder: str | Path | Iterable[str | Path],
                         tolerance: float = 0.0) -> dict:
    """The parameters that differ across a finished validation screen, with the values of
    the run the rule picks: the highest final-epoch val_acc (from each run's metrics.json),
    ties (within `tolerance` points; 0: equal) to fewer epochs. Takes a folder of run
    directories (e.g. results/fast-screen-gpu-val) or a list of them; raises ValueError if a
    run is unfinished or has no validation split. E.g. {"crop_padding": 0, "epochs": 8}."""
    table, varied, configs = _screen(run_dirs_or_folder)
    chosen = configs[_pick(table, tolerance)]
    return {k: chosen[k] for k in varied}


def write_test_spec(screen: str | Path, out: str | Path, seeds: Sequence[int] = (0, 1, 2),
                    with_lab: bool = False, tolerance: float = 0.0) -> Path:
    """Write the grid spec that measures a screen's choice on the test set: the chosen run's
    parameters (those the screen set or varied, `val_size` 0: the full training split) with
    each of `seeds`; with `with_lab`, the lab recipe's run (seed `seeds[0]`) first, for the
    time ratio. Runs are named "{preset}-seed{seed}". Writing it again with the same choice
    changes nothing; a different choice over an existing spec raises ValueError."""
    folder = resolve(screen)
    table, varied, configs = _screen(folder)
    i = _pick(table, tolerance)
    chosen = configs[i]
    name = chosen["preset"]
    preset = config_dict(make_config(preset=name))
    skip = set(NOT_CHOICES) | {"seed", "preset"}
    shared = {k: chosen[k] for k in SHARED_KEYS if chosen[k] != getattr(LAB, k)}
    shared["val_size"] = 0
    own = {k: v for k, v in chosen.items()
           if k not in skip and k not in SHARED_KEYS and (k in varied or v != preset[k])}
    cells = [{"name": f"lab-seed{seeds[0]}", "preset": "lab", "seed": seeds[0]}] if with_lab \
        else []
    cells += [{"preset": name, **own, "seed": s} for s in seeds]
    spec = {"parameters": shared, "runs": cells, "name": "{preset}-seed{seed}"}
    path = resolve(out)
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        if {k: old.get(k) for k in spec} == spec:
            print(f"{runs.display_path(path)} already holds this choice: unchanged")
            return path
        raise ValueError(f"{runs.display_path(path)} exists and holds another choice; it is the record of "
                         "a test already specified: remove it first if the screen really changed")
    cols = ["run", "val_acc", "epochs"] + [k for k in varied if k != "epochs"]
    screen_table = "\n".join("#   " + line for line in
                             table[cols].to_string(index=False).splitlines())
    command = (f"python -m lab_utils.analysis choose {runs.display_path(folder)} --write {runs.display_path(path)} "
               f"--seeds {' '.join(map(str, seeds))}" + (" --with-lab" if with_lab else "")
               + (f" --tolerance {tolerance}" if tolerance else ""))
    prose = lambda text: textwrap.fill(text, 92, initial_indent="# ", subsequent_indent="# ")
    header = "\n".join([
        prose(f"The test spec of the choice made on validation by {runs.display_path(folder)}/, whose "
              "grid.yaml states the rule: the highest final-epoch val_acc, ties"
              + (f" within {tolerance} points" if tolerance else "") + " to fewer epochs. "
              f"Written on {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC by"),
        f"#   {command}",
        "# from the screen's runs (their test accuracy not looked at):", screen_table,
        prose(f"Chosen: {table.run[i]} ("
              + (", ".join(f"{k} {chosen[k]}" for k in varied) or "its only run") + "). "
              "Measured once on the test set, on the full training split (val_size 0), "
              "one run after the other on one machine: "
              + ("the lab recipe's run first (the lab's defaults, from scratch; on an H200 "
                 "its capture 'auto' captures), for the time ratio, then " if with_lab
                 else "") + f"seeds {', '.join(map(str, seeds))}."),
        f"#   python -m lab_utils.grid {runs.display_path(path)} --in-process", ""])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None,
                                            width=100))
    print(f"wrote {runs.display_path(path)}: {table.run[i]} chosen")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m lab_utils.analysis choose FOLDER [--write SPEC --seeds 0 1 2 --with-lab]`:
    print a validation screen's table and its choice; with --write, write the test spec."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lab_utils.analysis")
    sub = parser.add_subparsers(dest="command", required=True)
    choose = sub.add_parser("choose", help="choose on a finished validation screen")
    choose.add_argument("folder", help="the screen's folder of runs, e.g. "
                                       "results/fast-screen-gpu-val")
    choose.add_argument("--write", help="write the test spec here, e.g. "
                                        "results/fast-test-2/grid.yaml")
    choose.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    choose.add_argument("--with-lab", action="store_true",
                        help="the lab recipe's run first in the test spec, for the time ratio")
    choose.add_argument("--tolerance", type=float, default=0.0,
                        help="val_acc points within which runs count as tied (default 0)")
    args = parser.parse_args(argv)
    table, varied, _ = _screen(args.folder)
    print(table.to_string(index=False))
    print("chosen:", choose_on_validation(args.folder, args.tolerance))
    if args.write:
        write_test_spec(args.folder, args.write, args.seeds, args.with_lab, args.tolerance)


if __name__ == "__main__":
    main()
