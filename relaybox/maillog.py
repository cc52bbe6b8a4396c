"""The mail log: one line per event (connect, accept, reject, ...), for people or as JSON.

Events are queued as plain tuples and formatted and written by a background thread, so a slow
terminal or disk never stalls the event loop and a busy relay pays little per line. The queue is
bounded: when the writer cannot keep up (stderr a pipe nobody reads), lines are dropped and
counted, and one line says how many once it can write again. The optional log file is rotated
by size, and reopened on SIGUSR1 so logrotate can move it away; a file that cannot be written
(a full disk) costs its lines, never the relay, and is reported once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from relaybox.clock import Clock, system_clock
from relaybox.untrusted import UNSAFE, visible

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "LogFile", "MailLog", "setup_logging"]

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}
_NAMES = {v: k for k, v in _LEVELS.items()}

_Record = tuple[float, int, str, dict[str, Any]]

MAX_QUEUED = 10_000
"""Lines waiting for the writer at most (a few MB). A stalled stderr once let a flood of
refusals grow the queue from 49 to 589 MB in 60 s; past this, lines are dropped and counted."""

# What `json.dumps(..., ensure_ascii=False)` leaves raw but a terminal must not get (DEL, C1
# controls, bidi overrides) or UTF-8 cannot write (a lone surrogate would make the writer drop
# the whole batch): as JSON's own escapes, so a line still parses. They occur only in strings.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in UNSAFE if c >= 0x7F}


def format_text(record: _Record) -> str:
    """`2026-11-27T01:29:05Z info 04VXV7VFB4DPY: accepted sender=<a@b> size=123`."""
    at, level, event, fields = record
    head = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)) + " " + _NAMES.get(level, "info")
    queue_id = fields.get("queue_id")
    parts = [f"{head} {queue_id}:" if queue_id else head, event]
    for key, value in fields.items():
        if key in ("queue_id", "traceback") or value is None:
            continue
        text = str(value)
        # Quote anything a reader could mistake for a separator or a new line: values come
        # from clients (HELO, addresses), and a bare CR or LF would let them forge log lines.
        if not text or any(c in ' "=' or not c.isprintable() for c in text):
            text = json.dumps(text, ensure_ascii=False).translate(_JSON_ESCAPES)
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    if "traceback" in fields:
        # A traceback can quote what a client sent: each of its lines made visible.
        trace = str(fields["traceback"]).rstrip().split("\n")
        line += "\n" + "\n".join(visible(t) for t in trace)
    return line


def format_json(record: _Record) -> str:
    """One JSON object per line: time, level, event, then the event's fields."""
    at, level, event, fields = record
    obj: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
        + f".{int(at * 1000) % 1000:03d}Z",
        "level": _NAMES.get(level, "info"),
        "event": event,
    }
    obj.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(obj, ensure_ascii=False, default=str).translate(_JSON_ESCAPES)


