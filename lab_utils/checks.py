"""Checks for the code a student writes in the notebooks: one call after the student's
cell compares their version with the library's and says at once what differs.

A check that passes prints one line. One that fails raises `CheckFailed` with what
differs and where to look (a mode, a missing call, a value), never a bare assertion or a
traceback from inside torch; an error raised inside the student's code is reported with
the line of their code that raised it.
"""
from __future__ import annotations

import copy
import functools
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config import LabConfig
from .model import build_model

NOT_WRITTEN = ("{name} is not written yet: replace `raise NotImplementedError()` in the cell "
               "above with your code, run that cell, then this one.")


class CheckFailed(Exception):
    """The student's code does not do what the lesson asks; the message says what differs."""

    def _render_traceback_(self) -> list[str]:
        # What Jupyter (and nbgrader's feedback) shows: the message, not this module's lines.
        return [f"CheckFailed: {self}"]


def _own_rng(check: Callable) -> Callable:
    """Run `check` with its own random state: a check seeds torch to compare like with like,
    and the student's notebook must draw the same numbers afterwards as without the check."""
    @functools.wraps(check)
    def checked(*args: Any, **kwargs: Any) -> None:
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)
    return checked


LIBRARY = Path(__file__).parent  # lab_utils: what a student's code must not hand work to
HANDED_OFF = ("{name} hands the work to {what}: the task is to write it yourself, with "
              "plain PyTorch operations, so that the check compares your code with it")


def _handed_off_to(forbidden: dict[Any, str]):
    """A profile function that records the first call into `lab_utils` (this module
    excepted) or into one of `forbidden` (code objects -> what they are), and the record."""
    seen: list[str] = []
    codes = {getattr(f, "__code__", f): what for f, what in forbidden.items()}

    def profile(frame, event, arg):
        if event != "call" or seen:
            return
        code = frame.f_code
        if code in codes:
            seen.append(codes[code])
        elif code.co_filename.startswith(str(LIBRARY)) and not code.co_filename.endswith(
                "checks.py"):
            seen.append(f"lab_utils ({Path(code.co_filename).stem}.{code.co_name})")
    return profile, seen


def _call(name: str, fn: Callable, *args: Any, forbidden: dict[Any, str] | None = None) -> Any:
    """`fn(*args)`, with an exception inside it turned into `CheckFailed` naming the line
    of the student's code that raised it, and a call into `lab_utils` (or into one of
    `forbidden`, the functions the check compares with) turned into `CheckFailed` too."""
    profile, seen = _handed_off_to(forbidden or {})
    before = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = fn(*args)
    except NotImplementedError:
        raise CheckFailed(NOT_WRITTEN.format(name=name)) from None
    except Exception as err:  # the student's error, reported at the student's line
        if seen:
            raise CheckFailed(HANDED_OFF.format(name=name, what=seen[0])) from None
        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if "lab_utils" not in f.filename and "torch" not in f.filename]
        where = ""
        if frames:
            where = f" at line {frames[-1].lineno}" + (f": `{frames[-1].line}`" if frames[-1].line
                                                      else "")
        raise CheckFailed(f"{name} raised {type(err).__name__}{where}: {err}") from None
    finally:
        sys.setprofile(before)
    if seen:
        raise CheckFailed(HANDED_OFF.format(name=name, what=seen[0]))
    return result


class _Spy:
    """Wraps an optimizer and records, in `calls`, the calls the loop makes (`zero_grad`,
    `step`); `_backward_marks` adds "backward" each time gradients are computed."""

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


def _backward_marks(model: nn.Module, calls: list[str]) -> None:
    """Append "backward" to `calls` whenever a backward pass reaches the model's first
    weight (once per `loss.backward()`)."""
    first = next(model.parameters())
    first.register_hook(lambda grad: calls.append("backward"))


def _tiny_run(seed: int = 0):
    """A small lab model, its SGD optimizer and three generated batches (CPU, fp32)."""
    torch.manual_seed(seed)
    model = build_model(LabConfig(pretrained=False))
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
               for n in BATCH_SIZES]
    return model, _sgd(model), batches


BATCH_SIZES = (16, 16, 12)  # the check's three batches: the last one smaller


def _modes_hook(model: nn.Module) -> list[bool]:
    modes: list[bool] = []
    model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    return modes


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


