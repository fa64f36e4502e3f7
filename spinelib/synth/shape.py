"""Spine shape in 3D: vertebral sizes, sagittal and coronal tilts, axial rotation, supine placement.

The spine is built as a chain of rigid vertebrae from the sacrum upwards. Each vertebra
``i`` (T1..L5) has an orientation given by two *tilts* of its long axis ``u_i``::

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

Distributions (drawn so that the *measured* angles hit the targets, see the tests):
supine thoracic kyphosis ~ 20-55 deg, supine lumbar lordosis 37 +/- 13 deg, and a
scoliosis mixture (about 65 % under 6 deg Cobb, 25 % 6-20, 10 % 20-50; thoracic,
thoracolumbar, lumbar and double curves) with the vertebrae rotated towards the convex
side in proportion to their lateral deviation.

The sagittal angles depend on the demographics only as weakly as the literature reports
(:data:`KYPHOSIS_DEG_PER_YEAR`, :data:`LORDOSIS_FEMALE_DEG`, :data:`LORDOSIS_DEG_PER_BMI`):

* kyphosis rises with age in adults by about a quarter of a degree per year, with a
  between-person spread several times larger than the age effect: standing Cobb T5-T12
  of 1323 adults aged 15-80 rose from 23.4 deg (15-40 years) to 34.4 deg (61-80 years)
  with a correlation with age of 0.4 over that wide age range (Arch Orthop Trauma Surg
  2022;142:1731-1737, doi:10.1007/s00402-021-03798-z; the systematic review
  doi:10.1186/s13018-021-02592-2 finds the same trend; Fon, Pitt & Thies, AJR 1980;
  134:979-983, the classic normal range). Over this cohort's narrower ages (45-80) the
  same slope gives a correlation of about 0.2-0.25; the slope used here is lower
  because supine kyphosis is flatter than standing, and the correlation is weak (about 0.15)
  (``tests/test_synth_stats.py`` requires |r| <= 0.3);
* lordosis does not vary measurably with age in adults and is more prominent in women
  and with higher BMI (Murrie et al., Clin Anat 2003;16:144-147, MRI); the associations
  with age, sex and BMI are weak (Singh et al., Cureus 2024;16:e72453, 200 radiographs),
  so the sex and BMI terms here are a few degrees against an SD of 13 deg.

Vertebral body depth and width share the subject's size (height, sex) but their ratio has
its own individual spread (:func:`draw_shape`), so the sagittal boundaries of the spine
do not follow from its coronal width.

Supine placement (:func:`place_supine`): the body rests on a flat table. The posterior
skin under each spinous process lies ``back thickness`` (subcutaneous fat + muscle)
behind the process tip; the spine is pitched and lifted so that this skin profile rests on
the table along its lower convex hull (contact at the thoracic back and the sacrum).
"""

from __future__ import annotations

import numpy as np

from ..spine import LEVELS, N_VERTEBRAE

__all__ = [
    "draw_shape",
    "draw_posture_change",
    "build_spine",
    "place_supine",
    "measure_angles",
    "cobb_from_tilts",
    "vertebra_frame",
]

# -- reference sizes for a 170 cm adult (mm): T1 body 15 x 28 x 16 to L5 28 x 50 x 35
_IDX = np.arange(N_VERTEBRAE, dtype=float)
_BODY_H = np.interp(_IDX, [0, 11, 12, 16], [15.0, 22.5, 24.5, 28.0])
_BODY_W = np.interp(_IDX, [0, 4, 11, 12, 16], [28.0, 29.5, 40.0, 42.0, 50.0])
_BODY_D = np.interp(_IDX, [0, 4, 11, 12, 16], [16.0, 21.0, 29.0, 31.0, 35.0])
# discs below vertebra i (T1/T2 .. L4/L5, then L5/S1): thoracic 4-6 mm, lumbar 8-12 mm
_DISC = np.concatenate([np.linspace(4.0, 5.8, 11), [6.5], np.linspace(8.0, 11.0, 4), [10.5]])
# posterior body surface -> spinous tip distance and caudal droop of the tip (mm)
_ARCH = np.interp(_IDX, [0, 11, 16], [40.0, 50.0, 60.0])
_DROOP = np.interp(_IDX, [0, 3, 8, 11, 16], [10.0, 18.0, 22.0, 12.0, 5.0])

