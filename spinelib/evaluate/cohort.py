"""The subjects an evaluation runs on: targets, predictions and alignment, lined up.

An :class:`EvalSet` holds, for the same subjects in the same order, the curve targets
(:class:`spinelib.study.targets.TargetSet`), every model's predictions
(:class:`spinelib.study.prediction.Predictions`), the alignment row (the estimated DXA->MRI
transform that placed the targets, needed to put the true MRI column in the same frame)
and the manifest row (file paths, truth). :func:`test_set` builds it from a run's test
split; :func:`spinelib.evaluate.shifted.shifted_set` from a second (shifted) cohort.

Two references
--------------
``"truth"`` (the headline on synthetic cohorts): every predicted test subject with truth
targets (:data:`spinelib.study.targets.TRUTH_TARGETS_FILE`: the TRUE transform and the
DXA-session anatomy), rejected alignments included; its *frame* (the transform and label
volume that put the MRI column beside the DXA for the 3D scores) is the true transform
and ``seg_dxa.nii.gz``. ``"estimated"`` (as the paper measures, and the only reference on
real data): the trusted subjects' targets made through the estimated alignment, framed
by it and ``seg.nii.gz``. ``"headline"`` picks ``"truth"`` when the run has truth targets
for its test split, else ``"estimated"``. Each set knows how many test subjects the
manifest holds (``n_test``) and why the others were not evaluated (``not_evaluated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from ..geometry.transform import PlanarTransform
from ..io import read_manifest, read_truth
from ..io.runfolder import run_paths
from ..learn.config import MODEL_NAMES
from ..study.prediction import Predictions, read_predictions
from ..study.subject_targets import dxa_session_seg_path
from ..study.targets import ANATOMY_DXA, TRUTH_TARGETS_FILE, TargetSet, read_targets

__all__ = ["EvalSet", "eval_set", "split_set", "test_set", "ordered_models", "REFERENCES", "REFERENCE_LABELS",
           "take_predictions", "has_truth_targets", "evaluation_block", "with_counts", "coverage_sentence"]

#: The references an evaluation set can be measured against (see the module docstring).
REFERENCES: tuple[str, ...] = ("truth", "estimated")
#: How each reference is named in tables and the book.
REFERENCE_LABELS: dict[str, str] = {
    "truth": "true transform, DXA-session anatomy (every predicted test subject)",
    "estimated": "estimated alignment, trusted subjects only (as the paper measures)",
}


def ordered_models(names: Sequence[str]) -> list[str]:
    """Model names in the library's order (``learn.config.MODEL_NAMES``), unknown ones last."""
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
    reference : ``"truth"`` or ``"estimated"`` (what the targets and the frame are).
    frame : DataFrame, one row per subject: ``subject_id, theta_deg, tx_mm, ty_mm`` (the
        DXA->MRI transform that frames the 3D comparison), ``seg_path`` (the label volume of
        the true column) and ``anatomy`` (``mri_session`` / ``dxa_session``).
    n_test : subjects the cohort holds for this evaluation (the manifest's test split; every
        subject of a shifted cohort); ``len(self)`` of them are evaluated.
    not_evaluated : DataFrame ``subject_id, reason`` of the others.
    """

    name: str
    targets: TargetSet
    predictions: Predictions
    alignment: pd.DataFrame
    manifest: pd.DataFrame
    reference: str = "estimated"
    frame: pd.DataFrame | None = None
    n_test: int | None = None
    not_evaluated: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise InvalidArgumentError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.frame is None:
            f = self.alignment[["subject_id", "theta_deg", "tx_mm", "ty_mm"]].copy()
            f["seg_path"] = self.manifest["seg_path"].to_numpy() if "seg_path" in self.manifest else ""
            f["anatomy"] = np.asarray(self.targets.anatomy)
            object.__setattr__(self, "frame", f.reset_index(drop=True))
        if self.n_test is None:
            object.__setattr__(self, "n_test", len(self.targets))
        if self.not_evaluated is None:
            object.__setattr__(self, "not_evaluated", pd.DataFrame(columns=["subject_id", "reason"]))

    @property
    def n_evaluated(self) -> int:
        return len(self.targets)

    @property
    def label(self) -> str:
        """The reference in words (:data:`REFERENCE_LABELS`)."""
        return REFERENCE_LABELS[self.reference]

    @property
    def subject_id(self) -> np.ndarray:
        return self.targets.subject_id

    @property
    def models(self) -> list[str]:
        return ordered_models(self.predictions.models)

    def __len__(self) -> int:
        return len(self.targets)

    def transform(self, i: int) -> PlanarTransform:
        """The DXA->MRI transform that made subject ``i``'s targets and frames its 3D scores
        (the estimated one, or the true one for the ``"truth"`` reference)."""
        r = self.frame.iloc[i]
        return PlanarTransform.from_dict(r)


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
             manifest: pd.DataFrame, *, name: str = "test", reference: str = "estimated",
             n_test: int | None = None, not_evaluated: pd.DataFrame | None = None) -> EvalSet:
    """Line up targets, predictions, alignment and manifest on the predicted subjects.

    The subjects are those of ``predictions`` (in its order); each must have targets, an
    alignment row and a manifest row. With ``reference="truth"`` the targets are truth
    targets and the frame is each subject's true transform (``truth.json``) and its
    DXA-session label volume (``seg.nii.gz`` where the cohort has none); with
    ``"estimated"``, the alignment's transform and ``seg.nii.gz``.

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
    if reference not in REFERENCES:
        raise InvalidArgumentError(f"reference must be one of {REFERENCES}, got {reference!r}")
    t = targets.subset(ids)
    for m in predictions.models:
        if predictions.values[m].shape != t.values.shape:
            raise InvalidArgumentError(
                f"predictions of {m!r} have shape {predictions.values[m].shape}, targets {t.values.shape}")
    align = _rows(alignment, ids, "the alignment table")
    man = _rows(manifest, ids, "the manifest")
    frame = _truth_frame(man, t) if reference == "truth" else None
    return EvalSet(name, t, predictions, align, man, reference=reference, frame=frame,
                   n_test=len(ids) if n_test is None else int(n_test), not_evaluated=not_evaluated)


