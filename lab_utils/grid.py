"""The grid runner: train every combination of parameters a spec file lists.

    python -m lab_utils.grid results/ablation/grid.yaml            # the lab's question
    python -m lab_utils.grid results/plain-vs-residual/grid.yaml --jobs 2
    python -m lab_utils.grid results/gpu/grid.yaml --in-process --only lab-capture-on-seed0

A spec is a YAML file in the folder its runs go to:

    preset: fast                 # optional: lab_utils/presets/fast.yaml, applied first
    parameters: {epochs: 4}      # every run
    grid: {seed: [0, 1], arch: [resnet18, plain18]}   # every combination, first key outermost
    runs: [{seed: 2, arch: resnet34}]                 # optional: single runs besides the grid
                                 # (a run may give its own folder name as `name`)
    name: "{arch}-seed{seed}"    # each run's folder, from its values

Each run goes through `notebooks/04_train.ipynb` by papermill (its values passed with
`-y`; the notebook applies the preset first, as `make_config` always does), or in this
process with `--in-process`: both build the run's config by the same rule. The spec's
`preset` is the `preset` parameter of every run, like a value in `parameters` (a run
may give its own). A finished run is skipped once its saved parameters are checked against
the spec, an interrupted one resumes from its checkpoint: the same command can be run
again after Ctrl-C or a crash and only does what is missing.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import RENAMED, ConfigError, make_config, smoke_scale, upgrade_names
from .paths import resolve
from .runs import check_resumable, display_path, is_finished
from .train import fit

SPEC_KEYS = {"preset", "parameters", "grid", "runs", "name"}


@dataclass
class Run:
    """One run of a grid: its folder and the parameters that make it (`preset` included)."""

    run_dir: Path
    params: dict[str, Any]


def load_spec(spec: str | Path, out: str | Path | None = None) -> list[Run]:
    """The runs a spec file describes, each checked by `make_config` before any starts.

    Runs go into the spec's folder, or into `out`. Raises `ConfigError` naming the spec
    and what is wrong (an unknown key, a bad parameter, two runs with one folder name).
    """
    path = resolve(spec)
    try:
        text = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"grid spec {path} cannot be read: {err}") from err
    if not isinstance(text, dict) or set(text) - SPEC_KEYS or "name" not in text:
        raise ConfigError(f"grid spec {path} must be a mapping with 'name' and some of "
                          f"{sorted(SPEC_KEYS - {'name'})}; it has {sorted(text)}"
                          if isinstance(text, dict) else f"grid spec {path} is not a mapping")
    folder = resolve(out) if out is not None else path.parent
    common = {"preset": text.get("preset", "lab"), **upgrade_names(text.get("parameters") or {})}
    grid = text.get("grid") or {}
    cells = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] \
        if grid else []
    cells += list(text.get("runs") or [])
    runs, seen = [], set()
    for cell in cells:
        cell = dict(cell)
        own_name = cell.pop("name", None)
        params = {**common, **upgrade_names(cell)}
        try:
            # Names written with a parameter's old name ("{recipe}") still work.
            old = {o: params[n] for o, n in RENAMED.items() if n in params}
            name = own_name or text["name"].format(**old, **params)
        except KeyError as err:
            raise ConfigError(f"grid spec {path}: name {text['name']!r} uses {err}, which "
                              "is not a parameter of every run") from None
        if name in seen:
            raise ConfigError(f"grid spec {path}: two runs are named {name!r}; put the "
                              "parameters that differ into 'name'")
        seen.add(name)
        params.update(resume=True, run_dir=display_path(folder / name))
        with contextlib.redirect_stdout(io.StringIO()):  # its lines come when the run starts
            make_config(**params)  # a bad value stops the grid before the first run
        runs.append(Run(folder / name, params))
    return runs


def _run_notebook(notebook: Path, executed: Path, run: Run) -> int:
    """Execute `notebook` for `run` through papermill in its own process (parallel runs
    then share no event loop or GPU memory); returns its exit code."""
    executed.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(executed),
           "-y", json.dumps(run.params), "--cwd", str(resolve(".")), "--no-progress-bar"]
    return subprocess.run(cmd).returncode


def run_grid(spec: str | Path, out: str | Path | None = None, jobs: int = 1,
             in_process: bool = False, notebook: str | Path = "notebooks/04_train.ipynb",
             notebooks_out: str | Path = "runs/grid-notebooks",
             only: list[str] | None = None, progress: bool = False) -> list[Path]:
    """Run every run of `spec` that is not finished (of those named in `only`, if given);
    return all run directories.

    `jobs` runs at a time through papermill (on a GPU that one small-batch run leaves
    mostly idle, several at once finish sooner; on a 2-core CPU keep 1), with the
    executed notebooks in `notebooks_out` (git-ignored); or one after another in this
    process with `in_process` (under LAB_SMOKE=1 every run shrinks to `smoke_scale`),
    printing a line per epoch with `progress`. Raises `RuntimeError` naming the runs that
    failed, after the others have finished (an interrupt stops the grid at once).
    """
    runs = load_spec(spec, out)
    unknown = sorted(set(only or []) - {run.run_dir.name for run in runs})
    if unknown:
        raise ConfigError(f"grid spec {spec}: --only names {', '.join(unknown)}, which it does "
                          "not have; its runs are " + ", ".join(r.run_dir.name for r in runs))
    todo = []
    for run in runs:
        if only and run.run_dir.name not in only:
            continue
        cfg = smoke_scale(make_config(**run.params), keep_run_dir=True)
        if is_finished(run.run_dir):
            check_resumable(run.run_dir, cfg)  # a finished run must be this spec's run
            print(f"done already: {run.run_dir.name}")
        else:
            todo.append((run, cfg))

    def one(item) -> tuple[str, int]:
        run, cfg = item
        print(f"running: {run.run_dir.name}", flush=True)
        if in_process:
            try:
                fit(cfg, progress=progress)
            except Exception as err:  # the other runs still train; this one is named
                print(f"failed: {run.run_dir.name}: {type(err).__name__}: {err}", flush=True)
                return run.run_dir.name, 1
            return run.run_dir.name, 0
        executed = resolve(notebooks_out) / f"{run.run_dir.name}.ipynb"
        return run.run_dir.name, _run_notebook(resolve(notebook), executed, run)

    if in_process:  # in this thread: CUDA graphs (capture="on") keep per-thread state
        failed = [name for name, code in map(one, todo) if code != 0]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            failed = [name for name, code in pool.map(one, todo) if code != 0]
    if failed:
        where = "their errors above" if in_process else f"their notebooks in {notebooks_out}"
        raise RuntimeError(f"these runs failed (see {where}): " + ", ".join(failed)
                           + "; run the same command again to resume them")
    return [run.run_dir for run in runs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="a grid spec file, e.g. results/ablation/grid.yaml")
    parser.add_argument("--out", help="folder of the run directories (default: the spec's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (e.g. 4 on a GPU)")
    parser.add_argument("--in-process", action="store_true",
                        help="train in this process instead of through notebook 04")
    parser.add_argument("--only", help="run only these runs (folder names, comma-separated)")
    args = parser.parse_args(argv)
    run_grid(args.spec, args.out, args.jobs, args.in_process,
             only=args.only.split(",") if args.only else None, progress=True)


if __name__ == "__main__":
    sys.exit(main())