CURVE_TYPES = ("thoracic", "thoracolumbar", "lumbar", "double")

#: mean supine kyphosis (deg) at age 45 and its rise per year of age (weak: see module doc)
KYPHOSIS_AT_45_DEG = 32.0
KYPHOSIS_DEG_PER_YEAR = 0.15
#: between-person spread of kyphosis (deg, SD) at a given age
KYPHOSIS_SD_DEG = 8.5
#: lordosis: cohort mean and SD (deg), extra lordosis of women (deg), slope with BMI (deg per kg/m^2)
LORDOSIS_MEAN_DEG = 37.0
LORDOSIS_SD_DEG = 13.0
LORDOSIS_FEMALE_DEG = 2.5
LORDOSIS_DEG_PER_BMI = 0.25
#: individual spread of the vertebral body depth/width ratio: per subject and per level
#: (log-normal SDs; see :func:`draw_shape`)
DEPTH_WIDTH_RATIO_SD = 0.09
DEPTH_WIDTH_RATIO_LEVEL_SD = 0.03
#: relative spread (SD) of the intervertebral disc heights: per subject and per level. Disc
#: height at a given stature varies with hydration and early degeneration by some 15-20 %
#: between adults, well beyond the vertebral bodies' few per cent; the column's length
#: therefore does not follow exactly from the bones' sizes
DISC_SUBJECT_SD = 0.12
DISC_LEVEL_SD = 0.10
#: vertebral cross-section size (body width and depth, arch length) ~ (height / 170 cm)
#: ** exponent * a log-normal individual factor: stature explains only a minor part of
#: the variance of vertebral cross-sectional size (correlations of about 0.3-0.5 in
#: morphometric series), while the column's length follows stature closely
SECTION_HEIGHT_EXPONENT = 0.6
SECTION_SD = 0.06


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def _lst(a, nd: int = 4) -> list:
    return [round(float(v), nd) for v in np.ravel(a)]


def vertebra_frame(phi_deg: float, psi_deg: float, rho_deg: float) -> np.ndarray:
    """(3, 3) rotation whose columns are the vertebra's (lateral, anterior, superior) axes.

    ``lateral`` points to the patient's right (+x) when untilted and unrotated.
    """
    u = np.array([np.tan(np.deg2rad(psi_deg)), np.tan(np.deg2rad(phi_deg)), 1.0])
    u /= np.linalg.norm(u)
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


