"""The paper's qualitative figure (Figure 5) and a Gaussian-splat renderer of 3D spines.

Figure 5 of the paper shows test subjects of increasing scoliosis severity, one per row:
the input DXA, the true and the predicted sagittal curves, the true and the predicted
spine masks over an MRI sagittal slice, and the true and the predicted 3D spines drawn
as Gaussian renderings. Here:

- :func:`gaussian_splat` is the renderer's core: a point cloud in the DXA-aligned frame
  ``(row_mm, col_mm, depth_mm)`` (``spinelib.shape.reconstruct``) turned about the vertical axis
  and splatted as isotropic 2D Gaussians onto an image plane (Zwicker et al., "EWA
  splatting", IEEE TVCG 2002; Kerbl et al., "3D Gaussian splatting", SIGGRAPH 2023, with
  isotropic, fixed-size Gaussians and no learning). Each Gaussian is integrated exactly over
  each pixel (separable error functions), so the image sums to the points' total weight.
- :func:`splat_rgb` composes three splats into an opaque-looking, depth-shaded picture:
  a soft z-buffer keeps the surface nearest the viewer (weighted blended order-independent
  compositing, McGuire and Bavoil, JCGT 2013), its nearness sets the brightness, and the
  Gaussians' summed density sets the coverage.
- :func:`qualitative_case` gathers, for one subject, everything a Figure-5 row shows;
  :func:`figure5` draws the rows ordered by the Cobb angle of the true curves;
  :func:`select_by_severity` picks subjects that span the cohort's severities.

Views: ``view_deg = 0`` looks at the spine from the front, as the DXA image is displayed
(patient's right on the image's left); positive angles turn the camera towards the
patient's right side, ``view_deg = 90`` is a lateral view with posterior on the left.

Examples
--------
>>> import numpy as np
>>> img = gaussian_splat(np.zeros((1, 3)), view_deg=0.0, pixel_mm=1.0, sigma_mm=1.0)
>>> img.shape, [int(i) for i in np.unravel_index(np.argmax(img), img.shape)], round(float(img.sum()), 3)
((9, 9), [4, 4], 1.0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.special import erf

from ..shape.curves import SpineCurves, world_to_frame
from ..errors import EmptySegmentationError, InvalidArgumentError, NonFiniteError, ShapeError
from ..shape.reconstruct import Grid3D, column_mask_in_frame, ellipse_mask, grid_for, surface_mesh
from ..spine import column_mask
from ..geometry.transform import PlanarTransform
from .spine3d import PRED_COLOUR, TRUE_COLOUR, SpineMesh

log = logging.getLogger(__name__)

__all__ = [
    "SPLAT_MARGIN_SIGMAS",
    "gaussian_splat",
    "splat_window",
    "splat_rgb",
    "mask_surface_points",
    "QualitativeCase",
    "qualitative_case",
    "select_by_severity",
    "figure5",
    "turntable_figure",
    "case_meshes",
]

#: Margin of the default image window around the points, in Gaussian sigmas: beyond 4 sigma
#: a Gaussian's mass is below 1e-4 per side, so the image keeps the points' total weight.
SPLAT_MARGIN_SIGMAS = 4.0

#: Colours of models other than the paper's in the figures (the paper's model is orange).
_MODEL_COLOURS = (PRED_COLOUR, "#55a868", "#c44e52", "#8172b3", "#937860")


# ---------------------------------------------------------------------------------------
# Gaussian splatting
# ---------------------------------------------------------------------------------------


def _points(points_mm, name: str = "points_mm") -> np.ndarray:
    p = np.asarray(points_mm, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ShapeError(f"{name} must have shape (N, 3) = (row_mm, col_mm, depth_mm), got {p.shape}")
    if p.shape[0] == 0:
        raise InvalidArgumentError(f"{name} is empty: nothing to render")
    if not np.all(np.isfinite(p)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return p


def _positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise InvalidArgumentError(f"{name} must be positive and finite, got {value!r}")
    return v


def _non_negative(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise InvalidArgumentError(f"{name} must be >= 0 and finite, got {value!r}")
    return v


def _angle(view_deg: float) -> float:
    try:
        a = float(view_deg)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"view_deg must be a number, got {view_deg!r}") from None
    if not np.isfinite(a):
        raise NonFiniteError(f"view_deg must be finite, got {view_deg!r}")
    return np.deg2rad(a)


def _view_coords(p: np.ndarray, centre: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical, horizontal and towards-the-viewer coordinates (mm) about ``centre``."""
    c, d = p[:, 1] - centre[1], p[:, 2] - centre[2]
    u = c * np.cos(theta) + d * np.sin(theta)
    w = -c * np.sin(theta) + d * np.cos(theta)
    return p[:, 0] - centre[0], u, w


