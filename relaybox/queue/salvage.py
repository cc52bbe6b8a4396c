"""Saving what can still be read from a damaged spool into a new spool file, row by row.

`rebuild` copies every row it can read from a source database (the damaged spool itself, or
what the `sqlite3` shell's `.recover` made of it) into a new file with this relaybox's schema,
keeps only messages that are whole (envelope, body and at least one recipient), and counts what
was saved and lost. It never touches the damaged file; `cli/spool.py` swaps the files.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relaybox.queue.integrity import is_damage, quick_check
from relaybox.queue.model import UNFINISHED_STATES, RecipientState
from relaybox.queue.schema import MIGRATIONS, connect, migrate, sql_list

__all__ = ["Salvaged", "rebuild", "salvage_rows"]

TABLES = (
    "messages",
    "bodies",
    "recipients",
    "attempts",
    "signatures",
    "suspended",
    "suppressions",
    "sessions",
)
"""Every table of the spool, messages first (the others hang off them)."""

MAX_STEP = 16
"""Row ids skipped at most between two lookups past a damaged page: a page of rows that can be
read again is at least this wide in row ids, so none is jumped over while the last row id is
known."""

WATCHDOG_STEPS = 20_000
"""Thousands of SQLite VM steps one statement may take without a row before it is stopped: a
damaged page can point back into the tree, and a scan then goes round for ever."""

SMALL_STEPS = 4096
"""Lookups in steps of at most MAX_STEP before the steps double (past a damaged region of
up to about 65,000 row ids nothing readable is jumped over)."""

_INTERRUPTED = 9
"""SQLITE_INTERRUPT: the watchdog stopped a statement."""

_PENDING = sql_list((RecipientState.QUEUED, RecipientState.DEFERRED, RecipientState.HELD))


@dataclass
class Salvaged:
    """What `rebuild` saved and lost."""

    messages: int = 0
    """Whole messages saved (envelope, body, at least one recipient)."""
    recipients: int = 0
    """Their recipients saved."""
    pending_messages: int = 0
    """Saved messages not finished yet (what delivery still owes)."""
    pending_recipients: int = 0
    """Saved recipients not delivered or bounced yet."""
    lost_messages: int = 0
    """Messages dropped: their body, envelope or every recipient could not be read (those of
    which nothing at all could be read cannot be counted)."""
    lost_recipients: int = 0
    """Recipients of saved messages that could not be read (the message goes to the others)."""
    unreadable: list[str] = field(default_factory=list)
    """Tables that could not be read at all."""
    problems: list[str] = field(default_factory=list)
    """What quick_check says of the new file ([] when whole)."""


class _Watchdog:
    """A progress handler that stops a statement going round in a damaged tree."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self) -> int:
        self.steps += 1
        return 1 if self.steps > WATCHDOG_STEPS else 0


def _unreadable(exc: sqlite3.DatabaseError) -> bool:
    """Damage, or the watchdog stopping a statement lost in it."""
    return is_damage(exc) or getattr(exc, "sqlite_errorcode", None) == _INTERRUPTED


def salvage_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str]
) -> Iterator[tuple[object, ...]]:
    """Every row of `table` that can be read, in row id order, stepping over damaged pages.

    A scan that hits a damaged page stops there. Row ids after it are then looked up (each
    lookup walks from the root, and gets past the damage when another path leads to the row),
    in growing steps up to the table's last row id, and the first one that can be looked up is
    found between the last two tries; the scan goes on from there.
    """
    select = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid"
    watchdog = _Watchdog()
    conn.set_progress_handler(watchdog, 1000)
    try:
        yield from _scan(conn, table, select, watchdog)
    finally:
        conn.set_progress_handler(None, 0)


def _scan(
    conn: sqlite3.Connection, table: str, select: str, watchdog: _Watchdog
) -> Iterator[tuple[object, ...]]:
    watchdog.steps = 0
    last = _last_rowid(conn, table, watchdog)
    position = -(2**63)
    stuck_at: int | None = None
    while True:
        watchdog.steps = 0
        try:
            for row in conn.execute(select, (position,)):
                watchdog.steps = 0
                if not isinstance(row[0], int) or row[0] <= position:
                    # A damaged page that points back into the tree: the scan would go
                    # round for ever. Treat it as damage and look past it.
                    break
                position = row[0]
                stuck_at = None
                yield tuple(row[1:])
            else:
                return
        except sqlite3.DatabaseError as exc:
            if not _unreadable(exc):
                raise
        # Row ids start at 1 (the spool never sets one below), so a scan that failed before
        # its first row looks from there.
        after = max(position + 1, 1) if stuck_at is None else stuck_at + 1
        found = _next_readable(conn, table, after, last, watchdog)
        if found is None:
            return
        stuck_at, position = found, found - 1


