"""The base of the line-API views (the queue, the log, the inspector's page): a `ScrollView`
that renders only its visible lines, each from a cached `Strip`, as Toolong does.

A subclass says how many lines there are, what a line's look depends on (its cache key) and
how to draw one; this class does the scrolling arithmetic, the cache, and forgetting the
cache when the theme or the size changes.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["StripView"]


class StripView(ScrollView):
    """Lines drawn on demand from cached strips; see the module docstring."""

    def __init__(self, cache_size: int, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self._strips: LRUCache[Hashable, Strip] = LRUCache(cache_size)
        self.rendered = 0
        """Lines rendered since start (tests check that only visible lines are)."""

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

    def set_virtual_size(self, width: int, height: int) -> None:
        """The scrollable size, set only when it changes (setting it relays out the view)."""
        if self.virtual_size != (width, height):
            self.virtual_size = Size(width, height)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.forget_lines()

    def on_resize(self, event: events.Resize) -> None:
        self.forget_lines()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= self.line_count():
            return Strip.blank(width, base)
        self.rendered += 1
        key = self.line_key(index, width)
        strip = None if key is None else self._strips.get(key)
        if strip is None:
            strip = self.draw_line(index, width)
            if key is not None:
                self._strips[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, base)
