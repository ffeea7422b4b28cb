from pathlib import Path

import pytest

from lab_utils import analysis, runs
from lab_utils.config import (LAB, ConfigError, LabConfig, load_preset, make_config,
                              notebook_parameters, preset_path, saved_config, validate)

ROOT = Path(__file__).resolve().parents[1]


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
    ("preset", "fastest", "'lab', 'cifar_stem', 'fast', 'quick'"),
    ("test_subset", -1, "integer >= 0"),
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
    fast = make_config(preset="fast")
    assert fast.schedule == "onecycle" and fast.epochs < LAB.epochs
    assert make_config(preset="fast", epochs=3).epochs == 3
    assert (make_config().crop_padding, fast.crop_padding) == (4, 0)
    assert make_config(preset="fast", crop_padding=2).crop_padding == 2
    # A value equal to the lab's default is a value like any other (last one wins).
    assert make_config(preset="fast", crop_padding=4).crop_padding == 4
    assert make_config(preset="fast", dropout=0.5).dropout == 0.5


def test_presets_are_papermill_parameter_files_of_known_names():
    for name in ("fast", "cifar_stem", "quick"):
        values = load_preset(name)
        assert values["preset"] == name and preset_path(name).suffix == ".yaml"
        assert make_config(**values) == make_config(preset=name)


def test_pretrained_plain_network_is_refused():
    with pytest.raises(ConfigError, match="pretrained=True.*arch='plain18'"):
        make_config(arch="plain18")
    assert make_config(arch="plain34", pretrained=False).arch == "plain34"


def test_milestones_after_the_last_epoch_are_dropped_by_one_rule_with_a_note(capsys):
    import dataclasses
    cfg = make_config(epochs=2)
    assert cfg.milestones == []
    assert "milestones [7, 12] come after the last epoch (epochs=2)" in capsys.readouterr().out
    assert make_config(epochs=10).milestones == [7]
    assert "milestones [12] come after" in capsys.readouterr().out
    # The same rule however the config is built: by hand, or changed with replace.
    assert LabConfig(epochs=2).milestones == [] and validate(LabConfig(epochs=2)).epochs == 2
    assert dataclasses.replace(make_config(), epochs=9).milestones == [7]
    assert "come after" not in capsys.readouterr().out  # nothing dropped, nothing said


def test_old_parameter_names_still_work():
    assert make_config(data_path="dataloader").loader == "dataloader"
    assert make_config(amp=False).precision == "fp32"
    assert make_config(amp=True).precision == "auto"
    assert make_config(recipe="fast") == make_config(preset="fast")
    with pytest.raises(ConfigError, match="data_path='dataloader' is the old name of loader"):
        make_config(data_path="dataloader", loader="tensor")
    with pytest.raises(ConfigError, match="recipe='fast' is the old name of preset"):
        make_config(recipe="fast", preset="quick")
    make_config(recipe="fast", preset="fast")  # both names, one value: no conflict
    old = {"data_path": "tensor", "amp": True, "epochs": 15, "recipe": "lab"}  # before
    saved = saved_config(old)
    assert (saved["loader"], saved["preset"], saved["val_size"]) == ("tensor", "lab", 0)
    assert "recipe" not in saved and "data_path" not in saved and "amp" not in saved


def test_every_renamed_parameter_is_a_parameter_under_its_new_name():
    import dataclasses
    from lab_utils.config import OLD_VALUES, RENAMED
    fields = {f.name for f in dataclasses.fields(LabConfig)}
    assert set(RENAMED.values()) <= fields and not set(RENAMED) & fields
    assert set(OLD_VALUES) <= set(RENAMED)


def test_smoke_scale_shrinks_a_run_only_under_lab_smoke(monkeypatch):
    from lab_utils.config import smoke_scale
    cfg = make_config(preset="quick", pretrained=False, val_size=5000, run_dir="runs/mine")
    monkeypatch.setenv("LAB_SMOKE", "0")
    assert smoke_scale(cfg) is cfg
    monkeypatch.setenv("LAB_SMOKE", "1")
    small = smoke_scale(cfg)
    assert (small.dataset, small.device, small.epochs, small.train_subset) == (
        "synthetic", "cpu", 2, 64)
    assert small.milestones == [1] and small.val_size == 100 and small.test_subset == 20
    from lab_utils.config import smoke_dir
    assert small.clean_train_subset == 64 and small.run_dir.startswith(str(smoke_dir()))
    assert not small.run_dir.startswith(str(Path.cwd()))  # never in the working folder
    assert smoke_scale(cfg, keep_run_dir=True).run_dir == "runs/mine"
    # What is not about size stays the run's own.
    assert (small.preset, small.lr, small.dropout, small.seed) == (cfg.preset, cfg.lr,
                                                                   cfg.dropout, cfg.seed)
    assert smoke_scale(make_config(preset="fast")).milestones == []


def test_notebook_parameters_rejects_unknown_papermill_names():
    namespace = {"epochs": 3, "lr": 0.1, "In": ["", "# Parameters\nepochs = 3\nlearning_rate = 0.1\n"]}
    with pytest.raises(ConfigError, match="learning_rate passed to papermill"):
        notebook_parameters(namespace)


CELL = "# Papermill parameters cell (tag: parameters).\n"


def test_a_preset_chosen_in_the_cell_is_trained_and_other_edits_win(capsys):
    # By hand in JupyterLab: preset and dropout edited, nothing injected.
    namespace = {"preset": "fast", "dropout": 0.3, "epochs": 15, "lr": 0.01,
                 "In": ["", CELL + 'preset = "fast"\ndropout = 0.3\nepochs = 15\n']}
    cfg = make_config(**notebook_parameters(namespace))
    fast = load_preset("fast")
    assert (cfg.preset, cfg.epochs, cfg.lr, cfg.schedule) == (
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
    namespace = {"preset": "fast", "epochs": 15,
                 "In": ["", CELL, '# Parameters\npreset = "fast"\nepochs = 15\n']}
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


def test_a_preset_file_given_with_another_presets_name_is_that_preset_with_those_values(
        capsys):
    # papermill -f lab_utils/presets/fast.yaml -p preset cifar_stem: the one rule holds (the
    # preset named applies first, every value given replaces its own) and the line says so.
    given = {**load_preset("fast"), "preset": "cifar_stem"}
    cfg = make_config(**given)
    assert (cfg.preset, cfg.stem, cfg.epochs) == ("cifar_stem", "cifar", load_preset("fast")["epochs"])
    out = capsys.readouterr().out
    assert "Preset 'cifar_stem' applied, with your values instead of its own for: epochs=6 " \
           "(preset: 30)" in out


def test_a_preset_says_what_it_applied(capsys):
    make_config(preset="fast")
    assert "Preset 'fast' applied: epochs=6" in capsys.readouterr().out
