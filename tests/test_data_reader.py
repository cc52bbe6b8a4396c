"""The sans-I/O DATA reader: the same bytes give the same end, however TCP splits them."""

from __future__ import annotations

import random
from typing import Literal

import pytest

from relaybox.inbound.data_reader import DataEnd, DataReader
from relaybox.message.replies import Reply

MAX_LINE = 20
MAX_SIZE = 200
MODES: tuple[Literal["reject", "normalize"], ...] = ("reject", "normalize")
AFTER = b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<victim@example.org>\r\n"

TRICKY = {
    "plain": b"Subject: x\r\n\r\nhello\r\n.\r\n" + AFTER,
    "empty message": b".\r\n" + AFTER,
    "lf before dot crlf": b"Subject: x\r\n\r\nx\n.\r\n" + AFTER + b"more\r\n.\r\nQUIT\r\n",
    "crlf dot lf": b"a\r\n.\nb\r\n.\r\n" + AFTER,
    "lf dot lf": b"a\n.\nb\r\n.\r\n",
    "cr dot crlf": b"a\r.\r\nb\r\n.\r\n",
    "crlf dot cr": b"a\r\n.\rb\r\n.\r\n",
    "bare cr then bare lf": b"a\rb\nc\r\n.\r\n",
    "bare lf then bare cr": b"a\nb\rc\r\n.\r\n",
    "dot stuffing": b"..one\r\n...two\r\n.\r\n\r\n.x\r\n.\r\n" + AFTER,
    "stuffed dot line after bare lf": b"x\n..\r\n.\r\n",
    "nul": b"a\0b\r\nc\r\n.\r\n" + AFTER,
    "long line": b"short\r\n" + b"L" * 45 + b"\r\nok\r\n.\r\n" + AFTER,
    "long line then nul": b"L" * 30 + b"\r\nn\0\r\n.\r\n",
    "nul then long line": b"n\0\r\n" + b"L" * 30 + b"\r\n.\r\n",
    "long line with nul late": b"L" * 30 + b"\0\r\n.\r\n",
    "long line with bare cr": b"." + b"L" * 30 + b"\rM" * 3 + b"\r\n.\r\n",
    "long line bare lf": b"." + b"L" * 30 + b"\nok\r\n.\r\n",
    "exactly the line limit": b"E" * MAX_LINE + b"\r\n." + b"E" * (MAX_LINE - 1) + b"\r\n.\r\n",
    "over the size": (b"s" * 18 + b"\r\n") * 12 + b".\r\n" + AFTER,
    "size then long line": (b"s" * 18 + b"\r\n") * 9 + b"L" * 30 + b"\r\n.\r\n",
    "8bit": "Subject: café\r\n\r\nGrüße\r\n.\r\n".encode(),
    "no terminator yet": b"a\r\nb\r\n.",
    "terminator at the very end": b"a\r\nb\r\n.\r\n",
    "cr at the end": b"a\r\nb\r",
    "dot cr lf inside a line": b"a.\r\n.\r\n",
}


def one_read(data: bytes, mode: Literal["reject", "normalize"]) -> tuple[DataEnd | None, bytes]:
    return split_read([data], mode)


def split_read(
    pieces: list[bytes], mode: Literal["reject", "normalize"], max_line: int = MAX_LINE
) -> tuple[DataEnd | None, bytes]:
    """Feed `pieces` in order; the end and what was left after it (its rest plus unfed bytes)."""
    reader = DataReader(bare_lf=mode, max_message_size=MAX_SIZE, max_line_length=max_line)
    for i, piece in enumerate(pieces):
        end = reader.feed(piece)
        if end is not None:
            unfed = b"".join(pieces[i + 1 :])
            return end, b"" if end.close else end.rest + unfed
    return None, b""


def outcome(result: tuple[DataEnd | None, bytes]) -> object:
    end, after = result
    if end is None:
        return None
    content = b"".join(end.content)
    return (content, end.size, end.body_8bit, end.refusal, end.close, after)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRICKY))
def test_every_split_point_gives_the_one_read_result(name: str, mode) -> None:
    data = TRICKY[name]
    expected = outcome(one_read(data, mode))
    for cut in range(len(data) + 1):
        assert outcome(split_read([data[:cut], data[cut:]], mode)) == expected, cut


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRICKY))
def test_random_splits_give_the_one_read_result(name: str, mode) -> None:
    data = TRICKY[name]
    expected = outcome(one_read(data, mode))
    rng = random.Random(f"{name}/{mode}")
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(1, 8))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert outcome(split_read(pieces, mode)) == expected, cuts


