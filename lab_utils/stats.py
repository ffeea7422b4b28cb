"""Dataset statistics: per-channel means and the two kinds of standard deviation.

The lab normalises with std (0.2023, 0.1994, 0.2010). Those numbers are not the standard
deviation of CIFAR-10's pixels (about 0.247, 0.243, 0.262) but the mean over images of
each image's own standard deviation, a smaller quantity because it leaves out how much
images differ from each other in brightness. Notebook 01 computes both.
"""
from __future__ import annotations

import torch

from .config import NUM_CLASSES


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float64 in [0, 1]; float images are taken as already in [0, 1]."""
    x = images.to(torch.float64)
    return x / 255 if images.dtype == torch.uint8 else x


def channel_mean_std(images: torch.Tensor, chunk: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over every pixel of every image.

    `images` is N x C x H x W (uint8 0..255 or float 0..1). Accumulated in float64 over
    chunks, so 50,000 CIFAR images need little memory and lose no precision.
    """
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for start in range(0, len(images), chunk):
        x = _as_float(images[start:start + chunk])
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x ** 2).sum(dim=(0, 2, 3))
        count += x.numel() // x.shape[1]
    mean = total / count
    return mean, (total_sq / count - mean ** 2).clamp_min(0).sqrt()


def mean_of_image_stds(images: torch.Tensor, chunk: int = 10_000) -> torch.Tensor:
    """Per-channel mean over images of each image's own pixel standard deviation
    (population std over its H x W pixels): how the lab's 0.2023/0.1994/0.2010 arise."""
    parts = [_as_float(images[s:s + chunk]).std(dim=(2, 3), unbiased=False)
             for s in range(0, len(images), chunk)]
    return torch.cat(parts).mean(dim=0)


def class_counts(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Number of images per class label."""
    return torch.bincount(labels, minlength=num_classes)
