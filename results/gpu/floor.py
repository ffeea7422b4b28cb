"""Where the lab's time goes outside its epochs (issue 25, item 3): the parts of a run's
process that `history.csv` does not time, each measured once, in one process, on the GPU.

    python3 results/gpu/floor.py [--data-dir data/cifar10-jpeg] [--out results/gpu/floor.json]

Times, in seconds: importing torch, then the lab's modules (what `python -m lab_utils.grid`
loads), starting CUDA, loading both splits from the decode cache (run after step
decode-cache, so this is the cached load every run pays), copying them to the GPU, building
the lab's model and optimizer on it, and one checkpoint as `fit` writes after every epoch
(model and optimizer state, written and fsynced; the mean of 3). Trains nothing. Each part
that fails is reported and skipped; the rest still run.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data/cifar10-jpeg")
    parser.add_argument("--out", default="results/gpu/floor.json")
    parser.add_argument("--device", default="cuda", help="cpu: check the script without a GPU")
    args = parser.parse_args()
    times: dict[str, float | str] = {}
    state: dict = {}

    def part(name, fn):
        t = time.perf_counter()
        try:
            fn()
            times[name] = round(time.perf_counter() - t, 3)
        except Exception as err:  # report and go on: the other parts still tell something
            times[name] = f"failed: {type(err).__name__}: {err}"[:300]
        print(f"{name}: {times[name]}", flush=True)
        Path(args.out).write_text(json.dumps(times, indent=2) + "\n")  # kept if cut later

    def sync():
        import torch
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def cuda_init():
        import torch
        torch.zeros(1, device=args.device)
        sync()

    def load():
        from lab_utils.data import load_tensors
        state["data"] = [load_tensors(args.data_dir, "cifar10", s) for s in ("train", "test")]

    def to_gpu():
        import torch
        state["gpu"] = [(x.to(args.device), y.to(args.device)) for x, y in state["data"]]
        sync()

    def model():
        import torch
        from lab_utils.config import make_config
        from lab_utils.train import model_and_optimizer
        cfg = make_config(pretrained=False, data_dir=args.data_dir, clean_train_subset=0,
                          device=args.device)
        state["model"], state["opt"] = model_and_optimizer(cfg, torch.device(args.device))
        sync()

    def checkpoint():
        from lab_utils import runs
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            t = time.perf_counter()
            for _ in range(3):
                ckpt = {"model": state["model"].state_dict(),
                        "optimizer": state["opt"].state_dict()}
                if hasattr(runs, "save_epoch"):  # checkpoint, then history.csv, as fit does
                    runs.save_epoch(Path(tmp), [{"epoch": 1}], ckpt)
                else:
                    runs.save_checkpoint(Path(tmp), ckpt)
            times["checkpoint_each_s"] = round((time.perf_counter() - t) / 3, 3)

    part("import_torch_s", lambda: __import__("torch"))
    part("import_lab_utils_s", lambda: [__import__(m) for m in ("lab_utils.grid",
                                                                 "lab_utils.train")])
    part("cuda_init_s", cuda_init)
    part("load_decode_cache_s", load)
    part("data_to_gpu_s", to_gpu)
    part("model_and_optimizer_s", model)
    part("three_checkpoints_s", checkpoint)
    times["script_total_s"] = round(time.perf_counter() - T0, 3)
    try:
        import torch
        times["torch"] = torch.__version__
        times["device"] = torch.cuda.get_device_name() if args.device != "cpu" else "cpu"
    except Exception:
        pass
    print(json.dumps(times, indent=2))
    Path(args.out).write_text(json.dumps(times, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
