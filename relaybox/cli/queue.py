"""`relaybox queue`: the mailq-style listing, the actions on messages (retry, hold, release,
delete, bounce) and the suspension of destinations, through the admin layer.

Which messages an action takes is `selection`'s; what is done is `Admin`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from relaybox.admin.client import AdminClient
from relaybox.admin.service import UNTIL_RESUMED
from relaybox.cli.common import EXIT_FAIL, EXIT_OK, REFUSED, iso, line_writer
from relaybox.queue import UNFINISHED_STATES, MessageFilter
from relaybox.untrusted import visible

__all__ = ["queue_action", "queue_list", "selection", "suspended", "suspension"]

_DONE = {
    "retry": "retried",
    "hold": "held",
    "release": "released",
    "delete": "deleted",
    "bounce": "bounced",
}
_WHY_NOT = {
    "retry": "no such message, or nothing in it waits for delivery",
    "hold": "no such message, or nothing in it waits for delivery",
    "release": "no such message, or nothing in it is held",
    "delete": "no such message",
    "bounce": (
        "no such message, nothing in it is left to bounce, or it is being delivered right "
        "now (try again in a moment)"
    ),
}


_PENDING = frozenset({"queued", "deferred", "held"})
"""Recipient states mailq lists: not yet delivered or bounced."""


def selection(args: argparse.Namespace) -> MessageFilter:
    """The messages `relaybox queue ACTION` acts on; a usage error (exit 2) when unclear."""
    ids = [q.strip().upper() for q in args.queue_ids]
    if args.every and (ids or args.domain or args.state):
        args.usage_error("--all is every unfinished message: leave out IDs, --domain, --state")
    if ids and (args.domain or args.state):
        args.usage_error("give queue IDs, or --domain and --state, not both")
    recipients = tuple(getattr(args, "recipient", ()))
    if args.every and recipients:
        args.usage_error("--all is every unfinished message: leave out --recipient")
    if ids:
        # Named messages are found in any state (a delivered one can still be deleted).
        return MessageFilter(states=(), queue_ids=tuple(ids), recipients=recipients)
    if args.every:
        return MessageFilter()
    if not (args.domain or args.state or recipients):
        also = "" if args.action == "delete" else " or --recipient ADDR"
        args.usage_error(
            f"say which messages to {args.action}: ID..., --all, --domain D, --state S{also}"
        )
    return MessageFilter(
        states=(args.state,) if args.state else UNFINISHED_STATES,
        domain=args.domain or "",
        recipients=recipients,
    )


async def queue_action(
    admin: AdminClient, live: bool, action: str, flt: MessageFilter, args: argparse.Namespace
) -> int:
    """`relaybox queue ACTION`: act, print each message changed and a count."""
    if action == "bounce":
        touched = await admin.bounce(flt, args.reason)
    else:
        touched = await getattr(admin, action)(flt)
    done = _DONE[action]
    named = list(dict.fromkeys(flt.queue_ids))
    order = named if named else sorted(touched)
    changed = set(touched)
    for queue_id in order:
        if queue_id in changed:
            print(f"{visible(queue_id)}: {done}")
    missed = [q for q in named if q not in changed]
    for queue_id in missed:
        print(f"relaybox: {visible(queue_id)}: not {done}: {_WHY_NOT[action]}", file=sys.stderr)
    n = len(changed)
    summary = f"{n} message{'s' if n != 1 else ''} {done}"
    if n and not live and action in ("retry", "release", "bounce"):
        summary += " (no engine is running: the next one to start sends the mail)"
    print(summary)
    return EXIT_FAIL if missed else EXIT_OK


def _until(ts: float) -> str:
    return "until resumed" if ts >= UNTIL_RESUMED else f"until {iso(ts)}"


async def suspension(admin: AdminClient, args: argparse.Namespace) -> int:
    """`relaybox queue suspend|resume DESTINATION`."""
    try:
        if args.action == "suspend":
            key, until = await admin.suspend(args.destination, args.seconds, args.reason)
            print(f"suspended {key} {_until(until)}: its mail is deferred, not bounced")
            return EXIT_OK
        if await admin.resume(args.destination):
            print(f"resumed {visible(args.destination)}: its deferred mail is retried now")
            return EXIT_OK
    except REFUSED as exc:
        print(f"relaybox: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    print(f"relaybox: {visible(args.destination)} was not suspended", file=sys.stderr)
    return EXIT_FAIL


async def suspended(admin: AdminClient, args: argparse.Namespace) -> int:
    """`relaybox queue suspended`: the suspended destinations, until when and why."""
    found = sorted((await admin.suspended()).items())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "destination": key,
                        "until": None if until >= UNTIL_RESUMED else iso(until),
                        "reason": reason,
                    }
                    for key, (until, reason) in found
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not found:
        print("No destination is suspended")
    w = line_writer(sys.stdout)
    for key, (until, reason) in found:
        w(f"{key}  {_until(until)}  {reason}")
    return EXIT_OK


async def queue_list(admin: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    """`relaybox queue`: the messages, laid out as Postfix's mailq (or as JSON)."""
    flt = MessageFilter(states=() if args.all else UNFINISHED_STATES)
    rows = await admin.list_all(flt)
    recipients = await admin.recipients_of([r.id for r in rows]) if rows else {}
    if args.json:
        json.dump(
            [
                {
                    "queue_id": r.queue_id,
                    "arrived_at": iso(r.arrived_at),
                    "sender": r.sender,
                    "size": r.size,
                    "state": r.state,
                    "attempts": r.attempts,
                    "next_attempt_at": iso(r.next_attempt_at),
                    "last_reply": r.last_reply,
                    "recipients": [
                        {
                            "address": rc.address,
                            "state": rc.state,
                            "attempts": rc.attempts,
                            "next_attempt_at": iso(rc.next_attempt_at),
                            "last_reply": rc.last_reply,
                        }
                        for rc in recipients.get(r.id, [])
                    ],
                }
                for r in rows
            ],
            out,
            indent=2,
        )
        out.write("\n")
        return EXIT_OK
    if not rows:
        out.write("Mail queue is empty\n")
        return EXIT_OK
    active = await admin.delivering([r.id for r in rows])
    # The layout of Postfix's mailq, so admins read it without thinking: `*` a message being
    # delivered, `!` a held one; under each, the recipients still pending with the reply that
    # holds them up (with --all, the finished ones too, each with its state). Senders,
    # recipients and replies are strangers' text: every line is made visible as it is written.
    w = line_writer(out)
    w("-Queue ID-     --Size-- ----Arrival Time---- -Sender/Recipient-------")
    total = 0
    for r in rows:
        total += r.size
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(r.arrived_at))
        mark = "*" if r.id in active else "!" if r.state == "held" else ""
        w(f"{r.queue_id + mark:<14} {r.size:>8} {arrival}  {r.sender or 'MAILER-DAEMON'}")
        for rc in recipients.get(r.id, []):
            pending = rc.state in _PENDING
            if not (pending or args.all):
                continue
            if rc.last_reply and rc.state != "delivered":
                w(f"{'':<45}({rc.last_reply})")
            w(f"{'':<45}{rc.address}" + ("" if pending else f"  [{rc.state}]"))
        w("")
    n = len(rows)
    out.write(f"-- {(total + 1023) // 1024} Kbytes in {n} Request{'s' if n != 1 else ''}.\n")
    return EXIT_OK
