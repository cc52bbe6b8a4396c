"""One message in full: its envelope, recipients, headers, transcripts and attempts, or its bytes.

Read-only functions of a reader connection. The header block is parsed here for display only
(delivery never reads these headers).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from relaybox.message.headers import fields, parse_header, split_header
from relaybox.queue.listing import ROW_COLUMNS
from relaybox.queue.model import AttemptRow, MessageDetail, MessageRow, RecipientRow
from relaybox.queue.schema import decode_transcript

__all__ = ["message_data", "message_detail"]

# The most of a message read to show its headers; a longer header block is cut here.
_HEAD_BYTES = 65536


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
        "SELECT started_at, finished_at, destination, host, ip, port, tls, recipients,"
        " outcome, reply, transcript FROM attempts WHERE message_id = ? ORDER BY id",
        (base.id,),
    )
    attempts = tuple(
        AttemptRow(
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
        for a in attempt_rows
    )
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
