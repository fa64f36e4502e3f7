"""SHA-256 digests of files, bytes and JSON-able values: the one place hashes are made.

Run caches, provenance and checkpoint identities all compare digests, so they must be made
the same way everywhere.

>>> sha256_bytes(canonical_json({"b": 1, "a": [1.5, "x"]}))[:12]
'27edd5497e48'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["canonical_json", "file_sha256", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """``obj`` as compact JSON with sorted keys: equal values give equal bytes (and hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
