"""Checks of the `[[routes]]` blocks: domain patterns, transports and their settings, smart
hosts and their logins, sender rewriting, and the analysis of routes an earlier one hides.
Choosing a route for a message is `RouteConfig.matches`; delivering is `outbound`'s job.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import stat
import unicodedata
from pathlib import Path
from typing import Any

from relaybox.config.checks.tls import check_ca_file
from relaybox.config.model import DeliveryConfig, HostPort, RouteConfig
from relaybox.config.problems import Report
from relaybox.config.readers import (
    address_problem,
    host_name_problem,
    is_ip_address,
    list_of,
    read_domain_pattern,
    read_each,
    read_list,
    read_path,
    read_port,
    read_str,
    split_host_port,
)
from relaybox.config.rules import example_of
from relaybox.config.secrets import read_password_file
from relaybox.config.tables import blocks_of, read_table, then

__all__ = ["RouteBlock", "read_routes", "route_warnings"]

RouteBlock = tuple[int, dict[str, Any], RouteConfig]
"""A valid route with its index in the file and the table it was written as."""

_VERIFIED_TLS = ("verify", "implicit")
"""Route TLS modes that check the server's certificate and name."""

_DELIVERY_ONLY = ("tls", "ca_file", "max_messages_per_minute", "max_connections", "rewrite_senders")
"""Route settings that only matter when a route sends mail on."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MAX_REJECT_TEXT = 400
"""Keeps `550 5.7.1 ` plus the text under RFC 5321's 512-octet reply line (§4.5.3.1.5)."""


def read_routes(report: Report, data: dict[str, Any]) -> list[RouteBlock] | None:
    """The [[routes]] blocks, each with its index and table; None when there are none."""
    blocks = blocks_of(
        report,
        data,
        "routes",
        noun="route",
        shape="must be [[routes]] blocks, one per route, each with its own domains = [...] "
        "and transport = ... lines",
        empty="lists no route, so no mail could be sent anywhere; remove this line to "
        "send all mail to the domains' MX servers, or add [[routes]] blocks",
    )
    if blocks is None:
        return None
    readers = {
        "domains": _domains,
        "sender_domains": _sender_domains,
        "hosts": list_of(_host_port, example_of(RouteConfig, "hosts")),
        "rewrite_senders": _rewrite_senders,
        "username": then(read_str, _route_username),
        "password_env": _password_env,
        "password_file": then(read_path, _password_file),
        "ca_file": then(read_path, check_ca_file),
        "reject_text": then(read_str, _reject_text),
    }
    built: list[RouteBlock] = []
    for index, block in enumerate(blocks):
        prefix = f"routes[{index}]"
        if "password" in block:
            report.error(
                f"{prefix}.password",
                "relaybox does not keep passwords in its config file; put the password "
                'on the first line of a file and name it with password_file = "/etc/'
                'relaybox/smarthost.password", or in an environment variable named '
                'with password_env = "SMARTHOST_PASSWORD"',
            )
            block = {k: v for k, v in block.items() if k != "password"}
        route = read_table(report, prefix, RouteConfig, block, readers, block="routes")
        if route is not None and _route_rules(report, prefix, block, route):
            built.append((index, block, route))
    return built


def _domains(report: Report, key: str, value: object) -> tuple[str, ...] | None:
    """The recipient domain patterns: at least one."""
    return _domain_patterns(report, key, value, required=True)


def _sender_domains(report: Report, key: str, value: object) -> tuple[str, ...] | None:
    """The sender domain patterns: none means every sender."""
    return _domain_patterns(report, key, value, required=False)


