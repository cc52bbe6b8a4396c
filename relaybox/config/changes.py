"""What a reload changes, in one line an admin reads in a log, a status bar or a shell.

The summary names settings and entries, never secrets: password hashes are not shown, and a
route is named by its domains, transport and hosts (its credentials are a file name at most).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from relaybox.config.model import (
    Config,
    DkimConfig,
    ListenerConfig,
    RouteConfig,
    UserConfig,
)

__all__ = ["NO_CHANGE", "RESTART_ONLY", "change_list", "summarize"]

NO_CHANGE = "no change"

RESTART_ONLY: tuple[str, ...] = ("log.format", "log.file", "log.max_size", "log.keep")
"""Settings a running engine cannot take: they apply at the next start (the log is open)."""

MAX_SUMMARY = 400
"""Characters of a summary; the rest is counted ("and 3 more changes")."""

_SECRET_FIELDS = frozenset({"password_hash"})

T = TypeVar("T")


def summarize(old: Config, new: Config) -> str:
    """One line: every change from `old` to `new`, `NO_CHANGE` when there is none."""
    changes = change_list(old, new)
    if not changes:
        return NO_CHANGE
    line = ""
    for shown, change in enumerate(changes):
        candidate = f"{line}; {change}" if line else change
        if len(candidate) > MAX_SUMMARY and line:
            rest = len(changes) - shown
            return f"{line}; and {rest} more change{'s' if rest > 1 else ''}"
        line = candidate
    return line


def change_list(old: Config, new: Config) -> list[str]:
    """Each change as a short phrase, in the file's usual order of tables."""
    changes: list[str] = []
    for f in dataclasses.fields(Config):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if f.name == "source" or before == after:
            continue
        if f.name == "listeners":
            changes += _entries("listeners", before, after, _listener_key, _listener_label)
        elif f.name == "users":
            changes += _entries("users", before, after, _user_key, _user_key)
        elif f.name == "dkim":
            changes += _entries("dkim", before, after, _dkim_key, _dkim_key)
        elif f.name == "routes":
            changes += _routes(before, after)
        elif dataclasses.is_dataclass(before):
            changes += _table(f.name, before, after)
        else:  # pragma: no cover - every Config field is one of the above
            changes.append(f"{f.name} changed")
    return changes


def _table(name: str, before: Any, after: Any) -> list[str]:
    out = []
    for f in dataclasses.fields(before):
        a, b = getattr(before, f.name), getattr(after, f.name)
        if a != b:
            key = f"{name}.{f.name}"
            later = " (at the next start)" if key in RESTART_ONLY else ""
            out.append(f"{key} {_show(f.name, a)} -> {_show(f.name, b)}{later}")
    return out


def _show(name: str, value: Any) -> str:
    if name in _SECRET_FIELDS:
        return "********"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _entries(
    table: str,
    before: Sequence[T],
    after: Sequence[T],
    key: Callable[[T], str],
    label: Callable[[T], str],
) -> list[str]:
    """Entries matched by `key`: added (+), removed (-) and changed (~), in that order."""
    old = {key(e): e for e in before}
    new = {key(e): e for e in after}
    added = [f"+{label(e)}" for k, e in new.items() if k not in old]
    removed = [f"-{label(e)}" for k, e in old.items() if k not in new]
    changed = [f"~{label(e)}" for k, e in new.items() if k in old and old[k] != e]
    return [f"{table}: " + " ".join(added + removed + changed)] if added + removed + changed else []


def _routes(before: tuple[RouteConfig, ...], after: tuple[RouteConfig, ...]) -> list[str]:
    """Routes have no name: they are matched by what they are, and order matters too."""
    added = [r for r in after if r not in before]
    removed = [r for r in before if r not in after]
    parts = [f"+{_route_label(r)}" for r in added] + [f"-{_route_label(r)}" for r in removed]
    if not parts:
        parts.append("reordered")
    return [f"routes ({len(before)} -> {len(after)}): " + " ".join(parts)]


def _route_label(route: RouteConfig) -> str:
    domains = ",".join(route.domains)
    if route.sender_domains:
        domains += " from " + ",".join(route.sender_domains)
    hosts = " " + ",".join(str(h) for h in route.hosts) if route.hosts else ""
    return f"[{domains} -> {route.transport}{hosts}]"


def _listener_key(listener: ListenerConfig) -> str:
    return listener.name


def _listener_label(listener: ListenerConfig) -> str:
    return f"{listener.name}({listener.role}, tls {listener.tls})"


def _user_key(user: UserConfig) -> str:
    return user.name


def _dkim_key(entry: DkimConfig) -> str:
    return f"{entry.selector}._domainkey.{entry.domain}"
