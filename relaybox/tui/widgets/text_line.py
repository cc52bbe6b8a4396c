"""A line of text that changes often (the status bar, the panes' title lines), repainted
without a relayout of the screen."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from relaybox.tui.format import printable

__all__ = ["TextLine"]


class TextLine(Widget):
    """Text that changes often (the status bar): a new value repaints the widget only.

    Static.update() asks for a new layout of the whole screen each time; this does not, as
    its size is fixed by its CSS.
    """

    def __init__(self, text: str = "", *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self._text = text

    @property
    def text(self) -> str:
        return self._text

    def set(self, text: str) -> None:
        """Show `text` (nothing happens when it is what is shown)."""
        if text != self._text:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        # Titles quote filters and engine state: drawn as plain text, never as markup.
        return Text(printable(self._text), no_wrap=True, overflow="ellipsis")
