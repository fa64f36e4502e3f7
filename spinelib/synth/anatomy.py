"""Anatomy from a spine shape: materials, a slab-wise elliptic torso and analytic primitives.

Everything is in MRI world millimetres (RAS+). The body lies supine on a table whose plane
is ``y = table_y``; the torso's posterior surface is flat there (its elliptic cross-sections
are clipped by the table), with a subcutaneous fat layer whose thickness follows BMI and
sex, and muscle / organs inside. The skeleton and organs are a list of
:class:`~spinelib.synth.primitives.Primitive` painted in order (later ones win in the MRI):
organs (lungs, heart, liver, kidneys, bowel in visceral fat), pelvis and femora, 12 rib
pairs attached to the thoracic vertebrae (the rib cage follows their scoliosis and axial
rotation, not their sagittal tilt: :func:`rib_frame`), posterior elements (pedicles, laminae, spinous and transverse processes), the
spinal canal (CSF), the discs and the vertebral bodies (tilted elliptic cylinders: a
cortical shell around trabecular marrow, so that tilted endplates project as ellipses).

Materials carry two DXA densities (bone mineral and soft tissue, g/cm^3) and two Dixon
signal fractions (fat, water). DXA line integrals of a primitive use the difference
between its material and the ``parent`` material it displaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spine import DISC_LABEL, LUMBOSACRAL_DISC_LABEL, N_VERTEBRAE, POSTERIOR_LABEL, SACRUM_LABEL
from .primitives import CYLINDER, ELLIPSOID, Primitive, cross3, frame_from_axis, from_segment

__all__ = ["materials_for", "draw_body", "Torso", "make_torso", "rib_frame", "build_primitives", "MATERIAL_NAMES"]

MATERIAL_NAMES = ("air", "fat", "muscle", "organ", "blood", "lung", "cortical", "marrow",
                  "posterior", "rib", "pelvis", "disc", "nucleus", "flat_bone", "csf", "visceral_fat", "bowel")


def materials_for(demo: dict, body: dict) -> dict[str, tuple[float, float, float, float]]:
    """Material table ``name -> (mineral g/cm3, soft g/cm3, fat fraction, water fraction)``.

    Trabecular bone mineral falls with age (faster in women after 50), marrow fat rises
    with age, discs dry out with age.
    """
    age, female = demo["age"], demo["sex"] == "F"
    loss = 0.0045 * (age - 45.0) + (0.004 * max(age - 50.0, 0.0) if female else 0.0)
    vbmd = 0.19 * max(0.45, 1.0 - loss) * body["bone_density_factor"]
    marrow_fat = float(np.clip(0.42 + 0.004 * (age - 45.0) + body["marrow_fat_offset"], 0.25, 0.8))
    disc_water = float(np.clip(0.92 - 0.004 * (age - 45.0), 0.6, 0.95))
    return {
        "air": (0.0, 0.0, 0.0, 0.0),
        "fat": (0.0, 0.92, 0.90, 0.08),
        "muscle": (0.0, 1.06, 0.06, 0.78),
        "organ": (0.0, 1.05, 0.09, 0.60),
        "blood": (0.0, 1.06, 0.04, 0.85),
        "lung": (0.0, 0.26, 0.02, 0.05),
        "cortical": (1.05, 0.80, 0.04, 0.06),
        "marrow": (vbmd, 0.95, marrow_fat, 0.95 - marrow_fat - 0.1),
        "posterior": (0.45, 0.85, 0.35 + 0.5 * (marrow_fat - 0.42), 0.22),
        "rib": (0.60, 0.85, 0.30, 0.18),
        "pelvis": (0.32 * vbmd / 0.19, 0.92, marrow_fat + 0.08, 0.28),
        "disc": (0.0, 1.10, 0.04, disc_water),
        "nucleus": (0.0, 1.10, 0.02, min(disc_water + 0.06, 1.0)),
        "flat_bone": (0.38, 0.90, marrow_fat, 0.25),
        "csf": (0.0, 1.01, 0.02, 0.95),
        "visceral_fat": (0.0, 0.94, 0.78, 0.18),
        "bowel": (0.0, 1.03, 0.10, 0.55),
    }


#: abdominal and hip half depths (mm) of a 170 cm man of BMI 25 before table flattening:
#: full supine depths of about 22 and 24 cm (sagittal abdominal diameter about 20-21 cm in
#: middle-aged women and 22-23 cm in men; buttock depth about 24 cm in men and 23.5 in women)
WAIST_HALF_DEPTH_MM = 115.0
HIP_HALF_DEPTH_MM = 126.0
#: least non-fat tissue (mm, at scale 1) the anterior torso wall keeps in front of the
#: vertebral bodies (aorta, oesophagus or bowel and the abdominal muscles); a drawn depth
#: leaving less is clipped to it (a rare event)
MIN_PREVERTEBRAL_MM = 20.0
#: least non-fat tissue (mm, at scale 1) in front of the pubic symphysis: the pelvis tilts
#: back (its symphysis moves posteriorly) rather than the hips growing deeper
MIN_PREPUBIC_MM = 5.0


#: individual spread (log SD) of the size of the anatomy around the spinal column -- pelvis,
#: ribs, shoulder girdle, organs and the torso's landmark offsets -- about stature. Pelvic
#: and thoracic dimensions correlate with stature only moderately (correlations of about
#: 0.4-0.6 in anthropometric series), so their size is not a ruler for the column's own
#: length (``shape["scale"]``, which follows stature to 3 %). A shared ruler would let the
#: AP image read the column's foreshortening -- and with it the kyphosis -- to 1 %.
FRAME_SCALE_SD = 0.05
#: thickness (mm, at section scale 1) of the vertebral body's cortical shell and of its bony
#: endplates: microCT of human vertebral bodies finds a shell of about 0.2-0.5 mm and
#: endplates of about 0.5-0.8 mm. A thicker shell (version 2 had 1.2 mm) makes the body's
#: edges far brighter than its middle in the AP projection, an exaggerated cue of the tilt.
CORTICAL_SHELL_MM = 0.5
ENDPLATE_MM = 0.6
#: mean distances (mm, at frame scale 1) below the top of T1 of the sternum's upper end and
#: of the scapulae's centres, and the sternum's mean length (manubrium to xiphoid, about
#: 15-17 cm in adults)
STERNUM_TOP_MM = 48.0
SCAPULA_CENTRE_MM = 105.0
STERNUM_LENGTH_MM = 150.0
#: mean height of the lung fields below the top of T1 (mm at frame scale 1; the diaphragm's
#: dome lies at T9-T11 and varies between people and with breathing)
LUNG_HEIGHT_MM = 200.0
#: heights of the torso's knots at L3, L1, T11 and T7 of an average spine, as fractions of
#: the trunk from the S1 endplate (0) to the top of T1 (1)
TORSO_KNOT_FRACTIONS = (0.2, 0.34, 0.44, 0.71)


def draw_body(rng: np.random.Generator, demo: dict, shape: dict) -> dict:
    """Torso and organ parameters (JSON-able), scaled by height, BMI and sex.

    The torso's anterior-posterior depths are drawn here from the demographics and their
    own random factors, never from the spine: the abdominal (sagittal abdominal diameter)
    depth grows with BMI (elasticity about 0.8: supine sagittal abdominal diameter is
    close to linear in BMI with a positive intercept) and with the visceral fat of the
    subject (men store more), with an individual spread of about 8 %; the hip depth
    follows anthropometric buttock depth. :func:`make_torso` only clips a depth in the
    rare case where it would leave too little room in front of the skeleton.
    """
    h = demo["height_cm"] / 170.0
    b = demo["bmi"] / 25.0
    # the skeleton and organs around the column (pelvis, ribs, shoulder girdle, organs, the
    # torso's landmarks) follow stature with their own individual spread, not the column's
    # length: see FRAME_SCALE_SD
    frame_scale = h * float(np.exp(rng.normal(0.0, FRAME_SCALE_SD)))
    female = demo["sex"] == "F"
    vis = (1.4 if not female else 0.8) * max(b - 0.75, 0.05)
    vis_factor = float(np.exp(rng.normal(0.0, 0.2)))
    # more visceral fat at the same BMI: a deeper abdomen (the factor's log SD is 0.2,
    # so this term adds about 3 % of depth spread on top of the own 7 %)
    abd = (1.0 + 0.15 * np.log(vis_factor)) * rng.normal(1.0, 0.07)
    return {
        "shoulder_half_width_mm": round(float(195 * h * (0.9 if female else 1.0) * b**0.25 * rng.normal(1, 0.04)), 3),
        "chest_half_width_mm": round(float(158 * h * (0.93 if female else 1.0) * b**0.5 * rng.normal(1, 0.04)), 3),
        "waist_half_width_mm": round(float(140 * h * b**0.75 * rng.normal(1, 0.05)), 3),
        "hip_half_width_mm": round(float(165 * h * (1.07 if female else 1.0) * b**0.55 * rng.normal(1, 0.04)), 3),
        "chest_half_depth_mm": round(float(112 * h * (0.95 if female else 1.0) * b**0.55 * rng.normal(1, 0.05)), 3),
        "waist_half_depth_mm": round(float(WAIST_HALF_DEPTH_MM * h * (0.96 if female else 1.0) * b**0.8 * abd), 3),
        "hip_half_depth_mm": round(float(HIP_HALF_DEPTH_MM * h * (0.97 if female else 1.0) * b**0.6
                                         * rng.normal(1, 0.06)), 3),
        "table_flattening": round(float(rng.uniform(0.08, 0.16)), 4),
        "visceral_fat_scale": round(float(vis * vis_factor), 4),
        "bone_density_factor": round(float(rng.normal(1.0, 0.12)), 4),
        "marrow_fat_offset": round(float(rng.normal(0.0, 0.05)), 4),
        "pelvis_width_mm": round(float(130 * h * (1.08 if female else 1.0) * rng.normal(1, 0.04)), 3),
        "frame_scale": round(float(frame_scale), 4),
        # the shoulder girdle's height and the sternum's length are the subject's own, not
        # counted in vertebrae (the manubrium lies at T2-T4, the xiphoid at T9-T11)
        "sternum_top_mm": round(float(STERNUM_TOP_MM * frame_scale * rng.normal(1.0, 0.15)), 3),
        "sternum_length_mm": round(float(STERNUM_LENGTH_MM * frame_scale * rng.normal(1.0, 0.08)), 3),
        "scapula_centre_mm": round(float(SCAPULA_CENTRE_MM * frame_scale * rng.normal(1.0, 0.08)), 3),
        "lung_height_mm": round(float(LUNG_HEIGHT_MM * frame_scale * rng.normal(1.0, 0.08)), 3),
        # rib slope varies between people (and steepens with age): the ribs' lateral drop
        "rib_drop_factor": round(float(rng.normal(1.0, 0.15) * (1.0 + 0.004 * (demo["age"] - 60.0))), 4),
    }


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
        cx, cy, a, b, *_ = self.at(zq)
        return cy + b


def _pubis_front_offset(s: float) -> tuple[np.ndarray, float]:
    """Anterior end of the pubic rami relative to the S1 endplate centre (mm), and its
    radius: the symphysis, the pelvis's most anterior point."""
    return np.array([0.0, 100.0 * s, -120.0 * s]), 8.0 * s


