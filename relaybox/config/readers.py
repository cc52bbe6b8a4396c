"""Typed readers of single config values: true/false, numbers, text, choices, paths, lists,
addresses, networks, ports, host names and domain patterns.

Each takes the `Report`, the dotted key and the value as parsed from TOML, and returns the
checked value or None once the problem is recorded. What a value means to its section (a
listener's addresses, a route's hosts) is checked in `config.checks`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from relaybox.config.model import Network, SocketAddress
from relaybox.config.problems import Report
from relaybox.config.rules import Range
from relaybox.message.address import AddressError, parse_rcpt

__all__ = [
    "address_problem",
    "address_reason",
    "host_name_problem",
    "is_ip_address",
    "list_of",
    "read_bool",
    "read_choice",
    "read_domain_pattern",
    "read_each",
    "read_list",
    "read_network",
    "read_number",
    "read_path",
    "read_port",
    "read_socket_address",
    "read_str",
    "split_host_port",
]

T = TypeVar("T", bound=Hashable)

_PORT = Range(0, 65535)

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def read_bool(report: Report, key: str, value: object) -> bool | None:
    """`true` or `false`, never the text "true"."""
    if isinstance(value, bool):
        return value
    report.type_error(key, "true or false (without quotes)", value)
    return None


def read_number(report: Report, key: str, value: object, *, whole: bool) -> float | None:
    """A finite number; with `whole`, an integer (2.0 is refused with a suggestion)."""
    # bool is an int subclass in Python, but `true` is never a sensible count.
    if isinstance(value, bool) or not isinstance(value, int | float):
        report.type_error(key, "a whole number, like 300" if whole else "a number, like 2.5", value)
        return None
    if whole and isinstance(value, float):
        suggestion = f"; write {int(value)}" if value.is_integer() else ""
        report.error(key, f"must be a whole number (got {value!r}){suggestion}")
        return None
    if not math.isfinite(value):
        report.error(key, f"must be an ordinary number (got {value})")
        return None
    return value if whole else float(value)


def read_str(report: Report, key: str, value: object) -> str | None:
    """Text in quotes."""
    if isinstance(value, str):
        return value
    report.type_error(key, 'text in quotes, like "example"', value)
    return None


def read_choice(report: Report, key: str, value: object, allowed: tuple[str, ...]) -> str | None:
    """One of `allowed`, exactly (a value in the wrong case gets a hint)."""
    choices = ", ".join(f'"{choice}"' for choice in allowed)
    if not isinstance(value, str):
        report.type_error(key, f"one of {choices}", value)
        return None
    if value in allowed:
        return value
    hint = f' (values are lower-case: "{value.lower()}")' if value.lower() in allowed else ""
    report.error(key, f'"{value}" is not allowed here; use one of {choices}{hint}')
    return None


def read_path(report: Report, key: str, value: object) -> Path | None:
    """A path; `~` is the user's home and relative paths start at the config file's folder."""
    text = read_str(report, key, value)
    if text is None:
        return None
    if not text.strip():
        report.error(key, 'must not be empty; give a path like "/var/lib/relaybox"')
        return None
    if "\0" in text:
        # No file name holds a NUL (POSIX.1-2017 §3.170); os.stat() would raise ValueError.
        report.error(key, "contains a NUL character (\\u0000), which no path can hold; remove it")
        return None
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        report.error(key, f'"{text}": cannot find that user\'s home folder; write the full path')
        return None
    if not path.is_absolute():
        path = report.base_dir / path
    return Path(os.path.normpath(path))


def read_list(report: Report, key: str, value: object, example: str) -> list[Any] | None:
    """A TOML array; `example` shows how one is written."""
    if isinstance(value, list):
        return value
    report.type_error(key, f"a list in square brackets, like {example}", value)
    return None


def read_each(
    report: Report,
    key: str,
    items: list[Any],
    parse: Callable[[Report, str, object], T | None],
    *,
    unique: bool = False,
) -> tuple[T, ...] | None:
    """Each item of a list setting parsed as `key[i]`; None (each problem reported) when
    any is wrong, or (`unique`) when one is listed twice."""
    parsed = [parse(report, f"{key}[{i}]", item) for i, item in enumerate(items)]
    if any(item is None for item in parsed):
        return None
    out = tuple(item for item in parsed if item is not None)
    if unique:
        seen: set[T] = set()
        for position, item in enumerate(out):
            if item in seen:
                report.error(f"{key}[{position}]", f"{item} is listed twice; list it once")
                return None
            seen.add(item)
    return out


def list_of(
    parse: Callable[[Report, str, object], T | None], example: str, *, unique: bool = False
) -> Callable[[Report, str, object], tuple[T, ...] | None]:
    """A reader of a list setting whose items `parse` reads, as `key[i]`; `example` shows
    how the list is written, `unique` refuses an item listed twice."""

    def read_items(report: Report, key: str, value: object) -> tuple[T, ...] | None:
        items = read_list(report, key, value, example)
        return None if items is None else read_each(report, key, items, parse, unique=unique)

    return read_items


def read_socket_address(report: Report, key: str, value: object) -> SocketAddress | None:
    """Parse `host:port` or `[v6]:port`; the host must be an address literal."""
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "127.0.0.1:2525"', value)
        return None
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
    elif value.count(":") > 1:
        report.error(
            key,
            f'"{value}": write an IPv6 address in square brackets followed by '
            'the port, like "[::1]:2525"',
        )
        return None
    else:
        host, _, port = value.partition(":")
        port = port if ":" in value else None
    if not port:
        example = f"[{host}]:2525" if bracketed else f"{host or '127.0.0.1'}:2525"
        report.error(key, f'"{value}" has no port; add one after a colon, like "{example}"')
        return None
    if not port.isdigit():
        report.error(key, f'"{value}": the port "{port}" must be a number from 0 to 65535')
        return None
    if _PORT.violation(int(port)):
        report.error(
            key,
            f'"{value}": the port must be from 0 to 65535 (got {port}); 0 means any free port',
        )
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        report.error(
            key,
            f'"{host}" is not an IP address: relaybox binds addresses, not names, '
            "because a name can stand for several addresses or change later. "
            'Use "127.0.0.1" for this machine only, "0.0.0.0" for every IPv4 '
            'address or "[::]" for every IPv6 address, or the address of one '
            "network card",
        )
        return None
    if bracketed and address.version == 4:
        report.error(
            key,
            f'"{value}": square brackets are only for IPv6 addresses; write "{host}:{port}"',
        )
        return None
    return SocketAddress(str(address), int(port))


def read_network(report: Report, key: str, value: object) -> Network | None:
    """A CIDR network or a single address (which becomes a /32 or /128)."""
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "192.168.1.0/24"', value)
        return None
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        report.error(
            key,
            f'"{value}" is not a network; write one like "192.168.1.0/24", or a '
            'single address like "192.168.1.10"',
        )
        return None
    host = value.split("/")[0]
    single = 32 if network.version == 4 else 128
    report.error(
        key,
        f'"{value}" has bits set after the /{network.prefixlen} prefix; the '
        f'network that contains it is "{network}" (or write "{host}/{single}" '
        "for that one machine)",
    )
    return None


def read_port(report: Report, key: str, value: str, port: str, example: str) -> int | None:
    """A port from 1 to 65535 written after a host; None (reported) otherwise."""
    if not port:
        report.error(
            key, f'"{value}" ends with a colon; write the port after it, or leave both out'
        )
        return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        report.error(
            key,
            f'"{value}": the port "{port}" must be a number from 1 to 65535, like {example}',
        )
        return None
    return int(port)


def split_host_port(value: str) -> tuple[str, str | None, bool] | None:
    """Split `host:port`, `host`, `[v6]:port` or `[v6]` into the host, the port as written
    (None when there is no colon) and whether the host was in brackets; None for an IPv6
    address written without brackets, where the port cannot be told apart."""
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
    if bracketed:
        return bracketed.group(1), bracketed.group(2), True
    if value.count(":") > 1:
        return None
    host, colon, port = value.partition(":")
    return host, port if colon else None, False


def read_domain_pattern(report: Report, key: str, value: object) -> str | None:
    """`example.com`, `*.example.com` or `*`, lower-cased, IDNs as `xn--` A-labels."""
    example = 'write a domain like "example.org", "*.example.org" for its subdomains, or "*"'
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "example.org"', value)
        return None
    if value == "*":
        return value
    wildcard = value.startswith("*.")
    name = value[2:] if wildcard else value
    problem = None
    if not value.strip():
        problem = f"must not be empty; {example}"
    elif any(char.isspace() for char in value):
        problem = f'"{value}" contains a space; {example}'
    elif "@" in value:
        domain = value.rpartition("@")[2]
        problem = f'"{value}" is an address; routes match domains, so write "{domain}"'
    elif value.startswith(".") and "*" not in value:
        problem = (
            f'"{value}": write "*{value}" for the subdomains of {value[1:]}, and add '
            f'"{value[1:]}" as well for {value[1:]} itself'
        )
    elif "*" in name:
        problem = (
            f'"{value}": "*" may only stand alone (every domain) or start a pattern '
            'followed by a dot, like "*.example.org" (every subdomain of example.org)'
        )
    elif is_ip_address(name.strip("[]")):
        problem = f'"{value}" is an IP address; routes match domain names'
    else:
        if not name.isascii():
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                problem = f'"{value}" is not a valid international domain name; {example}'
        if problem is None:
            problem = host_name_problem(name)
            if problem:
                problem = f"{problem}; {example}"
    if problem:
        report.error(key, problem)
        return None
    return ("*." if wildcard else "") + name.lower()


def host_name_problem(name: str) -> str | None:
    """Why a non-empty, non-IP `name` is not a DNS host name (RFC 1123 §2.1), or None."""
    if len(name) > 253:
        return f"is {len(name)} characters long; a host name has at most 253"
    bad = [label for label in name.split(".") if not _HOST_LABEL.fullmatch(label)]
    if not bad:
        return None
    label = bad[0]
    reason = (
        "an empty part (two dots in a row, or a dot at the start or end)"
        if not label
        else f'the part "{label}", which may only hold letters, digits and '
        "hyphens (not at its start or end), at most 63 of them"
    )
    return f'"{name}" is not a valid host name: it has {reason}'


def is_ip_address(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address literal (without brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_reason(exc: AddressError) -> str:
    """An address parser's reply without its SMTP code and prefix: just the reason."""
    return re.sub(r"^\d\.\d{1,3}\.\d{1,3} (?:[^:]*: )?", "", exc.text)


def address_problem(address: str) -> str | None:
    """Why `address` is not a valid email address, or None."""
    try:
        parse_rcpt(f"TO:<{address}>", smtputf8=True)
    except AddressError as exc:
        return f'"{address}" is not a valid address: {address_reason(exc)}'
    return None
