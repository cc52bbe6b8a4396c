"""Recording of an SMTP dialogue, with secrets removed before anything is kept or published.

A `Transcript` holds one session's lines (bounded, so a chatty client cannot grow it without
limit), mirrors each line to the event bus while someone is listening, and can shrink itself to
a summary of a few KB (`summary`) for sessions that brought no message. It never sees message
bodies: DATA is recorded as its size. AUTH arguments and continuation lines are replaced by
`<secret>` here, at the only door into the transcript, so no later reader can leak them.
"""

from __future__ import annotations

import re
import ssl
from collections import Counter, deque
from typing import NamedTuple

from relaybox.clock import Clock, system_clock
from relaybox.events import EventBus, SessionLine

__all__ = ["Transcript", "TranscriptLine", "redact_command", "shortened", "tls_summary"]

MAX_LINES = 2000
MAX_LINE_CHARS = 1000
MAX_KEPT_CHARS = 262_144
"""Characters of lines kept per session at most (with MAX_LINES): 200 connections of NOOP
floods then hold about 50 MB, not 400. Lines past it are counted, as past MAX_LINES."""

SUMMARY_HEAD = 10
"""A summary keeps a session's first lines: the greeting, EHLO and the first refusal..."""
SUMMARY_TAIL = 6
"""...and its last ones: how it ended (a 421, a QUIT, a hang-up)."""
SUMMARY_ERRORS = 4
"""Distinct error replies a summary shows with the command that drew each one first."""
SUMMARY_LINE_BYTES = 200
"""A summary line's text in UTF-8 bytes at most, before the note of its full length."""
_MAX_VERBS = 12
"""Command verbs counted by name in a summary; the rest (junk verbs) count as `other`."""
_VERBS = frozenset(
    "HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY EXPN HELP STARTTLS AUTH".split()
)

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
        """Lines dropped after MAX_LINES or MAX_KEPT_CHARS (noted when the session ends)."""
        self.total = 0
        """Lines seen, kept or not."""
        self._kept_chars = 0
        self.tail: deque[TranscriptLine] = deque(maxlen=SUMMARY_TAIL)
        """The last lines seen, kept even past MAX_LINES, for the summary's end."""
        self.commands: Counter[str] = Counter()
        """Client commands by verb (junk verbs as `other`, so the counter stays small)."""
        self.errors: Counter[str] = Counter()
        """Error replies (4xx, 5xx) by code and enhanced code, e.g. `554 5.7.1`."""
        self.first_errors: dict[str, tuple[TranscriptLine | None, TranscriptLine]] = {}
        """For the first SUMMARY_ERRORS distinct error codes: the client line before the first
        such reply, and the reply. What an admin reads to see why a stranger was refused."""
        self._last_client: TranscriptLine | None = None
        self.expect_secret = False
        """True while the next client line is an AUTH continuation (RFC 4954 §4): never kept."""
        self._bus = bus
        self._clock = clock

    def _add(self, direction: str, text: str) -> None:
        if not text.isascii():
            text = _utf8_text(text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + _cut_note(len(text))
        line = TranscriptLine(self._clock(), direction, text)
        self.total += 1
        self.tail.append(line)
        if len(self.lines) < MAX_LINES and self._kept_chars < MAX_KEPT_CHARS:
            self.lines.append(line)
            self._kept_chars += len(text)
        else:
            self.truncated += 1
        if direction == "C":
            self._last_client = line
            verb = text.partition(" ")[0].upper()
            self.commands[verb if verb in _VERBS else "other"] += 1
        elif direction == "S" and text[:1] in ("4", "5"):
            code = _error_code(text)
            self.errors[code] += 1
            if code not in self.first_errors and len(self.first_errors) < SUMMARY_ERRORS:
                self.first_errors[code] = (self._last_client, line)
        bus = self._bus
        if bus is not None and bus.wants(SessionLine):
            bus.publish(SessionLine(self.session_id, direction, text, at=line.at))  # type: ignore[arg-type]

    @property
    def last_command(self) -> str:
        """The client's latest command as recorded (secrets removed, cut at MAX_LINE_CHARS)."""
        return self._last_client.text if self._last_client is not None else ""

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

    def summary(self) -> list[TranscriptLine]:
        """What is stored of a session that brought no message: a few KB whatever it sent.

        The first SUMMARY_HEAD and last SUMMARY_TAIL lines, and in between one note of what
        was left out (how many lines, the commands by verb, the error replies by code) and,
        for each error code not already shown, the command that first drew it and the reply.
        Every line is cut to SUMMARY_LINE_BYTES, so the whole is at most about 6 KB.
        """
        if self.total <= SUMMARY_HEAD + SUMMARY_TAIL:
            return [_clipped(line) for line in self.lines]
        head = self.lines[:SUMMARY_HEAD]
        tail = list(self.tail)
        omitted = self.total - SUMMARY_HEAD - SUMMARY_TAIL
        counts = f"{omitted} lines omitted; commands: " + _counts(self.commands)
        if self.errors:
            counts += f"; error replies: {_counts(self.errors)}"
        # Our own notes are not clipped: their text is bounded by the counters' few keys.
        middle = [TranscriptLine(tail[0].at, "-", "... " + counts)]
        shown = {id(line) for line in (*head, *tail)}
        for code, (command, reply) in self.first_errors.items():
            if id(reply) in shown:
                continue
            middle.append(TranscriptLine(reply.at, "-", f"first {code} reply, to:"))
            middle.extend(_clipped(line) for line in (command, reply) if line is not None)
        return [*map(_clipped, head), *middle, *map(_clipped, tail)]


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


def _error_code(reply: str) -> str:
    """`554 5.7.1` from `554 5.7.1 <a@b>: Relay access denied` (RFC 3463 enhanced code when
    there is one): our own reply codes, so a client cannot make this set grow."""
    code, enhanced = reply[:3], reply[4:].partition(" ")[0]
    return f"{code} {enhanced}" if _ENHANCED.fullmatch(enhanced) else code


def _counts(counter: Counter[str]) -> str:
    """`NOOP ×1200, RCPT ×30, other ×2`: the most frequent first, at most _MAX_VERBS named."""
    common = counter.most_common()
    named = [f"{key} ×{n}" for key, n in common[:_MAX_VERBS]]
    rest = sum(n for _, n in common[_MAX_VERBS:])
    return ", ".join(named + ([f"others ×{rest}"] if rest else [])) or "none"


_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_CUT_NOTE = re.compile(r"\.\.\. \(\d+ characters\)$")


def _cut_note(length: int) -> str:
    """What ends a line that was cut: its length before the cut."""
    return f"... ({length} characters)"


def _clipped(line: TranscriptLine) -> TranscriptLine:
    """`line` with its text cut to SUMMARY_LINE_BYTES of UTF-8 (and a note of its length)."""
    text = shortened(line.text)
    return line if text is line.text else line._replace(text=text)


def shortened(text: str, max_bytes: int = SUMMARY_LINE_BYTES) -> str:
    """`text` of a transcript line cut to `max_bytes` of UTF-8, with a note of its length
    (its length as the client sent it, when the transcript had cut it already)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    cut = data[:max_bytes].decode("utf-8", "ignore")
    # A line cut already at MAX_LINE_CHARS says its true length at its end: keep that one.
    length = _CUT_NOTE.search(text) if len(text) > MAX_LINE_CHARS else None
    return f"{cut}{length[0] if length else _cut_note(len(text))}"


def _utf8_text(text: str) -> str:
    """`text` as UTF-8 can store it: bytes a client sent that were not UTF-8 (which arrive as
    lone surrogates) are shown as `\\xNN`, so one bad line cannot make a session unstorable."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text
