"""The relaybox terminal UI: status bar, Queue and Log panes, the message inspector.

It runs on the engine's event loop (in-process) or beside an engine elsewhere (attached);
either way it sees the engine only through an `EngineLink`. Every query runs in a worker;
engine events arrive through one subscription and are fanned out to the panes.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.driver import Driver
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, ContentSwitcher, Footer, Input, Label, Sparkline, Static

from relaybox.admin.client import EventsDropped
from relaybox.events import (
    MESSAGE_CHANGES,
    AttemptFinished,
    AttemptStarted,
    DestinationSuspended,
    DkimKeyChecked,
    DomainsChecked,
    Event,
    MessageAccepted,
    MessageDelivered,
    MessageRejected,
    SessionClosed,
    SessionOpened,
)
from relaybox.queue.spool import MessageFilter
from relaybox.tui import format as fmt
from relaybox.tui.domains_view import DomainScreen, DomainsPane
from relaybox.tui.inspector import InspectorScreen
from relaybox.tui.link import EngineLink, ListenerInfo
from relaybox.tui.log_view import LogView
from relaybox.tui.queue_pane import QueuePane
from relaybox.tui.queue_view import COLUMNS, STATE_VIEWS, QueueView, ViewState
from relaybox.tui.themes import DEFAULT_THEME, load_themes, theme_dirs
from relaybox.tui.widgets import TextLine

__all__ = ["ConfirmScreen", "RelayboxApp"]

_ACTION_WORDS = {
    "retry": "retried",
    "hold": "held",
    "release": "released",
    "delete": "deleted",
    "bounce": "bounced",
}
_CONFIRM = {"delete", "bounce"}
_RATE_BUCKET = 10.0  # seconds per sparkline bar
UI_EVENTS: tuple[type[Event], ...] = (
    SessionOpened,
    SessionClosed,
    MessageAccepted,
    MessageRejected,
    *MESSAGE_CHANGES,
    AttemptStarted,
    AttemptFinished,
    DestinationSuspended,
    DkimKeyChecked,
    DomainsChecked,
)
"""What the UI's panes show. Not the per-line events (SessionLine, AttemptLine): the engine
builds those only while someone takes them, and the inspector asks for AttemptLine itself,
only while it watches a retry."""
_QUEUE_EVENTS: frozenset[type[Event]] = frozenset(
    {*MESSAGE_CHANGES, MessageAccepted, AttemptStarted, AttemptFinished}
)
"""The events after which the Queue pane and the status bar read the queue again."""
_RATE_BARS = 30
_RECONNECT_EVERY = 2.0  # seconds between looks for an engine gone away (attached)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; `y` says yes, `n`/Escape no (Enter answers the focused button,
    "No" at first: the safe answer)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; height: auto; padding: 1 2; border: thick $warning; background: $surface;
    }
    ConfirmScreen Label { width: 1fr; margin-bottom: 1; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


HELP_TEXT = """\
[b]relaybox keys[/b]  (any key closes this)

[b]Everywhere[/b] (when no text box has focus)
  1            Queue pane              4          Log pane
  5            Domains pane            2 3 6      reserved (later releases)
  /            filter the pane         Escape     back, clear the filter or selection
  ?  F1        this help               Ctrl+P     command palette (every action, themes)
  q  Ctrl+Q  Ctrl+C   quit (asks first; in-process this stops the relay)

[b]Queue[/b]
  ↑ ↓  j k     move                    PgUp PgDn  a page
  Home g  End G   first, last          Enter      open the message
  Space        select / unselect (actions then take the selection)
  r  h  l      retry, hold, release the selected messages (or the one under the cursor)
  d  b         delete, bounce (asks first)
  R H L D B    the same for every message the view and filter show (asks first)
  v            next state view (unfinished, deferred, held, queued, delivered, ...)
  s  S         sort by the next column, reverse the order
  filter text  matches queue ID, sender, recipient, reply; @example.org is a domain

[b]Message inspector[/b]
  ↑ ↓ PgUp PgDn Home End   scroll      m          raw message / details
  r            retry now and watch the attempt live
  h l d b      hold, release, delete, bounce          Escape     back to the queue

[b]Log[/b]
  / filters the log; End follows new lines again after scrolling up.

[b]Domains[/b]
  ↑ ↓  j k     move                    Enter      every finding, with the record to publish
  c            check every sending domain now (they are also checked every few hours)
  y            (in a domain) copy the selected finding's record to the clipboard
