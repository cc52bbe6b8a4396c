"""Running the relay: headless (`--headless`, or without a terminal) until a signal stops it,
or under the terminal UI (`relaybox.tui.run`, loaded only then).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from relaybox.cli.common import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, load_config
from relaybox.config import Config, default_config_path
from relaybox.engine import Engine
from relaybox.maillog import setup_logging
from relaybox.queue import SpoolError
from relaybox.queue.integrity import SpoolDamaged
from relaybox.statedir import EngineRunning

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """`relaybox` with no subcommand: the relay, with the UI when there is a terminal."""
    config = load_config(args)
    if config is None:
        return EXIT_CONFIG
    if not args.headless:
        if sys.stdin.isatty() and sys.stdout.isatty():
            return _ui(args, config)
        print(
            "relaybox: no terminal for the UI (stdin or stdout is not a tty); running headless "
            "(Ctrl+C stops)",
            file=sys.stderr,
        )
    fmt = args.log_format or config.log.format
    try:
        # With a file, the log goes there instead of stderr (as Postfix's maillog_file
        # replaces syslog); without one, to stderr, which systemd hands to journald.
        log = setup_logging(
            fmt=fmt,
            level=config.log.level,
            file=config.log.file,
            max_size=config.log.max_size,
            keep=config.log.keep,
            stream_too=False,
        )
    except OSError as exc:
        # A planted link is refused (O_NOFOLLOW) rather than written through.
        print(f"relaybox: cannot open the log file {config.log.file}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        return asyncio.run(_serve(config, log))
    finally:
        log.close()


def _ui(args: argparse.Namespace, config: Config) -> int:
    """The terminal UI: attached to the engine running on this state dir, or over one started
    here, in this event loop (quitting the UI then stops it)."""
    from relaybox.tui.run import run_ui  # Textual loads only for the UI

    config_dir = (args.config or default_config_path()).parent
    return run_ui(config, config_dir=config_dir, log_format=args.log_format)


async def _serve(config: Config, log: Any) -> int:
    engine = Engine(config, log)
    try:
        await engine.start()
    except EngineRunning as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (OSError, SpoolError) as exc:
        hint = (
            f" --config {config.source}" if isinstance(exc, SpoolDamaged) and config.source else ""
        )
        print(f"relaybox: cannot start: {exc}{hint}", file=sys.stderr)
        return EXIT_FAIL
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, log.reopen)
    # SIGHUP reloads the config (systemd's ExecReload); its default action would kill the
    # relay. The outcome is in the engine's log, the only output a signal has.
    reloads: set[asyncio.Task[object]] = set()

    def reload() -> None:
        task = asyncio.create_task(engine.reload_config("signal"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stopping.wait()
    finally:
        # A second SIGTERM or Ctrl+C during the graceful stop ends the process at once. SIGUSR1
        # keeps its handler until the end: its default action would kill the relay while it
        # finishes transactions in flight, just because logrotate ran.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        try:
            await engine.stop()
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
            loop.remove_signal_handler(signal.SIGHUP)
    return EXIT_OK
