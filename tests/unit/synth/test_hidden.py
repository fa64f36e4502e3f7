"""spinelib.synth.hidden: what an AP image cannot show of a synthetic spine's height above the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.errors import InvalidArgumentError
from spinelib.profiles import get_profile
from spinelib.synth import hidden as H
from spinelib.synth import shape as S
from spinelib.synth.cohort import generate_cohort
from spinelib.synth.config import SynthConfig
from spinelib.synth.subject import draw_subject_geometry

K = 16


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two smoke subjects written by the generator, and their settings."""
    config = SynthConfig.from_profile(get_profile("smoke", {"n_subjects": 2, "seed": 3}))
    out = tmp_path_factory.mktemp("hidden")
    generate_cohort(out, config, jobs=1, progress=False)
    truths = [json.loads((out / f"S{i:05d}" / "truth.json").read_text()) for i in range(2)]
    return config, truths


def test_draw_shape_draws_the_back_tissue_from_its_priors():
    """The priors as data reproduce the draws they replaced: a normal draw raised to the least value."""
    names = tuple(S.BACK_TISSUE_PRIORS)
    got = S.draw_back_tissue(np.random.default_rng(7))
    rng = np.random.default_rng(7)
    want = {n: round(max(S.BACK_TISSUE_PRIORS[n][2], rng.normal(*S.BACK_TISSUE_PRIORS[n][:2])), 3) for n in names}
    assert got == want
    demo = {"sex": "F", "height_cm": 165.0, "age": 60.0, "bmi": 27.0}
    shape = S.draw_shape(np.random.default_rng(1), demo)
    assert all(shape[n] >= S.BACK_TISSUE_PRIORS[n][2] for n in names)
    with pytest.raises(InvalidArgumentError, match="not back tissue"):
        S.draw_back_tissue(np.random.default_rng(0), ("belly_fat_mm",))
    with pytest.raises(InvalidArgumentError, match="draw_shape dict"):
        H.redraw_hidden({"scale": 1.0}, np.random.default_rng(0))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_redraw_hidden_changes_the_hidden_draws_only(seed):
    g = draw_subject_geometry(seed % 50, SynthConfig(n_subjects=50))
    shape = g["shape"]
    new = H.redraw_hidden(shape, np.random.default_rng(seed))
    changed = {k for k in shape if not np.array_equal(np.asarray(new[k]), np.asarray(shape[k]))}
    assert changed <= set(H.AP_HIDDEN_DRAWS)
    assert "back_muscle_thoracic_mm" not in changed  # the lung fields show it
    assert new["sacral_tissue_mm"] >= S.BACK_TISSUE_PRIORS["sacral_tissue_mm"][2]
    assert np.asarray(new["arch_length_mm"]).shape == (17,) and np.asarray(new["spinous_droop_mm"]).shape == (17,)


