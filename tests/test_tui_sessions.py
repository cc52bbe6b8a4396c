"""The Sessions pane (key 3) driven with Pilot over a real engine: sessions held open by test
clients appear and refresh without moving the cursor, Enter streams one's transcript live
(in process and attached), Escape stops the stream, a hidden pane asks for nothing, and a
stranger's control characters are drawn as escapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relaybox.admin.client import ControlClient
from relaybox.config.model import LimitsConfig
from relaybox.statedir import SOCKET_NAME
from relaybox.tui import format as fmt
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import EngineLink, InProcessLink, SocketLink
from relaybox.tui.panes import sessions as sessions_module
from relaybox.tui.screens.session import SessionScreen
from relaybox.tui.widgets.line_view import LineView
from relaybox.tui.widgets.text_line import TextLine

from .smtpsink import SinkFactory
from .support.configs import relay_config, to_sink
from .support.engine import EngineFactory, RunningEngine
from .support.sessions import ESCAPED_EHLO, LONG_MAIL, line_subscribers
from .support.smtp import SMTPClient, send
from .support.tui import until

SIZE = (120, 30)


@pytest.fixture(autouse=True)
def quick_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "REFRESH_EVERY", 0.1)


async def client_of(run: RunningEngine, helo: str = "client.example.test") -> SMTPClient:
    client = await SMTPClient.connect(*run.address())
    await client.greet(helo)
    return client


def port_of(client: SMTPClient) -> int:
    port: int = client.writer.get_extra_info("sockname")[1]
    return port


def table_text(app: RelayboxApp) -> list[str]:
    """The Sessions table's rows as text, one string a row."""
    return [text for _, _, text in app.sessions_pane.table.rows]


def title(app: RelayboxApp) -> str:
    return app.sessions_pane.query_one("#sessions-title", TextLine).text


def detail(app: RelayboxApp) -> str:
    return app.sessions_pane.detail


def cursor_key(app: RelayboxApp) -> str | None:
    return app.sessions_pane.table.key


async def open_watch(app: RelayboxApp, pilot: Any) -> SessionScreen:
    await pilot.press("enter")
    screen: SessionScreen = await until(
        lambda: app.screen if isinstance(app.screen, SessionScreen) else None, pilot
    )
    return screen


def texts(screen: SessionScreen) -> list[str]:
    return [text for _, text in screen.query_one(LineView).lines]


async def watch_then_stop(app: RelayboxApp, pilot: Any, run: RunningEngine) -> None:
    """Key 3, Enter on the only session: its lines so far, a command as it happens, then
    Escape: the screen closes and the engine holds no line subscriber any more."""
    client = await client_of(run)
    await pilot.press("3")
    await until(lambda: f":{port_of(client)}" in " ".join(table_text(app)), pilot)
    assert title(app).startswith("Sessions · 1 inbound · 0 outbound")
    screen = await open_watch(app, pilot)
    await until(lambda: any("C: EHLO client.example.test" in t for t in texts(screen)), pilot)
    assert texts(screen)[0].endswith(f"-- connect from [127.0.0.1]:{port_of(client)}")
    await until(lambda: line_subscribers(run.engine.bus), pilot)
    await client.send("NOOP watched\r\n")
    await client.reply()
    await until(lambda: any(t.endswith("C: NOOP watched") for t in texts(screen)), pilot)
    await until(lambda: texts(screen)[-1].endswith("S: 250 OK"), pilot)
    assert "live" in screen.query_one("#session-title", TextLine).text
    await pilot.press("escape")
    await until(lambda: not isinstance(app.screen, SessionScreen), pilot)
    await until(lambda: not line_subscribers(run.engine.bus), pilot)
    assert app.current_pane == "sessions"
    assert "NOOP watched" in detail(app)  # read again on the way back
    await client.cmd("QUIT")
    await client.close()
    await until(lambda: title(app).startswith("Sessions · 0 inbound"), pilot)


async def test_enter_streams_a_session_live_and_escape_stops_the_stream(
    start_engine: EngineFactory,
) -> None:
    run = await start_engine()
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        await watch_then_stop(app, pilot, run)


async def test_attached_enter_streams_a_session_live_and_escape_stops_the_stream(
    start_engine: EngineFactory,
) -> None:
    run = await start_engine()
    client = await ControlClient.connect(run.engine.config.server.state_dir / SOCKET_NAME)
    link: EngineLink = SocketLink(client, 4242)
    app = RelayboxApp(link)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await watch_then_stop(app, pilot, run)
    finally:
        await client.close()


async def test_the_stream_says_when_the_session_ends(start_engine: EngineFactory) -> None:
    run = await start_engine()
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        client = await client_of(run)
        await pilot.press("3")
        await until(lambda: app.sessions_pane.rows, pilot)
        screen = await open_watch(app, pilot)
        await until(lambda: any("EHLO" in t for t in texts(screen)), pilot)
        await client.cmd("QUIT")
        await until(lambda: texts(screen)[-1].endswith("-- session closed"), pilot)
        await until(lambda: "closed" in screen.query_one("#session-title", TextLine).text, pilot)
        assert not line_subscribers(run.engine.bus)
        await client.close()


