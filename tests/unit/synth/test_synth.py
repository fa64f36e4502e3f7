"""spinelib.synth: determinism, files, physics consistency with the true transform."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError
from spinelib.profiles import get_profile
from spinelib.spine import LEVELS, column_mask
from spinelib.synth.cohort import SUBJECT_FILES, assign_splits, generate_cohort
from spinelib.synth.subject import GENERATOR_VERSION, make_subject, subject_signature
from spinelib.geometry.transform import PlanarTransform, dxa_pixel_to_mri
from spinelib.synth.config import SIGNATURE_FIELDS, SynthConfig

N = 3


@pytest.fixture(scope="module")
def smoke():
    return get_profile("smoke", {"n_subjects": N, "seed": 1})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, smoke):
    out = tmp_path_factory.mktemp("cohort")
    manifest = generate_cohort(out, SynthConfig.from_profile(smoke), jobs=1, progress=False)
    return manifest


@pytest.fixture(scope="module")
def subject(smoke):
    return make_subject(0, SynthConfig.from_profile(get_profile("smoke", {"seed": 1, "posture_change_mm": 0.0})))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_make_subject_is_a_function_of_seed_and_index(smoke):
    a = make_subject(2, SynthConfig.from_profile(smoke))
    b = make_subject(2, SynthConfig.from_profile(smoke))
    for key in ("bone", "tissue", "lateral_bone", "lateral_tissue", "fat", "water", "seg", "affine"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.truth == b.truth
    c = make_subject(2, SynthConfig.from_profile({**smoke, "seed": 2}))
    assert c.truth["demographics"] != a.truth["demographics"]


def test_cohort_twice_is_byte_identical_whatever_jobs(tmp_path, cohort, smoke):
    from spinelib.cli import main

    out2 = tmp_path / "again"
    assert main(["synth", "--out", str(out2), "--n", str(N), "--seed", "1", "--profile", "smoke", "--jobs", "2"]) == 0
    a, b = _files(cohort.parent), _files(out2)
    assert a.keys() == b.keys()
    diff = [k for k in a if a[k] != b[k]]
    assert not diff, f"files differ between runs: {diff}"


def test_manifest_and_files_follow_the_contract(cohort):
    from spinelib.io import read_dxa, read_manifest, read_truth

    df = read_manifest(cohort)
    assert list(df["subject_id"]) == [f"S{i:05d}" for i in range(N)]
    assert set(df["split"]) <= {"train", "val", "test"} and set(df["split"]) == {"train", "val", "test"}
    for sid in df["subject_id"]:
        folder = cohort.parent / sid
        assert sorted(p.name for p in folder.iterdir()) == sorted(SUBJECT_FILES)
        with np.load(folder / "dxa.npz") as z:
            assert set(z.files) == {"bone", "tissue", "pixel_spacing_mm", "lateral_bone", "lateral_tissue",
                                    "lateral_pixel_spacing_mm"}
            assert z["bone"].dtype == np.float32 and z["pixel_spacing_mm"].dtype == np.float64
            np.testing.assert_allclose(z["pixel_spacing_mm"], [4.4, 4.4])
            assert z["lateral_bone"].shape[0] == z["bone"].shape[0]
        dxa = read_dxa(folder / "dxa.npz")
        assert dxa.bone.shape == dxa.tissue.shape and dxa.bone.min() >= 0
        imgs = [nib.load(folder / f) for f in ("mri_fat.nii.gz", "mri_water.nii.gz", "seg.nii.gz")]
        for img in imgs:
            aff = img.affine
            assert np.allclose(aff[:3, :3], np.diag(np.diag(aff[:3, :3]))) and np.all(np.diag(aff)[:3] > 0)
            assert nib.aff2axcodes(aff) == ("R", "A", "S")
            np.testing.assert_allclose(np.diag(aff)[:3], [6.0, 6.0, 6.0])
            assert img.shape == imgs[0].shape
        assert imgs[2].get_data_dtype() == np.uint8
        labels = np.unique(np.asarray(imgs[2].dataobj))
        assert set(range(1, 18)) | {18, 20, 21, 22} <= set(labels.tolist())
        truth = read_truth(folder / "truth.json")
        for key in ("subject_id", "seed", "demographics", "shape", "transform", "table_y_mm",
                    "vertebra_centres_mm", "vertebra_centres_dxa_session_mm", "angles", "posture"):
            assert key in truth, key
        assert set(truth["transform"]) == {"theta_deg", "tx_mm", "ty_mm"}
        assert abs(truth["transform"]["theta_deg"]) <= 6.0
        assert set(LEVELS) <= set(truth["vertebra_centres_mm"])
        assert set(truth["angles"]) >= {"cobb_deg", "kyphosis_deg", "lordosis_deg", "apex_level", "curve_type"}


def test_resume_skips_complete_subjects_and_redoes_missing(tmp_path, smoke):
    out = tmp_path / "c"
    generate_cohort(out, SynthConfig.from_profile(smoke), progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.parent.name == "S00000"}
    import shutil

    shutil.rmtree(out / "S00001")
    (out / "manifest.csv").unlink()
    generate_cohort(out, SynthConfig.from_profile(smoke), progress=False)
    assert (out / "S00001" / "truth.json").is_file() and (out / "manifest.csv").is_file()
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after  # untouched
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_splits_fixed_by_seed():
    a = assign_splits(100, 3, [0.7, 0.1, 0.2])
    assert a == assign_splits(100, 3, [0.7, 0.1, 0.2])
    assert (a.count("train"), a.count("val"), a.count("test")) == (70, 10, 20)
    assert a != assign_splits(100, 4, [0.7, 0.1, 0.2])
    assert sorted(set(assign_splits(3, 0, [0.7, 0.1, 0.2]))) == ["test", "train", "val"]
    with pytest.raises(InvalidArgumentError, match="split_fractions"):
        assign_splits(10, 0, [0.5, 0.5, 0.5])


def _splat_column(seg, affine, transform, shape, spacing, bodies_only=False):
    """The MRI spine column projected into the DXA pixel grid through ``transform``."""
    M = dxa_pixel_to_mri(transform, shape, spacing)
    Minv = np.linalg.inv(M)
    mask = np.isin(seg, range(1, 18)) if bodies_only else column_mask(seg)
    idx = np.argwhere(mask).astype(float)
    w = idx @ affine[:3, :3].T + affine[:3, 3]
    pix = np.c_[w[:, 0], w[:, 2], np.ones(len(w))] @ Minv.T
    img, _, _ = np.histogram2d(pix[:, 0], pix[:, 1], bins=shape, range=[[-0.5, shape[0] - 0.5], [-0.5, shape[1] - 0.5]])
    return img


def _best_shift(bone, proj, max_shift=5):
    """Shift of ``proj`` maximising its correlation with ``bone``, both high-passed so that
    endplates and discs (not the overall density gradient) decide."""
    from scipy.ndimage import gaussian_filter

    best, arg = -np.inf, None
    b = bone.astype(float) - gaussian_filter(bone.astype(float), 2.0)
    proj = proj - gaussian_filter(proj, 2.0)
    for dr in range(-max_shift, max_shift + 1):
        for dc in range(-max_shift, max_shift + 1):
            score = float((np.roll(proj, (dr, dc), axis=(0, 1)) * b).sum())
            if score > best:
                best, arg = score, (dr, dc)
    return arg


def _row_centres(bone, proj):
    """Per row: bone-weighted column centre minus projected-column centre (pixels)."""
    out = []
    cols = np.arange(bone.shape[1])
    for r in np.nonzero(proj.sum(1) > 0)[0]:
        c = (proj[r] * cols).sum() / proj[r].sum()
        lo, hi = int(c) - 3, int(c) + 5
        win = bone[r, lo:hi].astype(float)
        out.append((win * cols[lo:hi]).sum() / win.sum() - c)
    return np.array(out)


def test_dxa_spine_lies_where_the_true_transform_puts_the_mri_spine(subject):
    """Project the label volume through the TRUE transform: the DXA bone channel's spine is
    there (best 2D correlation shift (0, 0); row centres agree within a pixel); a transform
    off by two pixels is detected as such."""
    s = subject
    T = PlanarTransform.from_dict(s.truth["transform"])
    sp = tuple(s.pixel_spacing_mm)
    proj = _splat_column(s.seg, s.affine, T, s.bone.shape, sp)
    bodies = _splat_column(s.seg, s.affine, T, s.bone.shape, sp, bodies_only=True)
    assert _best_shift(s.bone, bodies) == (0, 0)
    d = _row_centres(s.bone, proj)
    assert len(d) > 40
    assert abs(np.mean(d)) < 0.3 and np.median(np.abs(d)) < 1.0, (np.mean(d), np.median(np.abs(d)))
    # DXA centre 2 px further to the patient's right in the MRI: the MRI spine then lands
    # 2 columns further left-of-patient (+col) in the DXA grid, so it must move back by -2
    wrong = PlanarTransform(T.theta_deg, T.tx_mm + 2 * sp[1], T.ty_mm)
    proj_w = _splat_column(s.seg, s.affine, wrong, s.bone.shape, sp, bodies_only=True)
    assert _best_shift(s.bone, proj_w) == (0, -2)


def test_lateral_view_shows_the_spine_at_its_true_depth(subject):
    """Lateral rows are the AP rows; columns are depth above the table: on each vertebra's
    row the bone-weighted depth sits at the vertebra's true depth (the posterior elements
    pull it back a little)."""
    s, t = subject, subject.truth
    T = PlanarTransform.from_dict(t["transform"])
    sp = s.pixel_spacing_mm[0]
    C = np.array([t["vertebra_centres_dxa_session_mm"][lv] for lv in LEVELS])
    zd = T.inverse().apply(C[:, [0, 2]])[:, 1]
    rows = np.round((s.bone.shape[0] - 1) / 2 - zd / sp).astype(int)
    depth = C[:, 1] - t["table_y_mm"]
    lb = s.lateral_bone.astype(float)
    cols = np.arange(lb.shape[1]) * s.lateral_pixel_spacing_mm[1]
    wmean = np.array([(lb[r] * cols).sum() / lb[r].sum() for r in rows])
    assert np.median(np.abs(wmean - depth)) < 15.0
    assert np.corrcoef(wmean, depth)[0, 1] > 0.5


def test_dixon_contrast_and_table_plane(subject):
    s = subject
    seg, fat, water = s.seg, s.fat.astype(float), s.water.astype(float)
    body = np.isin(seg, range(1, 18))
    disc = seg == 20
    assert fat[body].mean() > fat[disc].mean()  # fatty marrow
    assert water[disc].mean() > water[body].mean()  # water-bright discs
    # posterior body surface: the lowest voxel with signal in each column is at the table
    # (per axial slice, the posterior-most body voxel over x; partial volume puts the
    # half-filled table voxel at ~half signal)
    sig = (fat + water) > 40
    j = np.argmax(sig, axis=1)  # (x, z) first voxel with signal along y
    has = sig.any(axis=1)
    jmin = np.where(has, j, 10**6).min(axis=0)[has.any(axis=0)]
    y = s.affine[1, 3] + s.affine[1, 1] * jmin
    table = s.truth["table_y_mm"]
    assert np.median(np.abs(y - table)) <= s.affine[1, 1]


def test_sagittal_depth_follows_back_thickness():
    """Spine depth above the table grows with the subcutaneous fat (a physical, learnable cue)."""
    from spinelib.synth.subject import draw_subject_geometry

    p = get_profile("smoke", {"seed": 5})
    fat, depth = [], []
    for i in range(120):
        g = draw_subject_geometry(i, SynthConfig.from_profile(p))
        fat.append(g["shape"]["subcutaneous_fat_mm"])
        depth.append(g["spine_mri"]["centres"][14, 1] - g["table_y"])
    assert np.corrcoef(fat, depth)[0, 1] > 0.3


def test_scoliosis_severity_scales_cobb():
    from spinelib.synth.subject import draw_subject_geometry
    from spinelib.synth.chain import measure_angles

    def cobbs(sev):
        p = get_profile("smoke", {"seed": 9, "scoliosis_severity": sev})
        return np.array([measure_angles(g["spine_mri"])["cobb_deg"]
                         for g in (draw_subject_geometry(i, SynthConfig.from_profile(p)) for i in range(80))])

    assert np.median(cobbs(2.0)) > 1.6 * np.median(cobbs(1.0))


def test_seg_dxa_is_the_dxa_session_spine_on_the_seg_grid(subject, smoke):
    """Without a posture change the DXA-session label volume equals ``seg``; with one it
    differs, by voxels near the vertebrae only, and its column sits where the DXA-session
    centres are."""
    s0 = subject
    assert s0.seg_dxa.shape == s0.seg.shape and s0.seg_dxa.dtype == np.uint8
    np.testing.assert_array_equal(s0.seg_dxa, s0.seg)
    assert s0.truth["dxa_session_seg"] == "seg_dxa.nii.gz"
    s1 = make_subject(0, SynthConfig.from_profile(get_profile("smoke", {"seed": 1, "posture_change_mm": 3.0})))
    assert set(np.unique(s1.seg_dxa).tolist()) == set(np.unique(s1.seg).tolist())
    changed = s1.seg_dxa != s1.seg
    assert changed.any()
    # the label centroid of each vertebra follows the session's centres
    for name, key in (("seg", "vertebra_centres_mm"), ("seg_dxa", "vertebra_centres_dxa_session_mm")):
        vol = getattr(s1, name)
        for lv_i in (0, 8, 16):
            idx = np.argwhere(vol == lv_i + 1).astype(float)
            w = idx @ s1.affine[:3, :3].T + s1.affine[:3, 3]
            true = np.array(s1.truth[key][LEVELS[lv_i]])
            assert np.linalg.norm(w.mean(0) - true) < 3.0, (name, LEVELS[lv_i])


def test_seg_dxa_file_and_truth_key(cohort, smoke):
    folder = cohort.parent / "S00000"
    truth = json.loads((folder / "truth.json").read_text())
    img = nib.load(folder / truth["dxa_session_seg"])
    seg = nib.load(folder / "seg.nii.gz")
    np.testing.assert_array_equal(img.affine, seg.affine)
    assert img.shape == seg.shape and img.get_data_dtype() == np.uint8
    assert 0.0 <= truth["body"]["torso_clip_fraction"] < 1.0
    assert truth["generator_version"] == GENERATOR_VERSION
    assert truth["signature"] == subject_signature(SynthConfig.from_profile(smoke))


def test_subject_signature_names_the_version_and_every_signature_field(smoke):
    config = SynthConfig.from_profile(smoke)
    sig = subject_signature(config)
    assert sig["generator_version"] == GENERATOR_VERSION
    assert set(sig) == {"generator_version", *SIGNATURE_FIELDS}
    assert json.loads(json.dumps(sig)) == sig  # stored in truth.json as it is
    assert subject_signature(config.with_subjects(config.n_subjects + 5)) == sig  # the cohort's size is not in it
    assert subject_signature(dataclasses.replace(config, seed=config.seed + 1))["seed"] == config.seed + 1


def test_cohort_of_an_older_generator_version_is_regenerated(tmp_path, smoke):
    out = tmp_path / "c"
    generate_cohort(out, SynthConfig.from_profile(smoke), progress=False)
    t = out / "S00001" / "truth.json"
    truth = json.loads(t.read_text())
    truth["signature"]["generator_version"] = 1
    truth["generator_version"] = 1
    t.write_text(json.dumps(truth))
    (out / "S00001" / "seg_dxa.nii.gz").unlink()
    keep = (out / "S00000" / "truth.json").stat().st_mtime_ns
    generate_cohort(out, SynthConfig.from_profile(smoke), progress=False)
    again = json.loads(t.read_text())
    assert again["generator_version"] == GENERATOR_VERSION and again["signature"]["generator_version"] == GENERATOR_VERSION
    assert (out / "S00001" / "seg_dxa.nii.gz").is_file()
    assert (out / "S00000" / "truth.json").stat().st_mtime_ns == keep


def test_rasterise_labels_rejects_bad_grids(subject):
    from spinelib.errors import InvalidArgumentError, ShapeError
    from spinelib.synth.mri import rasterise_labels

    with pytest.raises(ShapeError):
        rasterise_labels([], subject.affine, (0, 3, 3))
    with pytest.raises(InvalidArgumentError, match="affine"):
        rasterise_labels([], -subject.affine, subject.seg.shape)
    assert not rasterise_labels([], subject.affine, (4, 4, 4)).any()


# ----------------------------------------------------------------------------- rib cage


@settings(max_examples=50, deadline=None)
@given(phi=st.floats(-35, 35), psi=st.floats(-30, 30), rho=st.floats(-30, 30))
def test_rib_frame_keeps_coronal_tilt_and_rotation_but_not_sagittal_tilt(phi, psi, rho):
    from spinelib.synth.chain import vertebra_frame
    from spinelib.synth.parts import rib_frame

    F = vertebra_frame(phi, psi, rho)
    R = rib_frame(F)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert R[1, 2] == pytest.approx(0.0, abs=1e-12) and R[2, 2] > 0  # no sagittal tilt left
    # the coronal tilt stays: the superior axis leans left-right as the vertebra's does
    assert np.arctan2(R[0, 2], R[2, 2]) == pytest.approx(np.arctan2(F[0, 2], F[2, 2]), abs=1e-9)
    # without a coronal tilt, the rib frame is the untilted vertebra's (axial rotation kept)
    G = vertebra_frame(phi, 0.0, rho)
    np.testing.assert_allclose(rib_frame(G), vertebra_frame(0.0, 0.0, rho), atol=1e-9)


def test_rib_frame_of_an_untilted_vertebra_is_the_world_frame():
    from spinelib.synth.chain import vertebra_frame
    from spinelib.synth.parts import rib_frame

    np.testing.assert_allclose(rib_frame(vertebra_frame(25.0, 0.0, 0.0)), np.eye(3), atol=1e-12)


def test_frame_scale_is_not_a_ruler_for_the_column(smoke):
    """The anatomy around the column is sized by its own scale: given stature it says little
    about the column's length (the generator-v2 shortcut, see GENERATOR_VERSION)."""
    from spinelib.synth.subject import draw_subject_geometry

    rows = []
    for i in range(150):
        g = draw_subject_geometry(i, SynthConfig.from_profile(smoke))
        h = g["demographics"]["height_cm"] / 170.0
        rows.append((g["body"]["frame_scale"] / h, g["shape"]["scale"] / h))
    r = np.corrcoef(np.array(rows).T)[0, 1]
    assert abs(r) < 0.25, r
