"""Input recipes: how a DXA becomes the crop a network reads, and what a checkpoint records of it.

There are two recipes (:data:`INPUT_RECIPES`): ``"spinelib"``, our models' (AP bone and tissue
scaled by :data:`spinelib.learn.data.INPUT_SCALE`, plus the lateral view for biplanar models:
:func:`spinelib.learn.data.prepare_scan`), and ``"paper_bone_rgb"``, the paper's released
model's (:data:`spinelib.learn.paper_checkpoint.PAPER_INPUT_RECIPE`: contrast-normalised bone
only, 8-bit, copied to 3 channels).

Training stores the recipe in every checkpoint's ``extra`` (:func:`input_recipe`: the crop's
pixel size, the recipe's name, its channel scaling and whether the model is read with mirror
averaging); :func:`read_recipe` reads it back and refuses a checkpoint trained on inputs of
another scale, so that no reader feeds a model crops it was not trained on, and
:func:`check_crop_recipe` refuses a run whose crops differ from the checkpoint's.
:func:`recipe_input` cuts a scan's crop under either recipe.

Mirror averaging: a network trained on crops mirrored left-right half of the time
(``augment_mirror``) has learnt both a body and its mirror image, and is read on both: its
prediction is the mean of its outputs on the crop and on the mirrored crop, the second mirrored
back (:meth:`spinelib.learn.predict.Predictor.forward_batch`). On the default cohort's validation
split this lowered every network's 3D, centreline and Cobb angle errors (``profiles.TUNED_ON``:
a single reading adds curvature to straight spines). A model not trained on
mirrored crops (the mean shape, the paper's released model) is read on the crop alone.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..errors import CheckpointError, InvalidArgumentError
from ..io.checks import check_positive
from ..io import DXAImage
from ..shape.curves import CropWindow
from .crop import find_spine_crop, resample_image, sample_crop
from .data import INPUT_SCALE, prepare_scan

__all__ = ["INPUT_RECIPES", "RecordedRecipe", "input_recipe", "read_recipe", "check_crop_recipe", "recipe_input"]

#: Inputs a Predictor can build: ``"spinelib"`` (AP bone and tissue scaled by
#: ``data.INPUT_SCALE``, plus the lateral view for biplanar models) and the paper's
#: released model's recipe (:data:`spinelib.learn.paper_checkpoint.PAPER_INPUT_RECIPE`).
INPUT_RECIPES: tuple[str, ...] = ("spinelib", "paper_bone_rgb")


class RecordedRecipe(NamedTuple):
    """What a checkpoint records of how its model reads a scan (:func:`read_recipe`)."""

    pixel_mm: float  # the crop's pixel size (mm)
    name: str  # one of INPUT_RECIPES
    mirror_average: bool  # read on the crop and its left-right mirror, the two outputs averaged


def input_recipe(pixel_mm: float, *, mirror_average: bool = False) -> dict:
    """What a checkpoint must record of the inputs it was trained on (besides its
    :class:`~spinelib.learn.config.ModelConfig`: image size, channels, K).

    Parameters
    ----------
    pixel_mm : the crop's pixel size (mm), so that no reader feeds the model crops of another scale.
    mirror_average : whether the model is read with mirror averaging (see the module docstring):
        true only for a network trained on mirrored crops.

    Returns
    -------
    dict of plain values: ``crop_pixel_mm``, ``input_recipe`` (``"spinelib"``:
    :func:`~spinelib.learn.data.prepare_scan`), ``input_scale``
    (:data:`~spinelib.learn.data.INPUT_SCALE`) and ``mirror_average``.

    Raises
    ------
    InvalidArgumentError
        ``pixel_mm`` not a positive number, ``mirror_average`` not a bool.
    """
    if not isinstance(mirror_average, (bool, np.bool_)):
        raise InvalidArgumentError(f"mirror_average must be True or False, got {mirror_average!r}")
    return {"crop_pixel_mm": check_positive(pixel_mm, "pixel_mm"), "input_recipe": "spinelib",
            "input_scale": dict(INPUT_SCALE), "mirror_average": bool(mirror_average)}


def _plain_scale(scale: Any) -> Any:
    """A recorded channel scaling as plain floats (checkpoints hand numbers back as tensors)."""
    if not isinstance(scale, Mapping):
        return scale
    try:
        return {str(k): float(v) for k, v in scale.items()}
    except (TypeError, ValueError):
        return dict(scale)


def read_recipe(extra: Mapping[str, Any], path: str | os.PathLike) -> RecordedRecipe:
    """The crop pixel size (mm), the recipe name and the mirror averaging that checkpoint
    ``path`` records in ``extra``.

    Checkpoints written before the mirror averaging was recorded are read without it, as they
    were then.

    Raises
    ------
    CheckpointError
        No (valid) crop pixel size, an unknown recipe, a ``"spinelib"`` checkpoint trained
        on inputs scaled otherwise than :data:`~spinelib.learn.data.INPUT_SCALE` (checkpoints
        written before the scaling was recorded count as today's), or a ``mirror_average``
        that is not a bool.
    """
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
    scale = extra.get("input_scale", INPUT_SCALE) if recipe == "spinelib" else INPUT_SCALE
    if _plain_scale(scale) != INPUT_SCALE:
        raise CheckpointError(f"checkpoint {path} was trained on inputs scaled by {scale!r}; this version of "
                              f"spinelib prepares them scaled by {INPUT_SCALE!r}: retrain it")
    mirror = extra.get("mirror_average", False)
    if not isinstance(mirror, (bool, np.bool_)):
        raise CheckpointError(f"checkpoint {path} records an invalid mirror_average {mirror!r} (must be true or false)")
    return RecordedRecipe(px, recipe, bool(mirror))


def check_crop_recipe(trained_pixel_mm: float, trained_size: Sequence[int], pixel_mm: float,
                      image_size: Sequence[int], *, where: str, verb: str = "trained") -> None:
    """Refuse crops of ``pixel_mm`` (mm) and ``image_size`` (rows, cols) for a model ``verb``
    (``"trained"``, ``"fitted"``) on crops of ``trained_pixel_mm`` and ``trained_size``.

    A run's profile states the crop it prepares (``crop_pixel_mm``, ``image_size``); the
    checkpoint states the crop its model was trained on. They must agree, or the model
    would silently read a spine of the wrong size.

    Raises
    ------
    CheckpointError
        Naming ``where`` and both recipes.
    """
    size = tuple(int(v) for v in image_size)
    if size != tuple(trained_size) or not np.isclose(float(pixel_mm), trained_pixel_mm):
        raise CheckpointError(
            f"{where} was {verb} on {trained_size[0]}x{trained_size[1]} crops of "
            f"{trained_pixel_mm:g} mm, but {size[0]}x{size[1]} crops of {float(pixel_mm):g} mm are asked for")


def recipe_input(dxa: DXAImage, recipe: str, *, pixel_mm: float, image_size: Sequence[int],
                 lateral: bool = False) -> tuple[np.ndarray, CropWindow]:
    """The crop a network of input recipe ``recipe`` sees for ``dxa``.

    Parameters
    ----------
    dxa : the scan.
    recipe : one of :data:`INPUT_RECIPES`.
    pixel_mm : crop pixel size in mm.
    image_size : (rows, cols) of the crop.
    lateral : add the lateral view (``"spinelib"`` recipe only).

    Returns
    -------
    ((C, rows, cols) float32 crop, its :class:`CropWindow` on the ``pixel_mm`` grid).
    """
    if recipe == "paper_bone_rgb":
        from .paper_checkpoint import paper_bone_normalize, paper_input_stack

        sp = dxa.pixel_spacing_mm
        crop = find_spine_crop(resample_image(dxa.bone, sp, pixel_mm), pixel_mm=pixel_mm, image_size=image_size)
        norm = np.clip(resample_image(paper_bone_normalize(dxa.bone), sp, pixel_mm), 0.0, 1.0)
        return sample_crop(paper_input_stack(norm), crop), crop
    scan = prepare_scan(dxa, pixel_mm=pixel_mm, image_size=image_size, lateral=lateral)
    return sample_crop(scan.stack, scan.crop), scan.crop
