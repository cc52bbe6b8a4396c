#!/usr/bin/env python3
"""What the log that remembers costs: the engine's event ring per published event, and the
Log pane's history (5000 events, paged by `log_tail`) fetched over the admin socket.

Usage:  .venv/bin/python bench/log_ring.py [--events 10000] [--repeat 15]

Prints the best time of a publish with and without the ring (the two taken in turns, so a
busy machine weighs on both alike), the ring's size once full, and the time to fetch the
history from a real engine over its socket. Loopback only (a Unix socket).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relaybox.admin.client import ControlClient  # noqa: E402
from relaybox.engine import Engine  # noqa: E402
from relaybox.events import (  # noqa: E402
    LOGGED_EVENTS,
    AttemptFinished,
    EventBus,
    EventRing,
    MessageAccepted,
)
from relaybox.maillog import MailLog  # noqa: E402
from relaybox.statedir import SOCKET_NAME  # noqa: E402
from tests.support.configs import make_config  # noqa: E402


def _publisher(bus: EventBus) -> Callable[[], None]:
    def publish() -> None:
        bus.publish(
            MessageAccepted(
                "04XC5SBQH0H5R",
                "S04XC3K6QWZWBF",
                "scanner@printer.local",
                ("accounts@example.org",),
                1234,
                "192.0.2.7",
                at=1.0,
            )
        )

    return publish


def publish_cost(repeat: int) -> None:
    buses = {"without the ring": EventBus(), "with the ring": EventBus(EventRing(LOGGED_EVENTS))}
    for bus in buses.values():
        bus.subscribe(types=LOGGED_EVENTS)  # as the UI does
    best = dict.fromkeys(buses, float("inf"))
    for _ in range(repeat):
        for name, bus in buses.items():
            best[name] = min(best[name], timeit.timeit(_publisher(bus), number=20_000) / 20_000)
    for name, seconds in best.items():
        print(f"publish {name}: {seconds * 1e6:.2f} us (building the event included)")


async def history_fetch(events: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(Path(tmp) / "state")
        log = MailLog(stream=io.StringIO())
        engine = Engine(config, log)
        await engine.start()
        try:
            for n in range(events // 2):
                queue_id = f"04XC{n:09d}"
                at = time.time()
                engine.bus.publish(
                    MessageAccepted(
                        queue_id,
                        "S1",
                        "scanner@printer.local",
                        ("accounts@example.org",),
                        1234,
                        "192.0.2.7",
                        at=at,
                    )
                )
                engine.bus.publish(
                    AttemptFinished(
                        queue_id,
                        "mx:example.org",
                        "deferred",
                        "451 4.7.1 Greylisted, please try again later",
                        at=at,
                    )
                )
            assert engine.bus.ring is not None
            kept, weight = engine.bus.ring.size
            print(f"ring: {kept} events, about {weight / 2**20:.1f} MB of text")
            client = await ControlClient.connect(config.server.state_dir / SOCKET_NAME)
            try:
                for _ in range(repeat):
                    start = time.perf_counter()
                    got = before = pages = 0
                    while got < 5000:
                        page = await client.admin.log_tail(5000 - got, before)
                        if not page.events:
                            break
                        got += len(page.events)
                        before = page.events[0].seq
                        pages += 1
                    took = (time.perf_counter() - start) * 1000
                    print(f"history: {got} events in {pages} pages over the socket, {took:.0f} ms")
            finally:
                await client.close()
        finally:
            await engine.stop()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in the ring")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    publish_cost(args.repeat)
    asyncio.run(history_fetch(args.events, 3))


if __name__ == "__main__":
    main()
