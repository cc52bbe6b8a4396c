"""The terminal UI driven with Textual's Pilot against a real engine on loopback: mail sent
over SMTP appears in the queue, actions change the spool, a retry from the inspector streams
the new attempt, and quitting asks first."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import pytest
from textual.containers import VerticalScroll
from textual.widgets import Static

from relaybox.admin.client import ControlClient, EventsDropped
from relaybox.events import DeliveryPaused, DeliveryResumed, Event, SessionOpened
from relaybox.queue import SORT_COLUMNS, MessageFilter, MessageRow
from relaybox.statedir import SOCKET_NAME
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink, SocketLink
from relaybox.tui.panes.queue import QueuePane
from relaybox.tui.panes.queue_view import COLUMNS, SORTS, STATE_VIEWS, QueueView, ViewState
from relaybox.tui.screens.confirm import ConfirmScreen
from relaybox.tui.screens.help import HELP_TEXT, HelpScreen
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.widgets.line_view import LineView
from relaybox.tui.widgets.status_bar import Rates

from .relayproc import RELAYBOX, RunCli, StartRelay, free_port, wait_until
from .support.configs import relay_config, to_sink, write_config
from .support.engine import EngineFactory, RunningEngine
from .support.smtp import send, send_sync
from .support.spool import new_message, sort_key
from .support.tui import notes, until
from .tui_seed import NOW, seeded_app

SIZE = (120, 30)


def _lines(app: RelayboxApp) -> str:
    view = app.queue_view
    height = view.scrollable_content_region.height
    return "\n".join(view.render_line(y).text for y in range(height))


def app_for(run: RunningEngine) -> RelayboxApp:
    return RelayboxApp(InProcessLink(run.engine))


async def deferring(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> tuple[RunningEngine, str]:
    """An engine relaying to a sink that defers busy@example.org, and one message to it."""
    sink = await smtp_sink(rcpt_replies={"busy@example.org": "451 4.2.1 busy"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    return run, await send(run, "a@example.com", ["busy@example.org"])


async def open_inspector(app: RelayboxApp, pilot: Any) -> InspectorScreen:
    """Enter on the row under the cursor; the inspector once it is up."""
    await pilot.press("enter")
    screen: InspectorScreen = await until(
        lambda: app.screen if isinstance(app.screen, InspectorScreen) else None, pilot
    )
    return screen


async def test_mail_sent_over_smtp_appears_in_the_queue(start_engine: EngineFactory) -> None:
    run = await start_engine()  # make_config holds everything: mail stays in the queue
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        queue_id = await send(run, "printer@office.example", ["boss@example.org"])
        await until(lambda: queue_id in _lines(app) and "held" in _lines(app), pilot)
        line = next(li for li in _lines(app).splitlines() if queue_id in li)
        assert "printer@office.example" in line and "boss@example.org" in line
        # The log pane has the acceptance too.
        await pilot.press("4")
        await until(lambda: any(queue_id in t for _, t in app.log_view.lines), pilot)


async def test_hold_release_and_delete_change_the_spool(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Any
) -> None:
    run, queue_id = await deferring(start_engine, smtp_sink, tmp_path)
    admin = run.engine.admin
    assert admin is not None

    async def state() -> str:
        detail = await admin.show(queue_id)
        return detail.row.state if detail else "gone"

    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: queue_id in _lines(app) and "deferred" in _lines(app), pilot)
        await pilot.press("h")
        await until(lambda: "held" in _lines(app), pilot)
        assert await state() == "held"
        await pilot.press("l")
        await until(lambda: "deferred" in _lines(app), pilot)
        assert await state() == "deferred"
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing happens
        assert await state() == "deferred"
        await pilot.press("d", "y")
        await until(lambda: queue_id not in _lines(app), pilot)
        assert await state() == "gone"


async def test_a_filter_finds_messages_by_recipient_domain(start_engine: EngineFactory) -> None:
    run = await start_engine()
    org = await send(run, "a@example.com", ["x@example.org"])
    net = await send(run, "a@example.com", ["y@example.net"])
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: org in _lines(app) and net in _lines(app), pilot)
        await pilot.press("slash", *"@example.net", "enter")
        await until(lambda: org not in _lines(app), pilot)
        assert net in _lines(app)
        assert len(app.queue_view.ids) == 1
        await pilot.press("escape")  # clears the filter
        await until(lambda: org in _lines(app), pilot)


class SlowToSubscribe(InProcessLink):
    """An engine whose subscriptions take half a second to open (a busy admin socket): an
    attempt may be over before a subscription asked for at the same time is in place."""

    async def subscribe(
        self, types: Sequence[type[Event]] | None = None
    ) -> AsyncGenerator[Event | EventsDropped, None]:
        await asyncio.sleep(0.5)
        return await super().subscribe(types)


async def test_retry_from_the_inspector_streams_the_attempt_live_then_shows_it_recorded(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Any
) -> None:
    """The second of two messages, retried from its inspector: its lines appear while the
    next hop still holds its reply to DATA, and the recorded attempt and state follow, even
    though the subscription is slow to open."""
    sink = await smtp_sink(data_reply="451 4.3.0 try again later")
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    await send(run, "other@example.com", ["b@example.org"])
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    app = RelayboxApp(SlowToSubscribe(run.engine))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: _lines(app).count("deferred") == 2, pilot)
        await pilot.press("down")
        inspector = await open_inspector(app, pilot)
        assert inspector.queue_id == queue_id
        view = inspector.query_one(LineView)
        await until(lambda: any("Delivery attempt 1" in t for _, t in view.lines), pilot)
        assert view.lines[0] == ("head", f"Message {queue_id}  (deferred)")
        stall = asyncio.Event()
        sink.in_data.clear()
        sink.behaviour.data_reply = None  # the next hop takes it now, once `stall` is set
        sink.behaviour.stall = stall
        await pilot.press("r")
        await until(lambda: sink.in_data.is_set(), pilot)

        def live() -> list[str]:
            texts = [t for _, t in view.lines]
            at = texts.index("Retry: live attempt") if "Retry: live attempt" in texts else None
            return [] if at is None else texts[at:]

        # The reply to DATA is held: what is shown of this attempt came as it happened.
        await until(lambda: any("C: MAIL FROM:<a@example.com>" in t for t in live()), pilot)
        assert not any("Delivery attempt 2" in t for _, t in view.lines)
        stall.set()
        await until(lambda: any("Delivery attempt 2" in t for _, t in view.lines), pilot)
        texts = [t for _, t in view.lines]
        assert any("S: 250 2.0.0 Ok: queued at the sink" in t for t in texts)
        assert view.lines[0] == ("head", f"Message {queue_id}  (delivered)")
        title = inspector.query_one("#inspector-title")
        await until(lambda: "delivered" in str(title.render()), pilot)
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectorScreen)
    assert [m.sender for m in await sink.wait_for(1)] == ["a@example.com"]


def screen_lines(app: RelayboxApp) -> list[str]:
    """The screen as it was last drawn (cached lines included, not the widgets redrawn)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.mark.parametrize("width", [80, 99, 100, 101, 129, 130, 131, 171, 172, 200])
