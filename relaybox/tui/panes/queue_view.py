"""The live queue: a line-API list over any number of messages.

The view holds the ordered row ids of every matching message (8 bytes each) and the rows of
about one screen around the viewport; only visible lines are rendered, from cached strips
(as Toolong does), and an update repaints just the lines whose row changed. Queries run in
the engine's reader threads (or in the attached engine), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from rich.segment import Segment
from textual import events, work
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from relaybox.admin.client import AdminClient
from relaybox.clock import Clock, system_clock
from relaybox.queue import SORT_COLUMNS, UNFINISHED_STATES, MessageFilter, MessageRow
from relaybox.tui import format as fmt
from relaybox.tui.format import printable
from relaybox.tui.widgets.strip_view import StripView, shown

__all__ = ["COLUMNS", "SORTS", "QueueView", "ViewState"]

# (key, title) in display order; the key of a column that sorts is its sort name (the spool's
# SORT_COLUMNS, each served by an index).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "Queue ID"),
    ("arrived", "Age"),
    ("sender", "Sender"),
    ("recipients", "Recipients"),
    ("subject", "Subject"),
    ("size", "Size"),
    ("state", "State"),
    ("attempts", "Att"),
    ("next_attempt", "Next"),
    ("last_reply", "Last reply"),
)
SORTS: tuple[str, ...] = tuple(key for key, _ in COLUMNS if key in SORT_COLUMNS)
"""The columns the queue sorts by, in display order. Not by Subject: each sort is an index
the spool writes with every message, and the filter finds a subject."""

STATE_VIEWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("unfinished", UNFINISHED_STATES),
    ("deferred", ("deferred",)),
    ("held", ("held",)),
    ("queued", ("queued",)),
    ("delivered", ("delivered",)),
    ("bounced", ("bounced",)),
    ("everything", ()),
)
_WINDOW_MARGIN = 40  # rows fetched beyond the viewport, each way
_ROW_CACHE = 4000


@dataclass(frozen=True)
class ViewState:
    """What the queue shows: a text filter, a state view, a sort."""

    text: str = ""
    view: int = 0
    """Index into STATE_VIEWS."""
    sort: str = "arrived"
    descending: bool = False
    scope: tuple[str, ...] = ()
    """Only these queue IDs (a destination's messages); empty: every message."""

    def filter(self) -> MessageFilter:
        """The spool filter: `@example.org` is the domain, other text a substring."""
        states = STATE_VIEWS[self.view][1]
        text = self.text.strip()
        if text.startswith("@") and len(text) > 1:
            return MessageFilter(states=states, domain=text[1:], queue_ids=self.scope)
        return MessageFilter(states=states, text=text, queue_ids=self.scope)

    def arrow(self) -> str:
        """The sort's direction as the column titles mark it."""
        return "▼" if self.descending else "▲"

    def describe(self, width: int = 0) -> str:
        """The view, the sort and the filter in words; the sort says when its column is not
        shown at `width` (0: any width), the only place its arrow is then."""
        title = dict(COLUMNS).get(self.sort, self.sort)
        hidden = width and self.sort not in dict(_layout(width))
        sort = f"sorted by {title} {self.arrow()}" + (" (column hidden)" if hidden else "")
        words = f"{STATE_VIEWS[self.view][0]} · {sort}"
        return f"{words} · filter {self.text!r}" if self.text.strip() else words


MARK = 2
"""Cells before the first column: the selection mark (`● `)."""

_FIXED = {"id": 13, "arrived": 5, "size": 5, "state": 9, "attempts": 4, "next_attempt": 9}
"""Columns whose text has a known length (and room for their title with the sort's arrow)."""
_LEAST = {"sender": 12, "recipients": 14, "subject": 12, "last_reply": 18}
"""The narrowest the other columns get."""
_GROWTH: tuple[tuple[str, int], ...] = (
    ("sender", 24),
    ("recipients", 24),
    ("last_reply", 72),
    ("subject", 24),
    ("sender", 26),
    ("recipients", 28),
    ("last_reply", 10_000),
)
"""Who gets the room beyond `_LEAST`, in turn, up to each width: an address is read in 24
to 28 cells, a subject in 24; the last reply (why a message waits) takes the rest, so on a
wide screen it is read whole rather than the addresses padded."""


@functools.lru_cache(maxsize=16)
def _layout(width: int) -> tuple[tuple[str, int], ...]:
    """Column widths for a line `width` cells wide, the mark included (narrow lines drop the
    less useful columns; the flexible ones share the room by priority, see `_GROWTH`). The
    column titles and the rows are both laid out by this, from the same width."""
    if width < 100:
        keep = ["id", "arrived", "sender", "recipients", "state", "last_reply"]
    elif width < 130:
        keep = ["id", "arrived", "sender", "recipients", "size", "state", "attempts", "last_reply"]
    elif width < 170:
        keep = [key for key, _ in COLUMNS if key != "subject"]
    else:
        keep = [key for key, _ in COLUMNS]
    widths = {key: _FIXED.get(key) or _LEAST[key] for key in keep}
    room = width - MARK - (len(keep) - 1) - sum(widths.values())
    for key, most in _GROWTH:
        if room <= 0:
            break
        if key in widths and widths[key] < most:
            grow = min(room, most - widths[key])
            widths[key] += grow
            room -= grow
    return tuple((key, widths[key]) for key in keep)


def header_text(width: int, state: ViewState) -> str:
    """The column titles over rows `width` cells wide, the sort column marked."""
    cells = []
    for key, w in _layout(width):
        title = dict(COLUMNS)[key]
        if key == state.sort and len(title) < w:
            title += state.arrow()
        cells.append(fmt.clip(title, w))
    return " " * MARK + " ".join(cells)


def time_cells(row: MessageRow, now: float) -> tuple[str, str]:
    """The cells of a row that change with the time alone: its age and its next attempt."""
    next_in = fmt.until(row.next_attempt_at, now) if row.state == "deferred" else ""
    return fmt.age(now - row.arrived_at), next_in


def row_text(row: MessageRow, width: int, now: float) -> str:
    """One message as a line `width` cells wide, less the mark that goes before it."""
    age, next_in = time_cells(row, now)
    values = {
        "id": row.queue_id,
        "arrived": age,
        "sender": row.sender or "<>",
        "recipients": fmt.recipients(row.first_rcpt, row.rcpt_count),
        "subject": row.subject,
        "size": fmt.size(row.size),
        "state": row.state,
        "attempts": str(row.attempts),
        "next_attempt": next_in,
        "last_reply": (row.last_reply or "").replace("\n", " "),
    }
    return " ".join(fmt.clip(printable(values[key]), w) for key, w in _layout(width))


class QueueView(StripView, can_focus=True):
    """The queue list; `reload()` re-reads it, `touch()` asks for a reload soon."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("space", "toggle_select", "Select", show=False),
    ]
    COMPONENT_CLASSES = {
        "queueview--cursor",
        "queueview--selected",
        "queueview--deferred",
        "queueview--held",
        "queueview--bounced",
        "queueview--delivered",
        "queueview--loading",
    }

    cursor: reactive[int] = reactive(0, repaint=False)

    class Opened(Message):
        """Enter on a row: open the message."""

        def __init__(self, queue_id: str) -> None:
            super().__init__()
            self.queue_id = queue_id

    class Changed(Message):
        """What the pane's title or column titles say changed: the count, the selection, the
        view or sort, the width (see `title_text` and `header_text`)."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, QueueView.Changed)

    class LoadFailed(Message):
        """The queue could not be read (said once per failure, not at every reload)."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Clock = system_clock,
        id: str | None = None,  # noqa: A002 (Textual's name for it)
    ) -> None:
        super().__init__(512, id=id)
        self._admin = admin
        """The engine's admin layer, asked for when needed (the link opens after compose)."""
        self.clock = clock
        self.state = ViewState()
        self.ids: list[int] = []
        self.rows: LRUCache[int, MessageRow] = LRUCache(_ROW_CACHE)
        self.selected: set[int] = set()
        self.counting = False
        """Only the first screenful is in; the count follows."""
        self._dirty = True
        self._fresh_view = True
        self._started = False
        self._loading = False
        self._last_load = 0.0
        self._load_seconds = 0.0
        self._missing_requested = False
        self._failure: str | None = None

    @property
    def admin(self) -> AdminClient:
        return self._admin()

    # ------------------------------------------------------------------ loading

    def on_mount(self) -> None:
        # The first load is the app's to start, once its link to the engine is open.
        self.set_interval(0.25, self._tick)
        self.set_interval(1.0, self.tick_times)

    def tick_times(self) -> None:
        """Redraw the visible lines whose age or next attempt reads differently now.

        Once a second while the list shows: nothing is asked of the engine (the rows hold
        the times; only the clock moved), and a line whose cells read the same (an age in
        hours) is not drawn again: its cache key, which holds those cells, is unchanged.
        """
        if not self._started or not shown(self):
            return
        top = self.scroll_offset.y
        width = self.scrollable_content_region.width
        for index in range(top, min(len(self.ids), top + self.scrollable_content_region.height)):
            key = self.line_key(index, width)
            if key is not None and key not in self._strips:
                self.refresh_line(index)

    def touch(self) -> None:
        """Something changed in the queue: reload soon (bursts of events share one reload)."""
        self._dirty = True

    def _tick(self) -> None:
        # Reload when something changed, at most once a second, and never more than a tenth
        # of the time: a big queue that takes 150 ms to list is re-read every 1.5 s at most.
        if not self._started or not shown(self):
            return
        now = time.monotonic()
        # (Ages and "next attempt" move on without a reload: `tick_times`.)
        if self._dirty and not self._loading:
            if now - self._last_load >= max(1.0, min(2.0, self._load_seconds * 10)):
                self.reload()

    def set_state(self, state: ViewState) -> None:
        """Show another filter, view or sort, from its top.

        The old view's rows go at once: until the new view's first screenful comes, there is
        nothing under the cursor for a key to act on.
        """
        self.state = state
        self._fresh_view = True
        self.selected.clear()
        self.counting = True
        self._apply([], {})
        self.scroll_to(y=0, animate=False, immediate=True)
        self.post_message(self.Changed())
        self.reload()

    def reload(self) -> None:
        """Re-read the ids and the rows around the viewport (in a worker)."""
        self._started = True
        self._dirty = False
        self._loading = True
        self._load()

    @work(exclusive=True, group="queue-load", exit_on_error=False)
    async def _load(self) -> None:
        started = time.monotonic()
        state = self.state
        flt = state.filter()
        try:
            if self._fresh_view:
                # A new filter, view or sort: its first screenful comes from one keyset page
                # (milliseconds on any queue) and is shown before every id is listed in order.
                height = max(1, self.scrollable_content_region.height)
                page = await self.admin.list_messages(
                    flt, sort=state.sort, descending=state.descending, limit=height + _WINDOW_MARGIN
                )
                self._fresh_view = False  # (a load cancelled before this point starts over)
                self.counting = page.next_after is not None
                self._apply([r.id for r in page.rows], {r.id: r for r in page.rows})
                self.post_message(self.Changed())
                if not self.counting:  # the whole view was one page
                    self._loaded(started)
                    return
                # Listing every id of a big queue holds the GIL for a while, in bursts: let
                # the first screenful reach the terminal first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wait_for_refresh(), 0.5)
            ids = await self.admin.message_ids(flt, sort=state.sort, descending=state.descending)
            window = self._window(ids, self._cursor_in(ids))
            fresh = await self.admin.rows_by_id(window) if window else {}
        except Exception as exc:  # the engine went away, a query failed: say so, keep going
            self._loading = False
            self._last_load = time.monotonic()
            if str(exc) != self._failure:  # once, not at every reload
                self._failure = str(exc)
                self.post_message(self.LoadFailed(self._failure))
            return
        # The rows came while the cursor may have moved: it stays on the row it is on now.
        self.counting = False
        self._apply(ids, fresh)
        self._loaded(started)
        self.post_message(self.Changed())

    def _loaded(self, started: float) -> None:
        now = time.monotonic()
        # The cost of a reload, remembered slowly falling: one slow load (the engine busy
        # starting) does not hold back updates for long.
        took = now - started
        self._load_seconds = took if took > self._load_seconds else (self._load_seconds + took) / 2
        self._last_load = now
        self._loading = False
        self._failure = None

    def _cursor_in(self, ids: list[int]) -> int:
        """Where the cursor goes in `ids`: on the row it is on, else where it is (clamped)."""
        current = self.current_id()
        cursor = self.cursor
        if current is not None and not (cursor < len(ids) and ids[cursor] == current):
            with contextlib.suppress(ValueError):
                return ids.index(current)
        return max(0, min(cursor, len(ids) - 1))

    def title_text(self) -> str:
        """The pane's title: how many messages, which, in what order, how many selected."""
        count = len(self.ids)
        counted = (
            f"{count}+ messages (counting…)"
            if self.counting
            else f"{count} message{'' if count == 1 else 's'}"
        )
        selected = f" · {len(self.selected)} selected" if self.selected else ""
        width = self.scrollable_content_region.width
        title = f"Queue · {counted} · {self.state.describe(width)}{selected}"
        if len(title) > width and self.counting:  # the sort must not be cut off
            title = title.replace(" (counting…)", "…", 1)
        return title

    def header_text(self) -> str:
        """The column titles, laid out as the rows are (from the same width)."""
        return header_text(self.scrollable_content_region.width, self.state)

    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.Changed())

    def _window(self, ids: list[int], cursor: int) -> list[int]:
        height = max(1, self.scrollable_content_region.height)
        top = self.scroll_offset.y
        if not top <= cursor < top + height:
            top = max(0, cursor - height // 2)
        start = max(0, top - _WINDOW_MARGIN)
        return ids[start : top + height + _WINDOW_MARGIN]

    def _apply(self, ids: list[int], fresh: dict[int, MessageRow]) -> None:
        before = self._screen_keys()
        cursor = self._cursor_in(ids)
        changed_order = ids != self.ids
        self.ids = ids
        for row_id, row in fresh.items():
            if self.rows.get(row_id) != row:
                self.rows.discard(row_id)  # Textual's LRUCache.set keeps an existing value
                self.rows[row_id] = row
        self.selected &= set(ids) if changed_order else self.selected
        width = max(self.virtual_size.width, self.scrollable_content_region.width)
        self.set_virtual_size(width, len(ids))
        self.set_reactive(QueueView.cursor, cursor)
        top = self.scroll_offset.y
        self._keep_cursor_visible()
        if self.scroll_offset.y == top:  # (a scroll repaints the whole view by itself)
            # Only the lines that look different now are drawn again: under load a reload
            # comes every second, and most of a screen (blank lines, rows that stayed put)
            # has not changed.
            for y, (old, new) in enumerate(zip(before, self._screen_keys(), strict=False)):
                if old != new or new is None:
                    self.refresh_line(top + y)

    def _screen_keys(self) -> list[Hashable | None]:
        """What each line of the screen shows, as its cache key (None: drawn every time)."""
        top = self.scroll_offset.y
        width = self.scrollable_content_region.width
        count = len(self.ids)
        return [
            self.line_key(index, width) if index < count else "blank"
            for index in range(top, top + self.scrollable_content_region.height)
        ]

    @work(group="queue-rows", exit_on_error=False)
    async def _fetch_missing(self) -> None:
        try:
            window = [i for i in self._window(self.ids, self.cursor) if i not in self.rows]
            if window:
                fresh = await self.admin.rows_by_id(window)
                for row_id, row in fresh.items():
                    self.rows[row_id] = row
                self.refresh()
        finally:
            self._missing_requested = False

    # ------------------------------------------------------------------ rendering

    def on_focus(self, event: events.Focus) -> None:
        self.forget_lines()  # the cursor's colour depends on the focus
        self.refresh()

    def on_blur(self, event: events.Blur) -> None:
        self.forget_lines()
        self.refresh()

    def line_count(self) -> int:
        return len(self.ids)

    def line_key(self, index: int, width: int) -> tuple[int, bool, bool, int] | None:
        row_id = self.ids[index]
        row = self.rows.get(row_id)
        if row is None:
            return None  # drawn as "loading" until it comes
        return (
            row_id,
            index == self.cursor,
            row_id in self.selected,
            hash((row, width, time_cells(row, self.clock()))),
        )

    def draw_line(self, index: int, width: int) -> Strip:
        base = self.base_style
        row_id = self.ids[index]
        row = self.rows.get(row_id)
        if row is None:
            if not self._missing_requested:
                self._missing_requested = True
                self._fetch_missing()
            style = base + self.get_component_rich_style("queueview--loading")
            return Strip([Segment("  …".ljust(width), style)]).crop_extend(0, width, style)
        is_selected = row_id in self.selected
        style = base
        state_style = f"queueview--{row.state}"
        if state_style in self.COMPONENT_CLASSES:
            style = style + self.get_component_rich_style(state_style)
        if is_selected:
            style = style + self.get_component_rich_style("queueview--selected")
        if index == self.cursor:
            style = style + self.get_component_rich_style("queueview--cursor")
        mark = "● " if is_selected else " " * MARK
        text = mark + row_text(row, width, self.clock())
        strip = Strip([Segment(text, style)])
        return strip if strip.cell_length == width else strip.crop_extend(0, width, style)

    # ------------------------------------------------------------------ the cursor

    def current_id(self) -> int | None:
        if 0 <= self.cursor < len(self.ids):
            return self.ids[self.cursor]
        return None

    def current_row(self) -> MessageRow | None:
        current = self.current_id()
        return None if current is None else self.rows.get(current)

    def chosen(self) -> list[str]:
        """Queue IDs an action applies to: the selected rows, else the cursor's."""
        ids = [i for i in self.ids if i in self.selected] if self.selected else []
        if not ids:
            current = self.current_id()
            ids = [current] if current is not None else []
        rows = [self.rows.get(i) for i in ids]
        return [r.queue_id for r in rows if r is not None]

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.ids) - 1)) if self.ids else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_line(old)
        self.refresh_line(new)
        self._keep_cursor_visible()

    def _keep_cursor_visible(self) -> None:
        self.scroll_to_region(
            Region(0, self.cursor, 1, 1), animate=False, force=True, immediate=True, x_axis=False
        )

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * max(1, self.scrollable_content_region.height - 1)

    def action_jump(self, where: int) -> None:
        self.cursor = 0 if where == 0 else len(self.ids) - 1

    def action_toggle_select(self) -> None:
        current = self.current_id()
        if current is None:
            return
        self.selected ^= {current}
        self.refresh_line(self.cursor)
        self.cursor += 1
        self.post_message(self.Changed())

    def clear_selection(self) -> None:
        """Unselect every row (Escape, or the selection was acted on)."""
        if self.selected:
            self.selected.clear()
            self.refresh()  # every mark on screen goes
            self.post_message(self.Changed())

    def key_enter(self) -> None:
        row = self.current_row()
        if row is not None:
            self.post_message(self.Opened(row.queue_id))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.scroll_offset.y + offset.y
        if index < len(self.ids):
            if index == self.cursor and event.chain >= 2:
                self.key_enter()
            self.cursor = index

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if any(i not in self.rows for i in self._window(self.ids, self.cursor)):
            if not self._missing_requested:
                self._missing_requested = True
                self._fetch_missing()
