"""One inference path: a trained model reads DXA scans and returns curves, a 3D spine and
clinical measures.

``Predictor`` holds a trained model in memory (warm process) and reads one scan
(:meth:`Predictor.predict`) or many in batches (:meth:`Predictor.predict_batch`,
:meth:`Predictor.predict_scans`): the study's cohort predictions
(:func:`spinelib.study.prediction.predict_cohort`) and ``spinelib predict``
(:mod:`spinelib.run.prediction_files`, which writes the outputs) both go through it.

Before a scan reaches the network its pixel spacing must be plausible and the image head-up;
after it, the outputs must lie near the crop (:mod:`spinelib.learn.sanity`,
:mod:`spinelib.learn.orientation`). The crop follows the input recipe the checkpoint records
(:mod:`spinelib.learn.recipe`).

The paper's released checkpoint (a bare ``RegressionModel_Transformer`` state dict) is
recognised by :meth:`Predictor.from_checkpoint` and converted on the fly
(:mod:`spinelib.learn.paper_checkpoint`, which also documents its input recipe).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InvalidArgumentError, SpineLibError
from ..io import DXAImage
from ..metrics import clinical_measures
from ..shape.curves import CropWindow, SpineCurves, from_crop
from ..shape.reconstruct import Grid3D, ellipse_mask, grid_for
from .crop import sample_crop
from .data import AP_CHANNELS, mirror_crop_vector
from .operating_point import OperatingPoint, read_operating_point, scoliosis_calls
from .orientation import check_orientation
from .recipe import INPUT_RECIPES, check_crop_recipe, read_recipe, recipe_input
from .sanity import check_crop_output, check_spacing

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "frame_to_ras_affine"]


@dataclass(frozen=True)
class Prediction:
    """What the model says about one scan."""

    curves: SpineCurves
    crop: CropWindow
    measures: dict  # clinical_measures of the curves and the scoliosis calls (scoliosis_calls)
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


class Predictor:
    """A trained model ready to read DXA scans (load once, predict many).

    Parameters
    ----------
    model : network returning ``(B, 6 K + 2)`` crop-coordinate vectors.
    config : its :class:`spinelib.learn.config.ModelConfig`.
    pixel_mm : the crop pixel size (mm) the model was trained at.
    grid_mm : voxel size (mm) of the reconstructed 3D mask.
    num_threads : torch intra-op threads to use (a process-wide setting); ``None`` leaves
        torch's setting alone. On a machine shared with other busy processes one thread
        is often faster than several.
    input_recipe : one of :data:`spinelib.learn.recipe.INPUT_RECIPES`: ``"spinelib"`` (our
        models) or ``"paper_bone_rgb"`` (the paper's released model: contrast-normalised bone only,
        8-bit, copied to 3 channels; :mod:`spinelib.learn.paper_checkpoint`).
    operating_point : where the model's predicted Cobb angle is cut into scoliotic /
        straight (:mod:`spinelib.learn.operating_point`); every prediction's measures then
        carry that call beside the clinical rule's (:func:`~spinelib.learn.operating_point.scoliosis_calls`).
    mirror_average : read every crop twice, as it is and mirrored left-right (its AP channels'
        columns reversed; a lateral view, a projection along the left-right axis, is the same for
        the mirrored body), and average the two outputs, the second mirrored back
        (:func:`spinelib.learn.data.mirror_crop_vector`). Only for a network trained on mirrored
        crops (:mod:`spinelib.learn.recipe`); :meth:`from_checkpoint` takes it from the checkpoint.

    The model is switched to eval mode and to channels-last memory format in place.

    Notes
    -----
    The first forward pass of a process is several times slower than the next ones
    (oneDNN builds its kernels for the input shape); :meth:`warmup` pays that cost up
    front, e.g. in a server before the first request.
    """

    def __init__(self, model: torch.nn.Module, config, *, pixel_mm: float, grid_mm: float = 2.0,
                 num_threads: int | None = None, input_recipe: str = "spinelib",
                 operating_point: OperatingPoint | None = None, mirror_average: bool = False) -> None:
        from .config import ModelConfig

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
        if operating_point is not None and not isinstance(operating_point, OperatingPoint):
            raise InvalidArgumentError(f"operating_point must be an OperatingPoint or None, got "
                                       f"{type(operating_point).__name__}")
        if not isinstance(mirror_average, (bool, np.bool_)):
            raise InvalidArgumentError(f"mirror_average must be True or False, got {mirror_average!r}")
        if mirror_average and input_recipe != "spinelib":
            raise InvalidArgumentError(f"mirror averaging reads the spinelib recipe's AP channels, not the "
                                       f"{input_recipe!r} recipe's")
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
        self.operating_point = operating_point
        self.mirror_average = bool(mirror_average)
        # the slab margin of the 3D grid: constant per predictor
        self._margin_mm = 2.0 * self.grid_mm

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, grid_mm: float = 2.0, num_threads: int | None = None) -> "Predictor":
        """Load a checkpoint written by training (``best.pt`` or ``last.pt``), with ``weights_only=True``.

        The paper's released checkpoint (a bare ``RegressionModel_Transformer`` state dict)
        is recognised and converted in memory (:mod:`spinelib.learn.paper_checkpoint`);
        ``spinelib convert-paper-checkpoint`` does it once, to a file. The scoliosis operating
        point stored beside the checkpoint, if any, comes with it
        (:func:`~spinelib.learn.operating_point.read_operating_point`).

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
        UnreadableFileError
            An ``operating_point.json`` beside it that is not a valid operating point.
        """
        model, config, extra = _load_any_checkpoint(path)
        recipe = read_recipe(extra, path)
        return cls(model, config, pixel_mm=recipe.pixel_mm, grid_mm=grid_mm, num_threads=num_threads,
                   input_recipe=recipe.name, operating_point=read_operating_point(path),
                   mirror_average=recipe.mirror_average)

    def describe(self) -> str:
        """The model and how it is read, for outputs and logs (``measures.json``'s ``model``)."""
        return self.config.describe() + (", read with mirror averaging" if self.mirror_average else "")

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
        """The network's output for one crop (averaged with the mirrored crop's under ``mirror_average``).

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
        """The network's outputs for a batch of crops.

        Under ``mirror_average`` the network reads each crop and its mirror in one batch of
        ``2 B`` and the two outputs are averaged, the mirror's mirrored back.

        Parameters
        ----------
        crops : (B, C, rows, cols) float32.

        Returns
        -------
        (B, 6 K + 2) float64 crop-coordinate vectors.
        """
        x = np.ascontiguousarray(crops, dtype=np.float32)
        n = len(x)
        if self.mirror_average:  # the crops, then their mirrors: one forward pass
            x = np.concatenate([x, x])
            x[n:, :AP_CHANNELS] = x[:n, :AP_CHANNELS, :, ::-1]
        out = self.model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).double().numpy()
        if not self.mirror_average:
            return out
        return 0.5 * (out[:n] + mirror_crop_vector(out[n:], x.shape[-1]))

    def _check(self, dxa: DXAImage) -> None:
        if not isinstance(dxa, DXAImage):
            raise InvalidArgumentError(f"dxa must be a DXAImage (spinelib.io.read_dxa), got {type(dxa).__name__}")
        check_spacing(dxa)
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
        return recipe_input(dxa, self.input_recipe, pixel_mm=self.pixel_mm, image_size=self.config.image_size,
                            lateral=self.needs_lateral)

    def _finish(self, label: str, vec: np.ndarray, crop: CropWindow, reconstruct: bool) -> Prediction:
        check_crop_output(label, vec)
        curves = from_crop(vec, crop, self.n_levels)
        measures = clinical_measures(curves)
        measures.update(scoliosis_calls(measures["cobb_deg"], self.operating_point))
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
            (:func:`spinelib.learn.sanity.check_spacing`) and it
            must be head-up (:func:`check_orientation`).
        reconstruct : also build the 3D ellipse-per-level mask (on a ``grid_mm`` grid);
            without it, ``mask`` is a single empty voxel.

        Raises
        ------
        InvalidArgumentError
            Not a DXAImage, an implausible pixel spacing, a biplanar model given a scan
            without a lateral view, or a prediction far outside the crop
            (:func:`spinelib.learn.sanity.check_crop_output`: not a spine DXA, or another
            intensity scale).
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

    @property
    def crop(self) -> tuple[float, tuple[int, int]]:
        """The crop the model was trained on: pixel size (mm) and ``(rows, cols)``."""
        return self.pixel_mm, self.config.image_size

    def check_recipe(self, pixel_mm: float, image_size: Sequence[int], *, where: str = "the checkpoint") -> None:
        """Refuse crops of another scale or size than the model was trained on
        (:func:`spinelib.learn.recipe.check_crop_recipe`, which raises CheckpointError)."""
        check_crop_recipe(self.pixel_mm, self.config.image_size, pixel_mm, image_size, where=where)

    def predict_scans(self, scans: Sequence, *, batch_size: int = 32, on_error: str = "raise",
                      names: Sequence[str] | None = None) -> list:
        """Curves (no 3D mask) of scans already prepared on this model's crop grid.

        The cohort path (:func:`spinelib.study.prediction.predict_cohort`): the scans are read,
        checked and resampled once (:func:`spinelib.learn.data.prepare_scan`) for every model of
        a run; each model cuts its channels from the same stacks. Only the ``"spinelib"``
        input recipe has prepared scans.

        Parameters
        ----------
        scans : :class:`spinelib.learn.data.PreparedScan` on a ``pixel_mm`` grid, with at least
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


def _load_any_checkpoint(path: str | Path) -> tuple[torch.nn.Module, Any, dict]:
    """``(model, config, extra)`` of a spinelib checkpoint, or of the paper's released state
    dict converted in memory (its ``extra`` the paper's input recipe)."""
    from .checkpoint import CorruptCheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CorruptCheckpointError as exc:
        from .paper_checkpoint import load_paper_state_dict, paper_model

        try:
            state = load_paper_state_dict(path)
        except CorruptCheckpointError:
            raise exc from None  # neither format: the spinelib checkpoint's error says more
        model, config, extra = paper_model(state, where=str(path))
        log.info("%s is the paper's released state dict: converted to %s", path, config.describe())
        return model, config, extra
