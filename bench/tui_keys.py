#!/usr/bin/env python3
"""How fast the UI answers with a big queue: seed N messages (default 100,000) into a real
engine's spool, open the UI headless at 200x60 and time each key from the key event to the
screen update that shows its result (a reload's data included), as Pilot drives it.

Usage:  .venv/bin/python bench/tui_keys.py [-n 100000] [--size 200x60] [--repeat 20]

Prints per key the median, 95th percentile and worst time, the time to open the Queue pane
over the seeded spool, and the process's memory (RSS) before and after. Loopback only: the
engine holds all mail and its resolver is a dead loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual import events  # noqa: E402
from textual.widgets import Input  # noqa: E402

from relaybox.config.model import (  # noqa: E402
    Config,
    DnsConfig,
    ListenerConfig,
    RouteConfig,
    ServerConfig,
    SocketAddress,
)
from relaybox.engine import Engine  # noqa: E402
from relaybox.maillog import setup_logging  # noqa: E402
from relaybox.queue import MessageFilter, NewMessage  # noqa: E402
from relaybox.tui.app import RelayboxApp  # noqa: E402
from relaybox.tui.link import InProcessLink  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def seed(engine: Engine, n: int) -> None:
    spool = engine.spool
    assert spool is not None
    now = time.time()
    domains = [f"example{i}.org" for i in range(50)]
    batch = 500
    for start in range(0, n, batch):
        msgs = []
        for i in range(start, min(n, start + batch)):
            rcpt = f"user{i}@{domains[i % len(domains)]}"
            data = (
                f"From: app{i % 97}@office.example\r\nTo: {rcpt}\r\nSubject: message {i}\r\n"
                f"\r\nBody of message {i}.\r\n"
            ).encode()
            msgs.append(
                NewMessage(
                    sender=f"app{i % 97}@office.example",
                    recipients=(rcpt,),
                    data=data,
                    session_id=f"SBENCH{i:010d}",
                    listener="127.0.0.1:2525",
                    client_ip="127.0.0.1",
                    client_port=40000,
                    helo="bench",
                    auth_user=None,
                    tls=None,
                    body_8bit=False,
                    smtputf8=False,
                    arrived_at=now - (n - i),
                )
            )
        await asyncio.gather(*(spool.store_message(m) for m in msgs))


async def held_engine(tmp: Path, n: int) -> Engine:
    """A started engine on `tmp`, its spool seeded with `n` messages that its one route (to
    every domain) holds: the queue stays still while the UI is timed."""
    config = Config(
        server=ServerConfig(hostname="bench.invalid", state_dir=tmp / "state"),
        listeners=(
            ListenerConfig(
                listen=(SocketAddress("127.0.0.1", 0),),
                allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
            ),
        ),
        dns=DnsConfig(resolvers=(SocketAddress("127.0.0.1", 9),), timeout=0.5),
        routes=(RouteConfig(domains=("*",), transport="hold"),),
    )
    engine = Engine(config, setup_logging(stream=io.StringIO()))
    await engine.start()
    assert engine.scheduler is not None
    started = time.perf_counter()
    await seed(engine, n)
    print(f"seeded {n} messages in {time.perf_counter() - started:.1f} s")
    engine.wake_delivery()
    assert engine.admin is not None
    while await engine.admin.count(MessageFilter(states=("queued",))):
        await asyncio.sleep(0.5)
    return engine


class Timer:
    """Key event -> the next screen update after the app has settled (data loaded)."""

    def __init__(self, app: RelayboxApp) -> None:
        self.app = app
        self.painted = asyncio.Event()
        original = app._display  # type: ignore[attr-defined]

        def spy(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is not None:
                self.painted.set()

        app._display = spy  # type: ignore[attr-defined]

    async def key(
        self, key: str, *, reload: bool = False, timeout: float = 30.0
    ) -> tuple[float, float]:
        """(ms to the first screen update showing the key's effect, ms until complete).

        For a key that reloads the queue, the first is the first screenful of the new view
        and the second the view complete (every id counted); for others both are the same.
        """
        app = self.app
        view = app.queue_view
        await asyncio.sleep(0.05)  # let the previous key's frames go out
        self.painted.clear()
        old_ids = view.ids
        started = time.perf_counter()
        app._driver.send_message(events.Key(key, None))  # type: ignore[union-attr]
        deadline = started + timeout
        if not reload:
            await asyncio.wait_for(self.painted.wait(), timeout)
            ms = (time.perf_counter() - started) * 1000
            return ms, ms
        # The key empties the old view (new ids), then the first screenful comes.
        while view.ids is old_ids or view._fresh_view:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{key}: no new rows within {timeout} s")
            await asyncio.sleep(0.001)
        first = await self._next_paint(started)
        while view._loading or view.counting:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{key}: no reload within {timeout} s")
            await asyncio.sleep(0.001)
        return first, await self._next_paint(started)

    async def _next_paint(self, started: float) -> float:
        """ms from `started` to the next screen update; a change that does not alter the
        screen (the rows were already shown) paints nothing, and counts as done now."""
        now = (time.perf_counter() - started) * 1000
        self.painted.clear()
        try:
            await asyncio.wait_for(self.painted.wait(), 0.1)
        except TimeoutError:
            return now
        return (time.perf_counter() - started) * 1000


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="messages to seed (default 100000)")
    p.add_argument("--size", default="200x60", help="terminal size (default 200x60)")
    p.add_argument("--repeat", type=int, default=20, help="presses per cursor key (default 20)")
    args = p.parse_args()
    width, height = (int(x) for x in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="relaybox-tui-bench.") as tmp:
        engine = await held_engine(Path(tmp), args.n)
        before = rss_mb()
        app = RelayboxApp(InProcessLink(engine))
        opened = time.perf_counter()
        results: dict[str, list[tuple[float, float]]] = {}
        async with app.run_test(size=(width, height)) as pilot:
            view = app.queue_view
            while not view.ids or view.rows.get(view.ids[0]) is None:
                await pilot.pause(0.005)
            first_ms = (time.perf_counter() - opened) * 1000
            while len(view.ids) < args.n or view._loading:
                await pilot.pause(0.01)
            while view.rows.get(view.ids[0]) is None:
                await pilot.pause(0.01)
            open_ms = (time.perf_counter() - opened) * 1000  # every id counted
            timer = Timer(app)
            await pilot.pause(0.3)
            plan: list[tuple[str, bool]] = (
                [("down", False)] * args.repeat
                + [("pagedown", False)] * args.repeat
                + [("end", False), ("home", False)] * (args.repeat // 2)
                + [("down", False), ("up", False)] * (args.repeat // 2)
            )
            for key, reload in plan:
                results.setdefault(key, []).append(await timer.key(key, reload=reload))
            # A filter: "/" then text then Enter, timed from Enter to the filtered rows. One
            # matching 2% of the queue (a page fills early), one matching a single message
            # (every message is looked at before the first screen can be shown).
            for label, text in (
                ("filter (Enter)", "example7.org"),
                ("filter, 1 match", "user4242@"),
            ):
                for _ in range(3):
                    app._driver.send_message(events.Key("slash", "/"))  # type: ignore[union-attr]
                    while not isinstance(app.focused, Input):  # typed before, it would be keys
                        await pilot.pause(0.01)
                    await pilot.press(*text)
                    await pilot.pause(0.1)
                    assert app.focused.value == text, app.focused.value
                    results.setdefault(label, []).append(await timer.key("enter", reload=True))
                    results.setdefault("clear filter (Esc)", []).append(
                        await timer.key("escape", reload=True)
                    )
            for _ in range(3):
                results.setdefault("s (sort)", []).append(await timer.key("s", reload=True))
                results.setdefault("v (state view)", []).append(await timer.key("v", reload=True))
            after = rss_mb()
        await engine.stop()

    print(f"UI {width}x{height} over {args.n} spooled messages")
    print(
        f"open the Queue pane: first screen of rows {first_ms:.0f} ms, "
        f"every id counted {open_ms:.0f} ms (from the app's start, Textual's included)"
    )
    print(
        f"{'key':22} {'n':>3} {'median':>8} {'p95':>8} {'max':>8}  "
        f"{'complete':>9}   (ms, key to screen; complete: every id counted)"
    )
    for key, pairs in results.items():
        times = sorted(first for first, _ in pairs)
        full = statistics.median(done for _, done in pairs)
        p95 = times[min(len(times) - 1, int(round(len(times) * 0.95)) - 1)]
        print(
            f"{key:22} {len(times):>3} {statistics.median(times):8.1f} {p95:8.1f} "
            f"{max(times):8.1f}  {full:9.1f}"
        )
    print(f"RSS: {before:.0f} MB before the UI, {after:.0f} MB with it open")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
