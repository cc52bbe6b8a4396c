"""The status bar and the footer at 80 columns: laid out by priority, never cut mid-word."""

from __future__ import annotations

from pathlib import Path

from relaybox.tui import format as fmt
from relaybox.tui.widgets.key_footer import KeyFooter, fitting

from .support.tui import until
from .tui_seed import seeded_app, settled


def test_fit_shortens_the_least_telling_piece_first_and_never_cuts_a_word() -> None:
    parts: list[fmt.Part] = [
        (0, ("relaybox",)),
        (2, ("relay 127.0.0.1:2525", "")),
        (1, ("config gen 3 loaded 2h ago", "config gen 3")),
    ]
    assert fmt.fit(parts, 200) == "relaybox · relay 127.0.0.1:2525 · config gen 3 loaded 2h ago"
    assert fmt.fit(parts, 40) == "relaybox · config gen 3 loaded 2h ago"
    assert fmt.fit(parts, 30) == "relaybox · config gen 3"
    cut = fmt.fit([(0, ("DELIVERY PAUSED: the spool cannot write",))], 20)
    assert cut == "DELIVERY PAUSED…"  # "the" does not fit whole


def test_footer_keeps_the_best_ranked_keys_that_fit_in_their_order() -> None:
    widths = [10, 10, 10, 10]
    assert fitting(widths, [5, 0, 1, 5], 25) == {1, 2}
    assert fitting(widths, [5, 5, 5, 5], 25) == {0, 1}
    assert fitting([30, 5], [0, 1], 20) == {1}  # one too wide never hides the rest


async def test_at_80x24_the_status_bar_and_footer_show_whole_words(tmp_path: Path) -> None:
    app = seeded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        first, second = app.status_text().splitlines()
        assert len(first) <= 78 and len(second) <= 78
        assert "config gen 1" in first
        # The seeded day: one sent, one bounced; the words are whole or left out, never cut.
        assert second.endswith("today: 1 sent, 1 bounced"), second
        keys = [(k.key_display, k.description) for k in app.query_one(KeyFooter).children]
        for pane in (("1", "Queue"), ("4", "Log"), ("5", "Domains"), ("6", "Config")):
            assert pane in keys, keys
        assert ("?", "Help") in keys and ("3", "Sessions") in keys and ("2", "Destinations") in keys
        await pilot.resize_terminal(200, 60)

        def wide_keys() -> list[tuple[str, str]]:
            return [(k.key_display, k.description) for k in app.query_one(KeyFooter).children]

        await until(lambda: ("b", "Bounce") in wide_keys(), pilot)
        assert ("s", "Sort") in wide_keys()


async def test_the_filter_box_hides_and_gives_back_keys_without_composing_the_footer(
    tmp_path: Path,
) -> None:
    app = seeded_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await settled(pilot)
        footer = app.query_one(KeyFooter)
        composed = 0
        original = footer.recompose

        async def counting() -> None:
            nonlocal composed
            composed += 1
            await original()

        footer.recompose = counting  # type: ignore[method-assign]

        def showing() -> set[str]:
            return {str(k.key_display) for k in footer.children if k.display}

        assert "r" in showing()
        await pilot.press("slash")
        await until(lambda: "r" not in showing(), pilot)  # the box types r: not a key now
        await pilot.press(*"zz", "enter")
        await until(lambda: "r" in showing() and "b" in showing(), pilot)
        assert composed == 0
