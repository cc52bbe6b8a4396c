"""Delivery status notifications: structure (RFC 6522, RFC 3464), encodings, words users read.

Every report is read back with the stdlib parser under ``email.policy.strict``, which raises on any
defect, and every part is checked to carry none.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from email.message import EmailMessage, Message
from typing import Any

import pytest

from relaybox.config.model import Config, ServerConfig
from relaybox.dsn.bounce import dsn_message
from relaybox.dsn.report import (
    MAX_RETURNED_HEADERS,
    ORIGINAL_READ,
    SUBJECTS,
    RecipientStatus,
    build_dsn,
    find_status,
    is_bounce_candidate,
)
from relaybox.queue import DeliveryJob, PendingRecipient, RecipientOutcome

ARRIVED = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 +0000
ATTEMPT = ARRIVED + 600
NOW = ARRIVED + 900

ORIGINAL = (
    b"Received: from client.example.test ([127.0.0.1]) by relay.example.org\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the figures are attached.\r\n"
)

BOB_FAILED = RecipientStatus(
    recipient="bob@example.org",
    action="failed",
    status="5.1.1",
    diagnostic="550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown",
    remote_mta="mx.example.org",
    last_attempt_at=ATTEMPT,
)
CAROL_DELAYED = RecipientStatus(
    recipient="carol@example.net",
    action="delayed",
    status="4.7.1",
    diagnostic="451 4.7.1 Greylisted, please try again later",
    remote_mta="mx.example.net",
    last_attempt_at=ATTEMPT,
    will_retry_until=ARRIVED + 5 * 86400,
)
DAVE_DELIVERED = RecipientStatus(
    recipient="dave@example.com",
    action="delivered",
    status="2.0.0",
    diagnostic="250 2.0.0 Ok: queued as 4XyZ",
    remote_mta="mx.example.com",
    last_attempt_at=ATTEMPT,
)


def dsn(*recipients: RecipientStatus, **overrides: Any) -> bytes:
    """A report about ``recipients`` (Bob's failure by default) of ``ORIGINAL``."""
    args: dict[str, Any] = {
        "reporting_mta": "relay.example.org",
        "bounce_from": "MAILER-DAEMON@relay.example.org",
        "original_sender": "alice@example.com",
        "queue_id": "04F7K2M9QXB3T",
        "arrived_at": ARRIVED,
        "recipients": recipients or (BOB_FAILED,),
        "original_message": ORIGINAL,
        "now": NOW,
    }
    args.update(overrides)
    return build_dsn(**args)


def assert_no_defects(msg: Message) -> None:
    for part in msg.walk():
        assert part.defects == [], (part.get_content_type(), part.defects)


def parse(data: bytes) -> EmailMessage:
    """Parse strictly (any defect raises) and check that no part recorded one."""
    msg = email.message_from_bytes(data, policy=email.policy.strict)
    assert isinstance(msg, EmailMessage)
    assert_no_defects(msg)
    return msg


def subparts(msg: Message) -> list[Message]:
    """The parts of a multipart, the blocks of a delivery-status, the message in a message/*."""
    payload = msg.get_payload()
    assert isinstance(payload, list)
    assert all(isinstance(part, Message) for part in payload)
    return [part for part in payload if isinstance(part, Message)]


def parts(data: bytes) -> list[Message]:
    return subparts(parse(data))


def status_blocks(data: bytes) -> list[Message]:
    """The field groups of the message/delivery-status part: per-message, then per recipient."""
    return subparts(parts(data)[1])


def explanation(data: bytes) -> str:
    part = parts(data)[0]
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return " ".join(text.split())  # the text is wrapped; compare words, not line breaks


def test_report_is_multipart_report_of_delivery_status() -> None:
    msg = parse(dsn())
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["MIME-Version"] == "1.0"


def test_report_has_explanation_then_status_then_original_headers() -> None:
    assert [part.get_content_type() for part in parts(dsn())] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]


def test_per_message_fields_name_reporting_mta_arrival_and_queue_id() -> None:
    fields = status_blocks(dsn())[0]
    assert fields["Reporting-MTA"] == "dns; relay.example.org"
    assert fields["Arrival-Date"] == "Fri, 15 Jan 2027 08:00:00 +0000"
    assert fields["X-Relaybox-Queue-ID"] == "04F7K2M9QXB3T"


