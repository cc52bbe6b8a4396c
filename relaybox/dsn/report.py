"""Delivery status notifications (RFC 3464): the bounce, delay and success reports relaybox sends.

It builds a report as bytes ready to spool and says whether one may be sent at all; it does no
I/O and does not decide *when* a report is due (the scheduler does). The caller spools the result
with the null reverse-path ``MAIL FROM:<>`` (RFC 5321 §4.5.5) and the original envelope sender as
its only recipient, so that a report about the report can never be produced.

The output is pure 7-bit ASCII with CRLF line endings and no line over 998 octets (RFC 5322
§2.1.1), whatever the original message holds, so it passes any hop, with or without 8BITMIME. The
one exception is an internationalised *envelope sender*: the report's ``To:`` then carries UTF-8
(RFC 6532 §3.2), and the report can only travel with SMTPUTF8, as its envelope recipient needs.

How the original message is returned (the third part, RFC 6522 §3):

* headers only (the default, to keep reports small; at most ``MAX_RETURNED_HEADERS`` octets,
  cut at a whole line) as ``text/rfc822-headers``, 7bit; when the headers are not 7-bit clean
  (8-bit bytes, NUL, lines over 998 octets) they are sent quoted-printable, as RFC 6522 §4
  allows for headers that "require encoding";
* the whole message (``include_body=True``) as ``message/rfc822``, 7bit; when it is not 7-bit
  clean it is sent as ``message/global`` in base64 instead, because ``message/rfc822`` admits no
  encoding but 7bit, 8bit or binary (RFC 2046 §5.2.1) while ``message/global`` admits base64
  (RFC 6532 §3.7).

Addresses in ``message/delivery-status`` are ``rfc822; addr`` when ASCII and ``utf-8; ...`` in the
7-bit ``utf-8-addr-xtext`` form otherwise (RFC 6533 §3). Non-ASCII characters in a diagnostic are
written the same way (``\\x{E9}``), since DSN fields are ASCII text (RFC 3464 §2.1.1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime
from typing import Literal

from relaybox.message.headers import header_end

__all__ = [
    "MAX_RETURNED_HEADERS",
    "ORIGINAL_READ",
    "SUBJECTS",
    "Action",
    "RecipientStatus",
    "build_dsn",
    "find_status",
    "is_bounce_candidate",
]

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

#: The report's Subject, by the most serious action among its recipients (Postfix's wording, which
#: users and filters already know).
SUBJECTS: dict[str, str] = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}

# RFC 5322 §2.1.1: a line MUST be at most 998 octets and SHOULD be at most 78, CRLF excluded.
_MAX_LINE = 998
_FOLD_WIDTH = 78
# Human-readable text is wrapped narrower so quoted replies stay readable in any mail program.
_TEXT_WIDTH = 72

# RFC 3463 §2 and RFC 3464 §2.3.4: class "." subject "." detail, subject and detail 1*3DIGIT;
# the class is 2, 4 or 5. Found inside reply text too, so not where it is part of a longer
# number (an address like 10.5.1.1, a version 5.1.1.2, 5.1.1234). The one pattern for status
# codes: the DSN checks its input with it and `bounce` reads replies with it.
_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# An SMTP reply starts with its three-digit code (RFC 5321 §4.2); anything else is our own text.
_SMTP_REPLY = re.compile(r"[2-5][0-9][0-9](?:[ -]|$)")
# C0 and C1 controls and DEL: a CR or LF would end a field early, the rest are invisible.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Host names and address literals as they appear in Reporting-MTA and Remote-MTA.
_HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[A-Za-z0-9:.]+\]")
# An addr-spec that fits between angle brackets: printable ASCII without space, "<" or ">".
_ASCII_ADDRESS = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")
_QUEUE_ID = re.compile(r"[A-Za-z0-9._-]+")
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")

MAX_RETURNED_HEADERS = 64 * 1024
"""Most octets of the original's headers a report returns (``text/rfc822-headers``): more
than any honest header block, and a message without a blank line (10 MB of "header") costs
no more than that. Cut at the last whole line within it."""
ORIGINAL_READ = MAX_RETURNED_HEADERS + 4
"""Octets of the original message a headers-only report looks at (the capped headers and
the blank line after them): callers may pass only this much of it."""

# Plain words for the status codes an office user meets most (RFC 3463 §3; X.1.10 comes from
# RFC 7505, X.6.7 from RFC 6531); keyed by subject.detail, so 4.2.2 and 5.2.2 read alike.
_MEANINGS: dict[str, str] = {
    "1.1": "the address does not exist at the receiving mail system",
    "1.2": "the recipient's domain does not exist or cannot receive mail",
    "1.3": "the address is not written correctly",
    "1.6": "the recipient has moved and left no forwarding address",
    "1.10": "the recipient's domain states that it accepts no mail at all",
    "2.1": "the recipient's mailbox is disabled",
    "2.2": "the recipient's mailbox is full",
    "2.3": "the message is larger than the recipient's mailbox accepts",
    "3.4": "the message is larger than the receiving mail system accepts",
    "4.1": "the receiving mail server did not answer",
    "4.2": "the connection to the receiving mail server broke off",
    "4.4": "no mail server could be found for the recipient's domain",
    "4.7": "the message could not be delivered within the time allowed",
    "6.7": "the address contains characters the receiving mail system cannot handle",
    "7.1": "the receiving mail system refused the message by its rules (for example a spam "
    "filter, or the sender is not allowed to write to this recipient)",
}


@dataclass(frozen=True)
class RecipientStatus:
    """What happened to one recipient, as one per-recipient block reports it (RFC 3464 §2.3).

    Attributes:
        recipient: The envelope recipient the report is about (``Final-Recipient``), as it was
            when relaybox accepted the message.
        action: ``Action`` (RFC 3464 §2.3.3). ``failed`` may carry a 4.x.x status: a message
            that expired after temporary failures is reported that way (RFC 3464 §2.3.3 note).
        status: Enhanced status code (RFC 3463), e.g. ``"5.1.1"``.
        diagnostic: The reply that decided it, e.g. ``"550 5.1.1 <x@y>: user unknown"``, or our
            own words when no server answered (``"connection refused"``); None when unknown.
            Lines of a multi-line reply are joined with spaces.
        remote_mta: Host name, or ``[ip]``, of the server that gave ``diagnostic``; None when no
            server answered (then ``diagnostic`` is relaybox's own, RFC 3464 §2.3.6).
        last_attempt_at: Epoch seconds of the last delivery attempt; None when there was none.
        will_retry_until: For ``delayed``: epoch seconds when relaybox gives up. Ignored for the
            other actions, where the field must not appear (RFC 3464 §2.3.9).
    """

    recipient: str
    action: Action
    status: str
    diagnostic: str | None
    remote_mta: str | None
    last_attempt_at: float | None
    will_retry_until: float | None = None


def find_status(text: str) -> str | None:
    """The first enhanced status code in `text` ("550 5.1.1 ..." -> "5.1.1"), or None.

    Written as RFC 3463 §2 requires, without leading zeros: a server's "5.01.1" is "5.1.1".
    """
    found = _STATUS.search(text)
    if found is None:
        return None
    return ".".join(str(int(part)) for part in found.groups())


def is_bounce_candidate(sender: str, headers: Mapping[str, str] | Message) -> bool:
    """Whether a failure report may be sent for a message from ``sender``.

    Only the null reverse-path rules it out: a message sent with ``MAIL FROM:<>`` is itself a
    notification, and no notification may be sent about it (RFC 5321 §4.5.5, §6.1),
    so a failed one is logged and dropped. ``Auto-Submitted`` (RFC 3834 §5) does not: mail that a
    script sends to a mistyped address must still come back to the script's owner. Further loop
    protection (rates, repeated reports) belongs to the scheduler.

    Args:
        sender: The envelope sender as stored; ``""`` (or ``"<>"``) is the null reverse-path.
        headers: The message's headers. Not consulted by the RFC rules; accepted so that callers
            pass them already and a local policy can be added without changing every call.

    Returns:
        False for the null sender, True otherwise.
    """
    return sender.strip() not in ("", "<>")


def build_dsn(
    *,
    reporting_mta: str,
    bounce_from: str,
    original_sender: str,
    queue_id: str,
    arrived_at: float,
    recipients: Sequence[RecipientStatus],
    original_message: bytes,
    include_body: bool = False,
    now: float,
    message_id: str | None = None,
) -> bytes:
    """Build a delivery status notification (``multipart/report``, RFC 6522 and RFC 3464).

    The parts are: a plain-language explanation for the sender, the machine-readable
    ``message/delivery-status``, and the original headers or message (see the module docstring
    for the encodings). The same inputs and ``now`` always give the same bytes.

    Send the result with the null reverse-path ``<>`` to ``original_sender``; this function
    only builds it.

    Args:
        reporting_mta: Our host name (ASCII, e.g. ``relay.example.org``): ``Reporting-MTA``.
        bounce_from: The report's From address, e.g. ``MAILER-DAEMON@relay.example.org``.
        original_sender: The envelope sender of the original message; the report goes there.
        queue_id: The original message's queue ID (``X-Relaybox-Queue-ID``, and the default
            Message-ID's left part).
        arrived_at: Epoch seconds when the original message was accepted (``Arrival-Date``).
        recipients: One entry per recipient to report, in the order to report them.
        original_message: The stored message, headers and body, as received.
        include_body: Return the whole message instead of its headers only.
        now: Epoch seconds for ``Date`` and the default Message-ID (the caller's clock).
        message_id: The report's Message-ID with its angle brackets; by default
            ``<queue_id.dsn.MICROSECONDS@reporting_mta>``.

    Returns:
        The report, CRLF line endings, 7-bit unless ``original_sender`` is non-ASCII.

    Raises:
        ValueError: If ``original_sender`` is empty (never bounce a bounce) or holds a control
            character, ``recipients`` is empty, a status code is malformed (RFC 3464 §2.3.4), or
            a host name, ``bounce_from``, the queue ID or the Message-ID is not a plain token.
            Control characters in recipient addresses and diagnostics are not an error: they
            are left out of the report (RFC 3464 §2.3.2).
    """
    if not is_bounce_candidate(original_sender, {}):
        raise ValueError("no report may be sent to the null sender <> (RFC 5321 §4.5.5)")
    if not recipients:
        raise ValueError("a delivery status notification needs at least one recipient")
    sender = original_sender.strip().removeprefix("<").removesuffix(">")
    # The sender may be non-ASCII (SMTPUTF8) or quoted with spaces, but never holds a control
    # character: a CR or LF would inject header lines.
    _require(not _CONTROL.search(sender) and not _SURROGATE.search(sender), "original_sender")
    _require(_HOST.fullmatch(reporting_mta), "reporting_mta")
    _require(_ASCII_ADDRESS.fullmatch(bounce_from), "bounce_from")
    _require(_QUEUE_ID.fullmatch(queue_id), "queue_id")
    for entry in recipients:
        # RFC 3463 §2: "without leading zero digits", so exactly as find_status writes it.
        _require(
            _STATUS.fullmatch(entry.status) and find_status(entry.status) == entry.status,
            f"status {entry.status!r}",
        )
        if entry.remote_mta is not None:
            _require(_HOST.fullmatch(entry.remote_mta), "remote_mta")

    if message_id is None:
        message_id = f"<{queue_id}.dsn.{int(now * 1_000_000)}@{reporting_mta}>"
    _require(_MESSAGE_ID.fullmatch(message_id), "message_id")

    parts = [
        _explanation_part(reporting_mta, queue_id, arrived_at, recipients, include_body),
        _status_part(reporting_mta, queue_id, arrived_at, recipients),
        _original_part(original_message, include_body),
    ]
    boundary = _boundary(parts)

    out = bytearray()
    for name, value in (
        ("From", f"Mail Delivery System <{bounce_from}>"),
        ("To", f"<{sender}>"),
        ("Subject", _subject(recipients)),
        ("Date", _date(now)),
        ("Message-ID", message_id),
        # RFC 3834 §5: marks the report as automatic, so auto-responders do not answer it.
        ("Auto-Submitted", "auto-replied"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
    ):
        out += _field(name, value)
    out += b"\r\nThis is a MIME-encapsulated delivery status notification (RFC 3464).\r\n"
    for part in parts:
        # RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the delimiter, not the part.
        out += b"\r\n--" + boundary.encode("ascii") + b"\r\n" + part
    out += b"\r\n--" + boundary.encode("ascii") + b"--\r\n"
    return bytes(out)


def _require(ok: object, what: str) -> None:
    if not ok:
        raise ValueError(f"{what} is malformed or contains control characters")


def _subject(recipients: Sequence[RecipientStatus]) -> str:
    actions = {entry.action for entry in recipients}
    if "failed" in actions:
        return SUBJECTS["failed"]
    if "delayed" in actions:
        return SUBJECTS["delayed"]
    return SUBJECTS["delivered"]


def _date(epoch: float) -> str:
    # RFC 3464 §2.3.7 and §2.3.9 require a numeric zone; "+0000" rather than the obsolete "GMT".
    return format_datetime(datetime.fromtimestamp(epoch, UTC))


def _clean(text: str) -> str:
    """One line of text: controls (line breaks included) and runs of white space become one space.

    Multi-line SMTP replies are thus joined with spaces, as Postfix does; a bare CR or LF must
    never reach a field, where it would end it (RFC 3464 §2.3.2 NOTE). Lone surrogates
    (undecodable bytes) become U+FFFD so the text always encodes.
    """
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))
    return " ".join(text.split())


def _xtext(text: str, *, specials: str) -> str:
    """Write non-ASCII and ``specials`` as ``\\x{HEX}`` (RFC 6533 §3 EmbeddedUnicodeChar)."""
    out = []
    for char in text:
        code = ord(char)
        if 0x20 <= code <= 0x7E and char not in specials:
            out.append(char)
        else:
            out.append(f"\\x{{{code:02X}}}")
    return "".join(out)


def _typed_address(address: str) -> str:
    """An address as ``address-type; generic-address`` (RFC 3464 §2.3.2, RFC 6533 §3)."""
    cleaned = _clean(address)
    if cleaned.isascii():
        return f"rfc822; {cleaned}"
    # utf-8-addr-xtext: QCHAR is printable ASCII except SP, "\", "+" and "=".
    return "utf-8; " + _xtext(cleaned, specials=" \\+=")


def _diagnostic(entry: RecipientStatus) -> str:
    """The Diagnostic-Code value (RFC 3464 §2.3.6): ``smtp;`` for a reply, else our own type."""
    text = _clean(entry.diagnostic or "")
    kind = "smtp" if _SMTP_REPLY.match(text) else "X-Relaybox"
    return f"{kind}; {_xtext(text, specials='')}"


def _field(name: str, value: str) -> bytes:
    """``Name: value`` folded at spaces (RFC 5322 §2.2.3), CRLF-terminated.

    ``value`` has single spaces only (see :func:`_clean`). Lines are folded before 78 octets
    where a space allows and never exceed 998: a run without spaces longer than 900 octets is cut
    with an inserted space, the only change folding ever makes to a value (unfolding restores
    everything else exactly).
    """
    words: list[str] = []
    for word in value.split(" "):
        # 200 characters are at most 800 octets of UTF-8: with the name, within 998.
        while len(word.encode("utf-8")) > 900:
            words.append(word[:200])
            word = word[200:]
        words.append(word)

    lines: list[str] = []
    current = f"{name}: {words[0]}"
    for word in words[1:]:
        # Fold only before a word, so that no line is white space alone (RFC 5322 §3.2.2).
        if word and len((current + " " + word).encode("utf-8")) > _FOLD_WIDTH:
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
    lines.append(current)
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def _text_body(text: str) -> tuple[bytes, str, str]:
    """Encode plain text: (body, charset, Content-Transfer-Encoding)."""
    data = text.replace("\n", "\r\n").encode("utf-8")
    if text.isascii():
        return data, "us-ascii", "7bit"
    return _quoted_printable(data), "utf-8", "quoted-printable"


def _quoted_printable(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) with CRLF hard breaks and lines of at most 76 octets.

    Each CRLF line is encoded on its own by `binascii.b2a_qp` in binary mode, so a lone CR or
    LF inside a line is escaped rather than taken for a line break; its soft breaks ("=" LF)
    become "=" CRLF, the only LF in its output.
    """
    return b"\r\n".join(
        binascii.b2a_qp(line, istext=False).replace(b"=\n", b"=\r\n")
        for line in data.split(b"\r\n")
    )


def _seven_bit_clean(data: bytes) -> bool:
    """True when ``data`` (CRLF lines) may travel as 7bit (RFC 2045 §2.7)."""
    if not data.isascii() or b"\x00" in data:
        return False
    return all(len(line) <= _MAX_LINE for line in data.split(b"\r\n"))


def _original_part(original: bytes, include_body: bool) -> bytes:
    """The returned content (RFC 6522 §3): headers or the whole message, safely encoded."""
    message = _LINE_BREAK.sub(b"\r\n", original if include_body else original[:ORIGINAL_READ])
    if include_body:
        if _seven_bit_clean(message):
            return (
                b"Content-Type: message/rfc822\r\n"
                b"Content-Description: Original message\r\n"
                b"Content-Transfer-Encoding: 7bit\r\n\r\n" + message
            )
        encoded = base64.encodebytes(message).replace(b"\n", b"\r\n")
        return (
            b"Content-Type: message/global\r\n"
            b"Content-Description: Original message\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=original.u8msg\r\n\r\n" + encoded
        )

    end = header_end(message, len(message))
    if end == 2:  # no header fields at all
        headers = b""
    else:
        headers = message if end is None else message[: end - 2]
        if len(headers) > MAX_RETURNED_HEADERS:
            headers = headers[:MAX_RETURNED_HEADERS]
            cut = headers.rfind(b"\r\n")
            headers = headers[: cut + 2] if cut > 0 else headers
    if headers and not headers.endswith(b"\r\n"):
        headers += b"\r\n"
    if _seven_bit_clean(headers):
        return (
            b"Content-Type: text/rfc822-headers\r\n"
            b"Content-Description: Original message headers\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\n" + headers
        )
    # RFC 6522 §4: broken headers "may be encoded in quoted-printable".
    return (
        b"Content-Type: text/rfc822-headers\r\n"
        b"Content-Description: Original message headers\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _quoted_printable(headers)
    )


def _status_part(
    reporting_mta: str, queue_id: str, arrived_at: float, recipients: Sequence[RecipientStatus]
) -> bytes:
    """``message/delivery-status``: per-message fields, then one block per recipient."""
    # RFC 3464 §2.2: Reporting-MTA, Arrival-Date, then extension fields (§2.4, "X-" names).
    blocks = [
        _field("Reporting-MTA", f"dns; {reporting_mta}")
        + _field("Arrival-Date", _date(arrived_at))
        + _field("X-Relaybox-Queue-ID", queue_id)
    ]
    for entry in recipients:
        # RFC 3464 §2.3: the fields in the order of its per-recipient-fields grammar.
        block = _field("Final-Recipient", _typed_address(entry.recipient))
        block += _field("Action", entry.action)
        block += _field("Status", entry.status)
        if entry.remote_mta is not None:
            block += _field("Remote-MTA", f"dns; {entry.remote_mta}")
        if entry.diagnostic is not None and _clean(entry.diagnostic):
            block += _field("Diagnostic-Code", _diagnostic(entry))
        if entry.last_attempt_at is not None:
            block += _field("Last-Attempt-Date", _date(entry.last_attempt_at))
        if entry.action == "delayed" and entry.will_retry_until is not None:
            block += _field("Will-Retry-Until", _date(entry.will_retry_until))
        blocks.append(block)
    # Blocks are separated by one blank line (RFC 3464 §2.1).
    head = b"Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n\r\n"
    return head + b"\r\n".join(blocks)


def _recipients_phrase(count: int) -> str:
    return "1 recipient" if count == 1 else f"{count} recipients"


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width=_TEXT_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def _recipient_lines(entry: RecipientStatus) -> list[str]:
    """How one recipient fared, in words, with the server's reply quoted."""
    lines = _wrap(_clean(entry.recipient), "    ")
    diagnostic = _clean(entry.diagnostic or "")
    if diagnostic:
        if entry.remote_mta is not None:
            lines += _wrap(f"The receiving mail server {entry.remote_mta} answered:", "      ")
        else:
            lines += _wrap("The mail system reported:", "      ")
        lines += _wrap(diagnostic, "        ")
    # Only for failures: a delay's code often means something milder (4.7.1 is greylisting).
    if entry.action == "failed":
        _, subject, detail = entry.status.split(".")
        meaning = _MEANINGS.get(f"{subject}.{detail}")
        if meaning is not None:
            lines += _wrap(f"This usually means that {meaning}.", "      ")
    if entry.action == "delayed":
        if entry.last_attempt_at is not None:
            lines += _wrap(f"Last attempt: {_date(entry.last_attempt_at)}.", "      ")
        if entry.will_retry_until is not None:
            lines += _wrap(f"It will be retried until {_date(entry.will_retry_until)}.", "      ")
    return lines


# Per action: the opening sentence of its section, and what the sender can do afterwards.
_SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "failed",
        "Your message could not be delivered to {n}. The mail system has given up and will not "
        "try again:",
        "What you can do: check the address for typing mistakes and send your message again. If "
        "the address is right, the recipient's mail system is refusing the message; reach the "
        "recipient another way, or forward this report to your IT support.",
    ),
    (
        "delayed",
        "Your message has not been delivered yet to {n}. The mail system keeps trying, so you do "
        "not need to do anything yet:",
        "If the mail system finally gives up, you will get another report saying so.",
    ),
    ("delivered", "Your message was delivered to {n}:", ""),
    (
        "relayed",
        "Your message was passed on for {n} to a mail system that does not send delivery "
        "reports, so you will hear nothing more about it:",
        "",
    ),
    (
        "expanded",
        "Your message was delivered to {n} that forward mail on to several other addresses; "
        "reports about those may follow:",
        "",
    ),
)


