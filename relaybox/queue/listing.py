"""Which messages a filter selects, in which order, a page at a time (keyset pagination).

Read-only functions of a reader connection: the WHERE terms of a `MessageFilter`, the sort
columns, and the listings and counts built on them. Nothing here writes.
"""

from __future__ import annotations

import json
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
    "FEW_MATCHES",
    "SORT_COLUMNS",
    "TRIGRAM",
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
    "m.attempts, m.next_attempt_at, m.last_reply, m.subject"
)

# IN (...) lists and id batches stay under SQLite's limit on host parameters.
_CHUNK = 500

TRIGRAM = 3
"""A text filter this long or longer is looked up in the trigram indexes (`messages_fts`,
`replies_fts`);
a shorter one has no trigram to look up and is checked against every message (LIKE)."""

FEW_MATCHES = 1000
"""Up to this many messages holding a text filter's trigrams (in the filter's states), a
listing starts from them, looked up and then sorted (a few milliseconds). More, and it walks
the sort's index checking each message instead, as without the index: with that many
matches a page of 60 fills within some 6,000 rows of 100,000, where looking up and sorting
them all would cost more."""

_MESSAGES = "messages m"


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
        # `search` holds the queue ID, the sender, every recipient and the subject (see the
        # migrations 3 -> 4 and 6 -> 7).
        where.append("(m.search LIKE ? ESCAPE '\\' OR m.last_reply LIKE ? ESCAPE '\\')")
        params.extend([pattern] * 2)
    return where, params


def trigram_query(text: str) -> str:
    """The trigram index's query for the messages that may contain `text`: every trigram of
    it, each quoted (FTS5 syntax in the text is only text)."""
    trigrams = dict.fromkeys(text[i : i + TRIGRAM] for i in range(len(text) - TRIGRAM + 1))
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in trigrams)


def _source(conn: sqlite3.Connection, flt: MessageFilter) -> tuple[str, list[Any]]:
    """The FROM clause a listing of `flt` reads from, and its parameters: the messages the
    trigram indexes found, when there are few (see `FEW_MATCHES`), else every message.

    The indexes only narrow (a message holding every trigram of the text, in any order, in
    any case): `filter_terms` still checks its LIKE on every message listed, so both ways
    select exactly the same messages. CROSS JOIN makes SQLite start from the matches. A view
    with delivered messages in it reads every message: their last replies are not indexed.
    """
    text = flt.text
    if len(text) < TRIGRAM or not flt.states or MessageState.DELIVERED in flt.states:
        return _MESSAGES, []  # (delivered messages' replies are not in `replies_fts`)
    query = trigram_query(text)
    hits: set[int] = set()
    for index in ("messages_fts", "replies_fts"):
        sql = (
            f"SELECT {index}.rowid FROM {index} CROSS JOIN messages m ON m.id = {index}.rowid"
            f" WHERE {index} MATCH ?"
        )
        params: list[Any] = [query]
        sql += f" AND m.state IN ({', '.join('?' * len(flt.states))})"
        params.extend(flt.states)
        try:
            hits.update(r[0] for r in conn.execute(sql + " LIMIT ?", [*params, FEW_MATCHES + 1]))
        except sqlite3.OperationalError:  # no index (a spool being salvaged), a query refused
            return _MESSAGES, []
        if len(hits) > FEW_MATCHES:
            return _MESSAGES, []
    return "json_each(?) AS hit CROSS JOIN messages m ON m.id = hit.value", [
        json.dumps(sorted(hits))
    ]


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
    conn.execute("BEGIN")  # the matches and the listing from one snapshot
    try:
        source, params = _source(conn, flt)
        where, where_params = filter_terms(flt)
        order = "DESC" if descending else "ASC"
        sql = f"SELECT m.id FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY m.{column} {order}, m.id {order}"
        return [r[0] for r in conn.execute(sql, [*params, *where_params])]
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


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
        source, source_params = _source(conn, flt)
        for condition, condition_params in _keyset_segments(column, descending, after):
            terms = [*where, condition] if condition else where
            sql = f"SELECT m.{column}, m.id FROM {source}"
            if terms:
                sql += " WHERE " + " AND ".join(terms)
            sql += f" ORDER BY m.{column} {order}, m.id {order} LIMIT ?"
            rows = conn.execute(
                sql, [*source_params, *params, *condition_params, limit - len(found)]
            )
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
        source, source_params = _source(conn, flt)
        if source != _MESSAGES:
            # A few matches: one query sorts them all, whatever their states.
            base_where, base_params = filter_terms(flt)
            states = ("",)
        for state in states:
            found = 0
            for condition, condition_params in segments:
                where, params = list(base_where), [*source_params, *base_params]
                if state:
                    where.insert(0, "m.state = ?")
                    params.insert(len(source_params), state)
                if condition:
                    where.append(condition)
                    params.extend(condition_params)
                sql = f"SELECT {ROW_COLUMNS} FROM {source}"
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
    conn.execute("BEGIN")  # the matches and the count from one snapshot
    try:
        source, params = _source(conn, flt)
        where, where_params = filter_terms(flt)
        sql = f"SELECT COUNT(*) FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(conn.execute(sql, [*params, *where_params]).fetchone()[0])
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


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
