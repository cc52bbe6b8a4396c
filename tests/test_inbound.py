"""The receiving side over real loopback sockets: relay policy, limits, DATA rules, transcripts."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import re
import smtplib
import socket

import pytest

from relaybox.config.model import LimitsConfig
from relaybox.message.replies import Reply
from relaybox.queue import MessageFilter

from .support.clock import FakeClock
from .support.configs import make_config, relay_listener
from .support.smtp import QUEUED, SMTPClient, said, simple_message


async def stored(run, queue_id: str) -> bytes:
    data = await run.engine.admin.message_data(queue_id)
    assert data is not None, f"{queue_id} is not in the spool"
    return data


async def queue_ids(run) -> list[str]:
    page = await run.engine.admin.list_messages(MessageFilter(states=()), limit=10_000)
    return [row.queue_id for row in page.rows]


# ---------------------------------------------------------------------- acceptance


async def test_received_header_is_dated_by_the_engine_clock(start_engine, smtp):
    """The trace header's date comes from the one clock, like every other time relaybox
    writes (a test moving the clock sees it; nothing reads the system clock behind it)."""
    clock = FakeClock()
    clock.advance(400 * 86400)
    run = await start_engine(clock=clock)
    client = await smtp(run)
    code, text = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250, text
    data = await stored(run, QUEUED.search(text).group(1))
    received = data.decode().split("\r\n")[:3]  # the field and its folded lines
    field = " ".join(line.strip() for line in received if line.startswith(("Rec", "\t")))
    when = email.utils.parsedate_to_datetime(field.rsplit(";", 1)[1].strip())
    assert abs(when.timestamp() - clock()) < 2


async def test_accepted_message_is_spooled_with_received_header(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, text = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250
    queue_id = QUEUED.search(text).group(1)
    data = await stored(run, queue_id)
    assert data.startswith(b"Received: from client.example.test ([127.0.0.1])\r\n")
    assert f"by relay.example.test (relaybox) with ESMTP id {queue_id}".encode() in data
    assert b"for <b@example.org>;" in data
    assert data.endswith(b"\r\n\r\nHello.\r\n")
    detail = await run.engine.admin.show(queue_id)
    assert detail.row.sender == "a@example.com"
    assert [r.address for r in detail.recipients] == ["b@example.org"]
    assert all(r.state == "queued" for r in detail.recipients)
    assert detail.helo == "client.example.test"
    assert detail.client_ip == "127.0.0.1"
    assert re.search(rf"info {queue_id}: accepted .*size={len(data)}", run.log_text())


async def test_smtplib_client_can_send(start_engine):
    """A stock client library, not just our raw one, gets its mail accepted."""
    run = await start_engine()
    host, port = run.address()

    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port, timeout=10) as s:
            return s.sendmail("a@example.com", ["b@example.org", "c@example.net"], simple_message())

    refused = await asyncio.to_thread(send)
    assert refused == {}
    (queue_id,) = await queue_ids(run)
    detail = await run.engine.admin.show(queue_id)
    assert [r.address for r in detail.recipients] == ["b@example.org", "c@example.net"]


async def test_null_sender_is_accepted_for_bounces(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, _ = await client.send_message("", ["b@example.org"], simple_message())
    assert code == 250


async def test_inbound_transcript_is_stored_with_the_message(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, text = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    queue_id = QUEUED.search(text).group(1)
    await client.cmd("QUIT")
    assert await client.closed()
    await asyncio.sleep(0.05)  # connection_lost queues the full transcript
    await run.engine.spool.flush()
    detail = await run.engine.admin.show(queue_id)
    lines = [(line.direction, line.text) for line in detail.inbound_transcript]
    assert ("C", "EHLO client.example.test") in lines
    assert ("C", "MAIL FROM:<a@example.com>") in lines
    assert ("S", Reply.RCPT_OK) in lines
    assert any(d == "-" and "bytes of message data" in t for d, t in lines)
    assert ("S", Reply.queued(queue_id)) in lines
    # The body is recorded only as its size.
    assert not any("Hello." in t for _, t in lines)


async def test_several_messages_in_one_session(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    for i in range(3):
        code, _ = await client.send_message(
            "a@example.com", ["b@example.org"], simple_message(f"m{i}")
        )
        assert code == 250
    assert len(await queue_ids(run)) == 3


async def test_ipv6_listener_accepts_mail(start_engine, smtp, tmp_path):
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; relaybox must serve [::1]")
    from relaybox.config.model import SocketAddress

    listener = relay_listener(listen=(SocketAddress("::1", 0),))
    run = await start_engine(make_config(tmp_path / "v6", listeners=(listener,)))
    client = await smtp(run)
    code, _ = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250


# ---------------------------------------------------------------------- never an open relay


async def test_unknown_network_cannot_relay(start_engine, smtp, tmp_path):
    listener = relay_listener(allowed_networks=(ipaddress.ip_network("192.0.2.0/24"),))
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await smtp(run)
    assert said(*await client.cmd("MAIL FROM:<a@example.com>")) == Reply.MAIL_OK
    code, text = await client.cmd("RCPT TO:<b@example.org>")
    assert said(code, text) == Reply.RELAY_DENIED
    assert said(*await client.cmd("DATA")) == Reply.NEED_RCPT
    assert "reject stage=RCPT" in run.log_text()
    assert await queue_ids(run) == []


async def test_submission_listener_does_not_relay_without_auth(start_engine, smtp, tmp_path):
    listener = relay_listener(role="submission")
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await smtp(run)
    # RFC 6409 §4.3: nothing is accepted before AUTH, even from a trusted network.
    code, text = await client.cmd("MAIL FROM:<a@example.com>")
    assert (code, text) == (530, "5.7.0 Authentication required")
    assert (await client.cmd("RCPT TO:<b@example.org>"))[0] == 530


@pytest.mark.parametrize(
    "address",
    [
        "user%outside.example@example.org",
        "outside.example!user@example.org",
        '"user@outside.example"@example.org',
        "@relay.example:user@example.org",
        "user@example.org.",
        "user@[192.0.2.1]",
    ],
)
async def test_relay_tricks_are_refused_for_everyone(start_engine, smtp, address):
    run = await start_engine()  # loopback is trusted: the refusal must not depend on that
    client = await smtp(run)
    assert said(*await client.cmd("MAIL FROM:<a@example.com>")) == Reply.MAIL_OK
    code, text = await client.cmd(f"RCPT TO:<{address}>")
    assert code == 553 and text.startswith("5.1.3"), text


async def test_ip_literal_allowed_when_configured(start_engine, smtp, tmp_path):
    listener = relay_listener(allow_ip_literals=True)
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await smtp(run)
    assert said(*await client.cmd("MAIL FROM:<a@example.com>")) == Reply.MAIL_OK
    assert said(*await client.cmd("RCPT TO:<user@[192.0.2.1]>")) == Reply.RCPT_OK


async def test_suppressed_recipient_is_refused_with_reason(start_engine, smtp):
    run = await start_engine()
    await run.engine.admin.suppress_add("gone@example.org", "550 5.1.1 user unknown")
    await run.engine.refresh_suppression()
    client = await smtp(run)
    assert said(*await client.cmd("MAIL FROM:<a@example.com>")) == Reply.MAIL_OK
    code, text = await client.cmd("RCPT TO:<Gone@Example.org>")
    assert code == 550
    assert "suppressed" in text and "user unknown" in text
    assert said(*await client.cmd("RCPT TO:<other@example.org>")) == Reply.RCPT_OK


# ---------------------------------------------------------------------- limits


async def test_recipient_limit_gives_452(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_recipients=2))
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    assert said(*await client.cmd("RCPT TO:<r1@example.org>")) == Reply.RCPT_OK
    assert said(*await client.cmd("RCPT TO:<r2@example.org>")) == Reply.RCPT_OK
    code, text = await client.cmd("RCPT TO:<r3@example.org>")
    assert said(code, text) == Reply.TOO_MANY_RECIPIENTS


async def test_declared_size_over_limit_gives_552(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_message_size=10_000))
    client = await smtp(run)
    _, ehlo = await client.cmd("EHLO client.example.test")
    assert "SIZE 10000" in ehlo.splitlines()
    code, text = await client.cmd("MAIL FROM:<a@example.com> SIZE=10001")
    assert said(code, text) == Reply.size_exceeded(10_000)


async def test_actual_size_over_limit_gives_552_and_nothing_stored(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_message_size=10_000))
    client = await smtp(run)
    body = simple_message(body="x" * 70 + "\r\n" + ("y" * 70 + "\r\n") * 200)
    code, text = await client.send_message("a@example.com", ["b@example.org"], body)
    assert said(code, text) == Reply.size_exceeded(10_000)
    assert await queue_ids(run) == []
    # The session goes on: the next message is fine.
    code, _ = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250


async def test_long_line_is_refused(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    body = simple_message(body="z" * 999)
    code, text = await client.send_message("a@example.com", ["b@example.org"], body)
    assert said(code, text) == Reply.line_too_long(998)
    body = simple_message(body="z" * 998)
    assert (await client.send_message("a@example.com", ["b@example.org"], body))[0] == 250


async def test_long_command_line_is_refused(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, _ = await client.cmd("NOOP " + "x" * 600)
    assert code == 500
    assert (await client.cmd("NOOP"))[0] == 250


async def test_idle_client_is_disconnected(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(idle_timeout=0.5))
    client = await smtp(run)
    assert await client.closed(timeout=5)


async def test_slow_data_hits_the_deadline(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(data_timeout=0.6, idle_timeout=5))
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    assert said(*await client.cmd("DATA")) == Reply.START_DATA
    for _ in range(3):  # still sending, well within the idle timeout, but slowly
        await client.send(b"Subject: drip\r\n")
        await asyncio.sleep(0.15)
    code, text = await client.reply()
    assert said(code, text) == Reply.DATA_TIMEOUT
    assert await client.closed()
    assert await queue_ids(run) == []


async def test_connection_limit_per_ip_gives_421(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_connections_per_ip=2))
    await smtp(run)
    await smtp(run)
    third = await smtp(run, greet=False)
    code, text = await third.reply()
    assert said(code, text) == Reply.TOO_MANY_FROM_IP
    assert await third.closed()


async def test_total_connection_limit_gives_421(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_connections=1))
    await smtp(run)
    second = await smtp(run, greet=False)
    assert said(*await second.reply()) == Reply.TOO_MANY_CONNECTIONS


async def test_connection_slot_is_freed_on_disconnect(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_connections=1))
    first = await smtp(run)
    await first.cmd("QUIT")
    await first.closed()
    for _ in range(50):
        if run.engine._ctx.connections.total == 0:
            break
        await asyncio.sleep(0.02)
    second = await smtp(run, greet=False)
    assert (await second.reply())[0] == 220


async def test_message_rate_per_ip_gives_450(start_engine, smtp):
    run = await start_engine(limits=LimitsConfig(max_messages_per_minute_per_ip=2))
    client = await smtp(run)
    for _ in range(2):
        assert (await client.send_message("a@example.com", ["b@example.org"], simple_message()))[
            0
        ] == 250
    code, text = await client.cmd("MAIL FROM:<a@example.com>")
    assert said(code, text) == Reply.RATE_LIMITED


async def test_low_disk_space_refuses_at_mail(start_engine, smtp):
    run = await start_engine(min_free_space_mb=10**9)  # more than any disk has
    client = await smtp(run)
    code, text = await client.cmd("MAIL FROM:<a@example.com>")
    assert said(code, text) == Reply.INSUFFICIENT_STORAGE


async def test_failed_spool_write_gives_451_not_250(start_engine, smtp):
    run = await start_engine()
    spool = run.engine.spool
    # A real SQLite failure: cap the database at its current size so the next insert fails.
    pages = await spool._write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await spool._write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    client = await smtp(run)
    big = simple_message(body=("x" * 76 + "\r\n") * 2000)
    code, text = await client.send_message("a@example.com", ["b@example.org"], big)
    assert said(code, text) == Reply.SPOOL_FAILED
    assert "spool-failed" in run.log_text()
    await spool._write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    assert (await client.send_message("a@example.com", ["b@example.org"], big))[0] == 250


async def test_talking_before_greeting_is_dropped(start_engine, tmp_path):
    listener = relay_listener(greet_pause=0.5)
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await SMTPClient.connect(*run.address())
    await client.send("EHLO eager.example\r\n")
    assert said(*await client.reply()) == Reply.PREGREET
    assert await client.closed()
    await client.close()
    polite = await SMTPClient.connect(*run.address())
    assert (await polite.reply())[0] == 220
    await polite.close()


# ---------------------------------------------------------------------- DATA rules


async def test_dot_stuffing_is_undone(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    body = b"Subject: dots\r\n\r\n..leading dot\r\n...two\r\n.\r\n"[:-3]
    code, text = await client.send_message("a@example.com", ["b@example.org"], body)
    assert code == 250
    data = await stored(run, QUEUED.search(text).group(1))
    assert data.endswith(b"\r\n\r\n.leading dot\r\n..two\r\n")


async def test_empty_message_is_accepted(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, text = await client.send_message("a@example.com", ["b@example.org"], b"")
    assert code == 250
    data = await stored(run, QUEUED.search(text).group(1))
    assert data.startswith(b"Received:") and data.count(b"\r\n") == 3


async def test_data_arriving_in_tiny_pieces_is_reassembled(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    payload = b"Subject: bits\r\n\r\nline one\r\n.dotted\r\nend\r\n.\r\n"
    for i in range(len(payload)):
        await client.send(payload[i : i + 1])
        await asyncio.sleep(0)
    code, text = await client.reply()
    assert code == 250
    data = await stored(run, QUEUED.search(text).group(1))
    assert data.endswith(b"Subject: bits\r\n\r\nline one\r\ndotted\r\nend\r\n")


async def test_large_message_survives_intact(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    lines = [f"line {i:06d} ".encode() + b"x" * 60 for i in range(20_000)]  # ~1.4 MB
    body = b"Subject: big\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    code, text = await client.send_message("a@example.com", ["b@example.org"], body)
    assert code == 250
    data = await stored(run, QUEUED.search(text).group(1))
    assert data.endswith(body)


async def test_commands_pipelined_after_data_are_answered(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    await client.send(
        simple_message() + b".\r\nMAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.org>\r\n"
    )
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 250


@pytest.mark.parametrize(
    ("smuggled", "kind"),
    [
        (b"\n.\r\n", "LF"),  # <LF>.<CRLF>
        (b"\r\n.\n", "LF"),  # <CRLF>.<LF>
        (b"\n.\n", "LF"),  # <LF>.<LF>
        (b"\r.\r\n", "CR"),  # <CR>.<CRLF>
        (b"\r\n.\r", "CR"),  # <CRLF>.<CR>
    ],
)
async def test_smtp_smuggling_is_refused_and_never_splits(start_engine, smtp, smuggled, kind):
    run = await start_engine()
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    attack = (
        b"Subject: first\r\n\r\nhello"
        + smuggled
        + b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
        + b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
    )
    await client.send(attack)
    code, text = await client.reply()
    assert said(code, text) == Reply.bare_line_ending(kind)
    assert 'bare_lf = "normalize"' in text
    assert await client.closed()
    assert await queue_ids(run) == []


async def test_bare_lf_normalized_when_configured(start_engine, smtp, tmp_path):
    listener = relay_listener(bare_lf="normalize")
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    await client.send(b"Subject: old printer\n\nscan attached\n.\nstill data\r\n.\r\n")
    code, text = await client.reply()
    assert code == 250
    data = await stored(run, QUEUED.search(text).group(1))
    # Stored with CRLF; the bare "<LF>.<LF>" did not end DATA (only <CRLF>.<CRLF> does).
    assert data.endswith(b"Subject: old printer\r\n\r\nscan attached\r\n\r\nstill data\r\n")
    assert len(await queue_ids(run)) == 1


async def test_lf_before_dot_crlf_split_across_reads_does_not_end_data(
    start_engine, smtp, tmp_path
):
    """SMTP smuggling through a TCP split: with bare_lf = "normalize", `x<LF>` in one write and
    `.<CRLF>MAIL FROM:...` in the next must stay message content, as in one write."""
    listener = relay_listener(bare_lf="normalize")
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    assert said(*await client.cmd("DATA")) == Reply.START_DATA
    smuggled = (
        b".\r\nMAIL FROM:<admin@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nevil\r\n"
    )
    await client.send(b"Subject: first\r\n\r\nhello\n")
    await asyncio.sleep(0.2)  # the server reads the first write on its own
    await client.send(smuggled + b".\r\n")
    code, text = await client.reply()
    assert code == 250, text
    (queue_id,) = await queue_ids(run)  # one message, not two
    data = await stored(run, queue_id)
    assert data.endswith(
        b"Subject: first\r\n\r\nhello\r\n\r\nMAIL FROM:<admin@example.org>\r\n"
        b"RCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
    )
    assert (await client.cmd("NOOP"))[0] == 250  # nothing else was answered in between


async def test_bare_cr_refused_even_when_normalizing(start_engine, smtp, tmp_path):
    listener = relay_listener(bare_lf="normalize")
    run = await start_engine(make_config(tmp_path / "s", listeners=(listener,)))
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    await client.send(b"Subject: x\r\n\r\nbad\rline\r\n.\r\n")
    code, text = await client.reply()
    assert said(code, text) == Reply.bare_line_ending("CR")


async def test_nul_in_data_is_refused(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, text = await client.send_message(
        "a@example.com", ["b@example.org"], b"Subject: x\r\n\r\nnul\0here\r\n"
    )
    assert said(code, text) == Reply.NUL_IN_DATA
    assert await queue_ids(run) == []


# ---------------------------------------------------------------------- 8BITMIME and SMTPUTF8


async def test_8bitmime_and_smtputf8_are_advertised(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    _, ehlo = await client.cmd("EHLO client.example.test")
    assert {"8BITMIME", "SMTPUTF8"} <= set(ehlo.splitlines())


async def test_8bit_body_is_flagged(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    await client.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    await client.send("Subject: café\r\n\r\nGrüße\r\n.\r\n".encode())
    code, text = await client.reply()
    assert code == 250
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    assert detail.body_8bit


async def test_utf8_address_needs_smtputf8(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    code, text = await client.cmd("MAIL FROM:<josé@example.com>")
    assert code == 553 and text.startswith("5.6.7")
    code, _ = await client.cmd("MAIL FROM:<josé@example.com> SMTPUTF8")
    assert code == 250
    assert said(*await client.cmd("RCPT TO:<zoë@exämple.org>")) == Reply.RCPT_OK
    await client.cmd("DATA")
    await client.send(b"Subject: hi\r\n\r\nhi\r\n.\r\n")
    code, text = await client.reply()
    assert code == 250
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    assert detail.smtputf8
    assert detail.recipients[0].address == "zoë@exämple.org"
    data = await stored(run, detail.row.queue_id)
    assert b"with UTF8SMTP id" in data


async def test_invalid_utf8_in_command_is_refused(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run)
    await client.send(b"MAIL FROM:<a\xff@example.com> SMTPUTF8\r\n")
    code, _ = await client.reply()
    assert code == 501


# ---------------------------------------------------------------------- shutdown


async def test_shutdown_lets_transaction_finish_and_closes_idle(start_engine, smtp):
    run = await start_engine()
    busy = await smtp(run)
    idle = await smtp(run)
    await busy.cmd("MAIL FROM:<a@example.com>")
    await busy.cmd("RCPT TO:<b@example.org>")
    await busy.cmd("DATA")
    await busy.send(b"Subject: in flight\r\n\r\npart one\r\n")
    stopping = asyncio.create_task(run.engine.stop(grace=5))
    code, text = await idle.reply()
    assert said(code, text) == Reply.SHUTTING_DOWN
    await busy.send(b"part two\r\n.\r\n")
    code, text = await busy.reply()
    assert code == 250, text
    await asyncio.wait_for(stopping, 10)


async def test_swaks_can_send(start_engine):
    """swaks, the admin's everyday test tool, gets its message accepted as the README shows."""
    import shutil

    swaks = shutil.which("swaks")
    assert swaks, "swaks is not installed (apt-get install swaks; .ci/run does this)"
    run = await start_engine()
    host, port = run.address()
    proc = await asyncio.create_subprocess_exec(
        swaks,
        "--server",
        f"{host}:{port}",
        "--from",
        "printer@office.example",
        "--to",
        "you@example.org",
        "--timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    match = QUEUED.search(out.decode())
    assert match, out.decode()
    detail = await run.engine.admin.show(match.group(1))
    assert detail.row.sender == "printer@office.example"


# ---------------------------------------------------------------------- VRFY


async def test_vrfy_answers_252_for_any_argument_without_parsing_it(start_engine, smtp):
    """aiosmtpd's VRFY parsed its argument with the email package, which raises on some
    (`VRFY a@`): a 451 and a traceback in the log per 9-byte command."""
    run = await start_engine()
    client = await smtp(run)
    for arg in ("a@", '"', "G:<", "postmaster", "<b@example.org>"):
        assert said(*await client.cmd(f"VRFY {arg}")) == Reply.VRFY_UNKNOWABLE
    assert said(*await client.cmd("VRFY")) == Reply.VRFY_SYNTAX
    assert (await client.cmd("NOOP"))[0] == 250
    assert "Traceback" not in run.log_text()


# ---------------------------------------------------------------------- EHLO / HELO names


@pytest.mark.parametrize(
    "command",
    [
        # A bare CR becomes a line break when the Received: header is sent on: a forged From:
        # and Reply-To: above the real ones, around the sender binding.
        b'EHLO pc\rFrom: "CEO" <ceo@victim.test>\rReply-To: <attacker@evil.test>\r\n',
        b"EHLO pc\x00.example\r\n",
        b"HELO \x1b]0;owned\x07\x1b[2J\r\n",
        b"EHLO two words\r\n",
        b"EHLO caf\xe9.example\r\n",  # Latin-1, not UTF-8
        b"EHLO [999.1.1.1]\r\n",
        b"HELO -bad-.example\r\n",
        b"EHLO fe80::1%<x>;\r\n",  # ipaddress takes any text as a zone ID
        b"EHLO [IPv6:fe80::1%eth0]\r\n",
    ],
)
async def test_ehlo_name_that_cannot_go_into_a_header_is_refused(start_engine, smtp, command):
    """RFC 5321 §4.1.1.1: a domain or an address literal. The session goes on, and the name a
    later EHLO gives is the one the Received: header carries."""
    run = await start_engine()
    client = await smtp(run, greet=False)
    assert (await client.reply())[0] == 220
    await client.send(command)
    code, text = await client.reply()
    assert f"{code} {text}" == Reply.BAD_HELO
    assert (await client.cmd("EHLO pc.example"))[0] == 250
    code, text = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250, text
    data = await stored(run, QUEUED.search(text).group(1))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert data.startswith(b"Received: from pc.example ([127.0.0.1])\r\n")
    assert b"victim" not in head and b"\x1b" not in head and b"\x00" not in head


@pytest.mark.parametrize(
    "name",
    [
        "pc",
        "PRINTER_2",
        "scanner.office.local.",
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
        "192.0.2.7",
        "bücher.example",
    ],
)
async def test_ehlo_names_office_devices_send_are_accepted(start_engine, smtp, name):
    """Lenient as Postfix is: underscores, a bare address, a name without dots, U-labels."""
    run = await start_engine()
    client = await smtp(run, greet=False)
    assert (await client.reply())[0] == 220
    await client.send(f"EHLO {name}\r\n".encode())
    assert (await client.reply())[0] == 250
