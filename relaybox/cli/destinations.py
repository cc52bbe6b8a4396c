"""`relaybox queue destinations [--json]`: where unfinished mail waits, by next hop, and why
(Postfix's qshape, with the cause). A destination a block; the one needing attention first."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from relaybox.admin.client import AdminClient
from relaybox.admin.service import UNTIL_RESUMED
from relaybox.cli.common import EXIT_OK, iso, line_writer

__all__ = ["destinations", "load_text"]


async def destinations(admin: AdminClient, args: argparse.Namespace) -> int:
    """Print the destinations (JSON: the admin operation's entries, times as ISO 8601)."""
    found = await admin.destinations()
    if args.json:
        print(json.dumps([_as_json(entry) for entry in found], indent=2))
        return EXIT_OK
    if not found:
        print("Nothing is waiting: the queue is empty")
        return EXIT_OK
    now = time.time()
    w = line_writer(sys.stdout)
    for entry in found:
        counts = " ".join(
            f"{entry[state]} {state}"
            for state in ("queued", "active", "deferred", "held")
            if entry[state]
        )
        oldest = entry["oldest_at"]
        age = f", oldest {_age(now - oldest)}" if oldest else ""
        w(f"{entry['destination']}  ({', '.join(entry['domains'])}): {counts}{age}")
        until = entry["suspended_until"]
        if until is not None:
            ends = "until resumed" if until >= UNTIL_RESUMED else f"until {iso(until)}"
            w(f"    SUSPENDED by an admin {ends}: {entry['suspended_reason']}")
        elif entry["next_attempt_at"] is not None:
            due = entry["next_attempt_at"] - now
            w(f"    next attempt {'now' if due <= 0 else 'in ' + _age(due)}")
        load = load_text(entry)
        if load:
            w(f"    {load}")
        for cause in entry["causes"]:
            w(f"    {cause['count']} x {cause['reply']}")
            if cause.get("explained"):
                w(f"        ({cause['explained']})")
    return EXIT_OK


def load_text(entry: dict[str, Any]) -> str:
    """What the destination takes of delivery now: `1 of 2 connections open, 1 waiting;
    paced at 30 a minute (2 started)`; empty when idle and unpaced."""
    parts = []
    if entry["attempts_now"]:
        limit = entry["connection_limit"]
        waiting = entry["attempts_now"] - entry["connections"]
        text = f"{entry['connections']} of {limit} connections open"
        parts.append(text + (f", {waiting} waiting" if waiting else ""))
    if entry["pace"]:
        parts.append(f"paced at {entry['pace']} a minute ({entry['started_last_minute']} started)")
    return "; ".join(parts)


def _as_json(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    for key in ("oldest_at", "next_attempt_at"):
        out[key] = iso(entry[key])
    until = entry["suspended_until"]
    out["suspended_until"] = (
        None if until is None else "resumed" if until >= UNTIL_RESUMED else iso(until)
    )
    out["suspended"] = until is not None
    return out


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
