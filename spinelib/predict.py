"""One DXA in, or a cohort of them; curves, a 3D spine and clinical measures out.

``Predictor`` holds a trained model in memory (warm process) and reads one scan
(:meth:`Predictor.predict`) or many in batches (:meth:`Predictor.predict_batch`);
:func:`predict_file` is the ``spinelib predict DXA --checkpoint CKPT --out DIR`` command: it
writes

- ``curves.csv``: the six curves in mm at the K levels (and each level's row-mm),
- ``spine3d.nii.gz``: the reconstructed spine column as a mask, RAS+ affine in mm,
- ``spine3d.html``: a self-contained rotating Plotly spine (opens offline),
- ``measures.json``: Cobb angle, apex level, kyphosis, lordosis, extent, and provenance.

:func:`predict_scans` is the same command given a folder of DXA files, a text list of
paths or a ``manifest.csv``: one warm model, one output folder per scan, one
``measures.csv`` for the cohort and a ``failures.csv`` naming each scan that could not be
read or predicted, and why (the others go on).

Input sanity
------------
Before a scan reaches the network its pixel spacing must give a plausible field of view
(:data:`MIN_SPINE_FOV_MM` .. :data:`MAX_FOV_MM`) and the image must be head-up
(:func:`orientation_ratio`): the lungs lie beside the upper half of the spine, so the soft
tissue beside the upper half of the spine is lighter (lower g/cm^2) than beside its lower
half (abdomen). A scan whose upper half is clearly the denser one (ratio below
:data:`UPSIDE_DOWN_RATIO`) is refused with :class:`OrientationError`, whose message names
the fix (``--flip-vertical``, :func:`flip_dxa`). The rule needs a soft-tissue image distinct
from the bone image; a one-channel (grey) image cannot be checked and is used as given
(a warning is logged). A left-right mirror cannot be detected this way (the body is
nearly symmetric at this resolution); ``--flip-horizontal`` mirrors explicitly.

The paper's released checkpoint (a bare ``RegressionModel_Transformer`` state dict) is
recognised by :meth:`Predictor.from_checkpoint` and converted on the fly
(:mod:`spinelib.paper_checkpoint`, which also documents its input recipe).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from .curves import CropWindow, SpineCurves, from_crop
from .data import INPUT_SCALE, find_spine_crop, prepare_scan, resample_image, sample_crop, spine_ridge
from .errors import CheckpointError, InvalidArgumentError, SpineLibError, UnreadableFileError
from .io import DXAImage, read_dxa
from .metrics import clinical_measures
from .reconstruct import Grid3D, ellipse_mask, grid_for

if TYPE_CHECKING:
    from .workers import Engine, Shard

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "frame_to_ras_affine", "predict_file", "write_prediction", "curves_csv",
           "predict_scans", "list_scans", "CohortPrediction", "flip_dxa", "orientation_ratio",
           "check_orientation", "OrientationError", "INPUT_RECIPES", "UPSIDE_DOWN_RATIO",
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


#: Inputs a Predictor can build: ``"spinelib"`` (AP bone and tissue scaled by
#: ``data.INPUT_SCALE``, plus the lateral view for biplanar models) and the paper's
#: released model's recipe (:data:`spinelib.paper_checkpoint.PAPER_INPUT_RECIPE`).
INPUT_RECIPES: tuple[str, ...] = ("spinelib", "paper_bone_rgb")
#: :func:`orientation_ratio` below this means the scan is upside down. Head-up synthetic
#: scans give 1.15-1.49 (lungs beside the upper spine); flipped ones the inverse.
UPSIDE_DOWN_RATIO = 0.95
# the orientation check's working resolution and its bands beside the spine (mm)
_ORIENT_PX_MM = 4.0
_ORIENT_BAND_MM = (25.0, 100.0)


class OrientationError(InvalidArgumentError):
    """A scan is not head-up (its pelvis lies above its shoulders)."""


def flip_dxa(dxa: DXAImage, *, vertical: bool = False, horizontal: bool = False) -> DXAImage:
    """``dxa`` mirrored top-bottom and/or left-right (an explicit fix for a scan stored flipped).

    The vertical flip reverses the rows of every image (the lateral view shares the AP
    rows); the horizontal flip reverses the AP columns only (the lateral view's columns
    are depth). Curves predicted from the result are in the flipped image's frame: a row
    ``r`` of it is row ``H - 1 - r`` of the stored image, a column ``c`` is ``W - 1 - c``.
    """
    if not isinstance(dxa, DXAImage):
        raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
    if not vertical and not horizontal:
        return dxa

    def flip(a: np.ndarray | None, cols: bool) -> np.ndarray | None:
        if a is None:
            return None
        if vertical:
            a = a[::-1]
        if horizontal and cols:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)

    return dataclasses.replace(dxa, bone=flip(dxa.bone, True), tissue=flip(dxa.tissue, True),
                               lateral_bone=flip(dxa.lateral_bone, False),
                               lateral_tissue=flip(dxa.lateral_tissue, False))


def orientation_ratio(dxa: DXAImage) -> float | None:
    """How head-up a scan looks: soft tissue beside the lower half of the spine over the upper half.

    The spine and the rows it spans are found by :func:`spinelib.data.spine_ridge` (the
    crop is placed from the same). In bands 25-100 mm either side of it, the mean
    soft-tissue areal density of the lower half of that extent is divided by that of the
    upper half. In a head-up scan
    the lungs lie beside the upper (thoracic) half, so the ratio is above 1; upside down it
    is below 1.

    Returns
    -------
    The ratio, or ``None`` when it cannot be measured: the tissue image is the bone image
    (a grey PNG/TIFF), there is no spine ridge, or no soft tissue beside it.
    """
    if not isinstance(dxa, DXAImage):
        raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
    if dxa.bone is dxa.tissue or np.array_equal(dxa.bone, dxa.tissue):
        return None
    px = _ORIENT_PX_MM
    bone = resample_image(dxa.bone, dxa.pixel_spacing_mm, px)
    tissue = resample_image(dxa.tissue, dxa.pixel_spacing_mm, px)
    try:
        centre, top, bottom = spine_ridge(bone, pixel_mm=px)
    except InvalidArgumentError:  # no ridge at all
        return None
    if bottom - top < 3:
        return None
    mid = (top + bottom + 1) // 2
    lo, hi = (int(round(v / px)) for v in _ORIENT_BAND_MM)
    cols = np.r_[max(0, centre - hi): max(0, centre - lo), min(tissue.shape[1], centre + lo): min(tissue.shape[1], centre + hi)]
    if cols.size == 0:
        return None
    beside = tissue[:, cols].mean(axis=1)
    upper, lower = float(beside[top:mid].mean()), float(beside[mid:bottom + 1].mean())
    if not (np.isfinite(upper) and np.isfinite(lower)) or upper <= 0 or lower <= 0:
        return None
    return lower / upper


def check_orientation(dxa: DXAImage) -> float | None:
    """Refuse an upside-down scan (:func:`orientation_ratio` below :data:`UPSIDE_DOWN_RATIO`).

    Returns the ratio (``None``: not measurable, a warning is logged).

    Raises
    ------
    OrientationError
        The scan's upper half is the denser: pelvis above the shoulders. The message names
        the fix: ``--flip-vertical`` (``flip_dxa(dxa, vertical=True)``).
    """
    ratio = orientation_ratio(dxa)
    where = dxa.path or "DXA"
    if ratio is None:
        log.warning("%s: cannot check that the scan is head-up (no separate soft-tissue image or no spine "
                    "ridge); using it as given", where)
    elif ratio < UPSIDE_DOWN_RATIO:
        raise OrientationError(
            f"{where}: the scan looks upside down (pelvis above the shoulders): the soft tissue beside the upper "
            f"half of the spine is denser than beside its lower half (ratio {ratio:.2f} < {UPSIDE_DOWN_RATIO}), "
            "where the lungs should be; if it is stored flipped, pass --flip-vertical "
            "(predict_file(..., flip_vertical=True) or flip_dxa(dxa, vertical=True))"
        )
    return ratio


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


def _plain_scale(scale: Any) -> Any:
    """A recorded channel scaling as plain floats (checkpoints hand numbers back as tensors)."""
    if not isinstance(scale, Mapping):
        return scale
    try:
        return {str(k): float(v) for k, v in scale.items()}
    except (TypeError, ValueError):
        return dict(scale)


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
    input_recipe : one of :data:`INPUT_RECIPES`: ``"spinelib"`` (our models) or
        ``"paper_bone_rgb"`` (the paper's released model: contrast-normalised bone only,
        8-bit, copied to 3 channels; :mod:`spinelib.paper_checkpoint`).

    The model is switched to eval mode and to channels-last memory format in place.

    Notes
    -----
    The first forward pass of a process is several times slower than the next ones
    (oneDNN builds its kernels for the input shape); :meth:`warmup` pays that cost up
    front, e.g. in a server before the first request.
    """

    def __init__(self, model: torch.nn.Module, config, *, pixel_mm: float, grid_mm: float = 2.0,
                 num_threads: int | None = None, input_recipe: str = "spinelib") -> None:
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
        if input_recipe not in INPUT_RECIPES:
            raise InvalidArgumentError(f"input_recipe must be one of {INPUT_RECIPES}, got {input_recipe!r}")
        if input_recipe == "paper_bone_rgb" and (config.views != 1 or config.in_chans != 3):
            raise InvalidArgumentError(
                f"the paper's input recipe feeds 3 channels of one view; {config.describe()} does not take them")
        # oneDNN's convolutions run NHWC natively: channels-last weights and inputs make the
        # forward pass 10-40 % faster on CPU with identical results (up to rounding)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.config = config
        self.pixel_mm = float(pixel_mm)
        self.grid_mm = float(grid_mm)
        self.input_recipe = input_recipe
        # the slab margin of the 3D grid: constant per predictor
        self._margin_mm = 2.0 * self.grid_mm

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, grid_mm: float = 2.0, num_threads: int | None = None) -> "Predictor":
        """Load a checkpoint written by training (``best.pt`` or ``last.pt``), with ``weights_only=True``.

        The paper's released checkpoint (a bare ``RegressionModel_Transformer`` state dict)
        is recognised and converted in memory (:mod:`spinelib.paper_checkpoint`);
        ``spinelib convert-paper-checkpoint`` does it once, to a file.

        Raises
        ------
        MissingCheckpointError
            No such file.
        CorruptCheckpointError
            Not a readable spinelib checkpoint (random bytes, a bare state dict of
            another network, ...).
        CheckpointError
            Weights that do not fit the stored configuration, another format version, or
            no (valid) record of the crop pixel size the model was trained at.
        """
        from .models import CorruptCheckpointError, build_model, load_checkpoint

        try:
            model, config, extra = load_checkpoint(path)
        except CorruptCheckpointError as exc:
            from . import paper_checkpoint as pc

            try:
                state = pc.load_paper_state_dict(path)
            except CorruptCheckpointError:
                raise exc from None
            config, weights = pc.convert_paper_state_dict(state, where=str(path))
            model = build_model(config)
            model.load_state_dict(weights, strict=True)
            extra = {"crop_pixel_mm": pc.PAPER_CROP_PIXEL_MM, "input_recipe": pc.PAPER_INPUT_RECIPE}
            log.info("%s is the paper's released state dict: converted to %s", path, config.describe())
        px = extra.get("crop_pixel_mm")
        if px is None:
            raise CheckpointError(f"checkpoint {path} does not record the crop pixel size it was trained at")
        try:
            px = float(px)
        except (TypeError, ValueError):
            px = float("nan")
        if not (np.isfinite(px) and px > 0):
            raise CheckpointError(f"checkpoint {path} records an invalid crop pixel size {extra.get('crop_pixel_mm')!r}")
        recipe = str(extra.get("input_recipe", "spinelib"))
        if recipe not in INPUT_RECIPES:
            raise CheckpointError(f"checkpoint {path} records an unknown input recipe {recipe!r} "
                                  f"(known: {', '.join(INPUT_RECIPES)})")
        # checkpoints written before the scaling was recorded used today's INPUT_SCALE
        scale = extra.get("input_scale", INPUT_SCALE) if recipe == "spinelib" else INPUT_SCALE
        if _plain_scale(scale) != INPUT_SCALE:
            raise CheckpointError(f"checkpoint {path} was trained on inputs scaled by {scale!r}; this version of "
                                  f"spinelib prepares them scaled by {INPUT_SCALE!r}: retrain it")
        return cls(model, config, pixel_mm=px, grid_mm=grid_mm, num_threads=num_threads, input_recipe=recipe)

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
        return self.forward_batch(np.asarray(crop)[None])[0]

    @torch.inference_mode()
    def forward_batch(self, crops: np.ndarray) -> np.ndarray:
        """The network's raw outputs for a batch of crops.

        Parameters
        ----------
        crops : (B, C, rows, cols) float32.

        Returns
        -------
        (B, 6 K + 2) float64 crop-coordinate vectors.
        """
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))
        return self.model(x.contiguous(memory_format=torch.channels_last)).double().numpy()

    def _check(self, dxa: DXAImage) -> None:
        if not isinstance(dxa, DXAImage):
            raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
        _check_spacing_plausible(dxa)
        if self.needs_lateral and not dxa.has_lateral:
            raise InvalidArgumentError(
                f"{dxa.path or 'DXA'}: the model is biplanar ({self.config.describe()}) and needs a lateral "
                "view, which this scan lacks"
            )
        check_orientation(dxa)

    def network_input(self, dxa: DXAImage) -> tuple[np.ndarray, CropWindow]:
        """The crop the network sees for ``dxa`` under this predictor's input recipe.

        Returns
        -------
        ((C, rows, cols) float32 crop, its :class:`CropWindow` on the ``pixel_mm`` grid).
        """
        if self.input_recipe == "paper_bone_rgb":
            from .paper_checkpoint import paper_bone_normalize, paper_input_stack

            sp = dxa.pixel_spacing_mm
            crop = find_spine_crop(resample_image(dxa.bone, sp, self.pixel_mm), pixel_mm=self.pixel_mm,
                                   image_size=self.config.image_size)
            norm = np.clip(resample_image(paper_bone_normalize(dxa.bone), sp, self.pixel_mm), 0.0, 1.0)
            return sample_crop(paper_input_stack(norm), crop), crop
        scan = prepare_scan(dxa, pixel_mm=self.pixel_mm, image_size=self.config.image_size,
                            lateral=self.needs_lateral)
        return sample_crop(scan.stack, scan.crop), scan.crop

    def _finish(self, label: str, vec: np.ndarray, crop: CropWindow, reconstruct: bool) -> Prediction:
        lo, hi = PLAUSIBLE_CROP_RANGE
        if not (np.all(np.isfinite(vec)) and vec.min() >= lo and vec.max() <= hi):
            # also keeps the 3D grid, which spans the predicted curves, to a sane size
            raise InvalidArgumentError(
                f"{label}: the model's prediction lies outside the crop placed on the spine "
                f"(crop coordinates {np.nanmin(vec):.3g}..{np.nanmax(vec):.3g}, plausible {lo}..{hi}); the image "
                "is probably not a spine DXA on the intensity scale the model was trained on (g/cm^2)"
            )
        curves = from_crop(vec, crop, self.n_levels)
        measures = clinical_measures(curves)
        if reconstruct:
            grid = grid_for([curves], spacing_mm=self.grid_mm, margin_mm=self._margin_mm)
            mask = ellipse_mask(curves, grid)
        else:
            grid, mask = Grid3D((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 1, 1)), np.zeros((1, 1, 1), bool)
        return Prediction(curves=curves, crop=crop, measures=measures, mask=mask, grid=grid)

    def predict(self, dxa: DXAImage, *, reconstruct: bool = True) -> Prediction:
        """Curves, measures and (optionally) the 3D mask of one scan.

        Parameters
        ----------
        dxa : the scan (:func:`spinelib.io.read_dxa`); its pixel spacing must be plausible
            (field of view between :data:`MIN_SPINE_FOV_MM` and :data:`MAX_FOV_MM`) and it
            must be head-up (:func:`check_orientation`).
        reconstruct : also build the 3D ellipse-per-level mask (on a ``grid_mm`` grid);
            without it, ``mask`` is a single empty voxel.

        Raises
        ------
        InvalidArgumentError
            Not a DXAImage, an implausible pixel spacing, a biplanar model given a scan
            without a lateral view, or a prediction far outside the crop
            (:data:`PLAUSIBLE_CROP_RANGE`: not a spine DXA, or another intensity scale).
        OrientationError
            The scan is upside down (an :class:`InvalidArgumentError`).
        """
        return self.predict_batch([dxa], batch_size=1, reconstruct=reconstruct)[0]

    def predict_batch(self, dxas: Sequence[DXAImage], *, batch_size: int = 8, reconstruct: bool = True,
                      on_error: str = "raise") -> list:
        """:meth:`predict` for many scans, the network run on batches of ``batch_size`` crops.

        Parameters
        ----------
        dxas : the scans.
        batch_size : crops per forward pass (>= 1); results do not depend on it (up to
            float rounding).
        reconstruct : as in :meth:`predict`.
        on_error : ``"raise"``: the first scan that fails raises its error; ``"return"``:
            its slot in the result holds the :class:`spinelib.errors.SpineLibError` instead
            and the other scans go on.

        Returns
        -------
        list of :class:`Prediction` (or errors, with ``on_error="return"``), in input order.
        """
        if isinstance(dxas, DXAImage) or not isinstance(dxas, Sequence):
            raise InvalidArgumentError(f"dxas must be a sequence of DXAImage, got {type(dxas).__name__}")

        def inputs(i: int) -> tuple[np.ndarray, CropWindow]:
            self._check(dxas[i])
            return self.network_input(dxas[i])

        return self._run(len(dxas), inputs, lambda i: dxas[i].path or "DXA", batch_size=batch_size,
                         reconstruct=reconstruct, on_error=on_error)

    def check_recipe(self, pixel_mm: float, image_size: Sequence[int], *, where: str = "the checkpoint") -> None:
        """Refuse crops of another scale or size than the model was trained on.

        A run's profile states the crop it prepares (``crop_pixel_mm``, ``image_size``); the
        checkpoint states the crop its model was trained on. They must agree, or the model
        would silently read a spine of the wrong size.

        Raises
        ------
        CheckpointError
            Naming ``where`` and both recipes.
        """
        size = tuple(int(v) for v in image_size)
        if size != tuple(self.config.image_size) or not np.isclose(float(pixel_mm), self.pixel_mm):
            raise CheckpointError(
                f"{where} was trained on {self.config.image_size[0]}x{self.config.image_size[1]} crops of "
                f"{self.pixel_mm:g} mm, but {size[0]}x{size[1]} crops of {float(pixel_mm):g} mm are asked for")

    def predict_scans(self, scans: Sequence, *, batch_size: int = 32, on_error: str = "raise",
                      names: Sequence[str] | None = None) -> list:
        """Curves (no 3D mask) of scans already prepared on this model's crop grid.

        The cohort path (:func:`spinelib.experiment.predict_cohort`): the scans are read,
        checked and resampled once (:func:`spinelib.data.prepare_scan`) for every model of
        a run; each model cuts its channels from the same stacks. Only the ``"spinelib"``
        input recipe has prepared scans.

        Parameters
        ----------
        scans : :class:`spinelib.data.PreparedScan` on a ``pixel_mm`` grid, with at least
            ``config.in_chans`` channels (AP bone and tissue, then the lateral view).
        batch_size, on_error : as in :meth:`predict_batch`.
        names : a name per scan for error messages (default: its index).

        Returns
        -------
        list of :class:`Prediction` (``mask`` a single empty voxel), or errors with
        ``on_error="return"``, in input order.

        Raises
        ------
        InvalidArgumentError
            Another input recipe, a scan on another pixel grid or with too few channels.
        """
        from .data import PreparedScan

        if self.input_recipe != "spinelib":
            raise InvalidArgumentError(f"prepared scans hold the spinelib input recipe, not {self.input_recipe!r}")
        labels = [str(i) for i in range(len(scans))] if names is None else [str(n) for n in names]
        if len(labels) != len(scans):
            raise InvalidArgumentError(f"{len(scans)} scans but {len(labels)} names")
        n_ch = self.config.in_chans
        for label, scan in zip(labels, scans):
            if not isinstance(scan, PreparedScan):
                raise InvalidArgumentError(f"scan {label}: expected a PreparedScan, got {type(scan).__name__}")
            if not np.isclose(scan.crop.pixel_mm, self.pixel_mm) or scan.stack.shape[0] < n_ch:
                raise InvalidArgumentError(
                    f"scan {label}: {scan.stack.shape[0]} channels on a {scan.crop.pixel_mm:g} mm grid, the model "
                    f"needs {n_ch} on {self.pixel_mm:g} mm")
        return self._run(len(scans), lambda i: (sample_crop(scans[i].stack[:n_ch], scans[i].crop), scans[i].crop),
                         lambda i: labels[i], batch_size=batch_size, reconstruct=False, on_error=on_error)

    def _run(self, n: int, inputs, label, *, batch_size: int, reconstruct: bool, on_error: str) -> list:
        """The one inference loop: the crops ``inputs(i)`` in batches through the network,
        then back to curves (:meth:`_finish`); a :class:`SpineLibError` of item ``i`` is
        raised, or with ``on_error="return"`` put in its slot."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if on_error not in ("raise", "return"):
            raise InvalidArgumentError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        results: list = [None] * n

        def fail(i: int, exc: SpineLibError) -> None:
            if on_error == "raise":
                raise exc
            results[i] = exc

        for start in range(0, n, int(batch_size)):
            idx, crops, windows = [], [], []
            for i in range(start, min(start + int(batch_size), n)):
                try:
                    x, w = inputs(i)
                except SpineLibError as exc:
                    fail(i, exc)
                    continue
                idx.append(i)
                crops.append(x)
                windows.append(w)
            if not idx:
                continue
            vecs = self.forward_batch(np.stack(crops))
            for i, vec, w in zip(idx, vecs, windows):
                try:
                    results[i] = self._finish(label(i), vec, w, reconstruct)
                except SpineLibError as exc:
                    fail(i, exc)
        return results


def _measures_record(pred: Prediction, *, source: str, model: str, flipped: Sequence[str] = ()) -> dict:
    """The ``measures.json`` content of a prediction (plain values)."""
    c = pred.curves
    return {
        **{k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in pred.measures.items()},
        "extent_mm": [float(v) for v in c.extent_mm],
        "spine_length_mm": float(c.extent_mm[1] - c.extent_mm[0]),
        "n_levels": c.n_levels,
        "crop": {"row0": pred.crop.row0, "col0": pred.crop.col0, "rows": pred.crop.rows,
                 "cols": pred.crop.cols, "pixel_mm": pred.crop.pixel_mm},
        "flipped": list(flipped),
        "source": source, "model": model,
    }


def curves_csv(curves: SpineCurves) -> str:
    """``curves.csv`` of :func:`write_prediction`: ``level``, ``level_row_mm`` and the six
    curves (:data:`spinelib.spine.CURVE_NAMES`), one row per level, ``%.4f`` (curves are finite).

    The same bytes as ``pandas.DataFrame.to_csv(index=False, float_format="%.4f")``,
    without importing pandas (a fifth of a second of a cold ``spinelib predict``).
    """
    from .spine import CURVE_NAMES

    if not isinstance(curves, SpineCurves):
        raise InvalidArgumentError(f"curves must be SpineCurves, got {type(curves).__name__}")
    cols = [np.asarray(curves.levels_mm, float), *np.asarray(curves.values, float)]
    lines = [",".join(["level", "level_row_mm", *CURVE_NAMES])]
    for k in range(curves.n_levels):
        lines.append(",".join([str(k), *("%.4f" % c[k] for c in cols)]))
    return "\n".join(lines) + "\n"


def write_prediction(pred: Prediction, out_dir: str | Path, *, source: str = "", model: str = "",
                     flipped: Sequence[str] = (), record: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the four outputs of a prediction into ``out_dir``; returns their paths.

    ``curves``: ``curves.csv``; ``mask``: ``spine3d.nii.gz`` (uint8, affine
    :func:`frame_to_ras_affine`); ``html``: ``spine3d.html`` (plotly.js inside);
    ``measures``: ``measures.json`` (``flipped`` lists the flips applied to the stored
    image, ``"vertical"`` / ``"horizontal"``: the curves are in the flipped image's frame;
    ``record``, when given, is written instead of the prediction's own measures record).
    Each file is written atomically; ``measures.json`` last, so that it marks a complete folder.
    """
    if not isinstance(pred, Prediction):
        raise InvalidArgumentError(f"pred must be a Prediction, got {type(pred).__name__}")
    from .atomic import ensure_writable_dir, write_json_atomic, write_text_atomic
    from .io import write_nifti
    from .reconstruct import surface_mesh
    from .viz.spine3d import PRED_COLOUR, SpineMesh, rotating_spines_figure, write_figure_html

    out = ensure_writable_dir(out_dir, min_free_mb=20)
    paths = {k: out / n for k, n in (("curves", "curves.csv"), ("mask", "spine3d.nii.gz"),
                                      ("html", "spine3d.html"), ("measures", "measures.json"))}
    write_text_atomic(paths["curves"], curves_csv(pred.curves))
    write_nifti(paths["mask"], pred.mask.astype(np.uint8), frame_to_ras_affine(pred.grid))
    verts, faces = surface_mesh(pred.mask, pred.grid)
    fig = rotating_spines_figure([SpineMesh(verts, faces, "predicted spine", PRED_COLOUR)],
                                 title=f"Predicted 3D spine{': ' + source if source else ''}")
    write_figure_html(fig, paths["html"], self_contained=True)
    write_json_atomic(paths["measures"], dict(record) if record is not None else
                      _measures_record(pred, source=source, model=model, flipped=flipped))
    return paths


