"""Figures of the lab, in seaborn's darkgrid style: curves, confusion matrix, image grids."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .data import CLASSES, CIFAR10_MEAN, CIFAR10_STD

sns.set_theme(style="darkgrid")


def _mark_milestones(ax, milestones: Sequence[int]) -> None:
    # MultiStepLR lowers the rate after epoch m, so the change shows from epoch m + 1.
    for i, m in enumerate(milestones):
        ax.axvline(m + 0.5, color="grey", ls="--", lw=1, label="LR decay" if i == 0 else None)


def plot_history(history: pd.DataFrame, milestones: Sequence[int] = (), title: str = ""
                 ) -> plt.Figure:
    """The lab's figure: loss and accuracy per epoch, train vs test (and clean train,
    when the run measured it), with the LR milestones marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    for ax, metric in zip(axes, ("loss", "acc")):
        ax.plot(history.epoch, history[f"train_{metric}"], "o-", ms=3, label="train (running)")
        ax.plot(history.epoch, history[f"test_{metric}"], "o-", ms=3, label="test")
        if f"clean_train_{metric}" in history:
            ax.plot(history.epoch, history[f"clean_train_{metric}"], "o--", ms=3,
                    label="train (clean, eval mode)")
        _mark_milestones(ax, milestones)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss" if metric == "loss" else "accuracy (%)")
    axes[1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
                size: float = 1.0, normalized: bool = False) -> plt.Figure:
    """A grid of images (N x 3 x H x W, uint8 or float in [0, 1]; `normalized=True` for
    tensors that went through the lab's Normalize)."""
    x = images.detach().cpu().float()
    if normalized:
        x = x * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) + torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    elif images.dtype == torch.uint8:
        x = x / 255
    n = len(x)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), dpi=80,
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i].permute(1, 2, 0).clamp(0, 1).numpy())
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def plot_confusion(confusion: np.ndarray, classes: Sequence[str] = CLASSES) -> plt.Figure:
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), in % of row."""
    pct = 100 * confusion / confusion.sum(1, keepdims=True)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=80)
    sns.heatmap(pct, annot=True, fmt=".0f", cmap="Blues", xticklabels=classes,
                yticklabels=classes, cbar_kws={"label": "% of true class"}, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig
