"""Analytic primitives: rotated ellipsoids and capped elliptic cylinders.

A primitive has a centre ``c`` (3,), a rotation ``R`` (3, 3) whose columns are its local
axes in world coordinates, and semi-axes ``s`` (3,). A world point ``p`` has local
coordinates ``q = R^T (p - c) / s``; it is inside

* an ellipsoid when ``|q| <= 1``;
* a capped elliptic cylinder (axis = third local axis) when ``q_x^2 + q_y^2 <= 1`` and
  ``|q_z| <= 1``.

Two evaluations are provided, both vectorised over many points or rays of one primitive:

* :func:`chord_mm` -- the exact length of a straight line inside the primitive (ray-quadric
  intersection, clipped by the end caps): the line integral used by the DXA projector;
* :func:`occupancy` -- a partial-volume fraction in [0, 1] from a first-order signed
  distance, used by the MRI rasteriser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ELLIPSOID", "CYLINDER", "Primitive", "chord_mm", "occupancy", "world_aabb",
           "from_segment", "frame_from_axis"]

ELLIPSOID = 0
CYLINDER = 1


@dataclass
class Primitive:
    """One solid: geometry, material, the material it displaces, and its label."""

    kind: int
    centre: np.ndarray
    rot: np.ndarray
    semi: np.ndarray
    material: str
    parent: str = "muscle"  # material displaced (DXA line integrals are differences)
    label: int = 0  # painted into the label volume where occupancy > 1/2 (when paint_label)
    paint_label: bool = False
    name: str = ""
    meta: dict = field(default_factory=dict)


def cross3(a, b) -> np.ndarray:
    """Cross product of two 3-vectors (much cheaper than ``np.cross`` for one pair)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def frame_from_axis(axis: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Rotation with third column ``axis`` and first column as close to ``ref`` as possible."""
    w = np.asarray(axis, float)
    w = w / np.sqrt(w @ w)
    ref = np.asarray(ref, float)
    r = ref - (ref @ w) * w
    n = np.sqrt(r @ r)
    if n < 1e-9:
        r = np.array([1.0, 0.0, 0.0]) if abs(w[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        r = r - np.dot(r, w) * w
        n = np.linalg.norm(r)
    e1 = r / n
    e2 = cross3(w, e1)
    return np.stack([e1, e2, w], axis=1)


def from_segment(kind: int, p0, p1, r1: float, r2: float, ref, **kw) -> Primitive:
    """Primitive spanning the segment ``p0 -> p1`` with cross-section semi-axes ``(r1, r2)``;
    ``r1`` lies along the part of ``ref`` perpendicular to the segment."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    half = np.sqrt(axis @ axis) / 2
    R = frame_from_axis(axis, ref)
    return Primitive(kind, (p0 + p1) / 2, R, np.array([r1, r2, max(half, 1e-3)]), **kw)


def world_aabb(p: Primitive) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box ``(lo, hi)`` of a primitive (tight for ellipsoids)."""
    M = p.rot * p.semi[None, :]
    if p.kind == ELLIPSOID:
        ext = np.sqrt((M**2).sum(axis=1))
    else:
        ext = np.sqrt((M[:, :2] ** 2).sum(axis=1)) + np.abs(M[:, 2])
    return p.centre - ext, p.centre + ext


def _local(p: Primitive, px, py, pz):
    """Local unit-shape coordinates (q0, q1, q2) of world coordinates given as three
    broadcastable arrays (no (..., 3) stacking: cheaper for grids)."""
    dx, dy, dz = px - p.centre[0], py - p.centre[1], pz - p.centre[2]
    R, s = p.rot, p.semi
    return tuple((dx * R[0, k] + dy * R[1, k] + dz * R[2, k]) * (1.0 / s[k]) for k in range(3))


def chord_mm(p: Primitive, origins, direction: np.ndarray) -> np.ndarray:
    """Length (mm) of each line ``origin + t * direction`` (``direction`` a unit vector,
    lines infinite both ways) inside the primitive.

    Parameters
    ----------
    origins : (..., 3) world points in mm, or a tuple of three broadcastable arrays (x, y, z).
    direction : (3,) unit vector shared by all lines.
    """
    if isinstance(origins, tuple):
        o0, o1, o2 = _local(p, *origins)
    else:
        o0, o1, o2 = _local(p, origins[..., 0], origins[..., 1], origins[..., 2])
    d = (np.asarray(direction, float) @ p.rot) / p.semi
    if p.kind == ELLIPSOID:
        a = d @ d
        b = o0 * d[0] + o1 * d[1] + o2 * d[2]
        c = o0 * o0 + o1 * o1 + o2 * o2 - 1.0
        disc = b * b - a * c
        return 2.0 * np.sqrt(np.maximum(disc, 0.0)) / a
    # cylinder: radial quadratic on the first two local axes, slab on the third
    a = d[0] * d[0] + d[1] * d[1]
    c = o0 * o0 + o1 * o1 - 1.0
    if a < 1e-12:  # line parallel to the axis
        t_len = 2.0 / abs(d[2]) if abs(d[2]) > 1e-12 else np.inf
        return np.where(c <= 0.0, t_len, 0.0)
    b = o0 * d[0] + o1 * d[1]
    sq = np.sqrt(np.maximum(b * b - a * c, 0.0))
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    if abs(d[2]) > 1e-12:
        s0 = (-1.0 - o2) / d[2]
        s1 = (1.0 - o2) / d[2]
        lo = np.maximum(t0, np.minimum(s0, s1))
        hi = np.minimum(t1, np.maximum(s0, s1))
    else:
        inside = np.abs(o2) <= 1.0
        lo = np.where(inside, t0, 0.0)
        hi = np.where(inside, t1, 0.0)
    return np.maximum(hi - lo, 0.0)


def occupancy(p: Primitive, points, ramp_mm: float) -> np.ndarray:
    """Partial-volume fraction of the primitive at world ``points``: (..., 3) or a tuple of
    three broadcastable coordinate arrays (x, y, z).

    A first-order signed distance ``sd`` (mm, negative inside) is turned into
    ``clip(0.5 - sd / ramp_mm, 0, 1)``: a linear edge one voxel wide.
    """
    if isinstance(points, tuple):
        q0, q1, q2 = _local(p, *points)
    else:
        q0, q1, q2 = _local(p, points[..., 0], points[..., 1], points[..., 2])
    i0, i1, i2 = 1.0 / p.semi
    if p.kind == ELLIPSOID:
        r = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2)
        g = np.sqrt((q0 * i0) ** 2 + (q1 * i1) ** 2 + (q2 * i2) ** 2)
        sd = (r - 1.0) * r / np.maximum(g, 1e-9)
    else:
        r = np.sqrt(q0 * q0 + q1 * q1)
        g = np.sqrt((q0 * i0) ** 2 + (q1 * i1) ** 2)
        sd_r = (r - 1.0) * r / np.maximum(g, 1e-9)
        sd = np.maximum(sd_r, (np.abs(q2) - 1.0) * p.semi[2])
    return np.clip(0.5 - sd * (1.0 / ramp_mm), 0.0, 1.0)
