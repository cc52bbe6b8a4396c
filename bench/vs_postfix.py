#!/usr/bin/env python3
"""Throughput of relaybox against Postfix on this machine, in one run.

Usage (as root, Postfix installed; HARNESS is ../shared/bench in CI):

    .venv/bin/python bench/vs_postfix.py HARNESS [--accept-only] [-n 5000] [--repeat 5]
                                         [--sizes 1024,102400]

For each message size it runs `relay-bench` against a fresh `relaybox --headless` (durability
on: every 250 waits for its fsync), then `postfix-baseline` (Postfix relaying to smtp-sink),
and prints medians and ratios relaybox/Postfix, with the CPU each used per message.

End to end (the default), relaybox routes every recipient to the harness's smtp-sink as a
smart host (`[[routes]] domains = ["*"]`), as Postfix's relayhost does, and the `e2e` figures
are compared. With `--accept-only`, relaybox holds what it accepts (no delivery competes with
the measurement) and its `accepted` figure is compared with Postfix's from its normal run.
With `--dkim`, each size also runs relaybox signing every message with a 2048-bit RSA key for
the harness sender's domain (`[[dkim]]`, made by `relaybox dkim keygen`), and prints signed
against unsigned from the same run. The DNS check of the published key is off there (the
bench has no DNS; in production it is one lookup per selector every 5 minutes).
Loopback only; every wait is bounded by the harness.
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


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"relaybox exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"relaybox did not listen on 127.0.0.1:{port} within {timeout} s")


BENCH_SENDER_DOMAIN = "bench-client.test"
"""The domain of relay-bench's default sender (smtp-source writes it in From: too)."""


def dkim_block(tmp: str) -> str:
    """A 2048-bit key for the bench sender's domain, as an admin would make it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relaybox",
            "dkim",
            "keygen",
            BENCH_SENDER_DOMAIN,
            "--selector",
            "bench",
            "--out",
            f"{tmp}/bench.key",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout[done.stdout.index("[[dkim]]") :] + '\n[delivery]\ndkim_key_check = "off"\n'


def run_relaybox(
    harness: Path, size: int, args: argparse.Namespace, results: Path, signed: bool = False
) -> None:
    with tempfile.TemporaryDirectory(prefix="relaybox-bench.") as tmp:
        config = Path(tmp) / "relaybox.toml"
        config.write_text(
            f'[server]\nhostname = "relaybox-under-test.bench.invalid"\nstate_dir = "{tmp}/state"\n'
            f'[[listeners]]\nlisten = ["127.0.0.1:{args.port}"]\nrole = "relay"\n'
            'allowed_networks = ["127.0.0.0/8"]\n'
            # Never ask the system's resolver (nothing here needs DNS).
            '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
            + (
                '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
                if args.accept_only
                else f'[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
                f'hosts = ["127.0.0.1:{args.sink_port}"]\ntls = "none"\n'
            )
            + (dkim_block(tmp) if signed else "")
        )
        log = open(Path(tmp) / "relaybox.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaybox", "--headless", "--config", str(config)],
            stdout=log,
            stderr=log,
        )
        try:
            wait_port(args.port, proc)
            subprocess.run(
                [
                    sys.executable,
                    str(harness / "relay-bench"),
                    f"127.0.0.1:{args.port}",
                    *(
                        ["--accept-only"]
                        if args.accept_only
                        else ["--sink", f"127.0.0.1:{args.sink_port}"]
                    ),
                    "-n",
                    str(args.n),
                    "-s",
                    str(args.sessions),
                    "-k",
                    str(size),
                    "--warmup",
                    "200",
                    "--repeat",
                    str(args.repeat),
                    "--relay-pid",
                    str(proc.pid),
                    "--label",
                    f"relaybox-signed-{size}" if signed else f"relaybox-{size}",
                    "--json",
                    str(results),
                ],
                check=True,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def run_postfix(harness: Path, size: int, args: argparse.Namespace, results: Path) -> None:
    subprocess.run(
        [
            str(harness / "postfix-baseline"),
            "--port",
            str(args.port),
            "--sink-port",
            str(args.sink_port),
            "-n",
            str(args.n),
            "-s",
            str(args.sessions),
            "-k",
            str(size),
            "--warmup",
            "200",
            "--repeat",
            str(args.repeat),
            "--json",
            str(results),
        ],
        check=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("harness", type=Path, help="directory holding relay-bench and postfix-baseline")
    p.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    p.add_argument("-s", "--sessions", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--port", type=int, default=2525, help="relay port for both (default 2525)")
    p.add_argument("--sink-port", type=int, default=2626, help="Postfix's smtp-sink port")
    p.add_argument("--sizes", default="1024,102400", help="body sizes in bytes, comma-separated")
    p.add_argument(
        "--accept-only",
        action="store_true",
        help="compare acceptance only: relaybox holds what it accepts",
    )
    p.add_argument(
        "--dkim",
        action="store_true",
        help="also run relaybox signing every message (2048-bit RSA) and compare",
    )
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("postfix-baseline needs root")
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="relaybox-bench-results.") as tmp:
        results = Path(tmp) / "runs.jsonl"
        for size in sizes:
            run_relaybox(args.harness, size, args, results)
            if args.dkim:
                run_relaybox(args.harness, size, args, results, signed=True)
            run_postfix(args.harness, size, args, results)
        figure = "accepted" if args.accept_only else "e2e"
        print()
        print(f"{figure} msg/s, medians of {args.repeat} runs, n={args.n}, s={args.sessions}")
        print(
            f"{'size':>8} {'relaybox':>10} {'postfix':>10} {'ratio':>7}"
            f" {'rb cpu ms/msg':>14} {'pf cpu ms/msg':>14}"
        )
        recs = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        for size in sizes:
            rb = [r for r in recs if r["label"] == f"relaybox-{size}"]
            pf = [r for r in recs if r["label"] == "postfix" and r["size"] == size]
            if not rb or not pf:
                sys.exit(f"missing figures for size {size}")
            key = f"{figure}_per_s"
            rb_rate = statistics.median(r[key] for r in rb if r.get(key))
            pf_rate = statistics.median(r[key] for r in pf if r.get(key))
            rb_cpu = statistics.median(r["relay_cpu_ms_per_msg"] for r in rb)
            pf_cpu = statistics.median(r["relay_cpu_ms_per_msg"] for r in pf)
            spread = [r[key] for r in rb if r.get(key)]
            wide = (max(spread) - min(spread)) / rb_rate > 0.2
            print(
                f"{size:>8} {rb_rate:>10.1f} {pf_rate:>10.1f} {rb_rate / pf_rate:>6.2f}x"
                f" {rb_cpu:>14.2f} {pf_cpu:>14.2f}"
                + ("  (relaybox spread over 20%: rerun)" if wide else "")
            )
            signed = [r for r in recs if r["label"] == f"relaybox-signed-{size}"]
            if signed:
                sg_rate = statistics.median(r[key] for r in signed if r.get(key))
                sg_cpu = statistics.median(r["relay_cpu_ms_per_msg"] for r in signed)
                print(
                    f"{'signed':>8} {sg_rate:>10.1f} {'':>10} {sg_rate / rb_rate:>6.2f}x"
                    f" {sg_cpu:>14.2f}   (DKIM-signed relaybox / unsigned relaybox)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