def test_failed_recipient_block_has_every_field_known() -> None:
    block = status_blocks(dsn(BOB_FAILED))[1]
    assert block["Final-Recipient"] == "rfc822; bob@example.org"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Remote-MTA"] == "dns; mx.example.org"
    assert block["Diagnostic-Code"] == f"smtp; {BOB_FAILED.diagnostic}"
    assert block["Last-Attempt-Date"] == "Fri, 15 Jan 2027 08:10:00 +0000"
    assert "Will-Retry-Until" not in block  # RFC 3464 §2.3.9: only for "delayed"


def test_delayed_recipient_block_says_until_when_it_is_retried() -> None:
    block = status_blocks(dsn(CAROL_DELAYED))[1]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.7.1"
    assert block["Will-Retry-Until"] == "Wed, 20 Jan 2027 08:00:00 +0000"


def test_will_retry_until_is_left_out_for_other_actions() -> None:
    failed_late = RecipientStatus(**{**vars(BOB_FAILED), "will_retry_until": ARRIVED + 99})
    assert "Will-Retry-Until" not in status_blocks(dsn(failed_late))[1]


def test_each_recipient_gets_its_own_block_in_order() -> None:
    blocks = status_blocks(dsn(BOB_FAILED, CAROL_DELAYED, DAVE_DELIVERED))
    assert [block["Final-Recipient"] for block in blocks[1:]] == [
        "rfc822; bob@example.org",
        "rfc822; carol@example.net",
        "rfc822; dave@example.com",
    ]
    assert [block["Action"] for block in blocks[1:]] == ["failed", "delayed", "delivered"]


def test_unknown_remote_mta_and_own_diagnostic_are_reported_as_ours() -> None:
    """No server answered: no Remote-MTA (RFC 3464 §2.3.5) and a non-SMTP diagnostic type."""
    timeout = RecipientStatus(
        "bob@example.org", "failed", "4.4.1", "connection timed out", None, ATTEMPT
    )
    block = status_blocks(dsn(timeout))[1]
    assert "Remote-MTA" not in block
    assert block["Diagnostic-Code"] == "X-Relaybox; connection timed out"


def test_report_goes_to_original_sender_from_the_mail_delivery_system() -> None:
    data = dsn()
    assert b"\r\nTo: <alice@example.com>\r\n" in data
    msg = parse(data)
    assert msg["To"].addresses[0].addr_spec == "alice@example.com"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@relay.example.org>"


def test_non_ascii_sender_is_the_only_8bit_text_in_the_report() -> None:
    """RFC 6532 §3.2: the To of a report to an SMTPUTF8 sender is UTF-8; nothing else is."""
    data = dsn(original_sender="jörg@exämple.org")
    to_line = "To: <jörg@exämple.org>\r\n".encode()
    assert to_line in data
    assert all(byte < 128 for byte in data.replace(to_line, b""))
    parse(data)  # the stdlib reads UTF-8 headers as undecodable bytes, but without defects


def test_report_sent_with_null_sender_is_never_bounced_itself() -> None:
    """The caller spools the report with MAIL FROM:<>; should it fail, no report follows."""
    assert not is_bounce_candidate("", parse(dsn()))


@pytest.mark.parametrize("sender", ["", "<>", " "])
def test_null_sender_is_not_a_bounce_candidate(sender: str) -> None:
    assert not is_bounce_candidate(sender, {"Subject": "anything"})


def test_ordinary_sender_is_a_bounce_candidate_even_when_auto_submitted() -> None:
    assert is_bounce_candidate("cron@example.com", {"Auto-Submitted": "auto-generated"})


def test_report_to_the_null_sender_is_refused() -> None:
    with pytest.raises(ValueError, match="null sender"):
        dsn(original_sender="")


