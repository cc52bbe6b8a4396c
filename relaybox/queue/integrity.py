"""Is the spool file whole, and is it this state directory's own: `PRAGMA quick_check`, and the
identity kept both inside spool.db and in `state_dir/spool.id`. It repairs nothing
(`relaybox spool recover` does that, in `cli/spool.py`).

A damaged spool must stop the engine before it accepts or delivers anything: with pages of the
file overwritten, recording a delivery fails and the same mail goes out again on every retry.
A spool that vanished (missing, or truncated to zero bytes) or was swapped for another must not
be taken for a first start: the queued mail in it would be gone without a word.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relaybox.queue.model import SpoolError
from relaybox.statedir import read_identity, write_identity

__all__ = [
    "RECOVER_COMMAND",
    "SpoolDamaged",
    "SpoolLost",
    "SpoolReplaced",
    "expected_identity",
    "is_damage",
    "quick_check",
    "settle_identity",
    "spool_identity",
]

RECOVER_COMMAND = "relaybox spool recover"
"""What saves the rest of a damaged spool (say it with the same --config)."""

_DAMAGE_CODES = frozenset({10, 11, 26})
"""SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB (primary codes: an extended code's low byte)."""

_PROBLEMS_SHOWN = 5


class SpoolDamaged(SpoolError):
    """`PRAGMA quick_check` (or SQLite itself) says the spool file is damaged."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        """What SQLite found wrong, as it says it (the first few)."""
        shown = "; ".join(problems[:_PROBLEMS_SHOWN])
        more = len(problems) - _PROBLEMS_SHOWN
        super().__init__(
            f"the spool database {path} is damaged ({shown}"
            f"{f'; and {more} more' if more > 0 else ''}). relaybox will not use it: "
            "delivery results could not be recorded and mail would be sent twice. "
            f"Save what can be saved with: {RECOVER_COMMAND}"
        )


class SpoolLost(SpoolError):
    """spool.db is missing or empty, but the state directory's identity says it had one."""

    def __init__(self, path: Path, identity_file: Path, identity: str, how: str) -> None:
        self.path = path
        super().__init__(
            f"the spool database {path} is {how}, but {identity_file} says this state "
            f"directory had one (spool {identity}): the mail queued in it is gone unless it "
            "comes back from a backup, so relaybox will not start on an empty spool as if "
            f"nothing happened. Restore {path.name} (and {path.name}-wal if you have it) from "
            f"a backup; or, to start afresh with an empty queue on purpose, remove "
            f"{identity_file}"
        )


class SpoolReplaced(SpoolError):
    """spool.db is another spool than the one this state directory made."""

    def __init__(self, path: Path, identity_file: Path, expected: str, found: str) -> None:
        self.path = path
        super().__init__(
            f"the spool database {path} is not this state directory's spool: it is spool "
            f"{found}, and {identity_file} says {expected} (was it replaced by another relay's "
            f"spool, or by an old backup?). Put the right {path.name} back; or, to use this "
            f"one from now on, remove {identity_file}"
        )


def is_damage(exc: BaseException | None) -> bool:
    """Whether an SQLite error says the file is damaged or unreadable (not full, not busy)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and (code & 0xFF in _DAMAGE_CODES)
    )


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """What `PRAGMA quick_check` finds wrong ([] when the file is whole).

    quick_check reads every page and checks the b-trees, but not that indexes match their
    tables (that is `integrity_check`, several times slower); it is what a damaged page trips.
    A file SQLite cannot read at all is reported the same way, as its error.
    """
    try:
        rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check(100)")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def spool_identity(conn: sqlite3.Connection) -> str | None:
    """The identity stored in the spool (None before the migration that adds it)."""
    try:
        row = conn.execute("SELECT id FROM identity").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def expected_identity(path: Path, identity_file: Path) -> str | None:
    """The identity the state directory expects, checked before SQLite opens (or creates) the
    spool: None on a first start, or when an older relaybox made the spool.

    Raises:
        SpoolLost: the identity file names a spool, and spool.db is missing or empty.
    """
    expected = read_identity(identity_file)
    if expected is None:
        return None
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SpoolLost(path, identity_file, expected, "missing") from None
    if size == 0:
        raise SpoolLost(path, identity_file, expected, "empty (0 bytes)")
    return expected


def settle_identity(
    conn: sqlite3.Connection, path: Path, identity_file: Path, expected: str | None
) -> None:
    """Compare the spool's identity with the state directory's; record it there the first time
    (a new spool, or one an older relaybox made: it is adopted).

    Raises:
        SpoolReplaced: the two differ.
    """
    found = spool_identity(conn)
    if found is None:
        return  # a migration list without the identity (tests of old schemas)
    if expected is None:
        write_identity(identity_file, found)
    elif found != expected:
        raise SpoolReplaced(path, identity_file, expected, found)
