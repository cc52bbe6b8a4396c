"""What the Config pane's tables show of a pending config: one row of plain strings per
routing rule, listener, user, limit and DKIM key, secrets masked (pure functions over the
lists a `ConfigDocument` returns)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from relaybox.config.model import LimitsConfig

__all__ = [
    "DKIM_COLUMNS",
    "HISTORY_COLUMNS",
    "LIMITS_COLUMNS",
    "LISTENER_COLUMNS",
    "ROUTE_COLUMNS",
    "USER_COLUMNS",
    "HiddenHashes",
    "dkim_rows",
    "history_rows",
    "limit_names",
    "limits_rows",
    "listener_rows",
    "listify",
    "route_rows",
    "user_rows",
]

ROUTE_COLUMNS = ("#", "Recipient domains", "Senders", "Goes to", "TLS")
LISTENER_COLUMNS = ("#", "Listen", "Role", "TLS", "Allowed networks")
USER_COLUMNS = ("User", "Password", "Allowed senders", "Per minute")
LIMITS_COLUMNS = ("Limit", "Value", "Default")
DKIM_COLUMNS = ("Domain", "Selector", "Private key", "Algorithm")
HISTORY_COLUMNS = ("Gen", "Applied at", "Trigger", "What changed")

HIDDEN = "••••••"
"""What a secret reads as on screen."""


def listify(text: str) -> list[str]:
    """A list typed in one line: items separated by commas or spaces, empties dropped."""
    return [item for item in text.replace(",", " ").split() if item]


def _joined(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` characters (an ellipsis at the cut)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _via(route: Mapping[str, Any]) -> str:
    """Where a rule sends its mail: the transport, and for a smart host its hosts."""
    transport = str(route.get("transport", ""))
    if transport == "smarthost":
        return f"smarthost {_joined(route.get('hosts')) or '(no hosts)'}"
    words = {
        "mx": "each domain's MX",
        "hold": "kept in the queue",
        "reject": "refused at RCPT",
        "capture": "kept in the state dir",
    }.get(transport)
    return f"{transport} ({words})" if words else transport


def route_rows(routes: Sequence[Mapping[str, Any]], width: int = 80) -> list[tuple[str, ...]]:
    """One row per `[[routes]]` table, in file order (the first that matches wins); long
    domain lists are cut so that where the mail goes shows in `width` columns."""
    spare = max(0, width - 80)
    return [
        (
            str(n),
            _cut(_joined(route.get("domains")) or "(none)", 24 + spare // 2),
            _cut(_joined(route.get("sender_domains")) or "*", 13 + spare // 4),
            _via(route),
            str(route.get("tls", "")) if route.get("transport") == "smarthost" else "",
        )
        for n, route in enumerate(routes, 1)
    ]


def listener_rows(listeners: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per `[[listeners]]` table."""
    return [
        (
            str(n),
            _joined(listener.get("listen")),
            str(listener.get("role", "relay")),
            str(listener.get("tls", "none")),
            _joined(listener.get("allowed_networks")) or "(none: AUTH only)",
        )
        for n, listener in enumerate(listeners, 1)
    ]


def user_rows(users: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per `[[users]]` table; the password hash is never shown, only its scheme."""
    rows: list[tuple[str, ...]] = []
    for user in users:
        hashed = str(user.get("password_hash", ""))
        # PHC form, `$scrypt$ln=...$salt$hash`: the scheme alone is shown.
        scheme = hashed.lstrip("$").split("$", 1)[0] if "$" in hashed else ""
        rows.append(
            (
                str(user.get("name", "")),
                f"{scheme} {HIDDEN}" if scheme else HIDDEN if hashed else "(none)",
                _joined(user.get("allowed_senders")) or "(any)",
                _joined(user.get("max_messages_per_minute")) or "default",
            )
        )
    return rows


def limit_names() -> list[str]:
    """Every `[limits]` key, in the model's order."""
    return [f.name for f in dataclasses.fields(LimitsConfig)]


def limits_rows(table: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per limit: the value the file sets (empty when it sets none) and the default."""
    defaults = LimitsConfig()
    return [
        (name, _joined(table.get(name)), str(getattr(defaults, name))) for name in limit_names()
    ]


def dkim_rows(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per `[[dkim]]` table (the key file's path; the key itself is never read)."""
    return [
        (
            str(entry.get("domain", "")),
            str(entry.get("selector", "")),
            str(entry.get("private_key", "")),
            str(entry.get("algorithm", "rsa-sha256")),
        )
        for entry in entries
    ]


def history_rows(entries: Iterable[Mapping[str, Any]], when: Any) -> list[tuple[str, ...]]:
    """One row per applied version, newest first; `when(at)` renders the time."""
    return [
        (
            str(entry.get("generation", "")),
            when(float(entry.get("at", 0.0))),
            str(entry.get("trigger", "")),
            str(entry.get("summary", "")),
        )
        for entry in entries
    ]


_HASH = re.compile(r"\$scrypt\$[^\s\"']*")
"""A password hash as relaybox writes it (see `config.diff`, which masks the same)."""


class HiddenHashes:
    """Password hashes swapped for `$scrypt$hidden-N` in the TOML editor, and back.

    The editor shows the file to edit, so its text cannot be masked one way as a diff is:
    each hash gets a stable token that reads as what it is, and the pending text always
    holds the real hash. A token the admin deletes removes the hash with it.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        """Token to hash."""
        self._by_hash: dict[str, str] = {}

    def hide(self, text: str) -> str:
        return _HASH.sub(lambda m: self._token(m[0]), text)

    def restore(self, text: str) -> str:
        for token, hashed in self._tokens.items():
            text = text.replace(token, hashed)
        return text

    def _token(self, hashed: str) -> str:
        if hashed not in self._by_hash:
            token = f"$scrypt$hidden-{len(self._tokens) + 1}"
            self._tokens[token] = hashed
            self._by_hash[hashed] = token
        return self._by_hash[hashed]
