"""The lab's augmentation applied to whole batches of uint8 images on their device.

`RandomCrop(32, padding=4)` + `RandomHorizontalFlip()` + `Normalize`, one image at a
time through PIL, is what the lab did; these functions compute the same thing for a
batch at once, each image with its own offset and flip, wherever the batch lives.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .config import LAB


def random_crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                     flip: torch.Tensor, padding: int = LAB.crop_padding) -> torch.Tensor:
    """Crop each image of `x` (N x C x H x W) at offset (dy[i], dx[i]) of its zero-padded
    copy and mirror it left-right where flip[i] is True.

    With dy, dx uniform in 0..2*padding and flip a fair coin, this is the distribution
    of the lab's `RandomCrop(H, padding)` followed by `RandomHorizontalFlip()`.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # zeros, as RandomCrop pads
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    # A flipped crop reads its window's columns right to left.
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images to float, scaled to [0, 1] (as `ToTensor`), then `Normalize(mean, std)`."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255 - m) / s


def draw_crop_flip(n: int, generator: torch.Generator | None = None,
                   padding: int = LAB.crop_padding) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (dy, dx, flip) for `n` images: offsets uniform in 0..2*padding, fair flips."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def crop_flip_frequencies(dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
                          padding: int = LAB.crop_padding) -> tuple[torch.Tensor, float]:
    """How often each crop offset and a flip were drawn: a (2p+1) x (2p+1) table of
    frequencies (rows dy, columns dx; uniform means each is 1/81 for p=4) and the flip rate."""
    side = 2 * padding + 1
    counts = torch.bincount(dy * side + dx, minlength=side * side).view(side, side)
    return counts.double() / len(dy), flip.double().mean().item()
