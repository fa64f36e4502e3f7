"""Cohort statistics of the generator, measured the way truth.json defines them.

Cheap path: only the geometry (draw_subject_geometry), no volumes. The printed numbers
(run ``pytest -s``) are the ones reported for the issue.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.profiles import get_profile
from spinelib.synth.shape import cobb_from_tilts, measure_angles
from spinelib.synth.subject import draw_subject_geometry

N = 400


@pytest.fixture(scope="module")
def geoms():
    p = get_profile("default", {"seed": 11})
    return [draw_subject_geometry(i, p) for i in range(N)]


@pytest.fixture(scope="module")
def angles(geoms):
    return [measure_angles(g["spine_mri"], g["shape"]) for g in geoms]


def test_cobb_mixture(angles):
    c = np.array([a["cobb_deg"] for a in angles])
    fr = (np.mean(c < 6), np.mean((c >= 6) & (c < 20)), np.mean((c >= 20) & (c <= 50)))
    print(f"\nCobb fractions <6 / 6-20 / 20-50: {fr[0]:.3f} / {fr[1]:.3f} / {fr[2]:.3f}; max {c.max():.1f}")
    assert 0.57 < fr[0] < 0.73
    assert 0.18 < fr[1] < 0.32
    assert 0.05 < fr[2] < 0.15
    assert c.max() < 60
    types = {a["curve_type"] for a, cb in zip(angles, c) if cb >= 6}
    assert types == {"thoracic", "thoracolumbar", "lumbar", "double"}
    apex = {a["apex_level"] for a, cb in zip(angles, c) if cb >= 10}
    assert len(apex) >= 8  # apex anywhere plausible


def test_kyphosis_grows_with_age_and_lordosis_matches_supine_norms(geoms, angles):
    k = np.array([a["kyphosis_deg"] for a in angles])
    lo = np.array([a["lordosis_deg"] for a in angles])
    age = np.array([g["demographics"]["age"] for g in geoms])
    r = np.corrcoef(age, k)[0, 1]
    p5, p95 = np.percentile(k, [5, 95])
    print(f"\nkyphosis {k.mean():.1f} +/- {k.std():.1f} (5-95 %: {p5:.1f}-{p95:.1f}), corr with age {r:.2f}; "
          f"lordosis {lo.mean():.1f} +/- {lo.std():.1f}")
    assert 18 <= p5 and p95 <= 57 and 30 < k.mean() < 40
    assert r > 0.3
    young, old = k[age < 55].mean(), k[age > 70].mean()
    assert old - young > 5
    assert abs(lo.mean() - 37) < 2.5 and abs(lo.std() - 13) < 2.5


def test_axial_rotation_turns_towards_the_convex_side(geoms):
    # at the apex of a curve the vertebra is displaced and rotated to the same side
    agree, n = 0, 0
    for g in geoms:
        sp = g["spine_mri"]
        psi = np.rad2deg(np.arctan2(sp["frames"][:, 0, 2], sp["frames"][:, 2, 2]))
        cobb, up, lo = cobb_from_tilts(psi)
        if cobb < 15:
            continue
        k = up + int(np.argmax(np.abs(sp["lateral_deviation_mm"][up:lo + 1])))
        n += 1
        agree += np.sign(sp["rho_deg"][k]) == np.sign(sp["lateral_deviation_mm"][k])
    assert n > 10 and agree / n > 0.9


def _r2_split(X, Y, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    a, b = idx[: len(X) // 2], idx[len(X) // 2:]
    Xa = np.c_[X[a], np.ones(len(a))]
    coef = np.linalg.lstsq(Xa, Y[a], rcond=None)[0]
    pred = np.c_[X[b], np.ones(len(b))] @ coef
    ss_res = ((Y[b] - pred) ** 2).sum()
    ss_tot = ((Y[b] - Y[b].mean(0)) ** 2).sum()
    return 1 - ss_res / ss_tot


def test_coronal_curves_explain_little_of_the_sagittal_curves(geoms):
    """Linear regression from true coronal curves (column centre relative to S1, per level;
    plus the coronal widths) to true sagittal curves (depth above the table per level),
    fit on one half, R^2 on the other."""
    X = np.array([g["spine_mri"]["centres"][:, 0] - g["spine_mri"]["s1_top"][0] for g in geoms])
    W = np.array([g["shape"]["body_width_mm"] for g in geoms])
    Y = np.array([g["spine_mri"]["centres"][:, 1] - g["table_y"] for g in geoms])
    r2_centre = _r2_split(X, Y)
    r2_all = _r2_split(np.c_[X, W], Y)
    print(f"\nR^2 coronal centre -> sagittal depth: {r2_centre:.3f}; with coronal widths: {r2_all:.3f}")
    assert r2_centre < 0.2
    assert r2_all < 0.35