@_own_rng
def check_train_epoch(fn: Callable, name: str = "my_train_epoch") -> None:
    """Check a student's epoch loop, the lab's `train(epoch)`: `fn(model, loader, optimizer,
    criterion, device)` trains one epoch and returns (loss, accuracy in %).

    It and `lab_utils.train.train_epoch` run one epoch over the same three generated batches
    (the last one smaller) from the same model, optimizer and random state on the CPU; the
    returned loss (the mean over the images, or the lab's mean of the batch losses) and
    accuracy and the weights afterwards must agree. A mismatch is explained by what the
    loop called, and in which order (`model.train()`, `zero_grad`, `backward`, `step` once
    per batch), before falling back to the largest difference found.
    """
    from .train import train_epoch

    ref_model, ref_opt, batches = _tiny_run()
    model = copy.deepcopy(ref_model)
    opt = _sgd(model)
    criterion, cpu = nn.CrossEntropyLoss(), torch.device("cpu")
    batch_losses: list[float] = []

    def recorded(out, y):
        loss = criterion(out, y)
        batch_losses.append(loss.item())
        return loss
    torch.manual_seed(1)  # the same dropout masks in both loops
    want = (*train_epoch(ref_model, batches, ref_opt, recorded, cpu),
            sum(batch_losses) / len(batch_losses))

    model.eval()  # the loop must switch the model to train mode itself
    modes = _modes_hook(model)
    spy = _Spy(opt)
    _backward_marks(model, spy.calls)
    torch.manual_seed(1)
    got = _call(name, fn, model, batches, spy, criterion, cpu)

    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"{name} should return (train loss, train accuracy in %), a tuple "
                          f"of two numbers; it returned {got!r}")
    try:
        loss, acc = (float(v) for v in got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{name} should return two numbers (use .item() on a tensor); it "
                          f"returned {got!r}") from None
    n, calls = len(batches), spy.calls
    if not modes:
        raise CheckFailed(f"{name} never called the model: call model(x) on every batch")
    if not all(modes):
        raise CheckFailed(f"{name} ran the model in eval mode: call model.train() before the "
                          "loop, so that Dropout and BatchNorm behave as in training")
    if calls.count("step") != n:
        raise CheckFailed(f"{name} called optimizer.step() {calls.count('step')} time(s) "
                          f"for {n} batches: once per batch, after loss.backward()")
    if calls.count("backward") != n:
        raise CheckFailed(f"{name} computed gradients {calls.count('backward')} time(s) for "
                          f"{n} batches: call loss.backward() once per batch, before step()")
    if "backward zero_grad step" in " ".join(calls):
        raise CheckFailed(f"{name} called optimizer.zero_grad() between loss.backward() and "
                          "optimizer.step(): it erases the gradients step() needs; call it "
                          "at the start of each batch, before the forward pass")
    if calls.count("zero_grad") < n and not _grads_cleared(model):
        raise CheckFailed(f"{name} called optimizer.zero_grad() {calls.count('zero_grad')} "
                          f"time(s) for {n} batches: without it every batch's gradient is added "
                          "to the previous ones; call it once per batch, before loss.backward()")
    if abs(acc - want[1] / 100) < 1e-6 and want[1] > 0:
        raise CheckFailed(f"{name} returned accuracy {acc:.4f}, a fraction: return it in % "
                          f"(the library's loop gives {want[1]:.2f})")
    tol = lambda v: 1e-4 * max(1.0, abs(v))
    if abs(loss - want[0]) > tol(want[0]) and abs(loss - want[2]) > tol(want[2]):
        sizes = ", ".join(map(str, BATCH_SIZES))
        raise CheckFailed(
            f"{name} returned train loss {loss:.5f}; the epoch's loss is {want[0]:.5f} as the "
            f"mean over its images (each batch's loss times its size, summed, over the number "
            f"of images) or {want[2]:.5f} as the lab's mean of the batch losses (running_loss "
            f"/ len(loader)); the batches here have {sizes} images")
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
    print(f"Check passed: {name} gives the loss ({loss:.4f}), accuracy ({acc:.2f}%) and "
          f"weights of the lab's loop on {n} generated batches.")


def _grads_cleared(model: nn.Module) -> bool:
    """True when the gradients were reset another way (model.zero_grad(), set to None)."""
    return all(p.grad is None for p in model.parameters())