def _draw_scoliosis(rng: np.random.Generator, severity: float) -> dict:
    # piecewise-exponential density, decreasing within each band: 65 % in [0, 6),
    # 25 % in [6, 20), 10 % in [20, 48] (drawn magnitude of the structural curve)
    u = rng.random()
    bands = (("minimal", 0.0, 5.6, 6.0, 0.65), ("mild", 6.0, 20.0, 8.0, 0.25), ("moderate", 20.0, 48.0, 12.0, 0.10))
    acc = 0.0
    for category, lo, hi, lam, mass in bands:
        acc += mass
        if u < acc or category == "moderate":
            v = rng.random()
            cobb = lo - lam * np.log(1.0 - v * (1.0 - np.exp(-(hi - lo) / lam)))
            break
    cobb *= float(severity)
    curve_type = CURVE_TYPES[int(rng.choice(4, p=[0.35, 0.2, 0.3, 0.15]))]
    curves = []  # (upper end, lower end, convex side +1 right / -1 left, magnitude)
    if curve_type == "thoracic":
        apex, half = int(rng.integers(5, 9)), int(rng.integers(3, 5))
        side = 1 if rng.random() < 0.7 else -1
        curves.append((max(apex - half, 0), min(apex + half, 16), side, cobb))
    elif curve_type == "thoracolumbar":
        apex, half = int(rng.integers(10, 13)), int(rng.integers(3, 5))
        side = 1 if rng.random() < 0.5 else -1
        curves.append((apex - half, min(apex + half, 16), side, cobb))
    elif curve_type == "lumbar":
        apex, half = int(rng.integers(12, 15)), int(rng.integers(2, 4))
        side = -1 if rng.random() < 0.6 else 1
        curves.append((apex - half, min(apex + half, 16), side, cobb))
    else:
        t_apex, t_half = int(rng.integers(5, 8)), 3
        l_apex = int(rng.integers(12, 15))
        side = 1 if rng.random() < 0.7 else -1
        second = cobb * rng.uniform(0.6, 1.0)
        first_is_thoracic = rng.random() < 0.5
        c_t, c_l = (cobb, second) if first_is_thoracic else (second, cobb)
        mid = t_apex + t_half
        curves.append((t_apex - t_half, mid, side, c_t))
        curves.append((mid, min(l_apex + (l_apex - mid), 16), -side, c_l))
    knots: dict[int, float] = {}
    for up, lo, side, mag in curves:
        knots.setdefault(up, -side * mag / 2)
        knots[lo] = side * mag / 2
    first, last = min(knots), max(knots)
    # compensatory curves above and below the structural ones
    comp_up = rng.uniform(0.15, 0.45)
    comp_lo = rng.uniform(0.15, 0.45)
    # they bring the column back over the sacrum, slightly past vertical (balance)
    if first > 0:
        knots[0] = -comp_up * knots[first]
    if last < 16:
        knots[16] = -comp_lo * knots[last]
    return {
        "category": category,
        "curve_type": curve_type,
        "cobb_drawn_deg": _r(cobb),
        "curves": [[int(a), int(b), int(s), _r(m)] for a, b, s, m in curves],
        "knots": {str(k): _r(v) for k, v in sorted(knots.items())},
        "lean_deg": _r(rng.normal(0.0, 1.0)),
        "rotation_deg_per_mm": _r(rng.normal(0.9, 0.2)),
    }


