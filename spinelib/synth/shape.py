"""Spine shape parameters of one subject: vertebral sizes, sagittal angles, scoliosis, posture change.

:func:`draw_shape` draws every parameter the spine is built from (:mod:`.chain`) and placed
with (:mod:`.supine`), as a JSON-able dict that ``truth.json`` records.

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
  (``tests/unit/synth/test_synth_stats.py`` requires |r| <= 0.3);
* lordosis does not vary measurably with age in adults and is more prominent in women
  and with higher BMI (Murrie et al., Clin Anat 2003;16:144-147, MRI); the associations
  with age, sex and BMI are weak (Singh et al., Cureus 2024;16:e72453, 200 radiographs),
  so the sex and BMI terms here are a few degrees against an SD of 13 deg.

Vertebral body depth and width share the subject's size (height, sex) but their ratio has
its own individual spread (:func:`draw_shape`), so the sagittal boundaries of the spine
do not follow from its coronal width.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..spine import N_VERTEBRAE

__all__ = ["ARCH_JITTER_SD", "BACK_TISSUE_PRIORS", "DROOP_JITTER_SD", "arch_lengths", "draw_back_tissue",
           "draw_shape", "draw_posture_change", "rounded", "spinous_droops"]

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
#: per-level SD of the arch length and of the spinous droop around their reference sizes
ARCH_JITTER_SD = 0.05
DROOP_JITTER_SD = 0.1
#: soft tissue behind the column, each drawn on its own: ``{name: (mean, SD, least)}`` in mm
#: (a normal draw, raised to ``least``); thoracic and lumbar back muscle, and the gluteal
#: tissue under the sacrum (``supine`` rests the spine on them)
BACK_TISSUE_PRIORS: dict[str, tuple[float, float, float]] = {
    "back_muscle_thoracic_mm": (9.0, 2.0, 4.0),
    "back_muscle_lumbar_mm": (22.0, 5.0, 8.0),
    "sacral_tissue_mm": (14.0, 3.0, 5.0),
}

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
    """``x`` rounded to ``nd`` decimals, a JSON-able float."""
    return round(float(x), nd)


def rounded(a, nd: int = 4) -> list[float]:
    """The values of ``a`` (any shape, flattened) rounded to ``nd`` decimals, as JSON-able floats."""
    return [round(float(v), nd) for v in np.ravel(a)]


def _draw_magnitude(rng: np.random.Generator, severity: float) -> tuple[str, float]:
    """(category, Cobb angle in deg) of the structural curve, scaled by ``severity``."""
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
    return category, cobb * float(severity)


def _draw_curves(rng: np.random.Generator, curve_type: str, cobb: float) -> list[tuple[int, int, int, float]]:
    """Structural curves ``(upper end, lower end, convex side +1 right / -1 left, magnitude deg)``."""
    curves = []
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
    return curves


def _draw_knots(rng: np.random.Generator, curves: list[tuple[int, int, int, float]]) -> dict[int, float]:
    """Coronal tilt (deg) at the curves' end vertebrae, plus compensatory knots at T1 and L5."""
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
    return knots


def _draw_scoliosis(rng: np.random.Generator, severity: float) -> dict:
    """Scoliosis parameters: category, curve type, structural curves, tilt knots, lean, rotation gain."""
    category, cobb = _draw_magnitude(rng, severity)
    curve_type = CURVE_TYPES[int(rng.choice(4, p=[0.35, 0.2, 0.3, 0.15]))]
    curves = _draw_curves(rng, curve_type, cobb)
    knots = _draw_knots(rng, curves)
    return {
        "category": category,
        "curve_type": curve_type,
        "cobb_drawn_deg": _r(cobb),
        "curves": [[int(a), int(b), int(s), _r(m)] for a, b, s, m in curves],
        "knots": {str(k): _r(v) for k, v in sorted(knots.items())},
        "lean_deg": _r(rng.normal(0.0, 1.0)),
        "rotation_deg_per_mm": _r(rng.normal(0.9, 0.2)),
    }


def _jitter(rng: np.random.Generator, sd: float) -> np.ndarray:
    """(17,) per-level size factors, normal with mean 1 and SD ``sd``."""
    return rng.normal(1.0, sd, N_VERTEBRAE)


