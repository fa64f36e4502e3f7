"""spinelib.evaluate: known answers of the 2D, 3D and clinical evaluation; bad inputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib import evaluate as ev
from spinelib.shape.curves import SpineCurves
from spinelib.shape.extract import column_curves
from spinelib.shape.frame import SubjectFrame
from spinelib.errors import (EmptySegmentationError, InvalidArgumentError, MissingFileError, NonFiniteError,
                             ShapeError)
from spinelib.profiles import get_profile
from spinelib.study.config import TargetConfig
from spinelib.study.prediction import Predictions
from spinelib.io import write_dxa, write_nifti
from spinelib.shape.reconstruct import Grid3D
from spinelib.spine import DISC_LABEL
from spinelib.study.targets import TargetSet
from spinelib.geometry.transform import PlanarTransform
from spinelib.viz import evaluation as vz
from spinelib.viz.png import save_png

K = 16
IDENTITY = PlanarTransform(0.0, 0.0, 0.0)
DXA_SHAPE, DXA_MM = (150, 60), 4.0


# --------------------------------------------------------------------------- builders
def _curves(n: int, k: int = K, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cc = 200.0 + rng.normal(0, 5, (n, 1)) + np.linspace(0, 10, k)[None]
    sc = 80.0 + 20 * np.sin(np.linspace(0, np.pi, k))[None] + rng.normal(0, 3, (n, 1))
    v = np.stack([cc - 15, cc, cc + 15, sc - 12, sc, sc + 12], axis=1)
    ext = np.tile([20.0, 460.0], (n, 1)) + rng.normal(0, 2, (n, 1))
    return v, ext


def _set(pred: dict, values: np.ndarray, extent: np.ndarray, *, name: str = "test") -> ev.EvalSet:
    n = len(values)
    ids = np.array([f"S{i:05d}" for i in range(n)])
    t = TargetSet(ids, np.array(["test"] * n), values, extent, np.zeros(n), np.full(values.shape, np.nan),
                  np.full((n, 2), np.nan))
    p = Predictions(ids, {m: v for m, (v, _) in pred.items()}, {m: e for m, (_, e) in pred.items()})
    align = pd.DataFrame({"subject_id": ids, "theta_deg": 0.0, "tx_mm": 0.0, "ty_mm": 0.0})
    man = pd.DataFrame({"subject_id": ids, "split": "test", "dxa_path": "", "seg_path": "", "truth_path": ""})
    return ev.eval_set(t, p, align, man, name=name)


def _shifted(values: np.ndarray, coronal_mm: float = 0.0, sagittal_mm: float = 0.0) -> np.ndarray:
    out = values.copy()
    out[:, :3] += coronal_mm
    out[:, 3:] += sagittal_mm
    return out


# --------------------------------------------------------------------------- stats
def test_summarize_known_values():
    s = ev.summarize(np.arange(1.0, 101.0))
    assert s["mean"] == pytest.approx(50.5) and s["median"] == pytest.approx(50.5)
    assert s["p95"] == pytest.approx(95.05) and s["n"] == 100


def test_paired_bootstrap_contains_true_difference_and_is_seeded():
    rng = np.random.default_rng(3)
    base = rng.gamma(4.0, 2.0, 80)  # subjects differ a lot; the paired difference does not
    a = base + 0.7 + rng.normal(0, 0.3, 80)
    r = ev.paired_bootstrap(a, base, n_boot=2000, seed=1)
    assert r.ci_low < 0.7 < r.ci_high and r.excludes_zero and r.p_two_sided < 0.01
    again = ev.paired_bootstrap(a, base, n_boot=2000, seed=1)
    assert (again.ci_low, again.ci_high) == (r.ci_low, r.ci_high)
    same = ev.paired_bootstrap(base + rng.normal(0, 0.3, 80), base, n_boot=2000, seed=1)
    assert same.ci_low < 0 < same.ci_high and not same.excludes_zero


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30), st.floats(-5, 5))
def test_paired_bootstrap_constant_shift_is_exact(xs, shift):
    a = np.array(xs)
    r = ev.paired_bootstrap(a + shift, a, n_boot=50, seed=0)
    assert r.mean_diff == pytest.approx(shift, abs=1e-9)
    assert r.ci_low == pytest.approx(shift, abs=1e-9) and r.ci_high == pytest.approx(shift, abs=1e-9)


def test_bland_altman_known_values():
    ba = ev.bland_altman([10.0, 20.0, 30.0], [12.0, 22.0, 35.0])
    assert ba["bias"] == pytest.approx(3.0) and ba["mae"] == pytest.approx(3.0)
    sd = np.std([2.0, 2.0, 5.0], ddof=1)
    assert ba["loa_high"] == pytest.approx(3.0 + 1.96 * sd)


@pytest.mark.parametrize("args, kwargs, exc", [
    (([1.0, np.nan], [1.0, 2.0]), {}, NonFiniteError),
    (([1.0, 2.0], [1.0, 2.0, 3.0]), {}, ShapeError),
    (([1.0, 2.0], [1.0, 2.0]), {"n_boot": 5}, InvalidArgumentError),
    (([1.0, 2.0], [1.0, 2.0]), {"level": 1.5}, InvalidArgumentError),
    (([[1.0, 2.0]], [[1.0, 2.0]]), {}, ShapeError),
])
def test_paired_bootstrap_bad_inputs(args, kwargs, exc):
    with pytest.raises(exc):
        ev.paired_bootstrap(*args, **kwargs)


# --------------------------------------------------------------------------- 2D curves
def test_identical_predictions_have_zero_error():
    v, e = _curves(5)
    es = _set({"resnet_bot": (v, e), "resnet": (v, e)}, v, e)
    tab = ev.curve_error_table(es, np.full(5, 2.2))
    assert len(tab) == 5 * 2 * 6 and np.all(tab["mae_mm"] == 0) and np.all(tab["mae_px"] == 0)
    summ = ev.curve_error_summary(es, np.full(5, 2.2))
    assert np.all(summ[["mean_mm", "median_mm", "p95_mm"]].to_numpy() == 0)
    block = ev.curve_metrics_block(tab)["models"]
    assert list(block) == ["resnet", "resnet_bot"]  # library order
    assert all(v == 0 for v in block["resnet_bot"]["curve_mae_mm"].values())


def test_shifted_prediction_has_known_error():
    v, e = _curves(6)
    px = np.array([2.0, 2.0, 4.0, 4.0, 2.0, 2.0])
    es = _set({"resnet_bot": (_shifted(v, coronal_mm=3.0, sagittal_mm=-1.5), e), "resnet": (v, e)}, v, e)
    tab = ev.curve_error_table(es, px)
    bot = tab[tab["model"] == "resnet_bot"].groupby("curve")[["mae_mm", "mae_px"]].mean()
    assert bot.loc["coronal_left", "mae_mm"] == pytest.approx(3.0)
    assert bot.loc["sagittal_centre", "mae_mm"] == pytest.approx(1.5)
    assert bot.loc["coronal_centre", "mae_px"] == pytest.approx(np.mean(3.0 / px))
    block = ev.curve_metrics_block(tab)["models"]["resnet_bot"]
    assert block["curve_mae_mm_mean"] == pytest.approx(2.25)
    summ = ev.curve_error_summary(es, px).set_index(["model", "curve"])
    assert summ.loc[("resnet_bot", "all"), "mean_mm"] == pytest.approx(2.25)
    assert summ.loc[("resnet_bot", "coronal_right"), "p95_mm"] == pytest.approx(3.0)
    levels = ev.level_error_table(es)
    assert len(levels) == 2 * 6 * K
    assert np.allclose(levels[(levels["model"] == "resnet_bot") & (levels["curve"] == "coronal_left")]["mae_mm"], 3.0)
    cmp = ev.compare_models(tab, "resnet_bot", "resnet", n_boot=100, seed=0).set_index("curve")
    assert cmp.loc["all", "mean_diff"] == pytest.approx(2.25) and bool(cmp.loc["all", "excludes_zero"])


def test_hardest_region_and_picked_subjects():
    v, e = _curves(4)
    p = v.copy()
    p[:, 3:, K // 2:] += 5.0  # sagittal error in the lower half only
    p[2, :3] += 10.0  # subject 2 is the worst
    es = _set({"resnet_bot": (p, e)}, v, e)
    hard = ev.hardest_region(ev.level_error_table(es), "resnet_bot", ["sagittal_centre"])
    assert hard["level_fraction"] >= 0.5 and hard["mae_mm"] == pytest.approx(5.0)
    assert hard["thoracic_mae_mm"] < hard["lumbar_mae_mm"]
    picked = ev.pick_subjects(ev.curve_error_table(es, np.ones(4)), "resnet_bot")
    assert picked["worst"] == "S00002" and picked["typical"] != "S00002"


def test_curve_bad_inputs():
    v, e = _curves(3)
    es = _set({"resnet_bot": (v, e)}, v, e)
    with pytest.raises(ShapeError):
        ev.curve_error_table(es, np.ones(2))
    with pytest.raises(InvalidArgumentError):
        ev.curve_error_table(es, np.array([1.0, -1.0, 1.0]))
    with pytest.raises(InvalidArgumentError):
        ev.compare_models(ev.curve_error_table(es, np.ones(3)), "resnet_bot", "resnet", n_boot=100, seed=0)
    with pytest.raises(InvalidArgumentError):
        ev.curve_metrics_block(pd.DataFrame({"model": ["a"]}))


def test_eval_set_lines_up_subjects_and_rejects_mismatch():
    v, e = _curves(4)
    ids = np.array([f"S{i:05d}" for i in range(4)])
    t = TargetSet(ids, np.array(["test"] * 4), v, e, np.zeros(4), np.full(v.shape, np.nan), np.full((4, 2), np.nan))
    order = [2, 0]
    p = Predictions(ids[order], {"resnet_bot": v[order]}, {"resnet_bot": e[order]})
    align = pd.DataFrame({"subject_id": ids, "theta_deg": [0.0, 1.0, 2.0, 3.0], "tx_mm": 0.0, "ty_mm": 0.0})
    man = pd.DataFrame({"subject_id": ids, "split": "test", "seg_path": "", "dxa_path": ""})
    es = ev.eval_set(t, p, align, man)
    assert list(es.subject_id) == ["S00002", "S00000"] and es.transform(0).theta_deg == 2.0
    assert np.array_equal(es.targets.values[0], v[2])
    bad = Predictions(np.array(["S00009"]), {"resnet_bot": v[:1]}, {"resnet_bot": e[:1]})
    with pytest.raises(InvalidArgumentError, match="no targets"):
        ev.eval_set(t, bad, align, man)
    with pytest.raises(InvalidArgumentError, match="alignment"):
        ev.eval_set(t, p, align.iloc[:1], man)


def test_missing_run_files(tmp_path):
    man = pd.DataFrame({"subject_id": ["S00000"]})
    with pytest.raises(MissingFileError):
        ev.test_set(tmp_path, man)
    with pytest.raises(MissingFileError):
        ev.shifted_set(tmp_path, tmp_path / "nope.csv", TargetConfig.from_profile(get_profile("smoke")))
    with pytest.raises(InvalidArgumentError, match="TargetConfig"):
        ev.shifted_set(tmp_path, tmp_path / "nope.csv", get_profile("smoke"))


# --------------------------------------------------------------------------- 3D
def _box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_mask_scores_identity_and_shift():
    g = Grid3D((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (30, 20, 20))
    a = _box(g.shape, (5, 5, 5), (15, 15, 15))
    s = ev.mask_scores(a, a, g, boundary_mm=10.0)
    assert s["iou_3d"] == 1.0 and s["dice_3d"] == 1.0 and s["hd95_mm"] == 0.0 and s["msd_mm"] == 0.0
    assert s["iou_3d_thoracic"] == 1.0 and s["iou_3d_lumbar"] == 1.0
    b = _box(g.shape, (10, 5, 5), (20, 15, 15))
    s = ev.mask_scores(a, b, g, boundary_mm=100.0)
    assert s["iou_3d"] == pytest.approx(1 / 3) and s["dice_3d"] == pytest.approx(0.5)
    assert s["volume_ml"] == pytest.approx(1.0) and np.isnan(s["iou_3d_lumbar"])
    e = ev.mask_scores(a, np.zeros_like(a), g, boundary_mm=10.0)
    assert e["iou_3d"] == 0.0 and np.isnan(e["hd95_mm"])
    with pytest.raises(EmptySegmentationError):
        ev.mask_scores(np.zeros_like(a), a, g, boundary_mm=10.0)


@pytest.fixture(scope="module")
def column_subject(tmp_path_factory):
    """A cylinder spine column (T1 top .. L5 bottom) in a 2 mm label volume, and a DXA whose
    frame coincides with the MRI (identity transform, table at y = 0)."""
    root = tmp_path_factory.mktemp("column")
    shape = (40, 30, 150)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-39.0, 1.0, -149.0]
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    x, y, z = (aff[a, a] * idx + aff[a, 3] for a, idx in enumerate((i, j, k)))
    inside = (x ** 2 + (y - 30.0) ** 2 <= 12.0 ** 2) & (np.abs(z) < 120.0)
    band = np.clip(((120.0 - z) / (240.0 / 17)).astype(int), 0, 16)
    seg = np.where(inside, band + 1, 0).astype(np.uint8)
    seg[inside & (np.abs(((120.0 - z) % (240.0 / 17))) < 2.0) & (band > 0)] = DISC_LABEL
    seg_path = write_nifti(root / "seg.nii.gz", seg, aff, dtype=np.uint8)
    dxa_path = write_dxa(root / "dxa.npz", np.ones(DXA_SHAPE), np.ones(DXA_SHAPE), DXA_MM)
    target = column_curves(seg, aff, SubjectFrame(IDENTITY, DXA_SHAPE, (DXA_MM, DXA_MM), 0.0), K)
    boundary_z = 120.0 - 12 * 240.0 / 17
    return {"seg_path": str(seg_path), "dxa_path": str(dxa_path), "target": target,
            "boundary_row_mm": DXA_MM * (DXA_SHAPE[0] - 1) / 2.0 - boundary_z}


def _job(subj, preds):
    job = ev.subject_job("S00000", subj["seg_path"], subj["dxa_path"], PlanarTransform(0.0, 0.0, 0.0), 0.0,
                         (subj["target"].values, subj["target"].extent_mm),
                         {m: (c.values, c.extent_mm) for m, c in preds.items()}, grid_mm=2.0)
    assert job["transform"] == (0.0, 0.0, 0.0) and job["allow_pickle"] is False and job["grid_mm"] == 2.0
    return job


def test_evaluate_subject_known_answers(column_subject):
    t = column_subject["target"]
    moved = t.values.copy()
    moved[:3] += 4.0
    rows = {r["model"]: r for r in ev.evaluate_subject(_job(column_subject, {
        "resnet_bot": t, "resnet": SpineCurves(moved, t.extent_mm)}))}
    assert set(rows) == {"resnet_bot", "resnet", ev.CEILING}
    assert rows["resnet_bot"]["centerline_3d_mm"] == pytest.approx(0.0)
    assert rows["resnet"]["centerline_3d_mm"] == pytest.approx(4.0)
    assert rows["resnet_bot"]["iou_3d"] == pytest.approx(rows[ev.CEILING]["iou_3d"])
    assert rows[ev.CEILING]["iou_3d"] > 0.8  # a cylinder is nearly an ellipse per level
    assert rows["resnet"]["iou_3d"] < rows["resnet_bot"]["iou_3d"]
    assert rows["resnet_bot"]["region_boundary_mm"] == pytest.approx(column_subject["boundary_row_mm"], abs=2.5)
    assert rows["resnet_bot"]["true_volume_ml"] == pytest.approx(np.pi * 12 ** 2 * 240 / 1000, rel=0.1)


def test_evaluate_3d_parallel_equals_serial_and_block(column_subject):
    t = column_subject["target"]
    n = 2
    v = np.stack([t.values] * n)
    e = np.stack([t.extent_mm] * n)
    es = _set({"resnet_bot": (v, e), "mean_shape": (_shifted(v, coronal_mm=2.0), e)}, v, e)
    man = es.manifest.assign(seg_path=column_subject["seg_path"], dxa_path=column_subject["dxa_path"])
    es = ev.EvalSet("test", es.targets, es.predictions, es.alignment, man)
    serial = ev.evaluate_3d(es, grid_mm=2.0, jobs=1, progress=False)
    parallel = ev.evaluate_3d(es, grid_mm=2.0, jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(dict.fromkeys(serial["model"])) == ["mean_shape", "resnet_bot", ev.CEILING]
    block = ev.reconstruction_metrics_block(serial)
    assert block["models"]["mean_shape"]["centerline_3d_mm"] == pytest.approx(2.0)
    assert set(block["ceiling"]) == {"iou_3d", "dice_3d", "hd95_mm", "msd_mm", "n_empty_masks"}
    assert 0.0 <= block["models"]["resnet_bot"]["iou_3d"] <= 1.0
    regions = ev.region_table(serial)
    assert set(regions["region"]) == {"thoracic", "lumbar"}
    cmp = ev.paper_comparison(block)
    assert cmp.iloc[-1]["iou_3d_pct"] == pytest.approx(83.8)
    with pytest.raises(InvalidArgumentError):
        ev.evaluate_3d(es, grid_mm=0.0)
    with pytest.raises(InvalidArgumentError):
        ev.evaluate_3d(es, grid_mm=2.0, jobs=0)


# --------------------------------------------------------------------------- clinical
def test_severity_bins_and_classification():
    labels = ev.severity_bins(np.array([0.0, 9.99, 10.0, 19.9, 20.0, 29.9, 30.0, 60.0]))
    assert list(labels) == [ev.SEVERITY_LABELS[i] for i in (0, 0, 1, 1, 2, 2, 3, 3)]
    with pytest.raises(InvalidArgumentError):
        ev.severity_bins(np.array([np.nan]))
    angles = pd.DataFrame({"subject_id": ["a", "b", "c", "d"], "model": "resnet_bot", "angle": "cobb",
                           "predicted_deg": [12.0, 14.0, 5.0, 3.0], "target_deg": [6.0, 16.0, 29.0, 7.0],
                           "truth_deg": np.nan, "reference_cobb_deg": [5.0, 15.0, 30.0, 8.0]})
    c = ev.scoliosis_classification(angles).set_index("model")
    assert c.loc["resnet_bot", "accuracy"] == 0.5 and c.loc["resnet_bot", "sensitivity"] == 0.5
    assert c.loc["resnet_bot", "specificity"] == 0.5 and c.loc[ev.TARGET_CURVES, "accuracy"] == 1.0


def test_angle_table_straight_spine_and_errors():
    k = 32
    v = np.tile(np.array([[185.0], [200.0], [215.0], [68.0], [80.0], [92.0]]), (1, k))[None].repeat(3, 0)
    e = np.tile([20.0, 460.0], (3, 1))
    bent = v.copy()
    bent[:, :3] += 30.0 * np.sin(np.linspace(0, np.pi, k))  # a C curve: a clear Cobb angle
    es = _set({"resnet_bot": (bent, e), "mean_shape": (v, e)}, v, e)
    truth = pd.DataFrame({"subject_id": es.subject_id, "cobb_deg": [1.0, 2.0, np.nan],
                          "kyphosis_deg": 0.0, "lordosis_deg": 0.0})
    a = ev.angle_table(es, truth)
    assert len(a) == 3 * 2 * 3
    flat = a[a["model"] == "mean_shape"]
    assert np.allclose(flat["predicted_deg"], 0.0, atol=1e-6) and np.allclose(flat["target_deg"], 0.0, atol=1e-6)
    cobb = a[(a["model"] == "resnet_bot") & (a["angle"] == "cobb")]
    assert np.all(cobb["predicted_deg"] > 10.0)
    ref = ev.reference_cobb(a).set_index("subject_id")["reference_cobb_deg"]
    assert list(ref) == [1.0, 2.0, 0.0]  # truth where known, else the target curves'
    err = ev.angle_error_summary(a)
    row = err[(err["model"] == "mean_shape") & (err["angle"] == "cobb") & (err["reference"] == "target")]
    assert row["mae_deg"].item() == pytest.approx(0.0, abs=1e-6)
    assert err[(err["model"] == ev.TARGET_CURVES) & (err["angle"] == "cobb")]["n"].item() == 2
    block = ev.reconstruction_metrics_block(
        pd.DataFrame({"subject_id": ["S00000"], "model": ["resnet_bot"], "iou_3d": [0.5], "dice_3d": [2 / 3],
                      "centerline_3d_mm": [1.0], "hd95_mm": [np.nan], "msd_mm": [np.nan]}),
        err, ev.scoliosis_classification(a))
    bot = block["models"]["resnet_bot"]
    assert "hd95_mm" not in bot and bot["cobb_mae_deg"] > 10.0 and bot["scoliosis_class_accuracy"] == 0.0
    with pytest.raises(InvalidArgumentError):
        ev.angle_table("not a set")
    ce = ev.cobb_errors(a)
    assert list(ce.columns) == ["subject_id", "model", "cobb_abs_error_deg"] and len(ce) == 3 * 2
    got = ce.set_index(["model", "subject_id"])["cobb_abs_error_deg"]
    want = (cobb.set_index("subject_id")["predicted_deg"] - ref).abs()
    np.testing.assert_allclose(got.loc["resnet_bot"].loc[want.index], want)
    np.testing.assert_allclose(got.loc["mean_shape"], [1.0, 2.0, 0.0], atol=1e-6)  # flat spine: |0 - reference|
    with pytest.raises(InvalidArgumentError, match="angle_table"):
        ev.cobb_errors(a.drop(columns="reference_cobb_deg"))


def _cobb_angles(reference, predicted: dict, target) -> pd.DataFrame:
    """angle_table-like Cobb rows: one per (subject, model), plus a kyphosis row that must be ignored."""
    rows = []
    for i, ref in enumerate(reference):
        for m, pred in predicted.items():
            for angle in ("cobb", "kyphosis"):
                rows.append({"subject_id": f"S{i:05d}", "model": m, "angle": angle, "predicted_deg": pred[i],
                             "target_deg": target[i], "truth_deg": ref, "reference_cobb_deg": ref})
    return pd.DataFrame(rows)


def test_large_curve_cobb_known_answers():
    """Only subjects from 20 deg count; the mean absolute error, the bias and the target curves'
    own error are the plain means; constant errors give a zero-width interval."""
    ref = [5.0, 25.0, 40.0, 20.0]
    angles = _cobb_angles(ref, {"resnet_bot": [9.0, 20.0, 33.0, 14.0], "resnet": [5.0, 27.0, 42.0, 22.0]},
                          target=[5.0, 24.0, 38.0, 20.0])
    t = ev.large_curve_cobb(angles, n_boot=200, seed=0).set_index("model")
    assert list(t.index) == ["resnet_bot", "resnet", ev.TARGET_CURVES] and set(t["n"]) == {3}
    assert t.loc["resnet_bot", "mae_deg"] == pytest.approx(6.0) and t.loc["resnet_bot", "bias_deg"] == pytest.approx(-6.0)
    assert 5.0 <= t.loc["resnet_bot", "mae_low_deg"] <= 6.0 <= t.loc["resnet_bot", "mae_high_deg"] <= 7.0
    assert (t.loc["resnet", "mae_low_deg"], t.loc["resnet", "mae_high_deg"]) == pytest.approx((2.0, 2.0))
    assert t.loc[ev.TARGET_CURVES, "bias_deg"] == pytest.approx(-1.0) and t.loc["resnet", "level"] == 0.95
    again = ev.large_curve_cobb(angles.sample(frac=1.0, random_state=1), n_boot=200, seed=0).set_index("model")
    pd.testing.assert_frame_equal(t, again.loc[t.index])  # rows in any order: the same resamples
    assert ev.large_curve_cobb(angles, n_boot=200, from_deg=50.0).empty
    assert ev.large_curve_cobb(angles, n_boot=200, from_deg=30.0).set_index("model").loc["resnet_bot", "n"] == 1


@settings(max_examples=30, deadline=None)
@given(errors=st.lists(st.floats(-30, 30), min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_large_curve_cobb_interval_lies_within_the_errors(errors, seed):
    ref = [30.0] * len(errors)
    angles = _cobb_angles(ref, {"resnet_bot": [30.0 + e for e in errors]}, target=ref)
    r = ev.large_curve_cobb(angles, n_boot=50, seed=seed).set_index("model").loc["resnet_bot"]
    a = np.abs(errors)
    assert a.min() - 1e-9 <= r["mae_low_deg"] <= r["mae_high_deg"] <= a.max() + 1e-9


@pytest.mark.parametrize("kwargs, match", [
    ({"n_boot": 5}, "n_boot"), ({"n_boot": 100, "level": 1.5}, "level"),
    ({"n_boot": 100, "from_deg": float("nan")}, "from_deg"), ({"n_boot": 100, "from_deg": "20"}, "from_deg"),
])
def test_large_curve_cobb_bad_arguments(kwargs, match):
    angles = _cobb_angles([25.0], {"resnet_bot": [20.0]}, target=[25.0])
    with pytest.raises(InvalidArgumentError, match=match):
        ev.large_curve_cobb(angles, **kwargs)
    with pytest.raises(InvalidArgumentError, match="angle_table"):
        ev.large_curve_cobb(angles.drop(columns="reference_cobb_deg"), n_boot=100)


@pytest.mark.parametrize("column", ["predicted_deg", "target_deg"])
def test_large_curve_cobb_refuses_a_non_finite_angle(column):
    angles = _cobb_angles([25.0, 30.0], {"resnet_bot": [20.0, 28.0], "resnet": [24.0, 31.0]}, target=[25.0, 30.0])
    angles.loc[(angles["model"] == "resnet") & (angles["subject_id"] == "S00001") & (angles["angle"] == "cobb"),
               column] = np.nan
    with pytest.raises(NonFiniteError, match=r"\('resnet', 'S00001'\)"):
        ev.large_curve_cobb(angles, n_boot=100)
    # a NaN outside the large curves does not matter
    angles.loc[angles["angle"] == "kyphosis", "predicted_deg"] = np.nan
    angles.loc[angles[column].isna() & (angles["angle"] == "cobb"), column] = 31.0
    assert len(ev.large_curve_cobb(angles, n_boot=100)) == 3


def test_large_curve_cobb_refuses_a_model_missing_a_large_curve():
    angles = _cobb_angles([25.0, 30.0], {"resnet_bot": [20.0, 28.0], "resnet": [24.0, 31.0]}, target=[25.0, 30.0])
    angles = angles[~((angles["model"] == "resnet") & (angles["subject_id"] == "S00000"))]
    with pytest.raises(InvalidArgumentError, match="'resnet' has no Cobb angle for \\['S00000'\\]"):
        ev.large_curve_cobb(angles, n_boot=100)


def test_group_summary_orders_and_counts():
    t = pd.DataFrame({"subject_id": ["a", "b", "c"] * 2, "model": ["m1"] * 3 + ["m2"] * 3,
                      "iou_3d": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    g = pd.DataFrame({"subject_id": ["a", "b", "c"], "severity": ["mild", "none", "mild"]})
    out = ev.group_summary(t, g, by="severity", metrics=["iou_3d"], order=["none", "mild"])
    assert list(out["severity"]) == ["none", "mild", "none", "mild"]
    assert out.iloc[1]["iou_3d"] == pytest.approx(0.2) and out.iloc[1]["n_subjects"] == 2
    with pytest.raises(InvalidArgumentError):
        ev.group_summary(t, g, by="severity", metrics=["dice_3d"])


# --------------------------------------------------------------------------- figures
def test_figures_render_and_save(tmp_path):
    v, e = _curves(4)
    es = _set({"resnet_bot": (_shifted(v, 2.0), e), "resnet": (v, e)}, v, e)
    tab = ev.curve_error_table(es, np.ones(4))
    figs = [vz.plot_level_errors(ev.level_error_table(es)),
            vz.plot_curves_comparison(es.targets.curves(0), {"resnet_bot": es.predictions.curves("resnet_bot", 0)}),
            vz.plot_paired(tab, "resnet_bot", "resnet", ci=(1.0, 0.5, 1.5))]
    angles = ev.angle_table(es)
    figs.append(vz.plot_bland_altman(angles, angle="cobb"))
    figs.append(vz.plot_metric_boxes(tab, ["mae_mm"], reference={"mae_mm": 1.0}))
    for k, f in enumerate(figs):
        assert save_png(f, tmp_path / f"f{k}.png").stat().st_size > 1000
    with pytest.raises(InvalidArgumentError):
        save_png(figs[0], tmp_path / "f.pdf")
    with pytest.raises(InvalidArgumentError):
        vz.plot_bland_altman(angles, angle="cobb", reference="other")


# --------------------------------------------------------------------------- empty masks, centrelines
def test_empty_predicted_mask_is_a_counted_failure(column_subject, monkeypatch):
    from spinelib.evaluate import volume3d

    t = column_subject["target"]
    broken = SpineCurves(t.values + 1e-3, t.extent_mm)  # a model whose reconstruction fails
    real = volume3d.ellipse_mask

    def mask(curves, grid):
        out = real(curves, grid)
        return np.zeros_like(out) if np.allclose(curves.values, broken.values) else out

    monkeypatch.setattr(volume3d, "ellipse_mask", mask)
    rows = {r["model"]: r for r in ev.evaluate_subject(_job(column_subject, {"resnet": broken, "resnet_bot": t}))}
    assert rows["resnet"]["empty_mask"] and rows["resnet"]["iou_3d"] == 0.0 and np.isnan(rows["resnet"]["hd95_mm"])
    assert not rows["resnet_bot"]["empty_mask"] and np.isfinite(rows["resnet_bot"]["hd95_mm"])
    table = pd.DataFrame([rows["resnet"], rows["resnet_bot"], {**rows["resnet_bot"], "subject_id": "S00001"}])
    block = ev.reconstruction_metrics_block(table)["models"]
    # counted and reported, not skipped: IoU 0 enters the mean, the failure is counted
    assert block["resnet"]["n_empty_masks"] == 1 and block["resnet"]["iou_3d"] == 0.0
    assert "hd95_mm" not in block["resnet"] and block["resnet_bot"]["n_empty_masks"] == 0
    listed = ev.empty_mask_table(table)
    assert listed.to_dict("records") == [{"model": "resnet", "subject_id": "S00000"}]
    with pytest.raises(InvalidArgumentError):
        ev.empty_mask_table(table.drop(columns="empty_mask"))


def test_same_row_and_extent_columns_of_the_3d_scores(column_subject):
    t = column_subject["target"]
    down = SpineCurves(t.values, t.extent_mm + 12.0)  # the same column placed 12 mm lower
    rows = {r["model"]: r for r in ev.evaluate_subject(_job(column_subject, {"resnet": down}))}
    r = rows["resnet"]
    assert r["extent_top_mm"] == pytest.approx(12.0) and r["extent_bottom_mm"] == pytest.approx(12.0)
    assert r["centerline_3d_mm"] == pytest.approx(12.0)
    # a straight cylinder: at the same rows the two centrelines coincide
    assert r["centerline_3d_same_row_mm"] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(rows[ev.CEILING]["centerline_3d_same_row_mm"])
    cmp = ev.paper_comparison(ev.reconstruction_metrics_block(pd.DataFrame([r])))
    paper = cmp[cmp["source"] != "this run"].iloc[0]
    assert paper["centerline_3d_same_row_mm"] == ev.PAPER_RESULTS["centerline_3d_mm"]
    assert np.isnan(paper["centerline_3d_mm"])


def test_error_parts_floor_rows_known_answers(column_subject):
    """The hidden-depth part: a prediction 6 mm too deep and offsets of +6 mm make the floor's
    sagittal centre the prediction's own (that row equals the prediction as it is), and the AP
    reader, the target moved 6 mm, misses by exactly 6 mm at the same rows; zero offsets make
    the reader the target itself (the ceiling's IoU)."""
    t = column_subject["target"]
    v, e = t.values[None].copy(), t.extent_mm[None].copy()
    es = _set({"resnet_bot": (_shifted(v, sagittal_mm=6.0), e)}, v, e)
    es = ev.EvalSet("test", es.targets, es.predictions, es.alignment,
                    es.manifest.assign(seg_path=column_subject["seg_path"], dxa_path=column_subject["dxa_path"]))
    scores = ev.evaluate_3d(es, grid_mm=2.0, jobs=1, progress=False)
    ceiling = scores.loc[scores["model"] == ev.CEILING, "iou_3d"].mean()
    six = EP.error_decomposition(es, scores, ["resnet_bot"], grid_mm=2.0, hidden_offset_mm=np.full((1, K), 6.0),
                                 progress=False).set_index(["model", "part"])
    assert list(six.index) == [("resnet_bot", p) for p in (EP.AS_PREDICTED, *EP.PARTS, EP.FLOOR_PART)] + \
        [(EP.AP_READER, EP.FLOOR_PART)]
    for k in ("iou_3d", "centerline_3d_same_row_mm"):
        assert six.loc[("resnet_bot", EP.FLOOR_PART), k] == pytest.approx(six.loc[("resnet_bot", EP.AS_PREDICTED), k])
    assert six.loc[(EP.AP_READER, EP.FLOOR_PART), "centerline_3d_same_row_mm"] == pytest.approx(6.0)
    assert np.isnan(six.loc[(EP.AP_READER, EP.FLOOR_PART), "gap_closed"])
    block = EP.error_parts_block(six.reset_index())
    assert block[EP.AP_READER][EP.FLOOR_PART] == {  # the reader's share of a gap is no number: left out
        "iou_3d": pytest.approx(six.loc[(EP.AP_READER, EP.FLOOR_PART), "iou_3d"]), "centerline_3d_same_row_mm": 6.0}
    zero = EP.error_decomposition(es, scores, ["resnet_bot"], grid_mm=2.0, parts=["extent"],
                                  hidden_offset_mm=np.zeros((1, K)), progress=False).set_index(["model", "part"])
    assert zero.loc[(EP.AP_READER, EP.FLOOR_PART), "iou_3d"] == pytest.approx(ceiling)
    assert zero.loc[("resnet_bot", EP.FLOOR_PART), "gap_closed"] == pytest.approx(1.0)
    sentence = EP.hidden_depth_sentence(six.reset_index(), np.full((1, K), 6.0))
    assert "by 6.00 mm on average" in sentence and f"{100 * six.loc[(EP.AP_READER, EP.FLOOR_PART), 'iou_3d']:.1f} %" in sentence
    assert "no generator truth" in EP.hidden_depth_sentence(six.reset_index(), None)
    with pytest.raises(InvalidArgumentError, match="rows"):
        EP.hidden_depth_sentence(six.reset_index(), np.full((1, K), 6.0), model="resnet")
    with pytest.raises(ShapeError, match="hidden_offset_mm"):
        EP.error_decomposition(es, scores, ["resnet_bot"], grid_mm=2.0, hidden_offset_mm=np.zeros((1, K + 1)))
    with pytest.raises(NonFiniteError, match="hidden_offset_mm"):
        EP.error_decomposition(es, scores, ["resnet_bot"], grid_mm=2.0, hidden_offset_mm=np.full((1, K), np.nan))


def test_hidden_depth_offsets_of_a_synthetic_cohort(tmp_path):
    """Each subject's offsets are its generator truth's, in the set's order, whatever the workers;
    a set that is not against the DXA-session truth, or whose subject has no truth file or a
    foreign one, is refused naming it."""
    import json

    from spinelib.errors import SubjectsFailedError
    from spinelib.io import read_manifest
    from spinelib.synth.cohort import generate_cohort
    from spinelib.synth.config import SynthConfig
    from spinelib.synth.hidden import hidden_depth_offset

    generate_cohort(tmp_path, SynthConfig.from_profile(get_profile("smoke", {"n_subjects": 3})), jobs=1, progress=False)
    man = read_manifest(tmp_path / "manifest.csv")
    v, e = _curves(3)
    es = _set({"resnet_bot": (v, e)}, v, e)
    es = ev.EvalSet("test", es.targets, es.predictions, es.alignment,
                    es.manifest.assign(truth_path=list(man["truth_path"][::-1])), reference="truth")
    serial = ev.hidden_depth_offsets(es, n_draws=5, seed=2, jobs=1, progress=False)
    assert serial.shape == (3, K)
    np.testing.assert_array_equal(serial, ev.hidden_depth_offsets(es, n_draws=5, seed=2, jobs=2, progress=False))
    for row, path in zip(serial, es.manifest["truth_path"]):
        np.testing.assert_array_equal(row, hidden_depth_offset(json.loads(open(path).read()), K, n_draws=5, seed=2))
    with pytest.raises(InvalidArgumentError, match="'estimated' reference"):
        ev.hidden_depth_offsets(ev.EvalSet("test", es.targets, es.predictions, es.alignment, es.manifest), n_draws=5)
    no_truth = es.manifest.assign(truth_path=["", *es.manifest["truth_path"][1:]])
    with pytest.raises(InvalidArgumentError, match="S00000"):
        ev.hidden_depth_offsets(ev.EvalSet("test", es.targets, es.predictions, es.alignment, no_truth,
                                           reference="truth"), n_draws=5)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"subject_id": "S00001", "transform": {}}))
    bad = es.manifest.assign(truth_path=[es.manifest["truth_path"][0], str(foreign), es.manifest["truth_path"][2]])
    with pytest.raises(SubjectsFailedError, match="S00001.*signature"):
        ev.hidden_depth_offsets(ev.EvalSet("test", es.targets, es.predictions, es.alignment, bad, reference="truth"),
                                n_draws=5, progress=False)
    with pytest.raises(InvalidArgumentError, match="n_draws"):
        ev.hidden_depth_offsets(es, n_draws=0)
    with pytest.raises(InvalidArgumentError, match="EvalSet"):
        ev.hidden_depth_offsets(es.manifest, n_draws=5)


