"""More delivery end to end: one attempt walking every MX host and address, the purge of
finished mail after its retention, and the suppression list expiring through the scheduler.

Like test_delivery.py, a real engine relays over loopback to real aiosmtpd sinks and resolves
with a real DNS server on loopback; nothing leaves loopback and no engine here asks the
system's resolver (every config points at a `dns_server`).

Two of these behaviours are slow by design: the engine purges at most every
`engine.PURGE_INTERVAL` (600 s of its clock) and suppression entries last days. Those tests
run an engine built with the `clock` the `Engine` constructor takes for this purpose (a
`FakeClock` the test moves forward), and shorten the housekeeping timers with
monkeypatch; the engine's own periodic tasks still do the work, on their real code paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import relaybox.engine.core as engine_module
from relaybox.config.model import (
    Config,
    RouteConfig,
)
from relaybox.message.replies import Reply
from relaybox.outbound.client import Courier, Transaction
from relaybox.outbound.handshake import Hop
from relaybox.queue import MessageFilter
from relaybox.statedir import DATABASE_NAME

from .dnsserver import DNSServerFactory
from .smtpsink import Sink, SinkFactory
from .support.clock import FakeClock
from .support.configs import relay_config, to_sink
from .support.engine import EngineFactory, RunningEngine, admin_of, wait_state
from .support.smtp import QUEUED, SMTPClient, said, send, simple_message

SESSIONS_WITH_ID = "SELECT COUNT(*) FROM sessions WHERE session_id = ?"


# ---------------------------------------------------------------------- helpers


async def wait_gone(run: RunningEngine, queue_id: str, timeout: float) -> None:
    """Wait (bounded) until the spool no longer knows `queue_id`."""
    deadline = time.monotonic() + timeout
    while await admin_of(run).show(queue_id) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue_id} is still in the spool after {timeout:g} s")
        await asyncio.sleep(0.05)


def spool_count(state_dir: Path, sql: str, *params: Any) -> int:
    """A COUNT(*) straight from the spool database (read-only, beside the running engine)."""
    uri = f"file:{state_dir / DATABASE_NAME}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


ClockedEngineFactory = Callable[[Config, FakeClock], Awaitable[RunningEngine]]


@pytest.fixture
def clocked_engine(start_engine: EngineFactory) -> ClockedEngineFactory:
    """`await clocked_engine(config, clock)`: conftest's `start_engine` with a clock."""
    return lambda config, clock: start_engine(config, clock=clock)


# ---------------------------------------------------------------------- one attempt, many hops


