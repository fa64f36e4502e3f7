"""spinelib.align: two-stage planar DXA <-> MRI alignment, on analytic phantoms."""

from __future__ import annotations

import sys
from pathlib import Path

import dataclasses

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from align_phantom import Anatomy, column_centres_xz, make_dxa, make_mri  # noqa: E402

from spinelib.align import (  # noqa: E402
    ALIGNMENT_COLUMNS,
    AlignmentResult,
    align_cohort,
    align_pair,
    dxa_thickness,
    mri_coronal_thickness,
    mri_spine_projection,
    ncc_fft,
    search_rotation,
    summarize_alignment,
)
from spinelib.errors import (  # noqa: E402
    DTypeError,
    EmptySegmentationError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
)
from spinelib.profiles import get_profile  # noqa: E402
from spinelib.geometry.transform import PlanarTransform, transform_error_mm  # noqa: E402

from spinelib.align.config import AlignConfig  # noqa: E402
from spinelib.synth.config import SynthConfig  # noqa: E402

PARAMS = get_profile("default")
CONFIG = AlignConfig.from_profile(PARAMS)
ANATOMY = Anatomy(scoliosis_mm=15.0)


@pytest.fixture(scope="module")
def mri():
    return make_mri(ANATOMY)


def _errors(result: AlignmentResult, truth: PlanarTransform, an: Anatomy = ANATOMY):
    pts = column_centres_xz(an)
    return transform_error_mm(result.stage1, truth, pts), transform_error_mm(result.transform, truth, pts)


# --------------------------------------------------------------------------- NCC
def test_ncc_fft_finds_offset_and_ignores_gain():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(50, 40))
    g = 3.0 * f[7:37, 4:30] + 10.0  # a crop, with another gain and offset
    c = ncc_fft(f, g, min_overlap=0.9)
    a, b = np.unravel_index(np.argmax(c), c.shape)
    assert (a - 49, b - 39) == (-7, -4)
    assert c[a, b] == pytest.approx(1.0, abs=1e-5)
    assert np.nanmax(np.where(np.isfinite(c), c, np.nan)) <= 1.0


def test_ncc_fft_masks_restrict_to_overlap():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(40, 40))
    g = f.copy()
    g[:, 20:] = 1e3  # garbage outside the moving mask must not matter
    mask = np.zeros(g.shape, bool)
    mask[:, :20] = True
    c = ncc_fft(f, g, moving_mask=mask, min_overlap=0.5)
    a, b = np.unravel_index(np.argmax(c), c.shape)
    assert (a - 39, b - 39) == (0, 0) and c[a, b] == pytest.approx(1.0, abs=1e-5)


def test_ncc_fft_bad_inputs():
    f = np.ones((10, 10))
    with pytest.raises(NonFiniteError):
        ncc_fft(np.full((10, 10), np.nan), f)
    with pytest.raises(ShapeError):
        ncc_fft(np.ones((4, 4, 4)), f)
    with pytest.raises(ShapeError):
        ncc_fft(f, f, fixed_mask=np.ones((3, 3), bool))
    with pytest.raises(InvalidArgumentError):
        ncc_fft(f, f, min_overlap=0.0)


def test_ncc_fft_constant_image_has_no_peak():
    c = ncc_fft(np.ones((20, 20)), np.random.default_rng(0).normal(size=(10, 10)))
    assert np.all(np.isneginf(c))


