"""What ``spinelib predict`` writes: one scan's four outputs, or a whole folder of scans.

:func:`predict_file` is ``spinelib predict DXA --checkpoint CKPT --out DIR``: it reads the
scan (:func:`read_scan`), predicts with :class:`spinelib.learn.predict.Predictor` and writes
(:func:`write_prediction`)

- ``curves.csv``: the six curves in mm at the K levels (and each level's row-mm),
- ``spine3d.nii.gz``: the reconstructed spine column as a mask, RAS+ affine in mm,
- ``spine3d.html``: a self-contained rotating Plotly spine (opens offline),
- ``measures.json``: Cobb angle, apex level, kyphosis, lordosis, extent, and provenance.

:func:`predict_scans` is the same command given a folder of DXA files, a text list of
paths or a ``manifest.csv``: one warm model per worker, one output folder per scan, one
``measures.csv`` for the cohort and a ``failures.csv`` naming each scan that could not be
read or predicted, and why (the others go on).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..shape.curves import SpineCurves
from ..errors import InvalidArgumentError, SpineLibError, UnreadableFileError
from ..io import DXAImage, read_dxa
from ..learn.orientation import check_orientation, flip_dxa
from ..learn.predict import Prediction, Predictor, check_spacing, frame_to_ras_affine

if TYPE_CHECKING:
    from ..util.workers import Engine, Shard

log = logging.getLogger(__name__)

__all__ = ["predict_file", "predict_scans", "write_prediction", "curves_csv", "list_scans", "read_scan",
           "CohortPrediction"]


def _measures_record(pred: Prediction, *, source: str, model: str, flipped: Sequence[str] = ()) -> dict:
    """The ``measures.json`` content of a prediction (plain values)."""
    c = pred.curves
    return {
        **{k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in pred.measures.items()},
        "extent_mm": [float(v) for v in c.extent_mm],
        "spine_length_mm": float(c.extent_mm[1] - c.extent_mm[0]),
        "n_levels": c.n_levels,
        "crop": {"row0": pred.crop.row0, "col0": pred.crop.col0, "rows": pred.crop.rows,
                 "cols": pred.crop.cols, "pixel_mm": pred.crop.pixel_mm},
        "flipped": list(flipped),
        "source": source, "model": model,
    }


def curves_csv(curves: SpineCurves) -> str:
    """``curves.csv`` of :func:`write_prediction`: ``level``, ``level_row_mm`` and the six
    curves (:data:`spinelib.spine.CURVE_NAMES`), one row per level, ``%.4f`` (curves are finite).

    The same bytes as ``pandas.DataFrame.to_csv(index=False, float_format="%.4f")``,
    without importing pandas (a fifth of a second of a cold ``spinelib predict``).
    """
    from ..spine import CURVE_NAMES

    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    cols = [np.asarray(curves.levels_mm, float), *np.asarray(curves.values, float)]
    lines = [",".join(["level", "level_row_mm", *CURVE_NAMES])]
    for k in range(curves.n_levels):
        lines.append(",".join([str(k), *("%.4f" % c[k] for c in cols)]))
    return "\n".join(lines) + "\n"


def write_prediction(pred: Prediction, out_dir: str | Path, *, source: str = "", model: str = "",
                     flipped: Sequence[str] = (), record: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the four outputs of a prediction into ``out_dir``; returns their paths.

    ``curves``: ``curves.csv``; ``mask``: ``spine3d.nii.gz`` (uint8, affine
    :func:`frame_to_ras_affine`); ``html``: ``spine3d.html`` (plotly.js inside);
    ``measures``: ``measures.json`` (``flipped`` lists the flips applied to the stored
    image, ``"vertical"`` / ``"horizontal"``: the curves are in the flipped image's frame;
    ``record``, when given, is written instead of the prediction's own measures record).
    Each file is written atomically; ``measures.json`` last, so that it marks a complete folder.
    """
    if not isinstance(pred, Prediction):
        raise InvalidArgumentError(f"pred must be a Prediction, got {type(pred).__name__}")
    from ..util.atomic import ensure_writable_dir, write_json_atomic, write_text_atomic
    from ..io import write_nifti
    from ..shape.reconstruct import surface_mesh
    from ..viz.spine3d import PRED_COLOUR, SpineMesh, rotating_spines_figure, write_figure_html

    out = ensure_writable_dir(out_dir, min_free_mb=20)
    paths = {k: out / n for k, n in (("curves", "curves.csv"), ("mask", "spine3d.nii.gz"),
                                      ("html", "spine3d.html"), ("measures", "measures.json"))}
    write_text_atomic(paths["curves"], curves_csv(pred.curves))
    write_nifti(paths["mask"], pred.mask.astype(np.uint8), frame_to_ras_affine(pred.grid))
    verts, faces = surface_mesh(pred.mask, pred.grid)
    fig = rotating_spines_figure([SpineMesh(verts, faces, "predicted spine", PRED_COLOUR)],
                                 title=f"Predicted 3D spine{': ' + source if source else ''}")
    write_figure_html(fig, paths["html"], self_contained=True)
    write_json_atomic(paths["measures"], dict(record) if record is not None else
                      _measures_record(pred, source=source, model=model, flipped=flipped))
    return paths


