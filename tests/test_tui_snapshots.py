"""Snapshots of every pane and the inspector, at 80x24 and 200x60, over a real engine whose
spool is seeded with fixed messages at a fixed time (see tui_seed.py).

Update after a deliberate change to the UI with `pytest tests/test_tui_snapshots.py
--snapshot-update`, and look at the new SVGs (tests/__snapshots__/) before committing them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from relaybox.config.model import LimitsConfig
from relaybox.inbound import server
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.screens.session import SessionScreen
from relaybox.tui.widgets.line_view import LineView

from .support.sessions import ESCAPED_EHLO, LONG_MAIL
from .support.smtp import SMTPClient
from .tui_seed import SIZES, seeded_app, settled

pytestmark = pytest.mark.usefixtures("utc")
"""Times on screen are local time: pinned to UTC for every test here."""


def then(*keys: str, wait: Callable[[Any], Awaitable[None]] | None = None) -> Any:
    """A `run_before` that waits for the seeded UI to settle, presses `keys`, then `wait`s."""

    async def run_before(pilot: Any) -> None:
        await settled(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.05)
        if wait is not None:
            await wait(pilot)
        await pilot.pause(0.3)

    return run_before


async def inspector_loaded(pilot: Any) -> None:
    """Until the inspector shows its message's inbound session, scrolled to its top."""
    deadline = time.monotonic() + 10
    while True:
        screen = pilot.app.screen
        if isinstance(screen, InspectorScreen):
            lines = screen.query_one(LineView).lines
            if any("Inbound session" in t for _, t in lines):
                await pilot.press("home")  # the page opens at its top; make sure of it
                await pilot.pause(0.1)
                return
        assert time.monotonic() < deadline, "the inspector did not load"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_pane(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """The first screen: the status bar (listeners, counts by state, rates with sparklines
    only at 200 columns), the Queue pane's unfinished view of six seeded messages with their
    state colours and column layout, the cursor on the first row, and the footer's keys."""
    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=then())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_pane_everything_sorted_by_recipients(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    """The "everything" view (finished messages too), sorted by recipients, the cursor on
    the second row and that row selected: the selection's colour and the title's count."""
    keys = ["v"] * 6 + ["s", "s", "down", "space"]  # view "everything", sort by recipients, select
    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=then(*keys))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_inspector(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """Enter on the second row: the inspector's top, its envelope and every recipient's
    state (one delivered, one bounced, one deferred) in their colours."""
    # The second row: the message with three recipients, one delivered, one bounced, one
    # deferred, its inbound session and its attempt.
    run_before = then("down", "enter", wait=inspector_loaded)
    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_inspector_attempt_transcript(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    """The inspector's end (End): the delivery attempt's transcript, client and server
    lines in their colours, and the raw message's first part."""
    run_before = then("down", "enter", wait=inspector_loaded)

    async def to_the_end(pilot: Any) -> None:
        await run_before(pilot)
        await pilot.press("end")
        await pilot.pause(0.1)

    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=to_the_end)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_log_pane(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """Key 4: the Log pane's title line and the seeded engine's events as log lines, each
    kind in its colour, following the tail."""
    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=then("4"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """`?`: the key help as a centred dialog over the queue (clipped, not wrapped, at
    80x24)."""
    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=then("question_mark"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_quit_question(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """`q` in-process: the quit question saying the relay stops with it, "No" focused."""
    assert snap_compare(seeded_app(tmp_path), terminal_size=size, run_before=then("q"))


HELD_PORT = 40123
"""The port the held session comes from: fixed, so the screen is the same on every run."""


async def held_session(pilot: Any) -> None:
    """A real SMTP session held open on the seeded engine: EHLO, an EHLO whose name carries
    ESC sequences (refused), and a MAIL with a 2000-character address (refused), from a fixed
    port and with a fixed session ID."""
    app = pilot.app
    address = app.link.engine.bound[0][1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", HELD_PORT))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (address.host, address.port))
    client = SMTPClient(*await asyncio.open_connection(sock=sock))
    await client.greet("client9.office.example")
    await client.cmd(LONG_MAIL)
    await client.cmd(ESCAPED_EHLO)
    app.held_client = client  # open until the app (and its engine) stops
    deadline = time.monotonic() + 10
    await pilot.press("3")
    while "EHLO evil" not in str(app.sessions_pane.rows):
        assert time.monotonic() < deadline, "the session did not show"
        await pilot.pause(0.05)


def sessions_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(server, "new_session_id", lambda: "S0SEEDED00009")
    return seeded_app(tmp_path, limits=LimitsConfig(max_command_length=4096))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sessions_pane(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key 3 with a real session held open by a test client: the title line ("Sessions · 1
    inbound · 0 outbound"), the row (kind, peer, listener, TLS, the last command cut to its
    column, its ESC sequences drawn as escapes; User, Msgs and Bytes at 200 columns) and,
    under the table, every fact of the session in full and its last command."""
    assert snap_compare(
        sessions_app(tmp_path, monkeypatch), terminal_size=size, run_before=then(wait=held_session)
    )


async def transcript_shown(pilot: Any) -> None:
    await held_session(pilot)
    await pilot.press("enter")
    deadline = time.monotonic() + 10
    while True:
        screen = pilot.app.screen
        if isinstance(screen, SessionScreen):
            lines = screen.query_one(LineView).lines
            texts = [t for _, t in lines]
            ehlo = next((n for n, t in enumerate(texts) if "EHLO evil" in t), None)
            if ehlo is not None and len(texts) > ehlo + 1:  # and its reply
                return
        assert time.monotonic() < deadline, f"the transcript did not show: {screen!r} " + (
            str(screen.query_one(LineView).lines) if isinstance(screen, SessionScreen) else ""
        )
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_session_transcript(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enter on the held session: its transcript so far, live, client and server lines in
    their colours, the ESC sequences as escapes, the 2000-character command cut with its
    length."""
    assert snap_compare(
        sessions_app(tmp_path, monkeypatch),
        terminal_size=size,
        run_before=then(wait=transcript_shown),
    )
