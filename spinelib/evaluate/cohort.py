"""The subjects an evaluation runs on: targets, predictions and alignment, lined up.

An :class:`EvalSet` holds, for the same subjects in the same order, the curve targets
(:class:`spinelib.targets.TargetSet`), every model's predictions
(:class:`spinelib.experiment.Predictions`), the alignment row (the estimated DXA->MRI
transform that placed the targets, needed to put the true MRI column in the same frame)
and the manifest row (file paths, truth). :func:`test_set` builds it from a run's test
split; :func:`shifted_set` aligns, targets and predicts a second cohort once and caches it
in ``<run>/shifted/`` so that both evaluation notebooks read the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..atomic import atomic_path, write_json_atomic
from ..errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from ..experiment import Predictions, checkpoint_path, predict_cohort, read_predictions, write_predictions
from ..io import read_dxa, read_manifest, read_truth
from ..models import MODEL_NAMES
from ..runfolder import run_paths
from ..targets import TargetSet, prepare_cohort, read_targets, write_targets
from ..transform import PlanarTransform

log = logging.getLogger(__name__)

__all__ = ["EvalSet", "eval_set", "test_set", "shifted_set", "shifted_paths", "dxa_geometry",
           "truth_angles", "ordered_models"]

#: The angle keys of ``truth.json`` ``"angles"`` used for agreement with the generator.
TRUTH_ANGLES: tuple[str, ...] = ("cobb_deg", "kyphosis_deg", "lordosis_deg")
#: Profile parameters the shifted cohort's cached files depend on.
_SHIFT_KEYS: tuple[str, ...] = ("align_pixel_mm", "align_angle_range_deg", "align_min_score",
                                "align_min_stage1_score", "n_levels", "crop_pixel_mm", "image_size")


def ordered_models(names: Sequence[str]) -> list[str]:
    """Model names in the library's order (``models.MODEL_NAMES``), unknown ones last."""
    known = [m for m in MODEL_NAMES if m in names]
    return known + sorted(n for n in names if n not in MODEL_NAMES)


@dataclass(frozen=True)
class EvalSet:
    """N evaluation subjects, everything in the same subject order.

    Attributes
    ----------
    name : ``"test"`` or ``"shifted"`` (prefix of tables and metrics blocks).
    targets : TargetSet of the N subjects.
    predictions : Predictions of the N subjects (every model).
    alignment : DataFrame, one alignment row per subject (``theta_deg``, ``tx_mm``, ``ty_mm``).
    manifest : DataFrame, one manifest row per subject (absolute paths).
    """

    name: str
    targets: TargetSet
    predictions: Predictions
    alignment: pd.DataFrame
    manifest: pd.DataFrame

    @property
    def subject_id(self) -> np.ndarray:
        return self.targets.subject_id

    @property
    def models(self) -> list[str]:
        return ordered_models(self.predictions.models)

    def __len__(self) -> int:
        return len(self.targets)

    def transform(self, i: int) -> PlanarTransform:
        """The estimated DXA->MRI transform of subject ``i`` (the one that made its targets)."""
        r = self.alignment.iloc[i]
        return PlanarTransform(float(r["theta_deg"]), float(r["tx_mm"]), float(r["ty_mm"]))


def _rows(df: pd.DataFrame, ids: Sequence[str], what: str) -> pd.DataFrame:
    if "subject_id" not in df.columns:
        raise InvalidArgumentError(f"{what} has no subject_id column")
    by = df.assign(subject_id=df["subject_id"].astype(str)).drop_duplicates("subject_id")
    by = by.set_index("subject_id", drop=False)
    missing = [s for s in ids if s not in by.index]
    if missing:
        raise InvalidArgumentError(f"{what} lacks subjects {missing[:5]}")
    return by.loc[list(ids)].reset_index(drop=True)


