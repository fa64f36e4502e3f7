"""The ``visible_summaries`` baseline: a ridge regression from the visible summaries to the curves.

:class:`VisibleSummariesModel` maps the image summaries of :mod:`spinelib.learn.summaries` to
the crop-normalised ``6 K + 2`` target vector the networks regress
(:func:`spinelib.shape.curves.to_crop`) by ridge regression on standardised features
(:func:`fit_ridge`); the ridge penalty is chosen from ``ALPHA_GRID`` by the validation split's
mean L1 error (the networks' validation loss), never the test split (:func:`choose_alpha`).
Its checkpoint is one ``.npz`` of plain arrays (:func:`spinelib.io.write_arrays`; no pickle).
How much of the sagittal shape its predictions explain is scored by
:func:`spinelib.metrics.summary_r2`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import CheckpointError, InvalidArgumentError, NonFiniteError, ShapeError, UnreadableFileError
from ..geometry.transform import check_image_shape
from ..io.checks import check_integer, check_positive
from ..io import read_arrays, write_arrays
from .data import PreparedScan
from .checkpoint import CorruptCheckpointError, MissingCheckpointError
from .config import output_size
from .recipe import check_crop_recipe
from .summaries import N_BINS, _check_bins, _check_scan, feature_names, summary_matrix

__all__ = [
    "MODEL_NAME",
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "ALPHA_GRID",
    "RidgeFit",
    "fit_ridge",
    "choose_alpha",
    "UnfittedModelError",
    "VisibleSummariesModel",
]

#: The model's name in the study's tables.
MODEL_NAME = "visible_summaries"
#: File name of the fitted model in ``<run>/checkpoints/visible_summaries/``.
CHECKPOINT_FILE = "ridge.npz"
#: ``format`` tag of that file (named after the module that first wrote it; checkpoints carry it).
CHECKPOINT_FORMAT = "spinelib.learn.summaries/ridge"
_CHECKPOINT_VERSION = 1

#: Ridge penalties tried (on standardised features); the validation split picks one.
ALPHA_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


class UnfittedModelError(InvalidArgumentError):
    """A :class:`VisibleSummariesModel` was asked to predict or save before :meth:`fit`."""


def _matrix(x: Any, name: str, *, cols: int | None = None, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 (N >= ``min_rows``, ``cols``) matrix."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim != 2 or (cols is not None and a.shape[1] != cols) or a.shape[0] < min_rows:
        want = f"(N >= {min_rows}, {cols if cols is not None else 'F'})"
        raise ShapeError(f"{name} must have shape {want}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return a


def _check_alphas(alphas: Any) -> tuple[float, ...]:
    """A non-empty grid of ridge penalties, each checked by :func:`_check_alpha`."""
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, (Sequence, np.ndarray)) or len(alphas) == 0:
        raise InvalidArgumentError(f"alphas must be a non-empty sequence of numbers > 0, got {alphas!r}")
    return tuple(_check_alpha(a) for a in np.asarray(alphas).ravel().tolist())


def _check_alpha(alpha: Any) -> float:
    """``alpha`` as a float, refused unless a finite number > 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not np.isfinite(alpha) or float(alpha) <= 0:
        raise InvalidArgumentError(f"ridge alpha must be a finite number > 0, got {alpha!r}")
    return float(alpha)


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge regression on standardised features, as plain arrays.

    ``predict(x) = ((x - mean) / scale) @ coef.T + intercept``.

    Attributes
    ----------
    coef : (n_out, n_features) float64.
    intercept : (n_out,) float64.
    mean, scale : (n_features,) float64, the standardiser (``scale`` 1 for a constant feature).
    alpha : float, the ridge penalty.
    """

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    alpha: float

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.coef.shape[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(N, n_features)`` features -> ``(N, n_out)`` predictions."""
        a = _matrix(x, "features", cols=self.n_features)
        return ((a - self.mean) / self.scale) @ self.coef.T + self.intercept


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> RidgeFit:
    """Ridge regression of ``y`` on standardised ``x`` (scikit-learn StandardScaler + Ridge).

    Parameters
    ----------
    x : (N, F) float features (N >= 2).
    y : (N, D) float targets.
    alpha : float > 0, the L2 penalty on the standardised coefficients.

    Returns
    -------
    RidgeFit
    """
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    a = _check_alpha(alpha)
    xm = _matrix(x, "x", min_rows=2)
    ym = _matrix(y, "y")
    if ym.shape[0] != xm.shape[0]:
        raise ShapeError(f"x has {xm.shape[0]} rows but y has {ym.shape[0]}")
    scaler = StandardScaler().fit(xm)
    ridge = Ridge(alpha=a).fit(scaler.transform(xm), ym)
    return RidgeFit(coef=np.asarray(ridge.coef_, dtype=np.float64).reshape(ym.shape[1], xm.shape[1]),
                    intercept=np.asarray(ridge.intercept_, dtype=np.float64).reshape(ym.shape[1]),
                    mean=np.asarray(scaler.mean_, dtype=np.float64), scale=np.asarray(scaler.scale_, dtype=np.float64),
                    alpha=a)


