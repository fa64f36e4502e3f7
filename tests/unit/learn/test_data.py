"""The network's view: resampling keeps mm coordinates, the crop comes from the image,
augmentation moves image and targets together."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.shape.curves import CropWindow, SpineCurves, from_crop
from spinelib.learn.crop import find_spine_crop, resample_image, sample_crop
from spinelib.learn.data import (
    PreparedScan,
    SpineDataset,
    mirror_crop_vector,
    prepare_scan,
    rotate_curves,
    sample_views,
)
from spinelib.errors import InvalidArgumentError, NonFiniteError, ShapeError
from spinelib.io import DXAImage

PX = 4.0


def _curves(k=16, top=60.0, bottom=460.0, col=200.0, half=15.0, bend=0.0):
    lv = top + (np.arange(k) + 0.5) * (bottom - top) / k
    cen = col + bend * np.sin(np.pi * (lv - top) / (bottom - top))
    v = np.stack([cen - half, cen, cen + half, np.full(k, 40.0), np.full(k, 55.0), np.full(k, 70.0)])
    return SpineCurves(v, np.array([top, bottom]))


def _phantom(curves, shape=(140, 100), px=PX):
    """A bone image with the spine column painted between its coronal boundaries, plus ribs."""
    img = np.zeros(shape, np.float32)
    rr = np.arange(shape[0]) * px
    for r in range(shape[0]):
        if curves.extent_mm[0] <= rr[r] <= curves.extent_mm[1]:
            lo = np.interp(rr[r], curves.levels_mm, curves.values[0]) / px
            hi = np.interp(rr[r], curves.levels_mm, curves.values[2]) / px
            img[r, int(np.ceil(lo)): int(np.floor(hi)) + 1] = 1.0
    img[30:90:6, 10:90] += 0.3  # rib-like wide bands, weaker than the spine
    return img


def test_resample_keeps_mm_origin():
    img = np.zeros((50, 40), np.float32)
    img[20, 10] = 1.0  # at (40 mm, 30 mm) with spacing (2, 3)
    out = resample_image(img, (2.0, 3.0), 1.0)
    assert np.unravel_index(np.argmax(out), out.shape) == (40, 30)
    assert out.shape == (99, 118)


def test_crop_found_from_image_alone():
    c = _curves()
    crop = find_spine_crop(_phantom(c), pixel_mm=PX, image_size=(128, 64))
    centre_col = (crop.col0 + 32) * PX
    assert abs(centre_col - 200.0) <= 2 * PX
    top_row = crop.row0 * PX + 0.06 * 128 * PX
    assert abs(top_row - c.extent_mm[0]) <= 2 * PX


def test_spine_ridge_prefers_the_midline_to_a_straighter_lateral_ridge():
    """A curved spine at the skeleton's midline, a brighter straight line of bone (rib-cage
    edge, scapula, ilium) 100 mm to one side and its fainter mirror on the other: the spine
    is the ridge found, and it spans the spine's rows."""
    from spinelib.learn.crop import spine_ridge

    c = _curves(bend=25.0)
    img = _phantom(c)
    for col, gain in ((300.0, 1.3), (100.0, 1.1)):
        img[10:135, int(col / PX) - 2: int(col / PX) + 3] += gain
    centre, top, bottom = spine_ridge(img, pixel_mm=PX)
    assert abs(centre * PX - 212.0) <= 4 * PX  # the bend's mean column, not 300 mm
    assert top * PX <= c.extent_mm[0] + 2 * PX and bottom * PX >= c.extent_mm[1] - 2 * PX
    with pytest.raises(InvalidArgumentError, match="no spine ridge"):
        spine_ridge(np.zeros((40, 30), np.float32), pixel_mm=PX)
    with pytest.raises(ShapeError):
        spine_ridge(np.zeros(30, np.float32), pixel_mm=PX)
    with pytest.raises(NonFiniteError):
        spine_ridge(np.full((40, 30), np.nan, np.float32), pixel_mm=PX)
    with pytest.raises(InvalidArgumentError, match="pixel"):
        spine_ridge(img, pixel_mm=0.0)
    for size in ((128.0, 64), (7, 64), (128,), "ab"):  # a crop is two integer sizes of at least 8 pixels
        with pytest.raises(InvalidArgumentError, match="image_size must be two integers"):
            find_spine_crop(img, pixel_mm=PX, image_size=size)


