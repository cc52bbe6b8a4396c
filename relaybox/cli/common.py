"""What every `relaybox` subcommand shares: exit codes, loading the config, printing times,
and running a job against the admin layer (the engine's socket, or the spool opened here).

It parses no arguments and prints no listing; the command families do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from relaybox.admin.client import AdminClient, ControlError
from relaybox.admin.connect import EngineUnreachable, attach, open_offline
from relaybox.config import Config, ConfigError, load_config_with_warnings
from relaybox.queue import SpoolError
from relaybox.statedir import EngineRunning
from relaybox.untrusted import visible

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DOCTOR_CONFIG",
    "EXIT_DOCTOR_ERROR",
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_USAGE",
    "REFUSED",
    "iso",
    "line_writer",
    "load_config",
    "with_admin",
]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONFIG = 2
EXIT_USAGE = 2  # as argparse exits on a usage error
# `relaybox doctor`'s own: 1 (EXIT_FAIL) a check failed, 2 a check could not be made, 3 the
# config does not load (a script tells "the DNS is wrong" from "the check could not run").
EXIT_DOCTOR_ERROR = 2
EXIT_DOCTOR_CONFIG = 3

# What the engine or the admin layer says when it refuses a request (an unknown destination,
# a bad address): printed as it is, exit 1.
REFUSED = (ValueError, ControlError)


def load_config(args: argparse.Namespace, *, warn: bool = True) -> Config | None:
    """The config, or None after saying what is wrong with it.

    Its warnings are printed only where an admin looks at the config as a whole (the
    engine's start, `check-config`, `doctor`, a reload), with `warn`; a listing or an action
    on mail run every minute by a script would otherwise repeat them each time.
    """
    try:
        config, warnings = load_config_with_warnings(args.config)
    except ConfigError as exc:
        print(f"relaybox: the configuration has problems:\n{exc}", file=sys.stderr)
        return None
    for warning in warnings if warn else ():
        print(f"warning: {warning}", file=sys.stderr)
    return config


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        # A time no calendar holds (an entry written before days were checked): say so.
        return f"{ts:g} (not a date)"


def line_writer(out: TextIO) -> Callable[[str], None]:
    """A function writing one line of a listing to `out`, made visible first.

    Listings are mostly strangers' text (HELO names, addresses, headers, transcripts, next
    hops' replies): control characters in it are shown as escapes (`relaybox.untrusted`), so
    an ESC sequence cannot clear the admin's screen or retitle the window. A tab (harmless)
    becomes four spaces so columns stay where they were.
    """

    def write(line: str) -> None:
        out.write(visible(line, tab="    ") + "\n")

    return write


def with_admin(
    config: Config,
    job: Callable[[AdminClient, bool], Awaitable[int]],
    *,
    write: bool = False,
) -> int:
    """Run `job(client, live)` against the admin layer of `config`'s state directory.

    While an engine runs there, `client` is its admin socket and `live` is True: the engine
    itself acts, at once. Otherwise `client` is an `Admin` over the spool, opened directly
    (reads never take the engine's lock; a `write` holds it, so no engine starts on the spool
    while it changes). A spool that does not exist yet is created (empty), so `relaybox queue`
    on a fresh machine says the queue is empty instead of failing.
    """

    async def go() -> int:
        try:
            attached = await attach(config.server.state_dir)
        except EngineUnreachable as exc:
            if write:
                print(f"relaybox: {exc}; nothing was changed", file=sys.stderr)
                return EXIT_FAIL
            print(f"relaybox: {exc}; reading the spool directly", file=sys.stderr)
            attached = None
        if attached is not None:
            try:
                return await job(attached.client.admin, True)
            except REFUSED as exc:
                print(f"relaybox: {visible(str(exc))}", file=sys.stderr)
                return EXIT_FAIL
            finally:
                await attached.client.close()
        try:
            offline = await open_offline(config, write=write)
        except EngineRunning as exc:
            # An engine (or another command's write) took the state directory meanwhile.
            print(f"relaybox: {exc}; nothing was changed", file=sys.stderr)
            return EXIT_FAIL
        except (SpoolError, OSError) as exc:
            print(f"relaybox: {exc}", file=sys.stderr)
            return EXIT_FAIL
        try:
            return await job(offline.admin, False)
        except (*REFUSED, SpoolError) as exc:
            # The admin layer's refusal (a bad reason, a recipient named to delete), as the
            # engine's socket would have said it; or a damaged file found while reading it:
            # said in words, never a traceback.
            print(f"relaybox: {visible(str(exc))}", file=sys.stderr)
            return EXIT_FAIL
        finally:
            await offline.close()

    return asyncio.run(go())