def _worst(got: torch.Tensor, want: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """The largest absolute difference and its index (as a tuple)."""
    diff = (got - want).abs()
    flat = int(diff.argmax())
    return float(diff.max()), tuple(int(i) for i in torch.unravel_index(torch.tensor(flat),
                                                                         diff.shape))


def _explained(got: torch.Tensor, want: torch.Tensor,
               mistakes: list[tuple[torch.Tensor | None, str]], otherwise: str,
               atol: float) -> CheckFailed:
    """The failure to raise when `got` is not `want`: the message of the first known
    mistake whose result `got` equals, else `otherwise` with the largest difference
    (`{worst}`) and where it is (`{where}`) filled in."""
    for result, message in mistakes:
        if result is not None and torch.allclose(got, result, atol=atol):
            return CheckFailed(message)
    worst, where = _worst(got, want)
    return CheckFailed(otherwise.format(worst=worst, where=where))


@_own_rng
def check_saliency(fn: Callable, name: str = "my_saliency") -> None:
    """Check a student's saliency map against captum's `Saliency` (Simonyan et al. 2014).

    `fn(model, x, target)` must return, for every image of `x`, the absolute gradient of
    the target class's score (the logit, before softmax) with respect to the input
    pixels: a tensor of `x`'s shape. The check runs it on a small lab model in eval mode
    and two generated images, and names the common mistakes when the maps differ: the
    gradient of the softmax probability or of the loss instead of the score, the sign
    kept, the model switched to train mode.
    """
    from captum.attr import Saliency

    torch.manual_seed(0)
    model = build_model(LabConfig(pretrained=False)).eval()
    # A few training steps' worth of BatchNorm statistics, so eval mode is not the identity.
    with torch.no_grad():
        model.train()
        model(torch.randn(16, 3, 32, 32))
        model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([3, 7])
    want = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True).detach()

    modes = _modes_hook(model)
    got = _call(name, fn, model, x.clone(), target.clone(),
                forbidden={Saliency.attribute: "captum's Saliency"})
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name} should return a tensor of the input's shape {tuple(x.shape)}"
                          f"; it returned {type(got).__name__}")
    got = got.detach().float()
    if tuple(got.shape) != tuple(x.shape):
        raise CheckFailed(f"{name} returned shape {tuple(got.shape)}, the input has "
                          f"{tuple(x.shape)}: return the gradient for every pixel and channel "
                          "(not summed or maxed over channels yet)")
    if modes and not all(m is False for m in modes):
        raise CheckFailed(f"{name} ran the model in train mode: keep it in eval mode (BatchNorm "
                          "with its running statistics, Dropout off), as when it predicts")
    if torch.allclose(got, want, rtol=1e-4, atol=1e-7):
        print(f"Check passed: {name} gives captum's Saliency maps on 2 generated images "
              f"(largest value {float(want.max()):.3g}).")
        return
    if (got < 0).any() and torch.allclose(got.abs(), want, rtol=1e-4, atol=1e-7):
        raise CheckFailed(f"{name} kept the gradient's sign: a saliency map is its absolute "
                          "value (how strongly a pixel moves the score, either way)")

    def grad_of(score_of) -> torch.Tensor:
        xi = x.clone().requires_grad_()
        score_of(model(xi)).backward()
        return xi.grad.abs()

    picked = lambda t: t.gather(1, target[:, None]).sum()
    mistakes = {
        "the softmax probability": grad_of(lambda out: picked(out.softmax(1))),
        "the cross-entropy loss": grad_of(lambda out: nn.functional.cross_entropy(out, target)),
    }
    for what, m in mistakes.items():
        if torch.allclose(got, m, rtol=1e-3, atol=1e-9):
            raise CheckFailed(f"{name} took the gradient of {what}: take it of the target class's "
                              "score, the model's output (logit) before softmax, "
                              "`model(x)[range(len(x)), target]`")
    worst, where = _worst(got, want)
    raise CheckFailed(f"{name} differs from captum's Saliency by up to {worst:.3g} at index "
                      f"{where} (captum: {float(want[where]):.3g}, yours: {float(got[where]):.3g}):"
                      " differentiate the sum of each image's target score with respect to x "
                      "(x.requires_grad_(), backward, then x.grad.abs())")


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """`module` with random BatchNorm statistics and affine values, so that train and
    eval mode (and a missing BatchNorm) give visibly different outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return module


def _torchvision_block_forward():
    from torchvision.models.resnet import BasicBlock
    return {BasicBlock.forward: "torchvision's BasicBlock", BasicBlock.__init__:
            "torchvision's BasicBlock"}


def _torchvision_resnet() -> dict:
    from torchvision.models import resnet
    return {resnet.resnet18: "torchvision's resnet18", resnet.ResNet.__init__:
            "torchvision's ResNet", resnet.ResNet._forward_impl: "torchvision's ResNet"}


def _stride(block: nn.Module) -> int:
    conv = getattr(block, "conv1", None)
    return conv.stride[0] if isinstance(conv, nn.Conv2d) else -1


def _reference_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    from torchvision.models.resnet import BasicBlock, conv1x1

    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride),
                                   nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, stride, downsample)


def _load(name: str, mine: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    have = mine.state_dict()
    missing = [k for k in state if k not in have]  # torchvision's, not the student's
    unexpected = [k for k in have if k not in state]
    if missing or unexpected:
        raise CheckFailed(
            f"{name}'s weights do not line up with {what}'s: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}. Name the layers as torchvision does: conv1, "
            "bn1, conv2, bn2, and for a projection shortcut `downsample = nn.Sequential(1x1 "
            "conv, BatchNorm2d)` (None, or no such attribute, for the identity)")
    for k, v in state.items():
        if have[k].shape != v.shape:
            raise CheckFailed(f"{name}.{k} has shape {tuple(have[k].shape)}, "
                              f"{what} has {tuple(v.shape)}")
    mine.load_state_dict(state)


@_own_rng
def check_block(block_class: Callable, name: str = "MyBlock") -> None:
    """Check a student's residual block against torchvision's `BasicBlock`.

    Builds `block_class(in_channels, out_channels, stride)` for an identity block (64 -> 64,
    stride 1) and a projection block (64 -> 128, stride 2), loads a torchvision
    `BasicBlock`'s weights into it (random BatchNorm statistics), and compares the outputs
    in train and in eval mode. A difference is explained when it matches a known
    mistake: the shortcut left out, the ReLU after the sum left out.
    """
    for cin, cout, stride in ((64, 64, 1), (64, 128, 2)):
        kind = "identity" if stride == 1 else "projection"
        torch.manual_seed(0)
        ref = _randomised(_reference_block(cin, cout, stride), seed=cin + cout)
        mine = _call(name, block_class, cin, cout, stride, forbidden=_torchvision_block_forward())
        if not isinstance(mine, nn.Module):
            raise CheckFailed(f"{name}({cin}, {cout}, {stride}) should be an nn.Module")
        _load(name, mine, ref.state_dict(), "torchvision's BasicBlock")
        x = torch.randn(4, cin, 8, 8, generator=torch.Generator().manual_seed(2))
        for mode in ("train", "eval"):
            ref.train(mode == "train"), mine.train(mode == "train")
            parts = copy.deepcopy(ref)  # train mode updates BatchNorm's statistics once
            with torch.no_grad():
                want = ref(x)
                got = _call(name, mine, x.clone(), forbidden=_torchvision_block_forward())
                f = parts.bn2(parts.conv2(parts.relu(parts.bn1(parts.conv1(x)))))
                shortcut = x if parts.downsample is None else parts.downsample(x)
            if tuple(got.shape) != tuple(want.shape):
                raise CheckFailed(
                    f"{name}({cin}, {cout}, stride={stride}) returned shape {tuple(got.shape)} "
                    f"for an input of {tuple(x.shape)}; a {kind} block gives {tuple(want.shape)}"
                    + (": the first convolution and the shortcut both use the stride"
                       if stride != 1 else ""))
            if torch.allclose(got, want, atol=1e-5):
                continue
            raise _explained(got, want, [
                (torch.relu(f), f"{name} ({kind} block, {mode} mode) leaves out the shortcut: "
                 "add the input (or its projection) to F(x) before the last ReLU"),
                (f + shortcut, f"{name} ({kind} block, {mode} mode) leaves out the ReLU after "
                 "the sum: y = relu(F(x) + shortcut)")],
                f"{name} ({kind} block, {cin} -> {cout}, stride {stride}) differs from "
                f"torchvision's in {mode} mode by up to {{worst:.3g}} at index {{where}}: check "
                "the order conv1, bn1, relu, conv2, bn2, + shortcut, relu"
                + (", and that you call the BatchNorm modules (not a fixed normalisation), so "
                   "that train and eval mode differ" if mode == "eval" else ""), atol=1e-5)
    print(f"Check passed: {name} gives torchvision's BasicBlock outputs (identity and projection "
          "shortcut) in train and eval mode.")


class ReferenceBlock(nn.Module):
    """torchvision's BasicBlock behind the constructor the lesson's block has,
    `(in_channels, out_channels, stride)`: the block `check_resnet18` builds with, so that a
    mistake in the student's own block costs that task's points only."""

    def __new__(cls, in_channels: int, out_channels: int, stride: int = 1):
        return _reference_block(in_channels, out_channels, stride)


@_own_rng
def check_resnet18(build: Callable, name: str = "my_resnet18") -> None:
    """Check a student's ResNet-18 assembled from residual blocks: `build(block_class)` with
    torchvision's block (`ReferenceBlock`) must give torchvision's `resnet18(num_classes=10)`
    layer for layer (stem conv1/bn1/relu/maxpool, layer1-4 of two blocks each, the first
    block of layer2-4 with stride 2, avgpool, fc): the same output shape after every stage
    for a 32x32 image, the same parameter count, and, with torchvision's weights loaded,
    the same outputs."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    ref = _randomised(resnet18(num_classes=10), seed=18).eval()
    mine = _call(name, build, ReferenceBlock, forbidden=_torchvision_resnet())
    if not isinstance(mine, nn.Module):
        raise CheckFailed(f"{name}(block) should return an nn.Module")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
             "avgpool", "fc"]  # torchvision's stages, in the order forward runs them

    def shapes(net):
        out, h = {}, x
        with torch.no_grad():
            for stage in order[:-1]:  # fc needs the flatten, which is not a stage
                if not hasattr(net, stage):
                    raise CheckFailed(f"{name}'s network has no `{stage}`: name the stages as "
                                      "torchvision's ResNet does (conv1, bn1, relu, maxpool, "
                                      "layer1 .. layer4, avgpool, fc)")
                h = _call(f"{name}'s {stage}", getattr(net, stage), h)
                out[stage] = tuple(h.shape[1:])
        return out

    mine.eval()
    want, got = shapes(ref), shapes(mine)
    for i in range(1, 5):
        strides = [_stride(b) for b in getattr(mine, f"layer{i}")]
        right = [_stride(b) for b in getattr(ref, f"layer{i}")]
        if len(strides) == len(right) and strides != right:
            raise CheckFailed(f"{name}'s layer{i} has blocks with strides {strides}, ResNet-18 "
                              f"{right}: only the first block of layer2-4 has stride 2 (it "
                              "halves the map and doubles the channels); the others keep stride 1")
    for stage in want:
        if got[stage] != want[stage]:
            raise CheckFailed(f"after {stage} {name} gives {got[stage]} per image, ResNet-18 "
                              f"{want[stage]}: stages 1-4 have 64, 128, 256, 512 channels, and "
                              "layer2-4 start with a stride-2 block")
    n_ref, n_mine = (sum(p.numel() for p in m.parameters()) for m in (ref, mine))
    if n_mine != n_ref:
        blocks = [len(getattr(mine, f"layer{i}", [])) for i in range(1, 5)]
        raise CheckFailed(f"{name} has {n_mine:,} parameters, ResNet-18 with a 10-class fc has "
                          f"{n_ref:,}: it has {blocks} blocks per stage, ResNet-18 [2, 2, 2, 2]")
    _load(name, mine, ref.state_dict(), "torchvision's resnet18")
    called: list[str] = []
    hooks = [getattr(mine, s).register_forward_hook(lambda *_, s=s: called.append(s))
             for s in order]
    try:
        with torch.no_grad():
            got_out, want_out = _call(name, mine, x), ref(x)
    finally:
        for h in hooks:
            h.remove()
    if not torch.allclose(got_out, want_out, atol=1e-4):
        skipped = [s for s in order if s not in called]
        if skipped:
            raise CheckFailed(f"{name}'s forward never calls {', '.join(skipped)}: forward runs "
                              "every stage in turn, " + " -> ".join(order))
        first = [s for i, s in enumerate(called) if s not in called[:i]]
        if first != order:
            raise CheckFailed(f"{name}'s forward calls the stages in the order "
                              f"{' -> '.join(first)}; ResNet-18's is {' -> '.join(order)}")
        worst, where = _worst(got_out, want_out)
        raise CheckFailed(f"{name}'s outputs differ from torchvision's resnet18 with the same "
                          f"weights by up to {worst:.3g}: check the forward pass (flatten after "
                          "avgpool, then fc)")
    print(f"Check passed: {name} matches torchvision's resnet18 stage by stage "
          f"({want['layer4']} after layer4), {n_ref:,} parameters, same outputs.")


