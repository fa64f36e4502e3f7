"""Plain-data records on disk: nested dicts, lists and tuples of numbers, strings and arrays,
as one ``.npz`` that never needs unpickling.

The per-subject results of a fan-out (:mod:`spinelib.util.workers`) are cached as records so
that a killed run resumes from what was written and the shards of a cluster job meet in
one folder. A record's structure is kept as JSON (``__tree__``) in which every array is
replaced by a reference to an ``.npz`` entry; tuples stay tuples, ``None`` stays
``None``, non-finite floats survive (JSON's ``NaN``/``Infinity`` tokens, read back by
Python's :mod:`json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, UnreadableFileError

__all__ = ["write_record", "read_record"]

_TREE = "__tree__"


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufU":
            raise InvalidArgumentError(f"record arrays must be numeric, boolean or unicode, got dtype {obj.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays) for v in obj]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise InvalidArgumentError("record dict keys must be strings")
        if any(k.startswith("__") and k.endswith("__") for k in obj):
            raise InvalidArgumentError("record dict keys may not be dunder names (reserved for the encoding)")
        return {k: _encode(v, arrays) for k, v in obj.items()}
    raise InvalidArgumentError(f"a record holds only dicts, lists, tuples, numbers, strings, None and arrays, "
                               f"not {type(obj).__name__}")


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if isinstance(node, dict):
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__tuple__" in node:
            return tuple(_decode(v, arrays) for v in node["__tuple__"])
        return {k: _decode(v, arrays) for k, v in node.items()}
    return node


def write_record(path: str | Path, record: Any) -> Path:
    """Write ``record`` to ``path`` (an ``.npz``) atomically and byte-deterministically.

    Raises
    ------
    InvalidArgumentError
        ``record`` holds something other than dicts with string keys, lists, tuples,
        numbers, strings, ``None`` and numeric, boolean or unicode arrays.
    """
    from ..io import write_arrays

    arrays: dict[str, np.ndarray] = {}
    tree = _encode(record, arrays)
    return write_arrays(path, {**arrays, _TREE: np.array(json.dumps(tree, sort_keys=True))})


def read_record(path: str | Path) -> Any:
    """Read a record written by :func:`write_record`.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    UnreadableFileError
        ``path`` is not a record.
    """
    from ..io import read_arrays

    arrays = read_arrays(path, what="record")
    if _TREE not in arrays:
        raise UnreadableFileError(f"{path} is not a spinelib record (no {_TREE} entry)")
    try:
        return _decode(json.loads(str(arrays.pop(_TREE))), arrays)
    except (ValueError, KeyError, TypeError) as exc:
        raise UnreadableFileError(f"record {path} is damaged: {type(exc).__name__}: {exc}") from exc
