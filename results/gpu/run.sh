#!/usr/bin/env bash
# The GPU measurements as one script for one lent GPU, in about 9 minutes. Issue 11: the
# fast-preset test spec (results/fast-test/grid.yaml: the lab recipe's 15 epochs, then the
# fast preset's 3 seeds) on this machine in this session, into results/fast-test-gpu/; its
# lab run is eager (the spec says capture "off") and is issue 14's eager reference.
# Issue 14: the lab's 15 epochs with the training step captured as CUDA graphs (same
# seed), the benchmark (eager and captured images/s), and the CIFAR-stem preset for up to
# 30 epochs with the time that is left (results/gpu/grid.yaml).
# The benchmark goes to results/gpu/bench-gpu.json, each step's wall time (process start,
# data, compilation and all) to results/gpu/timings.txt and its output to results/gpu/logs/.
#   bash results/gpu/run.sh
# Needs python3 with torch, torchvision, pandas, pyyaml and pillow (no papermill: the runs
# train in process), and CIFAR-10 as data/cifar10-jpeg/ or as the archive
# data/cifar10-jpeg.tar.gz (a copy of ../shared/data/cifar10-jpeg.tar.gz, 20 MB: carry that,
# not the unpacked folder, whose decode caches are 180 MB). Rerunning it skips finished runs
# and resumes a cut one from its last epoch. Where $OUT is set (the device tool), the results
# without checkpoints are packed into $OUT/gpu-results.tar.gz after every step.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_LOGS=perf_hints
DIR=results/gpu
FAST=results/fast-test-gpu
BUDGET=${BUDGET:-540}  # seconds for the whole script: leave the device tool's limit a margin
START=$SECONDS
mkdir -p "$DIR/logs"

pack() {
  if [ -n "${OUT:-}" ]; then tar -czf "$OUT/gpu-results.tar.gz" --exclude=checkpoint.pt "$DIR" \
    $( [ -d $FAST ] && echo $FAST); fi
}

step() {  # step NAME SECONDS COMMAND...: run it within SECONDS, log it and its time, go on
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$DIR/logs/$name.log"
  rc=${PIPESTATUS[0]}
  echo "$name: $((SECONDS - t0)) s, exit $rc$( ((rc == 124)) && echo " (cut at ${limit} s)")" \
    | tee -a "$DIR/timings.txt"
  pack
}

if [ ! -d data/cifar10-jpeg/train ]; then
  mkdir -p data/cifar10-jpeg && tar -xzf data/cifar10-jpeg.tar.gz -C data/cifar10-jpeg
fi
if [ ! -d data/cifar10-jpeg/train ] || [ ! -d data/cifar10-jpeg/test ]; then
  echo "no CIFAR-10: put the JPEG copy at data/cifar10-jpeg/{train,test} or data/cifar10-jpeg.tar.gz"
  exit 1
fi
HEADER="# $(date -u '+%Y-%m-%d %H:%M UTC'): $(echo ${STEPS:-the default steps})"
{ echo "$HEADER"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda)"; echo "cores $(nproc)"; } \
  | tee -a "$DIR/machine.txt"
echo "$HEADER" >> "$DIR/timings.txt"

run_step() {  # one step by name; each run is end to end: process start, data, model,
  # compilation (captured), the epochs
  case $1 in
    decode-cache)  # first, so that no run's time includes decoding 60,000 JPEGs
      step decode-cache 60 python3 -c "from lab_utils.data import load_tensors
for split in ('train', 'test'): load_tensors('data/cifar10-jpeg', 'cifar10', split)" ;;
    lab-seed0 | crop0-ep6-seed*)  # issue 11: the fast-preset test spec, eager
      step "$1" "$([ "$1" = lab-seed0 ] && echo 150 || echo 90)" python3 -m lab_utils.grid \
        results/fast-test/grid.yaml --out $FAST --in-process --only "$1" ;;
    bench)
      step bench 120 sh -c "python3 -m lab_utils.bench --data-dir data/cifar10-jpeg \
        --loaders tensor > $DIR/bench-gpu.json.part && mv $DIR/bench-gpu.json.part $DIR/bench-gpu.json" ;;
    cifar_stem-capture-on-seed0)  # with the time that is left
      local left=$((BUDGET - (SECONDS - START)))
      if ((left >= 60)); then
        step "$1" "$left" python3 -m lab_utils.grid $DIR/grid.yaml --in-process --only "$1"
      else
        echo "$1: not started, ${left} s left" | tee -a "$DIR/timings.txt"
      fi ;;
    *)  # any other run of results/gpu/grid.yaml
      step "$1" 180 python3 -m lab_utils.grid $DIR/grid.yaml --in-process --only "$1" ;;
  esac
}

# The first session's steps (issue 11 first, then issue 14), or those named in $STEPS: the
# second session's were
#   STEPS="decode-cache fast-capture-off-seed0 fast-capture-on-seed0 lab-capture-off-seed1 lab-capture-on-seed1" \
#     bash results/gpu/run.sh
for name in ${STEPS:-decode-cache lab-seed0 crop0-ep6-seed0 crop0-ep6-seed1 crop0-ep6-seed2 \
    lab-capture-on-seed0 bench cifar_stem-capture-on-seed0}; do
  run_step "$name"
done

python3 - <<'PY' | tee "$DIR/summary.txt"
from pathlib import Path
from lab_utils import analysis, runs
for run in [r for folder in ("results/fast-test-gpu", "results/gpu") if Path(folder).is_dir()
            for r in analysis.find_runs(folder)]:
    h, m = runs.load_history(run), runs.load_metrics(run) or {}
    steady = h.epoch_time_s.iloc[1:].median() * len(h) if len(h) > 1 else float("nan")
    print(f"{run.parent.name}/{run.name}: {len(h)} epochs, test acc {h.test_acc.iloc[-1]:.2f}%, "
          f"train+test {h.epoch_time_s.sum():.1f} s (epoch 1: {h.epoch_time_s.iloc[0]:.1f} s), "
          f"{len(h)} x the median later epoch {steady:.1f} s, captured {m.get('captured')}, "
          f"cudagraph skips {m.get('cudagraph_skips')}, {m.get('device')}")
PY
pack
cat "$DIR/timings.txt"
