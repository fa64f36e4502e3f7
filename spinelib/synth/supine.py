"""Supine placement of a built spine on the scanner table (:func:`place_supine`).

The body rests on a flat table. The posterior skin under each spinous process lies
``back thickness`` (subcutaneous fat + muscle) behind the process tip; the spine is pitched
and lifted so that this skin profile rests on the table along its lower convex hull (contact
at the thoracic back and the sacrum).
"""

from __future__ import annotations

import numpy as np

from ..spine import N_VERTEBRAE

__all__ = ["spinous_tips", "place_supine"]


def spinous_tips(spine: dict, shape: dict) -> np.ndarray:
    """(17, 3) world positions of the spinous process tips."""
    D = np.asarray(shape["body_depth_mm"])
    arch = np.asarray(shape["arch_length_mm"])
    droop = np.asarray(shape["spinous_droop_mm"])
    a = spine["frames"][:, :, 1]
    u = spine["frames"][:, :, 2]
    return spine["centres"] - a * (D / 2 + arch)[:, None] - u * droop[:, None]


def _lower_hull(z: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of the points ``(z, y)``, by increasing ``z``."""
    order = np.argsort(z)
    hull: list[int] = []
    for i in order:
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (z[a] - z[o]) * (y[i] - y[o]) - (y[a] - y[o]) * (z[i] - z[o])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(int(i))
    return hull


def _rotation_x(beta: float) -> np.ndarray:
    """(3, 3) rotation by ``beta`` (rad) about the x axis."""
    c, s = np.cos(beta), np.sin(beta)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rotate_x(points: np.ndarray, beta: float) -> np.ndarray:
    """(N, 3) ``points`` rotated by ``beta`` (rad) about the x axis."""
    return points @ _rotation_x(beta).T


def _back_profile(spine: dict, shape: dict) -> tuple[np.ndarray, np.ndarray]:
    """(18, 3) spinous tips and a point behind the sacrum, and the (18,) tissue thickness (mm) under each."""
    f_post = 0.6 * shape["subcutaneous_fat_mm"]
    tips = spinous_tips(spine, shape)
    back = np.where(np.arange(N_VERTEBRAE) < 12, shape["back_muscle_thoracic_mm"],
                    shape["back_muscle_lumbar_mm"]) + f_post
    sac = spine["sacrum_centres"][1] - spine["sacrum_frames"][1][:, 1] * (spine["sacrum_size"][1, 2] / 2 + 8.0)
    sac_back = shape["sacral_tissue_mm"] + 0.9 * shape["subcutaneous_fat_mm"]
    return np.vstack([tips, sac[None]]), np.concatenate([back, [sac_back]])


def _hull_pitch(pts: np.ndarray, thick: np.ndarray, z_com: float) -> float:
    """Pitch (rad) about x that levels the skin profile's lower-hull edge spanning height ``z_com``."""
    beta_total = 0.0
    for _ in range(6):
        p = _rotate_x(pts, beta_total)
        zc = _rotate_x(np.array([[0.0, 0.0, z_com]]), beta_total)[0, 2]
        skin_y = p[:, 1] - thick
        hull = _lower_hull(p[:, 2], skin_y)
        zs = p[hull, 2]
        k = int(np.clip(np.searchsorted(zs, zc), 1, len(hull) - 1))
        i, j = hull[k - 1], hull[k]
        slope = np.arctan2(skin_y[j] - skin_y[i], p[j, 2] - p[i, 2])
        if abs(slope) < 1e-7:
            break
        beta_total += slope
    return beta_total


def place_supine(spine: dict, shape: dict, *, table_y: float, s1_xz: tuple[float, float],
                 shift_mm=(0.0, 0.0, 0.0)) -> dict:
    """Pitch and move the spine so that its back rests on the table plane ``y = table_y``.

    The skin under each spinous tip lies a back thickness below it (subcutaneous fat
    compressed to 60 % plus muscle; gluteal tissue under the sacrum); the spine is pitched
    about the x axis until the lower convex hull edge of that skin profile spanning the
    thoracolumbar junction (the body's centre of mass) is horizontal, then lifted so that
    it lies on the table; finally translated so that the S1 endplate centre sits at
    ``s1_xz`` (plus ``shift_mm``, the posture change).

    Returns a new spine dict in world coordinates, with ``pitch_deg``, ``table_y`` and
    ``back_thickness_mm`` (18,: under each spinous tip, then under the sacrum) added.
    """
    pts, thick = _back_profile(spine, shape)
    beta_total = _hull_pitch(pts, thick, 0.5 * (spine["centres"][11, 2] + spine["centres"][12, 2]))
    out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in spine.items()}
    R = _rotation_x(beta_total)
    for key in ("centres", "sacrum_centres"):
        out[key] = spine[key] @ R.T
    out["s1_top"] = spine["s1_top"] @ R.T
    for key in ("frames", "sacrum_frames"):
        out[key] = np.einsum("ij,njk->nik", R, spine[key])
    p = pts @ R.T
    skin_y = p[:, 1] - thick
    dy = table_y - skin_y.min()
    shift = np.array([s1_xz[0] - out["s1_top"][0], dy, s1_xz[1] - out["s1_top"][2]]) + np.asarray(shift_mm)
    for key in ("centres", "sacrum_centres", "s1_top"):
        out[key] = out[key] + shift
    out["pitch_deg"] = float(np.rad2deg(beta_total))
    out["table_y"] = float(table_y)
    out["back_thickness_mm"] = thick
    return out