def _readable(conn: sqlite3.Connection, table: str, rowid: int, watchdog: _Watchdog) -> bool:
    """Whether a scan from `rowid` on gets its first row (or the end of the table) past the
    damage: false in the damaged region and just before it (where the scan walks into it)."""
    watchdog.steps = 0
    try:
        conn.execute(
            f"SELECT rowid FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1", (rowid,)
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        if not _unreadable(exc):
            raise
        return False
    return True


def _last_rowid(conn: sqlite3.Connection, table: str, watchdog: _Watchdog) -> int | None:
    """The table's largest row id (None when the path to it is damaged, or it is empty)."""
    watchdog.steps = 0
    try:
        row = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()
    except sqlite3.DatabaseError as exc:
        if not _unreadable(exc):
            raise
        return None
    return None if row is None or row[0] is None else int(row[0])


def _next_readable(
    conn: sqlite3.Connection, table: str, start: int, last: int | None, watchdog: _Watchdog
) -> int | None:
    """The first row id from `start` on whose lookup gets past the damage, or None."""
    bad, probe, step, tries = start - 1, start, 1, 0
    while not _readable(conn, table, probe, watchdog):
        bad, tries = probe, tries + 1
        if (last is not None and probe >= last) or probe >= 2**62:
            return None
        # While the last row id is known, steps stay small so no readable page is jumped
        # over; past SMALL_STEPS tries (the last row id may be garbage read from a damaged
        # page), or without it (the path to the end is damaged), they double.
        small = last is not None and tries < SMALL_STEPS
        step = min(step * 2, MAX_STEP) if small else step * 2
        probe = min(probe + step, last) if small and last is not None else probe + step
    # Between `bad` (damaged) and `probe` (readable): the first readable one.
    while probe - bad > 1:
        middle = (bad + probe) // 2
        if _readable(conn, table, middle, watchdog):
            probe = middle
        else:
            bad = middle
    return probe


def _columns(conn: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    try:
        return [str(row[1]) for row in conn.execute(f"PRAGMA {schema}.table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def rebuild(source: sqlite3.Connection, target: Path, identity: str | None = None) -> Salvaged:
    """Build a new spool at `target` (which must not exist) from what `source` still reads.

    Args:
        source: the damaged spool, or `.recover`'s output, opened read-only.
        target: the new file, made with this relaybox's schema.
        identity: the spool identity to keep (the state directory's), if known.
    """
    saved = Salvaged()
    # Private before SQLite opens it (its -wal and -shm copy the mode), as the spool is.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    conn = connect(target, readonly=False)
    try:
        migrate(conn, MIGRATIONS)
        conn.execute("PRAGMA foreign_keys = OFF")  # orphans are removed after the copy
        conn.execute("BEGIN IMMEDIATE")
        if identity:
            conn.execute("UPDATE identity SET id = ?", (identity,))
        for table in TABLES:
            wanted = _columns(conn, table)
            have = set(_columns(source, table))
            columns = [c for c in wanted if c in have]
            if not columns:
                saved.unreadable.append(table)
                continue
            insert = (
                f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})"
            )
            try:
                for row in salvage_rows(source, table, columns):
                    try:
                        conn.execute(insert, row)
                    except sqlite3.Error:
                        continue  # a row of garbage from a damaged page
            except sqlite3.DatabaseError:
                saved.unreadable.append(table)
        _keep_whole_messages(conn, saved)
        conn.execute("COMMIT")
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
            saved.problems.append("rows that point to no message remain")
        saved.problems.extend(quick_check(conn))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return saved


def _keep_whole_messages(conn: sqlite3.Connection, saved: Salvaged) -> None:
    """Drop messages that cannot be delivered as received, and every row that pointed to a
    message not saved; make the derived columns agree with what is left."""
    known = conn.execute(
        "SELECT count(*) FROM (SELECT id FROM messages UNION SELECT message_id FROM bodies"
        " UNION SELECT message_id FROM recipients)"
    ).fetchone()[0]
    conn.execute(
        "DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM bodies)"
        " OR id NOT IN (SELECT message_id FROM recipients)"
    )
    for table in ("bodies", "recipients", "attempts", "signatures"):
        conn.execute(f"DELETE FROM {table} WHERE message_id NOT IN (SELECT id FROM messages)")
    saved.lost_recipients = conn.execute(
        "SELECT coalesce(sum(rcpt_count), 0) - (SELECT count(*) FROM recipients) FROM messages"
    ).fetchone()[0]
    # A message that lost some recipients keeps the others; its listing columns follow.
    conn.execute(
        """
        UPDATE messages SET
            rcpt_count = (SELECT count(*) FROM recipients r WHERE r.message_id = messages.id),
            first_rcpt = (SELECT address FROM recipients r WHERE r.message_id = messages.id
                          ORDER BY idx LIMIT 1),
            search = queue_id || ' ' || sender || ' ' || (
                SELECT group_concat(address, ' ') FROM recipients r
                WHERE r.message_id = messages.id) || ' ' || subject
        """
    )
    saved.messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    saved.lost_messages = known - saved.messages
    saved.recipients = conn.execute("SELECT count(*) FROM recipients").fetchone()[0]
    saved.pending_messages = conn.execute(
        f"SELECT count(*) FROM messages WHERE state IN {sql_list(UNFINISHED_STATES)}"
    ).fetchone()[0]
    saved.pending_recipients = conn.execute(
        f"SELECT count(*) FROM recipients WHERE state IN {_PENDING}"
    ).fetchone()[0]
