"""Properties of the DATA reader, in both bare-LF modes: every split of the same bytes gives the
same end, and that end is the one a plain line-by-line reading of RFC 5321 gives.

The reference reader below is slow and obvious (one complete line at a time, every rule in the
order `relaybox.inbound.data_reader` documents); the real one is fast and holds only a bounded
part of a line. They must agree on every input, however TCP cuts it.
"""

from __future__ import annotations

from typing import Literal

from hypothesis import given
from hypothesis import strategies as st

from relaybox.inbound.data_reader import DataReader
from relaybox.message.replies import Reply

from .support.properties import budget

Mode = Literal["reject", "normalize"]
MAX_LINE = 20
MAX_SIZE = 200

# Lines that make the rules matter: dots at a line start (stuffing, the terminator), NUL,
# 8-bit text, lengths near and over the limit; mostly ended by CRLF, now and then by a bare LF
# or CR (the smuggling cases) or not at all.
_lines = st.builds(
    lambda dots, text, end: dots + text + end,
    st.sampled_from([b"", b"", b".", b".."]),
    st.sampled_from(
        [
            b"",
            b"a",
            b"Subject: x",
            "é".encode(),
            b"x\0y",
            b"L" * MAX_LINE,
            b"L" * (MAX_LINE + 3),
            b"\0" + b"L" * 2 * MAX_LINE,
            b"L" * 2 * MAX_LINE + b"\r" + b"L",
        ]
    ),
    st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"\r\r\n", b""]),
)
data_sections = st.builds(
    lambda lines, end: b"".join(lines) + end,
    st.lists(_lines, max_size=12),
    st.sampled_from([b"", b".\r\n", b".\r\nRSET\r\n", b"\r\n.\r\n"]),
)
"""What a client may send after DATA's 354: lines, mostly with the message's end after them."""
modes = st.sampled_from(["reject", "normalize"])

Outcome = tuple[bytes, int, bool, str | None, bool, bytes] | None


def read(pieces: list[bytes], mode: Mode) -> Outcome:
    """What `DataReader` makes of `pieces` fed in order, with what was left after the end."""
    reader = DataReader(bare_lf=mode, max_message_size=MAX_SIZE, max_line_length=MAX_LINE)
    for i, piece in enumerate(pieces):
        end = reader.feed(piece)
        if end is not None:
            after = b"" if end.close else end.rest + b"".join(pieces[i + 1 :])
            return (b"".join(end.content), end.size, end.body_8bit, end.refusal, end.close, after)
    return None


def reference(data: bytes, mode: Mode) -> Outcome:
    """RFC 5321 §4.1.1.4 and §4.5.2 line by line, with relaybox's limits and bare-LF modes."""
    parts: list[bytes] = []
    size, body_8bit, refusal = 0, False, None
    prev_crlf = True  # DATA's own CRLF
    at = 0
    while (newline := data.find(b"\n", at)) >= 0:
        line, at = data[at : newline + 1], newline + 1
        if line == b".\r\n" and prev_crlf:
            content = b"".join(parts) if refusal is None else b""
            return (content, size, body_8bit, refusal, False, data[at:])
        crlf = line.endswith(b"\r\n")
        text = line[:-2] if crlf else line[:-1]
        if b"\r" in text:
            return (b"", size, body_8bit, Reply.bare_line_ending("CR"), True, b"")
        if not crlf and mode == "reject":
            return (b"", size, body_8bit, Reply.bare_line_ending("LF"), True, b"")
        prev_crlf = crlf
        stored = (text[1:] if text.startswith(b".") else text) + b"\r\n"
        size += len(stored)
        if refusal is not None:
            continue
        if b"\0" in text:
            refusal = Reply.NUL_IN_DATA
        elif len(text) > MAX_LINE:
            refusal = Reply.line_too_long(MAX_LINE)
        elif size > MAX_SIZE:
            refusal = Reply.size_exceeded(MAX_SIZE)
        else:
            parts.append(stored)
            body_8bit = body_8bit or not stored.isascii()
    return None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)] or [b""]


@budget(150)
@given(data=data_sections, cuts=st.lists(st.integers(0, 300), max_size=8), mode=modes)
def test_every_split_of_the_same_bytes_gives_the_same_end(
    data: bytes, cuts: list[int], mode: Mode
) -> None:
    assert read(split(data, cuts), mode) == read([data], mode)


@budget(50)
@given(data=data_sections, mode=modes)
def test_byte_by_byte_gives_the_same_end(data: bytes, mode: Mode) -> None:
    assert read([data[i : i + 1] for i in range(len(data))], mode) == read([data], mode)


@budget(150)
@given(data=data_sections, mode=modes)
def test_the_end_is_what_reading_line_by_line_gives(data: bytes, mode: Mode) -> None:
    assert read([data], mode) == reference(data, mode)


@budget(100)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6), mode=modes)
def test_any_bytes_read_as_line_by_line(data: bytes, cuts: list[int], mode: Mode) -> None:
    assert read(split(data, cuts), mode) == reference(data, mode)
