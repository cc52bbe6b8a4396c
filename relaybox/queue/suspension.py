"""Suspended destinations: next hops an admin holds back until a time, and resuming them.

Functions of a connection; the caller picks the reader or the writer. The scheduler decides
what a suspension means for an attempt; this only stores it.
"""

from __future__ import annotations

import sqlite3

from relaybox.message.replies import Reply
from relaybox.queue.model import RecipientState
from relaybox.queue.outcomes import refresh_message

__all__ = ["resume", "retry_destination", "suspend", "suspended"]


def suspend(
    conn: sqlite3.Connection, destination: str, until: float, reason: str, now: float
) -> list[str]:
    """Hold back delivery to `destination` until `until`; the queue IDs it defers.

    Its deferred recipients say so at once (the suspension's reply, next attempt not before
    `until`), as their next attempt would have: the queue and the inspector show "suspended
    by the admin" from now on, not after a retry that may be hours away (the writer's
    connection).
    """
    conn.execute(
        "INSERT OR REPLACE INTO suspended (destination, until, reason) VALUES (?, ?, ?)",
        (destination, until, reason),
    )
    touched = _deferred_to(conn, destination)
    conn.execute(
        "UPDATE recipients SET last_reply = ?, updated_at = ?,"
        " next_attempt_at = MAX(COALESCE(next_attempt_at, 0), ?)"
        f" WHERE state = '{RecipientState.DEFERRED}' AND destination = ?",
        (Reply.suspended(destination, reason), now, until, destination),
    )
    for message_id, _ in touched:
        refresh_message(conn, message_id, now)
    return [queue_id for _, queue_id in touched]


def _deferred_to(conn: sqlite3.Connection, destination: str) -> list[tuple[int, str]]:
    """(row id, queue ID) of the messages with a recipient deferred at `destination`."""
    return conn.execute(
        "SELECT DISTINCT r.message_id, m.queue_id FROM recipients r"
        " JOIN messages m ON m.id = r.message_id"
        f" WHERE r.state = '{RecipientState.DEFERRED}' AND r.destination = ?",
        (destination,),
    ).fetchall()


def resume(conn: sqlite3.Connection, destination: str) -> bool:
    """Lift a suspension; False if there was none (the writer's connection)."""
    cur = conn.execute("DELETE FROM suspended WHERE destination = ?", (destination,))
    return cur.rowcount > 0


def retry_destination(conn: sqlite3.Connection, destination: str, now: float) -> list[str]:
    """Make every deferred recipient bound for `destination` due now; the queue IDs touched.

    By recipient, whatever the message's last reply (the writer's connection).
    """
    rows = _deferred_to(conn, destination)
    conn.execute(
        "UPDATE recipients SET next_attempt_at = ?, updated_at = ?"
        f" WHERE state = '{RecipientState.DEFERRED}' AND destination = ?",
        (now, now, destination),
    )
    for message_id, _ in rows:
        refresh_message(conn, message_id, now)
    return [queue_id for _, queue_id in rows]


def suspended(conn: sqlite3.Connection) -> dict[str, tuple[float, str]]:
    """Suspended destinations: until when, and why."""
    return {
        d: (until, reason)
        for d, until, reason in conn.execute("SELECT destination, until, reason FROM suspended")
    }
