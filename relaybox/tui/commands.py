"""Actions on mail from the UI (retry, hold, release, delete, bounce; on some messages or on
every one a view shows) and the command palette's entries.

Every change goes through the engine's admin layer, the calls the CLI makes; delete and
bounce, and any action on all shown, ask first. Key bindings stay with the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.screen import Screen

from relaybox.queue import MessageFilter
from relaybox.tui.panes.queue_view import COLUMNS, SORTS, STATE_VIEWS, ViewState
from relaybox.tui.screens.confirm import confirm_then
from relaybox.tui.screens.inspector import InspectorScreen

if TYPE_CHECKING:
    from relaybox.tui.app import RelayboxApp

__all__ = ["ACTION_WORDS", "MailActions", "system_commands"]

ACTION_WORDS = {
    "retry": "retried",
    "hold": "held",
    "release": "released",
    "delete": "deleted",
    "bounce": "bounced",
}
"""The actions on mail, and how a notification says one was done."""
_CONFIRM = {"delete", "bounce"}


class MailActions:
    """The actions on mail of one app: each runs in a worker and says what it did."""

    def __init__(self, app: RelayboxApp) -> None:
        self._app = app

    def on_chosen(self, action: str) -> None:
        """An action on the selected messages, or the one under the cursor."""
        view = self._app.queue_view
        ids = view.chosen()
        if not ids:
            self._app.notify("No message here to act on.", severity="warning")
            return
        # An action on the selection spends it.
        self.act_on(action, ids, (lambda _: view.clear_selection()) if view.selected else None)

    def on_all_shown(self, action: str) -> None:
        """An action on every message the current view and filter show (asks first)."""
        state = self._app.queue_view.state
        self._app.run_worker(self._on_all(action, state), group="actions", exit_on_error=False)

    async def _on_all(self, action: str, state: ViewState) -> None:
        # Counted by the engine: the view may hold only its first screenful yet.
        app = self._app
        flt = state.filter()
        try:
            count = await app.link.admin.count(flt)
        except Exception as exc:
            app.notify(f"Cannot count the messages shown: {exc}", severity="error")
            return
        if not count:
            app.notify("The view is empty: nothing to act on.", severity="warning")
            return
        confirm_then(
            app,
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
            consequence = _consequence(action, len(queue_ids))
            confirm_then(
                self._app,
                f"{action.capitalize()} {label}? {consequence}",
                lambda: self._run(action, flt, label, done),
            )
        else:
            self._run(action, flt, label, done)

    def _run(
        self,
        action: str,
        flt: MessageFilter,
        label: str,
        done: Callable[[list[str]], object] | None = None,
    ) -> None:
        self._app.run_worker(
            self._apply(action, flt, label, done), group="actions", exit_on_error=False
        )

    async def _apply(
        self,
        action: str,
        flt: MessageFilter,
        label: str,
        done: Callable[[list[str]], object] | None,
    ) -> None:
        app = self._app
        touched: list[str] = []
        try:
            if action == "bounce":
                touched = await app.link.admin.bounce(flt, "from the relaybox UI")
            else:
                touched = await getattr(app.link.admin, action)(flt)
        except Exception as exc:
            app.notify(f"{action} failed: {exc}", severity="error")
        else:
            word = ACTION_WORDS[action]
            n = len(touched)
            if n:
                app.notify(f"{n} message{'s' if n != 1 else ''} {word}")
            else:
                app.notify(f"{label}: nothing to {action}", severity="warning")
        if done is not None:
            done(touched)
        app.queue_view.reload()


def system_commands(app: RelayboxApp, screen: Screen[object]) -> Iterable[SystemCommand]:
    """relaybox's entries in the command palette (after Textual's own) for `screen`."""
    yield SystemCommand("Queue pane", "Show the queue (1)", lambda: app.action_show_pane("queue"))
    yield SystemCommand("Log pane", "Show the live log (4)", lambda: app.action_show_pane("log"))
    yield SystemCommand(
        "Domains pane",
        "Show the sending domains' SPF, DKIM, DMARC and MX health (5)",
        lambda: app.action_show_pane("domains"),
    )

    def check_domains_now() -> None:
        app.action_show_pane("domains")
        app.domains_pane.recheck(None)

    yield SystemCommand(
        "Check domains now", "Check every sending domain's DNS records now", check_domains_now
    )
    # Actions on messages take the screen's: the inspector's message, or the queue's
    # selection or cursor (not from the Log pane, where neither is in sight).
    if isinstance(screen, InspectorScreen):
        yield from screen.commands()
        return
    if app.current_pane == "queue":
        for action in ACTION_WORDS:
            yield SystemCommand(
                f"{action.capitalize()} message",
                f"{action.capitalize()} the selected messages, or the one under the cursor",
                lambda a=action: app.mail.on_chosen(a),
            )
            yield SystemCommand(
                f"{action.capitalize()} all shown",
                f"{action.capitalize()} every message the current view and filter show",
                lambda a=action: app.mail.on_all_shown(a),
            )

    def on_queue(change: Callable[[], object]) -> None:
        app.action_show_pane("queue")
        change()

    for key, title in COLUMNS:
        if key not in SORTS:
            continue
        yield SystemCommand(
            f"Sort by {title}",
            f"Sort the queue by {title}",
            lambda k=key: on_queue(lambda: app.queue_pane.set_sort(k)),
        )
    for index, (name, _) in enumerate(STATE_VIEWS):
        yield SystemCommand(
            f"View: {name}",
            f"Show {name} messages",
            lambda i=index: on_queue(lambda: app.queue_pane.set_view(i)),
        )


def _consequence(action: str, count: int) -> str:
    """What a delete or bounce does, worded for one message or many."""
    if action == "delete":
        if count == 1:
            return "It is removed with its transcripts; nobody is told."
        return "They are removed with their transcripts; nobody is told."
    if count == 1:
        return "Its sender gets a bounce (DSN)."
    return "Each sender gets a bounce (DSN)."
