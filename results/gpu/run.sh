#!/usr/bin/env bash
# The GPU measurements (issue 14) as one script for one lent GPU, in about 9 minutes:
# the lab's 15 epochs with the training step captured as CUDA graphs, then eager (same
# seed), the benchmark (eager and captured, steady-state), and the CIFAR-stem preset for
# up to 30 epochs with the time that is left. Runs go to results/gpu/ (results/gpu/grid.yaml),
# the benchmark to results/gpu/bench-gpu.json, each step's wall time to results/gpu/timings.txt.
#   bash results/gpu/run.sh
# Needs python3 with torch, torchvision, pandas, pyyaml and pillow (no papermill: the runs
# train in process), and CIFAR-10 as data/cifar10-jpeg/ or the archive data/cifar10-jpeg.tar.gz.
# Rerunning it skips finished runs and resumes a cut one. Where $OUT is set (the device
# tool), the results (without checkpoints) are also packed into $OUT/gpu-results.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_LOGS=perf_hints
DIR=results/gpu
BUDGET=${BUDGET:-560}  # seconds for the whole script, within the device tool's 10 minutes
START=$SECONDS

step() {  # step NAME SECONDS COMMAND...: run it within SECONDS, log its wall time, go on
  local name=$1 limit=$2 t0=$SECONDS rc=0
  shift 2
  timeout "$limit" "$@" || rc=$?
  echo "$name: $((SECONDS - t0)) s, exit $rc$( ((rc == 124)) && echo " (cut at ${limit} s)")" \
    | tee -a "$DIR/timings.txt"
}

pack() {
  [ -n "${OUT:-}" ] && tar -czf "$OUT/gpu-results.tar.gz" --exclude=checkpoint.pt "$DIR"
}
trap pack EXIT

if [ ! -d data/cifar10-jpeg/train ]; then
  mkdir -p data/cifar10-jpeg && tar -xzf data/cifar10-jpeg.tar.gz -C data/cifar10-jpeg || {
    echo "no CIFAR-10: put the JPEG copy at data/cifar10-jpeg or data/cifar10-jpeg.tar.gz"
    exit 1; }
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda)"; nproc; } | tee "$DIR/machine.txt"

# The decode cache first, so that no run's time includes decoding 60,000 JPEGs.
step decode-cache 60 python3 -c "from lab_utils.data import load_tensors
for split in ('train', 'test'): load_tensors('data/cifar10-jpeg', 'cifar10', split)"
# End to end, each: process start, data, model, compilation (captured), 15 epochs.
for run in lab-capture-on-seed0 lab-capture-off-seed0; do
  step "$run" 150 python3 -m lab_utils.grid $DIR/grid.yaml --in-process --only "$run"
done
step bench 90 sh -c "python3 -m lab_utils.bench --data-dir data/cifar10-jpeg --loaders tensor \
  > $DIR/bench-gpu.json"
LEFT=$((BUDGET - (SECONDS - START)))
step cifar_stem-capture-on-seed0 $((LEFT > 30 ? LEFT : 30)) \
  python3 -m lab_utils.grid $DIR/grid.yaml --in-process --only cifar_stem-capture-on-seed0

python3 - <<'PY'
import json
from pathlib import Path
import pandas as pd
for run in sorted(Path("results/gpu").glob("*/history.csv")):
    h = pd.read_csv(run)
    m = json.loads((run.parent / "metrics.json").read_text()) if (
        run.parent / "metrics.json").is_file() else {}
    steady = h.epoch_time_s.iloc[1:].median() * len(h) if len(h) > 1 else float("nan")
    print(f"{run.parent.name}: {len(h)} epochs, test acc {h.test_acc.iloc[-1]:.2f}%, "
          f"train+test {h.epoch_time_s.sum():.1f} s (epoch 1: {h.epoch_time_s.iloc[0]:.1f} s), "
          f"steady state {steady:.1f} s, captured {m.get('captured')}, {m.get('device')}")
PY
cat "$DIR/timings.txt"
