"""The speed benchmark runs end to end on generated data (its timings are not tested)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_runs_on_generated_data_and_prints_its_figures(synthetic_dir):
    out = subprocess.run(
        [sys.executable, "-m", "lab_utils.bench", "--data-dir", str(synthetic_dir), "--dataset",
         "synthetic", "--device", "cpu", "--num-workers", "0", "--warmup", "1", "--steps", "2",
         "--no-epoch", "--loaders", "tensor"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    from lab_utils.device import cpu_prefers_bf16
    auto = "bfloat16" if cpu_prefers_bf16() else "float32"  # what this CPU's flags say
    assert figures["device"] == "cpu" and figures["auto_precision"] == auto
    assert isinstance(figures["progress_overhead_us_per_batch"], float)  # its size: a bench run
    assert set(figures["model_only_img_s"]) == {"fp32", "bf16"}
    assert figures["tensor_fp32"]["train_img_s"] > 0 and "generated images" in figures["data"]
