"""The six spine curves (:class:`SpineCurves`) and their normalisation to the crop a network sees.

A subject's spine column (vertebral bodies and discs, T1-L5; ``spine.column_mask``) is
described at ``K`` levels by six curves (``spine.CURVE_NAMES`` order)::

    coronal_left, coronal_centre, coronal_right            DXA column-mm
    sagittal_posterior, sagittal_centre, sagittal_anterior  mm above the table plane

plus the vertical extent ``(top, bottom)`` in DXA row-mm of the top of the T1 body and
the bottom of the L5 body. Level ``k`` is the slab ``[top + k h, top + (k + 1) h)`` with
``h = (bottom - top) / K``; its nominal position (``levels_mm``) is the slab's middle.
"Row-mm" and "column-mm" are DXA pixel indices times the pixel spacing, so pixel
``(0, 0)``'s centre is at ``(0, 0)`` mm (the DXA-aligned frame of :mod:`spinelib.shape.frame`).
The curves are read off a label volume by :mod:`spinelib.shape.extract`.

Networks see the curves normalised to their crop (:class:`CropWindow`, :func:`to_crop`,
:func:`from_crop`): ``6 K + 2`` numbers.

Examples
--------
>>> import numpy as np
>>> v = np.tile(np.array([[10.0], [20.0], [30.0], [5.0], [15.0], [25.0]]), (1, 4))
>>> c = SpineCurves(v, np.array([100.0, 500.0]))
>>> c.n_levels, c.levels_mm.tolist()
(4, [150.0, 250.0, 350.0, 450.0])
>>> crop = CropWindow(row0=10, col0=2, rows=96, cols=48, pixel_mm=5.0)
>>> back = from_crop(to_crop(c, crop), crop, 4)
>>> bool(np.allclose(back.values, c.values) and np.allclose(back.extent_mm, c.extent_mm))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..io.checks import check_integer
from ..spine import CURVE_NAMES

__all__ = [
    "SpineCurves",
    "CropWindow",
    "MIN_LEVELS",
    "check_levels",
    "to_crop",
    "from_crop",
]

#: Fewest levels a curve set may have (a tangent needs three points).
MIN_LEVELS = 3

_CL, _CC, _CR, _SP, _SC, _SA = range(6)


def _readonly(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only float64 copy."""
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SpineCurves:
    """Six spine curves at ``K`` levels, in mm, plus the column's vertical extent.

    Parameters
    ----------
    values : (6, K) float, rows in ``spine.CURVE_NAMES`` order, in mm (coronal: DXA
        column-mm; sagittal: depth above the table plane).
    extent_mm : (2,) float, ``(top, bottom)`` DXA row-mm of the top of T1 and the bottom
        of L5, ``top < bottom``.

    Raises
    ------
    ShapeError
        ``values`` not ``(6, K)`` or ``extent_mm`` not ``(2,)``.
    InvalidArgumentError
        ``K < 3``, ``top >= bottom``, a left boundary right of its right boundary, or a
        posterior boundary anterior to its anterior boundary.
    NonFiniteError
        Any NaN or infinite value.

    Both arrays are stored as read-only float64 copies.
    """

    values: np.ndarray
    extent_mm: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=float)
        extent = np.asarray(self.extent_mm, dtype=float)
        if values.ndim != 2 or values.shape[0] != len(CURVE_NAMES):
            raise ShapeError(f"curve values must have shape (6, K), got {values.shape}")
        if values.shape[1] < MIN_LEVELS:
            raise InvalidArgumentError(
                f"curves need at least {MIN_LEVELS} levels, got K = {values.shape[1]}"
            )
        if extent.shape != (2,):
            raise ShapeError(f"extent_mm must have shape (2,) = (top, bottom), got {extent.shape}")
        if not np.all(np.isfinite(values)):
            bad = sorted({CURVE_NAMES[i] for i in np.nonzero(~np.isfinite(values))[0]})
            raise NonFiniteError(f"curve values hold NaN or infinite values (curves {bad})")
        if not np.all(np.isfinite(extent)):
            raise NonFiniteError(f"extent_mm must be finite, got {extent.tolist()}")
        if not extent[0] < extent[1]:
            raise InvalidArgumentError(
                f"extent_mm must be (top, bottom) with top < bottom, got {extent.tolist()}"
            )
        tol = 1e-9 * max(1.0, float(np.abs(values).max()))
        for lo, hi, what in ((_CL, _CR, "coronal_left > coronal_right"),
                             (_SP, _SA, "sagittal_posterior > sagittal_anterior")):
            bad = np.nonzero(values[lo] > values[hi] + tol)[0]
            if bad.size:
                raise InvalidArgumentError(f"{what} at level(s) {bad[:10].tolist()}")
        object.__setattr__(self, "values", _readonly(values))
        object.__setattr__(self, "extent_mm", _readonly(extent))

    # -- derived quantities ------------------------------------------------------------

    @property
    def n_levels(self) -> int:
        """Number of levels ``K``."""
        return int(self.values.shape[1])

    @property
    def level_height_mm(self) -> float:
        """Slab height ``h = (bottom - top) / K``."""
        return float((self.extent_mm[1] - self.extent_mm[0]) / self.n_levels)

    @property
    def levels_mm(self) -> np.ndarray:
        """(K,) row-mm of the middle of each level's slab: ``top + (k + 0.5) h``."""
        return self.extent_mm[0] + (np.arange(self.n_levels) + 0.5) * self.level_height_mm

    def curve(self, name: str) -> np.ndarray:
        """(K,) values of one curve by name (``'coronal_left'`` ...)."""
        try:
            return self.values[CURVE_NAMES.index(name)]
        except ValueError:
            raise InvalidArgumentError(f"unknown curve {name!r}; expected one of {CURVE_NAMES}") from None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: ``{"extent_mm": [top, bottom], "levels_mm": [...],
        "<curve name>": [...] for the six curves}``."""
        out: dict[str, Any] = {
            "extent_mm": [float(v) for v in self.extent_mm],
            "levels_mm": [float(v) for v in self.levels_mm],
        }
        for name, row in zip(CURVE_NAMES, self.values):
            out[name] = [float(v) for v in row]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpineCurves":
        """Inverse of :meth:`as_dict` (``levels_mm`` is ignored: it is derived)."""
        try:
            values = np.array([d[name] for name in CURVE_NAMES], dtype=float)
            extent = np.asarray(d["extent_mm"], dtype=float)
        except KeyError as exc:
            raise InvalidArgumentError(f"curve dict lacks key {exc.args[0]!r}") from None
        return cls(values, extent)

    def allclose(self, other: "SpineCurves", *, atol: float = 1e-6) -> bool:
        """True when both curve sets have the same K and agree within ``atol`` mm."""
        return (
            self.values.shape == other.values.shape
            and bool(np.allclose(self.values, other.values, atol=atol, rtol=0))
            and bool(np.allclose(self.extent_mm, other.extent_mm, atol=atol, rtol=0))
        )

    def __repr__(self) -> str:
        return (
            f"SpineCurves(K={self.n_levels}, extent_mm=({self.extent_mm[0]:.2f}, "
            f"{self.extent_mm[1]:.2f}))"
        )


def check_levels(n_levels: int) -> int:
    """``n_levels`` as an int, refused unless it is an integer (not a float, not a boolean)
    >= ``MIN_LEVELS``."""
    return check_integer(n_levels, "n_levels", MIN_LEVELS)


# ---------------------------------------------------------------------------------------
# The model's view: crop coordinates
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropWindow:
    """The crop of a DXA image that the network sees ("the model's view").

    Attributes
    ----------
    row0, col0 : top-left pixel of the crop in the image resampled to ``pixel_mm``.
    rows, cols : crop size in pixels (the network's ``image_size``).
    pixel_mm : pixel size of the resampled image (``crop_pixel_mm``).
    """

    row0: float
    col0: float
    rows: int
    cols: int
    pixel_mm: float

    def __post_init__(self) -> None:
        vals = (self.row0, self.col0, self.rows, self.cols, self.pixel_mm)
        if not all(np.isfinite(v) for v in vals):
            raise NonFiniteError(f"crop window values must be finite, got {vals}")
        if self.rows <= 0 or self.cols <= 0 or self.pixel_mm <= 0:
            raise InvalidArgumentError(
                f"crop rows, cols and pixel_mm must be positive, got {self.rows}, {self.cols}, {self.pixel_mm}"
            )


def _crop_attrs(crop: Any) -> tuple[float, float, float, float, float]:
    """``(row0, col0, rows, cols, pixel_mm)`` of any object with those attributes, checked."""
    try:
        vals = tuple(float(getattr(crop, n)) for n in ("row0", "col0", "rows", "cols", "pixel_mm"))
    except AttributeError as exc:
        raise InvalidArgumentError(f"crop lacks attribute {exc.name!r} (needs row0, col0, rows, cols, pixel_mm)") from None
    if not all(np.isfinite(vals)) or min(vals[2:]) <= 0:
        raise InvalidArgumentError(f"bad crop window {vals}")
    return vals  # type: ignore[return-value]


def to_crop(curves: SpineCurves, crop: Any) -> np.ndarray:
    """Normalise curves to crop coordinates: a ``(6 K + 2,)`` float vector.

    Layout: the six curves one after the other (``values.ravel()``), then the extent.
    Coronal ``c -> (c / pixel_mm - col0) / cols``; sagittal ``d -> d / (pixel_mm * cols)``;
    extent ``r -> (r / pixel_mm - row0) / rows``.
    """
    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    row0, col0, rows, cols, px = _crop_attrs(crop)
    v = curves.values.copy()
    v[:3] = (v[:3] / px - col0) / cols
    v[3:] = v[3:] / (px * cols)
    ext = (curves.extent_mm / px - row0) / rows
    return np.concatenate([v.ravel(), ext])


def from_crop(vector: np.ndarray, crop: Any, n_levels: int, *, repair: bool = True) -> SpineCurves:
    """Inverse of :func:`to_crop`: a ``(6 K + 2,)`` vector back to :class:`SpineCurves` in mm.

    A network's raw output may put a left boundary right of its right boundary (or the
    posterior anterior of the anterior, or the extent upside down). With ``repair``
    (default) each such pair is put in order (the two values swapped; a zero-height
    extent widened by 1e-6 mm); without it, :class:`SpineCurves` raises. Valid curves
    are returned unchanged, so ``from_crop(to_crop(c, w), w, K)`` equals ``c``.
    """
    k = check_levels(n_levels)
    vec = np.asarray(vector, dtype=float)
    if vec.shape != (6 * k + 2,):
        raise ShapeError(f"crop vector must have shape ({6 * k + 2},) for K = {k}, got {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise NonFiniteError("crop vector holds NaN or infinite values")
    row0, col0, rows, cols, px = _crop_attrs(crop)
    v = vec[: 6 * k].reshape(6, k).copy()
    v[:3] = (v[:3] * cols + col0) * px
    v[3:] = v[3:] * (px * cols)
    ext = (vec[6 * k:] * rows + row0) * px
    if repair:
        for lo, hi in ((_CL, _CR), (_SP, _SA)):
            a, b = np.minimum(v[lo], v[hi]), np.maximum(v[lo], v[hi])
            v[lo], v[hi] = a, b
        ext = np.sort(ext)
        if ext[1] - ext[0] <= 0:
            ext = ext + np.array([-5e-7, 5e-7])
    return SpineCurves(v, ext)
