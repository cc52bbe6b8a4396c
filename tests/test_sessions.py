"""The live view of connections, engine side: the `sessions` snapshot of inbound SMTP sessions
and delivery's outbound connections, and one of them followed line by line, in process and
over the admin socket; the subscription goes when the watcher stops."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from relaybox.admin.client import ControlClient, ControlError
from relaybox.config.model import LimitsConfig, UserConfig
from relaybox.config.passwords import hash_password
from relaybox.events import AttemptLine
from relaybox.message.transcript import TranscriptLine
from relaybox.statedir import SOCKET_NAME

from .smtpsink import SinkFactory
from .support.configs import make_config, relay_config, relay_listener, to_sink
from .support.engine import RunningEngine, admin_of, wait_attempts
from .support.sessions import ESCAPED_EHLO, LONG_MAIL, line_subscribers
from .support.smtp import SMTPClient, send
from .support.tui import until

PASSWORD = "correct horse battery staple"
HOSTNAME = "relay.example.test"


async def inbound_of(run: RunningEngine) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await admin_of(run).sessions())["inbound"]
    return found


async def take(stream: AsyncGenerator[TranscriptLine, None], n: int) -> list[TranscriptLine]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(n)]


async def lines_until(
    stream: AsyncGenerator[TranscriptLine, None], last: Callable[[str], bool] | str
) -> list[TranscriptLine]:
    """Lines of `stream` up to the first whose text contains `last` (or passes it), bounded."""
    got: list[TranscriptLine] = []
    ends = last if callable(last) else lambda text: last in text
    while not got or not ends(got[-1].text):
        got.append(await asyncio.wait_for(anext(stream), 5))
    return got


async def held_at_data(
    start_engine: Any, smtp_sink: SinkFactory, tmp_path: Path, cache_idle: float
) -> tuple[RunningEngine, Any, asyncio.Event, str]:
    """An engine relaying to a sink, and a message whose DATA the sink holds its reply to
    until the returned event is set: delivery's connection is open and busy."""
    sink = await smtp_sink()
    stall = asyncio.Event()
    sink.behaviour.stall = stall
    config = relay_config(tmp_path, (to_sink(sink),), connection_cache_idle=cache_idle)
    run = await start_engine(config)
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await until(sink.in_data.is_set)
    return run, sink, stall, queue_id


# ---------------------------------------------------------------------- the snapshot


async def test_an_open_session_is_in_the_snapshot_with_its_peer_command_and_bytes(
    start_engine: Any,
) -> None:
    """A session held open: its client port, listener, EHLO name, last command (a stranger's
    control characters kept as sent: readers escape them) and the exact bytes it sent."""
    run = await start_engine(limits=LimitsConfig(max_command_length=4096))
    client = await SMTPClient.connect(*run.address())
    await client.greet("client.example.test")
    await client.cmd(ESCAPED_EHLO)  # refused: the EHLO name stays the first one
    await client.cmd(LONG_MAIL)  # refused too, but it is the last command
    port = client.writer.get_extra_info("sockname")[1]
    [found] = await inbound_of(run)
    assert found["client_ip"] == "127.0.0.1" and found["client_port"] == port
    assert found["listener"] == run.engine.config.listeners[0].name
    assert found["helo"] == "client.example.test"
    assert found["tls"] is None and found["auth_user"] is None and found["messages"] == 0
    sent = len("EHLO client.example.test\r\n") + len(ESCAPED_EHLO) + len(LONG_MAIL) + 4
    assert found["bytes_received"] == sent
    assert found["command"].startswith("MAIL FROM:<xxx")
    assert found["command"].endswith(f"... ({len(LONG_MAIL)} characters)")
    assert len(found["command"]) < 300
    await client.cmd("RSET")
    await client.send("NOOP \x1b[31mred\r\n")
    await client.reply()
    [found] = await inbound_of(run)
    assert found["command"] == "NOOP \x1b[31mred"
    await client.cmd("QUIT")
    await client.close()
    await until(lambda: not run.engine.sessions())
    assert await inbound_of(run) == []


