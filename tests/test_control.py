"""The admin socket end to end: a real engine serves it, `ControlClient` talks to it.

Mail goes to aiosmtpd sinks on loopback (or is held); nothing leaves the machine. Each test asks
the engine over its socket and checks the answer against the spool the engine keeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import os
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relaybox.admin.client import AdminClient, ControlClient, ControlError, EventsDropped
from relaybox.admin.operations import BY_METHOD, OPERATIONS, protocol_markdown
from relaybox.admin.server import MAX_CLIENTS
from relaybox.admin.service import ADMIN_HOLD, UNTIL_RESUMED, Admin
from relaybox.config.model import HostPort, RouteConfig
from relaybox.events import (
    DestinationSuspended,
    MessageAccepted,
    MessageDeleted,
    MessageHeld,
    MessageReleased,
)
from relaybox.message.replies import Reply
from relaybox.queue import MessageFilter
from relaybox.statedir import SOCKET_NAME

from .smtpsink import SinkFactory
from .support.configs import make_config, relay_config, to_sink
from .support.engine import EngineFactory, RunningEngine, wait_state
from .support.smtp import SMTPClient, said, send

BUSY = "busy@example.org"
"""The sinks of these tests answer 451 for this recipient, so its mail stays deferred."""
SENDER = "a@example.com"


# ---------------------------------------------------------------------------- the table


def test_docs_admin_protocol_md_is_what_the_operations_table_makes() -> None:
    committed = Path(__file__).parents[1] / "docs" / "admin-protocol.md"
    assert committed.read_text(encoding="utf-8") == protocol_markdown(), (
        "regenerate it: python -m relaybox.admin.operations > docs/admin-protocol.md"
    )


def test_every_operation_names_the_admin_method_it_calls_with_all_its_parameters() -> None:
    for op in OPERATIONS:
        if not op.method:
            continue  # info and subscribe are the server's own
        parameters = list(inspect.signature(getattr(Admin, op.method)).parameters)[1:]
        assert sorted(parameters) == sorted(a.parameter for a in op.args), op.name


def test_admin_and_control_client_have_every_admin_client_method_with_its_signature() -> None:
    """What the CLI and the UI call is the same in process (Admin) and over the socket: each
    method is an operation of the table, or made of them (list_all, message_ids)."""
    methods = [n for n, v in vars(AdminClient).items() if inspect.isfunction(v) and n[0] != "_"]
    assert "list_messages" in methods and "list" not in methods
    for name in methods:
        declared = str(inspect.signature(getattr(AdminClient, name)))
        assert str(inspect.signature(getattr(Admin, name))) == declared, name
        assert str(inspect.signature(getattr(ControlClient, name))) == declared, name
        assert name in BY_METHOD or name in ("list_all", "message_ids"), name


def socket_path(run: RunningEngine) -> Path:
    return run.engine.config.server.state_dir / SOCKET_NAME


@pytest.fixture
async def connect() -> AsyncIterator[Any]:
    """`client = await connect(run)`: a ControlClient on the engine's socket, closed after."""
    clients: list[ControlClient] = []

    async def open_client(run: RunningEngine) -> ControlClient:
        client = await ControlClient.connect(socket_path(run))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


async def deferring_engine(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, **delivery: Any
) -> tuple[RunningEngine, Any]:
    """An engine routing everything to a sink that takes all mail but BUSY's (451)."""
    sink = await smtp_sink(rcpt_replies={BUSY: "451 4.2.1 mailbox busy, try later"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),), **delivery))
    return run, sink


