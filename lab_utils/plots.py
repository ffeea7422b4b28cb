"""Figures of the lab, in seaborn's darkgrid style: curves, confusion matrix, image grids."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * (1 + 0.2 * lines)),
                             dpi=80, squeeze=False)
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


def plot_class_counts(counts: Sequence[int], classes: Sequence[str] = CLASSES,
                      title: str = "") -> plt.Figure:
    """Bar chart of images per class."""
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=80)
    sns.barplot(x=list(classes), y=[int(c) for c in counts], ax=ax, color="C0")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def plot_channel_histograms(images: torch.Tensor, bins: int = 64) -> plt.Figure:
    """Histogram of pixel values (0..255) for the red, green and blue channels."""
    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=80)
    for c, colour in enumerate(("red", "green", "blue")):
        values = images[:, c].flatten().float()
        hist = torch.histc(values, bins=bins, min=0, max=255)
        centres = torch.linspace(0, 255, bins)
        ax.plot(centres, hist / hist.sum(), color=colour, label=colour)
    ax.set_xlabel("pixel value")
    ax.set_ylabel("fraction of pixels")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_frequency_table(freq: torch.Tensor, title: str, ax=None) -> plt.Axes:
    """Heatmap of a crop-offset frequency table (rows dy, columns dx), as % of draws."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3), dpi=80)
    sns.heatmap(100 * freq.numpy(), annot=True, fmt=".1f", cmap="Blues", cbar=False,
                annot_kws={"fontsize": 6}, ax=ax)
    ax.set_xlabel("dx (column offset)")
    ax.set_ylabel("dy (row offset)")
    ax.set_title(title, fontsize=9)
    return ax


def plot_gaps(summary: pd.DataFrame, milestones: Sequence[int] = ()) -> plt.Figure:
    """Train-test accuracy gaps per epoch for every (dropout, augment) cell of the ablation:
    running gap (train mode, as the lab measured) and clean gap (eval mode, no augmentation),
    mean over seeds with a band of +- one standard deviation."""
    panels = [("running_gap", "running train acc - test acc"),
              ("clean_gap", "clean train acc - test acc"), ("test_acc", "test accuracy (%)")]
    panels = [p for p in panels if f"{p[0]}_mean" in summary]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), dpi=80)
    for ax, (col, label) in zip(np.atleast_1d(axes), panels):
        for i, ((dropout, augment), g) in enumerate(summary.groupby(["dropout", "augment"])):
            mean, std = g[f"{col}_mean"], g[f"{col}_std"].fillna(0)
            ax.plot(g.epoch, mean, "o-", ms=3, color=f"C{i}",
                    label=f"dropout {dropout}, aug {augment}")
            ax.fill_between(g.epoch, mean - std, mean + std, color=f"C{i}", alpha=0.2)
        if col != "test_acc":
            ax.axhline(0, color="black", lw=0.8)
        _mark_milestones(ax, milestones)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_misclassified(images: torch.Tensor, predictions: pd.DataFrame, n: int = 20,
                       classes: Sequence[str] = CLASSES) -> plt.Figure:
    """The `n` most confident mistakes of a run: each test image with its true label, the
    predicted label and the confidence. `images` are the test images in prediction order."""
    wrong = predictions[predictions.true != predictions.pred]
    wrong = wrong.sort_values("confidence", ascending=False).head(n)
    titles = [f"{classes[t]}\n-> {classes[p]} {c:.0%}"
              for t, p, c in zip(wrong.true, wrong.pred, wrong.confidence)]
    return show_images(images[torch.tensor(wrong["index"].to_numpy())], titles, ncols=10, size=1.1)