_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz")
#: Suffixes of the DXA files :func:`list_scans` picks from a folder.
_DXA_SUFFIXES = (".npz", ".pkl", ".pickle", ".png", ".tif", ".tiff")
_LIST_SUFFIXES = (".txt", ".lst", ".list")


def _flips(vertical: bool, horizontal: bool) -> tuple[str, ...]:
    return tuple(n for n, on in (("vertical", vertical), ("horizontal", horizontal)) if on)


def _read_checked(dxa_path: str | Path, *, allow_pickle: bool, pixel_spacing_mm, flip_vertical: bool,
                  flip_horizontal: bool) -> DXAImage:
    name = Path(dxa_path).name.lower()
    if any(name.endswith(sfx) for sfx in _NIFTI_SUFFIXES):
        raise UnreadableFileError(
            f"{dxa_path} is a 3D volume (NIfTI/Analyze), not a DXA scan; give a dxa.npz, a UK Biobank "
            "DXA pickle or a PNG/TIFF image"
        )
    dxa = read_dxa(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm)
    _check_spacing_plausible(dxa)
    dxa = flip_dxa(dxa, vertical=flip_vertical, horizontal=flip_horizontal)
    check_orientation(dxa)
    return dxa


def predict_file(dxa_path: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                 allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
                 flip_horizontal: bool = False) -> dict[str, Path]:
    """``spinelib predict``: read one DXA file, predict, write the four outputs.

    Parameters
    ----------
    dxa_path : our ``dxa.npz``, a UK Biobank preprocessing pickle (with ``allow_pickle``),
        or a PNG / TIFF image (with ``pixel_spacing_mm``).
    checkpoint : a model checkpoint written by training (``best.pt``), or the paper's
        released state dict.
    out_dir : folder for ``curves.csv``, ``spine3d.nii.gz``, ``spine3d.html``,
        ``measures.json`` (created; existing files are replaced atomically).
    allow_pickle : opt in to reading a pickle (unpickling runs code from the file).
    pixel_spacing_mm : (row, col) or one value, in mm; required for images.
    flip_vertical, flip_horizontal : mirror the image first (:func:`flip_dxa`): for a scan
        stored upside down (refused otherwise) or left-right mirrored (not detectable).

    Returns
    -------
    dict ``curves``, ``mask``, ``html``, ``measures`` -> path written.

    Raises
    ------
    MissingFileError, UnreadableFileError, UnsafeLoadError, InvalidArgumentError, ...
        For a bad DXA file or spacing (:func:`spinelib.io.read_dxa`, plausibility).
    OrientationError
        An upside-down scan without ``flip_vertical``.
    MissingCheckpointError, CorruptCheckpointError, CheckpointError
        For a bad checkpoint (:meth:`Predictor.from_checkpoint`).

    Nothing is written unless both inputs are valid.
    """
    # the DXA first: reading it is cheap, loading the model is not
    dxa = _read_checked(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm,
                        flip_vertical=flip_vertical, flip_horizontal=flip_horizontal)
    predictor = Predictor.from_checkpoint(checkpoint)
    pred = predictor.predict(dxa)
    paths = write_prediction(pred, out_dir, source=Path(dxa_path).name, model=predictor.config.describe(),
                             flipped=_flips(flip_vertical, flip_horizontal))
    log.info("prediction for %s written to %s", dxa_path, Path(out_dir))
    return paths


