"""One message in full: its envelope, recipients, headers, transcripts and attempts, or its bytes.

Read-only functions of a reader connection. The header block is parsed here for display only
(delivery never reads these headers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from relaybox.message.headers import fields, parse_header, split_header
from relaybox.queue.listing import ROW_COLUMNS
from relaybox.queue.model import AttemptRow, MessageDetail, MessageRow, RecipientRow
from relaybox.queue.schema import decode_transcript

__all__ = ["RECENT_ATTEMPTS_SCANNED", "message_data", "message_detail", "recent_attempts"]

# The most of a message read to show its headers; a longer header block is cut here.
_HEAD_BYTES = 65536
_ATTEMPT_COLUMNS = (
    "a.started_at, a.finished_at, a.destination, a.host, a.ip, a.port, a.tls, a.recipients,"
    " a.outcome, a.reply, a.transcript"
)
RECENT_ATTEMPTS_SCANNED = 50_000
"""The newest attempts `recent_attempts` looks through (attempts have no index by
destination: a rare destination costs a bounded scan, not the whole history)."""


def _attempt(a: Sequence[Any]) -> AttemptRow:
    return AttemptRow(
        started_at=a[0],
        finished_at=a[1],
        destination=a[2],
        host=a[3],
        ip=a[4],
        port=a[5],
        tls=a[6],
        recipients=tuple(r for r in a[7].split("\n") if r),
        outcome=a[8],
        reply=a[9],
        transcript=decode_transcript(a[10]),
    )


def recent_attempts(
    conn: sqlite3.Connection, destination: str, limit: int
) -> list[tuple[str, AttemptRow]]:
    """The newest `limit` attempts to `destination` (among the last
    `RECENT_ATTEMPTS_SCANNED` of all), newest first, each with its message's queue ID."""
    rows = conn.execute(
        f"SELECT m.queue_id, {_ATTEMPT_COLUMNS} FROM attempts a"
        " JOIN messages m ON m.id = a.message_id"
        " WHERE a.destination = ? AND a.id > (SELECT COALESCE(MAX(id), 0) FROM attempts) - ?"
        " ORDER BY a.id DESC LIMIT ?",
        (destination, RECENT_ATTEMPTS_SCANNED, limit),
    )
    return [(row[0], _attempt(row[1:])) for row in rows]


def message_detail(conn: sqlite3.Connection, queue_id: str) -> MessageDetail | None:
    """Envelope, recipients, headers, inbound transcript and attempts of one message."""
    row = conn.execute(
        f"SELECT {ROW_COLUMNS}, m.listener, m.session_id, m.client_ip, m.client_port, m.helo,"
        " m.auth_user, m.tls, m.body_8bit, m.smtputf8, m.is_bounce FROM messages m"
        " WHERE m.queue_id = ?",
        (queue_id,),
    ).fetchone()
    if row is None:
        return None
    base = MessageRow(*row[:12])
    listener, session_id, client_ip, client_port, helo, auth_user, tls, b8, utf8, is_bounce = row[
        12:
    ]
    recipients = tuple(
        RecipientRow(*r)
        for r in conn.execute(
            "SELECT address, state, attempts, next_attempt_at, last_reply, updated_at"
            " FROM recipients WHERE message_id = ? ORDER BY idx",
            (base.id,),
        )
    )
    head = conn.execute(
        f"SELECT substr(data, 1, {_HEAD_BYTES}) FROM bodies WHERE message_id = ?", (base.id,)
    ).fetchone()
    headers: tuple[tuple[str, str], ...] = ()
    if head is not None:
        block, _ = split_header(bytes(head[0]))
        headers = fields(parse_header(block))
    session = conn.execute(
        "SELECT transcript FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    transcript = decode_transcript(session[0]) if session else ()
    attempt_rows = conn.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts a WHERE a.message_id = ? ORDER BY a.id",
        (base.id,),
    )
    attempts = tuple(_attempt(a) for a in attempt_rows)
    return MessageDetail(
        attempts=attempts,
        is_bounce=bool(is_bounce),
        row=base,
        recipients=recipients,
        listener=listener,
        session_id=session_id,
        client_ip=client_ip,
        client_port=client_port,
        helo=helo,
        auth_user=auth_user,
        tls=tls,
        body_8bit=bool(b8),
        smtputf8=bool(utf8),
        headers=headers,
        inbound_transcript=transcript,
    )


def message_data(conn: sqlite3.Connection, queue_id: str, limit: int | None) -> bytes | None:
    """The stored message bytes (at most `limit` of them), or None for an unknown queue ID."""
    if limit is None:
        sql = "SELECT b.data FROM bodies b JOIN messages m ON m.id = b.message_id"
        params: tuple[Any, ...] = (queue_id,)
    else:
        sql = "SELECT substr(b.data, 1, ?) FROM bodies b JOIN messages m ON m.id = b.message_id"
        params = (limit, queue_id)
    row = conn.execute(sql + " WHERE m.queue_id = ?", params).fetchone()
    return bytes(row[0]) if row else None
