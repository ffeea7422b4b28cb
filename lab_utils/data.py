"""CIFAR-10 for the lab: where the images come from, the lab's transforms, and loaders.

`data_dir` decides the source: an image-folder copy (`train/<class>/*`, `test/<class>/*`),
the official `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/`, or, when
the folder is empty or missing, torchvision's download. A small generated dataset for
tests and smoke runs is only ever used when asked for (`dataset="synthetic"`).
"""
from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import CIFAR10, ImageFolder

from .augment import draw_crop_flip, normalize, random_crop_flip
from .paths import atomic_write_bytes, resolve

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
# The lab's constants (they are the mean of per-image stds, see notebook 01).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
SYNTHETIC_DIR = "data/synthetic"
CIFAR10_URL_HOST = "www.cs.toronto.edu"  # where torchvision downloads CIFAR-10 from


class DataUnavailableError(RuntimeError):
    """CIFAR-10 is neither in `data_dir` nor downloadable; the message says what to do."""


def train_transform(augment: str = "lab", padding: int = 4) -> T.Compose:
    """The lab's per-image training pipeline (crop with `padding` pixels of zero padding,
    4 in the lab; flip; ToTensor; Normalize); `augment="none"` keeps only ToTensor and
    Normalize."""
    steps = [T.RandomCrop(32, padding=padding), T.RandomHorizontalFlip()] \
        if augment == "lab" else []
    return T.Compose(steps + [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def test_transform() -> T.Compose:
    """The lab's test pipeline: ToTensor and Normalize, no augmentation."""
    return T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def _is_image_folder(root: Path) -> bool:
    return all((root / split).is_dir() and any(p.is_dir() for p in (root / split).iterdir())
               for split in ("train", "test"))


def _network_reachable(host: str, timeout: float = 10.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# What a student reads at the known walls; README.md quotes these verbatim
# (tests/test_readme.py keeps the two in step).
OFFLINE_MESSAGE = (
    "CIFAR-10 is not in data_dir='{root}' and cannot be downloaded (no connection to "
    "www.cs.toronto.edu). Either put cifar-10-python.tar.gz into {root}/, or point data_dir "
    "at an image-folder copy (train/<class>/*.png|jpg and test/<class>/*).")
DOWNLOAD_FAILED_MESSAGE = (
    "Downloading CIFAR-10 into {root} failed ({error}). The official download is slow and "
    "often breaks off: download cifar-10-python.tar.gz another way and put it into {root}/, "
    "or point data_dir at an image-folder copy.")


def offline_message(root: Path) -> str:
    """What a student reads when CIFAR-10 is not in `data_dir` and cannot be downloaded."""
    return OFFLINE_MESSAGE.format(root=root)


def find_source(data_dir: str | Path, download: bool = True) -> tuple[str, Path]:
    """Decide where CIFAR-10 comes from: ("imagefolder" | "cifar10", resolved root).

    Raises `DataUnavailableError` (within about 10 s when offline) when the folder is
    empty and the official site cannot be reached, and `ValueError` naming `data_dir`
    when the folder holds something that is neither layout.
    """
    root = resolve(data_dir)
    if root.is_dir() and _is_image_folder(root):
        return "imagefolder", root
    if (root / "cifar-10-batches-py").is_dir() or (root / "cifar-10-python.tar.gz").is_file():
        return "cifar10", root
    if root.exists() and not root.is_dir():
        raise ValueError(f"parameter data_dir={str(data_dir)!r} is a file; it must be a folder "
                         "holding cifar-10-python.tar.gz, cifar-10-batches-py/ or train/ and test/")
    contents = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) \
        if root.is_dir() else []
    if contents:
        raise ValueError(
            f"parameter data_dir={str(data_dir)!r} holds {contents[:5]} but no CIFAR-10: "
            "allowed are a folder with cifar-10-python.tar.gz or cifar-10-batches-py/, an "
            "image-folder copy with train/<class>/ and test/<class>/, or an empty folder to "
            "download into")
    if not download or not _network_reachable(CIFAR10_URL_HOST):
        raise DataUnavailableError(offline_message(root))
    root.mkdir(parents=True, exist_ok=True)
    try:
        CIFAR10(root, train=True, download=True)
    except (OSError, RuntimeError) as err:  # URLError, timeouts, a corrupt partial file
        raise DataUnavailableError(DOWNLOAD_FAILED_MESSAGE.format(root=root, error=err)) from err
    return "cifar10", root


def make_synthetic(root: str | Path = SYNTHETIC_DIR, per_class_train: int = 50,
                   per_class_test: int = 10, seed: int = 0) -> Path:
    """Write a small, learnable stand-in for CIFAR-10 in image-folder layout and return it.

    Ten classes of 32x32 RGB PNGs, each class a colour and a stripe direction plus noise,
    so a model beats chance within seconds. Like CIFAR-10, the classes are balanced and the
    training split is five times the test split. Made once; later calls reuse the files.
    """
    root = resolve(root)
    marker = root / "SYNTHETIC.txt"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for k, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(k * 70) % 256, (k * 150 + 60) % 256, (255 - k * 25) % 256])
            angle = np.pi * k / 10
            stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.6)[..., None]
            for i in range(n):
                img = 0.5 * colour + 60 * stripes + rng.normal(0, 40, (32, 32, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    marker.write_text("Generated by lab_utils.data.make_synthetic: not CIFAR-10.\n")
    return root


def _source_for(dataset: str, data_dir: str | Path) -> tuple[str, Path]:
    if dataset == "synthetic":
        return "imagefolder", make_synthetic()
    return find_source(data_dir)


def load_datasets(data_dir: str | Path = "data/cifar10", dataset: str = "cifar10",
                  augment: str = "lab", padding: int = 4) -> tuple[Dataset, Dataset]:
    """The lab's (train, test) datasets with per-image PIL transforms, as in the report
    (`padding`: the random crop's zero padding in pixels)."""
    kind, root = _source_for(dataset, data_dir)
    train_tf, test_tf = train_transform(augment, padding), test_transform()
    if kind == "imagefolder":
        return ImageFolder(root / "train", train_tf), ImageFolder(root / "test", test_tf)
    return CIFAR10(root, train=True, transform=train_tf, download=True), \
        CIFAR10(root, train=False, transform=test_tf, download=True)


def _decode_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    ds = ImageFolder(folder)
    if len(ds.classes) != len(CLASSES):
        raise ValueError(f"{folder} has classes {ds.classes}; expected the 10 CIFAR-10 classes")
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p, _ in ds.samples])
    labels = torch.tensor([y for _, y in ds.samples], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def load_tensors(data_dir: str | Path = "data/cifar10", dataset: str = "cifar10",
                 split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 images N x 3 x 32 x 32, int64 labels), decoded once.

    Image folders are decoded on first use and cached beside the data
    (`cache-<split>-uint8.pt`), so later runs load them in about a second.
    """
    kind, root = _source_for(dataset, data_dir)
    if kind == "cifar10":
        ds = CIFAR10(root, train=(split == "train"), download=True)
        return (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(ds.targets, dtype=torch.int64))
    cache = root / f"cache-{split}-uint8.pt"
    n_files = sum(1 for p in (root / split).rglob("*") if p.is_file())
    if cache.is_file():
        saved = torch.load(cache)
        if saved["n_files"] == n_files:
            return saved["images"], saved["labels"]
    images, labels = _decode_folder(root / split)
    buf = io.BytesIO()
    torch.save({"images": images, "labels": labels, "n_files": n_files}, buf)
    atomic_write_bytes(cache, buf.getvalue())
    return images, labels


# Subsets are drawn with fixed seeds, not the run's, so that every run of an experiment
# trains on (and measures clean accuracy on) the same images.
TRAIN_SUBSET_SEED = 12345
CLEAN_SUBSET_SEED = 54321


def fixed_subset(n_total: int, n: int, seed: int = TRAIN_SUBSET_SEED) -> torch.Tensor:
    """`n` indices out of `n_total`, the same for every run (a fixed seed, not the run's),
    so that runs of an experiment train and measure on the same images."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


class TensorLoader:
    """Batches from a uint8 image tensor kept on the training device, augmented per image
    on whole batches there (the fast path; same distribution as the lab's transforms).

    All random numbers of an epoch (order, crop offsets, flips) are drawn at its start on
    the CPU generator and moved to the device once, so batches need no host-device copy
    and a run is reproducible from the generator's state.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 device: torch.device | str = "cpu", shuffle: bool = False,
                 augment: bool = False, generator: torch.Generator | None = None,
                 channels_last: bool = False, padding: int = 4):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.generator = generator if generator is not None else torch.Generator()
        self.channels_last = channels_last
        self.padding = padding

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, g = len(self.labels), self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.augment:
            draws = draw_crop_flip(n, g, self.padding)
            dy, dx, flip = (t.to(self.device, non_blocking=True) for t in draws)
        order = order.to(self.device, non_blocking=True)
        for start in range(0, n, self.batch_size):
            pos = order[start:start + self.batch_size]
            x = self.images[pos]
            if self.augment:
                sel = slice(start, start + self.batch_size)
                x = random_crop_flip(x, dy[sel], dx[sel], flip[sel], self.padding)
            x = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[pos]


def make_loaders(images_labels_train: tuple[torch.Tensor, torch.Tensor],
                 images_labels_test: tuple[torch.Tensor, torch.Tensor], batch_size: int,
                 device: torch.device, augment: bool, generator: torch.Generator,
                 channels_last: bool = False, padding: int = 4
                 ) -> tuple[TensorLoader, TensorLoader]:
    """(train, test) `TensorLoader`s for the fast path; test batches are never augmented."""
    train = TensorLoader(*images_labels_train, batch_size, device, shuffle=True,
                         augment=augment, generator=generator, channels_last=channels_last,
                         padding=padding)
    test = TensorLoader(*images_labels_test, 512, device, channels_last=channels_last)
    return train, test


def make_dataloaders(train_ds: Dataset, test_ds: Dataset, batch_size: int, num_workers: int,
                     generator: torch.Generator, pin_memory: bool = False
                     ) -> tuple[DataLoader, DataLoader]:
    """(train, test) `DataLoader`s over per-image transforms: the lab's original path."""
    kw = dict(num_workers=num_workers, pin_memory=pin_memory,
              persistent_workers=num_workers > 0)
    return (DataLoader(train_ds, batch_size, shuffle=True, generator=generator, **kw),
            DataLoader(test_ds, 512, shuffle=False, **kw))
