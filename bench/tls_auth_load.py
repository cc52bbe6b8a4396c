#!/usr/bin/env python3
"""Acceptance throughput over STARTTLS with AUTH, beside plain SMTP, with one load generator.

smtp-source speaks no TLS, so this script is the load: aiosmtplib clients, one connection per
message (as printers and scripts do), S sessions in parallel. It starts its own
`relaybox --headless` on loopback with two listeners (a plain relay listener and a STARTTLS
submission listener with a self-signed certificate and one user), runs the same load against
each, and prints msg/s for both and their ratio. Durability is on (250 after fsync).

    .venv/bin/python bench/tls_auth_load.py [-n 2000] [-s 20] [-k 1024] [--repeat 3]

The load generator shares the machine's two cores with relaybox: compare the two figures with
each other, not with relay-bench's.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from relaybox.config.passwords import hash_password
from relaybox.inbound.certificates import generate_self_signed

PASSWORD = "bench-password-not-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"relaybox exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"relaybox did not listen on {port}")


def message(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, size // len(line))
    return b"From: bench@example.org\r\nTo: rcpt@bench-dest.test\r\nSubject: bench\r\n\r\n" + body


async def load(port: int, n: int, sessions: int, size: int, tls: bool) -> float:
    """Send n messages over `sessions` parallel workers; returns msg/s."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench certificate is self-signed
    data = message(size)
    counter = iter(range(n))
    failures: list[str] = []

    async def worker() -> None:
        for _ in counter:
            smtp = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=port, start_tls=tls, tls_context=context, timeout=60
            )
            try:
                await smtp.connect()
                if tls:
                    await smtp.login("bench", PASSWORD)
                errors, _ = await smtp.sendmail("bench@example.org", ["rcpt@bench-dest.test"], data)
                if errors:
                    failures.append(str(errors))
                await smtp.quit()
            except aiosmtplib.SMTPException as exc:
                failures.append(str(exc))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    elapsed = time.perf_counter() - started
    if failures:
        sys.exit(f"{len(failures)} messages failed, e.g. {failures[0]}")
    return n / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("-s", "--sessions", type=int, default=20)
    p.add_argument("-k", "--size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    plain_port, submission_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="relaybox-tls-bench.") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        generate_self_signed("relaybox-under-test.bench.invalid", cert, key)
        config = Path(tmp) / "relaybox.toml"
        config.write_text(
            f"""
[server]
hostname = "relaybox-under-test.bench.invalid"
state_dir = "{tmp}/state"

[limits]
max_messages_per_minute_per_user = 0

[auth]
failures_before_delay = 1000
failures_before_lockout = 1001

[[listeners]]
listen = ["127.0.0.1:{plain_port}"]
role = "relay"
allowed_networks = ["127.0.0.0/8"]

[[listeners]]
listen = ["127.0.0.1:{submission_port}"]
role = "submission"
tls = "starttls"
certificate = "{cert}"
private_key = "{key}"

# Acceptance only: hold what arrives, never ask the system's resolver.
[dns]
resolvers = ["127.0.0.1:9"]
timeout = 0.5

[[routes]]
domains = ["*"]
transport = "hold"

[[users]]
name = "bench"
password_hash = "{hash_password(PASSWORD)}"
allowed_senders = ["example.org"]
"""
        )
        log = open(Path(tmp) / "relaybox.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaybox", "--headless", "--config", str(config)],
            stdout=log,
            stderr=log,
        )
        try:
            wait_port(plain_port, proc)
            wait_port(submission_port, proc)
            asyncio.run(load(submission_port, 50, 5, args.size, True))  # warm-up
            figures: dict[str, list[float]] = {"plain": [], "starttls+auth": []}
            for _ in range(args.repeat):
                rate = asyncio.run(load(plain_port, args.n, args.sessions, args.size, False))
                figures["plain"].append(rate)
                print(f"plain          {rate:8.1f} msg/s", flush=True)
                rate = asyncio.run(load(submission_port, args.n, args.sessions, args.size, True))
                figures["starttls+auth"].append(rate)
                print(f"starttls+auth  {rate:8.1f} msg/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    plain = statistics.median(figures["plain"])
    secure = statistics.median(figures["starttls+auth"])
    print(
        f"MEDIAN of {args.repeat}: n={args.n} s={args.sessions} size={args.size} "
        f"plain={plain:.1f}/s starttls+auth={secure:.1f}/s ratio={secure / plain:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
