from pathlib import Path

import pytest

from lab_utils import analysis, runs
from lab_utils.config import (LAB, ConfigError, LabConfig, load_preset, make_config,
                              notebook_parameters, preset_path, saved_config, validate)

ROOT = Path(__file__).resolve().parents[1]


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
    ("milestones", "7,12", "list of integer epochs"),
    ("device", "tpu", "'auto', 'cpu'"),
    ("device", "gpu", "'auto', 'cpu'"),
    ("recipe", "fastest", "'lab', 'cifar_stem', 'fast'"),
    ("arch", "resnet50", "'resnet18', 'resnet34', 'plain18', 'plain34'"),
    ("precision", "half", "'auto', 'fp32', 'bf16', 'fp16'"),
    ("precision", "fp16", "only with device='cuda'"),
    ("val_size", 5001, "multiple of 10"),
    ("val_size", -10, "integer >= 0"),
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


def test_preset_comes_first_and_every_given_value_wins():
    fast = make_config(recipe="fast")
    assert fast.schedule == "onecycle" and fast.epochs < LAB.epochs
    assert make_config(recipe="fast", epochs=3).epochs == 3
    assert (make_config().crop_padding, fast.crop_padding) == (4, 0)
    assert make_config(recipe="fast", crop_padding=2).crop_padding == 2
    # A value equal to the lab's default is a value like any other (last one wins).
    assert make_config(recipe="fast", crop_padding=4).crop_padding == 4
    assert make_config(recipe="fast", dropout=0.5).dropout == 0.5


def test_presets_are_papermill_parameter_files_of_known_names():
    for name in ("fast", "cifar_stem"):
        values = load_preset(name)
        assert values["recipe"] == name and preset_path(name).suffix == ".yaml"
        assert make_config(**values) == make_config(recipe=name)


def test_pretrained_plain_network_is_refused():
    with pytest.raises(ConfigError, match="pretrained=True.*arch='plain18'"):
        make_config(arch="plain18")
    assert make_config(arch="plain34", pretrained=False).arch == "plain34"


def test_milestones_after_the_last_epoch_are_dropped_with_a_note(capsys):
    cfg = make_config(epochs=2)
    assert cfg.milestones == []
    assert "milestones [7, 12] come after the last epoch (epochs=2)" in capsys.readouterr().out
    assert make_config(epochs=10).milestones == [7]
    # Built by hand, the same config is still refused, naming the parameter.
    with pytest.raises(ConfigError, match="no later than the last epoch"):
        validate(LabConfig(epochs=2))


def test_old_parameter_names_still_work():
    assert make_config(data_path="dataloader").loader == "dataloader"
    assert make_config(amp=False).precision == "fp32"
    assert make_config(amp=True).precision == "auto"
    with pytest.raises(ConfigError, match="data_path='dataloader' is the old name of loader"):
        make_config(data_path="dataloader", loader="tensor")
    old = {"data_path": "tensor", "amp": True, "epochs": 15}  # a config.json from before
    assert saved_config(old)["loader"] == "tensor" and saved_config(old)["val_size"] == 0


def test_notebook_parameters_rejects_unknown_papermill_names():
    namespace = {"epochs": 3, "lr": 0.1, "In": ["", "# Parameters\nepochs = 3\nlearning_rate = 0.1\n"]}
    with pytest.raises(ConfigError, match="learning_rate passed to papermill"):
        notebook_parameters(namespace)


CELL = "# Papermill parameters cell (tag: parameters).\n"


def test_a_preset_chosen_in_the_cell_is_trained_and_other_edits_win(capsys):
    # By hand in JupyterLab: recipe and dropout edited, nothing injected.
    namespace = {"recipe": "fast", "dropout": 0.3, "epochs": 15, "lr": 0.01,
                 "In": ["", CELL + 'recipe = "fast"\ndropout = 0.3\nepochs = 15\n']}
    cfg = make_config(**notebook_parameters(namespace))
    fast = load_preset("fast")
    assert (cfg.recipe, cfg.epochs, cfg.lr, cfg.schedule) == (
        "fast", fast["epochs"], fast["lr"], fast["schedule"])
    assert cfg.dropout == 0.3
    assert "your values instead of its own for: dropout=0.3 (preset: 0.0)" in capsys.readouterr().out


def test_cell_edits_survive_papermills_values_which_win_where_both_are_given(capsys):
    # The cell edited to dropout 0.3 and seed 3, then papermill -p seed 1.
    namespace = {"dropout": 0.3, "seed": 1, "In": [
        "", CELL + "dropout = 0.3\nseed = 3\n", "# Parameters\nseed = 1\n"]}
    given = notebook_parameters(namespace)
    assert given == {"dropout": 0.3, "seed": 1}
    assert "replace the parameters cell's for: seed=1 (the cell: 3)" in capsys.readouterr().out
    # A value passed with -p counts even when it equals the lab's default.
    namespace = {"recipe": "fast", "epochs": 15,
                 "In": ["", CELL, '# Parameters\nrecipe = "fast"\nepochs = 15\n']}
    assert make_config(**notebook_parameters(namespace)).epochs == 15


def test_validate_returns_a_good_config_unchanged():
    cfg = make_config(epochs=3, milestones=[1, 2])
    assert validate(cfg) is cfg


def test_the_fast_preset_is_the_validation_screens_choice():
    # The preset's crop padding and epoch count are the screen cell with the highest final
    # validation accuracy (results/fast-screen-val, README "The fast preset, chosen on
    # validation"); changing either without a new screen makes this fail.
    cells = analysis.find_runs(ROOT / "results" / "fast-screen-val")
    best = max(cells, key=lambda d: runs.load_metrics(d)["val_acc"])
    chosen = runs.load_config(best)
    preset = load_preset("fast")
    assert (preset["crop_padding"], preset["epochs"]) == (chosen["crop_padding"], chosen["epochs"])


def test_two_presets_at_once_are_refused_with_what_to_write():
    # papermill -f lab_utils/presets/fast.yaml -p recipe cifar_stem: which did the user mean?
    given = {**load_preset("fast"), "recipe": "cifar_stem"}
    with pytest.raises(ConfigError, match="recipe='cifar_stem' was given with all the values of "
                       "preset 'fast' .*give one preset"):
        make_config(**given)
    make_config(**load_preset("fast"))  # the file alone is one preset


def test_a_preset_says_what_it_applied(capsys):
    make_config(recipe="fast")
    assert "Preset 'fast' applied: epochs=6" in capsys.readouterr().out