def choose_alpha(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 alphas: Sequence[float] = ALPHA_GRID) -> tuple[RidgeFit, np.ndarray]:
    """Fit a ridge on the training pairs for each penalty; keep the best on validation.

    The criterion is the mean absolute error over every validation target value (the L1
    loss the networks are selected by). Ties go to the smaller penalty.

    Returns
    -------
    (the fit with the chosen alpha, (len(alphas),) validation mean L1 of each alpha)
    """
    grid = _check_alphas(alphas)
    tx = _matrix(train_x, "train_x", min_rows=2)
    vx = _matrix(val_x, "val_x", cols=tx.shape[1])
    ty = _matrix(train_y, "train_y")
    vy = _matrix(val_y, "val_y", cols=ty.shape[1])
    if vy.shape[0] != vx.shape[0]:
        raise ShapeError(f"val_x has {vx.shape[0]} rows but val_y has {vy.shape[0]}")
    fits = [fit_ridge(tx, ty, a) for a in grid]
    losses = np.array([np.mean(np.abs(f.predict(vx) - vy)) for f in fits])
    return fits[int(np.argmin(losses))], losses


# ----------------------------------------------------------------------------- the model


class VisibleSummariesModel:
    """Ridge regression from the visible summaries to the ``6 K + 2`` crop-normalised targets.

    The features of a scan are :func:`spinelib.learn.summaries.visible_summaries`.

    Parameters
    ----------
    n_levels : int >= 3
        K, levels per curve (the targets have ``6 K + 2`` values: :func:`spinelib.shape.curves.to_crop`).
    crop_pixel_mm : float > 0
        Pixel size of the crop the summaries are computed on (the run's ``crop_pixel_mm``).
    image_size : (int, int)
        Crop (rows, cols) (the run's ``image_size``); ``rows >= n_bins``.
    n_bins : int
        Bands of rows per summary (:data:`~spinelib.learn.summaries.N_BINS`).
    alphas : sequence of float
        Ridge penalties to choose from on the validation split (:data:`ALPHA_GRID`).

    Attributes (after :meth:`fit`)
    ------------------------------
    ridge : RidgeFit or None.
    alpha : float, the chosen penalty.
    val_l1 : (len(alphas),) validation mean L1 (crop units) of each penalty.
    n_train : int, training subjects.
    """

    name = MODEL_NAME

    def __init__(self, n_levels: int, *, crop_pixel_mm: float, image_size: Sequence[int], n_bins: int = N_BINS,
                 alphas: Sequence[float] = ALPHA_GRID) -> None:
        check_integer(n_levels, "n_levels (K)", 3)
        check_positive(crop_pixel_mm, "crop_pixel_mm")
        rows, cols = check_image_shape(image_size, "image_size")
        self.n_bins = _check_bins(n_bins)
        if rows < self.n_bins:
            raise InvalidArgumentError(f"image_size rows {rows} must be >= n_bins {self.n_bins}")
        grid = _check_alphas(alphas)
        self.n_levels = int(n_levels)
        self.crop_pixel_mm = float(crop_pixel_mm)
        self.image_size = (rows, cols)
        self.alphas = grid
        self.ridge: RidgeFit | None = None
        self.val_l1 = np.full(len(grid), np.nan)
        self.n_train = 0

    # -- state
    @property
    def fitted(self) -> bool:
        return self.ridge is not None

    @property
    def alpha(self) -> float:
        """The penalty chosen on the validation split."""
        return self._fit().alpha

    @property
    def best_val_l1(self) -> float:
        """Validation mean L1 (crop units) at the chosen penalty."""
        self._fit()
        return float(np.nanmin(self.val_l1))

    @property
    def n_features(self) -> int:
        return 4 * self.n_bins

    @property
    def n_parameters(self) -> int:
        """Fitted numbers: coefficients and intercepts (the standardiser not counted)."""
        return output_size(self.n_levels) * (self.n_features + 1)

    def _fit(self) -> RidgeFit:
        if self.ridge is None:
            raise UnfittedModelError(f"{MODEL_NAME} model used before fit()")
        return self.ridge

    def describe(self) -> str:
        text = (f"{MODEL_NAME}[ridge, K={self.n_levels}, bins={self.n_bins}, "
                f"crop={self.image_size[0]}x{self.image_size[1]} at {self.crop_pixel_mm:g} mm")
        return text + (f", alpha={self.ridge.alpha:g}]" if self.ridge is not None else ", unfitted]")

    # -- features
    def features(self, scans: Sequence[PreparedScan], *, progress: bool = False) -> np.ndarray:
        """``(N, 4 n_bins)`` summaries of scans prepared with this model's crop recipe.

        Raises
        ------
        InvalidArgumentError
            A scan's crop has another pixel size or size than the model's recipe.
        """
        if isinstance(scans, PreparedScan) or not isinstance(scans, Sequence) or len(scans) == 0:
            raise InvalidArgumentError("scans must be a non-empty sequence of PreparedScan")
        for i, s in enumerate(scans):
            _, crop = _check_scan(s, f"scans[{i}]")
            if (int(crop.rows), int(crop.cols)) != self.image_size or not np.isclose(crop.pixel_mm, self.crop_pixel_mm):
                raise InvalidArgumentError(
                    f"scans[{i}] was prepared at {crop.rows}x{crop.cols} pixels of {crop.pixel_mm:g} mm; "
                    f"{self.describe()} needs {self.image_size[0]}x{self.image_size[1]} of {self.crop_pixel_mm:g} mm")
        return summary_matrix(scans, self.n_bins, progress=progress)

    # -- fitting and prediction
    def fit(self, train_features: np.ndarray, train_targets: np.ndarray, val_features: np.ndarray,
            val_targets: np.ndarray) -> "VisibleSummariesModel":
        """Fit on training pairs, choosing the penalty on validation pairs; returns self.

        Parameters
        ----------
        train_features, val_features : (N, 4 n_bins) float, :meth:`features` of the scans.
        train_targets, val_targets : (N, 6 K + 2) float, crop-normalised targets
            (:func:`spinelib.shape.curves.to_crop`).
        """
        n_out = output_size(self.n_levels)
        tx = _matrix(train_features, "train_features", cols=self.n_features, min_rows=2)
        ty = _matrix(train_targets, "train_targets", cols=n_out)
        vx = _matrix(val_features, "val_features", cols=self.n_features)
        vy = _matrix(val_targets, "val_targets", cols=n_out)
        if tx.shape[0] != ty.shape[0]:
            raise ShapeError(f"train_features has {tx.shape[0]} rows but train_targets has {ty.shape[0]}")
        self.ridge, self.val_l1 = choose_alpha(tx, ty, vx, vy, self.alphas)
        self.n_train = int(tx.shape[0])
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, 4 n_bins)`` features -> ``(N, 6 K + 2)`` crop-normalised predictions."""
        return self._fit().predict(_matrix(features, "features", cols=self.n_features))

    def predict_scans(self, scans: Sequence[PreparedScan], *, progress: bool = False) -> np.ndarray:
        """:meth:`predict` of the scans' :meth:`features`: ``(N, 6 K + 2)``."""
        self._fit()
        return self.predict(self.features(scans, progress=progress))

    @property
    def crop(self) -> tuple[float, tuple[int, int]]:
        """The crop the model was fitted on: pixel size (mm) and ``(rows, cols)``."""
        return self.crop_pixel_mm, self.image_size

    def check_recipe(self, crop_pixel_mm: float, image_size: Sequence[int], *, where: str = "checkpoint") -> None:
        """Refuse a run whose crop recipe differs from the one the model was fitted on.

        Raises
        ------
        CheckpointError
            Naming ``where`` and both recipes.
        """
        check_crop_recipe(self.crop_pixel_mm, self.image_size, crop_pixel_mm, image_size, where=where, verb="fitted")

    # -- checkpoint
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model atomically as one ``.npz`` of plain arrays; returns the path."""
        ridge = self._fit()
        meta = {"format": CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "n_levels": self.n_levels,
                "n_bins": self.n_bins, "crop_pixel_mm": self.crop_pixel_mm, "image_size": list(self.image_size),
                "n_train": self.n_train, "feature_names": feature_names(self.n_bins)}
        return write_arrays(path, {
            "meta_json": np.asarray(json.dumps(meta)),
            "coef": ridge.coef, "intercept": ridge.intercept,
            "scaler_mean": ridge.mean, "scaler_scale": ridge.scale,
            "alpha": np.asarray(ridge.alpha), "alpha_grid": np.asarray(self.alphas), "val_l1": self.val_l1,
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VisibleSummariesModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        MissingCheckpointError
            No such file.
        CorruptCheckpointError
            Not a readable ``visible_summaries`` checkpoint, or arrays inconsistent with its recipe.
        CheckpointError
            Written by another version of this format.
        """
        p = Path(path)
        if not p.is_file():
            raise MissingCheckpointError(f"{MODEL_NAME} checkpoint {p} does not exist")
        try:
            z = read_arrays(p, what=f"{MODEL_NAME} checkpoint")
        except UnreadableFileError as exc:
            raise CorruptCheckpointError(str(exc)) from exc
        try:
            meta = json.loads(str(z["meta_json"]))
            if not isinstance(meta, Mapping) or meta.get("format") != CHECKPOINT_FORMAT:
                raise CorruptCheckpointError(f"{p} is not a {MODEL_NAME} checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
            if meta.get("version") != _CHECKPOINT_VERSION:
                raise CheckpointError(f"{MODEL_NAME} checkpoint {p} has format version {meta.get('version')!r}; "
                                      f"this spinelib reads version {_CHECKPOINT_VERSION}")
            model = cls(int(meta["n_levels"]), crop_pixel_mm=float(meta["crop_pixel_mm"]),
                        image_size=[int(s) for s in meta["image_size"]], n_bins=int(meta["n_bins"]),
                        alphas=[float(a) for a in z["alpha_grid"]])
            ridge = RidgeFit(coef=z["coef"].astype(np.float64), intercept=z["intercept"].astype(np.float64),
                             mean=z["scaler_mean"].astype(np.float64), scale=z["scaler_scale"].astype(np.float64),
                             alpha=_check_alpha(float(z["alpha"])))
            val_l1 = z["val_l1"].astype(np.float64)
            n_train = int(meta["n_train"])
        except (KeyError, ValueError, TypeError, InvalidArgumentError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CorruptCheckpointError(f"{MODEL_NAME} checkpoint {p} is incomplete or invalid: "
                                         f"{type(exc).__name__}: {exc}") from exc
        n_out, n_feat = output_size(model.n_levels), model.n_features
        shapes_ok = (ridge.coef.shape == (n_out, n_feat) and ridge.intercept.shape == (n_out,)
                     and ridge.mean.shape == (n_feat,) and ridge.scale.shape == (n_feat,)
                     and val_l1.shape == (len(model.alphas),))
        finite = all(np.all(np.isfinite(a)) for a in (ridge.coef, ridge.intercept, ridge.mean, ridge.scale))
        if not shapes_ok or not finite or np.any(ridge.scale <= 0):
            raise CorruptCheckpointError(
                f"{MODEL_NAME} checkpoint {p}: arrays do not fit K={model.n_levels}, {n_feat} features "
                f"(coef {ridge.coef.shape}, intercept {ridge.intercept.shape}, scaler {ridge.mean.shape}), "
                f"or hold non-finite values")
        model.ridge, model.val_l1, model.n_train = ridge, val_l1, n_train
        return model

