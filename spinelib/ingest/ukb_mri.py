"""The Dixon MRI of a UK Biobank bulk zip (field 20201) as one fat and one water volume.

The zip holds axial slices of several *stations* (table positions, head to thighs),
each acquired as four series whose SeriesDescription ends in ``_F`` (fat), ``_W``
(water), ``_in`` (in-phase) and ``_opp`` (opposed-phase): the contrast is the suffix
after the last underscore (public preprocessing rule). Neighbouring stations overlap.

What we do, contrast by contrast (fat and water only):

1. **Stations.** Slices are grouped by SeriesInstanceUID (one series = one station),
   checked to share ImageOrientationPatient, PixelSpacing, Rows and Columns, and
   sorted by their position along the slice normal (ImagePositionPatient projected on
   the cross product of the two direction cosines; SliceLocation is not needed). The
   positions must be evenly spaced (a missing slice is an error).
2. **Affine.** DICOM patient coordinates are LPS (+x patient left, +y posterior, +z
   head). With the array axes (column, row, slice) the station's LPS affine has
   columns ``row_cosine * PixelSpacing[1]``, ``column_cosine * PixelSpacing[0]``, the
   slice step, and the first slice's ImagePositionPatient as origin; ``diag(-1, -1, 1)``
   turns it into RAS+ (NIfTI's convention, ours).
3. **One grid.** Every station of both contrasts is brought to the closest canonical
   orientation (nibabel); the common grid is canonical RAS+, spans all stations, has
   the finest voxel size among them per axis and lies on the lattice of the lowest
   station's voxel centres (so stations on one lattice are not interpolated at all).
4. **Blending.** Each station is resampled onto the grid (trilinear; half a voxel of
   nearest-value extrapolation at its faces). Where stations overlap, each voxel is the
   average of the stations weighted by their distance (in slices) to their own first or
   last slice, whichever is nearer: a linear ramp across the overlap, so no seam. The
   public preprocessing instead cuts at mid-overlap and blends by Poisson (seamless)
   cloning followed by histogram matching; a linear ramp changes no intensity outside
   the overlaps. When the stored values are integers (no RescaleSlope, as in the bulk
   files) the blend is rounded to integers, so that the volume can be stored as int16.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IncompleteScanError, ShapeError, UnreadableFileError
from .dicomzip import patient_id, pixels, read_zip_dicoms

__all__ = ["Station", "UKBMRI", "read_ukb_mri", "station_from_slices", "common_grid", "blend_stations",
           "LPS_TO_RAS", "CONTRASTS"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CONTRASTS = {"F": "fat", "W": "water"}
_TOL_COS = 1e-4
_GAP_SLICES = 1.5  # stations further apart than this many slice steps leave a hole


@dataclass(frozen=True, eq=False)
class Station:
    """One station of one contrast.

    Attributes
    ----------
    data : float32 (I, J, K)
        Voxel values; axes (column, row, slice) as stored, or canonical after
        :func:`canonical`.
    affine : float64 (4, 4)
        Voxel -> world RAS+ mm.
    slice_axis : int
        The array axis along which the slices were acquired (the blending axis).
    name : str
        Series description and number, for messages.
    """

    data: np.ndarray
    affine: np.ndarray
    slice_axis: int
    name: str


@dataclass(frozen=True, eq=False)
class UKBMRI:
    """Stitched fat and water volumes of a bulk MRI zip, on one canonical RAS+ grid.

    Attributes
    ----------
    fat, water : float32 (X, Y, Z)
    affine : float64 (4, 4), voxel -> world RAS+ mm
    n_stations : int
    patient_id : str
    path : Path
    """

    fat: np.ndarray
    water: np.ndarray
    affine: np.ndarray
    n_stations: int
    patient_id: str
    path: Path


def _floats(ds, key: str, n: int, where: str) -> np.ndarray:
    val = getattr(ds, key, None)
    try:
        arr = np.asarray([float(v) for v in val], dtype=np.float64)
    except (TypeError, ValueError):
        raise UnreadableFileError(f"{where}: {key} is missing or not numeric ({val!r})") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise UnreadableFileError(f"{where}: {key} must be {n} finite numbers, got {val!r}")
    return arr


def _series_geometry(first, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(ImageOrientationPatient (6,), PixelSpacing (2,) mm, slice normal (3,), (Rows, Columns)) of a series."""
    iop = _floats(first, "ImageOrientationPatient", 6, where)
    spacing = _floats(first, "PixelSpacing", 2, where)
    if np.any(spacing <= 0):
        raise UnreadableFileError(f"{where}: PixelSpacing {spacing.tolist()} must be positive")
    normal = np.cross(iop[:3], iop[3:])
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        raise UnreadableFileError(f"{where}: ImageOrientationPatient {iop.tolist()} is not two orthonormal vectors")
    return iop, spacing, normal, (int(first.Rows), int(first.Columns))


