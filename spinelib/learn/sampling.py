"""How training draws its subjects when some must come more often than others.

Trained on the population's mix, a network flattens the rare large scoliotic curves toward the
average spine. :func:`severity_weights` gives the rarer severity classes more weight, and
:class:`WeightedDraws` turns weights into one epoch's seeded draws, shared between torchrun
ranks as ``DistributedSampler`` shares a shuffled order. :func:`spinelib.learn.train.train_model`
uses them through its ``sample_weights``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ..errors import InvalidArgumentError

__all__ = ["severity_weights", "WeightedDraws"]


def severity_weights(cobb_deg: np.ndarray, edges_deg: Sequence[float], power: float) -> np.ndarray:
    """Sampling weights ``(N,)`` that draw the rarer severity classes more often.

    Each subject's class is the bin of its Cobb angle between ``edges_deg`` (ascending; a
    value on an edge goes to the upper class). A subject weighs ``(N / n_class) ** power``,
    scaled to a mean of 1: ``power`` 0 draws every subject alike, 1 draws every class
    equally often, values between temper the rare classes' share.

    Parameters
    ----------
    cobb_deg : (N,) Cobb angle of each training subject's target curves, in degrees.
    edges_deg : class edges in degrees, ascending.
    power : >= 0.

    Raises
    ------
    InvalidArgumentError
        ``cobb_deg`` is not a non-empty 1D array of finite values, ``edges_deg`` is not
        ascending, or ``power`` is negative or not finite.

    Examples
    --------
    >>> severity_weights(np.array([0.0, 0.0, 0.0, 25.0]), (10.0,), 1.0).round(3).tolist()
    [0.667, 0.667, 0.667, 2.0]
    """
    c = np.asarray(cobb_deg, dtype=float)
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
        raise InvalidArgumentError(f"cobb_deg must be a non-empty 1D array of finite angles, got shape {c.shape}")
    e = np.asarray(edges_deg, dtype=float)
    if e.ndim != 1 or np.any(np.diff(e) <= 0) or not np.all(np.isfinite(e)):
        raise InvalidArgumentError(f"edges_deg must be finite and ascending, got {list(edges_deg)}")
    if not (math.isfinite(power) and power >= 0):
        raise InvalidArgumentError(f"power must be a finite number >= 0, got {power}")
    cls = np.searchsorted(e, c, side="right")
    counts = np.bincount(cls, minlength=e.size + 1)
    w = (c.size / counts[cls]) ** power
    return w / w.mean()


class WeightedDraws(Sampler[int]):
    """One epoch of weighted draws with replacement, this rank's share of them.

    Every rank draws the same ``ceil(N / world) * world`` indices from ``seed`` and keeps
    every ``world``-th from its rank on, so the ranks together see one epoch's draws, as
    ``DistributedSampler`` shares a shuffled order.
    """

    def __init__(self, weights: np.ndarray, seed: int, rank: int, world: int) -> None:
        n = -(-len(weights) // world) * world
        draws = torch.multinomial(torch.from_numpy(np.asarray(weights, dtype=float)), n, replacement=True,
                                  generator=torch.Generator().manual_seed(seed))
        self.indices = draws[rank::world].tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
