import pytest

from lab_utils.config import (LAB, ConfigError, make_config, notebook_parameters,
                              validate)


def test_defaults_are_the_labs_recipe():
    cfg = make_config()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == \
        (15, 128, 0.01, 0.9, 5e-4)
    assert (cfg.milestones, cfg.gamma, cfg.dropout, cfg.pretrained) == ([7, 12], 0.1, 0.5, True)


@pytest.mark.parametrize("name, value, allowed", [
    ("epochs", 0, "integer >= 1"),
    ("epochs", -3, "integer >= 1"),
    ("epochs", 2.5, "integer >= 1"),
    ("batch_size", 0, "integer >= 1"),
    ("lr", 0, "(0, inf)"),
    ("lr", -0.1, "(0, inf)"),
    ("dropout", 1.0, "[0, 1)"),
    ("dropout", -0.1, "[0, 1)"),
    ("milestones", [12, 7], "strictly increasing"),
    ("milestones", [7, 7], "strictly increasing"),
    ("milestones", [7, 20], "no later than the last epoch"),
    ("milestones", "7,12", "list of integer epochs"),
    ("device", "tpu", "'auto', 'cpu'"),
    ("device", "gpu", "'auto', 'cpu'"),
    ("recipe", "fastest", "'lab', 'fast'"),
    ("augment", "heavy", "'lab', 'none'"),
    ("pretrained", "yes", "True or False"),
    ("num_workers", -1, "integer >= 0"),
    ("crop_padding", -1, "integer in 0..16"),
    ("crop_padding", 17, "integer in 0..16"),
    ("crop_padding", 2.0, "integer in 0..16"),
])
def test_bad_values_name_parameter_value_and_allowed(name, value, allowed):
    with pytest.raises(ConfigError) as err:
        make_config(**{name: value})
    msg = str(err.value)
    assert f"{name}={value!r}" in msg and allowed in msg


def test_missing_gpu_is_reported_as_a_device_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="device='cuda'.*no CUDA GPU"):
        make_config(device="cuda")


def test_unknown_parameter_names_are_errors():
    with pytest.raises(ConfigError, match="unknown parameter.*epoch\\b.*known parameters"):
        make_config(epoch=3)


def test_recipe_fills_only_values_left_at_the_labs_default():
    fast = make_config(recipe="fast")
    assert fast.schedule == "onecycle" and fast.epochs < LAB.epochs
    assert make_config(recipe="fast", epochs=3).epochs == 3
    assert (make_config().crop_padding, fast.crop_padding) == (4, 0)
    assert make_config(recipe="fast", crop_padding=2).crop_padding == 2


def test_notebook_parameters_rejects_unknown_papermill_names():
    namespace = {"epochs": 3, "lr": 0.1, "In": ["", "# Parameters\nepochs = 3\nlearning_rate = 0.1\n"]}
    with pytest.raises(ConfigError, match="learning_rate passed to papermill"):
        notebook_parameters(namespace)
    namespace["In"] = ["", "# Parameters\nepochs = 3\n"]
    assert notebook_parameters(namespace) == {"epochs": 3, "lr": 0.1}


def test_validate_returns_a_good_config_unchanged():
    cfg = make_config(epochs=3, milestones=[1, 2])
    assert validate(cfg) is cfg
