"""The `relaybox` command: parse the arguments and hand the command to its family's module.

`parser` describes the arguments; `setup`, `doctor`, `run`, `reload`, `queue`, `show`,
`suppress` and `spool` do the commands. Exit codes: 0 success, 1 failure (or problems found),
2 usage or config errors; `doctor` has its own (see `cli.doctor`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from relaybox.admin.service import ACTIONS
from relaybox.cli import doctor, queue, setup
from relaybox.cli.common import EXIT_CONFIG, EXIT_FAIL, load_config, with_admin
from relaybox.cli.destinations import destinations
from relaybox.cli.parser import build_parser
from relaybox.cli.reload import reload
from relaybox.cli.run import run
from relaybox.cli.show import show
from relaybox.cli.spool import spool_check, spool_recover
from relaybox.cli.suppress import suppress

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `relaybox` console script."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # `relaybox queue | head`: the reader went away. Say nothing more (and keep Python from
        # complaining about stdout again at exit), as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    try:
        if command is None:
            return run(args)
        if command == "init":
            return setup.init(args)
        if command == "passwd":
            return setup.passwd(args)
        if command == "check-config":
            return setup.check_config_file(args)
        if command == "dkim":
            return setup.dkim_keygen(args)
        if command == "doctor":
            return doctor.doctor(args)
        if command == "reload":
            return reload(args)
        if command == "spool":
            return spool_check(args) if args.action == "check" else spool_recover(args)
        action = getattr(args, "action", None)
        if command == "queue" and action in ACTIONS:
            flt = queue.selection(args)  # a usage error exits before the config is read
        config = load_config(args, warn=False)  # (warned of at start, check-config, reload)
        if config is None:
            return EXIT_CONFIG
        if command == "queue":
            if action in ACTIONS:
                return with_admin(
                    config,
                    lambda admin, live: queue.queue_action(admin, live, action, flt, args),
                    write=True,
                )
            if action in ("suspend", "resume"):
                return with_admin(
                    config, lambda admin, live: queue.suspension(admin, args), write=True
                )
            if action == "destinations":
                return with_admin(config, lambda admin, live: destinations(admin, args))
            if action == "suspended":
                return with_admin(config, lambda admin, live: queue.suspended(admin, args))
            return with_admin(config, lambda admin, live: queue.queue_list(admin, args, sys.stdout))
        if command == "show":
            return with_admin(config, lambda admin, live: show(admin, args, sys.stdout))
        if command == "suppress":
            return with_admin(config, lambda admin, live: suppress(admin, args), write=True)
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {command}")
