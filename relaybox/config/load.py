"""Read a relaybox TOML file into a validated, frozen `Config`, reporting every problem at once.

Each problem names the file, the dotted key and its line, in words an office admin can act on.
This module only reads; editing a file while keeping its comments is `config.edit`'s job.

Exceptions::

    Exception
    └── ConfigError      (.problems: every error found, each a `Problem`)

Warnings (dangerous but valid settings) are never raised; `check_config` and
`load_config_with_warnings` return them as `Problem`s.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import ipaddress
import math
import os
import re
import shlex
import ssl
import stat
import typing
import unicodedata
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import tomlkit
import tomlkit.exceptions

from relaybox.config.keys import DkimKeyError, check_selector, load_private_key
from relaybox.config.model import (
    DEFAULT_LISTENER,
    DEFAULT_ROUTE,
    AuthConfig,
    Config,
    DeliveryConfig,
    DkimConfig,
    DnsConfig,
    HealthConfig,
    HostPort,
    IPAddress,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    Network,
    RouteConfig,
    ServerConfig,
    SocketAddress,
    UiConfig,
    UserConfig,
    default_config,
    default_config_path,
)
from relaybox.config.passwords import check_hash_format
from relaybox.config.secrets import read_password_file
from relaybox.message.address import AddressError, parse_rcpt

T = TypeVar("T", bound=Hashable)

__all__ = [
    "ConfigError",
    "Problem",
    "check_config",
    "check_user_name",
    "load_config",
    "load_config_with_warnings",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or risky) in a config file, located as precisely as the text allows."""

    file: str
    """The config file as the admin named it."""
    line: int | None
    """1-based line of the offending key or item; None when it cannot be found in the text."""
    key: str
    """Dotted path such as `listeners[0].allowed_networks[1]`; empty for whole-file problems."""
    message: str
    """What is wrong and what to do instead."""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config file cannot be used; `problems` lists every reason, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


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


# --- reading the file ------------------------------------------------------------------------

_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "limits": LimitsConfig,
    "log": LogConfig,
    "auth": AuthConfig,
    "dns": DnsConfig,
    "delivery": DeliveryConfig,
    "health": HealthConfig,
    "ui": UiConfig,
}
_TOP_LEVEL_KEYS = [*_SECTIONS, "listeners", "users", "routes", "dkim"]


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

    try:
        data = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.ParseError as exc:
        return None, [Problem(file, exc.line, "", _syntax_message(exc))], []

    validator = _Validator(file, path.absolute().parent, _index_key_lines(text))
    config = validator.build(data)
    if config is not None:
        config = dataclasses.replace(config, source=path)
    return config, _by_line(validator.errors), _by_line(validator.warnings)


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


# --- where each key is written ---------------------------------------------------------------


class _KeyLines:
    """Finds the line of a dotted key, falling back to its nearest written parent."""

    def __init__(self, lines: dict[str, int]) -> None:
        self._lines = lines

    def __call__(self, key: str) -> int | None:
        while key:
            if key in self._lines:
                return self._lines[key]
            key = _parent_key(key)
        return None


def _parent_key(key: str) -> str:
    """`a[0].b[1]` -> `a[0].b` -> `a[0]` -> `a` -> ``."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key[: key.rindex(".")] if "." in key else ""


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _index_key_lines(text: str) -> _KeyLines:
    """Map every table header, key and array item in valid TOML text to its 1-based line.

    tomllib keeps no positions and tomlkit's items do not reliably carry them, so this scans
    the text itself. It only runs on text tomlkit has accepted, and it is best effort: if it
    gets confused, the keys it has not reached simply have no line.
    """
    lines: dict[str, int] = {}
    try:
        _KeyLineScanner(text, lines).scan()
    except (IndexError, ValueError):
        pass
    return _KeyLines(lines)


class _KeyLineScanner:
    """A small TOML tokenizer that records positions instead of values."""

    _BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
    _SCALAR_END = " \t\r\n#,]}"

    def __init__(self, text: str, lines: dict[str, int]) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines = lines
        self.table = ""
        self.aot_counts: dict[str, int] = {}

    def scan(self) -> None:
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            start = self.pos
            if self.text.startswith("[[", self.pos):
                self._advance(2)
                self._array_table_header(self._key())
            elif self.text[self.pos] == "[":
                self._advance(1)
                self._table_header(self._key())
            else:
                line = self.line
                key = _join(self.table, ".".join(self._key()))
                self._expect("=")
                self.lines.setdefault(key, line)
                self._value(key)
            self._skip_to_line_end()
            if self.pos == start:  # never loop forever on text we do not understand
                self._advance(1)

    def _table_header(self, segments: list[str]) -> None:
        self.table = self._resolve(segments)
        self.lines.setdefault(self.table, self.line)

    def _array_table_header(self, segments: list[str]) -> None:
        base = _join(self._resolve(segments[:-1]), segments[-1])
        count = self.aot_counts.get(base, 0)
        self.aot_counts[base] = count + 1
        self.lines.setdefault(base, self.line)
        self.table = f"{base}[{count}]"
        self.lines[self.table] = self.line

    def _resolve(self, segments: list[str]) -> str:
        """A header's path, with the current index of every array of tables it passes through."""
        path = ""
        for segment in segments:
            path = _join(path, segment)
            if path in self.aot_counts:
                path = f"{path}[{self.aot_counts[path] - 1}]"
        return path

    def _key(self) -> list[str]:
        segments = []
        while True:
            self._skip_blank()
            char = self.text[self.pos]
            if char in "\"'":
                start = self.pos
                self._string()
                segments.append(self.text[start + 1 : self.pos - 1])
            else:
                match = self._BARE_KEY.match(self.text, self.pos)
                if match is None:
                    raise ValueError("not a key")
                segments.append(match.group())
                self._advance(match.end() - self.pos)
            self._skip_blank()
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self._advance(1)
                continue
            return segments

    def _value(self, key: str) -> None:
        self._skip_blank()
        char = self.text[self.pos]
        if char == "[":
            self._array(key)
        elif char == "{":
            self._inline_table(key)
        elif char in "\"'":
            self._string()
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in self._SCALAR_END:
                self._advance(1)

    def _array(self, key: str) -> None:
        self._advance(1)
        index = 0
        while True:
            self._skip_blank(newlines=True)
            char = self.text[self.pos]
            if char == "]":
                self._advance(1)
                return
            if char == ",":
                self._advance(1)
                continue
            item = f"{key}[{index}]"
            self.lines.setdefault(item, self.line)
            start = self.pos
            self._value(item)
            if self.pos == start:
                self._advance(1)
            index += 1

    def _inline_table(self, key: str) -> None:
        self._advance(1)
        while True:
            self._skip_blank(newlines=True)
            char = self.text[self.pos]
            if char == "}":
                self._advance(1)
                return
            if char == ",":
                self._advance(1)
                continue
            line = self.line
            sub_key = _join(key, ".".join(self._key()))
            self._expect("=")
            self.lines.setdefault(sub_key, line)
            self._value(sub_key)

    def _string(self) -> None:
        quote = self.text[self.pos]
        delimiter = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        self._advance(len(delimiter))
        while not self.text.startswith(delimiter, self.pos):
            if quote == '"' and self.text[self.pos] == "\\":
                self._advance(1)
            self._advance(1)
            if self.pos >= len(self.text):
                raise ValueError("unterminated string")
        self._advance(len(delimiter))
        # A multi-line string may end with up to two extra quotes that belong to its content.
        extra = 0
        while len(delimiter) == 3 and extra < 2 and self.text.startswith(quote, self.pos):
            self._advance(1)
            extra += 1

    def _expect(self, char: str) -> None:
        self._skip_blank()
        if not self.text.startswith(char, self.pos):
            raise ValueError(f"expected {char}")
        self._advance(1)

    def _skip_blank(self, newlines: bool = False) -> None:
        """Skip spaces and tabs; with `newlines`, also line ends and comments."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self._advance(1)
            elif newlines and char == "#":
                self._skip_to_line_end()
            else:
                return

    def _skip_to_line_end(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end == -1 else end

    def _advance(self, count: int) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + count)
        self.pos += count


# --- turning values into dataclasses ---------------------------------------------------------


@dataclass(frozen=True)
class _Range:
    """Allowed numeric values of one setting, and the unit to name in the message."""

    low: float
    high: float | None = None
    low_inclusive: bool = True
    unit: str = ""

    def violation(self, value: float) -> str | None:
        """Why `value` is out of range, or None when it is fine."""
        unit = f" {self.unit}" if self.unit else ""
        too_low = value < self.low if self.low_inclusive else value <= self.low
        low, got = _show(self.low), _show(value)
        if self.high is not None and (too_low or value > self.high):
            return f"must be between {low} and {_show(self.high)}{unit} (got {got})"
        if too_low and self.low_inclusive:
            return f"must be {low}{unit} or more (got {got})"
        if too_low:
            return f"must be more than {low}{unit} (got {got})"
        return None


def _show(number: float) -> str:
    """A number as an admin writes it: 2592000, not 2.592e+06; 0.5, not 0.50000."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


