"""The mail log: one line per event (connect, accept, reject, ...), for people or as JSON.

Events are queued as plain tuples and formatted and written by a background thread, so a slow
terminal or disk never stalls the event loop and a busy relay pays little per line. The queue is
bounded: when the writer cannot keep up (stderr a pipe nobody reads), lines are dropped and
counted, and one line says how many once it can write again. The optional log file is reopened
on SIGUSR1 so logrotate can move it away.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from relaybox.clock import Clock, system_clock
from relaybox.untrusted import UNSAFE, visible

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "MailLog", "setup_logging"]

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
    ) -> None:
        self.level = _LEVELS[level]
        self.clock = clock
        """What stamps each line: the engine's clock, so a log read beside events agrees."""
        self._format = format_json if fmt == "json" else format_text
        self._stream = stream if stream is not None else sys.stderr
        self._path = file
        self._file: TextIO | None = self._open_file() if file is not None else None
        self._reopen = threading.Event()
        self._queue: queue.SimpleQueue[_Record | None] = queue.SimpleQueue()
        self._max_queued = max_queued
        self._counts = threading.Lock()
        """Guards the two counts below (held for an addition, never while writing)."""
        self._queued = 0
        self._unreported = 0
        """Lines dropped since the last `log-lines-dropped` line."""
        self.dropped = 0
        """Lines dropped since the log was opened (for tests and metrics)."""
        self._thread = threading.Thread(target=self._write_loop, name="maillog", daemon=True)
        self._thread.start()

    def _open_file(self) -> TextIO:
        assert self._path is not None
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

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
                    new = self._open_file()
                except OSError as exc:
                    # Keep writing to the old file rather than lose the writer thread.
                    fields = {"file": str(self._path), "error": str(exc)}
                    failed: _Record = (self.clock(), ERROR, "log-reopen-failed", fields)
                    lines.append(self._format(failed) + "\n")
                else:
                    old, self._file = self._file, new
                    old.close()
            text = "".join(lines)
            flushed = [r[3]["_flushed"] for r in batch if r is not None and "_flushed" in r[3]]
            if text:
                for out in (self._stream, self._file):
                    if out is None:
                        continue
                    try:
                        out.write(text)
                        out.flush()
                    except (OSError, ValueError):
                        pass  # a closed stderr or a full disk must not kill the relay
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
            self._file = None


def setup_logging(
    *,
    fmt: str = "text",
    level: str = "info",
    file: Path | None = None,
    stream: TextIO | None = None,
) -> MailLog:
    """The engine's log: stderr (or `stream`) always, `file` too when given."""
    # aiosmtpd logs every command line at INFO; our transcript does that job, without secrets.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    return MailLog(fmt=fmt, level=level, file=file, stream=stream)
