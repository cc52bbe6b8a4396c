"""Delivery end to end: a real engine relays over loopback to real aiosmtpd sinks, resolving
MX hosts with a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time

import pytest

from relaybox.config.model import (
    HostPort,
    RouteConfig,
)
from relaybox.message.explain import explain
from relaybox.message.replies import Reply
from relaybox.queue import MessageFilter

from .support.clock import FakeClock
from .support.configs import relay_config, to_sink
from .support.engine import let_time_pass, wait_attempts, wait_state
from .support.smtp import QUEUED, SMTPClient, said, send, simple_message

# ---------------------------------------------------------------------- the happy paths


async def test_message_is_relayed_to_the_smarthost(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["b@example.org", "c@example.net"])
    (got,) = await sink.wait_for(1)
    assert got.sender == "a@example.com"
    assert sorted(got.recipients) == ["b@example.org", "c@example.net"]
    assert got.data.startswith(b"Received: from client.example.test")
    assert b"Hello." in got.data
    detail = await wait_state(run, queue_id, {"delivered"})
    assert all(r.state == "delivered" for r in detail.recipients)
    (attempt,) = detail.attempts
    assert attempt.outcome == "delivered"
    assert attempt.ip == "127.0.0.1" and attempt.port == sink.port
    lines = [(line.direction, line.text) for line in attempt.transcript]
    assert ("C", "MAIL FROM:<a@example.com> SIZE=" + str(len(got.data))) in lines or any(
        d == "C" and t.startswith("MAIL FROM:<a@example.com>") for d, t in lines
    )
    assert ("S", "250 2.0.0 Ok: queued at the sink") in lines
    assert re.search(rf"{queue_id}: sent .*to=<b@example.org>", run.log_text())


async def test_mx_delivery_follows_dns(start_engine, smtp_sink, dns_server, tmp_path):
    sink = await smtp_sink()
    dns = dns_server(
        {
            "example.org": {"MX": ["10 mx.example.org."]},
            "mx.example.org": {"A": ["127.0.0.1"]},
        }
    )
    route = RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
    run = await start_engine(relay_config(tmp_path, (route,), dns=dns.address, mx_port=sink.port))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await sink.wait_for(1)
    detail = await wait_state(run, queue_id, {"delivered"})
    assert detail.attempts[0].host == "mx.example.org"
    assert dns.queries["example.org", "MX"] >= 1


async def test_lines_starting_with_a_period_arrive_intact(start_engine, smtp_sink, tmp_path):
    """Dot-stuffing both ways (RFC 5321 §4.5.2): the sink must get the lines as written."""
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    body = ".\r\n..\r\n.leading\r\n middle . dot\r\n..."
    message = simple_message("dots", body)
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    client = await SMTPClient.connect(*run.address())
    try:
        await client.greet()
        code, text = await client.send_message("a@example.com", ["b@example.org"], stuffed)
        assert code == 250, text
    finally:
        await client.close()
    (got,) = await sink.wait_for(1)
    assert got.data.endswith(message), got.data


async def test_recipients_with_one_next_hop_share_one_transaction(
    start_engine, smtp_sink, tmp_path
):
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    await send(run, "a@example.com", [f"r{i}@example.org" for i in range(5)])
    (got,) = await sink.wait_for(1)
    assert len(got.recipients) == 5


async def test_connections_are_reused_for_consecutive_messages(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    for _ in range(3):
        queue_id = await send(run, "a@example.com", ["b@example.org"])
        await wait_state(run, queue_id, {"delivered"})
    await sink.wait_for(3)
    assert sink.connections == 1
    detail = await run.engine.admin.show(queue_id)
    assert any("reusing the connection" in line.text for line in detail.attempts[0].transcript)


# ---------------------------------------------------------------------- per-recipient outcomes


async def test_each_recipient_gets_its_own_outcome(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(
        rcpt_replies={
            "gone@example.org": "550 5.1.1 <gone@example.org>: user unknown",
            "busy@example.org": "451 4.2.1 mailbox busy, try later",
        }
    )
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(
        run, "a@example.com", ["ok@example.org", "gone@example.org", "busy@example.org"]
    )
    detail = await wait_state(run, queue_id, {"deferred"})
    states = {r.address: r.state for r in detail.recipients}
    assert states == {
        "ok@example.org": "delivered",
        "gone@example.org": "bounced",
        "busy@example.org": "deferred",
    }
    busy = next(r for r in detail.recipients if r.address == "busy@example.org")
    assert busy.last_reply.startswith("451 4.2.1")
    assert 250 < busy.next_attempt_at - time.time() <= 300  # min_backoff
    # The sink got the message for the one that took it, then a DSN for the bounce.
    messages = await sink.wait_for(2)
    dsn = next(m for m in messages if m.sender == "")
    assert dsn.recipients == ["a@example.com"]
    report = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert b"gone@example.org" in dsn.data and b"5.1.1" in dsn.data
    assert b"busy@example.org" not in dsn.data.split(b"\r\n\r\n", 1)[1].split(b"Received:")[0]
    # A hard 5.1.1 puts the address on the suppression list, and RCPT knows at once.
    assert run.engine.suppression_reason("gone@example.org")


async def test_a_refused_sender_bounces_without_suppressing_the_recipient(
    start_engine, smtp_sink, tmp_path
):
    """A 5.1.1 in the reply to MAIL FROM is about the sender: the recipient bounces with
    it, but only a recipient's own RCPT reply may put the recipient on the suppression list."""
    refused = "550 5.1.1 <a@example.com>: Sender address rejected: undeliverable address"
    sink = await smtp_sink(mail_reply=refused)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"bounced"})
    assert detail.recipients[0].last_reply == refused
    assert run.engine.suppression_reason("b@example.org") is None
    assert await run.engine.admin.suppress_list() == []


