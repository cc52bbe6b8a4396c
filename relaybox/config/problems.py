"""Problems found in a config file (`Problem`, `ConfigError`) and the `Report` the checks
write them to, each located at its key's line; this module finds no problems itself.

Exceptions::

    Exception
    └── ConfigError      (.problems: every error found, each a `Problem`)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from relaybox.config.positions import KeyLines

__all__ = ["ONE_LINE", "ConfigError", "Problem", "Report", "describe"]


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


ONE_LINE = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


class Report:
    """What the checks of one file share: where the file is (its name for messages, its
    folder for relative paths, its key lines) and the errors and warnings found so far.

    Checks record every problem and carry on, so the admin sees all of them at once.
    """

    def __init__(self, file: str, base_dir: Path, key_lines: KeyLines) -> None:
        self.file = file
        self.base_dir = base_dir
        """Relative paths in the file start here: the config file's own folder."""
        self.key_lines = key_lines
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, key: str, message: str) -> None:
        """Record that the setting at `key` cannot be used."""
        self.errors.append(self._problem(key, message))

    def warn(self, key: str, message: str) -> None:
        """Record that the setting at `key` is valid but risky or pointless."""
        self.warnings.append(self._problem(key, message))

    def type_error(self, key: str, expected: str, value: object) -> None:
        """Record that `value` at `key` is of the wrong TOML type; `expected` says the right one."""
        self.error(key, f"must be {expected}, not {describe(value)}{_quoted_hint(value)}")

    def _problem(self, key: str, message: str) -> Problem:
        # Values quoted in messages may hold line breaks; one problem must stay one line.
        return Problem(self.file, self.key_lines(key), key, message.translate(ONE_LINE))


def describe(value: object) -> str:
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
