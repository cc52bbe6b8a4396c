"""Config text as it may be shown: secrets replaced by `********`, and unified diffs of that.

The diff before an apply, the history and the events show config text; a password hash
shown there could be copied and cracked offline, a smart host password read over a
shoulder. Masking works on the text line by line, so it also covers text that is not
valid TOML (an edit in progress). It never parses or changes a file.
"""

from __future__ import annotations

import difflib
import re

from relaybox.config.layout import split_lines

__all__ = ["MASK", "is_secret_key", "mask_secrets", "masked_diff"]

MASK = "********"
"""What a secret value is replaced with; its quotes stay so the line still reads as TOML."""

_SECRET_WORDS = ("password", "passwd", "secret", "token")
"""A key whose name contains one of these holds a secret (`password`, `password_hash`,
`api_token`), except the keys that only say where a secret is kept (`_NAMES_A_PLACE`)."""

_NAMES_A_PLACE = ("password_file", "password_env")
"""Keys that hold a path or a variable name, not the secret itself: shown as written, since
an admin needs to see which file or variable a route reads its password from."""

_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_ASSIGNMENT = re.compile(
    rf"(?P<key>{_KEY}(?:\s*\.\s*{_KEY})*)(?P<eq>\s*=\s*)"
    r"(?P<value>\"\"\".*?\"\"\"\"{0,2}|'''.*?''''{0,2}|\"\"\"|'''"
    r"|\"(?:[^\"\\]|\\.)*\"?|'[^']*'?|[^\s,}#]+)"
)
"""`key = value` anywhere in a line (also inside an inline table): the value is a one-line
string (triple-quoted ones too), the opening of a multi-line string, or a bare word."""

_HASH = re.compile(r"\$scrypt\$[^\s\"']*")
"""A relaybox password hash wherever it appears, even under a key with another name."""


def is_secret_key(key: str) -> bool:
    """Whether the value of a key named `key` (its last dotted part) is a secret."""
    name = key.rpartition(".")[2].strip("\"' ").lower()
    if name in _NAMES_A_PLACE:
        return False
    return any(word in name for word in _SECRET_WORDS)


def mask_secrets(text: str) -> str:
    """`text` with the value of every secret key, and every password hash, replaced by
    `********`; keys, quotes, comments and line breaks stay as they were.

    A secret written as a multi-line string is masked up to its closing quotes.
    """
    out: list[str] = []
    closing = ""
    for line in split_lines(text):
        if closing:
            end = line.find(closing)
            if end < 0:
                body = line.rstrip("\r\n")
                out.append(MASK + line[len(body) :] if body else line)
                continue
            out.append(MASK + line[end:])
            closing = ""
            continue
        masked, closing = _mask_line(line)
        out.append(_HASH.sub(MASK, masked))
    return "".join(out)


def _mask_line(line: str) -> tuple[str, str]:
    """One line masked, and the quotes of a multi-line secret still open at its end."""
    # Comments too: a commented-out `password = "..."` is still a password.
    closing = ""

    def replace(match: re.Match[str]) -> str:
        nonlocal closing
        key, value = match["key"], match["value"]
        if not is_secret_key(key):
            return match[0]
        if value in ('"""', "'''"):
            closing = value  # the secret goes on over the next lines
            return f"{key}{match['eq']}{value}{MASK}"
        quote = value[:3] if value[:3] in ('"""', "'''") else value[0]
        quote = quote if quote[0] in "\"'" else ""
        return f"{key}{match['eq']}{quote}{MASK}{quote}"

    masked = _ASSIGNMENT.sub(replace, line)
    if closing:
        # The secret's text after the opening quotes, up to the line end, is gone too.
        body = masked.rstrip("\r\n")
        cut = body.rfind(MASK) + len(MASK)
        masked = body[:cut] + line[len(line.rstrip("\r\n")) :]
    return masked, closing


def masked_diff(old: str, new: str, label: str) -> str:
    """A unified diff from `old` to `new` with secrets masked on both sides.

    Args:
        old: The text in force (or "" for a new file).
        new: The text about to be written.
        label: The file's name, shown in the `---`/`+++` lines.

    Returns:
        The diff, empty when the texts are the same. Lines are compared as written and
        shown masked, so a changed password hash shows as a changed line with `********`
        on both sides: the change is visible, the hash is not.
    """
    lines = difflib.unified_diff(
        _masked_lines(old), _masked_lines(new), f"{label} (in force)", f"{label} (new)"
    )
    return "".join(lines)


class _MaskedLine(str):
    """A line that reads masked but compares as written, so difflib finds real changes."""

    written: str

    def __new__(cls, masked: str, written: str) -> _MaskedLine:
        line = super().__new__(cls, masked)
        line.written = written
        return line

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _MaskedLine) and self.written == other.written

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.written)


def _masked_lines(text: str) -> list[str]:
    written = _terminated(split_lines(text))
    masked = _terminated(split_lines(mask_secrets(text)))
    if len(masked) != len(written):  # masking keeps line breaks; never trust it blindly
        return masked
    return [_MaskedLine(m, w) for m, w in zip(masked, written, strict=True)]


def _terminated(lines: list[str]) -> list[str]:
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines
