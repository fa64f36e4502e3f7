"""What an AP image cannot show of a synthetic spine's height above the table.

The spine rests on the table through the soft tissue behind it (:mod:`.supine`): its
height above the table, the sagittal centre the networks are asked for, is set by the
thickness of that tissue and by how far the spinous processes reach behind the vertebral
bodies. An AP projection integrates along exactly that direction. The generator draws four
of these quantities on their own, from nothing an AP image shows (:data:`AP_HIDDEN_DRAWS`):

``back_muscle_lumbar_mm``, ``sacral_tissue_mm``
    lean tissue under the lumbar spine and the sacrum: the tissue image shows lean mass
    along each ray, and the same mass lies there whatever part of the ray it fills;
``arch_length_mm``, ``spinous_droop_mm``
    each level's posterior arch length and caudal droop of its spinous tip (per-level
    factors around the subject's size): the arch projects onto its own body, so its length
    along the beam only changes the bone mass over the level by a few per cent, inside the
    spread of bone density.

The thoracic back muscle is *not* among them: the posterior wall of the lung fields sits on
it (:func:`.parts.build_primitives`), so the AP tissue image over the lungs carries it.

:func:`hidden_depth_offset` redraws these four from their priors with everything else of
the subject kept, and places the spine on the table again each time. The per-level median
of the redrawn heights is the best estimate (least mean absolute error) a reader can make
who knows every other draw of the subject exactly; its offset from the subject's true height
is the part of the sagittal-centre error that no reader of the AP image removes on this
generator. The estimate is a floor for readers of the image only as far as the image hides
these draws; it ignores every other limit (noise, resolution, the learner).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..io.checks import check_integer
from .chain import build_spine
from .config import SIGNATURE_FIELDS, SynthConfig
from .shape import BACK_TISSUE_PRIORS, arch_lengths, draw_back_tissue, spinous_droops
from .subject import GENERATOR_VERSION, draw_subject_geometry, subject_signature
from .supine import place_supine

__all__ = ["AP_HIDDEN_DRAWS", "redraw_hidden", "level_heights", "height_above_table", "hidden_depth_offset"]

#: The shape draws an AP image does not show (see the module docstring), as ``draw_shape`` keys.
AP_HIDDEN_DRAWS: tuple[str, ...] = ("back_muscle_lumbar_mm", "sacral_tissue_mm", "arch_length_mm",
                                    "spinous_droop_mm")
#: Largest difference (mm) between a vertebra's regenerated centre and the one in ``truth.json``.
_CENTRE_TOLERANCE_MM = 1e-3


def redraw_hidden(shape: dict, rng: np.random.Generator) -> dict:
    """A copy of ``shape`` with the :data:`AP_HIDDEN_DRAWS` drawn again from their priors.

    Parameters
    ----------
    shape : a subject's shape parameters (:func:`~.shape.draw_shape`).
    rng : the generator of the new draws.

    Returns
    -------
    dict: ``shape`` with the two tissue thicknesses (mm) and the (17,) arch lengths and spinous
    droops (mm) replaced; the arch and droop keep the subject's reference size
    (``section_scale``, ``scale``) and draw new per-level factors.

    Raises
    ------
    InvalidArgumentError
        ``shape`` is not a dict with ``section_scale`` and ``scale``.
    """
    if not isinstance(shape, dict) or not {"section_scale", "scale"} <= set(shape):
        raise InvalidArgumentError("shape must be a draw_shape dict (with section_scale and scale)")
    out = dict(shape)
    out.update(draw_back_tissue(rng, tuple(k for k in AP_HIDDEN_DRAWS if k in BACK_TISSUE_PRIORS)))
    out["arch_length_mm"] = arch_lengths(rng, float(shape["section_scale"]))
    out["spinous_droop_mm"] = spinous_droops(rng, float(shape["scale"]))
    return out


def level_heights(spine: dict, shape: dict, n_levels: int) -> np.ndarray:
    """(K,) heights z (mm) of the middles of the ``K`` curve levels of a placed spine.

    The levels divide the column from the top of T1 to the bottom of L5 into ``K`` equal
    slabs, as :attr:`spinelib.shape.curves.SpineCurves.levels_mm` does along the image rows.
    """
    superior = spine["frames"][:, :, 2]
    half = np.asarray(shape["body_height_mm"])[[0, -1]] / 2
    top = spine["centres"][0, 2] + superior[0, 2] * half[0]
    bottom = spine["centres"][-1, 2] - superior[-1, 2] * half[1]
    return top + (np.arange(n_levels) + 0.5) * (bottom - top) / n_levels


def height_above_table(spine: dict, z_mm: np.ndarray) -> np.ndarray:
    """Height (mm) of the vertebral centre line above the table at the heights ``z_mm``
    (linear between the 17 centres)."""
    c = spine["centres"]
    order = np.argsort(c[:, 2])
    return np.interp(z_mm, c[order, 2], c[order, 1]) - spine["table_y"]


def _config_of(truth: dict) -> SynthConfig:
    """The settings that made the subject of ``truth`` (its ``signature``, checked whole)."""
    sig, index = truth.get("signature"), truth.get("index")
    who = f"truth of subject {truth.get('subject_id')!r}"
    if not isinstance(sig, dict) or isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidArgumentError(f"{who} lacks its signature or index: not written by spinelib synth")
    try:
        config = SynthConfig(**{k: sig[k] for k in SIGNATURE_FIELDS}, n_subjects=index + 1)
    except (KeyError, TypeError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"{who} has an unreadable signature: {type(exc).__name__}: {exc}") from exc
    if subject_signature(config) != sig:
        raise InvalidArgumentError(f"{who} was made by generator version {sig.get('generator_version')}, "
                                   f"this is version {GENERATOR_VERSION}")
    return config


def _same_centres(recorded, centres: np.ndarray) -> bool:
    """Whether ``truth.json``'s ``{level: [x, y, z]}`` (T1..L5, then S1) holds the (17, 3) ``centres``."""
    try:
        r = np.asarray(list(recorded.values()), dtype=float)[:len(centres)]
    except (AttributeError, TypeError, ValueError):
        return False
    return r.shape == centres.shape and float(np.abs(r - centres).max()) <= _CENTRE_TOLERANCE_MM


