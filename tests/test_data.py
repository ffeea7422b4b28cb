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
