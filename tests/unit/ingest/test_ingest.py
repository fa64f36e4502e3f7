"""UK Biobank bulk zips -> cohort (spinelib.ingest), against the synthetic generator's truth.

The zips are written by ``tests/data/ukb_zips.py`` with pydicom from smoke synthetic
subjects, so every ingested array can be compared with the subject it came from.
"""

from __future__ import annotations

import doctest
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import MissingFileError, UnreadableFileError
from spinelib.ingest import (
    FAILURES_FILE,
    NO_SEGMENTATION,
    ingest_ukb,
    read_ukb_dxa,
    read_ukb_mri,
    split_participants,
)
from spinelib.ingest.ukb_mri import Station, blend_stations, common_grid
from spinelib.io import read_dxa, read_manifest, read_volume, write_nifti


import spinelib_tests_ukb_zips as uz  # noqa: E402  (registered by conftest)
from spinelib.synth.config import SynthConfig  # noqa: E402
EID = "1000001"


@pytest.fixture(scope="module")
def subject():
    from spinelib.profiles import get_profile
    from spinelib.synth.subject import make_subject

    return make_subject(0, SynthConfig.from_profile(get_profile("smoke")))


@pytest.fixture(scope="module")
def zips(subject, tmp_path_factory):
    """(dxa folder, mri folder) with the subject's good zips."""
    root = tmp_path_factory.mktemp("ukb-zips")
    uz.write_ukb_zips_from_synth(subject, root / "dxa", root / "mri", EID)
    return root / "dxa", root / "mri"


def _copy_inputs(zips, tmp_path: Path) -> tuple[Path, Path]:
    dxa, mri = tmp_path / "dxa", tmp_path / "mri"
    shutil.copytree(zips[0], dxa)
    shutil.copytree(zips[1], mri)
    return dxa, mri


def _seg_dir(subject, tmp_path: Path, eid: str = EID) -> Path:
    d = tmp_path / "seg"
    write_nifti(d / eid / "seg.nii.gz", subject.seg, subject.affine)
    return d


# --------------------------------------------------------------------------- DXA


def test_dxa_zip_gives_the_subjects_images_and_spacing(subject, zips):
    dxa = read_ukb_dxa(zips[0] / uz.dxa_zip_name(EID))
    # the synthetic DXA is quantised to the stored RescaleSlope steps: exact
    np.testing.assert_array_equal(dxa.bone, subject.bone)
    np.testing.assert_array_equal(dxa.tissue, subject.tissue)
    rows, cols = subject.bone.shape
    px = subject.pixel_spacing_mm
    # ExposedArea holds whole millimetres: the spacing is the rounded field over the pixels
    expected = np.array([round(rows * px[0]) / rows, round(cols * px[1]) / cols])
    np.testing.assert_allclose(dxa.pixel_spacing_mm, expected, rtol=1e-12)
    assert np.all(np.abs(dxa.pixel_spacing_mm - px) <= 0.5 / np.array([rows, cols]))
    assert dxa.patient_id == EID


@pytest.mark.parametrize("orientation", [("R", "F"), ("L", "H"), ("R", "H"), ("F", "L"), ("H", "R")])
def test_dxa_stored_in_another_orientation_comes_back_head_up(subject, tmp_path, orientation):
    p = uz.write_ukb_dxa_zip(tmp_path / uz.dxa_zip_name(EID), EID, subject.bone, subject.tissue,
                             subject.pixel_spacing_mm, patient_orientation=orientation)
    dxa = read_ukb_dxa(p)
    np.testing.assert_array_equal(dxa.bone, subject.bone)
    np.testing.assert_array_equal(dxa.tissue, subject.tissue)
    assert np.all(np.abs(dxa.pixel_spacing_mm - subject.pixel_spacing_mm) <= 0.5 / np.array(subject.bone.shape))


def test_exposed_area_in_cm_is_converted_and_implausible_spacing_refused(subject, tmp_path):
    from spinelib.ingest.ukb_dxa import exposed_area_mm

    assert exposed_area_mm([50, 76], where="x") == (500.0, 760.0)  # a whole body is no 76 mm tall
    assert exposed_area_mm([500, 760], where="x") == (500.0, 760.0)
    p = uz.write_ukb_dxa_zip(tmp_path / uz.dxa_zip_name(EID), EID, subject.bone, subject.tissue, (40.0, 40.0))
    with pytest.raises(UnreadableFileError, match=r"pixel spacing \[40.0, 40.0\] mm from ExposedArea .* is outside"):
        read_ukb_dxa(p)


