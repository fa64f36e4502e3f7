"""spinelib.metrics: known answers, identities, symmetry, bad inputs, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.shape.curves import SpineCurves
from spinelib.errors import (
    EmptySegmentationError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
)
from spinelib.metrics import (
    centreline_deviation_mm,
    centreline_same_row_mm,
    extent_errors_mm,
    clinical_measures,
    cobb_angle,
    curve_errors,
    dice_3d,
    hausdorff95_mm,
    iou_3d,
    kyphosis_deg,
    lordosis_deg,
    mean_surface_distance_mm,
    surface_distances_mm,
    surface_voxels,
    tangent_angles_deg,
)
from spinelib.spine import CURVE_NAMES


def _curves_from_centres(cc, dc, top=0.0, bottom=450.0, a=15.0, b=10.0):
    cc, dc = np.asarray(cc, float), np.asarray(dc, float)
    v = np.stack([cc - a, cc, cc + a, dc - b, dc, dc + b])
    return SpineCurves(v, np.array([top, bottom]))


def _sphere(shape, centre, radius):
    g = np.indices(shape).astype(float)
    return ((g - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(axis=0) <= radius**2


# --------------------------------------------------------------------------- 2D


def test_curve_errors_known_answer():
    rng = np.random.default_rng(0)
    true = rng.normal(100, 10, (6, 20))
    true[0], true[2] = true[1] - 15, true[1] + 15
    pred = true.copy()
    pred[1] += 2.0  # coronal centre off by 2 mm everywhere
    pred[4, :10] += 3.0  # sagittal centre off by 3 mm on half the levels
    e = curve_errors(pred, true, pixel_mm=2.0)
    assert e["coronal_centre"] == pytest.approx({"mae_mm": 2.0, "mae_px": 1.0, "rmse_mm": 2.0, "max_mm": 2.0})
    assert e["sagittal_centre"]["mae_mm"] == pytest.approx(1.5)
    assert e["sagittal_centre"]["rmse_mm"] == pytest.approx(np.sqrt(4.5))
    assert e["sagittal_centre"]["max_mm"] == pytest.approx(3.0)
    assert e["coronal_left"]["mae_mm"] == 0.0
    assert e["mean"]["mae_mm"] == pytest.approx((2.0 + 1.5) / 6)
    assert set(CURVE_NAMES) <= set(e)


def test_curve_errors_accepts_spinecurves_and_is_zero_on_identity():
    c = _curves_from_centres(np.linspace(0, 10, 12), np.full(12, 40.0))
    e = curve_errors(c, c, pixel_mm=1.0)
    assert all(e[n]["max_mm"] == 0.0 for n in CURVE_NAMES)


@pytest.mark.parametrize(
    "pred, true, error",
    [
        (np.zeros((6, 5)), np.zeros((6, 6)), ShapeError),
        (np.zeros((5, 5)), np.zeros((5, 5)), ShapeError),
        (np.zeros((6, 2)), np.zeros((6, 2)), InvalidArgumentError),
        (np.full((6, 5), np.nan), np.zeros((6, 5)), NonFiniteError),
    ],
)
def test_curve_errors_bad_inputs(pred, true, error):
    with pytest.raises(error):
        curve_errors(pred, true, pixel_mm=1.0)


def test_curve_set_arrays_are_checked_alike():
    # curve_errors takes (6, K) curves, the centreline deviation (K, 3) centrelines: one check
    with pytest.raises(ShapeError, match=r"pred must be SpineCurves or a \(6, K\) array, got shape \(3, 5\)"):
        curve_errors(np.zeros((3, 5)), np.zeros((6, 5)), pixel_mm=1.0)
    with pytest.raises(ShapeError, match=r"true must be SpineCurves or a \(K, 3\) centreline, got shape \(5, 6\)"):
        centreline_deviation_mm(np.zeros((5, 3)), np.zeros((5, 6)))
    for call, few, infinite in ((lambda a: curve_errors(a, a, pixel_mm=1.0), np.zeros((6, 2)), np.full((6, 5), np.inf)),
                                (lambda a: centreline_deviation_mm(a, a), np.zeros((2, 3)), np.full((5, 3), np.inf))):
        with pytest.raises(InvalidArgumentError, match="pred needs at least 3 levels, got K = 2"):
            call(few)
        with pytest.raises(NonFiniteError, match="pred holds NaN"):
            call(infinite)


def test_curve_errors_bad_pixel():
    with pytest.raises(InvalidArgumentError):
        curve_errors(np.zeros((6, 5)), np.zeros((6, 5)), pixel_mm=0.0)


# --------------------------------------------------------------------------- centreline


def test_centreline_deviation_known_answer():
    k = 16
    a = _curves_from_centres(np.zeros(k), np.full(k, 30.0))
    b = _curves_from_centres(np.full(k, 3.0), np.full(k, 34.0))
    assert centreline_deviation_mm(a, a) == 0.0
    assert centreline_deviation_mm(a, b) == pytest.approx(5.0)
    # extent errors count: the same curves 12 mm lower
    c = SpineCurves(a.values, a.extent_mm + 12.0)
    assert centreline_deviation_mm(a, c) == pytest.approx(12.0)


@given(st.integers(3, 30), st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_centreline_deviation_symmetric(k, seed):
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 20, (k, 3)), rng.normal(0, 20, (k, 3))
    assert centreline_deviation_mm(p, q) == pytest.approx(centreline_deviation_mm(q, p))
    assert centreline_deviation_mm(p, p) == 0.0


def test_centreline_deviation_bad_inputs():
    with pytest.raises(ShapeError):
        centreline_deviation_mm(np.zeros((5, 3)), np.zeros((6, 3)))
    with pytest.raises(InvalidArgumentError):
        centreline_deviation_mm(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(NonFiniteError):
        centreline_deviation_mm(np.full((5, 3), np.nan), np.zeros((5, 3)))


# --------------------------------------------------------------------------- overlap


def test_iou_concentric_spheres():
    r1, r2 = 12.0, 20.0
    a = _sphere((50, 50, 50), (24.5, 24.5, 24.5), r1)
    b = _sphere((50, 50, 50), (24.5, 24.5, 24.5), r2)
    assert iou_3d(a, b) == pytest.approx((r1 / r2) ** 3, rel=0.03)
    assert dice_3d(a, b) == pytest.approx(2 * (r1 / r2) ** 3 / (1 + (r1 / r2) ** 3), rel=0.03)


def test_iou_shifted_boxes_exact():
    a = np.zeros((20, 20, 20), bool)
    a[2:10, 2:10, 2:10] = True
    b = np.roll(a, 4, axis=0)  # half overlap: |A&B| = 256, |A|B| = 768
    assert iou_3d(a, b) == pytest.approx(1 / 3)
    assert dice_3d(a, b) == pytest.approx(0.5)
    assert iou_3d(a, a) == 1.0 and dice_3d(a, a) == 1.0
    assert iou_3d(a, np.zeros_like(a)) == 0.0


masks = st.integers(0, 2**31 - 1).map(lambda s: np.random.default_rng(s).random((8, 9, 10)) < 0.3)


@given(masks, masks)
@settings(max_examples=40, deadline=None)
def test_overlap_symmetry_and_dice_identity(a, b):
    i = iou_3d(a, b)
    assert i == pytest.approx(iou_3d(b, a))
    assert dice_3d(a, b) == pytest.approx(2 * i / (1 + i))
    assert 0.0 <= i <= 1.0


def test_overlap_bad_inputs():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(EmptySegmentationError):
        iou_3d(a, a)
    with pytest.raises(EmptySegmentationError):
        dice_3d(a, a)
    with pytest.raises(ShapeError):
        iou_3d(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(ShapeError):
        iou_3d(np.ones((4, 4), bool), np.ones((4, 4), bool))
    with pytest.raises(InvalidArgumentError):
        iou_3d(np.full((4, 4, 4), 0.5), a)


# --------------------------------------------------------------------------- surface distances


def test_surface_distances_concentric_spheres():
    a = _sphere((60, 60, 60), (29.5, 29.5, 29.5), 12.0)
    b = _sphere((60, 60, 60), (29.5, 29.5, 29.5), 20.0)
    # spacing 1.5 mm: the radii differ by 8 voxels = 12 mm (within a voxel of discretisation)
    hd = hausdorff95_mm(a, b, spacing_mm=1.5)
    msd = mean_surface_distance_mm(a, b, spacing_mm=1.5)
    assert hd == pytest.approx(12.0, abs=1.5)
    assert msd == pytest.approx(12.0, abs=1.5)


def test_surface_distances_anisotropic_shift():
    """A slab shifted along the axis with 3 mm spacing: the big faces are 2 voxels = 6 mm
    apart, the thin side faces overlap (distance 0), so HD95 is 6 mm."""
    a = np.zeros((6, 60, 60), bool)
    a[1:3, 5:55, 5:55] = True
    b = np.roll(a, 2, axis=0)
    assert hausdorff95_mm(a, b, spacing_mm=(3.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hausdorff95_mm(a, b, spacing_mm=(1.0, 1.0, 1.0)) == pytest.approx(2.0)


def test_surface_distance_identity():
    a = _sphere((30, 30, 30), (14, 15, 16), 9.0)
    assert hausdorff95_mm(a, a, spacing_mm=1.0) == 0.0
    assert mean_surface_distance_mm(a, a, spacing_mm=2.0) == 0.0


@given(masks, masks, st.floats(0.5, 3.0))
@settings(max_examples=30, deadline=None)
def test_surface_distance_symmetry(a, b, s):
    if not a.any() or not b.any():
        return
    sp = (s, 1.0, 2.0)
    assert hausdorff95_mm(a, b, spacing_mm=sp) == pytest.approx(hausdorff95_mm(b, a, spacing_mm=sp))
    assert mean_surface_distance_mm(a, b, spacing_mm=sp) == pytest.approx(mean_surface_distance_mm(b, a, spacing_mm=sp))


@given(masks, masks, st.floats(0.5, 3.0))
@settings(max_examples=30, deadline=None)
def test_surface_distances_equal_the_distance_transforms(a, b, s):
    """Reference implementation (MONAI, DeepMind surface-distance): the Euclidean distance
    transform of the other mask's surface, read at this surface's voxels."""
    from scipy import ndimage

    if not a.any() or not b.any():
        return
    sp = (s, 1.0, 2.0)
    sa, sb = surface_voxels(np.pad(a, 1)), surface_voxels(np.pad(b, 1))
    want_ab = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    want_ba = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    d_ab, d_ba = surface_distances_mm(a, b, spacing_mm=sp)
    np.testing.assert_allclose(np.sort(d_ab), np.sort(want_ab), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sort(d_ba), np.sort(want_ba), rtol=1e-12, atol=1e-12)


def test_surface_voxels_of_a_box_and_at_the_border():
    m = np.zeros((6, 7, 8), bool)
    m[1:5, 1:6, 1:7] = True  # 4 x 5 x 6 box: its inside is 2 x 3 x 4
    s = surface_voxels(m)
    assert s.dtype == bool and int(s.sum()) == 4 * 5 * 6 - 2 * 3 * 4
    assert not (s & ~m).any() and s[1, 3, 3] and not s[2, 3, 3]
    full = np.ones((3, 3, 3), bool)  # the array's border counts as outside
    assert int(surface_voxels(full).sum()) == 26


def test_surface_distance_bad_inputs():
    a = _sphere((10, 10, 10), (5, 5, 5), 3)
    with pytest.raises(EmptySegmentationError):
        hausdorff95_mm(a, np.zeros_like(a), spacing_mm=1.0)
    with pytest.raises(InvalidArgumentError):
        mean_surface_distance_mm(a, a, spacing_mm=(1.0, -1.0, 1.0))
    with pytest.raises(ShapeError):
        hausdorff95_mm(a, a[:-1], spacing_mm=1.0)


def test_metrics_fast_on_100_cubed():
    a = _sphere((100, 100, 100), (50, 50, 50), 30)
    b = _sphere((100, 100, 100), (53, 48, 50), 28)
    t0 = time.perf_counter()
    iou_3d(a, b), dice_3d(a, b)
    hausdorff95_mm(a, b, spacing_mm=1.0)
    mean_surface_distance_mm(a, b, spacing_mm=1.0)
    assert time.perf_counter() - t0 < 1.5


# --------------------------------------------------------------------------- clinical angles


def _arc(span_deg, k=64, length=400.0, radius=None):
    """A circular arc whose tangent turns by ``span_deg`` over ``length`` mm of height."""
    half = np.radians(span_deg) / 2
    radius = radius or (length / 2) / np.sin(half)
    r = np.linspace(-length / 2, length / 2, k)
    x = radius - np.sqrt(radius**2 - r**2)
    return x, r + length / 2


@pytest.mark.parametrize("span", [10.0, 30.0, 60.0])
@pytest.mark.parametrize("k", [32, 64, 209])
def test_cobb_circular_arc(span, k):
    x, r = _arc(span, k=k)
    res = cobb_angle(x, r)
    # a quadratic tangent fit at the arc's ends: within 0.5 degree or 1.5 %
    assert res.angle_deg == pytest.approx(span, abs=max(0.5, 0.015 * span))
    assert (res.upper_index, res.lower_index) == (0, k - 1)
    assert abs(res.apex_index - (k - 1) / 2) <= 1


def test_cobb_straight_and_tilted_straight_is_zero():
    r = np.linspace(0, 450, 64)
    assert cobb_angle(np.zeros(64), r).angle_deg == 0.0
    assert cobb_angle(0.2 * r + 7.0, r).angle_deg == pytest.approx(0.0, abs=1e-6)


def test_cobb_s_curve_gives_larger_arc():
    # tangent angle rises by 40 degrees over the upper part then falls by 25
    k = 120
    r = np.linspace(0, 450, k)
    theta = np.where(r < 270, -20 + 40 * r / 270, 20 - 25 * (r - 270) / 180)
    x = np.concatenate([[0.0], np.cumsum(np.tan(np.radians(theta[:-1])) * np.diff(r))])
    res = cobb_angle(x, r)
    assert res.angle_deg == pytest.approx(40.0, abs=2.0)
    assert res.upper_index == 0 and abs(r[res.lower_index] - 270) < 20
    # the lower curve is the second extrema pair
    assert 0 < res.apex_index < res.lower_index


@given(st.floats(-60, 60), st.floats(-0.5, 0.5), st.floats(-100, 100))
@settings(max_examples=30, deadline=None)
def test_cobb_invariant_to_mirror_and_shear(span, slope, offset):
    x, r = _arc(abs(span) + 1.0, k=48)
    a = cobb_angle(x, r).angle_deg
    assert cobb_angle(-x, r).angle_deg == pytest.approx(a, abs=1e-6)
    # adding a straight-line tilt shifts every tangent angle by nearly the same amount
    assert cobb_angle(x + slope * r + offset, r).angle_deg == pytest.approx(a, abs=0.35 * abs(slope) * a + 0.5)


def test_tangent_angles_of_a_line():
    r = np.linspace(0, 300, 30)
    np.testing.assert_allclose(tangent_angles_deg(np.tan(np.radians(10)) * r, r), 10.0, atol=1e-9)


@st.composite
def _savgol_case(draw):
    n = draw(st.integers(3, 200))
    half = draw(st.integers(1, (n - 1) // 2))
    delta = draw(st.floats(1e-3, 1e3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, draw(st.floats(1e-3, 1e3)), n) + draw(st.floats(-1e3, 1e3))
    return x, 2 * half + 1, delta


@given(_savgol_case())
@settings(max_examples=200, deadline=None)
def test_savgol_deriv1_matches_scipy(case):
    """Our numpy Savitzky-Golay derivative (kept out of scipy.signal for import time) gives
    scipy's numbers: interior convolution and the polynomial fits at both ends."""
    from scipy.signal import savgol_filter

    from spinelib.metrics.tangents import _savgol_deriv1

    x, win, delta = case
    ref = savgol_filter(x, window_length=win, polyorder=2, deriv=1, delta=delta, mode="interp")
    got = _savgol_deriv1(x, win, delta=delta)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.max(np.abs(ref)))