def make_torso(spine: dict, shape: dict, body: dict, demo: dict) -> Torso:
    """The torso of a subject around its spine landmarks (MRI session).

    The knots' heights and the torso's lateral centre follow the spine (a coronal
    property), its widths and depths are the drawn ``body`` values. The anterior wall
    is moved forward only where the drawn depth would leave less than
    :data:`MIN_PREVERTEBRAL_MM` of non-fat tissue in front of a vertebral body (the
    knots along the column, S1 to T1): the returned torso records these clips
    (``checked``, ``clipped``, :attr:`Torso.clip_fraction`). Below the sacrum the
    pelvis adapts to the hips instead (:func:`build_primitives`).
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


def _prim(kind, centre, rot, semi, material, **kw) -> Primitive:
    return Primitive(kind, np.asarray(centre, float), np.asarray(rot, float), np.asarray(semi, float),
                     material, **kw)


def _organs(spine: dict, shape: dict, body: dict, torso: Torso) -> list[Primitive]:
    c = spine["centres"]
    s = body["frame_scale"]
    W = np.asarray(shape["body_width_mm"])
    H = np.asarray(shape["body_height_mm"])
    out = []
    I = np.eye(3)
    z_t1 = c[0, 2] + H[0] / 2
    # the lungs, heart and liver hang from the top of the thorax and the diaphragm, not from
    # given vertebrae (an anchor at T9 would let the lung fields measure the thoracic
    # column's foreshortening, i.e. its kyphosis)
    z_base = z_t1 - body["lung_height_mm"]
    zm = 0.5 * (z_t1 + z_base)
    cx, cy, a, b, ai, bi, yclip = torso.at(np.array([zm]))
    cx, cy, ai, bi = float(cx[0]), float(cy[0]), float(ai[0]), float(bi[0])
    x_sp = float(np.interp(zm, c[::-1, 2], c[::-1, 0]))
    front = cy + bi - 12 * s
    # posterior lung edge: the back wall's thickness (fat, muscle, posterior ribs) above the
    # table, not the vertebrae's depth, so that the lung fields of the AP tissue image do
    # not measure the thoracic spine's sagittal position
    back = torso.table_y + float(np.interp(zm, torso.z, torso.fat_post)) + shape["back_muscle_thoracic_mm"] + 27 * s
    half_d = max((front - back) / 2, 40.0)
    yc = (front + back) / 2
    wmid = float(np.interp(zm, c[::-1, 2], W[::-1]))
    half_z = (z_t1 - z_base) / 2 + 5 * s
    for side in (1, -1):
        sx = max((ai - 18 * s - wmid / 2 - 10 * s) / 2, 25.0)
        centre = [x_sp + side * (wmid / 2 + 10 * s + sx), yc + 5 * s, zm - 5 * s]
        out.append(_prim(ELLIPSOID, centre, I, [sx, 0.82 * half_d, half_z], "lung", name="lung"))
    out.append(_prim(ELLIPSOID, [x_sp - 28 * s, yc + 0.35 * half_d, z_t1 - 160 * s], I,
                     [55 * s, min(45 * s, 0.5 * half_d), 60 * s], "blood", name="heart"))
    # abdomen
    z_l1, z_l3 = c[12, 2], c[14, 2]
    cxa, cya, aa, ba, aia, bia, yca = (float(v[0]) for v in torso.at(np.array([z_l1])))
    y_l1 = c[12, 1]
    out.append(_prim(ELLIPSOID, [x_sp + 55 * s, y_l1 + 0.45 * (cya + bia - y_l1), z_base - 44 * s],
                     I, [min(85 * s, 0.8 * aia), 0.35 * (cya + bia - y_l1), 65 * s], "organ", name="liver"))
    for side in (1, -1):
        out.append(_prim(ELLIPSOID, [c[12, 0] + side * (W[12] / 2 + 42 * s), y_l1 + 5 * s, z_l1 - 5 * s], I,
                         [28 * s, 24 * s, 52 * s], "organ", name="kidney"))
    cxb, cyb, ab, bb, aib, bib, ycb = (float(v[0]) for v in torso.at(np.array([z_l3])))
    y_l3 = c[14, 1] + shape["body_depth_mm"][14] / 2 + 8 * s
    front_b = cyb + bib - 10 * s
    depth = max(front_b - y_l3, 30.0)
    vis = body["visceral_fat_scale"]
    zc = 0.5 * (z_l1 + spine["s1_top"][2]) + 10 * s
    hz = 0.5 * (z_l1 - spine["s1_top"][2]) + 10 * s
    semi_v = [min(0.82 * aib, 130 * s), depth / 2, hz]
    centre_v = [cxb, y_l3 + depth / 2, zc]
    out.append(_prim(ELLIPSOID, centre_v, I, semi_v, "visceral_fat", name="visceral_fat"))
    k = float(np.clip(1.0 - 0.45 * vis, 0.35, 0.95))
    out.append(_prim(ELLIPSOID, centre_v, I, [semi_v[0] * k, semi_v[1] * k, semi_v[2] * min(k + 0.1, 0.95)],
                     "bowel", parent="visceral_fat", name="bowel"))
    return out


def _pelvis(spine: dict, shape: dict, body: dict, torso: Torso) -> list[Primitive]:
    s = body["frame_scale"]
    s1 = spine["s1_top"]
    sym, rad = _pubis_front_offset(s)
    # the symphysis stays a fat layer plus MIN_PREPUBIC_MM behind the skin: a shallow hip
    # tilts the pelvis back instead of the hip growing around it
    z_sym = s1[2] + sym[2]
    room = (float(torso.front_y(np.array([z_sym]))[0]) - float(np.interp(z_sym, torso.z, torso.fat))
            - MIN_PREPUBIC_MM * s - rad - s1[1])
    sym = sym.copy()
    sym[1] = min(sym[1], max(room, 40.0 * s))
    pw = body["pelvis_width_mm"]
    out = []
    up = np.array([0.0, 0.0, 1.0])
    for side in (1, -1):
        # iliac wing: a thin plate lateral to the sacrum, opening anteriorly
        centre = s1 + np.array([side * 0.55 * pw, 12 * s, -5 * s])
        normal = np.array([side * np.cos(np.deg2rad(35)), -np.sin(np.deg2rad(35)), 0.0])
        R = np.stack([cross3(up, normal), up, normal], axis=1)
        R[:, 0] /= np.linalg.norm(R[:, 0])
        out.append(_prim(CYLINDER, centre, R, [62 * s, 58 * s, 4.5 * s], "pelvis", name="ilium"))
        # sacroiliac body and ischium / pubis
        out.append(from_segment(ELLIPSOID, s1 + np.array([side * 0.38 * pw, 10 * s, -55 * s]),
                                s1 + np.array([side * 0.42 * pw, 55 * s, -150 * s]), 14 * s, 11 * s, up,
                                material="pelvis", name="ischium"))
        out.append(from_segment(ELLIPSOID, s1 + np.array([side * 0.5 * pw, 65 * s, -95 * s]),
                                s1 + sym + np.array([side * 0.08 * pw, 0.0, 0.0]), 9 * s, rad, up,
                                material="pelvis", name="pubis"))
        head = s1 + np.array([side * 0.68 * pw, 55 * s, -100 * s])
        out.append(_prim(ELLIPSOID, head, np.eye(3), [23 * s] * 3, "pelvis", name="femoral_head"))
        neck_end = head + np.array([side * 45 * s, -5 * s, -30 * s])
        out.append(from_segment(CYLINDER, head, neck_end, 15 * s, 15 * s, up, material="pelvis", name="femoral_neck"))
        out.append(from_segment(CYLINDER, neck_end, neck_end + np.array([-side * 25 * s, 5 * s, -260 * s]),
                                14 * s, 14 * s, up, material="pelvis", name="femur"))
    # sacrum: label 18 (cortical shell around marrow)
    for j in range(3):
        cj, Fj, (hh, ww, dd) = spine["sacrum_centres"][j], spine["sacrum_frames"][j], spine["sacrum_size"][j]
        out.append(_prim(CYLINDER, cj, Fj, [ww / 2, dd / 2, hh / 2], "cortical", label=SACRUM_LABEL,
                         paint_label=True, name="sacrum"))
        out.append(_prim(CYLINDER, cj, Fj, [ww / 2 - 1.5, dd / 2 - 1.5, hh / 2 - 1.0], "marrow",
                         parent="cortical", name="sacrum_marrow"))
    return out


_RIB_WIDTH = np.array([0.55, 0.68, 0.78, 0.85, 0.9, 0.94, 0.96, 0.97, 0.97, 0.95, 0.9, 0.85])
_RIB_END = np.array([2.45, 2.5, 2.5, 2.5, 2.5, 2.5, 2.45, 2.3, 2.2, 2.05, 1.7, 1.35])
_RIB_DROP = np.array([22, 32, 42, 50, 56, 60, 62, 60, 55, 48, 35, 25], float)


def rib_frame(frame: np.ndarray) -> np.ndarray:
    """(3, 3) frame (columns lateral, anterior, superior) a rib pair is drawn in.

    The vertebra's frame turned, by the smallest rotation, until its superior axis has no
    anterior-posterior component: the rib pair keeps its vertebra's coronal tilt and axial
    rotation (the rib cage follows scoliosis and makes its rib hump) but not its sagittal
    tilt, because the ribs' anterior ends are held by the costal cartilages and the
    sternum. A rib cage rigidly attached to a vertebra tilted by 20 deg would move its
    anterior end by about 70 mm in the AP image and hand the kyphosis to anyone reading
    the rib outline.

    Parameters
    ----------
    frame : (3, 3) rotation, columns the vertebra's (lateral, anterior, superior) axes.

    Returns
    -------
    (3, 3) rotation, columns (lateral, anterior, superior); the superior axis lies in the
    world's x-z (coronal) plane.
    """
    f = np.asarray(frame, float)
    u = f[:, 2]
    v = np.array([u[0], 0.0, u[2]])
    v /= np.linalg.norm(v)
    axis = cross3(u, v)
    sin, cos = np.linalg.norm(axis), float(u @ v)
    if sin < 1e-12:
        return f.copy()
    k = axis / sin
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return (np.eye(3) + sin * kx + (1.0 - cos) * kx @ kx) @ f  # Rodrigues: rotate u onto v


def _ribs(spine: dict, shape: dict, body: dict, torso: Torso, n_seg: int) -> list[Primitive]:
    out = []
    s = body["frame_scale"]
    W = np.asarray(shape["body_width_mm"])
    D = np.asarray(shape["body_depth_mm"])
    arch = np.asarray(shape["arch_length_mm"])
    for i in range(12):
        c = spine["centres"][i]
        lat, ant, up = rib_frame(spine["frames"][i])
        cx, cy, a, b, ai, bi, yclip = (float(v[0]) for v in torso.at(np.array([c[2] - 20 * s])))
        A = max((ai - 14 * s) * _RIB_WIDTH[i], W[i] / 2 + 30 * s)
        back = -(D[i] / 2 + arch[i] * 0.42)
        front = (cy + bi - 10 * s) - c[1]
        Bh = max((front - back) / 2, 35.0)
        ac = (front + back) / 2
        lat_tip = W[i] / 2 + 22 * s
        tau0 = float(np.arcsin(min(0.85, lat_tip / A)))
        tau = np.linspace(tau0, _RIB_END[i], n_seg + 1)
        frac = (tau - tau0) / (tau[-1] - tau0)
        for side in (1, -1):
            loc = np.stack([side * A * np.sin(tau), ac - Bh * np.cos(tau),
                            -_RIB_DROP[i] * s * body["rib_drop_factor"] * frac**1.2 - 4.0 * s], axis=1)
            pts = c + loc @ np.stack([lat, ant, up])
            joint = c + side * (W[i] / 2 + 12 * s) * lat - (D[i] / 2 + 10 * s) * ant
            pts = np.vstack([joint, pts])
            for k in range(len(pts) - 1):
                out.append(from_segment(CYLINDER, pts[k], pts[k + 1], 3.2 * s, 5.5 * s,
                                        cross3(pts[k + 1] - pts[k], up), material="rib", name="rib"))
    return out


def _chest_wall(spine: dict, shape: dict, body: dict, torso: Torso) -> list[Primitive]:
    """Sternum, clavicles and scapulae (flat bones the DXA shows over the upper thorax)."""
    c = spine["centres"]
    s = body["frame_scale"]
    H = np.asarray(shape["body_height_mm"])
    z_t1 = c[0, 2] + H[0] / 2
    z_top = z_t1 - body["sternum_top_mm"]
    z_bot = z_top - body["sternum_length_mm"]
    front = lambda z: float(torso.front_y(np.array([z]))[0]) - float(np.interp(z, torso.z, torso.fat)) - 10 * s  # noqa: E731
    cxz = lambda z: float(np.interp(z, torso.z, torso.cx))  # noqa: E731
    up = np.array([0.0, 0.0, 1.0])
    out = [from_segment(CYLINDER, [cxz(z_top), front(z_top), z_top], [cxz(z_bot), front(z_bot), z_bot],
                        14 * s, 5 * s, np.array([1.0, 0.0, 0.0]), material="flat_bone", name="sternum")]
    hw = body["shoulder_half_width_mm"]
    ch = body["chest_half_width_mm"]
    y_back = c[4, 1] - shape["body_depth_mm"][4] / 2 - 0.45 * shape["arch_length_mm"][4] - 8 * s
    for side in (1, -1):
        p0 = np.array([cxz(z_top) + side * 18 * s, front(z_top + 10 * s) - 4 * s, z_top + 12 * s])
        p1 = np.array([cxz(z_t1) + side * (hw - 28 * s), c[0, 1] + 5 * s, z_t1 + 8 * s])
        out.append(from_segment(CYLINDER, p0, p1, 6 * s, 6 * s, up, material="rib", name="clavicle"))
        normal = np.array([side * np.sin(np.deg2rad(35)), -np.cos(np.deg2rad(35)), 0.0])
        R = np.stack([cross3(up, normal), up, normal], axis=1)
        R[:, 0] /= np.linalg.norm(R[:, 0])
        centre = [c[4, 0] + side * 0.55 * ch, y_back - 6 * s, z_t1 - body["scapula_centre_mm"]]
        out.append(_prim(CYLINDER, centre, R, [48 * s, 75 * s, 3.0 * s], "flat_bone", name="scapula"))
    return out


def _vertebra(i: int, spine: dict, shape: dict) -> tuple[list, list, list]:
    """(posterior elements, canal, body) primitives of vertebra ``i``."""
    c, F = spine["centres"][i], spine["frames"][i]
    lat, ant, up = F[:, 0], F[:, 1], F[:, 2]
    s = shape["section_scale"]
    H = shape["body_height_mm"][i]
    W = shape["body_width_mm"][i]
    D = shape["body_depth_mm"][i]
    arch = shape["arch_length_mm"][i]
    droop = shape["spinous_droop_mm"][i]
    lumbar = i >= 12
    rl = (11.0 if lumbar else 7.5 + 0.2 * i) * s  # canal half-width
    ra = (8.0 if lumbar else 7.0) * s  # canal half-depth
    P = lambda l, a, u: c + l * lat + a * ant + u * up  # noqa: E731
    post = dict(material="posterior", label=POSTERIOR_LABEL, paint_label=True, name="posterior")
    prims = []
    back0 = -D / 2
    for side in (1, -1):
        # pedicle: from the posterolateral body to the lamina
        prims.append(from_segment(ELLIPSOID, P(side * (rl + 2.5 * s), back0 + 3 * s, 0.1 * H),
                                  P(side * (rl + 2.5 * s), back0 - 2 * ra - 2 * s, 0.05 * H),
                                  4.0 * s, 0.32 * H, lat, **post))
        # lamina: roof of the canal
        prims.append(from_segment(ELLIPSOID, P(side * (rl + 3 * s), back0 - 2 * ra, 0.0),
                                  P(0.0, back0 - 2 * ra - 5 * s, -0.1 * H), 0.42 * H, 3.2 * s, up, **post))
        # transverse process: lateral and (thoracic) backwards, articulating with the rib
        if lumbar:
            tip = P(side * (W / 2 + (18 + 6 * (i == 14)) * s), back0 - 1.5 * ra, 0.0)
            r1, r2 = 5.0 * s, 4.0 * s
        else:
            tip = P(side * (W / 2 + 14 * s), back0 - 2 * ra - 4 * s, 0.05 * H)
            r1, r2 = 5.0 * s, 5.0 * s
        prims.append(from_segment(ELLIPSOID, P(side * (rl + 1 * s), back0 - ra - 2 * s, 0.0), tip, r1, r2, up, **post))
    # spinous process: from the laminae to its tip, drooping caudally
    root = P(0.0, back0 - 2 * ra - 4 * s, 0.0)
    tip = P(0.0, back0 - arch, -droop)
    prims.append(from_segment(ELLIPSOID, root, tip, 3.0 * s, (6.0 if not lumbar else 10.0) * s, lat, **post))
    disc_below = shape["disc_height_mm"][i]
    canal = [_prim(CYLINDER, P(0.0, back0 - ra - 1.0 * s, -disc_below / 2), F,
                   [rl * 0.95, ra * 0.95, (H + disc_below) / 2 + 0.5], "csf", label=0, paint_label=True,
                   name="canal")]
    body = [
        _prim(CYLINDER, c, F, [W / 2, D / 2, H / 2], "cortical", label=i + 1, paint_label=True, name="body"),
        _prim(CYLINDER, c, F, [W / 2 - CORTICAL_SHELL_MM * s, D / 2 - CORTICAL_SHELL_MM * s,
                               H / 2 - ENDPLATE_MM * s], "marrow",
              parent="cortical", name="body_marrow"),
    ]
    return prims, canal, body


def _discs(spine: dict, shape: dict) -> list[Primitive]:
    out = []
    c, F = spine["centres"], spine["frames"]
    H = np.asarray(shape["body_height_mm"])
    W = np.asarray(shape["body_width_mm"])
    D = np.asarray(shape["body_depth_mm"])
    for i in range(N_VERTEBRAE):
        top = c[i] - F[i][:, 2] * H[i] / 2  # inferior endplate of vertebra i
        if i < N_VERTEBRAE - 1:
            bot = c[i + 1] + F[i + 1][:, 2] * H[i + 1] / 2
            w, d, label = (W[i] + W[i + 1]) / 4, (D[i] + D[i + 1]) / 4, DISC_LABEL
        else:
            bot = spine["s1_top"]
            w, d, label = (W[i] + spine["sacrum_size"][0, 1]) / 4, (D[i] + spine["sacrum_size"][0, 2]) / 4, LUMBOSACRAL_DISC_LABEL
        axis = top - bot
        gap = np.linalg.norm(axis)
        R = frame_from_axis(axis, F[i][:, 0])
        out.append(_prim(CYLINDER, (top + bot) / 2, R, [w * 0.97, d * 0.97, gap / 2 + 0.6], "disc",
                         label=label, paint_label=True, name="disc"))
        # nucleus pulposus: the water-richest, posterior-central part of the disc
        out.append(_prim(CYLINDER, (top + bot) / 2 - 0.1 * d * F[i][:, 1], R, [w * 0.55, d * 0.5, max(gap / 2 * 0.6, 0.3)],
                         "nucleus", parent="disc", label=label, paint_label=True, name="nucleus"))
    return out


def build_primitives(spine: dict, shape: dict, body: dict, torso: Torso, *, rib_segments: int = 7) -> list[Primitive]:
    """All primitives of one session's anatomy, in painting order."""
    prims = _organs(spine, shape, body, torso)
    prims += _pelvis(spine, shape, body, torso)
    prims += _ribs(spine, shape, body, torso, rib_segments)
    prims += _chest_wall(spine, shape, body, torso)
    posts, canals, bodies = [], [], []
    for i in range(N_VERTEBRAE):
        p, cn, b = _vertebra(i, spine, shape)
        posts += p
        canals += cn
        bodies += b
    # sacrum bodies were added with the pelvis; bodies and discs go last so they win
    return prims + posts + canals + _discs(spine, shape) + bodies
