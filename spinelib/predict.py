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
from .errors import CheckpointError, InvalidArgumentError, UnreadableFileError
from .io import DXAImage, read_dxa
from .metrics import clinical_measures
from .reconstruct import Grid3D, ellipse_mask, grid_for

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "frame_to_ras_affine", "predict_file", "write_prediction",
           "MIN_SPINE_FOV_MM", "MAX_FOV_MM", "PLAUSIBLE_CROP_RANGE"]

#: A DXA whose field of view is shorter than this cannot hold a T1-L5 spine: its pixel
#: spacing is almost certainly wrong.
MIN_SPINE_FOV_MM = 300.0
#: A whole-body DXA is about 2 m tall; a field of view beyond this means a wrong spacing.
MAX_FOV_MM = 2500.0
_SPACING_RANGE_MM = (0.2, 10.0)
#: Network outputs (crop coordinates) outside this range put the spine more than a quarter
#: of the crop outside the crop placed on it: the input is not what the model knows.
PLAUSIBLE_CROP_RANGE = (-0.25, 1.25)


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
    if not isinstance(grid, Grid3D):
        raise InvalidArgumentError(f"grid must be a Grid3D, got {type(grid).__name__}")
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
    if max(fov, dxa.shape[1] * sp[1]) > MAX_FOV_MM:
        raise InvalidArgumentError(
            f"{where}: pixel spacing {sp.tolist()} mm gives a field of view of "
            f"{dxa.shape[0] * sp[0]:.0f} x {dxa.shape[1] * sp[1]:.0f} mm, larger than any DXA "
            f"(<= {MAX_FOV_MM:.0f} mm); check the pixel spacing"
        )


class Predictor:
    """A trained model ready to read DXA scans (load once, predict many).

    Parameters
    ----------
    model : network returning ``(B, 6 K + 2)`` crop-coordinate vectors.
    config : its :class:`spinelib.models.ModelConfig`.
    pixel_mm : the crop pixel size (mm) the model was trained at.
    grid_mm : voxel size (mm) of the reconstructed 3D mask.
    num_threads : torch intra-op threads to use (a process-wide setting); ``None`` leaves
        torch's setting alone. On a machine shared with other busy processes one thread
        is often faster than several.

    The model is switched to eval mode and to channels-last memory format in place.

    Notes
    -----
    The first forward pass of a process is several times slower than the next ones
    (oneDNN builds its kernels for the input shape); :meth:`warmup` pays that cost up
    front, e.g. in a server before the first request.
    """

    def __init__(self, model: torch.nn.Module, config, *, pixel_mm: float, grid_mm: float = 2.0,
                 num_threads: int | None = None) -> None:
        from .models import ModelConfig

        if not isinstance(model, torch.nn.Module):
            raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, ModelConfig):
            raise InvalidArgumentError(f"config must be a ModelConfig, got {type(config).__name__}")
        for name, value in (("pixel_mm", pixel_mm), ("grid_mm", grid_mm)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
                    np.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name} must be a positive number of mm, got {value!r}")
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
                raise InvalidArgumentError(f"num_threads must be an integer >= 1 or None, got {num_threads!r}")
            torch.set_num_threads(int(num_threads))
        # oneDNN's convolutions run NHWC natively: channels-last weights and inputs make the
        # forward pass 10-40 % faster on CPU with identical results (up to rounding)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.config = config
        self.pixel_mm = float(pixel_mm)
        self.grid_mm = float(grid_mm)
        # the slab margin of the 3D grid: constant per predictor
        self._margin_mm = 2.0 * self.grid_mm

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, grid_mm: float = 2.0, num_threads: int | None = None) -> "Predictor":
        """Load a checkpoint written by training (``best.pt`` or ``last.pt``), with ``weights_only=True``.

        Raises
        ------
        MissingCheckpointError
            No such file.
        CorruptCheckpointError
            Not a readable spinelib checkpoint (random bytes, a bare state dict, ...).
        CheckpointError
            Weights that do not fit the stored configuration, another format version, or
            no (valid) record of the crop pixel size the model was trained at.
        """
        from .models import load_checkpoint

        model, config, extra = load_checkpoint(path)
        px = extra.get("crop_pixel_mm")
        if px is None:
            raise CheckpointError(f"checkpoint {path} does not record the crop pixel size it was trained at")
        try:
            px = float(px)
        except (TypeError, ValueError):
            px = float("nan")
        if not (np.isfinite(px) and px > 0):
            raise CheckpointError(f"checkpoint {path} records an invalid crop pixel size {extra.get('crop_pixel_mm')!r}")
        return cls(model, config, pixel_mm=px, grid_mm=grid_mm, num_threads=num_threads)

    @property
    def n_levels(self) -> int:
        return int(self.config.n_levels)

    @property
    def needs_lateral(self) -> bool:
        """True for the biplanar model, which needs the (synthetic) lateral view too."""
        return self.config.views == 2

    @torch.inference_mode()
    def warmup(self, repeats: int = 2) -> None:
        """Run the network ``repeats`` times on a blank crop so later calls run at full speed."""
        x = np.zeros((self.config.in_chans, *self.config.image_size), np.float32)
        for _ in range(int(repeats)):
            self.forward(x)

    @torch.inference_mode()
    def forward(self, crop: np.ndarray) -> np.ndarray:
        """The network's raw output for one crop.

        Parameters
        ----------
        crop : (C, rows, cols) float32, ``C = config.in_chans``, ``(rows, cols) = config.image_size``.

        Returns
        -------
        (6 K + 2,) float64 crop-coordinate vector.
        """
        x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None]
        return self.model(x.contiguous(memory_format=torch.channels_last))[0].double().numpy()

    def predict(self, dxa: DXAImage, *, reconstruct: bool = True) -> Prediction:
        """Curves, measures and (optionally) the 3D mask of one scan.

        Parameters
        ----------
        dxa : the scan (:func:`spinelib.io.read_dxa`); its pixel spacing must be plausible
            (field of view between :data:`MIN_SPINE_FOV_MM` and :data:`MAX_FOV_MM`).
        reconstruct : also build the 3D ellipse-per-level mask (on a ``grid_mm`` grid);
            without it, ``mask`` is a single empty voxel.

        Raises
        ------
        InvalidArgumentError
            Not a DXAImage, an implausible pixel spacing, a biplanar model given a scan
            without a lateral view, or a prediction far outside the crop
            (:data:`PLAUSIBLE_CROP_RANGE`: not a spine DXA, or another intensity scale).
        """
        if not isinstance(dxa, DXAImage):
            raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
        _check_spacing_plausible(dxa)
        if self.needs_lateral and not dxa.has_lateral:
            raise InvalidArgumentError(
                f"{dxa.path or 'DXA'}: the model is biplanar ({self.config.describe()}) and needs a lateral "
                "view, which this scan lacks"
            )
        scan = prepare_scan(dxa, pixel_mm=self.pixel_mm, image_size=self.config.image_size,
                            lateral=self.needs_lateral)
        vec = self.forward(sample_crop(scan.stack, scan.crop))
        lo, hi = PLAUSIBLE_CROP_RANGE
        if not (np.all(np.isfinite(vec)) and vec.min() >= lo and vec.max() <= hi):
            # also keeps the 3D grid, which spans the predicted curves, to a sane size
            raise InvalidArgumentError(
                f"{dxa.path or 'DXA'}: the model's prediction lies outside the crop placed on the spine "
                f"(crop coordinates {np.nanmin(vec):.3g}..{np.nanmax(vec):.3g}, plausible {lo}..{hi}); the image "
                "is probably not a spine DXA on the intensity scale the model was trained on (g/cm^2)"
            )
        curves = from_crop(vec, scan.crop, self.n_levels)
        measures = clinical_measures(curves)
        if reconstruct:
            grid = grid_for([curves], spacing_mm=self.grid_mm, margin_mm=self._margin_mm)
            mask = ellipse_mask(curves, grid)
        else:
            grid, mask = Grid3D((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 1, 1)), np.zeros((1, 1, 1), bool)
        return Prediction(curves=curves, crop=scan.crop, measures=measures, mask=mask, grid=grid)