def test_targets_round_trip_without_augmentation():
    c = _curves()
    img = _phantom(c)
    crop = find_spine_crop(img, pixel_mm=PX, image_size=(128, 64))
    ds = SpineDataset([PreparedScan(np.stack([img, img]), crop)], [c])
    x, y = ds[0]
    assert x.shape == (2, 128, 64) and y.shape == (6 * 16 + 2,)
    back = from_crop(y.numpy().astype(float), crop, 16)
    np.testing.assert_allclose(back.values, c.values, atol=1e-3)


@given(st.floats(-3, 3), st.floats(-4, 4), st.floats(-4, 4))
@settings(max_examples=15, deadline=None)
def test_augmented_targets_follow_the_image(angle, dr, dc):
    """After any jitter, the painted column in the crop lies where the targets say."""
    c = _curves(bend=20.0)
    img = _phantom(c)
    crop = find_spine_crop(img, pixel_mm=PX, image_size=(128, 64))
    out = sample_crop(img[None], crop, angle_deg=angle, shift_px=(dr, dc))[0]
    moved = CropWindow(crop.row0 + dr, crop.col0 + dc, crop.rows, crop.cols, PX)
    centre = (PX * (moved.row0 + 63.5), PX * (moved.col0 + 31.5))
    rc = rotate_curves(c, -angle, centre)
    # check the painted centre column at the middle levels
    for k in range(4, 12):
        row = rc.levels_mm[k] / PX - moved.row0
        col = rc.values[1, k] / PX - moved.col0
        r = int(round(row))
        on = np.nonzero(out[r] > 0.5)[0]
        assert on.size, (k, r)
        assert abs(on.mean() - col) <= 1.0
    assert abs(rc.extent_mm[1] - rc.extent_mm[0] - 400.0) < 2.0


def test_dataset_augmentation_reproducible_and_epoch_dependent():
    c = _curves()
    img = _phantom(c)
    crop = find_spine_crop(img, pixel_mm=PX, image_size=(128, 64))
    ds = SpineDataset([PreparedScan(np.stack([img, img]), crop)], [c], augment=True, seed=5)
    a, ya = ds[0]
    b, yb = ds[0]
    assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(ya.numpy(), yb.numpy())
    ds.set_epoch(1)
    c2, yc = ds[0]
    assert not np.array_equal(ya.numpy(), yc.numpy())


def test_prepare_scan_channels_and_lateral():
    c = _curves()
    bone = _phantom(c, px=2.0 * 2)
    dxa = DXAImage(bone, bone * 10, np.array([4.0, 4.0]), bone[:, :30], bone[:, :30] * 10, np.array([4.0, 4.0]))
    ps = prepare_scan(dxa, pixel_mm=PX, image_size=(128, 64), lateral=True)
    assert ps.stack.shape[0] == 4
    ap_only = DXAImage(bone, bone, np.array([4.0, 4.0]))
    with pytest.raises(InvalidArgumentError, match="lateral"):
        prepare_scan(ap_only, pixel_mm=PX, image_size=(128, 64), lateral=True)


def _biplanar_scan(k=16, top=60.0, bottom=460.0, depth_mm=90.0, bow_mm=40.0):
    """A DXA whose AP view shows the spine column and whose lateral view shows a bright
    band (+/-8 mm) at the sagittal centre depth ``depth_mm + bow_mm sin(...)`` of every
    row of the column, with the curves that describe both."""
    base = _curves(k=k, top=top, bottom=bottom, bend=20.0)
    lv = base.levels_mm
    frac = (lv - top) / (bottom - top)
    centre = depth_mm + bow_mm * np.sin(np.pi * frac)
    v = base.values.copy()
    v[3], v[4], v[5] = centre - 12.0, centre, centre + 12.0
    curves = SpineCurves(v, base.extent_mm)
    bone = _phantom(curves)
    rows_mm = np.arange(bone.shape[0]) * PX
    depth = np.arange(60) * PX  # lateral column j is depth j * PX above the table
    lat = np.zeros((bone.shape[0], depth.size), np.float32)
    inside = (rows_mm >= top) & (rows_mm <= bottom)
    d_row = depth_mm + bow_mm * np.sin(np.pi * (rows_mm - top) / (bottom - top))
    lat[inside] = (np.abs(depth[None, :] - d_row[inside, None]) <= 8.0).astype(np.float32)
    spacing = np.array([PX, PX])
    return DXAImage(bone, bone * 10, spacing, lat, lat * 10 + 1.0, spacing), curves