_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz")
#: Suffixes of the DXA files :func:`list_scans` picks from a folder.
_DXA_SUFFIXES = (".npz", ".pkl", ".pickle", ".png", ".tif", ".tiff")
_LIST_SUFFIXES = (".txt", ".lst", ".list")


def _flips(vertical: bool, horizontal: bool) -> tuple[str, ...]:
    return tuple(n for n, on in (("vertical", vertical), ("horizontal", horizontal)) if on)


def read_scan(dxa_path: str | Path, *, allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
              flip_horizontal: bool = False) -> DXAImage:
    """Read one scan for prediction: a DXA file (not a volume), a plausible spacing, head-up
    once the asked flips are applied (:func:`spinelib.learn.orientation.flip_dxa`).

    Raises
    ------
    UnreadableFileError
        A NIfTI/Analyze volume, or a file :func:`spinelib.io.read_dxa` cannot read.
    InvalidArgumentError
        An implausible pixel spacing (:func:`spinelib.learn.predict.check_spacing`).
    OrientationError
        An upside-down scan (:func:`spinelib.learn.orientation.check_orientation`).
    """
    name = Path(dxa_path).name.lower()
    if any(name.endswith(sfx) for sfx in _NIFTI_SUFFIXES):
        raise UnreadableFileError(
            f"{dxa_path} is a 3D volume (NIfTI/Analyze), not a DXA scan; give a dxa.npz, a UK Biobank "
            "DXA pickle or a PNG/TIFF image"
        )
    dxa = read_dxa(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm)
    check_spacing(dxa)
    dxa = flip_dxa(dxa, vertical=flip_vertical, horizontal=flip_horizontal)
    check_orientation(dxa)
    return dxa


def predict_file(dxa_path: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                 allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
                 flip_horizontal: bool = False) -> dict[str, Path]:
    """``spinelib predict``: read one DXA file, predict, write the four outputs.

    Parameters
    ----------
    dxa_path : our ``dxa.npz``, a UK Biobank preprocessing pickle (with ``allow_pickle``),
        or a PNG / TIFF image (with ``pixel_spacing_mm``).
    checkpoint : a model checkpoint written by training (``best.pt``), or the paper's
        released state dict.
    out_dir : folder for ``curves.csv``, ``spine3d.nii.gz``, ``spine3d.html``,
        ``measures.json`` (created; existing files are replaced atomically).
    allow_pickle : opt in to reading a pickle (unpickling runs code from the file).
    pixel_spacing_mm : (row, col) or one value, in mm; required for images.
    flip_vertical, flip_horizontal : mirror the image first (:func:`flip_dxa`): for a scan
        stored upside down (refused otherwise) or left-right mirrored (not detectable).

    Returns
    -------
    dict ``curves``, ``mask``, ``html``, ``measures`` -> path written.

    Raises
    ------
    MissingFileError, UnreadableFileError, UnsafeLoadError, InvalidArgumentError, ...
        For a bad DXA file or spacing (:func:`spinelib.io.read_dxa`, plausibility).
    OrientationError
        An upside-down scan without ``flip_vertical``.
    MissingCheckpointError, CorruptCheckpointError, CheckpointError
        For a bad checkpoint (:meth:`Predictor.from_checkpoint`).

    Nothing is written unless both inputs are valid.
    """
    # the DXA first: reading it is cheap, loading the model is not
    dxa = read_scan(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm,
                        flip_vertical=flip_vertical, flip_horizontal=flip_horizontal)
    predictor = Predictor.from_checkpoint(checkpoint)
    pred = predictor.predict(dxa)
    paths = write_prediction(pred, out_dir, source=Path(dxa_path).name, model=predictor.config.describe(),
                             flipped=_flips(flip_vertical, flip_horizontal))
    log.info("prediction for %s written to %s", dxa_path, Path(out_dir))
    return paths


