"""The Destinations pane (key 2): the unfinished queue by next hop, as Postfix's qshape shows
it, with the cause in plain words; Enter opens a destination (`screens/destination.py`).

The figures come from the admin layer's `destinations` operation (grouped in the engine, see
`admin/destinations.py`). It reads them only while it shows: after the engine's events said
the queue changed (at most once a second), and every few seconds for the ages. A few dozen
next hops at most: a DataTable is the right widget, updated in place so the cursor stays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from relaybox.admin.client import AdminClient
from relaybox.clock import Clock, system_clock
from relaybox.tui import format as fmt
from relaybox.tui.screens.destination import (
    DestinationScreen,
    cause_lines,
    cause_text,
    suspended_text,
)
from relaybox.tui.widgets.strip_view import shown
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["DestinationsPane", "matches"]

RELOAD_EVERY = 5.0
"""Seconds between reads while nothing changes (ages and "next in" move on)."""
CHANGED_EVERY = 1.0
"""At most one read a second while the queue changes..."""
SHARE_OF_TIME = 0.1
"""...and never more than a tenth of the time: grouping a queue of 100,000 recipients that
takes 200 ms is read every 2 s at most."""

# (key, title, width; 0: shares what is left). Narrow panes keep only the first three.
_NARROW = ("destination", "domains", "cause")
_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("destination", "Destination", 0),
    ("domains", "Domains", 0),
    ("queued", "Queued", 6),
    ("active", "Active", 6),
    ("deferred", "Deferred", 8),
    ("held", "Held", 5),
    ("oldest", "Oldest", 6),
    ("next", "Next", 9),
    ("suspended", "Suspended", 13),
    ("connections", "Conns", 6),
    ("pace", "Pace", 8),
    ("cause", "Cause", 0),
)
_SHARE = {"destination": 0.3, "domains": 0.2, "cause": 0.5}
WIDE = 150
"""Panes at least this wide show every column."""


def matches(entry: dict[str, Any], text: str) -> bool:
    """Whether the filter `text` (case-insensitive) is in its name, a domain or a cause."""
    needle = text.strip().lower()
    if not needle:
        return True
    if needle.startswith("@"):
        return needle[1:] in entry["domains"]
    haystack = [entry["destination"], *entry["domains"]]
    haystack += [c["reply"] for c in entry.get("causes") or []]
    haystack.append(entry.get("suspended_reason") or "")
    return any(needle in value.lower() for value in haystack)


def _cells(entry: dict[str, Any], now: float) -> dict[str, str]:
    oldest = entry.get("oldest_at")
    nxt = entry.get("next_attempt_at")
    load = f"{entry['connections']}/{entry['connection_limit']}"
    waiting = entry["attempts_now"] - entry["connections"]
    pace = entry.get("pace") or 0
    return {
        "destination": entry["destination"],
        "domains": ", ".join(entry["domains"]),
        "queued": str(entry["queued"]),
        "active": str(entry["active"]),
        "deferred": str(entry["deferred"]),
        "held": str(entry["held"]),
        "oldest": fmt.age(now - oldest) if oldest else "",
        "next": "" if suspended_text(entry, now) else fmt.until(nxt, now),
        "suspended": suspended_text(entry, now),
        "connections": (load + (f" +{waiting}" if waiting > 0 else ""))
        if entry["connection_limit"]
        else "",
        "pace": f"{entry.get('started_last_minute', 0)}/{pace}m" if pace else "",
        "cause": cause_text(entry, now),
    }


class DestinationsPane(Vertical):
    """The table of next hops, the one needing attention first; Enter opens one."""

    BINDINGS = [Binding("enter", "open", "Open", show=False)]

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Clock = system_clock,
        id: str | None = None,  # noqa: A002 (Textual's name for it)
    ) -> None:
        super().__init__(id=id)
        self._admin = admin
        self.clock = clock
        self.entries: list[dict[str, Any]] = []
        """Every destination as last read (the filter picks the rows shown)."""
        self.shown_entries: list[dict[str, Any]] = []
        self.filter_text = ""
        self.loaded = False
        self.reads = 0
        """How many times the figures were read (a test counts them while hidden)."""
        self._stale = True
        self._loading = False
        self._last_load = 0.0
        self._load_seconds = 0.0
        self._columns: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield TextLine(id="destinations-title")
        table: DataTable[Text] = DataTable(id="destinations-table", cursor_type="row")
        yield table
        yield Static(id="destinations-cause", markup=False)
        yield Input(placeholder="filter: destination, domain or reply text; Enter applies")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#destinations-table", DataTable)

    @property
    def title(self) -> str:
        return self.query_one("#destinations-title", TextLine).text

    def on_mount(self) -> None:
        self._title()
        self.set_interval(0.25, self._tick)

    # ------------------------------------------------------------------ reading

    def touch(self) -> None:
        """The queue changed: read again soon if showing, else when next shown (free)."""
        self._stale = True

    def shown_now(self) -> None:
        """The pane came into view: read at once if anything changed while it was hidden."""
        if self._stale or time.monotonic() - self._last_load >= RELOAD_EVERY:
            self.reload()

    def _tick(self) -> None:
        if self._loading or not shown(self):
            return
        since = time.monotonic() - self._last_load
        pause = max(CHANGED_EVERY, self._load_seconds / SHARE_OF_TIME)
        if (self._stale and since >= pause) or since >= max(RELOAD_EVERY, pause):
            self.reload()

    def reload(self) -> None:
        """Read the figures (in a worker)."""
        self._stale = False
        self._loading = True
        self._load()

    @work(exclusive=True, group="destinations", exit_on_error=False)
    async def _load(self) -> None:
        started = time.monotonic()
        try:
            self.reads += 1
            found = await self._admin().destinations()
        except Exception as exc:
            self.notify(f"Cannot read the destinations: {exc}", severity="error", timeout=5)
            return
        finally:
            self._loading = False
            self._last_load = time.monotonic()
            self._load_seconds = self._last_load - started
        self.show_entries(found)

    # ------------------------------------------------------------------ showing

    def set_filter(self, text: str) -> None:
        """Show only the destinations `text` matches (empty: all)."""
        self.filter_text = text
        self.show_entries(self.entries)

    def show_entries(self, entries: list[dict[str, Any]]) -> None:
        """Show `entries` (in their order: attention first), the cursor on the row it was."""
        self.entries = entries
        self.loaded = True
        self.shown_entries = [e for e in entries if matches(e, self.filter_text)]
        table = self.table
        now = self.clock()
        columns = self._layout()
        keys = [e["destination"] for e in self.shown_entries]
        current = self.current_key()
        rows = [_cells(e, now) for e in self.shown_entries]
        if columns != self._columns or keys != [str(k.value) for k in table.rows]:
            self._columns = columns
            table.clear(columns=True)
            for key in columns:
                title, width = self._width(key)
                table.add_column(title, width=width, key=key)
            for key, cells in zip(keys, rows, strict=True):
                table.add_row(*(self._cell(cells[c]) for c in columns), key=key)
            if current in keys:
                table.move_cursor(row=keys.index(current), animate=False)
        else:
            for key, cells in zip(keys, rows, strict=True):
                for c in columns:
                    table.update_cell(key, c, self._cell(cells[c]))
        self._title()
        self._show_cause()

    @staticmethod
    def _cell(text: str) -> Text:
        return Text(fmt.printable(text), no_wrap=True, overflow="ellipsis")

    def _layout(self) -> tuple[str, ...]:
        width = self.size.width or 80
        return tuple(k for k, _, _ in _COLUMNS if width >= WIDE or k in _NARROW)

    def _width(self, key: str) -> tuple[str, int]:
        title, fixed = next((t, w) for k, t, w in _COLUMNS if k == key)
        if fixed:
            return title, fixed
        columns = self._columns
        used = sum(w for k, _, w in _COLUMNS if k in columns) + 2 * len(columns) + 1
        free = max(30, (self.size.width or 80) - used)
        return title, max(8, int(free * _SHARE[key]))

    def on_resize(self, event: events.Resize) -> None:
        if self.loaded and self._layout() != self._columns:
            self.show_entries(self.entries)

    def current_key(self) -> str | None:
        """The destination under the cursor."""
        table = self.table
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def current_entry(self) -> dict[str, Any] | None:
        key = self.current_key()
        return next((e for e in self.shown_entries if e["destination"] == key), None)

    def _title(self) -> None:
        entries = self.shown_entries
        waiting = sum(e["queued"] + e["active"] + e["deferred"] + e["held"] for e in entries)
        if not self.loaded:
            text = "Destinations · reading…"
        elif not self.entries:
            text = "Destinations · nothing waiting: the queue is empty"
        else:
            count = len(entries)
            text = (
                f"Destinations · {count} next hop{'' if count == 1 else 's'} · "
                f"{waiting} recipient{'' if waiting == 1 else 's'} waiting · "
                "most deferred first"
            )
            if self.filter_text.strip():
                text += f" · filter {self.filter_text!r}"
            text += " · Enter opens"
        self.query_one("#destinations-title", TextLine).set(text)

    def _show_cause(self) -> None:
        entry = self.current_entry()
        box = self.query_one("#destinations-cause", Static)
        if entry is None:
            box.update("")
            return
        head = f"{entry['destination']}: " + ", ".join(entry["domains"])
        box.update(
            "\n".join(fmt.printable(line) for line in [head, *cause_lines(entry, self.clock())])
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_cause()

    # ------------------------------------------------------------------ opening

    def action_open(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            self.open_destination(entry)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def open_destination(self, entry: dict[str, Any]) -> None:
        self.app.push_screen(
            DestinationScreen(entry, self._admin, clock=self.clock, reload=self.reload)
        )
