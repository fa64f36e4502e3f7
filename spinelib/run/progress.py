"""A run's progress on the terminal: one line per event, and time estimates from earlier runs."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

from tqdm import tqdm

from ..util.section_log import LogFollower, parse_line

__all__ = ["Progress", "fmt_duration", "time_hint"]


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: ``"42s"``, ``"3m05s"``, ``"2h01m"`` (``"?"`` when unknown).

    >>> fmt_duration(185), fmt_duration(7260), fmt_duration(None)
    ('3m05s', '2h01m', '?')
    """
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """One line per event on the terminal: which section, elapsed, estimate."""

    def __init__(self, stream: TextIO | None, total: int):
        self.stream = stream
        self.total = total
        self.t0 = time.monotonic()
        self._said: set[str] = set()  # INFO messages relayed so far

    def say(self, text: str) -> None:
        if self.stream is None:
            return
        # tqdm.write clears papermill's cell bar on the same stream first, and is thread-safe
        tqdm.write(f"[spinelib run {fmt_duration(time.monotonic() - self.t0):>6}] {text}", file=self.stream)
        self.stream.flush()

    def relay(self, lines: Sequence[str], tag: str) -> None:
        """Say each line of a section log (:mod:`spinelib.util.section_log`) after ``tag``,
        its level in front unless it is INFO.

        An INFO message said before in this run is not said again: every section's kernel reads
        the cohort and the checkpoints afresh and logs the same facts about them. Warnings and
        errors are said each time, with their tracebacks. The section logs keep every record.
        """
        for line in lines:
            level, message = parse_line(line)
            if level == "INFO":
                if message in self._said:
                    continue
                self._said.add(message)
            self.say(f"{tag}: {message}" if level in ("INFO", "") else f"{tag}: {level} {message}")

    @contextmanager
    def following(self, log_path: Path, tag: str, *, every_s: float = 1.0) -> Iterator[None]:
        """While the block runs, say what is appended to ``log_path`` (checked every
        ``every_s`` seconds, and once more at the end, so no record is lost)."""
        if self.stream is None:
            yield
            return
        follower = LogFollower(log_path)
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(every_s):
                self.relay(follower.read(), tag)

        thread = threading.Thread(target=poll, name="spinelib-section-log", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.relay(follower.read(), tag)


def _estimate(timings: Mapping[str, float], names: Sequence[str]) -> float | None:
    """Seconds the sections ``names`` took last time, ``None`` unless all are known."""
    known = [timings[n] for n in names if n in timings]
    if len(known) != len(names) or not known:
        return None
    return float(sum(known))


def time_hint(timings: Mapping[str, float], name: str, remaining: Sequence[str]) -> str:
    """``; last time ...; about ... left in the run`` from earlier runs' timings (or nothing)."""
    prev, est = timings.get(name), _estimate(timings, remaining)
    return ((f"; last time {fmt_duration(prev)}" if prev is not None else "")
            + (f"; about {fmt_duration(est)} left in the run" if est is not None else ""))
