"""Turn a folder of UK Biobank bulk zips into a cohort: subject folders and ``manifest.csv``.

One participant visit becomes one subject folder ``<COHORT>/<id>/`` holding
``dxa.npz``, ``mri_fat.nii.gz``, ``mri_water.nii.gz``, ``seg.nii.gz`` (when a
segmentation is available) and ``source.json`` (which zips it came from). The id is
the participant's eid for the first imaging visit (files ``*_2_0.zip``) and
``<eid>_<instance>_<array>`` for any other visit.

* **Bad zips** are reported per participant with the reason and skipped: missing
  counterpart, not a zip, bad DICOM, a missing image / series / station, or DXA and
  MRI naming different participants.
* **Segmentation.** The manifest needs one per subject. With ``seg_dir``, either
  ``seg_dir/<id>/seg.nii.gz`` (our label convention, :mod:`spinelib.spine`) or
  TotalSegmentator's ``seg_dir/<id>/vertebrae_mr.nii.gz`` and ``total_mr.nii.gz``
  (converted by :func:`spinelib.ingest.segment.seg_from_totalsegmentator`) is resampled
  (nearest label) onto the ingested MRI grid. A subject without one is still written
  (its ``mri_water.nii.gz`` is what TotalSegmentator runs on) but left out of the
  manifest and reported as needing segmentation.
* **Resumable.** Subject folders are written whole or not at all (``atomic_dir``); a
  folder whose ``source.json`` matches the zips (names and sizes) is not rewritten,
  only completed with a segmentation when one has appeared since.
* **Split by participant**, seeded: participants are ordered by a hash of
  ``(seed, eid)`` and cut by ``split_fractions`` (test first, then validation), with
  the counts of :func:`spinelib.synth.cohort.assign_splits`. All visits of a
  participant share a split, and adding participants later moves few of the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..util.atomic import atomic_dir, ensure_writable_dir, write_json_atomic, write_text_atomic
from ..errors import (
    EmptySegmentationError,
    InvalidArgumentError,
    MissingFileError,
    ParticipantMismatchError,
    SpineLibError,
)
from ..util.workers import Engine, Failed, Shard, fan_out
from .dicomzip import DXA_FIELD, MRI_FIELD, parse_bulk_name

__all__ = ["IngestReport", "ingest_ukb", "NO_SEGMENTATION", "FAILURES_FILE", "split_participants",
           "find_bulk_zips"]

log = logging.getLogger("spinelib.ingest")

NO_SEGMENTATION = ("no segmentation: run TotalSegmentator (see the book's introduction) and re-run with --seg")
FAILURES_FILE = "ingest_failures.csv"
_SOURCE = "source.json"
_FILES = ("dxa.npz", "mri_fat.nii.gz", "mri_water.nii.gz", _SOURCE)
_INGEST_VERSION = 1
_FIRST_VISIT = "2_0"


@dataclass
class IngestReport:
    """What :func:`ingest_ukb` did.

    Attributes
    ----------
    out : Path
        The cohort folder.
    manifest_path : Path or None
        ``manifest.csv``, or None when no subject is complete (nothing to list).
    ingested : list of str
        Subject ids listed in the manifest (written now or kept from a previous run).
    failures : dict
        ``{subject id or file name: reason}`` of everything left out, including the
        subjects that only lack a segmentation (reason :data:`NO_SEGMENTATION`).
    needs_segmentation : list of str
        Ids written without a segmentation (also in ``failures``).
    resumed : list of str
        Ids whose folders were already complete and were not rewritten.
    splits : dict
        ``{subject id: split}`` of the ingested subjects.
    """

    out: Path
    manifest_path: Path | None
    ingested: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    needs_segmentation: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"ingested {len(self.ingested)} subject(s) into {self.out}"
                 + (f" ({len(self.resumed)} already there)" if self.resumed else "")]
        if self.manifest_path is not None:
            lines.append(f"manifest: {self.manifest_path}")
        if self.needs_segmentation:
            lines.append(f"{len(self.needs_segmentation)} subject(s) need a segmentation: {NO_SEGMENTATION}")
        bad = {k: v for k, v in self.failures.items() if v != NO_SEGMENTATION}
        if bad:
            lines.append(f"{len(bad)} left out (see {self.out / FAILURES_FILE}):")
            lines += [f"  {k}: {v}" for k, v in sorted(bad.items())]
        return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def _subject_id(eid: str, visit: str) -> str:
    return eid if visit == _FIRST_VISIT else f"{eid}_{visit}"


def find_bulk_zips(dxa_zips: str | Path, mri_zips: str | Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Pair the DXA and MRI zips of each participant visit.

    Returns
    -------
    pairs : ``{subject id: {"eid", "dxa", "mri"}}`` (a path or None for each zip)
    ignored : ``{file name: reason}`` of ``.zip`` files not named like bulk files of
        the expected field

    Raises
    ------
    MissingFileError
        A folder does not exist.
    """
    pairs: dict[str, dict] = {}
    ignored: dict[str, str] = {}
    for folder, fld, key in ((dxa_zips, DXA_FIELD, "dxa"), (mri_zips, MRI_FIELD, "mri")):
        d = Path(folder)
        if not d.is_dir():
            raise MissingFileError(f"{key.upper()} zip folder {d} does not exist")
        for p in sorted(d.glob("*.zip")):
            name = parse_bulk_name(p)
            if name is None or name.field != fld:
                ignored[p.name] = (f"not named like a field-{fld} bulk file "
                                   f"(<eid>_{fld}_<instance>_<array>.zip) in {d}")
                continue
            sid = _subject_id(name.eid, name.visit)
            entry = pairs.setdefault(sid, {"eid": name.eid, "visit": name.visit, "dxa": None, "mri": None})
            entry[key] = p
    return pairs, ignored


