#!/usr/bin/env python3
"""Acceptance throughput of relaybox against Postfix on this machine, in one run.

Usage (as root, Postfix installed; HARNESS is ../shared/bench in CI):

    .venv/bin/python bench/accept_vs_postfix.py HARNESS [-n 5000] [--repeat 5] [--sizes 1024,102400]

For each message size it runs `relay-bench --accept-only` against a fresh `relaybox --headless`
(durability on: every 250 waits for its fsync), then `postfix-baseline` (Postfix relaying to
smtp-sink, its normal run), and prints the medians and the ratio relaybox/Postfix of the
`accepted` figure. Loopback only; every wait is bounded by the harness.
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


def medians(path: Path, label: str) -> dict[str, float]:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if r["label"] == label]
    if not recs or any(not r["source_ok"] for r in recs):
        sys.exit(f"{label}: a run failed; see the output above")
    out = {"accepted": statistics.median(r["accepted_per_s"] for r in recs)}
    e2e = [r["e2e_per_s"] for r in recs if r.get("e2e_per_s")]
    if e2e:
        out["e2e"] = statistics.median(e2e)
    cpu = [r["relay_cpu_ms_per_msg"] for r in recs if "relay_cpu_ms_per_msg" in r]
    if cpu:
        out["cpu_ms"] = statistics.median(cpu)
    spread = [r["accepted_per_s"] for r in recs]
    out["spread"] = (max(spread) - min(spread)) / out["accepted"]
    return out


def run_relaybox(harness: Path, size: int, args: argparse.Namespace, results: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="relaybox-bench.") as tmp:
        config = Path(tmp) / "relaybox.toml"
        config.write_text(
            f'[server]\nhostname = "relaybox-under-test.bench.invalid"\nstate_dir = "{tmp}/state"\n'
            f'[[listeners]]\nlisten = ["127.0.0.1:{args.port}"]\nrole = "relay"\n'
            'allowed_networks = ["127.0.0.0/8"]\n'
            # Acceptance only: hold what arrives (no delivery work competes with the
            # measurement) and never ask the system's resolver.
            '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
            '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
        )
        log = open(Path(tmp) / "relaybox.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaybox.cli", "--headless", "--config", str(config)],
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
                    "--accept-only",
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
                    f"relaybox-{size}",
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
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("postfix-baseline needs root")
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="relaybox-bench-results.") as tmp:
        results = Path(tmp) / "runs.jsonl"
        for size in sizes:
            run_relaybox(args.harness, size, args, results)
            run_postfix(args.harness, size, args, results)
        print()
        print(f"accepted msg/s, medians of {args.repeat} runs, n={args.n}, s={args.sessions}")
        print(
            f"{'size':>8} {'relaybox':>10} {'postfix':>10} {'ratio':>7}"
            f" {'rb cpu ms/msg':>14} {'pf cpu ms/msg':>14}"
        )
        # postfix-baseline labels every run "postfix": read them in the order they were made.
        recs = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        by_size: dict[int, list[dict[str, float]]] = {}
        for r in recs:
            if r["label"] == "postfix":
                by_size.setdefault(r["size"], []).append(r)
        for size in sizes:
            rb = medians(results, f"relaybox-{size}")
            pf_runs = by_size.get(size, [])
            if not pf_runs:
                sys.exit(f"no Postfix figures for size {size}")
            pf_acc = statistics.median(r["accepted_per_s"] for r in pf_runs)
            pf_cpu = statistics.median(r["relay_cpu_ms_per_msg"] for r in pf_runs)
            ratio = rb["accepted"] / pf_acc
            print(
                f"{size:>8} {rb['accepted']:>10.1f} {pf_acc:>10.1f} {ratio:>6.2f}x"
                f" {rb.get('cpu_ms', float('nan')):>14.2f} {pf_cpu:>14.2f}"
                + ("  (relaybox spread over 20%: rerun)" if rb["spread"] > 0.2 else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
