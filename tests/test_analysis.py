import numpy as np
import pandas as pd
import pytest

from lab_utils import analysis


def test_confusion_matrix_per_class_accuracy_and_top_confusions():
    preds = pd.DataFrame({"index": range(6), "true": [0, 0, 0, 1, 1, 2],
                          "pred": [0, 1, 1, 1, 1, 0], "confidence": [0.9] * 6})
    m = analysis.confusion_matrix(preds, num_classes=3)
    assert m.tolist() == [[1, 2, 0], [0, 2, 0], [1, 0, 0]]
    acc = analysis.per_class_accuracy(m, ["a", "b", "c"])
    assert acc.tolist() == pytest.approx([100 / 3, 100, 0])
    top = analysis.top_confusions(m, ["a", "b", "c"], k=2)
    assert top[["true", "predicted", "count"]].values.tolist() == [["a", "b", 2], ["c", "a", 1]]


def test_final_epochs_and_gap_summary():
    rows = []
    for seed, offset in [(0, 0.0), (1, 2.0)]:
        for epoch in (1, 2):
            rows.append(dict(run=f"r{seed}", dropout=0.5, augment="lab", seed=seed, epoch=epoch,
                             train_acc=50 + epoch + offset, test_acc=55.0,
                             clean_train_acc=60.0 + offset))
    table = pd.DataFrame(rows)
    final = analysis.final_epochs(table)
    assert final.epoch.tolist() == [2, 2]
    s = analysis.gap_summary(table)
    last = s[s.epoch == 2].iloc[0]
    assert last.running_gap_mean == pytest.approx(-2.0)  # (52-55 + 54-55) / 2
    assert last.clean_gap_mean == pytest.approx(6.0)
    assert last.running_gap_std == pytest.approx(np.std([-3, -1], ddof=1))


def test_an_unfinished_run_is_named_and_has_no_final_epoch(synthetic_dir, tmp_path, capsys):
    from lab_utils.config import make_config
    from lab_utils.train import fit

    def run(name, epochs_done):
        cfg = make_config(data_dir=str(synthetic_dir), pretrained=False, epochs=2,
                          milestones=[], batch_size=32, clean_train_subset=0, device="cpu",
                          run_dir=str(tmp_path / name))
        fit(cfg, progress=False, on_epoch_end=lambda row: _stop_after(row, epochs_done))

    def _stop_after(row, n):
        if row["epoch"] == n:
            raise KeyboardInterrupt

    run("done", epochs_done=99)
    with pytest.raises(KeyboardInterrupt):
        run("cut", epochs_done=1)
    table = analysis.load_runs(analysis.find_runs(tmp_path))
    assert "cut is unfinished (1 of 2 epochs" in capsys.readouterr().out
    assert analysis.final_epochs(table).run.tolist() == ["done"]