# ----------------------------------------------------------------------------- cohorts


def _scan_id(path: Path) -> str:
    # a cohort folder holds <id>/dxa.npz: the folder names the scan
    stem = path.parent.name if path.stem.lower() == "dxa" and path.parent.name else path.name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "scan"


def list_scans(source: str | Path) -> list[tuple[str, Path]]:
    """The scans named by ``source``: ``(scan id, DXA path)`` pairs, ids unique.

    ``source`` is one of

    - a folder: every file below it with a DXA suffix (``.npz``, ``.pkl``, ``.pickle``,
      ``.png``, ``.tif``, ``.tiff``), sorted; a file named ``dxa.*`` takes its folder's name
      as id (a cohort folder's ``<id>/dxa.npz``), any other its name without suffixes;
    - a text list (``.txt``, ``.lst``, ``.list``): one path per line, relative to the
      list's folder; blank lines and ``#`` comments are skipped;
    - a manifest (``.csv``) with columns ``dxa_path`` (relative to the manifest's folder)
      and optionally ``subject_id`` (the ids; otherwise from the paths).

    Repeated ids get ``-2``, ``-3``, ... appended. Paths are not opened here.

    Raises
    ------
    MissingFileError
        ``source`` does not exist.
    UnreadableFileError
        An unreadable list or manifest, or a manifest without ``dxa_path``.
    InvalidArgumentError
        ``source`` names no scan at all, or is a file of another kind.
    """
    from .errors import MissingFileError

    src = Path(source)
    if not src.exists():
        raise MissingFileError(f"scan source {src} does not exist")
    pairs: list[tuple[str, Path]] = []
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in _DXA_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(src).parts))
        pairs = [(_scan_id(p), p) for p in files]
    elif src.suffix.lower() in _LIST_SUFFIXES:
        try:
            lines = src.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"cannot read scan list {src}: {type(exc).__name__}: {exc}") from exc
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                p = Path(line).expanduser()
                p = p if p.is_absolute() else src.parent / p
                pairs.append((_scan_id(p), p))
    elif src.suffix.lower() == ".csv":
        import pandas as pd

        try:
            df = pd.read_csv(src, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"cannot read manifest {src}: {type(exc).__name__}: {exc}") from exc
        df.columns = [str(c).strip() for c in df.columns]
        if "dxa_path" not in df.columns:
            raise UnreadableFileError(f"manifest {src} has no dxa_path column (columns: {list(df.columns)})")
        for _, row in df.iterrows():
            if not str(row["dxa_path"]).strip():
                continue
            p = Path(str(row["dxa_path"]).strip()).expanduser()
            p = p if p.is_absolute() else src.parent / p
            sid = str(row.get("subject_id", "")).strip()
            pairs.append((re.sub(r"[^A-Za-z0-9_.-]+", "_", sid).strip("._") if sid else _scan_id(p), p))
    else:
        raise InvalidArgumentError(
            f"scan source {src} is neither a folder, a text list ({', '.join(_LIST_SUFFIXES)}) nor a manifest .csv")
    if not pairs:
        raise InvalidArgumentError(f"scan source {src} names no DXA file")
    seen: dict[str, int] = {}
    out = []
    for sid, p in pairs:
        n = seen.get(sid, 0) + 1
        seen[sid] = n
        out.append((sid if n == 1 else f"{sid}-{n}", p))
    return out


