"""The Destinations pane (key 2) and a destination's screen, driven with Textual's Pilot
against a real engine relaying to real sinks on loopback; and "suspended" read right in the
Queue pane and the inspector the moment a destination is suspended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relaybox.admin.service import UNTIL_RESUMED
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink
from relaybox.tui.panes.destinations import DestinationsPane, matches
from relaybox.tui.screens.config_forms import FormScreen
from relaybox.tui.screens.destination import AttemptScreen, DestinationScreen, parse_duration
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.widgets.line_view import LineView

from .smtpsink import SinkFactory
from .support.configs import relay_config, to_sink
from .support.engine import EngineFactory, RunningEngine, admin_of, wait_state
from .support.smtp import send
from .support.tui import until

SIZE = (160, 30)
BUSY = "451 4.2.1 mailbox busy, try later"
GREYLISTED = "450 4.7.1 <b@grey.example>: Recipient address rejected: Greylisted"


def app_for(run: RunningEngine) -> RelayboxApp:
    return RelayboxApp(InProcessLink(run.engine))


def queue_lines(app: RelayboxApp) -> str:
    view = app.queue_view
    return "\n".join(view.render_line(y).text for y in range(view.scrollable_content_region.height))


async def stuck_mail(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> tuple[RunningEngine, str, str]:
    """An engine whose smart host defers everything to busy.example; one message deferred
    there. Returns the engine, the message's queue ID and the destination key."""
    sink = await smtp_sink(rcpt_replies={"a@busy.example": BUSY, "b@busy.example": BUSY})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "app@example.com", ["a@busy.example"])
    await wait_state(run, queue_id, {"deferred"})
    return run, queue_id, f"smarthost:127.0.0.1:{sink.port}"


async def test_a_suspension_reads_suspended_in_the_queue_and_the_inspector_at_once(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """`queue suspend` (here the admin call it makes): the open inspector says "suspended
    by the admin until resumed", never "next in 2912102d", and the Queue pane's row (its Next
    and Last reply) says suspended, without waiting for the next attempt."""
    run, queue_id, key = await stuck_mail(start_engine, smtp_sink, tmp_path)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "deferred" in queue_lines(app), pilot)
        await pilot.press("enter")
        inspector = await until(
            lambda: app.screen if isinstance(app.screen, InspectorScreen) else None, pilot
        )
        page = inspector.query_one(LineView)

        def text() -> str:
            return "\n".join(t for _, t in page.lines)

        await until(lambda: BUSY in text(), pilot)
        await admin_of(run).suspend(key, None, "provider outage")
        await until(lambda: "suspended by the admin until resumed" in text(), pilot, 3)
        assert "next in" not in text()
        assert f"Delivery to {key} is suspended by the admin: provider outage" in text()
        await pilot.press("escape")
        await until(lambda: "451 4.4.5 Delivery to smarthost" in queue_lines(app), pilot, 3)
        row = next(line for line in queue_lines(app).splitlines() if queue_id in line)
        assert row.split("deferred", 1)[1].split()[1] == "suspended", row  # Att, then Next


def rows(pane: DestinationsPane) -> list[list[str]]:
    """The table's rows as shown, cell by cell."""
    table = pane.table
    return [[str(cell) for cell in table.get_row_at(y)] for y in range(table.row_count)]


