"""Where each table of a TOML config file starts and ends, line by line, and which comment
block above a `[[name]]` table belongs to it; it reads the text, it never changes it.

`config.document` cuts and splices whole tables by these line ranges, so a moved or deleted
table takes its own comments and leaves every other byte of the file where it was. The text
must already be valid TOML (tomlkit parsed it): the scanner only tracks strings, brackets and
comments well enough to tell a header line from a line inside a value.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Literal

__all__ = ["Entry", "Layout", "Unit", "scan_layout", "split_lines"]

LineKind = Literal["blank", "comment", "header", "content"]


@dataclass(frozen=True)
class Unit:
    """One top-level table as written: its header line and the last line of its contents."""

    name: str
    """The header's first key (`routes` for `[[routes]]` and `[routes.rewrite_senders]`);
    `""` for the keys written before the first header."""
    is_array: bool
    """Whether the header is `[[name]]`: one entry of an array of tables."""
    header: int
    """0-based line of the header (-1 for the keys before the first header)."""
    end: int
    """0-based line of the last key or value line (sub-tables included); the comments and
    blank lines after it are not part of it. Equals `header` for an empty table."""


@dataclass(frozen=True)
class Entry:
    """One `[[name]]` table with the lines that travel with it when it moves or goes."""

    unit: Unit
    start: int
    """First line of the comment block that belongs to it (its header when it has none)."""
    stop: int
    """One past its last line: its end, plus the comment lines written directly under its last
    key (such as commented-out settings) when another entry of the same array follows after
    a blank line."""


class Layout:
    """The lines of a text, what each one is, and its top-level tables in file order."""

    def __init__(self, lines: list[str], kinds: list[LineKind], units: list[Unit]) -> None:
        self.lines = lines
        self.kinds = kinds
        self.units = units

    def table(self, name: str) -> Unit | None:
        """The `[name]` table, or None when the file has no such header."""
        for unit in self.units:
            if unit.name == name and not unit.is_array and unit.header >= 0:
                return unit
        return None

    def entries(self, name: str) -> list[Entry]:
        """The `[[name]]` tables in file order, each with its own comment block.

        The comment block of an entry is decided by what precedes it. After another entry of
        the same array, every comment line between the two belongs to the later one, except a
        paragraph written directly under the earlier one's last key (no blank line between),
        which stays with the earlier one. After anything else (another table, the top of the
        file), only the comment lines directly above the header belong to it: the paragraphs
        before them describe the whole section (sample-config.toml documents `[[routes]]`
        there) and stay in place.
        """
        found: list[Entry] = []
        units = self.units
        for index, unit in enumerate(units):
            if unit.name != name or not unit.is_array:
                continue
            before = units[index - 1] if index else None
            follows_same = before is not None and before.name == name and before.is_array
            start = self._block_start(unit, before, follows_same)
            found.append(Entry(unit, start, unit.end + 1))
        # An entry followed by another of its array keeps the paragraph attached under it.
        for position, entry in enumerate(found[:-1]):
            following = found[position + 1]
            attached = self._attached_paragraph_end(entry.unit.end, following.unit.header)
            if attached is not None and self._next_unit(entry.unit) == following.unit:
                found[position] = Entry(entry.unit, entry.start, attached)
        return found

    def _next_unit(self, unit: Unit) -> Unit | None:
        position = self.units.index(unit)
        return self.units[position + 1] if position + 1 < len(self.units) else None

    def _attached_paragraph_end(self, end: int, header: int) -> int | None:
        """One past the comment lines directly under line `end`, when a blank line follows
        them before `header`; None when there are none or they run into the header."""
        line = end + 1
        if line >= header or self.kinds[line] != "comment":
            return None
        while line < header and self.kinds[line] == "comment":
            line += 1
        return line if line < header else None

    def _block_start(self, unit: Unit, before: Unit | None, follows_same: bool) -> int:
        floor = before.end + 1 if before is not None else 0
        if follows_same:
            assert before is not None
            line = self._attached_paragraph_end(before.end, unit.header) or floor
            while line < unit.header and self.kinds[line] == "blank":
                line += 1
            return line
        line = unit.header
        while line - 1 >= floor and self.kinds[line - 1] == "comment":
            line -= 1
        return line


def split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its line end, split at LF only.

    `str.splitlines` also splits at form feed, U+2028 and other characters a TOML string or
    comment may hold, which would cut a value in two (and could make text after a form feed
    in a comment look like a table header).
    """
    lines = text.split("\n")
    ended = [line + "\n" for line in lines[:-1]]
    return [*ended, lines[-1]] if lines[-1] else ended


