"""The Config pane's small dialogs: a form of one-line fields (a routing rule, a listener, a
user with a password typed twice, a limit), the route tester, and a text to read and copy
(the DKIM record to publish).

They only ask and show: what the answers change is the pane's (`panes/config.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from relaybox.tui.format import printable, printable_lines

__all__ = ["Field", "FormScreen", "RouteTesterScreen", "TextScreen"]


@dataclass(frozen=True)
class Field:
    """One line of a form."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    password: bool = False
    """Masked as it is typed (and never shown again)."""


Answers = dict[str, str]
"""A form's answers by field name, as typed (stripped)."""


class FormScreen(ModalScreen[Answers | None]):
    """A few one-line fields; Enter moves to the next and saves on the last, Escape cancels.

    `check` sees the answers before the form closes: the problem it returns is shown and the
    form stays up, so that a typo costs one correction, not the whole form again.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        # A priority binding, not Input.Submitted: the app runs it in the order keys come,
        # so the keys typed right behind Enter go to the next field (a Submitted message
        # would arrive after them, and they would land in the field just left).
        Binding("enter", "next", "Next field", priority=True),
    ]

    class _Flushed(Message):
        """An input has handled every key sent to it before the last Enter."""

    def __init__(
        self,
        title: str,
        fields: Sequence[Field],
        check: Callable[[Answers], str | None] | None = None,
        note: str = "",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.fields = list(fields)
        self._check = check
        self.note = note
        self._flushing = 0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(printable(self.title_text), classes="form-title", markup=False)
            for f in self.fields:
                with Horizontal(classes="form-row"):
                    yield Label(f.label, markup=False)
                    yield Input(
                        f.value,
                        placeholder=f.placeholder,
                        password=f.password,
                        compact=True,
                        id=f"field-{f.name}",
                    )
            yield Static("", id="form-problem", markup=False)
            yield Label(
                printable(self.note or "Enter: next field, saves on the last · Escape: cancel"),
                classes="form-note",
                markup=False,
            )

    def on_mount(self) -> None:
        # At once (set_focus), not after a refresh, here and below: keys typed fast, or
        # pasted, right behind the key that opened the form or Enter are that field's text.
        self.set_focus(self.query(Input).first())

    def answers(self) -> Answers:
        return {
            f.name: self.query_one(f"#field-{f.name}", Input).value.strip() for f in self.fields
        }

    def action_next(self) -> None:
        inputs = list(self.query(Input))
        at = inputs.index(self.focused) if self.focused in inputs else len(inputs) - 1
        if at + 1 < len(inputs):
            self.set_focus(inputs[at + 1])
            return
        if self._flushing:
            return
        # Keys typed before this Enter may still wait in the inputs' queues: the answers
        # are read once each input has come to this message, behind them.
        self._flushing = len(inputs)
        for field in inputs:
            field.post_message(self._Flushed())

    @on(_Flushed)
    def _flushed(self, event: _Flushed) -> None:
        event.stop()
        self._flushing -= 1
        if self._flushing:
            return
        answers = self.answers()
        problem = self._check(answers) if self._check is not None else None
        if problem:
            self.query_one("#form-problem", Static).update(printable(problem))
            return
        self.dismiss(answers)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RouteTesterScreen(ModalScreen[None]):
    """Type a recipient (and a sender): the rule and next hop it would take, as typed.

    `route` answers from the pending config, parsed once when the tester opens; it is
    cheap (a walk down the rules) and runs at each key.
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Close"),
        Binding("enter", "next", "Sender", priority=True),
    ]

    def __init__(self, route: Callable[[str, str], str]) -> None:
        super().__init__()
        self._route = route

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Route tester: which rule does this mail take?", classes="form-title")
            with Horizontal(classes="form-row"):
                yield Label("Recipient")
                yield Input(placeholder="someone@example.org", compact=True, id="tester-recipient")
            with Horizontal(classes="form-row"):
                yield Label("Sender (optional)")
                yield Input(placeholder="app@office.example", compact=True, id="tester-sender")
            yield Static("", id="tester-result", markup=False)
            yield Label("Escape: close", classes="form-note")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#tester-recipient", Input))

    @property
    def result(self) -> str:
        return str(self.query_one("#tester-result", Static).render())

    @on(Input.Changed)
    def _test(self) -> None:
        recipient = self.query_one("#tester-recipient", Input).value.strip()
        sender = self.query_one("#tester-sender", Input).value.strip()
        text = self._route(recipient, sender) if recipient else ""
        self.query_one("#tester-result", Static).update(printable_lines(text))

    def action_next(self) -> None:
        self.set_focus(self.query_one("#tester-sender", Input))


class TextScreen(ModalScreen[None]):
    """A text to read (and copy with `y`): the DNS record a new DKIM key needs."""

    BINDINGS = [
        Binding("escape,enter", "app.pop_screen", "Close"),
        Binding("y", "copy", "Copy"),
    ]

    def __init__(self, title: str, text: str, copy: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.copy = copy

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(printable(self.title_text), classes="form-title", markup=False)
            yield Static(printable_lines(self.text), id="text-body", markup=False)
            yield Label(
                "y: copy the record · Enter or Escape: close" if self.copy else "Escape: close",
                classes="form-note",
            )

    def action_copy(self) -> None:
        if self.copy:
            self.app.copy_to_clipboard(self.copy)
            self.notify("The record is on the clipboard (if the terminal allows OSC 52).")