def eval_set(targets: TargetSet, predictions: Predictions, alignment: pd.DataFrame,
             manifest: pd.DataFrame, *, name: str = "test") -> EvalSet:
    """Line up targets, predictions, alignment and manifest on the predicted subjects.

    The subjects are those of ``predictions`` (in its order); each must have targets, an
    alignment row and a manifest row.

    Raises
    ------
    InvalidArgumentError
        A predicted subject without targets, alignment or manifest row; no subject; or
        predictions whose number of levels differs from the targets'.
    """
    if not isinstance(targets, TargetSet) or not isinstance(predictions, Predictions):
        raise InvalidArgumentError("eval_set needs a TargetSet and a Predictions")
    ids = [str(s) for s in predictions.subject_id]
    if not ids:
        raise InvalidArgumentError("predictions hold no subject")
    if not predictions.models:
        raise InvalidArgumentError("predictions hold no model")
    known = set(targets.subject_id.tolist())
    missing = [s for s in ids if s not in known]
    if missing:
        raise InvalidArgumentError(f"no targets for predicted subjects {missing[:5]}")
    idx = np.array([targets.index(s) for s in ids])
    t = TargetSet(*(np.asarray(getattr(targets, f))[idx] for f in
                    ("subject_id", "split", "values", "extent_mm", "table_y_mm", "values_true", "extent_true_mm")))
    for m in predictions.models:
        if predictions.values[m].shape != t.values.shape:
            raise InvalidArgumentError(
                f"predictions of {m!r} have shape {predictions.values[m].shape}, targets {t.values.shape}")
    return EvalSet(name, t, predictions, _rows(alignment, ids, "the alignment table"),
                   _rows(manifest, ids, "the manifest"))


def test_set(run_dir: str | Path, manifest: pd.DataFrame | str | Path) -> EvalSet:
    """The run's test split: ``targets.npz``, ``predictions_test.npz``, ``tables/alignment.csv``."""
    paths = run_paths(run_dir)
    man = read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest
    targets = read_targets(paths["targets"])
    pred = read_predictions(paths["root"] / "predictions_test.npz")
    align = _read_alignment(paths["tables"] / "alignment.csv")
    return eval_set(targets, pred, align, man, name="test")