def _explanation_part(
    reporting_mta: str,
    queue_id: str,
    arrived_at: float,
    recipients: Sequence[RecipientStatus],
    include_body: bool,
) -> bytes:
    """The human-readable first part (RFC 6522 §3): what happened and what to do, in words."""
    lines = [f"This is the mail system at {reporting_mta}.", ""]
    for action, opening, advice in _SECTIONS:
        group = [entry for entry in recipients if entry.action == action]
        if not group:
            continue
        lines += _wrap(opening.format(n=_recipients_phrase(len(group))))
        for entry in group:
            lines += ["", *_recipient_lines(entry)]
        lines.append("")
        if advice:
            lines += [*_wrap(advice), ""]
    lines += [
        "About your message:",
        f"  Queue ID: {queue_id}",
        f"  Received: {_date(arrived_at)}",
        "",
        "Your message is attached below."
        if include_body
        else "The headers of your message are attached below.",
    ]
    body, charset, encoding = _text_body("\n".join(lines) + "\n")
    return (
        f"Content-Type: text/plain; charset={charset}\r\n"
        f"Content-Description: Notification\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii") + body


def _boundary(parts: Sequence[bytes]) -> str:
    """A boundary that occurs in no part (RFC 2046 §5.1.1), derived from the content.

    "=_" can never appear in quoted-printable or base64 text, so only 7bit parts can collide;
    the loop is for them.
    """
    digest = hashlib.sha256(b"".join(parts)).hexdigest()
    attempt = 0
    while True:
        boundary = f"=_relaybox_dsn_{digest[:24]}" + (f"_{attempt}" if attempt else "")
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary
        attempt += 1