@_own_rng
def check_batchnorm(fn: Callable, name: str = "my_batchnorm") -> None:
    """Check a student's BatchNorm forward against `nn.BatchNorm2d` in both modes.

    `fn(x, running_mean, running_var, weight, bias, training, momentum, eps)` returns the
    normalised output; in training it normalises with the batch's mean and (biased)
    variance per channel and updates the running statistics in place, PyTorch's way:
    `running = (1 - momentum) * running + momentum * batch` with the unbiased variance.
    In eval mode it uses the running statistics and changes nothing.
    """
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, 4, 4, generator=g) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 2
    ref = nn.BatchNorm2d(3, momentum=0.1, eps=1e-5)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.5, 0.5, 1.0]))
        ref.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        ref.running_mean.copy_(torch.tensor([0.5, -0.5, 1.0]))
        ref.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    for training in (True, False):
        mode = "train" if training else "eval"
        mean, var = ref.running_mean.clone(), ref.running_var.clone()
        ref.train(training)
        with torch.no_grad():
            want = ref(x)
        got = _call(name, fn, x.clone(), mean, var, ref.weight.detach().clone(),
                    ref.bias.detach().clone(), training, 0.1, 1e-5,
                    forbidden={nn.functional.batch_norm: "torch's batch_norm",
                               nn.modules.batchnorm._BatchNorm.forward: "nn.BatchNorm2d"})
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(x.shape):
            raise CheckFailed(f"{name} should return a tensor of the input's shape "
                              f"{tuple(x.shape)}; it returned "
                              f"{tuple(got.shape) if isinstance(got, torch.Tensor) else got!r}")
        got = got.detach()
        if not torch.allclose(got, want, atol=1e-4):
            batch = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
                x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
            w, b = ref.weight.detach().view(1, 3, 1, 1), ref.bias.detach().view(1, 3, 1, 1)
            raise _explained(got, want, [
                (None if training else batch * w + b,
                 f"{name} normalised with the batch's statistics in eval mode: eval mode uses "
                 "running_mean and running_var, so that an image's output does not depend on "
                 "the rest of its batch"),
                (batch if training else None, f"{name} forgot the learned scale and shift: "
                 "y = weight * x_hat + bias, per channel")],
                f"{name} differs from nn.BatchNorm2d in {mode} mode by up to {{worst:.3g}} at "
                f"index {{where}}: statistics are per channel, over the batch and both spatial "
                "dimensions (dims 0, 2, 3); normalise with the biased variance, + eps inside "
                "the square root", atol=1e-4)
        if not training:
            if not (torch.equal(mean, ref.running_mean) and torch.equal(var, ref.running_var)):
                raise CheckFailed(f"{name} changed the running statistics in eval mode: only "
                                  "training updates them")
            continue
        for stat, mine, want_stat in (("running_mean", mean, ref.running_mean),
                                      ("running_var", var, ref.running_var)):
            if torch.allclose(mine, want_stat, atol=1e-5):
                continue
            before = {"running_mean": torch.tensor([0.5, -0.5, 1.0]),
                      "running_var": torch.tensor([2.0, 0.5, 1.5])}[stat]
            if torch.allclose(mine, before):
                raise CheckFailed(f"{name} did not update {stat} in train mode: change the "
                                  f"tensor in place, e.g. {stat}.mul_(1 - momentum).add_("
                                  "momentum * batch_value)")
            batch_stat = (x.mean((0, 2, 3)) if stat == "running_mean"
                          else x.var((0, 2, 3), unbiased=True))
            if torch.allclose(mine, 0.9 * batch_stat + 0.1 * before, atol=1e-5):
                raise CheckFailed(f"{name} weighted {stat} the Keras way round: in PyTorch "
                                  "momentum=0.1 is the weight of the new batch, "
                                  "(1 - momentum) * running + momentum * batch")
            if stat == "running_var" and torch.allclose(
                    mine, 0.9 * before + 0.1 * x.var((0, 2, 3), unbiased=False), atol=1e-5):
                raise CheckFailed(f"{name} updated running_var with the biased batch variance: "
                                  "PyTorch stores the unbiased one (divide by n - 1), while it "
                                  "normalises with the biased one")
            raise CheckFailed(f"{name}'s {stat} after one training batch is "
                              f"{mine.numpy().round(4)}, nn.BatchNorm2d's "
                              f"{want_stat.numpy().round(4)}")
    print(f"Check passed: {name} gives nn.BatchNorm2d's outputs in train and eval mode and its "
          "running statistics after a training batch.")


