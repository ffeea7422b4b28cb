#!/usr/bin/env bash
# The GPU measurements as one script for one lent GPU: one step group per device call.
#   STEPS=lab30 bash results/gpu/run.sh          # a group (or step names), in order
#   DRY_RUN=1 STEPS=lab30 bash results/gpu/run.sh  # each step's limit and command; runs nothing
#
# Each group is one issue's whole GPU part, sized to one device call of about 8 minutes of steps
# (BUDGET=540 s of step limits; the device tool allows 600 s a command and 15 minutes a session,
# the machine's start included). Run it, then unpack $OUT/gpu-results.tar.gz into the repository
# and commit. Groups (results/gpu/PLAN.md has the estimates):
#   lab30 (issue 34): decode-cache, lab-floor, lab-cold, lab-warm (the lab's 15 epochs end to end
#         with an empty, then a warm compile cache, and what lies outside the epochs); then the
#         fast preset's second screen on validation (results/fast-screen-gpu-val, one process),
#         choose-fast (writes results/fast-test-2/grid.yaml) and its three test seeds. The time
#         ratio compares them with lab-warm, the lab's run with its defaults on the same machine.
#   stem94 (issue 33): decode-cache, the CIFAR-stem screen on validation (three runs, one process
#         each), choose-cifar (writes results/cifar-stem-test/grid.yaml) and its three test seeds.
#   ablation-stem (issue 35): decode-cache and the eight runs of results/cifar-stem-ablation.
# A step whose limit is more than the time left of BUDGET is not started, and timings.txt says
# so; the same command again skips finished runs and resumes a cut one from its last epoch.
# The compile cache lives in runs/inductor-cache (TORCHINDUCTOR_CACHE_DIR, with the FX graph and
# AOT autograd caches on) for every step: lab-cold empties it first, every other step finds what
# the steps before it left; timings.txt says how many files it held.
#
# Earlier sessions (issues 11 and 14) ran decode-cache, the fast-preset test spec
# (results/fast-test/grid.yaml) into results/fast-test-gpu/, lab-capture-on-seed0, bench and
# cifar_stem-capture-on-seed0 (results/gpu/grid.yaml), then
#   STEPS="decode-cache fast-capture-off-seed0 fast-capture-on-seed0 lab-capture-off-seed1 lab-capture-on-seed1" \
#     bash results/gpu/run.sh
# (both without the compile cache setting, so with inductor's default cache under /tmp).
# Those steps still work by name.
#
# The benchmark goes to results/gpu/bench-gpu.json, each step's wall time (process start,
# data, compilation and all) to results/gpu/timings.txt and its output to results/gpu/logs/.
# Needs python3 with torch, torchvision, pandas, pyyaml and pillow (no papermill: the runs
# train in process), and CIFAR-10 as data/cifar10-jpeg/ or as the archive
# data/cifar10-jpeg.tar.gz (carry the 20 MB archive, not the unpacked folder, whose decode
# caches are 180 MB). Where $OUT is set (the device tool), the results without checkpoints are
# packed into $OUT/gpu-results.tar.gz after every step.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_LOGS=perf_hints
CACHE=$PWD/runs/inductor-cache  # the persistent compile cache (git-ignored, not packed)
export TORCHINDUCTOR_CACHE_DIR=$CACHE TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
unset TRITON_CACHE_DIR  # Triton's kernels then go under $CACHE too
DIR=results/gpu
FAST=results/fast-test-gpu
CIFAR_SCREEN=results/cifar-stem-screen-val
CIFAR_TEST=results/cifar-stem-test
FAST_SCREEN=results/fast-screen-gpu-val
FAST_TEST=results/fast-test-2
LAB_CACHE=results/lab-compile-cache
STEM_ABLATION=results/cifar-stem-ablation
RESULTS="$DIR $FAST $LAB_CACHE $CIFAR_SCREEN $CIFAR_TEST $FAST_SCREEN $FAST_TEST $STEM_ABLATION"
BUDGET=${BUDGET:-540}  # seconds for the whole script: leave the device tool's limit a margin
DRY_RUN=${DRY_RUN:-}
START=$SECONDS
TOTAL=0

LAB30="decode-cache lab-floor lab-cold lab-warm fast-screen choose-fast fast-test-seed0 \
fast-test-seed1 fast-test-seed2"
STEM94="decode-cache cifar-screen-lr0.2-wd0.0005 cifar-screen-lr0.1-wd0.0005 \
cifar-screen-lr0.1-wd0.001 choose-cifar cifar-test-seed0 cifar-test-seed1 cifar-test-seed2"
ABLATION_STEM="decode-cache $(for s in 0 1; do for d in 0.0 0.5; do for a in none lab; do
  printf 'ablation-stem-dropout%s-aug%s-seed%s ' $d $a $s; done; done; done)"

