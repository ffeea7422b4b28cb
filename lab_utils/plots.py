"""Figures of the lab, in seaborn's darkgrid style: curves, confusion matrix, image grids."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .config import CLASSES, LAB
from .data import CIFAR10_MEAN, CIFAR10_STD

sns.set_theme(style="darkgrid")


def _mark_milestones(ax, milestones: Sequence[int]) -> None:
    # MultiStepLR lowers the rate after epoch m, so the change shows from epoch m + 1.
    for i, m in enumerate(milestones):  # (milestones after the last epoch are dropped)
        ax.axvline(m + 0.5, color="grey", ls="--", lw=1, label="LR decay" if i == 0 else None)


def plot_history(history: pd.DataFrame, milestones: Sequence[int] = (), title: str = "",
                 label_smoothing: float = 0.0) -> plt.Figure:
    """The lab's figure: loss and accuracy per epoch, train vs test (and validation and
    clean train, when the run measured them), with the LR milestones marked, and the
    learning rate per epoch on a log scale. With `label_smoothing`, the training loss
    includes the smoothing term and the measured losses do not: the legend says so."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=80,
                             gridspec_kw={"width_ratios": [1, 1, 0.6]})
    running = "train (running, train mode)"
    lines = [("train", "o-", running), ("test", "o-", "test"),
             ("val", "s-", "validation"), ("clean_train", "o--", "train (clean, eval mode)")]
    for ax, metric in zip(axes, ("loss", "acc")):
        for name, style, label in lines:
            if f"{name}_{metric}" in history:
                if name == "train" and metric == "loss" and label_smoothing:
                    label = f"{running},\nwith label smoothing {label_smoothing:g}: not comparable"
                ax.plot(history.epoch, history[f"{name}_{metric}"], style, ms=3, label=label)
        _mark_milestones(ax, milestones)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss" if metric == "loss" else "accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    axes[2].semilogy(history.epoch, history.lr, "o-", ms=3, color="C4")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("learning rate (at the epoch's start)")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# One colour per architecture in every figure (notebook 03's gradient and training plots).
ARCH_COLOURS = {"resnet18": "C0", "plain18": "C1", "resnet34": "C2", "plain34": "C3"}


def plot_runs(table: pd.DataFrame, by: str, metrics: Sequence[str] = ("train_loss", "test_acc"),
              ) -> plt.Figure:
    """Curves of many runs (a `lab_utils.analysis.load_runs` table) grouped by the config
    value `by`: the mean over seeds as a line, every seed as a thin line."""
    labels = {"train_loss": "training loss (running, train mode)", "test_acc": "test accuracy (%)",
              "train_acc": "train accuracy (running, %)", "test_loss": "test loss"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), dpi=80)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, (value, g) in enumerate(table.groupby(by, sort=False)):
            colour = ARCH_COLOURS.get(value, f"C{i}") if by == "arch" else f"C{i}"
            for _, run in g.groupby("run"):
                ax.plot(run.epoch, run[metric], "-", lw=0.8, alpha=0.4, color=colour)
            mean = g.groupby("epoch")[metric].mean()
            ax.plot(mean.index, mean.values, "o-", ms=3, color=colour,
                    label=f"{value} (mean of {g.run.nunique()})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels.get(metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
                size: float = 1.0, normalized: bool = False,
                row_labels: Sequence[str] | None = None) -> plt.Figure:
    """A grid of images (N x 3 x H x W, uint8 or float in [0, 1]; `normalized=True` for
    tensors that went through the lab's Normalize), with a title above each image or a
    label left of each row (`row_labels`), given room so that no text overlaps a picture."""
    x = images.detach().cpu().float()
    if normalized:
        x = x * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) + torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    elif images.dtype == torch.uint8:
        x = x / 255
    n = len(x)
    nrows = (n + ncols - 1) // ncols
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    label_w = 1.0 if row_labels is not None else 0.0
    fig, axes = plt.subplots(nrows, ncols, dpi=80, squeeze=False, figsize=(
        label_w + ncols * size, nrows * (size + 0.16 * lines)))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            # The true pixels: smoothing a 32x32 image only blurs it (and bloats the PNG).
            ax.imshow(x[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7, pad=2)
    for row, label in enumerate(row_labels or []):
        axes[row, 0].text(-0.08, 0.5, label, transform=axes[row, 0].transAxes, ha="right",
                          va="center", fontsize=8)
    fig.subplots_adjust(left=label_w / fig.get_figwidth() if row_labels else 0.01, right=0.99,
                        bottom=0.01, top=1 - 0.16 * lines / fig.get_figheight() * 0.9 - 0.005,
                        wspace=0.06, hspace=(0.16 * lines + 0.04) / size)
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


def plot_frequency_table(freq: torch.Tensor, title: str, ax=None,
                         scale: tuple[float, float] | None = None) -> plt.Axes:
    """Heatmap of a crop-offset frequency table (rows dy, columns dx), as % of draws, with
    two decimals so that the differences show; `scale` (min, max in %) puts several tables
    on one colour scale."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3), dpi=80)
    vmin, vmax = scale if scale is not None else (None, None)
    sns.heatmap(100 * freq.numpy(), annot=True, fmt=".2f", cmap="Blues", vmin=vmin, vmax=vmax,
                cbar_kws={"label": "% of draws"}, annot_kws={"fontsize": 5}, ax=ax)
    ax.set_xlabel("dx (column offset)")
    ax.set_ylabel("dy (row offset)")
    ax.set_title(title, fontsize=9)
    return ax


def plot_gaps(summary: pd.DataFrame, milestones: Sequence[int] = ()) -> plt.Figure:
    """Train-test accuracy gaps per epoch for every (dropout, augment) cell of the ablation:
    running gap (train mode, as the lab measured) and clean gap (eval mode, no augmentation),
    in percentage points, the mean over seeds with a band of +- one standard deviation of
    the seeds. The lab's own cell (dropout 0.5, its augmentation) is drawn thicker."""
    panels = [("running_gap", "running train acc - test acc (pp)"),
              ("clean_gap", "clean train acc - test acc (pp)"), ("test_acc", "test accuracy (%)")]
    panels = [p for p in panels if f"{p[0]}_mean" in summary]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), dpi=80)
    for ax, (col, label) in zip(np.atleast_1d(axes), panels):
        for i, ((dropout, augment), g) in enumerate(summary.groupby(["dropout", "augment"])):
            mean, std = g[f"{col}_mean"], g[f"{col}_std"].fillna(0)
            lab = dropout == LAB.dropout and augment == LAB.augment
            ax.plot(g.epoch, mean, "o-", ms=4 if lab else 3, lw=3 if lab else 1.5, color=f"C{i}",
                    label=f"dropout {dropout}, aug {augment}" + (" (the lab)" if lab else ""))
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


def save_curves(run_dir: str | Path) -> Path:
    """Write a run's curves (`plot_history` of its history.csv) to `curves.png` in the run
    directory and return the path: `python -m lab_utils.plots results/lab-cpu-seed0`."""
    from . import runs
    from .config import saved_config
    from .paths import resolve

    run_dir = resolve(run_dir)
    cfg = saved_config(runs.load_config(run_dir))
    fig = plot_history(runs.load_history(run_dir), cfg["milestones"], title=run_dir.name,
                       label_smoothing=cfg["label_smoothing"])
    fig.savefig(run_dir / "curves.png")
    plt.close(fig)
    return run_dir / "curves.png"


if __name__ == "__main__":
    import sys

    for folder in sys.argv[1:]:
        print(save_curves(folder))
