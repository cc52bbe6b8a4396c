"""The Sessions pane (key 3): the inbound SMTP sessions and delivery's outbound connections
open now, in one table with a kind column; Enter opens one's transcript, live
(`screens/session.py`).

It asks the engine for a snapshot (`sessions`) about once a second while it shows, and not at
all while it is hidden or covered; rows are updated by key, so the cursor stays on its
connection. The rows are a line-API list (`widgets.row_list`): the ages tick every second, and
a DataTable would draw every row again for each tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from relaybox.admin.client import AdminClient
from relaybox.clock import Clock, system_clock
from relaybox.tui import format as fmt
from relaybox.tui.widgets.row_list import RowList
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
    """Each column's width for rows `width` cells wide; the command takes what is left (a
    cell before the first column, two between columns)."""
    widths = dict(_WIDE if width >= WIDE else _NARROW)
    taken = sum(widths.values()) + 2 * len(widths) - 1
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
        self.detail = ""
        """What the lines under the table say now: the row under the cursor in full."""
        self.requests = 0
        """Snapshots asked for so far (tests count them)."""

    def compose(self) -> ComposeResult:
        yield TextLine("Sessions", id="sessions-title")
        yield TextLine("", id="sessions-header")
        yield RowList(id="sessions-rows")
        # Wrapped, a few lines: an inbound session's last command may be 200 characters.
        detail = Static("", id="sessions-detail", markup=False)
        detail.display = False  # until a row is under the cursor
        yield detail

    @property
    def table(self) -> RowList:
        return self.query_one("#sessions-rows", RowList)

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
        self.show(list(self.rows.values()))

    def show(self, rows: list[Connection]) -> None:
        """Draw `rows`; the cursor stays on the connection it was on."""
        widths = column_widths(self.table.scrollable_content_region.width or self.size.width)
        now = self.clock()
        header = "  ".join(fmt.clip(title, width) for title, width in widths.items())
        self.query_one("#sessions-header", TextLine).set(" " + header)
        self.rows = {row.key: row for row in rows}
        self.table.set_rows(
            [(row.key, row.kind, " " + "  ".join(row.cells(now, widths))) for row in rows]
        )
        self._title()

    def _title(self) -> None:
        inbound = sum(1 for r in self.rows.values() if r.kind == "in")
        outbound = len(self.rows) - inbound
        text = f"Sessions · {inbound} inbound · {outbound} outbound"
        text += " · Enter watch live" if self.rows else " · none open now"
        self.query_one("#sessions-title", TextLine).set(text)

    @on(RowList.Highlighted)
    def _detail(self, event: RowList.Highlighted) -> None:
        event.stop()
        row = self.rows.get(event.key) if event.key is not None else None
        text = row.detail if row else ""
        if text != self.detail:  # (a new text lays the screen out again: only on a change)
            self.detail = text
            box = self.query_one("#sessions-detail", Static)
            box.update(text)
            box.display = bool(text)

    @on(RowList.Opened)
    def _open(self, event: RowList.Opened) -> None:
        event.stop()
        row = self.rows.get(event.key)
        if row is not None:
            self.post_message(self.Opened(row))