def hidden_depth_offset(truth: dict, n_levels: int, *, n_draws: int, seed: int = 0) -> np.ndarray:
    """How far the best estimate of the DXA-session sagittal centre, from everything but the
    :data:`AP_HIDDEN_DRAWS`, lies from the true one, at each curve level.

    Parameters
    ----------
    truth : the subject's ``truth.json`` (its ``signature``, ``index`` and DXA-session centres).
    n_levels : K, the number of curve levels (>= 3).
    n_draws : redraws of the hidden draws (>= 1).
    seed : seed of the redraws; the subject's index is mixed in, so a subject's offsets do not
        depend on which other subjects are computed.

    Returns
    -------
    (K,) float, mm: the per-level median over the redraws of the spine's height above the table,
    minus the subject's true height, at the middles of its ``K`` levels (positive: the estimate
    lies higher).

    Raises
    ------
    InvalidArgumentError
        ``n_levels`` below 3, ``n_draws`` below 1, ``seed`` negative, or ``truth`` lacks its
        signature, is of another generator version, or its centres differ from those the
        generator makes again from it.
    """
    n_levels = check_integer(n_levels, "n_levels", 3)
    n_draws = check_integer(n_draws, "n_draws", 1)
    seed = check_integer(seed, "seed", 0)
    if not isinstance(truth, dict):
        raise InvalidArgumentError(f"truth must be a truth.json dict, got {type(truth).__name__}")
    config = _config_of(truth)  # checks the index too
    g = draw_subject_geometry(int(truth["index"]), config)
    shape, posture, true_spine = g["shape"], g["posture"], g["spine_dxa"]
    if not _same_centres(truth.get("vertebra_centres_dxa_session_mm"), true_spine["centres"]):
        raise InvalidArgumentError(f"truth of subject {truth.get('subject_id')!r}: its DXA-session centres are not "
                                   "those the generator makes from its signature and index")
    z = level_heights(true_spine, shape, n_levels)

    def placed(s: dict) -> dict:
        return place_supine(build_spine(s, posture), s, table_y=g["table_y"], s1_xz=g["s1_xz"],
                            shift_mm=posture["shift_mm"])

    rng = np.random.default_rng([seed, int(truth["index"])])
    redrawn = np.stack([height_above_table(placed(redraw_hidden(shape, rng)), z) for _ in range(n_draws)])
    return np.median(redrawn, axis=0) - height_above_table(true_spine, z)
