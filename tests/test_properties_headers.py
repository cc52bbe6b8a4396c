"""Properties of the header block: finding its end, parsing it, reading addresses from it, and
what relaybox writes into it (`header_safe` and the Received: field), for any input.

A client controls every byte of a header block and the text relaybox copies into its own
Received: field; none of it may raise, and none of it may start a field of its own.
"""

from __future__ import annotations

import unicodedata
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaybox.inbound.server import InboundSMTP
from relaybox.message.headers import (
    addresses,
    field_addresses,
    field_count,
    fields,
    header_end,
    header_safe,
    header_value,
    parse_header,
    split_header,
)
from relaybox.signing.signer import from_domain

from .support.properties import budget

ADDRESS_FIELDS = ["From", "Sender", "Reply-To", "To", "Cc", "Bcc"]

# Pieces of header syntax that the email package's parsers branch on.
_SYNTAX = list('<>@",:;()[]\\=?. \t') + [
    "=?utf-8?q?",
    "=?utf-8?b?",
    "?=",
    "=0D=0A",
    "\r\n",
    "\r\n ",
    "\r",
    "\n",
    "\x00",
    "é",
    "\udcff",
    "a@b.example",
    "Group:",
    "<>",
]
header_text = st.lists(st.one_of(st.sampled_from(_SYNTAX), st.text(max_size=4)), max_size=25).map(
    "".join
)
"""Field values built from the pieces address and encoded-word parsers trip on."""

header_blocks = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.tuples(st.sampled_from([*ADDRESS_FIELDS, "Subject", "Received", "X-Y"]), header_text),
        max_size=6,
    ).map(
        lambda items: (
            "".join(f"{name}: {value}\r\n" for name, value in items).encode(
                "utf-8", "surrogateescape"
            )
            + b"\r\nbody\r\n"
        )
    ),
)
"""Raw header blocks: random bytes, and fields whose values are near misses of the grammar."""

_UNSAFE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


@budget(300)
@given(data=st.binary(max_size=120), limit=st.integers(0, 150))
def test_the_header_block_and_body_are_the_whole_message(data: bytes, limit: int) -> None:
    end = header_end(data, limit)
    head, body = split_header(data, limit)
    assert head + body == data
    if end is None:
        assert body == b"" and b"\r\n\r\n" not in data[:limit] and not data.startswith(b"\r\n")
    else:
        assert (
            end == 2
            and data.startswith(b"\r\n")
            or (head.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in head[:-2] and end <= limit)
        )


@budget(150)
@given(block=header_blocks)
def test_any_header_block_parses_and_every_field_reads(block: bytes) -> None:
    message = parse_header(split_header(block)[0])
    for name, _ in fields(message):
        assert field_count(message, name) >= 1
        value = header_value(message, name)
        assert value is None or isinstance(value, str)
    for name in ADDRESS_FIELDS:
        assert all(isinstance(a, str) for a in addresses(message, name))


@budget(200)
@given(name=st.sampled_from(ADDRESS_FIELDS), value=header_text)
def test_any_address_field_value_gives_addresses_never_an_exception(name: str, value: str) -> None:
    found = field_addresses(name, value)
    assert all(isinstance(a, str) for a in found)


@budget(300)
@given(
    text=st.one_of(
        st.text(),
        header_text,
        # Every character str.splitlines() breaks at, and one of each unsafe category.
        st.lists(
            st.sampled_from(
                list("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00\x1b\u200e\ue000\udcff\U000e0080a ")
            ),
            max_size=8,
        ).map("".join),
    )
)
def test_header_safe_text_cannot_end_a_field(text: str) -> None:
    safe = header_safe(text)
    assert len(safe) == len(text)
    assert not any(unicodedata.category(c) in _UNSAFE for c in safe), repr(safe)
    assert "".join(safe.splitlines()) == safe  # no character str.splitlines() breaks at
    assert header_safe(safe) == safe
    safe.encode("utf-8")
    if text.isprintable():
        assert safe == text


def _received(
    helo: str, recipients: list[str], smtputf8: bool, tls: bool, user: str | None
) -> bytes:
    """The Received: field an inbound session writes, for a session in the given state."""
    session = SimpleNamespace(
        session=SimpleNamespace(host_name=helo, extended_smtp=True),
        tls=tls,
        auth_user=user,
        ctx=SimpleNamespace(clock=lambda: 1_800_000_000.0),
        client_ip="192.0.2.1",
        hostname="relay.example.test",
    )
    header: bytes = InboundSMTP._received_header(session, "QUEUEID0000001", recipients, smtputf8)  # type: ignore[arg-type]
    return header


@budget(150)
@given(
    helo=st.one_of(header_text, st.text()),
    recipients=st.lists(st.one_of(header_text, st.text()), min_size=1, max_size=2),
    smtputf8=st.booleans(),
    tls=st.booleans(),
    user=st.one_of(st.none(), st.just("alice")),
)
def test_the_received_field_is_one_field_whatever_the_client_sent(
    helo: str, recipients: list[str], smtputf8: bool, tls: bool, user: str | None
) -> None:
    received = _received(helo, recipients, smtputf8, tls, user)
    assert received.endswith(b"\r\n")
    lines = received[:-2].split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert lines[0].startswith(b"Received: from ")
    assert all(line.startswith(b"\t") for line in lines[1:])  # continuation lines only
    message = parse_header(received + b"Subject: s\r\n\r\n")
    assert [name for name, _ in fields(message)] == ["Received", "Subject"]


@pytest.mark.parametrize("value", ["a@", "<", "x <", '"', "G:<", "a:<"])
def test_a_from_value_that_breaks_the_email_package_is_no_address(value: str) -> None:
    """CPython 3.11's address parser raises IndexError or HeaderParseError on these; relaybox
    reads them as a value that is no address (refused for a logged-in user, unsigned)."""
    assert field_addresses("From", value) == [value]
    message = parse_header(f"From: {value}\r\nSubject: s\r\n\r\n".encode())
    assert addresses(message, "From") == [value]
    assert header_value(message, "From") == value
    assert from_domain(f"From: {value}\r\n\r\nbody\r\n".encode()) is None
