"""The TotalSegmentator adapter (spinelib.ingest.segment) against known answers.

* An analytic vertebra (elliptic-cylinder body, posterior ring around the canal, spinous
  and transverse processes) in any pose: the recovered body matches the true one.
* A synthetic subject turned into TotalSegmentator-like outputs
  (``tests/data/totalseg_fixtures.py``): the adapter gives back the subject's spine
  column and its six curves.
* One test per kind of bad input.
"""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.shape.extract import column_curves
from spinelib.shape.frame import SubjectFrame
from spinelib.errors import (
    DTypeError,
    EmptySegmentationError,
    InvalidArgumentError,
    MissingFileError,
    ShapeError,
)
from spinelib.profiles import get_profile
from spinelib.ingest.discs import assign_discs
from spinelib.ingest.segment import VERTEBRAE_MR_LABELS, VERTEBRAE_MR_LEVEL_LABEL, seg_from_totalsegmentator
from spinelib.ingest.vertebra_body import split_vertebra
from spinelib.spine import (
    DISC_LABEL,
    LEVELS,
    LUMBOSACRAL_DISC_LABEL,
    POSTERIOR_LABEL,
    SACRUM_LABEL,
    column_mask,
)
from spinelib.synth.subject import make_subject
from spinelib.geometry.transform import PlanarTransform


import spinelib_tests_totalseg_fixtures as tsf  # noqa: E402  (registered by conftest)
from spinelib.synth.config import SynthConfig  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


# --------------------------------------------------------------------------- analytic vertebra


