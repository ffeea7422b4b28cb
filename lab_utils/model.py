"""The lab's model: torchvision's ResNet-18 with a Dropout + Linear head, and its variants."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are not cached and cannot be downloaded."""


def weights_path() -> Path:
    """Where torch looks for the ImageNet ResNet-18 weights before downloading them."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(WEIGHTS.url).name


WEIGHTS_MESSAGE = (
    "The ImageNet weights for resnet18 are not cached and cannot be downloaded. Download "
    "{url} on a machine with internet and put it at {path}, or pass pretrained=False to "
    "train from scratch.")


def weights_message() -> str:
    """What a student reads when the ImageNet weights cannot be fetched."""
    return WEIGHTS_MESSAGE.format(url=WEIGHTS.url, path=weights_path())


def build_model(num_classes: int = 10, dropout: float = 0.5, pretrained: bool = True,
                stem: str = "imagenet") -> nn.Module:
    """torchvision `resnet18` with its head replaced by Dropout(dropout) + Linear(512, num_classes).

    `pretrained=True` loads the ImageNet weights through the weights enum (every layer
    but the new head). `stem="cifar"` swaps the 7x7 stride-2 conv and the max-pool for a
    3x3 stride-1 conv, the usual CIFAR variant that keeps 32x32 inputs at full
    resolution into layer1 (about 15x the compute).
    """
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"parameter stem={stem!r} is not allowed: one of 'imagenet', 'cifar'")
    try:
        model = resnet18(weights=WEIGHTS if pretrained else None)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(weights_message()) from err
    if stem == "cifar":
        # The ImageNet stem's first conv has no counterpart at 3x3: it starts fresh.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
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
