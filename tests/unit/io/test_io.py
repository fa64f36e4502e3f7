"""spinelib.io: writers (atomic, byte-deterministic), readers, validation errors."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spinelib import io as sio
from spinelib.errors import (
    DTypeError,
    DuplicateIdError,
    EmptySegmentationError,
    InvalidArgumentError,
    ManifestError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
    UnreadableFileError,
    UnsafeLoadError,
)
from spinelib.spine import DISC_LABEL, vertebra_label

RNG = np.random.default_rng(0)
AFFINE = np.array(
    [[2.0, 0, 0, -20.0], [0, 2.0, 0, -30.0], [0, 0, 3.0, 10.0], [0, 0, 0, 1]], dtype=float
)


def _dxa_arrays(h=40, w=24, d=16):
    bone = RNG.random((h, w)).astype(np.float32)
    tissue = RNG.random((h, w)).astype(np.float32) * 5
    lat = dict(
        lateral_bone=RNG.random((h, d)).astype(np.float32),
        lateral_tissue=RNG.random((h, d)).astype(np.float32),
        lateral_pixel_spacing_mm=(1.2, 2.0),
    )
    return bone, tissue, (1.2, 0.9), lat


def _seg(shape=(8, 9, 10)):
    seg = np.zeros(shape, np.uint8)
    seg[3:5, 3:5, 2:4] = vertebra_label("T1")
    seg[3:5, 3:5, 4] = DISC_LABEL
    seg[3:5, 3:5, 5:7] = vertebra_label("L5")
    return seg


def _no_tmp_left(folder: Path):
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


def _make_subject(root: Path, sid="S00000", *, truth=True):
    sub = root / sid
    bone, tissue, sp, lat = _dxa_arrays()
    sio.write_dxa(sub / "dxa.npz", bone, tissue, sp, **lat)
    vol = RNG.random((8, 9, 10)).astype(np.float32)
    sio.write_nifti(sub / "mri_fat.nii.gz", vol, AFFINE)
    sio.write_nifti(sub / "mri_water.nii.gz", vol * 2, AFFINE)
    sio.write_nifti(sub / "seg.nii.gz", _seg(), AFFINE)
    row = dict(
        subject_id=sid,
        split="train",
        dxa_path=f"{sid}/dxa.npz",
        mri_fat_path=f"{sid}/mri_fat.nii.gz",
        mri_water_path=f"{sid}/mri_water.nii.gz",
        seg_path=f"{sid}/seg.nii.gz",
        truth_path="",
    )
    if truth:
        sio.write_truth(sub / "truth.json", {"subject_id": sid, "seed": 1, "transform": {"theta_deg": 1.5}})
        row["truth_path"] = f"{sid}/truth.json"
    return row


# ----------------------------------------------------------------------------- writers


def test_write_dxa_roundtrip(tmp_path):
    bone, tissue, sp, lat = _dxa_arrays()
    p = sio.write_dxa(tmp_path / "s" / "dxa.npz", bone.astype(np.float64), tissue, sp, **lat)
    assert p == tmp_path / "s" / "dxa.npz"
    with np.load(p, allow_pickle=False) as z:
        assert list(z.files) == list(sio.DXA_KEYS)
        assert z["bone"].dtype == np.float32 and z["lateral_tissue"].dtype == np.float32
        assert z["pixel_spacing_mm"].dtype == np.float64
    img = sio.read_dxa(p)
    np.testing.assert_array_equal(img.bone, bone)
    np.testing.assert_array_equal(img.tissue, tissue)
    np.testing.assert_array_equal(img.lateral_bone, lat["lateral_bone"])
    np.testing.assert_allclose(img.pixel_spacing_mm, sp)
    np.testing.assert_allclose(img.lateral_pixel_spacing_mm, lat["lateral_pixel_spacing_mm"])
    assert img.path == p and img.has_lateral and img.shape == bone.shape
    assert "40 x 24" in repr(img)
    _no_tmp_left(p.parent)


def test_write_dxa_without_lateral_and_scalar_spacing(tmp_path):
    bone, tissue, _, _ = _dxa_arrays()
    img = sio.read_dxa(sio.write_dxa(tmp_path / "dxa.npz", bone, tissue, 0.5))
    assert img.lateral_bone is None and img.lateral_pixel_spacing_mm is None and not img.has_lateral
    np.testing.assert_allclose(img.pixel_spacing_mm, [0.5, 0.5])


def test_write_dxa_byte_deterministic(tmp_path):
    bone, tissue, sp, lat = _dxa_arrays()
    a = sio.write_dxa(tmp_path / "a.npz", bone, tissue, sp, **lat)
    time.sleep(2.1)  # zip timestamps have 2 s resolution
    b = sio.write_dxa(tmp_path / "b.npz", bone.copy(), tissue.copy(), list(sp), **lat)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())


def test_write_dxa_overwrites_atomically(tmp_path):
    bone, tissue, sp, _ = _dxa_arrays()
    p = sio.write_dxa(tmp_path / "dxa.npz", bone, tissue, sp)
    sio.write_dxa(p, bone * 2, tissue, sp)
    np.testing.assert_array_equal(sio.read_dxa(p).bone, bone * 2)
    with pytest.raises(NonFiniteError):
        sio.write_dxa(p, np.full_like(bone, np.nan), tissue, sp)
    np.testing.assert_array_equal(sio.read_dxa(p).bone, bone * 2)  # untouched on error
    _no_tmp_left(tmp_path)


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        (dict(bone=np.zeros((3, 4, 5))), ShapeError, "bone"),
        (dict(tissue=np.zeros((40, 23))), ShapeError, "shapes differ"),
        (dict(bone=np.zeros((40, 24), complex)), DTypeError, "dtype complex"),
        (dict(bone=np.zeros((40, 24), bool)), DTypeError, "dtype bool"),
        (dict(bone=np.zeros((0, 24)), tissue=np.zeros((0, 24))), ShapeError, "empty"),
        (dict(tissue=np.full((40, 24), np.inf)), NonFiniteError, "tissue"),
        (dict(pixel_spacing_mm=(0.0, 1.0)), InvalidArgumentError, "pixel_spacing_mm"),
        (dict(pixel_spacing_mm=(1.0, np.nan)), InvalidArgumentError, "pixel_spacing_mm"),
        (dict(pixel_spacing_mm=(1.0, 1.0, 1.0)), InvalidArgumentError, "pixel_spacing_mm"),
        (dict(pixel_spacing_mm="abc"), InvalidArgumentError, "pixel_spacing_mm"),
        (dict(lateral_bone=np.zeros((40, 5))), InvalidArgumentError, "go together"),
        (
            dict(lateral_bone=np.zeros((39, 5)), lateral_tissue=np.zeros((39, 5)), lateral_pixel_spacing_mm=1.2),
            ShapeError,
            "rows",
        ),
        (
            dict(lateral_bone=np.zeros((40, 5)), lateral_tissue=np.zeros((40, 5)), lateral_pixel_spacing_mm=(1.0, 1.0)),
            InvalidArgumentError,
            "row spacing",
        ),
        (
            dict(lateral_bone=np.zeros((40, 5)), lateral_tissue=np.zeros((40, 6)), lateral_pixel_spacing_mm=1.2),
            ShapeError,
            r"lateral_bone \(40, 5\) and lateral_tissue \(40, 6\) shapes differ",
        ),
        (
            dict(lateral_bone=np.zeros((40, 5)), lateral_tissue=np.zeros((40, 5)), lateral_pixel_spacing_mm=-1.0),
            InvalidArgumentError,
            "lateral_pixel_spacing_mm",
        ),
    ],
)
def test_write_dxa_rejects(tmp_path, kwargs, error, fragment):
    bone, tissue, sp, _ = _dxa_arrays()
    args = dict(bone=bone, tissue=tissue, pixel_spacing_mm=sp) | kwargs
    dest = tmp_path / "dxa.npz"
    with pytest.raises(error, match=fragment) as info:
        sio.write_dxa(dest, **args)
    assert str(dest) in str(info.value)
    assert not dest.exists()
    _no_tmp_left(tmp_path)


def test_write_dxa_wrong_suffix(tmp_path):
    bone, tissue, sp, _ = _dxa_arrays()
    with pytest.raises(InvalidArgumentError, match="npz"):
        sio.write_dxa(tmp_path / "dxa.npy", bone, tissue, sp)


def test_write_nifti_roundtrip_and_header(tmp_path):
    vol = RNG.random((8, 9, 10)).astype(np.float32)
    p = sio.write_nifti(tmp_path / "v.nii.gz", vol, AFFINE)
    img = nib.load(p)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), vol)
    np.testing.assert_allclose(img.affine, AFFINE)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert img.header.get_xyzt_units()[0] == "mm"
    v = sio.read_volume(p)
    assert v.data.dtype == np.float32 and v.shape == vol.shape
    np.testing.assert_allclose(v.zooms, [2, 2, 3])
    _no_tmp_left(tmp_path)


def test_write_nifti_plain_nii(tmp_path):
    vol = RNG.random((4, 5, 6)).astype(np.float32)
    p = sio.write_nifti(tmp_path / "v.nii", vol, AFFINE)
    assert p.read_bytes()[344:348] == b"n+1\x00"  # uncompressed single-file NIfTI-1
    np.testing.assert_array_equal(sio.read_volume(p).data, vol)


def test_write_nifti_gzip_deterministic(tmp_path):
    vol = RNG.random((8, 9, 10)).astype(np.float32)
    a = sio.write_nifti(tmp_path / "a.nii.gz", vol, AFFINE)
    time.sleep(1.1)  # gzip mtime has 1 s resolution
    b = sio.write_nifti(tmp_path / "b.nii.gz", vol.copy(), AFFINE)
    assert a.read_bytes() == b.read_bytes()
    raw = a.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert raw[3] & 0x08 == 0  # no FNAME field: the temporary name does not leak in
    # and the gzip stream is valid
    assert len(gzip.decompress(raw)) >= 352 + vol.nbytes


def test_write_nifti_int16_scaled(tmp_path):
    vol = RNG.random((8, 9, 10)).astype(np.float32) * 900 + 50
    p = sio.write_nifti(tmp_path / "v.nii.gz", vol, AFFINE, dtype=np.int16)
    img = nib.load(p)
    assert img.get_data_dtype() == np.int16
    got = sio.read_volume(p).data
    assert got.dtype == np.float32
    assert np.abs(got - vol).max() < 950 / 32767 * 2


def test_write_nifti_bool_and_uint8_seg(tmp_path):
    p = sio.write_nifti(tmp_path / "m.nii.gz", _seg() > 0, AFFINE)
    assert nib.load(p).get_data_dtype() == np.uint8
    s = sio.write_nifti(tmp_path / "seg.nii.gz", _seg(), AFFINE)
    v = sio.read_volume(s, kind="seg")
    assert v.data.dtype == np.uint8
    np.testing.assert_array_equal(v.data, _seg())


@pytest.mark.parametrize(
    "data, affine, kwargs, error, fragment",
    [
        (np.zeros((4, 5)), AFFINE, {}, ShapeError, "3D"),
        (np.zeros((4, 5, 6), complex), AFFINE, {}, DTypeError, "complex"),
        (np.full((4, 5, 6), np.nan), AFFINE, {}, NonFiniteError, "NaN"),
        (np.zeros((4, 5, 6)), np.diag([1.0, 1.0, 0.0, 1.0]), {}, InvalidArgumentError, "singular"),
        (np.zeros((4, 5, 6)), np.eye(3), {}, ShapeError, "4 x 4"),
        (np.zeros((4, 5, 6)), AFFINE, {"dtype": complex}, DTypeError, "dtype"),
    ],
)
def test_write_nifti_rejects(tmp_path, data, affine, kwargs, error, fragment):
    dest = tmp_path / "v.nii.gz"
    with pytest.raises(error, match=fragment) as info:
        sio.write_nifti(dest, data, affine, **kwargs)
    assert str(dest) in str(info.value)
    assert not dest.exists()
    _no_tmp_left(tmp_path)


def test_write_truth_roundtrip(tmp_path):
    truth = {
        "subject_id": "S00003",
        "seed": np.int64(7),
        "shape": {"a": np.float32(1.5), "v": np.arange(3)},
        "transform": {"theta_deg": 2.0, "tx_mm": -1.0, "ty_mm": 3.0},
        "vertebra_centres_mm": {"T1": (1.0, 2.0, 3.0)},
    }
    p = sio.write_truth(tmp_path / "truth.json", truth)
    got = sio.read_truth(p)
    assert got["seed"] == 7 and got["shape"]["v"] == [0, 1, 2]
    assert got["vertebra_centres_mm"]["T1"] == [1.0, 2.0, 3.0]
    assert list(got) == list(truth)  # insertion order kept
    assert sio.write_truth(tmp_path / "again.json", truth).read_bytes() == p.read_bytes()


def test_write_truth_rejects(tmp_path):
    dest = tmp_path / "truth.json"
    with pytest.raises(NonFiniteError, match="truth.json"):
        sio.write_truth(dest, {"x": float("nan")})
    with pytest.raises(InvalidArgumentError, match="truth.json"):
        sio.write_truth(dest, {"x": object()})
    with pytest.raises(InvalidArgumentError, match="truth.json"):
        sio.write_truth(dest, [1, 2])
    with pytest.raises(InvalidArgumentError, match="non-string keys"):
        sio.write_truth(dest, {1: 2})
    assert not dest.exists()
    _no_tmp_left(tmp_path)


def _rows(n=3):
    return [
        dict(
            subject_id=f"S{i:05d}",
            split=("train", "val", "test")[i % 3],
            dxa_path=f"S{i:05d}/dxa.npz",
            mri_fat_path=f"S{i:05d}/mri_fat.nii.gz",
            mri_water_path=f"S{i:05d}/mri_water.nii.gz",
            seg_path=f"S{i:05d}/seg.nii.gz",
            truth_path=f"S{i:05d}/truth.json",
        )
        for i in range(n)
    ]


def test_write_manifest_columns_and_roundtrip(tmp_path):
    rows = _rows()
    for r in rows:  # column order of the input must not matter
        r["age"] = 60
    rows = [dict(reversed(list(r.items()))) for r in rows]
    p = sio.write_manifest(tmp_path / "manifest.csv", rows)
    header = p.read_text().splitlines()[0].split(",")
    assert header == list(sio.MANIFEST_COLUMNS) + ["age"]
    df = sio.read_manifest(p)
    assert df["subject_id"].tolist() == ["S00000", "S00001", "S00002"]
    assert df["split"].tolist() == ["train", "val", "test"]
    assert df["dxa_path"][1] == str(tmp_path / "S00001" / "dxa.npz")
    assert all(Path(v).is_absolute() for c in sio.PATH_COLUMNS for v in df[c])
    # DataFrame input gives the same bytes
    q = sio.write_manifest(tmp_path / "m2.csv", pd.DataFrame(rows))
    assert q.read_bytes() == p.read_bytes()


def test_write_manifest_real_data_without_truth(tmp_path):
    rows = _rows(2)
    for r in rows:
        del r["truth_path"]
    rows[0]["dxa_path"] = "/data/ukb/1000123.pkl"  # absolute paths allowed
    rows[0]["subject_id"] = "1000123"  # numeric-looking ids stay strings
    p = sio.write_manifest(tmp_path / "manifest.csv", rows)
    df = sio.read_manifest(p)
    assert df["truth_path"].tolist() == ["", ""]
    assert df["subject_id"].tolist() == ["1000123", "S00001"]
    assert df["dxa_path"][0] == "/data/ukb/1000123.pkl"


def test_manifest_row_lays_out_a_subject_folder(tmp_path):
    from spinelib.io.manifest import manifest_row

    synth = manifest_row("S00001", "val", truth=True)
    assert list(synth) == list(sio.MANIFEST_COLUMNS)
    assert synth == {"subject_id": "S00001", "split": "val", "dxa_path": "S00001/dxa.npz",
                     "mri_fat_path": "S00001/mri_fat.nii.gz", "mri_water_path": "S00001/mri_water.nii.gz",
                     "seg_path": "S00001/seg.nii.gz", "truth_path": "S00001/truth.json"}
    real = manifest_row("1000123", "test", truth=False)
    assert real["truth_path"] == "" and real["seg_path"] == "1000123/seg.nii.gz"
    df = sio.read_manifest(sio.write_manifest(tmp_path / "manifest.csv", [synth, real]))
    assert df["dxa_path"].tolist() == [str(tmp_path / "S00001" / "dxa.npz"), str(tmp_path / "1000123" / "dxa.npz")]


@pytest.mark.parametrize("value, expected", [(2, 2.0), ("0.5", 0.5), (np.float32(1.5), 1.5)])
def test_check_positive_accepts(value, expected):
    from spinelib.io.checks import check_number, check_positive

    assert check_positive(value, "pixel_mm") == expected and type(check_positive(value, "pixel_mm")) is float
    assert check_number(value, "view_deg") == expected


@pytest.mark.parametrize("value, fragment", [(None, "a number"), ("abc", "a number"), (0, "positive and finite"),
                                             (-1.0, "positive and finite"), (np.nan, "positive and finite"),
                                             (np.inf, "positive and finite")])
def test_check_positive_rejects(value, fragment):
    from spinelib.io.checks import check_number, check_positive

    with pytest.raises(InvalidArgumentError, match=f"pixel_mm in dxa.npz must be {fragment}"):
        check_positive(value, "pixel_mm", "dxa.npz")
    if fragment == "a number":
        with pytest.raises(InvalidArgumentError, match=f"view_deg must be {fragment}"):
            check_number(value, "view_deg")
    else:
        np.testing.assert_equal(check_number(value, "view_deg"), float(value))  # any number passes, NaN too


@pytest.mark.parametrize(
    "mutate, error, fragment",
    [
        (lambda rows: [r.pop("seg_path") for r in rows], ManifestError, "seg_path"),
        (lambda rows: rows[1].update(split="training"), ManifestError, "training"),
        (lambda rows: rows[2].update(subject_id="S00000"), DuplicateIdError, "S00000"),
        (lambda rows: rows[0].update(subject_id=" "), ManifestError, "empty subject_id"),
        (lambda rows: rows[0].update(dxa_path=""), ManifestError, "empty dxa_path"),
        (lambda rows: rows.clear(), ManifestError, "no subjects"),
    ],
)
def test_write_manifest_rejects(tmp_path, mutate, error, fragment):
    rows = _rows()
    mutate(rows)
    dest = tmp_path / "manifest.csv"
    with pytest.raises(error, match=fragment) as info:
        sio.write_manifest(dest, rows)
    assert str(dest) in str(info.value)
    assert not dest.exists()


def test_reexports_write_json_atomic(tmp_path):
    p = sio.write_json_atomic(tmp_path / "x.json", {"a": np.float64(1.0)})
    assert json.loads(p.read_text()) == {"a": 1.0}


# ----------------------------------------------------------------------------- readers: DXA


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_read_dxa_missing(tmp_path):
    p = tmp_path / "nope" / "dxa.npz"
    with pytest.raises(MissingFileError, match=str(p)):
        sio.read_dxa(p)
    with pytest.raises(FileNotFoundError):  # built-in hierarchy still works
        sio.read_dxa(p)


def _truncated(p: Path) -> Path:
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return p


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "folder"])
def test_read_dxa_unreadable(tmp_path, damage):
    bone, tissue, sp, _ = _dxa_arrays()
    p = sio.write_dxa(tmp_path / "dxa.npz", bone, tissue, sp)
    if damage == "truncate":
        _truncated(p)
    elif damage == "garbage":
        p.write_bytes(os.urandom(3000))
    elif damage == "empty":
        p.write_bytes(b"")
    else:
        p.unlink()
        p.mkdir()
    with pytest.raises(UnreadableFileError, match=str(p)):
        sio.read_dxa(p)


def test_read_dxa_unknown_suffix(tmp_path):
    p = tmp_path / "dxa.dcm"
    p.write_bytes(b"x")
    with pytest.raises(UnreadableFileError, match="unknown suffix"):
        sio.read_dxa(p)


@pytest.mark.parametrize(
    "arrays, error, fragment",
    [
        (dict(bone=np.zeros((4, 5)), pixel_spacing_mm=[1.0, 1.0]), UnreadableFileError, "tissue"),
        (dict(bone=np.zeros((2, 4, 5)), tissue=np.zeros((2, 4, 5)), pixel_spacing_mm=[1, 1.0]), ShapeError, "2D"),
        (dict(bone=np.zeros((4, 5)), tissue=np.zeros((5, 4)), pixel_spacing_mm=[1, 1.0]), ShapeError, "differ"),
        (dict(bone=np.zeros((4, 5), np.complex64), tissue=np.zeros((4, 5)), pixel_spacing_mm=[1, 1.0]), DTypeError, "complex"),
        (dict(bone=np.full((4, 5), np.nan), tissue=np.zeros((4, 5)), pixel_spacing_mm=[1, 1.0]), NonFiniteError, "NaN"),
        (dict(bone=np.zeros((4, 5)), tissue=np.zeros((4, 5)), pixel_spacing_mm=[-1, 1.0]), InvalidArgumentError, "> 0"),
        (dict(bone=np.zeros((4, 5)), tissue=np.zeros((4, 5))), InvalidArgumentError, "no pixel spacing"),
        (dict(bone=np.array([None, 1], dtype=object), tissue=np.zeros((4, 5))), UnreadableFileError, "pickle"),
    ],
)
def test_read_dxa_bad_content(tmp_path, arrays, error, fragment):
    p = _npz(tmp_path / "dxa.npz", **arrays)
    with pytest.raises(error, match=fragment) as info:
        sio.read_dxa(p)
    assert str(p) in str(info.value)


def test_read_dxa_spacing_argument(tmp_path):
    bone, tissue, sp, _ = _dxa_arrays()
    p = sio.write_dxa(tmp_path / "dxa.npz", bone, tissue, sp)
    assert sio.read_dxa(p, pixel_spacing_mm=sp).pixel_spacing_mm.tolist() == list(sp)
    with pytest.raises(InvalidArgumentError, match="disagrees") as info:
        sio.read_dxa(p, pixel_spacing_mm=2.0)
    assert str(p) in str(info.value)
    q = _npz(tmp_path / "nospacing.npz", bone=bone, tissue=tissue)
    assert sio.read_dxa(q, pixel_spacing_mm=0.7).pixel_spacing_mm.tolist() == [0.7, 0.7]


def _ukb_pickle(path: Path, obj) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_read_dxa_pickle_needs_opt_in(tmp_path):
    bone, tissue, _, _ = _dxa_arrays()
    p = _ukb_pickle(tmp_path / "1000123.pkl", {"bone": bone, "tissue": tissue, "pixel_spacing": 0.8})
    with pytest.raises(UnsafeLoadError, match="allow_pickle=True") as info:
        sio.read_dxa(p)
    assert str(p) in str(info.value)
    img = sio.read_dxa(p, allow_pickle=True)
    np.testing.assert_array_equal(img.bone, bone)
    assert img.pixel_spacing_mm.tolist() == [0.8, 0.8] and img.path == p
    q = _ukb_pickle(tmp_path / "b.pickle", {"bone": bone.tolist(), "tissue": tissue, "pixel_spacing": [0.8, 0.6]})
    assert sio.read_dxa(q, allow_pickle=True).pixel_spacing_mm.tolist() == [0.8, 0.6]


def test_read_dxa_pickle_bad(tmp_path):
    p = _ukb_pickle(tmp_path / "list.pkl", [1, 2, 3])
    with pytest.raises(UnreadableFileError, match="expected a dict") as info:
        sio.read_dxa(p, allow_pickle=True)
    assert str(p) in str(info.value)
    q = tmp_path / "cut.pkl"
    q.write_bytes(pickle.dumps({"bone": np.zeros((30, 30))})[:50])
    with pytest.raises(UnreadableFileError, match=str(q)):
        sio.read_dxa(q, allow_pickle=True)
    r = _ukb_pickle(tmp_path / "nokey.pkl", {"bone": np.zeros((3, 3)), "pixel_spacing": 1.0})
    with pytest.raises(UnreadableFileError, match="tissue"):
        sio.read_dxa(r, allow_pickle=True)


def test_read_dxa_images(tmp_path):
    from PIL import Image

    grey = (RNG.random((30, 20)) * 255).astype(np.uint8)
    p = tmp_path / "grey.png"
    Image.fromarray(grey).save(p)
    with pytest.raises(InvalidArgumentError, match="pixel_spacing_mm") as info:
        sio.read_dxa(p)
    assert str(p) in str(info.value)
    img = sio.read_dxa(p, pixel_spacing_mm=(0.5, 0.5))
    np.testing.assert_array_equal(img.bone, grey)
    np.testing.assert_array_equal(img.tissue, grey)  # documented: one channel serves both
    assert img.bone.dtype == np.float32

    two = np.stack([grey, 255 - grey], axis=-1)
    q = tmp_path / "two.png"
    Image.fromarray(two, mode="LA").save(q)
    img = sio.read_dxa(q, pixel_spacing_mm=1.0)
    np.testing.assert_array_equal(img.bone, grey)
    np.testing.assert_array_equal(img.tissue, 255 - grey)

    g16 = (RNG.random((30, 20)) * 60000).astype(np.uint16)
    r = tmp_path / "g16.png"
    Image.fromarray(g16).save(r)
    np.testing.assert_array_equal(sio.read_dxa(r, pixel_spacing_mm=1.0).bone, g16)

    fl = RNG.random((30, 20)).astype(np.float32)
    t = tmp_path / "f.tif"
    Image.fromarray(fl).save(t)
    np.testing.assert_array_equal(sio.read_dxa(t, pixel_spacing_mm=1.0).bone, fl)

    pages = tmp_path / "pages.tiff"
    Image.fromarray(fl).save(pages, save_all=True, append_images=[Image.fromarray(fl * 2)])
    img = sio.read_dxa(pages, pixel_spacing_mm=1.0)
    np.testing.assert_array_equal(img.tissue, fl * 2)

    rgb = np.stack([grey, grey, grey], -1)
    u = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(u)
    np.testing.assert_array_equal(sio.read_dxa(u, pixel_spacing_mm=1.0).bone, grey)
    rgb[..., 1] = 0
    Image.fromarray(rgb).save(u)
    with pytest.raises(ShapeError, match=str(u)):
        sio.read_dxa(u, pixel_spacing_mm=1.0)


def test_read_dxa_bad_image(tmp_path):
    from PIL import Image

    p = tmp_path / "x.png"
    p.write_bytes(os.urandom(500))
    with pytest.raises(UnreadableFileError, match=str(p)):
        sio.read_dxa(p, pixel_spacing_mm=1.0)
    q = tmp_path / "cut.png"
    Image.fromarray((RNG.random((200, 200)) * 255).astype(np.uint8)).save(q)
    _truncated(q)
    with pytest.raises(UnreadableFileError, match=str(q)):
        sio.read_dxa(q, pixel_spacing_mm=1.0)


# ----------------------------------------------------------------------------- readers: volumes


def test_read_volume_canonical(tmp_path):
    # an LPI, axis-permuted acquisition: voxel (i, j, k) -> world via a flipped, permuted affine
    vol = RNG.random((5, 6, 7)).astype(np.float32)
    aff = np.array([[0, 0, -2.0, 40], [-1.5, 0, 0, 30], [0, 3.0, 0, -20], [0, 0, 0, 1]])
    p = sio.write_nifti(tmp_path / "v.nii.gz", vol, aff)
    v = sio.read_volume(p)
    assert nib.aff2axcodes(v.affine) == ("R", "A", "S")
    # the same voxel value sits at the same world point
    ijk = np.array([1, 2, 3])
    world = aff @ np.r_[ijk, 1]
    ijk2 = np.round(np.linalg.inv(v.affine) @ world).astype(int)[:3]
    assert v.data[tuple(ijk2)] == vol[tuple(ijk)]
    np.testing.assert_allclose(sorted(v.zooms), [1.5, 2.0, 3.0])


def test_read_volume_4d_singleton(tmp_path):
    p = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), AFFINE), p)
    assert sio.read_volume(p).shape == (3, 4, 5)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_read_volume_unreadable(tmp_path, damage):
    p = sio.write_nifti(tmp_path / "v.nii.gz", RNG.random((20, 20, 20)).astype(np.float32), AFFINE)
    if damage == "truncate":
        _truncated(p)
    elif damage == "garbage":
        p.write_bytes(os.urandom(5000))
    else:
        p.write_bytes(b"")
    with pytest.raises(UnreadableFileError, match=str(p)):
        sio.read_volume(p)


def test_read_volume_truncated_plain_nii(tmp_path):
    p = sio.write_nifti(tmp_path / "v.nii", RNG.random((20, 20, 20)).astype(np.float32), AFFINE)
    _truncated(p)
    with pytest.raises(UnreadableFileError, match=str(p)):
        sio.read_volume(p)


def test_read_volume_singular_affine(tmp_path):
    p = tmp_path / "v.nii.gz"
    img = nib.Nifti1Image(np.ones((3, 4, 5), np.float32), None)
    img.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
    img.set_qform(None, code=0)
    nib.save(img, p)
    with pytest.raises(UnreadableFileError, match="singular") as info:
        sio.read_volume(p)
    assert str(p) in str(info.value)


def test_read_volume_missing_and_kind(tmp_path):
    with pytest.raises(MissingFileError, match="seg.nii.gz"):
        sio.read_volume(tmp_path / "seg.nii.gz", kind="seg")
    with pytest.raises(InvalidArgumentError, match="kind"):
        sio.read_volume(tmp_path / "seg.nii.gz", kind="ct")


def test_read_volume_shape_and_nan(tmp_path):
    p = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 4), np.float32), np.eye(4)), p)
    with pytest.raises(ShapeError, match=str(p)):
        sio.read_volume(p)
    q = tmp_path / "nan.nii.gz"
    data = np.ones((3, 4, 5), np.float32)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, AFFINE), q)
    with pytest.raises(NonFiniteError, match=str(q)):
        sio.read_volume(q)
    r = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5), np.complex64), AFFINE), r)
    with pytest.raises(DTypeError, match=str(r)):
        sio.read_volume(r)


def test_read_seg_validation(tmp_path):
    ok = tmp_path / "float_ok.nii.gz"
    nib.save(nib.Nifti1Image(_seg().astype(np.float32), AFFINE), ok)
    v = sio.read_volume(ok, kind="seg")
    assert v.data.dtype == np.uint8 and v.data.max() == DISC_LABEL

    frac = tmp_path / "frac.nii.gz"
    nib.save(nib.Nifti1Image(_seg().astype(np.float32) * 0.5, AFFINE), frac)
    with pytest.raises(DTypeError, match="non-integer") as info:
        sio.read_volume(frac, kind="seg")
    assert str(frac) in str(info.value)

    neg = tmp_path / "neg.nii.gz"
    nib.save(nib.Nifti1Image(_seg().astype(np.int16) - 1, AFFINE), neg)
    with pytest.raises(DTypeError, match=str(neg)):
        sio.read_volume(neg, kind="seg")

    empty = sio.write_nifti(tmp_path / "empty.nii.gz", np.zeros((4, 5, 6), np.uint8), AFFINE)
    with pytest.raises(EmptySegmentationError, match=str(empty)):
        sio.read_volume(empty, kind="seg")
    sacrum_only = sio.write_nifti(tmp_path / "sacrum.nii.gz", np.full((4, 5, 6), 18, np.uint8), AFFINE)
    with pytest.raises(EmptySegmentationError, match="column"):
        sio.read_volume(sacrum_only, kind="seg")
    assert sio.read_volume(empty, kind="seg", require_column=False).data.max() == 0


# ----------------------------------------------------------------------------- truth and manifest


def test_read_truth_errors(tmp_path):
    with pytest.raises(MissingFileError, match="truth.json"):
        sio.read_truth(tmp_path / "truth.json")
    p = tmp_path / "bad.json"
    p.write_text('{"a": 1')
    with pytest.raises(UnreadableFileError, match=str(p)):
        sio.read_truth(p)
    q = tmp_path / "list.json"
    q.write_text("[1, 2]")
    with pytest.raises(UnreadableFileError, match="JSON object") as info:
        sio.read_truth(q)
    assert str(q) in str(info.value)
    r = tmp_path / "bin.json"
    r.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UnreadableFileError, match=str(r)):
        sio.read_truth(r)


def _csv(path: Path, rows, columns=None) -> Path:
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "mutate, error, fragment",
    [
        (lambda df: df.drop(columns=["mri_water_path"]), ManifestError, "mri_water_path"),
        (lambda df: df.assign(split=["train", "valid", "test"]), ManifestError, "valid"),
        (lambda df: df.assign(subject_id=["a", "b", "a"]), DuplicateIdError, "'a'"),
        (lambda df: df.iloc[:0], ManifestError, "no subjects"),
    ],
)
def test_read_manifest_rejects(tmp_path, mutate, error, fragment):
    p = tmp_path / "manifest.csv"
    mutate(pd.DataFrame(_rows())).to_csv(p, index=False)
    with pytest.raises(error, match=fragment) as info:
        sio.read_manifest(p)
    assert str(p) in str(info.value)


def test_read_manifest_unreadable(tmp_path):
    with pytest.raises(MissingFileError, match="manifest.csv"):
        sio.read_manifest(tmp_path / "manifest.csv")
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(UnreadableFileError, match=str(p)):
        sio.read_manifest(p)
    q = tmp_path / "bin.csv"
    q.write_bytes(b"\x00\xff\xfe" * 100)
    with pytest.raises(SpineLibError, match=str(q)):
        sio.read_manifest(q)


def test_read_manifest_tolerates_spaces_and_no_truth_column(tmp_path):
    p = tmp_path / "manifest.csv"
    rows = _rows(2)
    text = ", ".join(sio.MANIFEST_COLUMNS[:-1]) + "\n"
    for r in rows:
        text += ", ".join(r[c] for c in sio.MANIFEST_COLUMNS[:-1]) + "\n"
    p.write_text(text)
    df = sio.read_manifest(p)
    assert df["truth_path"].tolist() == ["", ""]
    assert df["split"].tolist() == ["train", "val"]


# ----------------------------------------------------------------------------- subjects


def test_load_subject_all_entry_points(tmp_path):
    rows = [_make_subject(tmp_path, "S00000"), _make_subject(tmp_path, "S00001", truth=False)]
    rows[1]["split"] = "test"
    m = sio.write_manifest(tmp_path / "manifest.csv", rows)
    df = sio.read_manifest(m)
    s = sio.load_subject(df.iloc[0])
    assert s.id == s.subject_id == "S00000" and s.split == "train"
    assert s.dxa.has_lateral and s.fat.data.dtype == np.float32 and s.seg.data.dtype == np.uint8
    assert s.truth["transform"]["theta_deg"] == 1.5
    assert "S00000" in repr(s)
    s1 = sio.load_subject(df, "S00001")
    assert s1.truth is None and s1.split == "test"
    s2 = sio.load_subject(m, "S00001")
    np.testing.assert_array_equal(s2.water.data, s1.water.data)
    assert sio.load_subject(df.iloc[1].to_dict()).id == "S00001"
    with pytest.raises(ManifestError, match="S00009"):
        sio.load_subject(df, "S00009")
    with pytest.raises(InvalidArgumentError, match="subject_id"):
        sio.load_subject(df)
    assert sio.check_subject(df.iloc[0]) is None
    assert sio.check_cohort(m) == {}


def test_load_subject_cross_checks(tmp_path):
    row = _make_subject(tmp_path, "S00000")
    m = sio.write_manifest(tmp_path / "manifest.csv", [row])
    df = sio.read_manifest(m)
    water = Path(df["mri_water_path"][0])
    sio.write_nifti(water, np.ones((8, 9, 11), np.float32), AFFINE)
    with pytest.raises(ShapeError, match=str(water)):
        sio.load_subject(df.iloc[0])
    shifted = AFFINE.copy()
    shifted[0, 3] += 5
    sio.write_nifti(water, np.ones((8, 9, 10), np.float32), shifted)
    with pytest.raises(ShapeError, match="affine"):
        sio.load_subject(df.iloc[0])
    sio.write_nifti(water, np.ones((8, 9, 10), np.float32), AFFINE)
    truth = Path(df["truth_path"][0])
    sio.write_truth(truth, {"subject_id": "S00042"})
    with pytest.raises(ManifestError, match="S00042") as info:
        sio.load_subject(df.iloc[0])
    assert str(truth) in str(info.value)


def test_check_subject_reports_reasons(tmp_path):
    rows = [_make_subject(tmp_path, f"S{i:05d}") for i in range(4)]
    m = sio.write_manifest(tmp_path / "manifest.csv", rows)
    (tmp_path / "S00001" / "seg.nii.gz").unlink()
    _truncated(tmp_path / "S00002" / "mri_fat.nii.gz")
    sio.write_nifti(tmp_path / "S00003" / "seg.nii.gz", np.zeros((8, 9, 10), np.uint8), AFFINE)
    df = sio.read_manifest(m)
    assert sio.check_subject(df.iloc[0]) is None
    r1 = sio.check_subject(df.iloc[1])
    assert r1.startswith("MissingFileError") and str(tmp_path / "S00001" / "seg.nii.gz") in r1
    bad = sio.check_cohort(df)
    assert sorted(bad) == ["S00001", "S00002", "S00003"]
    assert bad["S00002"].startswith("UnreadableFileError") and "mri_fat.nii.gz" in bad["S00002"]
    assert bad["S00003"].startswith("EmptySegmentationError")


def test_load_subject_real_data_pickle(tmp_path):
    bone, tissue, _, _ = _dxa_arrays()
    row = _make_subject(tmp_path, "1000123", truth=False)
    _ukb_pickle(tmp_path / "1000123" / "dxa.pkl", {"bone": bone, "tissue": tissue, "pixel_spacing": [1.0, 1.0]})
    row["dxa_path"] = "1000123/dxa.pkl"
    df = sio.read_manifest(sio.write_manifest(tmp_path / "manifest.csv", [row]))
    reason = sio.check_subject(df.iloc[0])
    assert reason.startswith("UnsafeLoadError") and "allow_pickle" in reason
    assert sio.check_subject(df.iloc[0], allow_pickle=True) is None
    assert sio.load_subject(df, "1000123", allow_pickle=True).dxa.pixel_spacing_mm.tolist() == [1.0, 1.0]


def test_read_dxa_npy_named_npz(tmp_path):
    p = tmp_path / "dxa.npz"
    with open(p, "wb") as fh:
        np.save(fh, np.zeros((3, 3)))
    with pytest.raises(UnreadableFileError, match="single .npy") as info:
        sio.read_dxa(p)
    assert str(p) in str(info.value)


def test_doctests():
    import doctest

    assert doctest.testmod(sio).failed == 0