# --------------------------------------------------------------------------- references and coverage
def _write_truth(folder, sid: str, theta: float, seg_dxa: str | None) -> str:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    rec = {"subject_id": sid, "transform": {"theta_deg": theta, "tx_mm": 1.0, "ty_mm": 2.0}}
    if seg_dxa is not None:
        rec["dxa_session_seg"] = seg_dxa
    (folder / "truth.json").write_text(json.dumps(rec))
    return str(folder / "truth.json")


def test_truth_reference_frame_uses_true_transform_and_dxa_session_seg(tmp_path):
    v, e = _curves(2)
    ids = np.array(["S00000", "S00001"])
    (tmp_path / "S00000").mkdir()
    (tmp_path / "S00000" / "seg_dxa.nii.gz").write_bytes(b"x")
    truth = [_write_truth(tmp_path / "S00000", "S00000", 3.0, "seg_dxa.nii.gz"),
             _write_truth(tmp_path / "S00001", "S00001", -2.0, None)]
    t = TargetSet(ids, np.array(["test"] * 2), v, e, np.zeros(2), v, e,
                  anatomy=np.array(["dxa_session", "mri_session"]))
    p = Predictions(ids, {"resnet_bot": v}, {"resnet_bot": e})
    align = pd.DataFrame({"subject_id": ids, "theta_deg": [0.5, np.nan], "tx_mm": 0.0, "ty_mm": 0.0})
    man = pd.DataFrame({"subject_id": ids, "split": "test", "dxa_path": "", "seg_path": ["a.nii.gz", "b.nii.gz"],
                        "truth_path": truth})
    es = ev.eval_set(t, p, align, man, reference="truth", n_test=3)
    assert es.transform(0).theta_deg == 3.0 and es.transform(1).theta_deg == -2.0
    assert es.frame["seg_path"].tolist() == [str(tmp_path / "S00000" / "seg_dxa.nii.gz"), "b.nii.gz"]
    blk = ev.evaluation_block(es)
    assert blk["n_evaluated"] == 2 and blk["n_test"] == 3 and blk["n_dxa_session_anatomy"] == 1
    assert ev.coverage_sentence(es).startswith("evaluated 2 of 3 test subjects, against targets made with the true")
    counted = ev.with_counts({"resnet_bot": {"iou_3d": 0.5}}, es)
    assert counted == {"resnet_bot": {"iou_3d": 0.5, "n_evaluated": 2, "n_test": 3}}
    est = ev.eval_set(t, p, align, man)  # estimated: the alignment's transform, seg.nii.gz
    assert est.transform(0).theta_deg == 0.5 and est.frame["seg_path"].tolist() == ["a.nii.gz", "b.nii.gz"]
    assert "as the paper measures (the cohort has no ground truth)" in ev.coverage_sentence(est, no_truth=True)
    (tmp_path / "S00000" / "seg_dxa.nii.gz").unlink()
    with pytest.raises(MissingFileError, match="DXA-session"):
        ev.eval_set(t, p, align, man, reference="truth")
    with pytest.raises(InvalidArgumentError, match="truth file"):
        ev.eval_set(t, p, align, man.assign(truth_path=""), reference="truth")
    with pytest.raises(InvalidArgumentError, match="reference"):
        ev.eval_set(t, p, align, man, reference="paper")


