"""The Destinations pane (key 2) and a destination's screen, driven with Textual's Pilot
against a real engine relaying to real sinks on loopback; and "suspended" read right in the
Queue pane and the inspector the moment a destination is suspended."""

from __future__ import annotations

from pathlib import Path

from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.widgets.line_view import LineView

from .smtpsink import SinkFactory
from .support.configs import relay_config, to_sink
from .support.engine import EngineFactory, RunningEngine, admin_of, wait_state
from .support.smtp import send
from .support.tui import until

SIZE = (160, 30)
BUSY = "451 4.2.1 mailbox busy, try later"


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