def _truth_frame(manifest: pd.DataFrame, targets: TargetSet) -> pd.DataFrame:
    """Per subject: the true transform (``truth.json``) and the label volume of its targets'
    anatomy (``seg_dxa`` for DXA-session truth targets, else ``seg.nii.gz``)."""
    rows = []
    for i, r in enumerate(manifest.to_dict(orient="records")):
        tp = r.get("truth_path", "")
        if not isinstance(tp, str) or not tp.strip():
            raise InvalidArgumentError(f"subject {r['subject_id']!r} has no truth file: no truth reference")
        truth = read_truth(tp)
        if "transform" not in truth:
            raise InvalidArgumentError(f"truth file {tp} has no transform")
        tr = PlanarTransform.from_dict(truth["transform"])
        seg = r["seg_path"]
        if str(targets.anatomy[i]) == ANATOMY_DXA:
            p = dxa_session_seg_path(truth, tp)
            if p is None:
                raise MissingFileError(f"the DXA-session label volume of {r['subject_id']!r} is gone")
            seg = str(p)
        rows.append({"subject_id": str(r["subject_id"]), "theta_deg": tr.theta_deg, "tx_mm": tr.tx_mm,
                     "ty_mm": tr.ty_mm, "seg_path": seg, "anatomy": str(targets.anatomy[i])})
    return pd.DataFrame(rows, columns=["subject_id", "theta_deg", "tx_mm", "ty_mm", "seg_path", "anatomy"])


def take_predictions(pred: Predictions, subject_ids: Sequence[str]) -> Predictions:
    """The predictions of the listed subjects, in that order.

    Raises
    ------
    InvalidArgumentError
        A listed subject was not predicted.
    """
    where = {str(s): i for i, s in enumerate(pred.subject_id)}
    missing = [s for s in subject_ids if str(s) not in where]
    if missing:
        raise InvalidArgumentError(f"no predictions for subjects {missing[:5]}")
    idx = np.array([where[str(s)] for s in subject_ids], dtype=int)
    return Predictions(np.asarray([str(s) for s in subject_ids], dtype=str),
                       {m: np.asarray(v)[idx] for m, v in pred.values.items()},
                       {m: np.asarray(v)[idx] for m, v in pred.extent_mm.items()})


def has_truth_targets(run_dir: str | Path, split: str = "test") -> bool:
    """Whether the run wrote truth targets (:data:`TRUTH_TARGETS_FILE`) for ``split``."""
    p = run_paths(run_dir)["root"] / TRUTH_TARGETS_FILE
    if not p.is_file():
        return False
    return bool(np.any(read_targets(p).split == split))


def evaluation_block(es: EvalSet) -> dict[str, Any]:
    """What an evaluation set measured against, for ``metrics.json``: ``reference``,
    ``description``, ``n_evaluated``, ``n_test`` and ``n_dxa_session_anatomy`` (subjects
    whose targets come from ``seg_dxa``)."""
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")
    return {"reference": es.reference, "description": es.label, "n_evaluated": es.n_evaluated,
            "n_test": int(es.n_test), "n_dxa_session_anatomy": int(np.sum(es.targets.anatomy == ANATOMY_DXA))}


def coverage_sentence(es: EvalSet, *, no_truth: bool = False) -> str:
    """``"evaluated k of n test subjects, against <reference>"`` for the book's prose (a
    shifted set says "subjects of the shifted cohort"; ``no_truth``: the estimated
    reference is the headline because the cohort has no ground truth)."""
    if not isinstance(es, EvalSet):
        raise InvalidArgumentError(f"expected an EvalSet, got {type(es).__name__}")
    what = "test subjects" if es.name == "test" else f"subjects of the {es.name} cohort"
    if es.reference == "truth":
        ref = "targets made with the true transform and the DXA-session anatomy"
    else:
        ref = "targets made with the estimated alignment, as the paper measures" + (
            " (the cohort has no ground truth)" if no_truth else "")
    return f"evaluated {es.n_evaluated} of {int(es.n_test)} {what}, against {ref}"


