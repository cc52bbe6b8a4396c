"""Properties of the delivery status notification: whatever the recipients, the replies and the
original message hold, the report is a valid multipart/report (RFC 6522, RFC 3464) that the
email package reads back field for field, with no line a client's text could add.

Recipient addresses and diagnostics come from strangers (a next hop's reply, an address a
client gave); the report goes to a real person, so a CR LF in them must never become a field.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

from hypothesis import given
from hypothesis import strategies as st

from relaybox.dsn.report import (
    MAX_RETURNED_HEADERS,
    RecipientStatus,
    build_dsn,
    find_status,
)

from .support.properties import budget

TOP_FIELDS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]

_INJECT = ["\r\n", "\r", "\n", "\r\nBcc: victim@example.org\r\n", "\x00", "\x1b[2J", "\u2028"]
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(_INJECT),
        st.text(max_size=12),
        st.sampled_from(["550 5.1.1 ", "4.7.1", " ", "--", "=_relaybox_dsn_", "é", "x" * 300]),
    ),
    max_size=12,
).map("".join)
"""Text from a stranger: line breaks and field lines to inject, controls, long words."""

statuses = st.builds(
    lambda c, s, d: f"{c}.{s}.{d}",
    st.sampled_from("245"),
    st.integers(0, 999),
    st.integers(0, 999),
)
hosts = st.one_of(
    st.text("abcxyz019.-_", min_size=1, max_size=30),
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
)
epochs = st.floats(0, 4_000_000_000, allow_nan=False)
recipient_statuses = st.builds(
    RecipientStatus,
    recipient=st.one_of(st.just("bob@example.org"), hostile_text, st.text()),
    action=st.sampled_from(["failed", "delayed", "delivered", "relayed", "expanded"]),
    status=statuses,
    diagnostic=st.one_of(st.none(), hostile_text, st.text()),
    remote_mta=st.one_of(st.none(), hosts),
    last_attempt_at=st.one_of(st.none(), epochs),
    will_retry_until=st.one_of(st.none(), epochs),
)
senders = st.one_of(
    st.just("alice@example.com"),
    st.just("josé@bücher.example"),
    st.just('"john smith"@example.com'),
    st.text(max_size=20).filter(lambda s: s.strip() not in ("", "<>")),
)
originals = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                b"Subject: x\r\n",
                b"From: a@b.example\r\n",
                b"\r\n",
                b"\n",
                b"\r",
                b"caf\xe9 \xc3\xa9",
                b"\x00",
                b"L" * 1200,
                b"--=_relaybox_dsn_",
                b".\r\n",
            ]
        ),
        max_size=20,
    ).map(b"".join),
)


def _parse(report: bytes) -> Message:
    return email.message_from_bytes(report, policy=email.policy.default)


@budget(80)
@given(
    sender=senders,
    recipients=st.lists(recipient_statuses, min_size=1, max_size=4),
    original=originals,
    include_body=st.booleans(),
    now=epochs,
    arrived_at=epochs,
)
def test_any_report_is_a_valid_multipart_report_with_only_its_own_fields(
    sender: str,
    recipients: list[RecipientStatus],
    original: bytes,
    include_body: bool,
    now: float,
    arrived_at: float,
) -> None:
    try:
        report = build_dsn(
            reporting_mta="relay.example.test",
            bounce_from="MAILER-DAEMON@relay.example.test",
            original_sender=sender,
            queue_id="0123456789ABC",
            arrived_at=arrived_at,
            recipients=recipients,
            original_message=original,
            include_body=include_body,
            now=now,
        )
    except ValueError as err:
        # Only a sender with a control character is refused (no report can reach it).
        assert re.search(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]", sender), err
        return

    # RFC 5322 §2.1.1 and §2.3: CRLF line ends only, no line over 998 octets.
    lines = report.split(b"\r\n")
    assert lines[-1] == b""
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)
    assert report.isascii() or not sender.isascii()

    # What relaybox wrote itself (the fields, the explanation, the delivery status) holds no
    # control character: a NUL or an escape sequence in a stranger's text is not passed on.
    boundary = re.search(rb'boundary="([^"]+)"', report)
    assert boundary is not None
    own = b"".join(report.split(b"--" + boundary.group(1))[:3]).replace(b"\r\n", b"")
    assert not re.search(rb"[\x00-\x1f\x7f]", own), own

    message = _parse(report)
    assert [name for name, _ in message.items()] == TOP_FIELDS
    assert not message.defects, message.defects
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    # Unfolded as RFC 5322 §2.2.3 reads it; UTF-8 (RFC 6532), which the email package keeps
    # as surrogate escapes.
    to = dict(message.raw_items())["To"].encode("ascii", "surrogateescape").decode("utf-8")
    to = " ".join(to.split())
    assert to == f"<{' '.join(sender.strip().removeprefix('<').removesuffix('>').split())}>"

    text, status, returned = message.get_payload()  # type: ignore[misc]
    assert text.get_content_type() == "text/plain"
    assert not text.defects
    text.get_content()  # decodes
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert len(blocks) == 1 + len(recipients)
    assert [name for name, _ in blocks[0].items()] == [
        "Reporting-MTA",
        "Arrival-Date",
        "X-Relaybox-Queue-ID",
    ]
    for block, entry in zip(blocks[1:], recipients, strict=True):
        names = [name for name, _ in block.items()]
        assert names[:3] == ["Final-Recipient", "Action", "Status"]
        assert set(names) <= {
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date",
            "Will-Retry-Until",
        }
        assert len(names) == len(set(names))
        assert block["Action"] == entry.action
        assert block["Status"] == entry.status
        assert str(block["Final-Recipient"]).startswith(("rfc822; ", "utf-8; "))

    if include_body:
        assert returned.get_content_type() in ("message/rfc822", "message/global")
    else:
        assert returned.get_content_type() == "text/rfc822-headers"
        head = re.sub(rb"\r\n|\r|\n", b"\r\n", original)
        end = head.find(b"\r\n\r\n")
        returned_head = returned.get_payload(decode=True)
        assert len(returned_head) <= MAX_RETURNED_HEADERS + 2
        if end >= 0 and end + 2 <= MAX_RETURNED_HEADERS and not head.startswith(b"\r\n"):
            assert returned_head == head[: end + 2]


@budget(150)
@given(text=st.one_of(hostile_text, st.text()))
def test_a_status_found_in_any_text_is_a_valid_status(text: str) -> None:
    found = find_status(text)
    if found is not None:
        c, s, d = found.split(".")
        assert c in "245" and s == str(int(s)) and d == str(int(d))
        assert find_status(found) == found