def _rotation(axial_deg: float, sagittal_deg: float, coronal_deg: float) -> np.ndarray:
    """Local -> world rotation: coronal tilt (about y), then sagittal (about x), then axial (about z)."""
    a, s, c = np.deg2rad([axial_deg, sagittal_deg, coronal_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(s), -np.sin(s)], [0, np.sin(s), np.cos(s)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


def analytic_vertebra(voxel_mm=(2.2, 2.2, 3.0), axial_deg=0.0, sagittal_deg=0.0, coronal_deg=0.0,
                      *, width=44.0, depth=32.0, height=26.0, filled_canal=False):
    """A lumbar-like vertebra on a RAS grid centred on its body.

    Local frame: x lateral, y anterior, z superior. Body: elliptic cylinder (semi-axes
    width/2, depth/2, half-height height/2). Posterior: an elliptic ring around the canal
    (half-width 10, half-depth 8 mm, 6 mm thick) behind the body, a spinous process 7 mm
    wide running 65 mm back and drooping, transverse processes 9 mm thick reaching 22 mm
    beyond the body's sides.

    Returns (whole, body, cord, affine, superior axis); ``cord`` is a 6 mm cylinder in the
    canal, ``filled_canal`` paints the canal as vertebra (a segmentation that filled it).
    """
    v = np.asarray(voxel_mm, float)
    ext = 80.0
    shape = tuple(int(np.ceil(2 * ext / vi)) + 1 for vi in v)
    aff = np.diag([*v, 1.0])
    aff[:3, 3] = -ext
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    r = _rotation(axial_deg, sagittal_deg, coronal_deg)
    x, y, z = ((ijk * v - ext) @ r).T
    body = ((x / (width / 2)) ** 2 + (y / (depth / 2)) ** 2 <= 1) & (np.abs(z) <= height / 2)
    rl, ra = 10.0, 8.0
    yc = -depth / 2 - ra + 1.0
    inner = (x / rl) ** 2 + ((y - yc) / ra) ** 2 <= 1
    outer = (x / (rl + 6)) ** 2 + ((y - yc) / (ra + 6)) ** 2 <= 1
    ring = outer & ~inner & (np.abs(z) <= 0.4 * height) & (y < -depth / 2 + 4)
    spinous = (np.abs(x) <= 3.5) & (y < yc - ra) & (y > -depth / 2 - 65) & (np.abs(z + 0.3 * (yc - ra - y)) <= 7)
    transverse = (np.abs(x) >= rl) & (np.abs(x) <= width / 2 + 22) & (np.abs(y - yc) <= 4.5) & (np.abs(z) <= 5)
    whole = body | ring | spinous | transverse
    if filled_canal:
        whole |= inner & (np.abs(z) <= 0.4 * height) & (y < -depth / 2)
    cord = (x**2 + (y - yc) ** 2 <= 3.0**2) & (np.abs(z) <= 60)
    return (whole.reshape(shape), body.reshape(shape), cord.reshape(shape), aff, r[:, 2])


@pytest.mark.parametrize("voxel", [(1.5, 1.5, 1.5), (2.2, 2.2, 3.0), (4.4, 4.4, 5.0)])
@pytest.mark.parametrize("pose", [(0, 0, 0), (20, 0, 0), (0, 20, 0), (25, -15, 10)])
def test_split_vertebra_recovers_analytic_body(voxel, pose):
    whole, body, cord, aff, up = analytic_vertebra(voxel, *pose)
    assert dice(whole, body) < 0.8  # the posterior elements matter
    est = split_vertebra(whole, aff, up)
    assert est.dtype == bool and not np.any(est & ~whole)
    assert dice(est, body) >= 0.9
    with_cord = split_vertebra(whole, aff, up, cord=cord)
    assert dice(with_cord, body) >= 0.9


@settings(max_examples=12, deadline=None)
@given(axial=st.floats(-30, 30), sagittal=st.floats(-25, 25), coronal=st.floats(-15, 15))
def test_split_vertebra_any_pose(axial, sagittal, coronal):
    whole, body, cord, aff, up = analytic_vertebra((2.2, 2.2, 3.0), axial, sagittal, coronal)
    assert dice(split_vertebra(whole, aff, up), body) >= 0.9
    assert dice(split_vertebra(whole, aff, up, cord=cord), body) >= 0.9


def test_split_vertebra_filled_canal_falls_back():
    """A canal the segmentation filled in leaves no gap: the cord still bounds the wall;
    without a cord the wall falls back to the back of the opening's core, which then holds
    the filled canal too (the whole body is kept, with part of the arch)."""
    whole, body, cord, aff, up = analytic_vertebra((1.5, 1.5, 1.5), 10, 5, 0, filled_canal=True)
    assert dice(split_vertebra(whole, aff, up, cord=cord), body) >= 0.9
    no_cord = split_vertebra(whole, aff, up)
    assert (no_cord & body).sum() >= 0.98 * body.sum()
    assert no_cord.sum() < whole.sum()


def test_split_vertebra_ignores_anterior_spur():
    """A thin spur in front of the body (an osteophyte, or a stray voxel) is a sparse bin
    before the body's front, not the canal."""
    whole, body, cord, aff, up = analytic_vertebra((2.2, 2.2, 3.0))
    i, j, k = (np.array(whole.shape) - 1) // 2
    front = int(np.nonzero(body[i, :, k])[0].max())
    spur = np.zeros_like(whole)
    spur[i, front + 1:front + 4, k] = True
    est = split_vertebra(whole | spur, aff, up)
    assert dice(est, body) >= 0.9


def test_split_vertebra_rejects_bad_input():
    whole, body, cord, aff, up = analytic_vertebra((4.4, 4.4, 5.0))
    with pytest.raises(EmptySegmentationError, match="empty"):
        split_vertebra(np.zeros_like(whole), aff, up)
    with pytest.raises(ShapeError, match="3D"):
        split_vertebra(whole[0], aff, up)
    with pytest.raises(DTypeError, match="boolean"):
        split_vertebra(whole * 3, aff, up)
    with pytest.raises(InvalidArgumentError, match="superior"):
        split_vertebra(whole, aff, np.zeros(3))
    with pytest.raises(InvalidArgumentError, match="affine"):
        split_vertebra(whole, np.zeros((4, 4)), up)
    with pytest.raises(ShapeError, match="cord"):
        split_vertebra(whole, aff, up, cord=cord[1:])
    with pytest.raises(InvalidArgumentError, match="opening_radius_mm"):
        split_vertebra(whole, aff, up, opening_radius_mm=-1.0)


# --------------------------------------------------------------------------- discs


def test_assign_discs_by_gap():
    aff = np.eye(4)
    d = np.zeros((20, 20, 60), dtype=bool)
    d[8:12, 8:12, 49:51] = True  # between C7 (z 55) and T1 (z 45): dropped
    d[8:12, 8:12, 39:41] = True  # T1/T2: column disc
    d[8:12, 8:12, 9:11] = True  # L5/sacrum
    d[0:2, 0:2, 39:41] = True  # far off the column (> half-width + 10 mm): dropped
    d[8:12, 8:12, 0:2] = True  # below the sacrum anchor: dropped
    anchors = [("C7", np.array([9.5, 9.5, 55.0]), 2.0), ("T1", np.array([9.5, 9.5, 45.0]), 2.0),
               ("T2", np.array([9.5, 9.5, 35.0]), 2.0), ("L5", np.array([9.5, 9.5, 15.0]), 2.0),
               ("sacrum", np.array([9.5, 9.5, 5.0]), 2.0)]
    out = assign_discs(d, aff, anchors)
    assert set(np.unique(out[8:12, 8:12, 39:41])) == {DISC_LABEL}
    assert set(np.unique(out[8:12, 8:12, 9:11])) == {LUMBOSACRAL_DISC_LABEL}
    assert not out[8:12, 8:12, 49:51].any() and not out[0:2, 0:2].any() and not out[..., 0:2].any()
    with pytest.raises(InvalidArgumentError, match="two anchor"):
        assign_discs(d, aff, anchors[:1])
    with pytest.raises(ShapeError):
        assign_discs(d[0], aff, anchors)


# --------------------------------------------------------------------------- synthetic subjects


@pytest.fixture(scope="module")
def subjects():
    """Three subjects at the default profile's MRI grid (4.4 x 4.4 x 5 mm) with their
    TotalSegmentator-like outputs."""
    params = get_profile("default")
    out = []
    for idx in range(3):
        s = make_subject(idx, SynthConfig.from_profile(params))
        vimg, timg = tsf.totalseg_images(s.seg, s.affine, idx, params)
        out.append((s, params, vimg, timg))
    return out


def _curves(labels, affine, s, params):
    frame = SubjectFrame(PlanarTransform.from_dict(s.truth["transform"]), s.bone.shape,
                         tuple(s.pixel_spacing_mm), s.truth["table_y_mm"])
    return column_curves(labels, affine, frame, params["n_levels"])


def test_adapter_recovers_synthetic_column(subjects):
    for s, params, vimg, timg in subjects:
        labels, aff = seg_from_totalsegmentator(vimg, timg)
        assert labels.dtype == np.uint8 and labels.shape == s.seg.shape
        np.testing.assert_allclose(aff, s.affine)
        assert dice(column_mask(labels), column_mask(s.seg)) >= 0.9
        for k in range(1, len(LEVELS) + 1):
            assert dice(labels == k, s.seg == k) >= 0.85, LEVELS[k - 1]
        assert dice(labels == DISC_LABEL, s.seg == DISC_LABEL) >= 0.9
        assert dice(labels == LUMBOSACRAL_DISC_LABEL, s.seg == LUMBOSACRAL_DISC_LABEL) >= 0.9
        assert dice(labels == SACRUM_LABEL, s.seg == SACRUM_LABEL) >= 0.9
        assert dice(labels == POSTERIOR_LABEL, s.seg == POSTERIOR_LABEL) >= 0.85
        voxel = float(np.max(np.abs(np.diag(s.affine)[:3])))
        true, est = _curves(s.seg, s.affine, s, params), _curves(labels, aff, s, params)
        err = np.abs(true.values - est.values)
        # mean error within half a voxel; the worst level within two voxels (the plane cut
        # keeps the pedicle roots beside the synthetic body's convex back)
        assert np.all(err.mean(axis=1) <= 0.5 * voxel), err.mean(axis=1)
        assert np.all(err.max(axis=1) <= 2 * voxel + 1e-6), err.max(axis=1)
        assert np.all(np.abs(true.extent_mm - est.extent_mm) <= voxel + 1e-6)


def test_adapter_reads_files_and_any_orientation(subjects, tmp_path):
    """Paths and images give the same labels; an LPS-stored pair is brought to RAS+."""
    s, params, vimg, timg = subjects[0]
    ref, ref_aff = seg_from_totalsegmentator(vimg, timg)
    pv, pt = tmp_path / "vertebrae_mr.nii.gz", tmp_path / "total_mr.nii.gz"
    nib.save(vimg, pv)
    nib.save(timg, pt)
    labels, aff = seg_from_totalsegmentator(str(pv), pt)
    np.testing.assert_array_equal(labels, ref)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [vimg.shape[0] - 1, vimg.shape[1] - 1, 0]

    def lps(img):
        return nib.Nifti1Image(np.asarray(img.dataobj)[::-1, ::-1, :].copy(), img.affine @ flip)

    labels2, aff2 = seg_from_totalsegmentator(lps(vimg), lps(timg))
    np.testing.assert_allclose(aff2, ref_aff, atol=1e-6)
    np.testing.assert_array_equal(labels2, ref)


def test_adapter_drops_cervical_spine(subjects):
    """C7 (vertebrae_mr 19) and a C7/T1 disc lie outside our convention: both dropped."""
    s, params, vimg, timg = subjects[0]
    vert = np.asarray(vimg.dataobj).copy()
    total = np.asarray(timg.dataobj).copy()
    t1 = np.argwhere(vert == VERTEBRAE_MR_LEVEL_LABEL["T1"])
    top = int(t1[:, 2].max())
    ci, cj = (int(v) for v in np.median(t1[:, :2], axis=0))
    assert top + 6 < vert.shape[2]
    vert[ci - 3:ci + 3, cj - 3:cj + 3, top + 4:top + 6] = 19  # C7 body
    total[ci - 3:ci + 3, cj - 3:cj + 3, top + 2:top + 3] = 20  # C7/T1 disc
    labels, _ = seg_from_totalsegmentator(nib.Nifti1Image(vert, vimg.affine), nib.Nifti1Image(total, timg.affine))
    ref, _ = seg_from_totalsegmentator(vimg, timg)
    assert (total == 20)[..., top + 2].any()
    np.testing.assert_array_equal(labels, ref)


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def pair(subjects):
    s, params, vimg, timg = subjects[0]
    return np.asarray(vimg.dataobj).copy(), np.asarray(timg.dataobj).copy(), vimg.affine.copy()


def test_missing_vertebrae_named(pair, tmp_path):
    vert, total, aff = pair
    bad = vert.copy()
    bad[np.isin(bad, [VERTEBRAE_MR_LEVEL_LABEL["T1"], VERTEBRAE_MR_LEVEL_LABEL["L3"]])] = 0
    p = tmp_path / "vertebrae_mr.nii.gz"
    nib.save(nib.Nifti1Image(bad, aff), p)
    with pytest.raises(EmptySegmentationError, match=r"vertebrae_mr\.nii\.gz lacks vertebrae T1, L3 \(vertebrae_mr labels 18, 4\)"):
        seg_from_totalsegmentator(p, nib.Nifti1Image(total, aff))


def test_missing_discs(pair):
    vert, total, aff = pair
    bad = total.copy()
    bad[bad == 20] = 0
    with pytest.raises(EmptySegmentationError, match="intervertebral_discs"):
        seg_from_totalsegmentator(nib.Nifti1Image(vert, aff), nib.Nifti1Image(bad, aff))


def test_shape_mismatch(pair):
    vert, total, aff = pair
    with pytest.raises(ShapeError, match="same MRI"):
        seg_from_totalsegmentator(nib.Nifti1Image(vert, aff), nib.Nifti1Image(total[:-1].copy(), aff))


def test_affine_mismatch(pair):
    vert, total, aff = pair
    moved = aff.copy()
    moved[0, 3] += 2.0
    with pytest.raises(InvalidArgumentError, match="different affines"):
        seg_from_totalsegmentator(nib.Nifti1Image(vert, aff), nib.Nifti1Image(total, moved))


def test_swapped_tasks(pair):
    vert, total, aff = pair
    total = total.copy()
    total[0, 0, 0] = 40  # total_mr has labels up to 50, vertebrae_mr up to 25
    with pytest.raises(InvalidArgumentError, match="--task vertebrae_mr"):
        seg_from_totalsegmentator(nib.Nifti1Image(total, aff), nib.Nifti1Image(vert, aff))
    assert max(VERTEBRAE_MR_LABELS) == 25


def test_folder_instead_of_ml_file(pair, tmp_path):
    vert, total, aff = pair
    folder = tmp_path / "segmentations"
    folder.mkdir()
    with pytest.raises(InvalidArgumentError, match="--ml"):
        seg_from_totalsegmentator(folder, nib.Nifti1Image(total, aff))


def test_missing_file(pair, tmp_path):
    vert, total, aff = pair
    with pytest.raises(MissingFileError, match="total_mr"):
        seg_from_totalsegmentator(nib.Nifti1Image(vert, aff), tmp_path / "nope.nii.gz")


def test_non_integer_labels(pair):
    vert, total, aff = pair
    bad = vert.astype(np.float32)
    bad[0, 0, 0] = 0.5
    with pytest.raises(DTypeError, match="non-integer"):
        seg_from_totalsegmentator(nib.Nifti1Image(bad, aff), nib.Nifti1Image(total, aff))


def test_wrong_type(pair):
    vert, total, aff = pair
    with pytest.raises(InvalidArgumentError, match="path or a nibabel image"):
        seg_from_totalsegmentator(vert, nib.Nifti1Image(total, aff))
