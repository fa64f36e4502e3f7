"""The percentile bootstrap over subjects, shared by every interval of the study.

A statistic's interval is the spread of that statistic over resamples of the subjects drawn
with replacement (:func:`resample_indices`), read off at the quantiles ``(1 - level) / 2``
and ``(1 + level) / 2`` (:func:`percentile_interval`). Resampling subjects, not values, keeps
each subject's numbers together (a paired difference, a true and a predicted angle).

References
----------
Efron and Tibshirani, *An Introduction to the Bootstrap* (1993), ch. 13: percentile intervals.

Examples
--------
>>> resample_indices(3, 2, seed=0).shape
(2, 3)
>>> percentile_interval([1.0, 2.0, 3.0, 4.0, 5.0], level=0.5)
(2.0, 4.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError

__all__ = ["MIN_RESAMPLES", "check_bootstrap", "resample_indices", "percentile_interval"]

#: Fewest resamples an interval is computed from.
MIN_RESAMPLES = 10


def check_bootstrap(n_boot: Any, level: Any, *, allow_zero: bool = False) -> tuple[int, float]:
    """``(n_boot, level)`` as checked ``(int, float)``.

    Parameters
    ----------
    n_boot : resamples, an integer >= :data:`MIN_RESAMPLES` (or 0 with ``allow_zero``:
        no interval asked for).
    level : coverage, in (0, 1).

    Raises
    ------
    InvalidArgumentError
        Either is out of range or of the wrong type (a bool is not a count).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or \
            not (int(n_boot) >= MIN_RESAMPLES or (allow_zero and int(n_boot) == 0)):
        raise InvalidArgumentError(
            f"n_boot must be an integer >= {MIN_RESAMPLES}{' (or 0)' if allow_zero else ''}, got {n_boot!r}")
    return int(n_boot), _check_level(level)


def _check_level(level: Any) -> float:
    """``level`` as a float, refused unless it is a number in (0, 1)."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or \
            not 0.0 < float(level) < 1.0:
        raise InvalidArgumentError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` int64 subject indices, each row a resample drawn with replacement.

    ``numpy.random.default_rng(seed)`` draws them all at once: the same seed gives the same
    resamples, so two statistics computed on the same subjects and seed share them.

    Raises
    ------
    InvalidArgumentError
        ``n`` < 1 or ``n_boot`` < 1.
    """
    if isinstance(n, bool) or int(n) < 1 or isinstance(n_boot, bool) or int(n_boot) < 1:
        raise InvalidArgumentError(f"need n >= 1 subjects and n_boot >= 1 resamples, got {n!r} and {n_boot!r}")
    return np.random.default_rng(int(seed)).integers(0, int(n), size=(int(n_boot), int(n)))


def percentile_interval(samples: Any, level: float) -> tuple[float, float]:
    """``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of ``samples``.

    Parameters
    ----------
    samples : (n_boot,) float, the statistic on each resample.
    level : coverage, in (0, 1).

    Raises
    ------
    ShapeError
        ``samples`` is not a non-empty 1D array.
    NonFiniteError
        ``samples`` holds NaN or infinite values.
    InvalidArgumentError
        ``level`` is not in (0, 1).
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ShapeError(f"samples must be a non-empty 1D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise NonFiniteError("samples hold NaN or infinite values")
    alpha = 0.5 * (1.0 - _check_level(level))
    lo, hi = np.quantile(s, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
