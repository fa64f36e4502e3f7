"""Worker processes that never outlive the process that started them.

A ``ProcessPoolExecutor``'s workers block forever on their task queue when their parent is
killed with ``SIGKILL`` (the sibling workers keep the queue's pipe open, so no end-of-file
arrives), and the ones busy at that moment go on writing into the output folder while the
user re-runs the command. On Linux each worker asks the kernel to kill it when its parent
dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere the pool is a plain one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

from .errors import InvalidArgumentError

__all__ = ["process_pool"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: SIGKILL this worker when its parent process goes away."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc to ask: the pool still works
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``max_workers`` processes that die with this process.

    The pool must be created (and used) from a thread that lives as long as the pool:
    Linux reports the death of the *thread* that started a worker as its parent's death.

    Raises
    ------
    InvalidArgumentError
        If ``max_workers`` is not a positive integer.
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidArgumentError(f"max_workers must be a positive integer, got {max_workers!r}")
    return ProcessPoolExecutor(max_workers=max_workers, initializer=_die_with_parent,
                               initargs=(os.getpid(),))
