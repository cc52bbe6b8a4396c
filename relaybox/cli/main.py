"""The `relaybox` command: run the relay, and the admin subcommands that work beside it.

Parsing arguments and printing results is all this module does; the work is `engine`'s,
`admin`'s and `health`'s. Exit codes: 0 success, 1 failure (or problems found), 2 usage or
config errors; `doctor` has its own (see `_doctor`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO, TypeVar

import tomlkit

from relaybox import __version__
from relaybox.admin.control import AdminClient, ControlClient, ControlError
from relaybox.admin.service import ACTIONS, UNTIL_RESUMED, Admin, suppression_days_problem
from relaybox.config import (
    Config,
    ConfigError,
    check_config,
    check_user_name,
    default_config,
    default_config_path,
    load_config_with_warnings,
    sample_config_text,
)
from relaybox.config.keys import check_domain as check_dkim_domain
from relaybox.config.keys import check_selector, normalize_algorithm
from relaybox.config.passwords import hash_password
from relaybox.engine import Engine
from relaybox.health import Finding, check_domains, resolver_for, sending_domains, worst
from relaybox.inbound.certificates import generate_self_signed
from relaybox.maillog import setup_logging
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import (
    ALL_STATES,
    UNFINISHED_STATES,
    MessageDetail,
    MessageFilter,
    Spool,
    SpoolError,
)
from relaybox.signing.keys import dns_record as dkim_dns_record
from relaybox.signing.keys import generate as generate_dkim_key
from relaybox.signing.keys import write_private_key as write_dkim_key
from relaybox.statedir import (
    DATABASE_NAME,
    SOCKET_NAME,
    EngineRunning,
    ensure_state_dir,
    running_engine_pid,
)

__all__ = ["main"]

T = TypeVar("T")

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
_REFUSED = (ValueError, ControlError)

_DONE = {
    "retry": "retried",
    "hold": "held",
    "release": "released",
    "delete": "deleted",
    "bounce": "bounced",
}
_WHY_NOT = {
    "retry": "no such message, or nothing in it waits for delivery",
    "hold": "no such message, or nothing in it waits for delivery",
    "release": "no such message, or nothing in it is held",
    "delete": "no such message",
    "bounce": (
        "no such message, nothing in it is left to bounce, or it is being delivered right "
        "now (try again in a moment)"
    ),
}
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
            "[dns] resolvers. Exit status: 0 nothing failed (warnings allowed), 1 a check "
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
        a = qsub.add_parser(action, help=_ACTION_HELP[action], description=_ACTION_HELP[action])
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
        help="deliver to a suspended destination again",
        description="Lift a suspension and retry the mail it deferred at once.",
    )
    a.add_argument("destination", metavar="DESTINATION")
    _add_config(a)
    a = qsub.add_parser("suspended", help="list the suspended destinations")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
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
            return _run(args)
        if command == "init":
            return _init(args)
        if command == "passwd":
            return _passwd(args)
        if command == "check-config":
            return _check_config(args)
        if command == "dkim":
            return _dkim_keygen(args)
        if command == "doctor":
            return _doctor(args)
        action = getattr(args, "action", None)
        if command == "queue" and action in ACTIONS:
            flt = _selection(args)  # a usage error exits before the config is read
        config = _load(args)
        if config is None:
            return EXIT_CONFIG
        if command == "queue":
            if action in ACTIONS:
                return _with_admin(
                    config,
                    lambda admin, live: _queue_action(admin, live, action, flt, args),
                    write=True,
                )
            if action in ("suspend", "resume"):
                return _with_admin(config, lambda admin, live: _suspension(admin, args), write=True)
            if action == "suspended":
                return _with_admin(config, lambda admin, live: _suspended(admin, args))
            return _with_admin(config, lambda admin, live: _queue(admin, args, sys.stdout))
        if command == "show":
            return _with_admin(config, lambda admin, live: _show(admin, args, sys.stdout))
        if command == "suppress":
            return _with_admin(config, lambda admin, live: _suppress(admin, args), write=True)
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {command}")


# ---------------------------------------------------------------------- config


def _load(args: argparse.Namespace) -> Config | None:
    try:
        config, warnings = load_config_with_warnings(args.config)
    except ConfigError as exc:
        print(f"relaybox: the configuration has problems:\n{exc}", file=sys.stderr)
        return None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def _init(args: argparse.Namespace) -> int:
    """Write the sample config, with STARTTLS on the default listener using a fresh self-signed
    certificate (as Debian's Postfix ships its snakeoil certificate), so TLS works at once."""
    path: Path = args.config or default_config_path()
    if path.exists() and not args.force:
        print(f"relaybox: {path} already exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_FAIL
    path.parent.mkdir(parents=True, exist_ok=True)
    tls_dir = path.parent / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    if not (cert.exists() and key.exists()):
        hostname = default_config().server.hostname
        generate_self_signed(hostname, cert, key)
        print(f"wrote a self-signed certificate for {hostname}: {cert} (key {key})")
    _write_private(path, _with_starttls(sample_config_text(), cert, key))
    print(f"wrote {path}")
    print(f"check it with: relaybox check-config {path}")
    return EXIT_OK


def _with_starttls(sample: str, cert: Path, key: str | Path) -> str:
    """The sample config with the first listener's TLS lines filled in, comments and all."""
    head, marker, listeners = sample.partition("[[listeners]]")
    replacements = [
        ('tls = "none"', 'tls = "starttls"'),
        ('# certificate = "/etc/relaybox/tls/cert.pem"', f"certificate = {json.dumps(str(cert))}"),
        ('# private_key = "/etc/relaybox/tls/key.pem"', f"private_key = {json.dumps(str(key))}"),
    ]
    for old, new in replacements:
        if f"\n{old}\n" not in listeners:
            raise RuntimeError(f"sample-config.toml no longer has the line {old!r}")
        listeners = listeners.replace(f"\n{old}\n", f"\n{new}\n", 1)
    return head + marker + listeners


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) so that a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_password(user: str) -> str | None:
    """From the terminal (asked twice), or one line from standard input (scripts, pipes)."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"Password for {user}: ")
        if getpass.getpass("Again: ") != first:
            print("relaybox: the two passwords differ; nothing was printed", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _passwd(args: argparse.Namespace) -> int:
    problem = check_user_name(args.user)
    if problem:
        print(f"relaybox: user name {args.user!r} {problem}", file=sys.stderr)
        return EXIT_FAIL
    password = _read_password(args.user)
    if password is None:
        return EXIT_FAIL
    if not password:
        print("relaybox: the password is empty; nothing was printed", file=sys.stderr)
        return EXIT_FAIL
    block = tomlkit.document()
    table = tomlkit.table()
    table["name"] = args.user
    table["password_hash"] = hash_password(password)
    senders = tomlkit.array()
    senders.comment('domains or addresses this user may send as, e.g. ["example.org"]')
    table["allowed_senders"] = senders
    block.append("users", tomlkit.aot())
    block["users"].append(table)
    print("# paste into the relaybox config, then: relaybox check-config")
    print(tomlkit.dumps(block).strip())
    return EXIT_OK


def _dkim_keygen(args: argparse.Namespace) -> int:
    """`relaybox dkim keygen`: a key file, its DNS record and the block for the config."""
    try:
        algorithm = normalize_algorithm(args.algorithm)
    except ValueError as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    domain = args.domain.strip().lower().rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # check_domain says what is wrong
    selector = args.selector.strip().lower()
    problem = check_dkim_domain(domain) or check_selector(selector)
    if problem is None and algorithm == "ed25519-sha256" and args.bits != 2048:
        problem = "--bits is for RSA keys; an ed25519 key has no size to choose"
    if problem:
        print(f"relaybox: {problem}", file=sys.stderr)
        return EXIT_USAGE
    path: Path = args.out or (
        (args.config or default_config_path()).parent / "dkim" / f"{domain}.{selector}.key"
    )
    path = path.expanduser().absolute()
    if path.exists():
        print(f"relaybox: {path} already exists; choose another --out or selector", file=sys.stderr)
        return EXIT_FAIL
    try:
        key = generate_dkim_key(algorithm, args.bits)
    except ValueError as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        write_dkim_key(key, path)
    except OSError as exc:
        print(f"relaybox: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"# wrote the private key to {path} (readable by you only)")
    print("# publish this DNS record (one TXT record; the quoted parts are joined):")
    print(dkim_dns_record(domain, selector, key))
    print("# and paste this into the relaybox config, then: relaybox check-config")
    block = tomlkit.document()
    table = tomlkit.table()
    table["domain"] = domain
    table["selector"] = selector
    table["private_key"] = str(path)
    table["algorithm"] = algorithm
    block.append("dkim", tomlkit.aot())
    block["dkim"].append(table)
    print(tomlkit.dumps(block).strip())
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    """`relaybox doctor`: the domain health findings, for people or (--json) for scripts."""
    config = _load(args)
    if config is None:
        return EXIT_DOCTOR_CONFIG
    domains: list[str] = []
    for name in args.domains:
        domain = name.strip().lower().rstrip(".")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # check_dkim_domain says what is wrong
        problem = check_dkim_domain(domain)
        if problem:
            print(f"relaybox: {problem}", file=sys.stderr)
            return EXIT_USAGE
        domains.append(domain)
    domains = domains or sending_domains(config)
    if not domains:
        # Nothing was checked, so nothing can be said to be fine: exit as "could not check".
        print(
            "relaybox: no sending domains to check: the config has no [[dkim]] blocks and no "
            "[[users]] with allowed_senders. Name the domains: relaybox doctor example.org",
            file=sys.stderr,
        )
        if args.json:
            print("[]")
        return EXIT_DOCTOR_ERROR
    findings = asyncio.run(check_domains(config, resolver_for(config), domains))
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=2))
    else:
        _print_findings(findings, sys.stdout)
    status = worst([f.status for f in findings])
    return {"fail": EXIT_FAIL, "error": EXIT_DOCTOR_ERROR}.get(status, EXIT_OK)


def _print_findings(findings: Sequence[Finding], out: TextIO) -> None:
    """One line per finding (status, check, summary), the record to publish on the next;
    grouped by domain, with a count at the end."""
    domain = None
    for finding in findings:
        if finding.domain != domain:
            out.write(f"{'' if domain is None else chr(10)}{finding.domain}\n")
            domain = finding.domain
        what = finding.check + "".join(f" {x}" for x in (finding.selector, finding.ip) if x)
        out.write(f"  {finding.status.upper():<5}  {what}: {finding.summary}\n")
        if finding.fix:
            out.write(f"         fix: {finding.fix}\n")
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("fail", "error", "warn")}
    domains = len({f.domain for f in findings})
    out.write(
        f"\n{domains} domain{'s' if domains != 1 else ''} checked: {counts['fail']} failed, "
        f"{counts['error']} could not be checked, {counts['warn']} "
        f"warning{'s' if counts['warn'] != 1 else ''}\n"
    )


def _check_config(args: argparse.Namespace) -> int:
    path: Path | None = args.path or args.config
    if path is None and not default_config_path().exists():
        print(f"no config file at {default_config_path()}: the embedded default is used")
        print("ok")
        return EXIT_OK
    errors, warnings = check_config(path)
    for problem in errors:
        print(problem)
    for warning in warnings:
        print(_as_warning(str(warning)))
    if errors:
        return EXIT_FAIL
    print("ok")
    return EXIT_OK


def _as_warning(line: str) -> str:
    """`file:line: key: text` -> `file:line: key: warning: text`."""
    head, sep, text = line.rpartition(": ")
    return f"{head}{sep}warning: {text}" if sep else f"warning: {line}"


# ---------------------------------------------------------------------- run


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
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
    log = setup_logging(fmt=fmt, level=config.log.level, file=config.log.file)
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
        print(f"relaybox: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, log.reopen)
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
    return EXIT_OK


# ---------------------------------------------------------------------- admin commands


def _with_admin(
    config: Config,
    job: Callable[[AdminClient, bool], Awaitable[int]],
    *,
    write: bool = False,
) -> int:
    """Run `job(client, live)` against the admin layer of `config`'s state directory.

    While an engine runs there, `client` is its admin socket and `live` is True: the engine
    itself acts, at once. Otherwise `client` is an `Admin` over the spool, opened directly
    (reads never take the engine's lock). A spool that does not exist yet is created (empty),
    so `relaybox queue` on a fresh machine says the queue is empty instead of failing.
    """

    async def go() -> int:
        state_dir = config.server.state_dir
        pid = running_engine_pid(state_dir)
        if pid is not None:
            try:
                client = await ControlClient.connect(state_dir / SOCKET_NAME)
            except (OSError, TimeoutError) as exc:
                if running_engine_pid(state_dir) is not None:
                    who = f"pid {pid}" if pid > 0 else "an engine"
                    problem = (
                        f"relaybox: the engine ({who}) runs on {state_dir} but its admin "
                        f"socket does not answer ({exc})"
                    )
                    if write:
                        print(f"{problem}; nothing was changed", file=sys.stderr)
                        return EXIT_FAIL
                    print(f"{problem}; reading the spool directly", file=sys.stderr)
                # else it stopped meanwhile: the spool is all there is.
            else:
                try:
                    return await job(client, True)
                except ControlError as exc:
                    print(f"relaybox: {exc}", file=sys.stderr)
                    return EXIT_FAIL
                finally:
                    await client.close()
        path = state_dir / DATABASE_NAME
        try:
            if write or not path.exists():
                await asyncio.to_thread(ensure_state_dir, config.server.state_dir)
                spool = await Spool.open(path)
            else:
                spool = await Spool.open_for_reading(path)
        except (SpoolError, OSError) as exc:
            print(f"relaybox: {exc}", file=sys.stderr)
            return EXIT_FAIL
        try:
            return await job(Admin(spool, config=lambda: config), False)
        finally:
            await spool.close()

    return asyncio.run(go())


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        # A time no calendar holds (an entry written before days were checked): say so.
        return f"{ts:g} (not a date)"


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


def _selection(args: argparse.Namespace) -> MessageFilter:
    """The messages `relaybox queue ACTION` acts on; a usage error (exit 2) when unclear."""
    ids = [q.strip().upper() for q in args.queue_ids]
    if args.every and (ids or args.domain or args.state):
        args.usage_error("--all is every unfinished message: leave out IDs, --domain, --state")
    if ids and (args.domain or args.state):
        args.usage_error("give queue IDs, or --domain and --state, not both")
    recipients = tuple(getattr(args, "recipient", ()))
    if args.every and recipients:
        args.usage_error("--all is every unfinished message: leave out --recipient")
    if ids:
        # Named messages are found in any state (a delivered one can still be deleted).
        return MessageFilter(states=(), queue_ids=tuple(ids), recipients=recipients)
    if args.every:
        return MessageFilter()
    if not (args.domain or args.state or recipients):
        args.usage_error(
            f"say which messages to {args.action}: ID..., --all, --domain D, --state S"
            " or --recipient ADDR"
        )
    return MessageFilter(
        states=(args.state,) if args.state else UNFINISHED_STATES,
        domain=args.domain or "",
        recipients=recipients,
    )


async def _queue_action(
    admin: AdminClient, live: bool, action: str, flt: MessageFilter, args: argparse.Namespace
) -> int:
    if action == "bounce":
        touched = await admin.bounce(flt, args.reason)
    else:
        touched = await getattr(admin, action)(flt)
    done = _DONE[action]
    named = list(dict.fromkeys(flt.queue_ids))
    order = named if named else sorted(touched)
    changed = set(touched)
    for queue_id in order:
        if queue_id in changed:
            print(f"{queue_id}: {done}")
    missed = [q for q in named if q not in changed]
    for queue_id in missed:
        print(f"relaybox: {queue_id}: not {done}: {_WHY_NOT[action]}", file=sys.stderr)
    n = len(changed)
    summary = f"{n} message{'s' if n != 1 else ''} {done}"
    if n and not live and action in ("retry", "release", "bounce"):
        summary += " (no engine is running: the next one to start sends the mail)"
    print(summary)
    return EXIT_FAIL if missed else EXIT_OK


def _until(ts: float) -> str:
    return "until resumed" if ts >= UNTIL_RESUMED else f"until {_iso(ts)}"


async def _suspension(admin: AdminClient, args: argparse.Namespace) -> int:
    try:
        if args.action == "suspend":
            key, until = await admin.suspend(args.destination, args.seconds, args.reason)
            print(f"suspended {key} {_until(until)}: its mail is deferred, not bounced")
            return EXIT_OK
        if await admin.resume(args.destination):
            print(f"resumed {args.destination}: its deferred mail is retried now")
            return EXIT_OK
    except _REFUSED as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"relaybox: {args.destination} was not suspended", file=sys.stderr)
    return EXIT_FAIL


async def _suspended(admin: AdminClient, args: argparse.Namespace) -> int:
    found = sorted((await admin.suspended()).items())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "destination": key,
                        "until": None if until >= UNTIL_RESUMED else _iso(until),
                        "reason": reason,
                    }
                    for key, (until, reason) in found
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not found:
        print("No destination is suspended")
    for key, (until, reason) in found:
        print(f"{key}  {_until(until)}  {reason}")
    return EXIT_OK


async def _queue(admin: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    flt = MessageFilter(states=() if args.all else UNFINISHED_STATES)
    rows = await admin.list_all(flt)
    recipients = await admin.recipients_of([r.id for r in rows]) if rows else {}
    if args.json:
        json.dump(
            [
                {
                    "queue_id": r.queue_id,
                    "arrived_at": _iso(r.arrived_at),
                    "sender": r.sender,
                    "size": r.size,
                    "state": r.state,
                    "attempts": r.attempts,
                    "next_attempt_at": _iso(r.next_attempt_at),
                    "last_reply": r.last_reply,
                    "recipients": [
                        {
                            "address": rc.address,
                            "state": rc.state,
                            "attempts": rc.attempts,
                            "next_attempt_at": _iso(rc.next_attempt_at),
                            "last_reply": rc.last_reply,
                        }
                        for rc in recipients.get(r.id, [])
                    ],
                }
                for r in rows
            ],
            out,
            indent=2,
        )
        out.write("\n")
        return EXIT_OK
    if not rows:
        out.write("Mail queue is empty\n")
        return EXIT_OK
    # The layout of Postfix's mailq, so admins read it without thinking.
    out.write("-Queue ID-     --Size-- ----Arrival Time---- -Sender/Recipient-------\n")
    marks = {"active": "*", "held": "!"}
    total = 0
    for r in rows:
        total += r.size
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(r.arrived_at))
        qid = r.queue_id + marks.get(r.state, "")
        out.write(f"{qid:<14} {r.size:>8} {arrival}  {r.sender or 'MAILER-DAEMON'}\n")
        for rc in recipients.get(r.id, []):
            if rc.last_reply and rc.state not in ("delivered",):
                out.write(f"{'':<45}({rc.last_reply})\n")
            out.write(f"{'':<45}{rc.address}\n")
        out.write("\n")
    n = len(rows)
    out.write(f"-- {(total + 1023) // 1024} Kbytes in {n} Request{'s' if n != 1 else ''}.\n")
    return EXIT_OK


def _detail_json(detail: MessageDetail) -> dict[str, Any]:
    row = asdict(detail.row)
    row.pop("id")
    row["arrived_at"] = _iso(detail.row.arrived_at)
    row["next_attempt_at"] = _iso(detail.row.next_attempt_at)
    return {
        **row,
        "recipients": [
            {
                **asdict(rc),
                "next_attempt_at": _iso(rc.next_attempt_at),
                "updated_at": _iso(rc.updated_at),
            }
            for rc in detail.recipients
        ],
        "client": {
            "ip": detail.client_ip,
            "port": detail.client_port,
            "helo": detail.helo,
            "listener": detail.listener,
            "auth_user": detail.auth_user,
            "tls": detail.tls,
        },
        "session_id": detail.session_id,
        "body_8bit": detail.body_8bit,
        "smtputf8": detail.smtputf8,
        "headers": [[k, v] for k, v in detail.headers],
        "inbound_transcript": _lines_json(detail.inbound_transcript),
        "is_bounce": detail.is_bounce,
        "attempts": [
            {
                "started_at": _iso(a.started_at),
                "finished_at": _iso(a.finished_at),
                "destination": a.destination,
                "host": a.host,
                "ip": a.ip,
                "port": a.port,
                "tls": a.tls,
                "recipients": list(a.recipients),
                "outcome": a.outcome,
                "reply": a.reply,
                "transcript": _lines_json(a.transcript),
            }
            for a in detail.attempts
        ],
    }


def _lines_json(lines: Sequence[TranscriptLine]) -> list[dict[str, Any]]:
    return [{"at": _iso(line.at), "direction": line.direction, "text": line.text} for line in lines]


def _write_transcript(
    w: Callable[[str], object], lines: Sequence[TranscriptLine], indent: str
) -> None:
    for line in lines:
        stamp = (
            time.strftime("%H:%M:%S", time.localtime(line.at))
            + f".{int(line.at * 1000) % 1000:03d}"
        )
        arrow = {"C": "C:", "S": "S:", "-": "--"}.get(line.direction, line.direction)
        w(f"{indent}{stamp} {arrow} {line.text}\n")


async def _show(admin: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    detail = await admin.show(args.queue_id)
    if detail is None:
        print(f"relaybox: no message with queue ID {args.queue_id}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        json.dump(_detail_json(detail), out, indent=2)
        out.write("\n")
        return EXIT_OK
    r = detail.row
    w = out.write
    w(f"Queue ID:   {r.queue_id}\n")
    w(f"State:      {r.state}\n")
    w(f"Arrived:    {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(r.arrived_at))}\n")
    w(
        f"Size:       {r.size} bytes{' (8-bit)' if detail.body_8bit else ''}"
        f"{' SMTPUTF8' if detail.smtputf8 else ''}\n"
    )
    w(f"Sender:     <{r.sender}>\n")
    w(
        f"Client:     [{detail.client_ip}]:{detail.client_port} helo={detail.helo}"
        f" listener={detail.listener}\n"
    )
    w(f"Auth:       {detail.auth_user or '-'}    TLS: {detail.tls or 'none'}\n")
    w("Recipients:\n")
    for rc in detail.recipients:
        extra = f"  attempts={rc.attempts}" if rc.attempts else ""
        reply = f"  {rc.last_reply}" if rc.last_reply else ""
        w(f"  {rc.address:<40} {rc.state}{extra}{reply}\n")
    w("\nHeaders:\n")
    for key, value in detail.headers:
        # A folded header keeps its CRLFs in the store; print each fold as a line of its own.
        folded = "\n  ".join(value.split("\r\n"))
        w(f"  {key}: {folded}\n")
    w(f"\nInbound session {detail.session_id}:\n")
    _write_transcript(w, detail.inbound_transcript, "  ")
    if not detail.attempts:
        w("\nDelivery attempts: none yet\n")
        return EXIT_OK
    # Every attempt in order, as it happened: why a message is stuck is in these lines.
    for n, a in enumerate(detail.attempts, 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(a.started_at))
        took = max(0.0, a.finished_at - a.started_at)
        w(f"\nDelivery attempt {n}: {when} ({took:.1f} s) to {a.destination}: {a.outcome}\n")
        if a.host or a.ip:
            port = f":{a.port}" if a.port else ""
            w(f"  Host:       {a.host or '-'} [{a.ip or '-'}]{port}    TLS: {a.tls or 'none'}\n")
        w(f"  Recipients: {', '.join(a.recipients)}\n")
        if a.reply:
            w(f"  Reply:      {a.reply}\n")
        _write_transcript(w, a.transcript, "  ")
    return EXIT_OK


async def _suppress(admin: AdminClient, args: argparse.Namespace) -> int:
    if args.action == "add":
        try:
            address = await admin.suppress_add(args.address, args.reason, args.days)
        except _REFUSED as exc:
            print(f"relaybox: {exc}", file=sys.stderr)
            return EXIT_FAIL
        print(
            f"suppressed {address}: mail to it is refused at RCPT (a running engine picks "
            "this up within 5 seconds)"
        )
        return EXIT_OK
    if args.action == "remove":
        if await admin.suppress_remove(args.address):
            print(f"removed {args.address.lower()}")
            return EXIT_OK
        print(f"relaybox: {args.address} is not on the suppression list", file=sys.stderr)
        return EXIT_FAIL
    rows = await admin.suppress_list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "address": r.address,
                        "reason": r.reason,
                        "created_at": _iso(r.created_at),
                        "expires_at": _iso(r.expires_at),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("The suppression list is empty")
    for r in rows:
        expires = f" expires {_iso(r.expires_at)}" if r.expires_at else ""
        print(f"{r.address}  since {_iso(r.created_at)}{expires}  {r.reason}")
    return EXIT_OK
