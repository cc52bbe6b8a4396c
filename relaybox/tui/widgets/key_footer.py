"""The footer of keys, fitted to the width: a narrow terminal leaves out the least needed keys
whole, by rank, instead of cutting the row wherever it ends ("1 Q").

Every key left out is still in the help (`?`) and the command palette.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer

__all__ = ["KeyFooter"]

DEFAULT_RANK = 5


def _width(key: Widget) -> int:
    """Cells a footer key takes (Textual's FooterKey: " KEY " and "DESCRIPTION ")."""
    shown = str(getattr(key, "key_display", ""))
    description = str(getattr(key, "description", ""))
    return len(shown) + 2 + (len(description) + 1 if description else 0)


def fitting(widths: list[int], ranks: list[int], room: int) -> set[int]:
    """Which keys (by position) to show within `room` cells: the best ranked first (a lower
    rank is more needed; on a tie the earlier key), each one that still fits."""
    keep: set[int] = set()
    used = 0
    for n in sorted(range(len(widths)), key=lambda n: (ranks[n], n)):
        if used + widths[n] <= room:
            keep.add(n)
            used += widths[n]
    return keep


class KeyFooter(Footer):
    """Textual's footer with the keys chosen by rank for the width.

    `ranks` maps an action (as its binding names it) to its rank, 0 the most needed; actions
    not named rank DEFAULT_RANK.
    """

    def __init__(self, ranks: Mapping[str, int] | None = None, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.ranks = dict(ranks or {})
        self._fitted_to = 0

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        palette = [i for i in items if i.has_class("-command-palette")]
        keys = [i for i in items if not i.has_class("-command-palette")]
        room = (self.size.width or self.app.size.width) - sum(_width(p) for p in palette)
        ranks = [self.ranks.get(str(getattr(k, "action", "")), DEFAULT_RANK) for k in keys]
        keep = fitting([_width(k) for k in keys], ranks, room)
        shown: Iterable[Widget] = [k for n, k in enumerate(keys) if n in keep]
        self.styles.grid_size_columns = len(keep) + len(palette)
        yield from shown
        yield from palette

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._fitted_to:
            self._fitted_to = event.size.width
            self.call_after_refresh(self.recompose)
