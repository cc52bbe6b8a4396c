"""Checks of the small tables that describe the relay itself: `[server]`, `[log]`, `[limits]`,
`[auth]`, `[ui]` and `[health]`; delivery and DNS are `checks.delivery`'s.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from relaybox.config.model import (
    AuthConfig,
    HealthConfig,
    LimitsConfig,
    LogConfig,
    ServerConfig,
    UiConfig,
)
from relaybox.config.positions import join_key
from relaybox.config.problems import Report
from relaybox.config.readers import host_name_problem, read_path, read_str
from relaybox.config.tables import read_table, then

__all__ = ["read_auth", "read_health", "read_limits", "read_log", "read_server", "read_ui"]


def read_server(report: Report, table: dict[str, Any]) -> ServerConfig | None:
    """The `[server]` table."""
    readers = {"hostname": then(read_str, _hostname)}
    config: ServerConfig | None = read_table(report, "server", ServerConfig, table, readers)
    return config


def read_log(report: Report, table: dict[str, Any]) -> LogConfig | None:
    """The `[log]` table; a log file must be in a folder that exists."""
    config: LogConfig | None = read_table(
        report, "log", LogConfig, table, {"file": then(read_path, _log_file)}
    )
    return config


def read_limits(report: Report, table: dict[str, Any]) -> LimitsConfig | None:
    """The `[limits]` table: every setting is checked by the range on its field, and the pairs
    that bound each other are checked together (the key named is the one written)."""
    config: LimitsConfig | None = read_table(report, "limits", LimitsConfig, table)
    if config is None:
        return None
    ok = True
    if config.soft_error_limit > config.hard_error_limit:
        written = "soft_error_limit" if "soft_error_limit" in table else "hard_error_limit"
        report.error(
            join_key("limits", written),
            f"soft_error_limit ({config.soft_error_limit}) must not be more than "
            f"hard_error_limit ({config.hard_error_limit}): a session that keeps making errors "
            "is first slowed down, and only later disconnected",
        )
        ok = False
    if config.reserved_connections >= config.max_connections:
        written = "reserved_connections" if "reserved_connections" in table else "max_connections"
        report.error(
            join_key("limits", written),
            f"reserved_connections ({config.reserved_connections}) must be less than "
            f"max_connections ({config.max_connections}), or clients outside allowed_networks "
            f"could never connect; lower reserved_connections (say to "
            f"{config.max_connections // 10}) or raise max_connections",
        )
        ok = False
    return config if ok else None


def read_ui(report: Report, table: dict[str, Any]) -> UiConfig | None:
    """The `[ui]` table."""
    config: UiConfig | None = read_table(report, "ui", UiConfig, table)
    return config


def read_health(report: Report, table: dict[str, Any]) -> HealthConfig | None:
    """The `[health]` table."""
    config: HealthConfig | None = read_table(report, "health", HealthConfig, table)
    return config


def read_auth(report: Report, table: dict[str, Any]) -> AuthConfig | None:
    """The `[auth]` table. Slow down first, lock out later: the lockout threshold must be
    the higher one."""
    auth: AuthConfig | None = read_table(report, "auth", AuthConfig, table)
    if auth is None or auth.failures_before_lockout > auth.failures_before_delay:
        return auth
    written = (
        "failures_before_lockout" if "failures_before_lockout" in table else "failures_before_delay"
    )
    report.error(
        join_key("auth", written),
        f"failures_before_lockout ({auth.failures_before_lockout}) must be more than "
        f"failures_before_delay ({auth.failures_before_delay}): replies to an address "
        "that keeps failing are first slowed down, and only later is it locked out",
    )
    return None


def _hostname(report: Report, key: str, name: str) -> str | None:
    """A DNS host name (RFC 1123 §2.1), because it goes into HELO and Received: headers."""
    example = 'use a name like "mail.example.com"'
    problem = None
    try:
        ipaddress.ip_address(name)
        problem = (
            f'"{name}" is an IP address; use this machine\'s DNS name, {example} '
            "(it is sent in HELO and written in Received: headers)"
        )
    except ValueError:
        if not name:
            problem = f"must not be empty; {example}"
        else:
            problem = host_name_problem(name)
            if problem and problem.startswith('"'):
                problem = f"{problem}; {example}"
    if problem:
        report.error(key, problem)
        return None
    return name


def _log_file(report: Report, key: str, path: Path) -> Path | None:
    if path.is_dir():
        report.error(
            key, f"{path} is a folder; name a file inside it, like {path / 'relaybox.log'}"
        )
        return None
    if not path.parent.is_dir():
        report.error(
            key,
            f"the folder {path.parent} does not exist; create it, or choose a "
            "file in an existing folder",
        )
        return None
    return path
