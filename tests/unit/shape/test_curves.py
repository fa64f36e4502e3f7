"""spinelib.shape.curves: the curve container, the table plane, curves from a label volume, crops."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.shape.curves import MIN_LEVELS, CropWindow, SpineCurves, check_levels, from_crop, to_crop
from spinelib.shape.extract import column_curves, curves_from_points
from spinelib.shape.frame import SubjectFrame
from spinelib.shape.table_plane import estimate_table_y
from spinelib.errors import (
    EmptySegmentationError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
)
from spinelib.spine import CURVE_NAMES, DISC_LABEL
from spinelib.geometry.transform import PlanarTransform


def _curves(k=8, top=100.0, bottom=500.0, seed=0):
    rng = np.random.default_rng(seed)
    left = 100 + rng.normal(0, 3, k)
    right = left + rng.uniform(20, 50, k)
    post = 30 + rng.normal(0, 2, k)
    ant = post + rng.uniform(15, 35, k)
    v = np.stack([left, (left + right) / 2, right, post, (post + ant) / 2, ant])
    return SpineCurves(v, np.array([top, bottom]))


# --------------------------------------------------------------------------- SpineCurves


def test_levels_partition_the_extent():
    c = _curves(k=4, top=100.0, bottom=500.0)
    assert c.n_levels == 4
    np.testing.assert_allclose(c.levels_mm, [150.0, 250.0, 350.0, 450.0])
    assert c.level_height_mm == pytest.approx(100.0)


def test_arrays_are_readonly_copies():
    v = _curves().values.copy()
    c = SpineCurves(v, np.array([0.0, 10.0]))
    v[0, 0] = -1e6
    assert c.values[0, 0] != -1e6
    with pytest.raises(ValueError):
        c.values[0, 0] = 1.0


def test_as_dict_roundtrip():
    c = _curves()
    d = c.as_dict()
    assert set(CURVE_NAMES) <= set(d) and len(d["levels_mm"]) == c.n_levels
    assert SpineCurves.from_dict(d).allclose(c, atol=0)
    np.testing.assert_array_equal(c.curve("sagittal_anterior"), c.values[5])


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda v, e: (v[:5], e), ShapeError),
        (lambda v, e: (v[:, :2], e), InvalidArgumentError),
        (lambda v, e: (v, e[:1]), ShapeError),
        (lambda v, e: (np.where(np.arange(v.shape[1]) == 3, np.nan, v), e), NonFiniteError),
        (lambda v, e: (v, e[::-1]), InvalidArgumentError),
        (lambda v, e: (v[[2, 1, 0, 3, 4, 5]], e), InvalidArgumentError),  # left > right
        (lambda v, e: (v[[0, 1, 2, 5, 4, 3]], e), InvalidArgumentError),  # posterior > anterior
    ],
)
def test_validation(mutate, error):
    c = _curves()
    v, e = mutate(c.values.copy(), c.extent_mm.copy())
    with pytest.raises(error):
        SpineCurves(v, e)


def test_errors_are_spinelib_errors():
    with pytest.raises(SpineLibError, match="at least 3 levels"):
        SpineCurves(np.zeros((6, 2)), np.array([0.0, 1.0]))
    with pytest.raises(InvalidArgumentError, match="unknown curve"):
        _curves().curve("coronal_middle")


# --------------------------------------------------------------------------- table plane


def _torso(table_y=-71.3, voxel=(4.0, 3.0, 5.0), noise=0.02, bias=True, seed=0):
    """Dixon-like fat/water volumes of an elliptic torso with a flat back at ``table_y``,
    with partial volume from 4x supersampling along y."""
    rng = np.random.default_rng(seed)
    ni, nj, nk = 60, 50, 30
    aff = np.diag([*voxel, 1.0])
    aff[:3, 3] = [-(ni - 1) / 2 * voxel[0], -(nj - 1) / 2 * voxel[1], -(nk - 1) / 2 * voxel[2]]
    x = aff[0, 3] + np.arange(ni) * voxel[0]
    z = aff[2, 3] + np.arange(nk) * voxel[2]
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    y = aff[1, 3] + (np.arange(nj)[:, None] + sub[None, :]) * voxel[1]  # (nj, 4)
    # torso: |x| < 160 (rounded flanks), table_y < y < table_y + 220
    yc = table_y + 110.0
    inside = ((x[:, None, None] / 160.0) ** 4 + ((y[None] - yc) / 110.0) ** 4 <= 1.0) & (y[None] >= table_y)
    frac = inside.mean(axis=2)[:, :, None] * np.ones(nk)[None, None, :]  # (ni, nj, nk)
    fat = 0.6 * frac
    water = 0.4 * frac
    if bias:
        field = 1.0 + 0.15 * np.sin(x / 150.0)[:, None, None] * np.cos(z / 200.0)[None, None, :]
        fat, water = fat * field, water * field
    fat = np.abs(fat + rng.normal(0, noise, fat.shape))
    water = np.abs(water + rng.normal(0, noise, water.shape))
    return fat.astype(np.float32), water.astype(np.float32), aff


@pytest.mark.parametrize("table_y", [-71.3, -60.0, -64.6])
def test_table_plane_subvoxel(table_y):
    fat, water, aff = _torso(table_y=table_y)
    est = estimate_table_y(fat, water, aff)
    assert est == pytest.approx(table_y, abs=0.5)


def test_table_plane_bad_inputs():
    fat, water, aff = _torso()
    with pytest.raises(ShapeError):
        estimate_table_y(fat, water[:, :, :-1], aff)
    rot = aff.copy()
    rot[0, 0] = -rot[0, 0]
    with pytest.raises(InvalidArgumentError, match="canonical"):
        estimate_table_y(fat, water, rot)
    with pytest.raises(EmptySegmentationError):
        estimate_table_y(np.zeros_like(fat), np.zeros_like(water), aff)


# --------------------------------------------------------------------------- column curves


def _box_column(voxel=(2.0, 2.5, 3.0), shape=(40, 30, 50), box=((12, 22), (8, 16), (5, 45))):
    """A label volume whose column is a box of voxels: T1 on the top two slices, L5 on the
    bottom two, vertebra/disc labels between. ``box`` gives inclusive-exclusive index ranges."""
    aff = np.diag([*voxel, 1.0])
    aff[:3, 3] = [-31.0, -52.0, -75.0]
    seg = np.zeros(shape, np.uint8)
    (i0, i1), (j0, j1), (k0, k1) = box
    seg[i0:i1, j0:j1, k0:k1] = 5
    seg[i0:i1, j0:j1, k0:k1:4] = DISC_LABEL
    seg[i0:i1, j0:j1, k1 - 2 : k1] = 1  # T1 at the top (z superior)
    seg[i0:i1, j0:j1, k0 : k0 + 2] = 17  # L5 at the bottom
    return seg, aff


@pytest.mark.parametrize("k", [3, 8, 40, 120])
def test_box_column_known_answer(k):
    """Axis-aligned box, identity rotation: every boundary sits exactly on a voxel edge."""
    voxel = (2.0, 2.5, 3.0)
    seg, aff = _box_column(voxel)
    shape, sp = (201, 101), (1.0, 1.2)
    tr = PlanarTransform(0.0, 7.0, -4.0)
    table = -60.0
    c = column_curves(seg, aff, SubjectFrame(tr, shape, sp, table), k)
    # world -> DXA: col = c0 - (x - tx)/sc, row = r0 - (z - ty)/sr
    c0, r0 = (shape[1] - 1) / 2, (shape[0] - 1) / 2
    x_lo, x_hi = aff[0, 3] + 12 * voxel[0] - voxel[0] / 2, aff[0, 3] + 21 * voxel[0] + voxel[0] / 2
    y_lo, y_hi = aff[1, 3] + 8 * voxel[1] - voxel[1] / 2, aff[1, 3] + 15 * voxel[1] + voxel[1] / 2
    z_lo, z_hi = aff[2, 3] + 5 * voxel[2] - voxel[2] / 2, aff[2, 3] + 44 * voxel[2] + voxel[2] / 2
    left = sp[1] * c0 - (x_hi - 7.0)
    right = sp[1] * c0 - (x_lo - 7.0)
    top = sp[0] * r0 - (z_hi + 4.0)
    bottom = sp[0] * r0 - (z_lo + 4.0)
    np.testing.assert_allclose(c.extent_mm, [top, bottom], atol=1e-9)
    np.testing.assert_allclose(c.values[0], left, atol=1e-9)
    np.testing.assert_allclose(c.values[2], right, atol=1e-9)
    np.testing.assert_allclose(c.values[1], (left + right) / 2, atol=1e-9)
    np.testing.assert_allclose(c.values[3], y_lo - table, atol=1e-9)
    np.testing.assert_allclose(c.values[5], y_hi - table, atol=1e-9)


def test_patient_right_is_small_column():
    """Moving the column towards the patient's right (+x) moves it to smaller columns."""
    seg, aff = _box_column()
    frame = SubjectFrame(PlanarTransform(0.0, 0.0, 0.0), (201, 101), (1.0, 1.0), -60.0)
    a = column_curves(seg, aff, frame, 8)
    shifted = aff.copy()
    shifted[0, 3] += 10.0
    b = column_curves(seg, shifted, frame, 8)
    np.testing.assert_allclose(b.values[:3], a.values[:3] - 10.0, atol=1e-9)
    np.testing.assert_allclose(b.values[3:], a.values[3:], atol=1e-9)


