"""Write-then-rename: nothing spinelib writes is ever seen half-written.

Every writer produces a temporary file in the destination folder (same file
system, so the final ``os.replace`` is atomic) and renames it into place only
once it is complete and flushed. An interrupted process leaves at most a
``.tmp-*`` file behind, which readers ignore and the next run overwrites.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import OutputError

__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "ensure_writable_dir",
    "remove_stale_temporaries",
    "TMP_PREFIX",
]

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create owner-only files; finished outputs get the usual permissions
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def ensure_writable_dir(path: str | Path, *, min_free_mb: float = 0.0, probe: bool = False) -> Path:
    """Create ``path`` if needed and check that it is writable with enough free space.

    ``probe=True`` also creates and removes a temporary file there: permission bits do not
    stop root, so only a real write tells a read-only mount or a protected folder apart
    (used once, up front, by the commands that write a lot).

    Raises
    ------
    OutputError
        If the folder cannot be created or written, or has less than ``min_free_mb`` free.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {p}: {exc.strerror or exc}") from exc
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {p} is not writable")
    if probe:
        try:
            with tempfile.NamedTemporaryFile(prefix=TMP_PREFIX + "probe-", dir=p):
                pass
        except OSError as exc:
            raise OutputError(f"output folder {p} is not writable: {exc.strerror or exc}") from exc
    if min_free_mb > 0:
        free = shutil.disk_usage(p).free / 1024**2
        if free < min_free_mb:
            raise OutputError(
                f"output folder {p} has {free:.0f} MiB free, {min_free_mb:.0f} MiB are needed"
            )
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The caller writes the complete file to the yielded path (keeping its suffix so
    that libraries which dispatch on the extension, such as nibabel, still work).
    On error the temporary file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    ensure_writable_dir(dest.parent)
    suffix = "".join(dest.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name.split(".")[0] + "-", suffix=suffix,
                                   dir=dest.parent)
    except OSError as exc:  # a read-only mount or a protected folder (root passes os.access)
        raise OutputError(f"could not write {dest}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError) and exc.errno is not None:
            raise OutputError(f"could not write {dest}: {exc.strerror or exc}") from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` when complete.

    Used for per-subject folders so that a subject either exists whole or not at all.
    An existing ``path`` is replaced.
    """
    dest = Path(path)
    ensure_writable_dir(dest.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + dest.name + "-", dir=dest.parent))
    except OSError as exc:
        raise OutputError(f"could not write {dest}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        os.chmod(tmp, _DIR_MODE)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> None:
    """Remove the ``.tmp-*`` entries an interrupted earlier run left half-written in ``folder``.

    Call it only when one process writes ``folder`` at a time (not while shards run at
    once): the temporaries found before it starts writing belong to a process that is gone.
    """
    for p in Path(folder).glob(TMP_PREFIX + "*"):
        log.info("removing %s, left by an interrupted run", p)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json_atomic(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (numpy scalars and arrays converted) atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=False, default=_json_default, allow_nan=False)
    return write_text_atomic(path, text + "\n")
