"""Text from outside (clients, next hops, admins) made safe to print, draw or write on one line.

Control characters are shown as escapes (`\\x1b`, `\\r`), never sent to a terminal, where an ESC
or a C1 CSI sequence could clear the screen, retitle the window or set the clipboard. It does
not parse or quote anything else: Rich markup is the UI's business (`relaybox.tui.format`).
"""

from __future__ import annotations

__all__ = ["UNSAFE", "first_unsafe", "one_line", "visible"]

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Bidirectional marks, embeddings, overrides and isolates (Unicode TR 9): invisible, they
reorder what follows on screen, so `evil.test` can be drawn as `tset.live` ("Trojan Source")."""

UNSAFE: frozenset[int] = frozenset(
    (
        *range(0x20),  # C0, tab included: it moves the cursor and breaks columns
        0x7F,  # DEL
        *range(0x80, 0xA0),  # C1: 0x9B is CSI, an ESC [ on terminals that honour 8-bit C1
        *range(0xD800, 0xE000),  # lone surrogates: not encodable, a writer would raise
        0x2028,  # line and paragraph separators: `str.splitlines` and renderers break on them
        0x2029,
        *_BIDI,
    )
)
"""Code points never passed through to a terminal, a UI or a one-line field."""

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(c: int) -> str:
    if c in _NAMED:
        return _NAMED[c]
    if c < 0x100:
        return f"\\x{c:02x}"
    if 0xDC80 <= c <= 0xDCFF:
        # A byte that was not UTF-8, kept by Python's surrogateescape: shown as that byte,
        # as transcripts show such bytes.
        return f"\\x{c - 0xDC00:02x}"
    return f"\\u{c:04x}"


_VISIBLE = {c: _escape(c) for c in UNSAFE}


def visible(text: str, *, tab: str | None = None) -> str:
    """`text` with every character of `UNSAFE` shown as an escape (`\\x1b`, `\\r`, `\\u202e`).

    Args:
        text: anything that came from outside the relay.
        tab: what a tab becomes instead of `\\t` (the UI draws four spaces).

    Returns:
        Text that prints as itself: nothing in it moves the cursor or starts a sequence.
    """
    if text.isprintable():  # the usual case: no character of UNSAFE is printable
        return text
    table = _VISIBLE if tab is None else {**_VISIBLE, 0x09: tab}
    return text.translate(table)


def first_unsafe(text: str) -> str | None:
    """The first character of `text` in `UNSAFE`, or None when there is none."""
    if text.isprintable():
        return None
    return next((c for c in text if ord(c) in UNSAFE), None)


def one_line(text: str, limit: int = 0) -> str:
    """`text` for one line of a reply or header: runs of white space (CR and LF included)
    become one space, other unsafe characters are shown as escapes, and a `limit` (characters,
    0 for none) cuts the rest off with `...`."""
    text = visible(" ".join(text.split()))
    if limit and len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text
