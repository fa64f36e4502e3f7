"""Which scans a cohort source names: a folder of DXA files, a text list of paths or a manifest.

:func:`list_scans` turns the source given to ``spinelib predict`` into ``(scan id, DXA path)``
pairs with unique ids, without opening the scans; each id names the scan's output folder
(:func:`spinelib.run.cohort_prediction.predict_scans`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidArgumentError, MissingFileError, UnreadableFileError

__all__ = ["COHORT_SUFFIXES", "list_scans"]

#: Suffixes of the DXA files :func:`list_scans` picks from a folder.
_DXA_SUFFIXES = (".npz", ".pkl", ".pickle", ".png", ".tif", ".tiff")
#: Suffixes of text lists of paths.
_LIST_SUFFIXES = (".txt", ".lst", ".list")
#: File suffixes that name a cohort of scans rather than one scan: a text list or a manifest.
COHORT_SUFFIXES: tuple[str, ...] = (*_LIST_SUFFIXES, ".csv")


def _clean_id(text: str) -> str:
    """``text`` with every run of characters other than ``A-Za-z0-9_.-`` made ``_``, trimmed of ``.`` and ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")


def _scan_id(path: Path) -> str:
    """The id of a scan from its path: its folder's name for ``dxa.*``, else its name without suffixes."""
    # a cohort folder holds <id>/dxa.npz: the folder names the scan
    stem = path.parent.name if path.stem.lower() == "dxa" and path.parent.name else path.name.split(".")[0]
    return _clean_id(stem) or "scan"


def _resolve(text: str, base: Path) -> Path:
    """``text`` as a path, ``~`` expanded, relative to ``base`` unless absolute."""
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _folder_scans(src: Path) -> list[tuple[str, Path]]:
    """Every file below ``src`` with a DXA suffix, sorted, hidden files and folders left out."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in _DXA_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(src).parts))
    return [(_scan_id(p), p) for p in files]


def _listed_scans(src: Path) -> list[tuple[str, Path]]:
    """The paths of a text list, one per line; blank lines and ``#`` comments skipped."""
    try:
        lines = src.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"cannot read scan list {src}: {type(exc).__name__}: {exc}") from exc
    pairs = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            p = _resolve(line, src.parent)
            pairs.append((_scan_id(p), p))
    return pairs


def _manifest_scans(src: Path) -> list[tuple[str, Path]]:
    """The ``dxa_path`` rows of a manifest, ids from ``subject_id`` when it is given."""
    import pandas as pd

    try:
        df = pd.read_csv(src, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"cannot read manifest {src}: {type(exc).__name__}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "dxa_path" not in df.columns:
        raise UnreadableFileError(f"manifest {src} has no dxa_path column (columns: {list(df.columns)})")
    pairs = []
    for _, row in df.iterrows():
        if not str(row["dxa_path"]).strip():
            continue
        p = _resolve(str(row["dxa_path"]).strip(), src.parent)
        sid = str(row.get("subject_id", "")).strip()
        pairs.append((_clean_id(sid) if sid else _scan_id(p), p))
    return pairs


def _unique_ids(pairs: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """``pairs`` with ``-2``, ``-3``, ... appended to repeated ids."""
    seen: dict[str, int] = {}
    out = []
    for sid, p in pairs:
        n = seen.get(sid, 0) + 1
        seen[sid] = n
        out.append((sid if n == 1 else f"{sid}-{n}", p))
    return out


def list_scans(source: str | Path) -> list[tuple[str, Path]]:
    """The scans named by ``source``: ``(scan id, DXA path)`` pairs, ids unique.

    ``source`` is one of

    - a folder: every file below it with a DXA suffix (``.npz``, ``.pkl``, ``.pickle``,
      ``.png``, ``.tif``, ``.tiff``), sorted; a file named ``dxa.*`` takes its folder's name
      as id (a cohort folder's ``<id>/dxa.npz``), any other its name without suffixes;
    - a text list (``.txt``, ``.lst``, ``.list``): one path per line, relative to the
      list's folder; blank lines and ``#`` comments are skipped;
    - a manifest (``.csv``) with columns ``dxa_path`` (relative to the manifest's folder)
      and optionally ``subject_id`` (the ids; otherwise from the paths).

    Repeated ids get ``-2``, ``-3``, ... appended. Paths are not opened here.

    Raises
    ------
    MissingFileError
        ``source`` does not exist.
    UnreadableFileError
        An unreadable list or manifest, or a manifest without ``dxa_path``.
    InvalidArgumentError
        ``source`` names no scan at all, or is a file of another kind.
    """
    src = Path(source)
    if not src.exists():
        raise MissingFileError(f"scan source {src} does not exist")
    if src.is_dir():
        pairs = _folder_scans(src)
    elif src.suffix.lower() in _LIST_SUFFIXES:
        pairs = _listed_scans(src)
    elif src.suffix.lower() == ".csv":
        pairs = _manifest_scans(src)
    else:
        raise InvalidArgumentError(
            f"scan source {src} is neither a folder, a text list ({', '.join(_LIST_SUFFIXES)}) nor a manifest .csv")
    if not pairs:
        raise InvalidArgumentError(f"scan source {src} names no DXA file")
    return _unique_ids(pairs)
