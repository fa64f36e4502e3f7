"""Targets of a cohort: one pass per subject (load, align, read the curves), bad subjects reported."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.errors import InvalidArgumentError, MissingFileError, ShapeError, UnreadableFileError
from spinelib.io import read_manifest
from spinelib.profiles import get_profile
from spinelib.study.cohort_targets import prepare_cohort
from spinelib.study.config import TargetConfig
from spinelib.study.targets import TargetSet, read_targets, write_targets


SMOKE = TargetConfig.from_profile(get_profile("smoke"))

@pytest.fixture(scope="module")
def prepared(smoke_cohort):
    manifest = read_manifest(smoke_cohort).head(6)
    return prepare_cohort(manifest, SMOKE, jobs=1, progress=False)


def test_targets_close_to_those_of_the_true_transform(prepared):
    table, targets = prepared
    assert len(table) == 6 and table["trusted"].sum() == len(targets) >= 5
    assert targets.values.shape == (len(targets), 6, get_profile("smoke")["n_levels"])
    # the alignment error moves the coronal curves by about a millimetre, not more
    diff = np.abs(targets.values - targets.values_true)[:, :3]
    assert np.median(diff) < 2.0
    # sagittal depths do not depend on the planar transform at all... up to level re-binning
    assert np.median(np.abs(targets.extent_mm - targets.extent_true_mm)) < 3.0


def test_round_trip_and_select(prepared, tmp_path):
    _, targets = prepared
    back = read_targets(write_targets(tmp_path / "t.npz", targets))
    for f in ("subject_id", "split", "values", "extent_mm", "table_y_mm"):
        np.testing.assert_array_equal(getattr(back, f), getattr(targets, f))
    train = back.select("train")
    assert set(train.split) <= {"train"} and len(train) <= len(back)
    c = back.curves(0)
    assert c.n_levels == back.n_levels


def test_bad_subject_reported_not_dropped(smoke_cohort, tmp_path):
    manifest = read_manifest(smoke_cohort).head(3).copy()
    # the DXA of subject 0 paired with the MRI of subject 1: the alignment must reject it
    manifest.loc[0, ["mri_fat_path", "mri_water_path", "seg_path"]] = manifest.loc[1, ["mri_fat_path", "mri_water_path", "seg_path"]].values
    manifest.loc[0, "truth_path"] = ""
    # subject 2's DXA is corrupt
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00" * 10)
    manifest.loc[2, "dxa_path"] = str(bad)
    table, targets = prepare_cohort(manifest, SMOKE, jobs=1, progress=False)
    assert len(table) == 3
    assert not table.loc[0, "trusted"] and table.loc[0, "reason"]
    assert not table.loc[2, "trusted"] and "load failed" in table.loc[2, "reason"]
    assert list(targets.subject_id) == [table.loc[1, "subject_id"]]


def test_bad_files(tmp_path):
    with pytest.raises(MissingFileError, match="nothere"):
        read_targets(tmp_path / "nothere.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(UnreadableFileError, match="bad.npz"):
        read_targets(tmp_path / "bad.npz")
    with pytest.raises(ShapeError):
        TargetSet(np.array(["a"]), np.array(["train"]), np.zeros((1, 5, 3)), np.zeros((1, 2)),
                  np.zeros(1), np.zeros((1, 5, 3)), np.zeros((1, 2)))


# --------------------------------------------------------------------------- truth targets
def _with_truth_copy(row: dict, folder, seg_dxa: str | None) -> dict:
    """The row with its truth.json copied into ``folder``, naming ``seg_dxa`` (or nothing)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    truth = json.loads(open(row["truth_path"]).read())
    truth.pop("dxa_session_seg", None)
    if seg_dxa is not None:
        truth["dxa_session_seg"] = seg_dxa
    (folder / "truth.json").write_text(json.dumps(truth))
    return {**row, "truth_path": str(folder / "truth.json")}