def test_test_set_headline_counts_every_predicted_test_subject(tmp_path):
    from spinelib.study.prediction import write_predictions
    from spinelib.study.targets import TRUTH_TARGETS_FILE, write_targets

    v, e = _curves(3)
    ids = np.array(["S00000", "S00001", "S00002"])
    truth = [_write_truth(tmp_path / s, s, 1.0, None) for s in ids]
    man = pd.DataFrame({"subject_id": ids, "split": "test", "dxa_path": "", "seg_path": "s.nii.gz",
                        "truth_path": truth})
    # S00000 trusted; S00001 alignment rejected (truth targets only); S00002's DXA does not load
    est = TargetSet(ids[:1], np.array(["test"]), v[:1], e[:1], np.zeros(1), v[:1], e[:1])
    tru = TargetSet(ids, np.array(["test"] * 3), v, e, np.zeros(3), v, e)
    write_targets(tmp_path / "targets.npz", est)
    write_predictions(tmp_path / "predictions_test.npz",
                      Predictions(ids[:2], {"resnet_bot": v[:2]}, {"resnet_bot": e[:2]}))
    (tmp_path / "tables").mkdir()
    pd.DataFrame({"subject_id": ids, "split": "test", "theta_deg": [0.0, np.nan, np.nan], "tx_mm": 0.0,
                  "ty_mm": 0.0, "trusted": [True, False, False],
                  "reason": ["", "score below threshold", "load failed"]}).to_csv(tmp_path / "tables" / "alignment.csv",
                                                                                   index=False)
    # no truth targets yet: the headline is the paper's way
    assert ev.test_set(tmp_path, man).reference == "estimated"
    write_targets(tmp_path / TRUTH_TARGETS_FILE, tru)
    head = ev.test_set(tmp_path, man)
    assert head.reference == "truth" and list(head.subject_id) == ["S00000", "S00001"]
    assert (head.n_evaluated, head.n_test) == (2, 3)
    assert head.not_evaluated.to_dict("records") == [
        {"subject_id": "S00002", "reason": "not predicted (its DXA does not load)"}]
    paper = ev.test_set(tmp_path, man, reference="estimated")
    assert list(paper.subject_id) == ["S00000"] and paper.n_test == 3
    assert paper.not_evaluated.set_index("subject_id").loc["S00001", "reason"].startswith("alignment not trusted")
    with pytest.raises(InvalidArgumentError, match="reference"):
        ev.test_set(tmp_path, man, reference="both")


def test_split_set_reads_the_validation_predictions(tmp_path):
    from spinelib.errors import MissingFileError
    from spinelib.study.prediction import write_predictions
    from spinelib.study.targets import TRUTH_TARGETS_FILE, write_targets

    v, e = _curves(4)
    ids = np.array(["S00000", "S00001", "S00002", "S00003"])
    split = np.array(["val", "val", "val", "test"])
    man = pd.DataFrame({"subject_id": ids, "split": split, "dxa_path": "", "seg_path": "s.nii.gz", "truth_path": ""})
    # S00002's alignment was rejected: it has no estimated targets
    keep = [0, 1, 3]
    write_targets(tmp_path / "targets.npz", TargetSet(ids[keep], split[keep], v[keep], e[keep], np.zeros(3),
                                                      v[keep], e[keep]))
    write_targets(tmp_path / TRUTH_TARGETS_FILE, TargetSet(ids[3:], split[3:], v[3:], e[3:], np.zeros(1), v[3:], e[3:]))
    (tmp_path / "tables").mkdir()
    pd.DataFrame({"subject_id": ids, "split": split, "theta_deg": [0.0, 0.0, np.nan, 0.0], "tx_mm": 0.0,
                  "ty_mm": 0.0, "trusted": [True, True, False, True],
                  "reason": ["", "", "score below threshold", ""]}).to_csv(tmp_path / "tables" / "alignment.csv",
                                                                           index=False)
    with pytest.raises(MissingFileError, match="predictions_val"):
        ev.split_set(tmp_path, man, "val")
    write_predictions(tmp_path / "predictions_val.npz", Predictions(ids[:3], {"resnet_bot": v[:3]},
                                                                    {"resnet_bot": e[:3]}))
    val = ev.split_set(tmp_path, man, "val")
    # truth targets exist for the test split only, so the validation headline is the estimated one
    assert val.reference == "estimated" and val.name == "val"
    assert list(val.subject_id) == ["S00000", "S00001"] and (val.n_evaluated, val.n_test) == (2, 3)
    assert val.not_evaluated.iloc[0]["reason"].startswith("alignment not trusted")
    with pytest.raises(InvalidArgumentError, match="split"):
        ev.split_set(tmp_path, man, "train")


