#!/usr/bin/env python3
"""What a stranger can do to relaybox: slow it down, take its connection slots.

Usage (from any directory; CHECKOUT is a relaybox checkout with its own .venv):

    python3 bench/attacks.py CHECKOUT flood [--floods 1,4] [--seconds 20]
    python3 bench/attacks.py CHECKOUT slots
    python3 bench/attacks.py CHECKOUT all

Each scenario starts a fresh `relaybox --headless` from CHECKOUT on 127.0.0.1 with its default
limits, where only 127.0.0.1/32 may relay (the office) and every other loopback address
(127.0.0.2 and up) is a stranger. Office mail is held, so nothing is delivered anywhere.

- flood: stranger connections send pipelined RCPTs that are refused ("554 relay access
  denied"), reconnecting whenever they are closed, as an attacker would. Meanwhile an office
  client sends one message per session, one after another. Prints the office's time per
  message (median, p90) with 0 floods and with each count in --floods, the refusals per
  second the strangers got, the log's growth per second and the relay's RSS at the end.
- slots: strangers from 4 addresses each open as many connections as they are allowed and
  hold them; then the office opens 30. Prints how many office connections got 220.

What strangers can make it keep (spool growth under NOOP floods, memory while its log output
stalls) is measured by bench/fill_attempts.py.

Run it in a private network namespace so it cannot clash with anything on the host:
    unshare -n bash -c 'ip link set lo up; python3 bench/attacks.py ../before all'
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from strangers import HOST as OFFICE
from strangers import relay, reply, rss_mb

PORT = 2525


async def connect(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(OFFICE, PORT, local_addr=(source, 0), limit=2**20), 10
    )


async def office_message(n: int) -> float:
    """Seconds for one whole session that sends one message from the office."""
    start = time.perf_counter()
    reader, writer = await connect(OFFICE)
    try:
        for command in (
            None,
            b"EHLO office.example.test\r\n",
            b"MAIL FROM:<printer@example.test>\r\n",
            b"RCPT TO:<someone@example.net>\r\n",
            b"DATA\r\n",
            b"Subject: scan %d\r\nFrom: printer@example.test\r\n\r\nhello\r\n.\r\n" % n,
            b"QUIT\r\n",
        ):
            if command:
                writer.write(command)
            answer = await reply(reader)
            if answer[:1] not in (b"2", b"3"):
                raise RuntimeError(f"office refused: {answer!r} after {command!r}")
    finally:
        writer.close()
    return time.perf_counter() - start


async def flooder(source: str, stop: asyncio.Event, counts: list[int]) -> None:
    """Pipelined refused RCPTs, 100 at a time; reconnect when closed."""
    batch = b"".join(b"RCPT TO:<victim%d@elsewhere.test>\r\n" % i for i in range(100))
    while not stop.is_set():
        try:
            reader, writer = await connect(source)
            await reply(reader)
            writer.write(b"EHLO stranger.test\r\nMAIL FROM:<x@elsewhere.test>\r\n")
            await reply(reader)
            await reply(reader)
            while not stop.is_set():
                writer.write(batch)
                for _ in range(100):
                    line = await reply(reader)
                    if not line or line.startswith(b"421"):
                        raise ConnectionError
                    counts[0] += 1
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.01)
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def flood(checkout: Path, floods: list[int], seconds: float) -> None:
    async with relay(checkout, PORT) as (proc, _state, log_path):
        for count in [0, *floods]:
            stop = asyncio.Event()
            refused = [0]
            tasks = [
                asyncio.create_task(flooder(f"127.0.0.{2 + i}", stop, refused))
                for i in range(count)
            ]
            await asyncio.sleep(1 if count else 0)
            log_before, refused_before = log_path.stat().st_size, refused[0]
            started = time.monotonic()
            times: list[float] = []
            while time.monotonic() - started < seconds:
                try:
                    times.append(await office_message(len(times)))
                except (TimeoutError, OSError, RuntimeError) as e:
                    print(f"  office error: {e}")
                    break
            took = time.monotonic() - started
            log_growth = (log_path.stat().st_size - log_before) / took
            rate = (refused[0] - refused_before) / took
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            times.sort()
            p90 = times[int(len(times) * 0.9)] if times else float("nan")
            print(
                f"flood x{count}: office message median {statistics.median(times) * 1000:.1f} ms"
                f" p90 {p90 * 1000:.1f} ms ({len(times)} messages in {took:.0f} s);"
                f" stranger refusals {rate:.0f}/s; log {log_growth / 1024:.1f} KB/s;"
                f" relay RSS {rss_mb(proc.pid):.0f} MB",
                flush=True,
            )
            await asyncio.sleep(1)


async def slots(checkout: Path) -> None:
    async with relay(checkout, PORT):
        held: list[asyncio.StreamWriter] = []
        stranger_ok = 0
        for i in range(4):
            for _ in range(60):
                try:
                    reader, writer = await connect(f"127.0.0.{2 + i}")
                except (TimeoutError, OSError):
                    break
                held.append(writer)
                if (await reply(reader)).startswith(b"220"):
                    stranger_ok += 1
        office_ok, office_refused = 0, 0
        for _ in range(30):
            try:
                reader, writer = await connect(OFFICE)
                held.append(writer)
                if (await reply(reader)).startswith(b"220"):
                    office_ok += 1
                else:
                    office_refused += 1
            except (TimeoutError, OSError):
                office_refused += 1
        print(
            f"slots: strangers from 4 addresses got {stranger_ok} connections;"
            f" the office then got {office_ok} of 30 ({office_refused} refused)",
            flush=True,
        )
        for writer in held:
            writer.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkout", type=Path, help="a relaybox checkout with its own .venv")
    p.add_argument("scenario", choices=("flood", "slots", "all"))
    p.add_argument("--floods", default="1,4", help="flood connection counts (default 1,4)")
    p.add_argument("--seconds", type=float, default=20, help="length of each measurement")
    args = p.parse_args()
    checkout = args.checkout.resolve()
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"relaybox at {commit or checkout}, {os.cpu_count()} CPUs", flush=True)
    floods = [int(n) for n in args.floods.split(",") if n]
    if args.scenario in ("flood", "all"):
        asyncio.run(flood(checkout, floods, args.seconds))
    if args.scenario in ("slots", "all"):
        asyncio.run(slots(checkout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
