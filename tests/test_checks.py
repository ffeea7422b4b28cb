"""The checks the notebooks run after a student's code: each passes on the reference
solution and fails, with a message that says what to look at, on typical mistakes."""
import pytest
import torch
from torch import nn

from lab_utils.checks import (CheckFailed, check_batchnorm, check_block, check_resnet18,
                              check_saliency, check_train_epoch)
from lab_utils.train import train_epoch


def fails_with(check, fn, *args, match):
    with pytest.raises(CheckFailed, match=match):
        check(fn, *args)


# --- the epoch loop (notebook 04) ------------------------------------------------------

def loop(model, batches, optimizer, criterion, device, scheduler_per_batch, precision,
         train=True, zero_grad=True, percent=True):
    if train:
        model.train()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = criterion(out, y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler_per_batch is not None:
            scheduler_per_batch.step()
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return loss_sum / n, (100 if percent else 1) * correct / n


def test_the_epoch_check_passes_the_library_and_a_plain_loop(capsys):
    check_train_epoch(train_epoch)
    check_train_epoch(loop)
    assert capsys.readouterr().out.count("Check passed") == 2


def test_the_epoch_check_names_typical_mistakes():
    fails_with(check_train_epoch, lambda *a: loop(*a, zero_grad=False), match="zero_grad")
    fails_with(check_train_epoch, lambda *a: loop(*a, train=False), match="model.train()")
    fails_with(check_train_epoch, lambda *a: loop(*a, percent=False), match="a fraction")
    fails_with(check_train_epoch, lambda *a: None, match="should return")


def test_a_stub_and_an_error_in_the_students_code_are_reported_as_such():
    def stub(*args):
        raise NotImplementedError()

    def broken(model, batches, *args):
        return model(batches)  # a list is not a tensor: the student's line is named

    fails_with(check_train_epoch, stub, match="not written yet")
    fails_with(check_train_epoch, broken, match=r"raised TypeError at line \d+: `return model")


# --- the residual block and ResNet-18 (notebook 03) -----------------------------------

class Block(nn.Module):
    def __init__(self, cin, cout, stride=1, shortcut=True, last_relu=True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))
        self.shortcut, self.last_relu = shortcut, last_relu

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return torch.relu(out) if self.last_relu else out


def resnet18(block, blocks=(2, 2, 2, 2), strides=(1, 2, 2, 2)):
    from torchvision.models import resnet18 as tv

    net = tv(num_classes=10)
    cin = 64
    for i, (cout, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        stride = strides[i - 1]
        layers = [block(cin, cout, stride)] + [block(cout, cout) for _ in range(n - 1)]
        setattr(net, f"layer{i}", nn.Sequential(*layers))
        cin = cout
    return net


def test_the_block_check_passes_a_correct_block_and_names_mistakes(capsys):
    check_block(Block)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_block, lambda *a: Block(*a, shortcut=False), match="leaves out the shortcut")
    fails_with(check_block, lambda *a: Block(*a, last_relu=False), match="leaves out the ReLU")

    class NoProjection(Block):
        def __init__(self, cin, cout, stride=1):
            super().__init__(cin, cout, stride)
            self.downsample = None

    fails_with(check_block, NoProjection, match="missing \\['downsample")


def test_the_resnet18_check_passes_the_assembly_and_names_a_wrong_stage(capsys):
    check_resnet18(resnet18, Block)
    assert "11,181,642 parameters" in capsys.readouterr().out
    fails_with(check_resnet18, lambda b: resnet18(b, blocks=(3, 4, 6, 3)), Block,
               match="\\[3, 4, 6, 3\\] blocks per stage, ResNet-18 \\[2, 2, 2, 2\\]")
    fails_with(check_resnet18, lambda b: resnet18(b, strides=(1, 1, 2, 2)), Block,
               match="after layer2 .* layer2-4 start with a stride-2 block")


# --- BatchNorm by hand (notebook 03) ---------------------------------------------------

