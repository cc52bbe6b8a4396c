"""The log that remembers: the engine keeps its recent log events in a bounded ring and serves
them (`log_tail`), and the Log pane opens with them, then follows live, joined by sequence
number so that no line is lost or doubled at the seam, in process and attached."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relaybox.admin.client import ControlClient
from relaybox.events import (
    LOGGED_EVENTS,
    EventBus,
    EventRing,
    MessageDeferred,
    RecentEvents,
    SessionLine,
    SessionOpened,
)
from relaybox.statedir import SOCKET_NAME
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink, SocketLink

from .relayproc import StartRelay, free_port
from .support.configs import write_config
from .support.engine import EngineFactory
from .support.smtp import send, send_sync
from .support.tui import until

SIZE = (120, 30)


def _opened(n: int, at: float = 1.0) -> SessionOpened:
    return SessionOpened(f"s{n}", "127.0.0.1:25", "127.0.0.1", 1000 + n, at=at)


def _ports(app: RelayboxApp) -> list[int]:
    """The client ports of the SessionOpened events the Log pane holds, in order."""
    return [e.client_port for e in app.log_view.history if isinstance(e, SessionOpened)]


# ---------------------------------------------------------------------- the ring


def test_the_bus_numbers_what_it_publishes_and_the_ring_keeps_only_log_events() -> None:
    bus = EventBus(EventRing(LOGGED_EVENTS, max_events=100))
    first, line, second = _opened(1), SessionLine("s1", "C", "EHLO x", at=1.0), _opened(2)
    for event in (first, line, second):
        bus.publish(event)
    assert (first.seq, line.seq, second.seq) == (1, 2, 3)
    assert bus.ring is not None
    assert bus.ring.recent(10).events == (first, second)  # not the per-line event


def test_the_ring_is_bounded_by_count_and_by_bytes() -> None:
    ring = EventRing(LOGGED_EVENTS, max_events=50, max_bytes=1 << 30)
    bus = EventBus(ring)
    for n in range(200):
        bus.publish(_opened(n))
    assert [e.seq for e in ring.recent(1000).events] == list(range(151, 201))

    heavy = EventRing(LOGGED_EVENTS, max_events=10_000, max_bytes=100_000)
    bus = EventBus(heavy)
    for n in range(200):
        bus.publish(MessageDeferred(f"Q{n}", None, "451 " + "x" * 10_000, at=1.0))
    kept, weight = heavy.size
    assert 5 <= kept <= 10 and weight <= 100_000
    assert heavy.recent(1000).events[-1].queue_id == "Q199"


def test_the_ring_pages_back_by_sequence_number_and_bytes() -> None:
    ring = EventRing(LOGGED_EVENTS, max_events=1000)
    bus = EventBus(ring)
    for n in range(300):
        bus.publish(_opened(n))
    page = ring.recent(100)
    assert [e.seq for e in page.events] == list(range(201, 301))
    back = ring.recent(100, before=page.events[0].seq)
    assert [e.seq for e in back.events] == list(range(101, 201))
    small = ring.recent(1000, max_bytes=2000)
    assert 1 <= len(small.events) < 20 and small.events[-1].seq == 300


# ---------------------------------------------------------------------- the seam


async def test_history_and_live_join_without_a_loss_or_a_double(
    start_engine: EngineFactory,
) -> None:
    """Events keep being published while the pane opens and loads its history: every one
    is in the log exactly once, in order."""
    run = await start_engine()
    bus, clock = run.engine.bus, run.engine.clock
    published = 0

    async def publish_steadily(count: int) -> None:
        nonlocal published
        for _ in range(count):
            bus.publish(_opened(published, clock()))
            published += 1
            if published % 7 == 0:
                await asyncio.sleep(0)

    await publish_steadily(300)  # before the app: only the history has these
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        flood = asyncio.create_task(publish_steadily(700))  # across the seam
        await flood
        await until(lambda: len(_ports(app)) >= 1000, pilot)
        await pilot.pause(0.3)
        assert _ports(app) == [1000 + n for n in range(1000)]
        await pilot.press("4")
        await until(lambda: any(":1999 " in t for _, t in app.log_view.lines), pilot)
        texts = [t for _, t in app.log_view.lines]
        assert len([t for t in texts if ":1000 " in t]) == 1


async def test_a_reconnection_to_the_same_engine_fills_the_gap_and_doubles_nothing(
    start_engine: EngineFactory,
) -> None:
    """The live stream restarts (as after a lost connection): what was published meanwhile
    comes from the history, and what was shown already is not shown again."""
    run = await start_engine()
    bus, clock = run.engine.bus, run.engine.clock
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        for n in range(10):
            bus.publish(_opened(n, clock()))
        await until(lambda: len(_ports(app)) == 10, pilot)
        view = app.log_view
        view.subscribed()  # the stream ended and begins again; meanwhile, three more
        for n in range(10, 13):
            bus.publish(_opened(n, clock()))
        assert run.engine.admin is not None
        view.load_history(await run.engine.admin.log_tail(1000))
        for n in range(13, 15):
            bus.publish(_opened(n, clock()))
        await until(lambda: len(_ports(app)) >= 15, pilot)
        await pilot.pause(0.2)
        assert _ports(app) == [1000 + n for n in range(15)]


def test_events_in_flight_when_the_history_came_are_shown_once_in_order() -> None:
    """The history was read after events 6 and 7 were published but before the live stream
    brought them: they are shown from the history, and not again when they come live."""
    from relaybox.tui.panes.log import LogView

    view = LogView()
    bus = EventBus(EventRing(LOGGED_EVENTS))
    events = [_opened(n) for n in range(1, 10)]
    for event in events[:7]:
        bus.publish(event)  # seq 1..7
    view.subscribed()
    view.record(events[4])  # seq 5: the first live one (subscribed after 4 was published)
    assert bus.ring is not None
    view.load_history(bus.ring.recent(100))  # 1..7
    for event in events[5:7]:
        view.record(event)  # 6 and 7 arrive live: already shown
    bus.publish(events[7])
    view.record(events[7])
    seqs = [e.seq for e in view.history if isinstance(e, SessionOpened)]
    assert seqs == [1, 2, 3, 4, 5, 6, 7, 8]


def test_history_from_another_engine_run_goes_after_what_is_shown() -> None:
    """After a restart, sequence numbers begin again: the new run's history is shown after
    the old lines (none of it mistaken for lines seen already), before its live events."""
    from relaybox.tui.panes.log import LogView

    view = LogView()
    old = EventBus(EventRing(LOGGED_EVENTS))
    for n in range(5):
        old.publish(_opened(n))
    view.subscribed()
    assert old.ring is not None
    view.load_history(old.ring.recent(100))
    view.subscribed()
    new = EventBus(EventRing(LOGGED_EVENTS))
    for n in range(100, 103):
        new.publish(_opened(n))
    live = _opened(103)
    new.publish(live)
    view.record(live)
    assert new.ring is not None
    view.load_history(new.ring.recent(100))
    ports = [e.client_port for e in view.history if isinstance(e, SessionOpened)]
    assert ports == [1000, 1001, 1002, 1003, 1004, 1100, 1101, 1102, 1103]


# ---------------------------------------------------------------------- both modes


async def test_the_log_pane_opened_after_mail_flowed_shows_it_in_process(
    start_engine: EngineFactory,
) -> None:
    run = await start_engine()
    queue_id = await send(run, "printer@office.example", ["boss@example.org"])
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await until(lambda: any(f"{queue_id}: accepted" in t for _, t in app.log_view.lines), pilot)
        # ...and follows live after it.
        second = await send(run, "printer@office.example", ["boss@example.org"])
        await until(lambda: any(f"{second}: accepted" in t for _, t in app.log_view.lines), pilot)
        texts = [t for _, t in app.log_view.lines]
        assert len([t for t in texts if f"{queue_id}: accepted" in t]) == 1


async def test_the_log_pane_attached_opens_with_the_engines_history(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    port = free_port()
    relay = start_relay("--headless", "--config", write_config(tmp_path, port), port=port)
    queue_id = await asyncio.to_thread(send_sync, port)
    client = await ControlClient.connect(tmp_path / "state" / SOCKET_NAME)
    app = RelayboxApp(SocketLink(client, relay.proc.pid))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("4")
            lines = app.log_view.lines
            await until(lambda: any(f"{queue_id}: accepted" in t for _, t in lines), pilot)
            assert any("connect from 127.0.0.1" in t for _, t in lines)
            second = await asyncio.to_thread(send_sync, port)
            await until(lambda: any(f"{second}: accepted" in t for _, t in lines), pilot)
            assert len([t for _, t in lines if f"{queue_id}: accepted" in t]) == 1
    finally:
        await client.close()
    assert relay.terminate() == 0


async def test_log_tail_over_the_socket_pages_back_within_a_line(
    start_engine: EngineFactory,
) -> None:
    """Long replies make a page of fewer events: each answer stays under the socket's
    longest line, and paging back by `before` reaches every event the ring keeps."""
    run = await start_engine()
    bus, clock = run.engine.bus, run.engine.clock
    for n in range(400):
        bus.publish(MessageDeferred(f"Q{n}", None, "451 4.7.1 " + "y" * 3000, at=clock()))
    client = await ControlClient.connect(run.engine.config.server.state_dir / SOCKET_NAME)
    try:
        pages: list[RecentEvents] = []
        before = 0
        while True:
            page = await client.admin.log_tail(5000, before)
            if not page.events:
                break
            pages.append(page)
            before = page.events[0].seq
        assert len(pages) > 1 and len({p.epoch for p in pages}) == 1
        events = [e for p in reversed(pages) for e in p.events]
        assert [e.queue_id for e in events if isinstance(e, MessageDeferred)] == [
            f"Q{n}" for n in range(400)
        ]
    finally:
        await client.close()