@dataclass(frozen=True)
class CohortPrediction:
    """What :func:`predict_scans` did."""

    out_dir: Path
    measures_csv: Path
    failures_csv: Path
    n_scans: int
    n_failed: int
    seconds: float

    @property
    def n_ok(self) -> int:
        return self.n_scans - self.n_failed

    def summary(self) -> str:
        """One line: scans predicted, failed, time and where the tables are."""
        return (f"{self.n_ok} of {self.n_scans} scans predicted, {self.n_failed} failed "
                f"({self.seconds:.1f} s, {self.seconds / max(1, self.n_scans):.2f} s per scan); "
                f"measures: {self.measures_csv}" + (f"; failures: {self.failures_csv}" if self.n_failed else ""))


_WORKER_PREDICTORS: dict[tuple[str, str], "Predictor"] = {}


def _worker_predictor(checkpoint: str, digest: str) -> "Predictor":
    """The model of ``checkpoint``, loaded once per worker process."""
    key = (str(checkpoint), digest)
    if key not in _WORKER_PREDICTORS:
        _WORKER_PREDICTORS.clear()  # one model at a time: a worker's memory is the cluster's
        _WORKER_PREDICTORS[key] = Predictor.from_checkpoint(checkpoint)
    return _WORKER_PREDICTORS[key]