def draw_shape(rng: np.random.Generator, demo: dict, params: dict) -> dict:
    """Draw every shape parameter of one subject (a JSON-able dict).

    Vertebral bodies: height, width and depth scale with body height (and width / depth
    with sex); the depth/width ratio then gets an individual factor, log-normal with SD
    :data:`DEPTH_WIDTH_RATIO_SD` per subject and :data:`DEPTH_WIDTH_RATIO_LEVEL_SD` per
    level, applied as ``depth * sqrt(f)``, ``width / sqrt(f)`` (the endplate area keeps
    its size). Source of the spread: the cadaveric morphometry of Panjabi et al. (thoracic:
    Spine 1991;16:888-901; lumbar: Spine 1992;17:299-306) and the CT morphometry of Zhou et
    al. (Eur Spine J 2000;9:242-248) report standard deviations of endplate width and depth
    of roughly 5-10 % of their means at each level, with width and depth only moderately
    correlated between individuals; the ratio of two such measures has a coefficient of
    variation of the same order, about 8-10 %. With the 3 % per-level size jitter of
    each dimension on top, the generated ratio has a coefficient of variation of about
    10 % at each level (``tests/test_synth_stats.py`` measures it and requires >= 8 %).

    Parameters
    ----------
    rng : the subject's generator.
    demo : output of :func:`spinelib.synth.population.draw_demographics`.
    params : profile parameters (uses ``scoliosis_severity``).
    """
    age, bmi, female = demo["age"], demo["bmi"], demo["sex"] == "F"
    scale = demo["height_cm"] / 170.0 * rng.normal(1.0, 0.03)
    wd = 0.94 if female else 1.0
    jit = lambda sd: rng.normal(1.0, sd, N_VERTEBRAE)  # noqa: E731
    heights = _BODY_H * scale * jit(0.03)
    # cross-sectional size (body width and depth, posterior arch): tied to stature only
    # moderately (correlation about 0.4), unlike the column's length
    section = (demo["height_cm"] / 170.0) ** SECTION_HEIGHT_EXPONENT * float(np.exp(rng.normal(0.0, SECTION_SD)))
    ratio = np.exp(rng.normal(0.0, DEPTH_WIDTH_RATIO_SD) + rng.normal(0.0, DEPTH_WIDTH_RATIO_LEVEL_SD, N_VERTEBRAE))
    widths = _BODY_W * section * wd * jit(0.03) / np.sqrt(ratio)
    depths = _BODY_D * section * wd * jit(0.03) * np.sqrt(ratio)
    degen = 1.0 - 0.004 * max(age - 45.0, 0.0)
    # disc heights vary between adults of the same stature far more than bone lengths do
    # (hydration and early degeneration): a subject factor and a per-level factor
    discs = _DISC * scale * rng.normal(1.0, DISC_SUBJECT_SD) * rng.normal(1.0, DISC_LEVEL_SD, N_VERTEBRAE)
    discs[11:] *= degen
    kyph = float(np.clip(rng.normal(KYPHOSIS_AT_45_DEG + KYPHOSIS_DEG_PER_YEAR * (age - 45.0), KYPHOSIS_SD_DEG),
                         8.0, 75.0))
    # centred on the cohort's sex ratio and median BMI so that the cohort mean stays put
    lord_mean = (LORDOSIS_MEAN_DEG + LORDOSIS_FEMALE_DEG * ((1.0 if female else 0.0) - 0.52)
                 + LORDOSIS_DEG_PER_BMI * (bmi - 26.3))
    lord = float(np.clip(rng.normal(lord_mean, LORDOSIS_SD_DEG), 3.0, 85.0))
    f_sub = max(3.0, 4.0 + 1.6 * (bmi - 20.0) + (5.0 if female else 0.0)) * rng.normal(1.0, 0.15)
    return {
        "scale": _r(scale),
        "body_height_mm": _lst(heights, 3),
        "body_width_mm": _lst(widths, 3),
        "body_depth_mm": _lst(depths, 3),
        "disc_height_mm": _lst(discs, 3),  # below T1..L5 (last: L5/S1)
        "section_scale": _r(section),
        "arch_length_mm": _lst(_ARCH * section * jit(0.05), 3),
        "spinous_droop_mm": _lst(_DROOP * scale * jit(0.1), 3),
        "kyphosis_drawn_deg": _r(kyph),
        "kyphosis_apex_index": _r(rng.uniform(5.5, 8.0)),
        "kyphosis_width": _r(rng.uniform(2.5, 4.5)),
        "lordosis_drawn_deg": _r(lord),
        "lordosis_power": _r(rng.uniform(0.3, 1.2)),
        "junction_deg": _r(rng.normal(0.0, 2.5)),
        "lumbosacral_deg": _r(rng.normal(12.0, 4.0)),
        "sagittal_noise_deg": _lst(rng.normal(0.0, 0.5, N_VERTEBRAE), 3),
        "coronal_noise_deg": _lst(rng.normal(0.0, 0.3, N_VERTEBRAE), 3),
        "rotation_noise_deg": _lst(rng.normal(0.0, 1.0, N_VERTEBRAE), 3),
        "scoliosis": _draw_scoliosis(rng, params.get("scoliosis_severity", 1.0)),
        "subcutaneous_fat_mm": _r(f_sub, 3),
        "back_muscle_thoracic_mm": _r(max(4.0, rng.normal(9.0, 2.0)), 3),
        "back_muscle_lumbar_mm": _r(max(8.0, rng.normal(22.0, 5.0)), 3),
        "sacral_tissue_mm": _r(max(5.0, rng.normal(14.0, 3.0)), 3),
    }


def draw_posture_change(rng: np.random.Generator, size_mm: float) -> dict:
    """Small, smooth change of spine posture between the MRI and the DXA session.

    ``size_mm`` scales everything: at 1.0 the sagittal tilts change by a smooth field of
    about 1 deg (coronal 0.5 deg), i.e. kyphosis / lordosis change by about a degree, the
    vertebral centres move by 1-3 mm (most at T1) and the sacrum by about 0.5 mm.
    """
    s = float(size_mm)
    x = np.arange(N_VERTEBRAE) / (N_VERTEBRAE - 1)

    def smooth() -> np.ndarray:
        c = rng.normal(0.0, 1.0, 3)
        return c[0] * 0.5 + c[1] * np.sin(np.pi * x) + c[2] * 0.5 * np.sin(2 * np.pi * x)

    return {
        "dphi_deg": _lst(0.9 * s * smooth(), 4),
        "dpsi_deg": _lst(0.45 * s * smooth(), 4),
        "shift_mm": _lst(rng.normal(0.0, 0.5 * s, 3), 4),
    }


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


