"""The Log pane (key 4): the engine's events as they happen, one line each, in a bounded ring
buffer with a text filter. It does not read the queue: the events are all it shows."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from relaybox.admin.client import EventsDropped
from relaybox.events import (
    LOGGED_EVENTS,
    AttemptFinished,
    AttemptStarted,
    ConfigRefused,
    ConfigReloaded,
    DeliveryPaused,
    DeliveryResumed,
    DestinationSuspended,
    DkimKeyChecked,
    DomainsChecked,
    Event,
    LogFileFailed,
    MessageAccepted,
    MessageBounced,
    MessageDeferred,
    MessageDeleted,
    MessageDelivered,
    MessageHeld,
    MessageRejected,
    MessageReleased,
    RecentEvents,
    SessionClosed,
    SessionOpened,
)
from relaybox.message.explain import explain
from relaybox.tui import format as fmt
from relaybox.tui.widgets.line_view import LineView
from relaybox.tui.widgets.strip_view import shown

__all__ = ["LogPane", "LogView", "describe_event"]

_RING_KEPT = frozenset(LOGGED_EVENTS)


def _accepted(e: MessageAccepted, at: str) -> tuple[str, str]:
    rcpts = fmt.recipients(e.recipients[0] if e.recipients else "", len(e.recipients))
    return (
        "plain",
        f"{at} {e.queue_id}: accepted from=<{e.sender}> to={rcpts} "
        f"size={e.size} client={e.client_ip}",
    )


def _delivered(e: MessageDelivered, at: str) -> tuple[str, str]:
    if e.captured:
        # Kept by a capture route: nobody received it, and the log must not say they did.
        return ("note", f"{at} {e.queue_id}: captured, not sent on: {', '.join(e.captured)}")
    return ("good", f"{at} {e.queue_id}: delivered")


def _held(e: MessageHeld, at: str) -> tuple[str, str]:
    whom = f" {', '.join(e.recipients)}" if e.recipients else ""
    return ("warn", f"{at} {e.queue_id}: held{whom}: {e.reason}")


def _rejected(e: MessageRejected, at: str) -> tuple[str, str]:
    who = e.recipient or e.sender or ""
    return ("warn", f"{at} rejected {e.stage} {who} from {e.client_ip}: {e.reply}")


def _explained(reply: str | None) -> str:
    """What the reply means, in brackets, when the table of replies knows it; else nothing."""
    found = explain(reply) if reply else None
    return f" ({found.summary})" if found is not None else ""


def _attempt_finished(e: AttemptFinished, at: str) -> tuple[str, str]:
    kind = {"delivered": "good", "bounced": "bad"}.get(e.outcome, "warn")
    why = _explained(e.reply) if e.outcome != "delivered" else ""
    return (kind, f"{at} {e.queue_id}: {e.destination}: {e.outcome}{why}: {e.reply}")


def _deferred(e: MessageDeferred, at: str) -> tuple[str, str]:
    return ("warn", f"{at} {e.queue_id}: deferred{_explained(e.reply)}: {e.reply}")


def _bounced(e: MessageBounced, at: str) -> tuple[str, str]:
    whom = ", ".join(e.recipients)
    return ("bad", f"{at} {e.queue_id}: bounced {whom}{_explained(e.reply)}: {e.reply}")


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
    MessageDelivered: _delivered,
    MessageDeferred: _deferred,
    MessageBounced: _bounced,
    MessageHeld: _held,
    MessageReleased: lambda e, at: ("plain", f"{at} {e.queue_id}: released by an admin"),
    MessageDeleted: lambda e, at: ("warn", f"{at} {e.queue_id}: deleted by an admin"),
    MessageRejected: _rejected,
    DestinationSuspended: _suspended,
    DeliveryPaused: lambda e, at: (
        "bad",
        f"{at} delivery paused: the spool cannot record outcomes ({e.error}); "
        f"{e.unrecorded} waiting",
    ),
    DeliveryResumed: lambda e, at: ("good", f"{at} delivery resumed: every outcome recorded"),
    DomainsChecked: lambda e, at: (
        "note",
        f"{at} domain checks ready: {', '.join(e.domains)} (5 shows them)",
    ),
    DkimKeyChecked: _dkim_key,
    ConfigReloaded: lambda e, at: (
        "good",
        f"{at} config generation {e.generation} applied ({e.trigger}): {e.summary}",
    ),
    LogFileFailed: lambda e, at: ("bad", f"{at} {e.problem}"),
    ConfigRefused: lambda e, at: (
        "bad",
        f"{at} config refused ({e.trigger}), the old one keeps serving: " + " | ".join(e.problems),
    ),
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

    It opens with the engine's recent events (`load_history`, the engine's `log_tail`), joined
    to the live stream by their sequence numbers (`Event.seq`): an event that is in both is
    shown once, and one published while the history was on its way is not lost.
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
        self._epoch = ""
        """The engine run the events shown come from (`RecentEvents.epoch`)."""
        self._upto = 0
        """The highest `seq` shown of that run: a live event at or below it came already."""
        self._live = 0
        """Events recorded since the live stream (re)started."""
        self._seen_before: tuple[str, int] = ("", 0)
        """(`_epoch`, `_upto`) when the live stream (re)started: what is shown already."""

    def on_mount(self) -> None:
        self.set_interval(self.FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        if not self._busy or time.monotonic() - self._flushed_at >= self.BUSY_INTERVAL:
            self.flush()

    def subscribed(self) -> None:
        """The live stream (re)starts here: what `record` gets from now on is live, and
        `load_history` puts the engine's recent events before it."""
        self._seen_before = (self._epoch, self._upto)
        self._upto = 0
        self._live = 0

    def record(self, event: Event | EventsDropped) -> None:
        """Keep the event; it is shown (if it makes a line that passes the filter) at the next
        flush while the log is on screen. One the history brought already is left out."""
        seq = getattr(event, "seq", 0)
        if seq:
            if seq <= self._upto and type(event) in _RING_KEPT:
                return
            self._upto = seq
        self._live += 1
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

    def shown_upto(self, epoch: str) -> int:
        """The highest `seq` of engine run `epoch` shown before the live stream (re)started."""
        seen_epoch, upto = self._seen_before
        return upto if seen_epoch == epoch else 0

    def load_history(self, recent: RecentEvents) -> None:
        """Put the engine's recent events (oldest first) before those recorded live since
        `subscribed`, leaving out any shown already (the same engine run, seen before a
        reconnection, or come live meanwhile)."""
        epoch, floor = self._seen_before
        if recent.epoch != epoch:
            floor = 0
        events = list(self.history)
        live_count = min(self._live, len(events))
        older, live = events[: len(events) - live_count], events[len(events) - live_count :]
        live_seqs = {getattr(e, "seq", 0) for e in live}
        fresh = collections.deque(
            e for e in recent.events if e.seq > floor and e.seq not in live_seqs
        )
        self._epoch = recent.epoch
        if recent.events:
            self._upto = max(self._upto, recent.events[-1].seq)
        if not fresh:
            return
        merged: list[Event | EventsDropped] = []
        for event in live:
            seq = getattr(event, "seq", 0)
            while fresh and seq and fresh[0].seq < seq:
                merged.append(fresh.popleft())
            merged.append(event)
        merged.extend(fresh)
        self._live = len(merged)
        self.history = collections.deque(older + merged, maxlen=self.history.maxlen)
        self._stale = True

    def flush(self) -> None:
        """Show the events recorded since the last flush, in one update (when on screen)."""
        if not (self._pending or self._stale) or not shown(self):
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


class LogPane(Vertical):
    """The Log pane: its title line, the live log and the filter line."""

    def compose(self) -> ComposeResult:
        yield Static("Log · / filters · End follows", id="log-title")
        yield LogView(id="log-view")
        yield Input(placeholder="filter the log; Enter applies, Esc clears")
