"""spinelib.metrics.bootstrap: the percentile bootstrap over subjects."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError, NonFiniteError, ShapeError
from spinelib.metrics.bootstrap import MIN_RESAMPLES, check_bootstrap, percentile_interval, resample_indices


def test_resample_indices_are_seeded_draws_with_replacement():
    idx = resample_indices(50, 400, seed=3)
    assert idx.shape == (400, 50) and idx.min() >= 0 and idx.max() <= 49
    np.testing.assert_array_equal(idx, np.random.default_rng(3).integers(0, 50, size=(400, 50)))
    np.testing.assert_array_equal(idx, resample_indices(50, 400, seed=3))
    assert not np.array_equal(idx, resample_indices(50, 400, seed=4))
    assert any(len(np.unique(row)) < 50 for row in idx)  # with replacement: repeats occur


def test_percentile_interval_known_answers():
    s = np.arange(101.0)  # quantiles of 0..100 are the percentages themselves
    assert percentile_interval(s, 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval(s, 0.5) == pytest.approx((25.0, 75.0))
    assert percentile_interval([2.0] * 7, 0.95) == (2.0, 2.0)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), st.floats(0.05, 0.9))
def test_a_wider_level_never_narrows_the_interval(samples, level):
    lo, hi = percentile_interval(samples, level)
    wlo, whi = percentile_interval(samples, min(0.99, level + 0.05))
    assert min(samples) <= wlo <= lo <= hi <= whi <= max(samples)


def test_the_percentile_mean_interval_covers_a_known_mean():
    # 500 draws of N(3, 1): the 95 % interval of the mean is about 3 +/- 1.96 / sqrt(500)
    x = np.random.default_rng(0).normal(3.0, 1.0, 500)
    lo, hi = percentile_interval(x[resample_indices(x.size, 4000, seed=1)].mean(axis=1), 0.95)
    assert lo < 3.0 < hi and (hi - lo) == pytest.approx(2 * 1.96 / np.sqrt(500), rel=0.15)


@pytest.mark.parametrize("n_boot, level, allow_zero", [
    (MIN_RESAMPLES - 1, 0.95, False), (0, 0.95, False), (20.0, 0.95, False), (True, 0.95, False),
    ("100", 0.95, False), (-1, 0.95, True), (100, 0.0, False), (100, 1.0, False), (100, True, False),
    (100, "0.9", False), (100, float("nan"), False)])
def test_check_bootstrap_refuses(n_boot, level, allow_zero):
    with pytest.raises(InvalidArgumentError):
        check_bootstrap(n_boot, level, allow_zero=allow_zero)


def test_check_bootstrap_accepts():
    assert check_bootstrap(np.int64(200), 0.9) == (200, 0.9)
    assert check_bootstrap(0, 0.95, allow_zero=True) == (0, 0.95)


@pytest.mark.parametrize("call, exc", [
    (lambda: resample_indices(0, 10, 0), InvalidArgumentError),
    (lambda: resample_indices(5, 0, 0), InvalidArgumentError),
    (lambda: percentile_interval([], 0.9), ShapeError),
    (lambda: percentile_interval([[1.0, 2.0]], 0.9), ShapeError),
    (lambda: percentile_interval([1.0, np.inf], 0.9), NonFiniteError),
    (lambda: percentile_interval([1.0, 2.0], 1.5), InvalidArgumentError),
])
def test_bad_inputs(call, exc):
    with pytest.raises(exc):
        call()
