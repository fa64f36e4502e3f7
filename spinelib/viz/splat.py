"""The Gaussian-splat renderer of 3D spines (the paper's "Gaussian renderings").

- :func:`gaussian_splat` is the renderer's core: a point cloud in the DXA-aligned frame
  ``(row_mm, col_mm, depth_mm)`` (``spinelib.shape.reconstruct``) turned about the vertical axis
  and splatted as isotropic 2D Gaussians onto an image plane (Zwicker et al., "EWA
  splatting", IEEE TVCG 2002; Kerbl et al., "3D Gaussian splatting", SIGGRAPH 2023, with
  isotropic, fixed-size Gaussians and no learning). Each Gaussian is integrated exactly over
  each pixel (separable error functions), so the image sums to the points' total weight.
- :func:`splat_rgb` composes four splats into an opaque-looking, depth-shaded picture:
  a soft z-buffer keeps the surface nearest the viewer (weighted blended order-independent
  compositing, McGuire and Bavoil, JCGT 2013), its nearness sets the brightness, and the
  Gaussians' summed density sets the coverage.
- :func:`splat_window` fits one image window to several clouds at every angle, so that
  renderings compare; :func:`mask_surface_points` turns a 3D mask into the cloud to render.

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

from typing import Any, Sequence

import numpy as np
from scipy.special import erf

from ..errors import EmptySegmentationError, InvalidArgumentError, NonFiniteError, ShapeError
from ..io.checks import check_number, check_positive
from ..metrics.surface import surface_voxels
from ..shape.reconstruct import Grid3D
from .spine3d import TRUE_COLOUR

__all__ = ["SPLAT_MARGIN_SIGMAS", "gaussian_splat", "splat_window", "splat_rgb", "mask_surface_points"]

#: Margin of the default image window around the points, in Gaussian sigmas: beyond 4 sigma
#: a Gaussian's mass is below 1e-4 per side, so the image keeps the points' total weight.
SPLAT_MARGIN_SIGMAS = 4.0

#: Direction of the light (image right, up, towards the viewer): above the viewer's left shoulder.
_LIGHT = np.array([-0.4, 0.5, 1.0]) / np.linalg.norm([-0.4, 0.5, 1.0])


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------


def _points(points_mm: Any, name: str = "points_mm") -> np.ndarray:
    """(N, 3) finite float points, N >= 1."""
    p = np.asarray(points_mm, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ShapeError(f"{name} must have shape (N, 3) = (row_mm, col_mm, depth_mm), got {p.shape}")
    if p.shape[0] == 0:
        raise InvalidArgumentError(f"{name} is empty: nothing to render")
    if not np.all(np.isfinite(p)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return p


def _angle(view_deg: Any) -> float:
    """``view_deg`` in radians."""
    a = check_number(view_deg, "view_deg")
    if not np.isfinite(a):
        raise NonFiniteError(f"view_deg must be finite, got {view_deg!r}")
    return np.deg2rad(a)


def _weights(weights: Any, n: int) -> np.ndarray:
    """(n,) non-negative finite weights, 1 each by default."""
    if weights is None:
        return np.ones(n)
    wts = np.asarray(weights, dtype=float)
    if wts.shape != (n,):
        raise ShapeError(f"weights must have shape ({n},), got {wts.shape}")
    if not np.all(np.isfinite(wts)):
        raise NonFiniteError("weights hold NaN or infinite values")
    if np.any(wts < 0):
        raise InvalidArgumentError("weights must be non-negative")
    return wts


def _shading(depth_shading: Any) -> float:
    """``depth_shading`` as a float in [0, 1]."""
    shading = check_number(depth_shading, "depth_shading")
    if not 0.0 <= shading <= 1.0:
        raise InvalidArgumentError(f"depth_shading must be in [0, 1], got {depth_shading!r}")
    return shading


def _centre(centre_mm: Any, p: np.ndarray, sigma: float) -> np.ndarray:
    """(3,) rotation centre: ``centre_mm``, or the middle of the cloud's bounding box."""
    centre = splat_window([p], sigma_mm=sigma)[0] if centre_mm is None else np.asarray(centre_mm, dtype=float)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ShapeError(f"centre_mm must be 3 finite values, got {np.asarray(centre_mm).tolist()}")
    return centre


