"""The suppression list: recipients mail is refused to (after a hard bounce, or by an admin).

Functions of a connection; the caller picks the reader or the writer. Addresses are stored
lower-cased, so every lookup ignores case.
"""

from __future__ import annotations

import sqlite3
import time

from relaybox.queue.model import SuppressionRow

__all__ = ["add", "entries", "lookup", "remove"]


def add(
    conn: sqlite3.Connection,
    address: str,
    reason: str,
    created_at: float,
    expires_at: float | None,
) -> None:
    """Add or replace the entry of `address` (the writer's connection)."""
    conn.execute(
        "INSERT OR REPLACE INTO suppressions (address, reason, created_at, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (address.lower(), reason, created_at, expires_at),
    )


def remove(conn: sqlite3.Connection, address: str) -> bool:
    """Remove the entry of `address`; False if there was none (the writer's connection)."""
    cur = conn.execute("DELETE FROM suppressions WHERE address = ?", (address.lower(),))
    return cur.rowcount > 0


def lookup(conn: sqlite3.Connection, address: str, at: float) -> str | None:
    """The reason `address` is suppressed at `at` and since when, or None (expired: None)."""
    row = conn.execute(
        "SELECT reason, created_at FROM suppressions WHERE address = ?"
        " AND (expires_at IS NULL OR expires_at > ?)",
        (address.lower(), at),
    ).fetchone()
    if row is None:
        return None
    since = time.strftime("%Y-%m-%d", time.gmtime(row[1]))
    return f"{row[0]} (since {since})"


def entries(conn: sqlite3.Connection) -> list[SuppressionRow]:
    """Every entry by address, expired ones included (housekeeping purges those)."""
    return [
        SuppressionRow(*r)
        for r in conn.execute(
            "SELECT address, reason, created_at, expires_at FROM suppressions ORDER BY address"
        )
    ]
