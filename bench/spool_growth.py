#!/usr/bin/env python3
"""How fast strangers can grow the spool: parallel sessions of `NOOP <500 characters>`.

Usage (CHECKOUT is a relaybox checkout with its own .venv; run it in a private network
namespace so it cannot clash with anything):

    unshare -n bash -c 'ip link set lo up; python3 bench/spool_growth.py CHECKOUT \\
        [--sessions 20] [--seconds 60] [--per-session 0]'

Starts `relaybox --headless` from CHECKOUT with its default limits on 127.0.0.1:2526 (where only
127.0.0.1 may relay), then --sessions clients from 127.0.0.2 and up send NOOPs of 500 characters,
50 pipelined at a time, as fast as they are answered, for --seconds. With --per-session N each
client hangs up after N NOOPs and connects again (sessions that end are what gets stored);
0 keeps one session each for the whole run. Prints the NOOPs answered, the sessions, the
growth of spool.db with its WAL per minute (measured after the sessions ended and the relay
stored their transcripts), and both files' sizes each minute and at the end: the WAL is reused
from its start after each checkpoint, so its part is a bounded high-water mark rather than a
rate (run for a few minutes to see it level off). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST, PORT = "127.0.0.1", 2526
NOOPS = b"".join(b"NOOP " + b"x" * 500 + b"\r\n" for _ in range(50))


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def reply(reader: asyncio.StreamReader) -> bytes:
    """The last line of one reply, or b"" when the relay hung up."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        if not line or line[3:4] != b"-":
            return line


async def client(source: str, per_session: int, stop: asyncio.Event, counts: list[int]) -> None:
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


async def measure(checkout: Path, sessions: int, seconds: float, per_session: int) -> None:
    with tempfile.TemporaryDirectory(prefix="relaybox-growth.") as tmp:
        state, config = Path(tmp) / "state", Path(tmp) / "relaybox.toml"
        config.write_text(
            f'[server]\nhostname = "relay.growth.invalid"\nstate_dir = "{state}"\n'
            f'[[listeners]]\nlisten = ["{HOST}:{PORT}"]\nrole = "relay"\n'
            'allowed_networks = ["127.0.0.1/32"]\n'
            '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
            '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
        )
        python = checkout / ".venv" / "bin" / "python"
        with open(Path(tmp) / "relaybox.log", "wb") as log:
            proc = subprocess.Popen(
                [str(python), "-m", "relaybox", "--headless", "--config", str(config)],
                stdout=log,
                stderr=log,
                cwd=checkout,
            )
        try:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection((HOST, PORT), timeout=0.5).close()
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("relaybox did not start: see its log")
                await asyncio.sleep(0.05)
            db, wal = state / "spool.db", state / "spool.db-wal"
            before = size(db) + size(wal)
            stop, counts = asyncio.Event(), [0, 0]
            tasks = [
                asyncio.create_task(client(f"127.0.0.{2 + n % 200}", per_session, stop, counts))
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
            stop.set()
            await asyncio.wait(tasks, timeout=30)
            for task in tasks:
                task.cancel()
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
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkout", type=Path, help="a relaybox checkout with its own .venv")
    p.add_argument("--sessions", type=int, default=20, help="parallel clients (default 20)")
    p.add_argument("--seconds", type=float, default=60, help="length of the run (default 60)")
    p.add_argument(
        "--per-session", type=int, default=0, help="NOOPs before reconnecting (0: never)"
    )
    args = p.parse_args()
    asyncio.run(measure(args.checkout.resolve(), args.sessions, args.seconds, args.per_session))


if __name__ == "__main__":
    main()
