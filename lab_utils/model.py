"""The lab's model: torchvision's ResNet-18 with a Dropout + Linear head, and its variants
(ResNet-34, the same networks without shortcuts, the CIFAR stem)."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights, resnet18, resnet34
from torchvision.models.resnet import BasicBlock

from .config import LAB, NUM_CLASSES, LabConfig

# arch -> (torchvision constructor, ImageNet weights)
RESNETS = {"resnet18": (resnet18, ResNet18_Weights.IMAGENET1K_V1),
           "resnet34": (resnet34, ResNet34_Weights.IMAGENET1K_V1)}


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are not cached and cannot be downloaded."""


def weights_path(arch: str = LAB.arch) -> Path:
    """Where torch looks for the ImageNet weights of `arch` before downloading them."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(RESNETS[arch][1].url).name


WEIGHTS_MESSAGE = (
    "The ImageNet weights for {arch} are not cached and cannot be downloaded. Download "
    "{url} on a machine with internet and put it at {path}, or pass pretrained=False to "
    "train from scratch.")


def weights_message(arch: str = LAB.arch) -> str:
    """What a student reads when the ImageNet weights cannot be fetched."""
    return WEIGHTS_MESSAGE.format(arch=arch, url=RESNETS[arch][1].url, path=weights_path(arch))


class PlainBlock(nn.Module):
    """A `BasicBlock` without its shortcut: y = relu(F(x)) instead of relu(F(x) + x).

    Same convolutions, BatchNorms and strides as the residual block it is made from, so a
    plain network has the same layers and (without the 1x1 projections) almost the same
    parameters: the "plain" baseline of He et al. (2016), Fig. 4.
    """

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.conv1, self.bn1, self.relu = block.conv1, block.bn1, block.relu
        self.conv2, self.bn2 = block.conv2, block.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


def remove_shortcuts(model: nn.Module) -> nn.Module:
    """Replace every residual block of a torchvision ResNet by its `PlainBlock`, in place."""
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for i, block in enumerate(stage):
            stage[i] = PlainBlock(block)
    return model


def build_model(cfg: LabConfig) -> nn.Module:
    """torchvision's ResNet as `cfg` says, its head replaced by Dropout(cfg.dropout) +
    Linear(512, 10): the lab's model with the defaults (`make_config()`).

    `cfg.pretrained` loads the ImageNet weights through the weights enum (every layer but
    the new head). `cfg.arch` picks the depth, 18 or 34, with shortcuts ("resnet18",
    "resnet34") or without ("plain18", "plain34"; no ImageNet weights). `cfg.stem="cifar"`
    swaps the 7x7 stride-2 conv and the max-pool for a 3x3 stride-1 conv, the usual CIFAR
    variant that keeps 32x32 inputs at full resolution into layer1 (about 15x the compute).
    Which values are allowed is `lab_utils.config.validate`'s rule, checked when `cfg` was made.
    """
    residual = cfg.arch.replace("plain", "resnet")
    constructor, weights = RESNETS[residual]
    try:
        model = constructor(weights=weights if cfg.pretrained else None)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(weights_message(residual)) from err
    if cfg.arch.startswith("plain"):
        remove_shortcuts(model)
    if cfg.stem == "cifar":
        # The ImageNet stem's first conv has no counterpart at 3x3: it starts fresh.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(cfg.dropout),
                             nn.Linear(model.fc.in_features, NUM_CLASSES))
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """FLOPs of one forward pass on a zero input of `input_size`, counted by
    `torch.utils.flop_counter` (a multiply-add counts as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(input_size))
    model.train(was_training)
    return counter.get_total_flops()


def block_gradient_norms(model: nn.Module, images: torch.Tensor, labels: torch.Tensor
                         ) -> dict[str, tuple[float, float]]:
    """(L2 norm of the loss gradient, L2 norm of the weights) of every residual (or plain)
    block, for one batch in train mode: how much signal reaches each depth.

    Their ratio is the size-free measure (the relative change one SGD step makes); the
    gradient norm alone grows with a block's size, which differs 64-fold between `layer1`
    and `layer4`. Blocks are named `layer<stage>.<index>`, from the input side on.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(images), labels).backward()
    norms = {}
    for stage in range(1, 5):
        for i, block in enumerate(getattr(model, f"layer{stage}")):
            params = [p for p in block.parameters() if p.grad is not None]
            norms[f"layer{stage}.{i}"] = (torch.cat([p.grad.flatten() for p in params]).norm().item(),
                                          torch.cat([p.detach().flatten() for p in params]).norm().item())
    model.zero_grad(set_to_none=True)
    return norms
