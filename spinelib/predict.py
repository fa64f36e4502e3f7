"""One DXA in; curves, a 3D spine and clinical measures out.

``Predictor`` holds a trained model in memory (warm process); :func:`predict_file` is the
``spinelib predict DXA --checkpoint CKPT --out DIR`` command: it writes

- ``curves.csv``: the six curves in mm at the K levels (and each level's row-mm),
- ``spine3d.nii.gz``: the reconstructed spine column as a mask, RAS+ affine in mm,
- ``spine3d.html``: a self-contained rotating Plotly spine (opens offline),
- ``measures.json``: Cobb angle, apex level, kyphosis, lordosis, extent, and provenance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .curves import CropWindow, SpineCurves, from_crop
from .data import prepare_scan, sample_crop
from .errors import CheckpointError, InvalidArgumentError
from .io import DXAImage, read_dxa
from .metrics import clinical_measures
from .reconstruct import Grid3D, ellipse_mask, grid_for

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "frame_to_ras_affine", "predict_file", "MIN_SPINE_FOV_MM"]

#: A DXA whose field of view is shorter than this cannot hold a T1-L5 spine: its pixel
#: spacing is almost certainly wrong.
MIN_SPINE_FOV_MM = 300.0
_SPACING_RANGE_MM = (0.2, 10.0)


@dataclass(frozen=True)
class Prediction:
    """What the model says about one scan."""

    curves: SpineCurves
    crop: CropWindow
    measures: dict
    mask: np.ndarray  # bool, grid.shape
    grid: Grid3D


def frame_to_ras_affine(grid: Grid3D) -> np.ndarray:
    """(4, 4) affine from grid voxel ``(i, j, k)`` (row, col, depth) to RAS+ mm.

    Row-mm grows inferiorly (z = -row), column-mm towards the patient's left
    (x = -col), depth anteriorly (y = depth), all in the DXA's own frame.
    """
    o, s = grid.origin, grid.spacing
    aff = np.zeros((4, 4))
    aff[0, 1] = -s[1]
    aff[1, 2] = s[2]
    aff[2, 0] = -s[0]
    aff[:3, 3] = [-o[1], o[2], -o[0]]
    aff[3, 3] = 1.0
    return aff


def _check_spacing_plausible(dxa: DXAImage) -> None:
    sp = np.asarray(dxa.pixel_spacing_mm, dtype=float)
    lo, hi = _SPACING_RANGE_MM
    where = dxa.path or "DXA"
    if np.any(sp < lo) or np.any(sp > hi):
        raise InvalidArgumentError(
            f"{where}: pixel spacing {sp.tolist()} mm is outside the plausible DXA range {lo}-{hi} mm"
        )
    fov = dxa.shape[0] * sp[0]
    if fov < MIN_SPINE_FOV_MM:
        raise InvalidArgumentError(
            f"{where}: pixel spacing {sp[0]:g} mm gives a field of view of {fov:.0f} mm, too short for a "
            f"T1-L5 spine (>= {MIN_SPINE_FOV_MM:.0f} mm); check the pixel spacing"
        )


class Predictor:
    """A trained model ready to read DXA scans (load once, predict many).

    Parameters
    ----------
    model : network returning ``(B, 6 K + 2)`` crop-coordinate vectors.
    config : its :class:`spinelib.models.ModelConfig`.
    pixel_mm : the crop pixel size the model was trained at.
    grid_mm : voxel size of the reconstructed 3D mask.
    """

    def __init__(self, model: torch.nn.Module, config, *, pixel_mm: float, grid_mm: float = 2.0) -> None:
        if not (np.isfinite(pixel_mm) and pixel_mm > 0):
            raise InvalidArgumentError(f"pixel_mm must be positive, got {pixel_mm!r}")
        self.model = model.eval()
        self.config = config
        self.pixel_mm = float(pixel_mm)
        self.grid_mm = float(grid_mm)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, grid_mm: float = 2.0) -> "Predictor":
        """Load a checkpoint written by training (``best.pt``), with ``weights_only=True``."""
        from .models import load_checkpoint

        model, config, extra = load_checkpoint(path)
        if "crop_pixel_mm" not in extra:
            raise CheckpointError(f"checkpoint {path} does not record the crop pixel size it was trained at")
        return cls(model, config, pixel_mm=float(extra["crop_pixel_mm"]), grid_mm=grid_mm)

    @property
    def n_levels(self) -> int:
        return int(self.config.n_levels)

    @torch.no_grad()
    def predict(self, dxa: DXAImage, *, reconstruct: bool = True) -> Prediction:
        """Curves, measures and (optionally) the 3D mask of one scan."""
        _check_spacing_plausible(dxa)
        scan = prepare_scan(dxa, pixel_mm=self.pixel_mm, image_size=self.config.image_size,
                            lateral=self.config.views == 2)
        x = torch.from_numpy(sample_crop(scan.stack, scan.crop))[None]
        vec = self.model(x)[0].double().numpy()
        curves = from_crop(vec, scan.crop, self.n_levels)
        measures = clinical_measures(curves)
        if reconstruct:
            grid = grid_for([curves], spacing_mm=self.grid_mm, margin_mm=2.0 * self.grid_mm)
            mask = ellipse_mask(curves, grid)
        else:
            grid, mask = Grid3D((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 1, 1)), np.zeros((1, 1, 1), bool)
        return Prediction(curves=curves, crop=scan.crop, measures=measures, mask=mask, grid=grid)


def write_prediction(pred: Prediction, out_dir: str | Path, *, source: str = "", model: str = "") -> dict[str, Path]:
    """Write the four outputs of a prediction into ``out_dir``; returns their paths."""
    import pandas as pd

    from .atomic import atomic_path, ensure_writable_dir, write_json_atomic
    from .io import write_nifti
    from .reconstruct import surface_mesh
    from .spine import CURVE_NAMES
    from .viz.spine3d import PRED_COLOUR, SpineMesh, rotating_spines_figure, write_figure_html

    out = ensure_writable_dir(out_dir, min_free_mb=20)
    paths = {k: out / n for k, n in (("curves", "curves.csv"), ("mask", "spine3d.nii.gz"),
                                      ("html", "spine3d.html"), ("measures", "measures.json"))}
    c = pred.curves
    table = pd.DataFrame({"level": np.arange(c.n_levels), "level_row_mm": c.levels_mm,
                          **{n: c.values[i] for i, n in enumerate(CURVE_NAMES)}})
    with atomic_path(paths["curves"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    write_nifti(paths["mask"], pred.mask.astype(np.uint8), frame_to_ras_affine(pred.grid))
    verts, faces = surface_mesh(pred.mask, pred.grid)
    fig = rotating_spines_figure([SpineMesh(verts, faces, "predicted spine", PRED_COLOUR)],
                                 title=f"Predicted 3D spine{': ' + source if source else ''}")
    write_figure_html(fig, paths["html"], self_contained=True)
    write_json_atomic(paths["measures"], {
        **{k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in pred.measures.items()},
        "extent_mm": [float(v) for v in c.extent_mm],
        "spine_length_mm": float(c.extent_mm[1] - c.extent_mm[0]),
        "n_levels": c.n_levels,
        "crop": {"row0": pred.crop.row0, "col0": pred.crop.col0, "rows": pred.crop.rows,
                 "cols": pred.crop.cols, "pixel_mm": pred.crop.pixel_mm},
        "source": source, "model": model,
    })
    return paths


def predict_file(dxa_path: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                 allow_pickle: bool = False, pixel_spacing_mm=None) -> dict[str, Path]:
    """``spinelib predict``: read a DXA file, predict, write the four outputs."""
    predictor = Predictor.from_checkpoint(checkpoint)
    dxa = read_dxa(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm)
    if predictor.config.views == 2 and not dxa.has_lateral:
        raise InvalidArgumentError(
            f"{dxa_path}: the checkpoint is a biplanar model that needs a lateral view, which this file lacks"
        )
    pred = predictor.predict(dxa)
    paths = write_prediction(pred, out_dir, source=Path(dxa_path).name, model=predictor.config.describe())
    log.info("prediction for %s written to %s", dxa_path, Path(out_dir))
    return paths
