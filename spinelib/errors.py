"""The one exception hierarchy of spinelib.

Every public function validates its inputs once and raises a subclass of
:class:`SpineLibError` whose message names the file or argument at fault.
Each subclass also derives from the closest built-in exception so that callers
who only know Python's own hierarchy (``except ValueError``) still catch it.
"""

from __future__ import annotations

__all__ = [
    "SpineLibError",
    "InvalidArgumentError",
    "MissingFileError",
    "UnreadableFileError",
    "ShapeError",
    "DTypeError",
    "NonFiniteError",
    "EmptySegmentationError",
    "ManifestError",
    "DuplicateIdError",
    "UnsafeLoadError",
    "CheckpointError",
    "ProfileError",
    "PipelineError",
    "InsufficientDataError",
    "OutputError",
    "IncompleteScanError",
    "ParticipantMismatchError",
    "ClusterError",
    "SubjectsFailedError",
]


class SpineLibError(Exception):
    """Base class of every error spinelib raises on purpose."""


class InvalidArgumentError(SpineLibError, ValueError):
    """A function argument has a wrong value (range, type, inconsistent with another)."""


class MissingFileError(SpineLibError, FileNotFoundError):
    """A file or folder the caller named does not exist."""


class UnreadableFileError(SpineLibError, OSError):
    """A file exists but cannot be parsed: corrupt, truncated or of another format."""


class ShapeError(SpineLibError, ValueError):
    """An array has the wrong number of dimensions or the wrong size."""


class DTypeError(SpineLibError, TypeError):
    """An array has a dtype that the function cannot use."""


class NonFiniteError(SpineLibError, ValueError):
    """An array holds NaN or infinite values where finite ones are required."""


class EmptySegmentationError(SpineLibError, ValueError):
    """A segmentation or mask holds no foreground voxel."""


class ManifestError(SpineLibError, ValueError):
    """A cohort manifest is malformed (missing columns, bad split names, bad paths)."""


class DuplicateIdError(ManifestError):
    """A cohort manifest lists the same subject id more than once."""


class UnsafeLoadError(SpineLibError, PermissionError):
    """Loading would execute code (a pickle) and the caller did not opt in."""


class CheckpointError(SpineLibError, ValueError):
    """A model checkpoint is missing, corrupt or made for another configuration."""


class ProfileError(SpineLibError, KeyError):
    """An unknown profile name or an unknown parameter override."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class PipelineError(SpineLibError, RuntimeError):
    """A pipeline section failed; the message names the notebook, cell and error."""


class InsufficientDataError(PipelineError):
    """Too few usable subjects remain after the bad ones were left out (profile ``min_subjects``)."""


class OutputError(SpineLibError, OSError):
    """An output location is unwritable or the disk has too little free space."""


class IncompleteScanError(UnreadableFileError):
    """A scan's files are readable but lack a needed part (an image, a series, a station)."""


class ParticipantMismatchError(SpineLibError, ValueError):
    """Files that should describe one participant name different participants."""


class ClusterError(SpineLibError, RuntimeError):
    """The Dask cluster of a fan-out cannot be started or reached."""


class SubjectsFailedError(SpineLibError, RuntimeError):
    """Some subjects of a stage that needs every one of them failed (listed with their reasons)."""
