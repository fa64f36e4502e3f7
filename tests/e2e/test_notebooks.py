"""The real notebooks of the alignment and training sections, run through papermill at the
smoke profile (the shared ``smoke_run`` fixture), and what they leave in the run folder."""

from __future__ import annotations

import json
import math

import nbformat
import numpy as np
import pandas as pd

from spinelib.study.experiment import checkpoint_path
from spinelib.study.prediction import read_predictions
from spinelib.learn.checkpoint import load_checkpoint
from spinelib.learn.config import MODEL_NAMES, NETWORK_NAMES
from spinelib.learn.ridge import VisibleSummariesModel
from spinelib.study.targets import read_targets


def _outputs_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", (path, cell.source[:80])
    return nb


def test_alignment_section(smoke_run):
    _outputs_without_errors(smoke_run / "notebooks" / "01_alignment.ipynb")
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    block = metrics["alignment"]
    for key in ("error_mm_mean", "error_mm_p95", "stage1_error_mm_mean"):
        assert math.isfinite(block[key])
    assert block["error_mm_mean"] < block["stage1_error_mm_mean"]  # stage 2 beats stage 1
    table = pd.read_csv(smoke_run / "tables" / "alignment.csv")
    # every subject is aligned or rejected with a reason
    assert len(table) == 40
    assert table.loc[~table["trusted"], "reason"].fillna("").astype(str).str.len().gt(0).all()
    targets = read_targets(smoke_run / "targets.npz")
    assert set(targets.subject_id) == set(table.loc[table["trusted"], "subject_id"])
    assert sum(metrics["n_subjects"].values()) == len(targets)
    assert list((smoke_run / "figures").glob("figure2_*.png"))


def test_training_section(smoke_run):
    _outputs_without_errors(smoke_run / "notebooks" / "02_training.ipynb")
    for name in NETWORK_NAMES:
        model, config, extra = load_checkpoint(checkpoint_path(smoke_run, name))
        assert config.name == name and extra["crop_pixel_mm"] > 0
    ridge = VisibleSummariesModel.load(checkpoint_path(smoke_run, "visible_summaries"))
    assert ridge.fitted and ridge.alpha in ridge.alphas
    pred = read_predictions(smoke_run / "predictions_test.npz")
    targets = read_targets(smoke_run / "targets.npz").select("test")
    # every test subject whose DXA loads is predicted, trusted alignment or not (no MRI needed)
    skipped = pd.read_csv(smoke_run / "tables" / "prediction_skipped.csv", dtype={"subject_id": str})
    manifest_test = pd.read_csv(smoke_run / "tables" / "alignment.csv", dtype={"subject_id": str}).query("split == 'test'")
    assert set(targets.subject_id) <= set(pred.subject_id)
    assert len(pred.subject_id) + len(skipped) == len(manifest_test)
    for name in MODEL_NAMES:
        assert pred.values[name].shape == (len(pred.subject_id), 6, targets.n_levels)
        assert np.isfinite(pred.values[name]).all()
    # the validation split is predicted too (it chooses the scoliosis operating point), and only it
    val = read_predictions(smoke_run / "predictions_val.npz")
    splits = read_targets(smoke_run / "targets.npz")
    val_ids = set(pd.read_csv(smoke_run / "tables" / "alignment.csv", dtype={"subject_id": str})
                  .query("split == 'val'")["subject_id"])
    assert set(splits.select("val").subject_id) <= set(val.subject_id) <= val_ids
    assert val.models == pred.models
    summary = pd.read_csv(smoke_run / "tables" / "training_summary.csv")
    assert set(summary["model"]) == set(MODEL_NAMES)
    paper = pd.read_csv(smoke_run / "tables" / "paper_parameter_counts.csv")
    total = paper[(paper["model"] == "resnet_bot") & (paper["part"] == "total")].iloc[0]
    assert abs(total["ours_M"] - total["published_M"]) / total["published_M"] < 0.05


def test_spinelib_predict_gives_the_curves_of_the_notebooks(smoke_run, tmp_path):
    # one inference path: the command a user runs on a scan and the training section's
    # cohort predictions (what the evaluation chapters score) agree for the same checkpoint
    from spinelib.run import privacy
    from spinelib.cli import main
    from spinelib.spine import CURVE_NAMES

    params = json.loads((smoke_run / "params.json").read_text())
    manifest, _, _ = privacy.run_manifest(smoke_run, params["data"], show_ids=bool(params["show_ids"]))
    dxa_path = manifest.set_index("subject_id")["dxa_path"]
    pred = read_predictions(smoke_run / "predictions_test.npz")
    for name in ("resnet_bot", "resnet"):
        for i, sid in enumerate(pred.subject_id[:2]):
            out = tmp_path / name / str(i)
            assert main(["predict", str(dxa_path[sid]), "--checkpoint", str(checkpoint_path(smoke_run, name)),
                         "--out", str(out)]) == 0
            # A batch of one and a batch of many differ only in the float32 network's last bit or
            # two, and every coordinate passes through the crop's mm frame, so the difference is a
            # couple of float32 steps at the subject's largest coordinate (3e-5 mm at 256-512 mm);
            # curves.csv also rounds to 1e-4 mm (at most 5e-5 off)
            written = pd.read_csv(out / "curves.csv")
            notebook = pred.values[name][i]  # (6, K) mm
            extent = pred.extent_mm[name][i]  # (2,) row-mm
            two_steps = 2 * float(np.spacing(np.float32(max(np.abs(notebook).max(), np.abs(extent).max()))))
            for c, curve in enumerate(CURVE_NAMES):
                assert np.abs(written[curve].to_numpy() - notebook[c]).max() <= 5e-5 + two_steps, (name, sid, curve)
            measures = json.loads((out / "measures.json").read_text())
            assert np.abs(np.asarray(measures["extent_mm"]) - extent).max() <= two_steps
