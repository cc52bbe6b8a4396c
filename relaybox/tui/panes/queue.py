"""The Queue pane (key 1): its title line, the column titles, the live list and the filter
line, and the changes of view, sort and filter the app's keys ask of it.

The two lines above the list change often (the count under load, the selection): they are
`TextLine`s, repainted when their text changes, never a relayout of the screen.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input

from relaybox.admin.client import AdminClient
from relaybox.clock import Clock, system_clock
from relaybox.tui.panes.queue_view import SORTS, STATE_VIEWS, QueueView, ViewState
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["QueuePane"]


class QueuePane(Vertical):
    """The Queue pane; the list's `Changed` messages keep the two lines above it right."""

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Clock = system_clock,
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

    @property
    def view(self) -> QueueView:
        """The live list."""
        return self.query_one(QueueView)

    def set_filter(self, text: str) -> None:
        """Show only the messages `text` matches (empty: all of the view)."""
        s = self.view.state
        self.view.set_state(ViewState(text, s.view, s.sort, s.descending))

    def set_view(self, index: int) -> None:
        """Show the state view `STATE_VIEWS[index]`."""
        s = self.view.state
        self.view.set_state(ViewState(s.text, index, s.sort, s.descending))

    def next_view(self) -> None:
        """The next state view (unfinished, deferred, held, ...), round to the first."""
        self.set_view((self.view.state.view + 1) % len(STATE_VIEWS))

    def set_sort(self, key: str) -> None:
        """Sort by the column `key`, in the order it has now."""
        s = self.view.state
        self.view.set_state(ViewState(s.text, s.view, key, s.descending))

    def next_sort(self) -> None:
        """Sort by the next column."""
        sort = self.view.state.sort
        self.set_sort(SORTS[(SORTS.index(sort) + 1) % len(SORTS)] if sort in SORTS else "arrived")

    def reverse_sort(self) -> None:
        """Reverse the order."""
        s = self.view.state
        self.view.set_state(ViewState(s.text, s.view, s.sort, not s.descending))