def test_frame_map_is_rigid_and_matches_transform():
    tr = PlanarTransform(4.0, 12.0, -30.0)
    m = SubjectFrame(tr, (240, 120), (2.2, 2.2), -55.0).world_to_frame()
    np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)
    # the DXA image centre lands on (tx, ty) in MRI: frame point of (tx, y, ty)
    p = m @ np.array([12.0, -55.0, -30.0, 1.0])
    np.testing.assert_allclose(p[:3], [2.2 * 119.5, 2.2 * 59.5, 0.0], atol=1e-9)


def _tilted_cylinder(tilt_deg=5.0, voxel=(2.2, 2.2, 3.0), shape=(70, 40, 110)):
    aff = np.diag([*voxel, 1.0])
    aff[:3, 3] = [-(shape[0] - 1) / 2 * voxel[0], -40.0, -(shape[2] - 1) / 2 * voxel[2]]
    x = aff[0, 3] + np.arange(shape[0]) * voxel[0]
    y = aff[1, 3] + np.arange(shape[1]) * voxel[1]
    z = aff[2, 3] + np.arange(shape[2]) * voxel[2]
    xc = np.tan(np.radians(tilt_deg)) * z
    inside = ((x[:, None, None] - xc) / 20.0) ** 2 + ((y[None, :, None] - 10.0) / 12.0) ** 2 <= 1
    inside &= (np.abs(z) < 140.0)[None, None, :]
    seg = np.where(inside, 5, 0).astype(np.uint8)
    seg[(seg > 0) & (z[None, None, :] > 125)] = 1
    seg[(seg > 0) & (z[None, None, :] < -125)] = 17
    return seg, aff, xc


