"""Bad data: every bad subject is reported with its stage and reason, and the run carries on.

A copy of the session smoke cohort gets one subject per kind of bad input (corrupt,
truncated, misoriented three ways, NaN-filled, empty segmentation, missing file, a DXA/MRI
pair of two different people, a duplicated id); the alignment section runs through the
real pipeline (papermill) on it, and ``tables/bad_subjects.csv`` must name each one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spinelib import io
from spinelib.errors import DuplicateIdError, InsufficientDataError, InvalidArgumentError, PipelineError
from spinelib.run.pipeline import run_pipeline
from spinelib.run.sections import SECTIONS
from spinelib.io.quality import (
    BAD_SUBJECT_COLUMNS,
    bad_subjects,
    quality_block,
    read_cohort_manifest,
    require_subjects,
    split_duplicates,
    stage_and_reason,
)

ALIGNMENT_ONLY = SECTIONS[:1]

# kind -> (subject, stage, text the reason must hold). Every subject is trusted in the clean
# smoke cohort (checked by test_corrupted_subjects_were_good_before), so its rejection is due
# to the corruption alone.
KINDS = {
    "corrupt": ("S00001", "load", "is not an .npz archive"),
    "truncated": ("S00002", "load", "UnreadableFileError"),
    "rotated_90": ("S00003", "alignment", "not trusted"),
    "upside_down": ("S00005", "alignment", "not trusted"),
    "mri_affine_flipped": ("S00006", "alignment", "not trusted"),
    "nan_filled": ("S00007", "load", "NonFiniteError"),
    "empty_segmentation": ("S00008", "load", "EmptySegmentationError"),
    "two_people": ("S00009", "alignment", "not trusted"),
    "missing_file": ("S00019", "load", "MissingFileError"),
    "duplicate_id": ("S00015", "manifest", "DuplicateIdError"),
}


def _rewrite_dxa(path: Path, fn) -> None:
    """Transform bone and tissue; np.savez directly, because write_dxa refuses bad arrays."""
    z = dict(np.load(path))
    for k in ("bone", "tissue"):
        z[k] = fn(z[k])
    if z["bone"].shape[0] != z.get("lateral_bone", z["bone"]).shape[0]:
        for k in ("lateral_bone", "lateral_tissue", "lateral_pixel_spacing_mm"):
            z.pop(k, None)  # a rotated AP view no longer shares rows with the lateral view
    path.unlink()
    np.savez(path, **z)


def _flip_z_affine(folder: Path) -> None:
    """Same voxels, an affine that says the volume is upside down (another orientation)."""
    for name in ("mri_fat.nii.gz", "mri_water.nii.gz", "seg.nii.gz"):
        img = nib.load(folder / name)
        data = np.asanyarray(img.dataobj)
        a = img.affine.copy()
        a[:3, 3] = a[:3, 3] + a[:3, 2] * (data.shape[2] - 1)
        a[:3, 2] = -a[:3, 2]
        out = nib.Nifti1Image(data, a)
        out.set_qform(a, code=1)
        out.set_sform(a, code=1)
        nib.save(out, folder / name)


def corrupt_cohort(src_manifest: Path, dest: Path) -> Path:
    """A copy of the cohort with one subject per kind of :data:`KINDS`; returns its manifest."""
    shutil.copytree(src_manifest.parent, dest)
    rng = np.random.default_rng(0)
    d = lambda sid: dest / sid  # noqa: E731
    (d("S00001") / "dxa.npz").write_bytes(rng.bytes(5000))
    fat = d("S00002") / "mri_fat.nii.gz"
    fat.write_bytes(fat.read_bytes()[: fat.stat().st_size // 2])
    _rewrite_dxa(d("S00003") / "dxa.npz", np.rot90)
    _rewrite_dxa(d("S00005") / "dxa.npz", np.flipud)
    _flip_z_affine(d("S00006"))
    _rewrite_dxa(d("S00007") / "dxa.npz", lambda a: np.full_like(a, np.nan))
    seg = nib.load(d("S00008") / "seg.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8), seg.affine), d("S00008") / "seg.nii.gz")
    shutil.copy(d("S00012") / "dxa.npz", d("S00009") / "dxa.npz")  # S00012's DXA, S00009's MRI
    (d("S00019") / "seg.nii.gz").unlink()
    man = pd.read_csv(dest / "manifest.csv", dtype=str, keep_default_na=False)
    twin = man[man.subject_id == "S00016"].copy()
    twin["subject_id"] = "S00015"  # a second participant filed under S00015's id
    man = pd.concat([man, twin], ignore_index=True)
    man.to_csv(dest / "manifest.csv", index=False)
    return dest / "manifest.csv"


@pytest.fixture(scope="module")
def bad_manifest(smoke_cohort, tmp_path_factory) -> Path:
    return corrupt_cohort(Path(smoke_cohort), tmp_path_factory.mktemp("bad") / "cohort")


@pytest.fixture(scope="module")
def bad_run(bad_manifest, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bad-run")
    run_pipeline(run, profile="smoke", data=bad_manifest, table=ALIGNMENT_ONLY, stream=None,
                 progress_bar=False)
    return run


# --------------------------------------------------------------------------- units
def _manifest_rows(ids):
    return pd.DataFrame([{"subject_id": s, "split": "train", "dxa_path": f"{s}/dxa.npz",
                          "mri_fat_path": "f", "mri_water_path": "w", "seg_path": "s",
                          "truth_path": ""} for s in ids])


def test_read_manifest_strict_by_default_report_on_request(tmp_path):
    p = tmp_path / "manifest.csv"
    _manifest_rows(["a", "b", "a"]).to_csv(p, index=False)
    with pytest.raises(DuplicateIdError, match="'a'"):
        io.read_manifest(p)
    assert io.read_manifest(p, on_duplicate="report")["subject_id"].tolist() == ["a", "b", "a"]
    with pytest.raises(InvalidArgumentError, match="on_duplicate"):
        io.read_manifest(p, on_duplicate="keep_first")
    kept, bad = read_cohort_manifest(p)
    assert kept["subject_id"].tolist() == ["b"]
    assert bad["subject_id"].tolist() == ["a", "a"] and set(bad["stage"]) == {"manifest"}
    assert "rows 1, 3" in bad["reason"][0]


def test_split_duplicates_without_duplicates_keeps_everything():
    kept, bad = split_duplicates(_manifest_rows(["a", "b"]))
    assert kept["subject_id"].tolist() == ["a", "b"] and len(bad) == 0
    assert list(bad.columns) == list(BAD_SUBJECT_COLUMNS)
    with pytest.raises(InvalidArgumentError):
        split_duplicates(pd.DataFrame({"id": ["a"]}))


@pytest.mark.parametrize("reason, stage, starts", [
    ("load failed: MissingFileError: x does not exist", "load", "MissingFileError"),
    ("alignment failed: ShapeError: bad", "alignment", "ShapeError"),
    ("targets failed: EmptySegmentationError: none", "targets", "EmptySegmentationError"),
    ("stage-2 score 0.61 below align_min_score 0.8", "alignment", "alignment not trusted: stage-2"),
    ("", "alignment", "alignment not trusted"),
])
def test_stage_and_reason(reason, stage, starts):
    got_stage, why = stage_and_reason(reason)
    assert got_stage == stage and why.startswith(starts)


def test_bad_subjects_orders_stages_and_skips_trusted():
    table = pd.DataFrame({"subject_id": ["x", "y", "z"], "trusted": [True, False, False],
                          "reason": ["", "stage-1 score 0.5 below", "load failed: NonFiniteError: nan"]})
    dup = pd.DataFrame({"subject_id": ["d"], "stage": ["manifest"], "reason": ["DuplicateIdError: twice"]})
    bad = bad_subjects(table, dup)
    assert bad["subject_id"].tolist() == ["d", "z", "y"]
    assert bad["stage"].tolist() == ["manifest", "load", "alignment"]
    assert quality_block(bad, 4) == {"n_rows": 4, "n_bad": 3,
                                     "bad_by_stage": {"manifest": 1, "load": 1, "alignment": 1}}
    with pytest.raises(InvalidArgumentError, match="trusted"):
        bad_subjects(table.drop(columns="trusted"))


def test_require_subjects():
    assert require_subjects(["train", "val", "test"], min_subjects=3) == {"train": 1, "val": 1, "test": 1}
    bad = pd.DataFrame({"subject_id": ["a", "b"], "stage": ["load", "alignment"],
                        "reason": ["NonFiniteError: nan in x", "alignment not trusted: low"]})
    with pytest.raises(InsufficientDataError, match=r"only 3 usable subjects remain .* min_subjects = 4") as e:
        require_subjects(["train", "val", "test"], min_subjects=4, bad=bad)
    msg = str(e.value)
    assert "2 left out" in msg and "1 at load (NonFiniteError x1)" in msg and "bad_subjects.csv" in msg
    with pytest.raises(InsufficientDataError, match="none in val"):
        require_subjects(["train", "test", "train"], min_subjects=1)
    with pytest.raises(InvalidArgumentError):
        require_subjects(["train"], min_subjects=-1)
    assert issubclass(InsufficientDataError, PipelineError)


# --------------------------------------------------------------------------- the pipeline
def test_corrupted_subjects_were_good_before(smoke_cohort):
    """Control: the subjects rejected for orientation or pairing align when left intact."""
    from spinelib.align import AlignConfig, align_subject
    from spinelib.profiles import get_profile

    man = io.read_manifest(smoke_cohort).set_index("subject_id")
    params = get_profile("smoke")
    for kind in ("rotated_90", "upside_down", "mri_affine_flipped", "two_people"):
        sid = KINDS[kind][0]
        rec = align_subject(dict(man.loc[sid], subject_id=sid), AlignConfig.from_profile(params))
        assert rec["trusted"], (kind, rec["reason"])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_bad_subject_reported_with_stage_and_reason(bad_run, kind):
    sid, stage, text = KINDS[kind]
    bad = pd.read_csv(bad_run / "tables" / "bad_subjects.csv", dtype=str, keep_default_na=False)
    assert list(bad.columns) == list(BAD_SUBJECT_COLUMNS)
    rows = bad[bad["subject_id"] == sid]
    assert len(rows) == (2 if kind == "duplicate_id" else 1), bad
    assert set(rows["stage"]) == {stage}
    assert all(text in r for r in rows["reason"]), rows["reason"].tolist()


def test_run_carries_on_with_the_rest(bad_run, bad_manifest, smoke_cohort):
    from spinelib.align import AlignConfig, align_subject
    from spinelib.profiles import get_profile
    from spinelib.study.targets import read_targets

    bad = pd.read_csv(bad_run / "tables" / "bad_subjects.csv", dtype=str)
    targets = read_targets(bad_run / "targets.npz")
    assert not set(targets.subject_id) & set(bad["subject_id"])
    n_rows = len(pd.read_csv(bad_manifest))
    assert len(targets) + len(bad) == n_rows
    # the rest aligns exactly as it does in the intact cohort: the bad subjects change nobody
    # else's fate (smoke's coarse grid rejects a few genuine pairs near the threshold anyway)
    man = io.read_manifest(smoke_cohort)
    broken = {sid for sid, _, _ in KINDS.values()}
    intact = [r for r in man.to_dict(orient="records") if r["subject_id"] not in broken]
    params = get_profile("smoke")
    expected = {r["subject_id"] for r in intact if align_subject(r, AlignConfig.from_profile(params))["trusted"]}
    assert set(targets.subject_id) == expected
    metrics = json.loads((bad_run / "metrics.json").read_text())
    assert metrics["data_quality"]["n_rows"] == n_rows
    assert metrics["data_quality"]["n_bad"] == len(bad)
    assert metrics["data_quality"]["bad_by_stage"]["load"] == 5
    # the alignment chapter lists every one of them
    text = (bad_run / "notebooks" / "01_alignment.ipynb").read_text()
    for sid, _, _ in KINDS.values():
        assert sid in text


def test_book_pages_say_how_many(bad_run, tmp_path):
    from spinelib.run.book import stage_book

    staged = stage_book(bad_run, staging=tmp_path / "src", table=ALIGNMENT_ONLY)
    bad = pd.read_csv(bad_run / "tables" / "bad_subjects.csv")
    prov = (staged / "provenance.md").read_text()
    assert f"| Subjects left out as bad data | {len(bad)} of " in prov
    assert "01_alignment.ipynb::n_bad_subjects" in (staged / "summary.md").read_text()


def test_too_few_subjects_stop_the_run_with_a_clear_message(bad_manifest, tmp_path):
    man = pd.read_csv(bad_manifest, dtype=str, keep_default_na=False)
    keep = ["S00000", "S00010", "S00004", "S00007", "S00001"]  # train, val, test good; two bad
    small = man[man.subject_id.isin(keep)].copy()
    for col in ("dxa_path", "mri_fat_path", "mri_water_path", "seg_path", "truth_path"):
        small[col] = [str(bad_manifest.parent / v) for v in small[col]]
    path = tmp_path / "manifest.csv"
    small.to_csv(path, index=False)
    run = tmp_path / "run"
    with pytest.raises(PipelineError) as e:
        run_pipeline(run, profile="smoke", data=path, table=ALIGNMENT_ONLY, stream=None,
                     progress_bar=False)
    msg = str(e.value)
    assert "InsufficientDataError" in msg and "only 3 usable subjects remain" in msg
    assert "min_subjects = 10" in msg and "2 left out: 2 at load" in msg
    # the report is written before the run stops
    bad = pd.read_csv(run / "tables" / "bad_subjects.csv")
    assert sorted(bad["subject_id"]) == ["S00001", "S00007"]