def test_savgol_deriv1_exact_on_a_parabola():
    from spinelib.metrics.tangents import _savgol_deriv1

    t = np.arange(11) * 2.5
    np.testing.assert_allclose(_savgol_deriv1(3 * t**2 - t + 7, 5, delta=2.5), 6 * t - 1, atol=1e-9)


@pytest.mark.parametrize(
    "x, win, delta",
    [
        (np.zeros((4, 4)), 3, 1.0),  # not 1-D
        (np.zeros(10), 4, 1.0),  # even window
        (np.zeros(10), 1, 1.0),  # window too short for a quadratic
        (np.zeros(10), 11, 1.0),  # window longer than the data
        (np.zeros(10), 5.0, 1.0),  # window not an int
        (np.zeros(10), 5, 0.0),  # spacing not positive
        (np.zeros(10), 5, float("nan")),
        (np.zeros(10), 5, "1"),
    ],
)
def test_savgol_deriv1_bad_inputs(x, win, delta):
    from spinelib.metrics.tangents import _savgol_deriv1

    with pytest.raises(InvalidArgumentError):
        _savgol_deriv1(x, win, delta=delta)


def test_clinical_measures_do_not_import_scipy_signal():
    """scipy.signal costs about 0.3 s of a cold ``spinelib predict``: the metrics must not need it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from spinelib.metrics import cobb_angle; r = np.linspace(0, 450, 40); "
            "cobb_angle(20 * np.sin(r / 100), r); assert 'scipy.signal' not in sys.modules, 'scipy.signal imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _sagittal(kyph, lord, k=96, length=450.0, frac=0.66):
    """Depth curve whose tangent angle rises by ``kyph`` over the thoracic part and falls by
    ``lord`` over the lumbar part, smoothly (zero tangent-angle slope at the boundary):
    kyphosis posteriorly convex, lordosis anteriorly convex."""
    r = (np.arange(k) + 0.5) * length / k
    b = frac * length
    top = kyph / 2
    phi = np.where(r < b, top - kyph * ((r - b) / b) ** 2, top - lord * ((r - b) / (length - b)) ** 2)
    fine = np.linspace(0, length, 20001)
    pf = np.interp(fine, r, phi)  # integrate depth finely
    d = np.concatenate([[0.0], np.cumsum(np.tan(np.radians(pf[:-1])) * np.diff(fine))])
    return 40.0 + np.interp(r, fine, d)


def test_kyphosis_lordosis_known_answers_and_signs():
    k = 96
    d = _sagittal(40.0, 30.0, k=k)
    c = _curves_from_centres(np.zeros(k), d - d.min() + 20.0, top=0.0, bottom=450.0)
    # the tangent is a quadratic fit over 80 mm: where the tangent angle itself bends as
    # sharply as here (30 degrees over 150 mm, quadratically) it is biased by ~2 degrees
    assert kyphosis_deg(c) == pytest.approx(40.0, abs=1.5)
    assert lordosis_deg(c) == pytest.approx(30.0, abs=3.0)
    flipped = _curves_from_centres(np.zeros(k), d.max() - d + 20.0, top=0.0, bottom=450.0)
    assert kyphosis_deg(flipped) == pytest.approx(-kyphosis_deg(c), abs=1e-6)
    assert lordosis_deg(flipped) == pytest.approx(-lordosis_deg(c), abs=1e-6)
    m = clinical_measures(c)
    assert set(m) >= {"cobb_deg", "apex_level_index", "kyphosis_deg", "lordosis_deg"}
    assert m["cobb_deg"] == 0.0
    assert m["kyphosis_deg"] == kyphosis_deg(c) and m["lordosis_deg"] == lordosis_deg(c)  # the same numbers


def test_sagittal_single_arc_exact():
    """One circular arc turning by 60 degrees, posteriorly convex all along: kyphosis is the
    turn of the tangent over the thoracic 66 %, lordosis the negative turn over the rest
    (a kyphotic lumbar spine), to within a degree; the ends are extrapolated."""
    k = 100
    x, r = _arc(60.0, k=k, length=450.0)  # x(r) = R - sqrt(R^2 - (r - 225)^2), R = 450
    c = _curves_from_centres(np.zeros(k), 40.0 + x, top=r[0] - 2.25, bottom=r[-1] + 2.25)
    top, bottom = c.extent_mm
    b = top + 0.66 * (bottom - top)

    def phi(at):
        return np.degrees(np.arcsin((at - 225.0) / 450.0))

    assert kyphosis_deg(c) == pytest.approx(phi(b) - phi(top), abs=1.0)
    assert lordosis_deg(c) == pytest.approx(phi(b) - phi(bottom), abs=1.0)
    assert lordosis_deg(c) < 0 < kyphosis_deg(c)


def test_clinical_measures_coronal_arc():
    x, r = _arc(30.0, k=64, length=450.0)
    c = _curves_from_centres(x + 100.0, np.full(64, 40.0), top=0.0, bottom=450.0 * 64 / 63)
    m = clinical_measures(c)
    assert m["cobb_deg"] == pytest.approx(30.0, abs=1.5)  # the end levels are left out
    assert abs(m["apex_level_index"] - 31.5) <= 2


def test_clinical_bad_inputs():
    r = np.linspace(0, 100, 10)
    with pytest.raises(NonFiniteError):
        cobb_angle(np.r_[np.zeros(9), np.nan], r)
    with pytest.raises(InvalidArgumentError):
        cobb_angle(np.zeros(2), r[:2])
    with pytest.raises(ShapeError):
        cobb_angle(np.zeros(10), r[:9])
    with pytest.raises(InvalidArgumentError):
        cobb_angle(np.zeros(10), r[::-1])
    c = _curves_from_centres(np.zeros(10), np.full(10, 30.0))
    with pytest.raises(InvalidArgumentError):
        kyphosis_deg(c, thoracic_fraction=1.2)
    with pytest.raises(InvalidArgumentError):
        clinical_measures(c.values)
    with pytest.raises(InvalidArgumentError, match="thoracic_fraction"):
        clinical_measures(c, thoracic_fraction=0.0)


# --------------------------------------------------------------------------- same-row centreline, extents
def _line(k: int, top: float, bottom: float, coronal, sagittal) -> SpineCurves:
    """Curves whose centre follows ``coronal(r)`` and ``sagittal(r)`` at the level rows."""
    c = SpineCurves(np.zeros((6, k)) + np.array([[-5.0], [0.0], [5.0], [-5.0], [0.0], [5.0]]),
                    np.array([top, bottom]))
    r = c.levels_mm
    v = np.array(c.values)
    v[:3] += coronal(r)
    v[3:] += sagittal(r)
    return SpineCurves(v, c.extent_mm)


def test_same_row_centreline_constant_offset_and_extent_shift():
    t = _line(20, 0.0, 400.0, lambda r: 0.0 * r, lambda r: 0.0 * r)
    p = _line(20, 10.0, 410.0, lambda r: 3.0 + 0.0 * r, lambda r: 4.0 + 0.0 * r)
    # the same rows: 3-4-5 everywhere; level by level the 10 mm extent shift counts too
    assert centreline_same_row_mm(p, t) == pytest.approx(5.0)
    assert centreline_deviation_mm(p, t) == pytest.approx(np.sqrt(10.0 ** 2 + 25.0))
    assert extent_errors_mm(p, t) == pytest.approx((10.0, 10.0))


def test_same_row_centreline_tilted_line_shifted_along_itself():
    # a straight line x = 0.1 r; the prediction is the same line with its extent moved 30 mm
    # down: at the same rows both centrelines coincide, while level k sits 30 mm lower
    t = _line(32, 0.0, 320.0, lambda r: 0.1 * r, lambda r: 50.0 - 0.05 * r)
    p = _line(40, 30.0, 350.0, lambda r: 0.1 * r, lambda r: 50.0 - 0.05 * r)
    assert centreline_same_row_mm(p, t, n_samples=64) == pytest.approx(0.0, abs=0.1)
    top, bottom = extent_errors_mm(p, t)
    assert (top, bottom) == pytest.approx((30.0, 30.0))


def test_same_row_centreline_analytic_sine():
    # coronal centres differ by a sine of amplitude A over the common extent: the mean
    # |A sin| over a whole period is 2A / pi
    a = 6.0
    t = _line(400, 0.0, 400.0, lambda r: 0.0 * r, lambda r: 0.0 * r)
    p = _line(400, 0.0, 400.0, lambda r: a * np.sin(2 * np.pi * r / 400.0), lambda r: 0.0 * r)
    assert centreline_same_row_mm(p, t, n_samples=4000) == pytest.approx(2 * a / np.pi, rel=1e-3)


def test_same_row_centreline_bad_inputs():
    t = _line(8, 0.0, 100.0, lambda r: 0.0 * r, lambda r: 0.0 * r)
    apart = _line(8, 200.0, 300.0, lambda r: 0.0 * r, lambda r: 0.0 * r)
    with pytest.raises(InvalidArgumentError, match="share no row"):
        centreline_same_row_mm(apart, t)
    with pytest.raises(InvalidArgumentError, match="SpineCurves"):
        centreline_same_row_mm(np.zeros((6, 8)), t)
    with pytest.raises(InvalidArgumentError, match="n_samples"):
        centreline_same_row_mm(t, t, n_samples=0)
    with pytest.raises(InvalidArgumentError, match="SpineCurves"):
        extent_errors_mm(t, "t")
