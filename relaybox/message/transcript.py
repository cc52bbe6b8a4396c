"""Recording of an SMTP dialogue, with secrets removed before anything is kept or published.

A `Transcript` holds one session's lines (bounded, so a chatty client cannot grow it without
limit) and mirrors each line to the event bus while someone is listening. It never sees message
bodies: DATA is recorded as its size. AUTH arguments and continuation lines are replaced by
`<secret>` here, at the only door into the transcript, so no later reader can leak them.
"""

from __future__ import annotations

import ssl
from typing import NamedTuple

from relaybox.clock import Clock, system_clock
from relaybox.events import EventBus, SessionLine

__all__ = ["Transcript", "TranscriptLine", "redact_command", "tls_summary"]

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


class TranscriptLine(NamedTuple):
    """One line of an SMTP dialogue (a tuple: sessions make many of these)."""

    at: float
    direction: str
    """`C` client, `S` server, `-` a note from relaybox."""
    text: str

    def encode(self) -> str:
        # Lines are stored joined by newlines: one inside a line would make it two on decode.
        text = self.text.replace("\r", "\\r").replace("\n", "\\n")
        return f"{self.at:.3f} {self.direction} {text}"

    @classmethod
    def decode(cls, line: str) -> TranscriptLine:
        at, direction, text = (line.split(" ", 2) + ["", ""])[:3]
        return cls(float(at), direction, text)


class Transcript:
    """The lines of one session, newest last."""

    def __init__(
        self,
        session_id: str,
        bus: EventBus | None = None,
        clock: Clock = system_clock,
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
        if not text.isascii():
            text = _utf8_text(text)
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


def tls_summary(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """`TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits)`: what the transcript and the message record."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "TLS"
    if cipher is None:
        return version
    name, _, bits = cipher
    return f"{version} {name} ({bits} bits)"


def _utf8_text(text: str) -> str:
    """`text` as UTF-8 can store it: bytes a client sent that were not UTF-8 (which arrive as
    lone surrogates) are shown as `\\xNN`, so one bad line cannot make a session unstorable."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text