def test_tilted_cylinder_centre_follows_axis():
    """A cylinder tilted by t in MRI, seen through a DXA rotated by theta: the coronal
    centre is the axis mapped into the DXA, within a voxel; no level is empty even
    with slabs much thinner than a voxel."""
    seg, aff, _ = _tilted_cylinder(tilt_deg=5.0)
    tr = PlanarTransform(-3.0, 5.0, 10.0)
    shape, sp = (220, 100), (2.0, 2.0)
    frame = SubjectFrame(tr, shape, sp, -30.0)
    c = column_curves(seg, aff, frame, 200)  # h ~ 1.4 mm < 3 mm voxels
    w2f = frame.world_to_frame()
    inner = slice(10, -10)
    rows = c.levels_mm[inner]
    # the axis (x = tan(5) z, z) in frame coordinates, as col_mm as a function of row_mm
    zz = np.linspace(-150, 150, 301)
    axis = (w2f @ np.stack([np.tan(np.radians(5.0)) * zz, np.zeros_like(zz), zz, np.ones_like(zz)]))
    order = np.argsort(axis[0])
    expected = np.interp(rows, axis[0][order], axis[1][order])
    np.testing.assert_allclose(c.values[1][inner], expected, atol=2.2)
    width = c.values[2] - c.values[0]
    assert np.all(width[inner] > 40.0 - 2 * 2.2) and np.all(width[inner] < 40.0 / np.cos(np.radians(8.0)) + 2 * 2.2)
    np.testing.assert_allclose(c.values[4][inner], 10.0 + 30.0, atol=1.1)  # y = 10, table at -30
    np.testing.assert_allclose(c.values[5][inner] - c.values[3][inner], 24.0 + 2.2, atol=2.2)


