#!/usr/bin/env python3
"""End-to-end throughput with the UI open, against the same relay headless, in one run.

Usage (Postfix's smtp-source and smtp-sink installed; tmux installed):

    .venv/bin/python bench/ui_overhead.py HARNESS [-n 5000] [--repeat 3] [--size 1024]

HARNESS is ../shared/bench (its relay-bench). Three configurations of the same relay:
`relaybox --headless`; `relaybox` with its UI in tmux at 200x60 on the Queue pane; and the
same on the Log pane. Each routes `*` to relay-bench's smtp-sink and is driven by smtp-source
with 20 sessions. The configurations take turns, one run each per round, each on a fresh
relay and spool (`--repeat` rounds): this machine's speed drifts by more than the UI's cost
over a few minutes, and runs side by side see the same drift. Prints each configuration's
median, the ratio of medians, and the median of the rounds' own ratios. Loopback only;
every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT = 2525
SINK_PORT = 2626


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_closed(port: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.2)
    sys.exit(f"127.0.0.1:{port} still listens after {timeout} s")


def write_config(tmp: Path) -> Path:
    config = tmp / "relaybox.toml"
    config.write_text(
        f'[server]\nhostname = "relaybox-under-test.bench.invalid"\nstate_dir = "{tmp}/state"\n'
        f'[[listeners]]\nlisten = ["127.0.0.1:{PORT}"]\nrole = "relay"\n'
        'allowed_networks = ["127.0.0.0/8"]\n'
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
        f'[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{SINK_PORT}"]\ntls = "none"\n'
    )
    return config


def relay_pid(config: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["pgrep", "-f", f"relaybox .*{config}"], capture_output=True, text=True
        ).stdout.split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    sys.exit("cannot find the relaybox process")


def bench(harness: Path, args: argparse.Namespace, pid: int, label: str, out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(harness / "relay-bench"),
            f"127.0.0.1:{PORT}",
            "--sink",
            f"127.0.0.1:{SINK_PORT}",
            "-n",
            str(args.n),
            "-s",
            "20",
            "-k",
            str(args.size),
            "--warmup",
            "200",
            "--repeat",
            "1",
            "--relay-pid",
            str(pid),
            "--label",
            label,
            "--json",
            str(out),
        ],
        check=True,
    )


def run_headless(harness: Path, args: argparse.Namespace, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="relaybox-ui-bench.") as tmp:
        config = write_config(Path(tmp))
        with open(Path(tmp) / "log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "relaybox", "--headless", "--config", str(config)],
                stdout=log,
                stderr=log,
            )
        try:
            wait_port(PORT)
            bench(harness, args, proc.pid, "headless", out)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def run_ui(harness: Path, args: argparse.Namespace, pane: str, out: Path) -> None:
    session = f"uibench{os.getpid()}"
    tmux = ["tmux", "-L", session]
    with tempfile.TemporaryDirectory(prefix="relaybox-ui-bench.") as tmp:
        config = write_config(Path(tmp))
        command = f"{sys.executable} -m relaybox --config {config}"
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "60", command],
            check=True,
        )
        try:
            wait_port(PORT)
            time.sleep(1.0)
            if pane == "log":
                subprocess.run([*tmux, "send-keys", "-t", session, "4"], check=True)
                time.sleep(0.5)
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            want = "Log ·" if pane == "log" else "Queue ·"
            if want not in screen:
                sys.exit(f"the UI is not on the {pane} pane:\n{screen}")
            bench(harness, args, relay_pid(config), f"ui-{pane}", out)
        finally:
            subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=False)
            time.sleep(0.5)
            subprocess.run([*tmux, "send-keys", "-t", session, "y"], check=False)
            wait_closed(PORT)
            subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("harness", type=Path)
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--size", type=int, default=1024)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="relaybox-ui-bench-results.") as tmp:
        out = Path(tmp) / "runs.jsonl"
        for round_no in range(args.repeat):
            print(f"\n# round {round_no + 1} of {args.repeat}", flush=True)
            run_headless(args.harness, args, out)
            run_ui(args.harness, args, "queue", out)
            run_ui(args.harness, args, "log", out)
        runs: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            label = rec.get("label", "?")
            if rec.get("e2e_per_s") is not None:
                runs.setdefault(label, []).append(float(rec["e2e_per_s"]))
            if rec.get("relay_cpu_ms_per_msg") is not None:
                cpu.setdefault(label, []).append(float(rec["relay_cpu_ms_per_msg"]))
    base = statistics.median(runs["headless"])
    print(f"\ne2e msg/s, {args.size} B x 20 sessions, n={args.n}, {args.repeat} rounds")
    for label in ("headless", "ui-queue", "ui-log"):
        values = runs[label]
        med = statistics.median(values)
        c = statistics.median(cpu[label]) if cpu.get(label) else float("nan")
        each = ", ".join(f"{v:.0f}" for v in values)
        line = f"  {label:9} {med:8.1f}   {med / base:5.2f}x of headless   cpu {c:.2f} ms/msg"
        if label != "headless":
            paired = statistics.median(v / h for v, h in zip(values, runs["headless"], strict=True))
            line += f"   rounds' ratios median {paired:.2f}x"
        print(f"{line}   ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
