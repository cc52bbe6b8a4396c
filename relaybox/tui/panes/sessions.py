"""The Sessions pane (key 3): the inbound SMTP sessions and delivery's outbound connections
open now, in one table with a kind column; Enter opens one's transcript, live
(`screens/session.py`).

It asks the engine for a snapshot (`sessions`) about once a second while it shows, and not at
all while it is hidden or covered; rows are updated by key, so the cursor stays on its
connection. A few dozen rows: a DataTable is the right widget, as for the Domains pane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Static

from relaybox.admin.client import AdminClient
from relaybox.clock import Clock, system_clock
from relaybox.tui import format as fmt
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["REFRESH_EVERY", "Connection", "SessionsPane", "column_widths", "connections_of"]

REFRESH_EVERY = 1.0
"""Seconds between snapshots while the pane shows."""
WIDE = 120
"""From this width on the table also has the User, Msgs and Bytes columns."""


@dataclass(frozen=True)
class Connection:
    """One row: an inbound session or an outbound connection, as the pane draws it."""

    key: str
    """The session id (`S...`) or connection id (`O...`): the row key, and what Enter opens."""
    kind: str
    """`in` or `out`."""
    peer: str
    via: str
    """The listener it came in on, or the destination it is sent to."""
    tls: str
    user: str
    doing: str
    """The last command (inbound) or what it is doing (outbound: sending a message, idle)."""
    messages: int
    received: int | None
    since: float
    detail: str
    """Everything about it, in full, for the lines under the table (made printable)."""

    def cells(self, now: float, widths: dict[str, int]) -> tuple[str, ...]:
        """The row's cells for the columns of `widths`, each cut and padded to its width."""
        values = {
            "Kind": self.kind,
            "Peer": self.peer,
            "Listener/Dest": self.via,
            "TLS": self.tls.split(" ", 1)[0] if self.tls else "-",
            "User": self.user or "-",
            "Command": self.doing,
            "Msgs": str(self.messages),
            "Bytes": "-" if self.received is None else fmt.size(self.received),
            "Age": fmt.age(now - self.since),
        }
        return tuple(fmt.clip(values[title], width) for title, width in widths.items())


_NARROW = {"Kind": 4, "Peer": 19, "Listener/Dest": 16, "TLS": 7, "Command": 0, "Age": 4}
_WIDE = {
    "Kind": 4,
    "Peer": 24,
    "Listener/Dest": 32,
    "TLS": 7,
    "User": 12,
    "Command": 0,
    "Msgs": 4,
    "Bytes": 5,
    "Age": 4,
}


def column_widths(width: int) -> dict[str, int]:
    """Each column's width for a table `width` cells wide; the command takes what is left
    (each column has a cell of padding on either side, and the scroll bar two)."""
    widths = dict(_WIDE if width >= WIDE else _NARROW)
    taken = sum(widths.values()) + 2 * len(widths) + 2
    widths["Command"] = max(8, width - taken)
    return widths


def connections_of(snapshot: dict[str, Any]) -> list[Connection]:
    """The rows of a `sessions` snapshot: inbound sessions, then outbound connections, each
    oldest first. Every text from outside goes through `fmt.printable`: an EHLO name, a user
    name or a command a stranger sent never reaches the terminal as control characters."""
    rows = []
    for s in snapshot.get("inbound", []):
        peer = f"[{s['client_ip']}]:{s['client_port']}"
        user = fmt.printable(s.get("auth_user") or "")
        command = fmt.printable(s.get("command") or "")
        facts = [
            f"from {peer} on {s['listener']}",
            f"EHLO {fmt.printable(s['helo'])}" if s.get("helo") else "no EHLO yet",
            s.get("tls") or "no TLS",
            f"user {user}" if user else "no AUTH",
            f"{s['messages']} message{'' if s['messages'] == 1 else 's'}",
            f"{fmt.size(s['bytes_received'])} received",
            f"session {s['session_id']}",
        ]
        rows.append(
            Connection(
                s["session_id"],
                "in",
                peer,
                fmt.printable(s["listener"]),
                s.get("tls") or "",
                user,
                command,
                int(s["messages"]),
                int(s["bytes_received"]),
                float(s["started_at"]),
                " · ".join(facts) + f"\nlast command: {command or '-'}",
            )
        )
    for c in snapshot.get("outbound", []):
        doing = {"connecting": "connecting", "idle": "idle"}.get(
            c["state"], f"sending {c['queue_id']}"
        )
        facts = [
            f"to {c['host']} [{c['ip']}]:{c['port']}",
            f"for {c['destination'] or '-'}",
            c.get("tls") or "no TLS",
            doing,
            f"{c['messages']} message{'' if c['messages'] == 1 else 's'} sent on it",
            f"connection {c['connection_id']}",
        ]
        rows.append(
            Connection(
                c["connection_id"],
                "out",
                fmt.printable(c["host"]),
                fmt.printable(c["destination"]),
                c.get("tls") or "",
                "",
                doing,
                int(c["messages"]),
                None,
                float(c["opened_at"]),
                fmt.printable(" · ".join(facts)),
            )
        )
    return rows


