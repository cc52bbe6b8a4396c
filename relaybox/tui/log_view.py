"""Line-API views of text lines: the live event log (a ring buffer) and the inspector's pages.

Only visible lines are rendered, from cached strips; appending a line repaints at most that
line (and scrolls when the view follows the tail).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.strip import Strip

from relaybox.admin.client import EventsDropped
from relaybox.events import (
    AttemptFinished,
    AttemptStarted,
    DestinationSuspended,
    DkimKeyChecked,
    DomainsChecked,
    Event,
    MessageAccepted,
    MessageBounced,
    MessageDeferred,
    MessageDeleted,
    MessageDelivered,
    MessageHeld,
    MessageRejected,
    MessageReleased,
    SessionClosed,
    SessionOpened,
)
from relaybox.tui import format as fmt
from relaybox.tui.strip_view import StripView
from relaybox.tui.widgets import printable, shown

__all__ = ["LineView", "LogView", "describe_event"]


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
    DEFAULT_CSS = """
    LineView {
        background: $surface;
        & > .lineview--client { color: $accent; }
        & > .lineview--server { color: $primary; }
        & > .lineview--note { color: $text-muted; }
        & > .lineview--good { color: $success; }
        & > .lineview--warn { color: $warning; }
        & > .lineview--bad { color: $error; }
        & > .lineview--head { text-style: bold; }
    }
    """

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


def _accepted(e: MessageAccepted, at: str) -> tuple[str, str]:
    rcpts = fmt.recipients(e.recipients[0] if e.recipients else "", len(e.recipients))
    return (
        "plain",
        f"{at} {e.queue_id}: accepted from=<{e.sender}> to={rcpts} "
        f"size={e.size} client={e.client_ip}",
    )


def _held(e: MessageHeld, at: str) -> tuple[str, str]:
    whom = f" {', '.join(e.recipients)}" if e.recipients else ""
    return ("warn", f"{at} {e.queue_id}: held{whom}: {e.reason}")


def _rejected(e: MessageRejected, at: str) -> tuple[str, str]:
    who = e.recipient or e.sender or ""
    return ("warn", f"{at} rejected {e.stage} {who} from {e.client_ip}: {e.reply}")


def _attempt_finished(e: AttemptFinished, at: str) -> tuple[str, str]:
    kind = {"delivered": "good", "bounced": "bad"}.get(e.outcome, "warn")
    return (kind, f"{at} {e.queue_id}: {e.destination}: {e.outcome}: {e.reply}")


def _suspended(e: DestinationSuspended, at: str) -> tuple[str, str]:
    if e.until:
        return ("warn", f"{at} {e.destination}: delivery suspended")
    return ("good", f"{at} {e.destination}: delivery resumed")


def _dkim_key(e: DkimKeyChecked, at: str) -> tuple[str, str]:
    kind = "good" if e.status == "ok" else "bad"
    return (kind, f"{at} DKIM key {e.selector}._domainkey.{e.domain}: {e.detail}")


_DESCRIBE: dict[type[Any], Callable[[Any, str], tuple[str, str]]] = {
    SessionOpened: lambda e, at: (
        "note",
        f"{at} connect from {e.client_ip}:{e.client_port} to {e.listener}",
    ),
    SessionClosed: lambda e, at: (
        "note",
        f"{at} disconnect {e.client_ip} ({e.messages} message{'' if e.messages == 1 else 's'})",
    ),
    MessageAccepted: _accepted,
    AttemptStarted: lambda e, at: ("note", f"{at} {e.queue_id}: attempt to {e.destination}"),
    AttemptFinished: _attempt_finished,
    MessageDelivered: lambda e, at: ("good", f"{at} {e.queue_id}: delivered"),
    MessageDeferred: lambda e, at: ("warn", f"{at} {e.queue_id}: deferred: {e.reply}"),
    MessageBounced: lambda e, at: (
        "bad",
        f"{at} {e.queue_id}: bounced {', '.join(e.recipients)}: {e.reply}",
    ),
    MessageHeld: _held,
    MessageReleased: lambda e, at: ("plain", f"{at} {e.queue_id}: released by an admin"),
    MessageDeleted: lambda e, at: ("warn", f"{at} {e.queue_id}: deleted by an admin"),
    MessageRejected: _rejected,
    DestinationSuspended: _suspended,
    DomainsChecked: lambda e, at: (
        "note",
        f"{at} domain checks ready: {', '.join(e.domains)} (5 shows them)",
    ),
    DkimKeyChecked: _dkim_key,
}
"""How each kind of event reads in the log (looked up by class: the log formats every
event the engine publishes, hundreds a second under load)."""


def describe_event(event: Event | EventsDropped) -> tuple[str, str] | None:
    """A log line (kind, text) for an event; None for events too chatty for the log."""
    if isinstance(event, EventsDropped):
        return ("warn", f"({event.count} events not shown: the log fell behind)")
    describe = _DESCRIBE.get(type(event))
    return None if describe is None else describe(event, fmt.clock(event.at))


class LogView(LineView):
    """The live event log: a bounded ring buffer with a text filter.

    Events are kept as they come and turned into text only when the log is on screen; new
    lines are shown within a quarter-second, and under load (hundreds a second) once a second
    in one update (see BUSY_INTERVAL).
    """

    FLUSH_INTERVAL = 0.25
    """How often new lines are looked for."""
    BUSY_INTERVAL = 1.0
    """Between updates while each brings more than a screenful (the pane scrolls as a whole
    at each, and the terminal redrawn four times a second costs the relay throughput)."""

    def __init__(self, max_lines: int = 5000, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(max_lines, id=id)
        self.history: collections.deque[Event | EventsDropped] = collections.deque(maxlen=max_lines)
        self.filter_text = ""
        self._pending: collections.deque[Event | EventsDropped] = collections.deque(
            maxlen=max_lines
        )
        self._stale = False
        """Events were dropped from `_pending` while hidden: rebuild from the history."""
        self._busy = False
        """The last update brought more lines than the pane shows."""
        self._flushed_at = 0.0

    def on_mount(self) -> None:
        self.set_interval(self.FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        if not self._busy or time.monotonic() - self._flushed_at >= self.BUSY_INTERVAL:
            self.flush()

    def record(self, event: Event | EventsDropped) -> None:
        """Keep the event; it is shown (if it makes a line that passes the filter) at the next
        flush while the log is on screen."""
        self.history.append(event)
        if len(self._pending) == self._pending.maxlen:
            self._stale = True
        self._pending.append(event)

    def _lines_of(self, events: Iterable[Event | EventsDropped]) -> list[tuple[str, str]]:
        out = []
        for event in events:
            line = describe_event(event)
            if line is not None and (not self.filter_text or self.filter_text in line[1].lower()):
                out.append(line)
        return out

    def flush(self) -> None:
        """Show the events recorded since the last flush, in one update (when on screen)."""
        if not self._pending or not shown(self):
            return
        if self._stale:
            self._stale = False
            self._pending.clear()
            self.set_lines(self._lines_of(self.history))
            self.scroll_end(animate=False, immediate=True)
            return
        pending = self._lines_of(self._pending)
        self._pending.clear()
        self._flushed_at = time.monotonic()
        self._busy = len(pending) > self.size.height
        if not pending:
            return
        maxlen = self.lines.maxlen or len(pending)
        dropped = max(0, len(self.lines) + len(pending) - maxlen)
        at_end = self.scroll_offset.y >= self.max_scroll_y
        self.lines.extend(pending[-maxlen:])
        self._first += dropped
        self._widest = max([self._widest, *(len(t) for _, t in pending)])
        self.set_virtual_size(self._widest, len(self.lines))
        if self.follow and at_end:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def set_filter(self, text: str) -> None:
        """Show only lines containing `text` (case-insensitive); empty shows all."""
        self.filter_text = text.strip().lower()
        self._pending.clear()
        self._stale = False
        self.set_lines(self._lines_of(self.history))
        self.scroll_end(animate=False, immediate=True)
