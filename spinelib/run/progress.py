"""A run's progress on the terminal: one line per event, and time estimates from earlier runs."""

from __future__ import annotations

import time
from typing import Mapping, Sequence, TextIO

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

    def say(self, text: str) -> None:
        if self.stream is None:
            return
        print(f"[spinelib run {fmt_duration(time.monotonic() - self.t0):>6}] {text}",
              file=self.stream, flush=True)


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