# --------------------------------------------------------------------------- MRI


def _world_values(data: np.ndarray, affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Values of a volume at world points that lie on its voxel centres."""
    ijk = np.c_[world, np.ones(len(world))] @ np.linalg.inv(affine).T
    idx = np.rint(ijk[:, :3]).astype(int)
    assert np.allclose(ijk[:, :3], idx, atol=1e-3), "points are not voxel centres of this grid"
    return data[idx[:, 0], idx[:, 1], idx[:, 2]]


def test_mri_zip_gives_the_subjects_volumes_on_a_ras_grid(subject, zips):
    mri = read_ukb_mri(zips[1] / uz.mri_zip_name(EID))
    assert mri.n_stations == 4
    assert mri.fat.shape == subject.fat.shape
    np.testing.assert_allclose(mri.affine, subject.affine, atol=1e-3)  # DICOM positions: 4 decimals
    np.testing.assert_allclose(mri.fat, subject.fat, atol=1e-3)
    np.testing.assert_allclose(mri.water, subject.water, atol=1e-3)
    # landmarks: the vertebra centres of the generator's truth, world RAS mm
    centres = np.array(list(subject.truth["vertebra_centres_mm"].values()))
    snap = np.c_[centres, np.ones(len(centres))] @ np.linalg.inv(subject.affine).T
    world = (np.c_[np.rint(snap[:, :3]), np.ones(len(centres))] @ subject.affine.T)[:, :3]
    np.testing.assert_allclose(_world_values(mri.fat, mri.affine, world),
                               _world_values(subject.fat.astype(float), subject.affine, world), atol=1e-3)


def test_mri_of_a_flipped_oblique_free_grid_lands_in_canonical_ras(tmp_path):
    rng = np.random.default_rng(3)
    fat = rng.integers(0, 500, (7, 6, 20)).astype(float)
    water = rng.integers(0, 500, (7, 6, 20)).astype(float)
    affine = np.array([[-2.0, 0, 0, 30.0], [0, 3.0, 0, -10.0], [0, 0, 4.0, 5.0], [0, 0, 0, 1]])
    p = uz.write_ukb_mri_zip(tmp_path / uz.mri_zip_name(EID), EID, fat, water, affine, n_stations=3,
                             overlap_slices=2)
    mri = read_ukb_mri(p)
    assert np.all(np.diag(mri.affine)[:3] > 0), "not canonical RAS+"
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in fat.shape), indexing="ij")
    ijk = np.c_[ii.ravel(), jj.ravel(), kk.ravel()]
    world = (np.c_[ijk, np.ones(len(ijk))] @ affine.T)[:, :3]
    np.testing.assert_allclose(_world_values(mri.fat, mri.affine, world), fat[ii, jj, kk].ravel(), atol=1e-3)
    np.testing.assert_allclose(_world_values(mri.water, mri.affine, world), water[ii, jj, kk].ravel(), atol=1e-3)


def test_mri_files_without_preamble_or_file_meta_are_read(subject, tmp_path):
    p = uz.write_ukb_mri_zip(tmp_path / uz.mri_zip_name(EID), EID, subject.fat, subject.water, subject.affine,
                             file_meta=False)
    with zipfile.ZipFile(p) as zf:
        first = zf.read(sorted(n for n in zf.namelist() if n.endswith(".dcm"))[0])
    assert first[128:132] != b"DICM"
    mri = read_ukb_mri(p)
    np.testing.assert_allclose(mri.fat, subject.fat, atol=1e-3)
    np.testing.assert_allclose(mri.affine, subject.affine, atol=1e-3)


def _station(value: float, z0: float, n: int, step: float = 2.0) -> Station:
    aff = np.diag([1.0, 1.0, step, 1.0])
    aff[2, 3] = z0
    return Station(np.full((2, 2, n), value, np.float32), aff, 2, f"z{z0}")


def test_overlapping_stations_blend_with_a_linear_ramp():
    a, b = _station(10.0, 0.0, 10), _station(20.0, 12.0, 10)  # slices 6..9 of a overlap b's 0..3
    affine, shape = common_grid([a, b])
    assert shape == (2, 2, 16)
    out = blend_stations([a, b], affine, shape)[0, 0]
    assert np.all(out[:6] == 10.0) and np.all(out[10:] == 20.0)
    ramp = out[6:10]
    # weights: a's distance to its last slice edge (3.5, 2.5, 1.5, 0.5), b's to its first (0.5..3.5)
    wa, wb = np.array([3.5, 2.5, 1.5, 0.5]), np.array([0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(ramp, (10 * wa + 20 * wb) / (wa + wb), rtol=1e-6)
    assert np.all(np.diff(out) >= 0)


def test_lattice_fast_path_equals_interpolation(monkeypatch):
    import spinelib.ingest.ukb_mri as um

    rng = np.random.default_rng(0)
    sts = [Station(rng.random((3, 4, n)).astype(np.float32), np.diag([1.0, 2.0, 3.0, 1.0]) + np.pad(
        np.array([[0, 0, 0, dx], [0, 0, 0, 0], [0, 0, 0, z0]]), ((0, 1), (0, 0))), 2, str(z0))
        for n, z0, dx in ((6, 0.0, 0.0), (7, 12.0, 1.0), (5, 27.0, -1.0))]
    affine, shape = common_grid(sts)
    fast = blend_stations(sts, affine, shape)
    monkeypatch.setattr(um, "_add_on_lattice", lambda *a: False)
    np.testing.assert_allclose(blend_stations(sts, affine, shape), fast, atol=1e-6)


def test_stations_off_the_lattice_are_interpolated():
    a = _station(0.0, 0.0, 4)
    ramp = Station(np.broadcast_to(np.arange(4, dtype=np.float32) * 3.0, (2, 2, 4)).copy(),
                   np.diag([1.0, 1.0, 2.0, 1.0]) + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 7.0], [0, 0, 0, 0]]),
                   2, "ramp")
    affine, shape = common_grid([a, ramp])
    out = blend_stations([ramp], affine, shape)[0, 0]
    z = affine[2, 3] + affine[2, 2] * np.arange(shape[2])
    inside = (z >= 7.0) & (z <= 13.0)
    np.testing.assert_allclose(out[inside], 1.5 * (z[inside] - 7.0), atol=1e-5)  # 3 per 2 mm


# --------------------------------------------------------------------------- cohort


def test_ingest_with_segmentation_writes_a_loadable_cohort(subject, zips, tmp_path):
    report = ingest_ukb(*zips, tmp_path / "cohort", seg_dir=_seg_dir(subject, tmp_path), progress=False)
    assert report.ingested == [EID] and report.failures == {}
    df = read_manifest(report.manifest_path)
    assert df["subject_id"].tolist() == [EID] and df["truth_path"].tolist() == [""]
    from spinelib.io import load_subject

    s = load_subject(df.iloc[0].to_dict())
    np.testing.assert_array_equal(s.dxa.bone, subject.bone)
    np.testing.assert_array_equal(s.seg.data, subject.seg)
    np.testing.assert_allclose(s.fat.data, subject.fat, atol=1e-3)
    np.testing.assert_allclose(read_dxa(tmp_path / "cohort" / EID / "dxa.npz").pixel_spacing_mm,
                               read_ukb_dxa(zips[0] / uz.dxa_zip_name(EID)).pixel_spacing_mm)


def test_without_segmentation_the_subject_is_written_and_reported(zips, tmp_path):
    report = ingest_ukb(*zips, tmp_path / "cohort", progress=False)
    assert report.manifest_path is None and report.ingested == []
    assert report.needs_segmentation == [EID] and report.failures[EID] == NO_SEGMENTATION
    assert (tmp_path / "cohort" / EID / "mri_water.nii.gz").is_file()  # what TotalSegmentator runs on
    assert NO_SEGMENTATION in (tmp_path / "cohort" / FAILURES_FILE).read_text()


def test_rerun_resumes_and_adds_a_segmentation_later(subject, zips, tmp_path):
    out = tmp_path / "cohort"
    ingest_ukb(*zips, out, progress=False)
    dxa = out / EID / "dxa.npz"
    first = dxa.stat().st_mtime_ns, dxa.stat().st_ino
    (out / ".tmp-left-by-a-crash").mkdir()
    report = ingest_ukb(*zips, out, seg_dir=_seg_dir(subject, tmp_path), progress=False)
    assert report.ingested == [EID] and report.resumed == []
    assert (dxa.stat().st_mtime_ns, dxa.stat().st_ino) == first, "the DXA/MRI were converted again"
    assert not (out / ".tmp-left-by-a-crash").exists()
    again = ingest_ukb(*zips, out, progress=False)
    assert again.resumed == [EID] and again.ingested == [EID]
    assert (dxa.stat().st_mtime_ns, dxa.stat().st_ino) == first


def test_totalsegmentator_outputs_go_through_the_adapter(subject, zips, tmp_path, monkeypatch):
    import types

    seg = tmp_path / "ts" / EID
    seg.mkdir(parents=True)
    calls = []
    for name in ("vertebrae_mr.nii.gz", "total_mr.nii.gz"):
        (seg / name).write_bytes(b"stand-in")

    def fake(vertebrae_mr_path, total_mr_path):
        calls.append((Path(vertebrae_mr_path).name, Path(total_mr_path).name))
        return subject.seg, subject.affine

    monkeypatch.setitem(sys.modules, "spinelib.ingest.segment", types.SimpleNamespace(seg_from_totalsegmentator=fake))
    report = ingest_ukb(*zips, tmp_path / "cohort", seg_dir=tmp_path / "ts", progress=False)
    assert calls == [("vertebrae_mr.nii.gz", "total_mr.nii.gz")]
    assert report.ingested == [EID]
    np.testing.assert_array_equal(read_volume(tmp_path / "cohort" / EID / "seg.nii.gz", kind="seg").data,
                                  subject.seg)


def test_a_segmentation_on_another_grid_is_resampled_by_nearest_label(subject, zips, tmp_path):
    crop = subject.seg[3:-2, 2:, 5:]
    aff = subject.affine.copy()
    aff[:3, 3] += subject.affine[:3, :3] @ [3, 2, 5]
    d = tmp_path / "seg"
    write_nifti(d / EID / "seg.nii.gz", crop, aff)
    ingest_ukb(*zips, tmp_path / "cohort", seg_dir=d, progress=False)
    got = read_volume(tmp_path / "cohort" / EID / "seg.nii.gz", kind="seg").data
    np.testing.assert_array_equal(got[3:-2, 2:, 5:], crop)
    assert not got[:3].any() and not got[:, :2].any()


# --------------------------------------------------------------------------- bad zips


def _bad_dxa_not_zip(subject, dxa: Path, mri: Path) -> None:
    (dxa / uz.dxa_zip_name(EID)).write_bytes(b"this is not a zip file at all")


def _bad_dicom(subject, dxa: Path, mri: Path) -> None:
    p = dxa / uz.dxa_zip_name(EID)
    with zipfile.ZipFile(p, "a") as zf:
        zf.writestr("broken.dcm", b"\x00" * 200)


def _missing_bone(subject, dxa: Path, mri: Path) -> None:
    uz.write_ukb_dxa_zip(dxa / uz.dxa_zip_name(EID), EID, subject.bone, subject.tissue, subject.pixel_spacing_mm,
                         images=("tissue",))


def _missing_water(subject, dxa: Path, mri: Path) -> None:
    uz.write_ukb_mri_zip(mri / uz.mri_zip_name(EID), EID, subject.fat, subject.water, subject.affine,
                         contrasts=("F", "in", "opp"))


def _missing_station(subject, dxa: Path, mri: Path) -> None:
    uz.write_ukb_mri_zip(mri / uz.mri_zip_name(EID), EID, subject.fat, subject.water, subject.affine,
                         drop_stations=(1,))


def _missing_mri_zip(subject, dxa: Path, mri: Path) -> None:
    (mri / uz.mri_zip_name(EID)).unlink()


def _other_participant(subject, dxa: Path, mri: Path) -> None:
    uz.write_ukb_dxa_zip(dxa / uz.dxa_zip_name(EID), EID, subject.bone, subject.tissue, subject.pixel_spacing_mm,
                         patient_id="2000002")


BAD_KINDS = {
    "not a zip": (_bad_dxa_not_zip, "UnreadableFileError: DXA zip", "is not a readable zip file"),
    "bad DICOM": (_bad_dicom, "UnreadableFileError: DXA zip", "member broken.dcm is not valid DICOM"),
    "no bone image": (_missing_bone, "IncompleteScanError", "the tissue or the bone image is missing"),
    "no water series": (_missing_water, "IncompleteScanError", "has no water series (SeriesDescription ending in _W)"),
    "missing station": (_missing_station, "IncompleteScanError", "a station is missing"),
    "no MRI zip": (_missing_mri_zip, "no MRI zip (field 20201", "in "),
    "other participant": (_other_participant, "ParticipantMismatchError", "the files are of different participants"),
}


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_each_bad_zip_kind_is_reported_with_its_reason_and_skipped(subject, zips, tmp_path, kind):
    spoil, start, message = BAD_KINDS[kind]
    dxa, mri = _copy_inputs(zips, tmp_path)
    good = "1000002"
    shutil.copy(dxa / uz.dxa_zip_name(EID), dxa / uz.dxa_zip_name(good))  # PatientID checks off for it
    shutil.copy(mri / uz.mri_zip_name(EID), mri / uz.mri_zip_name(good))
    spoil(subject, dxa, mri)
    seg = _seg_dir(subject, tmp_path)
    write_nifti(seg / good / "seg.nii.gz", subject.seg, subject.affine)
    report = ingest_ukb(dxa, mri, tmp_path / "cohort", seg_dir=seg, progress=False, check_ids=False
                        if kind != "other participant" else True)
    reason = report.failures[EID]
    assert reason.startswith(start) and message in reason, reason
    assert not (tmp_path / "cohort" / EID).exists()
    if kind != "other participant":  # with the ID check on, the copied good zips carry EID's PatientID
        assert report.ingested == [good]
        assert read_manifest(report.manifest_path)["subject_id"].tolist() == [good]
    assert EID in (tmp_path / "cohort" / FAILURES_FILE).read_text()


def test_zip_names_that_are_not_bulk_files_are_reported(zips, tmp_path):
    dxa, mri = _copy_inputs(zips, tmp_path)
    (dxa / "scan.zip").write_bytes(b"PK")
    report = ingest_ukb(dxa, mri, tmp_path / "cohort", progress=False)
    assert "not named like a field-20158 bulk file" in report.failures["scan.zip"]


def test_missing_input_folder_and_bad_arguments(zips, tmp_path):
    with pytest.raises(MissingFileError, match="DXA zip folder"):
        ingest_ukb(tmp_path / "nowhere", zips[1], tmp_path / "c", progress=False)
    with pytest.raises(MissingFileError, match="segmentation folder"):
        ingest_ukb(*zips, tmp_path / "c", seg_dir=tmp_path / "nowhere", progress=False)
    from spinelib.errors import InvalidArgumentError

    for kwargs in ({"jobs": 0}, {"seed": 1.5}, {"split_fractions": (0.5, 0.5, 0.5)}):
        with pytest.raises(InvalidArgumentError):
            ingest_ukb(*zips, tmp_path / "c", progress=False, **kwargs)


def test_a_truncated_zip_is_unreadable(zips, tmp_path):
    raw = (zips[1] / uz.mri_zip_name(EID)).read_bytes()
    p = tmp_path / uz.mri_zip_name(EID)
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnreadableFileError, match="MRI zip"):
        read_ukb_mri(p)


# --------------------------------------------------------------------------- split


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1_000_000, 9_999_999), min_size=0, max_size=60, unique=True), st.integers(0, 2**31),
       st.randoms(use_true_random=False))
def test_split_is_a_deterministic_function_of_seed_and_participants(eids, seed, rnd):
    ids = [str(e) for e in eids]
    split = split_participants(ids, seed)
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert split_participants(shuffled, seed) == split
    from spinelib.synth.cohort import assign_splits

    counts = assign_splits(len(ids), 0, (0.7, 0.1, 0.2)) if ids else []
    for name in ("train", "val", "test"):
        assert list(split.values()).count(name) == counts.count(name)


def test_split_changes_with_the_seed_and_barely_with_new_participants():
    ids = [str(1_000_000 + 7 * k) for k in range(200)]
    a, b = split_participants(ids, 0), split_participants(ids, 1)
    assert a != b
    more = split_participants(ids + [str(2_000_000 + k) for k in range(10)], 0)
    moved = sum(a[e] != more[e] for e in ids)
    assert moved <= 10


def test_visits_of_one_participant_share_a_split(subject, zips, tmp_path):
    dxa, mri = _copy_inputs(zips, tmp_path)
    shutil.copy(dxa / uz.dxa_zip_name(EID), dxa / uz.dxa_zip_name(EID, instance=3))
    shutil.copy(mri / uz.mri_zip_name(EID), mri / uz.mri_zip_name(EID, instance=3))
    seg = _seg_dir(subject, tmp_path)
    write_nifti(seg / f"{EID}_3_0" / "seg.nii.gz", subject.seg, subject.affine)
    report = ingest_ukb(dxa, mri, tmp_path / "cohort", seg_dir=seg, progress=False)
    assert report.ingested == [EID, f"{EID}_3_0"]
    assert report.splits[EID] == report.splits[f"{EID}_3_0"]


# --------------------------------------------------------------------------- CLI and workers


def test_cli_ingest_ukb_jobs_dask_and_shards_match_one_job(subject, zips, tmp_path, capsys):
    from spinelib.cli import main

    dxa, mri = _copy_inputs(zips, tmp_path)
    for other in ("1000002", "1000003"):
        shutil.copy(dxa / uz.dxa_zip_name(EID), dxa / uz.dxa_zip_name(other))
        shutil.copy(mri / uz.mri_zip_name(EID), mri / uz.mri_zip_name(other))
    seg = _seg_dir(subject, tmp_path)
    write_nifti(seg / "1000002" / "seg.nii.gz", subject.seg, subject.affine)
    common = ["ingest", "ukb", "--dxa-zips", str(dxa), "--mri-zips", str(mri), "--seg", str(seg), "--seed", "3",
              "--no-id-check"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert main(common + ["--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    assert main(common + ["--out", str(tmp_path / "dask"), "--jobs", "2", "--engine", "dask"]) == 0
    assert "manifest:" in capsys.readouterr().out
    # two array tasks, then the gathering run; shard 0/2 holds the participant without a segmentation
    assert main(common + ["--out", str(tmp_path / "shards"), "--shard", "0/2"]) == 0
    assert not (tmp_path / "shards" / "manifest.csv").exists()
    assert main(common + ["--out", str(tmp_path / "shards"), "--shard", "1/2"]) == 0
    assert "1000003" in (tmp_path / "shards" / "ingest_failures.shard-0-of-2.csv").read_text()
    assert sorted(p.name for p in (tmp_path / "shards").iterdir() if p.is_dir()) == ["1000001", "1000002", "1000003"]
    assert main(common + ["--out", str(tmp_path / "shards")]) == 0
    assert "(2 already there)" in capsys.readouterr().out  # the gathering run recomputed nothing
    for out in ("two", "dask", "shards"):
        for rel in ("manifest.csv", "ingest_failures.csv", f"{EID}/dxa.npz", f"{EID}/mri_fat.nii.gz",
                    "1000002/seg.nii.gz", "1000003/mri_water.nii.gz"):
            assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / out / rel).read_bytes(), (out, rel)


def test_cli_reports_errors_and_missing_segmentations(zips, tmp_path, capsys):
    from spinelib.cli import main

    assert main(["ingest", "ukb", "--dxa-zips", str(tmp_path / "no"), "--mri-zips", str(zips[1]),
                 "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["ingest", "ukb", "--dxa-zips", str(zips[0]), "--mri-zips", str(zips[1]),
                 "--out", str(tmp_path / "c")]) == 1
    assert "need a segmentation" in capsys.readouterr().out


def test_doctests():
    import spinelib.ingest.cohort
    import spinelib.ingest.dicomzip
    import spinelib.ingest.ukb_dxa

    for mod in (spinelib.ingest.dicomzip, spinelib.ingest.ukb_dxa, spinelib.ingest.cohort):
        assert doctest.testmod(mod).failed == 0, mod.__name__