def batchnorm(x, running_mean, running_var, weight, bias, training, momentum, eps,
              eval_uses_batch=False, keras_momentum=False, biased_running=False):
    shape = (1, -1, 1, 1)
    if training or eval_uses_batch:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        if training:
            m = 1 - momentum if keras_momentum else momentum
            stored = var if biased_running else x.var((0, 2, 3), unbiased=True)
            running_mean.mul_(1 - m).add_(m * mean)
            running_var.mul_(1 - m).add_(m * stored)
    else:
        mean, var = running_mean, running_var
    x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps)
    return weight.view(shape) * x_hat + bias.view(shape)


def test_the_batchnorm_check_passes_both_modes_and_names_mistakes(capsys):
    check_batchnorm(batchnorm)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_batchnorm, lambda *a: batchnorm(*a, eval_uses_batch=True),
               match="batch's statistics in eval mode")
    fails_with(check_batchnorm, lambda *a: batchnorm(*a, keras_momentum=True),
               match="Keras way round")
    fails_with(check_batchnorm, lambda *a: batchnorm(*a, biased_running=True),
               match="unbiased one")


# --- a saliency map (notebook 06) ------------------------------------------------------

def saliency(model, x, target, score="logit", absolute=True, train=False):
    if train:
        model.train()
    x = x.clone().requires_grad_()
    out = model(x)
    if score == "softmax":
        out = out.softmax(1)
    out[torch.arange(len(x)), target].sum().backward()
    return x.grad.abs() if absolute else x.grad


def test_the_saliency_check_passes_the_gradient_of_the_score_and_names_mistakes(capsys):
    check_saliency(saliency)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_saliency, lambda *a: saliency(*a, score="softmax"),
               match="softmax probability")
    fails_with(check_saliency, lambda *a: saliency(*a, absolute=False), match="kept the gradient's sign")
    fails_with(check_saliency, lambda *a: saliency(*a, train=True), match="train mode")


# --- dataset statistics (notebook 01) --------------------------------------------------

def stats(images, scale=255, per_image_for_all=False):
    x = images.double() / scale
    mean = x.mean((0, 2, 3))
    image_stds = x.std((2, 3), unbiased=False).mean(0)
    std = image_stds if per_image_for_all else x.std((0, 2, 3), unbiased=False)
    return mean, std, image_stds


def test_the_statistics_check_passes_and_names_mistakes(capsys):
    from lab_utils.checks import check_channel_stats
    check_channel_stats(stats)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_channel_stats, lambda x: stats(x, scale=1), match="divide by 255")
    fails_with(check_channel_stats, lambda x: stats(x, per_image_for_all=True),
               match="std is the mean of per-image stds")


# --- crop and flip (notebook 02) -------------------------------------------------------

def crop_flip(x, dy, dx, flip, padding, flip_first=False, swap=False):
    import torch.nn.functional as F
    if swap:
        dy, dx = dx, dy
    out = []
    for img, a, b, f in zip(x, dy, dx, flip):
        if flip_first and f:
            img = img.flip(-1)
        crop = F.pad(img, (padding,) * 4)[:, a:a + 32, b:b + 32]
        out.append(crop.flip(-1) if f and not flip_first else crop)
    return torch.stack(out)


def test_the_crop_check_passes_torchvisions_crop_and_names_mistakes(capsys):
    from lab_utils.augment import random_crop_flip
    from lab_utils.checks import check_crop_flip
    check_crop_flip(random_crop_flip)
    check_crop_flip(crop_flip)
    assert capsys.readouterr().out.count("Check passed") == 2
    fails_with(check_crop_flip, lambda *a: crop_flip(*a, flip_first=True), match="before cropping")
    fails_with(check_crop_flip, lambda *a: crop_flip(*a, swap=True), match="swapped the offsets")


# --- per-class accuracy (notebook 05) --------------------------------------------------

def per_class(predictions, by="true", scale=100):
    right = predictions.true == predictions.pred
    return right.groupby(predictions[by]).mean().reindex(range(10)).to_numpy() * scale


def test_the_per_class_check_passes_and_names_mistakes(capsys):
    from lab_utils.checks import check_per_class_accuracy
    check_per_class_accuracy(per_class)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_per_class_accuracy, lambda p: per_class(p, scale=1), match="fractions")
    fails_with(check_per_class_accuracy, lambda p: per_class(p, by="pred"), match="precision")