def _bright_centre(row: np.ndarray) -> float:
    on = row > 0.5 * row.max()
    return float((np.nonzero(on)[0] * row[on]).sum() / row[on].sum())


def test_biplanar_augmentation_keeps_lateral_view_and_sagittal_targets_together():
    """For many random jitters, the sagittal target lies on the lateral view's bright band,
    the extent target on the band's ends, and the coronal target on the AP column."""
    k = 16
    dxa, curves = _biplanar_scan(k=k)
    scan = prepare_scan(dxa, pixel_mm=PX, image_size=(128, 64), lateral=True)
    ds = SpineDataset([scan], [curves], augment=True, seed=11, max_shift_px=6.0)
    col_shifts = []
    for epoch in range(40):
        ds.set_epoch(epoch)
        col_shifts.append(ds._jitter(0)[1][1])
        x, y = ds[0]
        x, y = x.numpy(), y.numpy().astype(float)
        rows, cols = x.shape[1:]
        top, bot = y[6 * k] * rows, y[6 * k + 1] * rows
        band = np.nonzero((x[2] > 0.5 * x[2].max()).any(axis=1))[0]
        assert abs(band[0] - top) <= 1.0 and abs(band[-1] - bot) <= 1.0, (epoch, band[[0, -1]], top, bot)
        for lev in range(2, k - 2):
            r = int(round(top + (lev + 0.5) * (bot - top) / k))
            # lateral crop column j shows depth j * PX: the target's depth in columns
            assert abs(_bright_centre(x[2, r]) - y[4 * k + lev] * cols) <= 0.75, (epoch, lev)
            assert abs(_bright_centre(x[0, r]) - y[k + lev] * cols) <= 1.0, (epoch, lev)
    # the jitter moved the columns by whole pixels several times: the check had teeth
    assert max(np.abs(col_shifts)) > 4.0


@given(st.floats(-80.0, 80.0), st.floats(0.0, 40.0), st.integers(8, 200))
@settings(max_examples=30, deadline=None)
def test_mirror_crop_vector_is_the_mirrored_curves(bend, col0, cols):
    """Known answer: the targets of the mirrored crop are those of the curves reflected
    about the crop's middle column (mm ``c -> px (2 col0 + cols - 1) - c``), left and right
    swapped; sagittal and extent unchanged; mirroring twice is the identity."""
    from spinelib.shape.curves import to_crop

    c = _curves(bend=bend)
    crop = CropWindow(3.0, col0, 128, cols, PX)
    axis = PX * (2 * col0 + cols - 1)
    v = c.values.copy()
    v[[0, 1, 2]] = axis - c.values[[2, 1, 0]]
    want = to_crop(SpineCurves(v, c.extent_mm), crop)
    got = mirror_crop_vector(to_crop(c, crop), cols)
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(mirror_crop_vector(got, cols), to_crop(c, crop), atol=1e-9)
    batch = np.stack([to_crop(c, crop)] * 3)
    np.testing.assert_allclose(mirror_crop_vector(batch, cols), np.stack([want] * 3), atol=1e-9)


