"""The slab-wise elliptic torso around the spine (:class:`Torso`, :func:`make_torso`).

The body lies supine on a table whose plane is ``y = table_y``; the torso's posterior
surface is flat there (its elliptic cross-sections are clipped by the table), with a
subcutaneous fat layer whose thickness follows BMI and sex, and muscle / organs inside.
Its widths and depths are the drawn body's (:func:`spinelib.synth.anatomy.draw_body`), its
knots' heights and lateral centre follow the spine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Torso", "make_torso", "MIN_PREVERTEBRAL_MM", "TORSO_KNOT_FRACTIONS"]

#: least non-fat tissue (mm, at scale 1) the anterior torso wall keeps in front of the
#: vertebral bodies (aorta, oesophagus or bowel and the abdominal muscles); a drawn depth
#: leaving less is clipped to it (a rare event)
MIN_PREVERTEBRAL_MM = 20.0
#: heights of the torso's knots at L3, L1, T11 and T7 of an average spine, as fractions of
#: the trunk from the S1 endplate (0) to the top of T1 (1)
TORSO_KNOT_FRACTIONS = (0.2, 0.34, 0.44, 0.71)


@dataclass
class Torso:
    """Slab-wise elliptic torso: functions of z tabulated on ``z`` (ascending, mm).

    Cross-section at height z: ellipse centred ``(cx, cy)`` with semi-axes ``(a, b)``,
    clipped to ``y >= table_y``; the muscle boundary inside is the ellipse with semi-axes
    ``(a - fat, b - fat)`` clipped to ``y >= table_y + fat_post``.
    """

    z: np.ndarray
    cx: np.ndarray
    a: np.ndarray
    b: np.ndarray
    fat: np.ndarray
    fat_post: np.ndarray
    flattening: float
    table_y: float
    #: knots where a containment rule applies, and those whose drawn depth it clipped
    checked: np.ndarray | None = None
    clipped: np.ndarray | None = None

    @property
    def clip_fraction(self) -> float:
        """Fraction of the checked knots whose drawn depth was clipped (0 when none checked)."""
        if self.checked is None or self.clipped is None or not np.any(self.checked):
            return 0.0
        return float(np.count_nonzero(self.clipped & self.checked) / np.count_nonzero(self.checked))

    def at(self, zq: np.ndarray):
        """Interpolated ``(cx, cy, a, b, ai, bi, yclip_inner)`` at heights ``zq``;
        ``a = b = 0`` (no body) outside the torso's z range."""
        zq = np.asarray(zq, float)
        cx = np.interp(zq, self.z, self.cx)
        a = np.interp(zq, self.z, self.a, left=0.0, right=0.0)
        b = np.interp(zq, self.z, self.b, left=0.0, right=0.0)
        fat = np.interp(zq, self.z, self.fat)
        fp = np.interp(zq, self.z, self.fat_post)
        cy = self.table_y + b * (1.0 - self.flattening)
        ai = np.maximum(a - fat, 0.0)
        bi = np.maximum(b - fat, 0.0)
        return cx, cy, a, b, ai, bi, self.table_y + fp

    def front_y(self, zq) -> np.ndarray:
        """``y`` (mm) of the anterior surface at heights ``zq``."""
        cx, cy, a, b, *_ = self.at(zq)
        return cy + b


def make_torso(spine: dict, shape: dict, body: dict, demo: dict) -> Torso:
    """The torso of a subject around its spine landmarks (MRI session).

    The knots' heights and the torso's lateral centre follow the spine (a coronal
    property), its widths and depths are the drawn ``body`` values. The anterior wall
    is moved forward only where the drawn depth would leave less than
    :data:`MIN_PREVERTEBRAL_MM` of non-fat tissue in front of a vertebral body (the
    knots along the column, S1 to T1): the returned torso records these clips
    (``checked``, ``clipped``, :attr:`Torso.clip_fraction`). Below the sacrum the
    pelvis adapts to the hips instead (:func:`spinelib.synth.parts.build_primitives`).
    """
    c = spine["centres"]
    H = np.asarray(shape["body_height_mm"])
    D = np.asarray(shape["body_depth_mm"])
    z_t1 = c[0, 2] + H[0] / 2
    z_s1 = spine["s1_top"][2]
    s = body["frame_scale"]
    z_hip = z_s1 - 95 * s
    # the trunk's landmarks (waist, lower ribs, chest) at fixed fractions of the trunk, not
    # at given vertebrae: body shape does not follow the column's inner curvature
    z_l3, z_l1, z_t11, z_t7 = z_s1 + np.asarray(TORSO_KNOT_FRACTIONS) * (z_t1 - z_s1)
    f = shape["subcutaneous_fat_mm"]
    female = demo["sex"] == "F"
    table = spine["table_y"]
    flat = body["table_flattening"]
    # knots from the bottom (upper thighs) to the top (neck)
    zk = np.array([z_hip - 170 * s, z_hip - 60 * s, z_hip, z_s1 + 40 * s, z_l3, z_l1,
                   z_t11, z_t7, z_t1 - 20 * s, z_t1 + 15 * s, z_t1 + 45 * s, z_t1 + 75 * s,
                   z_t1 + 140 * s])
    hw, ch, wa, hp = (body["shoulder_half_width_mm"], body["chest_half_width_mm"],
                      body["waist_half_width_mm"], body["hip_half_width_mm"])
    cd, wd, hd = body["chest_half_depth_mm"], body["waist_half_depth_mm"], body["hip_half_depth_mm"]
    a = np.array([hp * 0.95, hp, hp, 0.5 * (hp + wa), wa, 0.5 * (wa + ch), ch, ch,
                  0.5 * (ch + hw), hw, 0.55 * hw, 62 * s, 58 * s])
    b = np.array([hd * 0.85, hd * 0.95, hd, 0.5 * (hd + wd), wd, wd, 0.5 * (wd + cd), cd,
                  cd * 0.92, cd * 0.75, 60 * s, 55 * s, 55 * s])
    fk = f * np.array([1.3, 1.3, 1.2 + (0.3 if female else 0.0), 1.3, 1.3, 1.2, 1.0, 0.85,
                       0.8, 0.6, 0.4, 0.3, 0.3])
    # containment, a rare clip: the anterior surface (y = table + b (2 - flat)) must lie a
    # fat layer plus a minimal organ space in front of the vertebral bodies
    column = (zk >= z_s1) & (zk <= z_t1)
    front_need = np.full(zk.shape, -np.inf)
    front_need[column] = (np.interp(zk[column], c[::-1, 2], c[::-1, 1] + D[::-1] / 2)
                          + MIN_PREVERTEBRAL_MM * s)
    b_need = (front_need + fk - table) / (2.0 - flat)
    clipped = b_need > b
    b = np.where(clipped, b_need, b)
    a = np.maximum(a, b * 0.9 * (zk < z_t1 - 10))
    cx_spine = np.interp(zk, c[::-1, 2], c[::-1, 0])
    cx = 0.7 * spine["s1_top"][0] + 0.3 * cx_spine
    return Torso(z=zk, cx=cx, a=a, b=b, fat=fk, fat_post=0.6 * fk, flattening=flat, table_y=table,
                 checked=column, clipped=clipped & column)
