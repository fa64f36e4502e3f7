"""Two-stage DXA <-> MRI planar alignment (paper, Figure 2; Windsor et al. 2021).

The alignment is the three-parameter rigid transform of :mod:`spinelib.geometry.transform`
(``theta_deg, tx_mm, ty_mm``: DXA frame -> MRI coronal plane ``(x, z)``), found in two
stages, both by normalised cross-correlation (NCC) computed with FFTs:

1. *Image level.* A DXA and an MRI share no intensities, but both measure how much
   tissue the AP ray crosses: the DXA ``tissue`` channel is areal soft-tissue density
   (g/cm^2, about body thickness in cm) and the MRI body mask summed along ``y`` is a
   tissue thickness in mm. The two thickness maps are correlated on a common mm grid
   over a range of rotation angles, coarse to fine; for every angle the best
   translation is the peak of the NCC map.
2. *Spine level.* Around the stage-1 result, the coronal projection of the MRI spine
   labels is matched against the DXA ``bone`` channel inside a band of about 40 mm
   around the spine line (ribs and pelvis outside the band are ignored), with a small
   search in angle and translation and a sub-pixel peak.

Both NCCs are *masked* (Padfield 2012): each image has a validity mask (its field of
view; for stage 2 the band) and every shift is normalised over the overlap only, so
that two different fields of view compare fairly.

Internal maps ("world maps") are 2D arrays indexed ``[iz, ix]`` with ``z`` and ``x``
*increasing* with the index: pixel ``(iz, ix)`` is at world ``x = x0 + ix * s``,
``z = z0 + iz * s``.

References
----------
Padfield, D. "Masked object registration in the Fourier domain." IEEE TIP 21 (2012).
Windsor, R., Jamaludin, A., Kadir, T., Zisserman, A. "Self-supervised multi-modal
alignment for whole body medical imaging." MICCAI 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, ShapeError
from ..geometry.transform import PlanarTransform, check_image_spacing, coronal_affine
from .config import AlignConfig
from .features import (WorldMap, _finite_array, dxa_thickness, mri_coronal_thickness,
                       mri_spine_projection)
from .search import Hit, _stage1, refine_spine

__all__ = ["AlignmentResult", "align_pair"]


@dataclass(frozen=True)
class AlignmentResult:
    """Outcome of :func:`align_pair`.

    Attributes
    ----------
    transform : stage-2 (final) DXA frame -> MRI ``(x, z)`` transform.
    stage1 : the image-level transform.
    score : stage-2 NCC at the final transform (in [-1, 1]).
    stage1_score : stage-1 NCC of the thickness maps at ``stage1``.
    trusted : False when the result should not be used (see ``reason``).
    reason : why the result is not trusted; empty when trusted.
    """

    transform: PlanarTransform
    stage1: PlanarTransform
    score: float
    stage1_score: float
    trusted: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly record of the result."""
        out: dict[str, Any] = {f"{k}": v for k, v in self.transform.to_dict().items()}
        out.update({f"stage1_{k}": v for k, v in self.stage1.to_dict().items()})
        out.update(
            score=float(self.score),
            stage1_score=float(self.stage1_score),
            trusted=bool(self.trusted),
            reason=self.reason,
        )
        return out


def _dxa_fields(dxa: Any) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    if isinstance(dxa, dict):
        get = dxa.__getitem__
    else:
        get = lambda k: getattr(dxa, k)  # noqa: E731
    try:
        bone, tissue, spacing = get("bone"), get("tissue"), get("pixel_spacing_mm")
    except (KeyError, AttributeError) as exc:
        raise InvalidArgumentError(
            f"dxa must provide bone, tissue and pixel_spacing_mm (an io.DXAImage); missing {exc}"
        ) from None
    bone = _finite_array(bone, "DXA bone", 2)
    tissue = _finite_array(tissue, "DXA tissue", 2)
    if bone.shape != tissue.shape:
        raise ShapeError(f"DXA bone {bone.shape} and tissue {tissue.shape} differ in shape")
    return bone, tissue, check_image_spacing(tuple(np.asarray(spacing, dtype=float).ravel()))


# --------------------------------------------------------------------------- the pair
def _spine_pixel_mm(pixel_mm: float, spacing: tuple[float, float]) -> float:
    """Stage 2 works at half the stage-1 pixel, but never finer than the DXA pixel."""
    return max(0.5 * pixel_mm, min(spacing))


