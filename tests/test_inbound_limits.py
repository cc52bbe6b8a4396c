"""What a stranger can cost the relay, over real loopback sockets: errors per session, reserved
connection slots, the session lifetime; and the protocol details strict peers check
(PIPELINING, data before the 354, mail loops)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from pathlib import Path

import pytest

from relaybox.config.model import LimitsConfig, ListenerConfig
from relaybox.inbound.content_checks import from_addresses, hop_refusal
from relaybox.inbound.error_limit import SessionErrors
from relaybox.message.replies import Reply
from relaybox.queue import MessageFilter

from .support.configs import only_error, relay_listener
from .support.engine import RunningEngine
from .support.smtp import QUEUED, SMTPClient, said, simple_message

OFFICE = "127.0.0.1"
STRANGER = "127.0.0.2"
HOSTNAME = "relay.example.test"
REFUSED_RCPT = "RCPT TO:<victim@elsewhere.test>"


def office_only() -> tuple[ListenerConfig, ...]:
    """A relay listener where only 127.0.0.1 may relay; 127.0.0.2 and up are strangers."""
    return (relay_listener(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),)),)


async def connect_from(run: RunningEngine, source: str, greet: bool = True) -> SMTPClient:
    """A raw client whose connection comes from the loopback address `source`."""
    reader, writer = await asyncio.open_connection(*run.address(), local_addr=(source, 0))
    client = SMTPClient(reader, writer)
    if greet:
        await client.greet()
    return client


async def stored_count(run: RunningEngine) -> int:
    page = await run.engine.admin.list_messages(MessageFilter(states=()), limit=100)
    return len(page.rows)


async def replies(client: SMTPClient, count: int) -> list[tuple[float, str]]:
    """The next `count` replies, each with the moment it arrived."""
    got = []
    for _ in range(count):
        code, text = await client.reply()
        got.append((time.monotonic(), said(code, text)))
    return got


# ---------------------------------------------------------------------- errors per session


def test_default_error_limits_close_an_error_only_client_in_about_10_seconds() -> None:
    """Postfix's defaults: 10 errors free, then 1 s each, and the 20th is the last."""
    limits = LimitsConfig()
    errors = SessionErrors(
        limits.soft_error_limit, limits.hard_error_limit, limits.error_sleep_time
    )
    verdicts = [errors.judge(Reply.RELAY_DENIED) for _ in range(limits.hard_error_limit)]
    assert all(v is not None for v in verdicts)
    assert [v.delay for v in verdicts if v] == [0.0] * 10 + [1.0] * 10
    assert [v.close for v in verdicts if v] == [False] * 19 + [True]
    assert errors.judge("250 2.1.5 Ok") is None  # only errors count
    assert errors.count == 20


def test_only_the_first_refusal_of_a_session_gets_its_own_log_line() -> None:
    errors = SessionErrors(10, 20, 1.0)
    errors.judge("500 Error: bad syntax")  # no refusal logged for it
    assert errors.log_refusal()
    errors.judge(Reply.RELAY_DENIED)  # the one that line is about
    assert errors.unlogged == 1
    for _ in range(3):
        assert not errors.log_refusal()
        errors.judge(Reply.RELAY_DENIED)
    assert (errors.count, errors.unlogged, errors.last) == (5, 4, Reply.RELAY_DENIED)


async def test_error_replies_past_the_soft_limit_wait_and_the_hard_limit_closes(start_engine):
    """One reply at a time: the first errors are answered at once, the later ones only after
    error_sleep_time, and the error that reaches the hard limit is followed by 421."""
    limits = LimitsConfig(soft_error_limit=2, hard_error_limit=4, error_sleep_time=0.4)
    run = await start_engine(listeners=office_only(), limits=limits)
    client = await connect_from(run, STRANGER)
    assert said(*await client.cmd("MAIL FROM:<a@elsewhere.test>")) == Reply.MAIL_OK
    took = []
    for _ in range(4):
        started = time.monotonic()
        assert said(*await client.cmd(REFUSED_RCPT)) == Reply.RELAY_DENIED
        took.append(time.monotonic() - started)
    assert max(took[:2]) < 0.3, took
    assert min(took[2:]) >= 0.4, took
    assert said(*await client.reply()) == Reply.too_many_errors(HOSTNAME)
    assert await client.closed()


async def test_pipelined_errors_are_slowed_and_nothing_more_is_read_meanwhile(start_engine):
    """A stranger's pipelined refused RCPTs: each reply past the soft limit waits, and the
    session does not even read the next command while it waits (the live transcript holds
    only what has been answered), so a flood is really slowed down."""
    limits = LimitsConfig(soft_error_limit=1, hard_error_limit=6, error_sleep_time=0.3)
    run = await start_engine(listeners=office_only(), limits=limits)
    client = await connect_from(run, STRANGER)
    await client.cmd("MAIL FROM:<a@elsewhere.test>")
    started = time.monotonic()
    await client.send("".join(f"{REFUSED_RCPT}\r\n" for _ in range(10)))
    first, second = await replies(client, 2)
    assert second[1] == Reply.RELAY_DENIED
    (session,) = run.engine._ctx.sessions
    asked = [line for line in session.transcript.lines if line.text == REFUSED_RCPT]
    assert len(asked) <= 3, "commands were read while an error reply was held back"
    rest = await replies(client, 5)
    assert [text for _, text in rest] == [Reply.RELAY_DENIED] * 4 + [
        Reply.too_many_errors(HOSTNAME)
    ]
    assert first[0] - started < 0.25
    assert rest[-1][0] - started >= 5 * 0.3
    assert await client.closed()
    assert await stored_count(run) == 0


async def test_every_kind_of_error_counts(start_engine):
    """A blank line, an unknown verb, a bad argument, MAIL without AUTH on a submission port
    (530): all are errors, and the hard limit closes the session after the fourth."""
    submission = relay_listener(role="submission", allowed_networks=())
    run = await start_engine(listeners=(submission,), limits=LimitsConfig(hard_error_limit=4))
    client = await connect_from(run, OFFICE)
    codes = []
    for line in ("", "XYZZY", "HELO", "MAIL FROM:<a@example.org>"):
        code, _ = await client.cmd(line)
        codes.append(code)
    assert codes == [500, 500, 501, 530]
    assert said(*await client.reply()) == Reply.too_many_errors(HOSTNAME)
    assert await client.closed()


async def test_good_replies_do_not_count_and_counts_belong_to_the_session(start_engine):
    """Successful commands never count; a new session from the same address starts at zero
    (an office behind NAT shares one address)."""
    limits = LimitsConfig(soft_error_limit=1, hard_error_limit=3, error_sleep_time=0.5)
    run = await start_engine(listeners=office_only(), limits=limits)
    first = await connect_from(run, OFFICE)
    for _ in range(10):
        assert (await first.cmd("NOOP"))[0] == 250
    assert (await first.cmd("XYZZY"))[0] == 500
    assert (await first.cmd("XYZZY"))[0] == 500  # the second error: delayed
    second = await connect_from(run, OFFICE)
    started = time.monotonic()
    assert (await second.cmd("XYZZY"))[0] == 500
    assert time.monotonic() - started < 0.3
    code, text = await second.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250, text


async def test_junk_commands_past_their_limit_count_as_errors_until_a_message_is_sent(
    start_engine,
):
    """NOOP, VRFY and RSET are free up to junk_command_limit, then each counts as an error (its
    reply still 250/252), so a NOOP flood is closed like any other; a message accepted makes
    them free again."""
    limits = LimitsConfig(
        junk_command_limit=3, soft_error_limit=1, hard_error_limit=3, error_sleep_time=0
    )
    run = await start_engine(listeners=office_only(), limits=limits)
    client = await connect_from(run, OFFICE)
    for verb in ("NOOP", "RSET", "VRFY postmaster"):
        assert (await client.cmd(verb))[0] in (250, 252)
    code, text = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250, text
    for _ in range(3):
        assert (await client.cmd("NOOP"))[0] == 250
    await client.send("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
    got = [text for _, text in await replies(client, 4)]
    assert got[:3] == ["250 OK"] * 3
    assert got[3] == Reply.too_many_errors(HOSTNAME)
    assert await client.closed()


async def test_refusals_after_the_first_are_logged_as_one_summary_line(start_engine):
    """The first refusal keeps its own `reject` line (admins grep for it); the rest of the
    session's errors are one `errors` line when it ends, not one line each."""
    run = await start_engine(listeners=office_only())
    client = await connect_from(run, STRANGER)
    await client.cmd("MAIL FROM:<a@elsewhere.test>")
    for n in range(8):
        assert said(*await client.cmd(f"RCPT TO:<victim{n}@elsewhere.test>")) == (
            Reply.RELAY_DENIED
        )
    assert (await client.cmd("XYZZY"))[0] == 500
    await client.cmd("QUIT")
    assert await client.closed()
    for _ in range(100):
        if " disconnect " in run.log_text():
            break
        await asyncio.sleep(0.02)
    log = run.log_text()
    rejects = re.findall(r" reject stage=RCPT .*", log)
    assert len(rejects) == 1 and "victim0@elsewhere.test" in rejects[0], log
    (summary,) = re.findall(r" errors client=127\.0\.0\.2 .*", log)
    assert "count=9" in summary
    assert 'last="500 Error: command \\"XYZZY\\" not recognized"' in summary


async def test_a_session_closed_for_errors_says_so_in_its_summary(start_engine):
    limits = LimitsConfig(soft_error_limit=0, hard_error_limit=2, error_sleep_time=0)
    run = await start_engine(listeners=office_only(), limits=limits)
    client = await connect_from(run, STRANGER)
    await client.send("\r\n\r\n")
    assert [text for _, text in await replies(client, 3)][-1] == Reply.too_many_errors(HOSTNAME)
    assert await client.closed()
    for _ in range(100):
        if " errors " in run.log_text():
            break
        await asyncio.sleep(0.02)
    assert re.search(r' errors .*count=2 .*ended="too many errors"', run.log_text())


# ---------------------------------------------------------------------- reserved slots


async def test_office_still_connects_when_strangers_hold_every_other_slot(start_engine):
    limits = LimitsConfig(max_connections=5, reserved_connections=2)
    run = await start_engine(listeners=office_only(), limits=limits)
    held = [await connect_from(run, STRANGER) for _ in range(3)]
    refused = await connect_from(run, "127.0.0.3", greet=False)
    assert said(*await refused.reply()) == Reply.TOO_MANY_CONNECTIONS
    assert await refused.closed()
    office = [await connect_from(run, OFFICE) for _ in range(2)]  # greet() asserts the 220
    full = await connect_from(run, OFFICE, greet=False)
    assert said(*await full.reply()) == Reply.TOO_MANY_CONNECTIONS
    code, text = await office[0].send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250, text
    for client in [*held, *office, refused, full]:
        await client.close()


# ---------------------------------------------------------------------- session lifetime


async def test_noop_cannot_keep_a_session_open_past_its_lifetime(start_engine):
    run = await start_engine(limits=LimitsConfig(max_session_time=0.6))
    client = await connect_from(run, OFFICE)
    started = time.monotonic()
    codes = []
    with pytest.raises(ConnectionError):
        for verb in ["NOOP", "RSET", "HELP"] * 20:
            code, text = await client.cmd(verb)
            codes.append(said(code, text) if code == 421 else code)
            await asyncio.sleep(0.1)
    assert codes[-1] == Reply.SESSION_TOO_LONG
    assert 0.5 < time.monotonic() - started < 2
    assert re.search(r" session-expired client=127\.0\.0\.1 ", run.log_text())


async def test_an_idle_session_is_closed_at_its_lifetime(start_engine):
    run = await start_engine(limits=LimitsConfig(max_session_time=0.4, idle_timeout=60))
    client = await connect_from(run, OFFICE)
    started = time.monotonic()
    assert said(*await client.reply(timeout=3)) == Reply.SESSION_TOO_LONG
    assert await client.closed()
    assert time.monotonic() - started < 1.5


async def test_a_message_being_sent_is_not_cut_off_by_the_lifetime(start_engine):
    """As Postfix bounds a transfer by its timeout only: the message that is arriving when the
    lifetime passes is taken, then the session ends."""
    run = await start_engine(limits=LimitsConfig(max_session_time=0.5))
    client = await connect_from(run, OFFICE)
    await client.cmd("MAIL FROM:<a@example.com>")
    await client.cmd("RCPT TO:<b@example.org>")
    assert said(*await client.cmd("DATA")) == Reply.START_DATA
    for n in range(8):
        await client.send(f"Subject: line {n}\r\n")
        await asyncio.sleep(0.1)
    await client.send(b"\r\nbody\r\n.\r\n")
    code, text = await client.reply()
    assert code == 250 and QUEUED.search(text), text
    assert said(*await client.reply()) == Reply.SESSION_TOO_LONG
    assert await client.closed()
    assert await stored_count(run) == 1


# ---------------------------------------------------------------------- protocol details


async def test_ehlo_advertises_pipelining(start_engine, smtp):
    run = await start_engine()
    client = await smtp(run, greet=False)
    await client.reply()
    code, text = await client.cmd("EHLO client.example.test")
    assert code == 250
    assert text.split("\n")[:2] == [HOSTNAME, "PIPELINING"]


async def test_pipelined_envelope_then_message_after_the_354_is_accepted(start_engine, smtp):
    """RFC 2920: MAIL, RCPT and DATA in one write, the message once the 354 has come, and the
    next transaction pipelined after the final dot."""
    run = await start_engine()
    client = await smtp(run)
    await client.send(
        "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"
        "DATA\r\n"
    )
    got = [text for _, text in await replies(client, 4)]
    assert got == [Reply.MAIL_OK, Reply.RCPT_OK, Reply.RCPT_OK, Reply.START_DATA]
    await client.send(simple_message() + b".\r\nMAIL FROM:<a@example.com>\r\nRSET\r\n")
    code, text = await client.reply()
    assert code == 250 and QUEUED.search(text), text
    assert [text for _, text in await replies(client, 2)] == [Reply.MAIL_OK, "250 OK"]
    assert await stored_count(run) == 1


async def test_message_sent_before_the_354_is_refused_and_the_session_closed(start_engine, smtp):
    """RFC 2920 §3.1: DATA ends a command group. A message sent in the same write as DATA
    could be read as something else; it is refused and nothing is stored."""
    run = await start_engine()
    client = await smtp(run)
    await client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
        + simple_message()
        + b".\r\nQUIT\r\n"
    )
    got = [text for _, text in await replies(client, 3)]
    assert got == [Reply.MAIL_OK, Reply.RCPT_OK, Reply.PIPELINED_DATA]
    assert await client.closed()
    assert await stored_count(run) == 0


