"""Admin actions on messages (retry, hold, release, delete) and the retention purge.

Functions of the writer's connection, run inside its transaction. Bouncing by an admin is not
here: it is recorded as an attempt's outcome (`outcomes.record_attempt`), DSN and all.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from relaybox.queue.listing import filter_terms, recipient_terms
from relaybox.queue.model import MessageFilter, MessageState, RecipientState
from relaybox.queue.outcomes import refresh_message
from relaybox.queue.schema import sql_list

__all__ = ["ACTIONS", "check_action", "purge_finished", "update_recipients"]

#: What `update_recipients` can do.
ACTIONS = ("retry", "hold", "release", "delete")

_PENDING = sql_list((RecipientState.QUEUED, RecipientState.DEFERRED))


def check_action(action: str) -> None:
    """Refuse an unknown action before anything is written.

    Raises:
        ValueError: `action` is not one of `ACTIONS`.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")


def update_recipients(
    conn: sqlite3.Connection, flt: MessageFilter, action: str, now: float
) -> list[str]:
    """Apply an admin action to every matching message; returns the queue IDs touched.

    `retry`: pending recipients due now; `hold`: pending ones held until released;
    `release`: held ones due now; `delete`: the messages, whole (a message is never cut down
    to some of its recipients). `flt.domain` and `flt.recipients` narrow the other actions to
    the recipients they name.
    """
    changes: dict[str, tuple[str, str, list[Any]]] = {
        "retry": (f"state IN {_PENDING}", "next_attempt_at = ?", [now]),
        "hold": (f"state IN {_PENDING}", f"state = '{RecipientState.HELD}'", []),
        "release": (
            f"state = '{RecipientState.HELD}'",
            f"state = '{RecipientState.QUEUED}', next_attempt_at = ?, released = 1",
            [now],
        ),
    }
    where, params = filter_terms(flt)
    sql = "SELECT m.id, m.queue_id FROM messages m"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql, params).fetchall()
    if action == "delete":
        conn.executemany("DELETE FROM messages WHERE id = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows]
    which, setting, values = changes[action]
    narrow, narrow_params = recipient_terms(flt, "recipients")
    which = " AND ".join([which, *narrow])
    touched = []
    for message_id, queue_id in rows:
        cur = conn.execute(
            f"UPDATE recipients SET {setting}, updated_at = ? WHERE message_id = ? AND {which}",
            [*values, now, message_id, *narrow_params],
        )
        if cur.rowcount:
            refresh_message(conn, message_id, now)
            touched.append(queue_id)
    return touched


def purge_finished(conn: sqlite3.Connection, before: float, expired_by: float) -> int:
    """Delete messages finished before `before`, their old sessions, and suppression entries
    expired by `expired_by`; returns how many messages went."""
    total = 0
    for state in (MessageState.DELIVERED, MessageState.BOUNCED):
        total += conn.execute(
            "DELETE FROM messages WHERE state = ? AND finished_at < ?", (state, before)
        ).rowcount
    conn.execute(
        "DELETE FROM sessions WHERE started_at < ? AND session_id NOT IN"
        " (SELECT session_id FROM messages)",
        (before,),
    )
    conn.execute(
        "DELETE FROM suppressions WHERE expires_at IS NOT NULL AND expires_at < ?",
        (expired_by,),
    )
    return total