def _slice_positions(slices: list, iop: np.ndarray, spacing: np.ndarray, size: tuple[int, int],
                     where: str) -> np.ndarray:
    """(N, 3) ImagePositionPatient (LPS mm) of each slice, which must share the series' geometry."""
    positions = []
    for ds in slices:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, where), iop, atol=_TOL_COS):
            raise UnreadableFileError(f"{where}: slices of one series have different ImageOrientationPatient")
        if not np.allclose(_floats(ds, "PixelSpacing", 2, where), spacing, rtol=1e-5):
            raise UnreadableFileError(f"{where}: slices of one series have different PixelSpacing")
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise ShapeError(f"{where}: slices of one series have different Rows x Columns")
        positions.append(_floats(ds, "ImagePositionPatient", 3, where))
    return np.asarray(positions)


def _slice_vector(depth: np.ndarray, positions: np.ndarray, first, normal: np.ndarray, where: str) -> np.ndarray:
    """(3,) LPS mm step from one slice to the next, from sorted ``depth`` (mm along the normal) and ``positions``.

    A single slice steps by SpacingBetweenSlices (else SliceThickness) along the normal.
    """
    if len(depth) > 1:
        steps = np.diff(depth)
        step = float(np.median(steps))
        if np.any(steps < 1e-3 * max(step, 1e-3)):
            raise IncompleteScanError(f"{where}: two slices share one position")
        if np.any(np.abs(steps - step) > 0.05 * step):
            raise IncompleteScanError(
                f"{where}: slice positions are unevenly spaced (steps {np.round(steps, 3).min()}.."
                f"{np.round(steps, 3).max()} mm): slices are missing")
        return (positions[-1] - positions[0]) / (len(depth) - 1)
    thick = getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", None)
    try:
        return normal * float(thick)
    except (TypeError, ValueError):
        raise UnreadableFileError(f"{where}: a single slice without SliceThickness") from None


def station_from_slices(slices: list, *, where: str) -> Station:
    """Stack one series' axial slices into a station with its RAS+ affine.

    Parameters
    ----------
    slices : pydicom datasets of one series (any order)
    where : words naming the series in messages

    Raises
    ------
    UnreadableFileError
        Missing or inconsistent geometry tags, unreadable pixel data.
    IncompleteScanError
        Duplicate or unevenly spaced slice positions (missing slices).
    """
    first = slices[0]
    iop, spacing, normal, size = _series_geometry(first, where)
    positions = _slice_positions(slices, iop, spacing, size, where)
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    depth, positions = depth[order], positions[order]
    slice_vec = _slice_vector(depth, positions, first, normal, where)
    volume = np.empty((size[1], size[0], len(order)), np.float32)  # (column, row, slice)
    for k, i in enumerate(order):
        volume[:, :, k] = pixels(slices[i], what=f"{where} slice {k}").T
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * spacing[1]  # along a row = increasing column index
    lps[:3, 1] = iop[3:] * spacing[0]
    lps[:3, 2] = slice_vec
    lps[:3, 3] = positions[0]
    return Station(volume, LPS_TO_RAS @ lps, 2, where)