async def test_column_titles_stand_over_their_columns(tmp_path: Path, width: int) -> None:
    """At every width, on either side of where columns are dropped, each title starts where
    its values do, and the titles name the columns the rows show (the Subject on wide
    screens only)."""
    values = {
        "Queue ID": "0SEEDED000001",
        "Age": "2h",
        "Sender": "scanner@",
        "Recipients": "accounts@",
        "Subject": "Scan to",
        "Size": "297B",
        "State": "deferred",
        "Att": "1 ",
        "Next": "in 25m",
        "Last reply": "451 4.7.1",
    }
    app = seeded_app(tmp_path)
    async with app.run_test(size=(width, 24)) as pilot:
        view = app.queue_view
        await until(lambda: len(view.ids) == 6 and view.ids[0] in view.rows, pilot)
        await pilot.pause(0.1)
        lines = screen_lines(app)
        header = next(li for li in lines if li.startswith("  Queue ID"))
        row = next(li for li in lines if "0SEEDED000001" in li)
        shown = []
        for title, value in values.items():
            at = header.find(title)
            if at < 0:  # ("1 " is in many a reply)
                assert title == "Att" or value not in row, (title, header, row)
                continue
            shown.append(title)
            assert row[at:].startswith(value) and row[at - 1] == " ", (title, header, row)
        assert shown[:4] == ["Queue ID", "Age", "Sender", "Recipients"], header
        wide = view.scrollable_content_region.width >= 100
        assert ("Size" in shown) == ("Att" in shown) == wide
        assert ("Subject" in shown) == (view.scrollable_content_region.width >= 170)


async def test_at_200_columns_the_last_reply_gets_the_room(tmp_path: Path) -> None:
    """At 200x60 the addresses are read whole and the last reply takes the rest: the
    seeded 57-character refusal is shown whole, not cut at 51 while the addresses are
    padded; each address column is at most 28 cells."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        view = await seeded_queue_settled(app, pilot)
        refusal = view.rows[view.ids[1]].last_reply
        assert refusal is not None and len(refusal) > 51
        lines = screen_lines(app)
        header = next(li for li in lines if li.startswith("  Queue ID"))
        assert refusal in next(li for li in lines if "0SEEDED000002" in li)
        assert header.find("Recipients") - header.find("Sender") <= 29
        assert header.find("Subject") - header.find("Recipients") <= 29
        assert "alice@office.example" in next(li for li in lines if "0SEEDED000002" in li)


async def test_ages_and_next_attempts_tick_without_asking_the_engine(tmp_path: Path) -> None:
    """The clock moves on, nothing else does: within a second or so the Age and Next cells
    on screen read the new time, and the engine was asked nothing (the rows hold the times)."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=(200, 30)) as pilot:
        view = await seeded_queue_settled(app, pilot)
        asked: list[str] = []
        admin = view._admin
        view.reload = lambda: None  # type: ignore[method-assign]  # (the clock alone moves)

        class Spy:
            def __getattr__(self, name: str) -> Any:
                asked.append(name)
                return getattr(admin(), name)

        view._admin = Spy  # type: ignore[assignment]
        await until(lambda: not view._loading, pilot)  # (a reload begun before)
        await pilot.pause(0.2)
        asked.clear()

        def row_of(queue_id: str) -> str:
            return next(li for li in screen_lines(app) if queue_id in li)

        assert " 1m " in row_of("0SEEDED000008") and "in 25m" in row_of("0SEEDED000001")
        view.clock = lambda: NOW + 61
        await until(lambda: " 2m " in row_of("0SEEDED000008"), pilot, timeout=5)
        assert "in 23m" in row_of("0SEEDED000001")  # (in 25m: 1,505 s, now 1,444 s)
        assert " 3m " in row_of("0SEEDED000007")  # (2m before)
        assert asked == []
        # Behind another pane, it asks for no line to be drawn again.
        await pilot.press("4")
        await pilot.pause(0.1)
        refreshed: list[int] = []
        refresh_line = view.refresh_line
        view.refresh_line = lambda y: refreshed.append(y) or refresh_line(y)  # type: ignore[method-assign]
        view.clock = lambda: NOW + 3600
        await pilot.pause(1.5)
        assert refreshed == []
        await pilot.press("1")  # shown again, it reads the time now
        await until(lambda: " 1h " in row_of("0SEEDED000004"), pilot, timeout=5)  # (30m)


