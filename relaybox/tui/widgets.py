"""Small pieces the panes share: whether a widget is on screen, and a cheap text line."""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["TextLine", "printable", "shown"]

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL[0x09] = "    "


def printable(text: str) -> str:
    """`text` safe to draw: control characters (from mail, from remote servers' replies)
    shown as escapes, never sent to the admin's terminal, where ESC sequences could clear the
    screen, set the clipboard or retitle the window."""
    return text.translate(_CONTROL)


def shown(widget: Widget) -> bool:
    """Whether the widget is on screen: it and every container up to its screen displayed
    (a pane that ContentSwitcher hides hides its children without touching their `display`)."""
    node: Widget | None = widget
    while node is not None and not isinstance(node, Screen):
        if not node.display:
            return False
        parent = node.parent
        node = parent if isinstance(parent, Widget) else None
    return widget.screen.is_current if widget.is_attached else False


class TextLine(Widget):
    """Text that changes often (the status bar): a new value repaints the widget only.

    Static.update() asks for a new layout of the whole screen each time; this does not, as
    its size is fixed by its CSS.
    """

    DEFAULT_CSS = "TextLine { height: 1; }"

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
        return Text(self._text, no_wrap=True, overflow="ellipsis")
