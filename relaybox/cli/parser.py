"""The `relaybox` command line: every subcommand, its arguments and its help text.

It only describes the arguments (and checks durations and day counts as they are parsed);
`main` sends the parsed command to its family's module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from relaybox import __version__
from relaybox.admin.service import ACTIONS, suppression_days_problem
from relaybox.config import default_config_path
from relaybox.queue import ALL_STATES

__all__ = ["build_parser"]

_ACTION_HELP = {
    "retry": "try delivery now (queued and deferred recipients are due at once)",
    "hold": "keep messages from delivery until released",
    "release": "deliver held messages now",
    "delete": "remove messages, with no bounce and no confirmation (each is printed)",
    "bounce": "fail every undelivered recipient now and send the sender a bounce (DSN)",
}


def _add_config(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Only the top-level parser has a default: argparse copies every default of a subparser
    # over what the parent parsed, so a subparser default would silently discard the PATH of
    # `relaybox --config PATH queue`.
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=None if top else argparse.SUPPRESS,
        help=f"config file (default: {default_config_path()}; without it, the embedded default)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `relaybox` command and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="relaybox",
        description="relaybox: an SMTP relay with a durable spool and a terminal UI.",
    )
    parser.add_argument("--version", action="version", version=f"relaybox {__version__}")
    _add_config(parser, top=True)
    parser.add_argument(
        "--headless", action="store_true", help="run the relay without the terminal UI"
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log format (overrides [log] format)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "init",
        help="write the commented sample config and a self-signed TLS certificate",
    )
    _add_config(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = sub.add_parser("passwd", help="hash a password and print a [[users]] block to paste")
    p.add_argument("user", metavar="USER", help="the login name")
    _add_config(p)

    p = sub.add_parser("dkim", help="DKIM keys: keygen writes one and prints its DNS record")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    k = dsub.add_parser(
        "keygen",
        help="write a new DKIM private key; print the DNS record and the [[dkim]] block",
        description=(
            "Write a new DKIM private key (mode 0600), print the DNS record to publish (one "
            "zone-file line) and the [[dkim]] block to paste into the config."
        ),
    )
    k.add_argument("domain", metavar="DOMAIN", help="the sending domain, like example.org")
    k.add_argument("--selector", required=True, help="the selector, like s2026")
    k.add_argument(
        "--algorithm",
        default="rsa-sha256",
        help="rsa-sha256 (or rsa; the default) or ed25519-sha256 (or ed25519)",
    )
    k.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    k.add_argument(
        "--out",
        type=Path,
        help="where to write the key (default: dkim/DOMAIN.SELECTOR.key beside the config)",
    )
    _add_config(k)
    p = sub.add_parser(
        "doctor",
        help="check the sending domains' SPF, DKIM, DMARC, MX and reverse DNS",
        description=(
            "Check the DNS records receivers judge mail by (SPF, DKIM, DMARC, MX, reverse DNS "
            "of [delivery] outbound_ips, MTA-STS, TLS-RPT) for each DOMAIN, or for every "
            "sending domain of the config (its [[dkim]] domains and its users' allowed "
            "senders), and print the record to publish where one is wrong. Lookups go to "
            "[dns] resolvers. It also checks the state directory as the engine would at start "
            "(owner, mode, planted links, a lost or replaced spool) and says what is wrong on "
            "stderr, as a failure. Exit status: 0 nothing failed (warnings allowed), 1 a check "
            "failed, 2 none failed but one could not be made (DNS error or timeout) or there "
            "was no domain to check, 3 the config does not load."
        ),
    )
    p.add_argument(
        "domains",
        nargs="*",
        metavar="DOMAIN",
        help="domains to check (default: every sending domain of the config)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON list of findings")
    _add_config(p)

    p = sub.add_parser(
        "reload",
        help="make the running relaybox read its config file again (as SIGHUP does) and wait",
        description=(
            "Ask the running engine to read its config file again, and wait until the new "
            "config is in force (prints the generation and what changed, exit 0) or refused "
            "(prints every problem as file:line: key: message, exit 1; the old config keeps "
            "serving). --config must name the file the engine was started with."
        ),
    )
    _add_config(p)

    p = sub.add_parser("check-config", help="validate a config file and print its problems")
    p.add_argument("path", nargs="?", type=Path, metavar="PATH", help="file to check")
    _add_config(p)

    p = sub.add_parser(
        "queue",
        help="list messages not yet finished, as mailq does; or act on them",
        usage=(
            "relaybox queue [--json] [--all] [--config PATH]\n"
            "       relaybox queue retry|hold|release|delete|bounce"
            " (ID... | --all | --domain D | --state S) [--config PATH]\n"
            "       relaybox queue suspend DESTINATION [--for SECONDS] [--reason TEXT]\n"
            "       relaybox queue resume DESTINATION\n"
            "       relaybox queue suspended [--json]"
        ),
        description=(
            "Without an action: list the messages not yet finished, laid out like Postfix's "
            "mailq. With one: act on the messages chosen by queue IDs, --all, --domain or "
            "--state. While an engine runs, this goes through its admin socket and the engine "
            "acts at once; without one, the spool is changed directly."
        ),
    )
    _add_config(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--all", action="store_true", help="include finished messages still kept for viewing"
    )
    qsub = p.add_subparsers(dest="action", metavar="ACTION")
    for action in ACTIONS:
        a = qsub.add_parser(
            action,
            prog=f"relaybox queue {action}",
            help=_ACTION_HELP[action],
            description=_ACTION_HELP[action],
        )
        a.add_argument("queue_ids", nargs="*", metavar="ID", help="queue IDs of the messages")
        a.add_argument(
            "--all", dest="every", action="store_true", help="every message not yet finished"
        )
        a.add_argument(
            "--domain",
            metavar="D",
            help="messages with a recipient at domain D"
            + ("" if action == "delete" else "; only those recipients are acted on"),
        )
        if action != "delete":
            a.add_argument(
                "--recipient",
                metavar="ADDR",
                action="append",
                default=[],
                help="act on this recipient only (repeatable); with IDs, of those messages",
            )
        a.add_argument(
            "--state",
            metavar="S",
            choices=ALL_STATES,
            help=f"messages in state S ({', '.join(ALL_STATES)}); with --domain, both must hold",
        )
        if action == "bounce":
            a.add_argument("--reason", default="", help="added to the reply the sender sees")
        _add_config(a)
        a.set_defaults(usage_error=a.error)
    a = qsub.add_parser(
        "suspend",
        prog="relaybox queue suspend",
        help="defer all mail to a destination for a time",
        description=(
            "Defer (never bounce) all mail to DESTINATION until resumed or for SECONDS. "
            "DESTINATION is a domain (the destination its mail is routed to: mx:DOMAIN, or "
            "the whole smart host when a smarthost route takes it) or a destination as "
            "`relaybox show` names it, such as mx:example.org or "
            "smarthost:smtp.example.net:587."
        ),
    )
    a.add_argument("destination", metavar="DESTINATION")
    a.add_argument(
        "--for",
        dest="seconds",
        type=_duration,
        metavar="SECONDS",
        help="how long: seconds, or with a unit (90s, 30m, 2h, 1d); default: until resumed",
    )
    a.add_argument("--reason", default="", help="recorded with the mail it defers")
    _add_config(a)
    a = qsub.add_parser(
        "resume",
        prog="relaybox queue resume",
        help="deliver to a suspended destination again",
        description="Lift a suspension and retry the mail it deferred at once.",
    )
    a.add_argument("destination", metavar="DESTINATION")
    _add_config(a)
    a = qsub.add_parser(
        "destinations",
        prog="relaybox queue destinations",
        help="unfinished mail by next hop, with counts, ages and the causes (as qshape)",
    )
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_config(a)

    a = qsub.add_parser(
        "suspended", prog="relaybox queue suspended", help="list the suspended destinations"
    )
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_config(a)

    p = sub.add_parser(
        "spool",
        help="check the spool file, or save what can be read of a damaged one",
        description=(
            "The spool file (state_dir/spool.db): check it, or recover a damaged one. The "
            "engine checks it at every start and refuses a damaged one, saying so."
        ),
    )
    _add_config(p)
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = psub.add_parser(
        "check",
        help="is the spool whole and this state directory's? ok (exit 0) or what is wrong (1)",
        description=(
            "Read the whole spool file (SQLite's quick_check) and compare its identity with "
            "state_dir/spool.id; also checks the state directory's owner and mode and that no "
            "spool file is a symbolic link. Runs beside an engine (it only reads)."
        ),
    )
    _add_config(a)
    a = psub.add_parser(
        "recover",
        help="rebuild a damaged spool from what can be read; the damaged file is kept aside",
        description=(
            "With no engine running: read what can be read of the damaged spool (the sqlite3 "
            "shell's .recover where it has one, else row by row), build a new spool of the "
            "messages that are whole, keep the damaged file as spool.db.damaged-TIME, put the "
            "new one in its place, check it, and say how many messages and recipients were "
            "saved and lost."
        ),
    )
    a.add_argument(
        "--force", action="store_true", help="rebuild even when quick_check finds nothing wrong"
    )
    _add_config(a)

    p = sub.add_parser("show", help="show one message: envelope, headers, transcripts")
    p.add_argument("queue_id", metavar="ID")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("suppress", help="the suppression list: recipients refused at RCPT")
    _add_config(p)
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = ssub.add_parser("add", help="refuse mail to an address")
    a.add_argument("address")
    a.add_argument("--reason", default="added by an admin", help="shown in the 550 reply")
    a.add_argument(
        "--days", type=_days, help="expire after this many days, at most 3650 (default: never)"
    )
    _add_config(a)
    r = ssub.add_parser("remove", help="accept mail to an address again")
    r.add_argument("address")
    _add_config(r)
    ls = ssub.add_parser("list", help="list suppressed addresses")
    ls.add_argument("--json", action="store_true")
    _add_config(ls)
    return parser


def _days(text: str) -> float:
    """A suppression entry's life in days (for argparse)."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    problem = suppression_days_problem(days)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return days


def _duration(text: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `1d` -> seconds (for argparse)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = float(number) * units[unit.lower()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90, 30m or 2h") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be more than 0")
    return seconds
