"""Read a relaybox TOML file into a validated, frozen `Config`, reporting every problem at once.

Each problem names the file, the dotted key and its line, in words an office admin can act on
(`file:line: key: message`). This module reads the file and runs the checks of
`config.checks` in order; it never writes the file.

Warnings (dangerous but valid settings) are never raised; `check_config` and
`load_config_with_warnings` return them as `Problem`s.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from relaybox.config.checks import delivery, dkim_keys, listeners, routes, server, users
from relaybox.config.model import DEFAULT_ROUTE, Config, default_config, default_config_path
from relaybox.config.positions import index_key_lines
from relaybox.config.problems import ConfigError, Problem, Report, describe
from relaybox.config.tables import unknown_keys

__all__ = [
    "ConfigError",
    "Problem",
    "check_config",
    "load_config",
    "load_config_text",
    "load_config_with_warnings",
]


def load_config(path: Path | None) -> Config:
    """Read and validate a config file.

    Args:
        path: The file to read. None means `default_config_path()`; when that file does not
            exist either, the embedded `default_config()` is returned, so relaybox runs out of
            the box.

    Returns:
        The validated configuration, with `source` set to the file it came from.

    Raises:
        ConfigError: The file is missing (when named explicitly), unreadable, not TOML, or has
            any invalid setting. All problems are collected before raising.
    """
    return load_config_with_warnings(path)[0]


def load_config_with_warnings(path: Path | None) -> tuple[Config, list[Problem]]:
    """Like `load_config`, but also return the warnings, so a starting engine can log them.

    Returns:
        The configuration and the warnings about dangerous but valid settings.

    Raises:
        ConfigError: As `load_config`.
    """
    config, errors, warnings = _load(path)
    if errors or config is None:
        raise ConfigError(errors)
    return config, warnings


def check_config(path: Path | None) -> tuple[list[Problem], list[Problem]]:
    """Validate a config file without raising, for `relaybox check-config`.

    Args:
        path: As for `load_config`. None with no default file checks the embedded default,
            which has neither errors nor warnings.

    Returns:
        `(errors, warnings)`, each sorted by line. Warnings are only computed for the parts of
        the file that are valid.
    """
    _, errors, warnings = _load(path)
    return errors, warnings


def _load(path: Path | None) -> tuple[Config | None, list[Problem], list[Problem]]:
    """Read, parse and validate; the single path behind all three public functions."""
    if path is None:
        path = default_config_path()
        if not path.exists():
            return default_config(), [], []
    file = str(path)
    if not path.exists():
        missing = "file not found; check the path, or leave out --config to use the default file"
        return None, [_whole_file(file, missing)], []
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        return None, [_whole_file(file, "this is a folder; name the config file inside it")], []
    except UnicodeDecodeError:
        return None, [_whole_file(file, "not a text file in UTF-8; save it as UTF-8 text")], []
    except OSError as exc:
        return None, [_whole_file(file, f"cannot read the file: {exc.strerror or exc}")], []

    return _validate(text, path)


def load_config_text(text: str, path: Path) -> tuple[Config | None, list[Problem], list[Problem]]:
    """Validate `text` as if it were the file at `path` (its folder anchors relative paths):
    a config that is not yet on disk, such as an edit a reload would apply.

    Returns:
        `(config or None, errors, warnings)` as `check_config` sorts them; the config is None
        when there is any error, and otherwise has `source` set to `path`.
    """
    return _validate(text, path)


def _validate(text: str, path: Path) -> tuple[Config | None, list[Problem], list[Problem]]:
    file = str(path)
    try:
        data = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.ParseError as exc:
        return None, [Problem(file, exc.line, "", _syntax_message(exc))], []

    report = Report(file, path.absolute().parent, index_key_lines(text))
    config = _build(report, data)
    if config is not None:
        config = dataclasses.replace(config, source=path)
    return config, _by_line(report.errors), _by_line(report.warnings)


def _whole_file(file: str, message: str) -> Problem:
    return Problem(file, None, "", message)


def _by_line(problems: list[Problem]) -> list[Problem]:
    """File order reads best; problems without a line go last, in the order they were found."""
    return sorted(problems, key=lambda p: math.inf if p.line is None else p.line)


def _syntax_message(exc: tomlkit.exceptions.ParseError) -> str:
    """tomlkit's message without its own position suffix, plus what to look for."""
    detail = re.sub(r" at line \d+ col \d+$", "", str(exc)).rstrip(".")
    if "already exists" in detail:
        return (
            f"{detail}: this key or table is written twice; keep only one "
            "(each [[listeners]], [[users]] or [[routes]] block is a separate listener, user "
            "or route, but [server], [limits], [log], [auth], [dns] and [delivery] may "
            "appear once)"
        )
    if "\\x00" in detail:
        return "the file ends in the middle of a value; look for an unclosed [ or quote"
    return (
        f"this is not valid TOML ({detail}, column {exc.col + 1}); "
        'check for a missing quote, bracket, comma or "=" on this line'
    )


# --- running the checks ----------------------------------------------------------------------

_TABLES: dict[str, Callable[[Report, dict[str, Any]], Any]] = {
    "server": server.read_server,
    "limits": server.read_limits,
    "log": server.read_log,
    "auth": server.read_auth,
    "dns": delivery.read_dns,
    "delivery": delivery.read_delivery,
    "health": server.read_health,
    "ui": server.read_ui,
}
"""The single tables, by key, in the order they are checked; each reader returns None once
it has reported a problem."""

_TOP_LEVEL_KEYS = [*_TABLES, "listeners", "users", "routes", "dkim"]


def _build(report: Report, data: dict[str, Any]) -> Config | None:
    """The config, or None when any error was recorded (all of them are, before returning)."""
    unknown_keys(report, "", data, _TOP_LEVEL_KEYS, "the top level")
    tables: dict[str, Any] = {}
    for name, read in _TABLES.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            report.error(
                name,
                f"must be a table, written as a [{name}] line with its settings "
                f"below it, not {describe(table)}",
            )
            table = {}
        tables[name] = read(report, table)
    listener_list = listeners.read_listeners(report, data)
    user_list = users.read_users(report, data)
    route_blocks = routes.read_routes(report, data)
    dkim = dkim_keys.read_dkim(report, data)
    if report.errors:
        return None
    users.users_warnings(report, listener_list, user_list)
    delivery.delivery_warnings(report, tables["delivery"])
    if route_blocks is not None:
        routes.route_warnings(report, route_blocks, tables["delivery"])
    return Config(
        listeners=listener_list,
        users=user_list,
        dkim=dkim,
        routes=(DEFAULT_ROUTE,) if route_blocks is None else tuple(r for _, _, r in route_blocks),
        **tables,
    )
