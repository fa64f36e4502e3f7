"""Targets of a cohort: one pass per subject (load, align, read the curves), bad subjects reported."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.errors import MissingFileError, ShapeError, UnreadableFileError
from spinelib.io import read_manifest
from spinelib.profiles import get_profile
from spinelib.targets import TargetSet, prepare_cohort, read_targets, write_targets


@pytest.fixture(scope="module")
def prepared(smoke_cohort):
    manifest = read_manifest(smoke_cohort).head(6)
    return prepare_cohort(manifest, get_profile("smoke"), jobs=1, progress=False)


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
    table, targets = prepare_cohort(manifest, get_profile("smoke"), jobs=1, progress=False)
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
