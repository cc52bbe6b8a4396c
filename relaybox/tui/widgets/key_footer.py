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


def _width(key: Widget, compact: bool) -> int:
    """Cells a footer key takes (Textual's FooterKey: " KEY " and "DESCRIPTION ", or in the
    compact style "KEY" and " DESCRIPTION"), and one between keys."""
    shown = str(getattr(key, "key_display", ""))
    description = str(getattr(key, "description", ""))
    pad = 0 if compact else 2
    return len(shown) + pad + (len(description) + 1 if description else 0) + 1


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
        # Compact: the six panes, help and the palette fit in 80 columns.
        super().__init__(id=id, compact=True)
        self.ranks = dict(ranks or {})
        self._fitted_to = 0

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        palette = [i for i in items if i.has_class("-command-palette")]
        keys = [i for i in items if not i.has_class("-command-palette")]
        self._fitted_to = self.size.width or self.app.size.width
        room = self._fitted_to - sum(_width(p, False) for p in palette)
        ranks = [self.ranks.get(str(getattr(k, "action", "")), DEFAULT_RANK) for k in keys]
        keep = fitting([_width(k, self.compact) for k in keys], ranks, room)
        shown: Iterable[Widget] = [k for n, k in enumerate(keys) if n in keep]
        self.styles.grid_size_columns = len(keep) + len(palette)
        yield from shown
        yield from palette

    def on_resize(self, event: events.Resize) -> None:
        # Only a new width: the first size of a footer composed for the app's width is not.
        if event.size.width != self._fitted_to:
            self._fitted_to = event.size.width
            self.call_after_refresh(self.recompose)
