"""The ablation that answers the lab's open question: Dropout {0, 0.5} x augmentation
{the lab's, none}, each cell trained through `notebooks/04_train.ipynb` by papermill.

    python -m lab_utils.ablation --seeds 0 1 -p pretrained False -p data_dir data/cifar10-jpeg

Each (cell, seed) gets its own run directory under `--out`. A finished run is skipped, an
interrupted one resumes from its checkpoint, so the same command can be run again after
Ctrl-C or a crash and only does what is missing.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from .config import ci_scale, make_config
from .paths import resolve
from .runs import is_finished
from .train import fit

CELLS = [(0.0, "none"), (0.0, "lab"), (0.5, "none"), (0.5, "lab")]
DEFAULT_OUT = "results/ablation"
# Every run of the grid also measures clean train accuracy on this many training images.
CLEAN_SUBSET = 10_000


def run_name(dropout: float, augment: str, seed: int) -> str:
    """The run directory name of one cell and seed, e.g. `dropout0.5-auglab-seed0`."""
    return f"dropout{dropout}-aug{augment}-seed{seed}"


def grid_parameters(dropout: float, augment: str, seed: int, out: str | Path,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The papermill parameters of one run: the lab's recipe, the cell's dropout and
    augmentation, `extra` overrides (e.g. a reduced budget), and the clean-train measurement."""
    params = dict(extra or {})
    params.update(dropout=dropout, augment=augment, seed=seed, resume=True,
                  clean_train_subset=params.get("clean_train_subset", CLEAN_SUBSET),
                  run_dir=str(Path(out) / run_name(dropout, augment, seed)))
    make_config(**params)  # fail on a bad parameter before the first run starts
    return params


def _run_notebook(notebook: Path, executed: Path, params: dict[str, Any]) -> int:
    """Execute `notebook` with `params` through papermill in its own process (so that
    parallel runs do not share an event loop or GPU memory); returns its exit code."""
    executed.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(executed),
           "-y", json.dumps(params), "--cwd", str(resolve(".")), "--no-progress-bar"]
    return subprocess.run(cmd).returncode


def run_grid(seeds: Iterable[int] = (0, 1), out: str | Path = DEFAULT_OUT,
             extra: dict[str, Any] | None = None, jobs: int = 1,
             notebook: str | Path = "notebooks/04_train.ipynb",
             notebooks_out: str | Path = "runs/ablation-notebooks") -> list[Path]:
    """Run every (cell, seed) of the grid that is not finished; return all run directories.

    Runs go through papermill, `jobs` at a time (on a GPU that a single small-batch run
    leaves mostly idle, several at once finish sooner); the executed notebooks land in
    `notebooks_out` (git-ignored), the run directories in `out`. Raises `RuntimeError`
    naming the runs that failed, after the others have finished.
    """
    todo, run_dirs = [], []
    for seed in seeds:
        for dropout, augment in CELLS:
            params = grid_parameters(dropout, augment, seed, out, extra)
            run_dir = Path(params["run_dir"])
            run_dirs.append(run_dir)
            if is_finished(run_dir):
                print(f"done already: {run_dir.name}")
            else:
                todo.append((run_dir, params))

    def one(item: tuple[Path, dict[str, Any]]) -> tuple[str, int]:
        run_dir, params = item
        print(f"running: {run_dir.name}", flush=True)
        executed = resolve(notebooks_out) / f"{run_dir.name}.ipynb"
        return run_dir.name, _run_notebook(resolve(notebook), executed, params)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [name for name, code in pool.map(one, todo) if code != 0]
    if failed:
        raise RuntimeError(f"these runs failed (see their notebooks in {notebooks_out}): "
                           + ", ".join(failed) + "; run the same command again to resume them")
    return run_dirs


def make_smoke_runs(out: str | Path, seeds: Iterable[int] = (0, 1)) -> Path:
    """The whole grid at CI scale, in-process (two epochs on generated data per run): the
    stand-in results that notebook 05 reads under pytest. Returns `out`."""
    for seed in seeds:
        for dropout, augment in CELLS:
            params = grid_parameters(dropout, augment, seed, out)
            fit(ci_scale(make_config(**params), keep_run_dir=True), progress=False)
    return resolve(out)


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder of the run directories")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (e.g. 4 on a GPU)")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a training parameter for every run, as papermill's -p")
    args = parser.parse_args(argv)
    extra = {name: _parse_value(value) for name, value in args.p}
    run_grid(args.seeds, args.out, extra, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