def canonical(station: Station) -> Station:
    """The station with its array axes permuted and flipped to the closest RAS+ orientation."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(station.affine)
    data = nib.orientations.apply_orientation(station.data, ornt)
    affine = station.affine @ nib.orientations.inv_ornt_aff(ornt, station.data.shape)
    return Station(np.ascontiguousarray(data, dtype=np.float32), affine, int(ornt[station.slice_axis, 0]),
                   station.name)


def _corners(st: Station) -> np.ndarray:
    n = np.asarray(st.data.shape) - 1
    idx = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    return (idx @ st.affine.T)[:, :3]


def common_grid(stations: list[Station]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Canonical RAS+ grid spanning canonical ``stations``: (affine (4, 4), shape (3,)).

    Voxel size per axis: the finest among the stations; origin on the lattice of the
    first station's voxel centres.
    """
    spacing = np.min([np.linalg.norm(st.affine[:3, :3], axis=0) for st in stations], axis=0)
    pts = np.concatenate([_corners(st) for st in stations])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    anchor = stations[0].affine[:3, 3]
    origin = anchor + np.floor((lo - anchor) / spacing + 1e-6) * spacing
    shape = tuple(int(v) for v in np.floor((hi - origin) / spacing + 1e-6).astype(int) + 1)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine, shape


def _slab_weight(k: np.ndarray, n: int) -> np.ndarray:
    """Distance in slices from slice coordinate ``k`` to the nearer end of a slab of ``n``."""
    return np.clip(np.minimum(k + 0.5, n - 0.5 - k), 0.0, None)


def _add_on_lattice(st: Station, to_station: np.ndarray, acc: np.ndarray, wsum: np.ndarray) -> bool:
    """Add a station lying on the grid's lattice (same axes and voxel size, whole-voxel
    offset) by slicing, without interpolation; False if it does not lie on it."""
    off = to_station[:3, 3]
    if not (np.allclose(to_station[:3, :3], np.eye(3), atol=1e-6) and np.allclose(off, np.rint(off), atol=1e-4)):
        return False
    o = np.rint(off).astype(int)  # grid index g is station index g + o
    n = np.asarray(st.data.shape)
    start = np.maximum(-o, 0)
    stop = np.minimum(n - o, acc.shape)
    if np.any(stop <= start):
        return True
    grid_sl = tuple(slice(a, b) for a, b in zip(start, stop))
    station_sl = tuple(slice(a + d, b + d) for a, b, d in zip(start, stop, o))
    ax = st.slice_axis
    k = np.arange(start[ax], stop[ax]) + o[ax]
    w = _slab_weight(k.astype(np.float64), int(n[ax])).reshape([-1 if a == ax else 1 for a in range(3)])
    acc[grid_sl] += w * st.data[station_sl]
    wsum[grid_sl] += w
    return True


