"""The on-call scenario: mail to one destination is stuck behind a failing next hop (a TLS
certificate it cannot verify); the admin opens the UI at 80x24 and must read the cause in
plain words at once, with the place that fixes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.widgets.line_view import LineView

from .smtpsink import SinkFactory
from .support.configs import relay_config, to_sink
from .support.engine import EngineFactory, RunningEngine, wait_state
from .support.smtp import send
from .support.tui import until


def _screen(view: LineView) -> str:
    """The lines of `view` on screen now."""
    height = view.scrollable_content_region.height
    return "\n".join(view.render_line(y).text for y in range(height))


async def stuck_behind_a_certificate(
    start_engine: EngineFactory, smtp_sink: SinkFactory, sink_tls: Any, tmp_path: Path
) -> tuple[RunningEngine, str]:
    """An engine whose route to stuck.example verifies a certificate nobody signed it
    knows, and whose other mail flows; one message stuck, one delivered."""
    context, _ = sink_tls
    untrusted = await smtp_sink(tls_context=context)
    fine = await smtp_sink()
    routes = (to_sink(untrusted, ("stuck.example",), tls="verify"), to_sink(fine))
    run = await start_engine(relay_config(tmp_path, routes))
    stuck = await send(run, "app@office.example", ["orders@stuck.example"])
    flowing = await send(run, "app@office.example", ["someone@example.org"])
    await wait_state(run, stuck, {"deferred"})
    await wait_state(run, flowing, {"delivered"})
    return run, stuck


async def test_the_stuck_message_says_certificate_and_the_route_tls_mode_on_enter(
    start_engine: EngineFactory, smtp_sink: SinkFactory, sink_tls: Any, tmp_path: Path
) -> None:
    run, stuck = await stuck_behind_a_certificate(start_engine, smtp_sink, sink_tls, tmp_path)
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=(80, 24)) as pilot:
        # The Queue pane opens with the stuck message under the cursor (the only one
        # unfinished); Enter opens it and the cause is on the first screen.
        view = app.queue_view
        await until(
            lambda: any((r := view.rows.get(i)) and r.queue_id == stuck for i in view.ids), pilot
        )
        await pilot.press("enter")
        screen = await until(
            lambda: app.screen if isinstance(app.screen, InspectorScreen) else None, pilot
        )

        def cause() -> str | None:
            text = _screen(screen.view)
            return text if "Why:" in text else None

        shown = await until(cause, pilot)
        assert "certificate" in shown, shown
        assert 'tls = "verify"' in shown, shown
        assert "Fix:" in shown, shown


async def test_key_2_shows_the_certificate_failure_and_the_route_tls_mode_at_once(
    start_engine: EngineFactory, smtp_sink: SinkFactory, sink_tls: Any, tmp_path: Path
) -> None:
    run, _ = await stuck_behind_a_certificate(start_engine, smtp_sink, sink_tls, tmp_path)
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        pane = app.destinations_pane
        await until(lambda: pane.table.row_count == 1, pilot)
        destination, domains, cause = (str(c) for c in pane.table.get_row_at(0))
        assert destination.startswith("smarthost:127.0.0.1") and domains == "stuck.example"
        # The row's cause is plain words, and the line under the table says it whole.
        assert cause.startswith("TLS certificate failure"), cause
        full = str(pane.query_one("#destinations-cause").render())
        assert "certificate" in full and 'tls = "verify"' in full, full
        assert "Fix:" in full, full
