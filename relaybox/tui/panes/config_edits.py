"""The structured editors' forms: the fields a routing rule, a listener, a user, a limit or a
DKIM key is edited with, and the answers turned into the values a `ConfigDocument` stores
(pure functions; the pane shows the forms and applies the values to the pending text).

A field left empty removes its key, so the engine's default applies; a list is typed in one
line, separated by commas or spaces.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, get_args

from relaybox.config.model import (
    DkimAlgorithm,
    LimitsConfig,
    Role,
    RouteTls,
    TlsMode,
    Transport,
)
from relaybox.tui.panes.config_tables import listify
from relaybox.tui.screens.config_forms import Answers, Field

__all__ = [
    "dkim_fields",
    "dkim_problem",
    "dkim_values",
    "limit_field",
    "limit_value",
    "listener_fields",
    "listener_problem",
    "listener_values",
    "networks_field",
    "route_fields",
    "route_problem",
    "route_values",
    "senders_field",
    "user_fields",
    "user_problem",
]

TRANSPORTS = get_args(Transport)
ROUTE_TLS = get_args(RouteTls)
ROLES = get_args(Role)
LISTENER_TLS = get_args(TlsMode)
DKIM_ALGORITHMS = get_args(DkimAlgorithm)

_LISTS = frozenset({"domains", "sender_domains", "hosts", "listen", "allowed_networks"})


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _values(answers: Answers) -> dict[str, Any]:
    """Answers as stored values: lists split, empty answers None (the key removed)."""
    out: dict[str, Any] = {}
    for name, text in answers.items():
        if not text:
            out[name] = None
        elif name in _LISTS:
            out[name] = listify(text)
        else:
            out[name] = text
    return out


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str | None:
    if value and value not in choices:
        return f"{name} must be one of {', '.join(choices)}"
    return None


# ---------------------------------------------------------------------- routing rules


def route_fields(route: Mapping[str, Any] | None = None) -> list[Field]:
    r = route or {}
    return [
        Field("domains", "Recipient domains (* for any)", _shown(r.get("domains")), "example.org"),
        Field("sender_domains", "Sender domains (empty: any)", _shown(r.get("sender_domains"))),
        Field(
            "transport",
            "Transport",
            _shown(r.get("transport", "smarthost")),
            " | ".join(TRANSPORTS),
        ),
        Field("hosts", "Smart hosts (host:port)", _shown(r.get("hosts")), "smtp.example.net:587"),
        Field("tls", "TLS (smart host)", _shown(r.get("tls")), " | ".join(ROUTE_TLS)),
        Field("username", "Username (smart host AUTH)", _shown(r.get("username"))),
        Field("password_file", "Password file", _shown(r.get("password_file"))),
    ]


def route_problem(answers: Answers) -> str | None:
    """What is wrong with a rule's answers before the engine sees them (the engine checks
    the rest at review)."""
    if not answers["domains"]:
        return "Recipient domains: at least one (* matches any)"
    return _choice("Transport", answers["transport"], TRANSPORTS) or _choice(
        "TLS", answers["tls"], ROUTE_TLS
    )


def route_values(answers: Answers) -> dict[str, Any]:
    return _values(answers)


# ---------------------------------------------------------------------- listeners


def listener_fields(listener: Mapping[str, Any] | None = None) -> list[Field]:
    li = listener or {}
    return [
        Field("listen", "Listen on (address:port)", _shown(li.get("listen")), "0.0.0.0:587"),
        Field("role", "Role", _shown(li.get("role")), " | ".join(ROLES)),
        Field("tls", "TLS", _shown(li.get("tls")), " | ".join(LISTENER_TLS)),
        Field("certificate", "Certificate file", _shown(li.get("certificate"))),
        Field("private_key", "Private key file", _shown(li.get("private_key"))),
        Field(
            "allowed_networks",
            "Allowed networks (relay without AUTH)",
            _shown(li.get("allowed_networks")),
            "192.168.1.0/24",
        ),
    ]


def listener_problem(answers: Answers) -> str | None:
    if not answers["listen"]:
        return "Listen on: at least one address:port"
    return _choice("Role", answers["role"], ROLES) or _choice("TLS", answers["tls"], LISTENER_TLS)


def listener_values(answers: Answers) -> dict[str, Any]:
    return _values(answers)


def networks_field(listener: Mapping[str, Any]) -> Field:
    return Field(
        "allowed_networks",
        f"Allowed networks of {_shown(listener.get('listen'))} (empty: none, AUTH only)",
        _shown(listener.get("allowed_networks")),
        "192.168.1.0/24, 10.0.0.5",
    )


# ---------------------------------------------------------------------- users


def user_fields() -> list[Field]:
    return [
        Field("name", "User name", placeholder="alice"),
        Field("password", "Password", password=True),
        Field("again", "Password again", password=True),
        Field("allowed_senders", "Allowed senders (domains or addresses; empty: any)"),
    ]


def user_problem(answers: Answers) -> str | None:
    if not answers["name"]:
        return "User name: required"
    if not answers["password"]:
        return "Password: required"
    if answers["password"] != answers["again"]:
        return "The two passwords differ: type them again"
    return None


def senders_field(user: Mapping[str, Any]) -> Field:
    return Field(
        "allowed_senders",
        f"Allowed senders of {user.get('name', '')} (empty: any)",
        _shown(user.get("allowed_senders")),
        "example.org, bob@example.net",
    )


# ---------------------------------------------------------------------- limits


def limit_field(name: str, value: Any) -> Field:
    default = getattr(LimitsConfig(), name)
    return Field("value", f"{name} (empty: the default, {default})", _shown(value), str(default))


def limit_value(name: str, text: str) -> int | float | None:
    """The typed value as the limit's type; None for empty (the default). Raises ValueError."""
    if not text:
        return None
    kind = typing.get_type_hints(LimitsConfig)[name]
    base = get_args(kind)[0] if get_args(kind) else kind
    return float(text) if base is float else int(text)


# ---------------------------------------------------------------------- DKIM


def dkim_fields(entry: Mapping[str, Any] | None = None, *, keygen: bool = False) -> list[Field]:
    e = entry or {}
    fields = [
        Field("domain", "Signing domain", _shown(e.get("domain")), "office.example"),
        Field("selector", "Selector", _shown(e.get("selector")), "s2031"),
    ]
    if not keygen:
        fields += [
            Field("private_key", "Private key file", _shown(e.get("private_key"))),
            Field(
                "algorithm", "Algorithm", _shown(e.get("algorithm")), " | ".join(DKIM_ALGORITHMS)
            ),
        ]
    return fields


def dkim_problem(answers: Answers) -> str | None:
    if not answers["domain"] or not answers["selector"]:
        return "Signing domain and selector: both required"
    if "private_key" in answers and not answers["private_key"]:
        return "Private key file: required (or add with keygen, k)"
    return _choice("Algorithm", answers.get("algorithm", ""), DKIM_ALGORITHMS)


def dkim_values(answers: Answers) -> dict[str, Any]:
    return _values(answers)