def _scan_row(rec: Mapping[str, Any], sid: str, path: Path, out: Path) -> dict:
    """The ``measures.csv`` row of a scan from its ``measures.json`` record."""
    return {"scan": sid, "source": str(path),
            **{k: v for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k != "n_levels"},
            "extent_top_mm": rec["extent_mm"][0], "extent_bottom_mm": rec["extent_mm"][1], "output": str(out / sid)}


def _failure_row(sid: str, path: Path, error: str, reason: str) -> dict:
    log.warning("scan %s (%s) failed: %s", sid, path, reason)
    return {"scan": sid, "source": str(path), "error": error, "reason": reason}


def _predict_group(item: Mapping[str, Any]) -> list[dict]:
    """Fan-out item: predict a group of scans in one batch and write their outputs.

    Returns one row per scan, a ``measures.csv`` row or a ``failures.csv`` row (it has
    ``"error"``). Runs in a worker, which loads the model once (:func:`_worker_predictor`)
    unless the item carries a warm ``predictor`` (in this process only), on one thread:
    a worker is one core (``--jobs`` sets how many).
    """
    predictor = item.get("predictor") or _worker_predictor(item["checkpoint"], item["digest"])
    threads = torch.get_num_threads()
    # one intra-op thread whatever the backend: a convolution's last bits depend on the
    # thread count, and a scan must get the same numbers from any --jobs, cluster or shard
    torch.set_num_threads(1)
    try:
        return _predict_group_with(predictor, item)
    finally:
        torch.set_num_threads(threads)


