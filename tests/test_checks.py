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

def loop(model, loader, optimizer, criterion, device, train=True, zero_grad="before",
         percent=True, lab_mean=False):
    """The lab's train(epoch), with switches for the typical mistakes."""
    if train:
        model.train()
    running_loss, correct, total = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if zero_grad == "before":
            optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        if zero_grad == "after backward":
            optimizer.zero_grad()
        optimizer.step()
        running_loss += loss.item() * (1 if lab_mean else len(y))
        correct += out.argmax(1).eq(y).sum().item()
        total += len(y)
    return running_loss / (len(loader) if lab_mean else total), \
        (100 if percent else 1) * correct / total


def test_the_epoch_check_passes_the_labs_loop_with_either_mean_of_the_loss(capsys):
    check_train_epoch(loop)
    check_train_epoch(lambda *a: loop(*a, lab_mean=True))  # running_loss / len(trainloader)
    assert capsys.readouterr().out.count("Check passed") == 2


def test_the_epoch_check_fails_a_loop_that_hands_the_work_to_the_library():
    fails_with(check_train_epoch, train_epoch, match="hands the work to lab_utils "
               "\\(train.train_epoch\\): the task is to write it yourself")

    def via(model, loader, optimizer, criterion, device):
        from lab_utils.train import train_epoch as library
        return library(model, loader, optimizer, criterion, device)
    fails_with(check_train_epoch, via, match="hands the work to lab_utils")


def test_the_epoch_check_names_typical_mistakes():
    fails_with(check_train_epoch, lambda *a: loop(*a, zero_grad=None), match="zero_grad\\(\\) 0 time")
    fails_with(check_train_epoch, lambda *a: loop(*a, zero_grad="after backward"),
               match="between loss.backward\\(\\) and optimizer.step\\(\\)")
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


class ResNet18(nn.Module):
    """ResNet-18 written out, as the lesson asks (torchvision's names for every stage)."""

    def __init__(self, block, blocks=(2, 2, 2, 2), strides=(1, 2, 2, 2), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (cout, n, stride) in enumerate(zip((64, 128, 256, 512), blocks, strides), 1):
            layers = [block(cin, cout, stride)] + [block(cout, cout) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layers))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(block, blocks=(2, 2, 2, 2), strides=(1, 2, 2, 2)):
    return ResNet18(block, blocks, strides)


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
    check_resnet18(resnet18)
    assert "11,181,642 parameters" in capsys.readouterr().out
    fails_with(check_resnet18, lambda b: resnet18(b, blocks=(3, 4, 6, 3)),
               match="\\[3, 4, 6, 3\\] blocks per stage, ResNet-18 \\[2, 2, 2, 2\\]")
    fails_with(check_resnet18, lambda b: resnet18(b, strides=(1, 1, 2, 2)),
               match="layer2 has blocks with strides \\[1, 1\\], ResNet-18 \\[2, 1\\]")

    class SecondStrided(ResNet18):  # the stride on each stage's second block
        def __init__(self, block):
            super().__init__(block)
            for i, cout in ((2, 128), (3, 256), (4, 512)):
                setattr(self, f"layer{i}", nn.Sequential(block(cout // 2, cout, 1),
                                                         block(cout, cout, 2)))
    fails_with(check_resnet18, SecondStrided, match="layer2 has blocks with strides \\[1, 2\\], "
               "ResNet-18 \\[2, 1\\]")

    class NoPool(ResNet18):  # defines maxpool but never calls it
        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))
    fails_with(check_resnet18, NoPool, match="forward never calls maxpool")


def test_a_mistake_in_the_block_costs_the_block_check_only(capsys):
    # The ResNet-18 check builds with its own block: a student's block without its last
    # ReLU fails check_block, and their correct assembly still passes check_resnet18.
    broken = lambda *a: Block(*a, last_relu=False)
    fails_with(check_block, broken, match="leaves out the ReLU")
    check_resnet18(resnet18)
    assert "Check passed" in capsys.readouterr().out


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

