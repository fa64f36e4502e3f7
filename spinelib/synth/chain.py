"""The spine as a chain of rigid vertebrae, and the true clinical angles read from it.

The chain is built from the sacrum upwards. Each vertebra ``i`` (T1..L5) has an orientation
given by two *tilts* of its long axis ``u_i``::

    phi_i  sagittal tilt (deg), positive when the superior end leans anteriorly (+y)
    psi_i  coronal tilt (deg), positive when the superior end leans to the patient's right (+x)

so that ``u_i = normalise(tan psi_i, tan phi_i, 1)`` in RAS world axes, and an axial
rotation ``rho_i`` about ``u_i`` (positive turns the anterior face towards +x). Endplates
are perpendicular to ``u_i``; the true clinical angles are therefore read straight from the
generated orientations (:func:`measure_angles`):

* Cobb = largest difference between consecutive extrema of the coronal tilt sequence
  T1..L5 (the two ends count as extrema);
* kyphosis = ``phi(T1) - phi(T12)`` (T1 superior vs T12 inferior endplate);
* lordosis = ``phi(L5) - phi(L1)`` (L1 superior vs L5 inferior endplate).

The tilts come from the drawn shape parameters (:func:`spinelib.synth.shape.draw_shape`).
"""

from __future__ import annotations

import numpy as np

from ..spine import LEVELS, N_VERTEBRAE
from .shape import rounded

__all__ = ["vertebra_frame", "build_spine", "cobb_from_tilts", "measure_angles"]


def _axis(phi: float, psi: float) -> np.ndarray:
    """Unit long axis ``u`` of tilts ``phi``, ``psi`` (deg)."""
    u = np.array([np.tan(np.deg2rad(psi)), np.tan(np.deg2rad(phi)), 1.0])
    return u / np.linalg.norm(u)


def vertebra_frame(phi_deg: float, psi_deg: float, rho_deg: float) -> np.ndarray:
    """(3, 3) rotation whose columns are the vertebra's (lateral, anterior, superior) axes.

    ``lateral`` points to the patient's right (+x) when untilted and unrotated.
    """
    u = _axis(phi_deg, psi_deg)
    l0 = np.array([1.0, 0.0, 0.0]) - u[0] * u
    l0 /= np.linalg.norm(l0)
    a0 = np.array([u[1] * l0[2] - u[2] * l0[1], u[2] * l0[0] - u[0] * l0[2], u[0] * l0[1] - u[1] * l0[0]])
    r = np.deg2rad(rho_deg)
    a = np.cos(r) * a0 + np.sin(r) * l0
    lat = np.cos(r) * l0 - np.sin(r) * a0
    return np.stack([lat, a, u], axis=1)


def _cosine_knots(knots: list[tuple[float, float]], n: int) -> np.ndarray:
    """Values at 0..n-1 interpolated between (index, value) knots with half-cosine easing,
    so that the sequence is monotone between knots and its extrema are the knots."""
    knots = sorted(knots)
    xs = np.arange(n, dtype=float)
    out = np.empty(n)
    for i, x in enumerate(xs):
        for (x0, v0), (x1, v1) in zip(knots[:-1], knots[1:]):
            if x0 <= x <= x1:
                t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
                out[i] = v0 + (v1 - v0) * (1 - np.cos(np.pi * t)) / 2
                break
    return out


