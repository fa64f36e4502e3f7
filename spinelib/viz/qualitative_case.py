"""What one row of the paper's Figure 5 shows for one subject, and which subjects make the rows.

Figure 5 of the paper shows test subjects of increasing scoliosis severity, one per row:
the input DXA, the true and the predicted sagittal curves, the true and the predicted
spine masks over an MRI sagittal slice, and the true and the predicted 3D spines.
:func:`qualitative_case` gathers these for one subject into a :class:`QualitativeCase`:
the masks on one grid of the DXA-aligned frame (the true one resampled from the MRI labels,
the predicted ones rebuilt as ellipses, as in :mod:`spinelib.evaluate.volume3d`), a curved
sagittal MRI slice through the true coronal centre, the Cobb angle of the true curves and
each model's 3D IoU. :func:`select_by_severity` picks subjects that span the cohort's
severities. The figures are drawn by :mod:`spinelib.viz.qualitative`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from ..errors import EmptySegmentationError, InvalidArgumentError, NonFiniteError, ShapeError
from ..evaluate.volume3d import MARGIN_MM
from ..geometry.transform import PlanarTransform
from ..shape.curves import SpineCurves
from ..shape.frame import SubjectFrame
from ..shape.reconstruct import Grid3D, column_mask_in_frame, ellipse_mask, grid_for
from ..spine import column_mask
from ..io.checks import check_integer, check_positive

log = logging.getLogger(__name__)

__all__ = ["QualitativeCase", "qualitative_case", "select_by_severity"]


@dataclass(frozen=True, eq=False)
class QualitativeCase:
    """Everything one row of Figure 5 shows for one subject.

    Attributes
    ----------
    subject_id : the subject.
    dxa_bone : (H, W) float, the input DXA's bone channel; ``dxa_spacing_mm`` (2,) its
        (row, col) pixel spacing.
    true : the target curves; ``preds`` : model name -> predicted curves.
    grid : the 3D grid of the masks; ``true_mask`` and ``pred_masks[name]`` bool
        ``grid.shape`` (true column from the MRI labels; predictions rebuilt as ellipses).
    slice_rows_mm : (R,) and ``slice_depth_mm`` (D,): axes of the sagittal slice.
    slice_cols_mm : (R,) DXA column-mm where the slice cuts each row (it follows the true
        coronal centre, so that a scoliotic spine stays in the slice).
    mri_slice : (R, D) MRI intensity on the slice; ``true_slice`` and
        ``pred_slices[name]`` (R, D) bool masks on it.
    cobb_deg : Cobb angle of the true curves (``metrics.clinical_measures``).
    iou : model name -> 3D IoU of its mask with the true mask on ``grid``.
    """

    subject_id: str
    dxa_bone: np.ndarray
    dxa_spacing_mm: np.ndarray
    true: SpineCurves
    preds: dict
    grid: Grid3D
    true_mask: np.ndarray
    pred_masks: dict
    slice_rows_mm: np.ndarray
    slice_cols_mm: np.ndarray
    slice_depth_mm: np.ndarray
    mri_slice: np.ndarray
    true_slice: np.ndarray
    pred_slices: dict
    cobb_deg: float
    iou: dict = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(self.preds)


def _non_negative(value: Any, name: str) -> float:
    """``value`` as a finite float >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise InvalidArgumentError(f"{name} must be >= 0 and finite, got {value!r}")
    return v


def _check_curves(true: Any, preds: Mapping[str, Any]) -> dict[str, SpineCurves]:
    """The predicted curves as a dict, after checking that every curve set is SpineCurves."""
    if not isinstance(true, SpineCurves):
        raise InvalidArgumentError(f"true must be SpineCurves, got {type(true).__name__}")
    pred = dict(preds)
    if not pred:
        raise InvalidArgumentError("preds must hold at least one model's curves")
    for name, c in pred.items():
        if not isinstance(c, SpineCurves):
            raise InvalidArgumentError(f"preds[{name!r}] must be SpineCurves, got {type(c).__name__}")
    return pred