def stats(images, scale=255, per_image_for_all=False, unbiased=False, dtype=torch.float64):
    x = images.to(dtype) / scale
    mean = x.mean((0, 2, 3))
    image_stds = x.std((2, 3), unbiased=unbiased).mean(0)
    std = image_stds if per_image_for_all else x.std((0, 2, 3), unbiased=False)
    return mean, std, image_stds


def test_the_statistics_check_passes_and_names_mistakes(capsys):
    from lab_utils.checks import check_channel_stats
    check_channel_stats(stats)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_channel_stats, lambda x: stats(x, scale=1), match="divide by 255")
    fails_with(check_channel_stats, lambda x: stats(x, per_image_for_all=True),
               match="std is the mean of per-image stds")
    check_channel_stats(lambda x: stats(x, dtype=torch.float32))
    fails_with(check_channel_stats, lambda x: stats(x, unbiased=True), match="sample std")
    fails_with(check_channel_stats, lambda x: (x.double().mean() / 255,) * 3,
               match="one per channel")


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
    from lab_utils.checks import check_crop_flip
    check_crop_flip(crop_flip)
    assert capsys.readouterr().out.count("Check passed") == 1
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


# --- handing the work to the library or to what a check compares with -------------------

def test_every_check_fails_a_solution_that_hands_the_work_to_the_library_or_the_reference():
    import torchvision.transforms.functional as TF
    from captum.attr import Saliency
    from torchvision.models.resnet import BasicBlock

    from lab_utils import analysis, stats
    from lab_utils.augment import random_crop_flip
    from lab_utils.checks import (check_channel_stats, check_crop_flip,
                                  check_per_class_accuracy)

    def torchvision_crop(x, dy, dx, flip, padding):
        return torch.stack([TF.hflip(TF.crop(TF.pad(i, padding), int(a), int(b), 32, 32)) if f
                            else TF.crop(TF.pad(i, padding), int(a), int(b), 32, 32)
                            for i, a, b, f in zip(x, dy, dx, flip)])

    def captum_saliency(model, x, target):
        return Saliency(model).attribute(x.requires_grad_(), target=target, abs=True)

    def torch_batchnorm(x, running_mean, running_var, weight, bias, training, momentum, eps):
        return nn.functional.batch_norm(x, running_mean, running_var, weight, bias, training,
                                        momentum, eps)

    class Borrowed(BasicBlock):
        def __init__(self, cin, cout, stride=1):
            down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            super().__init__(cin, cout, stride, down)

    def torchvision_resnet18(block):
        from torchvision.models import resnet18 as tv
        return tv(num_classes=10)

    cases = [
        (check_channel_stats, lambda x: (*stats.channel_mean_std(x), stats.mean_of_image_stds(x)),
         "lab_utils \\(stats.channel_mean_std\\)"),
        (check_crop_flip, random_crop_flip, "lab_utils \\(augment.random_crop_flip\\)"),
        (check_crop_flip, torchvision_crop, "torchvision's (pad|crop)"),
        (check_block, Borrowed, "torchvision's BasicBlock"),
        (check_batchnorm, torch_batchnorm, "torch's batch_norm"),
        (check_saliency, captum_saliency, "captum's Saliency"),
        (check_per_class_accuracy,
         lambda p: analysis.per_class_accuracy(analysis.confusion_matrix(p)),
         "lab_utils \\(analysis"),
    ]
    for check, solution, what in cases:
        fails_with(check, solution, match=f"hands the work to {what}")
    fails_with(check_resnet18, torchvision_resnet18, Block, match="hands the work to "
               "torchvision's resnet18")


# --- the lab's own code: transforms (02), the model (03), test pass and curves (04) --------

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def train_tf(padding=4, flip=True, normalize=True):
    import torchvision.transforms as T
    steps = [T.RandomCrop(32, padding=padding)] + ([T.RandomHorizontalFlip()] if flip else [])
    return T.Compose(steps + [T.ToTensor()] + ([T.Normalize(MEAN, STD)] if normalize else []))


def plain_tf(augment=False):
    import torchvision.transforms as T
    return T.Compose(([T.RandomHorizontalFlip()] if augment else [])
                     + [T.ToTensor(), T.Normalize(MEAN, STD)])


