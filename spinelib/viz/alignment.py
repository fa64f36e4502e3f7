"""Figures of the alignment section: the paper's Figure 2 and the curve targets.

The MRI maps are warped into the DXA's pixel grid through a candidate transform, so
every panel is drawn in DXA coordinates (row 0 superior, column 0 patient's right).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..shape.curves import SpineCurves
from ..errors import ShapeError
from ..spine import column_mask
from ..geometry.transform import PlanarTransform, apply2d, coronal_affine, dxa_pixel_to_mri
from ..shape.frame import SubjectFrame

__all__ = ["warp_coronal_to_dxa", "figure2", "plot_targets"]


def warp_coronal_to_dxa(map_ik: np.ndarray, affine: np.ndarray, transform: PlanarTransform,
                        dxa_shape: tuple[int, int], dxa_spacing: Sequence[float], *, order: int = 1) -> np.ndarray:
    """Resample an MRI coronal map (indexed ``[i, k]``, e.g. ``vol.mean(axis=1)``) into the
    DXA pixel grid through ``transform``; outside the MRI is 0.

    Returns
    -------
    (rows, cols) float32 array aligned with the DXA image.
    """
    m = np.asarray(map_ik, dtype=np.float32)
    if m.ndim != 2:
        raise ShapeError(f"map_ik must be 2D, got {m.shape}")
    pix_to_ik = np.linalg.inv(coronal_affine(affine)) @ dxa_pixel_to_mri(transform, dxa_shape, dxa_spacing)
    return ndimage.affine_transform(m, pix_to_ik[:2, :2], offset=pix_to_ik[:2, 2],
                                    output_shape=tuple(dxa_shape), order=order, mode="constant").astype(np.float32)


def _norm(img: np.ndarray) -> np.ndarray:
    hi = np.percentile(img, 99.5)
    return np.clip(img / hi, 0, 1) if hi > 0 else img


def _overlay(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DXA in green, MRI in magenta: aligned structures turn grey-white."""
    a, b = _norm(a), _norm(b)
    return np.stack([b, a, b], axis=-1)


def figure2(dxa, fat: np.ndarray, water: np.ndarray, seg: np.ndarray, affine: np.ndarray,
            stage1: PlanarTransform, stage2: PlanarTransform, *, title: str = ""):
    """The paper's Figure 2 for one subject, five panels.

    DXA; the original MRI coronal projection (its own grid); overlay after stage 1;
    overlay of the segmented spines after stage 1; overlay after stage 2.
    """
    import matplotlib.pyplot as plt

    shape, sp = dxa.shape, tuple(dxa.pixel_spacing_mm)
    body = (fat + water).mean(axis=1)
    spine = column_mask(seg).sum(axis=1).astype(np.float32)
    aff2 = coronal_affine(affine)
    fig, axes = plt.subplots(1, 5, figsize=(15, 5.4))
    extent_dxa = (-0.5, shape[1] - 0.5, shape[0] - 0.5, -0.5)
    axes[0].imshow(_norm(dxa.tissue + 10 * dxa.bone), cmap="gray", extent=extent_dxa)
    axes[0].set_title("DXA")
    # MRI projection shown as the DXA is: superior up, patient's right on the left
    x = aff2[0, 2] + aff2[0, 0] * np.arange(body.shape[0])
    z = aff2[1, 2] + aff2[1, 1] * np.arange(body.shape[1])
    axes[1].imshow(body.T[::-1, ::-1], cmap="gray", extent=(x[-1], x[0], z[0], z[-1]))
    axes[1].set_title("MRI coronal projection")
    axes[2].imshow(_overlay(dxa.tissue, warp_coronal_to_dxa(body, affine, stage1, shape, sp)), extent=extent_dxa)
    axes[2].set_title("after stage 1 (image)")
    axes[3].imshow(_overlay(dxa.bone, warp_coronal_to_dxa(spine, affine, stage1, shape, sp)), extent=extent_dxa)
    axes[3].set_title("spines after stage 1")
    axes[4].imshow(_overlay(dxa.bone, warp_coronal_to_dxa(spine, affine, stage2, shape, sp)), extent=extent_dxa)
    axes[4].set_title("spines after stage 2")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_targets(dxa, fat: np.ndarray, affine: np.ndarray, transform: PlanarTransform, table_y_mm: float,
                 curves: SpineCurves, *, title: str = ""):
    """The six curve targets: coronal curves over the DXA, sagittal curves over an MRI
    sagittal projection (a slab around the spine), both in mm."""
    import matplotlib.pyplot as plt

    frame = SubjectFrame(transform, tuple(dxa.shape), tuple(float(v) for v in dxa.pixel_spacing_mm), table_y_mm)
    sp = np.asarray(frame.dxa_spacing, dtype=float)
    lv = curves.levels_mm
    v = curves.values
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 6), gridspec_kw=dict(width_ratios=[1.3, 1]))
    a0.imshow(_norm(dxa.bone), cmap="gray",
              extent=(-0.5 * sp[1], (dxa.shape[1] - 0.5) * sp[1], (dxa.shape[0] - 0.5) * sp[0], -0.5 * sp[0]))
    for i, style in zip(range(3), ("-", "--", "-")):
        a0.plot(v[i], lv, style, color="tab:orange", lw=1.2)
    a0.set_title("coronal targets on DXA")
    a0.set_xlabel("column (mm)")
    a0.set_ylabel("row (mm)")
    # where the spine centre of each level lies in the MRI, to pick the sagittal slab and z
    pix = np.stack([lv / sp[0], v[1] / sp[1]], axis=1)
    xz = apply2d(frame.dxa_pixel_to_mri(), pix)
    inv = np.linalg.inv(affine)
    i_idx = (inv[0, 0] * xz[:, 0] + inv[0, 3]).round().astype(int)
    lo, hi = max(i_idx.min() - 3, 0), min(i_idx.max() + 4, fat.shape[0])
    sag = fat[lo:hi].mean(axis=0)  # (j, k): y, z
    y = affine[1, 3] + affine[1, 1] * np.arange(fat.shape[1]) - frame.table_y_mm
    z = affine[2, 3] + affine[2, 2] * np.arange(fat.shape[2])
    a1.imshow(_norm(sag.T[::-1]), cmap="gray", extent=(y[0], y[-1], z[0], z[-1]), aspect="equal")
    for i, style in zip(range(3, 6), ("-", "--", "-")):
        a1.plot(v[i], xz[:, 1], style, color="tab:cyan", lw=1.2)
    a1.set_xlim(-5, max(v[5].max() + 60, 100))
    a1.set_title("sagittal targets on MRI")
    a1.set_xlabel("depth above table (mm)")
    a1.set_ylabel("z (mm)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
