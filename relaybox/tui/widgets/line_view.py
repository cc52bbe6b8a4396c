"""A line-API view of (kind, text) lines: the log's and the inspector's page.

Only visible lines are rendered, from cached strips; appending a line repaints at most that
line (and scrolls when the view follows the tail).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.strip import Strip

from relaybox.tui.format import printable
from relaybox.tui.widgets.strip_view import StripView

__all__ = ["KINDS", "LineView"]


# Line kinds and their component class (colour); the prefix keeps them apart without colour.
KINDS = ("client", "server", "note", "good", "warn", "bad", "head", "plain")


class LineView(StripView, can_focus=True):
    """Lines of (kind, text); `kind` picks the colour, the text carries its own prefix."""

    BINDINGS = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
        Binding("end,G", "scroll_end", "Bottom", show=False),
    ]
    COMPONENT_CLASSES = {f"lineview--{kind}" for kind in KINDS}

    def __init__(self, max_lines: int | None = None, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(1024, id=id)
        self.lines: collections.deque[tuple[str, str]] = collections.deque(maxlen=max_lines)
        self.follow = True
        """Keep the last line in view as lines arrive (off while the user scrolls up)."""
        self._first = 0
        """Absolute number of `lines[0]` (lines dropped off the ring buffer before it)."""
        self._widest = 0

    def set_lines(self, lines: Iterable[tuple[str, str]]) -> None:
        """Replace everything shown."""
        self.lines.clear()
        self.lines.extend(lines)
        self._first = 0
        self._widest = max((len(t) for _, t in self.lines), default=0)
        self.forget_lines()
        self._resize()
        self.refresh()

    def add(self, kind: str, text: str) -> None:
        """Append one line (the oldest falls off a full ring buffer)."""
        full = self.lines.maxlen is not None and len(self.lines) == self.lines.maxlen
        at_end = self.scroll_offset.y >= self.max_scroll_y
        self.lines.append((kind, text))
        if full:
            self._first += 1
            self.refresh()  # every line moved up by one
        self._resize()
        if self.follow and at_end:
            self.scroll_end(animate=False, immediate=True)
        if not full:
            self.refresh_line(len(self.lines) - 1)

    def _resize(self) -> None:
        # Width only grows (the widest line seen), so a new line costs O(1), not a scan.
        if self.lines:
            self._widest = max(self._widest, len(self.lines[-1][1]))
        self.set_virtual_size(self._widest, len(self.lines))

    def line_count(self) -> int:
        return len(self.lines)

    def line_key(self, index: int, width: int) -> tuple[int, int]:
        # Lines never change once added: the absolute number names one for good.
        return (self._first + index, self.virtual_size.width)

    def draw_line(self, index: int, width: int) -> Strip:
        kind, text = self.lines[index]
        style = self.base_style
        if kind != "plain":
            style = style + self.get_component_rich_style(f"lineview--{kind}")
        return Strip([Segment(printable(text), style)])

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.follow = False

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.follow = True
        self.scroll_end(animate=False, immediate=True)
