"""The footer of keys, fitted to the width: a narrow terminal leaves out the least needed keys
whole, by rank, instead of cutting the row wherever it ends ("1 Q").

Every key left out is still in the help (`?`) and the command palette.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
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
        self._shown: tuple[object, ...] | None = None
        """The bindings the keys show now (see `bindings_changed`)."""
        self._candidates: set[tuple[str, str, str]] = set()
        """(key, action, description) of every binding the last compose chose from."""

    def compose(self) -> ComposeResult:
        self._candidates = {
            (binding.key, binding.action, binding.description)
            for _, binding, _, _ in self.screen.active_bindings.values()
            if binding.show
        }
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

    def bindings_changed(self, screen: Screen[object]) -> None:
        """Compose the keys again only when keys not composed are to be shown.

        Every change of focus signals new bindings: the filter box taking focus hides the
        keys it types, and Enter gives them back. Composing the footer anew mounts and styles
        every key, which took about 100 ms of the filter's Enter; showing and hiding the keys
        already there costs next to nothing.
        """
        shown = tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip)
            for _, binding, enabled, tooltip in screen.active_bindings.values()
            if binding.show
        )
        if self._bindings_ready and screen is self.screen and shown == self._shown:
            return
        wanted = {(key, action): enabled for key, action, _, enabled, _ in shown}
        if (
            self._bindings_ready
            and screen is self.screen
            and {(k, a, d) for k, a, d, _, _ in shown} <= self._candidates
        ):
            self._shown = shown
            for child in self.children:
                if child.has_class("-command-palette"):
                    continue
                at = (str(getattr(child, "key", "")), str(getattr(child, "action", "")))
                child.display = at in wanted
                child.set_class(not wanted.get(at, True), "-disabled")
            return
        self._shown = shown
        super().bindings_changed(screen)

    def on_resize(self, event: events.Resize) -> None:
        # Only a new width: the first size of a footer composed for the app's width is not.
        if event.size.width != self._fitted_to:
            self._fitted_to = event.size.width
            self.call_after_refresh(self.recompose)