def test_mirrored_samples_keep_image_and_targets_together():
    """With mirroring on, about half the epochs mirror the sample; in every epoch the painted
    AP column lies on the coronal targets, and the lateral view is not mirrored."""
    k = 16
    dxa, curves = _biplanar_scan(k=k, bow_mm=40.0)
    scan = prepare_scan(dxa, pixel_mm=PX, image_size=(128, 64), lateral=True)
    plain = SpineDataset([scan], [curves], augment=True, seed=3)
    ds = SpineDataset([scan], [curves], augment=True, seed=3, mirror=True)
    flips = 0
    for epoch in range(30):
        plain.set_epoch(epoch)
        ds.set_epoch(epoch)
        (x, y), (x0, y0) = ds[0], plain[0]
        x, y, x0 = x.numpy(), y.numpy().astype(float), x0.numpy()
        mirrored = ds._jitter(0)[3]
        flips += mirrored
        np.testing.assert_array_equal(x[2:], x0[2:])  # the lateral view is the same
        np.testing.assert_array_equal(x[:2], x0[:2, :, ::-1] if mirrored else x0[:2])
        rows, cols = x.shape[1:]
        top, bot = y[6 * k] * rows, y[6 * k + 1] * rows
        for lev in range(2, k - 2):
            r = int(round(top + (lev + 0.5) * (bot - top) / k))
            assert abs(_bright_centre(x[0, r]) - y[k + lev] * cols) <= 1.0, (epoch, lev, mirrored)
        assert np.all(y[:k] <= y[2 * k: 3 * k])  # left stays the smaller column
    assert 5 <= flips <= 25


@given(st.floats(-6, 6), st.floats(-6, 6))
@settings(max_examples=15, deadline=None)
def test_sample_views_moves_lateral_rows_only(dr, dc):
    dxa, _ = _biplanar_scan()
    scan = prepare_scan(dxa, pixel_mm=PX, image_size=(128, 64), lateral=True)
    out = sample_views(scan.stack, scan.crop, shift_px=(dr, dc))
    np.testing.assert_array_equal(out[:2], sample_crop(scan.stack[:2], scan.crop, shift_px=(dr, dc)))
    np.testing.assert_array_equal(out[2:], sample_crop(scan.stack[2:], scan.crop, shift_px=(dr, 0.0)))
    ap_only = sample_views(scan.stack[:2], scan.crop, angle_deg=2.0, shift_px=(dr, dc))
    np.testing.assert_array_equal(ap_only, sample_crop(scan.stack[:2], scan.crop, angle_deg=2.0, shift_px=(dr, dc)))


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: resample_image(np.zeros((3, 3, 3)), (1, 1), 1.0), ShapeError),
        (lambda: resample_image(np.zeros((3, 3)), (1, 1), 0.0), InvalidArgumentError),
        (lambda: resample_image(np.zeros((3, 3)), (0, 1), 1.0), InvalidArgumentError),
        (lambda: find_spine_crop(np.zeros((50, 50)), pixel_mm=4.0, image_size=(32, 16)), InvalidArgumentError),
        (lambda: find_spine_crop(np.full((50, 50), np.nan), pixel_mm=4.0, image_size=(32, 16)), NonFiniteError),
        (lambda: find_spine_crop(np.ones((50, 50)), pixel_mm=4.0, image_size=(4, 16)), InvalidArgumentError),
        (lambda: sample_crop(np.zeros((3, 3)), CropWindow(0, 0, 8, 8, 1.0)), ShapeError),
        (lambda: sample_views(np.zeros((8, 8)), CropWindow(0, 0, 8, 8, 1.0)), ShapeError),
        (lambda: sample_views(np.zeros((1, 8, 8)), CropWindow(0, 0, 8, 8, 1.0)), ShapeError),
        (lambda: sample_views(np.zeros((4, 8, 8)), CropWindow(0, 0, 8, 8, 1.0), angle_deg=1.0), InvalidArgumentError),
        (lambda: SpineDataset([PreparedScan(np.zeros((2, 8, 8)), CropWindow(0, 0, 8, 8, 1.0))], []), InvalidArgumentError),
        (lambda: mirror_crop_vector(np.zeros(7), 8), ShapeError),
        (lambda: mirror_crop_vector(np.zeros(15), 8), ShapeError),
        (lambda: mirror_crop_vector(np.zeros((2, 2, 14)), 8), ShapeError),
        (lambda: mirror_crop_vector(np.zeros(14), 0), InvalidArgumentError),
        (lambda: mirror_crop_vector(np.zeros(14), 8.0), InvalidArgumentError),
    ],
)
def test_bad_inputs(call, err):
    with pytest.raises(err):
        call()
