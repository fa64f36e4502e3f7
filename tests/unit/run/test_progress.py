"""spinelib.run.progress: the run's terminal lines."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from spinelib.run.progress import Progress, fmt_duration, time_hint


def said(stream: io.StringIO) -> list[str]:
    """The messages on ``stream``, without the ``[spinelib run <elapsed>]`` prefix."""
    return [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]


def test_fmt_duration_known_answers():
    assert [fmt_duration(s) for s in (None, 0, 59.4, 60, 185, 3599, 3600, 7260)] == [
        "?", "0s", "59s", "1m00s", "3m05s", "59m59s", "1h00m", "2h01m"]


def test_time_hint_needs_every_remaining_section():
    timings = {"a": 60.0, "b": 125.0}
    assert time_hint(timings, "a", ["a", "b"]) == "; last time 1m00s; about 3m05s left in the run"
    assert time_hint(timings, "a", ["a", "c"]) == "; last time 1m00s"
    assert time_hint({}, "a", ["a"]) == ""


def test_relay_says_a_fact_once_per_run_and_every_warning_and_error():
    out = io.StringIO()
    p = Progress(out, total=2)
    p.relay(["10:00:00 INFO spinelib.run.privacy: cohort is synthetic",
             "10:00:01 WARNING spinelib.x: odd subject S1"], "[1/2] alignment")
    p.relay(["10:01:00 INFO spinelib.run.privacy: cohort is synthetic",  # each kernel logs it again
             "10:01:01 ERROR spinelib.y: failed", "Traceback (most recent call last):", "  x",
             "10:01:02 ERROR spinelib.y: failed", "Traceback (most recent call last):", "  x"], "[2/2] training")
    assert said(out) == ["[1/2] alignment: cohort is synthetic", "[1/2] alignment: WARNING odd subject S1",
                         *["[2/2] training: ERROR failed", "[2/2] training: Traceback (most recent call last):",
                           "[2/2] training:   x"] * 2]


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=12))
def test_relay_says_each_distinct_record_once_in_first_order(messages):
    out = io.StringIO()
    p = Progress(out, total=1)
    for m in messages:
        p.relay([f"10:00:00 INFO spinelib: {m}"], "s")
    assert said(out) == [f"s: {m}" for m in dict.fromkeys(messages)]


def test_quiet_progress_writes_nothing():
    p = Progress(None, total=1)
    p.say("x")
    p.relay(["10:00:00 INFO spinelib: y"], "s")  # no stream: nothing to write to, nothing raised
