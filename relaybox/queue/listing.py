"""Which messages a filter selects, in which order, a page at a time (keyset pagination).

Read-only functions of a reader connection: the WHERE terms of a `MessageFilter`, the sort
columns, and the listings and counts built on them. Nothing here writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from relaybox.queue.model import (
    ALL_STATES,
    MessageFilter,
    MessageRow,
    MessageState,
    Overview,
    RecipientRow,
)

__all__ = [
    "ROW_COLUMNS",
    "SORT_COLUMNS",
    "count_by_state",
    "count_messages",
    "filter_terms",
    "list_messages",
    "message_id_page",
    "message_ids",
    "overview",
    "recipient_terms",
    "recipients_of",
    "rows_by_id",
    "sort_column",
]

#: What `list_messages` can sort by, and the column behind each name.
SORT_COLUMNS: dict[str, str] = {
    "arrived": "arrived_at",
    "id": "queue_id",
    "sender": "sender",
    "size": "size",
    "state": "state",
    "attempts": "attempts",
    "next_attempt": "next_attempt_at",
    "recipients": "first_rcpt",
    "last_reply": "last_reply",
}

# The sortable columns that may be NULL; keyset conditions on them need NULL-aware segments.
_NULLABLE_SORT_COLUMNS = frozenset({"next_attempt_at", "last_reply"})

#: The columns of a `MessageRow`, in its field order (messages aliased `m`).
ROW_COLUMNS = (
    "m.id, m.queue_id, m.arrived_at, m.sender, m.size, m.state, m.rcpt_count, m.first_rcpt, "
    "m.attempts, m.next_attempt_at, m.last_reply"
)

# IN (...) lists and id batches stay under SQLite's limit on host parameters.
_CHUNK = 500


def sort_column(sort: str) -> str:
    """The column behind a sort name.

    Raises:
        ValueError: `sort` is not one of `SORT_COLUMNS`.
    """
    column = SORT_COLUMNS.get(sort)
    if column is None:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_COLUMNS)}")
    return column


def recipient_terms(flt: MessageFilter, alias: str = "r") -> tuple[list[str], list[Any]]:
    """Conditions on a recipient row for the recipient parts of `flt` (domain, addresses)."""
    terms: list[str] = []
    params: list[Any] = []
    if flt.domain:
        terms.append(f"{alias}.domain = ?")
        params.append(flt.domain.lower().rstrip("."))
    if flt.recipients:
        terms.append(f"lower({alias}.address) IN ({', '.join('?' * len(flt.recipients))})")
        params.extend(a.strip().lower() for a in flt.recipients)
    return terms, params


def filter_terms(flt: MessageFilter, *, states: bool = True) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters for `flt` (without the states when `states` is False)."""
    where: list[str] = []
    params: list[Any] = []
    if states and flt.states:
        where.append(f"m.state IN ({', '.join('?' * len(flt.states))})")
        params.extend(flt.states)
    if flt.queue_ids:
        where.append(f"m.queue_id IN ({', '.join('?' * len(flt.queue_ids))})")
        params.extend(flt.queue_ids)
    rcpt_terms, rcpt_params = recipient_terms(flt)
    if rcpt_terms:
        where.append(
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND "
            + " AND ".join(rcpt_terms)
            + ")"
        )
        params.extend(rcpt_params)
    if flt.text:
        pattern = "%" + flt.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # `search` holds the queue ID, the sender and every recipient (see migration 3 -> 4).
        where.append("(m.search LIKE ? ESCAPE '\\' OR m.last_reply LIKE ? ESCAPE '\\')")
        params.extend([pattern] * 2)
    return where, params


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Number of messages in each state."""
    rows = conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state")
    return {state: n for state, n in rows}


def overview(conn: sqlite3.Connection, since: float) -> Overview:
    """Counts by state, finished since `since`, and the oldest deferred, in one snapshot."""
    conn.execute("BEGIN")
    try:
        by_state = dict(conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"))
        finished = {
            state: conn.execute(
                "SELECT COUNT(*) FROM messages WHERE state = ? AND finished_at >= ?",
                (state, since),
            ).fetchone()[0]
            for state in (MessageState.DELIVERED, MessageState.BOUNCED)
        }
        oldest = conn.execute(
            f"SELECT MIN(arrived_at) FROM messages WHERE state = '{MessageState.DEFERRED}'"
        ).fetchone()[0]
    finally:
        conn.execute("COMMIT")
    return Overview(
        by_state, finished[MessageState.DELIVERED], finished[MessageState.BOUNCED], oldest
    )


def message_ids(
    conn: sqlite3.Connection, flt: MessageFilter, column: str, descending: bool
) -> list[int]:
    """The row ids of every matching message, in `column` order (then row id)."""
    where, params = filter_terms(flt)
    order = "DESC" if descending else "ASC"
    sql = "SELECT m.id FROM messages m"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY m.{column} {order}, m.id {order}"
    return [r[0] for r in conn.execute(sql, params)]


def message_id_page(
    conn: sqlite3.Connection,
    flt: MessageFilter,
    column: str,
    descending: bool,
    after: tuple[Any, int] | None,
    limit: int,
) -> list[tuple[Any, int]]:
    """(sort value, row id) of the next `limit` messages after `after`, in `message_ids` order."""
    where, params = filter_terms(flt)
    order = "DESC" if descending else "ASC"
    found: list[tuple[Any, int]] = []
    conn.execute("BEGIN")  # one snapshot for the segments of this window
    try:
        for condition, condition_params in _keyset_segments(column, descending, after):
            terms = [*where, condition] if condition else where
            sql = f"SELECT m.{column}, m.id FROM messages m"
            if terms:
                sql += " WHERE " + " AND ".join(terms)
            sql += f" ORDER BY m.{column} {order}, m.id {order} LIMIT ?"
            rows = conn.execute(sql, [*params, *condition_params, limit - len(found)])
            found.extend((value, message_id) for value, message_id in rows)
            if len(found) >= limit:
                break
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
    return found


def rows_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, MessageRow]:
    """The listing rows of these messages (those that still exist), by row id."""
    wanted = list(dict.fromkeys(ids))
    found: dict[int, MessageRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        sql = f"SELECT {ROW_COLUMNS} FROM messages m WHERE m.id IN ({', '.join('?' * len(chunk))})"
        for r in conn.execute(sql, chunk):
            found[r[0]] = MessageRow(*r)
    return found


def list_messages(
    conn: sqlite3.Connection,
    flt: MessageFilter,
    column: str,
    descending: bool,
    after: tuple[Any, int] | None,
    limit: int,
) -> list[MessageRow]:
    """A page of messages matching `flt`, ordered by `column` then row id, after `after`.

    Every query is a range of one index (see the first migration), so a page of a 100k queue
    costs a few milliseconds whatever the sort.
    """
    segments = _keyset_segments(column, descending, after)
    order = "DESC" if descending else "ASC"
    base_where, base_params = filter_terms(flt, states=False)
    # One query per state, merged below: `state IN (a, b)` cannot walk the
    # (state, column, id) index in order, `state = ?` can (no sort of the whole queue).
    # Every index leads with the state (each costs every insert: keep them few), so "all
    # states" is each state in turn too.
    states: tuple[str, ...] = tuple(dict.fromkeys(flt.states)) or ALL_STATES
    rows: list[MessageRow] = []
    conn.execute("BEGIN")  # one snapshot for all the queries of this page
    try:
        for state in states:
            found = 0
            for condition, condition_params in segments:
                where, params = list(base_where), list(base_params)
                where.insert(0, "m.state = ?")
                params.insert(0, state)
                if condition:
                    where.append(condition)
                    params.extend(condition_params)
                sql = f"SELECT {ROW_COLUMNS} FROM messages m"
                if where:
                    sql += " WHERE " + " AND ".join(where)
                sql += f" ORDER BY m.{column} {order}, m.id {order} LIMIT ?"
                params.append(limit - found)
                page = [MessageRow(*r) for r in conn.execute(sql, params)]
                rows.extend(page)
                found += len(page)
                if found >= limit:
                    break
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
    if len(states) > 1:
        rows.sort(key=lambda row: _sort_key(row, column), reverse=descending)
    return rows[:limit]


def count_messages(conn: sqlite3.Connection, flt: MessageFilter) -> int:
    """How many messages match `flt`."""
    where, params = filter_terms(flt)
    sql = "SELECT COUNT(*) FROM messages m"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return int(conn.execute(sql, params).fetchone()[0])


def recipients_of(
    conn: sqlite3.Connection, message_ids: Sequence[int]
) -> dict[int, list[RecipientRow]]:
    """Recipients of many messages at once (for listings that show them)."""
    out: dict[int, list[RecipientRow]] = {i: [] for i in message_ids}
    ids = list(message_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT message_id, address, state, attempts, next_attempt_at, last_reply,"
            f" updated_at FROM recipients WHERE message_id IN ({marks})"
            " ORDER BY message_id, idx",
            chunk,
        )
        for r in rows:
            out[r[0]].append(RecipientRow(*r[1:]))
    return out


def _keyset_segments(
    column: str, descending: bool, after: tuple[Any, int] | None
) -> list[tuple[str, list[Any]]]:
    """Conditions that, taken in turn, select the rows after `after` in listing order.

    Each is a plain range on (column, id), so every query is one index range. SQLite sorts
    NULLs first: ascending, the non-NULL values follow the NULLs; descending, the NULLs
    come last.
    """
    if after is None:
        return [("", [])]
    cmp = "<" if descending else ">"
    value, last_id = after
    if value is None:
        same = (f"m.{column} IS NULL AND m.id {cmp} ?", [last_id])
        return [same] if descending else [same, (f"m.{column} IS NOT NULL", [])]
    rest = (f"(m.{column}, m.id) {cmp} (?, ?)", [value, last_id])
    if descending and column in _NULLABLE_SORT_COLUMNS:
        return [rest, (f"m.{column} IS NULL", [])]
    return [rest]


def _sort_key(row: MessageRow, column: str) -> tuple[bool, Any, int]:
    """The SQL order of `row` (NULLs first, then values, then id) for merging pages."""
    value = getattr(row, column)  # MessageRow's fields are named as the columns
    return (value is not None, value, row.id)
