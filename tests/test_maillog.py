"""The mail log: one line per event, as text for people or JSON for machines."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaybox.maillog import DEBUG, MailLog


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def text_log(stream: io.StringIO) -> Iterator[MailLog]:
    log = MailLog(stream=stream)
    yield log
    log.close()


def lines_of(log: MailLog, stream: io.StringIO) -> list[str]:
    log.flush()
    return stream.getvalue().splitlines()


def test_text_line_starts_with_time_level_and_queue_id(
    text_log: MailLog, stream: io.StringIO
) -> None:
    text_log.event("accepted", queue_id="04VXV7VFB4DPY", sender="<a@b.example>", size=123)

    [line] = lines_of(text_log, stream)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info 04VXV7VFB4DPY: accepted "
        r"sender=<a@b.example> size=123",
        line,
    )


def test_text_values_with_spaces_quotes_or_equals_are_quoted(
    text_log: MailLog, stream: io.StringIO
) -> None:
    text_log.event("reject", reply="554 5.7.1 Relay denied", helo='a"b', pair="k=v", empty="")

    [line] = lines_of(text_log, stream)
    assert line.endswith(' reject reply="554 5.7.1 Relay denied" helo="a\\"b" pair="k=v" empty=""')


def test_text_values_cannot_forge_a_second_line(text_log: MailLog, stream: io.StringIO) -> None:
    text_log.event("connect", helo="x\rfake info: accepted", other="y\nz")

    [line] = lines_of(text_log, stream)
    assert 'helo="x\\rfake info: accepted"' in line
    assert 'other="y\\nz"' in line


def test_none_fields_are_left_out(text_log: MailLog, stream: io.StringIO) -> None:
    text_log.event("disconnect", client="[192.0.2.1]:25", auth=None)

    [line] = lines_of(text_log, stream)
    assert line.endswith(" disconnect client=[192.0.2.1]:25")


def test_json_format_is_one_object_per_line(stream: io.StringIO) -> None:
    log = MailLog(fmt="json", stream=stream)
    try:
        log.event("accepted", queue_id="04VXV7VFB4DPY", size=123, note="two words")
        log.warning("slow", seconds=1.5)
        lines = lines_of(log, stream)
    finally:
        log.close()

    first, second = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("time"))
    assert first == {
        "level": "info",
        "event": "accepted",
        "queue_id": "04VXV7VFB4DPY",
        "size": 123,
        "note": "two words",
    }
    assert {k: second[k] for k in ("level", "event", "seconds")} == {
        "level": "warning",
        "event": "slow",
        "seconds": 1.5,
    }


def test_events_below_the_level_are_not_written(stream: io.StringIO) -> None:
    log = MailLog(level="warning", stream=stream)
    try:
        log.event("detail", DEBUG)
        log.event("connect")
        log.warning("slow")
        log.error("broken")
        lines = lines_of(log, stream)
    finally:
        log.close()

    assert [line.split(" ")[1:3] for line in lines] == [["warning", "slow"], ["error", "broken"]]


def test_flush_waits_until_everything_logged_is_written(
    text_log: MailLog, stream: io.StringIO
) -> None:
    for n in range(1000):
        text_log.event("line", n=n)

    text_log.flush()

    assert len(stream.getvalue().splitlines()) == 1000


def test_file_gets_the_same_lines_as_the_stream(tmp_path: Path, stream: io.StringIO) -> None:
    path = tmp_path / "mail.log"
    log = MailLog(stream=stream, file=path)
    try:
        log.event("connect", client="[192.0.2.1]:25")
        log.flush()
    finally:
        log.close()

    assert path.read_text() == stream.getvalue() != ""
    assert path.stat().st_mode & 0o777 == 0o600


def test_reopen_after_rename_writes_to_a_new_file(tmp_path: Path, stream: io.StringIO) -> None:
    """What logrotate does: move the file away, then SIGUSR1."""
    path = tmp_path / "mail.log"
    log = MailLog(stream=stream, file=path)
    try:
        log.event("before")
        log.flush()
        path.rename(tmp_path / "mail.log.1")

        log.reopen()
        log.event("after")
        log.flush()
    finally:
        log.close()

    assert " before" in (tmp_path / "mail.log.1").read_text()
    assert " after" not in (tmp_path / "mail.log.1").read_text()
    assert " after" in path.read_text()


def test_failed_reopen_keeps_logging_to_the_old_file(tmp_path: Path, stream: io.StringIO) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "mail.log"
    log = MailLog(stream=stream, file=path)
    try:
        moved = tmp_path / "old-logs"
        logs.rename(moved)  # the directory is gone: the new file cannot be created

        log.reopen()
        log.event("after")
        log.flush()
    finally:
        log.close()

    written = (moved / "mail.log").read_text()
    assert "log-reopen-failed" in written
    assert " after" in written


def test_exception_includes_the_traceback(text_log: MailLog, stream: io.StringIO) -> None:
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        text_log.exception("housekeeping-failed", job="purge")

    text = "\n".join(lines_of(text_log, stream))
    assert " error housekeeping-failed job=purge\nTraceback (most recent call last):" in text
    assert "RuntimeError: disk on fire" in text


def test_a_stalled_reader_cannot_grow_the_queue_and_drops_are_reported_once_it_reads() -> None:
    """stderr a pipe nobody reads (a stalled terminal, a stuck journald) and a flood running:
    the queue stays within its bound, `event` never waits, and once the reader reads again
    one line says how many lines were dropped; every line is either written or counted."""
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w", encoding="utf-8")
    log = MailLog(stream=stream, max_queued=100)
    most_queued = 0

    def flood() -> None:
        nonlocal most_queued
        for n in range(20_000):
            log.event("reject", n=n, reply="554 5.7.1 <a@b.example>: Relay access denied")
            most_queued = max(most_queued, log.queued)

    flooder = threading.Thread(target=flood)
    flooder.start()
    flooder.join(timeout=30)
    assert not flooder.is_alive(), "event() blocked on a stalled writer"
    assert most_queued <= 100
    assert log.dropped > 0

    with os.fdopen(read_fd, "r", encoding="utf-8") as reader:
        written, reported = 0, 0
        deadline = time.monotonic() + 30
        while written + reported < 20_000 and time.monotonic() < deadline:
            line = reader.readline()
            if " reject " in line:
                written += 1
            elif " log-lines-dropped lines=" in line:
                reported += int(line.split("lines=")[1].split()[0])
                assert " warning " in line
        log.close()
    stream.close()
    assert written + reported == 20_000
    assert reported == log.dropped
