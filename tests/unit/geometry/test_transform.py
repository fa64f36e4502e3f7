from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError, ShapeError
from spinelib.geometry.transform import (
    PlanarTransform,
    apply2d,
    check_image_shape,
    check_image_spacing,
    coronal_affine,
    dxa_pixel_to_frame,
    dxa_pixel_to_mri,
    transform_error_mm,
)

finite = st.floats(-200, 200, allow_nan=False)
angles = st.floats(-180, 180, allow_nan=False)


def test_pixel_frame_orientation():
    m = dxa_pixel_to_frame((101, 51), (2.0, 3.0))
    centre = apply2d(m, np.array([[50.0, 25.0]]))
    np.testing.assert_allclose(centre, [[0.0, 0.0]], atol=1e-12)
    # row 0 is superior (+z), column 0 is the patient's right (+x)
    top_right = apply2d(m, np.array([[0.0, 0.0]]))[0]
    assert top_right[0] == pytest.approx(75.0) and top_right[1] == pytest.approx(100.0)


@given(angles, finite, finite, finite, finite)
@settings(max_examples=50, deadline=None)
def test_inverse_roundtrip(theta, tx, ty, x, z):
    t = PlanarTransform(theta, tx, ty)
    p = np.array([[x, z]])
    np.testing.assert_allclose(t.inverse().apply(t.apply(p)), p, atol=1e-8)


@given(angles, finite, finite)
@settings(max_examples=50, deadline=None)
def test_from_matrix_roundtrip(theta, tx, ty):
    t = PlanarTransform(theta, tx, ty)
    back = PlanarTransform.from_matrix(t.matrix)
    np.testing.assert_allclose(back.matrix, t.matrix, atol=1e-9)


def test_error_zero_for_identical_and_equals_shift():
    t = PlanarTransform(3.0, 10.0, -4.0)
    pts = np.array([[0.0, 0.0], [50.0, -300.0]])
    np.testing.assert_allclose(transform_error_mm(t, t, pts), 0.0, atol=1e-9)
    shifted = PlanarTransform(3.0, 13.0, 0.0)  # 3 mm in x, 4 mm in z: 5 mm everywhere
    np.testing.assert_allclose(transform_error_mm(shifted, t, pts), 5.0, atol=1e-9)


def test_dxa_pixel_to_mri_centre_lands_on_translation():
    t = PlanarTransform(5.0, 12.0, -30.0)
    m = dxa_pixel_to_mri(t, (11, 21), (2.2, 2.2))
    np.testing.assert_allclose(apply2d(m, np.array([[5.0, 10.0]])), [[12.0, -30.0]], atol=1e-9)


def test_coronal_affine():
    aff = np.diag([2.0, 3.0, 4.0, 1.0])
    aff[:3, 3] = [-10, -20, -30]
    np.testing.assert_allclose(apply2d(coronal_affine(aff), np.array([[1.0, 2.0]])), [[-8.0, -22.0]])


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: dxa_pixel_to_frame((10, 10), (0.0, 1.0)), InvalidArgumentError),
        (lambda: dxa_pixel_to_frame((10, 10), (np.nan, 1.0)), InvalidArgumentError),
        (lambda: dxa_pixel_to_frame((0, 10), (1.0, 1.0)), InvalidArgumentError),
        (lambda: apply2d(np.eye(2), np.zeros((1, 2))), ShapeError),
        (lambda: apply2d(np.eye(3), np.zeros((3,))), ShapeError),
        (lambda: PlanarTransform(np.nan, 0, 0).matrix, InvalidArgumentError),
        (lambda: PlanarTransform.from_matrix(np.diag([2.0, 1.0, 1.0])), InvalidArgumentError),
        (lambda: coronal_affine(np.eye(3)), ShapeError),
        (lambda: coronal_affine(np.diag([-1.0, 1, 1, 1])), InvalidArgumentError),
        (lambda: PlanarTransform.from_dict({"theta_deg": 1}), InvalidArgumentError),
        (lambda: PlanarTransform.from_dict({"theta_deg": "x", "tx_mm": 0, "ty_mm": 0}), InvalidArgumentError),
        (lambda: PlanarTransform.from_dict({"theta_deg": 1, "tx_mm": 2, "ty_mm": 3}, prefix="stage1_"),
         InvalidArgumentError),
    ],
)
def test_bad_inputs(call, err):
    with pytest.raises(err):
        call()


def test_image_shape_and_spacing_checks():
    assert check_image_shape(np.array([300, 200])) == (300, 200)
    assert check_image_spacing(np.array([0.5, 0.25])) == (0.5, 0.25)
    assert all(type(v) is float for v in check_image_spacing((1, 2)))
    for bad in ((0.0, 1.0), (1.0, np.inf), (1.0,), (1.0, 1.0, 1.0)):
        with pytest.raises(InvalidArgumentError, match="pixel spacing must be two positive finite mm values"):
            check_image_spacing(bad)
    for bad in ((0, 10), (10,), (10, 10, 10), (10.0, 10), (True, 10), "ab"):
        with pytest.raises(InvalidArgumentError, match=r"image shape must be two integers \(rows, cols\), each >= 1"):
            check_image_shape(bad)
    # a caller's own name and lower bound (a network's crop is at least 8 pixels)
    assert check_image_shape((8, 9), "image_size", 8) == (8, 9)
    with pytest.raises(InvalidArgumentError, match="image_size must be two integers .* each >= 8, got \\(7, 9\\)"):
        check_image_shape((7, 9), "image_size", 8)


def test_from_dict_reads_a_table_row_with_a_column_prefix():
    import pandas as pd

    row = pd.DataFrame({"theta_deg": [1.5], "tx_mm": [-2.0], "ty_mm": [3.0], "stage1_theta_deg": [0.5],
                        "stage1_tx_mm": [4.0], "stage1_ty_mm": [-1.0]}).iloc[0]
    assert PlanarTransform.from_dict(row) == PlanarTransform(1.5, -2.0, 3.0)
    assert PlanarTransform.from_dict(row, prefix="stage1_") == PlanarTransform(0.5, 4.0, -1.0)
    t = PlanarTransform(7.0, 1.0, 2.0)
    assert PlanarTransform.from_dict(t.to_dict()) == t
