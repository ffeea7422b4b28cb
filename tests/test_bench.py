"""The speed benchmark runs end to end on generated data (its timings are not tested)."""
from lab_utils import bench
from lab_utils.device import cpu_prefers_bf16


def test_the_benchmark_runs_on_generated_data_and_prints_its_figures(synthetic_dir, capsys):
    import json

    bench.main(["--data-dir", str(synthetic_dir), "--dataset", "synthetic", "--device", "cpu",
                "--num-workers", "0", "--warmup", "1", "--steps", "2", "--no-epoch",
                "--loaders", "tensor"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    auto = "bfloat16" if cpu_prefers_bf16() else "float32"  # what this CPU's flags say
    assert figures["device"] == "cpu" and figures["auto_precision"] == auto
    assert set(figures["model_only_img_s"]) == {"fp32", "bf16"}
    assert figures["tensor_fp32"]["train_img_s"] > 0 and "generated images" in figures["data"]
    assert isinstance(figures["progress_overhead_us_per_batch"], float)  # its size: a bench run
