"""DXA scans: the :class:`DXAImage` container, its ``.npz`` writer and the readers of three formats.

File format (``<id>/dxa.npz``, keys :data:`DXA_KEYS`): ``bone``, ``tissue`` float32
(H, W); ``pixel_spacing_mm`` float64 (2,) = (row, col); optionally ``lateral_bone``,
``lateral_tissue`` float32 (H, D) and ``lateral_pixel_spacing_mm`` (2,).

:func:`read_dxa` accepts, besides our own ``.npz``:

* UK Biobank DXA pickles (keys ``bone``, ``tissue``, ``pixel_spacing``) made by the
  public preprocessing scripts -- only with ``allow_pickle=True``, because
  unpickling runs arbitrary code;
* ``.png`` / ``.tif`` images, grey or two-channel, with the pixel spacing given by
  the caller. A two-channel image holds (bone, tissue); a single grey channel is
  used for *both* bone and tissue (no calibration to g/cm^2 is attempted: values
  are the stored intensities as float32).

Examples
--------
>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> p = write_dxa(d / "dxa.npz", np.ones((4, 3)), np.zeros((4, 3)), (1.0, 1.5))
>>> img = read_dxa(p)
>>> img.bone.shape, img.bone.dtype.name, img.pixel_spacing_mm.tolist()
((4, 3), 'float32', [1.0, 1.5])
>>> write_dxa(d / "again.npz", np.ones((4, 3)), np.zeros((4, 3)), (1.0, 1.5)).read_bytes() == p.read_bytes()
True
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, UnreadableFileError, UnsafeLoadError
from ..util.atomic import atomic_path
from .arrays import npz_bytes, read_npz
from .checks import check_image2d, check_pixel_spacing, existing_file, in_path

__all__ = ["DXA_KEYS", "DXAImage", "write_dxa", "read_dxa"]

#: Keys of a DXA ``.npz`` file, in the order they are written.
DXA_KEYS: tuple[str, ...] = (
    "bone",
    "tissue",
    "pixel_spacing_mm",
    "lateral_bone",
    "lateral_tissue",
    "lateral_pixel_spacing_mm",
)

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
_PICKLE_SUFFIXES = (".pkl", ".pickle")


@dataclass(frozen=True, eq=False)
class DXAImage:
    """A loaded DXA scan.

    Attributes
    ----------
    bone, tissue : float32 (H, W)
        Areal bone-mineral and soft-tissue density (g/cm^2 for our files); row 0
        superior, column 0 at the patient's right.
    pixel_spacing_mm : float64 (2,)
        (row, col) spacing in mm.
    lateral_bone, lateral_tissue : float32 (H, D) or None
        Synthetic biplanar view: rows are the AP rows, column 0 at the table.
    lateral_pixel_spacing_mm : float64 (2,) or None
    path : Path or None
        The file it was read from.
    """

    bone: np.ndarray
    tissue: np.ndarray
    pixel_spacing_mm: np.ndarray
    lateral_bone: np.ndarray | None = None
    lateral_tissue: np.ndarray | None = None
    lateral_pixel_spacing_mm: np.ndarray | None = None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.bone.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:
        lat = f", lateral {self.lateral_bone.shape}" if self.lateral_bone is not None else ""
        return (
            f"DXAImage({self.shape[0]} x {self.shape[1]}, spacing {self.pixel_spacing_mm.tolist()} mm"
            f"{lat}, path={str(self.path) if self.path else None!r})"
        )

    @property
    def has_lateral(self) -> bool:
        return self.lateral_bone is not None


# --------------------------------------------------------------------------- validation


def _check_view(
    bone: Any, tissue: Any, pixel_spacing_mm: Any, prefix: str, path: str | Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One view's bone and tissue images (float32, of one shape) and its (row, col) spacing;
    ``prefix`` ("" or "lateral_") starts the names the errors give them."""
    b = check_image2d(bone, f"{prefix}bone", path)
    t = check_image2d(tissue, f"{prefix}tissue", path)
    s = check_pixel_spacing(pixel_spacing_mm, f"{prefix}pixel_spacing_mm", path)
    if b.shape != t.shape:
        raise ShapeError(f"{prefix}bone {b.shape} and {prefix}tissue {t.shape} shapes differ{in_path(path)}")
    return b, t, s


