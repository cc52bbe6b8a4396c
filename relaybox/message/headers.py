"""The one parser of a message's header block: find it in raw bytes, parse it, read fields.

Header text is UTF-8 (RFC 6532 §3.2: an SMTPUTF8 message may carry UTF-8 addresses and text in
its fields), so the block is decoded as UTF-8 and parsed with the stdlib `email` package under an
SMTPUTF8 policy; `compat32` would turn `josé@bücher.example` into replacement characters. This
module reads headers; it does not rewrite, sign or store them.
"""

from __future__ import annotations

import re
import unicodedata
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.parser import HeaderParser
from email.policy import SMTPUTF8, EmailPolicy

from relaybox.untrusted import one_line

__all__ = [
    "MAX_HEADER_BLOCK",
    "MAX_HOPS",
    "POLICY",
    "SUBJECT_LIMIT",
    "addresses",
    "field_addresses",
    "field_count",
    "fields",
    "header_end",
    "header_safe",
    "header_value",
    "received_upper_bound",
    "parse_header",
    "split_header",
    "subject_line",
]

MAX_HEADER_BLOCK = 256 * 1024
"""Only this much of a message is searched for the end of its header block."""

POLICY: EmailPolicy[EmailMessage] = SMTPUTF8.clone(raise_on_defect=False, linesep="\r\n")
"""RFC 6532 headers, CRLF line ends; a malformed field is a defect noted on it, never a crash."""


def header_end(data: bytes, limit: int = MAX_HEADER_BLOCK) -> int | None:
    """Where the body starts: the index just past the empty line that ends the header block.

    RFC 5322 §2.1: the header block ends at the first empty line. Only the first `limit` bytes
    are searched (a header block longer than that is not one a relay should trust).

    Args:
        data: The message as stored or received, with CRLF line ends.
        limit: How many bytes to search.

    Returns:
        The index of the first body byte, or None when no empty line is found within `limit`
        (a message that is all header, or a header block that is too long).
    """
    if data.startswith(b"\r\n"):
        return 2  # no header fields at all
    end = data.find(b"\r\n\r\n", 0, limit)
    return None if end < 0 else end + 4


def split_header(data: bytes, limit: int = MAX_HEADER_BLOCK) -> tuple[bytes, bytes]:
    """`(header block, body)`; a message without an empty line within `limit` is all header.

    The header block keeps its final empty line, so `head + body == data`.
    """
    end = header_end(data, limit)
    if end is None:
        return data, b""
    return data[:end], data[end:]


def parse_header(head: bytes) -> EmailMessage:
    """Parse a header block (as `split_header` returns it) into a message without a body.

    Bytes that are not UTF-8 (another charset sent without MIME encoding) become U+FFFD; the
    fields around them still parse.
    """
    text = head.decode("utf-8", "replace")
    message = HeaderParser(policy=POLICY).parsestr(text, headersonly=True)
    assert isinstance(message, EmailMessage)  # POLICY's message_factory
    return message


def addresses(message: EmailMessage, name: str) -> list[str]:
    """The addresses (`local@domain`, display names dropped) of every `name` field, in order.

    For address fields (From:, Sender:, Reply-To:, To:, Cc:); group syntax is flattened and an
    empty group (`undisclosed-recipients:;`) gives nothing. A value that is not an address
    (`From: garbage`) comes back as written, so a caller that checks ownership refuses it.
    """
    wanted = name.lower()
    found: list[str] = []
    for field, value in message.raw_items():
        if field.lower() == wanted:
            found += field_addresses(field, value)
    return found


MAX_HOPS = 50
"""More Received: fields than this and a message is looping: RFC 5321 §6.3 asks for a limit,
Postfix's `hopcount_limit` is 50. Refused at the end of DATA, bounced when found in the queue."""


def received_upper_bound(header_block: bytes) -> int:
    """How many Received: fields the header block can have at most, without parsing it.

    A field starts a line, and a folded line never starts with a field name, so counting the
    name at line starts can only overcount: when this is within `MAX_HOPS` no parse is needed.
    """
    lowered = header_block.lower()
    return lowered.count(b"\nreceived:") + lowered.startswith(b"received:")


def field_count(message: EmailMessage, name: str) -> int:
    """How many `name` fields the header has (RFC 5322 §3.6 allows one From:, for instance)."""
    wanted = name.lower()
    return sum(1 for field, _ in message.raw_items() if field.lower() == wanted)


def field_addresses(name: str, value: str) -> list[str]:
    """The addresses in one field's value as written (folded or not), as `addresses` reads them.

    A value the address parser refuses outright (an encoded display name that decodes to a
    line break, say) comes back whole, as written, like any other value that is no address.
    """
    try:
        header = POLICY.header_fetch_parse(name, value)
    except Exception:  # see below: not only ValueError
        # The email package raises more than ValueError on bad input: "a@", "<" or "x <" end
        # in an IndexError, a stray group syntax in HeaderParseError (CPython 3.11's
        # _header_value_parser). Every such value is a client's and is no address.
        return [" ".join(value.split())]
    if not isinstance(header, AddressHeader):
        return []
    return [a.addr_spec for a in header.addresses if a.addr_spec not in ("", "<>")]


def header_value(message: EmailMessage, name: str) -> str | None:
    """The first `name` field's value as text (encoded words decoded), or None when absent."""
    try:
        value = message.get(name)
    except Exception:  # the email package's parsers, as in field_addresses
        for field, raw in message.raw_items():
            if field.lower() == name.lower():
                return " ".join(raw.split())
        return None
    return None if value is None else str(value)


def fields(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    """Every field as `(name, value)` in the order and form written (encoded words and folding
    kept), for showing a message's header as it arrived."""
    return tuple(message.raw_items())


def header_safe(text: str) -> str:
    """`text` fit to be written into a header field: control characters (CR and LF above all,
    which would start a new field), format characters and bytes that were not UTF-8 each
    become "?". The last check before client input reaches a header relaybox writes."""
    if text.isprintable():
        return text
    return "".join(
        "?" if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else char
        for char in text
    )


SUBJECT_LIMIT = 200
"""The most of a Subject: kept for the queue's listing and filter (characters)."""

# The first Subject: field at a line start with its folded continuation lines. A field
# name never starts a continuation line, so this cannot take a folded line for a field.
_SUBJECT = re.compile(rb"^subject[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def subject_line(data: bytes, limit: int = SUBJECT_LIMIT) -> str:
    """The first Subject: of a message as one line of safe text, "" when there is none.

    The text is a client's: encoded words (RFC 2047) are decoded, folding and runs of white
    space become one space, control characters (an ESC, a CR in an encoded word) are shown as
    escapes and the rest is cut at `limit` characters, so it can be stored, listed and drawn
    as it is. Found with one search of the header block, not a parse of every field: it runs
    for every message stored.
    """
    found = _SUBJECT.search(split_header(data)[0])
    if found is None:
        return ""
    raw = found.group(1).decode("utf-8", "replace")
    text = raw
    if "=?" in raw:  # encoded words; the parser costs 100 µs, most subjects have none
        try:
            text = str(POLICY.header_fetch_parse("Subject", raw))
        except Exception:  # the email package's parsers, as in field_addresses
            pass
    return one_line(text, limit)