async def test_a_sort_by_a_hidden_column_is_said_in_the_title(tmp_path: Path) -> None:
    """At 80 columns Size is not shown: sorted by it, no column title carries the arrow, so
    the title says the sort with its arrow and that its column is hidden; at 200 columns the
    column title has the arrow and the title does not call it hidden."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await seeded_queue_settled(app, pilot)
        pane = app.query_one(QueuePane)
        pane.set_sort("size")
        pane.reverse_sort()
        await until(lambda: not view._loading and view.state.descending, pilot)
        await pilot.pause(0.2)
        lines = screen_lines(app)
        title = next((li for li in lines if "Queue · " in li), lines)
        assert "sorted by Size ▼ (column hidden)" in title, title
        header = next(li for li in lines if li.startswith("  Queue ID"))
        assert "▲" not in header and "▼" not in header
        await pilot.resize_terminal(200, 24)
        await until(lambda: "Size▼" in app.query_one(QueuePane).header, pilot)
        await pilot.pause(0.2)
        assert "sorted by Size ▼" in pane.title and "hidden" not in pane.title


async def seeded_queue_settled(app: RelayboxApp, pilot: Any) -> QueueView:
    """The seeded app's queue once its six messages are shown and its frames are out."""
    view = app.queue_view
    await until(lambda: len(view.ids) == 6 and not view._loading, pilot)
    await pilot.pause(0.3)
    return view


async def add_the_newest_message(app: RelayboxApp, pilot: Any) -> None:
    """Spool a seventh message (the newest, last in the default order) and show it."""
    view = app.queue_view
    engine = app.link.engine  # type: ignore[attr-defined]
    await engine.spool.store_message(new_message(arrived_at=NOW - 1))
    view.reload()
    await until(lambda: len(view.ids) == 7 and not view._loading, pilot)
    await pilot.pause(0.2)


async def test_queue_reloads_change_the_title_without_a_relayout(tmp_path: Path) -> None:
    """A reload (once a second under load) repaints the title line, never lays the screen
    out again (Static.update does, at a cost that grows with the screen)."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await seeded_queue_settled(app, pilot)
        screen = app.screen
        layouts = 0
        original = screen._refresh_layout

        def counting(*args: Any, **kwargs: Any) -> None:
            nonlocal layouts
            layouts += 1
            original(*args, **kwargs)

        screen._refresh_layout = counting  # type: ignore[method-assign]
        for _ in range(3):
            view.reload()
            await until(lambda: not view._loading, pilot)
            await pilot.pause(0.1)
        assert "Queue · " in app.query_one(QueuePane).title
        assert layouts == 0


async def test_the_selection_shown_follows_space_escape_and_actions(tmp_path: Path) -> None:
    """The marks and the "N selected" of the title, as drawn on the screen, after each key."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = app.queue_view
        pane = app.query_one(QueuePane)
        await until(lambda: len(view.ids) == 6 and view.ids[1] in view.rows, pilot)

        def marked() -> list[str]:
            return [li.split()[1] for li in screen_lines(app) if li.startswith("● ")]

        await pilot.press("space", "space")  # the two deferred messages
        await pilot.pause(0.1)
        assert marked() == ["0SEEDED000001", "0SEEDED000002"]
        assert "· 2 selected" in pane.title
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert marked() == [] and "selected" not in pane.title
        await pilot.press("up", "space")
        await pilot.pause(0.1)
        assert marked() == ["0SEEDED000002"] and "· 1 selected" in pane.title
        await pilot.press("h")  # hold the selection; the selection is spent
        await until(lambda: "held" in str(view.rows.get(view.ids[1])), pilot)
        await pilot.pause(0.2)
        assert marked() == [] and "selected" not in pane.title


@pytest.mark.parametrize(
    ("keys", "question"),
    [
        (("d",), "Delete 0SEEDED000001? It is removed with its transcripts; nobody is told."),
        (
            ("space", "space", "d"),
            "Delete 2 messages? They are removed with their transcripts; nobody is told.",
        ),
        (("space", "space", "b"), "Bounce 2 messages? Each sender gets a bounce (DSN)."),
    ],
)
async def test_the_question_before_delete_or_bounce_is_worded_for_one_or_many(
    tmp_path: Path, keys: tuple[str, ...], question: str
) -> None:
    app = seeded_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = app.queue_view
        await until(lambda: len(view.ids) == 6 and view.ids[1] in view.rows, pilot)
        await pilot.press(*keys)
        screen = await until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen, pilot)
        assert screen.question == question
        await pilot.press("escape")