def _check_volumes(mri: Any, seg: Any, affine: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MRI (I, J, K), labels of the same shape and the (4, 4) float affine."""
    vol = np.asarray(mri)
    labels = np.asarray(seg)
    if vol.ndim != 3 or labels.shape != vol.shape:
        raise ShapeError(f"mri and seg must be 3D volumes of one shape, got {vol.shape} and {labels.shape}")
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise ShapeError(f"affine must have shape (4, 4), got {aff.shape}")
    return vol, labels, aff


def _default_spacing(affine: np.ndarray) -> float:
    """Grid spacing (mm): half the finest MRI voxel size, within [1, 3]."""
    # half the finest MRI voxel resolves the label boundaries without a needlessly fine grid
    zooms = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    return float(np.clip(0.5 * zooms.min(), 1.0, 3.0))


def _sample_frame(volume: np.ndarray, affine: np.ndarray, w2f: np.ndarray, rows: np.ndarray,
                  cols: np.ndarray, depth: np.ndarray, *, order: int) -> np.ndarray:
    """Values of ``volume`` at frame points ``(rows[i], cols[i], depth[j])`` -> (R, D)."""
    f2v = np.linalg.inv(w2f @ affine)
    rr = np.broadcast_to(rows[:, None], (rows.size, depth.size))
    cc = np.broadcast_to(cols[:, None], rr.shape)
    dd = np.broadcast_to(depth[None, :], rr.shape)
    pts = np.stack([rr.ravel(), cc.ravel(), dd.ravel(), np.ones(rr.size)])
    ijk = (f2v @ pts)[:3]
    vals = ndimage.map_coordinates(np.asarray(volume, dtype=np.float32), ijk, order=order, mode="constant", cval=0.0)
    return vals.reshape(rr.shape)


def _slice_axes(grid: Grid3D, true: SpineCurves, sp: float,
                context_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R,) rows, (R,) true coronal centres and (D,) depths (mm) of the curved sagittal slice."""
    rows = np.arange(grid.axis_mm(0)[0] - context_mm, grid.axis_mm(0)[-1] + context_mm + 1e-9, sp)
    cols = np.interp(rows, true.levels_mm, true.values[1])
    depth = np.arange(min(-10.0, grid.axis_mm(2)[0]), float(true.values[5].max()) + context_mm + 1e-9, sp)
    return rows, cols, depth


def _masks_on_slice(masks: Mapping[str, np.ndarray], grid: Grid3D, rows: np.ndarray, cols: np.ndarray,
                    depth: np.ndarray) -> dict[str, np.ndarray]:
    """(R, D) bool cut of each grid mask by the slice (nearest voxel; False off the grid)."""
    gi = np.rint((rows - grid.origin[0]) / grid.spacing[0]).astype(int)
    gj = np.rint((cols - grid.origin[1]) / grid.spacing[1]).astype(int)
    gk = np.rint((depth - grid.origin[2]) / grid.spacing[2]).astype(int)
    inside = ((gi >= 0) & (gi < grid.shape[0]) & (gj >= 0) & (gj < grid.shape[1]))[:, None] \
        & ((gk >= 0) & (gk < grid.shape[2]))[None, :]
    ci, cj, ck = np.clip(gi, 0, grid.shape[0] - 1), np.clip(gj, 0, grid.shape[1] - 1), np.clip(gk, 0, grid.shape[2] - 1)
    return {n: m[ci[:, None], cj[:, None], ck[None, :]] & inside for n, m in masks.items()}


def qualitative_case(
    subject_id: str, dxa, mri: np.ndarray, seg: np.ndarray, affine: np.ndarray, transform: PlanarTransform,
    table_y_mm: float, true: SpineCurves, preds: Mapping[str, SpineCurves], *,
    spacing_mm: float | None = None, margin_mm: float = MARGIN_MM, context_mm: float = 40.0,
) -> QualitativeCase:
    """Build one Figure-5 row: masks, the sagittal MRI slice and the Cobb angle of a subject.

    Parameters
    ----------
    subject_id : label of the row.
    dxa : :class:`spinelib.io.DXAImage` (bone channel and pixel spacing are used).
    mri : (I, J, K) MRI volume shown behind the masks (e.g. water), on ``affine``.
    seg : (I, J, K) label volume (``spinelib.spine``) on the same ``affine``.
    affine : (4, 4) voxel -> MRI world mm.
    transform : the DXA -> MRI planar transform that made the targets (the estimate).
    table_y_mm : MRI world y of the table plane.
    true : target curves; ``preds`` : model name -> predicted curves (at least one).
    spacing_mm : 3D grid spacing (default half the finest MRI voxel size, within [1, 3] mm).
    margin_mm : grid margin around the curves (default that of the 3D evaluation).
    context_mm : how much MRI the slice shows above, below and in front of the spine.

    Returns
    -------
    :class:`QualitativeCase`
    """
    from ..metrics import clinical_measures, iou_3d

    pred = _check_curves(true, preds)
    if not hasattr(dxa, "bone") or not hasattr(dxa, "pixel_spacing_mm"):
        raise InvalidArgumentError(f"dxa must be a DXAImage, got {type(dxa).__name__}")
    vol, labels, aff = _check_volumes(mri, seg, affine)
    frame = SubjectFrame(transform, tuple(int(v) for v in dxa.bone.shape),
                         tuple(float(v) for v in dxa.pixel_spacing_mm), table_y_mm)
    sp = _default_spacing(aff) if spacing_mm is None else check_positive(spacing_mm, "spacing_mm")
    margin_mm = _non_negative(margin_mm, "margin_mm")
    context_mm = _non_negative(context_mm, "context_mm")

    grid = grid_for([true, *pred.values()], spacing_mm=sp, margin_mm=margin_mm)
    true_mask = column_mask_in_frame(labels, aff, frame, grid)
    if not true_mask.any():
        raise EmptySegmentationError(f"subject {subject_id}: the MRI spine column misses the curves' grid")
    pred_masks = {n: ellipse_mask(c, grid) for n, c in pred.items()}
    iou = {n: float(iou_3d(m, true_mask)) for n, m in pred_masks.items()}

    w2f = frame.world_to_frame()
    rows, cols, depth = _slice_axes(grid, true, sp, context_mm)
    mri_slice = _sample_frame(vol, aff, w2f, rows, cols, depth, order=1)
    true_slice = _sample_frame(column_mask(labels).astype(np.float32), aff, w2f, rows, cols, depth, order=0) > 0.5
    cobb = float(clinical_measures(true)["cobb_deg"])
    log.debug("case %s: grid %s, Cobb %.1f deg, IoU %s", subject_id, grid.shape, cobb, iou)
    return QualitativeCase(
        subject_id=str(subject_id), dxa_bone=np.asarray(dxa.bone, dtype=np.float32),
        dxa_spacing_mm=np.asarray(frame.dxa_spacing, dtype=float), true=true, preds=pred, grid=grid,
        true_mask=true_mask, pred_masks=pred_masks, slice_rows_mm=rows, slice_cols_mm=cols,
        slice_depth_mm=depth, mri_slice=mri_slice, true_slice=true_slice,
        pred_slices=_masks_on_slice(pred_masks, grid, rows, cols, depth), cobb_deg=cobb, iou=iou,
    )


def select_by_severity(cobb_deg, n: int) -> np.ndarray:
    """Indices of ``n`` subjects spanning the range of scoliosis severity, in increasing Cobb.

    The subjects sorted by Cobb angle (ties by index) are sampled at evenly spaced ranks,
    first and last included, so the rows run from the straightest to the most curved spine.

    Parameters
    ----------
    cobb_deg : (N,) Cobb angles in degrees.
    n : rows wanted (>= 1); fewer are returned when ``N < n``.
    """
    c = np.asarray(cobb_deg, dtype=float)
    if c.ndim != 1 or c.size == 0:
        raise ShapeError(f"cobb_deg must be a non-empty 1D array, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise NonFiniteError("cobb_deg holds NaN or infinite values")
    n = check_integer(n, "n", 1)
    order = np.argsort(c, kind="stable")
    k = min(int(n), c.size)
    ranks = np.unique(np.rint(np.linspace(0, c.size - 1, k)).astype(int))
    return order[ranks]