# --------------------------------------------------------------------------- features
def test_thickness_maps_agree_across_modalities(mri):
    fat, water, seg, affine = mri
    thick = mri_coronal_thickness(fat, water, affine, pixel_mm=4.4)
    dxa = make_dxa(ANATOMY, PlanarTransform(0.0, 0.0, 0.0))
    # image centre is world (0, 0) for the identity: compare the thickness there (mm)
    ix = int(round((0.0 - thick.x0) / 4.4))
    iz = int(round((0.0 - thick.z0) / 4.4))
    mri_mm = thick.data[iz, ix]
    h, w = dxa["tissue"].shape
    dxa_mm = dxa_thickness(dxa["tissue"])[(h - 1) // 2, (w - 1) // 2]
    assert mri_mm == pytest.approx(dxa_mm, rel=0.1)
    assert thick.data.min() >= 0


def test_spine_projection_and_empty_seg(mri):
    fat, water, seg, affine = mri
    bone, column = mri_spine_projection(seg, affine, pixel_mm=2.2)
    assert bone.data.shape == column.shape and column.max() > 0
    with pytest.raises(EmptySegmentationError):
        mri_spine_projection(np.zeros_like(seg), affine, pixel_mm=2.2)


def test_search_rotation_returns_one_hit_per_angle(mri):
    fat, water, seg, affine = mri
    thick = mri_coronal_thickness(fat, water, affine, pixel_mm=8.8)
    dxa = make_dxa(ANATOMY, PlanarTransform(4.0, 20.0, -10.0))
    hits = search_rotation(thick, dxa_thickness(dxa["tissue"]), (2.2, 2.2), [-4.0, 0.0, 4.0])
    assert [h.theta_deg for h in hits] == [-4.0, 0.0, 4.0]
    best = max(hits, key=lambda h: h.score)
    assert best.theta_deg == 4.0 and abs(best.tx_mm - 20) < 9 and abs(best.ty_mm + 10) < 9


# --------------------------------------------------------------------------- the pair
@pytest.mark.parametrize(
    "truth",
    [(0.0, 0.0, 0.0), (6.0, 35.0, -25.0), (-6.0, -40.0, 30.0), (2.3, 12.7, 48.1), (-3.7, 55.0, -60.0)],
)
def test_phantom_transform_recovered(mri, truth):
    fat, water, seg, affine = mri
    t = PlanarTransform(*truth)
    res = align_pair(make_dxa(ANATOMY, t, seed=3), fat, water, seg, affine, CONFIG)
    e1, e2 = _errors(res, t)
    assert res.trusted, res.reason
    assert res.reason == ""
    assert e2.mean() < 1.0 and e2.max() < 1.5, (res, e2)
    assert e1.mean() < 6.0
    assert abs(res.transform.theta_deg - truth[0]) < 0.5
    assert -1 <= res.stage1_score <= 1 and -1 <= res.score <= 1


def test_stage2_sharpens_stage1_on_average(mri):
    fat, water, seg, affine = mri
    e1s, e2s = [], []
    for truth in [(1.1, 7.3, -3.9), (-4.6, -21.7, 17.2), (5.2, 33.3, 41.4)]:
        t = PlanarTransform(*truth)
        res = align_pair(make_dxa(ANATOMY, t, seed=5), fat, water, seg, affine, CONFIG)
        e1, e2 = _errors(res, t)
        e1s.append(e1.mean())
        e2s.append(e2.mean())
    assert np.mean(e2s) <= np.mean(e1s)


def test_mismatched_pair_is_untrusted(mri):
    fat, water, seg, affine = mri
    other = Anatomy(width=130, depth=110, scoliosis_mm=-10, height_scale=1.08, spine_top=240)
    res = align_pair(make_dxa(other, PlanarTransform(3.0, 10.0, 5.0)), fat, water, seg, affine, CONFIG)
    assert not res.trusted and res.reason


def test_blank_dxa_is_untrusted(mri):
    fat, water, seg, affine = mri
    dxa = {"bone": np.zeros((200, 120), np.float32), "tissue": np.zeros((200, 120), np.float32),
           "pixel_spacing_mm": (2.2, 2.2)}
    res = align_pair(dxa, fat, water, seg, affine, CONFIG)
    assert not res.trusted and "blank" in res.reason
    bone_blank = make_dxa(ANATOMY, PlanarTransform(0.0, 0.0, 0.0))
    bone_blank["bone"] = np.zeros_like(bone_blank["bone"])
    res = align_pair(bone_blank, fat, water, seg, affine, CONFIG)
    assert not res.trusted and "bone" in res.reason


def test_angle_beyond_search_range_is_flagged(mri):
    fat, water, seg, affine = mri
    dxa = make_dxa(ANATOMY, PlanarTransform(6.0, 0.0, 0.0))
    res = align_pair(dxa, fat, water, seg, affine, AlignConfig(4.4, 2.0, 0.5))
    assert not res.trusted and "search bound" in res.reason


def test_low_score_threshold_flags(mri):
    fat, water, seg, affine = mri
    dxa = make_dxa(ANATOMY, PlanarTransform(1.0, 5.0, 5.0))
    res = align_pair(dxa, fat, water, seg, affine, AlignConfig(4.4, 8.0, 0.999))
    assert not res.trusted and "below align_min_score" in res.reason
    res = align_pair(dxa, fat, water, seg, affine, dataclasses.replace(CONFIG, min_stage1_score=1.0))
    assert not res.trusted and "below align_min_stage1_score" in res.reason


@pytest.fixture(scope="module")
def good_dxa():
    return make_dxa(ANATOMY, PlanarTransform(0.0, 0.0, 0.0))


@pytest.mark.parametrize("channel", ["bone", "tissue"])
def test_nan_dxa_raises(mri, good_dxa, channel):
    fat, water, seg, affine = mri
    dxa = dict(good_dxa)
    dxa[channel] = dxa[channel].copy()
    dxa[channel][10, 10] = np.nan
    with pytest.raises(NonFiniteError, match=channel):
        align_pair(dxa, fat, water, seg, affine, CONFIG)


def test_nan_mri_raises(mri, good_dxa):
    fat, water, seg, affine = mri
    bad = fat.copy()
    bad[3, 3, 3] = np.inf
    with pytest.raises(NonFiniteError, match="fat"):
        align_pair(good_dxa, bad, water, seg, affine, CONFIG)


def test_empty_seg_raises(mri, good_dxa):
    fat, water, seg, affine = mri
    with pytest.raises(EmptySegmentationError):
        align_pair(good_dxa, fat, water, np.zeros_like(seg), affine, CONFIG)


def test_wrong_shapes_raise(mri, good_dxa):
    fat, water, seg, affine = mri
    with pytest.raises(ShapeError):
        align_pair(good_dxa, fat, water, seg[:-1], affine, CONFIG)
    with pytest.raises(ShapeError):
        align_pair(good_dxa, fat, water[..., :-1], seg, affine, CONFIG)
    with pytest.raises(ShapeError):
        align_pair({**good_dxa, "bone": good_dxa["bone"][None]}, fat, water, seg, affine, CONFIG)
    with pytest.raises(ShapeError):
        align_pair({**good_dxa, "bone": good_dxa["bone"][:-1]}, fat, water, seg, affine, CONFIG)
    with pytest.raises(ShapeError):
        align_pair(good_dxa, fat[0], water, seg, affine, CONFIG)
    with pytest.raises(ShapeError):
        align_pair(good_dxa, fat, water, seg, affine[:3], CONFIG)
    with pytest.raises(DTypeError, match="tissue"):
        align_pair({**good_dxa, "tissue": good_dxa["tissue"].astype(complex)}, fat, water, seg, affine, CONFIG)


@pytest.mark.parametrize("pixel_mm", [0.0, -4.4, float("nan"), "x"])
def test_bad_pixel_mm_raises(mri, good_dxa, pixel_mm):
    fat, water, seg, affine = mri
    with pytest.raises(InvalidArgumentError, match="pixel_mm"):
        AlignConfig(pixel_mm, 8, 0.5)


def test_bad_options_raise(mri, good_dxa):
    fat, water, seg, affine = mri
    with pytest.raises(InvalidArgumentError, match="angle_range"):
        AlignConfig(4.4, -1, 0.5)
    with pytest.raises(InvalidArgumentError, match="min_score"):
        AlignConfig(4.4, 8, 2.0)
    with pytest.raises(InvalidArgumentError, match="min_stage1_score"):
        dataclasses.replace(CONFIG, min_stage1_score=float("nan"))
    with pytest.raises(InvalidArgumentError, match="min_score"):
        AlignConfig(min_score=True)
    with pytest.raises(InvalidArgumentError, match="lack align_min_score"):
        AlignConfig.from_profile({k: v for k, v in PARAMS.items() if k != "align_min_score"})
    with pytest.raises(InvalidArgumentError, match="AlignConfig"):
        align_pair(good_dxa, fat, water, seg, affine, PARAMS)
    flipped = affine.copy()
    flipped[0, 0] = -flipped[0, 0]
    with pytest.raises(InvalidArgumentError, match="canonical"):
        align_pair(good_dxa, fat, water, seg, flipped, CONFIG)
    with pytest.raises(InvalidArgumentError, match="pixel spacing"):
        align_pair({**good_dxa, "pixel_spacing_mm": (0.0, 2.2)}, fat, water, seg, affine, CONFIG)
    with pytest.raises(InvalidArgumentError, match="bone"):
        align_pair({"tissue": good_dxa["tissue"]}, fat, water, seg, affine, CONFIG)


def test_result_is_frozen_and_flat(mri, good_dxa):
    fat, water, seg, affine = mri
    res = align_pair(good_dxa, fat, water, seg, affine, CONFIG)
    with pytest.raises(AttributeError):
        res.score = 1.0  # type: ignore[misc]
    d = res.to_dict()
    assert set(d) >= {"theta_deg", "tx_mm", "ty_mm", "stage1_theta_deg", "score", "trusted", "reason"}


# --------------------------------------------------------------------------- cohort
def _write_subject(root: Path, sid: str, an: Anatomy, truth: PlanarTransform, mri) -> dict:
    from spinelib.io import write_dxa, write_nifti, write_truth
    from spinelib.spine import LEVELS

    fat, water, seg, affine = mri
    d = root / sid
    d.mkdir()
    dxa = make_dxa(an, truth)
    write_dxa(d / "dxa.npz", dxa["bone"], dxa["tissue"], dxa["pixel_spacing_mm"])
    write_nifti(d / "mri_fat.nii.gz", fat, affine)
    write_nifti(d / "mri_water.nii.gz", water, affine)
    write_nifti(d / "seg.nii.gz", seg, affine, dtype=np.uint8)
    centres = {n: [float(x), 0.0, float(z)] for n, (x, z) in zip(LEVELS, column_centres_xz(an))}
    write_truth(d / "truth.json", {"subject_id": sid, "transform": truth.to_dict(), "vertebra_centres_mm": centres})
    return {"subject_id": sid, "split": "test", "dxa_path": f"{sid}/dxa.npz",
            "mri_fat_path": f"{sid}/mri_fat.nii.gz", "mri_water_path": f"{sid}/mri_water.nii.gz",
            "seg_path": f"{sid}/seg.nii.gz", "truth_path": f"{sid}/truth.json"}


def test_align_cohort_reports_every_subject(tmp_path, mri):
    from spinelib.io import read_manifest, write_manifest

    rows = [
        _write_subject(tmp_path, "S00000", ANATOMY, PlanarTransform(2.0, 10.0, -15.0), mri),
        _write_subject(tmp_path, "S00001", ANATOMY, PlanarTransform(-3.0, -20.0, 25.0), mri),
    ]
    rows[1]["split"] = "train"
    broken = dict(rows[0], subject_id="S00002", dxa_path="S00002/dxa.npz", truth_path="")
    (tmp_path / "S00002").mkdir()
    (tmp_path / "S00002" / "dxa.npz").write_bytes(b"not a zip")
    write_manifest(tmp_path / "manifest.csv", rows + [broken])
    df = align_cohort(read_manifest(tmp_path / "manifest.csv"), CONFIG, jobs=1, progress=False)
    assert list(df.columns) == list(ALIGNMENT_COLUMNS)
    assert list(df["subject_id"]) == ["S00000", "S00001", "S00002"]
    good = df.iloc[:2]
    assert good["trusted"].all() and (good["error_mm_mean"] < 1.0).all()
    assert (good["error_mm_max"] >= good["error_mm_mean"]).all()
    assert good["true_theta_deg"].tolist() == [2.0, -3.0]
    bad = df.iloc[2]
    assert not bad["trusted"] and "load failed" in bad["reason"] and "dxa.npz" in bad["reason"]
    summary = summarize_alignment(df)
    assert summary["n_subjects"] == 3 and summary["n_rejected"] == 1
    assert summary["error_mm_mean"] < 1.0 and summary["error_mm_p95"] < 1.5
    with pytest.raises(InvalidArgumentError):
        align_cohort(read_manifest(tmp_path / "manifest.csv"), PARAMS, progress=False)


def test_bench_entry_registered():
    from spinelib.bench.harness import ENTRIES

    assert ENTRIES["align_pair"] == "spinelib.bench.align:pair_workload"


# --------------------------------------------------------------------------- synthetic subjects
@pytest.fixture(scope="module")
def synth_pair():
    from spinelib.synth.subject import make_subject

    params = get_profile("smoke")
    return params, make_subject(0, SynthConfig.from_profile(params)), make_subject(1, SynthConfig.from_profile(params))


def test_synthetic_subject_aligned_and_swapped_pair_untrusted(synth_pair):
    from spinelib.align.cohort import _errors

    params, a, b = synth_pair
    config = AlignConfig.from_profile(params)
    res = align_pair(a, a.fat, a.water, a.seg, a.affine, config)
    assert res.trusted, res.reason
    err = _errors(res, a.truth)
    assert err["frame_error_mm_mean"] < 3.0
    assert err["error_mm_mean"] < 1.5 and err["error_mm_mean"] < err["stage1_error_mm_mean"]
    for dxa, mri in ((a, b), (b, a)):
        res = align_pair(dxa, mri.fat, mri.water, mri.seg, mri.affine, config)
        assert not res.trusted and "score" in res.reason


def test_bench_workload_runs(tmp_path):
    from spinelib.bench.align import pair_workload

    wl = pair_workload(tmp_path, "smoke", n_pairs=2)
    assert wl.run() == 2 and wl.unit == "pairs"


def test_align_config_round_trip_and_defaults():
    """The config reads the four profile keys and gives them back; its defaults are the default profile's."""
    for name in ("smoke", "default", "paper"):
        params = get_profile(name)
        cfg = AlignConfig.from_profile(params)
        assert cfg.to_dict() == {k: params[k] for k in cfg.to_dict()}
        assert AlignConfig(**{f: v for f, v in zip(("pixel_mm", "angle_range_deg", "min_score", "min_stage1_score"),
                                                   cfg.to_dict().values())}) == cfg
    assert AlignConfig() == CONFIG
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONFIG.pixel_mm = 1.0