class GatedAdmin:
    """The engine's admin layer with the queue's id listing and row reads held at a gate:
    the moments a big queue takes to load, made as long as a test needs."""

    def __init__(self, admin: Any, *held: str) -> None:
        self._admin = admin
        self.held = set(held)
        """The calls held at the gate (message_ids, rows_by_id)."""
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        """Set when a call is held at the gate."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admin, name)

    async def _wait(self, name: str) -> None:
        if name in self.held and not self.gate.is_set():
            self.waiting.set()
            await asyncio.wait_for(self.gate.wait(), 20)

    async def message_ids(self, *args: Any, **kwargs: Any) -> list[int]:
        await self._wait("message_ids")
        return await self._admin.message_ids(*args, **kwargs)  # type: ignore[no-any-return]

    async def rows_by_id(self, *args: Any, **kwargs: Any) -> dict[int, MessageRow]:
        await self._wait("rows_by_id")
        return await self._admin.rows_by_id(*args, **kwargs)  # type: ignore[no-any-return]


async def test_a_new_view_is_acted_on_and_counted_as_it_is_not_as_the_old_one(
    start_engine: EngineFactory,
) -> None:
    """Right after a new filter: no action reaches the old view's rows; "all N" counts the
    whole new view, not its first screenful; the cursor stays where it is moved while the
    rest of the view loads."""
    run = await start_engine()
    spool = run.engine.spool
    assert spool is not None and run.engine.admin is not None
    for i in range(200):
        await spool.store_message(
            new_message(sender=f"u{i}@d{i % 2}.example", recipients=("r@example.org",))
        )
    first = (await run.engine.admin.list_messages(MessageFilter(states=()), limit=1)).rows[0]
    assert first.sender == "u0@d0.example"
    app = app_for(run)
    async with app.run_test(size=(120, 20)) as pilot:
        view = app.queue_view
        await until(lambda: len(view.ids) == 200 and view.current_row() == first, pilot)
        gated = GatedAdmin(run.engine.admin, "message_ids")
        app.link.admin = gated  # type: ignore[misc]
        # A filter and an action in the same instant: the old view's row is not acted on.
        app._apply_filter("d1.example")
        app.action_act("delete")
        assert not isinstance(app.screen, ConfirmScreen), app.screen.question  # type: ignore[attr-defined]
        await until(lambda: view.ids and view.counting, pilot)  # the first screenful
        shown = len(view.ids)
        assert shown < 100
        await pilot.press("H")
        question = await until(
            lambda: app.screen.question if isinstance(app.screen, ConfirmScreen) else None, pilot
        )
        assert "all 100 messages" in question, question
        await pilot.press("n")
        gated.gate.set()
        await until(lambda: not view.counting and len(view.ids) == 100 and not view._loading, pilot)
        # The rows around the cursor loading under a moving cursor.
        gated.held = {"rows_by_id"}
        gated.gate.clear()
        gated.waiting.clear()
        view.reload()
        await until(gated.waiting.is_set, pilot)
        await pilot.press("down", "down", "down")
        wanted = view.current_id()
        assert view.cursor == 3
        gated.gate.set()
        await until(lambda: not view._loading, pilot)
        await pilot.pause(0.1)
        assert view.cursor == 3 and view.current_id() == wanted


def test_every_column_the_queue_offers_is_a_sort_of_the_spool() -> None:
    """A column the spool cannot order by would sort by something else under its title;
    the Subject is the one column that does not sort (the filter finds a subject)."""
    assert set(SORTS) == set(SORT_COLUMNS)
    assert {key for key, _ in COLUMNS} - set(SORTS) == {"subject"}


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
async def test_every_column_sorts_the_queue_by_its_values(tmp_path: Path, descending: bool) -> None:
    """The seeded messages in every state, sorted by each column: the rows come in the
    order of that column's values (the first recipient, the last reply included)."""
    app = seeded_app(tmp_path)
    everything = [name for name, _ in STATE_VIEWS].index("everything")
    async with app.run_test(size=SIZE) as pilot:
        view = app.queue_view
        await until(lambda: len(view.ids) == 6, pilot)
        for key in SORTS:
            view.set_state(ViewState("", everything, key, descending))
            await until(
                lambda: (
                    len(view.ids) == 8
                    and not view._loading
                    and all(i in view.rows for i in view.ids)
                ),
                pilot,
            )
            rows = [view.rows[i] for i in view.ids]
            keys = [sort_key(r, key) for r in rows]
            assert keys == sorted(keys, reverse=descending), (key, [r.queue_id for r in rows])


async def test_the_inspector_shows_what_its_own_actions_did(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Any
) -> None:
    """h, l and d in the inspector: the page says held, then not held, then gone (and r on
    a held message waits for no attempt)."""
    run, queue_id = await deferring(start_engine, smtp_sink, tmp_path)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "deferred" in _lines(app), pilot)
        inspector = await open_inspector(app, pilot)
        view = inspector.query_one(LineView)

        def head() -> str:
            return view.lines[0][1] if view.lines else ""

        await until(lambda: head() == f"Message {queue_id}  (deferred)", pilot)
        await pilot.press("h")
        await until(lambda: head() == f"Message {queue_id}  (held)", pilot)
        await pilot.press("r")  # nothing to retry: no attempt to wait for
        await until(lambda: any("nothing to retry" in n for n in notes(app)), pilot)
        await until(lambda: not inspector.watching, pilot)
        assert head() == f"Message {queue_id}  (held)"
        await pilot.press("l")
        await until(lambda: "(held)" not in head(), pilot)
        await pilot.press("d", "y")
        await until(lambda: head() == f"Message {queue_id} is no longer in the spool.", pilot)


