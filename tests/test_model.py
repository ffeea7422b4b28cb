import urllib.error
import warnings

import pytest
import torch

from lab_utils.config import make_config
from lab_utils.model import (WeightsUnavailableError, build_model, count_parameters,
                             forward_flops)


def test_lab_model_head_shapes_and_parameter_count():
    model = build_model(make_config(pretrained=False))
    assert count_parameters(model) == 11_181_642
    assert isinstance(model.fc[0], torch.nn.Dropout) and model.fc[0].p == 0.5
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_building_the_model_gives_no_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(make_config(pretrained=False))


def test_cifar_stem_keeps_resolution_and_costs_about_15x():
    lab, cifar = build_model(make_config(pretrained=False)), build_model(make_config(pretrained=False, stem="cifar"))
    assert count_parameters(cifar) == 11_181_642 - 64 * 3 * (49 - 9)
    ratio = forward_flops(cifar) / forward_flops(lab)
    assert 12 < ratio < 18


def test_the_models_head_drops_half_its_features_in_train_mode_only():
    model = build_model(make_config(pretrained=False, dropout=0.5))
    seen = []
    model.fc[0].register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        model(x)
        model.train()  # the same batch twice: BatchNorm's batch statistics are the same
        model(x), model(x)
    (eval_in, eval_out), (in1, out1), (in2, out2) = seen
    assert torch.equal(eval_in, eval_out)  # eval mode: the head passes its features through
    assert torch.equal(in1, in2) and not torch.equal(out1, out2)  # a new mask every call
    for inp, out in ((in1, out1), (in2, out2)):
        kept, alive = out != 0, inp != 0  # some features are 0 already (after the ReLU)
        assert 0.4 < (kept & alive).sum().item() / alive.sum().item() < 0.6
        assert torch.allclose(out[kept], 2 * inp[kept])  # survivors scaled by 1 / (1 - p)


def test_offline_weights_error_says_where_the_file_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        build_model(make_config(pretrained=True))
    msg = str(err.value)
    assert str(tmp_path / "checkpoints" / "resnet18-f37072fd.pth") in msg
    assert "pretrained=False" in msg


@pytest.mark.parametrize("depth, params", [(18, 11_181_642), (34, 21_289_802)])
def test_plain_networks_are_the_same_layers_without_shortcuts(depth, params):
    from lab_utils.model import PlainBlock

    residual = build_model(make_config(pretrained=False, arch=f"resnet{depth}"))
    plain = build_model(make_config(pretrained=False, arch=f"plain{depth}"))
    assert count_parameters(residual) == params
    projections = sum(p.numel() for n, p in residual.named_parameters() if "downsample" in n)
    assert count_parameters(plain) == params - projections
    blocks = [b for s in (plain.layer1, plain.layer2, plain.layer3, plain.layer4) for b in s]
    assert all(isinstance(b, PlainBlock) for b in blocks) and len(blocks) == {18: 8, 34: 16}[depth]
    # The plain block is the residual block minus its shortcut, on the same weights.
    block = residual.layer1[0].eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        f = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        assert torch.allclose(block(x), torch.relu(f + x), atol=1e-6)
        assert torch.allclose(PlainBlock(block)(x), torch.relu(f), atol=1e-6)
    assert plain.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_gradient_norms_cover_every_block_and_differ_without_shortcuts():
    from lab_utils.model import block_gradient_norms

    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    norms = {}
    for arch in ("resnet34", "plain34"):
        torch.manual_seed(0)
        norms[arch] = block_gradient_norms(build_model(make_config(pretrained=False, arch=arch)), x, y)
    assert list(norms["resnet34"]) == [f"layer{s}.{i}" for s, n in zip(range(1, 5), (3, 4, 6, 3))
                                       for i in range(n)]
    assert all(g > 0 and w > 0 for g, w in norms["plain34"].values())
    assert norms["plain34"] != norms["resnet34"]
    # The weight norm is the block's own: it grows with the block's size.
    first, last = norms["resnet34"]["layer1.0"][1], norms["resnet34"]["layer4.2"][1]
    assert last > 2 * first