async def two_stuck_destinations(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> tuple[RunningEngine, str, str]:
    """busy.example's smart host defers two messages with a reply no rule explains, and
    grey.example's greylists one: the destination keys, the busiest first."""
    busy = await smtp_sink(rcpt_replies={"a@busy.example": BUSY})
    grey = await smtp_sink(rcpt_replies={"b@grey.example": GREYLISTED})
    routes = (to_sink(busy, ("busy.example",)), to_sink(grey, ("grey.example",)))
    run = await start_engine(relay_config(tmp_path, routes))
    sent = [
        await send(run, "app@example.com", ["a@busy.example"]),
        await send(run, "app@example.com", ["a@busy.example"]),
        await send(run, "app@example.com", ["b@grey.example"]),
    ]
    for queue_id in sent:
        await wait_state(run, queue_id, {"deferred"})
    return run, f"smarthost:127.0.0.1:{busy.port}", f"smarthost:127.0.0.1:{grey.port}"


async def test_key_2_shows_each_stuck_destination_with_its_cause_in_plain_words(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """At 80x24: the title, one row per next hop (most deferred first) with its domains
    and cause (greylisting explained, an unknown reply as it is), the selected one's cause
    in full under the table; `/` filters the rows, Escape clears the filter."""
    run, busy, grey = await two_stuck_destinations(start_engine, smtp_sink, tmp_path)
    app = app_for(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        pane = app.destinations_pane
        await until(lambda: pane.table.row_count == 2, pilot)
        assert pane.title.startswith("Destinations · 2 next hops · 3 recipients waiting")
        assert rows(pane) == [
            [busy, "busy.example", BUSY],
            [grey, "grey.example", "greylisting: the receiver asks to try again later"],
        ]
        cause = str(pane.query_one("#destinations-cause").render())
        assert f"2 × {BUSY}" in cause
        await pilot.press("down")
        await until(
            lambda: (
                "Why: The receiver turns away"
                in str(pane.query_one("#destinations-cause").render())
            ),
            pilot,
        )

        await pilot.press("slash", *"grey", "enter")
        await until(lambda: pane.table.row_count == 1, pilot)
        assert rows(pane)[0][0] == grey and "filter 'grey'" in pane.title
        await pilot.press("escape")
        await until(lambda: pane.table.row_count == 2, pilot)


async def test_the_pane_follows_the_engine_keeping_its_cursor_and_reads_nothing_hidden(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """New mail deferred while the pane shows: the counts change within a couple of
    seconds and the cursor stays on its destination. Hidden, it reads nothing however much
    happens; shown again, it reads at once."""
    run, busy, grey = await two_stuck_destinations(start_engine, smtp_sink, tmp_path)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        pane = app.destinations_pane

        def deferred(key: str) -> str:
            return next(row[4] for row in rows(pane) if row[0] == key)

        await until(lambda: pane.table.row_count == 2, pilot)
        await pilot.press("down")
        assert pane.current_key() == grey
        for _ in range(2):  # grey.example now has the most deferred: it moves up
            queue_id = await send(run, "app@example.com", ["b@grey.example"])
            await wait_state(run, queue_id, {"deferred"})
        await until(lambda: rows(pane)[0][:2] == [grey, "grey.example"], pilot, 5)
        assert pane.current_key() == grey and pane.table.cursor_row == 0
        queue_id = await send(run, "app@example.com", ["a@busy.example"])
        await wait_state(run, queue_id, {"deferred"})
        await until(lambda: deferred(busy) == "3", pilot, 5)  # updated in place
        assert pane.current_key() == grey

        await pilot.press("1")
        reads = pane.reads
        for _ in range(3):
            queue_id = await send(run, "app@example.com", ["a@busy.example"])
            await wait_state(run, queue_id, {"deferred"})
        await pilot.pause(2.5)
        assert pane.reads == reads
        await pilot.press("2")
        await until(lambda: deferred(busy) == "6", pilot, 2)


async def open_first_destination(app: RelayboxApp, pilot: Any) -> DestinationScreen:
    """Key 2, then Enter on the first of the two destinations; its screen once it is up."""
    await pilot.press("2")
    pane = app.destinations_pane
    await until(lambda: pane.table.row_count == 2, pilot)
    await pilot.press("enter")
    screen: DestinationScreen = await until(
        lambda: app.screen if isinstance(app.screen, DestinationScreen) else None, pilot
    )
    return screen


async def test_enter_opens_the_destination_its_messages_attempts_and_a_transcript(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    run, busy, grey = await two_stuck_destinations(start_engine, smtp_sink, tmp_path)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_destination(app, pilot)
        assert screen.key == busy
        await until(lambda: len(screen.queue.ids) == 2 and len(screen.attempts) == 2, pilot)
        listed = [screen.queue.rows.get(i) for i in screen.queue.ids]
        assert {row.first_rcpt for row in listed if row is not None} == {"a@busy.example"}
        assert all(a.destination == busy for _, a in screen.attempts)
        await pilot.press("tab", "enter")
        shown = await until(
            lambda: app.screen if isinstance(app.screen, AttemptScreen) else None, pilot
        )
        lines = [t for _, t in shown.query_one(LineView).lines]
        assert any("RCPT TO:<a@busy.example>" in t for t in lines)
        assert any(BUSY in t for t in lines)
        await pilot.press("escape")
        await until(lambda: app.screen is screen, pilot)
        await pilot.press("escape")  # from the attempts list too
        await until(lambda: app.screen is app.screen_stack[0], pilot)
        await pilot.press("enter")
        screen = await until(
            lambda: app.screen if isinstance(app.screen, DestinationScreen) else None, pilot
        )
        await until(lambda: len(screen.queue.ids) == 2, pilot)
        await pilot.press("enter")  # on its first message: the inspector
        await until(lambda: isinstance(app.screen, InspectorScreen), pilot)


async def test_retry_all_suspend_and_resume_from_the_destination(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    """r: every message waiting there is tried again now (a second attempt each); s with an
    empty duration: suspended until resumed, said in the title and the queue; s with 2h: for
    2h; u: resumed, and the mail is tried again."""
    run, busy, _ = await two_stuck_destinations(start_engine, smtp_sink, tmp_path)
    admin = admin_of(run)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_destination(app, pilot)
        await until(lambda: len(screen.attempts) == 2, pilot)

        await pilot.press("r")
        await until(lambda: len(screen.attempts) == 4, pilot)

        def title() -> str:
            return str(screen.query_one("#destination-title").render())

        await pilot.press("s")
        await until(lambda: isinstance(app.screen, FormScreen), pilot)
        await pilot.press("enter", *"provider outage", "enter")
        await until(lambda: "SUSPENDED (until resumed)" in title(), pilot)
        assert (await admin.suspended())[busy] == (UNTIL_RESUMED, "provider outage")

        await pilot.press("s")
        form = await until(
            lambda: app.screen if isinstance(app.screen, FormScreen) else None, pilot
        )
        await pilot.press(*"2x", "enter", "enter")  # the duration, an empty reason, save
        problem = form.query_one("#form-problem")
        await until(lambda: "not a duration" in str(problem.render()), pilot)
        await pilot.press("shift+tab", *"2h", "enter", "enter")  # (focus selects the text)
        await until(lambda: "SUSPENDED (ends in 1h)" in title(), pilot)  # 2h less a moment
        assert (await admin.suspended())[busy][1] == "no reason given"

        await pilot.press("u")
        await until(lambda: "SUSPENDED" not in title(), pilot)
        assert busy not in await admin.suspended()
        await until(lambda: len(screen.attempts) == 6, pilot)


def test_a_suspension_is_asked_as_a_duration_or_until_resumed() -> None:
    assert parse_duration("") is None and parse_duration("  ") is None
    assert [parse_duration(t) for t in ("90s", "30m", "30", "2h", "1.5d", "2 H")] == [
        90,
        1800,
        1800,
        7200,
        129600,
        7200,
    ]
    for bad in ("2x", "-1h", "0m", "h", "1h30m"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_the_filter_matches_the_name_a_domain_a_reply_or_the_suspension_reason() -> None:
    entry = {
        "destination": "mx:example.org",
        "domains": ["example.org", "sub.example.org"],
        "causes": [{"reply": BUSY, "count": 2}],
        "suspended_reason": "Provider outage",
    }
    for text in ("", "MX:EXAMPLE", "sub.example", "mailbox busy", "outage", "@example.org"):
        assert matches(entry, text), text
    for text in ("example.net", "@example", "greylist"):
        assert not matches(entry, text), text
