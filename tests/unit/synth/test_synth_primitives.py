"""Analytic primitives: exact chords (the DXA line integrals) and partial-volume occupancy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.synth.primitives import CYLINDER, ELLIPSOID, Primitive, chord_mm, occupancy, world_aabb
from spinelib.synth.chain import vertebra_frame


def _rot(a, b, c):
    return vertebra_frame(a, b, c)


def test_sphere_chord_known_answer():
    p = Primitive(ELLIPSOID, np.zeros(3), np.eye(3), np.array([10.0, 10.0, 10.0]), "cortical")
    d = np.array([0.0, 3.0, 6.0, 9.999, 11.0])
    org = np.stack([d, np.full_like(d, -50.0), np.zeros_like(d)], axis=1)
    np.testing.assert_allclose(chord_mm(p, org, np.array([0.0, 1.0, 0.0])),
                               2 * np.sqrt(np.clip(100 - d**2, 0, None)), atol=1e-9)


def test_tilted_cylinder_chord_known_answer():
    # cylinder of radius 5, half-length 10 along z, tilted by 30 deg about x; a ray along z
    # through its centre crosses the caps: length 2 * 10 / cos(30) while within the radius
    R = _rot(30.0, 0.0, 0.0)
    p = Primitive(CYLINDER, np.zeros(3), R, np.array([5.0, 5.0, 10.0]), "cortical")
    L = chord_mm(p, np.array([[0.0, 0.0, -100.0]]), np.array([0.0, 0.0, 1.0]))[0]
    t = np.deg2rad(30.0)
    expect = min(20.0 / np.cos(t), 10.0 / np.sin(t))  # the side wall cuts it first if shorter
    assert abs(L - expect) < 1e-9


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([ELLIPSOID, CYLINDER]), st.floats(-40, 40), st.floats(-40, 40), st.floats(-180, 180),
       st.floats(-20, 20), st.floats(-20, 20))
def test_chord_matches_numeric_integral_of_occupancy(kind, phi, psi, rho, x0, z0):
    p = Primitive(kind, np.array([1.0, 2.0, -3.0]), _rot(phi, psi, rho), np.array([12.0, 7.0, 15.0]), "cortical")
    d = np.array([0.0, 1.0, 0.0])
    ts = np.linspace(-80, 80, 16001)
    pts = np.stack([np.full_like(ts, x0), ts, np.full_like(ts, z0)], axis=1)
    # a tiny ramp makes the occupancy (almost) the indicator function
    numeric = occupancy(p, pts, 1e-6).sum() * (ts[1] - ts[0])
    exact = chord_mm(p, np.array([[x0, 0.0, z0]]), d)[0]
    assert abs(numeric - exact) < 0.05


def test_occupancy_volume_and_aabb():
    p = Primitive(ELLIPSOID, np.zeros(3), _rot(20, 10, 30), np.array([12.0, 7.0, 15.0]), "cortical")
    lo, hi = world_aabb(p)
    g = np.mgrid[-20:20:0.5, -20:20:0.5, -20:20:0.5].reshape(3, -1).T
    occ = occupancy(p, g, 0.5)
    vol = occ.sum() * 0.125
    assert abs(vol - 4 / 3 * np.pi * 12 * 7 * 15) / (4 / 3 * np.pi * 12 * 7 * 15) < 0.01
    inside = g[occ > 0.5]
    assert np.all(inside >= lo - 0.5) and np.all(inside <= hi + 0.5)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 35.0))
def test_ap_projection_of_a_sagittally_tilted_body_is_physical(phi):
    """The AP line integral (along y) through a vertebral body tilted by ``phi`` in the
    sagittal plane: its vertical extent is ``H cos(phi) + D sin(phi)`` (the endplates are
    seen obliquely), and the mid-line chord, ``D / cos(phi)`` near the centre, grows with
    the tilt: the only sagittal cue the AP image carries is this geometry."""
    H, W, D = 24.0, 42.0, 32.0
    body = Primitive(CYLINDER, np.zeros(3), vertebra_frame(phi, 0.0, 0.0), np.array([W / 2, D / 2, H / 2]), "cortical")
    z = np.linspace(-40.0, 40.0, 8001)
    org = np.stack([np.zeros_like(z), np.full_like(z, -100.0), z], axis=1)
    ch = chord_mm(body, org, np.array([0.0, 1.0, 0.0]))
    inside = z[ch > 1e-9]
    t = np.deg2rad(phi)
    assert inside.max() - inside.min() == pytest.approx(H * np.cos(t) + D * np.sin(t), abs=0.03)
    centre = float(chord_mm(body, np.array([[0.0, -100.0, 0.0]]), np.array([0.0, 1.0, 0.0]))[0])
    expected = min(D / np.cos(t), H / np.sin(t)) if phi > 1e-6 else D
    assert centre == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- parts left out

_PART_NAMES = {"organs": {"lung", "heart", "liver", "kidney", "visceral_fat", "bowel"},
               "pelvis": {"ilium", "ischium", "pubis", "sacrum", "sacrum_marrow", "femur", "femoral_head",
                          "femoral_neck"},
               "ribs": {"rib"}, "chest_wall": {"sternum", "clavicle", "scapula"}}


@pytest.fixture(scope="module")
def geometry():
    from spinelib.profiles import get_profile
    from spinelib.synth.config import SynthConfig
    from spinelib.synth.subject import draw_subject_geometry

    return draw_subject_geometry(2, SynthConfig.from_profile(get_profile("smoke")))


def _build(g, **kw):
    from spinelib.synth.parts import build_primitives

    return build_primitives(g["spine_dxa"], g["shape"], g["body"], g["torso"], **kw)


@pytest.mark.parametrize("left_out", [("ribs",), ("chest_wall",), ("organs", "pelvis"),
                                      ("organs", "pelvis", "ribs", "chest_wall")])
def test_build_primitives_leaves_out_exactly_the_named_parts(geometry, left_out):
    """The named parts' primitives are gone, everything else is drawn as before, in the same order."""
    from spinelib.synth.parts import PART_GROUPS

    full = _build(geometry)
    some = _build(geometry, leave_out=left_out)
    gone = set().union(*(_PART_NAMES[p] for p in left_out))
    assert {p.name for p in full} >= set().union(*_PART_NAMES.values())  # the table above is complete
    assert not gone & {p.name for p in some}
    kept = [p for p in full if p.name not in gone]
    assert [(p.name, p.material, tuple(p.centre)) for p in some] == [(p.name, p.material, tuple(p.centre)) for p in kept]
    assert set(PART_GROUPS) == set(_PART_NAMES)


@pytest.mark.parametrize("bad, match", [("ribs", "collection"), (["ribs", "lungs"], r"unknown parts \['lungs'\]"),
                                        (3, "collection")])
def test_build_primitives_refuses_unknown_parts(geometry, bad, match):
    from spinelib.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=match):
        _build(geometry, leave_out=bad)