def blend_stations(stations: list[Station], affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Resample stations onto the grid ``(affine, shape)`` and blend their overlaps.

    Each station's weight at a voxel is its distance, in slices, to the nearer of its
    own end slices plus half a slice (0 outside it): across an overlap the weights ramp
    linearly. Voxels outside every station are 0.

    Returns
    -------
    float32 (X, Y, Z)
    """
    from scipy.ndimage import map_coordinates

    acc = np.zeros(shape, np.float64)
    wsum = np.zeros(shape, np.float64)
    for st in stations:
        to_station = np.linalg.inv(st.affine) @ affine  # grid voxel -> station voxel
        if _add_on_lattice(st, to_station, acc, wsum):
            continue
        n = np.asarray(st.data.shape, float)
        box = np.array([[i, j, k, 1.0] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5)
                        for k in (-0.5, n[2] - 0.5)])
        in_grid = box @ np.linalg.inv(to_station).T
        start = np.clip(np.floor(in_grid[:, :3].min(axis=0)).astype(int), 0, shape)
        stop = np.clip(np.ceil(in_grid[:, :3].max(axis=0)).astype(int) + 1, 0, shape)
        if np.any(stop <= start):
            continue
        axes = [np.arange(a, b, dtype=np.float64) for a, b in zip(start, stop)]
        grids = np.meshgrid(*axes, indexing="ij")
        coords = np.stack([sum(to_station[r, c] * grids[c] for c in range(3)) + to_station[r, 3]
                           for r in range(3)])
        eps = 1e-6
        inside = np.all((coords >= -0.5 - eps) & (coords <= n[:, None, None, None] - 0.5 + eps), axis=0)
        k = coords[st.slice_axis]
        weight = np.where(inside, _slab_weight(k, n[st.slice_axis]), 0.0)
        values = map_coordinates(st.data.astype(np.float64), coords, order=1, mode="nearest")
        sl = tuple(slice(a, b) for a, b in zip(start, stop))
        acc[sl] += weight * values
        wsum[sl] += weight
    out = np.divide(acc, wsum, out=np.zeros_like(acc), where=wsum > 0)
    return out.astype(np.float32)


def _check_coverage(stations: list[Station], contrast: str, where: str) -> None:
    """Stations must follow one another without a hole along the slice direction."""
    spans = []
    for st in stations:
        ax = st.slice_axis
        step = float(np.linalg.norm(st.affine[:3, ax]))
        zs = [float(c[ax]) for c in _corners(st)]  # canonical: slice axis ~ world axis `ax`
        spans.append((min(zs), max(zs), step))
    spans.sort()
    for (lo_a, hi_a, step_a), (lo_b, _, step_b) in zip(spans, spans[1:]):
        gap = lo_b - hi_a
        if gap > _GAP_SLICES * max(step_a, step_b):
            raise IncompleteScanError(
                f"{where}: {contrast} stations leave a hole of {gap:.1f} mm between {hi_a:.1f} and {lo_b:.1f} mm "
                "along the slice direction: a station is missing")


def _contrast(ds) -> str:
    """The contrast suffix of SeriesDescription (after the last underscore), or ""."""
    desc = str(getattr(ds, "SeriesDescription", "") or "")
    return desc.rsplit("_", 1)[-1] if "_" in desc else ""


def read_ukb_mri(path: str | Path) -> UKBMRI:
    """Read, stitch and blend the fat and water series of a field-20201 zip.

    Raises
    ------
    MissingFileError, UnreadableFileError
        Missing file, not a zip, bad DICOM, missing or inconsistent geometry.
    IncompleteScanError
        No fat or no water series, fat and water with different stations, missing
        slices, or a hole where a station is missing.
    ParticipantMismatchError
        Files of several PatientIDs in the zip.
    """
    p = Path(path)
    what = "MRI zip"
    dsets = read_zip_dicoms(p, what=what, keep=lambda ds: _contrast(ds) in CONTRASTS)
    pid = patient_id(dsets, what=what, path=p)
    series: dict[str, dict[str, list]] = {c: defaultdict(list) for c in CONTRASTS}
    for _, ds in dsets:
        contrast = _contrast(ds)
        desc = str(getattr(ds, "SeriesDescription", "") or "")
        if contrast in CONTRASTS:
            key = str(getattr(ds, "SeriesInstanceUID", "") or f"{desc}#{getattr(ds, 'SeriesNumber', '')}")
            series[contrast][key].append(ds)
    stations: dict[str, list[Station]] = {}
    for contrast, name in CONTRASTS.items():
        if not series[contrast]:
            raise IncompleteScanError(
                f"{what} {p} has no {name} series (SeriesDescription ending in _{contrast})")
        built = []
        for key, slices in sorted(series[contrast].items()):
            first = slices[0]
            label = f"{what} {p} series {getattr(first, 'SeriesDescription', '')} #{getattr(first, 'SeriesNumber', key)}"
            built.append(canonical(station_from_slices(slices, where=label)))
        stations[contrast] = sorted(built, key=lambda st: tuple(_corners(st).min(axis=0)[::-1]))
    fat_st, water_st = stations["F"], stations["W"]
    if len(fat_st) != len(water_st):
        raise IncompleteScanError(
            f"{what} {p} has {len(fat_st)} fat and {len(water_st)} water stations; a station is missing")
    for a, b in zip(fat_st, water_st):
        if a.data.shape != b.data.shape or not np.allclose(a.affine, b.affine, atol=1e-3):
            raise IncompleteScanError(f"{what} {p}: fat series {a.name} and water series {b.name} cover "
                                      "different slices; a station or slices are missing")
    for contrast in CONTRASTS:
        _check_coverage(stations[contrast], CONTRASTS[contrast], f"{what} {p}")
    affine, shape = common_grid(fat_st + water_st)
    volumes = []
    for sts in (fat_st, water_st):
        vol = blend_stations(sts, affine, shape)
        if all(np.array_equal(st.data, np.rint(st.data)) for st in sts):
            vol = np.rint(vol)  # integer scanner values: a blend keeps their precision, not more
        volumes.append(vol.astype(np.float32))
    return UKBMRI(fat=volumes[0], water=volumes[1], affine=affine, n_stations=len(fat_st), patient_id=pid, path=p)