def write_prediction(pred: Prediction, out_dir: str | Path, *, source: str = "", model: str = "") -> dict[str, Path]:
    """Write the four outputs of a prediction into ``out_dir``; returns their paths.

    ``curves``: ``curves.csv``; ``mask``: ``spine3d.nii.gz`` (uint8, affine
    :func:`frame_to_ras_affine`); ``html``: ``spine3d.html`` (plotly.js inside);
    ``measures``: ``measures.json``. Each file is written atomically.
    """
    if not isinstance(pred, Prediction):
        raise InvalidArgumentError(f"pred must be a Prediction, got {type(pred).__name__}")
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


_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz")


def predict_file(dxa_path: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                 allow_pickle: bool = False, pixel_spacing_mm=None) -> dict[str, Path]:
    """``spinelib predict``: read one DXA file, predict, write the four outputs.

    Parameters
    ----------
    dxa_path : our ``dxa.npz``, a UK Biobank preprocessing pickle (with ``allow_pickle``),
        or a PNG / TIFF image (with ``pixel_spacing_mm``).
    checkpoint : a model checkpoint written by training (``best.pt``).
    out_dir : folder for ``curves.csv``, ``spine3d.nii.gz``, ``spine3d.html``,
        ``measures.json`` (created; existing files are replaced atomically).
    allow_pickle : opt in to reading a pickle (unpickling runs code from the file).
    pixel_spacing_mm : (row, col) or one value, in mm; required for images.

    Returns
    -------
    dict ``curves``, ``mask``, ``html``, ``measures`` -> path written.

    Raises
    ------
    MissingFileError, UnreadableFileError, UnsafeLoadError, InvalidArgumentError, ...
        For a bad DXA file or spacing (:func:`spinelib.io.read_dxa`, plausibility).
    MissingCheckpointError, CorruptCheckpointError, CheckpointError
        For a bad checkpoint (:meth:`Predictor.from_checkpoint`).

    Nothing is written unless both inputs are valid.
    """
    name = Path(dxa_path).name.lower()
    if any(name.endswith(sfx) for sfx in _NIFTI_SUFFIXES):
        raise UnreadableFileError(
            f"{dxa_path} is a 3D volume (NIfTI/Analyze), not a DXA scan; give a dxa.npz, a UK Biobank "
            "DXA pickle or a PNG/TIFF image"
        )
    # the DXA first: reading it is cheap, loading the model is not
    dxa = read_dxa(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm)
    _check_spacing_plausible(dxa)
    predictor = Predictor.from_checkpoint(checkpoint)
    pred = predictor.predict(dxa)
    paths = write_prediction(pred, out_dir, source=Path(dxa_path).name, model=predictor.config.describe())
    log.info("prediction for %s written to %s", dxa_path, Path(out_dir))
    return paths
