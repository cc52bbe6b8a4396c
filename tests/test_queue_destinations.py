"""`relaybox queue destinations` and the `destinations` operation: the unfinished queue by
next hop, with the causes, the one needing attention first (qshape's view)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from relaybox.admin.destinations import DestinationSummary, group_by_destination
from relaybox.admin.service import UNTIL_RESUMED
from relaybox.cli.destinations import load_text
from relaybox.config.model import RouteConfig
from relaybox.message.explain import explain
from relaybox.message.replies import Reply
from relaybox.outbound.scheduler import DestinationLoad
from relaybox.queue.reroute import Unfinished

from .relayproc import Cli, StartRelay, free_port
from .smtpsink import SinkFactory
from .support.configs import make_config, relay_config, to_sink, write_config
from .support.engine import EngineFactory, admin_of, wait_state
from .support.smtp import send, send_sync

BUSY = "451 4.2.1 mailbox busy, try later"


async def test_destinations_group_the_unfinished_queue_by_next_hop_with_their_causes(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    sink = await smtp_sink(rcpt_replies={"a@busy.example": BUSY, "b@busy.example": BUSY})
    routes = (
        to_sink(sink, ("busy.example", "other.example")),
        RouteConfig(domains=("held.example",), transport="hold"),
        to_sink(sink, ("*",)),
    )
    run = await start_engine(relay_config(tmp_path, routes))
    first = await send(run, "app@example.com", ["a@busy.example", "b@busy.example"])
    second = await send(run, "app@example.com", ["a@busy.example"])
    held = await send(run, "app@example.com", ["x@held.example"])
    for queue_id in (first, second):
        await wait_state(run, queue_id, {"deferred"})
    await wait_state(run, held, {"held"})
    admin = admin_of(run)
    key = f"smarthost:127.0.0.1:{sink.port}"
    before = await admin.destinations()
    assert before[0]["causes"] == [{"reply": BUSY, "count": 3, "explained": None}]
    await admin.suspend(key, None, "the provider asked us to wait")

    found = await admin.destinations()

    assert [d["destination"] for d in found] == [key, "hold"]
    busy, kept = found
    assert busy["domains"] == ["busy.example"]
    assert (busy["queued"], busy["active"], busy["deferred"], busy["held"]) == (0, 0, 3, 0)
    # Suspending says so at once, as the next attempt would have.
    reply = Reply.suspended(key, "the provider asked us to wait")
    assert busy["causes"] == [{"reply": reply, "count": 3, "explained": None}]
    assert busy["suspended_until"] == UNTIL_RESUMED
    assert busy["suspended_reason"] == "the provider asked us to wait"
    assert busy["next_attempt_at"] is not None and busy["oldest_at"] is not None
    assert (kept["domains"], kept["held"], kept["deferred"]) == (["held.example"], 1, 0)


def test_the_command_prints_each_destination_with_its_cause_and_json_says_suspended(
    tmp_path: Path, start_relay: StartRelay, cli: Cli
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)  # every route holds its mail
    relay = start_relay("--headless", "--config", config, port=port)
    send_sync(port, recipient="someone@example.org")
    send_sync(port, recipient="else@example.net")

    text = cli("queue", "destinations", "--config", config)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("hold  (example.net, example.org): 2 held, oldest ")

    listed: list[dict[str, Any]] = json.loads(
        cli("queue", "destinations", "--json", "--config", config).stdout
    )
    assert [(d["destination"], d["held"], d["suspended"]) for d in listed] == [("hold", 2, False)]
    assert relay.terminate() == 0
    offline = cli("queue", "destinations", "--config", config)  # no engine: the spool itself
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.startswith("hold  (example.net, example.org): 2 held, oldest ")


async def test_destinations_show_the_connections_open_the_limit_the_pace_and_the_messages(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    stall = asyncio.Event()
    sink = await smtp_sink(stall=stall)
    route = to_sink(sink, max_connections=1, max_messages_per_minute=30)
    run = await start_engine(relay_config(tmp_path, (route,)))
    first = await send(run, "app@example.com", ["a@slow.example"])
    second = await send(run, "app@example.com", ["b@slow.example"])
    admin = admin_of(run)
    try:
        await asyncio.wait_for(sink.in_data.wait(), 10)
        for _ in range(100):  # the second attempt starts and waits for the one connection
            found = await admin.destinations()
            if found and found[0]["attempts_now"] == 2:
                break
            await asyncio.sleep(0.05)
        [slow] = found
        assert slow["destination"] == f"smarthost:127.0.0.1:{sink.port}"
        assert (slow["attempts_now"], slow["connections"], slow["connection_limit"]) == (2, 1, 1)
        assert (slow["pace"], slow["started_last_minute"]) == (30, 2)
        assert slow["active"] == 2
        assert slow["queue_ids"] == [first, second]
    finally:
        stall.set()
    for queue_id in (first, second):
        await wait_state(run, queue_id, {"delivered"})
    assert await admin.destinations() == []


def test_the_load_line_says_connections_waiting_and_pace() -> None:
    entry = {"attempts_now": 3, "connections": 2, "connection_limit": 2, "pace": 30}
    entry["started_last_minute"] = 5
    assert load_text(entry) == (
        "2 of 2 connections open, 1 waiting; paced at 30 a minute (5 started)"
    )
    assert load_text({**entry, "attempts_now": 0, "pace": 0}) == ""


async def test_suspending_defers_its_mail_at_once_until_resumed_and_resuming_retries_it(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """The recipients already deferred there say "suspended by the admin" at once (not
    after their next attempt, maybe hours away), with no next attempt before the end; the
    other destinations' mail is untouched."""
    busy = await smtp_sink(rcpt_replies={"a@busy.example": BUSY})
    elsewhere = await smtp_sink(rcpt_replies={"b@other.example": BUSY})
    routes = (to_sink(busy, ("busy.example",)), to_sink(elsewhere, ("*",)))
    run = await start_engine(relay_config(tmp_path, routes))
    stuck = await send(run, "app@example.com", ["a@busy.example"])
    other = await send(run, "app@example.com", ["b@other.example"])
    for queue_id in (stuck, other):
        await wait_state(run, queue_id, {"deferred"})
    admin = admin_of(run)
    busy_key = f"smarthost:127.0.0.1:{busy.port}"

    await admin.suspend(busy_key, None, "provider outage")

    detail = await admin.show(stuck)
    [rcpt] = detail.recipients
    assert rcpt.last_reply == Reply.suspended(busy_key, "provider outage")
    assert rcpt.next_attempt_at == UNTIL_RESUMED
    assert detail.row.last_reply == rcpt.last_reply  # the Queue pane's row says it too
    untouched = (await admin.show(other)).recipients[0]
    assert untouched.last_reply == BUSY and untouched.next_attempt_at < UNTIL_RESUMED

    await admin.resume(busy_key)
    again = await admin.show(stuck)
    assert again.recipients[0].next_attempt_at < UNTIL_RESUMED


