"""Setting relaybox up: `init` (sample config and certificate), `passwd` (a [[users]] block),
`dkim keygen` (a key, its DNS record and its [[dkim]] block) and `check-config`.

None of these needs the spool or an engine.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

import tomlkit

from relaybox.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from relaybox.config import (
    check_config,
    check_user_name,
    default_config,
    default_config_path,
    sample_config_text,
)
from relaybox.config.keys import check_domain as check_dkim_domain
from relaybox.config.keys import check_selector, normalize_algorithm
from relaybox.config.passwords import hash_password
from relaybox.inbound.certificates import generate_self_signed
from relaybox.signing.keys import dns_record as dkim_dns_record
from relaybox.signing.keys import generate as generate_dkim_key
from relaybox.signing.keys import write_private_key as write_dkim_key

__all__ = ["check_config_file", "dkim_keygen", "init", "passwd"]


def init(args: argparse.Namespace) -> int:
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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
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


def passwd(args: argparse.Namespace) -> int:
    """`relaybox passwd USER`: a hashed password, as a [[users]] block to paste."""
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


def dkim_keygen(args: argparse.Namespace) -> int:
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


def check_config_file(args: argparse.Namespace) -> int:
    """`relaybox check-config`: every problem of the config file, as file:line: key: text."""
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
