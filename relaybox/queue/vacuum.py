"""Giving disk space back: incremental auto-vacuum of the spool file, and a write-ahead log kept
within the free-space floor.

Deleted mail frees pages inside spool.db, not on the disk. With `auto_vacuum = INCREMENTAL`
(set before the first table is created) `incremental_step` hands free pages back a few at a
time, as one of the writer's transactions; a spool created without it is switched by one VACUUM
at start (`convert`), when the disk has room for the copy. Functions of a connection, for the
spool's threads; never run on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

__all__ = [
    "PAGES_PER_STEP",
    "VACUUM_AFTER_PAGES",
    "checkpoint",
    "convert",
    "free_pages",
    "incremental_step",
    "wal_limits",
]

INCREMENTAL = 2
"""`PRAGMA auto_vacuum` value for incremental (0 none, 1 full)."""
PAGES_PER_STEP = 512
"""Pages one step gives back (2 MB of 4 KB pages, tens of milliseconds): the writer's other
transactions wait at most that long behind one."""
VACUUM_AFTER_PAGES = 256
"""Free pages (1 MB) worth a vacuum; fewer are left for the next inserts to reuse."""
_MAX_WAL = 64 * 1024 * 1024
_MIN_WAL = 256 * 1024


def wal_limits(min_free_bytes: int, page_size: int = 4096) -> tuple[int, int]:
    """(`journal_size_limit` in bytes, `wal_autocheckpoint` in pages) for a free-space floor.

    The WAL is checkpointed when it reaches the page count (SQLite's 1000 pages at most) and
    cut back to the byte limit after; both stay within half the floor (the limit is 64 MB at
    most, 256 KB at least), so the log cannot eat the space the floor keeps free. (With a
    fixed 64 MB limit, a floor of 1 MB on a 2 MB disk once filled it to 100%.)
    """
    limit = _MAX_WAL if min_free_bytes <= 0 else max(_MIN_WAL, min(_MAX_WAL, min_free_bytes // 2))
    return limit, max(16, min(1000, limit // page_size))


def convert(conn: sqlite3.Connection, path: Path, min_free_bytes: int) -> str | None:
    """Switch a spool made without auto-vacuum to incremental, by one VACUUM; None when it
    already is (a new spool is created so), else what happened, for the log.

    VACUUM writes a copy of the database (a temporary file, then the WAL), so it runs only
    when the disk holds twice the spool above the floor; otherwise it waits for another start.
    Call outside a transaction, before the writer starts.
    """
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return None
    pages, page_size = _pages(conn)
    size = pages * page_size
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    if free < 2 * size + min_free_bytes:
        return (
            f"deleted mail frees no disk space until the spool is converted, which needs "
            f"{(2 * size + min_free_bytes) / 2**20:.1f} MB free ({free / 2**20:.1f} MB are): "
            "it is tried again at the next start"
        )
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        # The spool is as it was (VACUUM is one transaction): serve mail, try at next start.
        return f"converting to incremental auto-vacuum failed ({exc}): tried again at next start"
    finally:
        with contextlib.suppress(sqlite3.Error):
            checkpoint(conn)  # whatever VACUUM wrote into the WAL goes, and the WAL with it
    after, _ = _pages(conn)
    return (
        f"converted to incremental auto-vacuum: {size / 2**20:.1f} MB -> "
        f"{after * page_size / 2**20:.1f} MB"
    )


def incremental_step(conn: sqlite3.Connection, pages: int = PAGES_PER_STEP) -> int:
    """Give up to `pages` free pages back to the filesystem (they leave the file at the next
    checkpoint); returns how many. Runs inside the writer's transaction."""
    before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    # Python's sqlite3 steps a statement once per execute, and each step of this pragma frees
    # one page: so one page per call (cheap: the statement is cached).
    for _ in range(min(pages, before)):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return before - int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def free_pages(conn: sqlite3.Connection) -> tuple[int, int]:
    """(free pages, page size): what a vacuum could give back."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return free, int(conn.execute("PRAGMA page_size").fetchone()[0])


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the whole WAL into the database and cut it to zero bytes (`TRUNCATE`); False when
    a reader or the writer kept it from finishing (it is tried again later).

    Waits (busy timeout) for the writer's transaction in progress; new ones wait for it.
    """
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy


def _pages(conn: sqlite3.Connection) -> tuple[int, int]:
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return pages, int(conn.execute("PRAGMA page_size").fetchone()[0])