async def raw_exchange(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    """Send raw request lines on one connection; the response to each, in order."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        answers = []
        for line in lines:
            writer.write(line)
            await writer.drain()
            answers.append(json.loads(await asyncio.wait_for(reader.readline(), 10)))
        return answers
    finally:
        writer.close()


# ---------------------------------------------------------------------- the socket file


async def test_socket_is_private_while_the_engine_runs_and_gone_after_it_stops(
    start_engine: EngineFactory, connect: Any
) -> None:
    run = await start_engine()
    path = socket_path(run)
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    client = await connect(run)
    assert await client.count() == 0

    await run.engine.stop(grace=1)
    assert not path.exists()
    with pytest.raises(ControlError):
        await client.count()


async def test_a_stale_socket_from_a_crashed_engine_is_replaced(
    start_engine: EngineFactory, connect: Any, tmp_path: Path
) -> None:
    state_dir = tmp_path / "crashed"
    state_dir.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(state_dir / SOCKET_NAME))
    stale.close()  # the file stays, nobody listens: what SIGKILL leaves behind
    run = await start_engine(make_config(state_dir))
    client = await connect(run)
    assert await client.count() == 0


async def test_a_state_dir_too_deep_for_a_socket_address_still_works(
    start_engine: EngineFactory, connect: Any, tmp_path: Path
) -> None:
    state_dir = tmp_path / ("deep" * 30)
    assert len(os.fsencode(state_dir / SOCKET_NAME)) > 108
    run = await start_engine(make_config(state_dir))
    client = await connect(run)
    assert await client.count() == 0
    assert stat.S_IMODE(socket_path(run).stat().st_mode) == 0o600


# ---------------------------------------------------------------------- questions


async def test_list_count_and_show_answer_what_the_spool_holds(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    run, _ = await deferring_engine(start_engine, smtp_sink, tmp_path)
    first = await send(run, SENDER, [BUSY])
    second = await send(run, SENDER, [BUSY, "ok@example.org"])
    await wait_state(run, first, {"deferred"})
    await wait_state(run, second, {"deferred"})
    client = await connect(run)

    page = await client.list_messages(limit=1)
    assert [r.queue_id for r in page.rows] == [first]
    assert page.next_after is not None
    rest = await client.list_messages(after=page.next_after, limit=1)
    assert [r.queue_id for r in rest.rows] == [second]
    assert [r.queue_id for r in await client.list_all()] == [first, second]
    assert await client.count() == 2
    assert await client.count(MessageFilter(states=("delivered",))) == 0
    assert (await client.count_by_state())["deferred"] == 2

    shown = await client.show(second.lower())
    assert shown == await run.engine.admin.show(second)
    assert shown is not None
    assert {r.address: r.state for r in shown.recipients} == {
        BUSY: "deferred",
        "ok@example.org": "delivered",
    }
    (attempt,) = shown.attempts
    assert ("S", "451 4.2.1 mailbox busy, try later") in [
        (line.direction, line.text) for line in attempt.transcript
    ]
    assert await client.show("NOSUCHMESSAGE") is None
    recipients = await client.recipients_of([r.id for r in page.rows])
    assert [r.address for r in recipients[page.rows[0].id]] == [BUSY]


# ---------------------------------------------------------------------- actions


async def test_ids_are_paged_after_the_last_id_so_a_deletion_shifts_nothing(
    start_engine: EngineFactory, connect: Any
) -> None:
    """`ids` pages by key (after the last one sent), not by offset: a message deleted
    between two pages makes the next page neither skip nor repeat one."""
    run = await start_engine()
    client = await connect(run)
    queue_ids = [await send(run, SENDER, [f"r{n}@example.org"]) for n in range(5)]
    everything = await client.message_ids()
    assert len(everything) == 5
    first = await client.request("ids", limit=2)
    assert first["ids"] == everything[:2]
    await client.delete(MessageFilter(queue_ids=(queue_ids[0],)))
    second = await client.request("ids", limit=2, after=first["next_after"])
    third = await client.request("ids", limit=2, after=second["next_after"])
    assert second["ids"] + third["ids"] == everything[2:]
    assert third["next_after"] is None
    assert await client.message_ids() == everything[1:]


async def test_hold_release_retry_and_delete_act_on_the_running_engine(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    """Each action changes the running engine's spool; hold, release and delete are also
    published, so that every screen on the message (the UI's, another admin's) re-reads it."""
    run, _ = await deferring_engine(start_engine, smtp_sink, tmp_path)
    queue_id = await send(run, SENDER, [BUSY])
    await wait_state(run, queue_id, {"deferred"})
    client = await connect(run)
    only = MessageFilter(queue_ids=(queue_id,))
    stream = client.events(["MessageHeld", "MessageReleased", "MessageDeleted"])
    first = asyncio.ensure_future(anext(stream))
    await wait_subscribed(run)

    assert await client.hold(only) == [queue_id]
    await wait_state(run, queue_id, {"held"})
    assert await client.hold(only) == []  # nothing left to hold

    # Released, it is due at once and the engine tries it again (the sink defers it again).
    assert await client.release(only) == [queue_id]
    detail = await wait_state(run, queue_id, {"deferred"})
    deadline = time.monotonic() + 15
    while len(detail.attempts) < 2:
        assert time.monotonic() < deadline, "release did not lead to a second attempt"
        await asyncio.sleep(0.05)
        detail = await wait_state(run, queue_id, {"deferred"})
    assert detail.recipients[0].next_attempt_at > time.time() + 200  # the normal backoff

    assert await client.retry(only) == [queue_id]
    while len(detail.attempts) < 3:
        assert time.monotonic() < deadline, "retry did not lead to an attempt"
        await asyncio.sleep(0.05)
        detail = await wait_state(run, queue_id, {"deferred"})

    assert await client.delete(MessageFilter(states=(), queue_ids=(queue_id,))) == [queue_id]
    assert await client.show(queue_id) is None
    held = await asyncio.wait_for(first, 10)
    released, deleted = [await asyncio.wait_for(anext(stream), 10) for _ in range(2)]
    assert held == MessageHeld(queue_id, (), ADMIN_HOLD, at=held.at)
    assert released == MessageReleased(queue_id, at=released.at)
    assert deleted == MessageDeleted(queue_id, at=deleted.at)
    await stream.aclose()
    assert await run.engine.admin.count(MessageFilter(states=())) == 0


async def test_actions_select_by_domain_and_state(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    run, _ = await deferring_engine(start_engine, smtp_sink, tmp_path)
    org = await send(run, SENDER, [BUSY])
    net = await send(run, SENDER, ["x@example.net"])
    await wait_state(run, org, {"deferred"})
    await wait_state(run, net, {"delivered"})
    client = await connect(run)

    # Finished mail is left alone unless a state says otherwise.
    assert await client.delete(MessageFilter(domain="example.net")) == []
    assert await client.hold(MessageFilter(domain="EXAMPLE.ORG")) == [org]
    assert await client.delete(MessageFilter(states=("delivered",))) == [net]
    assert [r.queue_id for r in await client.list_all(MessageFilter(states=()))] == [org]


async def test_actions_on_a_domain_or_an_address_touch_only_those_recipients(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    """ "Hold everything deferred to example.net" must not hold the example.org copy."""
    slow = "slow@example.net"
    sink = await smtp_sink(rcpt_replies={BUSY: "451 4.3.0 busy", slow: "451 4.3.0 busy"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, SENDER, [BUSY, slow, "other@example.net"])
    await wait_state(run, queue_id, {"deferred"})
    client = await connect(run)

    def states(detail: Any) -> dict[str, str]:
        return {r.address: r.state for r in detail.recipients}

    assert await client.hold(MessageFilter(domain="example.net")) == [queue_id]
    detail = await wait_state(run, queue_id, {"held"})
    assert states(detail) == {BUSY: "deferred", slow: "held", "other@example.net": "delivered"}

    one = MessageFilter(queue_ids=(queue_id,), recipients=(BUSY.upper(),))
    assert await client.bounce(one, "gave up") == [queue_id]
    detail = await wait_state(run, queue_id, {"held"})
    assert states(detail) == {BUSY: "bounced", slow: "held", "other@example.net": "delivered"}
    with pytest.raises(ControlError, match="whole messages"):
        await client.delete(one)


async def test_bounce_now_fails_the_recipients_and_sends_the_sender_a_dsn(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    run, sink = await deferring_engine(start_engine, smtp_sink, tmp_path)
    queue_id = await send(run, SENDER, [BUSY, "ok@example.org"])
    await wait_state(run, queue_id, {"deferred"})
    await sink.wait_for(1)  # ok@example.org's copy
    client = await connect(run)

    assert await client.bounce(MessageFilter(queue_ids=(queue_id,)), "spam run") == [queue_id]
    detail = await wait_state(run, queue_id, {"bounced"})
    states = {r.address: (r.state, r.last_reply or "") for r in detail.recipients}
    assert states["ok@example.org"][0] == "delivered"  # a delivered recipient stays so
    state, reply = states[BUSY]
    assert state == "bounced"
    assert reply == Reply.bounced_by_admin("spam run")
    assert detail.recipients[0].attempts == 1  # bouncing is not an attempt

    everything = await client.list_all(MessageFilter(states=()))
    (dsn_row,) = [r for r in everything if r.queue_id != queue_id]
    assert dsn_row.sender == "" and dsn_row.first_rcpt == SENDER
    dsn = await client.show(dsn_row.queue_id)
    assert dsn is not None and dsn.is_bounce
    # The engine sends it on at once, like any DSN.
    messages = await sink.wait_for(2)
    (report,) = [m for m in messages if m.sender == ""]
    assert report.recipients == [SENDER]
    assert b"Action: failed" in report.data
    assert b"Status: 5.0.0" in report.data
    assert f"Final-Recipient: rfc822; {BUSY}".encode() in report.data
    assert b"spam" in report.data


async def test_bounce_now_of_a_null_sender_message_sends_no_dsn(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    run, _ = await deferring_engine(start_engine, smtp_sink, tmp_path)
    queue_id = await send(run, "", [BUSY])
    await wait_state(run, queue_id, {"deferred"})
    client = await connect(run)
    assert await client.bounce(MessageFilter(queue_ids=(queue_id,))) == [queue_id]
    await wait_state(run, queue_id, {"bounced"})
    rows = await client.list_all(MessageFilter(states=()))
    assert [r.queue_id for r in rows] == [queue_id]


async def test_bounce_now_takes_held_mail_too(
    start_engine: EngineFactory, connect: Any, tmp_path: Path
) -> None:
    run = await start_engine()  # the hold route of make_config: nothing is sent anywhere
    queue_id = await send(run, SENDER, ["x@example.org"])
    await wait_state(run, queue_id, {"held"})
    client = await connect(run)
    assert await client.bounce(MessageFilter(states=("held",))) == [queue_id]
    await wait_state(run, queue_id, {"bounced"})
    dsn = [r for r in await client.list_all(MessageFilter(states=())) if r.sender == ""]
    assert [r.first_rcpt for r in dsn] == [SENDER]


async def test_suspend_defers_a_destination_until_resumed(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    run, sink = await deferring_engine(start_engine, smtp_sink, tmp_path)
    client = await connect(run)
    key, until = await client.suspend("example.org", 3600, "maintenance")
    assert key == f"smarthost:127.0.0.1:{sink.port}"  # where example.org's mail goes
    assert time.time() + 3500 < until <= time.time() + 3600
    assert run.engine.scheduler is not None
    assert run.engine.scheduler.suspended[key] == (until, "maintenance")
    assert (await client.suspended())[key] == (until, "maintenance")

    queue_id = await send(run, SENDER, ["ok@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert "suspended by the admin: maintenance" in (detail.recipients[0].last_reply or "")
    assert sink.messages == []

    assert await client.resume("example.org") is True
    await wait_state(run, queue_id, {"delivered"})
    assert await client.suspended() == {}
    assert await client.resume(key) is False

    # With no time given, until resumed; the scheduler reads it from the spool on a restart.
    key, until = await client.suspend(key)
    assert until == UNTIL_RESUMED
    assert await run.engine.spool.suspended() == {key: (UNTIL_RESUMED, "no reason given")}  # type: ignore[union-attr]


async def test_recent_attempts_and_destinations_over_the_socket(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    """The destination screen's reads, through the socket as an attached UI makes them: the
    newest attempts to a destination with their transcripts, newest first; the destination's
    figures with its queue IDs."""
    run, sink = await deferring_engine(start_engine, smtp_sink, tmp_path)
    client = await connect(run)
    first = await send(run, SENDER, [BUSY])
    await wait_state(run, first, {"deferred"})
    second = await send(run, SENDER, [BUSY])
    await wait_state(run, second, {"deferred"})
    key = f"smarthost:127.0.0.1:{sink.port}"

    found = await client.recent_attempts(key, 5)
    assert [queue_id for queue_id, _ in found] == [second, first]
    attempt = found[0][1]
    assert (attempt.destination, attempt.outcome, attempt.recipients) == (key, "deferred", (BUSY,))
    assert any(line.text == f"RCPT TO:<{BUSY}>" for line in attempt.transcript)
    assert found == await run.engine.admin.recent_attempts(key, 5)
    assert [q for q, _ in await client.recent_attempts(key, 1)] == [second]
    assert await client.recent_attempts("mx:nowhere.example") == []

    [entry] = await client.destinations()
    assert entry["queue_ids"] == [first, second]
    assert (entry["connection_limit"], entry["tls"]) == (10, "none")


async def test_resume_retries_suspended_recipients_whatever_the_messages_last_reply(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    """One recipient held back by a suspension, another of the same message deferred by its
    own hop afterwards: resuming must still free the first (the message's last reply is the
    other one's)."""
    ok_sink = await smtp_sink()
    busy_sink = await smtp_sink(rcpt_replies={"b@other.example": "451 4.2.1 busy"})
    routes = (to_sink(ok_sink, ("example.org",)), to_sink(busy_sink, ("other.example",)))
    run = await start_engine(relay_config(tmp_path, routes))
    client = await connect(run)
    await client.suspend("example.org")  # until resumed
    queue_id = await send(run, SENDER, ["a@example.org", "b@other.example"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert "suspended" in (detail.recipients[0].last_reply or "")
    assert await client.resume("example.org") is True
    await ok_sink.wait_for(1)
    deadline = time.monotonic() + 10
    while True:
        detail = await wait_state(run, queue_id, {"deferred"})
        if detail.recipients[0].state == "delivered":
            break
        assert time.monotonic() < deadline, detail.recipients
        await asyncio.sleep(0.05)


async def test_what_cannot_be_suspended_is_refused_with_a_reason(
    start_engine: EngineFactory, connect: Any
) -> None:
    run = await start_engine()  # everything is held: there is no destination to suspend
    client = await connect(run)
    with pytest.raises(ControlError, match="transport hold"):
        await client.suspend("example.org")
    with pytest.raises(ControlError, match="positive"):
        await client.suspend("mx:example.org", -5)


async def test_only_destinations_routing_can_produce_may_be_suspended(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path, connect: Any
) -> None:
    """One host of a two-host smart host route is no destination (its key names both), nor
    is an mx: domain no mx route takes: suspending them would hold back nothing. The error
    names what works. A suspension made under an older config can still be lifted."""
    first, second = await smtp_sink(), await smtp_sink()
    both = RouteConfig(
        domains=("example.org",),
        transport="smarthost",
        hosts=(HostPort("127.0.0.1", first.port), HostPort("127.0.0.1", second.port)),
        tls="none",
    )
    mx = RouteConfig(domains=("*.example.net",), transport="mx")
    run = await start_engine(relay_config(tmp_path, (both, mx)))
    client = await connect(run)
    key = f"smarthost:127.0.0.1:{first.port},127.0.0.1:{second.port}"
    with pytest.raises(ControlError, match="not a destination") as refused:
        await client.suspend(f"smarthost:127.0.0.1:{first.port}")
    assert key in str(refused.value) and "mx:DOMAIN" in str(refused.value)
    with pytest.raises(ControlError, match="not a destination"):
        await client.suspend("mx:example.org")  # a smart host takes example.org
    assert (await client.suspend(key))[0] == key
    assert (await client.suspend("mx:Shop.Example.NET."))[0] == "mx:shop.example.net"
    assert (await client.suspend("example.org"))[0] == key
    assert run.engine.spool is not None
    await run.engine.spool.suspend("smarthost:old.example:25", UNTIL_RESUMED, "old config")
    assert await client.resume("smarthost:old.example:25") is True


async def rcpt_reply(run: RunningEngine, recipient: str) -> int:
    smtp = await SMTPClient.connect(*run.address())
    try:
        await smtp.greet()
        assert said(*await smtp.cmd("MAIL FROM:<a@example.com>")) == Reply.MAIL_OK
        return (await smtp.cmd(f"RCPT TO:<{recipient}>"))[0]
    finally:
        await smtp.close()


async def test_suppression_list_over_the_socket(start_engine: EngineFactory, connect: Any) -> None:
    run = await start_engine()
    client = await connect(run)
    assert await client.suppress_add("Gone@Example.org", "left the company", 1) == (
        "gone@example.org"
    )
    (entry,) = await client.suppress_list()
    assert entry.address == "gone@example.org" and entry.reason == "left the company"
    assert entry.expires_at is not None
    assert await run.engine.admin.suppress_list() == [entry]
    # RCPT sees the change at once, not at the next refresh of the engine's copy.
    assert await rcpt_reply(run, "gone@example.org") == 550
    with pytest.raises(ControlError, match="not a valid address"):
        await client.suppress_add("no address")
    assert await client.suppress_remove("gone@example.org") is True
    assert await rcpt_reply(run, "gone@example.org") == 250
    assert await client.suppress_remove("gone@example.org") is False
    assert await client.suppress_list() == []


async def test_suppression_days_must_be_a_sane_number(
    start_engine: EngineFactory, connect: Any
) -> None:
    """Days that are negative, zero, absurd or not a number are refused with a reason,
    never stored to break a listing later; valid ones count from the engine's clock."""
    run = await start_engine()
    client = await connect(run)
    for days in (-1, 0, 1e300, 3651):
        with pytest.raises(ControlError, match="days must be a number above 0"):
            await client.suppress_add("x@example.org", "left", days)
    # JSON has no NaN, but Python's parser takes it: the op must still refuse it.
    (answer,) = await raw_exchange(
        socket_path(run),
        [b'{"id": 1, "op": "suppress_add", "args": {"address": "x@example.org", "days": NaN}}\n'],
    )
    assert answer["ok"] is False and "days must be" in answer["error"]
    assert await client.suppress_list() == []
    await client.suppress_add("x@example.org", "left", 2)
    (entry,) = await client.suppress_list()
    assert entry.expires_at == pytest.approx(run.engine.clock() + 2 * 86400, abs=60)


# ---------------------------------------------------------------------- bad requests, many clients


async def test_bad_requests_get_errors_and_the_connection_stays_usable(
    start_engine: EngineFactory,
) -> None:
    run = await start_engine()
    answers = await raw_exchange(
        socket_path(run),
        [
            b"this is not json\n",
            b"[1, 2]\n",
            b'{"id": 2, "op": "frobnicate"}\n',
            b'{"id": 3, "op": "show", "args": {"queue_id": 7}}\n',
            b'{"id": 4, "op": "retry", "args": {}}\n',
            b'{"id": 5, "op": "list", "args": {"filter": {"states": ["lost"]}}}\n',
            b'{"id": 6, "op": "list", "args": {"sort": "colour"}}\n',
            b'{"id": 7, "op": "count", "args": {"colour": "blue"}}\n',
            b'{"id": 8, "op": "count", "args": []}\n',
            b'{"id": 9, "op": "count"}\n',
        ],
    )
    assert [a["ok"] for a in answers] == [False] * 9 + [True]
    assert [a["id"] for a in answers] == [None, None, 2, 3, 4, 5, 6, 7, 8, 9]
    errors = [a.get("error", "") for a in answers]
    assert "JSON" in errors[0]
    assert "unknown op 'frobnicate'" in errors[2]
    assert "queue_id" in errors[3] and "string" in errors[3]
    assert "filter" in errors[4]
    assert "'lost'" in errors[5]
    assert "colour" in errors[6]
    assert "colour" in errors[7]
    assert answers[-1]["result"] == 0


async def test_a_request_line_over_the_limit_ends_only_its_connection(
    start_engine: EngineFactory, connect: Any
) -> None:
    run = await start_engine()
    reader, writer = await asyncio.open_unix_connection(str(socket_path(run)))
    writer.write(b'{"id": 1, "op": "count", "args": {"x": "' + b"x" * (2 << 20) + b'"}}\n')
    answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
    assert answer["ok"] is False and "longer" in answer["error"]
    try:  # closed: unread bytes left on the server's side make it a reset
        assert await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        pass
    writer.close()
    assert await (await connect(run)).count() == 0


async def test_deeply_nested_json_gets_an_error_and_the_connection_stays_usable(
    start_engine: EngineFactory,
) -> None:
    run = await start_engine()
    deep = b'{"id": 1, "op": "count", "args": {"filter": ' + b"[" * 200_000 + b"]" * 200_000
    answers = await raw_exchange(socket_path(run), [deep + b"}}\n", b'{"id": 2, "op": "count"}\n'])
    assert answers[0]["ok"] is False and "nested too deeply" in answers[0]["error"]
    assert answers[1] == {"id": 2, "ok": True, "result": 0}


async def test_id_lists_in_a_request_are_capped(start_engine: EngineFactory, connect: Any) -> None:
    run = await start_engine()
    client = await connect(run)
    with pytest.raises(ControlError, match="at most 5000 message row ids"):
        await client.request("recipients", ids=list(range(5001)))
    with pytest.raises(ControlError, match="at most 10000 queue IDs"):
        await client.count(MessageFilter(queue_ids=tuple(f"Q{i}" for i in range(10_001))))
    found = await client.recipients_of(list(range(6000)))  # the client sends in chunks
    assert found == {i: [] for i in range(6000)}


async def test_connections_beyond_the_limit_are_told_why_and_closed(
    start_engine: EngineFactory,
) -> None:
    run = await start_engine()
    path = socket_path(run)
    held = []
    try:
        for n in range(MAX_CLIENTS):
            reader, writer = await asyncio.open_unix_connection(str(path))
            held.append(writer)
            writer.write(b'{"id": %d, "op": "count"}\n' % n)  # served: it counts
            assert json.loads(await asyncio.wait_for(reader.readline(), 10))["ok"] is True
        reader, writer = await asyncio.open_unix_connection(str(path))
        held.append(writer)
        refused = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert refused["ok"] is False and f"at most {MAX_CLIENTS}" in refused["error"]
        assert await asyncio.wait_for(reader.read(), 10) == b""
        with pytest.raises(ControlError, match=f"at most {MAX_CLIENTS}"):
            client = await ControlClient.connect(path)
            try:
                await client.count()
            finally:
                await client.close()
        held.pop(0).close()  # one leaves: a newcomer is served again
        deadline = time.monotonic() + 10
        while True:
            client = await ControlClient.connect(path)
            try:
                assert await client.count() == 0
                break
            except ControlError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            finally:
                await client.close()
    finally:
        for writer in held:
            writer.close()


async def test_many_clients_are_served_at_once(
    start_engine: EngineFactory, connect: Any, smtp: Any
) -> None:
    run = await start_engine()
    await send(run, SENDER, ["x@example.org"])
    clients = [await connect(run) for _ in range(10)]
    counts = await asyncio.gather(
        *(c.count(MessageFilter(states=())) for c in clients for _ in range(5))
    )
    assert counts == [1] * 50
    # ...while SMTP is served by the same loop.
    client = await smtp(run)
    assert (await client.cmd("NOOP"))[0] == 250


# ---------------------------------------------------------------------- events


async def wait_subscribed(run: RunningEngine) -> None:
    deadline = time.monotonic() + 10
    while not run.engine.bus.has_subscribers:
        assert time.monotonic() < deadline, "the subscription never reached the bus"
        await asyncio.sleep(0.01)


async def test_subscribers_receive_message_accepted_when_mail_arrives(
    start_engine: EngineFactory, connect: Any
) -> None:
    run = await start_engine()
    client = await connect(run)
    stream = client.events(["MessageAccepted"])
    first = asyncio.ensure_future(anext(stream))
    await wait_subscribed(run)
    queue_id = await send(run, SENDER, ["x@example.org", "y@example.org"])
    event = await asyncio.wait_for(first, 10)
    assert isinstance(event, MessageAccepted)
    assert event.queue_id == queue_id
    assert event.sender == SENDER
    assert event.recipients == ("x@example.org", "y@example.org")
    assert event.size > 0
    await stream.aclose()
    deadline = time.monotonic() + 10
    while run.engine.bus.has_subscribers:  # the server let go of the subscription
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_subscriber_that_falls_behind_is_told_how_many_events_it_lost(
    start_engine: EngineFactory, connect: Any
) -> None:
    run = await start_engine()
    client = await connect(run)
    stream = client.events(maxsize=2)
    first = asyncio.ensure_future(anext(stream))
    await wait_subscribed(run)
    for n in range(10):  # in one go: the server's queue of 2 overflows
        run.engine.bus.publish(DestinationSuspended(f"mx:d{n}.example", 0.0, at=run.engine.clock()))
    got = [await asyncio.wait_for(first, 10)]
    got += [await asyncio.wait_for(anext(stream), 10) for _ in range(2)]
    assert got[0] == EventsDropped(8)
    assert [e.destination for e in got[1:]] == ["mx:d8.example", "mx:d9.example"]  # type: ignore[union-attr]
    await stream.aclose()


async def test_suspend_and_resume_are_published(
    start_engine: EngineFactory, connect: Any, tmp_path: Path
) -> None:
    # An mx route to suspend; no mail is sent, so its DNS (the dead NO_DNS) is never asked.
    mx = RouteConfig(domains=("*",), transport="mx")
    run = await start_engine(dataclasses.replace(make_config(tmp_path / "state"), routes=(mx,)))
    client = await connect(run)
    stream = client.events(["DestinationSuspended"])
    first = asyncio.ensure_future(anext(stream))
    await wait_subscribed(run)
    key, until = await client.suspend("mx:example.org", 60)
    resumed = await client.resume("mx:example.org")
    suspended = await asyncio.wait_for(first, 10)
    lifted = await asyncio.wait_for(anext(stream), 10)
    assert resumed
    assert suspended == DestinationSuspended(key, until, at=suspended.at)
    assert lifted == DestinationSuspended(key, 0.0, at=lifted.at)
    await stream.aclose()