def _route_rules(report: Report, prefix: str, block: dict[str, Any], route: RouteConfig) -> bool:
    """Settings of one route that must agree with its transport and with each other."""
    errors = len(report.errors)
    transport = route.transport
    if transport == "smarthost":
        if not route.hosts:
            report.error(
                f"{prefix}.hosts" if "hosts" in block else prefix,
                'transport = "smarthost" needs hosts, the servers to hand the mail to, '
                'like hosts = ["smtp.example.net:587"]',
            )
        _route_auth(report, prefix, block, route)
    else:
        for name in ("hosts", "round_robin"):
            if name in block:
                report.error(
                    f"{prefix}.{name}",
                    f'is only used with transport = "smarthost" (this route has '
                    f'transport = "{transport}"); remove it, or set transport = "smarthost"',
                )
        for name in ("username", "password_file", "password_env"):
            if name in block:
                report.error(
                    f"{prefix}.{name}",
                    "logging in (SMTP AUTH) is only done at a smart host, never at other "
                    'domains\' MX servers; remove it, or set transport = "smarthost" '
                    "with hosts",
                )
    if "reject_text" in block and transport != "reject":
        report.error(
            f"{prefix}.reject_text",
            f'is only used with transport = "reject" (this route has transport = '
            f'"{transport}"); remove it',
        )
    checks_tls = transport not in ("reject", "capture")  # those warn that tls is unused
    if checks_tls and route.ca_file is not None and route.tls not in _VERIFIED_TLS:
        report.error(
            f"{prefix}.ca_file",
            f'is only used to check certificates, which tls = "{route.tls}" never does; '
            'set tls = "verify" (or "implicit" for port 465), or remove ca_file',
        )
    return len(report.errors) == errors


def _route_auth(report: Report, prefix: str, block: dict[str, Any], route: RouteConfig) -> None:
    has_file, has_env = route.password_file is not None, route.password_env is not None
    if has_file and has_env:
        report.error(
            f"{prefix}.password_env",
            "password_file and password_env are both set; keep the one that holds the "
            "password and remove the other",
        )
    if route.username is None and (has_file or has_env):
        written = "password_file" if has_file else "password_env"
        report.error(
            f"{prefix}.{written}",
            'a password needs username = "..." too: the name to log in to the smart host with',
        )
    if route.username is not None and not (has_file or has_env):
        report.error(
            f"{prefix}.username",
            'needs a password: add password_file = "/etc/relaybox/smarthost.password" '
            "(a file whose first line is the password, readable by relaybox only) or "
            'password_env = "SMARTHOST_PASSWORD" (an environment variable holding it)',
        )


def _domain_patterns(
    report: Report, key: str, value: object, *, required: bool
) -> tuple[str, ...] | None:
    items = read_list(report, key, value, example_of(RouteConfig, "domains"))
    if items is None:
        return None
    if required and not items:
        report.error(
            key,
            f"must list at least one domain, like {example_of(RouteConfig, 'domains')}, "
            'or ["*"] for every domain',
        )
        return None
    patterns = read_each(report, key, items, read_domain_pattern)
    if patterns is None:
        return None
    if "*" in patterns and len(patterns) > 1:
        report.error(
            f"{key}[{patterns.index('*')}]",
            '"*" already matches every domain, so it cannot be combined with others; '
            'write ["*"] alone, or list the domains without "*"',
        )
        return None
    return patterns


def _host_port(report: Report, key: str, value: object) -> HostPort | None:
    """`name:port`, `address:port` or `[v6]:port`; the port is required."""
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "smtp.example.net:587"', value)
        return None
    parts = split_host_port(value)
    if parts is None:
        report.error(
            key,
            f'"{value}": write an IPv6 address in square brackets followed by the port, '
            'like "[2001:db8::25]:587"',
        )
        return None
    host, port_text, bracketed = parts
    if not port_text:
        shown = f"[{host}]" if bracketed else host or "smtp.example.net"
        report.error(
            key,
            f'"{value}" has no port; add one after a colon, like "{shown}:587" (587 for '
            'submission with STARTTLS, 465 for tls = "implicit", 25 between mail servers)',
        )
        return None
    port = read_port(report, key, value, port_text, "587")
    if port is None:
        return None
    if bracketed:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None or address.version != 6:
            report.error(
                key,
                f'"{value}": square brackets are only for IPv6 addresses; write "{host}:{port}"',
            )
            return None
        return HostPort(str(address), port)
    if is_ip_address(host):
        return HostPort(host, port)
    problem = host_name_problem(host) if host else "the host name before the colon is empty"
    if problem:
        report.error(key, f'{problem}; write the smart host like "smtp.example.net:587"')
        return None
    return HostPort(host.lower(), port)