def test_the_transform_check_passes_the_labs_pipelines_and_names_mistakes(capsys):
    from lab_utils.checks import check_transforms
    from lab_utils.data import train_transform
    check_transforms(train_tf, plain_tf)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_transforms, lambda: train_tf(padding=2), plain_tf, match="padding 2")
    fails_with(check_transforms, lambda: train_tf(normalize=False), plain_tf,
               match="steps \\['RandomCrop', 'RandomHorizontalFlip', 'ToTensor'\\]")
    fails_with(check_transforms, train_tf, lambda: plain_tf(augment=True),
               match="test images are measured as they are")
    fails_with(check_transforms, train_transform, plain_tf, match="hands the work to lab_utils")


def lab_model(pretrained, head="lab"):
    from torchvision.models import resnet18
    model = resnet18(weights="IMAGENET1K_V1" if pretrained else None)
    model.fc = {"lab": nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 10)),
                "bare": nn.Linear(512, 10),
                "swapped": nn.Sequential(nn.Linear(512, 10), nn.Dropout(0.5))}[head]
    return model


def test_the_model_check_passes_the_labs_head_and_names_mistakes(capsys):

    from lab_utils.checks import check_lab_model
    check_lab_model(lab_model)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_lab_model, lambda p: lab_model(p, head="bare"), match="bare Linear")
    fails_with(check_lab_model, lambda p: lab_model(p, head="swapped"), match="Linear before Dropout")
    fails_with(check_lab_model, lambda p: lab_model(False), match="did not load the ImageNet")

    def build(pretrained):
        from lab_utils.config import make_config
        from lab_utils.model import build_model
        return build_model(make_config(pretrained=pretrained))
    fails_with(check_lab_model, build, match="hands the work to lab_utils")


def eval_epoch(model, loader, criterion, device, eval_mode=True, no_grad=True, lab_mean=False):
    if eval_mode:
        model.eval()
    total_loss, correct, total = 0.0, 0, 0
    with torch.set_grad_enabled(not no_grad):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = criterion(out, y)
            total_loss += loss.item() * (1 if lab_mean else len(y))
            correct += out.argmax(1).eq(y).sum().item()
            total += len(y)
    return total_loss / (len(loader) if lab_mean else total), 100 * correct / total


def test_the_test_pass_check_passes_the_labs_test_and_names_mistakes(capsys):
    from lab_utils.checks import check_test_epoch
    from lab_utils.train import evaluate
    check_test_epoch(eval_epoch)
    check_test_epoch(lambda *a: eval_epoch(*a, lab_mean=True))
    assert capsys.readouterr().out.count("Check passed") == 2
    fails_with(check_test_epoch, lambda *a: eval_epoch(*a, eval_mode=False), match="model.eval")
    fails_with(check_test_epoch, lambda *a: eval_epoch(*a, no_grad=False), match="torch.no_grad")
    fails_with(check_test_epoch, lambda m, l, c, d: evaluate(m, l, d, False, "fp32")[:2],
               match="hands the work to lab_utils")


def curves(history, legend=True, labels=True, test=True):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "acc")):
        ax.plot(history.epoch, history[f"train_{metric}"], label="train")
        if test:
            ax.plot(history.epoch, history[f"test_{metric}"], label="test")
        if labels:
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
        if legend:
            ax.legend()
    return fig


def test_the_curves_check_passes_the_labs_figure_and_names_mistakes(capsys):
    from lab_utils.checks import check_curves
    from lab_utils.plots import plot_history
    check_curves(curves)
    assert "Check passed" in capsys.readouterr().out
    fails_with(check_curves, lambda h: curves(h, legend=False), match="no legend")
    fails_with(check_curves, lambda h: curves(h, labels=False), match="axes labelled")
    fails_with(check_curves, lambda h: curves(h, test=False), match="both train_loss and test_loss")
    fails_with(check_curves, plot_history, match="hands the work to lab_utils")


def test_a_failed_check_shows_its_message_not_the_checks_own_lines():
    err = CheckFailed("my_x is wrong")
    assert err._render_traceback_() == ["CheckFailed: my_x is wrong"]
