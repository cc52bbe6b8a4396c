"""What the attack benches share: a fresh relaybox from any checkout where only 127.0.0.1 may
relay (every other loopback address is a stranger) and all mail is held, its memory, and
reading one SMTP reply. Imported by bench/attacks.py and bench/fill_attempts.py (a script's
own directory is on its import path); loopback only, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
"""The office: the only address that may relay."""


def held_config(state: Path, port: int) -> str:
    """The config: one relay listener, no DNS asked, every message held."""
    return (
        f'[server]\nhostname = "relay.strangers.invalid"\nstate_dir = "{state}"\n'
        f'[[listeners]]\nlisten = ["{HOST}:{port}"]\nrole = "relay"\n'
        'allowed_networks = ["127.0.0.1/32"]\n'
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
        '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
    )


def stop(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM, as systemd stops it; SIGKILL only if it does not exit within `grace` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def relay(
    checkout: Path, port: int, output: int | IO[bytes] | None = None
) -> AsyncIterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """A fresh relaybox from `checkout` (run by its own .venv), listening on `port`; yields
    (process, state directory, log file). Its output goes to `output` when given (a pipe
    nobody reads, say), else to the log file."""
    with tempfile.TemporaryDirectory(prefix="relaybox-strangers.") as tmp:
        state, log_path = Path(tmp) / "state", Path(tmp) / "relaybox.log"
        config = Path(tmp) / "relaybox.toml"
        config.write_text(held_config(state, port))
        python = checkout / ".venv" / "bin" / "python"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(python), "-m", "relaybox", "--headless", "--config", str(config)],
                stdout=output if output is not None else log,
                stderr=output if output is not None else log,
                cwd=checkout,
            )
            try:
                deadline = time.monotonic() + 20
                while True:
                    if proc.poll() is not None:
                        sys.exit(f"relaybox exited early: {log_path.read_text()[-2000:]}")
                    try:
                        socket.create_connection((HOST, port), timeout=0.5).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            sys.exit("relaybox did not listen within 20 s")
                        await asyncio.sleep(0.05)
                yield proc, state, log_path
            finally:
                stop(proc)


def rss_mb(pid: int) -> float:
    """The process's resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def reply(reader: asyncio.StreamReader) -> bytes:
    """One whole reply (its last line), or b"" when the relay closed the connection."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        if not line or line[3:4] != b"-":
            return line
