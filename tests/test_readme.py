"""The READMEs: error messages quoted verbatim, the Chinese README in step with the English."""
import json
import re
from pathlib import Path

import pytest

from lab_utils import analysis, runs
from lab_utils.config import ConfigError, make_config
from lab_utils.data import (BAD_IMAGES_MESSAGE, DAMAGED_ARCHIVE_MESSAGE,
                            DOWNLOAD_FAILED_MESSAGE, OFFLINE_MESSAGE)
from lab_utils.model import WEIGHTS, WEIGHTS_MESSAGE
from lab_utils.train import DIVERGED_MESSAGE, WORKERS_MESSAGE

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
EXAMPLE_DIR = "/home/me/lab/data/cifar10"

# The messages as the READMEs quote them, rendered with the READMEs' example values.
QUOTED = [
    OFFLINE_MESSAGE.format(root=EXAMPLE_DIR),
    DOWNLOAD_FAILED_MESSAGE.format(root=EXAMPLE_DIR, error="<urlopen error timed out>"),
    WEIGHTS_MESSAGE.format(arch="resnet18", url=WEIGHTS.url,
                           path="/home/me/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth"),
    WORKERS_MESSAGE.format(num_workers=2,
                           error="DataLoader worker (pid(s) 1234) exited unexpectedly"),
    DAMAGED_ARCHIVE_MESSAGE.format(path=f"{EXAMPLE_DIR}/cifar-10-python.tar.gz", root=EXAMPLE_DIR,
                                   why="52,428,800 bytes, checksum differs"),
    BAD_IMAGES_MESSAGE.format(
        n=2, folder="/home/me/lab/data/cifar10-images/train",
        listing="  /home/me/lab/data/cifar10-images/train/cat/0042.png: cannot be decoded "
                "(OSError: image file is truncated (3 bytes not processed))\n"
                "  /home/me/lab/data/cifar10-images/train/dog/0007.jpg: is 64x64 pixels, not 32x32"),
    DIVERGED_MESSAGE.format(epoch=3, batch=57, n_batches=391, loss="nan", lr=0.5, done=2,
                            run_dir="runs/20261128-101500-lab", half=0.25),
]


def code_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