def _route_username(report: Report, key: str, text: str) -> str | None:
    if not text:
        report.error(key, "must not be empty; write the name the smart host knows you by")
        return None
    if any(unicodedata.category(char).startswith("C") for char in text):
        report.error(
            key,
            "contains a line break, tab or invisible character, which cannot be sent "
            "in SMTP AUTH; write the name on one line",
        )
        return None
    return text


def _password_env(report: Report, key: str, value: object) -> str | None:
    """The name of the variable holding the password; never repeats a wrong value, which
    may be the password itself."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        report.error(
            key,
            "must be the name of an environment variable (letters, digits and _), like "
            'password_env = "SMARTHOST_PASSWORD", not the password itself',
        )
        return None
    password = os.environ.get(value)
    if password is None:
        report.error(
            key,
            f"the environment variable {value} is not set; set it where relaybox is "
            "started (for systemd, Environment= or EnvironmentFile= in the service), or "
            "use password_file",
        )
        return None
    if not password:
        report.error(key, f"the environment variable {value} is set but empty")
        return None
    return value


def _password_file(report: Report, key: str, path: Path) -> Path | None:
    try:
        read_password_file(path)
    except ValueError as exc:
        report.error(key, str(exc))
        return None
    if path.stat().st_mode & stat.S_IROTH:
        report.warn(
            key,
            f"{path} can be read by other users of this machine; make it readable by "
            f"relaybox only: chmod 600 {shlex.quote(str(path))}",
        )
    return path


def _reject_text(report: Report, key: str, text: str) -> str | None:
    problem = None
    if not text.strip():
        problem = "must not be empty; it is the reason the sender is shown"
    elif not all(char == "\t" or " " <= char <= "~" for char in text):
        problem = (
            "may only hold plain English letters, digits, punctuation and spaces on one "
            "line, because SMTP replies are ASCII text (RFC 5321 §4.2)"
        )
    elif len(text) > _MAX_REJECT_TEXT:
        problem = f"is {len(text)} characters long; keep it under {_MAX_REJECT_TEXT}"
    if problem:
        report.error(key, problem)
        return None
    return text


def _rewrite_senders(report: Report, key: str, value: object) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict):
        report.type_error(
            key,
            f"a table in curly brackets, like {example_of(RouteConfig, 'rewrite_senders')}",
            value,
        )
        return None
    pairs: dict[str, str] = {}
    valid = True
    for written, replacement in value.items():
        item_key = f"{key}.{written}"
        original = _rewrite_from(report, item_key, written)
        new = _rewrite_to(report, item_key, replacement)
        if original is None or new is None:
            valid = False
        elif original in pairs:
            report.error(
                item_key,
                f'"{written}" is listed twice (upper and lower case do not count); keep one',
            )
            valid = False
        else:
            pairs[original] = new
    return tuple(pairs.items()) if valid else None


def _rewrite_from(report: Report, key: str, written: str) -> str | None:
    """A key of rewrite_senders: an address or `@domain`, lower-cased."""
    if written.startswith("@"):
        domain = written[1:]
        problem = host_name_problem(domain) if domain else "the domain after @ is empty"
    elif "@" not in written:
        problem = f'"{written}" is neither an address nor an @ followed by a domain'
    else:
        problem = address_problem(written)
    if problem:
        report.error(
            key,
            f'{problem}; write an address like "scanner@printer.local", or '
            '"@printer.local" for every address at that domain',
        )
        return None
    return written.lower()


def _rewrite_to(report: Report, key: str, value: object) -> str | None:
    """A value of rewrite_senders: one whole address."""
    if not isinstance(value, str):
        report.type_error(key, 'an address in quotes, like "noreply@example.org"', value)
        return None
    if value.startswith("@") or "@" not in value:
        report.error(
            key,
            f'"{value}" must be a whole address, like "noreply@example.org": the '
            "sender is replaced by it",
        )
        return None
    problem = address_problem(value)
    if problem:
        report.error(key, f'{problem}; write an address like "noreply@example.org"')
        return None
    return value


def route_warnings(report: Report, routes: list[RouteBlock], delivery: DeliveryConfig) -> None:
    """Routes that are each valid but risky, pointless or hidden by an earlier one."""
    for position, (index, block, route) in enumerate(routes):
        prefix = f"routes[{index}]"
        for earlier_index, _, earlier in routes[:position]:
            if _route_covers(earlier, route):
                line = report.key_lines(f"routes[{earlier_index}]")
                where = f" (line {line})" if line is not None else ""
                report.warn(
                    prefix,
                    f"this route can never be used: routes[{earlier_index}]{where} comes "
                    "first and already takes all the mail this one would; routes are "
                    "tried in order, so move this block above it, or remove it",
                )
                break
        _route_tls_warnings(report, prefix, block, route, delivery)
        if route.round_robin and len(route.hosts) == 1:
            report.warn(
                f"{prefix}.round_robin",
                "has no effect with only one host in hosts; remove it, or add hosts",
            )
        if route.max_connections is not None and route.max_connections > delivery.max_connections:
            report.warn(
                f"{prefix}.max_connections",
                f"is more than [delivery] max_connections ({delivery.max_connections}), "
                "which caps it",
            )
        if route.transport in ("reject", "capture"):
            for name in _DELIVERY_ONLY:
                if name in block:
                    report.warn(
                        f"{prefix}.{name}",
                        f'is not used, because transport = "{route.transport}" sends '
                        "nothing on; remove it",
                    )
    if not any(_catches_all(route) for _, _, route in routes):
        report.warn(
            "routes",
            'no route has domains = ["*"] (for every sender), so mail to other domains '
            "will be refused at RCPT with 550 5.7.1. If that is not what you want, add a "
            'last [[routes]] block with domains = ["*"] and transport = "mx"',
        )


def _route_tls_warnings(
    report: Report, prefix: str, block: dict[str, Any], route: RouteConfig, delivery: DeliveryConfig
) -> None:
    tls_key = f"{prefix}.tls"
    if route.username is not None and route.tls not in _VERIFIED_TLS:
        report.warn(
            tls_key if "tls" in block else f"{prefix}.username",
            f'this route logs in with a password over tls = "{route.tls}": the password '
            "would be sent where it can be intercepted or to an unverified server; use "
            'tls = "verify" (or "implicit" for port 465)',
        )
    elif route.transport == "smarthost" and route.tls == "none":
        report.warn(
            tls_key,
            "mail to the smart host is sent unencrypted, readable by anyone on the way; "
            'use tls = "verify", or at least "opportunistic"',
        )
    if route.transport == "mx" and route.tls == "implicit" and delivery.mx_port == 25:
        report.warn(
            tls_key,
            "MX servers on port 25 expect STARTTLS, not TLS from the first byte, so with "
            'tls = "implicit" every delivery would fail; use "verify" or "required"',
        )
    if route.transport != "smarthost":
        return
    for position, host in enumerate(route.hosts):
        if host.port == 465 and route.tls != "implicit":
            report.warn(
                f"{prefix}.hosts[{position}]",
                f'port 465 expects TLS from the first byte; set tls = "implicit" (this '
                f'route has tls = "{route.tls}")',
            )
        elif route.tls == "implicit" and host.port in (25, 587):
            report.warn(
                f"{prefix}.hosts[{position}]",
                f"port {host.port} starts without TLS and offers STARTTLS, which "
                'tls = "implicit" does not use; use tls = "verify", or port 465',
            )


def _route_covers(earlier: RouteConfig, later: RouteConfig) -> bool:
    """Whether `earlier` takes all mail `later` would match, so `later` is never used."""
    if not _patterns_cover(earlier.domains, later.domains):
        return False
    if not earlier.sender_domains:
        return True
    if not later.sender_domains:
        return earlier.sender_domains == ("*",)
    return _patterns_cover(earlier.sender_domains, later.sender_domains)


def _patterns_cover(earlier: tuple[str, ...], later: tuple[str, ...]) -> bool:
    return all(any(_pattern_covers(e, pattern) for e in earlier) for pattern in later)


def _pattern_covers(earlier: str, later: str) -> bool:
    """Whether every domain `later` matches is matched by `earlier` too."""
    if earlier == "*":
        return True
    if later == "*":
        return False
    if earlier.startswith("*."):
        suffix = earlier[1:]
        return later.endswith(suffix) or later == earlier
    return earlier == later


def _catches_all(route: RouteConfig) -> bool:
    return route.domains == ("*",) and route.sender_domains in ((), ("*",))