# ----------------------------------------------------------------------------- cohorts


def _scan_id(path: Path) -> str:
    # a cohort folder holds <id>/dxa.npz: the folder names the scan
    stem = path.parent.name if path.stem.lower() == "dxa" and path.parent.name else path.name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "scan"


def list_scans(source: str | Path) -> list[tuple[str, Path]]:
    """The scans named by ``source``: ``(scan id, DXA path)`` pairs, ids unique.

    ``source`` is one of

    - a folder: every file below it with a DXA suffix (``.npz``, ``.pkl``, ``.pickle``,
      ``.png``, ``.tif``, ``.tiff``), sorted; a file named ``dxa.*`` takes its folder's name
      as id (a cohort folder's ``<id>/dxa.npz``), any other its name without suffixes;
    - a text list (``.txt``, ``.lst``, ``.list``): one path per line, relative to the
      list's folder; blank lines and ``#`` comments are skipped;
    - a manifest (``.csv``) with columns ``dxa_path`` (relative to the manifest's folder)
      and optionally ``subject_id`` (the ids; otherwise from the paths).

    Repeated ids get ``-2``, ``-3``, ... appended. Paths are not opened here.

    Raises
    ------
    MissingFileError
        ``source`` does not exist.
    UnreadableFileError
        An unreadable list or manifest, or a manifest without ``dxa_path``.
    InvalidArgumentError
        ``source`` names no scan at all, or is a file of another kind.
    """
    from ..errors import MissingFileError

    src = Path(source)
    if not src.exists():
        raise MissingFileError(f"scan source {src} does not exist")
    pairs: list[tuple[str, Path]] = []
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in _DXA_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(src).parts))
        pairs = [(_scan_id(p), p) for p in files]
    elif src.suffix.lower() in _LIST_SUFFIXES:
        try:
            lines = src.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"cannot read scan list {src}: {type(exc).__name__}: {exc}") from exc
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                p = Path(line).expanduser()
                p = p if p.is_absolute() else src.parent / p
                pairs.append((_scan_id(p), p))
    elif src.suffix.lower() == ".csv":
        import pandas as pd

        try:
            df = pd.read_csv(src, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"cannot read manifest {src}: {type(exc).__name__}: {exc}") from exc
        df.columns = [str(c).strip() for c in df.columns]
        if "dxa_path" not in df.columns:
            raise UnreadableFileError(f"manifest {src} has no dxa_path column (columns: {list(df.columns)})")
        for _, row in df.iterrows():
            if not str(row["dxa_path"]).strip():
                continue
            p = Path(str(row["dxa_path"]).strip()).expanduser()
            p = p if p.is_absolute() else src.parent / p
            sid = str(row.get("subject_id", "")).strip()
            pairs.append((re.sub(r"[^A-Za-z0-9_.-]+", "_", sid).strip("._") if sid else _scan_id(p), p))
    else:
        raise InvalidArgumentError(
            f"scan source {src} is neither a folder, a text list ({', '.join(_LIST_SUFFIXES)}) nor a manifest .csv")
    if not pairs:
        raise InvalidArgumentError(f"scan source {src} names no DXA file")
    seen: dict[str, int] = {}
    out = []
    for sid, p in pairs:
        n = seen.get(sid, 0) + 1
        seen[sid] = n
        out.append((sid if n == 1 else f"{sid}-{n}", p))
    return out


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


_WORKER_PREDICTORS: dict[tuple[str, str], "Predictor"] = {}


