"""spinelib: the runnable companion of *3D Spine Shape Estimation from Single 2D DXA*
(Bourigault, Jamaludin, Zisserman, MICCAI 2024).

The package holds every algorithm; notebooks only call it. Each module's docstring states
its conventions and file formats; the book tells the study end to end.
"""

from .errors import SpineLibError
from .util.section_log import attach_section_log

# a notebook kernel the runner started, and every process it spawns, logs into its section's
# file (spinelib.util.section_log): the only way their records reach the user's terminal
try:
    attach_section_log()
except OSError as _exc:  # a log that cannot be written must not stop the work itself
    import warnings

    warnings.warn(f"spinelib: the section log cannot be opened ({_exc}); records go nowhere", stacklevel=1)

__version__ = "0.1.0"
__all__ = ["SpineLibError", "__version__"]
