"""A destination's screen (Enter on the Destinations pane): its messages as the Queue pane
shows them, its recent attempts (Enter shows one's transcript), and the actions on it: retry
all now, suspend for a while or until resumed, resume.

The figures are the `destinations` operation's entry for this next hop; the words for its
cause (also the pane's) are here, from `message/explain.py`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from relaybox.admin.client import AdminClient
from relaybox.admin.service import UNTIL_RESUMED
from relaybox.clock import Clock, system_clock
from relaybox.events import AttemptFinished, Event
from relaybox.message.explain import explain
from relaybox.queue import UNFINISHED_STATES, AttemptRow, MessageFilter
from relaybox.tui import format as fmt
from relaybox.tui.panes.queue_view import QueueView, ViewState
from relaybox.tui.screens.config_forms import Answers, Field, FormScreen
from relaybox.tui.screens.inspector import transcript_lines
from relaybox.tui.widgets.key_footer import KeyFooter
from relaybox.tui.widgets.line_view import LineView
from relaybox.tui.widgets.text_line import TextLine

__all__ = [
    "AttemptScreen",
    "DestinationScreen",
    "cause_lines",
    "cause_text",
    "parse_duration",
    "suspended_text",
]

RECENT = 20
"""Attempts listed."""
ENTRY_EVERY = 2.0
"""Seconds between reads of the figures while the screen is on top (and never more than
a tenth of the time: grouping a big queue takes a while)."""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$", re.I)
_UNIT = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, None: 60}


def suspended_text(entry: dict[str, Any], now: float) -> str:
    """`until resumed`, `ends in 2h`, or empty when the destination is not suspended."""
    until = entry.get("suspended_until")
    if until is None or until <= now:
        return ""
    return "until resumed" if until >= UNTIL_RESUMED else f"ends in {fmt.age(until - now)}"


def cause_text(entry: dict[str, Any], now: float) -> str:
    """The cause in a few words: the suspension, else the commonest last reply explained
    (the reply itself when no rule knows it); empty when nothing went wrong."""
    suspended = suspended_text(entry, now)
    if suspended:
        return f"suspended by the admin ({suspended}): {entry.get('suspended_reason') or ''}"
    causes = entry.get("causes") or []
    if not causes:
        return ""
    found = explain(causes[0]["reply"], tls_mode=entry.get("tls"))
    return found.summary if found is not None else " ".join(causes[0]["reply"].split())


def cause_lines(entry: dict[str, Any], now: float) -> list[str]:
    """The cause in full: the suspension, each common last reply with its count and what it
    means, and the likely cause and fix of the commonest."""
    out = []
    if suspended_text(entry, now):
        out.append(cause_text(entry, now))
    for n, cause in enumerate(entry.get("causes") or []):
        reply = " ".join(cause["reply"].split())
        found = explain(reply, tls_mode=entry.get("tls"))
        head = f"{cause['count']} × {reply}"
        out.append(head if found is None else f"{head}  ({found.summary})")
        if n == 0 and found is not None:
            out += [f"  Why: {found.cause}", f"  Fix: {found.fix}"]
    return out or ["Nothing failed here: no recipient is deferred or held."]


def parse_duration(text: str) -> float | None:
    """Seconds from `30m`, `2h`, `1d`, `90s` or a bare number of minutes; None for empty
    (until resumed). Raises ValueError saying what is accepted."""
    if not text.strip():
        return None
    found = _DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: write 30m, 2h, 1d (empty: until resumed)")
    unit = found.group(2).lower() if found.group(2) else None
    return float(found.group(1)) * _UNIT[unit]


def _attempt_text(queue_id: str, attempt: AttemptRow) -> str:
    host = f" via {attempt.host}" if attempt.host else ""
    reply = " ".join((attempt.reply or "").split())
    return f"{fmt.clock(attempt.started_at)} {queue_id} {attempt.outcome}{host}: {reply}"


class AttemptScreen(Screen[None]):
    """One attempt's transcript, in the inspector's words and colours."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, queue_id: str, attempt: AttemptRow) -> None:
        super().__init__()
        self.queue_id = queue_id
        self.attempt = attempt

    def compose(self) -> ComposeResult:
        a = self.attempt
        yield TextLine(
            f"Attempt · {self.queue_id} → {a.destination} · {a.outcome} · Esc back",
            id="attempt-title",
        )
        yield LineView(id="attempt-lines")
        yield KeyFooter()

    def on_mount(self) -> None:
        a = self.attempt
        view = self.query_one(LineView)
        head = [("plain", f"  Recipients: {', '.join(a.recipients)}")]
        if a.host:
            head.append(("plain", f"  Host: {a.host} [{a.ip}]:{a.port}  TLS: {a.tls or 'none'}"))
        head.append(("plain", f"  Reply: {a.reply or ''}"))
        view.set_lines([*head, ("plain", ""), *transcript_lines(a.transcript)])
        view.focus()


