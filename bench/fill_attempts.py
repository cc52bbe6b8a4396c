#!/usr/bin/env python3
"""What strangers can make the relay keep: spool growth under NOOP floods, memory if the log stalls.

Usage (CHECKOUT is a relaybox checkout with its own .venv; run it in a private network
namespace so it cannot clash with anything):

    unshare -n bash -c 'ip link set lo up; python3 bench/fill_attempts.py CHECKOUT noop \\
        [--sessions 20] [--seconds 60] [--per-session 0]'
    unshare -n bash -c 'ip link set lo up; python3 bench/fill_attempts.py CHECKOUT log-stall \\
        [--seconds 60] [--floods 1]'

Each starts `relaybox --headless` from CHECKOUT with its default limits on 127.0.0.1:2526, where
only 127.0.0.1 may relay; the strangers come from 127.0.0.2 and up. Loopback only; every wait is
bounded.

- noop: --sessions clients send NOOPs of 500 characters, 50 pipelined at a time, as fast as
  they are answered. With --per-session N each client hangs up after N NOOPs and connects again
  (sessions that end are what gets stored); 0 keeps one session each for the whole run. Prints
  the sizes of spool.db and its WAL each minute, and the growth per minute of both together
  (measured after the sessions ended and the relay stored their transcripts). The WAL is reused
  from its start after each checkpoint: its part is a bounded high-water mark, not a rate.
- log-stall: the relay's stdout and stderr are a pipe nobody reads (a stalled terminal, a stuck
  journald) while --floods connections send pipelined RCPTs that are refused (one log line
  each). Prints the relay's RSS every 10 s; then reads the pipe and prints how many lines it
  held and how many the `log-lines-dropped` lines reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from strangers import HOST, relay, reply, rss_mb

PORT = 2526
NOOPS = b"".join(b"NOOP " + b"x" * 500 + b"\r\n" for _ in range(50))
RCPTS = b"".join(b"RCPT TO:<victim%d@example.org>\r\n" % n for n in range(100))


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def run_clients(clients: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait(clients, timeout=30)
    for task in clients:
        task.cancel()


async def noop_client(
    source: str, per_session: int, stop: asyncio.Event, counts: list[int]
) -> None:
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, PORT, local_addr=(source, 0)), 10
            )
            counts[1] += 1
            await reply(reader)
            writer.write(b"EHLO stranger.test\r\n")
            await reply(reader)
            sent = 0
            while not stop.is_set() and (per_session == 0 or sent < per_session):
                writer.write(NOOPS)
                for _ in range(50):
                    if not (await reply(reader)).startswith(b"250"):
                        raise ConnectionError
                    counts[0] += 1
                sent += 50
            writer.write(b"QUIT\r\n")
            await reply(reader)
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.01)
        finally:
            if writer is not None:
                writer.close()


async def noop(checkout: Path, sessions: int, seconds: float, per_session: int) -> None:
    with open(os.devnull, "wb") as devnull:
        async with relay(checkout, PORT, devnull.fileno()) as (_, state, _log):
            db, wal = state / "spool.db", state / "spool.db-wal"
            before = size(db) + size(wal)
            stop, counts = asyncio.Event(), [0, 0]
            clients = [
                asyncio.create_task(
                    noop_client(f"127.0.0.{2 + n % 200}", per_session, stop, counts)
                )
                for n in range(sessions)
            ]
            started = time.monotonic()
            while (left := seconds - (time.monotonic() - started)) > 0:
                await asyncio.sleep(min(60, left))
                print(
                    f"  after {time.monotonic() - started:.0f} s: spool.db"
                    f" {size(db) / 2**20:.2f} MB, WAL {size(wal) / 2**20:.2f} MB",
                    flush=True,
                )
            await run_clients(clients, stop)
            await asyncio.sleep(3)  # sessions store their transcript as they end
            grown = (size(db) + size(wal) - before) / 2**20 / seconds * 60
            print(
                f"{sessions} clients x {seconds:.0f} s, "
                f"{'one session each' if not per_session else f'{per_session} NOOPs a session'}:"
                f" {counts[0]} NOOPs answered in {counts[1]} sessions;"
                f" spool.db + WAL grew {grown:.2f} MB/min (at the end: spool.db"
                f" {size(db) / 2**20:.2f} MB, WAL {size(wal) / 2**20:.2f} MB)",
                flush=True,
            )


async def flooder(stop: asyncio.Event, counts: list[int]) -> None:
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, PORT, local_addr=("127.0.0.2", 0)), 10
            )
            await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"HELO stranger.test\r\nMAIL FROM:<a@stranger.test>\r\n")
            await asyncio.wait_for(reader.readline(), 10)
            await asyncio.wait_for(reader.readline(), 10)
            while not stop.is_set():
                writer.write(RCPTS)
                for _ in range(100):
                    line = await asyncio.wait_for(reader.readline(), 30)
                    if not line.startswith(b"5"):
                        raise ConnectionError
                    counts[0] += 1
        except (OSError, ConnectionError, TimeoutError):
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                writer.close()


async def log_stall(checkout: Path, seconds: float, floods: int) -> None:
    read_fd, write_fd = os.pipe()
    try:
        async with relay(checkout, PORT, write_fd) as (proc, _state, _log):
            os.close(write_fd)
            write_fd = -1
            print(f"RSS at start {rss_mb(proc.pid):.0f} MB", flush=True)
            stop, counts = asyncio.Event(), [0]
            clients = [asyncio.create_task(flooder(stop, counts)) for _ in range(floods)]
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                await asyncio.sleep(10)
                print(
                    f"  {time.monotonic() - started:.0f} s: {counts[0]} refusals,"
                    f" RSS {rss_mb(proc.pid):.0f} MB",
                    flush=True,
                )
            await run_clients(clients, stop)
            held, dropped = await read_log(read_fd)
            print(
                f"after the flood: RSS {rss_mb(proc.pid):.0f} MB; {held} log lines written,"
                f" {dropped} reported dropped",
                flush=True,
            )
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


async def read_log(read_fd: int) -> tuple[int, int]:
    """Read what the relay writes until it is quiet for 3 s: (lines, lines reported dropped)."""
    os.set_blocking(read_fd, False)
    held, dropped, quiet_since, buffer = 0, 0, time.monotonic(), b""
    while time.monotonic() - quiet_since < 3:
        try:
            chunk = os.read(read_fd, 1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.05)
            continue
        if not chunk:
            break
        quiet_since = time.monotonic()
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            held += 1
            if b" log-lines-dropped lines=" in line:
                dropped += int(line.split(b"lines=")[1].split()[0])
    return held, dropped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkout", type=Path, help="a relaybox checkout with its own .venv")
    p.add_argument("scenario", choices=("noop", "log-stall"))
    p.add_argument("--seconds", type=float, default=60, help="length of the run (default 60)")
    p.add_argument("--sessions", type=int, default=20, help="noop: parallel clients (default 20)")
    p.add_argument(
        "--per-session", type=int, default=0, help="noop: NOOPs before reconnecting (0: never)"
    )
    p.add_argument("--floods", type=int, default=1, help="log-stall: flooding connections")
    args = p.parse_args()
    checkout = args.checkout.resolve()
    if args.scenario == "noop":
        asyncio.run(noop(checkout, args.sessions, args.seconds, args.per_session))
    else:
        asyncio.run(log_stall(checkout, args.seconds, args.floods))


if __name__ == "__main__":
    main()
