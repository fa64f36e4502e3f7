"""spinelib.study.ap_information: cross-validated ridge and the AP image's information by part."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError, ShapeError
from spinelib.profiles import get_profile
from spinelib.study import ap_information as A


def test_cross_validated_ridge_recovers_an_exact_linear_map():
    """Noise-free linear targets: every out-of-fold prediction is the target (the smallest
    penalty wins on validation)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    y = x @ rng.normal(size=(5, 2)) + [3.0, -1.0]
    np.testing.assert_allclose(A.cross_validated_ridge(x, y, folds=4), y, atol=0.05)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), folds=st.integers(2, 6))
def test_cross_validated_ridge_never_sees_the_held_out_row(seed, folds):
    """A row's target never reaches the predictions of its own fold: the ridges that predict
    that fold were fitted, and their penalty chosen, without it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8 * folds, 3))
    y = rng.normal(size=(8 * folds, 1))
    before = A.cross_validated_ridge(x, y, folds=folds)
    y2 = y.copy()
    y2[0] += 1000.0  # row 0 lies in fold 0
    after = A.cross_validated_ridge(x, y2, folds=folds)
    in_fold = np.arange(len(y)) % folds == 0
    np.testing.assert_array_equal(before[in_fold], after[in_fold])


@pytest.mark.parametrize("x, y, folds, error", [
    (np.zeros((20, 2)), np.zeros((19, 1)), 2, ShapeError), (np.zeros(20), np.zeros((20, 1)), 2, ShapeError),
    (np.zeros((7, 2)), np.zeros((7, 1)), 2, ShapeError), (np.zeros((20, 2)), np.zeros((20, 1)), 1, InvalidArgumentError),
    (np.zeros((20, 2)), np.zeros((20, 1)), 2.0, InvalidArgumentError)])
def test_cross_validated_ridge_bad_inputs(x, y, folds, error):
    with pytest.raises(error):
        A.cross_validated_ridge(x, y, folds=folds)


def test_ap_scan_is_the_cohort_subject():
    """The cohort's subject: deterministic, the angles of its DXA-session truth, and the crop the
    profile sets; leaving out the rib cage takes bone out of the image."""
    from spinelib.synth.chain import measure_angles
    from spinelib.synth.config import SynthConfig
    from spinelib.synth.subject import draw_subject_geometry

    params = get_profile("smoke")
    scan, angles = A.ap_scan(4, params)
    again, _ = A.ap_scan(4, params)
    np.testing.assert_array_equal(scan.stack, again.stack)
    g = draw_subject_geometry(4, SynthConfig.from_profile(params))
    truth = measure_angles(g["spine_dxa"], g["shape"])
    assert angles == pytest.approx((truth["kyphosis_deg"], truth["lordosis_deg"]))
    assert (scan.crop.rows, scan.crop.cols) == tuple(params["image_size"])
    no_ribs, _ = A.ap_scan(4, params, leave_out=["ribs"])
    assert no_ribs.stack[0].sum() < scan.stack[0].sum()  # less bone in the AP bone channel
    with pytest.raises(InvalidArgumentError, match="index"):
        A.ap_scan(-1, params)
    with pytest.raises(InvalidArgumentError, match="unknown parts"):
        A.ap_scan(0, params, leave_out=["spleen"])


def test_angle_r2_by_part_table():
    """A small smoke cohort: one row per variant in order, R2 at most 1, the same numbers twice."""
    params = get_profile("smoke")
    t = A.angle_r2_by_part(params, n_subjects=24, variants=[(), ("ribs", "chest_wall")], folds=3, progress=False)
    assert list(t.columns) == ["left_out", "kyphosis_r2", "lordosis_r2", "n_subjects", "folds"]
    assert list(t["left_out"]) == ["", "ribs+chest_wall"] and set(t["n_subjects"]) == {24}
    assert np.all(np.isfinite(t[["kyphosis_r2", "lordosis_r2"]].to_numpy())) and (t["kyphosis_r2"] <= 1).all()
    r = A.angle_r2(params, n_subjects=24, leave_out=("chest_wall", "ribs"), folds=3, progress=False)
    assert r["left_out"] == ["ribs", "chest_wall"]  # PART_GROUPS order
    assert r["kyphosis"] == t.loc[1, "kyphosis_r2"] and r["lordosis"] == t.loc[1, "lordosis_r2"]


@pytest.mark.parametrize("kw, match", [({"n_subjects": 7}, "n_subjects"), ({"n_subjects": 24, "folds": 1}, "folds"),
                                       ({"n_subjects": 24, "leave_out": "ribs"}, "collection")])
def test_angle_r2_bad_arguments(kw, match):
    with pytest.raises(InvalidArgumentError, match=match):
        A.angle_r2(get_profile("smoke"), progress=False, **kw)
    with pytest.raises(InvalidArgumentError, match="variants"):
        A.angle_r2_by_part(get_profile("smoke"), n_subjects=24, variants=[])


def test_vertebral_heights_are_the_column_below_t1():
    """T1 at 0, every lower vertebra further down, the angles of the DXA-session truth."""
    from spinelib.synth.chain import measure_angles
    from spinelib.synth.config import SynthConfig
    from spinelib.synth.subject import draw_subject_geometry

    params = get_profile("smoke")
    h, angles = A.vertebral_heights(7, params)
    g = draw_subject_geometry(7, SynthConfig.from_profile(params))
    z = g["spine_dxa"]["centres"][:, 2]
    assert h.shape == (17,) and h[0] == 0.0 and np.all(np.diff(h) > 0)
    np.testing.assert_allclose(h, z[0] - z)
    truth = measure_angles(g["spine_dxa"], g["shape"])
    assert angles == pytest.approx((truth["kyphosis_deg"], truth["lordosis_deg"]))
    with pytest.raises(InvalidArgumentError, match="index"):
        A.vertebral_heights(1.5, params)


def test_height_r2_is_the_cross_validated_ridge_on_the_heights():
    params = get_profile("smoke")
    r = A.height_r2(params, n_subjects=24, folds=3, progress=False)
    pairs = [A.vertebral_heights(i, params) for i in range(24)]
    x, y = np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    pred = A.cross_validated_ridge(x, y, folds=3)
    from spinelib.metrics import r2_score

    assert r == {"kyphosis": r2_score(y[:, 0], pred[:, 0]), "lordosis": r2_score(y[:, 1], pred[:, 1]),
                 "n_subjects": 24, "folds": 3}
    with pytest.raises(InvalidArgumentError, match="n_subjects"):
        A.height_r2(params, n_subjects=5, folds=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="folds"):
        A.height_r2(params, n_subjects=24, folds=0, progress=False)