def _refuse_on(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """Bind host:port without listening, so a connection there is refused (RST) for sure
    and nothing else can start listening there during the test."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
async def test_one_attempt_walks_mx_hosts_and_addresses_in_order(
    start_engine: EngineFactory,
    smtp_sink: SinkFactory,
    dns_server: DNSServerFactory,
    tmp_path: Path,
    family: str,
) -> None:
    """RFC 5321 §5.1: an unreachable address makes way for the next one within the same
    attempt, MX hosts by preference and (routing.py, RFC 6724 §10.3) each host's IPv6
    addresses before its IPv4 ones, so the mail is delivered on its first attempt instead of
    waiting min_backoff for a retry. The first hop that answers decides: the lower-priority
    MX after it is never tried.

    `mx_port` is one port for every host, so the dead addresses are the sink's port on other
    loopback addresses (127.0.0.2, 127.0.0.3, ::1), each bound without listening by the test:
    connecting there is refused at once, and nothing else can answer there meanwhile.
    """
    sink = await smtp_sink()  # listens on 127.0.0.1 only
    port = sink.port
    reserved: list[socket.socket] = []
    try:
        if family == "ipv6":
            if not socket.has_ipv6:
                pytest.skip("this Python has no IPv6")
            try:
                reserved.append(_refuse_on(socket.AF_INET6, "::1", port))
            except OSError as exc:
                pytest.skip(f"cannot bind [::1]:{port} here: {exc}")
            zone = {
                "example.org": {
                    "MX": ["10 a.example.org.", "20 b.example.org.", "30 c.example.org."]
                },
                "a.example.org": {"AAAA": ["::1"], "A": ["127.0.0.2"]},
                "b.example.org": {"AAAA": ["::1"], "A": ["127.0.0.1"]},
                "c.example.org": {"A": ["127.0.0.1"]},
            }
            expected = [
                ("a.example.org", "::1"),
                ("a.example.org", "127.0.0.2"),
                ("b.example.org", "::1"),
                ("b.example.org", "127.0.0.1"),
            ]
        else:
            zone = {
                "example.org": {
                    "MX": ["10 a.example.org.", "20 b.example.org.", "30 c.example.org."]
                },
                "a.example.org": {"A": ["127.0.0.2", "127.0.0.3"]},
                "b.example.org": {"A": ["127.0.0.1"]},
                "c.example.org": {"A": ["127.0.0.1"]},
            }
            expected = [
                ("a.example.org", "127.0.0.2"),
                ("a.example.org", "127.0.0.3"),
                ("b.example.org", "127.0.0.1"),
            ]
        for ip in {ip for _, ip in expected if ip.startswith("127.") and ip != "127.0.0.1"}:
            try:
                reserved.append(_refuse_on(socket.AF_INET, ip, port))
            except OSError as exc:  # e.g. a system where only 127.0.0.1 is on loopback
                pytest.skip(f"cannot bind {ip}:{port} here: {exc}")

        dns = dns_server(zone)
        route = RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
        run = await start_engine(
            relay_config(tmp_path, (route,), dns=dns.address, connect_timeout=5.0, mx_port=port)
        )
        queue_id = await send(run, "a@example.com", ["user@example.org"])
        detail = await wait_state(run, queue_id, {"delivered"})
    finally:
        for sock in reserved:
            sock.close()

    (got,) = await sink.wait_for(1)
    assert got.recipients == ["user@example.org"]
    assert sink.connections == 1
    # One attempt: one MX lookup, the recipient's attempt count is 1, and no retry was needed.
    assert dns.query_count("example.org", "MX") == 1
    assert detail.row.attempts == 1
    assert [(r.address, r.state, r.attempts) for r in detail.recipients] == [
        ("user@example.org", "delivered", 1)
    ]
    # ... which tried every address once, in order, each recorded with its own transcript:
    # hosts by preference, IPv6 before IPv4 within a host. (Within one family the order is
    # the DNS answer's, which the server shuffles as real ones do, so it is not pinned.)
    tried = [(a.host or "", a.ip or "") for a in detail.attempts]
    assert [(host, ":" in ip) for host, ip in tried] == [
        (host, ":" in ip) for host, ip in expected
    ], tried
    assert sorted(tried) == sorted(expected)
    assert tried[-1] == ("b.example.org", "127.0.0.1")
    assert {a.port for a in detail.attempts} == {port}
    assert [a.outcome for a in detail.attempts] == ["deferred"] * (len(expected) - 1) + [
        "delivered"
    ]
    for attempt in detail.attempts:
        assert attempt.destination == "mx:example.org"
        assert attempt.recipients == ("user@example.org",)
        first = attempt.transcript[0]
        assert (first.direction, first.text) == (
            "-",
            f"connecting to {attempt.host} [{attempt.ip}]:{port}",
        )
    for attempt in detail.attempts[:-1]:
        assert attempt.reply is not None
        assert attempt.reply.startswith(
            f"451 4.4.1 Cannot connect to {attempt.host} [{attempt.ip}]:{port}"
        ), attempt.reply
        assert not any(line.direction == "C" for line in attempt.transcript)  # never talked
    last = detail.attempts[-1]
    assert ("S", "250 2.0.0 Ok: queued at the sink") in [
        (line.direction, line.text) for line in last.transcript
    ]
    for before, after in zip(detail.attempts, detail.attempts[1:], strict=False):
        assert before.finished_at <= after.started_at  # one after the other, not in parallel
    assert re.search(
        rf"{queue_id}: sent to=<user@example.org> relay=b\.example\.org\[127\.0\.0\.1\]:{port}",
        run.log_text(),
    ), run.log_text()


# ---------------------------------------------------------------------- retention


async def test_finished_mail_is_purged_after_retention_and_unfinished_mail_never(
    clocked_engine: ClockedEngineFactory,
    smtp_sink: SinkFactory,
    dns_server: DNSServerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`[delivery] retention`: a delivered or bounced message (and a DSN, which is mail like
    any other) is kept for viewing, then deleted with its body, recipients, delivery attempts
    and their transcripts and its inbound session transcript; mail still queued, deferred or
    held is never purged, however old.

    The engine's housekeeping task (every DELIVERY_HOUSEKEEPING_INTERVAL, shortened here to
    0.1 s) purges at most every PURGE_INTERVAL (600 s) of the engine's clock, so this test
    steps that clock instead of waiting, with a retention of one hour (longer than that
    interval, so the outcome does not depend on when the engine's earlier purges ran):
    3500 s on, no purge can touch anything yet and a young message is delivered; 700 s
    more, the next purge cuts off at one hour before then, past the old mail but not the
    young message. Nothing here calls the purge itself.
    """
    monkeypatch.setattr(engine_module, "DELIVERY_HOUSEKEEPING_INTERVAL", 0.1)
    sink = await smtp_sink(
        rcpt_replies={
            "refused@example.org": "550 5.7.1 <refused@example.org>: Recipient rejected",
            "busy@example.org": "451 4.2.1 mailbox busy, try later",
        }
    )
    dns = dns_server({})
    routes = (RouteConfig(domains=("held.example",), transport="hold"), to_sink(sink))
    state_dir = tmp_path / "state"
    clock = FakeClock()
    run = await clocked_engine(
        relay_config(tmp_path, routes, dns=dns.address, connect_timeout=5.0, retention=3600.0),
        clock,
    )
    admin = admin_of(run)

    old_sent = await send(run, "a@example.com", ["ok@example.org"], subject="old-sent")
    old_bounced = await send(run, "a@example.com", ["refused@example.org"], subject="old-bounced")
    deferred = await send(run, "a@example.com", ["busy@example.org"], subject="deferred")
    held = await send(run, "a@example.com", ["x@held.example"], subject="held")
    await wait_state(run, old_sent, {"delivered"})
    await wait_state(run, old_bounced, {"bounced"})
    await wait_state(run, deferred, {"deferred"})
    await wait_state(run, held, {"held"})
    await sink.wait_for(2)  # old-sent and the DSN for old-bounced
    everything = await admin.list_messages(MessageFilter(states=()))
    (dsn,) = [row.queue_id for row in everything.rows if row.sender == ""]
    await wait_state(run, dsn, {"delivered"})

    clock.advance(3500)
    young = await send(run, "a@example.com", ["ok@example.org"], subject="young")
    await wait_state(run, young, {"delivered"})
    details = {}
    for queue_id in (old_sent, old_bounced, dsn, deferred, held, young):
        found = await admin.show(queue_id)
        assert found is not None, (
            f"{queue_id} was purged before the clock passed its retention\n{run.log_text()}"
        )
        details[queue_id] = found

    clock.advance(700)
    await wait_gone(run, old_sent, timeout=5)

    purged = (old_sent, old_bounced, dsn)
    kept = {young: "delivered", deferred: "deferred", held: "held"}
    for queue_id in purged:
        assert await admin.show(queue_id) is None, queue_id
        assert await admin.message_data(queue_id) is None, queue_id
    for queue_id, state in kept.items():
        detail = await admin.show(queue_id)
        assert detail is not None and detail.row.state == state, (queue_id, detail)
        assert await admin.message_data(queue_id), queue_id
    young_detail = await admin.show(young)
    assert young_detail is not None and young_detail.attempts  # transcript still there

    # Nothing of the purged messages is left behind in any table.
    purged_ids = [details[q].row.id for q in purged]
    marks = ",".join("?" * len(purged_ids))
    for table in ("bodies", "recipients", "attempts"):
        left = spool_count(
            state_dir, f"SELECT COUNT(*) FROM {table} WHERE message_id IN ({marks})", *purged_ids
        )
        assert left == 0, f"{left} rows of purged messages left in {table}"
    kept_ids = [details[q].row.id for q in kept]
    kept_marks = ",".join("?" * len(kept_ids))
    assert spool_count(
        state_dir, f"SELECT COUNT(*) FROM bodies WHERE message_id IN ({kept_marks})", *kept_ids
    ) == len(kept_ids)
    # Inbound transcripts: each message came in its own session (the DSN has none).
    for queue_id in (old_sent, old_bounced):
        session = details[queue_id].session_id
        assert spool_count(state_dir, SESSIONS_WITH_ID, session) == 0, queue_id
    for queue_id in kept:
        session = details[queue_id].session_id
        assert spool_count(state_dir, SESSIONS_WITH_ID, session) == 1, queue_id
    assert re.search(r"\bpurged messages=3\b", run.log_text()), run.log_text()


async def test_retention_zero_purges_finished_mail_within_seconds(
    start_engine: EngineFactory,
    smtp_sink: SinkFactory,
    dns_server: DNSServerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config/model.py and sample-config.toml promise that `retention = 0` purges a message
    within seconds of finishing (an office that must not keep mail bodies relies on it), not
    at the normal purge interval of ten minutes. With the housekeeping task shortened to
    0.1 s, each of two messages delivered one after the other must be gone within a few
    seconds of being delivered; on the real clock, with no stepping.
    """
    monkeypatch.setattr(engine_module, "DELIVERY_HOUSEKEEPING_INTERVAL", 0.1)
    sink = await smtp_sink()
    dns = dns_server({})
    run = await start_engine(
        relay_config(
            tmp_path, (to_sink(sink),), dns=dns.address, connect_timeout=5.0, retention=0.0
        )
    )
    for n in range(2):
        queue_id = await send(run, "a@example.com", ["ok@example.org"], subject=f"m{n}")
        # Not wait_state(delivered): under load, the 0.1 s purge may come before a look.
        await sink.wait_for(n + 1)
        try:
            await wait_gone(run, queue_id, timeout=3)
        except AssertionError as exc:
            raise AssertionError(
                f"message {n + 1} of 2: {exc} (delivered, with retention = 0)"
            ) from None


# ---------------------------------------------------------------------- suppression


async def rcpt_until(
    client: SMTPClient, recipient: str, want: int, timeout: float = 3.0
) -> tuple[int, str]:
    """MAIL and RCPT on `client` until RCPT gets the `want` code (RSET in between); bounded.

    Leaves the transaction open after the wanted reply, so the caller may go on to DATA.
    """
    deadline = time.monotonic() + timeout
    while True:
        code, text = await client.cmd("MAIL FROM:<a@example.com>")
        assert code == 250, text
        code, text = await client.cmd(f"RCPT TO:<{recipient}>")
        if code == want:
            return code, text
        if time.monotonic() > deadline:
            raise AssertionError(f"RCPT {recipient} still got {code} {text}, not {want}")
        assert (await client.cmd("RSET"))[0] == 250
        await asyncio.sleep(0.05)


async def finish_data(client: SMTPClient, subject: str) -> str:
    """DATA for the transaction open on `client`; returns the queue ID of the 250."""
    code, text = await client.cmd("DATA")
    assert said(code, text) == Reply.START_DATA, text
    await client.send(simple_message(subject) + b".\r\n")
    code, text = await client.reply()
    assert code == 250, text
    found = QUEUED.search(text)
    assert found is not None, text
    return found.group(1)


async def test_hard_bounce_suppresses_the_recipient_until_the_entry_expires(
    clocked_engine: ClockedEngineFactory,
    smtp_sink: SinkFactory,
    dns_server: DNSServerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 550 5.1.1 from the next hop (the mailbox does not exist) puts the recipient on the
    suppression list, so the next client to send it mail is told at RCPT, with the reason,
    instead of the relay bouncing it again later; other recipients of the same transaction
    go through. After `suppression_days` the entry lapses: mail to the address is accepted
    and, the mailbox being back, delivered.

    The expiry is configured short (one minute) and the engine's clock is stepped past it;
    the in-memory copy RCPT reads is refreshed by the engine's own task (every 5 s,
    shortened here to 0.1 s).
    """
    monkeypatch.setattr(engine_module, "SUPPRESSION_REFRESH_INTERVAL", 0.1)
    unknown = "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"
    sink = await smtp_sink(rcpt_replies={"gone@example.org": unknown})
    dns = dns_server({})
    clock = FakeClock()
    config = relay_config(
        tmp_path,
        (to_sink(sink),),
        dns=dns.address,
        connect_timeout=5.0,
        suppress_hard_bounces=True,
        suppression_days=60 / 86400,
    )
    run = await clocked_engine(config, clock)
    admin = admin_of(run)

    first = await send(run, "a@example.com", ["gone@example.org"], subject="first")
    detail = await wait_state(run, first, {"bounced"})
    assert detail.recipients[0].last_reply == unknown
    (entry,) = await admin.suppress_list()
    assert entry.address == "gone@example.org"
    assert entry.reason == unknown
    assert entry.expires_at == pytest.approx(entry.created_at + 60)

    client = await SMTPClient.connect(*run.address())
    try:
        await client.greet()
        code, text = await rcpt_until(client, "gone@example.org", 550)
        assert text.startswith("5.1.1 <gone@example.org>:"), text
        assert "suppress" in text and "User unknown" in text, text  # it says why
        code, text = await client.cmd("RCPT TO:<other@example.org>")
        assert code == 250, text
        second = await finish_data(client, "second")
        detail = await wait_state(run, second, {"delivered"})
        assert [r.address for r in detail.recipients] == ["other@example.org"]

        # The mailbox is back; a minute later the entry has lapsed.
        del sink.behaviour.rcpt_replies["gone@example.org"]
        clock.advance(61)
        await rcpt_until(client, "gone@example.org", 250)
        third = await finish_data(client, "third")
    finally:
        await client.close()
    detail = await wait_state(run, third, {"delivered"})
    assert [(r.address, r.state) for r in detail.recipients] == [("gone@example.org", "delivered")]
    delivered = [m for m in sink.messages if m.sender == "a@example.com"]
    assert [m.recipients for m in delivered] == [["other@example.org"], ["gone@example.org"]]
    assert run.engine.suppression_reason("gone@example.org") is None


# ---------------------------------------------------------------------- the connection cache


def courier() -> Courier:
    return Courier(
        helo_name="relay.example.test",
        connect_timeout=5.0,
        command_timeout=5.0,
        data_timeout=5.0,
        cache_idle=10.0,
    )


async def fill_cache(courier: Courier, sink: Sink, count: int) -> list[Any]:
    """Deliver `count` messages to `sink` at once, leaving `count` idle connections; returns
    that destination's pool (oldest first)."""
    hop = Hop("127.0.0.1", "127.0.0.1", sink.port)
    message = Transaction("a@example.com", ("b@example.org",), simple_message())
    results = await asyncio.gather(
        *(courier.deliver([hop], message, tls="none") for _ in range(count))
    )
    assert all(r.outcomes["b@example.org"].state == "delivered" for r in results)
    pools = [pool for key, pool in courier._idle.items() if key[1] == sink.port]
    assert [len(pool) for pool in pools] == [count]
    return pools[0]


async def test_reaping_never_puts_back_a_connection_a_delivery_took_meanwhile(
    smtp_sink: SinkFactory,
) -> None:
    """reap_idle waits for the QUIT of an expired connection; a delivery that takes a fresh
    connection of the same pool meanwhile has it to itself: the reaper must not put it back
    for a second delivery to share."""
    goodbye = asyncio.Event()
    sink = await smtp_sink(quit_stall=goodbye)
    cache = courier()
    pool = await fill_cache(cache, sink, 2)
    fresh, expired = pool
    expired.since -= 60  # past cache_idle; `fresh` comes first in the pool
    (key,) = cache._idle
    reaper = asyncio.create_task(cache.reap_idle())
    await asyncio.wait_for(sink.quitting.wait(), 5)
    entry = cache._take_idle(key)
    assert entry is not None and entry.smtp is fresh.smtp
    taken = entry.smtp
    goodbye.set()
    await asyncio.wait_for(reaper, 5)
    assert cache._take_idle(key) is None  # `taken` is in use, not idle
    assert taken.is_connected
    taken.close()


async def test_close_also_closes_connections_given_back_while_it_says_goodbye(
    smtp_sink: SinkFactory,
) -> None:
    """close() waits for QUIT replies; a delivery that ends meanwhile (to a destination not
    cached before) gives its connection back: close must neither fail nor leave it open."""
    goodbye = asyncio.Event()
    slow = await smtp_sink(quit_stall=goodbye)
    other = await smtp_sink()
    cache = courier()
    await fill_cache(cache, slow, 1)
    closing = asyncio.create_task(cache.close())
    await asyncio.wait_for(slow.quitting.wait(), 5)
    hop = Hop("127.0.0.1", "127.0.0.1", other.port)
    message = Transaction("a@example.com", ("b@example.org",), simple_message())
    result = await cache.deliver([hop], message, tls="none")
    assert result.outcomes["b@example.org"].state == "delivered"
    goodbye.set()
    await asyncio.wait_for(closing, 5)
    assert cache._idle == {}


async def test_a_delivery_cancelled_mid_transaction_closes_its_connection(
    smtp_sink: SinkFactory,
) -> None:
    """An attempt that ends by surprise (cancelled at a stop, or a bug) must not leave its
    connection open mid-transaction, nor cache it for the next message."""
    stall = asyncio.Event()
    sink = await smtp_sink(stall=stall)
    cache = courier()
    hop = Hop("127.0.0.1", "127.0.0.1", sink.port)
    message = Transaction("a@example.com", ("b@example.org",), simple_message())
    attempt = asyncio.create_task(cache.deliver([hop], message, tls="none"))
    await asyncio.wait_for(sink.in_data.wait(), 5)
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attempt
    await asyncio.wait_for(sink.disconnected.wait(), 5)
    assert cache._idle == {}
    stall.set()


class _CourierFailingFor(Courier):
    """A courier with a bug for one port: what one group of a message may meet."""

    broken_port = 0

    async def deliver(self, hops: Any, message: Transaction, **kwargs: Any) -> Any:
        if any(hop.port == self.broken_port for hop in hops):
            raise RuntimeError("a bug in delivery")
        return await super().deliver(hops, message, **kwargs)


async def test_one_group_failing_inside_relaybox_keeps_the_other_groups_outcomes(
    start_engine: EngineFactory,
    smtp_sink: SinkFactory,
    dns_server: DNSServerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message to two destinations: delivery to one fails with a bug in relaybox. The other
    recipient's delivery is recorded (so it is never sent twice) and only the failing group
    is deferred, with the error logged."""
    good = await smtp_sink()
    bad = await smtp_sink()
    monkeypatch.setattr(_CourierFailingFor, "broken_port", bad.port)
    monkeypatch.setattr(engine_module, "Courier", _CourierFailingFor)
    routes = (to_sink(good, ("good.example",)), to_sink(bad, ("bad.example",)))
    run = await start_engine(
        relay_config(tmp_path, routes, dns=dns_server({}).address, connect_timeout=5.0)
    )
    queue_id = await send(run, "a@example.com", ["x@good.example", "y@bad.example"])
    detail = await wait_state(run, queue_id, {"deferred"})
    states = {r.address: (r.state, r.last_reply or "") for r in detail.recipients}
    assert states["x@good.example"][0] == "delivered"
    assert states["y@bad.example"][0] == "deferred"
    assert "a bug in delivery" in states["y@bad.example"][1]
    assert "RuntimeError: a bug in delivery" in run.log_text()
    assert len(good.messages) == 1 and bad.messages == []


async def test_limits_and_paces_of_idle_destinations_are_forgotten(
    clocked_engine: ClockedEngineFactory,
    smtp_sink: SinkFactory,
    dns_server: DNSServerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler keeps a connection limit and a pace per destination it delivers to; the
    delivery housekeeping drops those nobody uses (a pace once it has had no start for a
    minute), so they do not pile up with every domain ever mailed. One in use stays."""
    monkeypatch.setattr(engine_module, "DELIVERY_HOUSEKEEPING_INTERVAL", 0.1)
    stall = asyncio.Event()
    stalled = await smtp_sink(stall=stall)
    sink = await smtp_sink()
    paced = dataclasses.replace(to_sink(sink, ("paced.example",)), max_messages_per_minute=100)
    routes = (paced, to_sink(stalled, ("slow.example",)))
    clock = FakeClock()
    run = await clocked_engine(
        relay_config(tmp_path, routes, dns=dns_server({}).address, connect_timeout=5.0), clock
    )
    scheduler = run.engine.scheduler
    assert scheduler is not None
    await wait_state(run, await send(run, "a@example.com", ["x@paced.example"]), {"delivered"})
    await send(run, "a@example.com", ["y@slow.example"])
    await asyncio.wait_for(stalled.in_data.wait(), 5)
    slow_key = f"smarthost:127.0.0.1:{stalled.port}"
    paced_key = f"smarthost:127.0.0.1:{sink.port}"

    async def until(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not check():
            assert time.monotonic() < deadline, (scheduler._per_destination, scheduler._pace)
            await asyncio.sleep(0.05)

    await until(lambda: list(scheduler._per_destination) == [slow_key])  # in use: kept
    assert list(scheduler._pace) == [paced_key]  # started within the minute: kept
    clock.advance(61)
    await until(lambda: not scheduler._pace)
    stall.set()
    await until(lambda: not scheduler._per_destination)