def with_counts(models: Mapping[str, Mapping[str, Any]], es: EvalSet) -> dict[str, dict]:
    """``models`` (a ``metrics.json`` models block) with ``n_evaluated`` and ``n_test`` in
    every model's entry."""
    return {m: {**dict(b), "n_evaluated": es.n_evaluated, "n_test": int(es.n_test)} for m, b in models.items()}


def _check_reference(reference: str) -> None:
    """Raise unless ``reference`` is ``"headline"`` or one of :data:`REFERENCES`."""
    if reference != "headline" and reference not in REFERENCES:
        raise InvalidArgumentError(f"reference must be 'headline' or one of {REFERENCES}, got {reference!r}")


def _reference(run_dir: str | Path, reference: str, split: str) -> str:
    if reference == "headline":
        return "truth" if has_truth_targets(run_dir, split) else "estimated"
    _check_reference(reference)
    return reference


def _not_evaluated(wanted: Sequence[str], evaluated: Sequence[str], predicted: Sequence[str],
                   reasons: Mapping[str, str], default: str) -> pd.DataFrame:
    done, pred = set(evaluated), set(predicted)
    rows = [{"subject_id": s, "reason": ("not predicted (its DXA does not load)" if s not in pred
                                         else reasons.get(s) or default)} for s in wanted if s not in done]
    return pd.DataFrame(rows, columns=["subject_id", "reason"])


def _select(targets: TargetSet, pred: Predictions, alignment: pd.DataFrame, manifest: pd.DataFrame,
            wanted: Sequence[str], reference: str, reasons: Mapping[str, str], *, name: str) -> EvalSet:
    have = set(targets.subject_id.tolist())
    ids = [str(s) for s in pred.subject_id if str(s) in have]
    if not ids:
        raise InvalidArgumentError(f"no {name} subject has both predictions and {reference} targets")
    default = "no truth targets" if reference == "truth" else "alignment not trusted: no targets"
    ne = _not_evaluated(wanted, ids, [str(s) for s in pred.subject_id], reasons, default)
    return eval_set(targets, take_predictions(pred, ids), alignment, manifest, name=name, reference=reference,
                    n_test=len(wanted), not_evaluated=ne)


def _truth_reasons(path: Path) -> dict[str, str]:
    """Why each subject of a truth table (``truth_targets.csv``) has no truth targets."""
    t = pd.read_csv(path, dtype={"subject_id": str}, keep_default_na=False)
    return {str(r["subject_id"]): f"no truth targets: {r['reason']}" for _, r in t.iterrows()
            if str(r.get("has_truth_targets")).lower() not in ("true", "1")}


def _untrusted_reasons(alignment: pd.DataFrame) -> dict[str, str]:
    """Why each untrusted subject of an alignment table has no estimated targets."""
    a = alignment[~alignment.get("trusted", pd.Series(False, index=alignment.index)).astype(bool)]
    return {str(r["subject_id"]): f"alignment not trusted: {r.get('reason', '')}" for _, r in a.iterrows()}


def _reasons(run_dir: Path, reference: str, alignment: pd.DataFrame) -> dict[str, str]:
    if reference != "truth":
        return _untrusted_reasons(alignment)
    p = run_paths(run_dir)["tables"] / "truth_targets.csv"
    return _truth_reasons(p) if p.is_file() else {}


def split_set(run_dir: str | Path, manifest: pd.DataFrame | str | Path, split: str, *,
              reference: str = "headline") -> EvalSet:
    """A split of the run (``"test"`` or ``"val"``) against a reference (``"headline"``,
    ``"truth"`` or ``"estimated"``).

    Reads the split's predictions (``predictions_<split>.npz``: every subject of the split
    whose DXA loads), ``tables/alignment.csv`` and ``targets.npz`` (``"estimated"``) or
    :data:`~spinelib.study.targets.TRUTH_TARGETS_FILE` (``"truth"``, made for the test split
    only); the subjects evaluated are the predicted ones that have targets of that reference,
    ``n_test`` the manifest's count of the split.
    """
    if split not in ("test", "val"):
        raise InvalidArgumentError(f"split must be 'test' or 'val', got {split!r}")
    paths = run_paths(run_dir)
    man = read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest
    ref = _reference(run_dir, reference, split)
    tpath = paths["targets"] if ref == "estimated" else paths["root"] / TRUTH_TARGETS_FILE
    targets = read_targets(tpath)
    pred = read_predictions(paths[f"predictions_{split}"])
    align = _read_alignment(paths["tables"] / "alignment.csv")
    wanted = [str(s) for s in man.loc[man["split"].astype(str) == split, "subject_id"]] if "split" in man else \
        [str(s) for s in pred.subject_id]
    return _select(targets, pred, align, man, wanted, ref, _reasons(Path(run_dir), ref, align), name=split)


def test_set(run_dir: str | Path, manifest: pd.DataFrame | str | Path, *, reference: str = "headline") -> EvalSet:
    """The run's test split against a reference: :func:`split_set` of ``"test"``."""
    return split_set(run_dir, manifest, "test", reference=reference)


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