def test_no_empty_level_with_gap_interpolated():
    """A slab that no voxel reaches (a gap in the mask) is filled from its neighbours."""
    seg, aff = _box_column()
    seg[:, :, 20:23] = 0  # a 9 mm gap
    c = column_curves(seg, aff, SubjectFrame(PlanarTransform(0.0, 0.0, 0.0), (201, 101), (1.0, 1.0), -60.0), 60)
    assert np.all(np.isfinite(c.values))
    np.testing.assert_allclose(c.values[0], c.values[0][0], atol=1e-9)


def test_curves_from_points_bins_by_slab():
    # three slabs of 10 mm; voxels 2 mm; the middle slab is wider
    pts = np.array([[5.0, 0.0, 0.0], [5.0, 10.0, 5.0], [15.0, -5.0, 0.0], [15.0, 15.0, 8.0], [25.0, 2.0, 1.0]])
    c = curves_from_points(pts, np.array([1.0, 1.0, 1.0]), (0.0, 30.0), 3)
    np.testing.assert_allclose(c.values[0], [-1.0, -6.0, 1.0])
    np.testing.assert_allclose(c.values[2], [11.0, 16.0, 3.0])
    np.testing.assert_allclose(c.values[3], [-1.0, -1.0, 0.0])
    np.testing.assert_allclose(c.values[5], [6.0, 9.0, 2.0])


def test_column_curves_bad_inputs():
    seg, aff = _box_column()
    tr = PlanarTransform(0.0, 0.0, 0.0)
    args = (SubjectFrame(tr, (201, 101), (1.0, 1.0), -60.0),)
    with pytest.raises(ShapeError):
        column_curves(seg[:, :, 0], aff, *args, 8)
    with pytest.raises(ShapeError):
        column_curves(seg, aff[:3], *args, 8)
    with pytest.raises(InvalidArgumentError):
        column_curves(seg, aff, *args, 2)
    with pytest.raises(EmptySegmentationError, match="column"):
        column_curves(np.zeros_like(seg), aff, *args, 8)
    no_t1 = seg.copy()
    no_t1[no_t1 == 1] = 5
    with pytest.raises(EmptySegmentationError, match="T1"):
        column_curves(no_t1, aff, *args, 8)
    with pytest.raises(NonFiniteError):
        column_curves(seg, aff, SubjectFrame(tr, (201, 101), (1.0, 1.0), float("nan")), 8)
    with pytest.raises(InvalidArgumentError, match="frame"):
        column_curves(seg, aff, tr, 8)


def test_column_curves_fast():
    """A 100 x 60 x 130 label volume in well under 50 ms (task requirement)."""
    seg = np.zeros((100, 60, 130), np.uint8)
    seg[35:65, 20:40, 5:125] = 5
    seg[35:65, 20:40, 120:125] = 1
    seg[35:65, 20:40, 5:10] = 17
    aff = np.diag([2.2, 2.2, 3.0, 1.0])
    aff[:3, 3] = [-110.0, -66.0, -195.0]
    frame = SubjectFrame(PlanarTransform(3.0, 4.0, -5.0), (240, 130), (2.2, 2.2), -66.0)
    column_curves(seg, aff, frame, 209)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        column_curves(seg, aff, frame, 209)
        times.append(time.perf_counter() - t0)
    assert min(times) < 0.05, f"column_curves took {min(times) * 1e3:.1f} ms"


