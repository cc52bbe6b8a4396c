"""What delivery reads: which messages are due, when the next falls due, and one loaded as a job.

Read-only functions of a reader connection; what an attempt changes is recorded by `outcomes`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Set

from relaybox.queue.model import DeliveryJob, MessageState, PendingRecipient, RecipientState
from relaybox.queue.schema import sql_list

__all__ = ["due_messages", "load_job", "next_due_at"]

# Message states that can have a recipient due. A held message may too: one recipient held
# does not hold back the others, and its `next_attempt_at` is that of its queued or deferred
# recipients only (NULL when all are held), see `outcomes.refresh_message`.
_DUE_STATES = (MessageState.QUEUED, MessageState.DEFERRED, MessageState.HELD)

# The recipient states an attempt sends to.
_SENDABLE = sql_list((RecipientState.QUEUED, RecipientState.DEFERRED))


def due_messages(conn: sqlite3.Connection, now: float, limit: int, skip: Set[int]) -> list[int]:
    """Row ids of messages with a recipient whose next attempt is due, soonest first."""
    found: list[tuple[float, int]] = []
    for state in _DUE_STATES:
        rows = conn.execute(
            "SELECT next_attempt_at, id FROM messages WHERE state = ?"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (state, now, limit + len(skip)),
        )
        found.extend((at, mid) for at, mid in rows if mid not in skip)
    found.sort()
    return [mid for _, mid in found[:limit]]


def next_due_at(conn: sqlite3.Connection) -> float | None:
    """When the next message with a queued or deferred recipient falls due (None: none waits)."""
    times = [
        conn.execute(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state = ?", (state,)
        ).fetchone()[0]
        for state in _DUE_STATES
    ]
    due = [t for t in times if t is not None]
    return min(due) if due else None


def load_job(conn: sqlite3.Connection, message_id: int, now: float) -> DeliveryJob | None:
    """A message and its recipients due by `now`; None if it is gone or nothing is due."""
    row = conn.execute(
        "SELECT m.queue_id, m.sender, m.arrived_at, b.data, m.body_8bit, m.smtputf8,"
        " m.is_bounce, m.warned_at FROM messages m JOIN bodies b ON b.message_id = m.id"
        " WHERE m.id = ?",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    recipients = tuple(
        PendingRecipient(idx, address, state, attempts, reply, bool(released))
        for idx, address, state, attempts, reply, released in conn.execute(
            "SELECT idx, address, state, attempts, last_reply, released FROM recipients"
            f" WHERE message_id = ? AND state IN {_SENDABLE}"
            " AND next_attempt_at <= ? ORDER BY idx",
            (message_id, now),
        )
    )
    if not recipients:
        return None
    queue_id, sender, arrived_at, data, b8, utf8, bounce, warned = row
    signatures = {
        variant: bytes(header)
        for variant, header in conn.execute(
            "SELECT variant, header FROM signatures WHERE message_id = ?", (message_id,)
        )
    }
    return DeliveryJob(
        message_id,
        queue_id,
        sender,
        arrived_at,
        bytes(data),
        bool(b8),
        bool(utf8),
        bool(bounce),
        warned,
        recipients,
        signatures,
    )
