"""3D overlap of two boolean masks: intersection over union and Dice (fractions in [0, 1])."""

from __future__ import annotations

import numpy as np

from ..errors import EmptySegmentationError, InvalidArgumentError, ShapeError

__all__ = ["iou_3d", "dice_3d"]


def _check_pair_masks(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as boolean 3D arrays of one shape (0/1 numbers accepted)."""
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ShapeError(f"masks must have the same shape, got {x.shape} and {y.shape}")
    if x.ndim != 3:
        raise ShapeError(f"masks must be 3D, got {x.ndim} dimensions")
    for m, n in ((x, "a"), (y, "b")):
        if m.dtype != bool and not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            raise InvalidArgumentError(f"mask {n} must be boolean (or 0/1), got dtype {m.dtype}")
    return x.astype(bool, copy=False), y.astype(bool, copy=False)


def iou_3d(a, b) -> float:
    """Intersection over union ``|A & B| / |A | B|`` of two boolean masks (the paper's 3D IoU).

    Raises
    ------
    EmptySegmentationError
        Both masks empty (IoU undefined).
    """
    x, y = _check_pair_masks(a, b)
    union = int(np.count_nonzero(x | y))
    if union == 0:
        raise EmptySegmentationError("both masks are empty: IoU is undefined")
    return int(np.count_nonzero(x & y)) / union


def dice_3d(a, b) -> float:
    """Dice ``2 |A & B| / (|A| + |B|)`` (= ``2 IoU / (1 + IoU)``) of two boolean masks."""
    x, y = _check_pair_masks(a, b)
    total = int(np.count_nonzero(x)) + int(np.count_nonzero(y))
    if total == 0:
        raise EmptySegmentationError("both masks are empty: Dice is undefined")
    return 2.0 * int(np.count_nonzero(x & y)) / total