def _axis(phi: float, psi: float) -> np.ndarray:
    u = np.array([np.tan(np.deg2rad(psi)), np.tan(np.deg2rad(phi)), 1.0])
    return u / np.linalg.norm(u)


def build_spine(shape: dict, posture: dict | None = None) -> dict:
    """The spine chain in a local frame (S1 superior endplate centre at the origin).

    Returns a dict of arrays: ``centres`` (17, 3), ``frames`` (17, 3, 3) (columns
    lateral/anterior/superior), ``sacrum_centres`` (3, 3), ``sacrum_frames`` (3, 3, 3),
    ``sacrum_size`` (3, 3) (height, width, depth), ``s1_top`` (3,), ``rho_deg`` (17,).
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


def spinous_tips(spine: dict, shape: dict) -> np.ndarray:
    """(17, 3) world positions of the spinous process tips."""
    D = np.asarray(shape["body_depth_mm"])
    arch = np.asarray(shape["arch_length_mm"])
    droop = np.asarray(shape["spinous_droop_mm"])
    a = spine["frames"][:, :, 1]
    u = spine["frames"][:, :, 2]
    return spine["centres"] - a * (D / 2 + arch)[:, None] - u * droop[:, None]


def _lower_hull(z: np.ndarray, y: np.ndarray) -> list[int]:
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


def _rotate_x(points: np.ndarray, beta: float) -> np.ndarray:
    c, s = np.cos(beta), np.sin(beta)
    R = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return points @ R.T


def place_supine(spine: dict, shape: dict, *, table_y: float, s1_xz: tuple[float, float],
                 shift_mm=(0.0, 0.0, 0.0)) -> dict:
    """Pitch and move the spine so that its back rests on the table plane ``y = table_y``.

    The skin under each spinous tip lies a back thickness below it (subcutaneous fat
    compressed to 60 % plus muscle; gluteal tissue under the sacrum); the spine is pitched
    about the x axis until the lower convex hull edge of that skin profile spanning the
    thoracolumbar junction (the body's centre of mass) is horizontal, then lifted so that
    it lies on the table; finally translated so that the S1 endplate centre sits at
    ``s1_xz`` (plus ``shift_mm``, the posture change).

    Returns a new spine dict in world coordinates with ``pitch_deg`` and ``skin_contact``.
    """
    f_post = 0.6 * shape["subcutaneous_fat_mm"]
    tips = spinous_tips(spine, shape)
    back = np.where(np.arange(N_VERTEBRAE) < 12, shape["back_muscle_thoracic_mm"],
                    shape["back_muscle_lumbar_mm"]) + f_post
    sac = spine["sacrum_centres"][1] - spine["sacrum_frames"][1][:, 1] * (spine["sacrum_size"][1, 2] / 2 + 8.0)
    sac_back = shape["sacral_tissue_mm"] + 0.9 * shape["subcutaneous_fat_mm"]
    pts = np.vstack([tips, sac[None]])
    thick = np.concatenate([back, [sac_back]])
    z_com = 0.5 * (spine["centres"][11, 2] + spine["centres"][12, 2])
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
    out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in spine.items()}
    c, s = np.cos(beta_total), np.sin(beta_total)
    R = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
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
        "coronal_tilt_deg": _lst(psi, 3),
        "sagittal_tilt_deg": _lst(phi, 3),
        "axial_rotation_deg": _lst(spine["rho_deg"], 3),
    }
    if shape is not None:
        sc = shape["scoliosis"]
        out["curve_type"] = sc["curve_type"] if cobb >= 6.0 else "none"
        out["curve_type_drawn"] = sc["curve_type"]
    return out