def _draw_sizes(rng: np.random.Generator,
                demo: dict) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scale, section scale, (17,) body heights, widths, depths and disc heights in mm) of one subject."""
    female = demo["sex"] == "F"
    scale = demo["height_cm"] / 170.0 * rng.normal(1.0, 0.03)
    wd = 0.94 if female else 1.0
    heights = _BODY_H * scale * _jitter(rng, 0.03)
    # cross-sectional size (body width and depth, posterior arch): tied to stature only
    # moderately (correlation about 0.4), unlike the column's length
    section = (demo["height_cm"] / 170.0) ** SECTION_HEIGHT_EXPONENT * float(np.exp(rng.normal(0.0, SECTION_SD)))
    ratio = np.exp(rng.normal(0.0, DEPTH_WIDTH_RATIO_SD) + rng.normal(0.0, DEPTH_WIDTH_RATIO_LEVEL_SD, N_VERTEBRAE))
    widths = _BODY_W * section * wd * _jitter(rng, 0.03) / np.sqrt(ratio)
    depths = _BODY_D * section * wd * _jitter(rng, 0.03) * np.sqrt(ratio)
    degen = 1.0 - 0.004 * max(demo["age"] - 45.0, 0.0)
    # disc heights vary between adults of the same stature far more than bone lengths do
    # (hydration and early degeneration): a subject factor and a per-level factor
    discs = _DISC * scale * rng.normal(1.0, DISC_SUBJECT_SD) * rng.normal(1.0, DISC_LEVEL_SD, N_VERTEBRAE)
    discs[11:] *= degen
    return scale, section, heights, widths, depths, discs


def _draw_sagittal_angles(rng: np.random.Generator, demo: dict) -> tuple[float, float]:
    """(kyphosis, lordosis) in deg, weakly tied to age, sex and BMI (see the module docstring)."""
    age, bmi, female = demo["age"], demo["bmi"], demo["sex"] == "F"
    kyph = float(np.clip(rng.normal(KYPHOSIS_AT_45_DEG + KYPHOSIS_DEG_PER_YEAR * (age - 45.0), KYPHOSIS_SD_DEG),
                         8.0, 75.0))
    # centred on the cohort's sex ratio and median BMI so that the cohort mean stays put
    lord_mean = (LORDOSIS_MEAN_DEG + LORDOSIS_FEMALE_DEG * ((1.0 if female else 0.0) - 0.52)
                 + LORDOSIS_DEG_PER_BMI * (bmi - 26.3))
    lord = float(np.clip(rng.normal(lord_mean, LORDOSIS_SD_DEG), 3.0, 85.0))
    return kyph, lord


def arch_lengths(rng: np.random.Generator, section_scale: float) -> np.ndarray:
    """(17,) posterior body surface to spinous tip distances (mm) of a subject of cross-section
    scale ``section_scale``."""
    return _ARCH * section_scale * _jitter(rng, ARCH_JITTER_SD)


def spinous_droops(rng: np.random.Generator, scale: float) -> np.ndarray:
    """(17,) caudal droops of the spinous tips (mm) of a subject of size ``scale``."""
    return _DROOP * scale * _jitter(rng, DROOP_JITTER_SD)


def draw_back_tissue(rng: np.random.Generator, names: tuple[str, ...] = tuple(BACK_TISSUE_PRIORS)) -> dict[str, float]:
    """``{name: thickness in mm}`` drawn from :data:`BACK_TISSUE_PRIORS`, in the order of ``names``.

    Raises
    ------
    InvalidArgumentError
        A name is not one of :data:`BACK_TISSUE_PRIORS`.
    """
    unknown = [n for n in names if n not in BACK_TISSUE_PRIORS]
    if unknown:
        raise InvalidArgumentError(f"names {unknown} are not back tissue; known: {list(BACK_TISSUE_PRIORS)}")
    out = {}
    for name in names:
        mean, sd, least = BACK_TISSUE_PRIORS[name]
        out[name] = _r(max(least, rng.normal(mean, sd)), 3)
    return out


def draw_shape(rng: np.random.Generator, demo: dict, *, scoliosis_severity: float = 1.0) -> dict:
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
    10 % at each level (``tests/unit/synth/test_synth_stats.py`` measures it and requires >= 8 %).

    Parameters
    ----------
    rng : the subject's generator.
    demo : output of :func:`spinelib.synth.population.draw_demographics`.
    scoliosis_severity : multiplies the drawn coronal curve magnitudes (>= 0; 1 is the
        population's, shifted cohorts raise it).
    """
    scale, section, heights, widths, depths, discs = _draw_sizes(rng, demo)
    kyph, lord = _draw_sagittal_angles(rng, demo)
    bmi, female = demo["bmi"], demo["sex"] == "F"
    f_sub = max(3.0, 4.0 + 1.6 * (bmi - 20.0) + (5.0 if female else 0.0)) * rng.normal(1.0, 0.15)
    return {
        "scale": _r(scale),
        "body_height_mm": rounded(heights, 3),
        "body_width_mm": rounded(widths, 3),
        "body_depth_mm": rounded(depths, 3),
        "disc_height_mm": rounded(discs, 3),  # below T1..L5 (last: L5/S1)
        "section_scale": _r(section),
        "arch_length_mm": rounded(arch_lengths(rng, section), 3),
        "spinous_droop_mm": rounded(spinous_droops(rng, scale), 3),
        "kyphosis_drawn_deg": _r(kyph),
        "kyphosis_apex_index": _r(rng.uniform(5.5, 8.0)),
        "kyphosis_width": _r(rng.uniform(2.5, 4.5)),
        "lordosis_drawn_deg": _r(lord),
        "lordosis_power": _r(rng.uniform(0.3, 1.2)),
        "junction_deg": _r(rng.normal(0.0, 2.5)),
        "lumbosacral_deg": _r(rng.normal(12.0, 4.0)),
        "sagittal_noise_deg": rounded(rng.normal(0.0, 0.5, N_VERTEBRAE), 3),
        "coronal_noise_deg": rounded(rng.normal(0.0, 0.3, N_VERTEBRAE), 3),
        "rotation_noise_deg": rounded(rng.normal(0.0, 1.0, N_VERTEBRAE), 3),
        "scoliosis": _draw_scoliosis(rng, scoliosis_severity),
        "subcutaneous_fat_mm": _r(f_sub, 3),
        **draw_back_tissue(rng),
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
        "dphi_deg": rounded(0.9 * s * smooth(), 4),
        "dpsi_deg": rounded(0.45 * s * smooth(), 4),
        "shift_mm": rounded(rng.normal(0.0, 0.5 * s, 3), 4),
    }