def test_byte_by_byte_gives_the_one_read_result() -> None:
    for mode in MODES:
        for data in TRICKY.values():
            pieces = [data[i : i + 1] for i in range(len(data))]
            assert outcome(split_read(pieces, mode)) == outcome(one_read(data, mode))


@pytest.mark.parametrize("cut", [len(b"Subject: x\r\n\r\nx\n"), None])
def test_lf_before_dot_crlf_is_content_when_normalizing_however_split(cut) -> None:
    """The smuggling case: `x<LF>.<CRLF>` is not the end, so what follows is not a command."""
    data = TRICKY["lf before dot crlf"]
    pieces = [data] if cut is None else [data[:cut], data[cut:]]
    end, after = split_read(pieces, "normalize", max_line=998)
    assert end is not None and end.refusal is None
    assert b"".join(end.content) == b"Subject: x\r\n\r\nx\r\n\r\n" + AFTER + b"more\r\n"
    assert after == b"QUIT\r\n"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"x\n.\r\n" + AFTER, "LF"),
        (b"x\r\n.\n" + AFTER, "LF"),
        (b"x\r.\r\n" + AFTER, "CR"),
        (b"a\rb\nc\r\n.\r\n", "CR"),
        (b"a\nb\rc\r\n.\r\n", "LF"),
    ],
)
def test_bare_line_end_refuses_and_closes_when_rejecting(data: bytes, kind: str) -> None:
    end, _ = one_read(data, "reject")
    assert end is not None and end.close and end.rest == b""
    assert end.refusal == Reply.bare_line_ending(kind)


def test_bare_cr_is_refused_even_when_normalizing() -> None:
    end, _ = one_read(b"bad\rline\r\n.\r\n", "normalize")
    assert end is not None and end.close
    assert end.refusal == Reply.bare_line_ending("CR")


def test_bare_lf_is_stored_as_crlf_when_normalizing() -> None:
    end, after = one_read(b"Subject: old\n\nscan\n.\nstill\r\n.\r\nQUIT\r\n", "normalize")
    assert end is not None and end.refusal is None
    assert b"".join(end.content) == b"Subject: old\r\n\r\nscan\r\n\r\nstill\r\n"
    assert after == b"QUIT\r\n"


def test_dot_stuffing_is_undone_and_pipelined_commands_are_the_rest() -> None:
    end, after = one_read(TRICKY["dot stuffing"], "reject")
    assert end is not None and end.refusal is None
    assert b"".join(end.content) == b".one\r\n..two\r\n"
    assert after == b"\r\n.x\r\n.\r\n" + AFTER


def test_first_problem_decides_the_refusal_and_nothing_is_kept() -> None:
    cases = {
        "nul then long line": Reply.NUL_IN_DATA,
        "long line then nul": Reply.line_too_long(MAX_LINE),
        "long line with nul late": Reply.NUL_IN_DATA,
        "over the size": Reply.size_exceeded(MAX_SIZE),
        "size then long line": Reply.line_too_long(MAX_LINE),
    }
    for name, reply in cases.items():
        end, after = one_read(TRICKY[name], "reject")
        assert end is not None and (end.refusal, end.close, end.content) == (reply, False, []), name
    end, after = one_read(TRICKY["over the size"], "reject")
    assert after == AFTER  # the session goes on after a refusal


def test_a_line_at_the_limit_is_accepted() -> None:
    """The limit counts a stuffing dot, as the reader always has (it is part of the line sent)."""
    end, _ = one_read(TRICKY["exactly the line limit"], "reject")
    assert end is not None and end.refusal is None


def test_an_endless_line_is_held_in_bounded_memory() -> None:
    reader = DataReader(bare_lf="reject", max_message_size=10**9, max_line_length=998)
    for _ in range(1000):
        assert reader.feed(b"x" * 65536) is None
    assert len(reader._pending) <= 1000
    end = reader.feed(b"\r\n.\r\n")
    assert end is not None and end.refusal == Reply.line_too_long(998)
    assert end.size == 65536 * 1000 + 2
