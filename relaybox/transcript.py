"""Recording of an SMTP dialogue, with secrets removed before anything is kept or published.

A `Transcript` holds one session's lines (bounded, so a chatty client cannot grow it without
limit) and mirrors each line to the event bus while someone is listening. It never sees message
bodies: DATA is recorded as its size. AUTH arguments and continuation lines are replaced by
`<secret>` here, at the only door into the transcript, so no later reader can leak them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .events import EventBus, SessionLine
from .spool import TranscriptLine

__all__ = ["Transcript", "redact_command"]

MAX_LINES = 2000
MAX_LINE_CHARS = 1000

_SECRET = "<secret>"


def redact_command(line: str) -> str:
    """Hide credentials in a client command line.

    `AUTH PLAIN <base64>` keeps the mechanism and drops the initial response (RFC 4954 §4);
    other commands are returned unchanged.
    """
    verb, _, rest = line.partition(" ")
    if verb.upper() == "AUTH":
        mechanism, _, initial = rest.strip().partition(" ")
        return f"{verb} {mechanism} {_SECRET}" if initial else f"{verb} {mechanism}"
    return line


class Transcript:
    """The lines of one session, newest last."""

    def __init__(
        self,
        session_id: str,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session_id = session_id
        self.lines: list[TranscriptLine] = []
        self.truncated = 0
        """Lines dropped after MAX_LINES (the count is noted when the session ends)."""
        self.expect_secret = False
        """True while the next client line is an AUTH continuation (RFC 4954 §4): never kept."""
        self._bus = bus
        self._clock = clock

    def _add(self, direction: str, text: str) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"... ({len(text)} characters)"
        line = TranscriptLine(self._clock(), direction, text)
        if len(self.lines) < MAX_LINES:
            self.lines.append(line)
        else:
            self.truncated += 1
        bus = self._bus
        if bus is not None and bus.wants(SessionLine):
            bus.publish(SessionLine(self.session_id, direction, text, at=line.at))  # type: ignore[arg-type]

    def client(self, line: str) -> None:
        """A command from the client (AUTH secrets removed)."""
        if self.expect_secret:
            self.expect_secret = False
            self._add("C", _SECRET)
        else:
            self._add("C", redact_command(line))

    def server(self, line: str) -> None:
        """A reply we sent."""
        self._add("S", line)

    def note(self, text: str) -> None:
        """Something relaybox observed that is not a protocol line (TLS, DATA size, drop)."""
        self._add("-", text)
