"""The DATA reader: finds where the client's message ends and what it is, from bytes fed in.

Sans-I/O: `DataReader.feed(bytes)` says "more" (None) or returns a `DataEnd`, and the answer
depends only on the bytes, never on how TCP split them (SMTP smuggling hides in such splits).
It reads no socket and sends no reply; `inbound.server` does both.

The rules, for every line of the DATA content in the order sent:
- RFC 5321 §4.1.1.4: only a line `.<CR><LF>` whose previous line the client ended with
  `<CR><LF>` (or that comes first) ends DATA. A bare LF or CR anywhere before it refuses the
  message and ends the session (CVE-2023-51764 class). With `bare_lf = "normalize"` a bare LF
  ends a line and is stored as CRLF, but a line it ended cannot be followed by the terminator:
  `x<LF>.<CR><LF>` is message content, as with Postfix's `smtpd_forbid_bare_newline =
  normalize`. A bare CR is refused in both modes.
- RFC 5321 §4.5.2: a leading dot was added by the client (dot-stuffing); it is taken away.
- RFC 5321 §4.2.5 lets a server answer only after the terminator, so a NUL, a line over the
  line limit (RFC 5322 §2.1.1) or content over the size limit (RFC 1870) refuses the message
  once DATA has ended; the first such line decides the reply, and the session goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relaybox.message.replies import Reply

__all__ = ["DataEnd", "DataReader"]


@dataclass(frozen=True)
class DataEnd:
    """How DATA ended: a message to store, or the reply that refuses it."""

    content: list[bytes] = field(repr=False)
    """The message, unstuffed, CRLF line ends; its parts joined are the message (empty when
    refused)."""
    size: int
    """Octets of message content seen (unstuffed, CRLF line ends), refused or not."""
    body_8bit: bool
    """Whether the content has bytes over 127 (RFC 6152)."""
    rest: bytes
    """What the client sent after the terminator: pipelined commands (RFC 2920)."""
    refusal: str | None = None
    """The reply refusing the message, or None to store it."""
    close: bool = False
    """True when the session cannot safely go on (bare CR or LF): `rest` is then empty and the
    connection must be closed after the refusal."""


class DataReader:
    """Reads one DATA section: feed it bytes until it returns a `DataEnd`."""

    def __init__(
        self,
        *,
        bare_lf: Literal["reject", "normalize"],
        max_message_size: int,
        max_line_length: int,
    ) -> None:
        """Set the rules of the listener and the limits.

        Args:
            bare_lf: `reject` refuses a bare LF; `normalize` stores it as CRLF.
            max_message_size: Largest message accepted, in octets.
            max_line_length: Longest line accepted, in octets without its line end.
        """
        self._normalize = bare_lf == "normalize"
        self._max_size = max_message_size
        self._max_line = max_line_length
        self._pending = b""
        """The start of a line whose LF has not come yet (bounded, see `_squash`)."""
        self._squashed = False
        """The pending line grew past the line limit and only its last byte is kept."""
        self._squashed_len = 0
        self._squashed_dot = False
        self._squashed_nul = False
        self._squashed_bare_cr = False
        self._prev_crlf = True
        """Whether the last complete line ended with CRLF as sent; DATA's own CRLF counts."""
        self._parts: list[bytes] = []
        self._size = 0
        self._body_8bit = False
        self._refusal: str | None = None
        self._end: DataEnd | None = None

    def feed(self, data: bytes) -> DataEnd | None:
        """Take the next bytes the client sent.

        Returns:
            None while DATA goes on, then the `DataEnd` (also for any later call: bytes fed
            after the end are not read).
        """
        if self._end is not None:
            return self._end
        if self._squashed:
            newline = data.find(b"\n")
            if newline < 0:
                self._squash(data)
                return None
            self._finish_squashed(data[: newline + 1])
            if self._end is not None:
                return self._end
            data = data[newline + 1 :]
        buffer = self._pending + data if self._pending else data
        cut = buffer.rfind(b"\n") + 1
        if cut == 0:
            self._pending = buffer
            if len(buffer) > self._max_line + 2:
                self._pending = b""
                self._squash(buffer)
            return None
        self._pending = buffer[cut:]
        self._lines(buffer[:cut])
        if self._end is None and len(self._pending) > self._max_line + 2:
            pending, self._pending = self._pending, b""
            self._squash(pending)
        return self._end

    # -------------------------------------------------------------- complete lines

    def _lines(self, block: bytes) -> None:
        """Read a run of complete lines (`block` starts at a line start and ends with LF)."""
        if self._prev_crlf and block.startswith(b".\r\n"):
            end = 0
        else:
            end = block.find(b"\r\n.\r\n")
            if end >= 0:
                end += 2
        content = block if end < 0 else block[:end]
        if content:
            fatal = self._bare_line_end(content)
            if fatal is not None:
                bad, reply = fatal
                good = content[: content.rfind(b"\n", 0, bad) + 1]  # the lines before it
                if self._normalize:
                    good = good.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                self._take(good)
                self._finish(reply, close=True)
                return
            self._prev_crlf = content.endswith(b"\r\n")
            if self._normalize and content.count(b"\n") != content.count(b"\r\n"):
                content = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            self._take(content)
        if end >= 0:
            self._finish(self._refusal, rest=block[end + 3 :] + self._pending)

    def _bare_line_end(self, content: bytes) -> tuple[int, str] | None:
        """Where the first bare CR or (unless normalizing) bare LF in `content` is, and the
        refusal for it."""
        crlf = content.count(b"\r\n")
        bare_lf = not self._normalize and content.count(b"\n") != crlf
        bare_cr = content.count(b"\r") != crlf
        if not bare_lf and not bare_cr:
            return None
        first_lf = _first_bare_lf(content) if bare_lf else len(content)
        first_cr = _first_bare_cr(content) if bare_cr else len(content)
        if first_cr < first_lf:
            return first_cr, Reply.bare_line_ending("CR")
        return first_lf, Reply.bare_line_ending("LF")

    def _take(self, content: bytes) -> None:
        """Add CRLF-ended lines to the message, or note the first reason to refuse it."""
        # RFC 5321 §4.5.2: a leading dot was added by the client; take it away.
        unstuffed = content[1:] if content.startswith(b".") else content
        unstuffed = unstuffed.replace(b"\r\n.", b"\r\n")
        if self._refusal is not None:
            self._size += len(unstuffed)  # refused already: only count what goes by
            return
        if (
            b"\0" not in content
            and self._size + len(unstuffed) <= self._max_size
            and (
                len(content) <= self._max_line
                or max(map(len, content.split(b"\n"))) <= self._max_line + 1  # + its CR
            )
        ):
            self._size += len(unstuffed)
            self._body_8bit = self._body_8bit or not unstuffed.isascii()
            self._parts.append(unstuffed)
            return
        for line in content.splitlines(keepends=True):
            unstuffed = line[1:] if line.startswith(b".") else line
            self._line(unstuffed, len(line) - 2, len(unstuffed), b"\0" in line)

    def _line(self, unstuffed: bytes | None, length: int, size: int, nul: bool) -> None:
        """Judge one line: `length` octets before its line end, `size` octets once unstuffed
        with a CRLF end, `unstuffed` its bytes (None for a squashed line: always too long)."""
        self._size += size
        if self._refusal is not None:
            return
        if nul:
            self._refusal = Reply.NUL_IN_DATA
        elif length > self._max_line or unstuffed is None:
            self._refusal = Reply.line_too_long(self._max_line)
        elif self._size > self._max_size:
            self._refusal = Reply.size_exceeded(self._max_size)
        else:
            self._body_8bit = self._body_8bit or not unstuffed.isascii()
            self._parts.append(unstuffed)
            return
        self._parts.clear()  # refused: keep nothing in memory

    # -------------------------------------------------------------- lines over the limit

    def _squash(self, data: bytes) -> None:
        """Keep a line over the line limit as a few facts and its last byte, not its bytes.

        The line is refused anyway; what still matters when its LF comes is what `_lines`
        would have seen in it: its length, its first byte (a stuffing dot), whether it holds
        a NUL or a bare CR (every CR but the last byte's is bare: no LF is in `data`).
        """
        if self._squashed:
            text = self._pending + data
        else:
            text = data
            self._squashed = True
            self._squashed_len = 0
            self._squashed_dot = data.startswith(b".")
            self._squashed_nul = False
            self._squashed_bare_cr = False
        self._squashed_len += len(data)
        self._squashed_nul = self._squashed_nul or b"\0" in data
        self._squashed_bare_cr = self._squashed_bare_cr or b"\r" in text[:-1]
        self._pending = text[-1:]

    def _finish_squashed(self, tail: bytes) -> None:
        """The LF of a squashed line came (`tail` ends with it): judge the line as a whole."""
        text = self._pending + tail  # the held last byte, then the rest of the line
        self._squashed = False
        self._pending = b""
        crlf_end = text.endswith(b"\r\n")
        bare_cr = self._squashed_bare_cr or b"\r" in text[:-2]
        if bare_cr or (not crlf_end and not self._normalize):
            self._finish(Reply.bare_line_ending("CR" if bare_cr else "LF"), close=True)
            return
        self._prev_crlf = crlf_end
        length = self._squashed_len + len(tail) - (2 if crlf_end else 1)
        size = length + 2 - (1 if self._squashed_dot else 0)
        self._line(None, length, size, self._squashed_nul or b"\0" in tail)

    def _finish(self, refusal: str | None, *, rest: bytes = b"", close: bool = False) -> None:
        parts = [] if refusal is not None else self._parts
        self._end = DataEnd(parts, self._size, self._body_8bit, rest, refusal, close)
        self._parts = []
        self._pending = b""


def _first_bare_lf(content: bytes) -> int:
    """Index of the first LF not preceded by CR (the caller knows there is one)."""
    at = content.find(b"\n")
    while at >= 0 and at > 0 and content[at - 1 : at] == b"\r":
        at = content.find(b"\n", at + 1)
    return at if at >= 0 else len(content)


def _first_bare_cr(content: bytes) -> int:
    """Index of the first CR not followed by LF (the caller knows there is one)."""
    at = content.find(b"\r")
    while at >= 0 and content[at + 1 : at + 2] == b"\n":
        at = content.find(b"\r", at + 1)
    return at if at >= 0 else len(content)