def test_take_predictions_and_loadable_dxa(tmp_path):
    v, e = _curves(3)
    ids = np.array(["a", "b", "c"])
    p = Predictions(ids, {"m": v}, {"m": e})
    sub = ev.take_predictions(p, ["c", "a"])
    assert list(sub.subject_id) == ["c", "a"] and np.array_equal(sub.values["m"][0], v[2])
    with pytest.raises(InvalidArgumentError, match="no predictions"):
        ev.take_predictions(p, ["z"])
    good = write_dxa(tmp_path / "good.npz", np.ones((20, 10)), np.ones((20, 10)), 2.0)
    (tmp_path / "bad.npz").write_bytes(b"\x00" * 8)
    man = pd.DataFrame({"subject_id": ["a", "b"], "dxa_path": [str(good), str(tmp_path / "bad.npz")]})
    ok, bad = ev.loadable_dxa(man, ["a", "b", "zz"], progress=False)
    assert ok == ["a"] and list(bad["subject_id"]) == ["b", "zz"]
    assert bad.iloc[0]["reason"].startswith("DXA does not load") and bad.iloc[1]["reason"] == "not in the manifest"
    with pytest.raises(InvalidArgumentError):
        ev.loadable_dxa(man.drop(columns="dxa_path"), ["a"])