def _tilts(shape: dict, posture: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Sagittal and coronal tilt sequences (deg) T1..L5 before supine placement."""
    kyph, lord = shape["kyphosis_drawn_deg"], shape["lordosis_drawn_deg"]
    # thoracic: curvature bump centred on the kyphosis apex, integrated from T12 up
    seg = np.arange(11) + 0.5  # segment between vertebra i and i+1
    w = np.exp(-0.5 * ((seg - shape["kyphosis_apex_index"]) / shape["kyphosis_width"]) ** 2)
    h = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()  # 0 at T1 .. 1 at T12
    phi_l5 = lord / 2 + 5.0
    phi_l1 = phi_l5 - lord
    lw = np.linspace(1.0, 2.0, 4) ** (1.0 + shape["lordosis_power"])
    lc = np.concatenate([[0.0], np.cumsum(lw)]) / lw.sum()
    phi = np.empty(N_VERTEBRAE)
    phi[12:] = phi_l1 + lord * lc
    phi_t12 = phi_l1 + shape["junction_deg"]
    phi[:12] = phi_t12 + kyph * (1.0 - h)
    phi += np.asarray(shape["sagittal_noise_deg"])
    sc = shape["scoliosis"]
    knots = [(int(k), v) for k, v in sc["knots"].items()]
    if len(knots) < 2:
        knots = [(0, 0.0), (16, 0.0)]
    psi = _cosine_knots(knots, N_VERTEBRAE)
    # outside the knots (no compensatory knot) keep the end value
    lo, hi = min(k for k, _ in knots), max(k for k, _ in knots)
    psi[:lo] = psi[lo]
    psi[hi + 1:] = psi[hi]
    psi += sc["lean_deg"] + np.asarray(shape["coronal_noise_deg"])
    if posture is not None:
        phi = phi + np.asarray(posture["dphi_deg"])
        psi = psi + np.asarray(posture["dpsi_deg"])
    return phi, psi


def build_spine(shape: dict, posture: dict | None = None) -> dict:
    """The spine chain in a local frame (S1 superior endplate centre at the origin).

    Returns a dict of arrays: ``centres`` (17, 3), ``frames`` (17, 3, 3) (columns
    lateral/anterior/superior), ``sacrum_centres`` (3, 3), ``sacrum_frames`` (3, 3, 3),
    ``sacrum_size`` (3, 3) (height, width, depth), ``s1_top`` (3,), ``rho_deg`` (17,) and
    ``lateral_deviation_mm`` (17,), the deviation from the T1-L5 chord that drives ``rho``.
    """
    phi, psi = _tilts(shape, posture)
    H = np.asarray(shape["body_height_mm"])
    D = np.asarray(shape["disc_height_mm"])
    s = shape["scale"]
    ls = shape["lumbosacral_deg"]
    # sacrum: S1, S2, S3-S5 pieces, increasingly tilted (sacral kyphosis)
    sac_phi = phi[16] + ls + np.array([0.0, 18.0, 40.0])
    sac_psi = psi[16] * np.array([0.5, 0.4, 0.3])
    sac_size = np.array([[30.0, 50.0, 34.0], [24.0, 42.0, 26.0], [40.0, 30.0, 18.0]]) * s
    sac_c = np.zeros((3, 3))
    top = np.zeros(3)
    for j in range(3):
        u = _axis(sac_phi[j], sac_psi[j])
        sac_c[j] = top - u * sac_size[j, 0] / 2
        top = sac_c[j] - u * (sac_size[j, 0] / 2 + (1.5 * s if j == 0 else 0.5))
    centres = np.zeros((N_VERTEBRAE, 3))
    u_prev = _axis(sac_phi[0], sac_psi[0])
    point = np.zeros(3)  # superior endplate centre of the vertebra below
    for i in range(N_VERTEBRAE - 1, -1, -1):
        u = _axis(phi[i], psi[i])
        ud = u + u_prev
        ud /= np.linalg.norm(ud)
        centres[i] = point + ud * D[i] + u * H[i] / 2
        point = centres[i] + u * H[i] / 2
        u_prev = u
    # axial rotation towards the convex side: lateral deviation from the T1-L5 chord
    t = (centres[:, 2] - centres[16, 2]) / (centres[0, 2] - centres[16, 2])
    dev = centres[:, 0] - (centres[16, 0] + t * (centres[0, 0] - centres[16, 0]))
    rho = shape["scoliosis"]["rotation_deg_per_mm"] * dev + np.asarray(shape["rotation_noise_deg"])
    frames = np.stack([vertebra_frame(p, q, r) for p, q, r in zip(phi, psi, rho)])
    sac_frames = np.stack([vertebra_frame(p, q, 0.0) for p, q in zip(sac_phi, sac_psi)])
    return {
        "centres": centres,
        "frames": frames,
        "sacrum_centres": sac_c,
        "sacrum_frames": sac_frames,
        "sacrum_size": sac_size,
        "s1_top": np.zeros(3),
        "rho_deg": rho,
        "lateral_deviation_mm": dev,
    }


def cobb_from_tilts(psi: np.ndarray) -> tuple[float, int, int]:
    """Cobb angle from a coronal tilt sequence: the largest difference between consecutive
    extrema (the ends count as extrema). Returns ``(cobb_deg, upper_index, lower_index)``."""
    psi = np.asarray(psi, dtype=float)
    d = np.diff(psi)
    ext = [0]
    last_sign = 0.0
    for i in range(1, len(psi) - 1):
        sgn = np.sign(d[i - 1]) if d[i - 1] != 0 else last_sign
        if sgn != 0:
            last_sign = sgn
        if d[i] != 0 and last_sign != 0 and np.sign(d[i]) != last_sign:
            ext.append(i)
    ext.append(len(psi) - 1)
    best, up, lo = 0.0, 0, len(psi) - 1
    for a, b in zip(ext[:-1], ext[1:]):
        diff = abs(psi[b] - psi[a])
        if diff > best:
            best, up, lo = diff, a, b
    return float(best), int(up), int(lo)


def measure_angles(spine: dict, shape: dict | None = None) -> dict:
    """True clinical angles from the vertebral orientations of a built spine (see module doc)."""
    u = spine["frames"][:, :, 2]
    psi = np.rad2deg(np.arctan2(u[:, 0], u[:, 2]))
    phi = np.rad2deg(np.arctan2(u[:, 1], u[:, 2]))
    cobb, up, lo = cobb_from_tilts(psi)
    c = spine["centres"]
    if lo - up >= 2:
        t = (c[up:lo + 1, 2] - c[up, 2]) / (c[lo, 2] - c[up, 2])
        dev = c[up:lo + 1, 0] - (c[up, 0] + t * (c[lo, 0] - c[up, 0]))
        apex = up + int(np.argmax(np.abs(dev)))
    else:
        apex = (up + lo) // 2
    out = {
        "cobb_deg": round(cobb, 4),
        "cobb_upper_end": LEVELS[up],
        "cobb_lower_end": LEVELS[lo],
        "kyphosis_deg": round(float(phi[0] - phi[11]), 4),
        "lordosis_deg": round(float(phi[16] - phi[12]), 4),
        "apex_level": LEVELS[apex],
        "coronal_tilt_deg": rounded(psi, 3),
        "sagittal_tilt_deg": rounded(phi, 3),
        "axial_rotation_deg": rounded(spine["rho_deg"], 3),
    }
    if shape is not None:
        sc = shape["scoliosis"]
        out["curve_type"] = sc["curve_type"] if cobb >= 6.0 else "none"
        out["curve_type_drawn"] = sc["curve_type"]
    return out