def test_truth_targets_with_and_without_seg_dxa(smoke_cohort, tmp_path):
    import nibabel as nib
    import pandas as pd

    from spinelib.io import load_subject
    from spinelib.study.cohort_targets import prepare_cohort_targets
    from spinelib.study.subject_targets import truth_curves
    from spinelib.study.targets import ANATOMY_DXA, ANATOMY_MRI

    rows = read_manifest(smoke_cohort).head(2).to_dict(orient="records")
    # subject 0: a DXA-session spine one MRI voxel superior to the MRI one (a posture change)
    img = nib.load(rows[0]["seg_path"])
    seg = np.asarray(img.dataobj)
    moved = np.zeros_like(seg)
    moved[:, :, 1:] = seg[:, :, :-1]
    folder = tmp_path / "with"
    folder.mkdir()
    nib.save(nib.Nifti1Image(moved, img.affine), str(folder / "seg_dxa.nii.gz"))
    with_row = _with_truth_copy(rows[0], folder, "seg_dxa.nii.gz")
    without_row = _with_truth_copy(rows[0], tmp_path / "without", None)
    k = get_profile("smoke")["n_levels"]
    subj = load_subject(with_row)
    dxa_c, ty, anatomy, plane = truth_curves(subj, with_row["truth_path"], k)
    assert anatomy == ANATOMY_DXA and plane == "true" and ty == pytest.approx(subj.truth["table_y_mm"])
    mri_c, _, anatomy0, _ = truth_curves(load_subject(without_row), without_row["truth_path"], k)
    assert anatomy0 == ANATOMY_MRI
    # one voxel superior in the MRI is about one voxel up the DXA rows (a small in-plane rotation)
    voxel_z = float(np.abs(img.affine[2, 2]))
    shift = mri_c.extent_mm - dxa_c.extent_mm
    assert shift == pytest.approx([voxel_z, voxel_z], abs=0.1 * voxel_z)

    manifest = pd.DataFrame([with_row, without_row | {"subject_id": rows[1]["subject_id"]}])
    manifest.loc[1, ["dxa_path", "mri_fat_path", "mri_water_path", "seg_path", "split"]] = [
        rows[1][c] for c in ("dxa_path", "mri_fat_path", "mri_water_path", "seg_path", "split")]
    manifest.loc[1, "truth_path"] = str(_with_truth_copy(rows[1], tmp_path / "second", None)["truth_path"])
    res = prepare_cohort_targets(manifest, SMOKE, jobs=1, progress=False)
    assert list(res.truth.anatomy) == [ANATOMY_DXA, ANATOMY_MRI]
    assert res.truth.curves(0).allclose(dxa_c)
    tt = res.truth_table.set_index("subject_id")
    assert tt["has_truth_targets"].all() and "seg_dxa" in tt.iloc[1]["reason"] and tt.iloc[0]["reason"] == ""
    # the estimated targets are untouched by the truth targets
    assert np.array_equal(res.targets.values, prepare_cohort(manifest, SMOKE, jobs=1,
                                                             progress=False)[1].values)
    back = read_targets(write_targets(tmp_path / "truth.npz", res.truth))
    assert list(back.anatomy) == list(res.truth.anatomy)


def test_truth_targets_for_rejected_alignments_and_none_for_real_data(smoke_cohort, tmp_path):
    from spinelib.study.cohort_targets import prepare_cohort_targets

    manifest = read_manifest(smoke_cohort).head(3).copy()
    params = TargetConfig.from_profile(get_profile("smoke", {"align_min_score": 1.0}))  # reject every alignment
    manifest.loc[2, "truth_path"] = ""  # a subject without truth (real data)
    res = prepare_cohort_targets(manifest, params, jobs=1, progress=False)
    assert len(res.targets) == 0 and not res.alignment["trusted"].any()
    assert list(res.truth.subject_id) == list(manifest["subject_id"][:2])
    assert res.truth_table.loc[2, "reason"] == "no true transform (real data)"
    assert not res.truth_table.loc[2, "has_truth_targets"]
    with pytest.raises(InvalidArgumentError, match="TargetConfig"):
        prepare_cohort_targets(manifest, get_profile("smoke"), jobs=1, progress=False)
    with pytest.raises(InvalidArgumentError, match="n_levels"):
        TargetConfig.from_profile({k: v for k, v in get_profile("smoke").items() if k != "n_levels"})
    with pytest.raises(InvalidArgumentError, match="n_levels"):
        TargetConfig(SMOKE.align, 2)
    with pytest.raises(InvalidArgumentError, match="AlignConfig"):
        TargetConfig(get_profile("smoke"), 32)
    with pytest.raises(InvalidArgumentError, match="allow_pickle"):
        TargetConfig(SMOKE.align, 32, "yes")


def test_targetset_anatomy_validated_and_subset():
    v = np.zeros((2, 6, 3))
    base = (np.array(["a", "b"]), np.array(["test", "test"]), v, np.tile([0.0, 1.0], (2, 1)), np.zeros(2), v,
            np.tile([0.0, 1.0], (2, 1)))
    t = TargetSet(*base)
    assert list(t.anatomy) == ["mri_session", "mri_session"]
    assert list(t.subset(["b", "a"]).subject_id) == ["b", "a"]
    with pytest.raises(InvalidArgumentError):
        TargetSet(*base, anatomy=np.array(["x", "y"]))
    with pytest.raises(ShapeError):
        TargetSet(*base, anatomy=np.array(["mri_session"]))
    with pytest.raises(InvalidArgumentError, match="no targets"):
        t.subset(["zz"])


def test_target_config_key_names_every_setting_under_its_profile_key():
    params = get_profile("default", {"allow_pickle": True})
    key = TargetConfig.from_profile(params).key()
    assert key == {k: params[k] for k in ("align_pixel_mm", "align_angle_range_deg", "align_min_score",
                                         "align_min_stage1_score", "n_levels", "allow_pickle")}