def test_original_headers_only_by_default() -> None:
    returned = parts(dsn())[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    content = returned.get_payload(decode=True)
    assert content == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert b"the figures are attached" not in dsn()


@pytest.mark.parametrize("ending", [b"", b"\r\nBody\r\n"], ids=["no blank line", "body after"])
def test_returned_headers_are_capped_at_a_whole_line(ending: bytes) -> None:
    """A 10 MB message that is all header (no blank line), or whose header block alone is
    over the cap, returns at most MAX_RETURNED_HEADERS of it, ending at a line end."""
    line = b"X-Filler: " + b"a" * 60 + b"\r\n"
    original = b"Subject: big\r\n" + line * (10_000_000 // len(line)) + ending
    report = dsn(original_message=original)
    assert len(report) < MAX_RETURNED_HEADERS + 10_000
    returned = parts(report)[2]
    content = returned.get_payload(decode=True)
    assert isinstance(content, bytes)
    assert content.startswith(b"Subject: big\r\nX-Filler: ")
    assert content.endswith(line)
    assert MAX_RETURNED_HEADERS - len(line) < len(content) <= MAX_RETURNED_HEADERS
    # Callers may pass only the part of the message a headers-only report looks at.
    assert dsn(original_message=original[:ORIGINAL_READ]) == report


def test_include_body_attaches_the_whole_message() -> None:
    returned = parts(dsn(include_body=True))[2]
    assert returned.get_content_type() == "message/rfc822"
    (inner,) = subparts(returned)
    assert isinstance(inner, EmailMessage)
    assert inner["Subject"] == "Quarterly figures"
    assert inner.get_content() == "Hello Bob,\r\nthe figures are attached.\r\n"
    assert "attached below" in explanation(dsn(include_body=True))


def test_8bit_headers_are_quoted_printable_and_the_report_stays_7bit() -> None:
    """RFC 6522 §4: headers that need encoding may be quoted-printable."""
    original = b"From: J\xc3\xb6rg <j@example.com>\r\nSubject: caf\xe9 \xff\r\n\r\nBody\r\n"
    data = dsn(original_message=original)
    assert all(byte < 128 for byte in data)
    returned = parts(data)[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned["Content-Transfer-Encoding"] == "quoted-printable"
    assert returned.get_payload(decode=True) == original.split(b"\r\n\r\n")[0] + b"\r\n"


def raw_part(data: bytes, index: int) -> tuple[bytes, bytes]:
    """The header block and the still-encoded body of the report's part ``index``, as sent."""
    boundary = parse(data).get_boundary()
    assert boundary is not None
    part = data.split(b"\r\n--" + boundary.encode() + b"\r\n")[index + 1]
    part = part.split(b"\r\n--" + boundary.encode())[0]
    head, _, body = part.partition(b"\r\n\r\n")
    return head, body


def test_quoted_printable_part_decodes_back_to_the_original_with_crlf() -> None:
    """RFC 2045 §6.7: encoded lines of at most 76 octets end in CRLF, and decoding gives back
    every byte of the original header block, its CRLF line ends included (not bare LF)."""
    long_subject = "Subject: " + "Grüße aus Köln, " * 8 + "ende  "
    original = (
        f"From: Jörg <j@example.com>\r\n{long_subject}\r\n=?x?= tab\there\r\n\r\nBody\r\n"
    ).encode()
    head, body = raw_part(dsn(original_message=original), 2)
    assert b"Content-Transfer-Encoding: quoted-printable" in head
    lines = body.split(b"\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert max(len(line) for line in lines) <= 76
    assert any(line.endswith(b"=") for line in lines)  # the long subject was soft-broken
    assert binascii.a2b_qp(body) == original.split(b"\r\n\r\n")[0] + b"\r\n"


def test_8bit_message_with_body_is_base64_message_global_and_the_report_stays_7bit() -> None:
    """message/rfc822 admits no base64 (RFC 2046 §5.2.1); message/global does (RFC 6532 §3.7).

    The stdlib parser reads every message/* part as a nested message whatever its encoding, so
    this one report is parsed with the default policy and the part's raw text decoded by hand.
    """
    original = b"From: a@example.com\nSubject: caf\xc3\xa9\n\n\xff\x00 8-bit body\n"
    data = dsn(original_message=original, include_body=True)
    assert all(byte < 128 for byte in data)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    returned = subparts(msg)[2]
    assert returned.get_content_type() == "message/global"
    assert returned["Content-Transfer-Encoding"] == "base64"
    (nested,) = subparts(returned)
    encoded = nested.get_payload()
    assert isinstance(encoded, str)
    assert base64.b64decode(encoded) == original.replace(b"\n", b"\r\n")


def test_every_line_ends_in_crlf_and_none_is_over_998_octets() -> None:
    long_word = "x" * 3000
    data = dsn(
        RecipientStatus(
            "bob@example.org", "failed", "5.1.1", f"550 {long_word}", "mx.example.org", ATTEMPT
        ),
        original_message=ORIGINAL.replace(b"\r\n", b"\n") + b"lone\rcr\n",
    )
    assert data.endswith(b"\r\n")
    assert re.search(rb"[^\r]\n", data) is None, "bare LF"
    assert re.search(rb"\r[^\n]", data) is None, "bare CR"
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parse(data)


def test_long_diagnostic_is_folded_and_reads_back_whole() -> None:
    reply = "550 5.7.1 " + " ".join(f"word{n}" for n in range(200))
    data = dsn(RecipientStatus("bob@example.org", "failed", "5.7.1", reply, "mx.example.org", 1.0))
    assert re.search(rb"\r\nDiagnostic-Code: smtp; 550 5\.7\.1 word0 [^\r]*\r\n word", data)
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    assert status_blocks(data)[1]["Diagnostic-Code"] == f"smtp; {reply}"


def test_multiline_reply_is_joined_and_never_breaks_a_field() -> None:
    reply = "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Bye"
    data = dsn(RecipientStatus("bob@example.org", "failed", "5.1.1", reply, "mx.example.org", 1.0))
    block = status_blocks(data)[1]
    assert block["Diagnostic-Code"] == (
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 Bye"
    )
    assert block["Last-Attempt-Date"] is not None  # the field after it still parses as a field


def test_non_ascii_recipient_is_written_as_utf8_xtext() -> None:
    """RFC 6533 §3: utf-8-addr-xtext keeps message/delivery-status 7-bit."""
    recipient = RecipientStatus("jörg+x@exämple.org", "failed", "5.1.1", None, None, None)
    data = dsn(recipient)
    assert all(byte < 128 for byte in data)
    block = status_blocks(data)[1]
    assert block["Final-Recipient"] == r"utf-8; j\x{F6}rg\x{2B}x@ex\x{E4}mple.org"
    assert "jörg+x@exämple.org" in explanation(data)


def test_explanation_names_failed_recipient_quotes_reply_and_says_what_to_do() -> None:
    text = explanation(dsn(BOB_FAILED))
    assert "could not be delivered" in text
    assert "bob@example.org" in text
    assert BOB_FAILED.diagnostic is not None and BOB_FAILED.diagnostic in text
    assert "mx.example.org" in text
    assert "the address does not exist" in text
    assert "check the address" in text


def test_explanation_for_a_delay_says_nothing_is_needed_yet_and_until_when() -> None:
    text = explanation(dsn(CAROL_DELAYED))
    assert "not been delivered yet" in text
    assert "carol@example.net" in text
    assert "do not need to do anything" in text
    assert "retried until Wed, 20 Jan 2027 08:00:00 +0000" in text
    assert "check the address" not in text


@pytest.mark.parametrize(
    ("recipients", "subject"),
    [
        ((BOB_FAILED,), SUBJECTS["failed"]),
        ((CAROL_DELAYED,), SUBJECTS["delayed"]),
        ((DAVE_DELIVERED,), SUBJECTS["delivered"]),
        ((DAVE_DELIVERED, CAROL_DELAYED, BOB_FAILED), SUBJECTS["failed"]),
    ],
)
def test_subject_names_the_most_serious_action(
    recipients: tuple[RecipientStatus, ...], subject: str
) -> None:
    assert parse(dsn(*recipients))["Subject"] == subject


def test_subjects_are_the_familiar_ones() -> None:
    assert SUBJECTS == {
        "failed": "Undelivered Mail Returned to Sender",
        "delayed": "Delayed Mail (still being retried)",
        "delivered": "Successful Mail Delivery Report",
    }


def test_report_is_marked_auto_submitted() -> None:
    assert parse(dsn())["Auto-Submitted"] == "auto-replied"


def test_report_has_date_and_generated_message_id() -> None:
    msg = parse(dsn())
    assert msg["Date"] == "Fri, 15 Jan 2027 08:15:00 +0000"
    assert msg["Message-ID"] == "<04F7K2M9QXB3T.dsn.1800000900000000@relay.example.org>"
    assert parse(dsn(message_id="<given@example.org>"))["Message-ID"] == "<given@example.org>"


def test_boundary_appears_only_as_part_delimiters() -> None:
    data = dsn(include_body=True)
    boundary = parse(data).get_boundary()
    assert boundary is not None
    lines = [line for line in data.split(b"\r\n") if boundary.encode() in line]
    delimiter = b"--" + boundary.encode()
    assert lines[1:] == [delimiter, delimiter, delimiter, delimiter + b"--"]
    assert lines[0].startswith(b' boundary="')  # the folded Content-Type parameter


def test_same_inputs_give_the_same_bytes() -> None:
    assert dsn(BOB_FAILED, CAROL_DELAYED) == dsn(BOB_FAILED, CAROL_DELAYED)


@pytest.mark.parametrize("status", ["5.1", "550", "5.01.1", "3.1.1", "5.1.1 "])
def test_malformed_status_code_is_refused(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        dsn(RecipientStatus("bob@example.org", "failed", status, None, None, None))


def test_line_breaks_in_the_sender_are_refused() -> None:
    """They would inject header lines into the report (and commands into SMTP)."""
    with pytest.raises(ValueError, match="original_sender"):
        dsn(original_sender="alice@example.com\r\nBcc: eve@example.net")


def test_report_without_recipients_is_refused() -> None:
    with pytest.raises(ValueError, match="recipient"):
        build_dsn(
            reporting_mta="relay.example.org",
            bounce_from="MAILER-DAEMON@relay.example.org",
            original_sender="alice@example.com",
            queue_id="04F7K2M9QXB3T",
            arrived_at=ARRIVED,
            recipients=(),
            original_message=ORIGINAL,
            now=NOW,
        )


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("550 5.1.1 <bob@example.org>: User unknown", "5.1.1"),
        ("550 5.01.1 <bob@example.org>: User unknown", "5.1.1"),  # leading zero dropped
        ("556 5.1.10 null MX", "5.1.10"),
        ("250 2.0.0 Ok: queued", "2.0.0"),
        ("451 4.7.1 Greylisted (try again in 5.5 minutes)", "4.7.1"),
        ("5.2.2", "5.2.2"),
        ("550 Mailbox unavailable at 10.5.1.1", None),  # part of an address
        ("554 refused by filter version 5.1.1.2", None),  # part of a longer number
        ("550 5.1.1234 odd", None),
        ("550 6.1.1 no such class", None),
        ("550 user unknown", None),
        ("", None),
    ],
)
def test_status_is_found_in_replies_as_rfc_3463_writes_it(reply: str, status: str | None) -> None:
    assert find_status(reply) == status


def test_a_reply_with_a_leading_zero_in_its_status_still_makes_a_report() -> None:
    """`550 5.01.1` (a server's sloppy status) once made the DSN refuse its own status."""
    job = DeliveryJob(
        1,
        "04F7K2M9QXB3T",
        "alice@example.com",
        ARRIVED,
        ORIGINAL,
        False,
        False,
        False,
        None,
        (PendingRecipient(0, "bob@example.org", "queued", 1, None),),
    )
    outcome = RecipientOutcome(0, "bounced", "550 5.01.1 <bob@example.org>: User unknown")
    config = Config(server=ServerConfig(hostname="relay.example.org"))
    report = dsn_message(job, [outcome], "failed", config, NOW)
    (_, bob) = status_blocks(report.data.split(b"\r\n", 1)[1])
    assert bob["Status"] == "5.1.1"
    assert "5.01.1" in bob["Diagnostic-Code"]
