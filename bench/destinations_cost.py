#!/usr/bin/env python3
"""What the Destinations pane costs with a big queue: seed N messages (default 100,000) into a
real engine's spool (held by a hold route, 50 recipient domains) and time the `destinations`
operation (grouping every unfinished recipient by next hop) and `recent_attempts`.

Usage:  .venv/bin/python bench/destinations_cost.py [-n 100000] [--repeat 5]

The pane reads `destinations` while it shows, at most a tenth of the time (so a read that
takes 300 ms is repeated every 3 s at most); hidden, never. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tui_keys import seed  # noqa: E402
from relaybox.config.model import (  # noqa: E402
    Config,
    DnsConfig,
    RouteConfig,
    ServerConfig,
    SocketAddress,
)
from relaybox.engine import Engine  # noqa: E402
from relaybox.maillog import setup_logging  # noqa: E402


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="messages to seed (default 100000)")
    p.add_argument("--repeat", type=int, default=5, help="reads timed (default 5)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="relaybox-dest-bench.") as tmp:
        config = Config(
            server=ServerConfig(hostname="bench.invalid", state_dir=Path(tmp) / "state"),
            dns=DnsConfig(resolvers=(SocketAddress("127.0.0.1", 9),), timeout=0.5),
            routes=(RouteConfig(domains=("*",), transport="hold"),),
        )
        engine = Engine(config, setup_logging(stream=io.StringIO()))
        await engine.start()
        try:
            started = time.perf_counter()
            await seed(engine, args.n)
            print(f"seeded {args.n} messages in {time.perf_counter() - started:.1f} s")
            admin = engine.admin
            assert admin is not None
            deadline = time.monotonic() + 300
            while (await admin.count_by_state()).get("held", 0) < args.n:
                assert time.monotonic() < deadline, "routing did not hold every message"
                await asyncio.sleep(1)  # until delivery has held them all (it then rests)
            for name, call in (
                ("destinations", admin.destinations),
                ("recent_attempts", lambda: admin.recent_attempts("hold", 20)),
            ):
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    await call()
                    times.append((time.perf_counter() - t) * 1000)
                print(
                    f"{name}: median {statistics.median(times):.0f} ms, "
                    f"worst {max(times):.0f} ms ({args.repeat} reads)"
                )
        finally:
            await engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
