"""The relaybox terminal UI's app: the key bindings, the panes in their switcher, and the
wiring between them. What each part does lives in its own module (`panes/`, `screens/`,
`widgets/`, `bridge.py` for the engine's events, `commands.py` for actions on mail).

It runs on the engine's event loop (in-process) or beside an engine elsewhere (attached);
either way it sees the engine only through an `EngineLink`. Every query runs in a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.driver import Driver
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Input

from relaybox.clock import Clock, system_clock
from relaybox.tui import format as fmt
from relaybox.tui.bridge import RECONNECT_EVERY, EventBridge
from relaybox.tui.commands import MailActions, system_commands
from relaybox.tui.link import EngineLink
from relaybox.tui.panes.config import ConfigPane
from relaybox.tui.panes.destinations import DestinationsPane
from relaybox.tui.panes.domains import DomainsPane
from relaybox.tui.panes.log import LogPane, LogView
from relaybox.tui.panes.queue import QueuePane
from relaybox.tui.panes.queue_view import QueueView
from relaybox.tui.panes.sessions import SessionsPane
from relaybox.tui.screens.config_review import ReviewScreen
from relaybox.tui.screens.confirm import ConfirmScreen, confirm_then
from relaybox.tui.screens.destination import DestinationScreen
from relaybox.tui.screens.domain import DomainScreen
from relaybox.tui.screens.help import HelpScreen
from relaybox.tui.screens.inspector import InspectorScreen
from relaybox.tui.screens.session import SessionScreen
from relaybox.tui.themes import DEFAULT_THEME, load_themes, theme_dirs
from relaybox.tui.widgets.key_footer import KeyFooter
from relaybox.tui.widgets.status_bar import StatusBar

__all__ = ["RelayboxApp"]


FOOTER_RANKS = {
    "help": 0,
    "quit": 3,
    "show_pane('queue')": 2,
    "show_pane('destinations')": 2,
    "show_pane('sessions')": 2,
    "show_pane('log')": 2,
    "show_pane('domains')": 2,
    "show_pane('config')": 2,
    "act('retry')": 3,
    "act('hold')": 3,
    "act('release')": 3,
    "filter": 3,
}
"""What the footer keeps first on a narrow terminal (0 first; the rest rank 5): the way to
every key (help), the panes, then quitting and the Queue pane's commonest actions."""