# --------------------------------------------------------------------------- error parts
from spinelib.evaluate import error_parts as EP  # noqa: E402 - this section's module


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 1000), st.sampled_from(EP.PARTS))
def test_with_true_part_replaces_that_part_only(seed, part):
    pv, pe = _curves(3, seed=seed)
    tv, te = _curves(3, seed=seed + 1)
    before = pv.copy()
    v, e = EP.with_true_part(pv, pe, tv, te, part)
    assert np.array_equal(pv, before)  # the inputs are not changed
    cor, sag = slice(0, 3), slice(3, 6)
    np.testing.assert_array_equal(v[:, cor], (tv if part == "coronal" else pv)[:, cor])
    np.testing.assert_array_equal(e, te if part == "extent" else pe)
    if part == "sagittal_centre":
        np.testing.assert_allclose(v[:, 4], tv[:, 4])
        # the predicted depth of the body moves with the true centre
        np.testing.assert_allclose(v[:, [3, 5]] - v[:, [4]], pv[:, [3, 5]] - pv[:, [4]])
    else:
        np.testing.assert_array_equal(v[:, sag], pv[:, sag])


def test_with_true_part_bad_inputs():
    pv, pe = _curves(2)
    with pytest.raises(InvalidArgumentError, match="part must be one of"):
        EP.with_true_part(pv, pe, pv, pe, "axial")
    with pytest.raises(ShapeError, match="pred_values and true_values"):
        EP.with_true_part(pv, pe, pv[:1], pe, "coronal")
    with pytest.raises(ShapeError, match="pred_extent and true_extent"):
        EP.with_true_part(pv, pe, pv, pe[:, :1], "extent")