def _predict_group_with(predictor: "Predictor", item: Mapping[str, Any]) -> list[dict]:
    opts, out, flipped = item["options"], Path(item["out"]), _flips(item["options"]["flip_vertical"],
                                                                     item["options"]["flip_horizontal"])
    model = predictor.config.describe()
    rows, ok, dxas = [], [], []
    for sid, path in item["scans"]:
        path = Path(path)
        try:
            dxas.append(_read_checked(path, **opts))
            ok.append((sid, path))
        except SpineLibError as exc:
            rows.append(_failure_row(sid, path, type(exc).__name__, str(exc)))
    for (sid, path), res in zip(ok, predictor.predict_batch(dxas, batch_size=max(1, len(dxas)), on_error="return")):
        try:
            if isinstance(res, BaseException):
                raise res
            rec = _measures_record(res, source=str(path), model=model, flipped=flipped)
            rec["checkpoint_sha256"] = item["digest"]
            write_prediction(res, out / sid, source=path.name, model=model, flipped=flipped, record=rec)
            rows.append(_scan_row(rec, sid, path, out))
        except SpineLibError as exc:
            rows.append(_failure_row(sid, path, type(exc).__name__, str(exc)))
    order = {sid: k for k, (sid, _) in enumerate(item["scans"])}
    return sorted(rows, key=lambda r: order[r["scan"]])