def _check_dxa(
    bone: Any,
    tissue: Any,
    pixel_spacing_mm: Any,
    lateral_bone: Any,
    lateral_tissue: Any,
    lateral_pixel_spacing_mm: Any,
    path: str | Path | None,
) -> dict[str, np.ndarray]:
    """Validate a DXA's arrays once; returns them in ``DXA_KEYS`` order and dtypes."""
    b, t, s = _check_view(bone, tissue, pixel_spacing_mm, "", path)
    out: dict[str, np.ndarray] = {"bone": b, "tissue": t, "pixel_spacing_mm": s}
    lateral = (lateral_bone, lateral_tissue, lateral_pixel_spacing_mm)
    given = [v is not None for v in lateral]
    if any(given) and not all(given):
        raise InvalidArgumentError(
            "lateral_bone, lateral_tissue and lateral_pixel_spacing_mm go together"
            f"{in_path(path)}; got only {[k for k, g in zip(DXA_KEYS[3:], given) if g]}"
        )
    if all(given):
        out.update(_check_lateral(lateral, out["bone"].shape[0], out["pixel_spacing_mm"][0], path))
    return out


def _check_lateral(
    lateral: tuple[Any, Any, Any], ap_rows: int, ap_row_spacing_mm: float, path: str | Path | None
) -> dict[str, np.ndarray]:
    """Validate the lateral view ``(bone, tissue, pixel_spacing_mm)``, whose rows must be the AP view's rows."""
    lb, lt, ls = _check_view(*lateral, "lateral_", path)
    if lb.shape[0] != ap_rows:
        raise ShapeError(
            f"lateral view has {lb.shape[0]} rows but the AP view {ap_rows}"
            f"{in_path(path)}; the lateral rows must be the AP rows"
        )
    if not np.isclose(ls[0], ap_row_spacing_mm, rtol=1e-6, atol=0):
        raise InvalidArgumentError(
            f"lateral row spacing {ls[0]} mm differs from the AP row spacing "
            f"{ap_row_spacing_mm} mm{in_path(path)}; the lateral rows must be the AP rows"
        )
    return {"lateral_bone": lb, "lateral_tissue": lt, "lateral_pixel_spacing_mm": ls}


# --------------------------------------------------------------------------- writer


def write_dxa(
    path: str | Path,
    bone: np.ndarray,
    tissue: np.ndarray,
    pixel_spacing_mm: Any,
    *,
    lateral_bone: np.ndarray | None = None,
    lateral_tissue: np.ndarray | None = None,
    lateral_pixel_spacing_mm: Any = None,
) -> Path:
    """Write a DXA scan as a compressed, byte-deterministic ``.npz``; returns ``path``.

    Parameters
    ----------
    path : path ending in ``.npz``
    bone, tissue : real (H, W)
        Stored as float32.
    pixel_spacing_mm : float or (2,)
        (row, col) spacing in mm; a scalar means isotropic. Stored as float64 (2,).
    lateral_bone, lateral_tissue : real (H, D), optional
        Lateral view with the AP view's rows; given together with
        ``lateral_pixel_spacing_mm`` (whose row spacing must equal the AP one).

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, InvalidArgumentError
        On bad arrays or spacing; nothing is written then.
    """
    dest = Path(path)
    if dest.suffix != ".npz":
        raise InvalidArgumentError(f"DXA files are .npz; got {dest}")
    arrays = _check_dxa(
        bone, tissue, pixel_spacing_mm, lateral_bone, lateral_tissue, lateral_pixel_spacing_mm, dest
    )
    with atomic_path(dest) as tmp:
        tmp.write_bytes(npz_bytes(arrays))
    return dest


# --------------------------------------------------------------------------- readers