pack() {
  if [ -n "${OUT:-}" ]; then
    tar -czf "$OUT/gpu-results.tar.gz" --exclude=checkpoint.pt $(for d in $RESULTS; do
      [ -d "$d" ] && echo "$d"; done)
  fi
}

step() {  # step NAME SECONDS COMMAND...: run it within SECONDS, log it and its time, go on
  local name=$1 limit=$2 t0=$SECONDS rc left cached
  shift 2
  if [ -n "$DRY_RUN" ]; then
    printf 'step %-22s %4d s  %s\n' "$name" "$limit" "$*"
    TOTAL=$((TOTAL + limit))
    return 0
  fi
  left=$((BUDGET - (SECONDS - START)))
  if ((limit > left)); then
    echo "$name: not started, its limit is ${limit} s and ${left} s are left of BUDGET=${BUDGET}" \
      | tee -a "$DIR/timings.txt"
    return 0
  fi
  if [ "$name" = lab-cold ]; then rm -rf "$CACHE"; fi  # its point: an empty compile cache
  cached=$(find "$CACHE" -type f 2>/dev/null | wc -l)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$DIR/logs/$name.log"
  rc=${PIPESTATUS[0]}
  echo "$name: $((SECONDS - t0)) s, exit $rc$( ((rc == 124)) && echo " (cut at ${limit} s)"),\
 compile cache ${cached} files before" | tee -a "$DIR/timings.txt"
  pack
}

grid_step() {  # grid_step NAME SECONDS SPEC RUN: one run of a spec, in its own process
  step "$1" "$2" python3 -m lab_utils.grid "$3" --in-process --only "$4"
}

run_step() {  # one step by name; each run is end to end: process start, data, model,
  # compilation (captured), the epochs
  case $1 in
    decode-cache)  # first, so that no run's time includes decoding 60,000 JPEGs
      step decode-cache 45 python3 -c "from lab_utils.data import load_tensors; [load_tensors(\
'data/cifar10-jpeg', 'cifar10', split) for split in ('train', 'test')]" ;;
    # Issue 25, item 3: what lies outside the epochs, then the lab's 15 epochs captured,
    # cold (an empty compile cache) and warm (the cache lab-cold filled), one after the other.
    lab-floor)
      step lab-floor 10 python3 $DIR/floor.py --data-dir data/cifar10-jpeg --out $DIR/floor.json ;;
    lab-cold)
      [ -z "$DRY_RUN" ] || echo "     (lab-cold empties $CACHE first)"
      grid_step lab-cold 90 $LAB_CACHE/grid.yaml lab-cold-seed0 ;;
    lab-warm)
      grid_step lab-warm 75 $LAB_CACHE/grid.yaml lab-warm-seed0 ;;
    # Issue 33: the CIFAR-stem screen on validation (the first run compiles cold), the choice,
    # then its test spec's 3 seeds.
    cifar-screen-*)
      grid_step "$1" 75 $CIFAR_SCREEN/grid.yaml "${1#cifar-screen-}-seed0" ;;
    choose-cifar)
      step choose-cifar 15 python3 -m lab_utils.analysis choose $CIFAR_SCREEN \
        --write $CIFAR_TEST/grid.yaml --seeds 0 1 2 ;;
    cifar-test-seed*)
      grid_step "$1" 75 $CIFAR_TEST/grid.yaml "cifar_stem-seed${1#cifar-test-seed}" ;;
    # Issue 34: the fast preset's second screen on validation (eager, all runs in one
    # process), the choice, then its 3 seeds, one after the other.
    fast-screen)
      step fast-screen 170 python3 -m lab_utils.grid $FAST_SCREEN/grid.yaml --in-process ;;
    choose-fast)
      step choose-fast 15 python3 -m lab_utils.analysis choose $FAST_SCREEN \
        --write $FAST_TEST/grid.yaml --seeds 0 1 2 ;;
    fast-test-seed*)
      grid_step "$1" 45 $FAST_TEST/grid.yaml "fast-seed${1#fast-test-seed}" ;;
    # Issue 35: the 2x2 ablation with the CIFAR stem, one run per process.
    ablation-stem-*)
      grid_step "$1" 60 $STEM_ABLATION/grid.yaml "${1#ablation-stem-}" ;;
    # The earlier sessions' steps.
    lab-seed0 | crop0-ep6-seed*)  # issue 11: the fast-preset test spec, eager
      step "$1" "$([ "$1" = lab-seed0 ] && echo 150 || echo 90)" python3 -m lab_utils.grid \
        results/fast-test/grid.yaml --out $FAST --in-process --only "$1" ;;
    bench)
      step bench 120 sh -c "python3 -m lab_utils.bench --data-dir data/cifar10-jpeg \
        --loaders tensor > $DIR/bench-gpu.json.part && mv $DIR/bench-gpu.json.part $DIR/bench-gpu.json" ;;
    cifar_stem-capture-on-seed0)  # with the time that is left
      local left=$((BUDGET - (SECONDS - START)))
      if [ -n "$DRY_RUN" ] || ((left >= 60)); then
        step "$1" "$left" python3 -m lab_utils.grid $DIR/grid.yaml --in-process --only "$1"
      else
        echo "$1: not started, ${left} s left" | tee -a "$DIR/timings.txt"
      fi ;;
    *)  # any other run of results/gpu/grid.yaml
      step "$1" 180 python3 -m lab_utils.grid $DIR/grid.yaml --in-process --only "$1" ;;
  esac
}

