#!/usr/bin/env python3
"""Throughput of two relaybox checkouts, A against B, in alternating rounds on this machine.

Usage (as root, Postfix installed for smtp-source/smtp-sink; run from outside both checkouts):

    python3 bench/ab_commits.py HARNESS A_DIR B_DIR [--size 102400] [-n 2000] [--rounds 10]

Each DIR is a checkout with its own `.venv` (relaybox installed in it) and its own
`bench/vs_postfix.py`, whose `run_relaybox` starts that checkout's relaybox and drives it with
the harness's `relay-bench` (one timed run per round). The two take turns, the order swapped
every round, so the machine's drift (which here is larger than most changes) hits both alike.
Prints each run, then the medians and the number of rounds B won. Loopback only; every wait is
bounded by the harness.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path
from types import ModuleType


def load(tree: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, tree / "bench" / "vs_postfix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("harness", type=Path, help="directory holding relay-bench")
    p.add_argument("a", type=Path, help="checkout A (e.g. the commit before a change)")
    p.add_argument("b", type=Path, help="checkout B (e.g. the commit after it)")
    p.add_argument("--size", type=int, default=102400, help="body bytes (default 102400)")
    p.add_argument("-n", type=int, default=2000, help="messages per run (default 2000)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--sink-port", type=int, default=2626)
    args = p.parse_args()
    if Path.cwd().resolve() in (args.a.resolve(), args.b.resolve()):
        sys.exit("run from outside both checkouts (python -m would import the one in the cwd)")
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    modules = {label: load(tree, f"vs_postfix_{label}") for label, tree in trees.items()}
    run_args = argparse.Namespace(
        n=args.n,
        sessions=20,
        repeat=1,
        port=args.port,
        sink_port=args.sink_port,
        accept_only=False,
    )
    results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for round_no in range(args.rounds):
        for label in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "run.json"
                # run_relaybox starts relaybox and relay-bench with sys.executable.
                sys.executable = str(trees[label] / ".venv" / "bin" / "python")
                modules[label].run_relaybox(args.harness, args.size, run_args, out)
                record = json.loads(out.read_text().splitlines()[-1])
            results[label].append(record)
            print(
                f"round {round_no + 1} {label}: {record['e2e_per_s']:.1f} msg/s, "
                f"{record['relay_cpu_ms_per_msg']:.2f} ms/msg",
                flush=True,
            )
    rate = {k: statistics.median(r["e2e_per_s"] for r in v) for k, v in results.items()}
    cpu = {k: statistics.median(r["relay_cpu_ms_per_msg"] for r in v) for k, v in results.items()}
    wins = sum(
        b["e2e_per_s"] > a["e2e_per_s"] for a, b in zip(results["A"], results["B"], strict=True)
    )
    print(f"size {args.size}, {args.rounds} rounds, n={args.n}, medians:")
    print(
        f"  A {rate['A']:.1f} msg/s {cpu['A']:.2f} ms/msg;  B {rate['B']:.1f} msg/s "
        f"{cpu['B']:.2f} ms/msg;  B/A {rate['B'] / rate['A']:.3f}x;  B faster in {wins} rounds"
    )


if __name__ == "__main__":
    main()