def test_redraws_follow_the_priors():
    """Many redraws of one subject: the tissue has the prior's mean and SD, the arch and droop
    factors around the subject's reference sizes have mean 1 and the prior's SD."""
    shape = draw_subject_geometry(0, SynthConfig(n_subjects=1))["shape"]
    rng = np.random.default_rng(0)
    draws = [H.redraw_hidden(shape, rng) for _ in range(4000)]
    mean, sd, _ = S.BACK_TISSUE_PRIORS["back_muscle_lumbar_mm"]
    lumbar = np.array([d["back_muscle_lumbar_mm"] for d in draws])
    assert lumbar.mean() == pytest.approx(mean, abs=0.3) and lumbar.std() == pytest.approx(sd, rel=0.06)
    arch = np.array([d["arch_length_mm"] for d in draws])
    reference = np.mean([S.arch_lengths(rng, shape["section_scale"]) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(arch.mean(0), reference, rtol=0.01)  # the subject's own reference size
    assert (arch.std(0) / arch.mean(0)).mean() == pytest.approx(S.ARCH_JITTER_SD, rel=0.1)
    droop = np.array([d["spinous_droop_mm"] for d in draws])
    assert (droop.std(0) / droop.mean(0)).mean() == pytest.approx(S.DROOP_JITTER_SD, rel=0.1)


def test_level_heights_and_height_above_table_of_a_placed_spine():
    g = draw_subject_geometry(4, SynthConfig(n_subjects=5))
    spine, shape = g["spine_dxa"], g["shape"]
    z = H.level_heights(spine, shape, K)
    assert z.shape == (K,) and np.all(np.diff(z) < 0)  # top of T1 first, downwards
    c, up = spine["centres"], spine["frames"][:, 2, 2]  # z of each vertebra's superior axis
    h = z[0] - z[1]
    np.testing.assert_allclose(np.diff(z), -h)  # K equal slabs
    assert z[0] + h / 2 == pytest.approx(c[0, 2] + up[0] * shape["body_height_mm"][0] / 2)  # top of T1
    assert z[-1] - h / 2 == pytest.approx(c[-1, 2] - up[-1] * shape["body_height_mm"][-1] / 2)  # bottom of L5
    # at the centres themselves: exactly their height above the table
    np.testing.assert_allclose(H.height_above_table(spine, c[:, 2]), c[:, 1] - spine["table_y"], atol=1e-9)


def test_offset_is_zero_when_the_redraws_give_the_subject_back(cohort, monkeypatch):
    """The subject placed again from its own draws lies exactly where truth.json says."""
    _, truths = cohort
    monkeypatch.setattr(H, "redraw_hidden", lambda shape, rng: dict(shape))
    np.testing.assert_allclose(H.hidden_depth_offset(truths[0], K, n_draws=3), 0.0, atol=1e-9)


def test_the_same_extra_tissue_everywhere_lifts_the_spine_by_exactly_that(cohort, monkeypatch):
    """Known answer: the skin profile moves down uniformly, so the spine rests at the same pitch
    that much higher."""
    _, truths = cohort
    extra = 7.5
    monkeypatch.setattr(H, "redraw_hidden", lambda shape, rng: {
        **shape, **{k: shape[k] + extra for k in S.BACK_TISSUE_PRIORS}})
    for truth in truths:
        np.testing.assert_allclose(H.hidden_depth_offset(truth, K, n_draws=1), extra, atol=1e-9)


def test_a_thicker_lumbar_back_tilts_the_spine(cohort, monkeypatch):
    """The spine rests on the hull edge across the thoracolumbar junction: a thicker lumbar back
    lifts the lumbar end of that edge, so the lower spine rises and the upper spine sinks."""
    _, truths = cohort
    monkeypatch.setattr(H, "redraw_hidden", lambda shape, rng: {
        **shape, "back_muscle_lumbar_mm": shape["back_muscle_lumbar_mm"] + 10.0})
    for truth in truths:
        off = H.hidden_depth_offset(truth, K, n_draws=1)
        assert off[-1] > 5.0 and off[0] < off[-1] and np.all(np.diff(off) > 0)


def test_offsets_are_seeded_and_of_a_plausible_size(cohort):
    _, truths = cohort
    a = H.hidden_depth_offset(truths[0], K, n_draws=50, seed=1)
    b = H.hidden_depth_offset(truths[0], K, n_draws=50, seed=1)
    c = H.hidden_depth_offset(truths[0], K, n_draws=50, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (K,) and np.all(np.isfinite(a))
    assert np.abs(a).max() < 25.0  # a few tissue SDs, not a misplaced spine


@pytest.mark.parametrize("change, match", [
    (lambda t: t.pop("signature"), "signature or index"),
    (lambda t: t.pop("index"), "signature or index"),
    (lambda t: t.update(index=-1), "signature or index"),
    (lambda t: t["signature"].pop("seed"), "unreadable signature"),
    (lambda t: t["signature"].update(generator_version=1), "generator version 1"),
    (lambda t: t["vertebra_centres_dxa_session_mm"]["T5"].__setitem__(1, 0.0), "centres are not"),
    (lambda t: t.update(index=1), "centres are not"),
    (lambda t: t.pop("vertebra_centres_dxa_session_mm"), "centres are not"),
    (lambda t: t.update(vertebra_centres_dxa_session_mm=[1, 2]), "centres are not"),
])
def test_a_truth_not_of_this_generator_is_refused(cohort, change, match):
    _, truths = cohort
    t = json.loads(json.dumps(truths[0]))
    change(t)
    with pytest.raises(InvalidArgumentError, match=match):
        H.hidden_depth_offset(t, K, n_draws=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_levels": 2}, "n_levels"), ({"n_draws": 0}, "n_draws"), ({"n_draws": 1.5}, "n_draws"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments(cohort, kwargs, match):
    _, truths = cohort
    args = {"n_levels": K, "n_draws": 1, **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        H.hidden_depth_offset(truths[0], args.pop("n_levels"), **args)
    with pytest.raises(InvalidArgumentError, match="truth.json dict"):
        H.hidden_depth_offset([truths[0]], K, n_draws=1)