class RelayboxApp(App[int]):
    """The UI over one engine."""

    TITLE = "relaybox"
    CSS_PATH = Path(__file__).with_name("relaybox.tcss")
    """Every style of the UI, in one file (absolute: subclasses live elsewhere)."""
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
        Binding("2", "show_pane('destinations')", "Destinations"),
        Binding("3", "show_pane('sessions')", "Sessions"),
        Binding("4", "show_pane('log')", "Log"),
        Binding("5", "show_pane('domains')", "Domains"),
        Binding("6", "show_pane('config')", "Config"),
        Binding("slash", "filter", "Filter"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False),
        Binding("escape", "clear", "Clear", show=False),
    ]
    _QUEUE_ACTIONS = frozenset({"act", "act_all", "next_view", "next_sort", "reverse_sort"})

    def __init__(
        self,
        link: EngineLink,
        *,
        config_dir: Path | None = None,
        theme: str = DEFAULT_THEME,
        clock: Clock = system_clock,
        deferred_warning: int = 100,
        oldest_deferred_warning: float = 4 * 3600,
        driver_class: type[Driver] | None = None,
    ) -> None:
        super().__init__(driver_class=driver_class)
        self.link = link
        self.clock = clock
        self.deferred_warning = deferred_warning
        self.oldest_deferred_warning = oldest_deferred_warning
        self.bridge = EventBridge(self)
        self.mail = MailActions(self)
        self._domains_stale = True
        """New domain findings the Domains pane has not read yet."""
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
            current = self.current_pane
            if action == "filter":
                return current in ("queue", "log", "destinations")
            return current == "queue"
        return True

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusBar(
            self.link,
            clock=self.clock,
            deferred_warning=self.deferred_warning,
            oldest_deferred_warning=self.oldest_deferred_warning,
            reconnect_every=RECONNECT_EVERY,
            id="status",
        )
        with ContentSwitcher(initial="queue"):
            yield QueuePane(lambda: self.link.admin, clock=self.clock, id="queue")
            yield DestinationsPane(lambda: self.link.admin, clock=self.clock, id="destinations")
            yield SessionsPane(lambda: self.link.admin, clock=self.clock, id="sessions")
            yield LogPane(id="log")
            yield DomainsPane(lambda: self.link.admin, clock=self.clock, id="domains")
            yield ConfigPane(lambda: self.link.admin, id="config")
        yield KeyFooter(FOOTER_RANKS)

    @property
    def current_pane(self) -> str | None:
        """The id of the pane showing: "queue", "destinations", "sessions", "log", "domains"
        or "config"."""
        return self.query_one(ContentSwitcher).current

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def queue_pane(self) -> QueuePane:
        return self.query_one(QueuePane)

    @property
    def queue_view(self) -> QueueView:
        return self.query_one("#queue-view", QueueView)

    @property
    def log_view(self) -> LogView:
        return self.query_one("#log-view", LogView)

    @property
    def destinations_pane(self) -> DestinationsPane:
        return self.query_one(DestinationsPane)

    @property
    def sessions_pane(self) -> SessionsPane:
        return self.query_one(SessionsPane)

    @property
    def domains_pane(self) -> DomainsPane:
        return self.query_one(DomainsPane)

    @property
    def config_pane(self) -> ConfigPane:
        return self.query_one(ConfigPane)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Show a notification as plain text, whoever asks (screens and widgets call this).

        Notifications quote errors from the engine and the spool, which quote addresses,
        filters and replies: they are never parsed as markup (a `[/x]` in them would raise)
        and their control characters are shown as escapes. `markup` is ignored.
        """
        super().notify(
            fmt.printable(message),
            title=fmt.printable(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    async def on_mount(self) -> None:
        await self.link.open()
        if self._wanted_theme in self.available_themes:
            self.theme = self._wanted_theme
        for problem in self.theme_problems:
            self.notify(problem, title="theme not loaded", severity="warning")
        self.queue_view.focus()
        self.queue_view.reload()
        self.bridge.start()
        self.status_bar.load_listeners()
        self.status_bar.start()

    def status_text(self) -> str:
        """The status bar's two lines of text."""
        return self.status_bar.text()

    @on(QueueView.LoadFailed)
    def _queue_failed(self, event: QueueView.LoadFailed) -> None:
        # An engine out of reach is said once, by the status bar and the bridge, not per pane.
        if self.link.connected and not self.status_bar.engine_gone:
            self.notify(f"Cannot read the queue: {event.error}", severity="error", timeout=5)

    # ------------------------------------------------------------------ panes and filters

    def action_show_pane(self, pane: str) -> None:
        while isinstance(
            self.screen,
            (InspectorScreen, DomainScreen, ReviewScreen, DestinationScreen, SessionScreen),
        ):
            self.pop_screen()
        self.query_one(ContentSwitcher).current = pane
        if pane != "sessions":
            self.sessions_pane.hidden()
        if pane == "sessions":
            self.sessions_pane.shown()
        elif pane == "domains":
            self.domains_pane.table.focus()
            self._show_domains()
        elif pane == "config":
            self.config_pane.shown()
        elif pane == "destinations":
            self.destinations_pane.table.focus()
            self.destinations_pane.shown_now()
        elif pane == "queue":
            self.queue_view.focus()
            self.queue_view.touch()
        else:
            self.log_view.focus()
            self.call_after_refresh(self.log_view.flush)  # what came while it was hidden
            self.log_view.scroll_end(animate=False, immediate=True)

    def domains_checked(self) -> None:
        """New domain findings: the Domains pane reads them now if it shows, else when next
        shown."""
        self._domains_stale = True
        if self.current_pane == "domains":
            self._show_domains()

    def _show_domains(self) -> None:
        if self._domains_stale:
            self._domains_stale = False
            self.domains_pane.reload()

    def _pane_input(self) -> Input:
        return self.query_one(f"#{self.current_pane or 'queue'} Input", Input)

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
        if self.current_pane == "log":
            self.log_view.set_filter(text)
        elif self.current_pane == "destinations":
            self.destinations_pane.set_filter(text)
        else:
            self.queue_pane.set_filter(text)

    def _focus_pane(self) -> None:
        if self.current_pane == "log":
            self.log_view.focus()
        elif self.current_pane == "destinations":
            self.destinations_pane.table.focus()
        else:
            self.queue_view.focus()

    def action_clear(self) -> None:
        """Escape: close the filter line, else clear the selection, else the pane's filter."""
        if self.current_pane in ("sessions", "domains", "config"):
            return
        box = self._pane_input()
        view = self.queue_view
        on_queue = self.current_pane == "queue"
        if not box.has_focus and on_queue and view.selected:
            view.clear_selection()
        elif box.has_focus or self._filter_text():
            box.value = ""
            box.remove_class("shown")
            self._apply_filter("")
            self._focus_pane()

    def _filter_text(self) -> str:
        """The filter the current pane applies now."""
        if self.current_pane == "log":
            return self.log_view.filter_text
        if self.current_pane == "destinations":
            return self.destinations_pane.filter_text
        return self.queue_view.state.text

    def action_next_view(self) -> None:
        self.queue_pane.next_view()

    def action_next_sort(self) -> None:
        self.queue_pane.next_sort()

    def action_reverse_sort(self) -> None:
        self.queue_pane.reverse_sort()

    @on(QueueView.Opened)
    def _open_message(self, event: QueueView.Opened) -> None:
        self.push_screen(
            InspectorScreen(self.link, event.queue_id, self.mail.act_on, clock=self.clock)
        )

    @on(SessionsPane.Opened)
    def _open_session(self, event: SessionsPane.Opened) -> None:
        self.push_screen(
            SessionScreen(self.link, event.connection.key, event.connection.peer),
            lambda _: self.sessions_pane.reload(),  # (back: what changed meanwhile, at once)
        )

    # ------------------------------------------------------------------ actions on mail

    def action_act(self, action: str) -> None:
        """An action on the selected messages, or the one under the cursor."""
        self.mail.on_chosen(action)

    def action_act_all(self, action: str) -> None:
        """An action on every message the current view and filter show (asks first)."""
        self.mail.on_all_shown(action)

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
        confirm_then(self, question, lambda: self.exit(0))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from system_commands(self, screen)
