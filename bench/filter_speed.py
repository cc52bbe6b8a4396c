#!/usr/bin/env python3
"""How fast the Queue pane's filter answers over a big spool: seed N messages (default
100,000, as bench/tui_keys.py seeds them) into a real engine, then time each filter twice:
the listing query alone (the first screenful's `list_messages` and the `count`), and in the
UI, from the Enter key to the screen update that shows the first screenful (Pilot, headless).

Usage:  .venv/bin/python bench/filter_speed.py [-n 100000] [--size 200x60] [--repeat 5]

Filters: one matching 2% of the queue, one a single recipient, one a subject ("message
4242", eleven messages), one nothing at all (every message looked at before the first
screen), and a two-character one (shorter than a trigram: the LIKE fallback). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from textual import events  # noqa: E402
from textual.widgets import Input  # noqa: E402
from tui_keys import Timer, held_engine  # noqa: E402

from relaybox.queue import UNFINISHED_STATES, MessageFilter  # noqa: E402
from relaybox.tui.app import RelayboxApp  # noqa: E402
from relaybox.tui.link import InProcessLink  # noqa: E402

FILTERS = (
    ("2% (a domain)", "example7.org"),
    ("1 recipient", "user4242@"),
    ("subject", "message 4242"),
    ("no match", "zz-nomatch"),
    ("2 chars", "9x"),
)


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):7.1f}  max {max(times):7.1f}"


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="messages to seed (default 100000)")
    p.add_argument("--size", default="200x60", help="terminal size (default 200x60)")
    p.add_argument("--repeat", type=int, default=5, help="runs per filter (default 5)")
    args = p.parse_args()
    width, height = (int(x) for x in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="relaybox-filter-bench.") as tmp:
        engine = await held_engine(Path(tmp), args.n)
        admin = engine.admin
        assert admin is not None

        print(f"\nthe listing query alone (ms; a page of {height} rows, then the count)")
        for label, text in FILTERS:
            flt = MessageFilter(states=UNFINISHED_STATES, text=text)
            page_ms, count_ms = [], []
            matches = 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                await admin.list_messages(flt, sort="arrived", limit=height)
                t1 = time.perf_counter()
                matches = await admin.count(flt)
                t2 = time.perf_counter()
                page_ms.append((t1 - t0) * 1000)
                count_ms.append((t2 - t1) * 1000)
            print(
                f"  {label:14} {text!r:15} {matches:6} matches  page: {summary(page_ms)}"
                f"   count: {summary(count_ms)}"
            )

        app = RelayboxApp(InProcessLink(engine))
        results: dict[str, list[float]] = {}
        async with app.run_test(size=(width, height)) as pilot:
            view = app.queue_view
            while len(view.ids) < args.n or view._loading:
                await pilot.pause(0.01)
            timer = Timer(app)
            await pilot.pause(0.3)
            for _ in range(args.repeat):
                for label, text in FILTERS:
                    app._driver.send_message(events.Key("slash", "/"))  # type: ignore[union-attr]
                    while not isinstance(app.focused, Input):
                        await pilot.pause(0.01)
                    await pilot.press(*text)
                    await pilot.pause(0.1)
                    assert app.focused.value == text, app.focused.value
                    first, _ = await timer.key("enter", reload=True)
                    results.setdefault(label, []).append(first)
                    await timer.key("escape", reload=True)
        await engine.stop()

    print(f"\nUI {width}x{height}: Enter to the first screen of the filtered rows (ms)")
    for label, text in FILTERS:
        print(f"  {label:14} {text!r:15} {summary(results[label])}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
