"""The subject's body drawn from its demographics: torso and frame sizes, and the tissue materials.

Everything is in MRI world millimetres (RAS+). :func:`draw_body` draws the sizes of the
torso (half widths and depths at the shoulders, chest, waist and hips, how much the table
flattens it), of the frame around the spinal column (pelvis, sternum, shoulder girdle, lungs,
rib slope; :data:`FRAME_SCALE_SD`) and the bone and marrow properties; the torso itself is
built in :mod:`.torso` and the anatomy's primitives in :mod:`.parts`.

Materials (:func:`materials_for`) carry two DXA densities (bone mineral and soft tissue,
g/cm^3) and two Dixon signal fractions (fat, water). DXA line integrals of a primitive use
the difference between its material and the ``parent`` material it displaces.
"""

from __future__ import annotations

import numpy as np

__all__ = ["materials_for", "draw_body", "MATERIAL_NAMES"]

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

#: individual spread (log SD) of the size of the anatomy around the spinal column -- pelvis,
#: ribs, shoulder girdle, organs and the torso's landmark offsets -- about stature. Pelvic
#: and thoracic dimensions correlate with stature only moderately (correlations of about
#: 0.4-0.6 in anthropometric series), so their size is not a ruler for the column's own
#: length (``shape["scale"]``, which follows stature to 3 %). A shared ruler would let the
#: AP image read the column's foreshortening -- and with it the kyphosis -- to 1 %.
FRAME_SCALE_SD = 0.05
#: mean distances (mm, at frame scale 1) below the top of T1 of the sternum's upper end and
#: of the scapulae's centres, and the sternum's mean length (manubrium to xiphoid, about
#: 15-17 cm in adults)
STERNUM_TOP_MM = 48.0
SCAPULA_CENTRE_MM = 105.0
STERNUM_LENGTH_MM = 150.0
#: mean height of the lung fields below the top of T1 (mm at frame scale 1; the diaphragm's
#: dome lies at T9-T11 and varies between people and with breathing)
LUNG_HEIGHT_MM = 200.0


def draw_body(rng: np.random.Generator, demo: dict, shape: dict) -> dict:
    """Torso and organ parameters (JSON-able), scaled by height, BMI and sex.

    The torso's anterior-posterior depths are drawn here from the demographics and their
    own random factors, never from the spine: the abdominal (sagittal abdominal diameter)
    depth grows with BMI (elasticity about 0.8: supine sagittal abdominal diameter is
    close to linear in BMI with a positive intercept) and with the visceral fat of the
    subject (men store more), with an individual spread of about 8 %; the hip depth
    follows anthropometric buttock depth. :func:`~spinelib.synth.torso.make_torso` only clips a depth in the
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
