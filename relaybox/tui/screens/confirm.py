"""The yes/no dialog the UI asks before anything it cannot undo (delete, bounce, quit).

It only asks: what follows a "yes" is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from relaybox.tui.format import printable

__all__ = ["ConfirmScreen", "confirm_then"]


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; `y` says yes, `n`/Escape no (Enter answers the focused button,
    "No" at first: the safe answer)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            # The question may quote the admin's filter: plain text, never markup.
            yield Label(printable(self.question), markup=False)
            with Horizontal():
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def confirm_then(app: App[Any], question: str, then: Callable[[], object]) -> None:
    """Ask `question`; call `then` only on a yes."""

    def answered(yes: bool | None) -> None:
        if yes:
            then()

    app.push_screen(ConfirmScreen(question), answered)