def split_participants(eids: list[str], seed: int, fractions=(0.7, 0.1, 0.2)) -> dict[str, str]:
    """Seeded split of participants: ``{eid: "train" | "val" | "test"}``.

    Order by SHA-256 of ``"<seed>:<eid>"``, then cut: the first ``n_test`` are test,
    the next ``n_val`` validation (counts as :func:`spinelib.synth.cohort.assign_splits`).

    >>> split_participants(["1", "2", "3"], 0) == split_participants(["3", "1", "2"], 0)
    True
    """
    from ..synth.cohort import assign_splits

    unique = sorted(set(str(e) for e in eids))
    n = len(unique)
    if n == 0:
        return {}
    counts = assign_splits(n, 0, fractions)  # only its counts: the order below is ours
    n_test, n_val = counts.count("test"), counts.count("val")
    ranked = sorted(unique, key=lambda e: hashlib.sha256(f"{int(seed)}:{e}".encode()).hexdigest())
    return {e: ("test" if k < n_test else "val" if k < n_test + n_val else "train") for k, e in enumerate(ranked)}


# --------------------------------------------------------------------------- one subject


def _zip_record(p: Path) -> dict:
    return {"name": p.name, "size": p.stat().st_size}


def _source_record(eid: str, dxa: Path, mri: Path) -> dict:
    return {"ingest_version": _INGEST_VERSION, "eid": eid, "dxa_zip": _zip_record(dxa), "mri_zip": _zip_record(mri)}