async def test_keys_and_commands_take_the_screen_they_are_given_on(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    """The palette's message actions in the inspector act on its message (not the queue's
    selection), `/` there opens no filter of a pane out of sight, and Escape clears the
    Log pane's filter as it does the queue's."""
    run, first = await deferring(start_engine, smtp_sink, tmp_path)
    second = await send(run, "a@example.com", ["busy@example.org"])
    admin = run.engine.admin
    assert admin is not None
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: _lines(app).count("deferred") == 2, pilot)
        await pilot.press("space")  # the first selected, the cursor on the second
        inspector = await open_inspector(app, pilot)
        assert inspector.queue_id == second
        await pilot.press("slash")
        assert app.screen is inspector and isinstance(app.focused, LineView)
        assert not app.query_one("#queue Input").has_class("shown")
        commands = {c.title: c for c in app.get_system_commands(inspector)}
        assert "Hold all shown" not in commands and "Sort by Sender" not in commands
        commands["Hold this message"].callback()
        await until(lambda: "(held)" in inspector.query_one(LineView).lines[0][1], pilot)
        states = {q: (await admin.show(q)).row.state for q in (first, second)}  # type: ignore[union-attr]
        assert states == {first: "deferred", second: "held"}
        await pilot.press("escape", "4", "slash", *"nothing like it", "enter")
        await until(lambda: app.log_view.filter_text == "nothing like it", pilot)
        await pilot.press("escape")
        assert app.log_view.filter_text == ""
        assert not app.query_one("#log Input").has_class("shown")


async def test_quitting_asks_first_and_no_keeps_the_ui(start_engine: EngineFactory) -> None:
    run = await start_engine()
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        for key in ("q", "ctrl+c", "ctrl+q"):
            await pilot.press(key)
            assert isinstance(app.screen, ConfirmScreen), key
            assert "stops the relay" in app.screen.question
            await pilot.press("n")
            assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("q", "y")
        await pilot.pause()
    assert app.return_code == 0
    # The UI quitting does not stop an engine by itself: its owner (the CLI) does. The
    # engine still takes mail after the UI is gone.
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    assert run.engine.admin is not None
    assert [r.queue_id for r in await run.engine.admin.list_all(MessageFilter(states=()))] == [
        queue_id
    ]


async def test_only_visible_rows_are_rendered(start_engine: EngineFactory) -> None:
    run = await start_engine()
    ids = [await send(run, "a@example.com", [f"r{i}@example.org"]) for i in range(60)]
    app = app_for(run)
    async with app.run_test(size=(100, 24)) as pilot:
        view = app.queue_view
        await until(lambda: len(view.ids) == 60 and ids[0] in _lines(app), pilot)
        stopped = time.time()
        view.clock = lambda: stopped  # (ages in seconds would redraw every line each second)
        await pilot.pause(1.2)
        before = view.rendered
        await pilot.press("down")
        await pilot.pause(0.1)
        assert view.rendered - before <= 4  # the old and new cursor lines, not the page
        await pilot.press("end")
        await until(lambda: ids[-1] in _lines(app), pilot)
        assert view.cursor == 59
        await asyncio.sleep(0)


