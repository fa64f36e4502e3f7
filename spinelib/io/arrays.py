"""Named arrays in ``.npz`` archives: byte-deterministic writing, reading without unpickling.

The archive format under DXA files (:mod:`spinelib.io.dxa`) and the run folder's array
files (targets, predictions, ridge checkpoints). Members get a fixed timestamp
(1980-01-01, the earliest a zip can hold), Unix attributes ``0644`` and deflate level 6,
so the same arrays give the same bytes on any machine.

Examples
--------
>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> p = write_arrays(d / "a.npz", {"x": np.arange(3), "ids": ["a", "b"]})
>>> z = read_arrays(p)
>>> z["x"].tolist(), z["ids"].dtype.kind
([0, 1, 2], 'U')
"""

from __future__ import annotations

import io as _io
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import MissingFileError, SpineLibError, UnreadableFileError
from ..util.atomic import write_bytes_atomic

__all__ = ["npz_bytes", "read_npz", "write_arrays", "read_arrays"]

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip can hold: fixed for reproducible bytes
# Level 1 as for NIfTI: a noisy float32 DXA packs only 11 % smaller at level 6 but takes
# five times as long to write, which is most of a synthetic subject's write time.
_NPZ_LEVEL = 1


def npz_bytes(arrays: Mapping[str, np.ndarray], *, level: int = _NPZ_LEVEL) -> bytes:
    """A compressed ``.npz`` archive with fixed member timestamps and attributes."""
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for key, arr in arrays.items():
            member = _io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the writing machine
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)
    return buf.getvalue()


def read_npz(p: Path, what: str = "DXA file") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``p`` (an existing file), never unpickling.

    Raises
    ------
    UnreadableFileError
        Not an ``.npz`` archive, or a corrupt one; the message names ``what`` and ``p``.
    """
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {what} {p}: {type(exc).__name__}: {exc}") from exc
    if not magic.startswith((b"PK\x03\x04", b"\x93NUMPY")):
        # numpy takes any other bytes for a pickle and suggests allow_pickle: wrong advice here
        raise UnreadableFileError(f"{what} {p} is not an .npz archive (corrupt, or another format): "
                                  f"it starts with {magic!r}")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise UnreadableFileError(f"{what} {p} is a single .npy array, not an .npz archive")
        with z:
            return {k: np.asarray(z[k]) for k in z.files}
    except SpineLibError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise UnreadableFileError(f"cannot read {what} {p}: {type(exc).__name__}: {exc}") from exc


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write named arrays as a compressed ``.npz`` atomically, byte-deterministic, no pickles.

    Used for the run folder's array files (targets, predictions); string arrays are
    stored as fixed-width unicode.
    """
    plain = {k: (np.asarray(v).astype(str) if np.asarray(v).dtype.kind in "OU" else np.asarray(v))
             for k, v in arrays.items()}
    return write_bytes_atomic(path, npz_bytes(plain))


def read_arrays(path: str | Path, *, what: str = "array file") -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`write_arrays` (never unpickling).

    Raises
    ------
    MissingFileError, UnreadableFileError
        Naming ``what`` and the path.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} {p} does not exist")
    return read_npz(p, what)