async def test_greylisted_mail_is_delivered_on_retry(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(greylist=True)
    clock = FakeClock()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)), clock=clock)
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await wait_state(run, queue_id, {"deferred"})
    let_time_pass(run, clock, 300)  # min_backoff
    detail = await wait_state(run, queue_id, {"delivered"})
    assert [a.outcome for a in detail.attempts] == ["deferred", "delivered"]
    assert detail.recipients[0].attempts == 2


async def test_dropped_connection_defers(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(drop_at_data=True)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert detail.recipients[0].last_reply.startswith("451")


async def test_unreachable_smarthost_fails_over_to_the_next(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    dead = await smtp_sink()
    await dead.stop()  # nothing listens on its port any more
    route = RouteConfig(
        domains=("*",),
        transport="smarthost",
        hosts=(HostPort("127.0.0.1", dead.port), HostPort("127.0.0.1", sink.port)),
        tls="none",
    )
    run = await start_engine(relay_config(tmp_path, (route,)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"delivered"})
    assert [a.port for a in detail.attempts] == [dead.port, sink.port]


# ---------------------------------------------------------------------- DNS outcomes


@pytest.mark.parametrize(
    ("zone", "status"),
    [
        ({"nullmx.example": {"MX": ["0 ."]}}, "5.1.10"),
        ({}, "5.1.2"),  # NXDOMAIN
    ],
)
async def test_undeliverable_domains_bounce_at_once(
    start_engine, smtp_sink, dns_server, tmp_path, zone, status
):
    sink = await smtp_sink()  # where the DSN to the sender goes
    dns = dns_server(zone)
    routes = (
        to_sink(sink, ("example.com",)),
        RouteConfig(domains=("*",), transport="mx", tls="opportunistic"),
    )
    run = await start_engine(relay_config(tmp_path, routes, dns=dns.address))
    queue_id = await send(run, "a@example.com", ["x@nullmx.example"])
    detail = await wait_state(run, queue_id, {"bounced"})
    assert status in detail.recipients[0].last_reply
    (dsn,) = await sink.wait_for(1)
    assert dsn.sender == "" and dsn.recipients == ["a@example.com"]
    assert f"Status: {status}".encode() in dsn.data
    # DNS, not the recipient's mail server, said so: the address is not suppressed.
    assert run.engine.suppression_reason("x@nullmx.example") is None


async def test_dns_servfail_defers(start_engine, dns_server, tmp_path):
    dns = dns_server({"broken.example": "SERVFAIL"})
    route = RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
    run = await start_engine(relay_config(tmp_path, (route,), dns=dns.address))
    queue_id = await send(run, "a@example.com", ["x@broken.example"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert detail.recipients[0].last_reply.startswith("451 4.4.3")


# ---------------------------------------------------------------------- bounces and lifetimes


async def test_a_bounce_is_never_bounced(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(rcpt_replies={"gone@example.org": "550 5.1.1 unknown"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "", ["gone@example.org"])
    await wait_state(run, queue_id, {"bounced"})
    await asyncio.sleep(0.3)
    page = await run.engine.admin.list_messages(MessageFilter(states=()))
    assert [r.queue_id for r in page.rows] == [queue_id]  # no DSN was made
    assert "bounce-dropped" in run.log_text()


async def test_queue_lifetime_turns_deferral_into_bounce(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(rcpt_replies={"slow@example.org": "451 4.3.0 try later"})
    clock = FakeClock()
    config = relay_config(tmp_path, (to_sink(sink),), queue_lifetime=3600.0)
    run = await start_engine(config, clock=clock)
    queue_id = await send(run, "a@example.com", ["slow@example.org"])
    await wait_state(run, queue_id, {"deferred"})
    let_time_pass(run, clock, 3600)
    detail = await wait_state(run, queue_id, {"bounced"})
    assert "451 4.3.0 try later" in detail.recipients[0].last_reply
    assert "5.4.7" in detail.recipients[0].last_reply


async def test_soft_bounce_defers_permanent_failures(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(rcpt_replies={"gone@example.org": "550 5.1.1 unknown"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),), soft_bounce=True))
    queue_id = await send(run, "a@example.com", ["gone@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert detail.recipients[0].last_reply.startswith("550 5.1.1")


async def test_delay_warning_is_sent_once(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(rcpt_replies={"slow@example.org": "451 4.3.0 try later"})
    clock = FakeClock()
    config = relay_config(
        tmp_path, (to_sink(sink),), delay_warning=600.0, min_backoff=300.0, max_backoff=300.0
    )
    run = await start_engine(config, clock=clock)
    queue_id = await send(run, "a@example.com", ["slow@example.org"])
    await wait_attempts(run, queue_id, 1)
    let_time_pass(run, clock, 300)
    await wait_attempts(run, queue_id, 2)
    assert sink.messages == []  # deferred for 5 minutes: too early to warn
    let_time_pass(run, clock, 300)
    await wait_attempts(run, queue_id, 3)
    (warning,) = await sink.wait_for(1)
    for attempts in (4, 5):  # more retries happen; no second warning
        let_time_pass(run, clock, 300)
        await wait_attempts(run, queue_id, attempts)
    # A warning is spooled in the same commit as the attempt that owes it.
    spooled = await run.engine.admin.list_messages(MessageFilter(states=()))
    assert [r.sender for r in spooled.rows].count("") == 1
    assert warning.sender == ""
    assert b"Action: delayed" in warning.data


# ---------------------------------------------------------------------- routes


async def test_capture_keeps_the_message_and_sends_nothing(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    routes = (RouteConfig(domains=("*.test",), transport="capture"), to_sink(sink))
    run = await start_engine(relay_config(tmp_path, routes))
    queue_id = await send(run, "app@example.com", ["user@shop.test"])
    detail = await wait_state(run, queue_id, {"delivered"})
    assert "Captured" in detail.recipients[0].last_reply
    assert await run.engine.admin.message_data(queue_id)
    await asyncio.sleep(0.2)
    assert sink.messages == []


async def test_hold_route_holds_and_release_sends(start_engine, smtp_sink, tmp_path):
    """Released, a route-held recipient goes on by the next route that matches it, and stays
    past the hold after a deferral (a greylisting next hop)."""
    sink = await smtp_sink(greylist=True)
    routes = (RouteConfig(domains=("held.example",), transport="hold"), to_sink(sink))
    clock = FakeClock()
    run = await start_engine(relay_config(tmp_path, routes), clock=clock)
    queue_id = await send(run, "a@example.com", ["x@held.example"])
    await wait_state(run, queue_id, {"held"})
    assert sink.messages == []

    assert await run.engine.admin.release(MessageFilter(queue_ids=(queue_id,))) == [queue_id]
    detail = await wait_state(run, queue_id, {"deferred"})  # greylisted at the first try
    assert detail.attempts[-1].destination == f"smarthost:127.0.0.1:{sink.port}"
    let_time_pass(run, clock, 300)  # min_backoff: the retry goes to the sink, not the hold
    (got,) = await sink.wait_for(1)
    assert got.recipients == ["x@held.example"]
    await wait_state(run, queue_id, {"delivered"})


async def test_a_release_with_only_hold_routes_matching_sends_by_mx(start_engine, tmp_path):
    routes = (RouteConfig(domains=("*",), transport="hold"),)
    run = await start_engine(relay_config(tmp_path, routes))
    queue_id = await send(run, "a@example.com", ["x@held.example"])
    await wait_state(run, queue_id, {"held"})
    await run.engine.admin.release(MessageFilter(queue_ids=(queue_id,)))
    detail = await wait_state(run, queue_id, {"deferred"})
    # No DNS answers in this test: the MX lookup of the recipient's domain is what failed.
    assert "DNS lookup for held.example failed" in (detail.recipients[0].last_reply or "")


async def test_a_held_recipient_does_not_hold_back_its_deferred_co_recipient(
    start_engine, smtp_sink, tmp_path
):
    """One recipient held by its route makes the message `held`; the other, greylisted at
    the first try, is still retried when due and delivered, and the held one stays held."""
    sink = await smtp_sink(greylist=True)
    routes = (RouteConfig(domains=("held.example",), transport="hold"), to_sink(sink))
    clock = FakeClock()
    run = await start_engine(relay_config(tmp_path, routes), clock=clock)
    queue_id = await send(run, "a@example.com", ["x@held.example", "b@example.org"])
    await wait_attempts(run, queue_id, 1)
    let_time_pass(run, clock, 300)  # min_backoff
    (got,) = await sink.wait_for(1)
    assert got.recipients == ["b@example.org"]
    deadline = time.monotonic() + 10
    while True:
        detail = await wait_state(run, queue_id, {"held"})
        states = {r.address: r.state for r in detail.recipients}
        # The delivered recipient is committed before the attempt's whole record (which
        # settles the message's next attempt) follows: wait for both.
        settled = states["b@example.org"] == "delivered" and detail.row.next_attempt_at is None
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert states == {"x@held.example": "held", "b@example.org": "delivered"}
    assert detail.row.next_attempt_at is None


async def test_bare_postmaster_goes_to_postmaster_at_the_relays_hostname(
    start_engine, smtp_sink, tmp_path
):
    """RFC 5321 §4.1.1.3: <Postmaster> without a domain must be accepted. A relay has no
    local mailbox: it is sent on as postmaster@[server] hostname, by that domain's route
    (here a smart host that takes only relay.example.test), as Postfix's null client does."""
    sink = await smtp_sink()
    config = relay_config(tmp_path, (to_sink(sink, ("relay.example.test",)),))
    assert config.server.hostname == "relay.example.test"
    run = await start_engine(config)
    queue_id = await send(run, "a@example.com", ["Postmaster"])
    (got,) = await sink.wait_for(1)
    assert got.recipients == ["postmaster@relay.example.test"]
    detail = await wait_state(run, queue_id, {"delivered"})
    assert detail.attempts[0].destination == f"smarthost:127.0.0.1:{sink.port}"


async def test_reject_route_refuses_at_rcpt(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    routes = (
        RouteConfig(domains=("competitor.example",), transport="reject", reject_text="Not here"),
        to_sink(sink),
    )
    run = await start_engine(relay_config(tmp_path, routes))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await client.cmd("MAIL FROM:<a@example.com>")
    reply = said(*await client.cmd("RCPT TO:<x@competitor.example>"))
    assert reply == Reply.rejected_by_route("Not here")
    await client.close()


async def test_sender_is_rewritten_for_the_upstream(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    """Envelope sender and From: both change (the upstream checks both); the display name,
    other fields and the body stay as they were."""
    sink = await smtp_sink()
    route = to_sink(sink, rewrite_senders=(("@printer.local", "noreply@example.org"),))
    run = await start_engine(relay_config(tmp_path, (route,)))
    body = (
        b'From: "Office Scanner" <Scanner@Printer.Local>\r\nTo: b@example.org\r\n'
        b"Reply-To: scanner@printer.local\r\nSubject: scan\r\n\r\n"
        b"From: scanner@printer.local in the body stays\r\n"
    )
    await send(run, "scanner@printer.local", ["b@example.org"], body)
    (got,) = await sink.wait_for(1)
    assert got.sender == "noreply@example.org"
    assert b'\r\nFrom: "Office Scanner" <noreply@example.org>\r\n' in got.data
    assert b"\r\nReply-To: scanner@printer.local\r\n" in got.data
    assert got.data.endswith(b"\r\n\r\nFrom: scanner@printer.local in the body stays\r\n")


# ---------------------------------------------------------------------- restarts


async def test_restart_keeps_the_retry_schedule(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(rcpt_replies={"busy@example.org": "451 4.2.1 busy"})
    config = relay_config(tmp_path, (to_sink(sink),))
    first = await start_engine(config)
    queue_id = await send(first, "a@example.com", ["busy@example.org"])
    before = await wait_state(first, queue_id, {"deferred"})
    await first.engine.stop(grace=1)
    second = await start_engine(config)
    after = await second.engine.admin.show(queue_id)
    assert after.row.state == "deferred"
    assert after.recipients[0].next_attempt_at == before.recipients[0].next_attempt_at
    assert after.recipients[0].attempts == 1
    await asyncio.sleep(0.3)
    assert len((await second.engine.admin.show(queue_id)).attempts) == 1  # not retried early


# ---------------------------------------------------------------------- TLS and AUTH outbound


async def test_opportunistic_tls_is_used_when_offered(start_engine, smtp_sink, sink_tls, tmp_path):
    context, _ = sink_tls
    sink = await smtp_sink(tls_context=context)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, tls="opportunistic"),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await sink.wait_for(1)
    detail = await wait_state(run, queue_id, {"delivered"})
    assert detail.attempts[0].tls.startswith("TLSv1.")
    assert any("TLS established" in line.text for line in detail.attempts[0].transcript)


async def test_opportunistic_falls_back_to_plaintext_without_starttls(
    start_engine, smtp_sink, tmp_path
):
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, tls="opportunistic"),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"delivered"})
    assert detail.attempts[0].tls is None


async def test_required_tls_defers_when_starttls_is_missing(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, tls="required"),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert "does not offer STARTTLS" in detail.recipients[0].last_reply
    assert sink.messages == []


async def test_verify_checks_the_certificate_against_the_ca_file(
    start_engine, smtp_sink, sink_tls, tmp_path
):
    context, ca_file = sink_tls
    sink = await smtp_sink(tls_context=context)
    good = to_sink(sink, tls="verify", ca_file=ca_file)
    run = await start_engine(relay_config(tmp_path, (good,)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await wait_state(run, queue_id, {"delivered"})


async def test_verify_defers_on_an_untrusted_certificate(
    start_engine, smtp_sink, sink_tls, tmp_path
):
    context, _ = sink_tls
    sink = await smtp_sink(tls_context=context)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, tls="verify"),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert "CERTIFICATE_VERIFY_FAILED" in detail.recipients[0].last_reply
    assert sink.messages == []
    explained = explain(detail.recipients[0].last_reply)
    assert explained is not None and explained.key == "tls-certificate"
    assert 'tls = "verify"' in explained.summary


async def test_implicit_tls_names_the_mode_when_the_certificate_is_refused(
    start_engine, smtp_sink, sink_tls, tmp_path
):
    context, ca_file = sink_tls
    sink = await smtp_sink(implicit_tls=context)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, tls="implicit"),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    reply = detail.recipients[0].last_reply
    assert "CERTIFICATE_VERIFY_FAILED" in reply and "route tls = 'implicit'" in reply
    explained = explain(reply)
    assert explained is not None and explained.key == "tls-certificate"
    assert "certificate" in explained.summary and 'tls = "implicit"' in explained.summary
    # With the CA trusted, the same sink takes the mail over implicit TLS.
    trusted = await smtp_sink(implicit_tls=context)
    run2 = await start_engine(
        relay_config(tmp_path / "2", (to_sink(trusted, tls="implicit", ca_file=ca_file),))
    )
    second = await send(run2, "a@example.com", ["b@example.org"])
    delivered = await wait_state(run2, second, {"delivered"})
    assert delivered.attempts[-1].tls.startswith("TLSv1.")


async def test_smarthost_auth_succeeds_and_the_password_is_not_recorded(
    start_engine, smtp_sink, sink_tls, tmp_path
):
    context, ca_file = sink_tls
    sink = await smtp_sink(tls_context=context, auth=("relay", "upstream-secret-Zq9"))
    secret = tmp_path / "password"
    secret.write_text("upstream-secret-Zq9\n")
    route = to_sink(sink, tls="verify", ca_file=ca_file, username="relay", password_file=secret)
    run = await start_engine(relay_config(tmp_path, (route,)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await sink.wait_for(1)
    detail = await wait_state(run, queue_id, {"delivered"})
    transcript = "\n".join(line.text for line in detail.attempts[0].transcript)
    assert "AUTH PLAIN <secret>" in transcript
    assert "upstream-secret" not in transcript
    assert "upstream-secret" not in run.log_text()


async def test_smarthost_auth_failure_defers_instead_of_bouncing(
    start_engine, smtp_sink, sink_tls, tmp_path
):
    context, ca_file = sink_tls
    sink = await smtp_sink(tls_context=context, auth=("relay", "the-right-one"))
    secret = tmp_path / "password"
    secret.write_text("an-expired-one\n")
    route = to_sink(sink, tls="verify", ca_file=ca_file, username="relay", password_file=secret)
    run = await start_engine(relay_config(tmp_path, (route,)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert "AUTH failed" in detail.recipients[0].last_reply
    assert "smarthost-auth-failed" in run.log_text()
    assert "an-expired-one" not in run.log_text()


async def test_auth_required_at_mail_defers_instead_of_bouncing(start_engine, smtp_sink, tmp_path):
    """530 5.7.0 to MAIL FROM is about the relay's login (none, or an expired one), not the
    mail: it is deferred and the log says so; nothing bounces."""
    sink = await smtp_sink(mail_reply="530 5.7.0 Authentication required")
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred", "bounced"})
    assert detail.row.state == "deferred"
    assert detail.recipients[0].last_reply == "530 5.7.0 Authentication required"
    assert "smarthost-auth-failed" in run.log_text()


async def test_auth_required_at_rcpt_defers_every_recipient_and_sends_nothing(
    start_engine, smtp_sink, tmp_path
):
    sink = await smtp_sink(rcpt_replies={"b@example.org": "535 5.7.8 Authentication expired"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["c@example.org", "b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred", "bounced"})
    assert [r.state for r in detail.recipients] == ["deferred", "deferred"]
    assert all(r.last_reply.startswith("535 5.7.8") for r in detail.recipients)
    assert sink.messages == []
    assert "smarthost-auth-failed" in run.log_text()


# ---------------------------------------------------------------------- 8BITMIME and SMTPUTF8


async def test_8bit_mail_is_not_sent_to_a_hop_without_8bitmime(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(no_8bitmime=True)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await client.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    await client.send("Subject: Grüße\r\n\r\nGrüße\r\n.\r\n".encode())
    code, text = await client.reply()
    await client.close()
    detail = await wait_state(run, QUEUED.search(text).group(1), {"deferred"})
    assert "8BITMIME" in detail.recipients[0].last_reply
    assert sink.messages == []


async def test_a_non_ascii_rewritten_sender_goes_out_with_smtputf8(
    start_engine, smtp_sink, tmp_path
):
    """The client sent plain ASCII; the route rewrites the sender to a non-ASCII address,
    which only SMTPUTF8 can carry (RFC 6531 §3.4): used when the hop offers it."""
    sink = await smtp_sink()
    route = to_sink(sink, rewrite_senders=(("@printer.local", "josé@example.org"),))
    run = await start_engine(relay_config(tmp_path, (route,)))
    queue_id = await send(run, "scanner@printer.local", ["b@example.org"])
    (got,) = await sink.wait_for(1)
    assert got.sender == "josé@example.org"
    assert "SMTPUTF8" in got.mail_options
    await wait_state(run, queue_id, {"delivered"})


async def test_a_non_ascii_rewritten_sender_to_a_hop_without_smtputf8_is_deferred(
    start_engine, smtp_sink, tmp_path
):
    """Not a crash in delivery, and not a bounce either: the relay's own config made the
    address unsendable there, so the mail waits for the config to be fixed."""
    sink = await smtp_sink(smtputf8=False)
    route = to_sink(sink, rewrite_senders=(("@printer.local", "josé@example.org"),))
    run = await start_engine(relay_config(tmp_path, (route,)))
    queue_id = await send(run, "scanner@printer.local", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred", "bounced"}, timeout=10)
    assert detail.row.state == "deferred"
    reply = detail.recipients[0].last_reply
    assert reply.startswith("451 4.6.7 <josé@example.org> is not ASCII"), reply
    assert "delivery-failed" not in run.log_text()
    assert sink.messages == []


async def test_smtputf8_mail_to_a_hop_without_it_bounces(start_engine, smtp_sink, tmp_path):
    sink = await smtp_sink(smtputf8=False)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await client.cmd("MAIL FROM:<josé@example.com> SMTPUTF8")
    await client.cmd("RCPT TO:<zoë@example.org>")
    await client.cmd("DATA")
    await client.send(b"Subject: hi\r\n\r\nhi\r\n.\r\n")
    code, text = await client.reply()
    await client.close()
    detail = await wait_state(run, QUEUED.search(text).group(1), {"bounced"})
    assert "5.6.7" in detail.recipients[0].last_reply