async def test_a_reload_draws_again_only_the_lines_that_changed(tmp_path: Path) -> None:
    """Under load the queue reloads every second; lines that look the same (blank ones, rows
    that stayed put) are not drawn again, a row that changed is."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await seeded_queue_settled(app, pilot)
        before = view.rendered
        view.reload()
        await until(lambda: not view._loading, pilot)
        await pilot.pause(0.2)
        assert view.rendered == before  # nothing changed: nothing drawn
        index = next(i for i, n in enumerate(view.ids) if view.rows[n].state != "held")
        row = view.rows[view.ids[index]]
        await app.link.admin.hold(MessageFilter(queue_ids=(row.queue_id,)))
        view.reload()
        await until(lambda: not view._loading and view.rows[view.ids[index]] != row, pilot)
        await pilot.pause(0.2)
        assert view.rendered - before == 1  # that row alone
        assert "held" in view.render_line(index).text
        # A new message (the newest: last in this order) adds its line; the others stay.
        before = view.rendered
        await add_the_newest_message(app, pilot)
        assert 1 <= view.rendered - before <= 2  # (2: the hold route took it meanwhile)


async def test_a_longer_queue_moves_the_scroll_bar_without_drawing_the_rows_again(
    tmp_path: Path,
) -> None:
    app = seeded_app(tmp_path)
    async with app.run_test(size=(120, 10)) as pilot:
        view = await seeded_queue_settled(app, pilot)
        assert view.show_vertical_scrollbar
        assert view.vertical_scrollbar.window_virtual_size == 6
        before = view.rendered
        await add_the_newest_message(app, pilot)
        assert view.vertical_scrollbar.window_virtual_size == 7
        assert view.virtual_size.height == 7
        assert view.rendered == before  # the new row is below the screen
        await pilot.press("end")
        await until(lambda: view.cursor == 6, pilot)
        await pilot.pause(0.2)
        assert view.scroll_offset.y == view.max_scroll_y > 0


async def test_only_visible_log_lines_are_rendered(start_engine: EngineFactory) -> None:
    """The log and the inspector share the queue's line-API base: a page of 5000 lines
    costs what the screen shows, before and after scrolling."""
    run = await start_engine()
    app = app_for(run)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("4")
        view = app.log_view
        view.set_lines([("plain", f"line {n}") for n in range(5000)])
        view.scroll_home(animate=False, immediate=True)
        await pilot.pause(0.2)
        height = view.scrollable_content_region.height
        assert view.rendered <= 3 * height
        before = view.rendered
        await pilot.press("down")
        await pilot.pause(0.1)
        assert 0 < view.rendered - before <= height + 1
        assert view.render_line(0).text.startswith("line 1")


async def test_a_busy_log_updates_once_a_second_and_a_quiet_one_within_a_moment(
    start_engine: EngineFactory,
) -> None:
    """Each log update scrolls the whole pane: while every update brings more than a
    screenful, they come once a second; a trickle shows within a quarter-second tick."""
    run = await start_engine()
    app = app_for(run)

    def burst(tag: str, n: int) -> None:
        for i in range(n):
            app.bridge.on_engine_event(
                SessionOpened(
                    f"{tag}{i}", "127.0.0.1:25", "127.0.0.1", 1000 + i, at=run.engine.clock()
                )
            )

    def shown_text() -> str:
        view = app.log_view
        return "\n".join(t for _, t in view.lines)

    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause(0.3)
        burst("first", 100)  # more than the pane's 20-odd lines
        await until(lambda: "port" not in shown_text() and ":1099 " in shown_text(), pilot)
        flushed = time.monotonic()
        burst("second", 100)
        await pilot.pause(0.5)
        if time.monotonic() - flushed < 0.95:  # (a slow machine may take longer to get here)
            assert ":1099 " in shown_text() and shown_text().count(":1099 ") == 1
        await until(lambda: shown_text().count(":1099 ") == 2, pilot)
        await until(lambda: not app.log_view._busy or time.monotonic() - flushed > 3, pilot)
        await pilot.pause(1.1)  # the busy update's second has passed
        burst("third", 1)
        quiet = time.monotonic()
        await until(lambda: shown_text().count(":1000 ") == 3, pilot)
        assert time.monotonic() - quiet < 0.9


async def test_a_new_theme_redraws_the_rows_in_its_colours(tmp_path: Path) -> None:
    """The rows' base style is remembered between frames; a theme change must forget it."""
    app = seeded_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = app.queue_view
        await until(lambda: len(view.ids) > 2 and view.rows.get(view.ids[1]), pilot)
        await pilot.pause(0.2)
        before = view.render_line(1).text
        old_bg = view.rich_style.bgcolor
        app.theme = "relaybox-light" if app.theme != "relaybox-light" else "relaybox-dark"
        await pilot.pause(0.3)
        assert view.rich_style.bgcolor != old_bg
        assert view.base_style == view.rich_style
        line = view.render_line(1)
        assert line.text == before
        assert {seg.style.bgcolor for seg in line if seg.style} == {view.rich_style.bgcolor}


def test_the_status_bar_counts_mail_in_ten_second_bars_and_rates_the_last_minute() -> None:
    """A message counts in the bar still open; a bar closes once its ten seconds are up, and
    the rate per minute is the last six closed bars (so it falls back once a minute passes)."""
    now = [1000.0]
    rates = Rates(lambda: now[0])
    for _ in range(6):
        rates.count("in")
    rates.count("out")
    rates.roll()
    assert rates.per_minute("in") == 0.0  # its bar is still open
    now[0] = 1010.0
    rates.roll()
    assert list(rates.bars["in"])[-2:] == [0.0, 6.0] and list(rates.bars["out"])[-1] == 1.0
    assert rates.per_minute("in") == 6.0 and rates.per_minute("out") == 1.0
    now[0] = 1070.0  # six more bars, all empty
    rates.roll()
    assert list(rates.bars["in"])[-7:] == [6.0] + [0.0] * 6
    assert rates.per_minute("in") == 0.0 and len(rates.bars["in"]) == 30


# ---------------------------------------------------------------------- attached to an engine


async def test_paused_delivery_is_on_the_status_bar_until_it_resumes(
    start_engine: EngineFactory,
) -> None:
    """The engine's DeliveryPaused turns the bar to a warning that says why, with one
    notification; DeliveryResumed takes it away."""
    run = await start_engine()
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "queued" in app.status_text(), pilot)
        bus, clock = run.engine.bus, run.engine.clock
        bus.publish(DeliveryPaused(1, "spool write failed: database or disk is full", at=clock()))
        await until(lambda: "DELIVERY PAUSED" in app.status_text(), pilot)
        assert "disk is full" in app.status_text()
        assert app.status_bar.has_class("warning")
        bus.publish(DeliveryPaused(2, "spool write failed: database or disk is full", at=clock()))
        await pilot.pause(0.2)
        assert len([n for n in notes(app) if n.startswith("Delivery paused")]) == 1
        bus.publish(DeliveryResumed(at=clock()))
        await until(lambda: "DELIVERY PAUSED" not in app.status_text(), pilot)
        await until(lambda: not app.status_bar.has_class("warning"), pilot)


async def test_attached_to_a_headless_engine_shows_its_queue_and_leaves_it_running(
    tmp_path: Path,
    start_relay: StartRelay,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    relay = start_relay("--headless", "--config", config, port=port)
    queue_id = await asyncio.to_thread(send_sync, port)
    state_dir = tmp_path / "state"
    client = await ControlClient.connect(state_dir / SOCKET_NAME)
    app = RelayboxApp(SocketLink(client, relay.proc.pid))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: queue_id in _lines(app), pilot)
            await until(lambda: "relay 127.0.0.1" in app.status_text(), pilot)
            status = app.status_text()
            # Live: a message sent now appears without a key press.
            second = await asyncio.to_thread(send_sync, port)
            await until(lambda: second in _lines(app), pilot)
            await pilot.press("q")
            assert "keeps running" in app.screen.question  # type: ignore[attr-defined]
            await pilot.press("y")
            await pilot.pause()
    finally:
        await client.close()
    assert f"attached to pid {relay.proc.pid}" in status
    assert relay.proc.poll() is None, "quitting the UI must not stop an attached engine"
    again = await ControlClient.connect(state_dir / SOCKET_NAME)
    try:
        assert await again.count() == 2
    finally:
        await again.close()
    assert relay.terminate() == 0