def test_each_cause_is_explained_in_plain_words_when_a_rule_knows_it() -> None:
    grey = "450 4.7.1 <a@example.org>: Recipient address rejected: Greylisted"
    summary = DestinationSummary("mx:example.org", causes=[(grey, 2), (BUSY, 1)])
    assert summary.to_json()["causes"] == [
        {"reply": grey, "count": 2, "explained": explain(grey).summary},  # type: ignore[union-attr]
        {"reply": BUSY, "count": 1, "explained": None},
    ]
    assert "greylisting" in summary.to_json()["causes"][0]["explained"]


def test_grouping_routes_by_recipient_and_sender_domain_and_a_release(tmp_path: Path) -> None:
    """Routing is decided once per (recipient domain, sender domain, released), not per
    recipient: the same recipient domain still parts by sender and by a release."""
    routes = (
        RouteConfig(domains=("*",), transport="hold", sender_domains=("held.example",)),
        RouteConfig(domains=("*",), transport="mx"),
    )
    config = dataclasses.replace(make_config(tmp_path / "state"), routes=routes)

    def rcpt(n: int, sender: str, released: bool = False) -> Unfinished:
        address = f"user{n}@example.org"
        return Unfinished(n, 0, sender, address, "queued", None, None, 1.0 + n, None, released)

    found = group_by_destination(
        [rcpt(1, "a@held.example"), rcpt(2, "b@other.example"), rcpt(3, "c@held.example", True)],
        config,
        suspended={},
        delivering=lambda _: False,
        load=lambda _: DestinationLoad(),
    )
    assert sorted((s.destination, s.queued) for s in found) == [("hold", 1), ("mx:example.org", 2)]