def _half(half_size_mm: Any, p: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """(2,) half height and half width (mm): ``half_size_mm``, or a window that fits ``p``."""
    half = _half_size(p, centre, sigma) if half_size_mm is None else np.asarray(half_size_mm, dtype=float)
    if half.shape != (2,) or not np.all(np.isfinite(half)) or np.any(half <= 0):
        raise InvalidArgumentError(f"half_size_mm must be 2 positive values, got {np.asarray(half_size_mm).tolist()}")
    return half


def _surface_colours(ambient: Any, colour: Any, background: Any) -> tuple[np.ndarray, np.ndarray]:
    """(3,) RGB of the surface and of the background, both in [0, 1]."""
    from matplotlib.colors import to_rgb

    if not 0.0 <= float(ambient) <= 1.0:
        raise InvalidArgumentError(f"ambient must be in [0, 1], got {ambient!r}")
    try:
        rgb = np.array(to_rgb(colour))
    except ValueError:
        raise InvalidArgumentError(f"colour {colour!r} is not a matplotlib colour") from None
    bg = np.asarray(background, dtype=float)
    if bg.shape != (3,) or np.any(bg < 0) or np.any(bg > 1):
        raise InvalidArgumentError(f"background must be 3 values in [0, 1], got {list(np.ravel(bg))}")
    return rgb, bg


# ---------------------------------------------------------------------------------------
# Geometry of a view
# ---------------------------------------------------------------------------------------


def _view_coords(p: np.ndarray, centre: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical, horizontal and towards-the-viewer coordinates (mm) about ``centre``."""
    c, d = p[:, 1] - centre[1], p[:, 2] - centre[2]
    u = c * np.cos(theta) + d * np.sin(theta)
    w = -c * np.sin(theta) + d * np.cos(theta)
    return p[:, 0] - centre[0], u, w


def _nearness(toward: np.ndarray) -> np.ndarray:
    """(N,) nearness to the viewer within the cloud: 1 nearest, 0 farthest (all 1 when flat)."""
    span = float(toward.max() - toward.min())
    return (toward - toward.min()) / span if span > 0 else np.ones_like(toward)


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
    sigma = check_positive(sigma_mm, "sigma_mm")
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


# ---------------------------------------------------------------------------------------
# Splatting
# ---------------------------------------------------------------------------------------


def _pixel_integrals(r: np.ndarray, u: np.ndarray, wts: np.ndarray, half: np.ndarray, pix: float,
                     sigma: float) -> np.ndarray:
    """(H, W) sum of the weighted Gaussians at view coordinates ``(r, u)``, each integrated
    over each pixel of the window ``half`` (mm) centred on the middle pixel."""
    n_half = np.ceil(half / pix - 1e-9).astype(int)
    h, w = (2 * n_half + 1).tolist()
    # the exact integral of a Gaussian over [a, b] is (erf(b') - erf(a')) / 2, x' = x / (sigma sqrt 2)
    s2 = sigma * np.sqrt(2.0)
    edges_r = (np.arange(h + 1) - n_half[0] - 0.5) * pix
    edges_u = (np.arange(w + 1) - n_half[1] - 0.5) * pix
    gr = np.diff(erf((edges_r[None, :] - r[:, None]) / s2), axis=1) * 0.5  # (N, H)
    gu = np.diff(erf((edges_u[None, :] - u[:, None]) / s2), axis=1) * 0.5  # (N, W)
    return (gr * wts[:, None]).T @ gu


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
    pixel_mm, sigma_mm : pixel size of the image and standard deviation of every Gaussian, mm.
    weights : (N,) non-negative weights (default 1 per point).
    depth_shading : in [0, 1]; each weight is multiplied by ``1 - depth_shading +
        depth_shading * n_i``, ``n_i`` in [0, 1] the point's nearness to the viewer within
        the cloud (1 nearest). 0 leaves the weights as given.
    centre_mm : (3,) rotation centre and middle of the image (default: the middle of the
        cloud's bounding box); ``half_size_mm`` : (2,) half height and half width of the
        window in mm (default: fits the cloud at every angle). See :func:`splat_window`.

    Returns
    -------
    (H, W) float64 image, weight per pixel, ``H = 2 ceil(half_height / pixel_mm) + 1`` and
    likewise ``W``: pixel ``(i, j)`` is centred at ``row_mm = centre[0] + (i - H // 2)
    pixel_mm`` and ``u = (j - W // 2) pixel_mm``, so the centre falls on the middle pixel.

    Raises
    ------
    ShapeError, NonFiniteError, InvalidArgumentError
        Points not (N, 3), non-finite, or empty; weights of another length or negative;
        non-positive ``pixel_mm`` / ``sigma_mm`` / window; ``depth_shading`` out of [0, 1].
    """
    p = _points(points_mm)
    theta = _angle(view_deg)
    pix = check_positive(pixel_mm, "pixel_mm")
    sigma = check_positive(sigma_mm, "sigma_mm")
    wts = _weights(weights, len(p))
    shading = _shading(depth_shading)
    centre = _centre(centre_mm, p, sigma)
    half = _half(half_size_mm, p, centre, sigma)
    r, u, toward = _view_coords(p, centre, theta)
    if shading > 0:
        wts = wts * (1.0 - shading + shading * _nearness(toward))
    return _pixel_integrals(r, u, wts, half, pix, sigma)


def _visible_surface(p: np.ndarray, toward: np.ndarray, soft: float, kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) nearness and depth map (mm in front of the farthest point) of the surface
    nearest the viewer, through a soft z-buffer of depth scale ``soft`` (mm); ``kw`` holds
    the view's :func:`gaussian_splat` arguments."""
    # exp underflows to exactly 0 far behind the front; clip keeps it representable
    front = np.exp(np.clip((toward - toward.max()) / soft, -700.0, 0.0))
    den = gaussian_splat(p, weights=front, **kw)
    tiny = np.finfo(float).tiny * 1e6
    seen = den > tiny
    safe = np.maximum(den, tiny)
    nearness = np.where(seen, gaussian_splat(p, weights=front * _nearness(toward), **kw) / safe, 0.0)
    # the depth map is only defined where some point is seen; elsewhere it takes the
    # farthest depth, so the silhouette reads as a steep (dark) rim
    zmap = np.where(seen, gaussian_splat(p, weights=front * (toward - toward.min()), **kw) / safe, 0.0)
    return nearness, zmap


def _lambert(zmap: np.ndarray, pix: float) -> np.ndarray:
    """(H, W) Lambert term in [0, 1] of the depth map's surface lit from :data:`_LIGHT`."""
    dz_dr, dz_du = np.gradient(zmap, pix)
    normal = np.stack([-dz_du, dz_dr, np.ones_like(zmap)], axis=-1)  # (u, up, towards viewer)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return np.clip(normal @ _LIGHT, 0.0, 1.0)


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
    colour : matplotlib colour of the surface; ``background`` : RGB in [0, 1].
    opacity : > 0, opacity of one Gaussian (see above).
    softness_mm : > 0, depth scale of the soft z-buffer (default ``sigma_mm``).
    ambient : in [0, 1], brightness of the farthest points.

    Returns
    -------
    (H, W, 3) float RGB in [0, 1], on the pixel grid of :func:`gaussian_splat`.
    """
    p = _points(points_mm)
    theta = _angle(view_deg)
    sigma = check_positive(sigma_mm, "sigma_mm")
    pix = check_positive(pixel_mm, "pixel_mm")
    op = check_positive(opacity, "opacity")
    soft = sigma if softness_mm is None else check_positive(softness_mm, "softness_mm")
    rgb, bg = _surface_colours(ambient, colour, background)
    centre = _centre(centre_mm, p, sigma)
    _, _, toward = _view_coords(p, centre, theta)
    kw = dict(view_deg=view_deg, pixel_mm=pix, sigma_mm=sigma, centre_mm=centre, half_size_mm=half_size_mm)
    nearness, zmap = _visible_surface(p, toward, soft, kw)
    lambert = _lambert(zmap, pix)
    density = gaussian_splat(p, **kw) / pix**2  # points per mm^2
    bright = float(ambient) + (1.0 - float(ambient)) * (0.7 * lambert + 0.3 * nearness)
    alpha = 1.0 - np.exp(-op * 2.0 * np.pi * sigma**2 * density)
    out = alpha[..., None] * bright[..., None] * rgb + (1.0 - alpha[..., None]) * bg
    return np.clip(out, 0.0, 1.0)


def mask_surface_points(mask: np.ndarray, grid: Grid3D) -> np.ndarray:
    """(N, 3) frame mm ``(row_mm, col_mm, depth_mm)`` of the voxels on a mask's surface.

    A surface voxel is a voxel of the mask with at least one of its six face neighbours
    outside it (or outside the grid); its centre is ``grid.origin + index * spacing``.

    Raises
    ------
    InvalidArgumentError, ShapeError, EmptySegmentationError
        ``grid`` not a :class:`Grid3D`, ``mask`` not boolean or not of ``grid.shape``, or empty.
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
    idx = np.argwhere(surface_voxels(m))
    return grid.origin + idx * grid.spacing
