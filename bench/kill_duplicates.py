#!/usr/bin/env python3
"""Messages delivered twice after a SIGKILL under load: the figure for issue 13's kill scenario.

Usage (from the repository, in its venv):

    .venv/bin/python bench/kill_duplicates.py [-n 2000] [--clients 8] [--connections 10]
                                              [--kill-at 0.5] [--source CHECKOUT]

A real `relaybox --headless` relays to a smart host on loopback (an aiosmtpd sink in this
process that counts every Message-ID it is given) with `[delivery]
max_connections_per_destination` set to `--connections` (and `max_connections` at its default,
50, unless `--max-connections` says otherwise). `--clients` SMTP clients send `-n`
messages as fast as the relay takes them; once the sink has `--kill-at` of them, the relay is
SIGKILLed, restarted on the same state directory and left to drain. The report: messages
acknowledged, delivered, delivered more than once (the duplicates), and acknowledged but never
delivered (must be 0). A delivery is in flight from MAIL to the spool's commit of its outcome,
so at most `--connections` duplicates are expected. `--source` runs another checkout's relaybox
(e.g. a `git worktree` at an older commit) with this venv. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r?$", re.MULTILINE | re.IGNORECASE)


class CountingSink:
    """aiosmtpd handler: how many times each Message-ID arrived."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = MESSAGE_ID.search(envelope.original_content or b"")
        with self.lock:
            self.counts[found.group(1).decode() if found else "<none>"] += 1
        return "250 2.0.0 Ok: queued at the sink"

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_relay(config: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaybox", "--headless", "--config", str(config)],
            stdout=out,
            stderr=out,
            env=env,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"relaybox exited with {proc.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("relaybox did not listen within 30 s")


def message(message_id: str, size: int = 1024) -> bytes:
    line = "a line of a message that must arrive once, once only\r\n"
    filler = line * max(1, size // len(line))
    return (
        "From: sender@bench.test\r\nTo: rcpt@example.org\r\nSubject: kill bench\r\n"
        f"Message-ID: {message_id}\r\n\r\n{filler}"
    ).encode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, default=2000, help="messages sent (default 2000)")
    p.add_argument("--clients", type=int, default=8, help="SMTP clients sending at once")
    p.add_argument(
        "--connections", type=int, default=10, help="delivery connections to the sink (default 10)"
    )
    p.add_argument(
        "--max-connections", type=int, default=50, help="[delivery] max_connections (default 50)"
    )
    p.add_argument("--size", type=int, default=1024, help="bytes of body per message")
    p.add_argument("--kill-at", type=float, default=0.5, help="share delivered before the kill")
    p.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="messages queued first, their destination suspended (a drain after an outage)",
    )
    p.add_argument("--source", type=Path, help="run relaybox from this checkout instead")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    args = p.parse_args()

    env = dict(os.environ)
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    handler = CountingSink()
    sink_port = free_port()
    sink = Controller(handler, hostname="127.0.0.1", port=sink_port)
    sink.start()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="relaybox-kill.") as tmp:
        config = Path(tmp) / "relaybox.toml"
        log = Path(tmp) / "relaybox.log"
        config.write_text(
            f'[server]\nhostname = "relay.bench.test"\nstate_dir = "{tmp}/state"\n'
            f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nallowed_networks = ["127.0.0.0/8"]\n'
            '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
            f"[delivery]\nmax_connections = {args.max_connections}\n"
            f"max_connections_per_destination = {args.connections}\n"
            f'[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
            f'hosts = ["127.0.0.1:{sink_port}"]\ntls = "none"\n'
        )
        relay = start_relay(config, port, env, log)
        destination = f"smarthost:127.0.0.1:{sink_port}"

        def admin(*words: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "relaybox", "queue", *words, "--config", str(config)],
                env=env,
                check=True,
                capture_output=True,
            )

        if args.backlog:
            admin("suspend", destination, "--for", "3600")
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                for i in range(args.backlog):
                    smtp.sendmail(
                        "sender@bench.test",
                        ["rcpt@example.org"],
                        message(f"<backlog.{i}@bench.test>"),
                    )
            admin("resume", destination)
            admin("retry", "--all")
        acked: list[str] = [f"<backlog.{i}@bench.test>" for i in range(args.backlog)]
        lock = threading.Lock()
        numbers = iter(range(args.n))
        killed = threading.Event()

        def client(n: int) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                    smtp.ehlo(f"client{n}.bench.test")
                    while not killed.is_set():
                        with lock:
                            i = next(numbers, None)
                        if i is None:
                            return
                        message_id = f"<kill.{i}@bench.test>"
                        smtp.sendmail(
                            "sender@bench.test",
                            ["rcpt@example.org"],
                            message(message_id, args.size),
                        )
                        with lock:
                            acked.append(message_id)
            except (OSError, smtplib.SMTPException):
                if not killed.is_set():
                    raise

        threads = [
            threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        kill_at = int((args.n + args.backlog) * args.kill_at)
        while handler.total() < kill_at:
            if time.monotonic() - started > args.drain_timeout:
                sys.exit(f"only {handler.total()} delivered before the timeout; see {log}")
            time.sleep(0.005)
        killed.set()
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        at_kill = handler.total()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started
        print(
            f"killed after {elapsed:.1f} s: {len(acked)} acknowledged, {at_kill} deliveries "
            f"at the sink ({at_kill / elapsed:.0f} a second)"
        )

        relay = start_relay(config, port, env, log)
        deadline = time.monotonic() + args.drain_timeout
        quiet_since = time.monotonic()
        last = handler.total()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            total = handler.total()
            if total != last:
                last, quiet_since = total, time.monotonic()
            with handler.lock:
                missing = [m for m in acked if not handler.counts[m]]
            if not missing and time.monotonic() - quiet_since > 3:
                break
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
        sink.stop()
        with handler.lock:
            counts = dict(handler.counts)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        doubled = sum(1 for n in counts.values() if n > 1)
        lost = [m for m in acked if not counts.get(m)]
        print(
            f"acknowledged {len(acked)}, delivered {len(counts)} distinct "
            f"({sum(counts.values())} deliveries)"
        )
        print(
            f"duplicates after the kill: {duplicates} extra deliveries of {doubled} messages "
            f"(delivery connections: {args.connections})"
        )
        print(f"acknowledged but never delivered: {len(lost)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