"""


class HelpScreen(ModalScreen[None]):
    """Every key, on one screen."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        padding: 1 2; border: thick $primary; background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(HELP_TEXT)

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss()

    def on_click(self) -> None:
        self.dismiss()


class StatusBar(Horizontal):
    """Listeners, counts by state, rates in and out, where the engine runs."""

    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; }
    StatusBar #status-text { width: 1fr; height: 2; padding: 0 1; }
    StatusBar.warning { background: $warning 40%; }
    StatusBar .rate-label { width: 7; height: 2; }
    StatusBar .rate-label TextLine { width: 7; text-align: right; }
    StatusBar Sparkline { width: 8; height: 2; margin-right: 1; }
    StatusBar #rate-out > .sparkline--max-color { color: $success; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="status-text"):
            yield TextLine(id="status-line-1")
            yield TextLine(id="status-line-2")
        with Vertical(classes="rate-label"):
            yield TextLine("in")
            yield TextLine(id="rate-in-value")
        yield Sparkline([0.0], id="rate-in")
        with Vertical(classes="rate-label"):
            yield TextLine("out")
            yield TextLine(id="rate-out-value")
        yield Sparkline([0.0], id="rate-out")


class LogPane(Vertical):
    """The Log pane: the engine's events as they happen."""

    DEFAULT_CSS = """
    LogPane #log-title { height: 1; padding: 0 1; background: $panel; }
    LogPane LogView { height: 1fr; }
    LogPane Input { display: none; }
    LogPane Input.shown { display: block; }
    """