def _read_pickle(p: Path) -> dict[str, Any]:
    """A UK Biobank DXA pickle's dict, ``pixel_spacing`` renamed ``pixel_spacing_mm``."""
    try:
        with open(p, "rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 -- the caller opted in with allow_pickle=True
    except Exception as exc:  # unpickling can raise anything
        raise UnreadableFileError(f"cannot unpickle DXA file {p}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise UnreadableFileError(
            f"DXA pickle {p} holds a {type(obj).__name__}, expected a dict with keys bone, tissue, pixel_spacing"
        )
    out = dict(obj)
    if "pixel_spacing" in out and "pixel_spacing_mm" not in out:
        out["pixel_spacing_mm"] = out.pop("pixel_spacing")
    return out


def _read_image(p: Path) -> dict[str, Any]:
    """Bone and tissue of a grey, two-channel, grey-as-RGB(A) or two-page image."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(p) as im:
            frames = [np.array(f) for f in ImageSequence.Iterator(im)]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableFileError(f"cannot read DXA image {p}: {type(exc).__name__}: {exc}") from exc
    if len(frames) == 2 and frames[0].ndim == 2:  # two-page TIFF: bone, tissue
        return {"bone": frames[0], "tissue": frames[1]}
    if len(frames) != 1:
        raise ShapeError(f"DXA image {p} has {len(frames)} frames; expected 1 (grey or two-channel) or 2")
    a = frames[0]
    if a.ndim == 2:
        return {"bone": a, "tissue": a}
    if a.ndim == 3 and a.shape[2] == 2:
        return {"bone": a[..., 0], "tissue": a[..., 1]}
    if a.ndim == 3 and a.shape[2] in (3, 4) and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(
        a[..., 0], a[..., 2]
    ):
        return {"bone": a[..., 0], "tissue": a[..., 0]}  # grey stored as RGB(A)
    raise ShapeError(
        f"DXA image {p} has shape {a.shape}; expected grey (H, W) or two channels (H, W, 2)"
    )


def _read_raw(p: Path, allow_pickle: bool, pixel_spacing_mm: Any) -> dict[str, Any]:
    """The file's unvalidated arrays, read by the reader its suffix names."""
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return read_npz(p)
    if suffix in _PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UnsafeLoadError(
                f"DXA file {p} is a pickle, and unpickling runs code from the file; "
                "pass allow_pickle=True (read_dxa(..., allow_pickle=True)) only if you trust it"
            )
        return _read_pickle(p)
    if suffix in _IMAGE_SUFFIXES:
        if pixel_spacing_mm is None:
            raise InvalidArgumentError(
                f"DXA image {p} stores no pixel spacing; pass pixel_spacing_mm=(row, col) in mm"
            )
        return _read_image(p)
    raise UnreadableFileError(
        f"DXA file {p} has an unknown suffix {p.suffix!r}; expected .npz, .pkl, .pickle, .png, .tif"
    )


def _spacing_to_use(stored: Any, given: Any, p: Path) -> Any:
    """The stored spacing, else the caller's; both given must agree (rtol 1e-6)."""
    if stored is None and given is None:
        raise InvalidArgumentError(f"DXA file {p} stores no pixel spacing; pass pixel_spacing_mm=(row, col)")
    if stored is not None and given is not None:
        a = check_pixel_spacing(stored, "stored pixel_spacing_mm", p)
        b = check_pixel_spacing(given, "pixel_spacing_mm", p)
        if not np.allclose(a, b, rtol=1e-6, atol=0):
            raise InvalidArgumentError(
                f"pixel_spacing_mm={b.tolist()} disagrees with the spacing {a.tolist()} stored in {p}"
            )
    return stored if stored is not None else given


def read_dxa(
    path: str | Path,
    *,
    allow_pickle: bool = False,
    pixel_spacing_mm: Any = None,
) -> DXAImage:
    """Read and validate a DXA scan.

    Formats by suffix: ``.npz`` (ours, see :func:`write_dxa`); ``.pkl`` /
    ``.pickle`` (UK Biobank preprocessing, keys ``bone``, ``tissue``,
    ``pixel_spacing``; needs ``allow_pickle=True``); ``.png`` / ``.tif`` /
    ``.tiff`` (grey or two-channel; needs ``pixel_spacing_mm``; a grey image
    gives the same array as bone and tissue).

    Parameters
    ----------
    allow_pickle : bool
        Opt in to unpickling, which runs code from the file. Only for files you trust.
    pixel_spacing_mm : float or (2,), optional
        Required for images; for files that store a spacing it must agree with it.

    Raises
    ------
    MissingFileError, UnreadableFileError, UnsafeLoadError, ShapeError,
    DTypeError, NonFiniteError, InvalidArgumentError
    """
    p = existing_file(path, "DXA file")
    raw = _read_raw(p, allow_pickle, pixel_spacing_mm)
    missing = [k for k in ("bone", "tissue") if k not in raw]
    if missing:
        raise UnreadableFileError(f"DXA file {p} lacks {missing}; it has keys {sorted(raw)}")
    arrays = _check_dxa(
        raw["bone"],
        raw["tissue"],
        _spacing_to_use(raw.get("pixel_spacing_mm"), pixel_spacing_mm, p),
        raw.get("lateral_bone"),
        raw.get("lateral_tissue"),
        raw.get("lateral_pixel_spacing_mm"),
        p,
    )
    return DXAImage(**arrays, path=p)