async def test_the_snapshot_says_tls_and_the_user_logged_in(
    start_engine: Any, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued = ca.issue_cert(HOSTNAME, "127.0.0.1")
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    listener = relay_listener(
        tls="starttls", role="submission", certificate=cert, private_key=key, allowed_networks=()
    )
    alice = UserConfig("alice", hash_password(PASSWORD, log2_n=10), ("example.org",))
    config = dataclasses.replace(
        make_config(tmp_path / "state", listeners=(listener,)), users=(alice,)
    )
    run = await start_engine(config)
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    assert (await client.cmd("STARTTLS"))[0] == 220
    context = ssl.create_default_context()
    ca.configure_trust(context)
    await client.writer.start_tls(context, server_hostname=HOSTNAME)
    await client.cmd("EHLO again.example.test")
    login = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    assert (await client.cmd(f"AUTH PLAIN {login}"))[0] == 235
    [found] = await inbound_of(run)
    assert found["tls"].startswith("TLSv1.")
    assert found["auth_user"] == "alice"
    assert found["command"] == "AUTH PLAIN <secret>"
    await client.close()


async def test_outbound_connections_show_destination_host_tls_and_messages_sent(
    start_engine: Any, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """A connection carrying a message (the next hop holds its reply to DATA), then idle in
    the cache with one message sent on it, then gone when the cache lets it go."""
    run, sink, stall, queue_id = await held_at_data(start_engine, smtp_sink, tmp_path, 0.5)
    [busy] = (await admin_of(run).sessions())["outbound"]
    assert busy["state"] == "sending" and busy["queue_id"] == queue_id
    assert busy["destination"] == f"smarthost:127.0.0.1:{sink.port}"
    assert (busy["host"], busy["ip"], busy["port"]) == ("127.0.0.1", "127.0.0.1", sink.port)
    assert busy["tls"] is None and busy["messages"] == 0
    assert busy["connection_id"].startswith("O")
    stall.set()
    await sink.wait_for(1)

    async def idle() -> dict[str, Any] | None:
        found = (await admin_of(run).sessions())["outbound"]
        return found[0] if found and found[0]["state"] == "idle" else None

    deadline = time.monotonic() + 5
    while (entry := await idle()) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert entry["messages"] == 1 and entry["queue_id"] == ""
    assert entry["connection_id"] == busy["connection_id"]
    deadline = time.monotonic() + 10
    while (await admin_of(run).sessions())["outbound"]:
        assert time.monotonic() < deadline, "the idle connection was never let go"
        await asyncio.sleep(0.1)


async def test_a_failed_connection_leaves_no_record(
    start_engine: Any, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """A next hop that hangs up at DATA: the connection is closed mid-transaction and is not
    reported as open afterwards."""
    sink = await smtp_sink(drop_at_data=True)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    await wait_attempts(run, queue_id, 1)
    assert (await admin_of(run).sessions())["outbound"] == []
    assert len(run.engine.courier.connections) == 0  # type: ignore[union-attr]


async def test_a_hop_that_cannot_be_reached_leaves_no_record(
    start_engine: Any, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """Connection refused: the record made while connecting goes with the failure (it never
    had a socket to notice closing)."""
    sink = await smtp_sink()
    route = to_sink(sink)
    await sink.stop()
    run = await start_engine(relay_config(tmp_path, (route,)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_attempts(run, queue_id, 1)
    assert "Cannot connect" in (detail.attempts[0].reply or "")
    assert len(run.engine.courier.connections) == 0  # type: ignore[union-attr]


async def test_no_engine_means_no_sessions(tmp_path: Path) -> None:
    from relaybox.admin.service import Admin
    from relaybox.queue import Spool

    spool = await Spool.open(tmp_path / "spool.db", identity=tmp_path / "identity")
    try:
        admin = Admin(spool)
        assert (await admin.sessions())["inbound"] == []
        with pytest.raises(ValueError, match="no relaybox engine"):
            admin.session_transcript("S1")
    finally:
        await spool.close()


# ---------------------------------------------------------------------- following one


async def open_stream(
    run: RunningEngine, session_id: str, attached: bool
) -> AsyncGenerator[TranscriptLine, None]:
    if not attached:
        return admin_of(run).session_transcript(session_id)
    client = await ControlClient.connect(run.engine.config.server.state_dir / SOCKET_NAME)
    try:
        return await client.session_transcript(session_id)
    finally:
        await client.close()  # the stream has a connection of its own


@pytest.mark.parametrize("attached", [False, True], ids=["in-process", "attached"])
async def test_a_session_is_followed_live_and_the_watch_ends_with_it(
    start_engine: Any, attached: bool
) -> None:
    """The lines so far, then each command and reply as it happens; the session's end ends
    the stream, and the engine keeps no subscriber."""
    run = await start_engine()
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    [session] = run.engine.sessions()
    assert not line_subscribers(run.engine.bus)
    stream = await open_stream(run, session.session_id, attached)
    so_far = await lines_until(stream, lambda text: text.startswith("250 "))
    said = [(line.direction, line.text) for line in so_far]
    assert said[0][1].startswith("connect from [127.0.0.1]:")
    assert said[1:3] == [
        ("S", "220 relay.example.test ESMTP relaybox"),
        ("C", "EHLO client.example.test"),
    ]
    await until(lambda: line_subscribers(run.engine.bus))
    await client.send("NOOP live\r\n")
    await client.reply()
    live = await take(stream, 2)
    assert [(line.direction, line.text) for line in live] == [("C", "NOOP live"), ("S", "250 OK")]
    await client.cmd("QUIT")
    rest = [line async for line in stream]
    assert rest[-1].text == "session closed"
    assert any(line.text == "disconnect" for line in rest)
    await until(lambda: not line_subscribers(run.engine.bus))
    await client.close()


@pytest.mark.parametrize("attached", [False, True], ids=["in-process", "attached"])
async def test_closing_the_watch_drops_the_subscription(start_engine: Any, attached: bool) -> None:
    """The watcher stops while the session goes on: the engine holds no subscriber after,
    and the session's lines are built for no one."""
    run = await start_engine()
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    [session] = run.engine.sessions()
    stream = await open_stream(run, session.session_id, attached)
    await take(stream, 1)
    await until(lambda: line_subscribers(run.engine.bus))
    await stream.aclose()
    await until(lambda: not line_subscribers(run.engine.bus))
    assert not run.engine.bus.has_subscribers or not line_subscribers(run.engine.bus)
    await client.cmd("NOOP")  # the session goes on
    await client.close()


@pytest.mark.parametrize("attached", [False, True], ids=["in-process", "attached"])
async def test_a_session_that_is_not_open_cannot_be_followed(
    start_engine: Any, attached: bool
) -> None:
    run = await start_engine()
    error = ControlError if attached else ValueError
    with pytest.raises(error, match="no session or connection 'S0000' is open"):
        await open_stream(run, "S0000", attached)
    assert not run.engine.bus.has_subscribers or not line_subscribers(run.engine.bus)


@pytest.mark.parametrize("attached", [False, True], ids=["in-process", "attached"])
async def test_an_outbound_connection_is_followed_live(
    start_engine: Any, smtp_sink: SinkFactory, tmp_path: Path, attached: bool
) -> None:
    """Delivery's connection, held at DATA: its lines so far, then the reply to DATA and the
    next message's commands on the same connection, as they happen."""
    run, sink, stall, first = await held_at_data(start_engine, smtp_sink, tmp_path, 5.0)
    [connection] = run.engine.outbound_connections()
    stream = await open_stream(run, connection.connection_id, attached)
    so_far = await lines_until(stream, "bytes of message data")
    assert so_far[0].text.startswith("connecting to 127.0.0.1")
    assert any(line.text.startswith("MAIL FROM:<a@example.com>") for line in so_far)
    stall.set()
    [done] = await take(stream, 1)
    assert done.direction == "S" and done.text.startswith("250")
    stall.clear()
    second = await send(run, "c@example.com", ["d@example.org"])
    later = await lines_until(stream, "MAIL FROM:<c@example.com>")
    assert any("reusing the connection" in line.text for line in later)
    assert connection.queue_id == second != first
    stall.set()
    await stream.aclose()
    await until(lambda: not line_subscribers(run.engine.bus))


async def test_a_long_session_is_followed_from_its_kept_lines_and_latest_ones(
    start_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session past its transcript's bounds: the watcher sees the kept lines, a note of
    how many were not kept, and the latest."""
    from relaybox.message import transcript

    monkeypatch.setattr(transcript, "MAX_LINES", 20)
    run = await start_engine()
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    for n in range(15):
        await client.cmd(f"NOOP {n}")
    [session] = run.engine.sessions()
    stream = admin_of(run).session_transcript(session.session_id)
    lines = await take(stream, 20 + 1 + 6)
    assert "lines not kept; the latest:" in lines[20].text
    assert [line.text for line in lines[-2:]] == ["NOOP 14", "250 OK"]
    await stream.aclose()
    await client.close()


async def test_a_watcher_that_falls_behind_is_told_lines_may_be_missing(
    start_engine: Any,
) -> None:
    """A session floods NOOPs while its watcher reads nothing: the watcher's queue stays
    bounded (the oldest lines go) and the stream says lines may be missing, then goes on."""
    from relaybox.admin.sessions import follow

    run = await start_engine()
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    [session] = run.engine.sessions()
    engine = run.engine
    stream = follow(
        engine.bus,
        session.session_id,
        inbound=engine.sessions,
        outbound=engine.outbound_connection,
        maxsize=10,
    )
    so_far = await lines_until(stream, lambda text: text.startswith("250 "))
    for n in range(30):
        await client.cmd(f"NOOP {n}")
    rest = await take(stream, 11)
    assert rest[0].text == "lines may be missing: the view fell behind"
    assert [line.text for line in rest[-2:]] == ["NOOP 29", "250 OK"]
    assert len(so_far) > 5
    await stream.aclose()
    assert not line_subscribers(engine.bus)
    await client.close()


def test_events_carry_the_connection() -> None:
    """(The wire keeps the new field of AttemptLine.)"""
    from relaybox.admin.codec import event_from_json, event_to_json

    event = AttemptLine("Q", "mx:x", "h", "C", "t", connection="O3", at=1.0)
    assert event_from_json(event_to_json(event)) == event
    assert dataclasses.asdict(event)["connection"] == "O3"
