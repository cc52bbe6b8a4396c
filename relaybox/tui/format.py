"""Short renderings of times, sizes and addresses for narrow columns, and text made safe to
draw (pure functions)."""

from __future__ import annotations

import functools
import time

from relaybox.untrusted import visible

__all__ = [
    "Part",
    "age",
    "clip",
    "clock",
    "fit",
    "printable",
    "printable_lines",
    "recipients",
    "size",
    "until",
]


def age(seconds: float) -> str:
    """`42s`, `17m`, `5h`, `3d`: how long ago, in at most four characters."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def until(at: float | None, now: float) -> str:
    """When the next attempt is: `now`, `in 4m`, or empty when there is none."""
    if at is None:
        return ""
    if at <= now:
        return "now"
    return f"in {age(at - now)}"


def size(n: int) -> str:
    """`812B`, `1.3K`, `96K`, `4.2M`."""
    if n < 1000:
        return f"{n}B"
    for unit, scale in (("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        value = n / scale
        if value < 9.95:
            return f"{value:.1f}{unit}"
        if value < 1000 or unit == "G":
            return f"{value:.0f}{unit}"
    return f"{n}B"


def recipients(first: str, count: int) -> str:
    """The first recipient and `+N` for the others."""
    return first if count <= 1 else f"{first} +{count - 1}"


def clip(text: str, width: int) -> str:
    """`text` cut to `width` cells with an ellipsis, padded to exactly `width`."""
    if width <= 0:
        return ""
    if len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text.ljust(width)


Part = tuple[int, tuple[str, ...]]
"""A piece of a status line: its rank (0 the most important) and its forms, longest first;
a form may be "" (the piece can be left out)."""


def fit(parts: list[Part], width: int, sep: str = " · ") -> str:
    """The pieces joined by `sep` in their order, within `width` cells.

    While too long, the least important piece that has a shorter form takes it (the last of
    equal rank first); when none has, the line is cut at a word, never inside one, with "…".
    The most telling words stay, whatever the terminal's width.
    """
    chosen = [0] * len(parts)

    def line() -> str:
        return sep.join(f for (_, forms), c in zip(parts, chosen, strict=True) if (f := forms[c]))

    text = line()
    while len(text) > width:
        shorter = [i for i, (_, forms) in enumerate(parts) if chosen[i] + 1 < len(forms)]
        if not shorter:
            break
        pick = max(shorter, key=lambda i: (parts[i][0], i))
        chosen[pick] += 1
        text = line()
    if len(text) <= width:
        return text
    cut = text[: max(0, width - 1)]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut).rstrip(" ·,:") + "…"


def clock(at: float) -> str:
    """`14:03:07.412`, local time, for transcript and log lines."""
    return f"{_hms(int(at))}.{int(at * 1000) % 1000:03d}"


@functools.lru_cache(maxsize=8)
def _hms(second: int) -> str:
    # The log gives hundreds of events a second the same time of day: work it out once.
    return time.strftime("%H:%M:%S", time.localtime(second))


def printable(text: str) -> str:
    """`text` safe to draw: control characters (from mail, from remote servers' replies)
    shown as escapes (`relaybox.untrusted.visible`, as the CLI prints them), never sent to
    the admin's terminal, where ESC sequences could clear the screen, set the clipboard or
    retitle the window; a tab is four spaces.

    It does not quote Rich markup: text from elsewhere is drawn as `Text` or a `Segment`, or
    in a widget made with `markup=False`, never parsed as markup.
    """
    return visible(text, tab="    ")


def printable_lines(text: str) -> str:
    """Like `printable`, line by line: the line breaks stay breaks (a multi-line text the UI
    composes itself, such as a DNS record under its explanation)."""
    return "\n".join(printable(line) for line in text.split("\n"))
