"""One open SMTP session's (or outbound connection's) transcript, live: the lines so far,
then each command and reply as it happens, until it closes.

The stream (`EngineLink.session_transcript`) lives in this screen's worker: Escape closes the
screen, which cancels the worker, which closes the stream, and the engine lets go of its
subscription. Nothing here can act on the session.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from relaybox.tui import format as fmt
from relaybox.tui.link import EngineLink
from relaybox.tui.widgets.line_view import LineView
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["MAX_LINES", "SessionScreen"]

MAX_LINES = 10_000
"""Lines kept on screen; older ones scroll off (a flood cannot grow the UI without bound)."""

_KIND = {"C": ("client", "C: "), "S": ("server", "S: "), "-": ("note", "-- ")}


class SessionScreen(Screen[None]):
    """The live transcript of one session or connection; Escape goes back."""

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, link: EngineLink, session_id: str, title: str) -> None:
        super().__init__()
        self.link = link
        self.session_id = session_id
        self.heading = title
        """What the title line says of it (its peer, as the Sessions pane showed it)."""
        self.state = "live"
        """live, closed, or why it cannot be followed."""

    def compose(self) -> ComposeResult:
        yield TextLine(self._title(), id="session-title")
        yield LineView(MAX_LINES, id="session-lines")
        yield Footer()

    @property
    def view(self) -> LineView:
        return self.query_one("#session-lines", LineView)

    def _title(self) -> str:
        return f"Session {self.session_id} · {self.heading} · {self.state} · Esc back"

    def _set_state(self, state: str) -> None:
        self.state = state
        self.query_one("#session-title", TextLine).set(self._title())

    def on_mount(self) -> None:
        self.view.focus()
        self._follow()

    @work(exclusive=True, group="session-watch", exit_on_error=False)
    async def _follow(self) -> None:
        try:
            stream = await self.link.session_transcript(self.session_id)
        except Exception as exc:
            self._set_state("not open")
            self.view.add("bad", f"Cannot follow {self.session_id}: {exc}")
            return
        try:
            async for line in stream:
                kind, prefix = _KIND.get(line.direction, ("note", "-- "))
                # LineView draws every line through fmt.printable: a stranger's control
                # characters are shown as escapes, never sent to the terminal.
                self.view.add(kind, f"{fmt.clock(line.at)} {prefix}{line.text}")
        except Exception as exc:  # the engine went away (attached): say so, keep the lines
            self.view.add("bad", f"The engine stopped sending: {exc}")
        finally:
            await stream.aclose()
        self._set_state("closed")

    def action_back(self) -> None:
        self.dismiss()