def _generated_images(n: int = 24, seed: int = 5) -> torch.Tensor:
    """uint8 images (n x 3 x 32 x 32) whose brightness differs between images, so that the
    within-image and the all-pixel statistics differ as they do for CIFAR-10."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * 160 + 40
    return (base + torch.randn(n, 3, 32, 32, generator=g) * 30).clamp(0, 255).to(torch.uint8)


@_own_rng
def check_channel_stats(fn: Callable, name: str = "my_channel_stats") -> None:
    """Check a student's dataset statistics against `lab_utils.stats`: `fn(images)` for
    uint8 images (N x 3 x H x W) returns (mean, std over all pixels, mean of per-image
    stds), three tensors of one value per channel, on the [0, 1] scale of `ToTensor`."""
    from .stats import channel_mean_std, mean_of_image_stds

    images = _generated_images()
    mean, std = channel_mean_std(images)
    want = {"mean": mean, "std": std, "mean of per-image stds": mean_of_image_stds(images)}
    got = _call(name, fn, images.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise CheckFailed(f"{name} should return three tensors (mean, std, mean of per-image "
                          f"stds); it returned {type(got).__name__}")
    for (what, w), g in zip(want.items(), got):
        g = torch.as_tensor(g, dtype=torch.float64).flatten()
        if g.shape != w.shape:
            raise CheckFailed(f"{name}'s {what} has {g.numel()} value(s) where it needs one per "
                              "channel (3): keep dim 1, the channel, and reduce over the others")
        # rtol 1e-4 lies between float32 rounding (~1e-6) and the n-1 correction of a
        # per-image std over 1024 pixels (~5e-4), so the sample std does not pass.
        if torch.allclose(g, w, rtol=1e-4, atol=1e-6):
            continue
        pixels = images[0, 0].numel()
        if what != "mean" and torch.allclose(g, w * (pixels / (pixels - 1)) ** 0.5, rtol=1e-4):
            raise CheckFailed(f"{name}'s {what} is the sample std (divides by n - 1): the lab's "
                              "statistics are population stds, std(..., unbiased=False)")
        if torch.allclose(g / 255, w, rtol=1e-3, atol=1e-5):
            raise CheckFailed(f"{name}'s {what} is on the 0..255 scale: divide by 255 first, as "
                              "ToTensor does, so that it compares with the lab's constants")
        others = [k for k, v in want.items() if k != what and torch.allclose(g, v, rtol=1e-3)]
        if others:
            raise CheckFailed(f"{name}'s {what} is the {others[0]}: the std over all pixels "
                              "pools every pixel of every image; the mean of per-image stds takes "
                              "each image's std over its own 32x32 pixels first, then averages")
        raise CheckFailed(f"{name}'s {what} is {g.numpy().round(4)}, lab_utils.stats gives "
                          f"{w.numpy().round(4)} (population std: unbiased=False)")
    print(f"Check passed: {name} gives lab_utils.stats' mean, std and mean of per-image stds "
          f"on {len(images)} generated images.")


@_own_rng
def check_crop_flip(fn: Callable, name: str = "my_crop_flip") -> None:
    """Check a student's batched crop and flip against torchvision, image by image:
    `fn(x, dy, dx, flip, padding)` pads each image of the uint8 batch `x` with `padding`
    zeros on every side, cuts the 32x32 window whose top-left corner is (dy[i], dx[i])
    and mirrors it left-right where flip[i] is True."""
    import torchvision.transforms.functional as TF

    padding = 4
    x = _generated_images(6, seed=7)
    dy, dx = torch.tensor([0, 8, 4, 1, 7, 3]), torch.tensor([8, 0, 4, 6, 2, 5])
    flip = torch.tensor([False, True, False, True, True, False])
    want = torch.stack([
        (TF.hflip if f else (lambda t: t))(TF.crop(TF.pad(img, padding), int(a), int(b), 32, 32))
        for img, a, b, f in zip(x, dy, dx, flip)])
    got = _call(name, fn, x.clone(), dy.clone(), dx.clone(), flip.clone(), padding,
                forbidden={TF.crop: "torchvision's crop", TF.pad: "torchvision's pad",
                           TF.hflip: "torchvision's hflip"})
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        raise CheckFailed(f"{name} should return a batch of shape {tuple(want.shape)}; it "
                          f"returned {tuple(got.shape) if isinstance(got, torch.Tensor) else got!r}")
    if got.is_floating_point():
        scaled = "scaled to [0, 1] " if float(got.max()) <= 1.0 else ""
        raise CheckFailed(f"{name} returned {got.dtype} values {scaled}: keep the batch as it "
                          "came, uint8 0..255 (no .float(), no / 255); the crop and flip only "
                          "move pixels, and the fast path normalises afterwards")
    for i in range(len(x)):
        if torch.equal(got[i].to(want.dtype), want[i]):
            continue
        if flip[i] and torch.equal(got[i].to(want.dtype), TF.hflip(want[i]).flip(1)):
            raise CheckFailed(f"{name} flipped image {i} upside down (the rows, dim 2): "
                              "RandomHorizontalFlip mirrors left-right, the columns (dim 3 of the "
                              "batch, .flip(-1) of one image)")
        swapped = TF.crop(TF.pad(x[i], padding), int(dx[i]), int(dy[i]), 32, 32)
        flipped_first = TF.crop(TF.pad(TF.hflip(x[i]), padding), int(dy[i]), int(dx[i]), 32, 32)
        if flip[i] and torch.equal(got[i].to(want.dtype), flipped_first):
            raise CheckFailed(f"{name} flipped image {i} before cropping it: the lab crops first, "
                              "then RandomHorizontalFlip mirrors the crop")
        if torch.equal(got[i].to(want.dtype), TF.hflip(swapped) if flip[i] else swapped):
            raise CheckFailed(f"{name} swapped the offsets for image {i}: dy moves the window "
                              "down (rows, dim 2), dx to the right (columns, dim 3)")
        if torch.equal(got[i].to(want.dtype), TF.hflip(want[i])):
            raise CheckFailed(f"{name} got image {i}'s flip wrong: mirror the columns (dim 3) "
                              f"where flip[i] is True (flip[{i}] = {bool(flip[i])})")
        raise CheckFailed(f"{name}'s image {i} (dy={int(dy[i])}, dx={int(dx[i])}, flip="
                          f"{bool(flip[i])}) differs from torchvision's crop: pad with zeros on "
                          "every side first, then take rows dy..dy+31 and columns dx..dx+31")
    print(f"Check passed: {name} gives torchvision's crop and flip for all {len(x)} images, "
          "pixel for pixel.")


@_own_rng
def check_per_class_accuracy(fn: Callable, name: str = "my_per_class_accuracy") -> None:
    """Check a student's per-class accuracy against `lab_utils.analysis`: `fn(predictions)`
    takes a run's `predictions.csv` table (columns index, true, pred, confidence) and
    returns the accuracy in % of each true class, ten values in class order."""
    import numpy as np
    import pandas as pd

    from .analysis import confusion_matrix, per_class_accuracy

    g = np.random.default_rng(6)
    true = np.repeat(np.arange(10), 30)
    pred = np.where(g.random(len(true)) < 0.6 + 0.03 * true, true, g.integers(0, 10, len(true)))
    pred[:12] = 3  # a class predicted far more often than it occurs
    predictions = pd.DataFrame({"index": np.arange(len(true)), "true": true, "pred": pred,
                                "confidence": g.random(len(true))})
    want = per_class_accuracy(confusion_matrix(predictions)).to_numpy()
    got = np.asarray(_call(name, fn, predictions.copy()), dtype=float).ravel()
    if got.shape != want.shape:
        raise CheckFailed(f"{name} returned {got.size} values; one per class is 10")
    if np.allclose(got, want, atol=1e-6):
        print(f"Check passed: {name} gives lab_utils.analysis' per-class accuracy on "
              f"{len(true)} generated predictions.")
        return
    if np.allclose(got * 100, want, atol=1e-6):
        raise CheckFailed(f"{name} returned fractions: multiply by 100 for %")
    confusion = confusion_matrix(predictions)
    precision = 100 * np.diag(confusion) / np.maximum(confusion.sum(0), 1)
    if np.allclose(got, precision, atol=1e-6):
        raise CheckFailed(f"{name} divided by how often each class was *predicted* (that is "
                          "precision): accuracy of a class divides by how many test images *are* "
                          "of that class")
    worst = int(np.abs(got - want).argmax())
    raise CheckFailed(f"{name} gives {got[worst]:.2f}% for class {worst}, lab_utils.analysis "
                      f"{want[worst]:.2f}%: correct predictions of a class over its images")


def _lab_image():
    """A 32x32 PIL image with structure in every corner, so that crops and flips show."""
    from PIL import Image

    return Image.fromarray(_generated_images(1, seed=8)[0].permute(1, 2, 0).numpy())


@_own_rng
def check_transforms(train_fn: Callable, test_fn: Callable,
                     names: tuple[str, str] = ("my_train_transform", "my_test_transform")
                     ) -> None:
    """Check a student's two pipelines against the lab's (`lab_utils.data.train_transform`,
    `test_transform`): `train_fn()` and `test_fn()` return torchvision transforms (a
    `T.Compose`) that turn a 32x32 PIL image into a normalised tensor, the training one with
    the lab's random crop (32, padding 4) and horizontal flip first. Compared step by step
    when they are `T.Compose`, then on one image under the same random draws."""
    import torchvision.transforms as T

    from .data import CIFAR10_MEAN, CIFAR10_STD, test_transform, train_transform

    img = _lab_image()
    for fn, name, want, augmented in ((train_fn, names[0], train_transform(), True),
                                      (test_fn, names[1], test_transform(), False)):
        got = _call(name, fn)
        if not callable(got):
            raise CheckFailed(f"{name}() should return a transform (T.Compose([...])); it "
                              f"returned {got!r}")
        steps = [type(t).__name__ for t in getattr(got, "transforms", [])]
        wanted = [type(t).__name__ for t in want.transforms]
        if isinstance(got, T.Compose) and steps != wanted:
            extra = "" if augmented else (" (no RandomCrop or flip: test images are measured "
                                          "as they are)" if {"RandomCrop", "RandomHorizontalFlip"}
                                          & set(steps) else "")
            raise CheckFailed(f"{name}() has the steps {steps}; the lab's are {wanted}{extra}")
        for t in getattr(got, "transforms", []):
            if isinstance(t, T.RandomCrop) and (tuple(t.size) != (32, 32) or t.padding != 4):
                raise CheckFailed(f"{name}()'s RandomCrop has size {tuple(t.size)} and padding "
                                  f"{t.padding}; the lab's: RandomCrop(32, padding=4)")
            if isinstance(t, T.Normalize):
                for what, have, lab in (("mean", t.mean, CIFAR10_MEAN), ("std", t.std, CIFAR10_STD)):
                    if not torch.allclose(torch.tensor(have, dtype=torch.float64),
                                          torch.tensor(lab, dtype=torch.float64), atol=1e-4):
                        raise CheckFailed(f"{name}()'s Normalize has {what} {tuple(have)}; the "
                                          f"lab's is {lab} (notebook 01)")
        for seed in range(6):
            torch.manual_seed(seed)
            expected = want(img)
            torch.manual_seed(seed)
            out = _call(name, got, img.copy())
            if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
                raise CheckFailed(f"{name}() turns a 32x32 image into "
                                  f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
                                  f"; the lab's pipeline gives a tensor of {tuple(expected.shape)}"
                                  ": end with T.ToTensor() and T.Normalize(mean, std)")
            if not torch.allclose(out, expected, atol=1e-5):
                raise CheckFailed(f"{name}() gives other pixels than the lab's pipeline under the "
                                  f"same random draws (seed {seed}): the lab's steps, in its order,"
                                  f" are {wanted}")
    print(f"Check passed: {names[0]}() and {names[1]}() are the lab's pipelines, step for "
          "step and pixel for pixel.")


@_own_rng
def check_lab_model(fn: Callable, name: str = "my_lab_model") -> None:
    """Check a student's lab model: `fn(pretrained)` returns torchvision's `resnet18` with
    ImageNet weights when `pretrained` is True (none when False) and its head replaced by
    `nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 10))`, as the lab did. The ImageNet
    weights are stood in for by random ones, so the check needs no download."""
    import torchvision.models._api as api
    from torchvision.models import resnet18

    from .config import LabConfig
    torch.manual_seed(0)
    stand_in = resnet18().state_dict()  # torchvision's keys, random values
    real = api.load_state_dict_from_url
    api.load_state_dict_from_url = lambda *a, **k: {k2: v.clone() for k2, v in stand_in.items()}
    try:
        models = {p: _call(f"{name}({p})", fn, p) for p in (False, True)}
    finally:
        api.load_state_dict_from_url = real
    want = build_model(LabConfig(pretrained=False))
    for pretrained, model in models.items():
        call = f"{name}({pretrained})"
        if not isinstance(model, nn.Module):
            raise CheckFailed(f"{call} should return the model (an nn.Module); it returned "
                              f"{type(model).__name__}")
        head = getattr(model, "fc", None)
        if isinstance(head, nn.Linear):
            raise CheckFailed(f"{call}'s fc is a bare {head}: the lab's head is "
                              "nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 10))")
        if not (isinstance(head, nn.Sequential) and len(head) == 2):
            raise CheckFailed(f"{call}'s fc is {head}; the lab's head is "
                              "nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 10))")
        if isinstance(head[0], nn.Linear) and isinstance(head[1], nn.Dropout):
            raise CheckFailed(f"{call}'s head has Linear before Dropout: dropout goes first, on "
                              "the 512 features, then the Linear layer maps them to 10 classes")
        drop, linear = head
        if not isinstance(drop, nn.Dropout) or drop.p != 0.5:
            raise CheckFailed(f"{call}'s head starts with {drop}; the lab's: nn.Dropout(0.5)")
        if not isinstance(linear, nn.Linear) or (linear.in_features, linear.out_features) != (512, 10):
            raise CheckFailed(f"{call}'s head ends with {linear}; the lab's: nn.Linear(512, 10) "
                              "(512 features after the average pool, 10 classes)")
        have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        expected = {k: tuple(v.shape) for k, v in want.state_dict().items()}
        if have != expected:
            diff = sorted(set(have) ^ set(expected))[:4]
            raise CheckFailed(f"{call} is not torchvision's resnet18 with the lab's head: its "
                              f"weights differ in {diff or 'their shapes'}; start from "
                              "torchvision.models.resnet18 and replace only fc")
    loaded = models[True].state_dict()["conv1.weight"]
    if not torch.equal(loaded, stand_in["conv1.weight"]):
        raise CheckFailed(f"{name}(True) did not load the ImageNet weights: pass "
                          "weights=ResNet18_Weights.IMAGENET1K_V1 (or \"IMAGENET1K_V1\") to "
                          "resnet18 when pretrained is True")
    if torch.equal(models[False].state_dict()["conv1.weight"], stand_in["conv1.weight"]):
        raise CheckFailed(f"{name}(False) loaded the ImageNet weights: pass weights=None when "
                          "pretrained is False (training from scratch)")
    print(f"Check passed: {name} is torchvision's resnet18 with the lab's Dropout(0.5) + "
          "Linear(512, 10) head, with ImageNet weights when asked and without them otherwise.")


@_own_rng
def check_test_epoch(fn: Callable, name: str = "my_test_epoch") -> None:
    """Check a student's test pass, the lab's `test(epoch)`: `fn(model, loader, criterion,
    device)` returns (loss, accuracy in %) of the model in eval mode without gradients. The
    loss is the mean over the images, or the lab's mean of the batch losses; compared with
    `lab_utils.train.evaluate` on generated batches, and the model must be unchanged."""
    from .train import evaluate

    model, _, batches = _tiny_run(seed=2)
    with torch.no_grad():  # BatchNorm statistics that make eval mode differ from train mode
        model.train()
        model(torch.randn(32, 3, 32, 32))
    before = copy.deepcopy(model.state_dict())
    criterion, cpu = nn.CrossEntropyLoss(), torch.device("cpu")
    loss_want, acc_want, _ = evaluate(model, batches, cpu, False, "fp32")
    with torch.no_grad():
        batch_mean = sum(criterion(model(x), y).item() for x, y in batches) / len(batches)
    model.train()  # the function must switch to eval mode itself
    grads: list[bool] = []
    modes = _modes_hook(model)
    model.register_forward_pre_hook(lambda m, a: grads.append(torch.is_grad_enabled()))
    got = _call(name, fn, model, batches, criterion, cpu,
                forbidden={evaluate: "lab_utils (train.evaluate)"})
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"{name} should return (test loss, test accuracy in %); it returned "
                          f"{got!r}")
    loss, acc = (float(v) for v in got)
    if not modes:
        raise CheckFailed(f"{name} never called the model")
    if any(modes):
        raise CheckFailed(f"{name} ran the model in train mode: call model.eval() first, so that "
                          "Dropout is off and BatchNorm uses its running statistics")
    if any(grads):
        raise CheckFailed(f"{name} computed gradients: wrap the loop in `with torch.no_grad():` "
                          "(nothing is learned in a test pass; it saves memory and time)")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        raise CheckFailed(f"{name} changed the model ({changed[0]}): a test pass only measures")
    if abs(acc - acc_want / 100) < 1e-6 and acc_want > 0:
        raise CheckFailed(f"{name} returned accuracy {acc:.4f}, a fraction: return it in %")
    if abs(acc - acc_want) > 1e-6:
        raise CheckFailed(f"{name} returned accuracy {acc:.2f}%, the library's test pass "
                          f"{acc_want:.2f}%: correct predictions over all images, in %")
    if min(abs(loss - loss_want), abs(loss - batch_mean)) > 1e-4 * max(1.0, loss_want):
        raise CheckFailed(f"{name} returned test loss {loss:.5f}; it is {loss_want:.5f} as the "
                          f"mean over the images or {batch_mean:.5f} as the lab's mean of the "
                          "batch losses (test_loss / len(loader))")
    print(f"Check passed: {name} gives the library's test loss ({loss:.4f}) and accuracy "
          f"({acc:.2f}%) in eval mode without gradients, on {len(batches)} generated batches.")


@_own_rng
def check_curves(fn: Callable, name: str = "my_plot_curves") -> None:
    """Check a student's curves, the lab's figure: `fn(history)` for a run's history table
    returns a matplotlib Figure with a loss panel (train_loss and test_loss against epoch)
    and an accuracy panel (train_acc and test_acc), each with both axes labelled and a
    legend that tells train from test."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from . import plots

    epochs = np.arange(1, 7)
    history = pd.DataFrame({"epoch": epochs, "train_loss": 2.0 / epochs, "test_loss": 1.9 / epochs + 0.1,
                            "train_acc": 40 + 6.0 * epochs, "test_acc": 45 + 5.0 * epochs,
                            "lr": 0.01})
    fig = _call(name, fn, history.copy(),
                forbidden={plots.plot_history: "lab_utils (plots.plot_history)"})
    if fig is None:
        fig = plt.gcf()
    if not isinstance(fig, plt.Figure):
        raise CheckFailed(f"{name} should return the figure (fig, axes = plt.subplots(1, 2) ... "
                          f"return fig); it returned {type(fig).__name__}")
    try:
        for metric, what in (("loss", "loss"), ("acc", "accuracy")):
            wanted = {f"train_{metric}", f"test_{metric}"}
            axes = None
            for ax in fig.axes:
                ys = {col for line in ax.get_lines() for col in wanted
                      if len(line.get_ydata()) == len(history)
                      and np.allclose(np.asarray(line.get_ydata(), float), history[col])}
                if ys == wanted:
                    axes = ax
            if axes is None:
                raise CheckFailed(f"{name}'s figure has no panel with both train_{metric} and "
                                  f"test_{metric} plotted against the epoch: one panel for the "
                                  f"{what}, train and test as two lines")
            if not axes.get_xlabel() or not axes.get_ylabel():
                raise CheckFailed(f"{name}'s {what} panel needs both axes labelled "
                                  "(ax.set_xlabel('epoch'), ax.set_ylabel(...))")
            legend = axes.get_legend()
            labels = [t.get_text() for t in legend.get_texts()] if legend else []
            if len(labels) < 2:
                raise CheckFailed(f"{name}'s {what} panel has no legend telling train from "
                                  "test: plot with label='train' / 'test', then ax.legend()")
    finally:
        plt.close(fig)
    print(f"Check passed: {name} draws the lab's loss and accuracy curves, train and test, "
          "with labelled axes and legends.")