def _read_alignment(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MissingFileError(f"alignment table {path} does not exist (run the alignment section first)")
    try:
        df = pd.read_csv(path, dtype={"subject_id": str, "split": str})
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(f"{path} is not a readable alignment table: {exc}") from None
    for col in ("subject_id", "theta_deg", "tx_mm", "ty_mm"):
        if col not in df.columns:
            raise UnreadableFileError(f"alignment table {path} lacks column {col!r}")
    return df


def shifted_paths(run_dir: str | Path) -> dict[str, Path]:
    """Files of the shifted cohort's cache inside a run folder."""
    root = run_paths(run_dir)["root"] / "shifted"
    return {"root": root, "targets": root / "targets.npz", "alignment": root / "alignment.csv",
            "predictions": root / "predictions.npz", "key": root / "source.json"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shift_key(run_dir: Path, manifest_path: Path, params: Mapping[str, Any], names: Sequence[str]) -> dict:
    ckpts = {}
    for n in names:
        p = checkpoint_path(run_dir, n)
        if not p.is_file():
            raise MissingFileError(f"no checkpoint for model {n!r} at {p} (run the training section first)")
        ckpts[n] = _sha256(p)
    return {"manifest": str(manifest_path), "manifest_sha256": _sha256(manifest_path),
            "params": {k: params[k] for k in _SHIFT_KEYS if k in params}, "checkpoints": ckpts}


def shifted_set(run_dir: str | Path, manifest_path: str | Path, params: Mapping[str, Any], *,
                names: Sequence[str] = MODEL_NAMES, jobs: int = 1, progress: bool = True) -> EvalSet:
    """Every subject of a second (shifted) cohort as an evaluation set, computed once per run.

    The cohort is aligned and targeted (:func:`spinelib.targets.prepare_cohort`) and every
    model predicts it (:func:`spinelib.experiment.predict_cohort`); the results go to
    ``<run>/shifted/`` (``targets.npz``, ``alignment.csv``, ``predictions.npz``) with
    ``source.json`` recording the manifest's hash, the parameters used and the checkpoints'
    hashes. A later call with the same inputs reads the cache; any change recomputes it.
    All trusted subjects are evaluated whatever their split column says (the models never
    trained on this cohort); untrusted pairs are listed in ``alignment.csv``.

    Raises
    ------
    MissingFileError
        The manifest or a checkpoint does not exist.
    InvalidArgumentError
        No subject of the cohort could be aligned.
    """
    run = Path(run_dir)
    mp = Path(manifest_path).expanduser()
    if not mp.is_file():
        raise MissingFileError(f"shifted cohort manifest {mp} does not exist")
    mp = mp.resolve()
    manifest = read_manifest(mp)
    sp = shifted_paths(run)
    key = _shift_key(run, mp, params, names)
    cached = sp["key"].is_file() and all(sp[k].is_file() for k in ("targets", "alignment", "predictions"))
    if cached:
        try:
            cached = json.loads(sp["key"].read_text()) == json.loads(json.dumps(key))
        except (OSError, ValueError):
            cached = False
    if cached:
        log.info("shifted cohort: reusing %s", sp["root"])
        targets = read_targets(sp["targets"])
        pred = read_predictions(sp["predictions"])
        align = _read_alignment(sp["alignment"])
    else:
        log.info("shifted cohort %s: aligning and predicting %d subjects", mp, len(manifest))
        align, targets = prepare_cohort(manifest, params, jobs=jobs, progress=progress)
        if len(targets) == 0:
            raise InvalidArgumentError(f"no subject of the shifted cohort {mp} could be aligned")
        pred = predict_cohort(run, manifest, list(targets.subject_id), params, names=names, progress=progress)
        sp["root"].mkdir(parents=True, exist_ok=True)
        write_targets(sp["targets"], targets)
        with atomic_path(sp["alignment"]) as tmp:
            align.to_csv(tmp, index=False)
        write_predictions(sp["predictions"], pred)
        write_json_atomic(sp["key"], key)  # last: the cache counts only once all files are there
        align = _read_alignment(sp["alignment"])
    return eval_set(targets, pred, align, manifest, name="shifted")


def dxa_geometry(es: EvalSet, *, progress: bool = True, allow_pickle: bool = False) -> pd.DataFrame:
    """Shape and pixel spacing of each subject's DXA (``allow_pickle``: the run's opt-in to
    reading DXAs stored as pickles).

    Returns
    -------
    DataFrame with ``subject_id, rows, cols, row_mm, col_mm`` (spacing in mm per pixel).
    """
    out = []
    for sid, path in tqdm(list(zip(es.subject_id, es.manifest["dxa_path"])), desc="DXA geometry",
                          unit="scan", disable=not progress, leave=False):
        d = read_dxa(path, allow_pickle=allow_pickle)
        out.append({"subject_id": str(sid), "rows": int(d.shape[0]), "cols": int(d.shape[1]),
                    "row_mm": float(d.pixel_spacing_mm[0]), "col_mm": float(d.pixel_spacing_mm[1])})
    return pd.DataFrame(out)


def truth_angles(es: EvalSet) -> pd.DataFrame:
    """The generator's true angles (``truth.json`` ``"angles"``, MRI session) per subject.

    Returns
    -------
    DataFrame ``subject_id, cobb_deg, kyphosis_deg, lordosis_deg``; NaN where the subject
    has no truth file (real data) or the file lacks the angle.
    """
    rows = []
    for sid, tp in zip(es.subject_id, es.manifest.get("truth_path", pd.Series([""] * len(es)))):
        rec = {"subject_id": str(sid), **{k: np.nan for k in TRUTH_ANGLES}}
        if isinstance(tp, str) and tp.strip():
            angles = read_truth(tp).get("angles", {}) or {}
            for k in TRUTH_ANGLES:
                v = angles.get(k)
                if isinstance(v, (int, float)) and np.isfinite(v):
                    rec[k] = float(v)
        rows.append(rec)
    return pd.DataFrame(rows, columns=["subject_id", *TRUTH_ANGLES])