def _is_complete(folder: Path, record: dict) -> bool:
    if not all((folder / f).is_file() for f in _FILES):
        return False
    try:
        return json.loads((folder / _SOURCE).read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        return False


def _check_ids(eid: str, dxa, mri) -> None:
    for scan, what in ((dxa, "DXA zip"), (mri, "MRI zip")):
        if scan.patient_id and scan.patient_id != eid:
            raise ParticipantMismatchError(
                f"{what} {scan.path} is named for participant {eid} but its DICOM PatientID is "
                f"{scan.patient_id!r}: the files are of different participants")
    if dxa.patient_id and mri.patient_id and dxa.patient_id != mri.patient_id:
        raise ParticipantMismatchError(
            f"DXA zip {dxa.path} (PatientID {dxa.patient_id!r}) and MRI zip {mri.path} (PatientID "
            f"{mri.patient_id!r}) are of different participants")


def _resample_labels(labels: np.ndarray, affine: np.ndarray, target_affine: np.ndarray,
                     target_shape: tuple[int, int, int]) -> np.ndarray:
    """Labels on another grid, by nearest voxel (0 outside the source)."""
    if labels.shape == tuple(target_shape) and np.allclose(affine, target_affine, atol=1e-3):
        return labels.astype(np.uint8)
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(affine) @ target_affine
    out = affine_transform(labels.astype(np.uint8), m[:3, :3], offset=m[:3, 3], output_shape=tuple(target_shape),
                           order=0, mode="constant", cval=0)
    return out.astype(np.uint8)


def _find_seg(seg_dir: Path | None, sid: str) -> tuple[str, tuple[Path, ...]] | None:
    """("ours", (seg,)) or ("totalsegmentator", (vertebrae_mr, total_mr)) or None."""
    if seg_dir is None:
        return None
    d = Path(seg_dir) / sid
    own = d / "seg.nii.gz"
    if own.is_file():
        return "ours", (own,)
    vert, total = d / "vertebrae_mr.nii.gz", d / "total_mr.nii.gz"
    if vert.is_file() and total.is_file():
        return "totalsegmentator", (vert, total)
    if vert.is_file() or total.is_file():
        have, lack = (vert, total) if vert.is_file() else (total, vert)
        raise MissingFileError(f"segmentation folder {d} has {have.name} but not {lack.name}; "
                               "TotalSegmentator's vertebrae_mr and total_mr outputs are both needed")
    return None


def _seg_on_grid(found: tuple[str, tuple[Path, ...]], affine: np.ndarray, shape: tuple[int, int, int],
                 sid: str) -> np.ndarray:
    from ..io import read_volume
    from ..spine import COLUMN_LABELS

    kind, paths = found
    if kind == "ours":
        vol = read_volume(paths[0], kind="seg")
        labels, src_affine = vol.data, vol.affine
    else:
        from .segment import seg_from_totalsegmentator  # optional: only for TotalSegmentator outputs

        labels, src_affine = seg_from_totalsegmentator(paths[0], paths[1])
    out = _resample_labels(np.asarray(labels), np.asarray(src_affine, float), affine, shape)
    if not np.isin(out, COLUMN_LABELS).any():
        raise EmptySegmentationError(
            f"segmentation {paths[0]} has no spine-column label inside subject {sid}'s MRI field of view")
    return out


def _mri_grid(folder: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    import nibabel as nib

    img = nib.load(str(folder / "mri_water.nii.gz"))
    return np.asarray(img.affine, float), tuple(int(v) for v in img.shape[:3])


def _mri_dtype(volume: np.ndarray) -> type:
    """int16 for integer values that fit (a quarter the size of float32 once gzipped), else float32."""
    info = np.iinfo(np.int16)
    if volume.min() >= info.min and volume.max() <= info.max and np.array_equal(volume, np.rint(volume)):
        return np.int16
    return np.float32


def _ingest_one(job: dict) -> tuple[str, str, str]:
    """Ingest one subject; returns ``(id, state, reason)``, state one of ingested,
    resumed, needs_seg, failed. Only spinelib errors become reasons."""
    from ..io import write_dxa, write_nifti
    from .ukb_dxa import read_ukb_dxa
    from .ukb_mri import read_ukb_mri

    sid, eid, folder = job["sid"], job["eid"], Path(job["folder"])
    dxa_zip, mri_zip, seg_dir = job["dxa"], job["mri"], job["seg_dir"]
    try:
        if dxa_zip is None:
            return sid, "failed", (f"no DXA zip (field {DXA_FIELD}, {eid}_{DXA_FIELD}_{job['visit']}.zip) "
                                   f"in {job['dxa_dir']}")
        if mri_zip is None:
            return sid, "failed", (f"no MRI zip (field {MRI_FIELD}, {eid}_{MRI_FIELD}_{job['visit']}.zip) "
                                   f"in {job['mri_dir']}")
        record = _source_record(eid, Path(dxa_zip), Path(mri_zip))
        found = _find_seg(seg_dir, sid)
        if _is_complete(folder, record):
            if (folder / "seg.nii.gz").is_file():
                return sid, "resumed", ""
            if found is None:
                return sid, "needs_seg", NO_SEGMENTATION
            affine, shape = _mri_grid(folder)
            write_nifti(folder / "seg.nii.gz", _seg_on_grid(found, affine, shape, sid), affine, dtype=np.uint8)
            return sid, "ingested", ""
        dxa = read_ukb_dxa(dxa_zip)
        mri = read_ukb_mri(mri_zip)
        if job["check_ids"]:
            _check_ids(eid, dxa, mri)
        seg = _seg_on_grid(found, mri.affine, mri.fat.shape, sid) if found is not None else None
        with atomic_dir(folder) as tmp:
            write_dxa(tmp / "dxa.npz", dxa.bone, dxa.tissue, dxa.pixel_spacing_mm)
            write_nifti(tmp / "mri_fat.nii.gz", mri.fat, mri.affine, dtype=_mri_dtype(mri.fat))
            write_nifti(tmp / "mri_water.nii.gz", mri.water, mri.affine, dtype=_mri_dtype(mri.water))
            if seg is not None:
                write_nifti(tmp / "seg.nii.gz", seg, mri.affine, dtype=np.uint8)
            write_json_atomic(tmp / _SOURCE, record)
        return sid, ("ingested" if seg is not None else "needs_seg"), ("" if seg is not None else NO_SEGMENTATION)
    except SpineLibError as exc:
        return sid, "failed", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- cohort


def _check_args(jobs, seed, split_fractions) -> None:
    if not isinstance(jobs, Engine) and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer))
                                         or jobs < 1):
        raise InvalidArgumentError(f"jobs must be a positive integer, got {jobs!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    f = np.asarray(split_fractions, dtype=float) if np.ndim(split_fractions) == 1 else None
    if f is None or f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0, atol=1e-6):
        raise InvalidArgumentError(
            f"split_fractions must be three non-negative numbers summing to 1, got {split_fractions!r}")


