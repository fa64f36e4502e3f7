"""The section log: records of spinelib's loggers in a file named by the environment, read back line by line."""

from __future__ import annotations

import logging
import multiprocessing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib.util.section_log import SECTION_LOG_ENV, LogFollower, attach_section_log, parse_line


@pytest.fixture
def spinelib_logger():
    """The ``spinelib`` logger, its handlers and level restored after the test."""
    logger = logging.getLogger("spinelib")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for h in logger.handlers:
        if h not in handlers:
            h.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_no_file_named_attaches_nothing(spinelib_logger):
    before = list(spinelib_logger.handlers)
    assert attach_section_log({}) is None
    assert attach_section_log({SECTION_LOG_ENV: "  "}) is None
    assert spinelib_logger.handlers == before


def test_records_of_info_and_above_reach_the_file_once(tmp_path, spinelib_logger):
    path = tmp_path / "s.log"
    spinelib_logger.setLevel(logging.WARNING)
    assert attach_section_log({SECTION_LOG_ENV: str(path)}) == path.resolve()
    assert attach_section_log({SECTION_LOG_ENV: str(path)}) == path.resolve()  # no second handler
    log = logging.getLogger("spinelib.learn.train")
    log.debug("not this")
    log.info("resnet epoch %d/%d", 3, 12)
    log.warning("careful")
    logging.getLogger("other").warning("not spinelib's")
    lines = path.read_text().splitlines()
    assert [parse_line(ln) for ln in lines] == [("INFO", "resnet epoch 3/12"), ("WARNING", "careful")]
    assert all(" spinelib.learn.train: " in ln for ln in lines)


def test_a_logger_already_more_verbose_keeps_its_level(tmp_path, spinelib_logger):
    spinelib_logger.setLevel(logging.DEBUG)
    attach_section_log({SECTION_LOG_ENV: str(tmp_path / "s.log")})
    assert spinelib_logger.level == logging.DEBUG


def test_a_folder_that_does_not_exist_is_an_oserror(tmp_path, spinelib_logger):
    with pytest.raises(OSError):
        attach_section_log({SECTION_LOG_ENV: str(tmp_path / "missing" / "s.log")})


def _child_logs(message: str) -> None:
    import spinelib  # noqa: F401 - the import attaches the section log named in the inherited environment

    logging.getLogger("spinelib.study.experiment").info(message)


def test_a_spawned_process_logs_into_the_same_file(tmp_path, monkeypatch, spinelib_logger):
    """The networks trained side by side run in spawned interpreters: their records reach
    the section's file through the environment they inherit."""
    path = tmp_path / "s.log"
    monkeypatch.setenv(SECTION_LOG_ENV, str(path))
    attach_section_log()
    logging.getLogger("spinelib").info("parent")
    proc = multiprocessing.get_context("spawn").Process(target=_child_logs, args=("child",))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert sorted(parse_line(ln)[1] for ln in path.read_text().splitlines()) == ["child", "parent"]


def test_parse_line_keeps_continuation_lines_whole():
    assert parse_line("12:00:01 ERROR spinelib.run: failed: badly") == ("ERROR", "failed: badly")
    assert parse_line('  File "x.py", line 3') == ("", '  File "x.py", line 3')


def test_follower_reads_complete_lines_only(tmp_path):
    path = tmp_path / "s.log"
    f = LogFollower(path)
    assert f.read() == []  # not written yet
    path.write_bytes(b"one\ntw")
    assert f.read() == ["one"]
    assert f.read() == []
    with open(path, "ab") as fh:
        fh.write(b"o\r\nthree\n")
    assert f.read() == ["two", "three"]
    path.write_bytes(b"new\n")  # replaced by a shorter file: read from its start
    assert f.read() == ["new"]


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(st.text(alphabet="ab\n", max_size=8), max_size=12))
def test_follower_returns_every_complete_line_in_order(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("log") / "s.log"
    f = LogFollower(path)
    got = []
    for chunk in chunks:
        with open(path, "a") as fh:
            fh.write(chunk)
        got += f.read()
    assert got == "".join(chunks).split("\n")[:-1]
