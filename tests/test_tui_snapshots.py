"""Snapshots of every pane and the inspector, at 80x24 and 200x60, over a real engine whose
spool is seeded with fixed messages at a fixed time (see tui_seed.py).

Update after a deliberate change to the UI with `pytest tests/test_tui_snapshots.py
--snapshot-update`, and look at the new SVGs (tests/__snapshots__/) before committing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from relaybox.tui.screens.destination import DestinationScreen
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.widgets.line_view import LineView

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


async def destinations_loaded(pilot: Any) -> None:
    """Until the Destinations pane shows what it read, the cursor on its first row."""
    pane = pilot.app.destinations_pane
    deadline = time.monotonic() + 10
    while not (pane.loaded and pane.table.row_count):
        assert time.monotonic() < deadline, "the Destinations pane did not load"
        await asyncio.sleep(0.05)
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_destinations_pane(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """Key 2: the seeded queue by next hop, the smart host with its two greylisted
    recipients first (the cause in plain words), then the hold route's four; every figure
    at 200 columns, destination, domains and cause at 80; the first row's cause in full
    under the table."""
    assert snap_compare(
        seeded_app(tmp_path), terminal_size=size, run_before=then("2", wait=destinations_loaded)
    )


def test_destination_screen(snap_compare: Any, tmp_path: Path) -> None:
    """Enter on the smart host: its figures and cause, its two deferred messages as the
    Queue pane shows them, its recent attempts, and the keys to retry, suspend, resume."""

    async def opened(pilot: Any) -> None:
        await destinations_loaded(pilot)
        await pilot.press("enter")
        deadline = time.monotonic() + 10
        while not (
            isinstance(pilot.app.screen, DestinationScreen)
            and len(pilot.app.screen.queue.ids) == 2
            and pilot.app.screen.attempts
        ):
            assert time.monotonic() < deadline, "the destination screen did not load"
            await asyncio.sleep(0.05)

    run_before = then("2", wait=opened)
    assert snap_compare(seeded_app(tmp_path), terminal_size=(80, 24), run_before=run_before)
