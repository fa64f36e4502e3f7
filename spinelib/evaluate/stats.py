"""Summary statistics of the evaluation: distribution summaries, paired bootstrap, Bland-Altman.

Pure functions on 1D arrays of per-subject (or per-point) numbers.

References
----------
* Efron and Tibshirani, *An Introduction to the Bootstrap* (1993), ch. 13: percentile
  intervals (:mod:`spinelib.metrics.bootstrap`); resampling the *subjects* keeps each
  subject's paired errors together.
* Bland and Altman, *Statistical methods for assessing agreement between two methods of
  clinical measurement*, Lancet 1 (1986) 307-310: bias and 95 % limits of agreement.

Examples
--------
>>> import numpy as np
>>> summarize([1.0, 2.0, 3.0, 4.0])["median"]
2.5
>>> r = paired_bootstrap(np.array([2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0]), n_boot=100, seed=0)
>>> r.mean_diff, r.ci_low, r.ci_high
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..metrics.bootstrap import check_bootstrap, percentile_interval, resample_indices

__all__ = ["summarize", "BootstrapResult", "paired_bootstrap", "bland_altman"]


def _vector(x, name: str, *, min_size: int = 1) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ShapeError(f"{name} must be a 1D array, got shape {a.shape}")
    if a.size < min_size:
        raise InvalidArgumentError(f"{name} needs at least {min_size} value(s), got {a.size}")
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{name} holds NaN or infinite values")
    return a


def summarize(values, *, percentile: float = 95.0) -> dict[str, float]:
    """Mean, median and upper percentile of a sample.

    Parameters
    ----------
    values : (N,) finite numbers, N >= 1.
    percentile : the upper percentile reported as ``"p95"`` (linear interpolation).

    Returns
    -------
    ``{"mean", "median", "p95", "n"}`` (``n`` as a float for uniform tables).
    """
    a = _vector(values, "values")
    if not np.isfinite(percentile) or not 0.0 <= percentile <= 100.0:
        raise InvalidArgumentError(f"percentile must be in [0, 100], got {percentile!r}")
    return {"mean": float(a.mean()), "median": float(np.median(a)),
            "p95": float(np.percentile(a, percentile)), "n": float(a.size)}


@dataclass(frozen=True)
class BootstrapResult:
    """A paired comparison ``a - b`` over subjects.

    Attributes
    ----------
    mean_diff : mean of the per-subject differences ``a_i - b_i``.
    ci_low, ci_high : percentile bootstrap interval of the mean difference.
    level : coverage of the interval (e.g. 0.95).
    p_two_sided : twice the smaller share of bootstrap means on either side of zero
        (capped at 1): how often resampling the subjects flips the sign of the difference.
    n : number of subjects.
    n_boot : number of resamples.
    samples : (n_boot,) bootstrap means (for plots).
    """

    mean_diff: float
    ci_low: float
    ci_high: float
    level: float
    p_two_sided: float
    n: int
    n_boot: int
    samples: np.ndarray

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely on one side of zero (the difference is real
        at this level)."""
        return bool(self.ci_low > 0.0 or self.ci_high < 0.0)

    def as_dict(self) -> dict[str, float]:
        """The scalar fields as plain floats (for tables and metrics.json)."""
        return {"mean_diff": self.mean_diff, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "level": self.level, "p_two_sided": self.p_two_sided, "n": float(self.n),
                "excludes_zero": float(self.excludes_zero)}


def paired_bootstrap(a, b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> BootstrapResult:
    """Percentile bootstrap interval of the mean paired difference ``mean(a - b)``.

    Subjects are resampled with replacement (``numpy.random.default_rng(seed)``), so each
    subject's two numbers stay together and the between-subject spread, which both models
    share, cancels in the difference.

    Parameters
    ----------
    a, b : (N,) per-subject values of the two methods (same subjects, same order), N >= 2.
    n_boot : resamples (>= 10).
    seed : seed of the resampling (same seed, same interval).
    level : coverage in (0, 1).

    Returns
    -------
    :class:`BootstrapResult`.
    """
    x = _vector(a, "a", min_size=2)
    y = _vector(b, "b", min_size=2)
    if x.shape != y.shape:
        raise ShapeError(f"a and b must pair the same subjects, got {x.size} and {y.size} values")
    n_boot, level = check_bootstrap(n_boot, level)
    d = x - y
    means = d[resample_indices(d.size, n_boot, seed)].mean(axis=1)
    lo, hi = percentile_interval(means, level)
    p = 2.0 * min(float(np.mean(means <= 0.0)), float(np.mean(means >= 0.0)))
    return BootstrapResult(float(d.mean()), lo, hi, level, min(1.0, p), int(d.size), n_boot, means)


def bland_altman(reference, measured) -> dict[str, float]:
    """Bland-Altman agreement of ``measured`` with ``reference`` (same subjects, same units).

    Returns
    -------
    ``{"bias": mean(measured - reference), "sd": sample SD of the differences,
    "loa_low", "loa_high": bias -/+ 1.96 sd, "mae": mean |measured - reference|, "n"}``.
    The SD is 0 for a single subject.
    """
    r = _vector(reference, "reference")
    m = _vector(measured, "measured")
    if r.shape != m.shape:
        raise ShapeError(f"reference and measured must have one value per subject, got {r.size} and {m.size}")
    d = m - r
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    bias = float(d.mean())
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
            "mae": float(np.abs(d).mean()), "n": float(d.size)}