_POSITIVE = _Range(0, low_inclusive=False)
_DAY = 86400
_TIMEOUT = _Range(0, 3600, low_inclusive=False, unit="seconds")

_RANGES: dict[str, _Range] = {
    "server.min_free_space_mb": _Range(0, unit="MB"),
    "limits.max_message_size": _Range(1024, 2**31, unit="bytes"),
    "limits.max_recipients": _POSITIVE,
    "limits.max_line_length": _Range(78, 100_000, unit="characters"),
    "limits.max_command_length": _Range(512, 4096, unit="characters"),
    "limits.idle_timeout": _TIMEOUT,
    "limits.data_timeout": _TIMEOUT,
    "limits.max_connections": _POSITIVE,
    "limits.max_connections_per_ip": _POSITIVE,
    "limits.max_messages_per_minute_per_ip": _Range(0),
    "limits.max_messages_per_minute_per_user": _Range(0),
    "auth.failures_before_delay": _Range(1),
    "auth.failures_before_lockout": _Range(1),
    "auth.failure_window": _Range(1, 86400, unit="seconds"),
    "auth.lockout_seconds": _Range(1, 86400, unit="seconds"),
    "auth.max_verifications_in_flight": _Range(1, 256),
    "listeners.greet_pause": _Range(0, 300, unit="seconds"),
    "users.max_messages_per_minute": _Range(1),
    "dns.timeout": _Range(0.1, 60, unit="seconds"),
    "delivery.mx_port": _Range(1, 65535),
    "delivery.max_connections": _Range(1, 10_000),
    "delivery.max_connections_per_destination": _Range(1, 1000),
    "delivery.connection_cache_idle": _Range(0, 300, unit="seconds"),
    "delivery.connect_timeout": _Range(0, 600, low_inclusive=False, unit="seconds"),
    "delivery.command_timeout": _TIMEOUT,
    "delivery.data_timeout": _TIMEOUT,
    "delivery.min_backoff": _Range(0, _DAY, low_inclusive=False, unit="seconds"),
    "delivery.max_backoff": _Range(0, _DAY, low_inclusive=False, unit="seconds"),
    "delivery.queue_lifetime": _Range(0, 30 * _DAY, low_inclusive=False, unit="seconds"),
    "delivery.delay_warning": _Range(0, 30 * _DAY, unit="seconds"),
    "delivery.retention": _Range(0, 366 * _DAY, unit="seconds"),
    "ui.deferred_warning": _Range(0, 10_000_000, unit="messages"),
    "health.check_interval": _Range(0, 2_678_400, unit="seconds"),
    "ui.oldest_deferred_warning": _Range(0, 366 * _DAY, unit="seconds"),
    "delivery.suppression_days": _Range(0, 3650, low_inclusive=False, unit="days"),
    "routes.max_messages_per_minute": _Range(0, 100_000),
    "routes.max_connections": _Range(1, 1000),
}
"""Keyed by `section.field` (listeners and users without an index); fields not listed have no
range."""

_PORT = _Range(0, 65535)

_TLS_FILES = ("certificate", "private_key")

_WIDE_PREFIX = {4: 8, 6: 32}
"""Allowed networks shorter than these prefixes are warned about. An IPv4 /8 is a large
company's whole address block; /32 is what a registry hands a whole ISP in IPv6."""

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

_ONE_LINE = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

_MAX_PEM_BYTES = 1024 * 1024
"""Certificate and key files larger than this are not what they claim to be."""


def _host_name_problem(name: str) -> str | None:
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


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_address(name: str) -> bool:
    """Whether a user name is itself a valid email address (so the user may send as it)."""
    if "@" not in name:
        return False
    try:
        parse_rcpt(f"TO:<{name}>", smtputf8=True)
    except AddressError:
        return False
    return True


def _address_reason(exc: AddressError) -> str:
    """An address parser's reply without its SMTP code and prefix: just the reason."""
    return re.sub(r"^\d\.\d{1,3}\.\d{1,3} (?:[^:]*: )?", "", exc.text)


def check_user_name(name: str) -> str | None:
    """What is wrong with a `[[users]]` login name, or None when it is usable.

    The rule `[[users]] name` is checked with, for `relaybox passwd NAME` to refuse a name
    before asking for a password. The message reads after the name's key, as in
    `users[0].name: must not be empty; ...`.
    """
    if not name:
        return 'must not be empty; write the name the mail program logs in with, like "alice"'
    for char in name:
        if char == " ":
            bad = "a space"
        elif char == "\t":
            bad = "a tab"
        elif char in "\r\n":
            bad = "a line break"
        elif char.isspace() or unicodedata.category(char).startswith("C"):
            bad = f"the invisible character U+{ord(char):04X}"
        else:
            continue
        shown = name.translate(_ONE_LINE)
        return (
            f'"{shown}" contains {bad}; a user name may not hold spaces, line breaks or '
            'invisible characters. Use a name like "alice" or "alice@example.org"'
        )
    return None


def _describe(value: object) -> str:
    """What an admin wrote, in their words rather than Python's."""
    if isinstance(value, bool):
        return f"a true/false value ({str(value).lower()})"
    if isinstance(value, int):
        return f"a whole number ({value})"
    if isinstance(value, float):
        return f"a decimal number ({value:g})"
    if isinstance(value, str):
        return f'text ("{value}")'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a date/time ({value})"


def _quoted_hint(value: object) -> str:
    """Numbers and true/false written in quotes are the commonest type mistake; say so."""
    if isinstance(value, str) and re.fullmatch(r"\s*(-?[0-9_.]+|true|false)\s*", value):
        return "; remove the quotes"
    return ""


