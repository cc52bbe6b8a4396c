"""What the queue and UI tests share: a message as the inbound side hands it over, a spool
written with no engine, a way to set stored columns (through the private `Spool._write`), the
queue IDs a filter lists, and the order SQLite lists rows in."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relaybox.admin.service import Admin
from relaybox.queue import SORT_COLUMNS, MessageFilter, MessageRow, NewMessage, Spool
from relaybox.statedir import DATABASE_NAME, IDENTITY_NAME, ensure_state_dir

MESSAGE = (
    b"Received: from client.example.test ([127.0.0.1]) by relay.example.test\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello,\r\n\xc3\xa9t\xc3\xa9 in 8 bits, a NUL \x00 and a lone dot:\r\n.\r\n"
)


def new_message(**overrides: Any) -> NewMessage:
    """A message as the inbound side would hand it over; `overrides` replace fields."""
    base = NewMessage(
        sender="alice@example.com",
        recipients=("bob@example.org", "carol@example.net"),
        data=MESSAGE,
        session_id="S1",
        listener="127.0.0.1:2525",
        client_ip="127.0.0.1",
        client_port=40000,
        helo="client.example.test",
        auth_user=None,
        tls=None,
        body_8bit=True,
        smtputf8=False,
        arrived_at=1_800_000_000.0,
    )
    return dataclasses.replace(base, **overrides)


def insert_old_messages(conn: sqlite3.Connection, numbers: Iterable[int]) -> None:
    """Messages as a spool of schema version 3 or later holds them, written with SQL (the
    current code writes columns an old schema lacks): message `n` is `0OLDQUEUEID0n` from
    `appn@office.example` to `firstn@a.example` and `secondn@b.example`. From version 4 on,
    its text filter column is filled as the migration fills it."""
    for n in numbers:
        conn.execute(
            "INSERT INTO messages (id, queue_id, arrived_at, sender, size, state, rcpt_count,"
            " first_rcpt, session_id, listener, client_ip, client_port, helo, body_8bit,"
            " smtputf8, is_bounce) VALUES (?, ?, 1.0, ?, 10, 'queued', 2, ?, 'S1', 'l',"
            " '127.0.0.1', 1, 'h', 0, 0, 0)",
            (n, f"0OLDQUEUEID0{n}", f"app{n}@office.example", f"first{n}@a.example"),
        )
        conn.executemany("INSERT INTO bodies (message_id, data) VALUES (?, ?)", [(n, MESSAGE)])
        conn.executemany(
            "INSERT INTO recipients (message_id, idx, address, domain, state, updated_at)"
            " VALUES (?, ?, ?, ?, 'queued', 1.0)",
            [
                (n, 0, f"first{n}@a.example", "a.example"),
                (n, 1, f"second{n}@b.example", "b.example"),
            ],
        )
    if "search" in {row[1] for row in conn.execute("PRAGMA table_info(messages)")}:
        conn.execute(
            "UPDATE messages SET search = queue_id || ' ' || sender || ' ' || (SELECT"
            " group_concat(address, ' ') FROM recipients r WHERE r.message_id = messages.id)"
        )


def store_offline(state_dir: Path, *messages: NewMessage) -> list[str]:
    """Store `messages` in the spool of `state_dir` as an engine would have (identity file
    included), with no engine running; returns their queue IDs."""

    async def store() -> list[str]:
        ensure_state_dir(state_dir)
        spool = await Spool.open(state_dir / DATABASE_NAME, identity=state_dir / IDENTITY_NAME)
        try:
            return [await spool.store_message(message) for message in messages]
        finally:
            await spool.close()

    return asyncio.run(store())


async def set_column(spool: Spool, sql: str) -> None:
    """Change stored rows the way delivery will (it has no public API yet)."""
    await spool._write(lambda conn: conn.execute(sql))


async def check_trigram_indexes(spool: Spool) -> None:
    """FTS5's own check that the trigram index of `search` holds exactly what the messages
    table does (it raises if not), and that the index of replies holds the last reply of
    each message not delivered, and no other: every trigram of each, and nothing more."""
    await spool._write(
        lambda conn: conn.execute(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"
        )
    )
    await spool._write(
        lambda conn: conn.execute(
            "INSERT INTO replies_fts (replies_fts) VALUES ('integrity-check')"
        )
    )

    def replies(conn: sqlite3.Connection) -> tuple[set[int], set[int]]:
        want = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM messages WHERE last_reply IS NOT NULL AND state <> 'delivered'"
            )
        }
        found: set[int] = set()
        for (term,) in conn.execute(
            "SELECT DISTINCT substr(last_reply, 1, 3) FROM messages WHERE length(last_reply) >= 3"
        ):
            found |= {
                row[0]
                for row in conn.execute(
                    "SELECT rowid FROM replies_fts WHERE replies_fts MATCH ?",
                    ('"' + term.replace('"', '""') + '"',),
                )
            }
        return want, found

    want, found = await spool._read(replies)
    assert found == want, (found, want)


async def queue_ids_matching(spool: Spool, flt: MessageFilter) -> set[str]:
    """The queue IDs of every message `flt` lists, through the admin layer as the UI sees them."""
    return {r.queue_id for r in await Admin(spool).list_all(flt)}


def sort_key(row: MessageRow, sort: str) -> tuple[bool, Any, int]:
    """SQLite's order: NULLs first, then values, ties broken by row id."""
    value = getattr(row, SORT_COLUMNS[sort])
    return (value is not None, value, row.id)
