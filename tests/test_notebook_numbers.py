"""The numbers the notebooks' text quotes, recomputed from the committed runs in results/
(or from the notebook's own committed outputs), each checked in the cell that quotes it."""
import json
import re
from pathlib import Path

import pandas as pd

from lab_utils import analysis, runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def cells(name: str) -> list[dict]:
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]


def text(name: str, starts: str) -> str:
    """The markdown cell of notebook `name` that starts with `starts`."""
    found = ["".join(c["source"]) for c in cells(name) if c["cell_type"] == "markdown"
             and "".join(c["source"]).startswith(starts)]
    assert len(found) == 1, (name, starts)
    return found[0]


def output(name: str, source_has: str) -> str:
    """The text output of the code cell of notebook `name` whose source contains `source_has`."""
    for c in cells(name):
        if c["cell_type"] == "code" and source_has in "".join(c["source"]):
            return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get(
                "text/plain", "")) for o in c["outputs"])
    raise AssertionError((name, source_has))


def has(cell: str, *numbers: str) -> None:
    cell = re.sub(r"\s+", " ", cell)  # a quote may wrap across lines
    for n in numbers:  # a whole number: "5.2" must not match inside "75.21"
        n = re.sub(r"\s+", " ", n)
        assert re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", cell), n


def span(values, fmt: str = ".2f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def test_notebook_04_quotes_its_committed_run():
    run = RESULTS / "lab-full-seed0"
    h, m = runs.load_history(run), runs.load_metrics(run)
    cell = text("04_train", "## What to look at")
    first, seventh, eighth = (h.set_index("epoch").loc[e] for e in (1, 7, 8))
    has(cell, f"{m['test_acc']:.2f}%", f"{m['wall_time_s']:,}",
        span(h.epoch_time_s[7:], ".1f"), span(h.epoch_time_s[:7], ".1f"),
        f"{first.test_acc:.2f}%", f"{first.train_acc:.2f}%", f"{first.clean_train_acc:.2f}%",
        f"{first.test_acc - first.clean_train_acc:.2f} points",
        f"{seventh.test_acc:.2f}%", f"{seventh.train_acc:.2f}%", f"{eighth.test_acc:.2f}%",
        f"{seventh.clean_train_acc - seventh.test_acc:.2f} points",
        f"{h.clean_train_acc.iloc[-1] - h.test_acc.iloc[-1]:.2f}",
        f"{h.clean_train_acc.iloc[5] - h.test_acc.iloc[5]:.2f} points",
        f"{h.test_acc.max():.2f}%", f"{h.train_acc.iloc[-1]:.2f}%")
    assert h.test_acc.idxmax() + 1 == 14
    has(cell, "(epoch 14)")
    # The printed config and metrics are those of the code as it is now.
    import dataclasses

    import torch

    from lab_utils.config import LabConfig, make_config
    from lab_utils.train import final_metrics
    printed = output("04_train", "notebook_parameters(globals())")
    assert re.findall(r"(\w+)=", printed) == [f.name for f in dataclasses.fields(LabConfig)]
    # (read back from metrics.json, which adds the commit the run started with)
    keys = [k for k in re.findall(r"'(\w+)':", output("04_train", "result.metrics")) if k != "commit"]
    row = dict(epoch=1, train_loss=1.0, train_acc=1.0, test_loss=1.0, test_acc=1.0, lr=0.1,
               epoch_time_s=1.0, clean_train_loss=1.0, clean_train_acc=1.0, measure_time_s=1.0)
    assert keys == list(final_metrics(make_config(pretrained=False), [row], torch.device("cpu"),
                                      "data", captured=False, skips=0))


def test_notebook_04_and_05_quote_the_ablation():
    table = analysis.load_runs(analysis.find_runs(RESULTS / "ablation"))
    final = analysis.final_epochs(table).groupby(["dropout", "augment"])[
        ["train_acc", "test_acc"]].mean()
    exercise = "".join(cells("04_train")[-1]["source"])
    has(exercise, f"{final.loc[(0.0, 'lab')].train_acc:.1f}%", f"{final.loc[(0.0, 'lab')].test_acc:.1f}%",
        f"{final.loc[(0.5, 'lab')].train_acc:.1f}%", f"{final.loc[(0.5, 'lab')].test_acc:.1f}%")
    h = runs.load_history(RESULTS / "lab-full-seed0").set_index("epoch")
    has(text("04_train", "**Question (2 points).**"), f"{h.test_acc[7]:.2f}%", f"{h.test_acc[8]:.2f}%")
    has(text("04_train", "## What to look at"), f"({h.test_acc[7] - h.train_acc[7]:.2f} points)",
        f"({h.test_acc[15] - h.train_acc[15]:.2f}\npoints)".replace("\n", " "))
    # The lab's own measure in the ablation (notebook 05's answer, the record, the README).
    gaps = table.assign(gap=table.train_acc - table.test_acc)
    last = gaps[gaps.epoch == 15].set_index(["dropout", "augment", "seed"]).gap
    assert last.loc[(0.0, "lab")].round(2).tolist() == [1.16, 1.16]
    below = sorted(-last.loc[(0.5, "lab")].round(2))
    over = [int(g[g.gap > 0].epoch.min()) for _, g in gaps[gaps.augment == "none"].groupby("run")]
    answer5 = text("05_analysis", "## The answer")
    has(answer5, "(by 1.16 points in both seeds)", f"ends {below[0]:.2f} to\n{below[1]:.2f} points"
        .replace("\n", " "), f"from epochs {min(over)} to {max(over)} on")
    # Notebook 05's answer quotes the record's ablation section, which test_readme recomputes.
    record = (ROOT / "results" / "README.md").read_text()
    section = record[record.index("## The lab's open question"):record.index("## With ImageNet")]
    answer = text("05_analysis", "## The answer")
    answer = answer[:answer.index("## How choices")]
    for n in re.findall(r"(?<![\w.])\d+\.\d+(?![\d])", answer):
        assert n in section, n


def test_notebook_06_quotes_its_model_and_its_predictions():
    run = RESULTS / "lab-full-seed0"
    p, m = runs.load_predictions(run), runs.load_metrics(run)
    right = p.true == p.pred
    sure = p.confidence >= 0.99
    wrong8 = p[~right].nlargest(8, "confidence").confidence
    cell = text("06_inside", "In the committed run")
    has(cell, f"{m['test_acc']:.2f}%", f"{100 * wrong8.min():.1f}-{100 * wrong8.max():.1f}%",
        f"{100 * p.confidence.mean():.1f}%", f"{sure.sum():,}", f"{100 * right[sure].mean():.1f}%",
        f"{(sure & ~right).sum()} of its {(~right).sum():,} mistakes")
    assert m["test_acc"] >= 74  # a model worth looking inside (issue 23)


def test_notebook_03_quotes_the_plain_vs_residual_runs_and_its_own_measurement():
    table = analysis.final_epochs(analysis.load_runs(
        analysis.find_runs(RESULTS / "plain-vs-residual"), keys=("arch", "seed")))
    by = table.groupby("arch")
    cell = text("03_model", "The answer, from the runs. At this budget")
    has(cell, span(by.get_group("resnet18").train_loss), span(by.get_group("plain18").train_loss),
        span(by.get_group("resnet18").test_acc, ".1f") + "%",
        span(by.get_group("plain18").test_acc, ".1f") + "%",
        span(by.get_group("plain34").test_acc, ".1f") + "%",
        span(by.get_group("resnet34").train_loss))
    plain34 = analysis.load_runs(analysis.find_runs(RESULTS / "plain-vs-residual"),
                                 keys=("arch",)).query("arch == 'plain34'")
    at = plain34.groupby("epoch").train_loss
    has(cell, span(at.min().loc[[1]].tolist() + at.max().loc[[1]].tolist()),
        span(plain34[plain34.epoch.isin([2, 3])].train_loss),
        span(plain34[plain34.epoch == 6].train_loss))
    grads = output("03_model", "block_gradient_norms(net")
    for n in re.findall(r"\d\.\d{3}", text("03_model", "In all four networks")):
        assert n in grads, n
    stem = runs.load_metrics(RESULTS / "gpu" / "cifar_stem-capture-on-seed0")
    has(text("03_model", "## What this means"), f"{stem['test_acc']:.2f}%",
        f"{runs.load_metrics(RESULTS / 'lab-full-seed0')['test_acc']:.2f}%")
    first = runs.load_history(RESULTS / "lab-subset5000-seed0").iloc[0]
    has(text("03_model", "After one batch"), f"{first.test_loss:.2f}", f"{first.test_acc:.1f}%")


def test_notebooks_01_and_02_quote_their_outputs_and_the_screens():
    stats = output("01_dataset", "within = ")
    answer = "".join(cells("01_dataset")[-1]["source"])
    within, between = (re.search(rf"{w} .*?:\s+\[(.*?)\]", stats).group(1).split()
                       for w in ("within", "between"))
    has(answer, *(", ".join(v[:2]) + " and " + v[2] for v in (within, between)))
    red_std = float(re.search(r"std over all pixels: +\[(\S+)", stats).group(1))
    has(answer, f"{red_std:.4f}² = {red_std ** 2:.4f}")
    normalised = output("02_augmentation", "normalised = ")
    after = [float(v) for v in re.search(r"after: .*std \[(.*?)\]", normalised)[1].split()]
    has(text("02_augmentation", "## What `Normalize` does"),
        f"{after[0]:.2f}, {after[1]:.2f} and {after[2]:.2f}")
    cell = text("02_augmentation", "In the 5-epoch screen")
    val = {(runs.load_config(d)["crop_padding"], runs.load_config(d)["epochs"]):
           runs.load_metrics(d)["val_acc"] for d in analysis.find_runs(RESULTS / "fast-screen-val")}
    has(cell, f"{val[(2, 5)]:.2f}%", f"{val[(4, 5)]:.2f}%")
    crop0 = [runs.load_metrics(RESULTS / f"fast-cpu-seed{s}") for s in (0, 1, 2)]
    has(cell, span([m["train_acc"] for m in crop0], ".1f") + "%",
        span([m["train_acc"] - m["test_acc"] for m in crop0], ".1f") + " points")
    screen = pd.read_csv(RESULTS / "fast-screen" / "summary.csv").query(
        "epochs == 5 and lr == 0.2 and batch_size == 256")
    gain = [screen.query(f"crop_padding == 0 and seed == {s}").test_acc.iloc[0]
            - screen.query(f"crop_padding == 4 and seed == {s}").test_acc.iloc[0] for s in (0, 1)]
    has(cell, span(gain, ".1f"))


def test_notebook_05_exercise_quotes_the_two_seeds_per_class_accuracy():
    acc = {s: analysis.per_class_accuracy(analysis.confusion_matrix(runs.load_predictions(
        RESULTS / "ablation" / f"dropout0.5-auglab-seed{s}"))) for s in (0, 1)}
    diff = acc[1] - acc[0]
    top = diff.abs().idxmax()
    others = diff.drop(top).abs().max()
    cell = "".join(cells("05_analysis")[-1]["source"])
    has(cell, f"`{top}`, up {diff[top]:.1f} points ({acc[0][top]:.1f}% -> {acc[1][top]:.1f}%)",
        f"{others:.1f} points or less")


def test_notebook_06_question_quotes_the_confidence_band():
    p = runs.load_predictions(RESULTS / "lab-full-seed0")
    band = p[(p.confidence >= 0.5) & (p.confidence < 0.9)]
    acc, conf = 100 * (band.true == band.pred).mean(), 100 * band.confidence.mean()
    has(text("06_inside", "**Question (2 points).**"), f"{len(band):,} predictions", f"{acc:.1f}%",
        f"{conf:.1f}%", f"about {conf - acc:.1f} points")