class _Validator:
    """Turns the parsed TOML into a `Config`, collecting errors and warnings as it goes."""

    def __init__(self, file: str, base_dir: Path, key_lines: _KeyLines) -> None:
        self.file = file
        self.base_dir = base_dir
        self.key_lines = key_lines
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self._text_rules: dict[str, typing.Callable[[str, str], str | None]] = {
            "server.hostname": self._hostname,
            "users.name": self._user_name,
            "routes.username": self._route_username,
            "routes.reject_text": self._reject_text,
            "delivery.bounce_sender": self._bounce_sender,
        }

    def error(self, key: str, message: str) -> None:
        self.errors.append(self._problem(key, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(self._problem(key, message))

    def _problem(self, key: str, message: str) -> Problem:
        # Values quoted in messages may hold line breaks; one problem must stay one line.
        return Problem(self.file, self.key_lines(key), key, message.translate(_ONE_LINE))

    def build(self, data: dict[str, Any]) -> Config | None:
        """The config, or None when any error was recorded (all of them are, before returning)."""
        self._unknown_keys("", data, _TOP_LEVEL_KEYS, "the top level")
        sections: dict[str, Any] = {}
        for name, cls in _SECTIONS.items():
            table = data.get(name, {})
            if not isinstance(table, dict):
                self.error(
                    name,
                    f"must be a table, written as a [{name}] line with its settings "
                    f"below it, not {_describe(table)}",
                )
                table = {}
            sections[name] = self._section(name, name, cls, table)
        listeners = self._listeners(data)
        users = self._users(data)
        routes = self._routes(data)
        dkim = self._dkim(data)
        if self.errors:
            return None
        self._cross_warnings(listeners, users)
        self._delivery_warnings(sections["delivery"])
        if routes is not None:
            self._route_warnings(routes, sections["delivery"])
        return Config(
            listeners=listeners,
            users=users,
            dkim=dkim,
            routes=(DEFAULT_ROUTE,) if routes is None else tuple(r for _, _, r in routes),
            **sections,
        )

    def _unknown_keys(
        self, prefix: str, table: dict[str, Any], known: list[str], where: str
    ) -> None:
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                hint = f'did you mean "{close[0]}"?'
            else:
                hint = f"{where} may contain: {', '.join(known)}"
            self.error(_join(prefix, key), f"unknown key ({hint})")

    def _section(
        self, prefix: str, range_prefix: str, cls: type[Any], table: dict[str, Any]
    ) -> Any:
        """Build one dataclass from its table; None when any of its settings is wrong."""
        fields = [f for f in dataclasses.fields(cls) if f.name != "source"]
        where = f"a [{prefix}] table" if "[" not in prefix else f"a [[{range_prefix}]] block"
        self._unknown_keys(prefix, table, [f.name for f in fields], where)
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        valid = True
        for field in fields:
            key = _join(prefix, field.name)
            if field.name not in table:
                if (
                    field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                ):
                    self.error(
                        prefix,
                        f'has no "{field.name}" key; add one, like '
                        f"{field.name} = {_EXAMPLES.get(field.name, '...')}",
                    )
                    valid = False
                continue
            value = self._value(
                key, f"{range_prefix}.{field.name}", hints[field.name], table[field.name]
            )
            if value is None:
                valid = False
            else:
                values[field.name] = value
        if not valid:
            return None
        if cls is AuthConfig:
            return self._auth(prefix, table, AuthConfig(**values))
        if cls is DeliveryConfig:
            return self._delivery(prefix, table, DeliveryConfig(**values))
        return cls(**values)

    def _auth(self, prefix: str, table: dict[str, Any], auth: AuthConfig) -> AuthConfig | None:
        """Slow down first, lock out later: the lockout threshold must be the higher one."""
        if auth.failures_before_lockout > auth.failures_before_delay:
            return auth
        written = (
            "failures_before_lockout"
            if "failures_before_lockout" in table
            else ("failures_before_delay")
        )
        self.error(
            _join(prefix, written),
            f"failures_before_lockout ({auth.failures_before_lockout}) must be more than "
            f"failures_before_delay ({auth.failures_before_delay}): replies to an address "
            "that keeps failing are first slowed down, and only later is it locked out",
        )
        return None

    def _value(self, key: str, setting: str, hint: Any, value: object) -> Any:
        """Check and convert one setting by its type in the model; None (once reported) if wrong."""
        if setting == "users.password_hash":
            return self._password_hash_text(key, value)
        if setting == "dns.resolvers":
            return self._resolvers(key, value)
        if setting == "delivery.outbound_ips":
            return self._outbound_ips(key, value)
        if setting in ("routes.domains", "routes.sender_domains"):
            return self._domain_patterns(key, value, required=setting == "routes.domains")
        if setting == "routes.hosts":
            return self._hosts(key, value)
        if setting == "routes.rewrite_senders":
            return self._rewrite_senders(key, value)
        if hint is bool:
            return self._bool(key, value)
        if hint is int or hint is float or hint == (int | None):
            number = self._number(key, value, whole=hint is not float)
            if number is not None and setting in _RANGES:
                message = _RANGES[setting].violation(number)
                if message:
                    self.error(key, message)
                    return None
            return number
        if hint is str or hint == (str | None):
            if setting == "routes.password_env":
                # Checked without repeating the value: it may be the password itself.
                return self._password_env(key, value)
            text = self._str(key, value)
            rule = self._text_rules.get(setting)
            return text if text is None or rule is None else rule(key, text)
        if hint is Path or hint == (Path | None):
            path = self._path(key, value)
            if path is not None and setting == "log.file":
                return self._log_file(key, path)
            if path is not None and setting == "routes.password_file":
                return self._password_file(key, path)
            if path is not None and setting == "routes.ca_file":
                return self._ca_file(key, path)
            return path
        if typing.get_origin(hint) is Literal:
            return self._choice(key, value, typing.get_args(hint))
        if hint == tuple[SocketAddress, ...]:
            return self._listen(key, value)
        if hint == tuple[Network, ...]:
            return self._networks(key, value)
        if hint == tuple[str, ...] and setting == "users.allowed_senders":
            return self._senders(key, value)
        raise TypeError(f"config.load has no rule for {setting} ({hint!r}); add one to _value")

    def _type_error(self, key: str, expected: str, value: object) -> None:
        self.error(key, f"must be {expected}, not {_describe(value)}{_quoted_hint(value)}")

    def _bool(self, key: str, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        self._type_error(key, "true or false (without quotes)", value)
        return None

    def _number(self, key: str, value: object, *, whole: bool) -> float | None:
        # bool is an int subclass in Python, but `true` is never a sensible count.
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._type_error(
                key, "a whole number, like 300" if whole else "a number, like 2.5", value
            )
            return None
        if whole and isinstance(value, float):
            suggestion = f"; write {int(value)}" if value.is_integer() else ""
            self.error(key, f"must be a whole number (got {value!r}){suggestion}")
            return None
        if not math.isfinite(value):
            self.error(key, f"must be an ordinary number (got {value})")
            return None
        return value if whole else float(value)

    def _str(self, key: str, value: object) -> str | None:
        if isinstance(value, str):
            return value
        self._type_error(key, 'text in quotes, like "example"', value)
        return None

    def _choice(self, key: str, value: object, allowed: tuple[str, ...]) -> str | None:
        choices = ", ".join(f'"{choice}"' for choice in allowed)
        if not isinstance(value, str):
            self._type_error(key, f"one of {choices}", value)
            return None
        if value in allowed:
            return value
        hint = f' (values are lower-case: "{value.lower()}")' if value.lower() in allowed else ""
        self.error(key, f'"{value}" is not allowed here; use one of {choices}{hint}')
        return None

    def _hostname(self, key: str, name: str) -> str | None:
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
                problem = _host_name_problem(name)
                if problem and problem.startswith('"'):
                    problem = f"{problem}; {example}"
        if problem:
            self.error(key, problem)
            return None
        return name

    def _path(self, key: str, value: object) -> Path | None:
        """A path; `~` is the user's home and relative paths start at the config file's folder."""
        text = self._str(key, value)
        if text is None:
            return None
        if not text.strip():
            self.error(key, 'must not be empty; give a path like "/var/lib/relaybox"')
            return None
        try:
            path = Path(text).expanduser()
        except RuntimeError:
            self.error(key, f'"{text}": cannot find that user\'s home folder; write the full path')
            return None
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    def _log_file(self, key: str, path: Path) -> Path | None:
        if path.is_dir():
            self.error(
                key, f"{path} is a folder; name a file inside it, like {path / 'relaybox.log'}"
            )
            return None
        if not path.parent.is_dir():
            self.error(
                key,
                f"the folder {path.parent} does not exist; create it, or choose a "
                "file in an existing folder",
            )
            return None
        return path

    def _list(self, key: str, value: object, example: str) -> list[Any] | None:
        if isinstance(value, list):
            return value
        self._type_error(key, f"a list in square brackets, like {example}", value)
        return None

    def _each(
        self,
        key: str,
        items: list[Any],
        parse: Callable[[str, object], T | None],
        *,
        unique: bool = False,
    ) -> tuple[T, ...] | None:
        """Each item of a list setting parsed as `key[i]`; None (each problem reported) when
        any is wrong, or (`unique`) when one is listed twice."""
        parsed = [parse(f"{key}[{i}]", item) for i, item in enumerate(items)]
        if any(item is None for item in parsed):
            return None
        out = tuple(item for item in parsed if item is not None)
        if unique:
            seen: set[T] = set()
            for position, item in enumerate(out):
                if item in seen:
                    self.error(f"{key}[{position}]", f"{item} is listed twice; list it once")
                    return None
                seen.add(item)
        return out

    def _listen(self, key: str, value: object) -> tuple[SocketAddress, ...] | None:
        items = self._list(key, value, _EXAMPLES["listen"])
        if items is None:
            return None
        if not items:
            self.error(key, f"must list at least one address, like {_EXAMPLES['listen']}")
            return None
        return self._each(key, items, self._socket_address)

    def _socket_address(self, key: str, value: object) -> SocketAddress | None:
        """Parse `host:port` or `[v6]:port`; the host must be an address literal."""
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "127.0.0.1:2525"', value)
            return None
        bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
        if bracketed:
            host, port = bracketed.group(1), bracketed.group(2)
        elif value.count(":") > 1:
            self.error(
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
            self.error(key, f'"{value}" has no port; add one after a colon, like "{example}"')
            return None
        if not port.isdigit():
            self.error(key, f'"{value}": the port "{port}" must be a number from 0 to 65535')
            return None
        if _PORT.violation(int(port)):
            self.error(
                key,
                f'"{value}": the port must be from 0 to 65535 (got {port}); 0 means any free port',
            )
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            self.error(
                key,
                f'"{host}" is not an IP address: relaybox binds addresses, not names, '
                "because a name can stand for several addresses or change later. "
                'Use "127.0.0.1" for this machine only, "0.0.0.0" for every IPv4 '
                'address or "[::]" for every IPv6 address, or the address of one '
                "network card",
            )
            return None
        if bracketed and address.version == 4:
            self.error(
                key,
                f'"{value}": square brackets are only for IPv6 addresses; write "{host}:{port}"',
            )
            return None
        return SocketAddress(str(address), int(port))

    def _networks(self, key: str, value: object) -> tuple[Network, ...] | None:
        items = self._list(key, value, _EXAMPLES["allowed_networks"])
        if items is None:
            return None
        return self._each(key, items, self._network)

    def _network(self, key: str, value: object) -> Network | None:
        """A CIDR network or a single address (which becomes a /32 or /128)."""
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "192.168.1.0/24"', value)
            return None
        try:
            return ipaddress.ip_network(value, strict=True)
        except ValueError:
            pass
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            self.error(
                key,
                f'"{value}" is not a network; write one like "192.168.1.0/24", or a '
                'single address like "192.168.1.10"',
            )
            return None
        host = value.split("/")[0]
        single = 32 if network.version == 4 else 128
        self.error(
            key,
            f'"{value}" has bits set after the /{network.prefixlen} prefix; the '
            f'network that contains it is "{network}" (or write "{host}/{single}" '
            "for that one machine)",
        )
        return None

    # --- listeners ---------------------------------------------------------------------------

    def _listeners(self, data: dict[str, Any]) -> tuple[ListenerConfig, ...]:
        if "listeners" not in data:
            return (DEFAULT_LISTENER,)
        blocks = data["listeners"]
        if isinstance(blocks, dict):
            self.error(
                "listeners",
                "write each listener as its own [[listeners]] block (with "
                "double square brackets), not [listeners]",
            )
            return ()
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            self.error(
                "listeners",
                "must be [[listeners]] blocks, one per listener, each with "
                "its own listen = [...] line",
            )
            return ()
        if not blocks:
            self.error(
                "listeners",
                "relaybox needs at least one listener; add a [[listeners]] "
                f"block with listen = {_EXAMPLES['listen']}",
            )
            return ()
        built: list[tuple[int, ListenerConfig]] = []
        for index, block in enumerate(blocks):
            prefix = f"listeners[{index}]"
            listener = self._section(prefix, "listeners", ListenerConfig, block)
            if listener is not None:
                self._listener_tls(prefix, listener)
                built.append((index, listener))
        self._duplicate_addresses(built)
        for index, listener in built:
            self._listener_warnings(f"listeners[{index}]", listener)
        return tuple(listener for _, listener in built)

    def _duplicate_addresses(self, listeners: list[tuple[int, ListenerConfig]]) -> None:
        """Two binds of one port on one address (or a wildcard of the same family) cannot both
        succeed; say so now rather than with EADDRINUSE at start."""
        seen: list[tuple[SocketAddress, str]] = []
        for index, listener in listeners:
            owner = f"listeners[{index}]"
            for position, address in enumerate(listener.listen):
                if address.port == 0:  # each bind gets its own free port
                    continue
                for earlier, earlier_owner in seen:
                    message = _clash(address, earlier, earlier_owner, owner)
                    if message:
                        self.error(f"{owner}.listen[{position}]", message)
                        break
                seen.append((address, owner))

    def _listener_warnings(self, prefix: str, listener: ListenerConfig) -> None:
        exposed = [a for a in listener.listen if not ipaddress.ip_address(a.host).is_loopback]
        exposed_text = ", ".join(str(a) for a in exposed)
        if listener.role == "relay" and not listener.allowed_networks:
            self.warn(
                prefix,
                "this relay listener has no allowed_networks, so no client may "
                "send mail through it; add the networks of the machines that send "
                'mail, like allowed_networks = ["192.168.1.0/24"]',
            )
        for position, network in enumerate(listener.allowed_networks):
            key = f"{prefix}.allowed_networks[{position}]"
            if (
                listener.role == "relay"
                and exposed
                and any(
                    network.overlaps(loopback)
                    for loopback in _LOOPBACK
                    if loopback.version == network.version
                )
            ):
                self.warn(
                    key,
                    f"this relay listener can be reached from other machines "
                    f"({exposed_text}) and trusts {network}, which includes this "
                    "machine's own loopback addresses. Every program on this machine "
                    "may then relay, and so may anything that reaches relaybox "
                    "through a local proxy, port forward or NAT, because those "
                    "connections appear to come from this machine. Give local programs "
                    "their own listener on 127.0.0.1 and trust only your office "
                    "networks here",
                )
            if network.prefixlen < _WIDE_PREFIX[network.version]:
                size = (
                    f"every IPv{network.version} address"
                    if network.prefixlen == 0
                    else f"{network.num_addresses:,} addresses"
                )
                self.warn(
                    key,
                    f"{network} covers {size}; everyone in it may send mail through "
                    "relaybox, which makes it an open relay if this listener can be "
                    "reached from the internet. List only your office networks, like "
                    '"192.168.1.0/24" (networks wider than an IPv4 /8 or an IPv6 /32 '
                    "are reported)",
                )

    # --- TLS ---------------------------------------------------------------------------------

    def _listener_tls(self, prefix: str, listener: ListenerConfig) -> None:
        """A TLS listener needs a certificate and key that load as a pair; a submission
        listener needs TLS, because AUTH is only ever offered over it."""
        given = [name for name in _TLS_FILES if getattr(listener, name) is not None]
        if listener.tls == "none":
            if listener.role == "submission":
                self.error(
                    f"{prefix}.tls",
                    'a submission listener needs tls = "starttls" or "implicit": relaybox '
                    "offers log-in (AUTH) only over an encrypted connection, so with "
                    'tls = "none" nobody could ever log in and send mail through it. Add '
                    'tls = "starttls" with certificate and private_key (relaybox init makes '
                    "a self-signed pair)",
                )
            for name in given:
                self.warn(
                    f"{prefix}.{name}",
                    'is not used, because this listener has tls = "none"; remove it, or set '
                    'tls = "starttls" to offer encryption',
                )
            return
        if listener.certificate is None or listener.private_key is None:
            missing = [name for name in _TLS_FILES if name not in given]
            detail = f" ({missing[0]} is missing)" if len(missing) == 1 else ""
            self.error(
                prefix,
                f'tls = "{listener.tls}" needs certificate and private_key{detail}; '
                "relaybox init makes a self-signed pair",
            )
            return
        self._tls_pair(prefix, listener.certificate, listener.private_key)

    def _tls_pair(self, prefix: str, certificate: Path, private_key: Path) -> None:
        cert_key, private_key_key = f"{prefix}.certificate", f"{prefix}.private_key"
        cert_pem = self._read_pem(cert_key, certificate)
        key_pem = self._read_pem(private_key_key, private_key)
        if cert_pem is None or key_pem is None:
            return
        usable = True
        if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
            usable = False
            if b"PRIVATE KEY-----" in cert_pem:
                self.error(
                    cert_key,
                    f"{certificate} holds a private key, not a certificate; are certificate "
                    "and private_key swapped?",
                )
            else:
                self.error(
                    cert_key,
                    f"{certificate} is not a certificate in PEM format (text starting with "
                    '"-----BEGIN CERTIFICATE-----"); a binary .der or .cer file can be '
                    "converted with: openssl x509 -inform der -in FILE -out cert.pem",
                )
        if b"PRIVATE KEY-----" not in key_pem:
            usable = False
            what = (
                "holds a certificate, not a private key"
                if b"-----BEGIN CERTIFICATE-----" in key_pem
                else 'is not a private key in PEM format (text starting with "-----BEGIN" '
                'and ending "PRIVATE KEY-----")'
            )
            self.error(private_key_key, f"{private_key} {what}")
        elif b"ENCRYPTED" in key_pem:
            # OpenSSL would stop and ask for the passphrase on the terminal, or fail oddly.
            usable = False
            self.error(
                private_key_key,
                f"{private_key} is protected by a passphrase, which relaybox cannot type "
                "in; save the key without one (openssl pkey -in FILE -out key.pem) and keep "
                "the file readable only by relaybox",
            )
        if not usable:
            return
        # Imported here: it pulls in `cryptography`, which configs without TLS never need.
        from relaybox.config.keys import server_context

        try:
            server_context(certificate, private_key)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                message = (
                    f"the certificate and private key do not match: {private_key} is not "
                    f"the key of the certificate in {certificate}; name the key that was "
                    "made together with this certificate"
                )
            else:
                message = (
                    f"the certificate {certificate} and private key {private_key} cannot be "
                    f"loaded together (OpenSSL says: {exc.reason or exc}); check that both "
                    "files are complete and in PEM format"
                )
            self.error(private_key_key, message)
            return
        except OSError as exc:
            self.error(
                private_key_key,
                f"the certificate {certificate} and private key {private_key} cannot be "
                f"loaded: {exc.strerror or exc}",
            )
            return
        self._certificate_dates(cert_key, certificate, cert_pem)

    def _read_pem(
        self,
        key: str,
        path: Path,
        missing: str = "relaybox init makes a self-signed certificate and key",
    ) -> bytes | None:
        """The start of a certificate or key file; None (reported) when it cannot be read.

        `missing` ends the message about a file that does not exist: how to get one."""
        try:
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode):
                self.error(key, f"{path} is a folder; name the file inside it")
                return None
            if not stat.S_ISREG(mode):
                self.error(key, f"{path} is not an ordinary file")
                return None
            with path.open("rb") as file:
                data = file.read(_MAX_PEM_BYTES + 1)
        except FileNotFoundError:
            self.error(
                key,
                f"the file {path} does not exist; check the path ({missing})",
            )
            return None
        except PermissionError:
            self.error(
                key,
                f"{path} cannot be read (permission denied); let the user relaybox runs as read it",
            )
            return None
        except OSError as exc:
            self.error(key, f"cannot read {path}: {exc.strerror or exc}")
            return None
        if len(data) > _MAX_PEM_BYTES:
            self.error(key, f"{path} is larger than 1 MB, too large for a certificate or key")
            return None
        return data

    def _certificate_dates(self, key: str, path: Path, pem: bytes) -> None:
        """Warn about a certificate that is not valid today: clients that check refuse it."""
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            return
        now = datetime.datetime.now(datetime.UTC)
        if cert.not_valid_after_utc < now:
            when = f"expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        elif cert.not_valid_before_utc > now:
            when = f"is only valid from {cert.not_valid_before_utc:%Y-%m-%d}"
        else:
            return
        self.warn(
            key,
            f"the certificate in {path} {when}; mail programs that check certificates will "
            "refuse to connect. Renew it, or let relaybox init make a new self-signed pair",
        )

    # --- users -------------------------------------------------------------------------------

    def _dkim(self, data: dict[str, Any]) -> tuple[DkimConfig, ...]:
        """The `[[dkim]]` blocks, each key file read and checked now (not at delivery)."""
        if "dkim" not in data:
            return ()
        blocks = data["dkim"]
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            self.error(
                "dkim",
                "write each key as its own [[dkim]] block (with double square brackets), with "
                "domain, selector and private_key lines (relaybox dkim keygen prints one)",
            )
            return ()
        built: list[DkimConfig] = []
        seen: dict[tuple[str, str], int] = {}
        for index, block in enumerate(blocks):
            prefix = f"dkim[{index}]"
            entry = self._section(prefix, "dkim", DkimConfig, block)
            if entry is None:
                continue
            domain = self._domain_pattern(_join(prefix, "domain"), entry.domain)
            if domain is None:
                continue
            if domain.startswith("*"):
                self.error(
                    _join(prefix, "domain"),
                    f'"{entry.domain}": a DKIM key signs for one domain; write it exactly, '
                    "and add a block for each subdomain that sends mail",
                )
                continue
            selector = entry.selector.strip().lower()
            problem = check_selector(selector)
            if problem:
                self.error(_join(prefix, "selector"), problem)
                continue
            if (domain, selector) in seen:
                self.error(
                    _join(prefix, "selector"),
                    f"{domain} already has a key under selector {selector} (dkim"
                    f"[{seen[domain, selector]}]); one key per domain and selector",
                )
                continue
            seen[domain, selector] = index
            try:
                key = load_private_key(entry.private_key, entry.algorithm)
            except DkimKeyError as exc:
                self.error(_join(prefix, "private_key"), str(exc))
                continue
            if entry.algorithm == "rsa-sha256" and key.bits < 2048:
                self.warn(
                    _join(prefix, "private_key"),
                    f"a {key.bits}-bit RSA key: receivers may treat it as weak; make a "
                    f"2048-bit one (relaybox dkim keygen {domain} --selector NEW)",
                )
            built.append(dataclasses.replace(entry, domain=domain, selector=selector, key=key))
        return tuple(built)

    def _users(self, data: dict[str, Any]) -> tuple[UserConfig, ...]:
        if "users" not in data:
            return ()
        blocks = data["users"]
        if isinstance(blocks, dict):
            self.error(
                "users",
                "write each user as its own [[users]] block (with double square brackets), "
                "not [users]",
            )
            return ()
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            self.error(
                "users",
                "must be [[users]] blocks, one per user, each with its own name = ... and "
                "password_hash = ... lines (relaybox passwd NAME prints one)",
            )
            return ()
        built: list[tuple[int, UserConfig]] = []
        for index, block in enumerate(blocks):
            prefix = f"users[{index}]"
            user = self._section(prefix, "users", UserConfig, block)
            hash_ok = self._password_hash(prefix, block)
            if user is not None and hash_ok:
                built.append((index, user))
        # Judged on every usable name, so a duplicate is reported next to other mistakes.
        names = [
            (index, block["name"])
            for index, block in enumerate(blocks)
            if isinstance(block.get("name"), str) and check_user_name(block["name"]) is None
        ]
        self._duplicate_users(names)
        for index, user in built:
            if not user.allowed_senders and not _is_address(user.name):
                self.warn(
                    f"users[{index}]",
                    f"{user.name} may not send as any address: add allowed_senders, like "
                    f"allowed_senders = {_EXAMPLES['allowed_senders']} (a user whose name "
                    "is an address, like alice@example.org, may always send as that address)",
                )
        return tuple(user for _, user in built)

    def _duplicate_users(self, names: list[tuple[int, str]]) -> None:
        """Names are case-sensitive: the same name twice is an error, the same name in
        another case a warning (two logins an admin will probably mix up)."""
        exact: dict[str, int] = {}
        folded: dict[str, tuple[int, str]] = {}
        for index, name in names:
            key = f"users[{index}].name"
            if name in exact:
                self.error(
                    key,
                    f'the user "{name}" is already defined in users[{exact[name]}]; '
                    "each name may appear once, so remove or rename one of the blocks",
                )
                continue
            exact[name] = index
            lower = name.lower()
            if lower in folded:
                other_index, other = folded[lower]
                self.warn(
                    key,
                    f'"{name}" and "{other}" (users[{other_index}]) differ only in upper '
                    "and lower case; they are two separate users, each with its own "
                    "password, which is easy to mix up",
                )
            else:
                folded[lower] = (index, name)

    def _user_name(self, key: str, name: str) -> str | None:
        problem = check_user_name(name)
        if problem:
            self.error(key, problem)
            return None
        return name

    def _password_hash_text(self, key: str, value: object) -> str | None:
        """The type check of password_hash, which never repeats the value: it may be a
        password someone typed in by mistake."""
        if isinstance(value, str):
            return value
        self.error(
            key,
            "must be the hash that relaybox passwd NAME prints, in double quotes; "
            "relaybox never stores plain passwords",
        )
        return None

    def _password_hash(self, prefix: str, block: dict[str, Any]) -> bool:
        """Check a user's password_hash (its type is checked by `_value`); False if wrong."""
        encoded = block.get("password_hash")
        if not isinstance(encoded, str):
            return True  # missing or not text: `_section` has reported it
        name = block.get("name")
        command = "relaybox passwd " + (
            shlex.quote(name) if isinstance(name, str) and name else "NAME"
        )
        key = f"{prefix}.password_hash"
        if not encoded.startswith("$"):
            self.error(
                key,
                "looks like a plain password, but relaybox never stores plain passwords; "
                f"run `{command}` and paste the password_hash line it prints instead",
            )
            return False
        problem = check_hash_format(encoded)
        if problem:
            self.error(key, problem.replace("relaybox passwd USER", command))
            return False
        return True

    def _senders(self, key: str, value: object) -> tuple[str, ...] | None:
        items = self._list(key, value, _EXAMPLES["allowed_senders"])
        if items is None:
            return None
        senders = [self._sender(f"{key}[{i}]", item) for i, item in enumerate(items)]
        if any(sender is None for sender in senders):
            return None
        return tuple(sender for sender in senders if sender is not None)

    def _sender(self, key: str, value: object) -> str | None:
        """One allowed_senders entry: a domain or an address, lower-cased."""
        example = 'write a domain like "example.org" or an address like "bob@example.net"'
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "example.org"', value)
            return None
        problem = None
        if not value.strip():
            problem = f"must not be empty; {example}"
        elif any(char.isspace() for char in value):
            problem = f'"{value}" contains a space; {example}'
        elif "*" in value:
            domain = value.rpartition("@")[2].lstrip("*.") or "example.org"
            problem = (
                f'"{value}": wildcards are not supported; "{domain}" allows every address '
                f"at {domain}, but not at its subdomains, which are listed one by one"
            )
        elif "<" in value or ">" in value:
            problem = f'"{value}": write the address without < and >, like "bob@example.net"'
        elif value.startswith("@"):
            problem = (
                f'"{value}": to allow every address at a domain, write just the domain, '
                f'like "{value[1:]}"'
            )
        elif "@" in value:
            try:
                parse_rcpt(f"TO:<{value}>", smtputf8=True)
            except AddressError as exc:
                problem = f'"{value}" is not a valid address: {_address_reason(exc)}; {example}'
        elif _is_ip_address(value):
            problem = f'"{value}" is an IP address; {example}'
        else:
            problem = _host_name_problem(value)
            if problem:
                problem = f"{problem}; {example}"
        if problem:
            self.error(key, problem)
            return None
        return value.lower()

    def _cross_warnings(
        self, listeners: tuple[ListenerConfig, ...], users: tuple[UserConfig, ...]
    ) -> None:
        """Settings that are each valid but do not work together."""
        if users:
            return
        for index, listener in enumerate(listeners):
            if listener.role == "submission":
                self.warn(
                    f"listeners[{index}].role",
                    "this submission listener has no [[users]] to log in with, so nobody "
                    "can send mail through it; add a [[users]] block for each person "
                    "(relaybox passwd NAME prints one)",
                )

    # --- [dns] and [delivery] ----------------------------------------------------------------

    def _resolvers(self, key: str, value: object) -> tuple[SocketAddress, ...] | None:
        items = self._list(key, value, _EXAMPLES["resolvers"])
        if items is None:
            return None
        return self._each(key, items, self._resolver, unique=True)

    def _resolver(self, key: str, value: object) -> SocketAddress | None:
        """`address`, `address:port`, `[v6]` or `[v6]:port`; the port is 53 when not written."""
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "127.0.0.1" or "127.0.0.1:5353"', value)
            return None
        parts = _split_host_port(value)
        if parts is None:
            self.error(
                key,
                f'"{value}": write an IPv6 address in square brackets, like "[::1]" (port 53) '
                'or "[::1]:5353"',
            )
            return None
        host, port_text, bracketed = parts
        port = _DNS_PORT if port_text is None else self._port(key, value, port_text, "53")
        if port is None:
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            self.error(
                key,
                f'"{host}" is not an IP address: name each DNS server by its address, like '
                '"127.0.0.1" or "[::1]", because looking up a name would itself need a DNS '
                "server",
            )
            return None
        if bracketed and address.version == 4:
            self.error(
                key, f'"{value}": square brackets are only for IPv6 addresses; write "{host}"'
            )
            return None
        return SocketAddress(str(address), port)

    def _port(self, key: str, value: str, port: str, example: str) -> int | None:
        """A port from 1 to 65535 written after a host; None (reported) otherwise."""
        if not port:
            self.error(
                key, f'"{value}" ends with a colon; write the port after it, or leave both out'
            )
            return None
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            self.error(
                key,
                f'"{value}": the port "{port}" must be a number from 1 to 65535, like {example}',
            )
            return None
        return int(port)

    def _outbound_ips(self, key: str, value: object) -> tuple[IPAddress, ...] | None:
        items = self._list(key, value, _EXAMPLES["outbound_ips"])
        if items is None:
            return None
        return self._each(key, items, self._outbound_ip, unique=True)

    def _outbound_ip(self, key: str, value: object) -> IPAddress | None:
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "203.0.113.7"', value)
            return None
        try:
            address = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            hint = (
                "list single addresses, not networks"
                if "/" in value
                else 'write an address like "203.0.113.7" or "2001:db8::7"'
            )
            self.error(key, f'"{value}" is not an IP address; {hint}')
            return None
        if address.is_unspecified or address.is_multicast:
            self.error(
                key,
                f'"{value}" cannot be the address mail is sent from; write the public '
                'address receiving servers see, like "203.0.113.7"',
            )
            return None
        return address

    def _delivery(
        self, prefix: str, table: dict[str, Any], delivery: DeliveryConfig
    ) -> DeliveryConfig | None:
        """Settings of [delivery] that must agree with each other."""
        valid = True
        if delivery.max_backoff < delivery.min_backoff:
            written = "max_backoff" if "max_backoff" in table else "min_backoff"
            self.error(
                _join(prefix, written),
                f"max_backoff ({_show(delivery.max_backoff)}) must not be less than min_backoff "
                f"({_show(delivery.min_backoff)}): retries start min_backoff seconds apart and the "
                "wait doubles up to max_backoff",
            )
            valid = False
        if delivery.delay_warning and delivery.delay_warning >= delivery.queue_lifetime:
            written = "delay_warning" if "delay_warning" in table else "queue_lifetime"
            self.error(
                _join(prefix, written),
                f"delay_warning ({_show(delivery.delay_warning)} seconds) must be less than "
                f"queue_lifetime ({_show(delivery.queue_lifetime)} seconds), or the message "
                "bounces before its sender is warned; use 0 for no warning",
            )
            valid = False
        return delivery if valid else None

    def _bounce_sender(self, key: str, text: str) -> str | None:
        if "@" in text:
            self.error(
                key,
                f'"{text}": write only the part before the @, like "MAILER-DAEMON"; the '
                "domain is always [server] hostname",
            )
            return None
        problem = None
        if not text:
            problem = 'must not be empty; write a name like "MAILER-DAEMON"'
        else:
            try:
                parse_rcpt(f"TO:<{text}@example.com>", smtputf8=False)
            except AddressError as exc:
                problem = (
                    f'"{text}" cannot be the part before the @ of an address '
                    f'({_address_reason(exc)}); use a name like "MAILER-DAEMON"'
                )
        if problem:
            self.error(key, problem)
            return None
        return text

    def _delivery_warnings(self, delivery: DeliveryConfig) -> None:
        if delivery.max_connections_per_destination > delivery.max_connections:
            self.warn(
                "delivery.max_connections_per_destination",
                f"is more than max_connections ({delivery.max_connections}), which caps it; "
                "lower it, or raise max_connections",
            )
        for position, address in enumerate(delivery.outbound_ips):
            if not address.is_global:
                self.warn(
                    f"delivery.outbound_ips[{position}]",
                    f"{address} is not a public internet address; receiving servers check "
                    "SPF and reverse DNS against the address they see, which for a relay "
                    "behind a router (NAT) is the router's public address",
                )
        if delivery.soft_bounce:
            self.warn(
                "delivery.soft_bounce",
                "while this is on, no mail bounces: mail that can never be delivered waits "
                "in the queue until queue_lifetime, and its senders do not learn why. Turn it "
                "off once the problem is found",
            )

    # --- routes ------------------------------------------------------------------------------

    def _routes(self, data: dict[str, Any]) -> list[_RouteBlock] | None:
        """The [[routes]] blocks, each with its index and table; None when there are none."""
        if "routes" not in data:
            return None
        blocks = data["routes"]
        if isinstance(blocks, dict):
            self.error(
                "routes",
                "write each route as its own [[routes]] block (with double square brackets), "
                "not [routes]",
            )
            return []
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            self.error(
                "routes",
                "must be [[routes]] blocks, one per route, each with its own domains = [...] "
                "and transport = ... lines",
            )
            return []
        if not blocks:
            self.error(
                "routes",
                "lists no route, so no mail could be sent anywhere; remove this line to "
                "send all mail to the domains' MX servers, or add [[routes]] blocks",
            )
            return []
        built: list[_RouteBlock] = []
        for index, block in enumerate(blocks):
            prefix = f"routes[{index}]"
            if "password" in block:
                self.error(
                    f"{prefix}.password",
                    "relaybox does not keep passwords in its config file; put the password "
                    'on the first line of a file and name it with password_file = "/etc/'
                    'relaybox/smarthost.password", or in an environment variable named '
                    'with password_env = "SMARTHOST_PASSWORD"',
                )
                block = {k: v for k, v in block.items() if k != "password"}
            route = self._section(prefix, "routes", RouteConfig, block)
            if route is not None and self._route_rules(prefix, block, route):
                built.append((index, block, route))
        return built

    def _route_rules(self, prefix: str, block: dict[str, Any], route: RouteConfig) -> bool:
        """Settings of one route that must agree with its transport and with each other."""
        errors = len(self.errors)
        transport = route.transport
        if transport == "smarthost":
            if not route.hosts:
                self.error(
                    f"{prefix}.hosts" if "hosts" in block else prefix,
                    'transport = "smarthost" needs hosts, the servers to hand the mail to, '
                    'like hosts = ["smtp.example.net:587"]',
                )
            self._route_auth(prefix, block, route)
        else:
            for name in ("hosts", "round_robin"):
                if name in block:
                    self.error(
                        f"{prefix}.{name}",
                        f'is only used with transport = "smarthost" (this route has '
                        f'transport = "{transport}"); remove it, or set transport = "smarthost"',
                    )
            for name in ("username", "password_file", "password_env"):
                if name in block:
                    self.error(
                        f"{prefix}.{name}",
                        "logging in (SMTP AUTH) is only done at a smart host, never at other "
                        'domains\' MX servers; remove it, or set transport = "smarthost" '
                        "with hosts",
                    )
        if "reject_text" in block and transport != "reject":
            self.error(
                f"{prefix}.reject_text",
                f'is only used with transport = "reject" (this route has transport = '
                f'"{transport}"); remove it',
            )
        checks_tls = transport not in ("reject", "capture")  # those warn that tls is unused
        if checks_tls and route.ca_file is not None and route.tls not in _VERIFIED_TLS:
            self.error(
                f"{prefix}.ca_file",
                f'is only used to check certificates, which tls = "{route.tls}" never does; '
                'set tls = "verify" (or "implicit" for port 465), or remove ca_file',
            )
        return len(self.errors) == errors

    def _route_auth(self, prefix: str, block: dict[str, Any], route: RouteConfig) -> None:
        has_file, has_env = route.password_file is not None, route.password_env is not None
        if has_file and has_env:
            self.error(
                f"{prefix}.password_env",
                "password_file and password_env are both set; keep the one that holds the "
                "password and remove the other",
            )
        if route.username is None and (has_file or has_env):
            written = "password_file" if has_file else "password_env"
            self.error(
                f"{prefix}.{written}",
                'a password needs username = "..." too: the name to log in to the smart host with',
            )
        if route.username is not None and not (has_file or has_env):
            self.error(
                f"{prefix}.username",
                'needs a password: add password_file = "/etc/relaybox/smarthost.password" '
                "(a file whose first line is the password, readable by relaybox only) or "
                'password_env = "SMARTHOST_PASSWORD" (an environment variable holding it)',
            )

    def _domain_patterns(
        self, key: str, value: object, *, required: bool
    ) -> tuple[str, ...] | None:
        items = self._list(key, value, _EXAMPLES["domains"])
        if items is None:
            return None
        if required and not items:
            self.error(
                key,
                f'must list at least one domain, like {_EXAMPLES["domains"]}, or ["*"] for '
                "every domain",
            )
            return None
        patterns = [self._domain_pattern(f"{key}[{i}]", item) for i, item in enumerate(items)]
        if any(pattern is None for pattern in patterns):
            return None
        if "*" in patterns and len(patterns) > 1:
            self.error(
                f"{key}[{patterns.index('*')}]",
                '"*" already matches every domain, so it cannot be combined with others; '
                'write ["*"] alone, or list the domains without "*"',
            )
            return None
        return tuple(pattern for pattern in patterns if pattern is not None)

    def _domain_pattern(self, key: str, value: object) -> str | None:
        """`example.com`, `*.example.com` or `*`, lower-cased, IDNs as `xn--` A-labels."""
        example = 'write a domain like "example.org", "*.example.org" for its subdomains, or "*"'
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "example.org"', value)
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
        elif _is_ip_address(name.strip("[]")):
            problem = f'"{value}" is an IP address; routes match domain names'
        else:
            if not name.isascii():
                try:
                    name = name.encode("idna").decode("ascii")
                except UnicodeError:
                    problem = f'"{value}" is not a valid international domain name; {example}'
            if problem is None:
                problem = _host_name_problem(name)
                if problem:
                    problem = f"{problem}; {example}"
        if problem:
            self.error(key, problem)
            return None
        return ("*." if wildcard else "") + name.lower()

    def _hosts(self, key: str, value: object) -> tuple[HostPort, ...] | None:
        items = self._list(key, value, _EXAMPLES["hosts"])
        if items is None:
            return None
        return self._each(key, items, self._host_port)

    def _host_port(self, key: str, value: object) -> HostPort | None:
        """`name:port`, `address:port` or `[v6]:port`; the port is required."""
        if not isinstance(value, str):
            self._type_error(key, 'text in quotes, like "smtp.example.net:587"', value)
            return None
        parts = _split_host_port(value)
        if parts is None:
            self.error(
                key,
                f'"{value}": write an IPv6 address in square brackets followed by the port, '
                'like "[2001:db8::25]:587"',
            )
            return None
        host, port_text, bracketed = parts
        if not port_text:
            shown = f"[{host}]" if bracketed else host or "smtp.example.net"
            self.error(
                key,
                f'"{value}" has no port; add one after a colon, like "{shown}:587" (587 for '
                'submission with STARTTLS, 465 for tls = "implicit", 25 between mail servers)',
            )
            return None
        port = self._port(key, value, port_text, "587")
        if port is None:
            return None
        if bracketed:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                address = None
            if address is None or address.version != 6:
                self.error(
                    key,
                    f'"{value}": square brackets are only for IPv6 addresses; write '
                    f'"{host}:{port}"',
                )
                return None
            return HostPort(str(address), port)
        if _is_ip_address(host):
            return HostPort(host, port)
        problem = _host_name_problem(host) if host else "the host name before the colon is empty"
        if problem:
            self.error(key, f'{problem}; write the smart host like "smtp.example.net:587"')
            return None
        return HostPort(host.lower(), port)

    def _route_username(self, key: str, text: str) -> str | None:
        if not text:
            self.error(key, "must not be empty; write the name the smart host knows you by")
            return None
        if any(unicodedata.category(char).startswith("C") for char in text):
            self.error(
                key,
                "contains a line break, tab or invisible character, which cannot be sent "
                "in SMTP AUTH; write the name on one line",
            )
            return None
        return text

    def _password_env(self, key: str, value: object) -> str | None:
        """The name of the variable holding the password; never repeats a wrong value, which
        may be the password itself."""
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            self.error(
                key,
                "must be the name of an environment variable (letters, digits and _), like "
                'password_env = "SMARTHOST_PASSWORD", not the password itself',
            )
            return None
        password = os.environ.get(value)
        if password is None:
            self.error(
                key,
                f"the environment variable {value} is not set; set it where relaybox is "
                "started (for systemd, Environment= or EnvironmentFile= in the service), or "
                "use password_file",
            )
            return None
        if not password:
            self.error(key, f"the environment variable {value} is set but empty")
            return None
        return value

    def _password_file(self, key: str, path: Path) -> Path | None:
        try:
            read_password_file(path)
        except ValueError as exc:
            self.error(key, str(exc))
            return None
        if path.stat().st_mode & stat.S_IROTH:
            self.warn(
                key,
                f"{path} can be read by other users of this machine; make it readable by "
                f"relaybox only: chmod 600 {shlex.quote(str(path))}",
            )
        return path

    def _ca_file(self, key: str, path: Path) -> Path | None:
        pem = self._read_pem(key, path, "it must be a PEM file of the CA certificates to trust")
        if pem is None:
            return None
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            self.error(
                key,
                f"{path} holds no certificate in PEM format (text starting with "
                '"-----BEGIN CERTIFICATE-----"); name the CA certificate file of the smart host',
            )
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=str(path))
        except ssl.SSLError as exc:
            self.error(
                key,
                f"the CA certificates in {path} cannot be loaded (OpenSSL says: "
                f"{exc.reason or exc}); check that the file is complete and in PEM format",
            )
            return None
        return path

    def _reject_text(self, key: str, text: str) -> str | None:
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
            self.error(key, problem)
            return None
        return text

    def _rewrite_senders(self, key: str, value: object) -> tuple[tuple[str, str], ...] | None:
        if not isinstance(value, dict):
            self._type_error(
                key, f"a table in curly brackets, like {_EXAMPLES['rewrite_senders']}", value
            )
            return None
        pairs: dict[str, str] = {}
        valid = True
        for written, replacement in value.items():
            item_key = f"{key}.{written}"
            original = self._rewrite_from(item_key, written)
            new = self._rewrite_to(item_key, replacement)
            if original is None or new is None:
                valid = False
            elif original in pairs:
                self.error(
                    item_key,
                    f'"{written}" is listed twice (upper and lower case do not count); keep one',
                )
                valid = False
            else:
                pairs[original] = new
        return tuple(pairs.items()) if valid else None

    def _rewrite_from(self, key: str, written: str) -> str | None:
        """A key of rewrite_senders: an address or `@domain`, lower-cased."""
        if written.startswith("@"):
            domain = written[1:]
            problem = _host_name_problem(domain) if domain else "the domain after @ is empty"
        elif "@" not in written:
            problem = f'"{written}" is neither an address nor an @ followed by a domain'
        else:
            problem = _address_problem(written)
        if problem:
            self.error(
                key,
                f'{problem}; write an address like "scanner@printer.local", or '
                '"@printer.local" for every address at that domain',
            )
            return None
        return written.lower()

    def _rewrite_to(self, key: str, value: object) -> str | None:
        """A value of rewrite_senders: one whole address."""
        if not isinstance(value, str):
            self._type_error(key, 'an address in quotes, like "noreply@example.org"', value)
            return None
        if value.startswith("@") or "@" not in value:
            self.error(
                key,
                f'"{value}" must be a whole address, like "noreply@example.org": the '
                "sender is replaced by it",
            )
            return None
        problem = _address_problem(value)
        if problem:
            self.error(key, f'{problem}; write an address like "noreply@example.org"')
            return None
        return value

    def _route_warnings(self, routes: list[_RouteBlock], delivery: DeliveryConfig) -> None:
        """Routes that are each valid but risky, pointless or hidden by an earlier one."""
        for position, (index, block, route) in enumerate(routes):
            prefix = f"routes[{index}]"
            for earlier_index, _, earlier in routes[:position]:
                if _route_covers(earlier, route):
                    line = self.key_lines(f"routes[{earlier_index}]")
                    where = f" (line {line})" if line is not None else ""
                    self.warn(
                        prefix,
                        f"this route can never be used: routes[{earlier_index}]{where} comes "
                        "first and already takes all the mail this one would; routes are "
                        "tried in order, so move this block above it, or remove it",
                    )
                    break
            self._route_tls_warnings(prefix, block, route, delivery)
            if route.round_robin and len(route.hosts) == 1:
                self.warn(
                    f"{prefix}.round_robin",
                    "has no effect with only one host in hosts; remove it, or add hosts",
                )
            if (
                route.max_connections is not None
                and route.max_connections > delivery.max_connections
            ):
                self.warn(
                    f"{prefix}.max_connections",
                    f"is more than [delivery] max_connections ({delivery.max_connections}), "
                    "which caps it",
                )
            if route.transport in ("reject", "capture"):
                for name in _DELIVERY_ONLY:
                    if name in block:
                        self.warn(
                            f"{prefix}.{name}",
                            f'is not used, because transport = "{route.transport}" sends '
                            "nothing on; remove it",
                        )
        if not any(_catches_all(route) for _, _, route in routes):
            self.warn(
                "routes",
                'no route has domains = ["*"] (for every sender), so mail to other domains '
                "will be refused at RCPT with 550 5.7.1. If that is not what you want, add a "
                'last [[routes]] block with domains = ["*"] and transport = "mx"',
            )

    def _route_tls_warnings(
        self, prefix: str, block: dict[str, Any], route: RouteConfig, delivery: DeliveryConfig
    ) -> None:
        tls_key = f"{prefix}.tls"
        if route.username is not None and route.tls not in _VERIFIED_TLS:
            self.warn(
                tls_key if "tls" in block else f"{prefix}.username",
                f'this route logs in with a password over tls = "{route.tls}": the password '
                "would be sent where it can be intercepted or to an unverified server; use "
                'tls = "verify" (or "implicit" for port 465)',
            )
        elif route.transport == "smarthost" and route.tls == "none":
            self.warn(
                tls_key,
                "mail to the smart host is sent unencrypted, readable by anyone on the way; "
                'use tls = "verify", or at least "opportunistic"',
            )
        if route.transport == "mx" and route.tls == "implicit" and delivery.mx_port == 25:
            self.warn(
                tls_key,
                "MX servers on port 25 expect STARTTLS, not TLS from the first byte, so with "
                'tls = "implicit" every delivery would fail; use "verify" or "required"',
            )
        if route.transport != "smarthost":
            return
        for position, host in enumerate(route.hosts):
            if host.port == 465 and route.tls != "implicit":
                self.warn(
                    f"{prefix}.hosts[{position}]",
                    f'port 465 expects TLS from the first byte; set tls = "implicit" (this '
                    f'route has tls = "{route.tls}")',
                )
            elif route.tls == "implicit" and host.port in (25, 587):
                self.warn(
                    f"{prefix}.hosts[{position}]",
                    f"port {host.port} starts without TLS and offers STARTTLS, which "
                    'tls = "implicit" does not use; use tls = "verify", or port 465',
                )


def _clash(
    address: SocketAddress, earlier: SocketAddress, earlier_owner: str, owner: str
) -> str | None:
    """Why `address` cannot be bound next to `earlier`, or None when both can be."""
    if address.port != earlier.port:
        return None
    where = "this listener" if earlier_owner == owner else earlier_owner
    if address == earlier:
        return f"{address} is already listed in {where}; each address and port can be used once"
    ip, earlier_ip = ipaddress.ip_address(address.host), ipaddress.ip_address(earlier.host)
    if ip.version != earlier_ip.version:
        return None  # asyncio binds IPv6 sockets IPV6_V6ONLY, so [::] does not take 0.0.0.0
    if ip.is_unspecified or earlier_ip.is_unspecified:
        wildcard = "0.0.0.0" if ip.version == 4 else "[::]"
        return (
            f"{address} overlaps {earlier} in {where}: {wildcard} means every IPv{ip.version} "
            f"address of this machine, so both cannot use port {address.port}; use a "
            "different port, or list only specific addresses"
        )
    return None


_RouteBlock = tuple[int, dict[str, Any], RouteConfig]
"""A valid route with its index in the file and the table it was written as."""

_DNS_PORT = 53

_VERIFIED_TLS = ("verify", "implicit")
"""Route TLS modes that check the server's certificate and name."""

_DELIVERY_ONLY = ("tls", "ca_file", "max_messages_per_minute", "max_connections", "rewrite_senders")
"""Route settings that only matter when a route sends mail on."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MAX_REJECT_TEXT = 400
"""Keeps `550 5.7.1 ` plus the text under RFC 5321's 512-octet reply line (§4.5.3.1.5)."""


def _split_host_port(value: str) -> tuple[str, str | None, bool] | None:
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


def _address_problem(address: str) -> str | None:
    """Why `address` is not a valid email address, or None."""
    try:
        parse_rcpt(f"TO:<{address}>", smtputf8=True)
    except AddressError as exc:
        return f'"{address}" is not a valid address: {_address_reason(exc)}'
    return None


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


def _patterns_cover(earlier: tuple[str, ...], later: tuple[str, ...]) -> bool:
    return all(any(_pattern_covers(e, pattern) for e in earlier) for pattern in later)


def _route_covers(earlier: RouteConfig, later: RouteConfig) -> bool:
    """Whether `earlier` takes all mail `later` would match, so `later` is never used."""
    if not _patterns_cover(earlier.domains, later.domains):
        return False
    if not earlier.sender_domains:
        return True
    if not later.sender_domains:
        return earlier.sender_domains == ("*",)
    return _patterns_cover(earlier.sender_domains, later.sender_domains)


def _catches_all(route: RouteConfig) -> bool:
    return route.domains == ("*",) and route.sender_domains in ((), ("*",))


_EXAMPLES = {
    "listen": '["127.0.0.1:2525"]',
    "allowed_networks": '["192.168.1.0/24"]',
    "name": '"alice"',
    "password_hash": '"$scrypt$..." (run relaybox passwd NAME and paste what it prints)',
    "allowed_senders": '["example.org", "bob@example.net"]',
    "resolvers": '["127.0.0.1", "[::1]:5353"]',
    "outbound_ips": '["203.0.113.7"]',
    "domains": '["example.org", "*.example.org"]',
    "transport": '"mx" (or "smarthost", "reject", "hold", "capture")',
    "hosts": '["smtp.example.net:587"]',
    "rewrite_senders": '{ "scanner@printer.local" = "scanner@example.org" }',
}
"""Examples quoted in messages about list settings."""
