"""Safe publishing: participants' ids and images stay out of the book of a real cohort.

A run on real data (a manifest whose subjects have no truth files, or one flagged real)
publishes no participant's raw id: every id is replaced by a salted hash, the same within
the run and meaningless outside it. The salt is drawn at random once per run and kept
ONLY in ``<run>/private/id_salt`` (the book never copies ``private/``). Per-subject images
of real participants are left out of the book, with a sentence in their place. Two run
parameters lift this: ``show_ids`` (``spinelib run --show-ids``) and ``publish_images``
(``--publish-images``). Synthetic cohorts keep their ids and images.

Everything happens in one place, at the manifest: the notebooks read their cohort with
:func:`run_manifest`, which hands back the manifest with display ids in place of the raw
ones (the file paths stay as they are, to load the files). Every table, figure, array and
message made downstream therefore names subjects by their display id; the only text that
still holds raw ids is an error message that quotes a file path, which :meth:`Publication.scrub`
rewrites before it is written. A real cohort is used as real data throughout: truth files,
if a flagged manifest has them, are not read (their records name the raw id).

Examples
--------
>>> display_ids(["1000123", "1000456"], salt=b"0" * 32)
['P6a0d16902476', 'P829c85d1b3ab']
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..util.atomic import ensure_writable_dir
from ..errors import InvalidArgumentError, UnreadableFileError

log = logging.getLogger(__name__)

__all__ = [
    "PRIVATE_DIR",
    "SALT_FILE",
    "REAL_FLAG_COLUMN",
    "Publication",
    "is_real_cohort",
    "run_salt",
    "display_ids",
    "publication",
    "run_manifest",
]

#: Folder of a run that holds what must never be published.
PRIVATE_DIR = "private"
#: The run's salt, inside :data:`PRIVATE_DIR`.
SALT_FILE = "id_salt"
#: Optional manifest column: a true value (1, true, yes, real) in any row flags the cohort real.
REAL_FLAG_COLUMN = "real"
_TRUE = frozenset({"1", "true", "yes", "y", "real"})
_HASH_HEX = 12  # 48 bits: a collision among 10^5 participants has odds of about 1 in 56,000
_SALT_BYTES = 32


def is_real_cohort(manifest: Any) -> bool:
    """Whether a cohort is real participant data, to be published with care.

    Real when any subject has no truth file (``truth_path`` empty: only the synthetic
    generator writes truth), or when the manifest has a ``real`` column with a true value
    (1, true, yes, real) in any row. Erring towards "real" is the safe side: a cohort mixing
    both is treated as real.

    Parameters
    ----------
    manifest : pandas.DataFrame (as from :func:`spinelib.io.read_manifest`) or a manifest path.

    Raises
    ------
    InvalidArgumentError
        If the table has no ``subject_id`` column.
    """
    if isinstance(manifest, (str, Path)):
        from ..io import read_manifest

        manifest = read_manifest(manifest, on_duplicate="report")
    cols = getattr(manifest, "columns", ())
    if "subject_id" not in cols:
        raise InvalidArgumentError("manifest must be a DataFrame with a subject_id column")
    if "truth_path" not in cols:
        return True
    truth = manifest["truth_path"].fillna("").astype(str).str.strip()
    if (truth == "").any():
        return True
    if REAL_FLAG_COLUMN in cols:
        flags = manifest[REAL_FLAG_COLUMN].fillna("").astype(str).str.strip().str.lower()
        return bool(flags.isin(_TRUE).any())
    return False


def run_salt(run_dir: str | Path, *, create: bool = True) -> bytes:
    """The run's random salt (hex text in ``<run>/private/id_salt``), drawn on first use.

    The file is created without overwriting (a hard link of a finished temporary file), so
    two processes that race both end with the one salt on disk; it is readable by its owner
    only.

    Raises
    ------
    MissingFileError
        With ``create=False`` when the run has no salt yet.
    UnreadableFileError
        When the salt file is not what this function writes.
    """
    from ..errors import MissingFileError

    folder = Path(run_dir) / PRIVATE_DIR
    path = folder / SALT_FILE
    if not path.exists():
        if not create:
            raise MissingFileError(f"run {run_dir} has no id salt ({path})")
        ensure_writable_dir(folder)
        os.chmod(folder, 0o700)
        tmp = folder / f".{SALT_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(_SALT_BYTES) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process got there first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{32,}", text):
        raise UnreadableFileError(f"id salt {path} is not hex text; delete it to draw a new one "
                                  "(the run's published ids then change)")
    return bytes.fromhex(text)


def display_ids(raw_ids: Iterable[str], *, salt: bytes) -> list[str]:
    """Salted hashes of subject ids: ``"P"`` + the first 12 hex digits of SHA-256(salt, id).

    Parameters
    ----------
    raw_ids : the participants' ids.
    salt : at least 16 random bytes (:func:`run_salt`).

    Raises
    ------
    InvalidArgumentError
        For a short salt, or two different ids that would get the same display id.
    """
    if not isinstance(salt, (bytes, bytearray)) or len(salt) < 16:
        raise InvalidArgumentError("salt must be at least 16 bytes")
    raw = [str(r) for r in raw_ids]
    out = ["P" + hashlib.sha256(bytes(salt) + b"\x00" + r.encode("utf-8")).hexdigest()[:_HASH_HEX]
           for r in raw]
    seen: dict[str, str] = {}
    for r, d in zip(raw, out):
        if seen.setdefault(d, r) != r:
            raise InvalidArgumentError(f"two subject ids hash to the same display id {d}; "
                                       "delete the run's private/id_salt to draw a new salt")
    return out


@dataclass(frozen=True, eq=False)
class Publication:
    """How a run publishes its subjects.

    Attributes
    ----------
    real : the cohort is real participant data (:func:`is_real_cohort`).
    show_ids, publish_images : the user's opt-ins (run parameters of the same names).
    mapping : raw id -> display id (the identity when ids are shown).
    """

    real: bool
    show_ids: bool = False
    publish_images: bool = False
    mapping: Mapping[str, str] = field(default_factory=dict)

    @property
    def hide_ids(self) -> bool:
        """Ids are replaced by salted hashes."""
        return self.real and not self.show_ids

    @property
    def images(self) -> bool:
        """Per-subject images may go into the book."""
        return (not self.real) or self.publish_images

    def display_id(self, raw: str) -> str:
        """The id to publish for a raw id (a raw id not in the manifest comes back hashed-out)."""
        if not self.hide_ids:
            return str(raw)
        return self.mapping.get(str(raw), "P" + "?" * _HASH_HEX)

    @functools.cached_property
    def _pattern(self) -> re.Pattern | None:
        ids = sorted((r for r in self.mapping if r and self.mapping[r] != r), key=len, reverse=True)
        if not ids:
            return None
        # an id counts where it is not part of a longer run of letters and digits, so "12"
        # is not rewritten inside "123" but is inside "/data/12/dxa.npz" or "12_dxa.npz"
        return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, ids)) + r")(?![A-Za-z0-9])")

    def scrub(self, text: Any) -> Any:
        """``text`` with every raw id replaced by its display id (non-strings unchanged)."""
        if not self.hide_ids or not isinstance(text, str) or self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.mapping[m.group(0)], text)

    def scrub_frame(self, df):
        """A copy of a table with raw ids replaced in every text cell (ids and messages)."""
        out = df.copy()
        if not self.hide_ids:
            return out
        from pandas.api.types import is_object_dtype, is_string_dtype

        for col in out.columns:
            if is_object_dtype(out[col].dtype) or is_string_dtype(out[col].dtype):
                out[col] = [self.scrub(v) for v in out[col]]
        return out

    def pseudonymise(self, manifest):
        """The manifest the notebooks use: display ids; a real cohort's truth paths blanked.

        File paths keep the raw ids they may hold (the files must still load); nothing
        downstream publishes a path without :meth:`scrub`.
        """
        out = manifest.copy()
        if self.real and "truth_path" in out.columns:
            out["truth_path"] = ""
        if self.hide_ids:
            out["subject_id"] = [self.mapping[str(s)] for s in out["subject_id"]]
        return out

    def withheld(self, what: str):
        """The sentence shown in place of a per-subject image of a real participant (Markdown)."""
        from IPython.display import Markdown

        return Markdown(
            f"*{what} is left out of this book: the cohort is real participant data, and images "
            "of individual participants are published only when the run is asked to "
            "(`spinelib run --publish-images`, run parameter `publish_images`).*"
        )


def publication(run_dir: str | Path, manifest: Any, *, show_ids: bool = False,
                publish_images: bool = False) -> Publication:
    """The :class:`Publication` of a run over ``manifest`` (every row, duplicates included).

    The salt is drawn (and ``private/id_salt`` written) only when ids are hidden.
    """
    real = is_real_cohort(manifest)
    ids = [str(s) for s in manifest["subject_id"]]
    uniq = list(dict.fromkeys(ids))
    if real and not show_ids:
        mapping = dict(zip(uniq, display_ids(uniq, salt=run_salt(run_dir))))
    else:
        mapping = {s: s for s in uniq}
    pub = Publication(real=real, show_ids=bool(show_ids), publish_images=bool(publish_images),
                      mapping=mapping)
    log.info("cohort is %s: ids %s, per-subject images %s", "real" if real else "synthetic",
             "hidden (salted hashes)" if pub.hide_ids else "shown",
             "published" if pub.images else "left out of the book")
    return pub


def run_manifest(run_dir: str | Path, data: str | Path, *, show_ids: bool = False,
                 publish_images: bool = False):
    """Read a run's cohort the way every notebook must: the one entry to subject ids.

    Duplicated ids are left out and reported (:func:`spinelib.io.quality.read_cohort_manifest`);
    the rest is pseudonymised (:meth:`Publication.pseudonymise`).

    Returns
    -------
    (manifest, publication, duplicates) : the manifest to use, the :class:`Publication`
        (call ``scrub``/``scrub_frame`` on messages and tables, ``images``/``withheld``
        before per-subject figures), and the rejected duplicate rows (display ids).

    Raises
    ------
    MissingFileError, UnreadableFileError, ManifestError
        As :func:`spinelib.io.read_manifest`.
    """
    from ..io import read_manifest
    from ..io.quality import split_duplicates

    every = read_manifest(data, on_duplicate="report")
    pub = publication(run_dir, every, show_ids=show_ids, publish_images=publish_images)
    kept, dup = split_duplicates(every)
    return pub.pseudonymise(kept), pub, pub.scrub_frame(dup)
