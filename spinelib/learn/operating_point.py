"""A network's scoliosis operating point, stored beside its checkpoint.

The reconstruction section chooses, for each network, the predicted Cobb angle from which a
spine is called scoliotic: the threshold of largest Youden's J on the validation split
(:func:`spinelib.evaluate.scoliosis.operating_threshold`). It writes that choice to
``operating_point.json`` beside the network's checkpoint (:func:`write_operating_point`),
with the checkpoint's SHA-256, and :class:`~spinelib.learn.predict.Predictor` reads it back
(:func:`read_operating_point`), so that ``spinelib predict`` calls a new scan scoliotic by
the rule behind the book's test numbers (:func:`scoliosis_calls`). A file written for
another checkpoint (the network was retrained since) is ignored with a warning; a
checkpoint copied without its ``operating_point.json`` gets the clinical rule only.

File contract (``operating_point.json``, JSON object)::

    decision_deg       float  predicted Cobb (deg) from which the network calls a spine scoliotic
    threshold_deg      float  the Cobb angle of the reference class (SCOLIOSIS_DEG)
    chosen_on          str    the data it was chosen on, in words
    checkpoint_sha256  str    SHA-256 of the checkpoint file it belongs to
    n, n_scoliotic, sensitivity, specificity   its scores on that data
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, UnreadableFileError
from ..io.checks import check_integer
from ..metrics.clinical import SCOLIOSIS_DEG
from ..util.atomic import write_json_atomic
from ..util.hashing import file_sha256
from .checkpoint import MissingCheckpointError

log = logging.getLogger(__name__)

__all__ = ["OPERATING_POINT", "OperatingPoint", "operating_point_path", "write_operating_point",
           "read_operating_point", "scoliosis_calls"]

#: File name of the operating point, in the checkpoint's folder.
OPERATING_POINT = "operating_point.json"


@dataclass(frozen=True)
class OperatingPoint:
    """Where a network's predicted Cobb angle is cut into scoliotic / straight, and how it scored there."""

    decision_deg: float
    chosen_on: str
    n: int
    n_scoliotic: int
    sensitivity: float
    specificity: float
    threshold_deg: float = SCOLIOSIS_DEG

    def __post_init__(self) -> None:
        for name in ("decision_deg", "threshold_deg"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InvalidArgumentError(f"{name} must be a finite number of degrees, got {value!r}")
        n = check_integer(self.n, "n", 2)
        pos = check_integer(self.n_scoliotic, "n_scoliotic", 1)
        if pos >= n:
            raise InvalidArgumentError(f"an operating point needs straight spines too: n_scoliotic {pos} of n {n}")
        for name in ("sensitivity", "specificity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise InvalidArgumentError(f"{name} must be in [0, 1], got {value!r}")
        if not isinstance(self.chosen_on, str) or not self.chosen_on:
            raise InvalidArgumentError(f"chosen_on must say in words what the point was chosen on, got {self.chosen_on!r}")


def operating_point_path(checkpoint: str | Path) -> Path:
    """``operating_point.json`` in the folder of ``checkpoint``."""
    return Path(checkpoint).parent / OPERATING_POINT


def write_operating_point(checkpoint: str | Path, point: OperatingPoint) -> Path:
    """Write ``point`` beside ``checkpoint`` (atomically), tied to the checkpoint's SHA-256.

    Raises
    ------
    MissingCheckpointError
        ``checkpoint`` is not a file.
    InvalidArgumentError
        ``point`` is not an :class:`OperatingPoint`.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise MissingCheckpointError(f"no checkpoint at {path} to write an operating point for")
    if not isinstance(point, OperatingPoint):
        raise InvalidArgumentError(f"point must be an OperatingPoint, got {type(point).__name__}")
    return write_json_atomic(operating_point_path(path), {**asdict(point), "checkpoint_sha256": file_sha256(path)})


def read_operating_point(checkpoint: str | Path) -> OperatingPoint | None:
    """The operating point stored beside ``checkpoint``; None when there is none, or when it
    was written for another checkpoint (a warning says so).

    Raises
    ------
    UnreadableFileError
        ``operating_point.json`` exists but is not a valid operating point (the file is named).
    """
    path = operating_point_path(checkpoint)
    if not path.is_file():
        # a checkpoint copied without its file still predicts; `spinelib predict` tells its user
        # (DEBUG here: a run reads its checkpoints before the reconstruction section writes the points)
        log.debug("no %s beside %s: scoliosis is called by the clinical rule only (Cobb >= %g deg)",
                 path.name, checkpoint, SCOLIOSIS_DEG)
        return None
    try:
        record: Any = json.loads(path.read_text())
        digest = record.pop("checkpoint_sha256")
        point = OperatingPoint(**record)
    except (OSError, ValueError, TypeError, AttributeError, KeyError, InvalidArgumentError) as exc:
        raise UnreadableFileError(f"{path} is not a valid operating point: {exc}") from exc
    if digest != file_sha256(checkpoint):
        log.warning("ignoring %s: it was written for another checkpoint than %s (retrained since?); "
                    "re-run the reconstruction section to choose the operating point again", path, checkpoint)
        return None
    return point


def scoliosis_calls(cobb_deg: float, point: OperatingPoint | None) -> dict[str, Any]:
    """Whether a predicted Cobb angle is scoliotic, under the clinical rule and at ``point``.

    Returns
    -------
    ``{"scoliotic_clinical": cobb_deg >= SCOLIOSIS_DEG}``, and with a ``point``
    ``"scoliosis_decision_deg"`` and ``"scoliotic_at_decision": cobb_deg >= decision_deg``.

    Raises
    ------
    InvalidArgumentError
        ``cobb_deg`` is not a finite number.
    """
    if isinstance(cobb_deg, bool) or not isinstance(cobb_deg, numbers.Real) or not math.isfinite(cobb_deg):
        raise InvalidArgumentError(f"cobb_deg must be a finite number of degrees, got {cobb_deg!r}")
    calls: dict[str, Any] = {"scoliotic_clinical": bool(cobb_deg >= SCOLIOSIS_DEG)}
    if point is not None:
        calls["scoliosis_decision_deg"] = float(point.decision_deg)
        calls["scoliotic_at_decision"] = bool(cobb_deg >= point.decision_deg)
    return calls
