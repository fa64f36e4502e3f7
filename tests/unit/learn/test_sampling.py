"""How training draws its subjects (spinelib.learn.sampling): severity weights and seeded weighted draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError
from spinelib.learn.sampling import WeightedDraws, severity_weights


def test_severity_weights_known_answers():
    cobb = np.array([0.0, 5.0, 9.9, 10.0, 15.0, 35.0])  # classes (edges 10, 20, 30): 3 none, 2 mild, 1 severe
    edges = (10.0, 20.0, 30.0)
    assert severity_weights(cobb, edges, 0.0).tolist() == [1.0] * 6
    w = severity_weights(cobb, edges, 1.0)
    # N / n_class = 2, 3, 6, scaled to a mean of 1 (their mean over the subjects is 3)
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 2.0])
    assert severity_weights(cobb, edges, 0.5) == pytest.approx(np.sqrt([2, 2, 2, 3, 3, 6]) / np.sqrt([2, 2, 2, 3, 3, 6]).mean())


@settings(max_examples=40, deadline=None)
@given(cobb=st.lists(st.floats(0.0, 60.0), min_size=1, max_size=40), power=st.floats(0.0, 2.0))
def test_severity_weights_have_mean_one_and_power_one_balances_the_classes(cobb, power):
    cobb = np.array(cobb)
    edges = (10.0, 20.0, 30.0)
    w = severity_weights(cobb, edges, power)
    assert w.mean() == pytest.approx(1.0) and np.all(w > 0)
    cls = np.searchsorted(edges, cobb, side="right")
    present = np.unique(cls)
    shares = [severity_weights(cobb, edges, 1.0)[cls == c].sum() for c in present]
    assert shares == pytest.approx([len(cobb) / len(present)] * len(present))


@pytest.mark.parametrize("cobb, edges, power, match", [
    (np.zeros((2, 2)), (10.0,), 1.0, "cobb_deg"), (np.zeros(0), (10.0,), 1.0, "cobb_deg"),
    (np.array([1.0, np.nan]), (10.0,), 1.0, "cobb_deg"), (np.zeros(3), (20.0, 10.0), 1.0, "edges_deg"),
    (np.zeros(3), (10.0,), -1.0, "power"), (np.zeros(3), (10.0,), float("inf"), "power")])
def test_severity_weights_refuse_bad_input(cobb, edges, power, match):
    with pytest.raises(InvalidArgumentError, match=match):
        severity_weights(cobb, edges, power)


def test_weighted_draws_share_one_draw_between_ranks_and_never_draw_weight_zero():
    w = np.array([0.0, 1.0, 2.0, 0.0, 5.0, 1.0, 1.0])
    alone = WeightedDraws(w, 7, 0, 1).indices
    assert len(alone) == 7 and not {0, 3} & set(alone)
    assert alone == torch.multinomial(torch.from_numpy(w), 7, replacement=True,
                                      generator=torch.Generator().manual_seed(7)).tolist()
    shares = [WeightedDraws(w, 7, r, 2).indices for r in (0, 1)]
    assert [len(s) for s in shares] == [4, 4]  # 7 draws padded to 8, as DistributedSampler pads
    both = torch.multinomial(torch.from_numpy(w), 8, replacement=True, generator=torch.Generator().manual_seed(7))
    assert shares[0] == both[0::2].tolist() and shares[1] == both[1::2].tolist()
