"""``spinelib predict`` for a cohort: a folder, a list or a manifest of scans, one warm model per worker.

:func:`predict_scans` lists the scans (:func:`spinelib.run.scan_list.list_scans`), predicts
them in batches of a fan-out (:func:`spinelib.util.workers.fan_out`: local processes, a Dask
cluster or a shard) and writes one output folder per scan
(:func:`spinelib.run.prediction_files.write_prediction`), one ``measures.csv`` for the
cohort and a ``failures.csv`` naming each scan that could not be read or predicted, and why
(the others go on). A rerun with the same checkpoint keeps the scans already written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import InvalidArgumentError, SpineLibError
from ..learn.predict import Predictor
from ..util.atomic import atomic_path, ensure_writable_dir
from ..util.hashing import file_sha256
from ..util.workers import Engine, Failed, Shard, fan_out
from .prediction_files import applied_flips, measures_record, read_scan, write_prediction
from .scan_list import list_scans

log = logging.getLogger(__name__)

__all__ = ["predict_scans", "CohortPrediction"]


@dataclass(frozen=True)
class CohortPrediction:
    """What :func:`predict_scans` did."""

    out_dir: Path
    measures_csv: Path
    failures_csv: Path
    n_scans: int
    n_failed: int
    seconds: float

    @property
    def n_ok(self) -> int:
        return self.n_scans - self.n_failed

    def summary(self) -> str:
        """One line: scans predicted, failed, time and where the tables are."""
        return (f"{self.n_ok} of {self.n_scans} scans predicted, {self.n_failed} failed "
                f"({self.seconds:.1f} s, {self.seconds / max(1, self.n_scans):.2f} s per scan); "
                f"measures: {self.measures_csv}" + (f"; failures: {self.failures_csv}" if self.n_failed else ""))


_WORKER_PREDICTORS: dict[tuple[str, str], Predictor] = {}


def _worker_predictor(checkpoint: str, digest: str, decision_deg: float | None) -> Predictor:
    """The model of ``checkpoint`` (with its operating point at ``decision_deg``), loaded once per worker process."""
    key = (str(checkpoint), digest, decision_deg)
    if key not in _WORKER_PREDICTORS:
        _WORKER_PREDICTORS.clear()  # one model at a time: a worker's memory is the cluster's
        _WORKER_PREDICTORS[key] = Predictor.from_checkpoint(checkpoint)
    return _WORKER_PREDICTORS[key]


def _scan_row(rec: Mapping[str, Any], sid: str, path: Path, out: Path) -> dict:
    """The ``measures.csv`` row of a scan from its ``measures.json`` record."""
    return {"scan": sid, "source": str(path),
            **{k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "n_levels"},
            "extent_top_mm": rec["extent_mm"][0], "extent_bottom_mm": rec["extent_mm"][1], "output": str(out / sid)}


def _failure_row(sid: str, path: Path, error: str, reason: str) -> dict:
    """The ``failures.csv`` row of a scan (logged as a warning)."""
    log.warning("scan %s (%s) failed: %s", sid, path, reason)
    return {"scan": sid, "source": str(path), "error": error, "reason": reason}


def _predict_group(item: Mapping[str, Any]) -> list[dict]:
    """Fan-out item: predict a group of scans in one batch and write their outputs.

    Returns one row per scan, a ``measures.csv`` row or a ``failures.csv`` row (it has
    ``"error"``). Runs in a worker, which loads the model once (:func:`_worker_predictor`)
    unless the item carries a warm ``predictor`` (in this process only), on one thread:
    a worker is one core (``--jobs`` sets how many).
    """
    predictor = item.get("predictor") or _worker_predictor(item["checkpoint"], item["digest"], item["decision_deg"])
    threads = torch.get_num_threads()
    # one intra-op thread whatever the backend: a convolution's last bits depend on the
    # thread count, and a scan must get the same numbers from any --jobs, cluster or shard
    torch.set_num_threads(1)
    try:
        return _predict_group_with(predictor, item)
    finally:
        torch.set_num_threads(threads)


def _predict_group_with(predictor: Predictor, item: Mapping[str, Any]) -> list[dict]:
    """:func:`_predict_group` with ``predictor``: read the group's scans, predict them in one batch, write them."""
    opts, out = item["options"], Path(item["out"])
    flipped = applied_flips(opts["flip_vertical"], opts["flip_horizontal"])
    model = predictor.describe()
    rows, ok, dxas = [], [], []
    for sid, path in item["scans"]:
        path = Path(path)
        try:
            dxas.append(read_scan(path, **opts))
            ok.append((sid, path))
        except SpineLibError as exc:
            rows.append(_failure_row(sid, path, type(exc).__name__, str(exc)))
    for (sid, path), res in zip(ok, predictor.predict_batch(dxas, batch_size=max(1, len(dxas)), on_error="return")):
        try:
            if isinstance(res, BaseException):
                raise res
            rec = measures_record(res, source=str(path), model=model, flipped=flipped)
            rec["checkpoint_sha256"] = item["digest"]
            write_prediction(res, out / sid, source=path.name, model=model, flipped=flipped, record=rec)
            rows.append(_scan_row(rec, sid, path, out))
        except SpineLibError as exc:
            rows.append(_failure_row(sid, path, type(exc).__name__, str(exc)))
    order = {sid: k for k, (sid, _) in enumerate(item["scans"])}
    return sorted(rows, key=lambda r: order[r["scan"]])


