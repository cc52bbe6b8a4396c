"""A line-API list of keyed rows of text with a cursor (the Sessions pane's table): only the
visible rows are drawn, each from a cached strip, so a refresh that changes a few rows
repaints only those; the cursor stays on its row's key when rows come and go.

A `DataTable` re-renders every row when any cell changes (its cache is keyed by an update
count): a table of 50 sessions whose ages tick each second cost 15% of a core at 200x60,
this under 2%. The rows' text is the caller's, already made printable and laid out.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip

from relaybox.tui.widgets.strip_view import StripView

__all__ = ["RowList"]


class RowList(StripView, can_focus=True):
    """Rows of (key, kind, text); `kind` picks a colour (`rowlist--<kind>`)."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "cursor(-1_000_000)", "First", show=False),
        Binding("end,G", "cursor(1_000_000)", "Last", show=False),
        Binding("enter", "open", "Open", show=False),
    ]
    COMPONENT_CLASSES = {"rowlist--cursor", "rowlist--out"}

    class Highlighted(Message):
        """The cursor is on another row (or the rows under it changed)."""

        def __init__(self, key: str | None) -> None:
            super().__init__()
            self.key = key

    class Opened(Message):
        """Enter on a row."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(512, id=id)
        self.rows: list[tuple[str, str, str]] = []
        self.cursor = 0

    @property
    def key(self) -> str | None:
        """The key of the row under the cursor."""
        return self.rows[self.cursor][0] if self.rows else None

    def set_rows(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Show `rows`; the cursor stays on the key it was on, if that row is still there."""
        key = self.key
        self.rows = list(rows)
        keys = [row[0] for row in self.rows]
        if key in keys:
            self.cursor = keys.index(key)
        self.cursor = max(0, min(self.cursor, len(self.rows) - 1))
        width = max((len(text) for _, _, text in self.rows), default=0)
        self.set_virtual_size(width, len(self.rows))
        self.refresh()  # (unchanged rows come from the cache)
        self.post_message(self.Highlighted(self.key))

    def line_count(self) -> int:
        return len(self.rows)

    def line_key(self, index: int, width: int) -> Hashable:
        return (self.rows[index], index == self.cursor and self.has_focus, width)

    def draw_line(self, index: int, width: int) -> Strip:
        _, kind, text = self.rows[index]
        style = self.base_style
        if kind == "out":
            style = style + self.get_component_rich_style("rowlist--out")
        if index == self.cursor and self.has_focus:
            style = style + self.get_component_rich_style("rowlist--cursor")
        return Strip([Segment(text.ljust(width), style)])

    def _move(self, cursor: int) -> None:
        cursor = max(0, min(cursor, len(self.rows) - 1))
        if cursor == self.cursor or not self.rows:
            return
        self.cursor = cursor
        self.scroll_to_region(Region(0, cursor, 1, 1), animate=False, immediate=True)
        self.refresh()
        self.post_message(self.Highlighted(self.key))

    def action_cursor(self, step: int) -> None:
        self._move(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_open(self) -> None:
        if self.key is not None:
            self.post_message(self.Opened(self.key))

    def on_click(self, event: events.Click) -> None:
        row = self.scroll_offset.y + event.y
        if 0 <= row < len(self.rows):
            self._move(row)
            if event.chain == 2:
                self.action_open()

    def on_focus(self) -> None:
        self.refresh()  # the cursor shows only while focused (its line's key says so)

    def on_blur(self) -> None:
        self.refresh()