async def test_refreshing_keeps_the_cursor_on_its_session(start_engine: EngineFactory) -> None:
    """Three sessions, the cursor on the second: the first ends and a fourth opens, and the
    cursor is still on the second; the ages tick."""
    run = await start_engine()
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        clients = [await client_of(run, f"c{n}.example.test") for n in range(3)]
        await pilot.press("3")
        await until(lambda: len(app.sessions_pane.rows) == 3, pilot)
        await pilot.press("down")
        second = cursor_key(app)
        assert second is not None
        assert "EHLO c1.example.test" in detail(app)
        requests = app.sessions_pane.requests
        await clients[0].cmd("QUIT")
        clients.append(await client_of(run, "c3.example.test"))
        await until(lambda: len(app.sessions_pane.rows) == 3 and cursor_key(app) is not None, pilot)
        await until(lambda: any(f":{port_of(clients[3])}" in r for r in table_text(app)), pilot)
        assert app.sessions_pane.requests > requests
        assert cursor_key(app) == second
        assert app.sessions_pane.table.cursor == 0  # the one above it is gone
        assert "EHLO c1.example.test" in detail(app)
        for client in clients[1:]:
            await client.close()


async def test_a_hidden_pane_asks_the_engine_for_nothing(start_engine: EngineFactory) -> None:
    """The pane refreshes while it shows; while the Queue pane shows, or the transcript
    screen covers it, no `sessions` request is made."""
    run = await start_engine()
    admin = run.engine.admin
    assert admin is not None
    calls: list[float] = []
    snapshot = admin.sessions

    async def counted() -> dict[str, Any]:
        calls.append(0)
        return await snapshot()

    admin.sessions = counted  # type: ignore[method-assign]
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        assert calls == []  # never shown yet
        client = await client_of(run)
        await pilot.press("3")
        await until(lambda: len(calls) >= 3, pilot)
        await pilot.press("1")
        await pilot.pause(0.15)
        seen = len(calls)
        await pilot.pause(0.6)
        assert len(calls) == seen, "the hidden pane kept asking"
        await pilot.press("3")
        await until(lambda: len(calls) >= seen + 2, pilot)
        await open_watch(app, pilot)
        await pilot.pause(0.15)
        seen = len(calls)
        await pilot.pause(0.6)
        assert len(calls) == seen, "the covered pane kept asking"
        await client.close()


async def test_a_strangers_escapes_and_long_command_are_drawn_as_text(
    start_engine: EngineFactory,
) -> None:
    """An EHLO with ESC sequences and a 2000-character command: the table, the line under it
    and the transcript show them as escapes, cut to their columns, never as control
    characters."""
    run = await start_engine(limits=LimitsConfig(max_command_length=4096))
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=(200, 40)) as pilot:
        client = await client_of(run)
        await client.cmd(ESCAPED_EHLO)
        await pilot.press("3")
        await until(lambda: "EHLO evil" in " ".join(table_text(app)), pilot)
        row = table_text(app)[0]
        assert "\x1b" not in row and "\\x1b[2J" in row
        await client.cmd(LONG_MAIL)
        await until(lambda: "MAIL FROM:<xx" in " ".join(table_text(app)), pilot)
        row = table_text(app)[0]
        assert "xxx… " in row  # cut to its column, and the table fits the screen's width
        table = app.sessions_pane.table
        assert table.virtual_size.width <= table.size.width
        assert "(2024 characters)" in detail(app)
        screen = await open_watch(app, pilot)
        await until(lambda: any("EHLO evil" in t for t in texts(screen)), pilot)
        view = screen.query_one(LineView)
        drawn = "\n".join(view.render_line(y).text for y in range(view.size.height))
        assert "\x1b" not in drawn and "\x07" not in drawn
        assert "EHLO evil\\x1b[2J\\x1b]0;owned\\x07.test" in drawn
        assert all(fmt.printable(t) == t or "\x1b" in t for t in texts(screen))
        await client.close()


async def test_outbound_connections_are_listed_and_followed(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """Delivery's connection held at DATA: a row of kind `out` with its destination; Enter
    follows it, and the reply to DATA arrives live."""
    import asyncio

    sink = await smtp_sink()
    stall = asyncio.Event()
    sink.behaviour.stall = stall
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        queue_id = await send(run, "a@example.com", ["b@example.org"])
        await until(sink.in_data.is_set, pilot)
        await pilot.press("3")
        await until(lambda: any(r.startswith(" out") for r in table_text(app)), pilot)
        assert title(app).startswith("Sessions · 0 inbound · 1 outbound")
        assert f"smarthost:127.0.0.1:{sink.port}" in table_text(app)[0]
        assert f"sending {queue_id}" in detail(app)
        screen = await open_watch(app, pilot)
        await until(lambda: any("bytes of message data" in t for t in texts(screen)), pilot)
        stall.set()
        await until(lambda: any("S: 250" in t for t in texts(screen)[-2:]), pilot)
        await pilot.press("escape")
        await until(lambda: not line_subscribers(run.engine.bus), pilot)


async def test_an_attached_watch_ends_when_the_engine_goes_away(
    start_engine: EngineFactory,
) -> None:
    """The admin socket closes under an attached watcher: the screen keeps the lines and says
    the watch is closed (the session itself goes on)."""
    run = await start_engine()
    client = await ControlClient.connect(run.engine.config.server.state_dir / SOCKET_NAME)
    app = RelayboxApp(SocketLink(client, 4242))
    try:
        async with app.run_test(size=SIZE) as pilot:
            smtp = await client_of(run)
            await pilot.press("3")
            await until(lambda: app.sessions_pane.rows, pilot)
            screen = await open_watch(app, pilot)
            await until(lambda: any("EHLO" in t for t in texts(screen)), pilot)
            assert run.engine.control is not None
            await run.engine.control.stop()
            title = screen.query_one("#session-title", TextLine)
            await until(lambda: "closed" in title.text, pilot)
            assert any("EHLO client.example.test" in t for t in texts(screen))
            assert run.engine.sessions()
            await smtp.close()
    finally:
        await client.close()