class DestinationScreen(Screen[None]):
    """One next hop: its messages, its recent attempts, and what an admin can do to it."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "retry_all", "Retry all now"),
        Binding("s", "suspend", "Suspend"),
        Binding("u", "resume", "Resume"),
        # A priority binding: run in the order keys come, before the Enter typed behind it
        # is handed to the list that has the focus now.
        Binding("tab", "switch_list", "Messages/attempts", show=False, priority=True),
    ]

    def __init__(
        self,
        entry: dict[str, Any],
        admin: Callable[[], AdminClient],
        *,
        clock: Clock = system_clock,
        reload: Callable[[], None] | None = None,
    ) -> None:
        """Args:
        entry: the destination as the `destinations` operation gave it.
        admin: the engine's admin layer.
        clock: the engine's clock.
        reload: asks the Destinations pane to read again after an action.
        """
        super().__init__()
        self.entry = entry
        self.key: str = entry["destination"]
        self._admin = admin
        self.clock = clock
        self._reload_pane = reload
        self.attempts: list[tuple[str, AttemptRow]] = []
        self._attempts_stale = False
        self._entry_read = time.monotonic()
        self._entry_seconds = 0.0

    @property
    def admin(self) -> AdminClient:
        return self._admin()

    def compose(self) -> ComposeResult:
        yield Static(id="destination-title", markup=False)
        yield Static(id="destination-cause", markup=False)
        yield TextLine("Messages (Enter opens one)", id="destination-messages-head")
        yield QueueView(self._admin, clock=self.clock, id="destination-queue")
        yield TextLine("Recent attempts (Tab, then Enter on one)", id="destination-attempts-head")
        yield OptionList(id="destination-attempts")
        yield KeyFooter()

    @property
    def queue(self) -> QueueView:
        return self.query_one("#destination-queue", QueueView)

    def on_mount(self) -> None:
        self.queue.state = ViewState(scope=tuple(self.entry.get("queue_ids") or ("-",)))
        self.queue.reload()
        self.queue.focus()
        self._show_entry()
        self.load_attempts()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        # The figures while on top; the attempts when one to here finished.
        if self.is_current:
            since = time.monotonic() - self._entry_read
            if since >= max(ENTRY_EVERY, self._entry_seconds * 10):
                self.refresh_entry()
            if self._attempts_stale:
                self._attempts_stale = False
                self.load_attempts()

    def on_engine_event(self, event: Event) -> None:
        """The engine said the queue changed (the app's bridge calls this while on top)."""
        self.queue.touch()
        if isinstance(event, AttemptFinished) and event.destination == self.key:
            self._attempts_stale = True

    # ------------------------------------------------------------------ reading

    @work(exclusive=True, group="destination-entry", exit_on_error=False)
    async def refresh_entry(self) -> None:
        """Read this destination's figures again (gone: nothing waits for it any more)."""
        started = time.monotonic()
        try:
            found = await self.admin.destinations()
        except Exception as exc:
            self.notify(f"Cannot read the destinations: {exc}", severity="error", timeout=5)
            return
        finally:
            self._entry_read = time.monotonic()
            self._entry_seconds = self._entry_read - started
        entry = next((e for e in found if e["destination"] == self.key), None)
        if entry is None:
            entry = {**self.entry, "queued": 0, "active": 0, "deferred": 0, "held": 0}
            entry.update(causes=[], suspended_until=None, gone=True)
        self.entry = entry
        self._show_entry()

    @work(exclusive=True, group="destination-attempts", exit_on_error=False)
    async def load_attempts(self) -> None:
        try:
            self.attempts = await self.admin.recent_attempts(self.key, RECENT)
        except Exception as exc:
            self.notify(f"Cannot read the attempts: {exc}", severity="error", timeout=5)
            return
        box = self.query_one("#destination-attempts", OptionList)
        box.clear_options()
        box.add_options(
            Option(fmt.printable(_attempt_text(qid, a)), id=str(n))
            for n, (qid, a) in enumerate(self.attempts)
        )
        if self.attempts:
            box.highlighted = 0
        else:
            box.add_option(Option("(no attempt to it among the recent ones)", disabled=True))

    def _show_entry(self) -> None:
        e = self.entry
        now = self.clock()
        counts = " ".join(
            f"{e[s]} {s}" for s in ("queued", "active", "deferred", "held") if e.get(s)
        )
        parts = [f"Destination {self.key}", ", ".join(e["domains"]), counts or "nothing waiting"]
        suspended = suspended_text(e, now)
        if suspended:
            parts.append(f"SUSPENDED ({suspended})")
        elif e.get("next_attempt_at") is not None:
            parts.append(f"next {fmt.until(e['next_attempt_at'], now)}")
        if e.get("attempts_now"):
            parts.append(f"{e['connections']}/{e['connection_limit']} connections")
        if e.get("pace"):
            parts.append(f"pace {e['started_last_minute']}/{e['pace']} a minute")
        parts.append("Esc back")
        self.query_one("#destination-title", Static).update(fmt.printable(" · ".join(parts)))
        self.query_one("#destination-cause", Static).update(
            "\n".join(fmt.printable(line) for line in cause_lines(e, now))
        )

    # ------------------------------------------------------------------ the lists

    def action_switch_list(self) -> None:
        # At once (set_focus), not after a refresh: the Enter typed right behind Tab is for
        # the list Tab moved to.
        box = self.query_one("#destination-attempts", OptionList)
        self.set_focus(self.queue if box.has_focus else box)

    @on(OptionList.OptionSelected, "#destination-attempts")
    def _open_attempt(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            queue_id, attempt = self.attempts[int(event.option.id)]
            self.app.push_screen(AttemptScreen(queue_id, attempt))

    # ------------------------------------------------------------------ actions

    def _after_action(self, said: str) -> None:
        self.notify(said)
        self.queue.touch()
        self.refresh_entry()
        self.load_attempts()
        if self._reload_pane is not None:
            self._reload_pane()

    @work(group="destination-action", exit_on_error=False)
    async def action_retry_all(self) -> None:
        """Every message waiting for it, due now (a suspended one is deferred again)."""
        ids = tuple(self.entry.get("queue_ids") or ())
        if not ids:
            self.notify("Nothing waits for this destination.")
            return
        try:
            done = await self.admin.retry(MessageFilter(states=UNFINISHED_STATES, queue_ids=ids))
        except Exception as exc:
            self.notify(f"Retry failed: {exc}", severity="error")
            return
        count = len(done)
        self._after_action(f"Retrying {count} message{'' if count == 1 else 's'} to {self.key} now")

    def action_suspend(self) -> None:
        def check(answers: Answers) -> str | None:
            try:
                parse_duration(answers["for"])
            except ValueError as exc:
                return str(exc)
            return None

        fields = [
            Field("for", "For (30m, 2h, 1d; empty: until resumed)", placeholder="until resumed"),
            Field("reason", "Reason (shown in the queue)", placeholder="no reason given"),
        ]
        form = FormScreen(f"Suspend delivery to {self.key}", fields, check)
        self.app.push_screen(form, self._suspend)

    def _suspend(self, answers: Answers | None) -> None:
        if answers is not None:
            self._suspend_for(parse_duration(answers["for"]), answers["reason"])

    @work(group="destination-action", exit_on_error=False)
    async def _suspend_for(self, seconds: float | None, reason: str) -> None:
        try:
            _, until = await self.admin.suspend(self.key, seconds, reason)
        except Exception as exc:
            self.notify(f"Cannot suspend {self.key}: {exc}", severity="error")
            return
        ends = "until resumed" if until >= UNTIL_RESUMED else f"until {fmt.clock(until)}"
        self._after_action(f"Delivery to {self.key} suspended {ends}")

    @work(group="destination-action", exit_on_error=False)
    async def action_resume(self) -> None:
        try:
            was = await self.admin.resume(self.key)
        except Exception as exc:
            self.notify(f"Cannot resume {self.key}: {exc}", severity="error")
            return
        if was:
            self._after_action(f"Delivery to {self.key} resumed; its mail is retried now")
        else:
            self.notify(f"{self.key} was not suspended")
