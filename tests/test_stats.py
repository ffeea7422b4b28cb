import pytest
import torch

from lab_utils.augment import crop_flip_frequencies
from lab_utils.stats import channel_mean_std, class_counts, mean_of_image_stds


def test_channel_mean_std_on_known_values():
    # Channel 0: half the pixels 0, half 255 -> mean 0.5, std 0.5. Channel 1: constant 51 -> 0.2, 0.
    x = torch.zeros(4, 2, 2, 2, dtype=torch.uint8)
    x[:2, 0] = 255
    x[:, 1] = 51
    mean, std = channel_mean_std(x, chunk=3)
    assert mean.tolist() == pytest.approx([0.5, 0.2])
    assert std.tolist() == pytest.approx([0.5, 0.0], abs=1e-7)


def test_mean_of_image_stds_ignores_differences_between_images():
    # Each image is constant (own std 0) but images differ: all-pixel std 0.5, per-image 0.
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    x[1] = 255
    assert mean_of_image_stds(x).item() == pytest.approx(0.0)
    assert channel_mean_std(x)[1].item() == pytest.approx(0.5)
    # A checkerboard image has its own std 0.5.
    board = (torch.arange(16).view(1, 1, 4, 4) % 2 * 255).to(torch.uint8)
    assert mean_of_image_stds(board).item() == pytest.approx(0.5)


def test_class_counts_and_crop_frequencies():
    assert class_counts(torch.tensor([0, 0, 3]), 4).tolist() == [2, 0, 0, 1]
    freq, rate = crop_flip_frequencies(torch.tensor([0, 8]), torch.tensor([0, 8]),
                                       torch.tensor([True, False]))
    assert freq.shape == (9, 9) and freq[0, 0] == 0.5 and freq[8, 8] == 0.5 and rate == 0.5
