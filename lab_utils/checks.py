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

from .config import LabConfig
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
        where = ""
        if frames:
            where = f" at line {frames[-1].lineno}" + (f": `{frames[-1].line}`" if frames[-1].line
                                                      else "")
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
    model = build_model(LabConfig(pretrained=False))
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
               for n in (16, 16, 12)]
    return model, _sgd(model), batches


def _modes_hook(model: nn.Module) -> list[bool]:
    modes: list[bool] = []
    model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    return modes


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


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
    model = copy.deepcopy(ref_model)
    opt = _sgd(model)
    criterion, cpu = nn.CrossEntropyLoss(), torch.device("cpu")
    torch.manual_seed(1)  # the same dropout masks in both loops
    want = train_epoch(ref_model, batches, ref_opt, criterion, cpu, None, "fp32")

    model.eval()  # the loop must switch the model to train mode itself
    modes = _modes_hook(model)
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
    got = _call(name, fn, model, x.clone(), target.clone())
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
        mine = _call(name, block_class, cin, cout, stride)
        if not isinstance(mine, nn.Module):
            raise CheckFailed(f"{name}({cin}, {cout}, {stride}) should be an nn.Module")
        _load(name, mine, ref.state_dict(), "torchvision's BasicBlock")
        x = torch.randn(4, cin, 8, 8, generator=torch.Generator().manual_seed(2))
        for mode in ("train", "eval"):
            ref.train(mode == "train"), mine.train(mode == "train")
            parts = copy.deepcopy(ref)  # train mode updates BatchNorm's statistics once
            with torch.no_grad():
                want = ref(x)
                got = _call(name, mine, x.clone())
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


def check_resnet18(build: Callable, block_class: Callable, name: str = "my_resnet18") -> None:
    """Check a student's ResNet-18 assembled from their blocks: `build(block_class)` must
    give torchvision's `resnet18(num_classes=10)` layer for layer (stem conv1/bn1/relu/
    maxpool, layer1-4 of two blocks each, avgpool, fc): the same output shape after every
    stage for a 32x32 image, the same parameter count, and, with torchvision's weights
    loaded, the same outputs."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    ref = _randomised(resnet18(num_classes=10), seed=18).eval()
    mine = _call(name, build, block_class)
    if not isinstance(mine, nn.Module):
        raise CheckFailed(f"{name}({getattr(block_class, '__name__', 'block')}) should return "
                          "an nn.Module")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    def shapes(net):
        out, h = {}, x
        with torch.no_grad():
            for stage in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                          "layer4", "avgpool"):
                if not hasattr(net, stage):
                    raise CheckFailed(f"{name}'s network has no `{stage}`: name the stages as "
                                      "torchvision's ResNet does (conv1, bn1, relu, maxpool, "
                                      "layer1 .. layer4, avgpool, fc)")
                h = _call(f"{name}'s {stage}", getattr(net, stage), h)
                out[stage] = tuple(h.shape[1:])
        return out

    mine.eval()
    want, got = shapes(ref), shapes(mine)
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
    with torch.no_grad():
        got_out, want_out = _call(name, mine, x), ref(x)
    if not torch.allclose(got_out, want_out, atol=1e-4):
        worst, where = _worst(got_out, want_out)
        raise CheckFailed(f"{name}'s outputs differ from torchvision's resnet18 with the same "
                          f"weights by up to {worst:.3g}: check the forward pass (flatten after "
                          "avgpool, then fc)")
    print(f"Check passed: {name} matches torchvision's resnet18 stage by stage "
          f"({want['layer4']} after layer4), {n_ref:,} parameters, same outputs.")


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
                    ref.bias.detach().clone(), training, 0.1, 1e-5)
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
            raise CheckFailed(f"{name}'s {what} has {g.numel()} values, one per channel is 3: "
                              "reduce over the images and both spatial dimensions (dims 0, 2, 3)")
        if torch.allclose(g, w, rtol=1e-3, atol=1e-5):
            continue
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
    got = _call(name, fn, x.clone(), dy.clone(), dx.clone(), flip.clone(), padding)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        raise CheckFailed(f"{name} should return a batch of shape {tuple(want.shape)}; it "
                          f"returned {tuple(got.shape) if isinstance(got, torch.Tensor) else got!r}")
    for i in range(len(x)):
        if torch.equal(got[i].to(want.dtype), want[i]):
            continue
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
