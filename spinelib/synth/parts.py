"""One session's anatomy as analytic primitives, in painting order (:func:`build_primitives`).

The skeleton and organs are a list of :class:`~spinelib.synth.primitives.Primitive` painted
in order (later ones win in the MRI): organs (lungs, heart, liver, kidneys, bowel in
visceral fat), pelvis and femora, 12 rib pairs attached to the thoracic vertebrae (the rib
cage follows their scoliosis and axial rotation, not their sagittal tilt: :func:`rib_frame`),
the sternum, clavicles and scapulae, posterior elements (pedicles, laminae, spinous and
transverse processes), the spinal canal (CSF), the discs and the vertebral bodies (tilted
elliptic cylinders: a cortical shell around trabecular marrow, so that tilted endplates
project as ellipses). The parts around the column (:data:`PART_GROUPS`) can be left out, to
measure what each shows in the AP image (:mod:`spinelib.study.ap_information`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..spine import DISC_LABEL, LUMBOSACRAL_DISC_LABEL, N_VERTEBRAE, POSTERIOR_LABEL, SACRUM_LABEL
from .primitives import CYLINDER, ELLIPSOID, Primitive, cross3, frame_from_axis, from_segment
from .torso import Torso

__all__ = ["PART_GROUPS", "build_primitives", "check_parts", "rib_frame", "vertebra_primitives", "CORTICAL_SHELL_MM",
           "ENDPLATE_MM", "MIN_PREPUBIC_MM"]

#: least non-fat tissue (mm, at scale 1) in front of the pubic symphysis: the pelvis tilts
#: back (its symphysis moves posteriorly) rather than the hips growing deeper
MIN_PREPUBIC_MM = 5.0
#: thickness (mm, at section scale 1) of the vertebral body's cortical shell and of its bony
#: endplates: microCT of human vertebral bodies finds a shell of about 0.2-0.5 mm and
#: endplates of about 0.5-0.8 mm. A thicker shell (version 2 had 1.2 mm) makes the body's
#: edges far brighter than its middle in the AP projection, an exaggerated cue of the tilt.
CORTICAL_SHELL_MM = 0.5
ENDPLATE_MM = 0.6


def _prim(kind, centre, rot, semi, material, **kw) -> Primitive:
    """A :class:`Primitive` with its centre, rotation and semi-axes (mm) as float arrays."""
    return Primitive(kind, np.asarray(centre, float), np.asarray(rot, float), np.asarray(semi, float),
                     material, **kw)


def _organs(spine: dict, shape: dict, body: dict, torso: Torso) -> list[Primitive]:
    """Lungs, heart, liver, kidneys, and the visceral fat with the bowel inside it."""
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


def _pubis_front_offset(s: float) -> tuple[np.ndarray, float]:
    """Anterior end of the pubic rami relative to the S1 endplate centre (mm), and its
    radius: the symphysis, the pelvis's most anterior point."""
    return np.array([0.0, 100.0 * s, -120.0 * s]), 8.0 * s


def _pelvis(spine: dict, shape: dict, body: dict, torso: Torso) -> list[Primitive]:
    """Iliac wings, ischia, pubic rami, femoral heads, necks and shafts, and the sacrum (label 18)."""
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
    """12 rib pairs: per side, a joint piece then ``n_seg`` cylinders along an elliptic arc (:func:`rib_frame`)."""
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


def vertebra_primitives(i: int, spine: dict, shape: dict) -> tuple[list[Primitive], list[Primitive], list[Primitive]]:
    """(posterior elements, spinal canal, body) primitives of vertebra ``i`` (0 = T1 .. 16 = L5)."""
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
    """Each disc below T1..L5 (label 20, L5/S1 21) with its water-rich nucleus."""
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


#: The body parts around the spinal column, in painting order, that :func:`build_primitives`
#: can leave out to measure what each one shows of the spine in the AP image
#: (:mod:`spinelib.study.ap_information`); ``"pelvis"`` includes the sacrum.
PART_GROUPS: tuple[str, ...] = ("organs", "pelvis", "ribs", "chest_wall")


def check_parts(parts: Any, name: str = "leave_out") -> tuple[str, ...]:
    """``parts`` as a tuple of :data:`PART_GROUPS` names, refused unless it is a collection of them.

    Raises
    ------
    InvalidArgumentError
        ``parts`` is a string or not a collection, or names a part not in :data:`PART_GROUPS`.
    """
    if isinstance(parts, (str, bytes)) or not isinstance(parts, Collection):
        raise InvalidArgumentError(f"{name} must be a collection of part names from {PART_GROUPS}, got {parts!r}")
    unknown = [p for p in parts if p not in PART_GROUPS]
    if unknown:
        raise InvalidArgumentError(f"{name} names unknown parts {unknown}; known: {PART_GROUPS}")
    return tuple(p for p in PART_GROUPS if p in parts)


def build_primitives(spine: dict, shape: dict, body: dict, torso: Torso, *, rib_segments: int = 7,
                     leave_out: Collection[str] = ()) -> list[Primitive]:
    """All primitives of one session's anatomy, in painting order, without the
    :data:`PART_GROUPS` named in ``leave_out`` (the spinal column itself is always drawn)."""
    skip = check_parts(leave_out)
    makers = (_organs, _pelvis, functools.partial(_ribs, n_seg=rib_segments), _chest_wall)  # PART_GROUPS order
    prims = [p for part, make in zip(PART_GROUPS, makers) if part not in skip for p in make(spine, shape, body, torso)]
    posts, canals, bodies = [], [], []
    for i in range(N_VERTEBRAE):
        p, cn, b = vertebra_primitives(i, spine, shape)
        posts += p
        canals += cn
        bodies += b
    # sacrum bodies were added with the pelvis; bodies and discs go last so they win
    return prims + posts + canals + _discs(spine, shape) + bodies
