"""Configs for tests: `Config` objects for an engine started in the test (a loopback relay
listener, routes to a sink), TOML files for the `relaybox` command, and the config tests' files
checked for errors or warnings. It writes configs only; nothing here starts anything."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaybox.config import (
    Problem,
    check_config,
)
from relaybox.config.model import (
    Config,
    DeliveryConfig,
    DnsConfig,
    HostPort,
    LimitsConfig,
    ListenerConfig,
    RouteConfig,
    ServerConfig,
    SocketAddress,
)
from relaybox.config.passwords import hash_password
from relaybox.inbound.certificates import generate_self_signed

if TYPE_CHECKING:
    from ..smtpsink import Sink

# ---------------------------------------------------------------------- engine configs

LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Tests that are not about delivery keep their mail: nothing may leave loopback, and the
# system's resolver is never asked (a dead loopback port answers nothing, at once).
HOLD_EVERYTHING = (RouteConfig(domains=("*",), transport="hold"),)
NO_DNS = DnsConfig(resolvers=(SocketAddress("127.0.0.1", 9),), timeout=0.5)


def make_config(
    state_dir: Path,
    *,
    listeners: tuple[ListenerConfig, ...] | None = None,
    limits: LimitsConfig | None = None,
    **server: Any,
) -> Config:
    """A config with one loopback relay listener on a free port, unless told otherwise."""
    if listeners is None:
        listeners = (
            ListenerConfig(
                listen=(SocketAddress("127.0.0.1", 0),),
                role="relay",
                allowed_networks=LOOPBACK_NETS,
            ),
        )
    server.setdefault("hostname", "relay.example.test")
    return Config(
        server=ServerConfig(state_dir=state_dir, **server),
        limits=limits or LimitsConfig(),
        listeners=listeners,
        routes=HOLD_EVERYTHING,
        dns=NO_DNS,
    )


def relay_listener(**overrides: Any) -> ListenerConfig:
    """A loopback relay listener on a free port, with `overrides` applied."""
    base = ListenerConfig(
        listen=(SocketAddress("127.0.0.1", 0),), role="relay", allowed_networks=LOOPBACK_NETS
    )
    return dataclasses.replace(base, **overrides)


def relay_config(
    tmp_path: Path,
    routes: tuple[RouteConfig, ...],
    *,
    dns: tuple[str, int] | None = None,
    **delivery: Any,
) -> Config:
    """A loopback relay (state in tmp_path/state) whose routes are `routes`, whose only
    resolver is `dns` (else a dead loopback port) and whose `[delivery]` is `delivery`."""
    config = make_config(tmp_path / "state")
    delivery.setdefault("connection_cache_idle", 5.0)
    return dataclasses.replace(
        config,
        routes=routes,
        delivery=DeliveryConfig(**delivery),
        dns=DnsConfig(resolvers=(SocketAddress(*dns),), timeout=1.0) if dns else config.dns,
    )


def to_sink(sink: Sink, domains: tuple[str, ...] = ("*",), **route: Any) -> RouteConfig:
    """A smart host route to the sink by IP address (so it needs no DNS), plain TCP unless
    `route` says otherwise."""
    route.setdefault("tls", "none")
    return RouteConfig(
        domains=domains,
        transport="smarthost",
        hosts=(HostPort("127.0.0.1", sink.port),),
        **route,
    )


# ---------------------------------------------------------------------- files for `relaybox`

HOSTNAME = "relay.example.test"
KEEP_MAIL = (
    "\n# Nothing leaves loopback: mail is held, and DNS goes to a dead loopback port.\n"
    '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n\n'
    '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
)


def toml_string(value: object) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value))


def write_config(
    tmp_path: Path,
    port: int,
    *,
    state_dir: Path | None = None,
    name: str = "relaybox.toml",
    log_file: Path | None = None,
) -> Path:
    """A config with one loopback relay listener on `port`, its state under tmp_path."""
    state_dir = state_dir or tmp_path / "state"
    log = f"[log]\nfile = {toml_string(log_file)}\n\n" if log_file else ""
    path = tmp_path / name
    path.write_text(
        f"[server]\n"
        f'hostname = "{HOSTNAME}"\n'
        f"state_dir = {toml_string(state_dir)}\n\n"
        f"{log}"
        f"[[listeners]]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        f'allowed_networks = ["127.0.0.0/8"]\n'
        f"{KEEP_MAIL}",
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------------- the config tests' files


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[Problem]:
    errors, _ = check_config(write(tmp_path, text))
    return errors


def warnings_of(tmp_path: Path, text: str) -> list[Problem]:
    errors, warnings = check_config(write(tmp_path, text))
    assert errors == []
    return warnings


def only_error(tmp_path: Path, text: str) -> Problem:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


def listener(*lines: str) -> str:
    return "[[listeners]]\n" + "\n".join(lines) + "\n"


HASH = hash_password("x", log2_n=10)
"""A valid hash that is quick to make; nothing here verifies it."""


def make_pair(folder: Path, hostname: str = "mail.example.com") -> tuple[Path, Path]:
    certificate, private_key = folder / "cert.pem", folder / "key.pem"
    generate_self_signed(hostname, certificate, private_key)
    return certificate, private_key


def user_block(name: str = "alice@example.org", *lines: str, password_hash: str = HASH) -> str:
    return (
        "[[users]]\n"
        + f'name = "{name}"\npassword_hash = "{password_hash}"\n'
        + ("\n".join(lines) + "\n" if lines else "")
    )


def tls_listener(certificate: Path, private_key: Path, *lines: str) -> str:
    return listener(
        'listen = ["127.0.0.1:587"]',
        'role = "submission"',
        'tls = "starttls"',
        f"certificate = '{certificate}'",
        f"private_key = '{private_key}'",
        *lines,
    )


def route(*lines: str) -> str:
    return "[[routes]]\n" + "\n".join(lines) + "\n"


CATCH_ALL = route('domains = ["*"]', 'transport = "mx"')
"""A last route that keeps the "no route for other domains" warning out of a test."""


def password_file(tmp_path: Path, content: str = "s3cret\nignored second line\n") -> Path:
    path = tmp_path / "smarthost.password"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    return path


def smarthost(*lines: str, tls: str = "verify") -> str:
    return route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["smtp.example.net:587"]',
        f'tls = "{tls}"',
        *lines,
    )
