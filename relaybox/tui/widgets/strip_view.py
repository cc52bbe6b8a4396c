"""The base of the line-API views (the queue, the log, the inspector's page): a `ScrollView`
that renders only its visible lines, each from a cached `Strip`, as Toolong does.

A subclass says how many lines there are, what a line's look depends on (its cache key) and
how to draw one; this class does the scrolling arithmetic, the cache, and forgetting the
cache when the theme or the size changes.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.style import Style
from textual import events
from textual.cache import LRUCache
from textual.geometry import Offset, Region, Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

__all__ = ["StripView", "shown"]


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


class StripView(ScrollView):
    """Lines drawn on demand from cached strips; see the module docstring."""

    def __init__(self, cache_size: int, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self._strips: LRUCache[Hashable, Strip] = LRUCache(cache_size)
        self.rendered = 0
        """Lines rendered since start (tests check that only visible lines are)."""
        self._base: Style | None = None
        self._frame: tuple[Offset, int, int] | None = None
        """While a frame is drawn: the scroll offset, content width and line count."""

    def line_count(self) -> int:
        """How many lines there are."""
        raise NotImplementedError

    def line_key(self, index: int, width: int) -> Hashable | None:
        """What line `index` drawn `width` cells wide looks like, as a cache key; None draws
        it afresh every time."""
        raise NotImplementedError

    def draw_line(self, index: int, width: int) -> Strip:
        """Line `index` (below `line_count()`), at least `width` cells wide when it should
        fill the view; the view crops it to what is scrolled into sight."""
        raise NotImplementedError

    def forget_lines(self) -> None:
        """Drop every cached strip (the next frame draws each visible line again)."""
        self._strips.clear()
        self._base = None

    @property
    def base_style(self) -> Style:
        """The view's own text style, as `rich_style` gives it, remembered until the styles
        or the cached lines change: `rich_style` walks every ancestor's styles, and asking
        it per line made it a third of a repaint's cost."""
        if self._base is None:
            self._base = self.rich_style
        return self._base

    def set_virtual_size(self, width: int, height: int) -> None:
        """The scrollable size, set only when it changes.

        Setting `virtual_size` lays the whole screen out again and repaints the whole view:
        a queue whose count changes every second under load would pay that each time. The
        view's own size is fixed by its CSS, so while no scroll bar comes or goes only the
        scroll bars need to hear of it (as Textual itself does when a layout sets it).
        """
        old, new = self.virtual_size, Size(width, height)
        if old == new:
            return
        view = self.scrollable_content_region.size
        rule_h, rule_w = self.styles.height, self.styles.width
        if (
            not self.is_mounted
            or (rule_h is not None and rule_h.is_auto)  # (then its size follows its content)
            or (rule_w is not None and rule_w.is_auto)
            or (old.width > view.width) != (new.width > view.width)
            or (old.height > view.height) != (new.height > view.height)
        ):
            self.virtual_size = new
            return
        self.set_reactive(ScrollView.virtual_size, new)
        self._scroll_update(new)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.forget_lines()

    def on_resize(self, event: events.Resize) -> None:
        self.forget_lines()

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line of the frame shares is worked out once: each of these walks the
        # widget's styles, and a frame has up to a screenful of lines.
        self._frame = (self.scroll_offset, self.scrollable_content_region.width, self.line_count())
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        (scroll_x, scroll_y), width, count = self._frame or (
            self.scroll_offset,
            self.scrollable_content_region.width,
            self.line_count(),
        )
        index = scroll_y + y
        base = self.base_style
        if index >= count:
            return Strip.blank(width, base)
        self.rendered += 1
        key = self.line_key(index, width)
        strip = None if key is None else self._strips.get(key)
        if strip is None:
            strip = self.draw_line(index, width)
            if key is not None:
                self._strips[key] = strip
        if scroll_x == 0 and strip.cell_length == width:
            return strip  # (most lines: a new strip per line per frame is not free)
        return strip.crop_extend(scroll_x, scroll_x + width, base)