if [ -z "${STEPS:-}" ]; then
  echo "name a step group: STEPS=lab30 (issue 34), STEPS=stem94 (issue 33) or STEPS=ablation-stem" \
    "(issue 35), or step names; DRY_RUN=1 lists a group's steps"
  exit 2
fi
NAMES=$(for s in $STEPS; do  # groups expanded, each step once (the first time)
  case $s in lab30) echo $LAB30 ;; stem94) echo $STEM94 ;; ablation-stem) echo $ABLATION_STEM ;;
    *) echo $s ;; esac
done | tr ' ' '\n' | awk 'NF && !seen[$0]++')

if [ -n "$DRY_RUN" ]; then
  for name in $NAMES; do run_step "$name"; done
  echo "total $TOTAL s of step limits, BUDGET $BUDGET s: $( ((TOTAL <= BUDGET)) && echo fits \
    || echo "over by $((TOTAL - BUDGET)) s")"
  exit 0
fi

mkdir -p "$DIR/logs"
if [ ! -d data/cifar10-jpeg/train ]; then
  mkdir -p data/cifar10-jpeg && tar -xzf data/cifar10-jpeg.tar.gz -C data/cifar10-jpeg
fi
if [ ! -d data/cifar10-jpeg/train ] || [ ! -d data/cifar10-jpeg/test ]; then
  echo "no CIFAR-10: put the JPEG copy at data/cifar10-jpeg/{train,test} or data/cifar10-jpeg.tar.gz"
  exit 1
fi
HEADER="# $(date -u '+%Y-%m-%d %H:%M UTC'): $STEPS"
{ echo "$HEADER"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda)"; echo "cores $(nproc)"; } \
  | tee -a "$DIR/machine.txt"
echo "$HEADER" >> "$DIR/timings.txt"

for name in $NAMES; do
  run_step "$name"
done

python3 - <<'PY' | tee "$DIR/summary.txt"
import json
import re
from pathlib import Path
from lab_utils import analysis, runs
folders = ("results/fast-test-gpu", "results/gpu", "results/lab-compile-cache",
           "results/cifar-stem-screen-val", "results/cifar-stem-test",
           "results/fast-screen-gpu-val", "results/fast-test-2", "results/cifar-stem-ablation")
for run in [r for folder in folders if Path(folder).is_dir()
            for r in analysis.find_runs(folder)]:
    h, m = runs.load_history(run), runs.load_metrics(run) or {}
    steady = h.epoch_time_s.iloc[1:].median() * len(h) if len(h) > 1 else float("nan")
    print(f"{run.parent.name}/{run.name}: {len(h)} epochs, test acc {h.test_acc.iloc[-1]:.2f}%, "
          f"train+test {h.epoch_time_s.sum():.1f} s (epoch 1: {h.epoch_time_s.iloc[0]:.1f} s), "
          f"{len(h)} x the median later epoch {steady:.1f} s, captured {m.get('captured')}, "
          f"cudagraph skips {m.get('cudagraph_skips')}, {m.get('device')}"
          + (f", val acc {m['val_acc']:.2f}%" if "val_acc" in m else ""))
# Item 3: where the lab's time goes, from the first finished try of each step (timings.txt).
ends = {}
for line in Path("results/gpu/timings.txt").read_text().splitlines():
    hit = re.match(r"^([\w.-]+): (\d+) s, exit 0", line)
    if hit:
        ends.setdefault(hit[1], int(hit[2]))
for step in ("lab-cold", "lab-warm"):
    run = Path("results/lab-compile-cache") / f"{step}-seed0"
    if step in ends and runs.is_finished(run):
        t = runs.load_history(run).epoch_time_s
        print(f"{step}: end to end {ends[step]} s = {ends[step] - t.sum():.1f} s outside the "
              f"epochs (process start, imports, data, model, checkpoints, exit) + epoch 1 "
              f"{t.iloc[0]:.1f} s (compilation and capture) + epochs 2-{len(t)} "
              f"{t.iloc[1:].sum():.1f} s (median {t.iloc[1:].median():.2f} s)")
floor = Path("results/gpu/floor.json")
if floor.is_file():
    print("lab-floor:", json.dumps(json.loads(floor.read_text())))
PY
pack
cat "$DIR/timings.txt"
