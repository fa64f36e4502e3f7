"""A run's parameters: resolving them from profile, overrides and the run folder, and checking
them against the names each notebook's ``parameters`` cell declares."""

from __future__ import annotations

import logging

from pathlib import Path
from typing import Any, Mapping

from ..errors import MissingFileError, PipelineError, ProfileError
from ..io.runfolder import read_json, run_paths
from ..profiles import get_profile
from .sections import Section

__all__ = [
    "RUN_PARAMETERS",
    "run_profile",
    "resolve_params",
    "profile_overrides",
    "notebook_parameters",
    "validate_declared",
]

#: Parameters every notebook receives besides the profile's.
RUN_PARAMETERS: tuple[str, ...] = ("run_dir", "data", "profile")


def _previous_params(run_dir: Path) -> dict[str, Any] | None:
    """The run folder's ``params.json``, or ``None`` when it has none (or it is not a dict)."""
    p = run_paths(run_dir)["params"]
    if not p.exists():
        return None
    prev = read_json(p)
    return prev if isinstance(prev, dict) else None


def _profile_names() -> tuple[str, ...]:
    from ..profiles import PROFILE_NAMES

    return PROFILE_NAMES


def run_profile(run_dir: str | Path, profile: str | None = None) -> str:
    """The profile a command on ``run_dir`` uses: ``profile`` when given, else the one the run
    recorded in ``params.json``, else ``"default"``."""
    return profile or (_previous_params(Path(run_dir)) or {}).get("profile") or "default"


def resolve_params(
    run_dir: str | Path,
    *,
    profile: str | None = None,
    data: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full parameter set a run injects: profile + overrides + ``run_dir``/``data``/``profile``.

    Unset options come from the run folder's previous ``params.json`` (its profile, data and
    the values that differ from that profile) so that re-running one section needs only the
    option that changes. A different ``profile`` drops the previous overrides.

    Raises
    ------
    ProfileError
        For an unknown profile or parameter.
    MissingFileError
        When no data manifest is known or it does not exist.
    """
    run_dir = Path(run_dir)
    prev = _previous_params(run_dir) or {}
    prev_profile = prev.get("profile")
    name = profile or prev_profile or "default"
    merged = profile_overrides(prev) if prev_profile == name else {}
    bad = [k for k in (overrides or {}) if k in RUN_PARAMETERS]
    if bad:
        raise ProfileError(f"{bad[0]!r} is set by its own option, not as a parameter override")
    merged.update(overrides or {})
    params = get_profile(name, merged)
    data_path = data if data is not None else prev.get("data")
    if not data_path:
        raise MissingFileError(
            "no data manifest: pass --data MANIFEST (e.g. a cohort written by `spinelib synth`)"
        )
    data_path = Path(data_path).expanduser().resolve()
    if not data_path.is_file():
        raise MissingFileError(f"data manifest {data_path} does not exist")
    params["run_dir"] = str(run_dir.expanduser().resolve())
    params["data"] = str(data_path)
    params["profile"] = name
    return params


def profile_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters whose values differ from those of the profile ``params["profile"]``.

    Only the profile's own parameters count (not ``run_dir``, ``data``, ``profile``, nor a
    name the profile lacks); an unknown or missing profile gives none. This is what
    ``provenance.json`` records as the run's overrides and what :func:`resolve_params`
    carries over from a run folder's previous ``params.json``.

    Examples
    --------
    >>> from spinelib.profiles import get_profile
    >>> profile_overrides({**get_profile("smoke"), "seed": -1, "run_dir": "r"})
    {'seed': -1}
    """
    name = params.get("profile")
    if name not in _profile_names():
        return {}
    base = get_profile(name)
    return {k: v for k, v in params.items() if k in base and k not in RUN_PARAMETERS and base[k] != v}


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and defaults declared in the notebook's single cell tagged ``parameters``.

    Raises
    ------
    PipelineError
        If the notebook has no ``parameters`` cell, more than one, or one papermill cannot read.
    """
    import nbformat
    import papermill

    p = Path(path)
    try:
        nb = nbformat.read(p, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the notebook's fault
        raise PipelineError(f"notebook {p} cannot be read: {exc}") from None
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise PipelineError(
            f"notebook {p} must have exactly one cell tagged 'parameters', found {len(tagged)}"
        )
    pm_log = logging.getLogger("papermill")
    level = pm_log.level
    pm_log.setLevel(logging.WARNING)  # its "Input Notebook" line at plan time reads as if the notebook ran
    try:
        params = papermill.inspect_notebook(str(p))
    except Exception as exc:  # noqa: BLE001
        raise PipelineError(f"notebook {p}: the parameters cell cannot be parsed: {exc}") from None
    finally:
        pm_log.setLevel(level)
    return {name: info.get("default") for name, info in params.items()}


def validate_declared(section: Section, source: Path, declared: Mapping[str, Any],
                      params: Mapping[str, Any]) -> None:
    """Check that a notebook declares only known parameters, and all of :data:`RUN_PARAMETERS`.

    Raises
    ------
    PipelineError
        Naming the notebook, its section and the first parameter at fault.
    """
    unknown = [n for n in declared if n not in params]
    if unknown:
        raise PipelineError(
            f"notebook {source} (section {section.name!r}) declares parameter {unknown[0]!r}, "
            "which is neither a profile parameter nor one of run_dir, data, profile"
        )
    missing = [n for n in RUN_PARAMETERS if n not in declared]
    if missing:
        raise PipelineError(
            f"notebook {source} (section {section.name!r}): its parameters cell must declare "
            f"{', '.join(RUN_PARAMETERS)}; {missing[0]!r} is missing"
        )