def splat_window(points_list: Sequence[np.ndarray], *, sigma_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """An image window that shows every cloud of ``points_list`` from every view angle.

    Parameters
    ----------
    points_list : one or more (N_i, 3) point clouds ``(row_mm, col_mm, depth_mm)``.
    sigma_mm : the Gaussians' standard deviation; the window keeps
        :data:`SPLAT_MARGIN_SIGMAS` of them around the points.

    Returns
    -------
    centre_mm : (3,) the middle of the clouds' common bounding box (rotation centre).
    half_size_mm : (2,) half height (along rows) and half width of the window, in mm. The
        width is the largest distance of a point from the vertical axis through the centre,
        so it does not depend on the view angle.
    """
    clouds = [_points(p, f"points_list[{i}]") for i, p in enumerate(points_list)]
    if not clouds:
        raise InvalidArgumentError("splat_window needs at least one point cloud")
    sigma = _positive(sigma_mm, "sigma_mm")
    allp = np.concatenate(clouds)
    centre = 0.5 * (allp.min(axis=0) + allp.max(axis=0))
    return centre, _half_size(allp, centre, sigma)


def _half_size(allp: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """(2,) half height and half width (mm) of a window about ``centre`` that holds ``allp``
    from every view angle, with :data:`SPLAT_MARGIN_SIGMAS` sigmas of margin."""
    half_h = float(np.abs(allp[:, 0] - centre[0]).max())
    radius = float(np.hypot(allp[:, 1] - centre[1], allp[:, 2] - centre[2]).max())
    margin = SPLAT_MARGIN_SIGMAS * sigma
    return np.array([half_h + margin, radius + margin])


def gaussian_splat(
    points_mm,
    *,
    view_deg: float,
    pixel_mm: float,
    sigma_mm: float,
    weights=None,
    depth_shading: float = 0.0,
    centre_mm=None,
    half_size_mm=None,
) -> np.ndarray:
    """Splat a point cloud as isotropic Gaussians onto the image plane of one view.

    The cloud is turned by ``view_deg`` about the vertical (row) axis through ``centre_mm``
    and projected orthographically: image rows follow ``row_mm`` (superior at the top),
    image columns the horizontal axis ``u = dc cos t + dd sin t`` (``dc, dd`` column and
    depth offsets from the centre, ``t = view_deg``), and ``w = -dc sin t + dd cos t``
    points towards the viewer. Each point adds its weight times a 2D Gaussian of standard
    deviation ``sigma_mm``, integrated over each pixel, so a Gaussian wholly inside the
    image adds exactly its weight to the image's sum.

    Parameters
    ----------
    points_mm : (N, 3) float, ``(row_mm, col_mm, depth_mm)`` in the DXA-aligned frame.
    view_deg : camera angle about the vertical axis, degrees (0: front view, as the DXA).
    pixel_mm : pixel size of the image, mm.
    sigma_mm : standard deviation of every Gaussian, mm.
    weights : (N,) non-negative weights (default 1 per point).
    depth_shading : in [0, 1]; each weight is multiplied by ``1 - depth_shading +
        depth_shading * n_i``, where ``n_i`` in [0, 1] is the point's nearness to the viewer
        within the cloud (1 nearest). 0 leaves the weights as given.
    centre_mm : (3,) rotation centre and middle of the image (default: the middle of the
        cloud's bounding box, see :func:`splat_window`).
    half_size_mm : (2,) half height and half width of the window in mm (default from
        :func:`splat_window`, which fits the cloud at every angle).

    Returns
    -------
    (H, W) float64 image, ``H = 2 ceil(half_height / pixel_mm) + 1`` and likewise ``W``:
    pixel ``(i, j)`` is centred at ``row_mm = centre[0] + (i - H // 2) pixel_mm`` and
    ``u = (j - W // 2) pixel_mm``, so the centre falls on the middle pixel. Units: weight
    per pixel.

    Raises
    ------
    ShapeError, NonFiniteError, InvalidArgumentError
        Points not (N, 3), non-finite, or empty; weights of another length or negative;
        non-positive ``pixel_mm`` / ``sigma_mm`` / window; ``depth_shading`` out of [0, 1].
    """
    p = _points(points_mm)
    theta = _angle(view_deg)
    pix = _positive(pixel_mm, "pixel_mm")
    sigma = _positive(sigma_mm, "sigma_mm")
    if weights is None:
        wts = np.ones(len(p))
    else:
        wts = np.asarray(weights, dtype=float)
        if wts.shape != (len(p),):
            raise ShapeError(f"weights must have shape ({len(p)},), got {wts.shape}")
        if not np.all(np.isfinite(wts)):
            raise NonFiniteError("weights hold NaN or infinite values")
        if np.any(wts < 0):
            raise InvalidArgumentError("weights must be non-negative")
    try:
        shading = float(depth_shading)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"depth_shading must be a number, got {depth_shading!r}") from None
    if not 0.0 <= shading <= 1.0:
        raise InvalidArgumentError(f"depth_shading must be in [0, 1], got {depth_shading!r}")
    centre = splat_window([p], sigma_mm=sigma)[0] if centre_mm is None else np.asarray(centre_mm, dtype=float)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ShapeError(f"centre_mm must be 3 finite values, got {np.asarray(centre_mm).tolist()}")
    half = _half_size(p, centre, sigma) if half_size_mm is None else np.asarray(half_size_mm, dtype=float)
    if half.shape != (2,) or not np.all(np.isfinite(half)) or np.any(half <= 0):
        raise InvalidArgumentError(f"half_size_mm must be 2 positive values, got {np.asarray(half_size_mm).tolist()}")
    n_half = np.ceil(half / pix - 1e-9).astype(int)
    h, w = (2 * n_half + 1).tolist()
    r, u, toward = _view_coords(p, centre, theta)
    if shading > 0:
        span = float(toward.max() - toward.min())
        near = (toward - toward.min()) / span if span > 0 else np.ones_like(toward)
        wts = wts * (1.0 - shading + shading * near)
    # pixel edges, in units of sigma relative to each point: the exact integral of a
    # Gaussian over [a, b] is (erf(b') - erf(a')) / 2 with x' = x / (sigma sqrt 2)
    s2 = sigma * np.sqrt(2.0)
    edges_r = (np.arange(h + 1) - n_half[0] - 0.5) * pix
    edges_u = (np.arange(w + 1) - n_half[1] - 0.5) * pix
    gr = np.diff(erf((edges_r[None, :] - r[:, None]) / s2), axis=1) * 0.5  # (N, H)
    gu = np.diff(erf((edges_u[None, :] - u[:, None]) / s2), axis=1) * 0.5  # (N, W)
    return (gr * wts[:, None]).T @ gu


def splat_rgb(
    points_mm,
    *,
    view_deg: float,
    pixel_mm: float,
    sigma_mm: float,
    colour: str | Sequence[float] = TRUE_COLOUR,
    centre_mm=None,
    half_size_mm=None,
    opacity: float = 0.6,
    softness_mm: float | None = None,
    ambient: float = 0.35,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Depth-shaded picture of a point cloud (the paper's "Gaussian rendering").

    Four :func:`gaussian_splat` images of the same view are combined. A soft z-buffer
    weights each point by ``exp((w_i - w_max) / softness_mm)`` (``w`` towards the viewer),
    so the surface nearest the viewer dominates each pixel; the so-weighted mean of ``w``
    is the visible surface's depth map ``Z`` and that of the points' nearness ``n`` (1
    nearest in the cloud, 0 farthest) its depth cue. The depth map's slope gives the
    surface normal ``(-dZ/du, -dZ/dr, 1)`` and a Lambert term ``L`` for a light above the
    viewer's left shoulder; the brightness is ``ambient + (1 - ambient) * (0.7 L + 0.3 n)``.
    The summed density sets the coverage ``alpha = 1 - exp(-opacity * 2 pi sigma^2 *
    density)``, where a single Gaussian reaches ``1 - exp(-opacity)`` at its peak. The
    result is ``alpha * brightness * colour + (1 - alpha) * background``.

    Parameters
    ----------
    points_mm, view_deg, pixel_mm, sigma_mm, centre_mm, half_size_mm : as :func:`gaussian_splat`.
    colour : matplotlib colour of the surface.
    opacity : > 0, opacity of one Gaussian (see above).
    softness_mm : > 0, depth scale of the soft z-buffer (default ``sigma_mm``).
    ambient : in [0, 1], brightness of the farthest points.
    background : RGB in [0, 1].

    Returns
    -------
    (H, W, 3) float RGB in [0, 1], on the pixel grid of :func:`gaussian_splat`.
    """
    from matplotlib.colors import to_rgb

    p = _points(points_mm)
    theta = _angle(view_deg)
    sigma = _positive(sigma_mm, "sigma_mm")
    pix = _positive(pixel_mm, "pixel_mm")
    op = _positive(opacity, "opacity")
    soft = sigma if softness_mm is None else _positive(softness_mm, "softness_mm")
    if not 0.0 <= float(ambient) <= 1.0:
        raise InvalidArgumentError(f"ambient must be in [0, 1], got {ambient!r}")
    try:
        rgb = np.array(to_rgb(colour))
    except ValueError:
        raise InvalidArgumentError(f"colour {colour!r} is not a matplotlib colour") from None
    bg = np.asarray(background, dtype=float)
    if bg.shape != (3,) or np.any(bg < 0) or np.any(bg > 1):
        raise InvalidArgumentError(f"background must be 3 values in [0, 1], got {list(np.ravel(bg))}")
    centre = splat_window([p], sigma_mm=sigma)[0] if centre_mm is None else np.asarray(centre_mm, dtype=float)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ShapeError(f"centre_mm must be 3 finite values, got {np.asarray(centre_mm).tolist()}")
    _, _, toward = _view_coords(p, centre, theta)
    span = float(toward.max() - toward.min())
    near = (toward - toward.min()) / span if span > 0 else np.ones_like(toward)
    # exp underflows to exactly 0 far behind the front; clip keeps it representable
    front = np.exp(np.clip((toward - toward.max()) / soft, -700.0, 0.0))
    kw = dict(view_deg=view_deg, pixel_mm=pix, sigma_mm=sigma, centre_mm=centre, half_size_mm=half_size_mm)
    den = gaussian_splat(p, weights=front, **kw)
    tiny = np.finfo(float).tiny * 1e6
    seen = den > tiny
    safe = np.maximum(den, tiny)
    nearness = np.where(seen, gaussian_splat(p, weights=front * near, **kw) / safe, 0.0)
    # the depth map is only defined where some point is seen; elsewhere it takes the
    # farthest depth, so the silhouette reads as a steep (dark) rim
    zmap = np.where(seen, gaussian_splat(p, weights=front * (toward - toward.min()), **kw) / safe, 0.0)
    dz_dr, dz_du = np.gradient(zmap, pix)
    normal = np.stack([-dz_du, dz_dr, np.ones_like(zmap)], axis=-1)  # (u, up, towards viewer)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = np.array([-0.4, 0.5, 1.0]) / np.linalg.norm([-0.4, 0.5, 1.0])
    lambert = np.clip(normal @ light, 0.0, 1.0)
    density = gaussian_splat(p, **kw) / pix**2  # points per mm^2
    bright = float(ambient) + (1.0 - float(ambient)) * (0.7 * lambert + 0.3 * nearness)
    alpha = 1.0 - np.exp(-op * 2.0 * np.pi * sigma**2 * density)
    out = alpha[..., None] * bright[..., None] * rgb + (1.0 - alpha[..., None]) * bg
    return np.clip(out, 0.0, 1.0)


def mask_surface_points(mask: np.ndarray, grid: Grid3D) -> np.ndarray:
    """(N, 3) frame mm ``(row_mm, col_mm, depth_mm)`` of the voxels on a mask's surface.

    A surface voxel is a voxel of the mask with at least one of its six face neighbours
    outside it (or outside the grid); its centre is ``grid.origin + index * spacing``.
    """
    if not isinstance(grid, Grid3D):
        raise InvalidArgumentError(f"grid must be a Grid3D, got {type(grid).__name__}")
    m = np.asarray(mask)
    if m.dtype != bool:
        raise InvalidArgumentError(f"mask must be boolean, got dtype {m.dtype}")
    if m.shape != tuple(grid.shape):
        raise ShapeError(f"mask shape {m.shape} does not match the grid's {grid.shape}")
    if not m.any():
        raise EmptySegmentationError("the mask is empty: it has no surface")
    inner = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    idx = np.argwhere(m & ~inner)
    return grid.origin + idx * grid.spacing


# ---------------------------------------------------------------------------------------
# One row of Figure 5
# ---------------------------------------------------------------------------------------


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


def _default_spacing(affine: np.ndarray) -> float:
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


def qualitative_case(
    subject_id: str,
    dxa,
    mri: np.ndarray,
    seg: np.ndarray,
    affine: np.ndarray,
    transform: PlanarTransform,
    table_y_mm: float,
    true: SpineCurves,
    preds: Mapping[str, SpineCurves],
    *,
    spacing_mm: float | None = None,
    margin_mm: float = 10.0,
    context_mm: float = 40.0,
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
    margin_mm : grid margin around the curves.
    context_mm : how much MRI the slice shows above, below and in front of the spine.

    Returns
    -------
    :class:`QualitativeCase`
    """
    from ..metrics import clinical_measures, iou_3d

    if not isinstance(true, SpineCurves):
        raise InvalidArgumentError(f"true must be SpineCurves, got {type(true).__name__}")
    pred = dict(preds)
    if not pred:
        raise InvalidArgumentError("preds must hold at least one model's curves")
    for name, c in pred.items():
        if not isinstance(c, SpineCurves):
            raise InvalidArgumentError(f"preds[{name!r}] must be SpineCurves, got {type(c).__name__}")
    if not hasattr(dxa, "bone") or not hasattr(dxa, "pixel_spacing_mm"):
        raise InvalidArgumentError(f"dxa must be a DXAImage, got {type(dxa).__name__}")
    vol = np.asarray(mri)
    labels = np.asarray(seg)
    if vol.ndim != 3 or labels.shape != vol.shape:
        raise ShapeError(f"mri and seg must be 3D volumes of one shape, got {vol.shape} and {labels.shape}")
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise ShapeError(f"affine must have shape (4, 4), got {aff.shape}")
    if not isinstance(transform, PlanarTransform):
        raise InvalidArgumentError(f"transform must be a PlanarTransform, got {type(transform).__name__}")
    try:
        table_y = float(table_y_mm)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"table_y_mm must be a number, got {table_y_mm!r}") from None
    if not np.isfinite(table_y):
        raise NonFiniteError(f"table_y_mm must be finite, got {table_y_mm!r}")
    sp = _default_spacing(aff) if spacing_mm is None else _positive(spacing_mm, "spacing_mm")
    margin_mm = _non_negative(margin_mm, "margin_mm")
    context_mm = _non_negative(context_mm, "context_mm")

    shape2 = tuple(int(v) for v in dxa.bone.shape)
    spacing2 = tuple(float(v) for v in dxa.pixel_spacing_mm)
    grid = grid_for([true, *pred.values()], spacing_mm=sp, margin_mm=margin_mm)
    true_mask = column_mask_in_frame(labels, aff, transform, shape2, spacing2, table_y, grid)
    if not true_mask.any():
        raise EmptySegmentationError(f"subject {subject_id}: the MRI spine column misses the curves' grid")
    pred_masks = {n: ellipse_mask(c, grid) for n, c in pred.items()}
    iou = {n: float(iou_3d(m, true_mask)) for n, m in pred_masks.items()}

    # the slice: a curved sagittal surface through the true coronal centre of each row
    w2f = world_to_frame(transform, shape2, spacing2, table_y)
    rows = np.arange(grid.axis_mm(0)[0] - context_mm, grid.axis_mm(0)[-1] + context_mm + 1e-9, sp)
    cols = np.interp(rows, true.levels_mm, true.values[1])
    depth = np.arange(min(-10.0, grid.axis_mm(2)[0]), float(true.values[5].max()) + context_mm + 1e-9, sp)
    mri_slice = _sample_frame(vol, aff, w2f, rows, cols, depth, order=1)
    true_slice = _sample_frame(column_mask(labels).astype(np.float32), aff, w2f, rows, cols, depth, order=0) > 0.5
    gi = np.rint((rows - grid.origin[0]) / grid.spacing[0]).astype(int)
    gj = np.rint((cols - grid.origin[1]) / grid.spacing[1]).astype(int)
    gk = np.rint((depth - grid.origin[2]) / grid.spacing[2]).astype(int)
    inside = ((gi >= 0) & (gi < grid.shape[0]) & (gj >= 0) & (gj < grid.shape[1]))[:, None] \
        & ((gk >= 0) & (gk < grid.shape[2]))[None, :]
    ci, cj, ck = np.clip(gi, 0, grid.shape[0] - 1), np.clip(gj, 0, grid.shape[1] - 1), np.clip(gk, 0, grid.shape[2] - 1)
    pred_slices = {n: m[ci[:, None], cj[:, None], ck[None, :]] & inside for n, m in pred_masks.items()}
    cobb = float(clinical_measures(true)["cobb_deg"])
    log.debug("case %s: grid %s, Cobb %.1f deg, IoU %s", subject_id, grid.shape, cobb, iou)
    return QualitativeCase(
        subject_id=str(subject_id), dxa_bone=np.asarray(dxa.bone, dtype=np.float32),
        dxa_spacing_mm=np.asarray(spacing2, dtype=float), true=true, preds=pred, grid=grid,
        true_mask=true_mask, pred_masks=pred_masks, slice_rows_mm=rows, slice_cols_mm=cols,
        slice_depth_mm=depth, mri_slice=mri_slice, true_slice=true_slice, pred_slices=pred_slices,
        cobb_deg=cobb, iou=iou,
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
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise InvalidArgumentError(f"n must be a positive integer, got {n!r}")
    order = np.argsort(c, kind="stable")
    k = min(int(n), c.size)
    ranks = np.unique(np.rint(np.linspace(0, c.size - 1, k)).astype(int))
    return order[ranks]


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def _norm(img: np.ndarray) -> np.ndarray:
    hi = float(np.percentile(img, 99.5)) if img.size else 0.0
    return np.clip(img / hi, 0, 1) if hi > 0 else np.zeros_like(img)


def _model_colours(models: Sequence[str]) -> dict[str, str]:
    return {m: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, m in enumerate(models)}


def _check_cases(cases: Sequence[QualitativeCase], models: Sequence[str] | None) -> tuple[list, list[str]]:
    cl = list(cases)
    if not cl:
        raise InvalidArgumentError("need at least one QualitativeCase")
    for c in cl:
        if not isinstance(c, QualitativeCase):
            raise InvalidArgumentError(f"cases must be QualitativeCase, got {type(c).__name__}")
    names = list(models) if models is not None else cl[0].models
    if not names:
        raise InvalidArgumentError("models must name at least one model")
    for c in cl:
        missing = [m for m in names if m not in c.preds]
        if missing:
            raise InvalidArgumentError(f"subject {c.subject_id} has no prediction of {missing}")
    return cl, names


def figure5(
    cases: Sequence[QualitativeCase],
    *,
    models: Sequence[str] | None = None,
    view_deg: float = 30.0,
    pixel_mm: float | None = None,
    sigma_mm: float | None = None,
    panel_width: float = 1.55,
    row_height: float = 4.2,
):
    """The paper's Figure 5: one row per subject, ordered by increasing Cobb angle.

    Columns: input DXA (bone); true sagittal curves; predicted sagittal curves (one column
    per model, the true curves dotted for reference); true spine mask, then each model's
    predicted mask, over the MRI sagittal slice (a curved slice through the true coronal
    centre); true 3D spine, then each model's, as Gaussian renderings (:func:`splat_rgb`)
    seen from ``view_deg``, true and predicted on one window so that sizes compare.

    Parameters
    ----------
    cases : rows (any order; drawn in increasing ``cobb_deg``).
    models : models to show (default: every model of the first case).
    view_deg : camera angle of the 3D panels (see :func:`gaussian_splat`).
    pixel_mm, sigma_mm : splat resolution and Gaussian size (default: the grid spacing and
        1.5 times it).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    cl, names = _check_cases(cases, models)
    cl = sorted(cl, key=lambda c: c.cobb_deg)
    colours = _model_colours(names)
    titles = (["input DXA", "true sagittal"] + [f"{m}\nsagittal" for m in names] + ["true mask"]
              + [f"{m}\nmask" for m in names] + ["true 3D"] + [f"{m}\n3D" for m in names])
    n_cols = len(titles)
    fig, axes = plt.subplots(len(cl), n_cols, figsize=(panel_width * n_cols, row_height * len(cl)), squeeze=False)
    for row, case in enumerate(cl):
        ax = axes[row]
        v_true = case.true.values
        lv_true = case.true.levels_mm
        # input DXA, cropped to the spine with some context
        sr, sc = case.dxa_spacing_mm
        top, bottom = case.true.extent_mm
        centre_col = float(np.median(v_true[1]))
        ax[0].imshow(_norm(case.dxa_bone), cmap="gray", interpolation="bilinear",
                     extent=(-0.5 * sc, (case.dxa_bone.shape[1] - 0.5) * sc,
                             (case.dxa_bone.shape[0] - 0.5) * sr, -0.5 * sr))
        ax[0].set_xlim(centre_col - 90, centre_col + 90)
        ax[0].set_ylim(bottom + 50, top - 50)
        ax[0].set_ylabel(f"{case.subject_id}\nCobb {case.cobb_deg:.1f} deg", fontsize=9)
        # sagittal curves
        d_lo = min(float(v_true[3].min()), *(float(case.preds[m].values[3].min()) for m in names)) - 15
        d_hi = max(float(v_true[5].max()), *(float(case.preds[m].values[5].max()) for m in names)) + 15
        curve_axes = [(ax[1], case.true, TRUE_COLOUR, False)]
        curve_axes += [(ax[2 + i], case.preds[m], colours[m], True) for i, m in enumerate(names)]
        for a, cur, colour, ref in curve_axes:
            if ref:
                for k in (3, 5):
                    a.plot(v_true[k], lv_true, ":", color="0.55", lw=1.0)
            for k, style in ((3, "-"), (4, "--"), (5, "-")):
                a.plot(cur.values[k], cur.levels_mm, style, color=colour, lw=1.4)
            a.set_xlim(d_lo, d_hi)
            a.set_ylim(bottom + 50, top - 50)
            a.set_aspect("equal")
            a.set_xlabel("depth (mm)", fontsize=7)
        # masks over the MRI slice
        ext = (case.slice_depth_mm[0], case.slice_depth_mm[-1], case.slice_rows_mm[-1], case.slice_rows_mm[0])
        mask_axes = [(ax[2 + len(names)], case.true_slice, TRUE_COLOUR)]
        mask_axes += [(ax[3 + len(names) + i], case.pred_slices[m], colours[m]) for i, m in enumerate(names)]
        mri = _norm(case.mri_slice)
        for a, m, colour in mask_axes:
            a.imshow(mri, cmap="gray", extent=ext, interpolation="bilinear")
            overlay = np.zeros(m.shape + (4,))
            overlay[m] = (*to_rgb(colour), 0.45)
            a.imshow(overlay, extent=ext, interpolation="nearest")
            if m.any():
                a.contour(case.slice_depth_mm, case.slice_rows_mm, m.astype(float), levels=[0.5],
                          colors=[colour], linewidths=0.8)
            a.set_aspect("equal")
        # 3D spines, Gaussian renderings on a shared window
        pts = [mask_surface_points(case.true_mask, case.grid)]
        pts += [mask_surface_points(case.pred_masks[m], case.grid) for m in names]
        pix = float(case.grid.spacing.min()) if pixel_mm is None else _positive(pixel_mm, "pixel_mm")
        sig = 1.5 * float(case.grid.spacing.max()) if sigma_mm is None else _positive(sigma_mm, "sigma_mm")
        centre, half = splat_window(pts, sigma_mm=sig)
        first3d = 3 + 2 * len(names)
        for i, (p, colour) in enumerate(zip(pts, [TRUE_COLOUR] + [colours[m] for m in names])):
            img = splat_rgb(p, view_deg=view_deg, pixel_mm=pix, sigma_mm=sig, colour=colour,
                            centre_mm=centre, half_size_mm=half)
            ax[first3d + i].imshow(img, interpolation="bilinear")
        for i, m in enumerate(names):
            ax[first3d + 1 + i].set_xlabel(f"IoU {case.iou.get(m, float('nan')):.2f}", fontsize=8)
        for j, a in enumerate(ax):
            if row == 0:
                a.set_title(titles[j], fontsize=9)
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    return fig


def turntable_figure(
    named_points: Sequence[tuple[str, np.ndarray, str]],
    *,
    angles_deg: Sequence[float] = (0.0, 45.0, 90.0, 135.0, 180.0),
    pixel_mm: float = 2.0,
    sigma_mm: float = 3.0,
    panel_size: tuple[float, float] = (1.5, 3.6),
):
    """Gaussian renderings of several point clouds (rows) from several angles (columns).

    Parameters
    ----------
    named_points : ``(label, (N, 3) points_mm, colour)`` per row; all rows share one window.
    angles_deg : view angles, degrees (:func:`gaussian_splat`).
    """
    import matplotlib.pyplot as plt

    rows = list(named_points)
    if not rows:
        raise InvalidArgumentError("turntable_figure needs at least one point cloud")
    angles = [float(a) for a in angles_deg]
    if not angles:
        raise InvalidArgumentError("angles_deg must hold at least one angle")
    centre, half = splat_window([p for _, p, _ in rows], sigma_mm=sigma_mm)
    fig, axes = plt.subplots(len(rows), len(angles), squeeze=False,
                             figsize=(panel_size[0] * len(angles), panel_size[1] * len(rows)))
    for i, (label, p, colour) in enumerate(rows):
        for j, a in enumerate(angles):
            axes[i, j].imshow(splat_rgb(p, view_deg=a, pixel_mm=pixel_mm, sigma_mm=sigma_mm, colour=colour,
                                        centre_mm=centre, half_size_mm=half), interpolation="bilinear")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"{a:.0f} deg", fontsize=9)
        axes[i, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig


def case_meshes(case: QualitativeCase, *, models: Sequence[str] | None = None,
                step_size: int = 2) -> list[SpineMesh]:
    """Surface meshes of a case's true and predicted spines for the Plotly figures.

    ``step_size`` > 1 decimates marching cubes (``reconstruct.surface_mesh``) so that the
    HTML stays light.
    """
    (case,), names = _check_cases([case], models)
    if isinstance(step_size, bool) or int(step_size) != step_size or int(step_size) < 1:
        raise InvalidArgumentError(f"step_size must be a positive integer, got {step_size!r}")
    colours = _model_colours(names)
    v, f = surface_mesh(case.true_mask, case.grid, step_size=int(step_size))
    # float32 vertices halve the figure's payload
    out = [SpineMesh(v.astype(np.float32), f, "true", TRUE_COLOUR)]
    for m in names:
        v, f = surface_mesh(case.pred_masks[m], case.grid, step_size=int(step_size))
        out.append(SpineMesh(v.astype(np.float32), f, m, colours[m]))
    return out