class SessionsPane(Vertical):
    """The table of open connections; Enter follows one live."""

    BINDINGS = [Binding("enter", "open", "Watch", show=False)]

    class Opened(Message):
        """Enter on a row: open its live transcript."""

        def __init__(self, connection: Connection) -> None:
            super().__init__()
            self.connection = connection

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Clock = system_clock,
        id: str | None = None,  # noqa: A002
    ) -> None:
        super().__init__(id=id)
        self._admin = admin
        self.clock = clock
        self.rows: dict[str, Connection] = {}
        self._timer: Timer | None = None
        self._widths: dict[str, int] = {}
        self.detail = ""
        """What the lines under the table say now: the row under the cursor in full."""
        self.requests = 0
        """Snapshots asked for so far (tests count them)."""

    def compose(self) -> ComposeResult:
        yield TextLine("Sessions", id="sessions-title")
        yield DataTable(id="sessions-table", cursor_type="row")
        # Wrapped, a few lines: an inbound session's last command may be 200 characters.
        detail = Static("", id="sessions-detail", markup=False)
        detail.display = False  # until a row is under the cursor
        yield detail

    @property
    def table(self) -> DataTable[Text | str]:
        return self.query_one("#sessions-table", DataTable)

    def shown(self) -> None:
        """The pane is on screen: read now, then every REFRESH_EVERY seconds."""
        self.table.focus()
        if self._timer is None:
            self._timer = self.set_interval(REFRESH_EVERY, self._tick)
        self.reload()

    def hidden(self) -> None:
        """Another pane shows: ask for nothing until shown again."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _tick(self) -> None:
        if self.app.screen is self.screen:  # (not while the transcript screen covers it)
            self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="sessions", exit_on_error=False)
    async def _load(self) -> None:
        self.requests += 1
        try:
            snapshot = await self._admin().sessions()
        except Exception as exc:
            self.query_one("#sessions-title", TextLine).set(f"Sessions · cannot read: {exc}")
            return
        self.show(connections_of(snapshot))

    def on_resize(self, event: events.Resize) -> None:
        if self.rows and self._widths != column_widths(self.size.width):
            self.show(list(self.rows.values()))

    def show(self, rows: list[Connection]) -> None:
        """Draw `rows`, keeping the cursor on the connection it was on."""
        table = self.table
        widths = column_widths(self.size.width)
        now = self.clock()
        under = self._key_under_cursor()
        with self.app.batch_update():
            if widths != self._widths:
                table.clear(columns=True)
                for title, width in widths.items():
                    table.add_column(title, width=width, key=title)
                self._widths = widths
                self.rows = {}
            titles = tuple(widths)
            fresh = {row.key: row for row in rows}
            for key in [k for k in self.rows if k not in fresh]:
                table.remove_row(key)
            for row in rows:
                cells = row.cells(now, widths)
                old = self.rows.get(row.key)
                if old is None:
                    table.add_row(*(Text(c) for c in cells), key=row.key)
                    continue
                for title, cell, before in zip(titles, cells, old.cells(now, widths), strict=True):
                    if cell != before or title == "Age":
                        table.update_cell(row.key, title, Text(cell))
            self.rows = fresh
            if under in fresh:
                table.move_cursor(row=table.get_row_index(under), scroll=False)
            elif table.row_count:
                table.move_cursor(row=min(table.cursor_row, table.row_count - 1), scroll=False)
        self._title()
        self._detail()

    def _key_under_cursor(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _title(self) -> None:
        inbound = sum(1 for r in self.rows.values() if r.kind == "in")
        outbound = len(self.rows) - inbound
        text = f"Sessions · {inbound} inbound · {outbound} outbound"
        text += " · Enter watch live" if self.rows else " · none open now"
        self.query_one("#sessions-title", TextLine).set(text)

    def _detail(self) -> None:
        key = self._key_under_cursor()
        row = self.rows.get(key) if key is not None else None
        text = row.detail if row else ""
        if text != self.detail:  # (a new text lays the screen out again: only on a change)
            self.detail = text
            box = self.query_one("#sessions-detail", Static)
            box.update(text)
            box.display = bool(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.rows.get(str(event.row_key.value))
        if row is not None:
            self.post_message(self.Opened(row))

    def action_open(self) -> None:
        key = self._key_under_cursor()
        if key is not None and key in self.rows:
            self.post_message(self.Opened(self.rows[key]))
