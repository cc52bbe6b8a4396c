"""What an attempt did to a message: its attempts recorded, its recipients' states moved on.

Holds the state machine: a recipient's state changes here (or by an admin action, in
`actions`), and a message's state is always derived from its recipients' by `refresh_message`.
Functions of the writer's connection, run inside its transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from relaybox.queue import suppression
from relaybox.queue.arrival import insert_message
from relaybox.queue.model import (
    AttemptRow,
    MessageState,
    NewMessage,
    RecipientOutcome,
    RecipientState,
)
from relaybox.queue.schema import encode_transcript, sql_list

__all__ = ["record_attempt", "record_delivered", "recover_active", "refresh_message"]

# Recipients no attempt or admin action changes any more.
_FINISHED = (RecipientState.DELIVERED, RecipientState.BOUNCED)
# Recipients an attempt may send to (or an admin retry or hold).
_PENDING = (RecipientState.QUEUED, RecipientState.DEFERRED)

# Conditions on an attempt's recipient updates (see `record_attempt`).
_RECIPIENT_UPDATE = (
    "UPDATE recipients SET state = ?, last_reply = ?, next_attempt_at = ?,"
    " destination = COALESCE(?, destination), attempts = attempts + ?,"
    " updated_at = ? WHERE message_id = ? AND idx = ?"
)
_NOT_FINISHED = f" AND state NOT IN {sql_list(_FINISHED)}"
_STILL_PENDING = f" AND state IN {sql_list(_PENDING)}"

# A message's state is that of the first of these its recipients have (then delivered):
# one recipient held holds the message's state, one deferred outranks those queued.
_PRECEDENCE = (
    (RecipientState.HELD, MessageState.HELD),
    (RecipientState.DEFERRED, MessageState.DEFERRED),
    (RecipientState.QUEUED, MessageState.QUEUED),
    (RecipientState.BOUNCED, MessageState.BOUNCED),
)


def record_attempt(
    conn: sqlite3.Connection,
    message_id: int,
    outcomes: Sequence[RecipientOutcome],
    attempts: Sequence[AttemptRow],
    *,
    now: float,
    new_messages: Sequence[NewMessage],
    suppress: Sequence[tuple[str, str, float | None]],
    warned: bool,
    signatures: Mapping[str, bytes] | None,
) -> bool:
    """Record an attempt's outcome with the DSNs and suppressions it caused (one transaction).

    What the attempt learnt for good (delivered, bounced) is recorded whatever an admin did
    meanwhile; a deferral or a route's hold only replaces a recipient still queued or
    deferred, so an admin's hold made during the attempt stands. Returns False, writing
    nothing, when the message was deleted meanwhile.
    """
    exists = conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone()
    if exists is None:
        return False
    for attempt in attempts:
        conn.execute(
            "INSERT INTO attempts (message_id, started_at, finished_at, destination,"
            " host, ip, port, tls, recipients, outcome, reply, transcript)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                attempt.started_at,
                attempt.finished_at,
                attempt.destination,
                attempt.host,
                attempt.ip,
                attempt.port,
                attempt.tls,
                "\n".join(attempt.recipients),
                attempt.outcome,
                attempt.reply,
                encode_transcript(attempt.transcript),
            ),
        )
    for final in (True, False):
        conn.executemany(
            _RECIPIENT_UPDATE + (_NOT_FINISHED if final else _STILL_PENDING),
            [
                (
                    o.state,
                    o.reply,
                    o.next_attempt_at,
                    o.destination,
                    int(o.attempted),
                    now,
                    message_id,
                    o.idx,
                )
                for o in outcomes
                if (o.state in _FINISHED) == final
            ],
        )
    if warned:
        conn.execute("UPDATE messages SET warned_at = ? WHERE id = ?", (now, message_id))
    if signatures:
        conn.executemany(
            "INSERT OR IGNORE INTO signatures (message_id, variant, header) VALUES (?, ?, ?)",
            [(message_id, variant, header) for variant, header in signatures.items()],
        )
    refresh_message(conn, message_id, now)
    for msg in new_messages:
        insert_message(conn, msg)
    for address, reason, expires in suppress:
        suppression.add(conn, address, reason, now, expires)
    return True


def record_delivered(
    conn: sqlite3.Connection,
    message_id: int,
    outcomes: Sequence[RecipientOutcome],
    *,
    now: float,
) -> None:
    """Mark the recipients the next hop has just taken delivered, ahead of the whole attempt.

    Written as soon as the next hop's 250 is read and before another transaction starts on
    that connection, so that a crash sends again at most the transactions in flight; the
    attempt's transcript, its other recipients and any DSN follow in `record_attempt`, which
    leaves these alone (they are finished) and derives the message's state: until then it
    reads as before, as if the attempt were still running. (After a crash in between, the
    scheduler finds nothing left to send to and `refresh_message` puts that right.) A
    recipient already finished, or a message deleted meanwhile, is left as it is.
    """
    conn.executemany(
        _RECIPIENT_UPDATE + _NOT_FINISHED,
        [
            (o.state, o.reply, None, o.destination, 1, now, message_id, o.idx)
            for o in outcomes
            if o.state == "delivered"
        ],
    )


def recover_active(conn: sqlite3.Connection, now: float) -> int:
    """Put messages left `active` (by a crash) back to what their recipients say; how many."""
    ids = [
        r[0] for r in conn.execute(f"SELECT id FROM messages WHERE state = '{MessageState.ACTIVE}'")
    ]
    for message_id in ids:
        refresh_message(conn, message_id, now)
    return len(ids)


def refresh_message(conn: sqlite3.Connection, message_id: int, now: float) -> None:
    """Derive a message's state from its recipients': held > deferred > queued > finished.

    Also its next attempt (the soonest of its queued or deferred recipients'), its attempt
    count, last reply and, once finished, when it finished. (`active` would be set and
    cleared around an attempt by the scheduler, above all of these.)
    """
    counts: dict[str, int] = {}
    for state, n in conn.execute(
        "SELECT state, COUNT(*) FROM recipients WHERE message_id = ? GROUP BY state",
        (message_id,),
    ):
        counts[state] = n
    next_at, attempts = conn.execute(
        f"SELECT MIN(CASE WHEN state IN {sql_list(_PENDING)} THEN next_attempt_at END),"
        " MAX(attempts) FROM recipients WHERE message_id = ?",
        (message_id,),
    ).fetchone()
    last = conn.execute(
        "SELECT last_reply FROM recipients WHERE message_id = ? AND last_reply IS NOT NULL"
        f" ORDER BY state IN ('{RecipientState.DELIVERED}') , updated_at DESC LIMIT 1",
        (message_id,),
    ).fetchone()
    state = next(
        (message for recipient, message in _PRECEDENCE if counts.get(recipient)),
        MessageState.DELIVERED,
    )
    finished = state in (MessageState.DELIVERED, MessageState.BOUNCED)
    conn.execute(
        "UPDATE messages SET state = ?, next_attempt_at = ?, attempts = ?, last_reply = ?,"
        " finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) END WHERE id = ?",
        (
            state,
            None if finished else next_at,
            attempts or 0,
            last[0] if last else None,
            finished,
            now,
            message_id,
        ),
    )
