"""The event bridge: one long-lived worker that follows the engine's event stream and hands
each event to what shows it, and, attached, finds the engine again when it comes back.

Per event it only notes what changed (a line for the log, "stale" for the queue, the status
bar and the Domains pane); the panes read the engine on their own timers. It reads nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from relaybox.admin.client import EventsDropped
from relaybox.events import (
    LOGGED_EVENTS,
    MESSAGE_CHANGES,
    AttemptFinished,
    AttemptStarted,
    ConfigRefused,
    ConfigReloaded,
    DeliveryPaused,
    DeliveryResumed,
    DestinationSuspended,
    DomainsChecked,
    Event,
    LogFileFailed,
    MessageAccepted,
    MessageDelivered,
    RecentEvents,
)
from relaybox.tui import format as fmt
from relaybox.tui.screens.destination import DestinationScreen
from relaybox.tui.screens.inspector import InspectorScreen

if TYPE_CHECKING:
    from relaybox.tui.app import RelayboxApp

__all__ = ["RECONNECT_EVERY", "UI_EVENTS", "EventBridge"]

UI_EVENTS: tuple[type[Event], ...] = LOGGED_EVENTS
"""What the UI's panes show. Not the per-line events (SessionLine, AttemptLine): the engine
builds those only while someone takes them, and the inspector asks for AttemptLine itself,
only while it watches a retry."""
_QUEUE_EVENTS: frozenset[type[Event]] = frozenset(
    {*MESSAGE_CHANGES, MessageAccepted, AttemptStarted, AttemptFinished, DestinationSuspended}
)
"""The events after which the Queue pane and the status bar read the queue again."""
RECONNECT_EVERY = 2.0
"""Seconds between looks for an engine gone away (attached)."""
LOG_HISTORY = 5000
"""Recent events the Log pane asks the engine for when it keeps no fewer."""


class EventBridge:
    """The engine's events, to the panes of one app; `start()` once they are mounted."""

    def __init__(self, app: RelayboxApp) -> None:
        self._app = app
        self._told_log_failed: tuple[float, int] = (0.0, 0)

    def start(self) -> None:
        """Find the panes every event goes to (once: a query per event is not free) and
        start following the engine's events."""
        app = self._app
        self._log_view = app.log_view
        self._queue_view = app.queue_view
        self._destinations = app.destinations_pane
        self._status = app.status_bar
        self._rates = self._status.rates
        app.run_worker(self._pump(), group="events", exit_on_error=False)

    async def _pump(self) -> None:
        """Every engine event, to the panes that show it.

        Attached, an engine that goes away (stopped, restarted) is said once, in the status
        bar and one notification; it is looked for every few seconds, and the UI carries on
        live when one serves the state directory again.
        """
        app = self._app
        while True:
            problem = await self._follow_events()
            if not app.link.attached:
                app.notify(f"Lost the engine's events: {problem}", severity="error", timeout=10)
                return
            if not self._status.engine_gone:
                self._status.engine_gone = True
                app.notify(
                    f"Lost the engine ({problem}). What is shown is no longer live; "
                    "relaybox reconnects when the engine is back.",
                    severity="error",
                    timeout=10,
                )
                self._status.show(None)
            while True:
                await asyncio.sleep(RECONNECT_EVERY)
                if await app.link.reconnect():
                    break

    async def _follow_events(self) -> str:
        """Pass on the engine's events until the stream ends; why it ended."""
        app = self._app
        try:
            stream = await app.link.subscribe(UI_EVENTS)
        except Exception as exc:
            return str(exc)
        self._log_view.subscribed()
        app.run_worker(
            self._load_log_history(), group="log-history", exclusive=True, exit_on_error=False
        )
        if self._status.engine_gone:
            self._status.engine_gone = False
            app.notify(f"Connected to the engine again ({app.link.describe()}).")
            self._status.load_listeners()
        # What changed before the stream opened was never heard (the first subscription opens
        # after the queue's first read, and a slow one long after): read the queue again now.
        self._queue_view.reload()
        self._status.stale = True
        try:
            async for event in stream:
                self.on_engine_event(event)
        except Exception as exc:
            return str(exc)
        finally:
            await stream.aclose()
        return "it closed the connection"

    async def _load_log_history(self) -> None:
        """The engine's recent log events, for the Log pane to show before the live ones: a
        page at a time back to what the pane keeps, or to what it showed already."""
        view = self._log_view
        want = view.history.maxlen or LOG_HISTORY
        pages: list[RecentEvents] = []
        got, before = 0, 0
        try:
            while got < want:
                page = await self._app.link.admin.log_tail(want - got, before)
                if pages and page.epoch != pages[0].epoch:
                    break  # another engine run began meanwhile: its events come live
                pages.append(page)
                if not page.events:
                    break
                got += len(page.events)
                before = page.events[0].seq
                if before <= view.shown_upto(page.epoch):
                    break
        except Exception:
            return  # an engine without the history (or gone again): the log starts live
        if pages:
            events = tuple(e for page in reversed(pages) for e in page.events)
            view.load_history(RecentEvents(pages[0].epoch, events))
            # Said once as it happened, maybe before this UI was there to hear it.
            failed = [e for e in events if isinstance(e, LogFileFailed)]
            if failed and failed[-1].seq > view.shown_upto(pages[0].epoch):
                self._log_file_failed(failed[-1])

    def on_engine_event(self, event: Event | EventsDropped) -> None:
        """One event, to the panes and the screen that show it."""
        # Under load this runs a thousand times a second on the relay's own event loop: it
        # only notes what changed; the panes read the engine on their own timers.
        self._log_view.record(event)
        if isinstance(event, EventsDropped):
            self._queue_view.touch()
            self._destinations.touch()
            return
        kind = type(event)
        if kind in _QUEUE_EVENTS:
            self._queue_view.touch()
            self._destinations.touch()
            self._status.stale = True
            if kind is MessageAccepted:
                self._rates.count("in")
            elif kind is MessageDelivered:
                self._rates.count("out")
        elif kind is DomainsChecked:
            self._app.domains_checked()
        elif isinstance(event, DeliveryPaused | DeliveryResumed):
            self._delivery_paused(event)
        elif isinstance(event, ConfigReloaded | ConfigRefused):
            self._config_changed(event)
        elif isinstance(event, LogFileFailed):
            self._log_file_failed(event)
        screen = self._app.screen
        if isinstance(screen, InspectorScreen):
            screen.on_engine_event(event)
        elif isinstance(screen, DestinationScreen) and kind in _QUEUE_EVENTS:
            screen.on_engine_event(event)

    def _log_file_failed(self, event: LogFileFailed) -> None:
        """The log file stopped taking lines: one notification (live, or from the history)."""
        if (event.at, event.seq) == self._told_log_failed:
            return
        self._told_log_failed = (event.at, event.seq)
        self._app.notify(f"{fmt.clock(event.at)} {event.problem}", severity="error", timeout=15)

    def _delivery_paused(self, event: DeliveryPaused | DeliveryResumed) -> None:
        """The spool cannot record outcomes (or can again): on the status bar until it is
        over, and one notification when it starts."""
        paused = event.error if isinstance(event, DeliveryPaused) else None
        if paused is not None and self._status.delivery_paused is None:
            self._app.notify(
                f"Delivery paused: the spool cannot record what was delivered ({paused}). "
                "Free disk space in the state directory; delivery resumes by itself.",
                severity="error",
                timeout=15,
            )
        self._status.delivery_paused = paused
        self._status.show(None)

    def _config_changed(self, event: ConfigReloaded | ConfigRefused) -> None:
        """A reload, by whoever asked: the status bar says which generation is in force (and
        why the last one was refused, until one applies), one notification says it, and the
        Config pane reads the file the engine now runs."""
        if isinstance(event, ConfigReloaded):
            self._status.config_refused = None
            self._app.notify(
                f"Config generation {event.generation} applied ({event.trigger}): {event.summary}",
                timeout=8,
            )
            self._status.load_listeners()  # listeners, generation and load time, re-read
            self._app.config_pane.file_changed()  # (reads the file only once it was opened)
            return
        first = event.problems[0] if event.problems else "(no reason given)"
        more = len(event.problems) - 1
        self._status.config_refused = first + (f" (+{more} more)" if more > 0 else "")
        self._app.notify(
            "Config refused; the relay keeps its settings:\n" + "\n".join(event.problems[:5]),
            severity="error",
            timeout=15,
        )
        self._status.show(None)
