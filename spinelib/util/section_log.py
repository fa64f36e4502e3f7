"""A section's log: how the work inside a notebook kernel reaches the terminal and the run folder.

A notebook's kernel writes into the notebook, and from there into the book, so its progress
bars are off and its log records have nowhere to go; the processes it spawns (the networks
trained side by side) have no terminal at all. A user would wait ten minutes on a training
section without a word. The runner (:mod:`spinelib.run.pipeline`) therefore names a log file
in the kernel's environment, :data:`SECTION_LOG_ENV` (``<run>/logs/<notebook stem>.log``).
Importing :mod:`spinelib` in a process where it is set -- the kernel, and every process the
kernel starts, which inherit its environment -- calls :func:`attach_section_log`: the
``spinelib`` logger's records of level INFO and above are appended to that file, one line
each (:data:`LINE_FORMAT`). The runner follows the file with a :class:`LogFollower` and
prints each new record on the terminal while the section runs; the file stays in the run
folder for reading later.

The file is a log, appended to by several processes, not a result: it is the one file
spinelib writes in place rather than by write-then-rename. Each record is written and
flushed whole, so records of different processes never interleave within a line.

Examples
--------
>>> parse_line("17:02:11 INFO spinelib.learn.train: resnet epoch 3/12")
('INFO', 'resnet epoch 3/12')
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Mapping

__all__ = ["SECTION_LOG_ENV", "LINE_FORMAT", "attach_section_log", "parse_line", "LogFollower"]

#: Environment variable naming the log file of the section a process works for.
SECTION_LOG_ENV = "SPINELIB_SECTION_LOG"
#: One line per record: wall-clock time, level, logger, message.
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%H:%M:%S"
_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")


class _SectionLogHandler(logging.FileHandler):
    """A FileHandler appending to a section log (a class of its own, so that it is found again)."""


def attach_section_log(environ: Mapping[str, str] | None = None) -> Path | None:
    """Append the ``spinelib`` logger's INFO and above records to the file named by
    :data:`SECTION_LOG_ENV` in ``environ`` (default ``os.environ``).

    Does nothing when the variable is unset or empty, and adds no second handler for a file
    already attached. The ``spinelib`` logger's level is lowered to INFO if it was higher (or
    unset); a handler the process configured itself is left alone. Records still propagate
    to the root logger, but Python's last-resort printing of warnings to stderr -- into the
    notebook -- no longer applies to them: the terminal shows them through the runner.

    Returns
    -------
    The log file's path, or None when no file is named.

    Raises
    ------
    OSError
        The named file cannot be opened for appending (its folder is missing or read-only).
    """
    value = (os.environ if environ is None else environ).get(SECTION_LOG_ENV, "").strip()
    if not value:
        return None
    path = Path(value).resolve()
    logger = logging.getLogger("spinelib")
    for h in logger.handlers:
        if isinstance(h, _SectionLogHandler) and Path(h.baseFilename) == path:
            return path
    handler = _SectionLogHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LINE_FORMAT, _DATE_FORMAT))
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return path


def parse_line(line: str) -> tuple[str, str]:
    """``(level, message)`` of one line of a section log; a line that is not a record's
    first (a traceback's continuation) is ``("", line)``."""
    m = _LINE.match(line)
    return (m["level"], m["message"]) if m else ("", line)


class LogFollower:
    """Reads the complete lines appended to a log file since the last read.

    Parameters
    ----------
    path : the log file; it may not exist yet (nothing to read until it does).

    Notes
    -----
    A line is returned once its newline has been written, so a record caught half-written
    is read whole the next time. A file that shrank (truncated or replaced) is read again
    from its start.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read(self) -> list[str]:
        """The complete lines appended since the last call, without their newlines."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self._offset:
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [ln.decode("utf-8", errors="replace").rstrip("\r") for ln in lines]
