"""Where each key of a config file is written: the line of every table, key and list item.

tomllib keeps no positions and tomlkit's items do not reliably carry them, so this scans the
text itself; it knows nothing of what the keys mean (that is the checks' job).
"""

from __future__ import annotations

import re

__all__ = ["KeyLines", "index_key_lines", "join_key", "parent_key"]


class KeyLines:
    """Finds the line of a dotted key, falling back to its nearest written parent."""

    def __init__(self, lines: dict[str, int]) -> None:
        self._lines = lines

    def __call__(self, key: str) -> int | None:
        while key:
            if key in self._lines:
                return self._lines[key]
            key = parent_key(key)
        return None


def parent_key(key: str) -> str:
    """`a[0].b[1]` -> `a[0].b` -> `a[0]` -> `a` -> ``."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key[: key.rindex(".")] if "." in key else ""


def join_key(prefix: str, key: str) -> str:
    """`listeners[0]` and `tls` -> `listeners[0].tls`; a key at the top level has no prefix."""
    return f"{prefix}.{key}" if prefix else key


def index_key_lines(text: str) -> KeyLines:
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
    return KeyLines(lines)


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
                key = join_key(self.table, ".".join(self._key()))
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
        base = join_key(self._resolve(segments[:-1]), segments[-1])
        count = self.aot_counts.get(base, 0)
        self.aot_counts[base] = count + 1
        self.lines.setdefault(base, self.line)
        self.table = f"{base}[{count}]"
        self.lines[self.table] = self.line

    def _resolve(self, segments: list[str]) -> str:
        """A header's path, with the current index of every array of tables it passes through."""
        path = ""
        for segment in segments:
            path = join_key(path, segment)
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
            sub_key = join_key(key, ".".join(self._key()))
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
