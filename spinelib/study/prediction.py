"""Predictions of a run's trained models: every model on the same subjects, stored for the evaluation.

``predict_cohort`` reads and prepares the scans once, at the crop the checkpoints record, and
runs every model on them (networks through :class:`spinelib.learn.predict.Predictor`, the
inference path of ``spinelib predict`` too); ``write_predictions`` and ``read_predictions``
store them in the run folder for the evaluation sections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm  # console bars: no notebook-widget detection

from ..errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from ..io import read_arrays, write_arrays
from ..learn.config import MODEL_NAMES
from ..learn.data import PreparedScan
from ..learn.ridge import MODEL_NAME as SUMMARIES
from ..learn.ridge import VisibleSummariesModel
from ..shape.curves import from_crop
from .experiment import checkpoint_path, load_scans

log = logging.getLogger(__name__)

__all__ = ["Predictions", "trained_models", "predict_cohort", "write_predictions", "read_predictions"]


@dataclass(frozen=True)
class Predictions:
    """Predicted curves of several models for the same subjects.

    ``values[name]`` (N, 6, K) mm and ``extent_mm[name]`` (N, 2), subjects in ``subject_id``
    order; ``failed`` lists the subjects left out because a model could not read them
    (``subject_id, model, reason``; not written by :func:`write_predictions`).
    """

    subject_id: np.ndarray
    values: dict
    extent_mm: dict
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["subject_id", "model", "reason"]))

    @property
    def models(self) -> list[str]:
        return list(self.values)

    def curves(self, name: str, i: int):
        from ..shape.curves import SpineCurves

        return SpineCurves(self.values[name][i], self.extent_mm[name][i])


def trained_models(run_dir: str | Path) -> list[str]:
    """The models of :data:`spinelib.learn.config.MODEL_NAMES` the run has a checkpoint of, in that order."""
    return [n for n in MODEL_NAMES if checkpoint_path(run_dir, n).is_file()]


def _load_models(run_dir: str | Path, names: Sequence[str]) -> tuple[dict, float, tuple[int, int]]:
    """Each named model of the run, and the crop (pixel mm, (rows, cols)) they were all trained on.

    The crop is read from the first model's checkpoint, its one home; every other model
    must have been trained on the same, since the scans are prepared once for all.
    """
    from ..learn.predict import Predictor

    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise InvalidArgumentError(f"unknown models {unknown}; choose from {', '.join(MODEL_NAMES)}")
    if not names:
        raise InvalidArgumentError(f"no model to predict with: the run {run_dir} has no checkpoint")
    models, crop = {}, None
    for name in names:
        path = checkpoint_path(run_dir, name)
        if not path.is_file():
            raise MissingFileError(f"no checkpoint for model {name!r} at {path} (run the training section first)")
        model = VisibleSummariesModel.load(path) if name == SUMMARIES else Predictor.from_checkpoint(path)
        crop = crop or model.crop
        model.check_recipe(*crop, where=f"checkpoint {path} (beside {names[0]}'s crops)")
        models[name] = model
    return models, crop[0], crop[1]


def _predict_model(name: str, model, scans: Sequence[PreparedScan], ids: Sequence[str], *, batch_size: int,
                   progress: bool) -> tuple[list, list[dict]]:
    """One model's curves of every scan (None where it failed) and its failures."""
    if isinstance(model, VisibleSummariesModel):
        vecs = model.predict_scans(scans, progress=progress)
        return [from_crop(v, s.crop, model.n_levels) for v, s in zip(vecs, scans)], []
    out = model.predict_scans(scans, batch_size=batch_size, on_error="return", names=ids)
    curves = [p.curves if not isinstance(p, Exception) else None for p in out]
    failed = [{"subject_id": sid, "model": name, "reason": str(p)} for sid, p in zip(ids, out)
              if isinstance(p, Exception)]
    return curves, failed


def predict_cohort(run_dir: str | Path, manifest_df: pd.DataFrame, subject_ids: Sequence[str], *,
                   names: Sequence[str] | None = None, allow_pickle: bool = False, batch_size: int = 32,
                   progress: bool = True) -> Predictions:
    """Run trained models of a run on the listed subjects (crops from the images alone).

    The scans are read and prepared once (:func:`load_scans`); every network reads them
    through :meth:`spinelib.learn.predict.Predictor.predict_scans`, the inference path of
    ``spinelib predict`` too, and ``visible_summaries`` through
    :meth:`spinelib.learn.ridge.VisibleSummariesModel.predict_scans`. The crops are the
    ones the checkpoints record (their one home), the same for every model. A subject a
    model cannot read (a prediction far outside its crop) is reported in
    :attr:`Predictions.failed` and left out for every model, so that all models are compared
    on the same subjects.

    Parameters
    ----------
    names : models of :data:`spinelib.learn.config.MODEL_NAMES`; default: every model the run
        has a checkpoint of (:func:`trained_models`).
    allow_pickle : read DXA pickles (:func:`spinelib.io.read_dxa`).

    Raises
    ------
    InvalidArgumentError
        An unknown model name.
    MissingFileError
        A named model has no checkpoint in the run.
    CheckpointError
        Two models trained on different crops.
    """
    from ..learn.predict import Predictor

    models, px, size = _load_models(run_dir, trained_models(run_dir) if names is None else list(names))
    lateral = any(isinstance(m, Predictor) and m.needs_lateral for m in models.values())
    ids = [str(s) for s in subject_ids]
    scans = load_scans(manifest_df, ids, pixel_mm=px, image_size=size, lateral=lateral, allow_pickle=allow_pickle,
                       progress=progress)
    curves, failed = {}, []
    for name, model in tqdm(models.items(), desc="predicting", unit="model", disable=None if progress else True,
                            leave=False):
        curves[name], bad_scans = _predict_model(name, model, scans, ids, batch_size=batch_size, progress=progress)
        failed += bad_scans
    bad = {f["subject_id"] for f in failed}
    keep = [i for i, sid in enumerate(ids) if sid not in bad]
    values = {n: np.array([c[i].values for i in keep]).reshape(len(keep), 6, -1) for n, c in curves.items()}
    extents = {n: np.array([c[i].extent_mm for i in keep]).reshape(len(keep), 2) for n, c in curves.items()}
    if failed:
        log.warning("%d of %d subjects left out of the predictions: %s", len(bad), len(ids), failed[0]["reason"])
    return Predictions(np.asarray([ids[i] for i in keep], dtype=str), values, extents,
                       pd.DataFrame(failed, columns=["subject_id", "model", "reason"]))


def write_predictions(path: str | Path, pred: Predictions) -> Path:
    """Write predictions as an npz (``<model>__values``, ``<model>__extent_mm``, ``subject_id``)."""
    arrays = {"subject_id": pred.subject_id}
    for name in pred.models:
        arrays[f"{name}__values"] = pred.values[name]
        arrays[f"{name}__extent_mm"] = pred.extent_mm[name]
    return write_arrays(path, arrays)


def read_predictions(path: str | Path) -> Predictions:
    """Read predictions written by :func:`write_predictions`."""
    z = read_arrays(path, what="predictions file (written by the training section)")
    names = list(dict.fromkeys(k.split("__")[0] for k in z if "__" in k))  # the order they were written in
    try:
        return Predictions(z["subject_id"], {n: z[f"{n}__values"] for n in names},
                           {n: z[f"{n}__extent_mm"] for n in names})
    except KeyError as exc:
        raise UnreadableFileError(f"{path} is not a predictions file: it lacks {exc.args[0]!r}") from None