def _worker_predictor(checkpoint: str, digest: str) -> "Predictor":
    """The model of ``checkpoint``, loaded once per worker process."""
    key = (str(checkpoint), digest)
    if key not in _WORKER_PREDICTORS:
        _WORKER_PREDICTORS.clear()  # one model at a time: a worker's memory is the cluster's
        _WORKER_PREDICTORS[key] = Predictor.from_checkpoint(checkpoint)
    return _WORKER_PREDICTORS[key]


def _scan_row(rec: Mapping[str, Any], sid: str, path: Path, out: Path) -> dict:
    """The ``measures.csv`` row of a scan from its ``measures.json`` record."""
    return {"scan": sid, "source": str(path),
            **{k: v for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k != "n_levels"},
            "extent_top_mm": rec["extent_mm"][0], "extent_bottom_mm": rec["extent_mm"][1], "output": str(out / sid)}


def _failure_row(sid: str, path: Path, error: str, reason: str) -> dict:
    log.warning("scan %s (%s) failed: %s", sid, path, reason)
    return {"scan": sid, "source": str(path), "error": error, "reason": reason}


def _predict_group(item: Mapping[str, Any]) -> list[dict]:
    """Fan-out item: predict a group of scans in one batch and write their outputs.

    Returns one row per scan, a ``measures.csv`` row or a ``failures.csv`` row (it has
    ``"error"``). Runs in a worker, which loads the model once (:func:`_worker_predictor`)
    unless the item carries a warm ``predictor`` (in this process only), on one thread:
    a worker is one core (``--jobs`` sets how many).
    """
    predictor = item.get("predictor") or _worker_predictor(item["checkpoint"], item["digest"])
    threads = torch.get_num_threads()
    # one intra-op thread whatever the backend: a convolution's last bits depend on the
    # thread count, and a scan must get the same numbers from any --jobs, cluster or shard
    torch.set_num_threads(1)
    try:
        return _predict_group_with(predictor, item)
    finally:
        torch.set_num_threads(threads)


def _predict_group_with(predictor: "Predictor", item: Mapping[str, Any]) -> list[dict]:
    opts, out, flipped = item["options"], Path(item["out"]), _flips(item["options"]["flip_vertical"],
                                                                     item["options"]["flip_horizontal"])
    model = predictor.config.describe()
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
            rec = _measures_record(res, source=str(path), model=model, flipped=flipped)
            rec["checkpoint_sha256"] = item["digest"]
            write_prediction(res, out / sid, source=path.name, model=model, flipped=flipped, record=rec)
            rows.append(_scan_row(rec, sid, path, out))
        except SpineLibError as exc:
            rows.append(_failure_row(sid, path, type(exc).__name__, str(exc)))
    order = {sid: k for k, (sid, _) in enumerate(item["scans"])}
    return sorted(rows, key=lambda r: order[r["scan"]])


def _stored_row(out: Path, sid: str, path: Path, digest: str, flipped: Sequence[str]) -> dict | None:
    """A scan's row from the ``measures.json`` an earlier run wrote with the same model and flips."""
    import json

    try:
        rec = json.loads((out / sid / "measures.json").read_text())
    except (OSError, ValueError):
        return None
    done = all((out / sid / n).is_file() for n in ("curves.csv", "spine3d.nii.gz", "spine3d.html"))
    if (done and digest and isinstance(rec, dict) and rec.get("checkpoint_sha256") == digest
            and rec.get("source") == str(path) and rec.get("flipped") == list(flipped)):
        return _scan_row(rec, sid, path, out)
    return None