def headings(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^(#+) ", text, flags=re.M)]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
@pytest.mark.parametrize("message", QUOTED, ids=range(len(QUOTED)))
def test_troubleshooting_quotes_the_code_verbatim(readme, message):
    assert message in readme.read_text(encoding="utf-8")


def test_chinese_readme_has_the_same_structure_and_commands():
    en, zh = (p.read_text(encoding="utf-8") for p in READMES)
    assert headings(en) == headings(zh)
    assert code_blocks(en) == code_blocks(zh)
    assert "README.zh-CN.md" in en.splitlines()[0] and "README.md" in zh.splitlines()[0]


def test_quick_start_and_ci_use_the_same_test_command():
    en = READMES[0].read_text(encoding="utf-8")
    blocks = code_blocks(en)
    assert 'pip install -e ".[dev]" && pytest --nbval-lax' in blocks
    assert "pip install -e . && papermill notebooks/04_train.ipynb out.ipynb -p epochs 15" in blocks
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "pytest --nbval-lax"


def test_the_quoted_parameter_errors_are_the_codes():
    en = READMES[0].read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        make_config(crop_padding=20)
    assert f"ConfigError: {err.value}" in en
    assert ("ConfigError: parameter train_subset=60000 does not fit the data: only 50000 training "
            "images are left (split: 50000, val_size=0); use a smaller subset or 0 for all of them"
            ) in en  # the text of lab_utils.train.split_indices for the 50,000 images of CIFAR-10


def _row(*cells: str) -> str:
    """A regex for one table row holding `cells` in this order (any text between them)."""
    return r"^\|.*" + r".*\|.*".join(re.escape(c) for c in cells) + r".*\|$"


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_ablation_table_is_recomputed_from_the_committed_runs(readme):
    text = readme.read_text(encoding="utf-8")
    table = analysis.load_runs(analysis.find_runs(ROOT / "results" / "ablation"))
    summary = analysis.gap_summary(table)
    final = analysis.final_epochs(table).groupby(["dropout", "augment"])
    for (dropout, augment), runs_ in final:
        gap = summary[(summary.dropout == dropout) & (summary.augment == augment)].set_index("epoch")
        cells = [f"{runs_.test_acc.mean():.1f}%", f"{runs_.train_acc.mean():.1f}%",
                 f"{runs_.clean_train_acc.mean():.1f}%",
                 " -> ".join(f"{gap.clean_gap_mean[e]:.1f}" for e in (7, 8, 15))]
        assert re.search(_row(*cells), text, flags=re.M), (dropout, augment, cells)
    spread = analysis.final_epochs(table).groupby(["dropout", "augment"]).test_acc.agg(
        lambda s: s.max() - s.min())
    assert f"{spread.min():.2f}-{spread.max():.2f}" in text


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_recipe_table_is_recomputed_from_the_committed_runs(readme):
    text = readme.read_text(encoding="utf-8")
    for name, epochs in [("lab-cpu-seed0", 15), ("lab-cpu-seed1", 15), ("fast-cpu-seed0", 5),
                         ("fast-cpu-seed1", 5), ("fast-cpu-seed2", 5),
                         ("reference/lab-dataloader-fp32-seed0", 15),
                         ("fast-test/crop0-ep6-seed0", 6), ("fast-test/crop0-ep6-seed1", 6),
                         ("fast-test/crop0-ep6-seed2", 6), ("fast-test-gpu/lab-seed0", 15),
                         ("fast-test-gpu/crop0-ep6-seed0", 6), ("fast-test-gpu/crop0-ep6-seed1", 6),
                         ("fast-test-gpu/crop0-ep6-seed2", 6)]:
        m = runs.load_metrics(ROOT / "results" / name)
        assert re.search(_row(str(epochs), f"{m['test_acc']:.2f}%", f"{m['wall_time_s']:,}"),
                         text, flags=re.M), name
    for name in ("fast-crop4-cpu-seed0", "fast-crop4-cpu-seed1"):
        assert f"{runs.load_metrics(ROOT / 'results' / name)['test_acc']:.2f}%" in text


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_fast_preset_summary_is_recomputed_from_the_committed_runs(readme):
    """The mean over the three test seeds, and the time ratios against the lab's 15 epochs
    estimated as 15 x the mean epoch of the lab run stopped beside seeds 1 and 2."""
    text = readme.read_text(encoding="utf-8")
    fast_test = ROOT / "results" / "fast-test"
    seeds = [runs.load_metrics(fast_test / f"crop0-ep6-seed{s}") for s in (0, 1, 2)]
    assert f"{sum(m['test_acc'] for m in seeds) / 3:.2f}%" in text
    lab_run = fast_test / "lab-seed0-stopped"
    planned = runs.load_config(lab_run)["epochs"]  # the lab recipe's 15, of which some ran
    lab_epochs = runs.load_history(lab_run).epoch_time_s
    estimate = planned * lab_epochs.mean()
    assert f"{estimate:,.0f}" in text
    for m in seeds:
        assert f"{m['wall_time_s'] / estimate:.2f}" in text, m["seed"]
    walls = [m["wall_time_s"] for m in seeds[1:]]  # the seeds of the lab run's session
    low = min(walls) / (planned * lab_epochs.max())
    high = max(walls) / (planned * lab_epochs.min())
    assert f"{low:.2f}-{high:.2f}" in text


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_fast_preset_on_the_gpu_is_recomputed_from_the_committed_runs(readme):
    """The GPU session's ratios: each fast seed's wall time over the lab run's, beside them."""
    text = readme.read_text(encoding="utf-8")
    gpu = ROOT / "results" / "fast-test-gpu"
    lab = runs.load_metrics(gpu / "lab-seed0")
    seeds = [runs.load_metrics(gpu / f"crop0-ep6-seed{s}") for s in (0, 1, 2)]
    assert {m["device"] for m in [lab, *seeds]} == {lab["device"]}  # one machine
    ratios = [m["wall_time_s"] / lab["wall_time_s"] for m in seeds]
    assert ", ".join(f"{r:.2f}" for r in ratios[:2]) + f" and {ratios[2]:.2f}" in text \
        or "、".join(f"{r:.2f}" for r in ratios[:2]) + f" 和 {ratios[2]:.2f}" in text
    assert max(ratios) <= 1 / 3 and f"{lab['wall_time_s'] / 3:.1f}" in text
    captured = runs.load_metrics(ROOT / "results" / "gpu" / "lab-capture-on-seed0")
    against = [m["wall_time_s"] / captured["wall_time_s"] for m in seeds]
    assert captured["device"] == lab["device"] and f"{min(against):.2f}-{max(against):.2f}" in text
    # End to end, process start included: the script's per-step seconds (results/gpu/timings.txt).
    steps = dict(re.findall(r"^([\w-]+): (\d+) s", (ROOT / "results" / "gpu" / "timings.txt")
                            .read_text(), flags=re.M))
    ends = [int(steps[f"crop0-ep6-seed{s}"]) / int(steps["lab-seed0"]) for s in (0, 1, 2)]
    assert f"{min(ends):.2f}-{max(ends):.2f}" in text
    assert f"{sum(m['test_acc'] for m in seeds) / 3:.2f}%" in text


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_gpu_speed_table_is_recomputed_from_the_committed_runs(readme):
    text = readme.read_text(encoding="utf-8")
    for name, captured in [("fast-test-gpu/lab-seed0", False), ("gpu/lab-capture-on-seed0", True),
                           ("gpu/cifar_stem-capture-on-seed0", True),
                           ("gpu/fast-capture-off-seed0", False), ("gpu/fast-capture-on-seed0", True),
                           ("gpu/lab-capture-off-seed1", False), ("gpu/lab-capture-on-seed1", True)]:
        m = runs.load_metrics(ROOT / "results" / name)
        assert m["captured"] is captured and m.get("cudagraph_skips", 0) == 0, name
        epochs = runs.load_history(ROOT / "results" / name).epoch_time_s
        cells = [f"`results/{name}`", f"{m['test_acc']:.2f}%", f"{epochs.iloc[0]:.1f}",
                 f"{epochs.iloc[1:].median():.2f}", f"{m['wall_time_s']:.1f}"]
        assert re.search(_row(*cells), text, flags=re.M), (name, cells)
    # The second machine: the fast preset (seed 0) against the lab recipe (seed 1), both eager.
    fast, lab = (runs.load_metrics(ROOT / "results" / "gpu" / n)
                 for n in ("fast-capture-off-seed0", "lab-capture-off-seed1"))
    assert f"{fast['wall_time_s'] / lab['wall_time_s']:.2f}**" in text
    bench = json.loads((ROOT / "results" / "gpu" / "bench-gpu.json").read_text())
    for row in [(f"{bench['tensor_fp32']['train_img_s']:,}", f"{bench['tensor_fp32']['epoch_s']}"),
                (f"{bench['tensor_bf16']['train_img_s']:,}", f"{bench['tensor_bf16']['epoch_s']}"),
                (f"{bench['captured']['tensor_train_img_s']:,}",)]:
        assert re.search(_row(*row), text, flags=re.M), row


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_plain_vs_residual_table_is_recomputed_from_the_committed_runs(readme):
    text = readme.read_text(encoding="utf-8")
    table = analysis.load_runs(analysis.find_runs(ROOT / "results" / "plain-vs-residual"),
                               keys=("arch", "seed"))
    final = analysis.final_epochs(table)
    for arch, g in final.groupby("arch"):
        cells = [f"`{arch}`"] + [f"{v:.3f}" for v in g.sort_values("seed").train_loss] + \
                [f"{v:.2f}%" for v in g.sort_values("seed").test_acc]
        assert re.search(_row(*cells), text, flags=re.M), (arch, cells)


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_validation_screen_table_is_recomputed_from_the_committed_runs(readme):
    # The screen's table shows validation accuracy only: the choice is made on it, and a
    # screening run's test accuracy (in its history.csv) is never looked at.
    text = readme.read_text(encoding="utf-8")
    cells = analysis.find_runs(ROOT / "results" / "fast-screen-val")
    assert len(cells) == 6
    for run_dir in cells:
        cfg, m = runs.load_config(run_dir), runs.load_metrics(run_dir)
        assert cfg["val_size"] == 5000
        row = _row(str(cfg["crop_padding"]), str(cfg["epochs"]), f"{m['val_acc']:.2f}%",
                   f"{m['wall_time_s']:,}")
        assert re.search(row, text, flags=re.M), run_dir.name
