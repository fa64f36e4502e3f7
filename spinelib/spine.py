"""Names and numbers of the spine shared by the generator, the loaders and the curves.

Label values of a segmentation volume (``seg.nii.gz``)::

    1..17   vertebral bodies T1..T12, L1..L5 (one label per vertebra)
    18      sacrum
    20      intervertebral discs of the T1-L5 column (T1/T2 .. L4/L5)
    21      lumbosacral disc L5/S1 (outside the column)
    22      posterior elements of all vertebrae (pedicles, laminae, processes)

The *spine column* used for every target and metric is vertebral bodies plus
discs, T1 to L5: labels 1..17 and 20.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LEVELS",
    "N_VERTEBRAE",
    "THORACIC",
    "LUMBAR",
    "SACRUM_LABEL",
    "DISC_LABEL",
    "LUMBOSACRAL_DISC_LABEL",
    "POSTERIOR_LABEL",
    "COLUMN_LABELS",
    "CURVE_NAMES",
    "vertebra_label",
    "column_mask",
]

LEVELS: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
N_VERTEBRAE = len(LEVELS)  # 17
THORACIC: tuple[str, ...] = LEVELS[:12]
LUMBAR: tuple[str, ...] = LEVELS[12:]

SACRUM_LABEL = 18
DISC_LABEL = 20
LUMBOSACRAL_DISC_LABEL = 21
POSTERIOR_LABEL = 22
COLUMN_LABELS: tuple[int, ...] = tuple(range(1, N_VERTEBRAE + 1)) + (DISC_LABEL,)

#: The six target curves, in the order of the first axis of every ``(6, K)`` curve array.
#: Coronal curves are DXA column positions in mm (column index x column spacing);
#: sagittal curves are AP depths in mm measured anteriorly from the table plane.
CURVE_NAMES: tuple[str, ...] = (
    "coronal_left",
    "coronal_centre",
    "coronal_right",
    "sagittal_posterior",
    "sagittal_centre",
    "sagittal_anterior",
)


def vertebra_label(name: str) -> int:
    """Label value of a vertebral body, ``'T1' -> 1`` ... ``'L5' -> 17``."""
    try:
        return LEVELS.index(name) + 1
    except ValueError:
        raise ValueError(f"unknown vertebra {name!r}; expected one of {LEVELS}") from None


def column_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean spine-column mask (bodies T1-L5 and their discs) of a label volume."""
    return np.isin(np.asarray(labels), COLUMN_LABELS)
