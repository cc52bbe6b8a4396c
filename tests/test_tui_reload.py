"""The UI hears about every reload, whoever asked for it: the status bar names the generation
in force (and why the last reload was refused, until one applies), the Log pane has a line for
each, and one notification says it."""

from __future__ import annotations

from pathlib import Path

from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink

from .support.engine import EngineFactory
from .support.reload import config_text, start_from_file
from .support.tui import notes, until


async def test_a_reload_and_a_refusal_show_on_the_status_bar_the_log_and_a_notification(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path))
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(lambda: "config gen 1 " in app.status_text(), pilot)

        path.write_text(config_text(tmp_path, extra="[limits]\nmax_recipients = 7\n"))
        assert (await run.engine.reload_config("signal")).outcome == "applied"
        await until(lambda: "config gen 2 " in app.status_text(), pilot)
        await until(lambda: any("generation 2 applied (signal)" in n for n in notes(app)), pilot)

        path.write_text("[limits]\nmax_recipients = -1\n" + config_text(tmp_path))
        assert (await run.engine.reload_config("file")).outcome == "refused"
        await until(lambda: "CONFIG REFUSED" in app.status_text(), pilot)
        # (on screen the file is named without its folder: the problem gets the room)
        assert f"{path.name}:2: limits.max_recipients" in app.status_text()
        assert "config gen 2 " in app.status_text()  # (in force: line 1 names it)
        assert app.status_bar.has_class("warning")

        await pilot.press("4")
        log = app.log_view
        await until(lambda: any("config refused (file)" in t for _, t in log.lines), pilot)
        assert any("config generation 2 applied (signal)" in t for _, t in log.lines)

        path.write_text(config_text(tmp_path))
        assert (await run.engine.reload_config("command")).outcome == "applied"
        await until(lambda: "CONFIG REFUSED" not in app.status_text(), pilot)
        await until(lambda: "config gen 3 " in app.status_text(), pilot)
