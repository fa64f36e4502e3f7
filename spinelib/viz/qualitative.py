"""The paper's qualitative figure (Figure 5) and the other pictures of qualitative cases.

Figure 5 of the paper shows test subjects of increasing scoliosis severity, one per row:
the input DXA, the true and the predicted sagittal curves, the true and the predicted
spine masks over an MRI sagittal slice, and the true and the predicted 3D spines drawn
as Gaussian renderings. Here, from the rows' :class:`~spinelib.viz.qualitative_case.QualitativeCase`:

- :func:`figure5` draws the rows ordered by the Cobb angle of the true curves, the 3D
  spines rendered by :func:`spinelib.viz.splat.splat_rgb`;
- :func:`turntable_figure` renders point clouds from several view angles;
- :func:`case_meshes` gives a case's spines as meshes for the Plotly figures
  (:mod:`spinelib.viz.spine3d`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..shape.reconstruct import surface_mesh
from .qualitative_case import QualitativeCase
from .spine3d import PRED_COLOUR, TRUE_COLOUR, SpineMesh
from ..io.checks import check_integer, check_positive
from .splat import mask_surface_points, splat_rgb, splat_window

__all__ = ["figure5", "turntable_figure", "case_meshes"]

#: Colours of models other than the paper's in the figures (the paper's model is orange).
_MODEL_COLOURS = (PRED_COLOUR, "#55a868", "#c44e52", "#8172b3", "#937860")


def _norm(img: np.ndarray) -> np.ndarray:
    """``img`` scaled to [0, 1] by its 99.5th percentile (zeros when that is not positive)."""
    hi = float(np.percentile(img, 99.5)) if img.size else 0.0
    return np.clip(img / hi, 0, 1) if hi > 0 else np.zeros_like(img)


def _model_colours(models: Sequence[str]) -> dict[str, str]:
    """Model name -> colour, in :data:`_MODEL_COLOURS` order."""
    return {m: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, m in enumerate(models)}


def _check_cases(cases: Sequence[QualitativeCase], models: Sequence[str] | None) -> tuple[list, list[str]]:
    """The cases as a list and the models to show (default: the first case's), each predicted in every case."""
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


def _draw_dxa(a, case: QualitativeCase) -> None:
    """The input DXA's bone channel, cropped to the spine with some context."""
    sr, sc = case.dxa_spacing_mm
    top, bottom = case.true.extent_mm
    centre_col = float(np.median(case.true.values[1]))
    a.imshow(_norm(case.dxa_bone), cmap="gray", interpolation="bilinear",
             extent=(-0.5 * sc, (case.dxa_bone.shape[1] - 0.5) * sc,
                     (case.dxa_bone.shape[0] - 0.5) * sr, -0.5 * sr))
    a.set_xlim(centre_col - 90, centre_col + 90)
    a.set_ylim(bottom + 50, top - 50)
    a.set_ylabel(f"{case.subject_id}\nCobb {case.cobb_deg:.1f} deg", fontsize=9)


def _draw_sagittal(axes, case: QualitativeCase, names: Sequence[str], colours: dict[str, str]) -> None:
    """True sagittal curves, then each model's (the true boundaries dotted), on one depth range."""
    v_true, lv_true = case.true.values, case.true.levels_mm
    top, bottom = case.true.extent_mm
    d_lo = min(float(v_true[3].min()), *(float(case.preds[m].values[3].min()) for m in names)) - 15
    d_hi = max(float(v_true[5].max()), *(float(case.preds[m].values[5].max()) for m in names)) + 15
    curve_axes = [(axes[0], case.true, TRUE_COLOUR, False)]
    curve_axes += [(axes[1 + i], case.preds[m], colours[m], True) for i, m in enumerate(names)]
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


def _draw_masks(axes, case: QualitativeCase, names: Sequence[str], colours: dict[str, str]) -> None:
    """True mask, then each model's, over the MRI sagittal slice."""
    from matplotlib.colors import to_rgb

    ext = (case.slice_depth_mm[0], case.slice_depth_mm[-1], case.slice_rows_mm[-1], case.slice_rows_mm[0])
    mask_axes = [(axes[0], case.true_slice, TRUE_COLOUR)]
    mask_axes += [(axes[1 + i], case.pred_slices[m], colours[m]) for i, m in enumerate(names)]
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


def _draw_splats(axes, case: QualitativeCase, names: Sequence[str], colours: dict[str, str], view_deg: float,
                 pixel_mm: float | None, sigma_mm: float | None) -> None:
    """True 3D spine, then each model's, as Gaussian renderings on one window (sizes compare)."""
    pts = [mask_surface_points(case.true_mask, case.grid)]
    pts += [mask_surface_points(case.pred_masks[m], case.grid) for m in names]
    pix = float(case.grid.spacing.min()) if pixel_mm is None else check_positive(pixel_mm, "pixel_mm")
    sig = 1.5 * float(case.grid.spacing.max()) if sigma_mm is None else check_positive(sigma_mm, "sigma_mm")
    centre, half = splat_window(pts, sigma_mm=sig)
    for i, (p, colour) in enumerate(zip(pts, [TRUE_COLOUR] + [colours[m] for m in names])):
        img = splat_rgb(p, view_deg=view_deg, pixel_mm=pix, sigma_mm=sig, colour=colour,
                        centre_mm=centre, half_size_mm=half)
        axes[i].imshow(img, interpolation="bilinear")
    for i, m in enumerate(names):
        axes[1 + i].set_xlabel(f"IoU {case.iou.get(m, float('nan')):.2f}", fontsize=8)


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
    view_deg : camera angle of the 3D panels (see :func:`spinelib.viz.splat.gaussian_splat`).
    pixel_mm, sigma_mm : splat resolution and Gaussian size (default: the grid spacing and
        1.5 times it).
    panel_width, row_height : size of a panel's column and of a row, inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    cl, names = _check_cases(cases, models)
    cl = sorted(cl, key=lambda c: c.cobb_deg)
    colours = _model_colours(names)
    titles = (["input DXA", "true sagittal"] + [f"{m}\nsagittal" for m in names] + ["true mask"]
              + [f"{m}\nmask" for m in names] + ["true 3D"] + [f"{m}\n3D" for m in names])
    n_cols, k = len(titles), len(names)
    fig, axes = plt.subplots(len(cl), n_cols, figsize=(panel_width * n_cols, row_height * len(cl)), squeeze=False)
    for row, case in enumerate(cl):
        ax = axes[row]
        _draw_dxa(ax[0], case)
        _draw_sagittal(ax[1:2 + k], case, names, colours)
        _draw_masks(ax[2 + k:3 + 2 * k], case, names, colours)
        _draw_splats(ax[3 + 2 * k:], case, names, colours, view_deg, pixel_mm, sigma_mm)
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
    angles_deg : view angles, degrees (:func:`spinelib.viz.splat.gaussian_splat`).
    pixel_mm, sigma_mm : as :func:`~spinelib.viz.splat.splat_rgb`; ``panel_size`` : (width, height) of a panel, inches.
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
    check_integer(step_size, "step_size", 1)
    colours = _model_colours(names)
    v, f = surface_mesh(case.true_mask, case.grid, step_size=int(step_size))
    # float32 vertices halve the figure's payload
    out = [SpineMesh(v.astype(np.float32), f, "true", TRUE_COLOUR)]
    for m in names:
        v, f = surface_mesh(case.pred_masks[m], case.grid, step_size=int(step_size))
        out.append(SpineMesh(v.astype(np.float32), f, m, colours[m]))
    return out


