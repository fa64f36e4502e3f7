"""spinelib.shape.reconstruct: grids, the ellipse reconstruction, the true column in the frame, meshes."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.shape.curves import SpineCurves
from spinelib.shape.extract import column_curves
from spinelib.errors import EmptySegmentationError, InvalidArgumentError, ShapeError
from spinelib.metrics import dice_3d, iou_3d
from spinelib.shape.reconstruct import (
    Grid3D,
    centreline_points,
    column_mask_in_frame,
    ellipse_mask,
    grid_for,
    surface_mesh,
)
from spinelib.spine import DISC_LABEL
from spinelib.geometry.transform import PlanarTransform
from spinelib.shape.frame import SubjectFrame


def _const_curves(k=10, a=10.0, b=6.0, cc=50.0, dc=30.0, top=0.0, bottom=100.0):
    v = np.array([[cc - a], [cc], [cc + a], [dc - b], [dc], [dc + b]]) * np.ones((1, k))
    return SpineCurves(v, np.array([top, bottom]))


def test_grid_validation_and_axes():
    g = Grid3D((0.0, 1.0, 2.0), (1.0, 2.0, 0.5), (3, 4, 5))
    np.testing.assert_allclose(g.axis_mm(1), [1.0, 3.0, 5.0, 7.0])
    assert g.voxel_volume_mm3 == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError):
        Grid3D((0, 0, 0), (1, 0, 1), (2, 2, 2))
    with pytest.raises(ShapeError):
        Grid3D((0, 0), (1, 1, 1), (2, 2, 2))
    with pytest.raises(InvalidArgumentError):
        Grid3D((0, 0, 0), (1, 1, 1), (2, 0, 2))
    with pytest.raises(InvalidArgumentError):
        grid_for([], 1.0)


def test_grid_for_covers_all_curves():
    c1 = _const_curves(top=10.0, bottom=300.0)
    c2 = _const_curves(cc=120.0, dc=50.0, top=40.0, bottom=420.0)
    g = grid_for([c1, c2], spacing_mm=2.0, margin_mm=5.0)
    lo = g.origin
    hi = g.origin + (np.array(g.shape) - 1) * g.spacing
    assert lo[0] <= 5.0 and hi[0] >= 425.0
    assert lo[1] <= 35.0 and hi[1] >= 135.0
    assert lo[2] <= 19.0 and hi[2] >= 61.0


def test_ellipse_mask_volume_and_slabs():
    c = _const_curves(k=10, a=10.0, b=6.0, top=0.0, bottom=100.0)
    g = grid_for([c], spacing_mm=0.5, margin_mm=2.0)
    m = ellipse_mask(c, g)
    vol = m.sum() * g.voxel_volume_mm3
    assert vol == pytest.approx(np.pi * 10 * 6 * 100, rel=0.02)
    rows = g.axis_mm(0)
    filled_rows = rows[m.any(axis=(1, 2))]
    assert filled_rows.min() >= 0.0 and filled_rows.max() < 100.0


def test_ellipse_mask_uses_each_levels_ellipse():
    v = _const_curves(k=3).values.copy()
    v[:3, 1] += np.array([30.0, 30.0, 30.0])  # level 1 shifted by 30 mm in col
    c = SpineCurves(v, np.array([0.0, 30.0]))
    g = Grid3D((0.5, 20.0, 0.0), (1.0, 1.0, 1.0), (30, 80, 60))
    m = ellipse_mask(c, g)
    cols = g.axis_mm(1)
    for r in range(30):
        centre = cols[m[r].any(axis=1)].mean()
        assert centre == pytest.approx(80.0 if 10 <= r < 20 else 50.0, abs=0.6)


def test_centreline_points():
    c = _const_curves(k=4, top=0.0, bottom=40.0)
    p = centreline_points(c)
    np.testing.assert_allclose(p, [[5, 50, 30], [15, 50, 30], [25, 50, 30], [35, 50, 30]])


def test_column_mask_in_frame_axis_aligned_box():
    """With no rotation and a grid on the voxel centres, resampling is exact."""
    seg = np.zeros((20, 20, 20), np.uint8)
    seg[5:10, 6:12, 3:15] = 5
    seg[12, 12, 12] = 22  # posterior element: not column
    aff = np.eye(4)
    tr = PlanarTransform(0.0, 0.0, 0.0)
    shape, sp = (41, 41), (1.0, 1.0)  # frame: col_mm = 20 - x, row_mm = 20 - z
    g = Grid3D((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (41, 41, 20))
    m = column_mask_in_frame(seg, aff, SubjectFrame(tr, shape, sp, 0.0), g)
    expected = np.zeros(g.shape, bool)
    # voxel (i, j, k) -> row 20 - k, col 20 - i, depth j
    for i in range(5, 10):
        for k in range(3, 15):
            expected[20 - k, 20 - i, 6:12] = True
    np.testing.assert_array_equal(m, expected)


def _phantom(voxel=(2.2, 2.2, 3.0), shape=(100, 60, 130), tilt_deg=4.0, cor_amp=8.0, sag_amp=12.0,
             table_y=-60.0):
    """An analytic spine column: an elliptic cylinder whose axis is tilted in the coronal
    plane and curved in both planes, semi-axes growing caudally, 17 'vertebrae' and 16
    discs, lying on the table plane."""
    vx, vy, vz = voxel
    ni, nj, nk = shape
    origin = np.array([-(ni - 1) / 2 * vx, table_y - 3 * vy + 0.37, -(nk - 1) / 2 * vz])
    aff = np.diag([vx, vy, vz, 1.0])
    aff[:3, 3] = origin
    x = origin[0] + np.arange(ni) * vx
    y = origin[1] + np.arange(nj) * vy
    z = origin[2] + np.arange(nk) * vz
    z_top, z_bot = z[-1] - 20.0, z[0] + 25.0
    t = (z_top - z) / (z_top - z_bot)  # 0 at the top of T1, 1 at the bottom of L5
    xc = np.tan(np.radians(tilt_deg)) * (z - z.mean()) + cor_amp * np.sin(np.pi * t)
    yc = table_y + 45.0 + sag_amp * np.sin(2 * np.pi * t)
    a, b = 14.0 + 10.0 * t, 9.0 + 7.0 * t
    inside = ((x[:, None, None] - xc) / a) ** 2 + ((y[None, :, None] - yc) / b) ** 2 <= 1
    inside &= ((t >= 0) & (t <= 1))[None, None, :]
    hv, hd = 0.7 / 17, 0.3 / 16
    n = np.floor(np.clip(t, 0, 1 - 1e-9) / (hv + hd)).astype(int)
    lab = np.where(t - n * (hv + hd) < hv, n + 1, DISC_LABEL)
    lab = np.where(n >= 17, 17, lab)
    return np.where(inside, lab[None, None, :], 0).astype(np.uint8), aff


@pytest.mark.parametrize("k", [32, 64, 209])
def test_ceiling_reconstruction_iou(k):
    """The ceiling of the method: curves extracted from the true column, rebuilt as
    ellipses, compared voxel for voxel with the true column in the same frame."""
    seg, aff = _phantom()
    tr = PlanarTransform(3.0, 12.0, -8.0)
    shape, sp, table = (240, 130), (2.2, 2.2), -60.0
    frame = SubjectFrame(tr, shape, sp, table)
    curves = column_curves(seg, aff, frame, k)
    grid = grid_for([curves], spacing_mm=1.0, margin_mm=5.0)
    rec = ellipse_mask(curves, grid)
    true = column_mask_in_frame(seg, aff, frame, grid)
    iou = iou_3d(rec, true)
    print(f"ceiling K={k}: IoU {iou:.3f}, Dice {dice_3d(rec, true):.3f}")
    assert iou > 0.85


def test_surface_mesh_of_sphere():
    g = Grid3D((-20.0, -20.0, -20.0), (1.0, 1.0, 1.0), (41, 41, 41))
    r = g.axis_mm(0)
    rr = np.sqrt(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
    verts, faces = surface_mesh(rr <= 12.0, g)
    assert faces.shape[1] == 3 and faces.max() < len(verts)
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1).mean(), 12.0, atol=0.7)
    # touching the border: still a closed surface inside the grid bounds (+ half a voxel)
    verts2, _ = surface_mesh(np.ones(g.shape, bool), g)
    assert verts2.min() >= -21.0 and verts2.max() <= 21.0
    with pytest.raises(EmptySegmentationError):
        surface_mesh(np.zeros(g.shape, bool), g)
    with pytest.raises(ShapeError):
        surface_mesh(np.ones((3, 3, 3), bool), g)


def test_bad_inputs():
    c = _const_curves()
    g = grid_for([c], 1.0, 1.0)
    with pytest.raises(InvalidArgumentError):
        ellipse_mask(c.values, g)
    with pytest.raises(InvalidArgumentError):
        ellipse_mask(c, (0, 0, 0))
    with pytest.raises(ShapeError):
        column_mask_in_frame(np.zeros((3, 3)), np.eye(4), SubjectFrame(PlanarTransform(0, 0, 0), (5, 5), (1, 1), 0.0),
                             g)
    with pytest.raises(InvalidArgumentError, match="frame"):
        column_mask_in_frame(np.zeros((3, 3, 3)), np.eye(4), PlanarTransform(0, 0, 0), g)
    with pytest.raises(InvalidArgumentError):
        centreline_points(np.zeros((6, 4)))
