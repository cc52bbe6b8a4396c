"""`relaybox show ID`: one message in full (envelope, recipients, headers, the inbound session
and every delivery attempt with its transcript), as text or JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TextIO

from relaybox.admin.client import AdminClient
from relaybox.admin.service import UNTIL_RESUMED
from relaybox.cli.common import EXIT_FAIL, EXIT_OK, iso, line_writer
from relaybox.message.explain import explain
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import MessageDetail
from relaybox.untrusted import visible

__all__ = ["show"]


def _detail_json(detail: MessageDetail) -> dict[str, Any]:
    row = asdict(detail.row)
    row.pop("id")
    row["arrived_at"] = iso(detail.row.arrived_at)
    row["next_attempt_at"] = iso(detail.row.next_attempt_at)
    return {
        **row,
        "recipients": [
            {
                **asdict(rc),
                "next_attempt_at": iso(rc.next_attempt_at),
                "updated_at": iso(rc.updated_at),
            }
            for rc in detail.recipients
        ],
        "client": {
            "ip": detail.client_ip,
            "port": detail.client_port,
            "helo": detail.helo,
            "listener": detail.listener,
            "auth_user": detail.auth_user,
            "tls": detail.tls,
        },
        "session_id": detail.session_id,
        "body_8bit": detail.body_8bit,
        "smtputf8": detail.smtputf8,
        "headers": [[k, v] for k, v in detail.headers],
        "inbound_transcript": _lines_json(detail.inbound_transcript),
        "is_bounce": detail.is_bounce,
        "attempts": [
            {
                "started_at": iso(a.started_at),
                "finished_at": iso(a.finished_at),
                "destination": a.destination,
                "host": a.host,
                "ip": a.ip,
                "port": a.port,
                "tls": a.tls,
                "recipients": list(a.recipients),
                "outcome": a.outcome,
                "reply": a.reply,
                "transcript": _lines_json(a.transcript),
            }
            for a in detail.attempts
        ],
    }


def _lines_json(lines: Sequence[TranscriptLine]) -> list[dict[str, Any]]:
    return [{"at": iso(line.at), "direction": line.direction, "text": line.text} for line in lines]


def _next_attempt(at: float) -> str:
    """When a recipient is tried next, local time; a destination suspended until an admin
    resumes it has no time."""
    if at >= UNTIL_RESUMED:
        return "when resumed (suspended)"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _write_transcript(
    w: Callable[[str], object], lines: Sequence[TranscriptLine], indent: str
) -> None:
    for line in lines:
        stamp = (
            time.strftime("%H:%M:%S", time.localtime(line.at))
            + f".{int(line.at * 1000) % 1000:03d}"
        )
        arrow = {"C": "C:", "S": "S:", "-": "--"}.get(line.direction, line.direction)
        w(f"{indent}{stamp} {arrow} {line.text}")


async def show(admin: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    """`relaybox show ID`: everything about one message."""
    detail = await admin.show(args.queue_id)
    if detail is None:
        print(f"relaybox: no message with queue ID {visible(args.queue_id)}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        json.dump(_detail_json(detail), out, indent=2)
        out.write("\n")
        return EXIT_OK
    r = detail.row
    # Every line goes through one writer that makes control characters visible: most of
    # what follows (HELO, addresses, headers, transcripts, next hops' replies) came from
    # strangers, and an ESC in it must not reach the admin's terminal.
    w = line_writer(out)
    w(f"Queue ID:   {r.queue_id}")
    w(f"State:      {r.state}")
    w(f"Arrived:    {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(r.arrived_at))}")
    w(
        f"Size:       {r.size} bytes{' (8-bit)' if detail.body_8bit else ''}"
        f"{' SMTPUTF8' if detail.smtputf8 else ''}"
    )
    w(f"Sender:     <{r.sender}>")
    w(
        f"Client:     [{detail.client_ip}]:{detail.client_port} helo={detail.helo}"
        f" listener={detail.listener}"
    )
    w(f"Auth:       {detail.auth_user or '-'}    TLS: {detail.tls or 'none'}")
    w("Recipients:")
    for rc in detail.recipients:
        extra = f"  attempts={rc.attempts}" if rc.attempts else ""
        if rc.state in ("queued", "deferred") and rc.next_attempt_at is not None:
            extra += f"  next={_next_attempt(rc.next_attempt_at)}"
        reply = f"  {rc.last_reply}" if rc.last_reply else ""
        w(f"  {rc.address:<40} {rc.state}{extra}{reply}")
        explained = explain(rc.last_reply) if rc.state != "delivered" else None
        if explained is not None:
            w(f"  {'':<40} why: {explained.summary}")
    w("")
    w("Headers:")
    for key, value in detail.headers:
        # A folded header keeps its CRLFs in the store; print each fold as a line of its own.
        first, *folds = value.split("\r\n")
        w(f"  {key}: {first}")
        for fold in folds:
            w(f"  {fold}")
    w("")
    w(f"Inbound session {detail.session_id}:")
    _write_transcript(w, detail.inbound_transcript, "  ")
    if not detail.attempts:
        w("")
        w("Delivery attempts: none yet")
        return EXIT_OK
    # Every attempt in order, as it happened: why a message is stuck is in these lines.
    for n, a in enumerate(detail.attempts, 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(a.started_at))
        took = max(0.0, a.finished_at - a.started_at)
        w("")
        w(f"Delivery attempt {n}: {when} ({took:.1f} s) to {a.destination}: {a.outcome}")
        if a.host or a.ip:
            port = f":{a.port}" if a.port else ""
            w(f"  Host:       {a.host or '-'} [{a.ip or '-'}]{port}    TLS: {a.tls or 'none'}")
        w(f"  Recipients: {', '.join(a.recipients)}")
        if a.reply:
            w(f"  Reply:      {a.reply}")
        _write_transcript(w, a.transcript, "  ")
    return EXIT_OK
