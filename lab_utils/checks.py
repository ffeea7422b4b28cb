"""Checks for the code a student writes in the notebooks: one call after the student's
cell compares their version with the library's and says at once what differs.

A check that passes prints one line. One that fails raises `CheckFailed` with what
differs and where to look (a mode, a missing call, a value), never a bare assertion or a
traceback from inside torch; an error raised inside the student's code is reported with
the line of their code that raised it.
"""
from __future__ import annotations

import copy
import traceback
from typing import Any, Callable

import torch
from torch import nn

from .model import build_model

NOT_WRITTEN = ("{name} is not written yet: replace `raise NotImplementedError()` in the cell "
               "above with your code, run that cell, then this one.")


class CheckFailed(Exception):
    """The student's code does not do what the lesson asks; the message says what differs."""


def _call(name: str, fn: Callable, *args: Any) -> Any:
    """`fn(*args)`, with an exception inside it turned into `CheckFailed` naming the line
    of the student's code that raised it."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(NOT_WRITTEN.format(name=name)) from None
    except Exception as err:  # the student's error, reported at the student's line
        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if "lab_utils" not in f.filename and "torch" not in f.filename]
        where = f" at line {frames[-1].lineno}: `{frames[-1].line}`" if frames else ""
        raise CheckFailed(f"{name} raised {type(err).__name__}{where}: {err}") from None


class _Spy:
    """Wraps an optimizer (or scheduler) and counts the calls the loop makes."""

    def __init__(self, inner: Any):
        self.inner, self.calls = inner, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("zero_grad", "step"):
            def counted(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return counted
        return attr


def _tiny_run(seed: int = 0):
    """A small lab model, its SGD optimizer and three generated batches (CPU, fp32)."""
    torch.manual_seed(seed)
    model = build_model(10, 0.5, pretrained=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
               for n in (16, 16, 12)]
    return model, opt, batches


def check_train_epoch(fn: Callable, name: str = "my_train_epoch") -> None:
    """Check a student's epoch loop against `lab_utils.train.train_epoch`.

    Both run one epoch over the same three generated batches (the last one smaller) from
    the same model, optimizer and random state on the CPU; the returned train loss and
    accuracy (%) and the weights afterwards must agree. A mismatch is explained by what
    the loop called (`model.train()`, `zero_grad` once per batch, `step` once per batch)
    before falling back to the largest difference found.
    """
    from .train import train_epoch

    ref_model, ref_opt, batches = _tiny_run()
    model, opt = copy.deepcopy(ref_model), None
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    criterion, cpu = nn.CrossEntropyLoss(), torch.device("cpu")
    torch.manual_seed(1)  # the same dropout masks in both loops
    want = train_epoch(ref_model, batches, ref_opt, criterion, cpu, None, "fp32")

    model.eval()  # the loop must switch the model to train mode itself
    modes = []
    model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    spy = _Spy(opt)
    torch.manual_seed(1)
    got = _call(name, fn, model, batches, spy, criterion, cpu, None, "fp32")

    if not isinstance(got, tuple) or len(got) != 2:
        raise CheckFailed(f"{name} should return (train loss, train accuracy in %), a tuple "
                          f"of two numbers; it returned {got!r}")
    loss, acc = (float(v) for v in got)
    n = len(batches)
    if not modes:
        raise CheckFailed(f"{name} never called the model: call model(x) on every batch")
    if not all(modes):
        raise CheckFailed(f"{name} ran the model in eval mode: call model.train() before the "
                          "loop, so that Dropout and BatchNorm behave as in training")
    if spy.calls.count("step") != n:
        raise CheckFailed(f"{name} called optimizer.step() {spy.calls.count('step')} time(s) "
                          f"for {n} batches: once per batch, after loss.backward()")
    if spy.calls.count("zero_grad") < n and not _grads_cleared(model):
        raise CheckFailed(f"{name} called optimizer.zero_grad() {spy.calls.count('zero_grad')} "
                          f"time(s) for {n} batches: without it every batch's gradient is added "
                          "to the previous ones; call it once per batch, before loss.backward()")
    if abs(acc - want[1] / 100) < 1e-6 and want[1] > 0:
        raise CheckFailed(f"{name} returned accuracy {acc:.4f}, a fraction: return it in % "
                          f"(the library's loop gives {want[1]:.2f})")
    if abs(loss - want[0]) > 1e-4 * max(1.0, abs(want[0])):
        raise CheckFailed(
            f"{name} returned train loss {loss:.5f}, the library's loop {want[0]:.5f}: the "
            "epoch's loss is the mean over its images (sum each batch's loss times its size, "
            "divide by the number of images); the batches here have 16, 16 and 12 images")
    if abs(acc - want[1]) > 1e-6:
        raise CheckFailed(f"{name} returned train accuracy {acc:.2f}%, the library's loop "
                          f"{want[1]:.2f}%: count correct predictions (argmax of the outputs "
                          "equal to the labels) over all images, in %")
    worst = max(((k, (a - b).abs().max().item()) for (k, a), b in zip(
        model.state_dict().items(), ref_model.state_dict().values()) if a.is_floating_point()),
        key=lambda kv: kv[1])
    if worst[1] > 1e-4:
        raise CheckFailed(f"after {name} the weights differ from the library loop's (largest "
                          f"difference {worst[1]:.2e} in {worst[0]}): per batch the order is "
                          "zero_grad, forward, loss, backward, step")
    print(f"Check passed: {name} gives the library's loss ({loss:.4f}), accuracy "
          f"({acc:.2f}%) and weights on {n} generated batches.")


def _grads_cleared(model: nn.Module) -> bool:
    """True when the gradients were reset another way (model.zero_grad(), set to None)."""
    return all(p.grad is None for p in model.parameters())