class RelayboxApp(App[int]):
    """The UI over one engine."""

    TITLE = "relaybox"
    BINDINGS = [
        # The Queue pane's actions first (the footer shows them first); App-wide (see
        # check_action) so that a key typed right after switching panes is not lost while
        # focus moves.
        Binding("r", "act('retry')", "Retry"),
        Binding("h", "act('hold')", "Hold"),
        Binding("l", "act('release')", "Release"),
        Binding("d", "act('delete')", "Delete"),
        Binding("b", "act('bounce')", "Bounce"),
        Binding("R", "act_all('retry')", "Retry all shown", show=False),
        Binding("H", "act_all('hold')", "Hold all shown", show=False),
        Binding("L", "act_all('release')", "Release all shown", show=False),
        Binding("D", "act_all('delete')", "Delete all shown", show=False),
        Binding("B", "act_all('bounce')", "Bounce all shown", show=False),
        Binding("v", "next_view", "View"),
        Binding("s", "next_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("1", "show_pane('queue')", "Queue"),
        Binding("4", "show_pane('log')", "Log"),
        Binding("5", "show_pane('domains')", "Domains"),
        Binding("slash", "filter", "Filter"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False),
        Binding("escape", "clear", "Clear", show=False),
    ]
    _QUEUE_ACTIONS = frozenset({"act", "act_all", "next_view", "next_sort", "reverse_sort"})
    CSS = """
    Screen { layout: vertical; }
    ContentSwitcher { height: 1fr; }
    """

    def __init__(
        self,
        link: EngineLink,
        *,
        config_dir: Path | None = None,
        theme: str = DEFAULT_THEME,
        clock: Callable[[], float] = time.time,
        deferred_warning: int = 100,
        oldest_deferred_warning: float = 4 * 3600,
        driver_class: type[Driver] | None = None,
    ) -> None:
        super().__init__(driver_class=driver_class)
        self.link = link
        self.clock = clock
        self.deferred_warning = deferred_warning
        self.oldest_deferred_warning = oldest_deferred_warning
        self.listeners: list[ListenerInfo] = []
        self._rates: dict[str, collections.deque[float]] = {
            "in": collections.deque([0.0] * _RATE_BARS, maxlen=_RATE_BARS),
            "out": collections.deque([0.0] * _RATE_BARS, maxlen=_RATE_BARS),
        }
        self._bucket_start = clock()
        self._counts = {"in": 0, "out": 0}
        self._status = ""
        self._engine_gone = False
        self._overview_dirty = False
        self._domains_dirty = True
        """New domain findings the Domains pane has not read yet."""
        self._overview_at = 0.0
        themes, self.theme_problems = load_themes(theme_dirs(config_dir))
        for t in themes:
            self.register_theme(t)
        self._wanted_theme = theme if theme in self.available_themes else DEFAULT_THEME
        if theme != self._wanted_theme:
            self.theme_problems.append(
                f"no theme named {theme!r} ([ui] theme); using {DEFAULT_THEME}. Themes: "
                + ", ".join(sorted(self.available_themes))
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The Queue pane's keys act only while it is showing, and `/` only on the panes'
        screen (no dialog or inspector up: the filter line is not on those)."""
        if action in self._QUEUE_ACTIONS or action == "filter":
            if self.screen is not self.screen_stack[0]:
                return False
            current = self.query_one(ContentSwitcher).current
            return current in ("queue", "log") if action == "filter" else current == "queue"
        return True

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with ContentSwitcher(initial="queue"):
            yield QueuePane(lambda: self.link.admin, clock=self.clock, id="queue")
            with LogPane(id="log"):
                yield Static("Log · / filters · End follows", id="log-title")
                yield LogView(id="log-view")
                yield Input(placeholder="filter the log; Enter applies, Esc clears")
            yield DomainsPane(lambda: self.link.admin, clock=self.clock, id="domains")
        yield Footer()

    @property
    def queue_view(self) -> QueueView:
        return self.query_one("#queue-view", QueueView)

    @property
    def log_view(self) -> LogView:
        return self.query_one("#log-view", LogView)

    async def on_mount(self) -> None:
        # The panes every engine event goes to, found once (a query per event is not free).
        self._log_view = self.log_view
        self._queue_view = self.queue_view
        await self.link.open()
        if self._wanted_theme in self.available_themes:
            self.theme = self._wanted_theme
        for problem in self.theme_problems:
            self.notify(problem, title="theme not loaded", severity="warning")
        self.queue_view.focus()
        self.queue_view.reload()
        self._pump()
        self._load_listeners()
        self.set_interval(0.5, self._overview_tick)
        self._refresh_overview()

    # ------------------------------------------------------------------ engine events

    @work(exit_on_error=False)
    async def _load_listeners(self) -> None:
        try:
            self.listeners = await self.link.listeners()
        except Exception as exc:
            self.notify(f"Cannot read the engine's listeners: {exc}", severity="warning")
        self._refresh_overview()

    @work(group="events", exit_on_error=False)
    async def _pump(self) -> None:
        """Every engine event, to the panes that show it.

        Attached, an engine that goes away (stopped, restarted) is said once, in the status
        bar and one notification; it is looked for every few seconds, and the UI carries on
        live when one serves the state directory again.
        """
        while True:
            problem = await self._follow_events()
            if not self.link.attached:
                self.notify(f"Lost the engine's events: {problem}", severity="error", timeout=10)
                return
            if not self._engine_gone:
                self._engine_gone = True
                self.notify(
                    f"Lost the engine ({problem}). What is shown is no longer live; "
                    "relaybox reconnects when the engine is back.",
                    severity="error",
                    timeout=10,
                )
                self._render_status(None)
            while True:
                await asyncio.sleep(_RECONNECT_EVERY)
                if await self.link.reconnect():
                    break

    async def _follow_events(self) -> str:
        """Pass on the engine's events until the stream ends; why it ended."""
        try:
            stream = await self.link.subscribe(UI_EVENTS)
        except Exception as exc:
            return str(exc)
        if self._engine_gone:
            self._engine_gone = False
            self.notify(f"Connected to the engine again ({self.link.describe()}).")
            self.queue_view.reload()
            self._load_listeners()
        try:
            async for event in stream:
                self.on_engine_event(event)
        except Exception as exc:
            return str(exc)
        finally:
            await stream.aclose()
        return "it closed the connection"

    @on(QueueView.LoadFailed)
    def _queue_failed(self, event: QueueView.LoadFailed) -> None:
        # An engine out of reach is said once, by the status bar and _pump, not per pane.
        if self.link.connected and not self._engine_gone:
            self.notify(f"Cannot read the queue: {event.error}", severity="error", timeout=5)

    def on_engine_event(self, event: Event | EventsDropped) -> None:
        # Under load this runs a thousand times a second on the relay's own event loop: it
        # only notes what changed; the panes read the engine on their own timers.
        self._log_view.record(event)
        if isinstance(event, EventsDropped):
            self._queue_view.touch()
            return
        kind = type(event)
        if kind in _QUEUE_EVENTS:
            self._queue_view.touch()
            self._overview_dirty = True
            if kind is MessageAccepted:
                self._count("in")
            elif kind is MessageDelivered:
                self._count("out")
        elif kind is DomainsChecked:
            self._domains_dirty = True
            if self.query_one(ContentSwitcher).current == "domains":
                self._show_domains()
        screen = self.screen
        if isinstance(screen, InspectorScreen):
            screen.on_engine_event(event)

    def _count(self, direction: str) -> None:
        self._roll_rates()
        self._counts[direction] += 1

    def _roll_rates(self) -> None:
        now = self.clock()
        while now - self._bucket_start >= _RATE_BUCKET:
            for direction in ("in", "out"):
                self._rates[direction].append(float(self._counts[direction]))
                self._counts[direction] = 0
            self._bucket_start += _RATE_BUCKET
            if now - self._bucket_start > _RATE_BUCKET * _RATE_BARS:
                self._bucket_start = now

    # ------------------------------------------------------------------ the status bar

    def _overview_tick(self) -> None:
        # A second after mail moves, and every 2 s anyway (ages, rates).
        since = time.monotonic() - self._overview_at
        if (self._overview_dirty and since >= 1.0) or since >= 2.0:
            self._refresh_overview()

    def _refresh_overview(self) -> None:
        self._overview_dirty = False
        self._overview_at = time.monotonic()
        self._load_overview()

    @work(exclusive=True, group="overview", exit_on_error=False)
    async def _load_overview(self) -> None:
        midnight = time.mktime(time.localtime(self.clock())[:3] + (0, 0, 0, 0, 0, -1))
        try:
            overview = await self.link.admin.overview(midnight)
        except Exception:
            overview = None
        self._render_status(overview)

    def _render_status(self, overview: object | None) -> None:
        self._roll_rates()
        now = self.clock()
        per_minute = {
            d: sum(list(self._rates[d])[-6:]) * 60 / (_RATE_BUCKET * 6) for d in ("in", "out")
        }
        listeners = ", ".join(
            f"{li.role} {li.address}" + (f" ({li.tls})" if li.tls != "none" else "")
            for li in self.listeners
        )
        mode = self.link.describe()
        if self._engine_gone:
            mode += " · ENGINE GONE (stopped, or the connection lost)"
        up = fmt.age(now - self.link.started_at)
        loaded = fmt.age(now - self.link.config_loaded_at)
        # Most telling first: a narrow terminal cuts the line's end.
        first = (
            f"relaybox · {mode} · {listeners or 'no listeners'} · up {up} · "
            f"config loaded {loaded} ago"
        )
        warning = False
        if overview is not None:
            by_state = getattr(overview, "by_state", {})
            deferred = by_state.get("deferred", 0)
            oldest = getattr(overview, "oldest_deferred_at", None)
            oldest_age = now - oldest if oldest else 0.0
            warning = deferred > self.deferred_warning or oldest_age > self.oldest_deferred_warning
            second = (
                f"queued {by_state.get('queued', 0)} · active {by_state.get('active', 0)} · "
                f"deferred {deferred}"
                + (f" (oldest {fmt.age(oldest_age)})" if oldest else "")
                + f" · held {by_state.get('held', 0)} · today: "
                f"{getattr(overview, 'delivered_since', 0)} sent, "
                f"{getattr(overview, 'bounced_since', 0)} bounced"
            )
            self._status = second
        elif self._engine_gone:
            warning = True
            second = (
                "showing what was last read · looking for the engine every "
                f"{_RECONNECT_EVERY:.0f} s"
            )
        else:
            second = self._status or "reading the queue…"
        # Only what changed is touched: under load this runs twice a second beside the relay.
        bar = self.query_one(StatusBar)
        if bar.has_class("warning") != warning:
            bar.set_class(warning, "warning")
        wide = self.size.width >= 120  # the sparklines only where they leave the text room
        for widget in bar.query(".rate-label, Sparkline"):
            if widget.display != wide:
                widget.display = wide
        bar.query_one("#status-line-1", TextLine).set(first)
        bar.query_one("#status-line-2", TextLine).set(second)
        bar.query_one("#rate-in-value", TextLine).set(f"{per_minute['in']:.0f}/min")
        bar.query_one("#rate-out-value", TextLine).set(f"{per_minute['out']:.0f}/min")
        for direction in ("in", "out"):
            spark = bar.query_one(f"#rate-{direction}", Sparkline)
            data = list(self._rates[direction])
            if list(spark.data or ()) != data:
                spark.data = data

    def status_text(self) -> str:
        """The status bar's two lines of text."""
        bar = self.query_one(StatusBar)
        return "\n".join(bar.query_one(f"#status-line-{n}", TextLine).text for n in (1, 2))

    # ------------------------------------------------------------------ panes and filters

    def action_show_pane(self, pane: str) -> None:
        while isinstance(self.screen, (InspectorScreen, DomainScreen)):
            self.pop_screen()
        self.query_one(ContentSwitcher).current = pane
        if pane == "domains":
            self.query_one(DomainsPane).table.focus()
            self._show_domains()
        elif pane == "queue":
            self.queue_view.focus()
            self.queue_view.touch()
        else:
            self.log_view.focus()
            self.call_after_refresh(self.log_view.flush)  # what came while it was hidden
            self.log_view.scroll_end(animate=False, immediate=True)

    def _show_domains(self) -> None:
        """Read the findings again when new ones came while the pane was hidden."""
        if self._domains_dirty:
            self._domains_dirty = False
            self.query_one(DomainsPane).reload()

    def _pane_input(self) -> Input:
        current = self.query_one(ContentSwitcher).current or "queue"
        return self.query_one(f"#{current} Input", Input)

    def action_filter(self) -> None:
        box = self._pane_input()
        box.add_class("shown")
        # At once, not after a refresh: keys typed right behind "/" are filter text, never
        # commands (a pasted "held" would otherwise hold, then release, the message).
        self.screen.set_focus(box)

    @on(Input.Submitted)
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)
        event.input.blur()
        if not event.value:
            event.input.remove_class("shown")
        self._focus_pane()

    def _apply_filter(self, text: str) -> None:
        if self.query_one(ContentSwitcher).current == "log":
            self.log_view.set_filter(text)
        else:
            state = self.queue_view.state
            self.queue_view.set_state(ViewState(text, state.view, state.sort, state.descending))

    def _focus_pane(self) -> None:
        if self.query_one(ContentSwitcher).current == "log":
            self.log_view.focus()
        else:
            self.queue_view.focus()

    def action_clear(self) -> None:
        """Escape: close the filter line, else clear the selection, else the pane's filter."""
        if self.query_one(ContentSwitcher).current == "domains":
            return
        box = self._pane_input()
        view = self.queue_view
        on_queue = self.query_one(ContentSwitcher).current == "queue"
        if not box.has_focus and on_queue and view.selected:
            view.clear_selection()
        elif box.has_focus or (view.state.text if on_queue else self.log_view.filter_text):
            box.value = ""
            box.remove_class("shown")
            self._apply_filter("")
            self._focus_pane()

    def action_next_view(self) -> None:
        s = self.queue_view.state
        self.queue_view.set_state(
            ViewState(s.text, (s.view + 1) % len(STATE_VIEWS), s.sort, s.descending)
        )

    def action_next_sort(self) -> None:
        s = self.queue_view.state
        keys = [key for key, _ in COLUMNS]
        nxt = keys[(keys.index(s.sort) + 1) % len(keys)] if s.sort in keys else "arrived"
        self.queue_view.set_state(ViewState(s.text, s.view, nxt, s.descending))

    def action_reverse_sort(self) -> None:
        s = self.queue_view.state
        self.queue_view.set_state(ViewState(s.text, s.view, s.sort, not s.descending))

    def set_sort(self, key: str) -> None:
        self.action_show_pane("queue")
        s = self.queue_view.state
        self.queue_view.set_state(ViewState(s.text, s.view, key, s.descending))

    @on(QueueView.Opened)
    def _open_message(self, event: QueueView.Opened) -> None:
        self.push_screen(InspectorScreen(self.link, event.queue_id, self.act_on, clock=self.clock))

    # ------------------------------------------------------------------ actions on mail

    def action_act(self, action: str) -> None:
        """An action on the selected messages, or the one under the cursor."""
        view = self.queue_view
        ids = view.chosen()
        if not ids:
            self.notify("No message here to act on.", severity="warning")
            return
        # An action on the selection spends it.
        self.act_on(action, ids, (lambda _: view.clear_selection()) if view.selected else None)

    def action_act_all(self, action: str) -> None:
        """An action on every message the current view and filter show (asks first)."""
        self._act_all(action, self.queue_view.state)

    @work(group="actions", exit_on_error=False)
    async def _act_all(self, action: str, state: ViewState) -> None:
        # Counted by the engine: the view may hold only its first screenful yet.
        flt = state.filter()
        try:
            count = await self.link.admin.count(flt)
        except Exception as exc:
            self.notify(f"Cannot count the messages shown: {exc}", severity="error")
            return
        if not count:
            self.notify("The view is empty: nothing to act on.", severity="warning")
            return
        self._confirm_then(
            f"{action.capitalize()} all {count} messages shown ({state.describe()})?",
            lambda: self._run(action, flt, f"{count} shown"),
        )

    def act_on(
        self,
        action: str,
        queue_ids: list[str],
        done: Callable[[list[str]], object] | None = None,
    ) -> None:
        """`action` on these messages (asks first for delete and bounce); `done` is called
        with the queue IDs it changed once it has run (not when the admin says no)."""
        flt = MessageFilter(states=(), queue_ids=tuple(queue_ids))
        label = queue_ids[0] if len(queue_ids) == 1 else f"{len(queue_ids)} messages"
        if action in _CONFIRM:
            consequence = (
                "It is removed with its transcripts; nobody is told."
                if action == "delete"
                else "Its sender gets a bounce (DSN)."
            )
            self._confirm_then(
                f"{action.capitalize()} {label}? {consequence}",
                lambda: self._run(action, flt, label, done),
            )
        else:
            self._run(action, flt, label, done)

    def _confirm_then(self, question: str, then: Callable[[], object]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(ConfirmScreen(question), answered)

    @work(group="actions", exit_on_error=False)
    async def _run(
        self,
        action: str,
        flt: MessageFilter,
        label: str,
        done: Callable[[list[str]], object] | None = None,
    ) -> None:
        touched: list[str] = []
        try:
            if action == "bounce":
                touched = await self.link.admin.bounce(flt, "from the relaybox UI")
            else:
                touched = await getattr(self.link.admin, action)(flt)
        except Exception as exc:
            self.notify(f"{action} failed: {exc}", severity="error")
        else:
            word = _ACTION_WORDS[action]
            n = len(touched)
            if n:
                self.notify(f"{n} message{'s' if n != 1 else ''} {word}")
            else:
                self.notify(f"{label}: nothing to {action}", severity="warning")
        if done is not None:
            done(touched)
        self.queue_view.reload()

    # ------------------------------------------------------------------ quitting, help

    async def action_quit(self) -> None:
        if isinstance(self.screen, ConfirmScreen):
            return
        if self.link.attached:
            question = "Close the UI? The relay keeps running."
        else:
            question = (
                "Quit relaybox? This stops the relay: mail in the queue stays on disk and "
                "is sent when relaybox starts again."
            )
        self._confirm_then(question, lambda: self.exit(0))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Queue pane", "Show the queue (1)", lambda: self.action_show_pane("queue")
        )
        yield SystemCommand(
            "Log pane", "Show the live log (4)", lambda: self.action_show_pane("log")
        )
        yield SystemCommand(
            "Domains pane",
            "Show the sending domains' SPF, DKIM, DMARC and MX health (5)",
            lambda: self.action_show_pane("domains"),
        )
        yield SystemCommand(
            "Check domains now",
            "Check every sending domain's DNS records now",
            self._check_domains_now,
        )
        # Actions on messages take the screen's: the inspector's message, or the queue's
        # selection or cursor (not from the Log pane, where neither is in sight).
        if isinstance(screen, InspectorScreen):
            yield from screen.commands()
            return
        if self.query_one(ContentSwitcher).current == "queue":
            for action in _ACTION_WORDS:
                yield SystemCommand(
                    f"{action.capitalize()} message",
                    f"{action.capitalize()} the selected messages, or the one under the cursor",
                    lambda a=action: self.action_act(a),
                )
                yield SystemCommand(
                    f"{action.capitalize()} all shown",
                    f"{action.capitalize()} every message the current view and filter show",
                    lambda a=action: self.action_act_all(a),
                )
        for key, title in COLUMNS:
            yield SystemCommand(
                f"Sort by {title}",
                f"Sort the queue by {title}",
                lambda k=key: self.set_sort(k),
            )
        for index, (name, _) in enumerate(STATE_VIEWS):
            yield SystemCommand(
                f"View: {name}",
                f"Show {name} messages",
                lambda i=index: self._set_view(i),
            )

    def _check_domains_now(self) -> None:
        self.action_show_pane("domains")
        self.query_one(DomainsPane).recheck(None)

    def _set_view(self, index: int) -> None:
        self.action_show_pane("queue")
        s = self.queue_view.state
        self.queue_view.set_state(ViewState(s.text, index, s.sort, s.descending))
