#!/usr/bin/env python3
"""Logins of an office PC while many addresses guess passwords: how many are refused with
"454 too many logins in progress", and how long each takes.

It starts its own `relaybox --headless` (whatever `python -m relaybox` imports: run it with
PYTHONPATH set to another checkout to measure that one) with a STARTTLS submission listener,
the default `[auth]` brake (lockout after 10 failures) and real scrypt hashes (the default
cost). A PC on 127.0.0.2 logs in once; then A addresses (127.0.0.10 and up) guess over S
sessions each, reconnecting after every session's three failures (and knocking on once locked
out), while the PC logs in N times more, every 0.5 s, each time as another user (so no cached
success hides the check).

    .venv/bin/python bench/auth_fairness.py [-a 19] [-s 5] [-n 16]

The guessers and relaybox share the machine's two cores: compare runs with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tls_auth_load import free_port, wait_port  # (this folder is on the path when run)

from relaybox.config.passwords import hash_password
from relaybox.inbound.certificates import generate_self_signed

HOST = "relaybox-under-test.bench.invalid"


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Session:
    """A raw SMTP session from one local address, over STARTTLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, address: str, context: ssl.SSLContext) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        session = cls(reader, writer)
        await session.reply()
        await session.cmd("EHLO bench.invalid")
        await session.cmd("STARTTLS")
        await writer.start_tls(context, server_hostname=HOST)
        await session.cmd("EHLO bench.invalid")
        return session

    async def reply(self) -> str:
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 60)).decode()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != "-":
                return line.rstrip()

    async def cmd(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def run(port: int, args: argparse.Namespace, password: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench certificate is self-signed
    stop = asyncio.Event()
    guesses: list[str] = []

    async def guesser(address: str) -> None:
        while not stop.is_set():
            try:
                session = await Session.open(port, address, context)
            except (OSError, ConnectionError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            try:
                for n in range(3):
                    reply = await session.cmd(f"AUTH PLAIN {plain('pc0', f'guess{n}')}")
                    guesses.append(reply[:3])
                    if reply.startswith("454 4.7.0 Too many failed"):
                        await asyncio.sleep(0.5)  # locked out: keep knocking, slowly
            except (ConnectionError, TimeoutError):
                pass
            finally:
                session.close()

    # The office PC has logged in before (as it does every day), before the guessing starts.
    warm = await Session.open(port, "127.0.0.2", context)
    warmed = await warm.cmd(f"AUTH PLAIN {plain(f'pc{args.logins}', password)}")
    warm.close()
    print(f"office PC's earlier login: {warmed}")
    attackers = [
        asyncio.create_task(guesser(f"127.0.0.{10 + a}"))
        for a in range(args.addresses)
        for _ in range(args.sessions)
    ]
    replies: list[str] = []
    times: list[float] = []
    try:
        await asyncio.sleep(0.5)
        began = time.perf_counter()
        for n in range(args.logins):
            session = await Session.open(port, "127.0.0.2", context)
            started = time.perf_counter()
            reply = await session.cmd(f"AUTH PLAIN {plain(f'pc{n}', password)}")
            times.append(time.perf_counter() - started)
            replies.append(reply[:3])
            if not reply.startswith("235"):
                print(f"  login {n} at {time.perf_counter() - began:.1f} s: {reply}")
            session.close()
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)
    ok = replies.count("235")
    busy = replies.count("454")
    print(
        f"office logins: {ok}/{len(replies)} succeeded, {busy} refused with 454; "
        f"AUTH reply time median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms"
    )
    print(
        f"guesses answered: {len(guesses)} ({guesses.count('535')} x 535, "
        f"{guesses.count('454')} x 454)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-a", "--addresses", type=int, default=19)
    p.add_argument("-s", "--sessions", type=int, default=5, help="sessions per address")
    p.add_argument("-n", "--logins", type=int, default=16)
    args = p.parse_args()
    port = free_port()
    password = "office-password-not-secret"
    with tempfile.TemporaryDirectory(prefix="relaybox-auth-bench.") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        generate_self_signed(HOST, cert, key)
        users = "".join(
            f'\n[[users]]\nname = "pc{n}"\npassword_hash = "{hash_password(password)}"\n'
            f'allowed_senders = ["example.org"]\n'
            for n in range(args.logins + 1)
        )
        config = Path(tmp) / "relaybox.toml"
        config.write_text(
            f"""
[server]
hostname = "{HOST}"
state_dir = "{tmp}/state"

[[listeners]]
listen = ["127.0.0.1:{port}"]
role = "submission"
tls = "starttls"
certificate = "{cert}"
private_key = "{key}"

[dns]
resolvers = ["127.0.0.1:9"]
timeout = 0.5

[[routes]]
domains = ["*"]
transport = "hold"
{users}""",
            encoding="utf-8",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaybox", "--headless", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, proc)
            asyncio.run(run(port, args, password))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
