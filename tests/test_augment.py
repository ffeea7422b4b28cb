"""The batched augmentation draws and computes what the lab's per-image transforms do."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from lab_utils.augment import draw_crop_flip, normalize, random_crop_flip
from lab_utils.data import CIFAR10_MEAN, CIFAR10_STD, TensorLoader
from lab_utils.data import test_transform as lab_test_transform
from lab_utils.data import train_transform as lab_train_transform


def _images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_offsets_uniform_over_the_9x9_grid_and_flip_rate_one_half():
    n = 81_000
    dy, dx, flip = draw_crop_flip(n, torch.Generator().manual_seed(1))
    counts = torch.bincount(dy * 9 + dx, minlength=81).double()
    assert counts.numel() == 81 and counts.min() > 0
    chi2 = ((counts - n / 81) ** 2 / (n / 81)).sum().item()
    assert chi2 < 150  # 80 degrees of freedom: p < 1e-6 above 150
    assert abs(flip.double().mean().item() - 0.5) < 0.01


def test_crop_and_flip_equal_torchvision_on_pil_images():
    x = _images()
    dy, dx = torch.tensor([0, 8, 4, 2, 8, 0]), torch.tensor([0, 8, 4, 7, 0, 8])
    flip = torch.tensor([False, True, False, True, True, False])
    out = random_crop_flip(x, dy, dx, flip)
    for i in range(len(x)):
        pil = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        ref = TF.crop(TF.pad(pil, 4), int(dy[i]), int(dx[i]), 32, 32)
        if flip[i]:
            ref = TF.hflip(ref)
        assert torch.equal(out[i], torch.from_numpy(np.array(ref)).permute(2, 0, 1))


def test_padding_is_zero():
    x = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    out = random_crop_flip(x, torch.tensor([0]), torch.tensor([8]), torch.tensor([False]))
    assert (out[0, :, :4, :] == 0).all() and (out[0, :, :, -4:] == 0).all()
    assert (out[0, :, 4:, :-4] == 255).all()


def test_without_augmentation_batches_match_the_labs_test_pipeline():
    x, labels = _images(5), torch.arange(5)
    (batch, y), = list(TensorLoader(x, labels, batch_size=8))
    tf = lab_test_transform()
    ref = torch.stack([tf(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in x])
    assert torch.equal(y, labels)
    torch.testing.assert_close(batch, ref, atol=1e-6, rtol=1e-6)


def test_augmented_loader_draws_a_new_crop_per_image_and_epoch():
    x = _images(64)
    loader = TensorLoader(x, torch.zeros(64, dtype=torch.long), 64, augment=True,
                          generator=torch.Generator().manual_seed(0))
    (a, _), = list(loader)
    (b, _), = list(loader)
    assert not torch.equal(a, b)
    plain = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    assert not torch.equal(a, plain)


def _pixels(normalised: torch.Tensor) -> torch.Tensor:
    """Undo Normalize and ToTensor: 0..255 pixel values again."""
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    return ((normalised * std + mean) * 255).round()


def _zero_border(img: torch.Tensor) -> tuple[int, int]:
    """(rows, columns) of zero padding that an augmented all-white image shows."""
    zero = (img == 0).all(0)
    return int(zero.all(1).sum()), int(zero.all(0).sum())


@pytest.mark.parametrize("padding", [0, 2])
def test_crop_padding_sets_the_largest_shift_in_both_data_paths(padding):
    # A white image shows its crop offset as a zero border of at most `padding` pixels
    # on each axis; over 400 draws every border from 0 to `padding` appears, and never
    # a wider one, in the fast path and in the lab's per-image transform alike.
    x = torch.full((400, 3, 32, 32), 255, dtype=torch.uint8)
    loader = TensorLoader(x, torch.zeros(400, dtype=torch.long), 400, augment=True,
                          generator=torch.Generator().manual_seed(0), padding=padding)
    (batch, _), = list(loader)
    fast = {_zero_border(_pixels(img)) for img in batch}
    tf = lab_train_transform("lab", padding)
    pil = Image.fromarray(x[0].permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    lab = {_zero_border(_pixels(tf(pil))) for _ in range(400)}
    expected = {(r, c) for r in range(padding + 1) for c in range(padding + 1)}
    assert fast == expected and lab == expected