def _stored_row(out: Path, sid: str, path: Path, digest: str, flipped: Sequence[str],
                decision_deg: float | None) -> dict | None:
    """A scan's row from the ``measures.json`` an earlier run wrote with the same model, flips and
    scoliosis operating point (``decision_deg``, None without one)."""
    import json

    try:
        rec = json.loads((out / sid / "measures.json").read_text())
    except (OSError, ValueError):
        return None
    done = all((out / sid / n).is_file() for n in ("curves.csv", "spine3d.nii.gz", "spine3d.html"))
    if (done and digest and isinstance(rec, dict) and rec.get("checkpoint_sha256") == digest
            and rec.get("source") == str(path) and rec.get("flipped") == list(flipped)
            and rec.get("scoliosis_decision_deg") == decision_deg):
        return _scan_row(rec, sid, path, out)
    return None


def _shard_batches(source: str | Path, batch_size: Any, shard: Shard) -> list[list[tuple[str, Path]]]:
    """The batches of ``batch_size`` scans of ``source`` (:func:`list_scans` order) that ``shard`` predicts."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    every = list_scans(source)
    # shards take whole batches: a scan's numbers depend (in the last bits) on the batch it
    # is computed in, so every path must batch the scans alike
    batches = [every[k:k + int(batch_size)] for k in range(0, len(every), int(batch_size))]
    return [batches[i] for i in shard.positions(len(batches))]


def _model(predictor: Predictor | None, checkpoint: str | Path,
           engine: Engine) -> tuple[Predictor | None, str, float | None]:
    """The warm model this process uses (None when workers load their own), the checkpoint's
    SHA-256 ("" for a given ``predictor``) and the model's scoliosis decision threshold (None
    without an operating point)."""
    if predictor is not None and not isinstance(predictor, Predictor):
        raise InvalidArgumentError(f"predictor must be a Predictor, got {type(predictor).__name__}")
    if predictor is not None and (engine.kind != "local" or engine.jobs != 1):
        raise InvalidArgumentError("a warm predictor runs in this process only: use jobs=1, or pass the checkpoint")
    digest, loaded = "", predictor
    if predictor is None:
        loaded = Predictor.from_checkpoint(checkpoint)  # a bad checkpoint fails here, not once per worker
        digest = file_sha256(checkpoint)
        if engine.kind == "local" and engine.jobs == 1:
            predictor = loaded
    point = loaded.operating_point
    return predictor, digest, None if point is None else float(point.decision_deg)


def _predict_new(groups: list[list[tuple[str, str]]], common: Mapping[str, Any], engine: Engine,
                 progress: bool) -> dict[str, dict]:
    """Scan id -> row of every scan of ``groups`` (one batch each), predicted in a fan-out;
    ``common`` holds the items' ``checkpoint, digest, decision_deg, out, options`` (and a warm ``predictor``)."""
    items = [{"scans": g, **common} for g in groups]
    # one task is one batch: chunks of one keep a worker's memory to one batch of scans
    engine = Engine(jobs=engine.jobs, kind=engine.kind, scheduler=engine.scheduler, chunk=1)
    done = fan_out(_predict_group, items, keys=[g[0][0] for g in groups], engine=engine, desc="predicting",
                   unit="batch", progress=progress, spawn=True)
    new: dict[str, dict] = {}
    for g, res in zip(groups, done):
        if isinstance(res, Failed):  # the whole batch was lost (a worker died)
            res = [_failure_row(sid, Path(p), "WorkerError", res.reason) for sid, p in g]
        new.update({r["scan"]: r for r in res})
    return new


