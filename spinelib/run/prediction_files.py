"""What ``spinelib predict`` writes for one scan: its four output files.

:func:`predict_file` is ``spinelib predict DXA --checkpoint CKPT --out DIR``: it reads the
scan (:func:`read_scan`), predicts with :class:`spinelib.learn.predict.Predictor` and writes
(:func:`write_prediction`)

- ``curves.csv``: the six curves in mm at the K levels (and each level's row-mm),
- ``spine3d.nii.gz``: the reconstructed spine column as a mask, RAS+ affine in mm,
- ``spine3d.html``: a self-contained rotating Plotly spine (opens offline),
- ``measures.json``: Cobb angle, apex level, kyphosis, lordosis, extent, whether the spine is
  scoliotic (predicted Cobb >= 10 deg; and at the network's validation operating point when
  its checkpoint has one, :mod:`spinelib.learn.operating_point`), and provenance.

The same command given a folder, a list or a manifest of scans is
:func:`spinelib.run.cohort_prediction.predict_scans`, which writes these files per scan.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..shape.curves import SpineCurves
from ..errors import InvalidArgumentError, UnreadableFileError
from ..io import DXAImage, read_dxa
from ..learn.orientation import check_orientation, flip_dxa
from ..learn.predict import Prediction, Predictor, frame_to_ras_affine
from ..learn.sanity import check_spacing

log = logging.getLogger(__name__)

__all__ = ["predict_file", "write_prediction", "curves_csv", "measures_record", "applied_flips", "read_scan"]


def measures_record(pred: Prediction, *, source: str, model: str, flipped: Sequence[str] = ()) -> dict:
    """The ``measures.json`` content of a prediction, as plain values: its measures (the
    scoliosis calls as true / false), extent (mm), spine length (mm), number of levels, crop,
    the flips applied, ``source`` and ``model``."""
    c = pred.curves
    return {
        **{k: _plain(v) for k, v in pred.measures.items()},
        "extent_mm": [float(v) for v in c.extent_mm],
        "spine_length_mm": float(c.extent_mm[1] - c.extent_mm[0]),
        "n_levels": c.n_levels,
        "crop": {"row0": pred.crop.row0, "col0": pred.crop.col0, "rows": pred.crop.rows,
                 "cols": pred.crop.cols, "pixel_mm": pred.crop.pixel_mm},
        "flipped": list(flipped),
        "source": source, "model": model,
    }


def _plain(value: Any) -> bool | int | float:
    """A measure as a JSON value: a flag stays a flag, a number a float or an int."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return float(value) if isinstance(value, (float, np.floating)) else int(value)


def curves_csv(curves: SpineCurves) -> str:
    """``curves.csv`` of :func:`write_prediction`: ``level``, ``level_row_mm`` and the six
    curves (:data:`spinelib.spine.CURVE_NAMES`), one row per level, ``%.4f`` (curves are finite).

    The same bytes as ``pandas.DataFrame.to_csv(index=False, float_format="%.4f")``,
    without importing pandas (a fifth of a second of a cold ``spinelib predict``).
    """
    from ..spine import CURVE_NAMES

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
    from ..util.atomic import ensure_writable_dir, write_json_atomic, write_text_atomic
    from ..io import write_nifti
    from ..shape.reconstruct import surface_mesh
    from ..viz.spine3d import PRED_COLOUR, SpineMesh, rotating_spines_figure, write_figure_html

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
                      measures_record(pred, source=source, model=model, flipped=flipped))
    return paths


#: Suffixes of volumes, which :func:`read_scan` refuses.
_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz")


def applied_flips(vertical: bool, horizontal: bool) -> tuple[str, ...]:
    """The flips asked, as ``measures.json`` lists them: ``"vertical"``, ``"horizontal"``."""
    return tuple(n for n, on in (("vertical", vertical), ("horizontal", horizontal)) if on)


def read_scan(dxa_path: str | Path, *, allow_pickle: bool = False, pixel_spacing_mm=None, flip_vertical: bool = False,
              flip_horizontal: bool = False) -> DXAImage:
    """Read one scan for prediction: a DXA file (not a volume), a plausible spacing, head-up
    once the asked flips are applied (:func:`spinelib.learn.orientation.flip_dxa`).

    Raises
    ------
    UnreadableFileError
        A NIfTI/Analyze volume, or a file :func:`spinelib.io.read_dxa` cannot read.
    InvalidArgumentError
        An implausible pixel spacing (:func:`spinelib.learn.sanity.check_spacing`).
    OrientationError
        An upside-down scan (:func:`spinelib.learn.orientation.check_orientation`).
    """
    name = Path(dxa_path).name.lower()
    if any(name.endswith(sfx) for sfx in _NIFTI_SUFFIXES):
        raise UnreadableFileError(
            f"{dxa_path} is a 3D volume (NIfTI/Analyze), not a DXA scan; give a dxa.npz, a UK Biobank "
            "DXA pickle or a PNG/TIFF image"
        )
    dxa = read_dxa(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm)
    check_spacing(dxa)
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
    dxa = read_scan(dxa_path, allow_pickle=allow_pickle, pixel_spacing_mm=pixel_spacing_mm,
                        flip_vertical=flip_vertical, flip_horizontal=flip_horizontal)
    predictor = Predictor.from_checkpoint(checkpoint)
    pred = predictor.predict(dxa)
    paths = write_prediction(pred, out_dir, source=Path(dxa_path).name, model=predictor.describe(),
                             flipped=applied_flips(flip_vertical, flip_horizontal))
    log.info("prediction for %s written to %s", dxa_path, Path(out_dir))
    return paths