async def test_attached_ui_says_once_that_the_engine_is_gone_and_carries_on_when_it_is_back(
    tmp_path: Path,
    start_relay: StartRelay,
) -> None:
    """The headless engine stops under an attached UI: the status bar says so and one error
    notification does, however many reloads fail meanwhile; a new engine on the same state
    directory is picked up, live."""
    port = free_port()
    config = write_config(tmp_path, port)
    relay = start_relay("--headless", "--config", config, port=port)
    queue_id = await asyncio.to_thread(send_sync, port)
    client = await ControlClient.connect(tmp_path / "state" / SOCKET_NAME)
    link = SocketLink(client, relay.proc.pid)
    app = RelayboxApp(link)
    errors: list[str] = []
    notify = app.notify

    def counting(message: str, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("severity") == "error":
            errors.append(message)
        notify(message, *args, **kwargs)

    app.notify = counting  # type: ignore[method-assign]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: queue_id in _lines(app), pilot)
            await asyncio.to_thread(relay.terminate)
            await until(lambda: "ENGINE GONE" in app.status_text(), pilot)
            await pilot.pause(6.5)  # more than one reload tick (5 s) of a still queue
            assert "ENGINE GONE" in app.status_text()
            assert len(errors) == 1, errors
            again = start_relay("--headless", "--config", config, port=port)
            await until(lambda: f"attached to pid {again.proc.pid}" in app.status_text(), pilot)
            await until(lambda: "ENGINE GONE" not in app.status_text(), pilot)
            second = await asyncio.to_thread(send_sync, port)
            await until(lambda: second in _lines(app), pilot)
            assert len(errors) == 1, errors
            await pilot.press("q", "y")
    finally:
        await link.close()
    assert again.terminate() == 0


# ---------------------------------------------------------------------- in a real terminal


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_relaybox_in_a_terminal_opens_the_queue_and_quits_after_asking(
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    """`relaybox` in tmux: the UI comes up on the Queue pane with the engine in-process, mail
    sent to it shows up, `q` asks, `y` stops the relay and the process exits 0."""
    port = free_port()
    config = write_config(tmp_path, port)
    session = f"rbx{os.getpid()}{port}"
    done = tmp_path / "exit-status"
    command = f"{' '.join(RELAYBOX)} --config {config}; echo $? > {done}"
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "30", command],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=10,
    )

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", session],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    try:
        wait_until(lambda: "Queue ·" in screen() or None, "the Queue pane")
        wait_until(lambda: "in-process" in screen() or None, "the status bar")
        queue_id = send_sync(port)
        wait_until(lambda: queue_id in screen() or None, "the message in the queue")
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True, timeout=10)
        wait_until(lambda: "stops the relay" in screen() or None, "the quit question")
        subprocess.run([*tmux, "send-keys", "-t", session, "y"], check=True, timeout=10)
        wait_until(lambda: done.exists() and done.read_text().strip() or None, "relaybox to exit")
        assert done.read_text().strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
    # The relay stopped with the UI, and the message is still spooled.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_help_lists_the_keys_and_actions_work_right_after_switching_panes(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    run, queue_id = await deferring(start_engine, smtp_sink, tmp_path)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "deferred" in _lines(app), pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        for words in ("Queue pane", "Log pane", "retry", "bounce", "command palette"):
            assert words in text, words
        await pilot.press("x")  # a key of its own does nothing: it is not lost by a typo
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("4", "1", "h")
        await until(lambda: "held" in _lines(app), pilot)
    assert run.engine.admin is not None
    detail = await run.engine.admin.show(queue_id)
    assert detail is not None and detail.row.state == "held"


