"""The evaluation notebooks (03 curve accuracy, 04 reconstruction) through papermill at smoke.

The session's smoke run (every section, with a small shifted cohort; ``tests/conftest.py``)
is read by every assertion: metrics.json has every key of ARCHITECTURE.md's contract for every model, the
headline numbers agree with the per-subject tables, the book's summary keys are glued.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from spinelib.run.book import glued_keys
from spinelib.run.book_pages import SUMMARY_ROWS
from spinelib.run.parameters import notebook_parameters
from spinelib.run.sections import SECTIONS
from spinelib.profiles import get_profile
from spinelib.spine import CURVE_NAMES

MODELS = ("mean_shape", "resnet", "resnet_bot", "biplanar")  # at least these; more (visible_summaries) may follow
MODEL_KEYS = ("centerline_3d_mm", "centerline_3d_same_row_mm", "extent_top_mm", "extent_bottom_mm", "iou_3d",
              "dice_3d", "cobb_mae_deg", "kyphosis_mae_deg", "lordosis_mae_deg")
COUNT_KEYS = ("n_evaluated", "n_test", "n_empty_masks")
SCOLIOSIS_KEYS = ("scoliosis_sensitivity", "scoliosis_specificity", "scoliosis_balanced_accuracy", "scoliosis_auc")
VAL_RULE_KEYS = ("scoliosis_val_threshold_deg", "scoliosis_sensitivity_at_val_threshold",
                 "scoliosis_specificity_at_val_threshold")
EVAL_SECTIONS = ("curve_accuracy", "reconstruction")
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def eval_run(smoke_run) -> Path:
    return smoke_run


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_models(block: dict, *, scoliosis: dict | None = None) -> None:
    assert set(MODELS) <= set(block)
    for name, b in block.items():
        assert set(b["curve_mae_mm"]) == set(CURVE_NAMES)
        assert all(_finite(v) and v >= 0 for v in b["curve_mae_mm"].values())
        for key in MODEL_KEYS:
            assert _finite(b[key]), (name, key)
        for key in COUNT_KEYS:
            assert isinstance(b[key], int) and b[key] >= 0, (name, key)
        assert 1 <= b["n_evaluated"] <= b["n_test"]
        assert 0.0 <= b["iou_3d"] <= 1.0 and 0.0 <= b["dice_3d"] <= 1.0
        assert b["dice_3d"] >= b["iou_3d"]
        if scoliosis is not None:
            # a score the test set cannot define is left out, with the reason in the scoliosis block
            for key in SCOLIOSIS_KEYS:
                assert _finite(b[key]) or "undefined" in scoliosis, (name, key)


def test_metrics_has_every_design_key(eval_run):
    m = json.loads((eval_run / "metrics.json").read_text())
    for block in (m, m["shifted"]):
        _check_models(block["models"], scoliosis=m["scoliosis"] if block is m else None)
        assert _finite(block["ceiling"]["iou_3d"]) and 0.0 < block["ceiling"]["iou_3d"] <= 1.0
        # the representation ceiling: ellipses from the true curves against the true column mask
        # (about 0.79 at smoke's 6 mm voxels, 0.85 at the default profile)
        assert block["ceiling"]["iou_3d"] > 0.7
    assert m["shifted"]["n_subjects"] >= 1
    # synthetic cohort: the headline is against truth, the paper's way a labelled second block
    assert m["evaluation"]["reference"] == "truth" and m["shifted"]["evaluation"]["reference"] == "truth"
    _check_models(m["models_estimated_alignment"])
    assert m["evaluation"]["estimated_alignment"]["reference"] == "estimated"
    assert m["evaluation"]["n_evaluated"] >= m["evaluation"]["estimated_alignment"]["n_evaluated"]
    sc = m["scoliosis"]
    assert sc["threshold_deg"] == 10.0 and 0.0 <= sc["prevalence"] <= 1.0 and sc["n"] == m["evaluation"]["n_evaluated"]
    # the operating point chosen on the validation split reaches every model, or the reason it cannot
    rule = sc["validation_rule"]
    if "undefined" not in rule:
        assert 1 <= rule["n_val_scoliotic"] < rule["n_val"] <= m["n_subjects"]["val"]
        for name, b in m["models"].items():
            assert _finite(b["scoliosis_val_threshold_deg"]), name
            for key in VAL_RULE_KEYS[1:]:
                assert _finite(b[key]) or "undefined" in sc, (name, key)


def test_headlines_match_the_per_subject_tables(eval_run):
    m = json.loads((eval_run / "metrics.json").read_text())
    curves = pd.read_csv(eval_run / "tables" / "curve_errors_per_subject.csv", dtype={"subject_id": str})
    sel = curves[(curves["model"] == "resnet_bot") & (curves["curve"] == "sagittal_centre")]
    assert sel["mae_mm"].mean() == pytest.approx(m["models"]["resnet_bot"]["curve_mae_mm"]["sagittal_centre"],
                                                 rel=1e-5)
    recon = pd.read_csv(eval_run / "tables" / "reconstruction_per_subject.csv", dtype={"subject_id": str})
    bot = recon[recon["model"] == "resnet_bot"]
    assert bot["iou_3d"].mean() == pytest.approx(m["models"]["resnet_bot"]["iou_3d"], rel=1e-5, abs=1e-9)
    assert bot["centerline_3d_same_row_mm"].mean() == pytest.approx(
        m["models"]["resnet_bot"]["centerline_3d_same_row_mm"], rel=1e-5)
    assert recon.loc[recon["model"] == "ceiling", "iou_3d"].mean() == pytest.approx(m["ceiling"]["iou_3d"], rel=1e-5)
    assert bot["empty_mask"].sum() == m["models"]["resnet_bot"]["n_empty_masks"]
    # every test subject of the manifest whose DXA loads is evaluated, rejected alignments included
    n_eval, n_test = m["models"]["resnet_bot"]["n_evaluated"], m["models"]["resnet_bot"]["n_test"]
    assert len(sel) == n_eval and len(bot) == n_eval
    skipped = pd.read_csv(eval_run / "tables" / "not_evaluated.csv", dtype={"subject_id": str})
    assert n_eval + len(skipped) == n_test
    alignment = pd.read_csv(eval_run / "tables" / "alignment.csv", dtype={"subject_id": str})
    trusted_test = alignment[(alignment["split"] == "test") & alignment["trusted"]]
    assert n_eval >= len(trusted_test) == m["models_estimated_alignment"]["resnet_bot"]["n_evaluated"]
    shifted = pd.read_csv(eval_run / "tables" / "shifted_reconstruction_per_subject.csv")
    assert (shifted["model"] == "resnet_bot").sum() == m["shifted"]["n_subjects"]


def test_error_parts_start_from_the_headline(eval_run):
    """Each single-view network's decomposition starts from its headline numbers and scores
    every part, the synthetic cohort's hidden-depth floor included, with the reader that reads
    everything else of the AP image exactly (reconstruction section,
    ``spinelib.evaluate.error_parts``, ``spinelib.synth.hidden``)."""
    from spinelib.evaluate import AP_READER, AS_PREDICTED, FLOOR_PART, PARTS
    from spinelib.synth.hidden import AP_HIDDEN_DRAWS

    m = json.loads((eval_run / "metrics.json").read_text())
    assert set(m["error_parts"]) == {"resnet_bot", "resnet", AP_READER}
    for name in ("resnet_bot", "resnet"):
        parts = m["error_parts"][name]
        assert list(parts) == [AS_PREDICTED, *PARTS, FLOOR_PART]
        assert parts[AS_PREDICTED]["iou_3d"] == pytest.approx(m["models"][name]["iou_3d"], rel=1e-9)
        assert parts[AS_PREDICTED]["centerline_3d_same_row_mm"] == pytest.approx(
            m["models"][name]["centerline_3d_same_row_mm"], rel=1e-9)
        assert parts[AS_PREDICTED]["gap_closed"] == 0.0
        assert all(_finite(p["iou_3d"]) and 0.0 <= p["iou_3d"] <= 1.0 for p in parts.values())
    hidden, reader = m["hidden_depth"], m["error_parts"][AP_READER][FLOOR_PART]
    assert hidden["draws"] == list(AP_HIDDEN_DRAWS) and hidden["n_draws"] == get_profile("smoke")["hidden_depth_draws"]
    # the reader reads the coronal curves exactly: its same-row error is its sagittal centre's alone
    assert reader["centerline_3d_same_row_mm"] == pytest.approx(hidden["sagittal_centre_mae_mm"], rel=0.05)
    assert 0.0 < hidden["sagittal_centre_mae_mm"] < 15.0
    assert reader["iou_3d"] <= m["ceiling"]["iou_3d"] + 1e-9
    table = pd.read_csv(eval_run / "tables" / "reconstruction_error_parts.csv")
    assert len(table) == 2 * (2 + len(PARTS)) + 1


def test_large_curve_cobb_block(eval_run):
    """The Cobb error of the large curves, with its interval, for every model that has them
    (reconstruction section, ``spinelib.evaluate.large_curve_cobb``)."""
    from spinelib.evaluate import LARGE_CURVE_DEG, TARGET_CURVES

    m = json.loads((eval_run / "metrics.json").read_text())
    block = m["large_curve_cobb"]
    assert block["from_deg"] == LARGE_CURVE_DEG
    table = pd.read_csv(eval_run / "tables" / "clinical_cobb_large_curves.csv")
    assert set(block["models"]) == set(table["model"])
    if block["models"]:
        assert TARGET_CURVES in block["models"] and "resnet_bot" in block["models"]
        for r in block["models"].values():
            assert 0.0 <= r["mae_low_deg"] <= r["mae_high_deg"] and abs(r["bias_deg"]) <= r["mae_deg"] + 1e-9
    assert "large_curve_resnet_bot" in glued_keys(eval_run / "notebooks" / "04_reconstruction_3d.ipynb")


def test_summary_keys_glued_and_tables_written(eval_run):
    for sec in (s for s in SECTIONS if s.name in EVAL_SECTIONS):
        keys = glued_keys(eval_run / "notebooks" / sec.notebook)
        wanted = {r.key for r in SUMMARY_ROWS if r.section == sec.name and not r.optional}
        assert wanted <= keys, wanted - keys
    for name in ("curve_errors_summary", "curve_errors_per_level", "curve_errors_bot_vs_resnet",
                 "reconstruction_summary", "reconstruction_by_severity", "reconstruction_by_region",
                 "clinical_angle_errors", "scoliosis_classification", "shifted_curve_errors_summary",
                 "reconstruction_empty_masks", "not_evaluated", "curve_errors_summary_estimated_alignment",
                 "reconstruction_per_subject_estimated_alignment"):
        assert (eval_run / "tables" / f"{name}.csv").is_file(), name
    for f in ("targets.npz", "truth_targets.npz", "predictions.npz", "alignment.csv", "source.json"):
        assert (eval_run / "shifted" / f).is_file()
    assert list((eval_run / "figures").glob("bland_altman_*.png"))


def test_shifted_cache_is_reused(eval_run):
    from spinelib.evaluate import shifted_paths, shifted_set
    from spinelib.study.config import TargetConfig

    params = json.loads((eval_run / "params.json").read_text())
    before = {k: p.stat().st_mtime_ns for k, p in shifted_paths(eval_run).items() if p.is_file()}
    es = shifted_set(eval_run, params["shifted_data"], TargetConfig.from_profile(params), progress=False)
    after = {k: p.stat().st_mtime_ns for k, p in shifted_paths(eval_run).items() if p.is_file()}
    assert before == after and len(es) >= 1


@pytest.mark.parametrize("stem", ["03_curve_accuracy_2d", "04_reconstruction_3d"])
def test_notebook_sources_follow_the_rules(stem):
    path = NOTEBOOKS / f"{stem}.ipynb"
    declared = notebook_parameters(path)
    assert set(declared) - set(get_profile("smoke")) <= {"run_dir", "data"}
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            lines = cell.source.splitlines()
            assert not any(ln.lstrip().startswith(("def ", "class ")) for ln in lines), cell.source[:80]
            assert "fig.show()" not in cell.source


def test_training_chapter_records_what_was_tuned_on_which_split():
    from spinelib.profiles import TUNED_ON, tuning_records

    assert all(split != "test" for split, _ in TUNED_ON.values())
    assert {r["tuned_on"] for r in tuning_records()} >= {"val", "swapped pairs"}
    nb = nbformat.read(NOTEBOOKS / "02_training.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "tuning_records()" in text and "{glue:text}`n_choices_tuned_on_test`" in text
