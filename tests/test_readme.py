"""The READMEs and the results record: error messages quoted verbatim, the Chinese README in step
with the English one, and every number recomputed from the committed runs in results/.

Numbers are checked in context: a table row holding the cells in order (`_row`), or a paragraph
holding the numbers in order (`_in_paragraph`), never a bare substring anywhere in the file.
"""
import json
import re
from collections import Counter
from pathlib import Path

import pytest

import lab_utils
from lab_utils import analysis, runs
from lab_utils.colab import repository_url
from lab_utils.config import ConfigError, make_config
from lab_utils.config import LAB
from lab_utils.data import (BAD_IMAGES_MESSAGE, DOWNLOAD_FAILED_MESSAGE,
                            JPEG_COPY_MISSING_MESSAGE, _damaged_archive, offline_message)
from lab_utils.model import RESNETS, WEIGHTS_MESSAGE
from lab_utils.train import DivergedError, WORKERS_MESSAGE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
RECORD = RESULTS / "README.md"
EXAMPLE_DIR = "/home/me/lab/data/cifar10"

# The messages as the READMEs quote them, rendered with the READMEs' example values.
QUOTED = [
    offline_message(EXAMPLE_DIR),
    DOWNLOAD_FAILED_MESSAGE.format(root=EXAMPLE_DIR, error="<urlopen error timed out>",
                                   archive="cifar-10-python.tar.gz"),
    WEIGHTS_MESSAGE.format(arch="resnet18", url=RESNETS["resnet18"][1].url,
                           path="/home/me/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth"),
    WORKERS_MESSAGE.format(num_workers=2,
                           error="DataLoader worker (pid(s) 1234) exited unexpectedly"),
    str(_damaged_archive(f"{EXAMPLE_DIR}/cifar-10-python.tar.gz",
                         "52,428,800 bytes, checksum differs", EXAMPLE_DIR)),
    BAD_IMAGES_MESSAGE.format(
        n=2, folder="/home/me/lab/data/cifar10-images/train",
        listing="  /home/me/lab/data/cifar10-images/train/cat/0042.png: cannot be decoded "
                "(OSError: image file is truncated (3 bytes not processed))\n"
                "  /home/me/lab/data/cifar10-images/train/dog/0007.jpg: is 64x64 pixels, not 32x32"),
    str(DivergedError(57, float("nan")).explained(3, 391, 0.5, make_config(lr=0.5), 2,
                                                  Path("runs/20261128-101500-lab"))),
    JPEG_COPY_MISSING_MESSAGE.format(root="/home/me/lab/data/cifar10-jpeg", default=LAB.data_dir),
]


def code_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


