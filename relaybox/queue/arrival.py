"""The rows a new message becomes (envelope, body, recipients) and its session's transcript.

Functions of the writer's connection, run inside its transaction; they never commit, so a
message is stored whole or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from relaybox.message.headers import subject_line
from relaybox.message.transcript import TranscriptLine
from relaybox.queue.model import MessageState, NewMessage, RecipientState, SpoolError
from relaybox.queue.schema import encode_transcript

__all__ = ["insert_message", "search_text", "upsert_session"]


def insert_message(conn: sqlite3.Connection, msg: NewMessage) -> tuple[int, str]:
    """Insert a message, its body and recipients (due at once); returns (row id, queue ID).

    Raises:
        SpoolError: the queue ID is already in the spool.
    """
    subject = subject_line(msg.data) if msg.subject is None else msg.subject
    try:
        cur = conn.execute(
            "INSERT INTO messages (queue_id, arrived_at, sender, size, state, rcpt_count,"
            " first_rcpt, next_attempt_at, session_id, listener, client_ip, client_port, helo,"
            " auth_user, tls, body_8bit, smtputf8, is_bounce, subject, search)"
            f" VALUES (?, ?, ?, ?, '{MessageState.QUEUED}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?)",
            (
                msg.queue_id,
                msg.arrived_at,
                msg.sender,
                len(msg.data),
                len(msg.recipients),
                msg.recipients[0],
                msg.arrived_at,
                msg.session_id,
                msg.listener,
                msg.client_ip,
                msg.client_port,
                msg.helo,
                msg.auth_user,
                msg.tls,
                int(msg.body_8bit),
                int(msg.smtputf8),
                int(msg.is_bounce),
                subject,
                search_text(msg.queue_id, msg.sender, msg.recipients, subject),
            ),
        )
    except sqlite3.IntegrityError:
        # The ID is already in the Received: header and the transcript, so it cannot change
        # here; only a clock set back can repeat one. The client retries (451).
        raise SpoolError(f"queue ID {msg.queue_id} is already in the spool") from None
    message_id = cur.lastrowid
    assert message_id is not None
    conn.execute("INSERT INTO bodies (message_id, data) VALUES (?, ?)", (message_id, msg.data))
    conn.executemany(
        "INSERT INTO recipients (message_id, idx, address, domain, state, next_attempt_at,"
        f" updated_at) VALUES (?, ?, ?, ?, '{RecipientState.QUEUED}', ?, ?)",
        [
            (message_id, i, rcpt, _domain(rcpt), msg.arrived_at, msg.arrived_at)
            for i, rcpt in enumerate(msg.recipients)
        ],
    )
    if msg.transcript:
        upsert_session(
            conn,
            msg.session_id,
            msg.transcript[0].at,
            None,
            msg.listener,
            msg.client_ip,
            msg.transcript,
        )
    return message_id, msg.queue_id


def search_text(queue_id: str, sender: str, recipients: Sequence[str], subject: str) -> str:
    """What a text filter looks in, but the last reply: the `search` column (and the trigram
    index's first column), kept as the salvage's SQL rebuilds it."""
    return " ".join((queue_id, sender, *recipients, subject))


def upsert_session(
    conn: sqlite3.Connection,
    session_id: str,
    started_at: float,
    ended_at: float | None,
    listener: str,
    client_ip: str,
    lines: Sequence[TranscriptLine],
) -> None:
    """Store a session's transcript, replacing what an earlier call stored for it."""
    conn.execute(
        # One writer applies writes in order, so a later call always carries the longer text.
        "INSERT OR REPLACE INTO sessions"
        " (session_id, started_at, ended_at, listener, client_ip, transcript)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, started_at, ended_at, listener, client_ip, encode_transcript(lines)),
    )


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()