def received_fields(count: int) -> bytes:
    return b"".join(
        b"Received: from hop%d.example.net ([192.0.2.%d])\r\n\tby hop%d.example.org; "
        b"Mon, 7 Dec 2026 10:00:00 +0000\r\n" % (n, n % 250, n + 1)
        for n in range(count)
    )


async def test_a_message_with_more_than_50_received_fields_is_refused(start_engine, smtp):
    """RFC 5321 §6.3: a mail loop. 50 Received: fields still pass (ours makes 51 at the next
    hop, which is that hop's business); 51 are refused at the end of DATA."""
    run = await start_engine()
    client = await smtp(run)
    code, text = await client.send_message(
        "a@example.com", ["b@example.org"], received_fields(51) + simple_message()
    )
    assert said(code, text) == Reply.TOO_MANY_HOPS
    code, text = await client.send_message(
        "a@example.com", ["b@example.org"], received_fields(50) + simple_message()
    )
    assert code == 250, text
    assert await stored_count(run) == 1


async def test_received_in_a_body_or_a_header_value_is_no_hop(start_engine, smtp):
    """Only Received: fields count: the word in the body or inside another field does not."""
    run = await start_engine()
    client = await smtp(run)
    subject = b"Subject: " + b"received: " * 60 + b"\r\n"
    body = b"\r\n".join(b"Received: line %d of the body" % n for n in range(60))
    message = b"From: a@example.com\r\n" + subject + b"\r\n" + body + b"\r\n"
    code, text = await client.send_message("a@example.com", ["b@example.org"], message)
    assert code == 250, text


# ---------------------------------------------------------------------- settings


def test_new_limits_have_postfix_s_defaults() -> None:
    limits = LimitsConfig()
    assert (limits.soft_error_limit, limits.hard_error_limit, limits.error_sleep_time) == (
        10,
        20,
        1.0,
    )
    assert limits.data_timeout == 300  # Postfix's smtpd_timeout
    assert (limits.max_session_time, limits.reserved_connections) == (3600, 20)
    assert limits.junk_command_limit == 100  # Postfix's smtpd_junk_command_limit


def test_soft_error_limit_may_not_exceed_the_hard_limit(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nsoft_error_limit = 30\n")
    assert (problem.key, problem.line) == ("limits.soft_error_limit", 2)
    assert "must not be more than hard_error_limit (20)" in problem.message


def test_reserved_connections_must_leave_room_for_others(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nmax_connections = 20\n")
    assert (problem.key, problem.line) == ("limits.max_connections", 2)
    assert "reserved_connections (20) must be less than max_connections (20)" in problem.message
    problem = only_error(tmp_path, "[limits]\nmax_connections = 20\nreserved_connections = 25\n")
    assert problem.key == "limits.reserved_connections"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("error_sleep_time = -1", "between 0 and 60"),
        ("max_session_time = 0", "between 0 and 14400"),
        ("max_session_time = 86400", "between 0 and 14400"),
        ("hard_error_limit = 0", "1 or more"),
    ],
)
def test_limit_ranges(tmp_path: Path, setting: str, words: str) -> None:
    problem = only_error(tmp_path, f"[limits]\n{setting}\n")
    assert words in problem.message, problem.message


async def test_a_header_sent_a_few_bytes_per_write_is_read_in_linear_time() -> None:
    """The header block is found in the parts of a message as the client's writes cut it; one
    search per part would take minutes for a 256 KB header sent six bytes at a time."""
    parts = [b"Received: x\r\n"] * 60 + [b"X: a\r\n"] * 45_000 + [b"\r\nbody\r\n"]
    started = time.monotonic()
    assert await hop_refusal(parts) == Reply.TOO_MANY_HOPS
    assert await from_addresses(parts) == []
    assert time.monotonic() - started < 2