def headings(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^(#+) ", text, flags=re.M)]


def _row(*cells: str) -> str:
    """A regex for one table row holding `cells` in this order (any text between them)."""
    return r"^\|.*" + r".*\|.*".join(re.escape(c) for c in cells) + r".*\|$"


def _has_row(text: str, *cells: str) -> bool:
    """One table row holds `cells` in this order, each in a cell of its own."""
    return re.search(_row(*cells), text, flags=re.M) is not None


def _ordered(*parts: str) -> str:
    """A regex for `parts` in this order, each not glued to a longer number (so "0.35" does
    not match inside "10.35" or "0.355")."""
    return ".*?".join(r"(?<![\d.,])" + re.escape(p) + r"(?![\d]|[.,]\d)" for p in parts)


def _in_row(text: str, *parts: str) -> bool:
    """One table row holds `parts` in this order (several may share a cell)."""
    return any(re.search(_ordered(*parts), line)
               for line in text.splitlines() if line.startswith("|"))


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs (blank-line separated, code blocks dropped), each on one line."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]


def _in_paragraph(text: str, *parts: str, ordered: bool = True) -> bool:
    """True when one paragraph holds `parts` in this order (see `_ordered`); in any order with
    `ordered=False`, for the Chinese README, whose word order differs."""
    if ordered:
        return any(re.search(_ordered(*parts), p) for p in _paragraphs(text))
    return any(all(re.search(_ordered(part), p) for part in parts) for p in _paragraphs(text))


def _english(readme: Path) -> bool:
    return readme == READMES[0]


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _metrics(name: str) -> dict:
    return runs.load_metrics(RESULTS / name)


def _history(name: str):
    return runs.load_history(RESULTS / name)


def _span(values, fmt: str = "{:,}") -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


# --- Both READMEs: quotes, structure, commands ------------------------------------------

@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
@pytest.mark.parametrize("message", QUOTED, ids=range(len(QUOTED)))
def test_troubleshooting_quotes_the_code_verbatim(readme, message):
    assert message in _read(readme)


def test_chinese_readme_has_the_same_structure_and_commands():
    en, zh = (_read(p) for p in READMES)
    assert headings(en) == headings(zh)
    assert code_blocks(en) == code_blocks(zh)
    assert "README.zh-CN.md" in en.splitlines()[0] and "README.md" in zh.splitlines()[0]


def _sections(text: str) -> list[tuple[str, Counter]]:
    """(heading, multiset of the numbers in the heading and its body) per section."""
    parts = re.split(r"^(#+ .*)$", text, flags=re.M)
    out = [("(top)", parts[0])] + list(zip(parts[1::2], parts[2::2]))
    # Link targets are left out: the Chinese README links the Chinese notebooks too.
    return [(h, Counter(re.findall(r"\d+(?:[.,]\d+)*", re.sub(r"\]\([^)]*\)", "]", h + "\n" + body))))
            for h, body in out]


def test_both_languages_carry_the_same_numbers_section_by_section():
    en, zh = (_sections(_read(p)) for p in READMES)
    assert len(en) == len(zh)
    for (h_en, n_en), (h_zh, n_zh) in zip(en, zh):
        assert n_en == n_zh, (h_en, h_zh, "only in English:", n_en - n_zh,
                              "only in Chinese:", n_zh - n_en)


def test_quick_start_and_ci_use_the_same_test_command():
    blocks = code_blocks(_read(READMES[0]))
    assert 'pip install -e ".[dev]" && pytest --nbval-lax' in blocks
    assert "pip install -e . && papermill notebooks/04_train.ipynb out.ipynb -p epochs 15" in blocks
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "pytest --nbval-lax"


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_the_quoted_parameter_errors_are_the_codes(readme):
    text = _read(readme)
    with pytest.raises(ConfigError) as err:
        make_config(crop_padding=20)
    assert f"ConfigError: {err.value}" in text
    assert ("ConfigError: parameter train_subset=60000 does not fit the data: only 50000 training "
            "images are left (split: 50000, val_size=0); use a smaller subset or 0 for all of them"
            ) in text  # the text of lab_utils.train.split_indices for the 50,000 images of CIFAR-10


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_the_recipe_in_the_introduction_is_the_config_default(readme):
    lab = make_config()
    intro = _read(readme).split("\n## ")[0]
    parts = [f"{lab.crop_padding}", f"{lab.lr:g}", f"{lab.momentum:g}",
             f"{lab.weight_decay:.0e}".replace("e-0", "e-"), f"{lab.batch_size}",
             f"{round(1 / lab.gamma)}", *map(str, lab.milestones), f"{lab.epochs}"]
    assert _in_paragraph(intro, *parts, ordered=_english(readme)), parts


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_every_notebook_has_its_row_and_its_colab_link(readme):
    text = _read(readme)
    owner_repo = repository_url().removeprefix("https://github.com/")
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert _has_row(text, f"[`{nb.stem}`](notebooks/{nb.name})"), nb.name
        for edition in ("", "student/"):  # the student edition has links of its own
            assert (f"https://colab.research.google.com/github/{owner_repo}/"
                    f"blob/main/notebooks/{edition}{nb.name}") in text, (edition, nb.name)
    assert "python -m lab_utils.colab https://github.com/<you>/<repo>" in text


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_links_into_the_record_point_at_its_sections(readme):
    anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", _read(RECORD), flags=re.M)}
    links = re.findall(r"\(results/README\.md#([^)]+)\)", _read(readme))
    assert links and set(links) <= anchors, set(links) - anchors
    for name in re.findall(r"\]\((results/[^)#]+)\)", _read(readme)):
        assert (ROOT / name).exists(), name


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_the_module_list_names_every_module(readme):
    """The README's list of lab_utils modules: the package docstring's, and every module file."""
    text = _read(readme)
    docstring = re.findall(r"`(\w+)` \(", lab_utils.__doc__)
    files = [p.stem for p in (ROOT / "lab_utils").glob("*.py") if p.stem != "__init__"]
    for name in {*docstring, *files}:
        assert re.search(rf"`{name}`\s*[(（]", text), name
    assert "`presets/`" in text


# --- The student READMEs' numbers, recomputed from results/ -----------------------------

# Every committed 15-epoch run of the lab's recipe from scratch: both data paths, the ablation's
# lab cell too (test_every_full_lab_run_is_counted checks that none is left out).
LAB_RUNS = ["lab-cpu-seed0", "lab-cpu-seed1", "fast-test-gpu/lab-seed0", "gpu/lab-capture-on-seed0",
            "gpu/lab-capture-off-seed1", "gpu/lab-capture-on-seed1", "lab-full-seed0",
            "reference/lab-dataloader-fp32-seed0", "ablation/dropout0.5-auglab-seed0",
            "ablation/dropout0.5-auglab-seed1"]
FAST_CPU = [f"fast-test/crop0-ep6-seed{s}" for s in (0, 1, 2)]
FAST_GPU = [f"fast-test-gpu/crop0-ep6-seed{s}" for s in (0, 1, 2)]


def _lab_estimate() -> float:
    """The lab's 15 epochs on the CPU of the fast-test runs: 15 x the mean epoch of the lab run
    stopped after 10 epochs beside seeds 1 and 2."""
    lab_run = RESULTS / "fast-test" / "lab-seed0-stopped"
    return runs.load_config(lab_run)["epochs"] * runs.load_history(lab_run).epoch_time_s.mean()


def _cpu_ratios() -> list[float]:
    return [_metrics(n)["wall_time_s"] / _lab_estimate() for n in FAST_CPU]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_what_a_run_takes_is_recomputed(readme):
    text = _read(readme)
    lab = _metrics("lab-cpu-seed0")
    fast5 = [_metrics(f"fast-cpu-seed{s}")["wall_time_s"] for s in (0, 1, 2)]
    assert lab["precision"] == "bfloat16"
    assert _in_row(text, f"{lab['wall_time_s']:,}", f"{lab['wall_time_s'] / 60:.0f}",
                    _span(fast5), "`results/lab-cpu-seed0`")
    fast6 = [_metrics(n)["wall_time_s"] for n in FAST_CPU]
    assert {_metrics(n)["precision"] for n in FAST_CPU} == {"float32"}
    estimate = _lab_estimate()
    assert _in_row(text, f"{estimate:,.0f}", f"{estimate / 60:.0f}", "10", _span(fast6),
                    "`results/fast-test/`")
    eager = [_metrics(n)["wall_time_s"] for n in ("fast-test-gpu/lab-seed0", "gpu/lab-capture-off-seed1")]
    captured = [_metrics(n)["wall_time_s"] for n in ("gpu/lab-capture-on-seed0", "gpu/lab-capture-on-seed1")]
    fast_gpu = [_metrics(n)["wall_time_s"] for n in FAST_GPU + ["gpu/fast-capture-off-seed0"]]
    assert _in_row(text, "H200", _span(eager), _span(captured), _span(fast_gpu))
    rerun = _metrics("lab-full-seed0-rerun")["wall_time_s"]  # undisturbed (results/machines.md)
    quick = [_metrics(f"quick/quick-seed{s}") for s in (0, 1)]
    assert _in_row(text, f"{rerun:,}", f"{rerun / 60:.0f}",
                   f"{_metrics('lab-full-seed0')['wall_time_s']:,}",
                   _span([m["wall_time_s"] for m in quick], "{:.1f}"),
                   _span([m["test_acc"] for m in quick], "{:.2f}") + "%", "`results/lab-full-seed0`")
    assert _in_row(text, "T4", "-")  # a Colab-class GPU: nothing in results/ measures one
    assert not any("T4" in _metrics(p.parent.relative_to(RESULTS).as_posix())["device"]
                   for p in RESULTS.glob("**/metrics.json"))


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_what_to_expect_is_recomputed(readme):
    text = _read(readme)
    accs = [_metrics(n)["test_acc"] for n in LAB_RUNS]
    assert all(runs.load_config(RESULTS / n)["epochs"] == 15 for n in LAB_RUNS)
    assert round(sum(accs) / len(accs)) == 75  # "about 75%"
    assert _in_paragraph(text, "75%", _span(accs, "{:.2f}") + "%", "15", "0", "1",
                         f"{_metrics('lab-full-seed0')['test_acc']:.2f}%", ordered=_english(readme))
    assert ("all ten" if _english(readme) else "全部十次") in text and len(LAB_RUNS) == 10
    # With ImageNet weights: the spec exists, no run of it does.
    assert not list((RESULTS / "ablation-pretrained").glob("*/metrics.json"))
    assert "`results/ablation-pretrained/`" in text


def test_the_rerun_of_notebook_04s_run_is_the_same_run_bit_for_bit():
    # results/lab-full-seed0-rerun recreated lab-full-seed0's checkpoint for notebook 06 (and
    # timed the lab's 15 epochs undisturbed): the same history and predictions to the last bit.
    a, b = (RESULTS / n for n in ("lab-full-seed0", "lab-full-seed0-rerun"))
    cols = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
            "clean_train_loss", "clean_train_acc"]
    assert runs.load_history(a)[cols].equals(runs.load_history(b)[cols])
    assert runs.load_predictions(a).equals(runs.load_predictions(b))


def test_every_full_lab_run_is_counted():
    from lab_utils.config import LAB, config_dict, saved_config
    lab = config_dict(LAB)
    recipe = ("epochs", "lr", "batch_size", "milestones", "dropout", "augment", "crop_padding",
              "schedule", "arch", "stem", "label_smoothing", "val_size", "train_subset")
    found = sorted(p.parent.relative_to(RESULTS).as_posix() for p in RESULTS.glob("**/metrics.json")
                   if all(saved_config(runs.load_config(p.parent))[k] == lab[k] for k in recipe)
                   and not saved_config(runs.load_config(p.parent))["pretrained"])
    assert found == sorted(LAB_RUNS + ["lab-full-seed0-rerun"])  # the rerun: the same run


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_results_in_short_are_recomputed(readme):
    text = _read(readme)
    acc = lambda n: f"{_metrics(n)['test_acc']:.2f}%"  # noqa: E731
    wall = lambda n: f"{_metrics(n)['wall_time_s']:,}"  # noqa: E731
    assert _in_row(text, acc("lab-cpu-seed0"), acc("lab-cpu-seed1"),
                    wall("lab-cpu-seed0"), wall("lab-cpu-seed1"))
    assert _in_row(text, " / ".join(acc(n) for n in FAST_CPU),
                    _span([_metrics(n)["wall_time_s"] for n in FAST_CPU]))
    assert _in_row(text, " / ".join(acc(n) for n in FAST_GPU),
                    _span([_metrics(n)["wall_time_s"] for n in FAST_GPU]),
                    wall("fast-test-gpu/lab-seed0"))
    pvr = {(a, s): acc(f"plain-vs-residual/{a}-seed{s}") for a in ("resnet18", "plain18")
           for s in (0, 1)}
    assert _in_row(text, "5,000", f"{pvr['resnet18', 0]} / {pvr['resnet18', 1]}",
                    f"{pvr['plain18', 0]} / {pvr['plain18', 1]}")
    stem = _metrics("gpu/cifar_stem-capture-on-seed0")
    assert runs.load_config(RESULTS / "gpu/cifar_stem-capture-on-seed0")["epochs"] == 30
    assert _in_row(text, "30", f"{stem['test_acc']:.2f}%", f"{stem['wall_time_s']}")
    # The aim, against what was reached.
    assert max(_metrics(n)["test_acc"] for n in FAST_CPU + FAST_GPU) < 80
    gpu = [_metrics(n)["wall_time_s"] / _metrics("fast-test-gpu/lab-seed0")["wall_time_s"]
           for n in FAST_GPU]
    second = _metrics("gpu/fast-capture-off-seed0")["wall_time_s"] / \
        _metrics("gpu/lab-capture-off-seed1")["wall_time_s"]
    assert _in_paragraph(text, "80%", _span(_cpu_ratios(), "{:.2f}"), _span(gpu, "{:.2f}"),
                         f"{second:.2f}", ordered=_english(readme))


def _ablation():
    table = analysis.load_runs(analysis.find_runs(RESULTS / "ablation"))
    summary = analysis.gap_summary(table)
    means = table.groupby(["dropout", "augment", "epoch"])[
        ["train_acc", "clean_train_acc", "test_acc"]].mean()
    final = analysis.final_epochs(table)
    return table, summary, means, final


def _cell(frame, dropout, augment):
    return frame[(frame.dropout == dropout) & (frame.augment == augment)].set_index("epoch")


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_the_labs_question_in_three_sentences_is_recomputed(readme):
    text = _read(readme)
    table, summary, means, final = _ablation()
    lead = [m.test_acc.iloc[0] - m.train_acc.iloc[0] for _, m in means.groupby(level=[0, 1])]
    gap = _cell(summary, 0.5, "lab").clean_gap_mean
    gap_none = _cell(summary, 0.5, "none").clean_gap_mean
    at15 = [_cell(summary, d, a).clean_gap_mean[15] for a in ("lab", "none") for d in (0.0, 0.5)]
    moved = max(abs(at15[0] - at15[1]), abs(at15[2] - at15[3]))
    cost = [g.test_acc.mean() for _, g in final.groupby(["augment", "dropout"])]
    costs = [cost[0] - cost[1], cost[2] - cost[3]]  # (lab, 0) - (lab, 0.5); (none, 0) - (none, 0.5)
    assert moved <= 1
    assert _in_paragraph(text, f"{min(lead):.1f}", f"{max(lead):.1f}", f"{gap[7]:.1f}",
                         f"{gap[15]:.1f}", "7", "15", f"{gap_none[15]:.0f}", "1", "15",
                         _span(costs, "{:.1f}"), ordered=_english(readme))


# --- The record: results/README.md ---------------------------------------------------

def test_every_table_in_the_record_has_the_command_that_made_it():
    for heading, body in zip(*[iter(re.split(r"^(## .*)$", _read(RECORD), flags=re.M)[1:])] * 2):
        if re.search(r"^\| --- ", body, flags=re.M):
            assert re.search(r"python -m lab_utils\.\w+|bash results/gpu/run\.sh", body), heading


def test_ablation_table_is_recomputed_from_the_committed_runs():
    text = _read(RECORD)
    table, summary, _, final = _ablation()
    for (dropout, augment), runs_ in final.groupby(["dropout", "augment"]):
        gap = _cell(summary, dropout, augment)
        cells = [f"{runs_.test_acc.mean():.1f}%", f"{runs_.train_acc.mean():.1f}%",
                 f"{runs_.clean_train_acc.mean():.1f}%",
                 " -> ".join(f"{gap.clean_gap_mean[e]:.1f}" for e in (7, 8, 15))]
        assert _has_row(text, *cells), (dropout, augment, cells)
    spread = final.groupby(["dropout", "augment"]).test_acc.agg(lambda s: s.max() - s.min())
    assert _in_paragraph(text, "seeds", f"{spread.min():.2f}-{spread.max():.2f}")


def test_ablation_prose_is_recomputed_from_the_committed_runs():
    """Item 4 of issue 24: each sentence about the ablation says what its numbers show."""
    text = _read(RECORD)
    table, summary, means, final = _ablation()
    spread = final.groupby(["dropout", "augment"]).test_acc.agg(lambda s: s.max() - s.min())
    lab, lab_gap = _cell(means.reset_index(), 0.5, "lab"), _cell(summary, 0.5, "lab")
    # (a) The running train accuracy lags test accuracy in epoch 1 in every cell.
    lead = [m.test_acc.iloc[0] - m.train_acc.iloc[0] for _, m in means.groupby(level=[0, 1])]
    assert _in_paragraph(text, f"{min(lead):.1f} to {max(lead):.1f} points above running train")
    # Clean train accuracy below test in epochs 1-2 in the lab's cell only, above from epoch 3.
    early = [-lab_gap.clean_gap_mean[e] for e in (1, 2)]
    assert min(early) > 0 and (lab_gap.clean_gap_mean[3:] > 0).all()
    for d, a in [(0.0, "lab"), (0.0, "none"), (0.5, "none")]:
        assert (_cell(summary, d, a).clean_gap_mean > 0).all(), (d, a)
    assert _in_paragraph(text, f"{min(early):.2f}-{max(early):.2f} points below test accuracy",
                         "1", "2", "3")
    # With augmentation the running figure ends below the clean one.
    below = [_cell(means.reset_index(), d, "lab") for d in (0.0, 0.5)]
    below = [c.clean_train_acc[15] - c.train_acc[15] for c in below]
    assert _in_paragraph(text, f"{min(below):.1f}-{max(below):.1f} points below the clean one", "15")
    # The lab cell's mean running train accuracy stays below test; one run's does not.
    assert (lab.train_acc < lab.test_acc).all()
    lab_runs = table[(table.dropout == 0.5) & (table.augment == "lab")]
    over = lab_runs[lab_runs.train_acc >= lab_runs.test_acc]
    assert len(over) == 1
    (seed, epoch, margin), = zip(over.seed, over.epoch, over.train_acc - over.test_acc)
    assert _in_paragraph(text, f"seed {seed}'s is {margin:.2f} points above it at epoch {epoch}")
    # (b) The pre-decay trend beside the widening.
    none_gap = _cell(summary, 0.5, "none").clean_gap_mean
    trend = [(g[7] - g[1]) / 6 for g in (lab_gap.clean_gap_mean, none_gap)]
    jump = [g[8] - g[7] for g in (lab_gap.clean_gap_mean, none_gap)]
    after = [(g[15] - g[8]) / 7 for g in (lab_gap.clean_gap_mean, none_gap)]
    assert _in_paragraph(text, f"{lab_gap.clean_gap_mean[7]:.1f} -> {lab_gap.clean_gap_mean[8]:.1f}"
                         f" -> {lab_gap.clean_gap_mean[15]:.1f}", f"{none_gap[15]:.0f} points",
                         f"about {trend[0]:.2f}", f"{trend[1]:.1f} without",
                         f"{jump[0]:.2f} and {jump[1]:.2f}", f"{after[0]:.2f} and {after[1]:.2f}")
    # (c) Where test accuracy peaks, and the slips against each cell's seed spread.
    nodrop = _cell(means.reset_index(), 0.0, "lab").test_acc
    assert nodrop.idxmax() == 15 and lab.test_acc.idxmax() == 14
    fall = lab.test_acc[14] - lab.test_acc[15]
    assert fall < spread[0.5, "lab"]
    assert _in_paragraph(text, f"epoch 14 and falls {fall:.2f} points to epoch 15",
                         f"{spread[0.5, 'lab']:.2f}-point seed spread")
    slips = {}
    for d in (0.0, 0.5):
        curve = _cell(means.reset_index(), d, "none").test_acc
        assert curve.idxmax() == 8
        slips[d] = curve.max() - curve[15]
    assert slips[0.0] < spread[0.0, "none"] and slips[0.5] > spread[0.5, "none"]
    assert _in_paragraph(text, "(epoch 8)", f"by {slips[0.0]:.2f} points without dropout",
                         f"{spread[0.0, 'none']:.2f}-point seed spread", f"by {slips[0.5]:.2f} points",
                         f"{spread[0.5, 'none']:.2f}-point spread")


def test_the_ablation_times_and_the_pretrained_estimate_are_recomputed():
    text = _read(RECORD)
    walls = {s: [_metrics(p.parent.relative_to(RESULTS).as_posix())["wall_time_s"]
                 for p in (RESULTS / "ablation").glob(f"*-seed{s}/metrics.json")] for s in (0, 1)}
    assert _in_paragraph(text, f"{_span(walls[0], '{}')} s per run", f"{_span(walls[1], '{}')} s each")
    assert _in_paragraph(text, "seed-1 runs", f"{_span(walls[1], '{}')} s each",
                         f"{_span(walls[0], '{}')} s each",
                         f"{8 * min(walls[0]) / 60:.1f}-{8 * max(walls[0]) / 60:.1f} minutes")
    assert round(2 * max(walls[1]) / 60) == 3  # "about 3 minutes": two rounds of four runs


def test_recipe_table_is_recomputed_from_the_committed_runs():
    text = _read(RECORD)
    for name, epochs in [("lab-cpu-seed0", 15), ("lab-cpu-seed1", 15), ("fast-cpu-seed0", 5),
                         ("fast-cpu-seed1", 5), ("fast-cpu-seed2", 5),
                         ("reference/lab-dataloader-fp32-seed0", 15),
                         ("fast-test/crop0-ep6-seed0", 6), ("fast-test/crop0-ep6-seed1", 6),
                         ("fast-test/crop0-ep6-seed2", 6), ("fast-test-gpu/lab-seed0", 15),
                         ("fast-test-gpu/crop0-ep6-seed0", 6), ("fast-test-gpu/crop0-ep6-seed1", 6),
                         ("fast-test-gpu/crop0-ep6-seed2", 6)]:
        m = _metrics(name)
        assert _has_row(text, str(epochs), f"{m['test_acc']:.2f}%", f"{m['wall_time_s']:,}"), name
    crop4 = [_metrics(f"fast-crop4-cpu-seed{s}") for s in (0, 1)]
    assert _has_row(text, "none (crop padding 4)", *(f"{m['test_acc']:.2f}%" for m in crop4))
    assert _in_paragraph(text, *(f"{m['test_acc']:.2f}% (seed {m['seed']}, {m['wall_time_s']} s)"
                                 for m in crop4))


def test_fast_preset_summary_is_recomputed_from_the_committed_runs():
    """The mean over the three test seeds, and the time ratios against the lab's 15 epochs
    estimated as 15 x the mean epoch of the lab run stopped beside seeds 1 and 2."""
    text = _read(RECORD)
    seeds = [_metrics(n) for n in FAST_CPU]
    estimate = _lab_estimate()
    ratios = _cpu_ratios()
    assert _in_paragraph(text, f"mean {sum(m['test_acc'] for m in seeds) / 3:.2f}%")
    assert _in_paragraph(text, f"{estimate:,.0f} s", f"{ratios[1]:.2f} and {ratios[2]:.2f}",
                         f"{ratios[0]:.2f}")
    lab_epochs = runs.load_history(RESULTS / "fast-test" / "lab-seed0-stopped").epoch_time_s
    planned = runs.load_config(RESULTS / "fast-test" / "lab-seed0-stopped")["epochs"]
    walls = [m["wall_time_s"] for m in seeds[1:]]  # the seeds of the lab run's session
    low = min(walls) / (planned * lab_epochs.max())
    high = max(walls) / (planned * lab_epochs.min())
    assert _in_paragraph(text, f"{low:.2f}-{high:.2f} of the lab's time")
    # The summary of what was reached names the CPU's time aim too (issue 24, item 4).
    assert min(ratios) > 1 / 3
    assert _in_paragraph(text, "On the CPU it was missed by an estimate",
                         f"{_span(ratios, '{:.2f}')} of the lab's time")


def test_fast_preset_on_the_gpu_is_recomputed_from_the_committed_runs():
    """The GPU session's ratios: each fast seed's wall time over the lab run's, beside them."""
    text = _read(RECORD)
    lab = _metrics("fast-test-gpu/lab-seed0")
    seeds = [_metrics(n) for n in FAST_GPU]
    assert {m["device"] for m in [lab, *seeds]} == {lab["device"]}  # one machine
    ratios = [m["wall_time_s"] / lab["wall_time_s"] for m in seeds]
    assert max(ratios) <= 1 / 3
    assert _in_paragraph(text, ", ".join(f"{r:.2f}" for r in ratios[:2]) + f" and {ratios[2]:.2f}",
                         f"a third: {lab['wall_time_s'] / 3:.1f} s")
    captured = _metrics("gpu/lab-capture-on-seed0")
    against = [m["wall_time_s"] / captured["wall_time_s"] for m in seeds]
    assert captured["device"] == lab["device"]
    # End to end, process start included: the script's per-step seconds (results/gpu/timings.txt).
    steps = dict(re.findall(r"^([\w-]+): (\d+) s", (RESULTS / "gpu" / "timings.txt").read_text(),
                            flags=re.M))
    ends = [int(steps[f"crop0-ep6-seed{s}"]) / int(steps["lab-seed0"]) for s in (0, 1, 2)]
    assert _in_paragraph(text, f"took {_span(against, '{:.2f}')}", f"{_span(ends, '{:.2f}')}.")
    assert _in_paragraph(text, f"(mean {sum(m['test_acc'] for m in seeds) / 3:.2f}%)")
    fast, lab1 = (_metrics(f"gpu/{n}") for n in ("fast-capture-off-seed0", "lab-capture-off-seed1"))
    assert _in_paragraph(text, f"**{fast['wall_time_s'] / lab1['wall_time_s']:.2f}**")


def test_gpu_speed_table_is_recomputed_from_the_committed_runs():
    text = _read(RECORD)
    for name, captured in [("fast-test-gpu/lab-seed0", False), ("gpu/lab-capture-on-seed0", True),
                           ("gpu/cifar_stem-capture-on-seed0", True),
                           ("gpu/fast-capture-off-seed0", False), ("gpu/fast-capture-on-seed0", True),
                           ("gpu/lab-capture-off-seed1", False), ("gpu/lab-capture-on-seed1", True)]:
        m = _metrics(name)
        assert m["captured"] is captured and m.get("cudagraph_skips", 0) == 0, name
        epochs = _history(name).epoch_time_s
        cells = [f"`results/{name}`", f"{m['test_acc']:.2f}%", f"{epochs.iloc[0]:.1f}",
                 f"{epochs.iloc[1:].median():.2f}", f"{m['wall_time_s']:.1f}"]
        assert _has_row(text, *cells), (name, cells)
    bench = json.loads((RESULTS / "gpu" / "bench-gpu.json").read_text())
    for row in [(f"{bench['tensor_fp32']['train_img_s']:,}", f"{bench['tensor_fp32']['epoch_s']}"),
                (f"{bench['tensor_bf16']['train_img_s']:,}", f"{bench['tensor_bf16']['epoch_s']}"),
                (f"{bench['captured']['tensor_train_img_s']:,}",)]:
        assert _has_row(text, *row), row


def test_capture_prose_is_recomputed_from_the_committed_runs():
    """Later epochs shorter by the median difference, earned back after so many epochs."""
    text = _read(RECORD)
    saved, paid = [], []
    for eager, captured in [("fast-test-gpu/lab-seed0", "gpu/lab-capture-on-seed0"),
                            ("gpu/lab-capture-off-seed1", "gpu/lab-capture-on-seed1")]:
        e, c = _history(eager).epoch_time_s, _history(captured).epoch_time_s
        saved.append(e.iloc[1:].median() - c.iloc[1:].median())
        paid.append(c.iloc[0] - e.iloc[0])
    assert _in_paragraph(text, f"about {sum(paid) / 2:.0f} s longer",
                         f"{_span(saved, '{:.1f}')} s shorter (median against median)",
                         f"about {min(p / s for p, s in zip(paid, saved)):.0f} to "
                         f"{max(p / s for p, s in zip(paid, saved)):.0f} of them")


def test_plain_vs_residual_table_is_recomputed_from_the_committed_runs():
    text = _read(RECORD)
    table = analysis.load_runs(analysis.find_runs(RESULTS / "plain-vs-residual"),
                               keys=("arch", "seed"))
    for arch, g in analysis.final_epochs(table).groupby("arch"):
        g = g.sort_values("seed")
        cells = [f"`{arch}`"] + [f"{v:.3f}" for v in g.train_loss] + \
                [f"{v:.2f}%" for v in g.test_acc]
        assert _has_row(text, *cells), (arch, cells)


def test_validation_screen_table_is_recomputed_from_the_committed_runs():
    # The screen's table shows validation accuracy only: the choice is made on it, and a
    # screening run's test accuracy (in its history.csv) is never looked at.
    text = _read(RECORD)
    cells = analysis.find_runs(RESULTS / "fast-screen-val")
    assert len(cells) == 6
    for run_dir in cells:
        cfg, m = runs.load_config(run_dir), runs.load_metrics(run_dir)
        assert cfg["val_size"] == 5000
        assert _has_row(text, str(cfg["crop_padding"]), str(cfg["epochs"]), f"{m['val_acc']:.2f}%",
                        f"{m['wall_time_s']:,}"), run_dir.name


def test_the_record_names_where_its_outside_numbers_come_from():
    text, earlier = _read(RECORD), _read(RESULTS / "earlier-measurements.md")
    for number, commit in [("671.2 s", "64f749f"), ("1,059 / 1,438 / 1,227", "743babc"),
                           ("1,115 / 1,117 / 1,098", "743babc")]:
        assert _in_paragraph(text, number, commit) and commit in earlier, number
    assert _has_row(earlier, "1", "1,059", "1,115") and _has_row(earlier, "2", "1,438", "1,117") \
        and _has_row(earlier, "3", "1,227", "1,098")
    assert "python -m lab_utils.grid results/ablation/grid.yaml" in text
    assert (RESULTS / "ablation" / "grid.yaml").is_file()
    assert _in_paragraph(text, "a714361", "python -m lab_utils.ablation", "removed")
    assert _in_paragraph(text, "`results/recipes.yaml`", "written afterwards")


def test_every_cpu_run_set_has_a_machine_note():
    """A CPU run set is named in results/machines.md, unless each of its runs records the CPU's
    model and flags and the commit it ran in its own metrics.json (runs made since 808bf69)."""
    machines = _read(RESULTS / "machines.md")
    cpu = set()
    for p in RESULTS.glob("**/metrics.json"):
        m = _metrics(p.parent.relative_to(RESULTS).as_posix())
        if m["device"].startswith("CPU") and not {"cpu", "cpu_flags", "commit"} <= m.keys():
            cpu.add(p.parent.relative_to(RESULTS).parts[0])
    for top in sorted(cpu):
        name = top.rsplit("-seed", 1)[0] if top.startswith(("fast-cpu", "fast-crop4")) else top
        assert f"`{name}" in machines, top
    assert "`results/gpu/machine.txt`" in machines


# --- The record's prose, section by section ------------------------------------------

def _epochs(name: str, later: bool = False):
    e = _history(name).epoch_time_s
    return e.iloc[1:] if later else e


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def test_recipe_section_prose_is_recomputed():
    text = _read(RECORD)
    lab = _metrics("lab-cpu-seed0")
    fast5 = [_metrics(f"fast-cpu-seed{s}") for s in (0, 1, 2)]
    accs, walls = [m["test_acc"] for m in fast5], [m["wall_time_s"] for m in fast5]
    ratios = [w / lab["wall_time_s"] for w in walls]
    assert _in_paragraph(text, _span(accs, "{:.2f}") + "%", f"mean {sum(accs) / 3:.2f}%",
                         f"{_f(min(ratios))} to {_f(max(ratios))}", f"{lab['wall_time_s']} s",
                         f"mean {sum(walls) / 3:.1f} s, {_f(sum(walls) / 3 / lab['wall_time_s'])}")
    ref = _metrics("reference/lab-dataloader-fp32-seed0")
    assert _metrics("lab-cpu-seed0")["test_acc"] < ref["test_acc"] < _metrics("lab-cpu-seed1")["test_acc"]
    assert _in_paragraph(text, f"It reached {ref['test_acc']:.2f}%, between",
                         f"{_f(75.1 - ref['test_acc'])} points below the report's 75.1%")
    assert _has_row(text, f"{ref['wall_time_s']:,} s ({ref['wall_time_s'] / 15:.0f} s/epoch)")
    # The fast preset and the CIFAR-stem preset as their files say.
    fast, stem = make_config(recipe="fast"), make_config(recipe="cifar_stem")
    assert (fast.lr, fast.batch_size, fast.label_smoothing, fast.crop_padding, fast.epochs) == \
        (0.2, 256, 0.1, 0, 6) and fast.nesterov and fast.tta_flip and fast.dropout == 0
    assert _in_paragraph(text, f"(peak {fast.lr:g})", f"batch {fast.batch_size}",
                         f"label smoothing {fast.label_smoothing:g}",
                         f"`crop_padding: {fast.crop_padding}`", f"for {fast.epochs} epochs")
    assert stem.epochs == 30 and stem.crop_padding == 4
    assert _in_paragraph(text, f"for {stem.epochs} epochs", f"{stem.crop_padding}-pixel crop",
                         f"{_metrics('gpu/cifar_stem-capture-on-seed0')['test_acc']:.2f}% after its 30",
                         f"{_metrics('gpu/cifar_stem-capture-on-seed0')['wall_time_s']} s")


def test_first_screen_table_and_prose_are_recomputed():
    text = _read(RECORD)
    acc = {}
    for p in list((RESULTS / "fast-screen").glob("*/metrics.json")) + \
            [RESULTS / f"fast-crop4-cpu-seed{s}" / "metrics.json" for s in (0, 1)] + \
            [RESULTS / f"fast-cpu-seed{s}" / "metrics.json" for s in (0, 1, 2)] + \
            [RESULTS / "fast-b128-cpu-seed0" / "metrics.json"]:
        c, m = runs.load_config(p.parent), runs.load_metrics(p.parent)
        # runs made before `crop_padding` existed have the lab's 4 (what they trained with)
        acc[c.get("crop_padding", 4), c["epochs"], c["lr"], c["batch_size"], c["seed"]] = m["test_acc"]
    rows = {"none (crop padding 4)": (4, 5, 0.2, 256), "crop padding 3": (3, 5, 0.2, 256),
            "crop padding 2": (2, 5, 0.2, 256), "crop padding 1": (1, 5, 0.2, 256),
            "crop padding 0 (flip only": (0, 5, 0.2, 256), "crop padding 2, 4 epochs": (2, 4, 0.2, 256),
            "peak lr 0.4 (crop padding 4)": (4, 5, 0.4, 256),
            "batch 128, peak lr 0.1 (crop padding 4)": (4, 5, 0.1, 128)}
    for label, key in rows.items():
        cells = [f"{acc[(*key, s)]:.2f}%" if (*key, s) in acc else "-" for s in (0, 1, 2)]
        assert re.search(r"^\| " + re.escape(label) + r"[^|]*\| " + r" \| ".join(map(re.escape, cells))
                         + r" \|$", text, flags=re.M), (label, cells)
    assert len(acc) == sum(1 for key in rows.values() for s in (0, 1, 2) if (*key, s) in acc)
    # "Every pixel less of crop gained test accuracy, for every seed tried."
    for seed in (0, 1, 2):
        ladder = [acc[(p, 5, 0.2, 256, seed)] for p in (4, 3, 2, 1, 0) if (p, 5, 0.2, 256, seed) in acc]
        assert ladder == sorted(ladder), seed
    # Crop and flip together after 15 epochs, in the ablation.
    _, _, _, final = _ablation()
    mean = final.groupby(["dropout", "augment"]).test_acc.mean()
    worth = [mean[d, "lab"] - mean[d, "none"] for d in (0.0, 0.5)]
    assert _in_paragraph(text, f"worth {_span(worth, '{:.1f}')} points after 15 epochs")


def test_validation_screen_prose_is_recomputed():
    text = _read(RECORD)
    val, epochs, measure = {}, [], []
    for run_dir in analysis.find_runs(RESULTS / "fast-screen-val"):
        c, h = runs.load_config(run_dir), runs.load_history(run_dir)
        val[c["crop_padding"], c["epochs"]] = runs.load_metrics(run_dir)["val_acc"]
        epochs += list(h.epoch_time_s)
        measure.append(h.measure_time_s.sum())
    assert _in_paragraph(text, f"epochs of these runs took {min(epochs):.0f}-{max(epochs):.0f} s")
    assert _has_row(text, "Crop padding", f"validation timed apart, {min(measure):.0f}-{max(measure):.0f} s a run")
    best = max(val, key=val.get)
    assert best == (0, 6)
    at5 = [val[0, 5] - val[p, 5] for p in (2, 4)]
    at6 = [val[0, 6] - val[p, 6] for p in (2, 4)]
    more = [val[p, 6] - val[p, 5] for p in (0, 2, 4)]
    fast_epochs = [e for s in (0, 1, 2) for e in _epochs(f"fast-cpu-seed{s}")]
    lab = _metrics("lab-cpu-seed0")["wall_time_s"]
    spreads = []
    for pad in (0, 1, 2):
        seeds = [_metrics(n)["test_acc"] for n in
                 ([f"fast-cpu-seed{s}" for s in (0, 1, 2)] if pad == 0 else
                  [f"fast-screen/crop{pad}-s{s}" for s in (0, 1, 2)])]
        spreads.append(max(seeds) - min(seeds))
    assert _in_paragraph(
        text, f"({val[best]:.2f}% validation accuracy)", f"by {_span(at5, '{:.2f}')} points at 5",
        f"{_span(at6, '{:.2f}')} points at 6", f"({_span(more, '{:.2f}')} points)",
        f"{min(fast_epochs) / lab:.2f}-{max(fast_epochs) / lab:.2f} of the lab's wall time",
        f"({min(fast_epochs):.0f}-{max(fast_epochs):.0f} s of {lab} s", f"({min(at6):.2f} points and more)",
        f"the {_span(spreads, '{:.2f}')}-point spread", f"by {_f(abs(val[2, 5] - val[4, 5]))} points at 5",
        f"and {_f(abs(val[2, 6] - val[4, 6]))} at 6")
    assert val[4, 5] > val[2, 5] and val[2, 6] > val[4, 6]  # "(4 ahead)", "(2 ahead)"


def test_what_was_reached_bullets_are_recomputed():
    text = _read(RECORD)
    firsts = [_epochs(n).iloc[0] for n in FAST_GPU]
    second_fast, second_lab = "gpu/fast-capture-off-seed0", "gpu/lab-capture-off-seed1"
    assert _in_paragraph(text, f"its first epoch took {_epochs(second_fast).iloc[0]:.1f} s",
                         f"{_span(firsts, '{:.1f}')} s for the fast runs",
                         f"with a {_epochs('fast-test-gpu/lab-seed0').iloc[0]:.1f}-s first",
                         f"({_span(_epochs(second_lab, True), '{:.2f}')} s against "
                         f"{_span(_epochs('fast-test-gpu/lab-seed0', True), '{:.2f}')} s)")
    gpu = [_metrics(n)["test_acc"] for n in FAST_GPU]
    cpu = [_metrics(n)["test_acc"] for n in FAST_CPU]
    diffs = [abs(a - b) for a, b in zip(cpu, gpu)]
    fast5 = [_metrics(f"fast-cpu-seed{s}")["test_acc"] for s in (0, 1, 2)]
    assert {_metrics(n)["torch"].split("+")[0] for n in FAST_CPU} == {"2.14.1"}
    assert {_metrics(n)["torch"].split("+")[0] for n in FAST_GPU} == {"2.11.0"}
    assert _in_paragraph(
        text, ", ".join(f"{a:.2f}%" for a in gpu[:2]) + f" and {gpu[2]:.2f}%",
        f"{_f(80 - max(gpu))}-{_f(80 - min(gpu))} points short of 80%",
        f"{_metrics(second_fast)['test_acc']:.2f}% eager", f"{gpu[0]:.2f}% on the first",
        f"{_metrics('gpu/fast-capture-on-seed0')['test_acc']:.2f}% captured",
        ", ".join(f"{a:.2f}%" for a in cpu[:2]) + f" and {cpu[2]:.2f}%",
        f"(mean {sum(cpu) / 3:.2f}%, a spread of {_f(max(cpu) - min(cpu))} points)",
        f"{_f(80 - max(cpu))}-{_f(80 - min(cpu))} points short", f"{_span(diffs, '{:.2f}')} points",
        "2.14.1 and 2.11.0", _span(fast5, "{:.2f}") + "%", f"(mean {sum(fast5) / 3:.2f}%)")
    stopped = _epochs("fast-test/lab-seed0-stopped")
    same = [e for s in (1, 2) for e in _epochs(f"fast-test/crop0-ep6-seed{s}")]
    planned = runs.load_config(RESULTS / "fast-test" / "lab-seed0-stopped")["epochs"]
    assert _in_paragraph(
        text, f"stopped after {len(stopped)} of", f"its {planned} epochs",
        f"{_span(stopped, '{:.1f}')} s (mean {stopped.mean():.1f}", f"{_span(same, '{:.1f}')} s",
        f"(about {_lab_estimate() / 60:.0f} minutes)", f"({stopped.min():.1f} s)",
        f"({stopped.max():.1f} s)")


def test_why_gpu_and_cpu_disagree_is_recomputed():
    text = _read(RECORD)
    firsts = [_epochs(n).iloc[0] for n in FAST_GPU]
    later = [e for n in FAST_GPU for e in _epochs(n, True)]
    lab_later = _epochs("fast-test-gpu/lab-seed0", True)
    fast2 = _epochs("gpu/fast-capture-off-seed0", True)
    lab2 = _epochs("gpu/lab-capture-off-seed1", True)
    fast_cpu = [e for s in (0, 1, 2) for e in _epochs(f"fast-cpu-seed{s}")]
    assert make_config(recipe="fast").batch_size == 2 * make_config().batch_size  # "halves it"
    assert _in_paragraph(
        text, f"({_span(firsts, '{:.1f}')} s, warm-up", f"took {_span(later, '{:.2f}')} s against the lab's "
        f"{_span(lab_later, '{:.2f}')}", f"{_span(fast2, '{:.2f}')} s against {_span(lab2, '{:.2f}')} s",
        f"({min(fast_cpu):.0f}-{max(fast_cpu):.0f} s against {_epochs('lab-cpu-seed0').mean():.1f} s)")
    # What was tried: the room left below a third on the first GPU machine.
    lab = _metrics("fast-test-gpu/lab-seed0")["wall_time_s"]
    slowest = max(_metrics(n)["wall_time_s"] for n in FAST_GPU)
    per_epoch = sum(later) / len(later)
    assert int((lab / 3 - slowest) // per_epoch) == 2  # "room for about two"
    assert _in_paragraph(text, f"adds about {per_epoch:.1f} s", f"slowest seed, {slowest} s",
                         f"leaves {lab / 3 - slowest:.1f} s below the third")


def test_plain_vs_residual_prose_is_recomputed():
    text = _read(RECORD)
    table = analysis.final_epochs(analysis.load_runs(
        analysis.find_runs(RESULTS / "plain-vs-residual"), keys=("arch", "seed")))
    by = {a: g for a, g in table.groupby("arch")}
    cfg = runs.load_config(RESULTS / "plain-vs-residual" / "resnet18-seed0")
    steps = cfg["epochs"] * -(-cfg["train_subset"] // cfg["batch_size"])
    assert _in_paragraph(text, f"**{cfg['epochs']} epochs on a fixed {cfg['train_subset']:,}-image",
                         f"({steps} steps)")
    loss = lambda a: _span(by[a].train_loss, "{:.2f}")  # noqa: E731
    acc = lambda a: _span(by[a].test_acc, "{:.1f}")  # noqa: E731
    assert _in_paragraph(text, f"({loss('resnet18')} against {loss('plain18')})",
                         f"({acc('resnet18')}% against {acc('plain18')}%)",
                         f"(final training loss {loss('plain34')}, about ln 10",
                         f"{acc('plain34')}% test", f"reaches {loss('resnet34')}")
    assert abs(by["plain34"].train_loss.mean() - 2.3026) < 0.02  # ln 10: chance
    norms = pd_read(RESULTS / "plain-vs-residual" / "grad-norms-at-init.csv")
    mean = norms.groupby(["arch", "depth"]).grad_norm.mean()
    plain34 = mean["plain34"]
    ratio = {a: mean[a].max() / mean[a].min() for a in ("resnet18", "resnet34")}
    assert _in_paragraph(text, f"falls from {plain34.iloc[0]:.0f}", f"to {plain34.iloc[-1]:.1f} at the last",
                         f"a factor of about {round(plain34.iloc[0] / plain34.iloc[-1], -1):.0f}",
                         f"a factor of {ratio['resnet18']:.1f} (ResNet-18) to {ratio['resnet34']:.0f} (ResNet-34)")


def pd_read(path: Path):
    import pandas as pd
    return pd.read_csv(path)


def test_cpu_and_h100_benchmark_rows_are_recomputed():
    text = _read(RECORD)
    for name in ("bench-cpu.json", "bench-cpu-2.json", "bench-h100.json"):
        bench = json.loads((RESULTS / name).read_text())
        assert _has_row(text, f"{bench['tensor']['train_img_s']:,}", f"{bench['tensor']['epoch_s']} s")
        assert _has_row(text, f"{bench['dataloader']['train_img_s']:,}", f"{bench['dataloader']['epoch_s']} s",
                        f"{bench['epoch_ratio_tensor_over_dataloader']:.2f}")
        if "dataloader_fp32" in bench:
            assert _has_row(text, f"{bench['dataloader_fp32']['train_img_s']:,}",
                            f"{bench['dataloader_fp32']['epoch_s']} s",
                            f"{bench['epoch_ratio_tensor_over_dataloader_fp32']:.2f}")
    cpu, cpu2, h100 = (json.loads((RESULTS / n).read_text()) for n in
                       ("bench-cpu.json", "bench-cpu-2.json", "bench-h100.json"))
    h200 = json.loads((RESULTS / "gpu" / "bench-gpu.json").read_text())
    assert _in_paragraph(text, f"{cpu['model_only_img_s']['amp']:,} images/s in",
                         f"{cpu['model_only_img_s']['fp32']:,} in fp32 in one run",
                         f"{cpu2['model_only_img_s']['amp']:,} and {cpu2['model_only_img_s']['fp32']:,}")
    assert _in_paragraph(text, f"{h100['model_only_img_s']['amp']:,} images/s in bf16 and "
                         f"{h100['model_only_img_s']['fp32']:,} in fp32",
                         f"{h200['model_only_img_s']['bf16']:,} and {h200['model_only_img_s']['fp32']:,}",
                         f"{h200['captured']['model_only_img_s']:,} images/s")
    assert _in_paragraph(text, f"({h200['tensor_bf16']['epoch_s']} s against "
                         f"{_epochs('fast-test-gpu/lab-seed0', True).median():.2f} s in bf16)")


def test_capture_bullets_are_recomputed():
    text = _read(RECORD)
    eager0, cap0 = _epochs("fast-test-gpu/lab-seed0"), _epochs("gpu/lab-capture-on-seed0")
    eager1, cap1 = _epochs("gpu/lab-capture-off-seed1"), _epochs("gpu/lab-capture-on-seed1")
    bench = json.loads((RESULTS / "gpu" / "bench-gpu.json").read_text())
    w = lambda n: _metrics(n)["wall_time_s"]  # noqa: E731
    assert _in_paragraph(
        text, f"took {_span(cap0.iloc[1:], '{:.2f}')} s against {_span(eager0.iloc[1:], '{:.2f}')} s",
        f"(median {cap0.iloc[1:].median():.2f} against", f"{eager0.iloc[1:].median():.2f} s: "
        f"{eager0.iloc[1:].median() / cap0.iloc[1:].median():.1f} times as fast)",
        f"{bench['captured']['tensor_train_img_s']:,} against {bench['tensor_bf16']['train_img_s']:,}",
        f"({bench['captured']['tensor_train_img_s'] / bench['tensor_bf16']['train_img_s']:.1f} times)",
        f"{cap0.iloc[0]:.1f} s against {eager0.iloc[0]:.1f} s",
        f"{w('gpu/lab-capture-on-seed0')} s against", f"{w('fast-test-gpu/lab-seed0')} s "
        f"({w('gpu/lab-capture-on-seed0') / w('fast-test-gpu/lab-seed0'):.2f} of the eager time)",
        f"{w('gpu/lab-capture-on-seed1')} s against {w('gpu/lab-capture-off-seed1')} s "
        f"({w('gpu/lab-capture-on-seed1') / w('gpu/lab-capture-off-seed1'):.2f}; later",
        f"{cap1.iloc[1:].median():.2f} against {eager1.iloc[1:].median():.2f} s median",
        f"{cap1.iloc[0]:.1f} against {eager1.iloc[0]:.1f} s")
    fe, fc = _epochs("gpu/fast-capture-off-seed0"), _epochs("gpu/fast-capture-on-seed0")
    assert _in_paragraph(text, f"took {_span(fc.iloc[1:], '{:.2f}')} s", f"{_span(fe.iloc[1:], '{:.2f}')} s eagerly",
                         f"{fc.iloc[0]:.1f} s against {fe.iloc[0]:.1f} s",
                         f"{w('gpu/fast-capture-on-seed0')} s", f"against {w('gpu/fast-capture-off-seed0')} s")
    stem = _metrics("gpu/cifar_stem-capture-on-seed0")
    assert _in_paragraph(text, "under 30 s", "94%", f"{w('gpu/lab-capture-on-seed0')} s and "
                         f"{w('gpu/lab-capture-on-seed1')} s captured",
                         f"the 14 after compilation {cap0.iloc[1:].sum():.1f} s",
                         f"{stem['test_acc']:.2f}% (one seed, 30 epochs)")
    acc = lambda n: f"{_metrics(n)['test_acc']:.2f}%"  # noqa: E731
    loss = lambda n: f"{_history(n).train_loss.iloc[-1]:.3f}"  # noqa: E731
    assert _in_paragraph(
        text, f"training loss of {loss('fast-test-gpu/lab-seed0')}", f"and {loss('gpu/lab-capture-on-seed0')}",
        f"{acc('fast-test-gpu/lab-seed0')} and {acc('gpu/lab-capture-on-seed0')}",
        f"{_f(_metrics('fast-test-gpu/lab-seed0')['test_acc'] - _metrics('gpu/lab-capture-on-seed0')['test_acc'])}"
        " points apart", f"{acc('gpu/lab-capture-off-seed1')} and", f"{acc('gpu/lab-capture-on-seed1')}",
        f"{acc('gpu/fast-capture-off-seed0')} and {acc('gpu/fast-capture-on-seed0')}",
        f"{acc('fast-test-gpu/crop0-ep6-seed0')} and {acc('gpu/fast-capture-off-seed0')}, "
        f"{_f(_metrics('fast-test-gpu/crop0-ep6-seed0')['test_acc'] - _metrics('gpu/fast-capture-off-seed0')['test_acc'])}"
        " points apart")


def test_open_measurements_are_recomputed():
    text = _read(RECORD)
    cpu = sum(_metrics(n)["wall_time_s"] for n in FAST_CPU) + _lab_estimate()
    hours, minutes = divmod(round(cpu / 60, -1), 60)
    lab = _metrics("lab-cpu-seed0")["wall_time_s"]
    fast5 = sum(_metrics(f"fast-cpu-seed{s}")["wall_time_s"] for s in (0, 1, 2)) / 3
    estimate = (lab + 3 * 6 / 5 * fast5) / 60
    assert _in_paragraph(text, f"about {hours:.0f} h {minutes:.0f} min together",
                         f"about {estimate:.0f} minutes", f"{lab} s for the lab",
                         f"6/5 x {fast5:.1f} s a fast seed")
    w = lambda n: _metrics(n)["wall_time_s"]  # noqa: E731
    assert _in_paragraph(text, f"took {w('fast-test-gpu/lab-seed0')} s on one machine",
                         f"and {w('gpu/lab-capture-off-seed1')} s on the",
                         f"took {w('fast-test-gpu/crop0-ep6-seed0')} s and {w('gpu/fast-capture-off-seed0')} s")
    pvr = [e for s in (0, 1) for e in _epochs(f"plain-vs-residual/resnet18-seed{s}")]
    fast_cpu = [e for s in (0, 1, 2) for e in _epochs(f"fast-cpu-seed{s}")]
    import statistics
    assert _in_paragraph(text, f"median of {statistics.median(pvr):.0f} s",
                         f"({min(fast_cpu):.0f}-{max(fast_cpu):.0f} s per epoch",
                         f"took {_metrics('reference/lab-dataloader-fp32-seed0')['wall_time_s']:,} s")


def test_end_to_end_times_and_the_remaining_ablation_numbers_are_recomputed():
    text = _read(RECORD)
    sections = (RESULTS / "gpu" / "timings.txt").read_text().split("# ")
    first = dict(re.findall(r"^([\w-]+): (\d+) s", sections[0], flags=re.M))
    extra = []
    for section in sections:
        for step, secs in re.findall(r"^([\w-]+): (\d+) s", section, flags=re.M):
            name = {"lab-seed0": "fast-test-gpu/lab-seed0"}.get(step, f"fast-test-gpu/{step}"
                                                                if step.startswith("crop0") else f"gpu/{step}")
            if (RESULTS / name / "metrics.json").is_file():
                extra.append(int(secs) - _metrics(name)["wall_time_s"])
    fast = [int(first[f"crop0-ep6-seed{s}"]) for s in (0, 1, 2)]
    assert _in_paragraph(text, f"its first section: {min(fast)}-{max(fast)} s against {first['lab-seed0']} s")
    assert len(extra) == 10 and _in_paragraph(text, f"(about {min(extra):.0f}-{max(extra):.0f} s a run)")
    _, summary, _, final = _ablation()
    gap = lambda d, a: _cell(summary, d, a).clean_gap_mean  # noqa: E731
    at15 = [abs(gap(0.0, a)[15] - gap(0.5, a)[15]) for a in ("lab", "none")]
    smaller = [gap(0.0, "none")[e] - gap(0.5, "none")[e] for e in (7, 8)]
    mean = final.groupby(["dropout", "augment"]).test_acc.mean()
    costs = [mean[0.0, a] - mean[0.5, a] for a in ("lab", "none")]
    assert max(at15) <= 1 and round(min(smaller)) == round(max(smaller)) == 3
    assert _in_paragraph(text, "clean gap by 1 point or less at epoch 15", "about 3 points smaller",
                         "epochs 7-8")
    assert _in_paragraph(text, f"Dropout(0.5) comes with {_span(costs, '{:.1f}')} points less test accuracy")
    earlier = _read(RESULTS / "earlier-measurements.md")
    assert _in_paragraph(earlier, "75.1%", "143 s per epoch", f"about {15 * 143:,} s for 15 epochs")