async def test_help_scrolls_at_80x24_so_every_section_is_reachable(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run = await start_engine(relay_config(tmp_path, ()))
    app = app_for(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one(VerticalScroll)
        await pilot.pause()
        assert box.max_scroll_y > 0  # more than a screen: it must scroll
        assert box.scroll_offset.y == 0
        await pilot.press("pagedown", "down", "j")
        await pilot.pause()
        assert box.scroll_offset.y > 0 and isinstance(app.screen, HelpScreen)
        await pilot.press("end")
        await pilot.pause()
        assert box.scroll_offset.y == box.max_scroll_y
        # The last section's last line is inside the visible region.
        lines = HELP_TEXT.rstrip().splitlines()
        at = len(lines) - 1
        top, height = box.scroll_offset.y, box.scrollable_content_region.height
        assert top <= at < top + height, (top, at, height)
        shown = app.screen.query_one(Static).render_line(at)
        assert lines[-1].strip()[:20] in shown.text, shown.text
        await pilot.press("home")
        await pilot.pause()
        assert box.scroll_offset.y == 0
        await pilot.press("question_mark")  # ? again closes it, as Escape does
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_lost_terminal_stops_the_relay_gracefully_and_keeps_the_mail(
    tmp_path: Path,
    env: dict[str, str],
    run_cli: RunCli,
) -> None:
    """An SSH session dropping under `relaybox`: the terminal goes (SIGHUP, then every write
    fails). The relay must neither hang on the dead terminal nor lose the spooled mail."""
    port = free_port()
    config = write_config(tmp_path, port)
    session = f"rbx{os.getpid()}{port}"
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            f"{' '.join(RELAYBOX)} --config {config}",
        ],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=10,
    )
    try:
        wait_until(lambda: port_open(port) or None, "relaybox to listen")
        queue_id = send_sync(port)
        pids = subprocess.run(
            ["pgrep", "-f", f"^[^ ]*python[^ ]* -m relaybox --config {config}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert pids, "cannot find the relaybox process"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
    wait_until(lambda: not port_open(port) or None, "the relay to stop listening", timeout=20)
    wait_until(lambda: not pid_alive(int(pids[0])) or None, "relaybox to exit", timeout=20)
    listing = run_cli("queue", "--json", "--config", config)
    assert queue_id in listing.stdout, listing.stderr


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie (exited, not yet reaped by tmux's dead server) counts as
    gone, and so does a process reaped at any point of the check: its /proc entry then
    vanishes before the open (FileNotFoundError), or reads fail (ProcessLookupError) or
    come back empty."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except (ProcessLookupError, FileNotFoundError):
        return False
    # The state follows the command name in parentheses, which may hold ") " itself.
    state = text.rpartition(") ")[2][:1]
    return state not in ("", "Z")


def test_pid_alive_tells_running_from_exited_and_reaped() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        wait_until(lambda: not pid_alive(child.pid) or None, "the killed child to be a zombie")
        assert os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT) is not None  # a zombie
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not pid_alive(child.pid)  # reaped


def test_output_to_a_vanished_terminal_is_dropped_and_reported_once(tmp_path: Path) -> None:
    """Textual's output thread dies on the first failed write and then blocks the loop; the
    relay's driver wraps the terminal so that a failed write is swallowed and reported."""
    from relaybox.tui.terminal import _TerminalOutput

    read_end, write_end = os.pipe()
    os.close(read_end)  # like a pty whose other side is gone: writes fail (EPIPE)
    lost: list[bool] = []
    out = _TerminalOutput(os.fdopen(write_end, "w", buffering=1), lambda: lost.append(True))
    for _ in range(100):
        assert out.write("\x1b[2Jframe\n") > 0
        out.flush()
    assert lost == [True]
    assert not out.isatty()


def test_control_characters_from_mail_never_reach_the_terminal() -> None:
    """A header or a remote reply carrying ESC sequences (clear screen, set the clipboard)
    is drawn as escapes."""
    from relaybox.tui.format import printable
    from relaybox.tui.panes.queue_view import row_text

    assert printable("a\x1b]52;c;x\x07b\r\x9b2J") == "a\\x1b]52;c;x\\x07b\\r\\x9b2J"
    row = MessageRow(
        1,
        "Q",
        0.0,
        "evil\x1b[2J@x.org",
        10,
        "deferred",
        1,
        "a@b.org",
        1,
        None,
        "451 \x1b]0;owned\x07",
        "\x1b[2Jinvoice",
    )
    assert "\x1b" not in row_text(row, 200, 0.0)
    assert "\\x1b[2Jinvoice" in row_text(row, 200, 0.0)


def unsafe_in(text: str) -> list[str]:
    """The characters of `text` that must never be drawn as they are."""
    from relaybox.untrusted import UNSAFE

    return sorted({c for c in text if ord(c) in UNSAFE})


async def test_strangers_text_is_drawn_as_text_never_as_escapes_or_markup(
    start_engine: EngineFactory,
) -> None:
    """A sender and a Subject: carrying ESC sequences, a C1 CSI, a right-to-left override and
    Rich markup: the inspector draws the escapes as `\\x1b[2J` and the markup as the
    characters typed; a filter that is itself markup (`[/b]`) reaches the confirmation as
    typed, and a notification quoting such text is shown without being parsed."""
    run = await start_engine()
    sender = '"[/b]x"@example.com'
    body = (
        b"From: a@example.com\r\nTo: b@example.org\r\n"
        b"Subject: hi \x1b]0;pwned\x07\x1b[2J \xc2\x9b2J \xe2\x80\xae [bold red]x[/] [/oops]\r\n"
        b"\r\nbody\r\n"
    )
    queue_id = await send(run, sender, ["b@example.org"], body)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: queue_id in _lines(app), pilot)
        inspector = await open_inspector(app, pilot)
        view = inspector.query_one(LineView)
        await until(lambda: view.lines, pilot)
        drawn = [view.draw_line(i, 200).text for i in range(view.line_count())]
        subject = next(line for line in drawn if "Subject:" in line)
        assert [unsafe_in(line) for line in drawn if unsafe_in(line)] == []
        assert subject == (
            "  Subject: hi \\x1b]0;pwned\\x07\\x1b[2J \\x9b2J \\u202e [bold red]x[/] [/oops]"
        )
        await pilot.press("escape", "slash", *"[/b]", "enter", "B")
        confirm = await until(
            lambda: app.screen if isinstance(app.screen, ConfirmScreen) else None, pilot
        )
        await pilot.pause()
        label = confirm.query_one("Label")
        assert "filter '[/b]'" in str(label.render())
        await pilot.press("n")
        app.notify("Cannot read [/oops]: \x1b[2J")
        await pilot.pause()
        assert "Cannot read [/oops]: \\x1b[2J" in notes(app)