def test_error_parts_finds_the_part_at_fault(column_subject):
    """A prediction wrong only in its depth above the table: the sagittal centre closes the
    whole gap to the ceiling, the coronal curves and the extent none of it."""
    t = column_subject["target"]
    v, e = t.values[None].copy(), t.extent_mm[None].copy()
    deep = v.copy()
    deep[:, 3:] += 6.0
    es = _set({"resnet_bot": (deep, e)}, v, e)
    man = es.manifest.assign(seg_path=column_subject["seg_path"], dxa_path=column_subject["dxa_path"])
    es = ev.EvalSet("test", es.targets, es.predictions, es.alignment, man)
    scores = ev.evaluate_3d(es, grid_mm=2.0, jobs=1, progress=False)
    table = EP.error_decomposition(es, scores, ["resnet_bot"], grid_mm=2.0, progress=False).set_index("part")
    assert list(table.index) == [EP.AS_PREDICTED, *EP.PARTS]
    assert table.loc[EP.AS_PREDICTED, "centerline_3d_same_row_mm"] == pytest.approx(6.0)
    assert table.loc["sagittal_centre", "gap_closed"] == pytest.approx(1.0)
    assert table.loc["sagittal_centre", "centerline_3d_same_row_mm"] == pytest.approx(0.0, abs=1e-6)
    for part in ("coronal", "extent"):
        assert table.loc[part, "gap_closed"] == pytest.approx(0.0, abs=1e-9)
    block = EP.error_parts_block(table.reset_index())
    assert list(block) == ["resnet_bot"] and list(block["resnet_bot"]) == [EP.AS_PREDICTED, *EP.PARTS]
    assert block["resnet_bot"]["sagittal_centre"]["gap_closed"] == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError, match="error_decomposition table"):
        EP.error_parts_block(table.drop(columns="gap_closed"))
    with pytest.raises(InvalidArgumentError, match="not predicted"):
        EP.error_decomposition(es, scores, ["resnet"], grid_mm=2.0, progress=False)
    with pytest.raises(InvalidArgumentError, match="ceiling"):
        EP.error_decomposition(es, scores[scores["model"] != ev.CEILING], ["resnet_bot"], grid_mm=2.0, progress=False)
    with pytest.raises(InvalidArgumentError, match="parts must be"):
        EP.error_decomposition(es, scores, ["resnet_bot"], grid_mm=2.0, parts=["axial"], progress=False)
    with pytest.raises(InvalidArgumentError, match="EvalSet"):
        EP.error_decomposition(scores, scores, ["resnet_bot"], grid_mm=2.0)
