"""Unfinished recipients as routing sees them, for a reload: where each would go now, and
making those whose next hop changed due at once.

Functions of a connection; the caller picks the reader or the writer. Which next hop a
recipient takes is routing's decision (the engine's); this only reads and stores.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from relaybox.queue.model import RecipientState
from relaybox.queue.outcomes import refresh_message

__all__ = ["ROUTABLE", "Unfinished", "make_due", "unfinished_recipients"]


@dataclass(frozen=True)
class Unfinished:
    """A queued or deferred recipient, with what routing needs to place it."""

    message_id: int
    idx: int
    sender: str
    address: str
    state: str
    destination: str | None
    """Where its last attempt went (None: never tried)."""
    last_reply: str | None
    arrived_at: float
    next_attempt_at: float | None
    released: bool = False
    """An admin released it from a hold: routing takes it past `hold` routes."""


ROUTABLE = (RecipientState.QUEUED, RecipientState.DEFERRED)
"""The states a reload may make due now; held mail waits for an admin whatever its route."""


def unfinished_recipients(
    conn: sqlite3.Connection, states: tuple[str, ...] = ROUTABLE
) -> list[Unfinished]:
    """Every recipient in one of `states`, oldest message first."""
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(
        "SELECT r.message_id, r.idx, m.sender, r.address, r.state, r.destination,"
        " r.last_reply, m.arrived_at, r.next_attempt_at, r.released"
        " FROM recipients r JOIN messages m ON m.id = r.message_id"
        f" WHERE r.state IN ({marks}) ORDER BY r.message_id, r.idx",
        tuple(str(s) for s in states),
    )
    return [
        Unfinished(mid, idx, sender, address, state, dest, reply, arrived, due, bool(released))
        for mid, idx, sender, address, state, dest, reply, arrived, due, released in rows
    ]


def make_due(conn: sqlite3.Connection, recipients: Iterable[tuple[int, int]], now: float) -> int:
    """Make these (message id, idx) recipients due at `now` if they are still deferred or
    queued and later than that; returns how many were moved (the writer's connection)."""
    moved = 0
    messages: set[int] = set()
    for message_id, idx in recipients:
        cur = conn.execute(
            "UPDATE recipients SET next_attempt_at = ?, updated_at = ?"
            " WHERE message_id = ? AND idx = ?"
            f" AND state IN ('{RecipientState.QUEUED}', '{RecipientState.DEFERRED}')"
            " AND (next_attempt_at IS NULL OR next_attempt_at > ?)",
            (now, now, message_id, idx, now),
        )
        if cur.rowcount:
            moved += 1
            messages.add(message_id)
    for message_id in messages:
        refresh_message(conn, message_id, now)
    return moved
