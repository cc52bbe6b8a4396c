"""The Queue pane: its title line, the column titles, the live list and the filter line.

The two lines above the list change often (the count under load, the selection): they are
`TextLine`s, repainted when their text changes, never a relayout of the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input

from relaybox.admin.client import AdminClient
from relaybox.tui.queue_view import QueueView
from relaybox.tui.widgets import TextLine

__all__ = ["QueuePane"]


class QueuePane(Vertical):
    """The Queue pane; the list's `Changed` messages keep the two lines above it right."""

    DEFAULT_CSS = """
    QueuePane #queue-header { background: $panel; color: $text-muted; }
    QueuePane #queue-title { padding: 0 1; }
    QueuePane QueueView { height: 1fr; }
    QueuePane Input { display: none; }
    QueuePane Input.shown { display: block; }
    """

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Callable[[], float] = time.time,
        id: str | None = None,  # noqa: A002 (Textual's name for it)
    ) -> None:
        super().__init__(id=id)
        self._admin = admin
        self._clock = clock

    def compose(self) -> ComposeResult:
        yield TextLine(id="queue-title")
        yield TextLine(id="queue-header")
        yield QueueView(self._admin, clock=self._clock, id="queue-view")
        yield Input(placeholder="filter: text, or @domain; Enter applies, Esc clears")

    def on_mount(self) -> None:
        self.show_titles()

    @on(QueueView.Changed)
    def show_titles(self) -> None:
        """Bring the title and the column titles up to date with the list."""
        view = self.query_one(QueueView)
        self.query_one("#queue-title", TextLine).set(view.title_text())
        self.query_one("#queue-header", TextLine).set(view.header_text())

    @property
    def title(self) -> str:
        """The title line as shown."""
        return self.query_one("#queue-title", TextLine).text

    @property
    def header(self) -> str:
        """The column titles as shown."""
        return self.query_one("#queue-header", TextLine).text
