"""The captured training step (lab_utils.capture) trains exactly as the eager model does.

CUDA graphs need a GPU, so these tests trace the same model with torch.compile's
"aot_eager" backend on the CPU: the forward and backward graphs are captured as on CUDA,
and only the code generation and the graph recording are left out.
"""
import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from lab_utils.capture import CapturedModel, for_training, uses_capture
from lab_utils.config import ConfigError, make_config
from lab_utils.model import build_model
from lab_utils.train import train_epoch

CPU = torch.device("cpu")


def lab_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(make_config(pretrained=False)).to(memory_format=torch.channels_last)


def batches(sizes=(8, 8, 8, 3)):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
            for n in sizes]


def one_epoch(model: nn.Module, weights: nn.Module, data) -> tuple[float, float]:
    opt = torch.optim.SGD(weights.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    torch.manual_seed(3)  # the same dropout masks for both runs
    return train_epoch(model, data, opt, nn.CrossEntropyLoss(), CPU)


def test_captured_step_gives_the_eager_losses_and_weights():
    eager = lab_model()
    traced = copy.deepcopy(eager)
    counter = CompileCounterWithBackend("aot_eager")
    captured = CapturedModel(traced, backend=counter, mode=None)
    data = batches()
    expected = one_epoch(eager, eager, data)
    got = one_epoch(captured, traced, data)
    assert got == pytest.approx(expected, rel=1e-5)
    # The training step really went through the compiled graphs, once: the last batch of 3
    # ran eagerly instead of costing a second compilation.
    assert counter.frame_count == 1 and captured.batch_size == 8
    for (name, a), b in zip(eager.state_dict().items(), traced.state_dict().values()):
        if a.is_floating_point():  # weights and BatchNorm's running statistics alike
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_captured_model_holds_one_set_of_weights_and_evaluates_eagerly():
    model = lab_model()
    counter = CompileCounterWithBackend("aot_eager")
    captured = CapturedModel(model, backend=counter, mode=None)
    assert len(list(captured.parameters())) == len(list(model.parameters()))
    captured.eval()
    assert not model.training  # train()/eval() reach the wrapped model
    with torch.no_grad():
        captured(torch.randn(4, 3, 32, 32))
    assert counter.frame_count == 0


def test_capture_is_off_on_the_cpu_and_on_needs_cuda():
    model = lab_model()
    assert not uses_capture(CPU, "auto") and not uses_capture(CPU, "on")
    assert for_training(model, CPU, "auto") is model
    with pytest.raises(ConfigError, match="capture='on'.*only on a CUDA GPU.*device='cpu'"):
        make_config(capture="on", device="cpu")
    with pytest.raises(ConfigError, match="capture='always'.*'auto', 'on', 'off'"):
        make_config(capture="always")
    assert make_config(capture="off", device="cpu").capture == "off"


def test_auto_captures_on_exactly_the_gpus_where_the_lab_was_measured_faster_captured(
        monkeypatch):
    # Every committed pair of the lab's 15 epochs, captured and eager, on one GPU (same seed):
    # MEASURED_FASTER_ON must name the GPUs where every such pair was faster captured.
    from lab_utils import analysis, runs
    from lab_utils.capture import MEASURED_FASTER_ON
    from lab_utils.config import saved_config
    results = Path(__file__).resolve().parents[1] / "results"
    lab = [d for folder in ("gpu", "fast-test-gpu") for d in analysis.find_runs(results / folder)
           if saved_config(runs.load_config(d))["preset"] == "lab"]
    times: dict = {}
    for d in lab:
        m = runs.load_metrics(d)
        times.setdefault((m["device"], m["seed"]), {})[m["captured"]] = m["wall_time_s"]
    pairs = {k: v for k, v in times.items() if len(v) == 2}
    assert len(pairs) >= 2
    faster = {dev for (dev, _), v in pairs.items() if v[True] < v[False]}
    slower = {dev for (dev, _), v in pairs.items() if v[True] >= v[False]}
    assert set(MEASURED_FASTER_ON) == faster - slower
    cuda = torch.device("cuda")
    for gpu in (*faster, "a GPU never measured here"):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, g=gpu: g)
        assert uses_capture(cuda, "auto") is (gpu in MEASURED_FASTER_ON)
        assert uses_capture(cuda, "on") and not uses_capture(cuda, "off")


def test_the_fast_preset_turns_capture_off_as_measured():
    # On the H200 its 6 epochs took longer captured than eager (compilation is not earned
    # back): results/gpu/fast-capture-*-seed0, README "Speed on a GPU".
    from lab_utils import runs
    from lab_utils.config import load_preset
    gpu = Path(__file__).resolve().parents[1] / "results" / "gpu"
    eager, captured = (runs.load_metrics(gpu / f"fast-capture-{c}-seed0") for c in ("off", "on"))
    assert captured["captured"] and not eager["captured"]
    assert captured["wall_time_s"] > eager["wall_time_s"]
    assert load_preset("fast")["capture"] == "off"
