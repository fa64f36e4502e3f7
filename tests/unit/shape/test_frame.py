"""spinelib.shape.frame: the subject frame (known answers, rigidity, one check per bad input)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError, NonFiniteError, SpineLibError
from spinelib.geometry.transform import PlanarTransform, apply2d
from spinelib.shape.frame import SubjectFrame, check_frame

IDENTITY = PlanarTransform(0.0, 0.0, 0.0)
# shape (11, 21), spacing (2, 3) mm: the image centre (row 5, col 10) is at (10, 30) row/col-mm
SHAPE, SPACING = (11, 21), (2.0, 3.0)

angles = st.floats(-180.0, 180.0)
shifts = st.floats(-500.0, 500.0)
coords = st.floats(-1000.0, 1000.0)
spacings = st.floats(0.1, 5.0)
sizes = st.integers(1, 600)


def _apply(m: np.ndarray, p) -> np.ndarray:
    return (m @ np.array([*p, 1.0]))[:3]


def test_identity_known_answer():
    """No rotation, no shift: row_mm = 10 - z, col_mm = 30 - x, depth_mm = y - table."""
    f = SubjectFrame(IDENTITY, SHAPE, SPACING, -50.0)
    np.testing.assert_allclose(_apply(f.world_to_frame(), (4.0, -20.0, 6.0)), [4.0, 26.0, 30.0], atol=1e-12)
    np.testing.assert_allclose(_apply(f.world_to_frame(), (0.0, -50.0, 0.0)), [10.0, 30.0, 0.0], atol=1e-12)


def test_rotation_90_known_answer():
    """theta = 90 deg, shift (10, -5): MRI x = 10 - z_d, z = x_d - 5, so
    row_mm = 10 - (10 - x) and col_mm = 30 - (z + 5)."""
    f = SubjectFrame(PlanarTransform(90.0, 10.0, -5.0), SHAPE, SPACING, -3.0)
    np.testing.assert_allclose(_apply(f.world_to_frame(), (4.0, 7.0, 6.0)), [4.0, 19.0, 10.0], atol=1e-9)
    # the DXA image centre lands on (tx, ty)
    np.testing.assert_allclose(_apply(f.world_to_frame(), (10.0, -3.0, -5.0)), [10.0, 30.0, 0.0], atol=1e-9)


def test_fields_are_normalised_and_frozen():
    f = SubjectFrame(IDENTITY, (np.int64(11), np.int64(21)), np.array([2.0, 3.0], dtype=np.float32),
                     np.float64(-50.0))
    assert f.dxa_shape == SHAPE and type(f.dxa_shape[0]) is int
    assert f.dxa_spacing == SPACING and type(f.dxa_spacing[0]) is float
    assert f.table_y_mm == -50.0 and type(f.table_y_mm) is float
    same = SubjectFrame(IDENTITY, SHAPE, SPACING, -50.0)
    assert f == same and hash(f) == hash(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.table_y_mm = 0.0  # type: ignore[misc]


@given(angles, shifts, shifts, sizes, sizes, spacings, spacings, shifts, coords, coords, coords, coords, coords, coords)
@settings(max_examples=60, deadline=None)
def test_world_to_frame_is_rigid(theta, tx, ty, rows, cols, sr, sc, table, x0, y0, z0, x1, y1, z1):
    """Distances in mm are preserved, whatever the transform, grid and (anisotropic) spacing."""
    m = SubjectFrame(PlanarTransform(theta, tx, ty), (rows, cols), (sr, sc), table).world_to_frame()
    p, q = np.array([x0, y0, z0]), np.array([x1, y1, z1])
    d_frame = np.linalg.norm(_apply(m, p) - _apply(m, q))
    assert d_frame == pytest.approx(np.linalg.norm(p - q), rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(m[3], [0.0, 0.0, 0.0, 1.0])


@given(angles, shifts, shifts, spacings, spacings, shifts, st.floats(0.0, 10.0), st.floats(0.0, 20.0), coords)
@settings(max_examples=40, deadline=None)
def test_frame_agrees_with_dxa_pixel_to_mri(theta, tx, ty, sr, sc, table, row, col, y):
    """The MRI point of DXA pixel (row, col) lands on (sr * row, sc * col) in the frame."""
    f = SubjectFrame(PlanarTransform(theta, tx, ty), SHAPE, (sr, sc), table)
    x, z = apply2d(f.dxa_pixel_to_mri(), np.array([[row, col]]))[0]
    np.testing.assert_allclose(_apply(f.world_to_frame(), (x, y, z)), [sr * row, sc * col, y - table], atol=1e-6)


@pytest.mark.parametrize("table", [float("nan"), float("inf"), -np.inf])
def test_non_finite_table_plane(table):
    with pytest.raises(NonFiniteError, match="table_y_mm"):
        SubjectFrame(IDENTITY, SHAPE, SPACING, table)


@pytest.mark.parametrize("table", [None, "12.0", True, np.array([1.0, 2.0])])
def test_table_plane_not_a_number(table):
    with pytest.raises(InvalidArgumentError, match="table_y_mm"):
        SubjectFrame(IDENTITY, SHAPE, SPACING, table)


@pytest.mark.parametrize("shape", [(0, 5), (5,), (5, 5, 5), (2.5, 3), (True, 4), "ab", 7, None])
def test_bad_shape(shape):
    with pytest.raises(InvalidArgumentError, match="dxa_shape"):
        SubjectFrame(IDENTITY, shape, SPACING, 0.0)


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (1.0, -1.0), (np.nan, 1.0), (1.0, np.inf), (1.0,), "xy", None])
def test_bad_spacing(spacing):
    with pytest.raises(InvalidArgumentError, match="dxa_spacing"):
        SubjectFrame(IDENTITY, SHAPE, spacing, 0.0)


@pytest.mark.parametrize("transform", [(0.0, 0.0, 0.0), {"theta_deg": 0.0, "tx_mm": 0.0, "ty_mm": 0.0}, None])
def test_not_a_planar_transform(transform):
    with pytest.raises(InvalidArgumentError, match="transform"):
        SubjectFrame(transform, SHAPE, SPACING, 0.0)


def test_non_finite_transform():
    with pytest.raises(InvalidArgumentError, match="finite"):
        SubjectFrame(PlanarTransform(float("nan"), 0.0, 0.0), SHAPE, SPACING, 0.0)


def test_check_frame():
    f = SubjectFrame(IDENTITY, SHAPE, SPACING, 0.0)
    assert check_frame(f) is f
    with pytest.raises(InvalidArgumentError, match="frame must be a SubjectFrame"):
        check_frame(IDENTITY)
    with pytest.raises(SpineLibError, match="my_frame"):
        check_frame(None, "my_frame")
