"""Less per-step overhead on CUDA: the model's training step captured as CUDA graphs.

At the lab's batch of 128, a GPU as fast as an H100 finishes ResNet-18's forward and
backward kernels faster than Python can launch them (results/README.md): the GPU waits. The
`capture` parameter hands the model to `torch.compile(mode="reduce-overhead")`, which
fuses its forward and backward passes into fewer kernels and records them as CUDA graphs,
so that each training step is replayed by a few launches instead of hundreds. The
optimizer stays outside the graph as one fused kernel (`model_and_optimizer` asks for
fused SGD on CUDA), so that the learning-rate schedule, the gradient scaler and the
checkpoints work as in eager PyTorch.

The CPU path is unchanged: there is no launch overhead to remove, and the training loop
(`lab_utils.train.train_epoch`, or a student's) is the same code either way, since it only
calls the model.
"""
from __future__ import annotations

import torch
from torch import nn

# Where capture="auto" turns capture on: the GPUs (as torch.cuda.get_device_name names
# them) on which the lab's 15 epochs were measured faster captured than eager, compilation
# included (results/README.md, "Speed on a GPU"). Other GPUs stay eager until measured:
# one that does not wait on kernel launches at batch 128, or a machine with few CPU cores
# to compile on, may not gain; a short run may not earn back its compilation.
MEASURED_FASTER_ON: tuple[str, ...] = ("NVIDIA H200",)


def uses_capture(device: torch.device, capture: str) -> bool:
    """Whether training on `device` captures the step, as the `capture` parameter says:
    "on" (CUDA only; `lab_utils.config.validate` refuses it elsewhere), "off", or "auto"
    (on the GPUs where it was measured faster, `MEASURED_FASTER_ON`). Compilation makes the
    first epoch longer, which a run of a few epochs may not earn back: pass "off" for
    such runs (results/README.md, "Speed on a GPU")."""
    if capture == "auto":
        return device.type == "cuda" and torch.cuda.get_device_name(device) in MEASURED_FASTER_ON
    return capture == "on" and device.type == "cuda"


class CapturedModel(nn.Module):
    """`model` for training, with its full-size batches run through a compiled copy.

    The compiled copy shares `model`'s parameters and buffers (it is `model`, traced), so
    the optimizer, `state_dict` and checkpoints see one set of weights. Only batches of the
    first size seen in train mode are compiled: the last, smaller batch of an epoch runs
    eagerly, since capturing one step an epoch would cost a second compilation for nothing.
    In eval mode the model runs eagerly too: `evaluate` measures with the plain model.
    `backend` and `mode` are torch.compile's; the tests use backend="aot_eager" on the CPU,
    which traces the same graphs without generating code.
    """

    def __init__(self, model: nn.Module, backend: str = "inductor",
                 mode: str | None = "reduce-overhead"):
        super().__init__()
        self.model = model
        # Kept out of the module tree so that the same weights are not registered twice.
        self.__dict__["compiled"] = torch.compile(model, backend=backend, mode=mode,
                                                  dynamic=False)
        self.batch_size: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.model(x)
        if self.batch_size is None:
            self.batch_size = len(x)
        if len(x) != self.batch_size:
            return self.model(x)
        # A new training step: the graphs' output memory of the last step may be reused.
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def cudagraph_skips() -> int:
    """How many compiled graphs ran without CUDA graphs so far in this process (inductor
    says why with TORCH_LOGS=perf_hints): 0 when every compiled graph was captured."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def for_training(model: nn.Module, device: torch.device, capture: str) -> nn.Module:
    """The module `train_epoch` should call on `device`: a `CapturedModel` around `model`
    where `uses_capture` says so, else `model` itself."""
    return CapturedModel(model) if uses_capture(device, capture) else model