class LogFile:
    """The log file, written by the log's writer thread only: appended to with plain `write`
    calls (no buffer to hold half a batch after a failed write), rotated by size."""

    def __init__(self, path: Path, max_size: int = 0, keep: int = 0) -> None:
        self.path = path
        self.max_size = max_size
        """Rotate once the file reaches this many bytes (0: never; logrotate's job then)."""
        self.keep = keep
        """Old files kept by rotation: `relaybox.log.1` (the newest) to `.{keep}`."""
        self._fd: int | None = None
        self.size = 0

    def open(self) -> None:
        """(Re)open the file for appending; a symbolic link is refused (O_NOFOLLOW).
        Raises OSError, leaving the file open before (if any) in use."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        old, self._fd = self._fd, fd
        self.size = os.fstat(fd).st_size
        if old is not None:
            os.close(old)

    def append(self, data: bytes) -> None:
        """Write all of `data` (opening the file first if it is not open), in a new file when
        it would take this one past `max_size`; raises OSError."""
        if self._fd is None:
            self.open()
        if self.max_size and self.size and self.size + len(data) > self.max_size:
            with contextlib.suppress(OSError):
                self._rotate()  # (failing, the file grows on: lines matter more than its size)
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self.size += written
            view = view[written:]

    def _rotate(self) -> None:
        """`relaybox.log` becomes `relaybox.log.1`, each older one moves up, the oldest goes."""
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.keep:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self.open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MailLog:
    """What the engine logs through: `log.event("accepted", queue_id=..., size=...)`."""

    def __init__(
        self,
        *,
        fmt: str = "text",
        level: str = "info",
        file: Path | None = None,
        stream: TextIO | None = None,
        clock: Clock = system_clock,
        max_queued: int = MAX_QUEUED,
        max_size: int = 0,
        keep: int = 0,
        stream_too: bool = True,
        must_open: bool = True,
    ) -> None:
        """A log writing to `stream` (default stderr) and, when given, to `file`.

        Args:
            max_size: Rotate `file` at this many bytes (0: never), keeping `keep` old ones.
            stream_too: With a `file`, whether `stream` gets every line too (False: only a
                problem with the file, once), as Postfix's `maillog_file` replaces syslog.
            must_open: Raise OSError when `file` cannot be opened now; False: carry on
                without it (said once, see `on_problem`) and try it again at each batch.
        """
        self.level = _LEVELS[level]
        self.clock = clock
        """What stamps each line: the engine's clock, so a log read beside events agrees."""
        self._format = format_json if fmt == "json" else format_text
        self._stream = stream if stream is not None else sys.stderr
        self._stream_too = stream_too or file is None
        self._path = file
        self._file = LogFile(file, max_size, keep) if file is not None else None
        self._failure: str | None = None
        """Why the file cannot be written now (None while it can)."""
        self._lost = 0
        """Lines the file missed since `_failure` began."""
        self._counts = threading.Lock()
        """Guards the counts of queued and dropped lines, and who hears of a problem with the
        file (held for an assignment, never while writing)."""
        self._on_problem: Callable[[str], None] | None = None
        self._problem_unheard: str | None = None
        """A problem found before anyone asked to hear of it (`on_problem`)."""
        if self._file is not None:
            try:
                self._file.open()
            except OSError as exc:
                if must_open:
                    raise
                self._file_failed(exc, [])
        self._reopen = threading.Event()
        self._queue: queue.SimpleQueue[_Record | None] = queue.SimpleQueue()
        self._max_queued = max_queued
        self._queued = 0
        self._unreported = 0
        """Lines dropped since the last `log-lines-dropped` line."""
        self.dropped = 0
        """Lines dropped since the log was opened (for tests and metrics)."""
        self._thread = threading.Thread(target=self._write_loop, name="maillog", daemon=True)
        self._thread.start()

    @property
    def file(self) -> Path | None:
        """Where the log is written besides (or instead of) the stream."""
        return self._path

    def on_problem(self, callback: Callable[[str], None]) -> None:
        """Call `callback(text)` (from the writer thread) once each time the log file stops
        taking lines: a full disk, a file or folder made unwritable. A problem found before
        this was called is passed on now."""
        with self._counts:  # (the writer thread may be finding a problem right now)
            self._on_problem = callback
            pending, self._problem_unheard = self._problem_unheard, None
        if pending is not None:
            callback(pending)

    def _file_failed(self, exc: OSError, lines: list[str]) -> None:
        """The file refused a write: count the lines lost; the first time, say so (on the
        stream, and to `on_problem`)."""
        self._lost += len(lines)
        if self._failure is not None:
            return
        self._failure = exc.strerror or str(exc)
        text = (
            f"cannot write the log file {self._path}: {self._failure}; the relay keeps "
            "running, and the file gets its lines again once it can be written"
        )
        fields = {"file": str(self._path), "error": self._failure}
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(self._format((self.clock(), ERROR, "log-file-failed", fields)))
            self._stream.write("\n")
            self._stream.flush()
        with self._counts:
            callback = self._on_problem
            if callback is None:
                self._problem_unheard = text
        if callback is not None:
            callback(text)

    def _write_file(self, lines: list[str]) -> None:
        assert self._file is not None
        if self._failure is not None:
            fields = {"file": str(self._path), "lines_lost": self._lost, "error_was": self._failure}
            note = self._format((self.clock(), WARNING, "log-file-resumed", fields)) + "\n"
            lines = [note, *lines]
        data = "".join(lines).encode("utf-8", "backslashreplace")
        try:
            self._file.append(data)
        except OSError as exc:
            self._file_failed(exc, lines[1:] if self._failure is not None else lines)
            return
        self._failure, self._lost = None, 0

    def event(self, name: str, level: int = INFO, **fields: Any) -> None:
        """Log one event with its fields (None values are left out). Never blocks: when
        MAX_QUEUED lines already wait for the writer, this one is dropped and counted."""
        if level < self.level:
            return
        with self._counts:
            if self._queued >= self._max_queued:
                self._unreported += 1
                self.dropped += 1
                return
            self._queued += 1
        self._queue.put((self.clock(), level, name, fields))

    @property
    def queued(self) -> int:
        """Lines waiting for the writer (never more than `max_queued`)."""
        return self._queued

    def warning(self, name: str, **fields: Any) -> None:
        self.event(name, WARNING, **fields)

    def error(self, name: str, **fields: Any) -> None:
        self.event(name, ERROR, **fields)

    def exception(self, name: str, **fields: Any) -> None:
        """An error with the traceback of the exception being handled."""
        self.event(name, ERROR, **fields, traceback=traceback.format_exc())

    def set_level(self, level: str) -> None:
        """Log from this level up from now on (a reload changed `[log] level`)."""
        self.level = _LEVELS[level]

    def reopen(self) -> None:
        """Reopen the log file (SIGUSR1, after logrotate moved it)."""
        self._reopen.set()
        self._queue.put((0.0, -1, "", {}))  # wakes the writer (a control record: no time)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything logged so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put((0.0, -1, "", {"_flushed": done}))
        done.wait(timeout)

    def _write_loop(self) -> None:
        while True:
            record = self._queue.get()
            batch = [record]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            lines = []
            for rec in batch:
                if rec is None:
                    stop = True
                elif rec[1] >= 0:
                    lines.append(self._format(rec) + "\n")
            with self._counts:
                # Control records (flush, reopen, stop) were never counted in.
                self._queued -= len(lines)
                dropped, self._unreported = self._unreported, 0
            if dropped:
                # Lines were dropped while this batch waited: they came after it, before
                # whatever is queued next, so this is where their note belongs.
                fields = {"lines": dropped, "note": "the log could not be written fast enough"}
                lines.append(self._format((self.clock(), WARNING, "log-lines-dropped", fields)))
                lines[-1] += "\n"
            if self._reopen.is_set() and self._file is not None:
                self._reopen.clear()
                try:
                    self._file.open()
                except OSError as exc:
                    # Keep writing to the old file rather than lose the writer thread.
                    fields = {"file": str(self._path), "error": str(exc)}
                    failed: _Record = (self.clock(), ERROR, "log-reopen-failed", fields)
                    lines.append(self._format(failed) + "\n")
            flushed = [r[3]["_flushed"] for r in batch if r is not None and "_flushed" in r[3]]
            if lines:
                if self._stream_too:
                    try:
                        self._stream.write("".join(lines))
                        self._stream.flush()
                    except (OSError, ValueError):
                        pass  # a closed stderr must not kill the relay
                if self._file is not None:
                    self._write_file(lines)
            for event in flushed:
                event.set()
            if stop:
                return

    def close(self) -> None:
        """Write out what is queued and stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)
        if self._file is not None:
            self._file.close()


def setup_logging(
    *,
    fmt: str = "text",
    level: str = "info",
    file: Path | None = None,
    stream: TextIO | None = None,
    max_size: int = 0,
    keep: int = 0,
    stream_too: bool = True,
    must_open: bool = True,
) -> MailLog:
    """The engine's log: stderr (or `stream`), `file` too when given (see `MailLog`)."""
    # aiosmtpd logs every command line at INFO; our transcript does that job, without secrets.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    return MailLog(
        fmt=fmt,
        level=level,
        file=file,
        stream=stream,
        max_size=max_size,
        keep=keep,
        stream_too=stream_too,
        must_open=must_open,
    )