def predict_scans(source: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                  allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
                  flip_horizontal: bool = False, batch_size: int = 8, progress: bool = True,
                  predictor: Predictor | None = None, jobs: "int | Engine" = 1,
                  shard: "Shard | None" = None) -> CohortPrediction:
    """``spinelib predict`` for a cohort: one warm model per worker, one output folder per scan.

    Parameters
    ----------
    source : a folder of DXA files, a text list of paths or a manifest (:func:`list_scans`).
    checkpoint : as in :func:`predict_file` (ignored when ``predictor`` is given).
    out_dir : gets ``<scan id>/`` with the four outputs of :func:`write_prediction` per
        scan, ``measures.csv`` (one row per predicted scan: ``scan``, ``source``, the
        measures of ``measures.json``, ``output``) and ``failures.csv`` (``scan``,
        ``source``, ``error``, ``reason``; header only when none failed). A rerun with the
        same checkpoint keeps the scans already written (``measures.json`` records the
        checkpoint's SHA-256). With a ``shard``, the tables are ``measures.shard-I-of-N.csv``
        and ``failures.shard-I-of-N.csv``.
    allow_pickle, pixel_spacing_mm, flip_vertical, flip_horizontal : as in
        :func:`predict_file`, for every scan.
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
    import hashlib

    import pandas as pd

    from ..util.atomic import atomic_path, ensure_writable_dir
    from ..util.workers import Engine, Failed, Shard, fan_out

    t0 = time.perf_counter()
    engine, shard = Engine.of(jobs), shard or Shard()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    every = list_scans(source)
    # shards take whole batches: a scan's numbers depend (in the last bits) on the batch it
    # is computed in, so every path must batch the scans alike
    batches = [every[k:k + int(batch_size)] for k in range(0, len(every), int(batch_size))]
    scans = [scan for i in shard.positions(len(batches)) for scan in batches[i]]
    if predictor is not None and not isinstance(predictor, Predictor):
        raise InvalidArgumentError(f"predictor must be a Predictor, got {type(predictor).__name__}")
    if predictor is not None and (engine.kind != "local" or engine.jobs != 1):
        raise InvalidArgumentError("a warm predictor runs in this process only: use jobs=1, or pass the checkpoint")
    digest = ""
    if predictor is None:
        loaded = Predictor.from_checkpoint(checkpoint)  # a bad checkpoint fails here, not once per worker
        digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
        if engine.kind == "local" and engine.jobs == 1:
            predictor = loaded
    out = ensure_writable_dir(out_dir, min_free_mb=20)
    options = dict(allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm, flip_vertical=flip_vertical,
                   flip_horizontal=flip_horizontal)
    flipped = _flips(flip_vertical, flip_horizontal)
    stored = {sid: _stored_row(out, sid, Path(p), digest, flipped) for sid, p in scans}
    groups = [g for g in ([(sid, str(p)) for sid, p in batches[i] if stored[sid] is None]
                          for i in shard.positions(len(batches))) if g]
    items = [{"scans": g, "checkpoint": str(checkpoint), "digest": digest, "out": str(out),
              "options": options, **({"predictor": predictor} if predictor else {})} for g in groups]
    # one task is one batch: chunks of one keep a worker's memory to one batch of scans
    engine = Engine(jobs=engine.jobs, kind=engine.kind, scheduler=engine.scheduler, chunk=1)
    done = fan_out(_predict_group, items, keys=[g[0][0] for g in groups], engine=engine, desc="predicting",
                   unit="batch", progress=progress, spawn=True)
    new: dict[str, dict] = {}
    for g, res in zip(groups, done):
        if isinstance(res, Failed):  # the whole batch was lost (a worker died)
            res = [_failure_row(sid, Path(p), "WorkerError", res.reason) for sid, p in g]
        new.update({r["scan"]: r for r in res})
    rows = [stored[sid] or new[sid] for sid, _ in scans]
    good = [r for r in rows if "error" not in r]
    failures = [r for r in rows if "error" in r]
    suffix = "" if shard.is_whole else f".shard-{shard.index}-of-{shard.count}"
    paths = {"measures": out / f"measures{suffix}.csv", "failures": out / f"failures{suffix}.csv"}
    with atomic_path(paths["measures"]) as tmp:
        pd.DataFrame(good, columns=None if good else ["scan", "source", "output"]).to_csv(
            tmp, index=False, float_format="%.4f")
    with atomic_path(paths["failures"]) as tmp:
        pd.DataFrame(failures, columns=["scan", "source", "error", "reason"]).to_csv(tmp, index=False)
    result = CohortPrediction(out_dir=out, measures_csv=paths["measures"], failures_csv=paths["failures"],
                              n_scans=len(scans), n_failed=len(failures), seconds=time.perf_counter() - t0)
    log.info("%s", result.summary())
    return result