def _write_tables(out: Path, rows: list[dict], shard: Shard) -> tuple[dict[str, Path], int]:
    """Write ``measures.csv`` and ``failures.csv`` (with the shard's suffix) from the scans'
    rows; returns their paths and the number of failures."""
    import pandas as pd

    good = [r for r in rows if "error" not in r]
    failures = [r for r in rows if "error" in r]
    suffix = "" if shard.is_whole else f".shard-{shard.index}-of-{shard.count}"
    paths = {"measures": out / f"measures{suffix}.csv", "failures": out / f"failures{suffix}.csv"}
    with atomic_path(paths["measures"]) as tmp:
        pd.DataFrame(good, columns=None if good else ["scan", "source", "output"]).to_csv(
            tmp, index=False, float_format="%.4f")
    with atomic_path(paths["failures"]) as tmp:
        pd.DataFrame(failures, columns=["scan", "source", "error", "reason"]).to_csv(tmp, index=False)
    return paths, len(failures)


def predict_scans(source: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                  allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
                  flip_horizontal: bool = False, batch_size: int = 8, progress: bool = True,
                  predictor: Predictor | None = None, jobs: int | Engine = 1,
                  shard: Shard | None = None) -> CohortPrediction:
    """``spinelib predict`` for a cohort: one warm model per worker, one output folder per scan.

    Parameters
    ----------
    source : a folder of DXA files, a text list of paths or a manifest (:func:`list_scans`).
    checkpoint : as in :func:`~spinelib.run.prediction_files.predict_file` (ignored when
        ``predictor`` is given).
    out_dir : gets ``<scan id>/`` with the four outputs of :func:`write_prediction` per
        scan, ``measures.csv`` (one row per predicted scan: ``scan``, ``source``, the
        measures of ``measures.json``, ``output``) and ``failures.csv`` (``scan``,
        ``source``, ``error``, ``reason``; header only when none failed). A rerun with the
        same checkpoint keeps the scans already written (``measures.json`` records the
        checkpoint's SHA-256). With a ``shard``, the tables are ``measures.shard-I-of-N.csv``
        and ``failures.shard-I-of-N.csv``.
    allow_pickle, pixel_spacing_mm, flip_vertical, flip_horizontal : as in ``predict_file``,
        for every scan.
    batch_size : scans per forward pass (:meth:`Predictor.predict_batch`), and per task.
    progress : show a tqdm progress bar.
    predictor : an already loaded model (e.g. warm in a notebook); only with ``jobs=1``.
    jobs : worker processes, or an :class:`~spinelib.util.workers.Engine` (a Dask cluster); each
        worker loads the checkpoint once and computes on one thread (so that every path
        gives a scan the same numbers): give as many jobs as cores.
    shard : predict only this :class:`~spinelib.util.workers.Shard` of the batches (of
        ``batch_size`` scans, in :func:`list_scans` order).

    Returns
    -------
    :class:`CohortPrediction` (counts, time, the two tables).

    Raises
    ------
    MissingFileError, UnreadableFileError, InvalidArgumentError
        A bad ``source`` (:func:`list_scans`), or a ``predictor`` with several workers.
    MissingCheckpointError, CorruptCheckpointError, CheckpointError
        A bad checkpoint. A bad scan does not raise: it is listed in ``failures.csv``.
    """
    t0 = time.perf_counter()
    engine, shard = Engine.of(jobs), shard or Shard()
    mine = _shard_batches(source, batch_size, shard)
    scans = [scan for batch in mine for scan in batch]
    predictor, digest, decision_deg = _model(predictor, checkpoint, engine)
    out = ensure_writable_dir(out_dir, min_free_mb=20)
    options = dict(allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm, flip_vertical=flip_vertical,
                   flip_horizontal=flip_horizontal)
    flipped = applied_flips(flip_vertical, flip_horizontal)
    stored = {sid: _stored_row(out, sid, Path(p), digest, flipped, decision_deg) for sid, p in scans}
    groups = [g for g in ([(sid, str(p)) for sid, p in batch if stored[sid] is None] for batch in mine) if g]
    common = {"checkpoint": str(checkpoint), "digest": digest, "decision_deg": decision_deg, "out": str(out),
              "options": options,
              **({"predictor": predictor} if predictor else {})}
    new = _predict_new(groups, common, engine, progress)
    paths, n_failed = _write_tables(out, [stored[sid] or new[sid] for sid, _ in scans], shard)
    result = CohortPrediction(out_dir=out, measures_csv=paths["measures"], failures_csv=paths["failures"],
                              n_scans=len(scans), n_failed=n_failed, seconds=time.perf_counter() - t0)
    log.info("%s", result.summary())
    return result