def _stored_row(out: Path, sid: str, path: Path, digest: str, flipped: Sequence[str]) -> dict | None:
    """A scan's row from the ``measures.json`` an earlier run wrote with the same model and flips."""
    import json

    try:
        rec = json.loads((out / sid / "measures.json").read_text())
    except (OSError, ValueError):
        return None
    done = all((out / sid / n).is_file() for n in ("curves.csv", "spine3d.nii.gz", "spine3d.html"))
    if (done and digest and isinstance(rec, dict) and rec.get("checkpoint_sha256") == digest
            and rec.get("source") == str(path) and rec.get("flipped") == list(flipped)):
        return _scan_row(rec, sid, path, out)
    return None


def predict_scans(source: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                  allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
                  flip_horizontal: bool = False, batch_size: int = 8, progress: bool = True,
                  predictor: Predictor | None = None, jobs: "int | Engine" = 1,
                  shard: "Shard | None" = None) -> CohortPrediction:
    """``spinelib predict`` for a cohort: one warm model per worker, one output folder per scan.

    Parameters
    ----------
    source : a folder of DXA files, a text list of paths or a manifest (:func:`list_scans`).
    checkpoint : as in :func:`predict_file` (ignored when ``predictor`` is given).
    out_dir : gets ``<scan id>/`` with the four outputs of :func:`write_prediction` per
        scan, ``measures.csv`` (one row per predicted scan: ``scan``, ``source``, the
        measures of ``measures.json``, ``output``) and ``failures.csv`` (``scan``,
        ``source``, ``error``, ``reason``; header only when none failed). A rerun with the
        same checkpoint keeps the scans already written (``measures.json`` records the
        checkpoint's SHA-256). With a ``shard``, the tables are ``measures.shard-I-of-N.csv``
        and ``failures.shard-I-of-N.csv``.
    allow_pickle, pixel_spacing_mm, flip_vertical, flip_horizontal : as in
        :func:`predict_file`, for every scan.
    batch_size : scans per forward pass (:meth:`Predictor.predict_batch`), and per task.
    progress : show a tqdm progress bar.
    predictor : an already loaded model (e.g. warm in a notebook); only with ``jobs=1``.
    jobs : worker processes, or an :class:`~spinelib.workers.Engine` (a Dask cluster); each
        worker loads the checkpoint once and computes on one thread (so that every path
        gives a scan the same numbers): give as many jobs as cores.
    shard : predict only this :class:`~spinelib.workers.Shard` of the batches (of
        ``batch_size`` scans, in :func:`list_scans` order).

    Returns
    -------
    :class:`CohortPrediction` (counts, time, the two tables).

    Raises
    ------
    MissingFileError, UnreadableFileError, InvalidArgumentError
        A bad ``source`` (:func:`list_scans`), or a ``predictor`` with several workers.
    MissingCheckpointError, CorruptCheckpointError, CheckpointError
        A bad checkpoint. A bad scan does not raise: it is listed in ``failures.csv``.
    """
    import hashlib

    import pandas as pd

    from .atomic import atomic_path, ensure_writable_dir
    from .workers import Engine, Failed, Shard, fan_out

    t0 = time.perf_counter()
    engine, shard = Engine.of(jobs), shard or Shard()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    every = list_scans(source)
    # shards take whole batches: a scan's numbers depend (in the last bits) on the batch it
    # is computed in, so every path must batch the scans alike
    batches = [every[k:k + int(batch_size)] for k in range(0, len(every), int(batch_size))]
    scans = [scan for i in shard.positions(len(batches)) for scan in batches[i]]
    if predictor is not None and not isinstance(predictor, Predictor):
        raise InvalidArgumentError(f"predictor must be a Predictor, got {type(predictor).__name__}")
    if predictor is not None and (engine.kind != "local" or engine.jobs != 1):
        raise InvalidArgumentError("a warm predictor runs in this process only: use jobs=1, or pass the checkpoint")
    digest = ""
    if predictor is None:
        loaded = Predictor.from_checkpoint(checkpoint)  # a bad checkpoint fails here, not once per worker
        digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
        if engine.kind == "local" and engine.jobs == 1:
            predictor = loaded
    out = ensure_writable_dir(out_dir, min_free_mb=20)
    options = dict(allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm, flip_vertical=flip_vertical,
                   flip_horizontal=flip_horizontal)
    flipped = _flips(flip_vertical, flip_horizontal)
    stored = {sid: _stored_row(out, sid, Path(p), digest, flipped) for sid, p in scans}
    groups = [g for g in ([(sid, str(p)) for sid, p in batches[i] if stored[sid] is None]
                          for i in shard.positions(len(batches))) if g]
    items = [{"scans": g, "checkpoint": str(checkpoint), "digest": digest, "out": str(out),
              "options": options, **({"predictor": predictor} if predictor else {})} for g in groups]
    # one task is one batch: chunks of one keep a worker's memory to one batch of scans
    engine = Engine(jobs=engine.jobs, kind=engine.kind, scheduler=engine.scheduler, chunk=1)
    done = fan_out(_predict_group, items, keys=[g[0][0] for g in groups], engine=engine, desc="predicting",
                   unit="batch", progress=progress, spawn=True)
    new: dict[str, dict] = {}
    for g, res in zip(groups, done):
        if isinstance(res, Failed):  # the whole batch was lost (a worker died)
            res = [_failure_row(sid, Path(p), "WorkerError", res.reason) for sid, p in g]
        new.update({r["scan"]: r for r in res})
    rows = [stored[sid] or new[sid] for sid, _ in scans]
    good = [r for r in rows if "error" not in r]
    failures = [r for r in rows if "error" in r]
    suffix = "" if shard.is_whole else f".shard-{shard.index}-of-{shard.count}"
    paths = {"measures": out / f"measures{suffix}.csv", "failures": out / f"failures{suffix}.csv"}
    with atomic_path(paths["measures"]) as tmp:
        pd.DataFrame(good, columns=None if good else ["scan", "source", "output"]).to_csv(
            tmp, index=False, float_format="%.4f")
    with atomic_path(paths["failures"]) as tmp:
        pd.DataFrame(failures, columns=["scan", "source", "error", "reason"]).to_csv(tmp, index=False)
    result = CohortPrediction(out_dir=out, measures_csv=paths["measures"], failures_csv=paths["failures"],
                              n_scans=len(scans), n_failed=len(failures), seconds=time.perf_counter() - t0)
    log.info("%s", result.summary())
    return result