def _write_failures(out: Path, failures: dict[str, str], name: str = FAILURES_FILE) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject_id", "reason"])
    for k in sorted(failures):
        w.writerow([k, failures[k]])
    write_text_atomic(out / name, buf.getvalue())


def ingest_ukb(
    dxa_zips: str | Path,
    mri_zips: str | Path,
    out: str | Path,
    *,
    seg_dir: str | Path | None = None,
    jobs: "int | Engine" = 1,
    seed: int = 0,
    split_fractions=(0.7, 0.1, 0.2),
    progress: bool = True,
    check_ids: bool = True,
    shard: Shard | None = None,
) -> IngestReport:
    """Ingest UK Biobank bulk zips (DXA field 20158, Dixon MRI field 20201) into a cohort.

    Parameters
    ----------
    dxa_zips, mri_zips : folders of ``<eid>_20158_<i>_<a>.zip`` and ``<eid>_20201_<i>_<a>.zip``
    out : cohort folder (created); rerunning resumes
    seg_dir : folder of segmentations, ``<id>/seg.nii.gz`` (ours) or TotalSegmentator's
        ``<id>/vertebrae_mr.nii.gz`` + ``<id>/total_mr.nii.gz``
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine` (a Dask cluster)
    seed : seed of the participant-level split
    split_fractions : (train, val, test), summing to 1
    progress : tqdm progress bar
    check_ids : refuse a visit whose DICOM PatientIDs differ from each other or from the
        eid in the file names (turn off only for files whose PatientID is not the eid)
    shard : ingest only this :class:`~spinelib.util.workers.Shard` of the participant visits
        (sorted by id); it writes ``ingest_failures.shard-I-of-N.csv`` and no manifest,
        which a rerun without a shard writes (resuming every ingested subject)

    Returns
    -------
    IngestReport
        Also written: ``manifest.csv`` (when a subject is complete) and
        ``ingest_failures.csv`` (always), both atomically.

    Raises
    ------
    MissingFileError
        An input folder does not exist.
    InvalidArgumentError
        Bad ``jobs``, ``seed`` or ``split_fractions``.
    OutputError
        ``out`` cannot be written.
    """
    from ..io import write_manifest
    from ..synth.cohort import _remove_stale_temporaries

    _check_args(jobs, seed, split_fractions)
    if seg_dir is not None and not Path(seg_dir).is_dir():
        raise MissingFileError(f"segmentation folder {seg_dir} does not exist")
    pairs, ignored = find_bulk_zips(dxa_zips, mri_zips)
    dest = ensure_writable_dir(out, probe=True)
    shard = shard or Shard()
    if shard.is_whole:  # shards run at once: another one's temporaries are not stale
        _remove_stale_temporaries(dest)
    jobs_list = [{"sid": sid, "eid": e["eid"], "visit": e["visit"], "folder": str(dest / sid),
                  "dxa": e["dxa"], "mri": e["mri"], "seg_dir": None if seg_dir is None else Path(seg_dir),
                  "check_ids": bool(check_ids), "dxa_dir": str(dxa_zips), "mri_dir": str(mri_zips)}
                 for sid, e in sorted(pairs.items())]
    log.info("ingest: %d participant visit(s) from %s and %s into %s, shard %s, on %s", len(jobs_list), dxa_zips,
             mri_zips, dest, shard, Engine.of(jobs).describe())
    mine = [jobs_list[i] for i in shard.positions(len(jobs_list))]
    done = fan_out(_ingest_one, mine, keys=[j["sid"] for j in mine], engine=Engine.of(jobs), desc="ingest",
                   unit="subj", progress=progress)
    results = [(j["sid"], "failed", r.reason) if isinstance(r, Failed) else r for j, r in zip(mine, done)]
    if not shard.is_whole:
        # the split is drawn over every participant: the manifest waits for an unsharded rerun
        report = IngestReport(out=dest, manifest_path=None)
        for sid, state, reason in sorted(results):
            if state in ("ingested", "resumed"):
                report.ingested.append(sid)
            else:
                report.failures[sid] = reason
        _write_failures(dest, report.failures, name=f"ingest_failures.shard-{shard.index}-of-{shard.count}.csv")
        log.info("ingest shard %s: %d ingested, %d not; run once without --shard to write the manifest", shard,
                 len(report.ingested), len(report.failures))
        return report

    report = IngestReport(out=dest, manifest_path=None)
    report.failures.update(ignored)
    for sid, state, reason in sorted(results):
        if state in ("ingested", "resumed"):
            report.ingested.append(sid)
            if state == "resumed":
                report.resumed.append(sid)
        else:
            report.failures[sid] = reason
            if state == "needs_seg":
                report.needs_segmentation.append(sid)
    eid_of = {sid: pairs[sid]["eid"] for sid in report.ingested}
    by_eid = split_participants(list(eid_of.values()), int(seed), split_fractions)
    report.splits = {sid: by_eid[eid_of[sid]] for sid in report.ingested}
    _write_failures(dest, report.failures)
    if report.ingested:
        rows = [{"subject_id": sid, "split": report.splits[sid], "dxa_path": f"{sid}/dxa.npz",
                 "mri_fat_path": f"{sid}/mri_fat.nii.gz", "mri_water_path": f"{sid}/mri_water.nii.gz",
                 "seg_path": f"{sid}/seg.nii.gz", "truth_path": ""} for sid in report.ingested]
        report.manifest_path = write_manifest(dest / "manifest.csv", rows)
    for sid, reason in sorted(report.failures.items()):
        if reason != NO_SEGMENTATION:
            log.warning("ingest: %s left out: %s", sid, reason)
    return report