def align_pair(
    dxa: Any, fat: np.ndarray, water: np.ndarray, seg: np.ndarray, affine: np.ndarray,
    config: AlignConfig | None = None,
) -> AlignmentResult:
    """Align one DXA to its MRI: image level, then spine level.

    Parameters
    ----------
    dxa : an :class:`spinelib.io.DXAImage` or anything with ``bone``, ``tissue``
        (H, W) and ``pixel_spacing_mm`` (row, col) (attributes or dict keys).
    fat, water : (I, J, K) canonical RAS Dixon volumes.
    seg : (I, J, K) label volume (``spinelib.spine`` labels).
    affine : (4, 4) canonical RAS affine shared by the three volumes.
    config : the search grid, angle range and the two score thresholds
        (:class:`~spinelib.align.config.AlignConfig`; the ``default`` profile's if None).

    Returns
    -------
    AlignmentResult. A pair that can be processed but whose result is doubtful (low
    score, angle at the search bound, spine not found, blank image) comes back with
    ``trusted=False`` and the reason; it is not an exception.

    Raises
    ------
    InvalidArgumentError : ``config`` is not an AlignConfig, or a non-canonical affine.
    ShapeError : wrong dimensions or mismatched shapes.
    DTypeError : a complex or non-numeric image.
    NonFiniteError : NaN or infinite values in any image.
    EmptySegmentationError : no spine-column label in ``seg``.
    """
    if config is None:
        config = AlignConfig()
    elif not isinstance(config, AlignConfig):
        raise InvalidArgumentError(f"config must be an AlignConfig, got {type(config).__name__}")
    s, rng, ms, ms1 = config.pixel_mm, config.angle_range_deg, config.min_score, config.min_stage1_score
    bone, tissue, spacing = _dxa_fields(dxa)
    thick, spine, column = _mri_maps(fat, water, seg, affine, s, spacing)
    tissue_mm = dxa_thickness(tissue)
    centre = PlanarTransform(0.0, thick.x0 + (thick.shape[1] - 1) * s / 2, thick.z0 + (thick.shape[0] - 1) * s / 2)
    if float(np.ptp(tissue_mm)) <= 0 or float(np.ptp(thick.data)) <= 0:
        which = "DXA tissue channel" if float(np.ptp(tissue_mm)) <= 0 else "MRI body mask"
        return AlignmentResult(centre, centre, 0.0, 0.0, False, f"{which} is blank")
    hit1, at_bound = _stage1(thick, tissue_mm, spacing, rng)
    if not np.isfinite(hit1.score):
        return AlignmentResult(centre, centre, 0.0, 0.0, False, "stage 1 found no admissible overlap")
    reasons = []
    if at_bound:
        reasons.append(f"stage-1 angle {hit1.theta_deg:.2f} deg at the search bound +/-{rng:g}")
    if hit1.score < ms1:
        reasons.append(f"stage-1 score {hit1.score:.3f} below align_min_stage1_score {ms1:g}")
    return _stage2(hit1, reasons, spine, column, bone, spacing, ms)


def _mri_maps(fat: np.ndarray, water: np.ndarray, seg: np.ndarray, affine: np.ndarray, s: float,
              spacing: tuple[float, float]) -> tuple[WorldMap, WorldMap, np.ndarray]:
    """The MRI's coronal thickness map (pixel ``s`` mm) and its spine projection and column
    (:func:`~spinelib.align.features.mri_spine_projection`), every input checked."""
    affine = np.asarray(affine, dtype=float)
    coronal_affine(affine)  # validates shape and canonical form
    thick = mri_coronal_thickness(fat, water, affine, pixel_mm=s)  # validates fat and water
    seg = np.asarray(seg)
    if seg.shape != np.shape(fat):
        raise ShapeError(f"seg {seg.shape} and MRI fat {np.shape(fat)} differ in shape")
    spine, column = mri_spine_projection(seg, affine, pixel_mm=_spine_pixel_mm(s, spacing))
    return thick, spine, column


def _stage2(hit1: Hit, reasons: list[str], spine: WorldMap, column: np.ndarray, bone: np.ndarray,
            spacing: tuple[float, float], ms: float) -> AlignmentResult:
    """Stage 2 from the stage-1 hit; ``reasons`` (stage 1's doubts so far) grows with its own."""
    t1 = hit1.transform
    if float(np.ptp(bone)) <= 0:
        return AlignmentResult(t1, t1, 0.0, hit1.score, False, "; ".join(reasons + ["DXA bone channel is blank"]))
    hit2, why = refine_spine(spine, column, bone, spacing, t1)
    if not np.isfinite(hit2.score):
        reasons.append(why or "spine not found")
        return AlignmentResult(t1, t1, 0.0, hit1.score, False, "; ".join(reasons))
    if why:
        reasons.append(why)
    if hit2.score < ms:
        reasons.append(f"stage-2 score {hit2.score:.3f} below align_min_score {ms:g}")
    return AlignmentResult(hit2.transform, t1, hit2.score, hit1.score, not reasons, "; ".join(reasons))