# --------------------------------------------------------------------------- crops


def test_crop_known_answer():
    v = np.tile(np.array([[66.0], [99.0], [132.0], [33.0], [49.5], [66.0]]), (1, 3))
    c = SpineCurves(v, np.array([66.0, 330.0]))
    crop = CropWindow(row0=10, col0=4, rows=96, cols=48, pixel_mm=3.3)
    vec = to_crop(c, crop)
    assert vec.shape == (6 * 3 + 2,)
    np.testing.assert_allclose(vec[0], (66 / 3.3 - 4) / 48)
    np.testing.assert_allclose(vec[9], 33 / (3.3 * 48))
    np.testing.assert_allclose(vec[-2:], [(20 - 10) / 96, (100 - 10) / 96])


crop_st = st.builds(
    CropWindow,
    row0=st.floats(-50, 200),
    col0=st.floats(-50, 200),
    rows=st.integers(8, 256),
    cols=st.integers(8, 256),
    pixel_mm=st.floats(0.5, 8.0),
)


@given(crop_st, st.integers(3, 40), st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_crop_roundtrip(crop, k, seed):
    c = _curves(k=k, seed=seed)
    back = from_crop(to_crop(c, crop), crop, k)
    assert back.allclose(c, atol=1e-7)


def test_from_crop_repairs_or_refuses_swapped_boundaries():
    c = _curves(k=5)
    crop = CropWindow(0, 0, 64, 32, 4.0)
    vec = to_crop(c, crop).reshape(-1)
    bad = vec.copy()
    bad[0:5], bad[10:15] = vec[10:15], vec[0:5]  # left <-> right
    fixed = from_crop(bad, crop, 5)
    np.testing.assert_allclose(fixed.values[0], c.values[0])
    with pytest.raises(InvalidArgumentError):
        from_crop(bad, crop, 5, repair=False)


def test_crop_bad_inputs():
    c = _curves(k=5)
    crop = CropWindow(0, 0, 64, 32, 4.0)
    with pytest.raises(ShapeError):
        from_crop(np.zeros(6 * 5 + 1), crop, 5)
    with pytest.raises(NonFiniteError):
        from_crop(np.full(6 * 5 + 2, np.nan), crop, 5)
    with pytest.raises(InvalidArgumentError):
        CropWindow(0, 0, 0, 32, 4.0)
    with pytest.raises(InvalidArgumentError):
        to_crop(c, object())
    with pytest.raises(InvalidArgumentError):
        to_crop(c.values, crop)


def test_general_affine_path_matches_canonical():
    """Axes permuted (voxel axis 0 is y): the general per-voxel path gives the same curves."""
    seg, aff = _box_column()
    tr = PlanarTransform(2.0, 3.0, -1.0)
    args = (SubjectFrame(tr, (201, 101), (1.0, 1.0), -60.0), 16)
    a = column_curves(seg, aff, *args)
    perm = np.transpose(seg, (1, 0, 2))
    paff = aff.copy()
    paff[:, [0, 1]] = aff[:, [1, 0]]
    b = column_curves(perm, paff, *args)
    assert b.allclose(a, atol=1e-9)


def test_doctests_of_geometry_modules():
    import doctest

    import spinelib.metrics
    import spinelib.metrics.centreline
    import spinelib.metrics.clinical
    import spinelib.shape.curves
    import spinelib.shape.reconstruct

    for mod in (spinelib.shape.curves, spinelib.shape.reconstruct, spinelib.metrics, spinelib.metrics.centreline,
                spinelib.metrics.clinical):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, f"{mod.__name__}: {res.failed} doctest failures"


def test_check_levels_takes_integers_only():
    assert check_levels(np.int64(MIN_LEVELS)) == MIN_LEVELS and type(check_levels(np.int64(8))) is int
    for bad in (32.0, "32", None, True, MIN_LEVELS - 1):
        with pytest.raises(InvalidArgumentError, match="n_levels must be an integer"):
            check_levels(bad)