def scan_layout(text: str) -> Layout:
    """Classify every line of valid TOML text and group the lines into top-level tables.

    Args:
        text: TOML that tomlkit has accepted.

    Returns:
        The layout; `Unit`s in file order, the keys before the first header (if any) first.
    """
    lines = split_lines(text)
    kinds: list[LineKind] = []
    headers: dict[int, tuple[tuple[str, ...], bool]] = {}
    scanner = _ValueScanner()
    for number, line in enumerate(lines):
        if scanner.open:
            scanner.feed(line)
            kinds.append("content")
            continue
        stripped = line.strip()
        if not stripped:
            kinds.append("blank")
        elif stripped.startswith("#"):
            kinds.append("comment")
        elif stripped.startswith("["):
            kinds.append("header")
            headers[number] = _header_path(stripped)
        else:
            kinds.append("content")
            scanner.feed(line)
    return Layout(lines, kinds, _units(kinds, headers))


def _units(kinds: list[LineKind], headers: dict[int, tuple[tuple[str, ...], bool]]) -> list[Unit]:
    starts: list[tuple[int, str, bool]] = []
    current: str | None = None
    for number in sorted(headers):
        path, is_array = headers[number]
        if len(path) > 1 and path[0] == current:
            continue  # a sub-table such as [routes.rewrite_senders] stays in its entry
        current = path[0]
        starts.append((number, path[0], is_array and len(path) == 1))
    units: list[Unit] = []
    first_header = starts[0][0] if starts else len(kinds)
    preamble_end = _last_content(kinds, 0, first_header)
    if preamble_end >= 0:
        units.append(Unit("", False, -1, preamble_end))
    for position, (header, name, is_array) in enumerate(starts):
        limit = starts[position + 1][0] if position + 1 < len(starts) else len(kinds)
        end = max(header, _last_content(kinds, header, limit))
        units.append(Unit(name, is_array, header, end))
    return units


def _last_content(kinds: list[LineKind], first: int, limit: int) -> int:
    for number in range(limit - 1, first - 1, -1):
        if kinds[number] in ("content", "header"):
            return number
    return -1


def _header_path(stripped: str) -> tuple[tuple[str, ...], bool]:
    """The key path of a header line and whether it is `[[...]]`; tomllib unquotes the keys."""
    header = stripped[: _comment_start(stripped)].rstrip()
    is_array = header.startswith("[[")
    inner = header[2:-2] if is_array else header[1:-1]
    node: object = tomllib.loads(f"{inner} = 0")
    path: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        path.append(key)
    return tuple(path), is_array


def _comment_start(line: str) -> int:
    """Index of the `#` that starts a comment on a header line (quoted keys may hold one)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return index
    return len(line)


class _ValueScanner:
    """Follows a `key = value` statement over as many lines as its value spans (arrays,
    multi-line strings), so the lines inside are never taken for headers or comments."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline = ""
        self.started = False

    @property
    def open(self) -> bool:
        return self.started and (self.depth > 0 or bool(self.multiline))

    def feed(self, line: str) -> None:
        self.started = True
        index = 0
        while index < len(line):
            if self.multiline:
                index = self._in_multiline(line, index)
                continue
            char = line[index]
            if line.startswith('"""', index) or line.startswith("'''", index):
                self.multiline = line[index : index + 3]
                index += 3
            elif char in "\"'":
                index = _string_end(line, index)
            elif char == "#":
                break
            elif char in "[{":
                self.depth += 1
                index += 1
            elif char in "]}":
                self.depth -= 1
                index += 1
            else:
                index += 1
        if not self.open:
            self.started = False

    def _in_multiline(self, line: str, index: int) -> int:
        delimiter = self.multiline
        while index < len(line):
            if delimiter == '"""' and line[index] == "\\":
                index += 2
                continue
            if line.startswith(delimiter, index):
                index += 3
                # Up to two quotes more belong to the string (`""""` ends with one quote in it).
                extra = 0
                while extra < 2 and index < len(line) and line[index] == delimiter[0]:
                    index += 1
                    extra += 1
                self.multiline = ""
                return index
            index += 1
        return index


def _string_end(line: str, index: int) -> int:
    """Index just past a one-line string starting at `index`."""
    quote = line[index]
    index += 1
    while index < len(line):
        if quote == '"' and line[index] == "\\":
            index += 2
            continue
        if line[index] == quote:
            return index + 1
        index += 1
    return index
