"""The paper's reported results: the one place they are written down.

Bourigault, Jamaludin and Zisserman, *3D Spine Shape Estimation from Single 2D DXA*
(MICCAI 2024), report for their model on the UK Biobank test set a 3D spine curve
deviation of 3.12 mm and a 3D IoU of 83.8 %. The deviation is the paper's x(z)
definition: the predicted and true 3D centrelines compared at the same image rows, which
this library computes as ``centerline_3d_same_row_mm``
(:func:`spinelib.metrics.centreline_same_row_mm`). The Dice follows from the IoU
(``2 IoU / (1 + IoU)``); the paper does not report it.

Everything else reads these numbers from here: the evaluation tables
(:func:`spinelib.evaluate.volume3d.paper_comparison`), the notebooks (glued), the book's
summary table and its pages (MyST substitutions filled by ``spinelib book`` from
:func:`substitutions`).

Examples
--------
>>> paper_text("iou_3d")
'83.8 %'
>>> substitutions()["paper_centerline_3d_mm"]
'3.12 mm'
"""

from __future__ import annotations

from .errors import InvalidArgumentError

__all__ = ["PAPER_RESULTS", "PAPER_METRIC_OF", "paper_text", "substitutions"]

_IOU = 0.838

#: The paper's headline results (its model, UK Biobank test set); fractions for IoU / Dice.
PAPER_RESULTS: dict[str, float] = {"centerline_3d_mm": 3.12, "iou_3d": _IOU, "dice_3d": 2 * _IOU / (1 + _IOU)}

#: The metric of this library each paper number corresponds to (same definition).
PAPER_METRIC_OF: dict[str, str] = {"centerline_3d_mm": "centerline_3d_same_row_mm",
                                   "iou_3d": "iou_3d", "dice_3d": "dice_3d"}

#: How each paper number is written in prose: (scale, format, unit).
_TEXT: dict[str, tuple[float, str, str]] = {"centerline_3d_mm": (1.0, ".2f", "mm"),
                                            "iou_3d": (100.0, ".1f", "%"), "dice_3d": (100.0, ".1f", "%")}


def paper_text(key: str) -> str:
    """The paper's value of ``key`` (a :data:`PAPER_RESULTS` key) as prose, with its unit.

    Raises
    ------
    InvalidArgumentError
        ``key`` is not a paper result.
    """
    if key not in PAPER_RESULTS:
        raise InvalidArgumentError(f"the paper reports no {key!r}; known: {sorted(PAPER_RESULTS)}")
    scale, fmt, unit = _TEXT[key]
    return f"{scale * PAPER_RESULTS[key]:{fmt}} {unit}"


def substitutions() -> dict[str, str]:
    """MyST substitutions of the book's pages: ``{"paper_<key>": text}`` for every paper result
    (e.g. ``{{ paper_centerline_3d_mm }}`` in a page reads ``3.12 mm``)."""
    return {f"paper_{k}": paper_text(k) for k in PAPER_RESULTS}
