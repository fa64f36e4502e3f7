"""Turn a folder of UK Biobank bulk zips into a cohort: subject folders and ``manifest.csv``.

One participant visit becomes one subject folder ``<COHORT>/<id>/`` holding
``dxa.npz``, ``mri_fat.nii.gz``, ``mri_water.nii.gz``, ``seg.nii.gz`` (when a
segmentation is available) and ``source.json`` (which zips it came from), written by
:func:`spinelib.ingest.subject.ingest_subject`. The id is
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
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingFileError
from ..io.checks import check_integer
from ..io.manifest import check_split_fractions, manifest_row
from ..util.atomic import ensure_writable_dir, remove_stale_temporaries, write_text_atomic
from ..util.workers import Engine, Failed, Shard, fan_out
from .dicomzip import DXA_FIELD, MRI_FIELD, parse_bulk_name
from .subject import NO_SEGMENTATION, ingest_subject

__all__ = ["IngestReport", "ingest_ukb", "FAILURES_FILE", "split_participants", "find_bulk_zips"]

log = logging.getLogger("spinelib.ingest")

FAILURES_FILE = "ingest_failures.csv"
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


# --------------------------------------------------------------------------- cohort


def _check_args(jobs, seed, split_fractions, seg_dir) -> None:
    """Refuse bad ``jobs``, ``seed`` or ``split_fractions`` and a missing ``seg_dir`` before any work."""
    if not isinstance(jobs, Engine):
        check_integer(jobs, "jobs", 1)
    check_integer(seed, "seed", 0)
    check_split_fractions(split_fractions)
    if seg_dir is not None and not Path(seg_dir).is_dir():
        raise MissingFileError(f"segmentation folder {seg_dir} does not exist")


def _write_failures(out: Path, failures: dict[str, str], name: str = FAILURES_FILE) -> None:
    """Write ``{subject id: reason}`` as a two-column CSV, sorted by id, atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject_id", "reason"])
    for k in sorted(failures):
        w.writerow([k, failures[k]])
    write_text_atomic(out / name, buf.getvalue())


def _subject_jobs(pairs: dict[str, dict], dest: Path, seg_dir: str | Path | None, check_ids: bool,
                  dxa_zips: str | Path, mri_zips: str | Path) -> list[dict]:
    """One :func:`~spinelib.ingest.subject.ingest_subject` job per participant visit, sorted by id."""
    return [{"sid": sid, "eid": e["eid"], "visit": e["visit"], "folder": str(dest / sid),
             "dxa": e["dxa"], "mri": e["mri"], "seg_dir": None if seg_dir is None else Path(seg_dir),
             "check_ids": bool(check_ids), "dxa_dir": str(dxa_zips), "mri_dir": str(mri_zips)}
            for sid, e in sorted(pairs.items())]


def _run_jobs(mine: list[dict], jobs: int | Engine, progress: bool) -> list[tuple[str, str, str]]:
    """``(id, state, reason)`` of each job; a job the fan-out lost is ``failed`` with its reason."""
    done = fan_out(ingest_subject, mine, keys=[j["sid"] for j in mine], engine=Engine.of(jobs), desc="ingest",
                   unit="subj", progress=progress)
    return [(j["sid"], "failed", r.reason) if isinstance(r, Failed) else r for j, r in zip(mine, done)]


def _shard_report(dest: Path, results: list[tuple[str, str, str]], shard: Shard) -> IngestReport:
    """Report of one shard and its ``ingest_failures.shard-I-of-N.csv``; no split, no manifest."""
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


def _cohort_report(dest: Path, results: list[tuple[str, str, str]], ignored: dict[str, str],
                   pairs: dict[str, dict], seed: int, split_fractions) -> IngestReport:
    """Report of the whole cohort: split by participant, ``ingest_failures.csv``, then ``manifest.csv``."""
    from ..io import write_manifest

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
    by_eid = split_participants(list(eid_of.values()), seed, split_fractions)
    report.splits = {sid: by_eid[eid_of[sid]] for sid in report.ingested}
    _write_failures(dest, report.failures)
    if report.ingested:
        rows = [manifest_row(sid, report.splits[sid], truth=False) for sid in report.ingested]
        report.manifest_path = write_manifest(dest / "manifest.csv", rows)
    for sid, reason in sorted(report.failures.items()):
        if reason != NO_SEGMENTATION:
            log.warning("ingest: %s left out: %s", sid, reason)
    return report


def ingest_ukb(dxa_zips: str | Path, mri_zips: str | Path, out: str | Path, *, seg_dir: str | Path | None = None,
               jobs: int | Engine = 1, seed: int = 0, split_fractions=(0.7, 0.1, 0.2), progress: bool = True,
               check_ids: bool = True, shard: Shard | None = None) -> IngestReport:
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
    _check_args(jobs, seed, split_fractions, seg_dir)
    pairs, ignored = find_bulk_zips(dxa_zips, mri_zips)
    dest = ensure_writable_dir(out, probe=True)
    shard = shard or Shard()
    if shard.is_whole:  # shards run at once: another one's temporaries are not stale
        remove_stale_temporaries(dest)
    todo = _subject_jobs(pairs, dest, seg_dir, check_ids, dxa_zips, mri_zips)
    log.info("ingest: %d participant visit(s) from %s and %s into %s, shard %s, on %s", len(todo), dxa_zips,
             mri_zips, dest, shard, Engine.of(jobs).describe())
    results = _run_jobs([todo[i] for i in shard.positions(len(todo))], jobs, progress)
    if not shard.is_whole:
        # the split is drawn over every participant: the manifest waits for an unsharded rerun
        return _shard_report(dest, results, shard)
    return _cohort_report(dest, results, ignored, pairs, int(seed), split_fractions)
