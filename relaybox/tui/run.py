"""Starting the UI: attach to a running engine, or run one in this event loop beside the UI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TextIO, cast

from relaybox.admin.connect import EngineUnreachable, attach
from relaybox.config import Config
from relaybox.engine import Engine
from relaybox.maillog import MailLog, setup_logging
from relaybox.queue import SpoolError
from relaybox.statedir import LOG_NAME, EngineRunning, ensure_state_dir
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import EngineLink, InProcessLink, SocketLink
from relaybox.tui.terminal import SurvivingDriver

__all__ = ["run_ui", "ui_log"]


def run_ui(config: Config, *, config_dir: Path | None, log_format: str | None) -> int:
    """Run the UI until the admin quits; the process's exit status."""
    return asyncio.run(_main(config, config_dir, log_format))


async def _main(config: Config, config_dir: Path | None, log_format: str | None) -> int:
    try:
        attached = await attach(config.server.state_dir)
    except EngineUnreachable as exc:
        print(
            f"relaybox: an engine (pid {exc.pid}) runs on {exc.state_dir} but its admin socket "
            f"does not answer ({exc.reason}); not starting a second one",
            file=sys.stderr,
        )
        return 1
    # None: no engine runs here (or it stopped meanwhile), so one starts in this process.
    if attached is not None:
        link: EngineLink = SocketLink(attached.client, attached.pid)
        try:
            return await _run_app(link, config, config_dir)
        finally:
            await link.close()

    logging.getLogger().addHandler(logging.NullHandler())
    log = ui_log(config, log_format)
    engine = Engine(config, log)
    try:
        await engine.start()
    except EngineRunning as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        log.close()
        return 1
    except (OSError, SpoolError) as exc:
        print(f"relaybox: cannot start: {exc}", file=sys.stderr)
        log.close()
        return 1
    try:
        return await _run_app(InProcessLink(engine), config, config_dir, log)
    finally:
        # The terminal may be gone (a dropped SSH session): saying so must not keep the relay
        # from stopping.
        with contextlib.suppress(OSError, ValueError):
            print(
                "relaybox: stopping the relay (finishing transactions in flight)…", file=sys.stderr
            )
        try:
            await engine.stop()
        finally:
            log.close()


def ui_log(config: Config, log_format: str | None = None) -> MailLog:
    """The log of an engine run beside the UI: to its file (`[log] file`, or relaybox.log in
    the state directory) and the Log pane, never to the terminal the UI draws on. A file that
    cannot be written is said once (the Log pane, a notification); the relay runs on."""
    log_file = config.log.file or config.server.state_dir / LOG_NAME
    if config.log.file is None:
        with contextlib.suppress(OSError):  # (the engine's start says why it cannot)
            ensure_state_dir(config.server.state_dir)
    return setup_logging(
        fmt=log_format or config.log.format,
        level=config.log.level,
        file=log_file,
        stream=cast(TextIO, _Discard()),
        max_size=config.log.max_size,
        keep=config.log.keep,
        must_open=False,
    )


async def _run_app(
    link: EngineLink, config: Config, config_dir: Path | None, log: MailLog | None = None
) -> int:
    app = RelayboxApp(
        link,
        driver_class=SurvivingDriver,
        config_dir=config_dir,
        theme=config.ui.theme,
        deferred_warning=config.ui.deferred_warning,
        oldest_deferred_warning=config.ui.oldest_deferred_warning,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Ctrl+C reaches the UI as a key (it asks first); SIGTERM and SIGHUP end it at once.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if log is not None:  # logrotate moved the file (its default action would end the relay)
        loop.add_signal_handler(signal.SIGUSR1, log.reopen)
    ui = asyncio.create_task(app.run_async(), name="ui")
    watch = asyncio.create_task(_watch_terminal(stop), name="terminal-watch")
    try:
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ui, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        # A signal, or the terminal gone: ask the app to end until it does (a request made
        # while it is still starting up would be lost), and give up on it after 10 s.
        for _ in range(20):
            if ui.done():
                break
            app.exit(0)
            await asyncio.wait({ui}, timeout=0.5)
        if not ui.done():
            ui.cancel()
            await asyncio.wait({ui}, timeout=5)
    finally:
        watch.cancel()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
    if ui.done() and not ui.cancelled() and ui.exception() is not None:
        raise ui.exception()  # type: ignore[misc]
    return app.return_code or 0


async def _watch_terminal(stop: asyncio.Event) -> None:
    """Set `stop` when the terminal goes away (SSH dropped) even if the UI writes nothing:
    a hung-up tty answers its size query with an error."""
    fd = sys.__stdin__.fileno() if sys.__stdin__ is not None else 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        try:
            os.get_terminal_size(fd)
        except OSError:
            stop.set()


class _Discard(io.TextIOBase):
    """A stream that drops what is written (the log's stderr copy while the UI owns it)."""

    def write(self, text: str) -> int:
        return len(text)

    def writable(self) -> bool:
        return True
