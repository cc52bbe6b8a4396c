"""The durable spool: messages, their recipients' states, transcripts and the suppression list.

Everything lives in one SQLite database (WAL mode, `synchronous=FULL`) in the state directory.
All writes go through one writer thread that commits whatever is pending in one transaction, so
concurrent SMTP sessions share one fsync (group commit); `store_message` returns only after the
commit that holds its message is on disk. Reads use their own connections in a small thread pool
and never wait for the writer (WAL readers see the last commit). Nothing here runs on the event
loop except handing work to threads and resolving futures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from email.parser import HeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any, Literal, TypeVar

from relaybox.message.queueid import new_queue_id
from relaybox.message.transcript import TranscriptLine

__all__ = [
    "SCHEMA_VERSION",
    "MessageFilter",
    "MessageRow",
    "MessageDetail",
    "NewMessage",
    "RecipientRow",
    "Spool",
    "SpoolError",
    "SuppressionRow",
]

T = TypeVar("T")

RecipientState = Literal["queued", "deferred", "delivered", "bounced", "held", "active"]
MessageState = Literal["queued", "active", "deferred", "held", "delivered", "bounced", "finished"]

#: Message states that are not finished; `relaybox queue` lists these, as mailq does.
UNFINISHED_STATES: tuple[str, ...] = ("queued", "active", "deferred", "held")
#: Every state a message can be in; a listing of "all" walks each state's index in turn.
ALL_STATES: tuple[str, ...] = (*UNFINISHED_STATES, "delivered", "bounced")

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

# Message states that can have a recipient due. A held message may too: one recipient held
# does not hold back the others, and its `next_attempt_at` is that of its queued or deferred
# recipients only (NULL when all are held), see `_refresh_message`.
_DUE_STATES = ("queued", "deferred", "held")

# Conditions on an attempt's recipient updates (see `Spool.finish_attempt`).
_NOT_FINISHED = " AND state NOT IN ('delivered', 'bounced')"
_STILL_PENDING = " AND state IN ('queued', 'deferred')"

# Each entry upgrades the schema from its index to index + 1; never edit a released entry.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        queue_id TEXT NOT NULL UNIQUE,
        arrived_at REAL NOT NULL,
        sender TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        rcpt_count INTEGER NOT NULL,
        first_rcpt TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_reply TEXT,
        finished_at REAL,
        session_id TEXT NOT NULL,
        listener TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        client_port INTEGER NOT NULL,
        helo TEXT NOT NULL,
        auth_user TEXT,
        tls TEXT,
        body_8bit INTEGER NOT NULL DEFAULT 0,
        smtputf8 INTEGER NOT NULL DEFAULT 0,
        is_bounce INTEGER NOT NULL DEFAULT 0,
        warned_at REAL
    );
    -- Every listing pages by (sort column, id) through an index, never by sorting the queue:
    -- (state, column, id) serves a state filter, and list_messages asks each state separately
    -- and merges (for "all states" too), so each index leads with the state. Each index costs
    -- every insert and state change: add one only for a sort the UI offers.
    CREATE INDEX messages_by_state ON messages (state, id);
    CREATE INDEX messages_by_state_arrival ON messages (state, arrived_at, id);
    CREATE INDEX messages_by_state_queue_id ON messages (state, queue_id);
    CREATE INDEX messages_by_state_sender ON messages (state, sender, id);
    CREATE INDEX messages_by_state_size ON messages (state, size, id);
    CREATE INDEX messages_by_state_attempts ON messages (state, attempts, id);
    CREATE INDEX messages_by_state_next_attempt ON messages (state, next_attempt_at, id);
    CREATE TABLE bodies (
        message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        data BLOB NOT NULL
    );
    CREATE TABLE recipients (
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        address TEXT NOT NULL,
        domain TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_reply TEXT,
        updated_at REAL NOT NULL,
        destination TEXT,
        PRIMARY KEY (message_id, idx)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        destination TEXT NOT NULL,
        host TEXT,
        ip TEXT,
        port INTEGER,
        tls TEXT,
        recipients TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reply TEXT,
        transcript TEXT NOT NULL
    );
    CREATE INDEX attempts_by_message ON attempts (message_id, id);
    CREATE TABLE suspended (
        destination TEXT PRIMARY KEY,
        until REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX recipients_by_domain ON recipients (domain, message_id);
    CREATE INDEX recipients_by_address ON recipients (address, message_id);
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        listener TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        transcript TEXT NOT NULL
    );
    CREATE INDEX sessions_by_start ON sessions (started_at);
    CREATE TABLE suppressions (
        address TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL
    );
    """,
    # 1 -> 2: DKIM signatures, made once per message (and per From: rewrite) and reused on
    # every retry, so a retried message carries the same signature as its first attempt.
    """
    CREATE TABLE signatures (
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        variant TEXT NOT NULL,
        header BLOB NOT NULL,
        PRIMARY KEY (message_id, variant)
    );
    """,
    # 2 -> 3: the queue sorts by its Recipients (the first one) and Last reply columns too,
    # each page an index range like the other sorts.
    """
    CREATE INDEX messages_by_state_first_rcpt ON messages (state, first_rcpt, id);
    CREATE INDEX messages_by_state_last_reply ON messages (state, last_reply, id);
    """,
    # 3 -> 4: what a text filter looks in, but the last reply (which changes), in one column:
    # four LIKEs and a subquery per message took 250 ms over 100,000 messages, one LIKE
    # over this takes 40.
    """
    ALTER TABLE messages ADD COLUMN search TEXT NOT NULL DEFAULT '';
    UPDATE messages SET search = queue_id || ' ' || sender || ' ' || coalesce(
        (SELECT group_concat(address, ' ') FROM recipients r WHERE r.message_id = messages.id),
        ''
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class SpoolError(Exception):
    """The spool cannot be opened or written; callers answer 451 and keep running."""


@dataclass(frozen=True)
class NewMessage:
    """Everything the inbound side knows about a message at the end of DATA."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    """The whole message as stored: Received: header first, CRLF line endings."""
    session_id: str
    listener: str
    client_ip: str
    client_port: int
    helo: str
    auth_user: str | None
    tls: str | None
    body_8bit: bool
    smtputf8: bool
    arrived_at: float = field(default_factory=time.time)
    transcript: tuple[TranscriptLine, ...] = ()
    """The session's dialogue up to this message, stored in the same commit."""
    queue_id: str = field(default_factory=new_queue_id)
    is_bounce: bool = False
    """A delivery status notification relaybox generated (sent with the null sender)."""


@dataclass(frozen=True)
class MessageRow:
    """One line of the queue listing."""

    id: int
    queue_id: str
    arrived_at: float
    sender: str
    size: int
    state: str
    rcpt_count: int
    first_rcpt: str
    attempts: int
    next_attempt_at: float | None
    last_reply: str | None


@dataclass(frozen=True)
class Overview:
    """The queue at a glance (the UI's status bar)."""

    by_state: dict[str, int]
    delivered_since: int
    bounced_since: int
    oldest_deferred_at: float | None


@dataclass(frozen=True)
class RecipientRow:
    """One recipient of a message and how far it got."""

    address: str
    state: str
    attempts: int
    next_attempt_at: float | None
    last_reply: str | None
    updated_at: float


@dataclass(frozen=True)
class MessageDetail:
    """Everything `relaybox show` and the inspector display about one message."""

    row: MessageRow
    recipients: tuple[RecipientRow, ...]
    listener: str
    session_id: str
    client_ip: str
    client_port: int
    helo: str
    auth_user: str | None
    tls: str | None
    body_8bit: bool
    smtputf8: bool
    headers: tuple[tuple[str, str], ...]
    inbound_transcript: tuple[TranscriptLine, ...]
    attempts: tuple[AttemptRow, ...] = ()
    """Every delivery attempt, oldest first."""
    is_bounce: bool = False


@dataclass(frozen=True)
class AttemptRow:
    """One delivery attempt of a message to one next hop, with its whole dialogue."""

    started_at: float
    finished_at: float
    destination: str
    """The route's next hop: `mx:example.org` or `smarthost:smtp.example.net:587`."""
    host: str | None
    ip: str | None
    port: int | None
    tls: str | None
    recipients: tuple[str, ...]
    outcome: str
    """`delivered`, `deferred`, `bounced` or `mixed` (per-recipient replies differed)."""
    reply: str | None
    transcript: tuple[TranscriptLine, ...]


@dataclass(frozen=True)
class PendingRecipient:
    """A recipient still to be delivered, as the scheduler sees it."""

    idx: int
    address: str
    state: str
    attempts: int
    last_reply: str | None


@dataclass(frozen=True)
class DeliveryJob:
    """One message as loaded for a delivery attempt (its due recipients only)."""

    message_id: int
    queue_id: str
    sender: str
    arrived_at: float
    data: bytes
    body_8bit: bool
    smtputf8: bool
    is_bounce: bool
    warned_at: float | None
    recipients: tuple[PendingRecipient, ...]
    signatures: Mapping[str, bytes] = field(default_factory=dict)
    """DKIM-Signature fields made by an earlier attempt, by variant: `""` for the message
    as received, or the From: address a route rewrote it to."""


@dataclass(frozen=True)
class RecipientOutcome:
    """What became of one recipient in an attempt."""

    idx: int
    state: Literal["queued", "deferred", "delivered", "bounced", "held"]
    reply: str
    next_attempt_at: float | None = None
    destination: str | None = None
    attempted: bool = True
    """False when nothing was sent for it (held by a route, say): the attempt count stays."""
    rcpt_reply: bool = False
    """`reply` is the next hop's answer to this recipient's RCPT (not DNS, MAIL, DATA or
    relaybox's own words): only such a reply may put the recipient on the suppression list."""


@dataclass(frozen=True)
class SuppressionRow:
    """A recipient that mail is refused to, and why."""

    address: str
    reason: str
    created_at: float
    expires_at: float | None


@dataclass(frozen=True)
class MessageFilter:
    """Which messages: one type for every listing and bulk action (as mox's queue.Filter)."""

    states: tuple[str, ...] = UNFINISHED_STATES
    """Message states to include; empty means all."""
    text: str = ""
    """Substring of the queue ID, sender, a recipient or the last reply (case-insensitive)."""
    domain: str = ""
    """Only messages with a recipient in this domain (exact, case-insensitive)."""
    queue_ids: tuple[str, ...] = ()
    """Only these messages."""
    recipients: tuple[str, ...] = ()
    """Only messages to one of these addresses (case-insensitive).

    With `domain`, this also narrows what an action on recipients (retry, hold, release,
    bounce) touches to the recipients it names: "retry everything deferred to example.com"
    leaves the message's other recipients alone.
    """


def _recipient_terms(flt: MessageFilter, alias: str = "r") -> tuple[list[str], list[Any]]:
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


@dataclass
class _Write:
    """One unit of work for the writer thread; `future` is None for fire-and-forget writes."""

    apply: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None


_STOP = object()


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """The writer's connection, or (`readonly`) a reader's.

    A reader opens the file read-write (WAL readers need the shared-memory index) but never
    creates it, never changes its journal mode and refuses to write (`query_only`).
    """
    conn = sqlite3.connect(
        path if not readonly else path.resolve().as_uri() + "?mode=rw",
        uri=readonly,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
    )
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit returns only after the WAL is fsynced; this is what 250 promises.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA journal_size_limit = 67108864")
    return conn


def _migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Bring the schema forward; returns the version found before migrating."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > len(migrations):
        raise SpoolError(
            f"the spool database has schema version {found}, newer than this relaybox knows "
            f"({len(migrations)}); run the newer relaybox or restore a backup"
        )
    for version in range(found, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements (a `;` inside a string, comment or trigger stays put).

    `executescript` would do the splitting but commits first, and a migration must be one
    transaction together with its `user_version`.
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending)  # unterminated: let SQLite report the error
    return [s for s in statements if s.strip(" \t\r\n;")]


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _row(r: sqlite3.Row | tuple[Any, ...]) -> MessageRow:
    return MessageRow(*r)


_ROW_COLUMNS = (
    "m.id, m.queue_id, m.arrived_at, m.sender, m.size, m.state, m.rcpt_count, m.first_rcpt, "
    "m.attempts, m.next_attempt_at, m.last_reply"
)


class Spool:
    """The message store of one state directory.

    Open with `await Spool.open(path)`; close with `await spool.close()`.
    """

    def __init__(self, path: Path, migrations: Sequence[str] = MIGRATIONS) -> None:
        self.path = path
        self._migrations = migrations
        self._writes: queue.SimpleQueue[_Write | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="spool-read"
        )
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self.commits = 0
        """Transactions committed by the writer (for tests and metrics: group commit)."""
        self.migrated_from: int | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, migrations: Sequence[str] = MIGRATIONS) -> Spool:
        """Open (creating and migrating if needed) and start the writer thread."""
        spool = cls(path, migrations)
        await asyncio.to_thread(spool._open_sync)
        return spool

    @classmethod
    async def open_for_reading(cls, path: Path) -> Spool:
        """Open without a writer and without migrating: for `queue` and `show` beside an engine.

        Raises SpoolError when there is no spool yet or its schema is not this relaybox's.
        """
        spool = cls(path)

        def check() -> None:
            if not path.exists():
                raise SpoolError(
                    f"no spool at {path} yet (relaybox has not run with this state_dir)"
                )
            try:
                version = int(spool._reader().execute("PRAGMA user_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot read the spool database {path}: {exc}") from exc
            if version != len(spool._migrations):
                raise SpoolError(
                    f"the spool at {path} has schema version {version}, this relaybox uses "
                    f"{len(spool._migrations)}; start the engine once to migrate it"
                )

        try:
            await asyncio.get_running_loop().run_in_executor(spool._readers, check)
        except BaseException:
            await spool.close()
            raise
        return spool

    def _open_sync(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            # Create the file private before SQLite opens it (and its -wal, which copies its mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = _connect(self.path, readonly=False)
            self.migrated_from = _migrate(conn, self._migrations)
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise SpoolError(f"cannot open the spool database {self.path}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._writer_conn = conn
        self._writer = threading.Thread(target=self._write_loop, name="spool-writer", daemon=True)
        self._writer.start()

    async def close(self) -> None:
        """Finish pending writes, stop the writer and close every connection."""
        writer, self._writer = self._writer, None
        if writer is not None:
            # `_write` refuses from now on, so nothing can be queued behind _STOP and hang.
            self._writes.put(_STOP)
            await asyncio.to_thread(writer.join)
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    # ------------------------------------------------------------------ writer

    def _write_loop(self) -> None:
        """Commit everything pending in one transaction, then wake the waiters: group commit."""
        conn = self._writer_conn
        assert conn is not None
        stopping = False
        while not stopping:
            first = self._writes.get()
            batch: list[_Write] = []
            if first is _STOP:
                stopping = True
            else:
                assert isinstance(first, _Write)
                batch.append(first)
            while True:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                else:
                    assert isinstance(item, _Write)
                    batch.append(item)
            if batch:
                self._commit_batch(conn, batch)

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        results: list[tuple[_Write, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write in batch:
                conn.execute("SAVEPOINT one")
                try:
                    result = write.apply(conn)
                except Exception as exc:  # one bad write must not sink the others...
                    if isinstance(exc, sqlite3.Error) and not conn.in_transaction:
                        # ...unless SQLite rolled back the whole transaction, as it may after
                        # SQLITE_FULL or an I/O error: then nothing of this batch is stored.
                        raise
                    conn.execute("ROLLBACK TO one")
                    reported: BaseException = exc
                    if isinstance(exc, sqlite3.Error):
                        reported = SpoolError(f"spool write failed: {exc}")
                        reported.__cause__ = exc
                    results.append((write, None, reported))
                else:
                    results.append((write, result, None))
                conn.execute("RELEASE one")
            # The message rows are durable once this COMMIT returns (WAL fsynced).
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = SpoolError(f"spool write failed: {exc}")
            results = [(w, None, failure) for w in batch]
        for write, result, error in results:
            if write.future is not None and write.loop is not None:
                # A waiter whose loop has closed is gone; the writer must outlive it.
                with contextlib.suppress(RuntimeError):
                    write.loop.call_soon_threadsafe(_settle, write.future, result, error)

    async def _write(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """Run `apply` in the writer's next transaction; returns once it is committed."""
        if self._writer is None:
            raise SpoolError("the spool is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.put(_Write(apply, future, loop))
        return await future

    def _write_later(self, apply: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue a write nobody waits for (it rides along with the next commit)."""
        if self._writer is not None:
            self._writes.put(_Write(apply, None, None))

    # ------------------------------------------------------------------ readers

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: query(self._reader()))

    # ------------------------------------------------------------------ messages

    async def store_message(self, msg: NewMessage) -> str:
        """Store a message durably; returns its queue ID once the commit is on disk.

        Nothing may answer 250 to DATA before this returns. Raises SpoolError if the write
        failed, in which case the client must get a 4xx.
        """
        return await self._write(lambda conn: _insert_message(conn, msg)[1])

    def record_session(
        self,
        session_id: str,
        started_at: float,
        ended_at: float | None,
        listener: str,
        client_ip: str,
        lines: Sequence[TranscriptLine],
    ) -> None:
        """Save a session's transcript with the next commit (not awaited: nothing is promised)."""
        frozen = tuple(lines)
        self._write_later(
            lambda conn: _upsert_session(
                conn, session_id, started_at, ended_at, listener, client_ip, frozen
            )
        )

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._write(lambda conn: None)

    async def count_by_state(self) -> dict[str, int]:
        """Number of messages in each state."""

        def query(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state")
            return {state: n for state, n in rows}

        return await self._read(query)

    async def overview(self, since: float) -> Overview:
        """Counts for a status line: by state, finished since `since`, the oldest deferred."""

        def query(conn: sqlite3.Connection) -> Overview:
            conn.execute("BEGIN")
            try:
                by_state = dict(conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"))
                finished = {
                    state: conn.execute(
                        "SELECT COUNT(*) FROM messages WHERE state = ? AND finished_at >= ?",
                        (state, since),
                    ).fetchone()[0]
                    for state in ("delivered", "bounced")
                }
                oldest = conn.execute(
                    "SELECT MIN(arrived_at) FROM messages WHERE state = 'deferred'"
                ).fetchone()[0]
            finally:
                conn.execute("COMMIT")
            return Overview(by_state, finished["delivered"], finished["bounced"], oldest)

        return await self._read(query)

    async def message_ids(
        self, flt: MessageFilter, *, sort: str = "arrived", descending: bool = False
    ) -> list[int]:
        """The row ids of every matching message, in `sort` order (then row id).

        For a view over the whole queue (the TUI): ids are 8 bytes each, so 100,000 messages
        cost under a megabyte, and the rows themselves are read a screenful at a time
        (`rows_by_id`).
        """
        column = SORT_COLUMNS.get(sort)
        if column is None:
            raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_COLUMNS)}")
        where, params = _where(flt)
        order = "DESC" if descending else "ASC"
        sql = "SELECT m.id FROM messages m"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY m.{column} {order}, m.id {order}"

        def query(conn: sqlite3.Connection) -> list[int]:
            return [r[0] for r in conn.execute(sql, params)]

        return await self._read(query)

    async def message_id_page(
        self,
        flt: MessageFilter,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 10_000,
    ) -> list[tuple[Any, int]]:
        """(sort value, row id) of the next `limit` messages after `after`, in `message_ids`
        order: the same ids a window at a time (keyset pagination, as `list_messages`), so
        the admin socket never re-runs the whole listing for each window."""
        column = SORT_COLUMNS.get(sort)
        if column is None:
            raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_COLUMNS)}")
        where, params = _where(flt)
        order = "DESC" if descending else "ASC"

        def query(conn: sqlite3.Connection) -> list[tuple[Any, int]]:
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

        return await self._read(query)

    async def rows_by_id(self, ids: Sequence[int]) -> dict[int, MessageRow]:
        """The listing rows of these messages (those that still exist), by row id."""
        wanted = list(dict.fromkeys(ids))

        def query(conn: sqlite3.Connection) -> dict[int, MessageRow]:
            found: dict[int, MessageRow] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                sql = (
                    f"SELECT {_ROW_COLUMNS} FROM messages m"
                    f" WHERE m.id IN ({', '.join('?' * len(chunk))})"
                )
                for r in conn.execute(sql, chunk):
                    found[r[0]] = _row(r)
            return found

        return await self._read(query)

    async def list_messages(
        self,
        flt: MessageFilter,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        """A page of messages matching `flt`, ordered by `sort` then row id.

        `after` is the (sort value, id) of the last row of the previous page: keyset pagination,
        which costs the same on page 1000 as on page 1 (OFFSET would scan). Every query is a
        range of one index (see the first migration), so a page of a 100k queue costs a few
        milliseconds whatever the sort.
        """
        column = SORT_COLUMNS.get(sort)
        if column is None:
            raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_COLUMNS)}")

        segments = _keyset_segments(column, descending, after)
        order = "DESC" if descending else "ASC"
        base_where, base_params = _where(flt, states=False)
        # One query per state, merged below: `state IN (a, b)` cannot walk the
        # (state, column, id) index in order, `state = ?` can (no sort of the whole queue).
        # Every index leads with the state (each costs every insert: keep them few), so "all
        # states" is each state in turn too.
        states: tuple[str, ...] = tuple(dict.fromkeys(flt.states)) or ALL_STATES

        def query(conn: sqlite3.Connection) -> list[MessageRow]:
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
                        sql = f"SELECT {_ROW_COLUMNS} FROM messages m"
                        if where:
                            sql += " WHERE " + " AND ".join(where)
                        sql += f" ORDER BY m.{column} {order}, m.id {order} LIMIT ?"
                        params.append(limit - found)
                        page = [_row(r) for r in conn.execute(sql, params)]
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

        return await self._read(query)

    async def count_messages(self, flt: MessageFilter) -> int:
        """How many messages match `flt`."""

        def query(conn: sqlite3.Connection) -> int:
            where, params = _where(flt)
            sql = "SELECT COUNT(*) FROM messages m"
            if where:
                sql += " WHERE " + " AND ".join(where)
            return int(conn.execute(sql, params).fetchone()[0])

        return await self._read(query)

    async def recipients_of(self, message_ids: Sequence[int]) -> dict[int, list[RecipientRow]]:
        """Recipients of many messages at once (for listings that show them)."""

        def query(conn: sqlite3.Connection) -> dict[int, list[RecipientRow]]:
            out: dict[int, list[RecipientRow]] = {i: [] for i in message_ids}
            ids = list(message_ids)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
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

        return await self._read(query)

    async def message_detail(self, queue_id: str) -> MessageDetail | None:
        """Envelope, recipients, headers and inbound transcript of one message."""
        return await self._read(lambda conn: _detail(conn, queue_id))

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None:
        """The stored message bytes (at most `limit` of them)."""

        def query(conn: sqlite3.Connection) -> bytes | None:
            if limit is None:
                sql = "SELECT b.data FROM bodies b JOIN messages m ON m.id = b.message_id"
                params: tuple[Any, ...] = (queue_id,)
            else:
                sql = (
                    "SELECT substr(b.data, 1, ?) FROM bodies b"
                    " JOIN messages m ON m.id = b.message_id"
                )
                params = (limit, queue_id)
            row = conn.execute(sql + " WHERE m.queue_id = ?", params).fetchone()
            return bytes(row[0]) if row else None

        return await self._read(query)

    # ------------------------------------------------------------------ delivery

    async def due_messages(self, now: float, limit: int, skip: Set[int] = frozenset()) -> list[int]:
        """Row ids of messages with a recipient whose next attempt is due, soonest first."""

        def query(conn: sqlite3.Connection) -> list[int]:
            found: list[tuple[float, int]] = []
            for state in _DUE_STATES:
                rows = conn.execute(
                    "SELECT next_attempt_at, id FROM messages WHERE state = ?"
                    " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                    (state, now, limit + len(skip)),
                )
                found.extend((at, mid) for at, mid in rows if mid not in skip)
            found.sort()
            return [mid for _, mid in found[:limit]]

        return await self._read(query)

    async def next_due_at(self) -> float | None:
        """When the next message with a queued or deferred recipient falls due (None when
        none waits)."""

        def query(conn: sqlite3.Connection) -> float | None:
            times = [
                conn.execute(
                    "SELECT MIN(next_attempt_at) FROM messages WHERE state = ?", (state,)
                ).fetchone()[0]
                for state in _DUE_STATES
            ]
            due = [t for t in times if t is not None]
            return min(due) if due else None

        return await self._read(query)

    async def load_job(self, message_id: int, now: float) -> DeliveryJob | None:
        """A message and its recipients due by `now`; None if it is gone or nothing is due."""

        def query(conn: sqlite3.Connection) -> DeliveryJob | None:
            row = conn.execute(
                "SELECT m.queue_id, m.sender, m.arrived_at, b.data, m.body_8bit, m.smtputf8,"
                " m.is_bounce, m.warned_at FROM messages m JOIN bodies b ON b.message_id = m.id"
                " WHERE m.id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                return None
            recipients = tuple(
                PendingRecipient(*r)
                for r in conn.execute(
                    "SELECT idx, address, state, attempts, last_reply FROM recipients"
                    " WHERE message_id = ? AND state IN ('queued', 'deferred')"
                    " AND next_attempt_at <= ? ORDER BY idx",
                    (message_id, now),
                )
            )
            if not recipients:
                return None
            queue_id, sender, arrived_at, data, b8, utf8, bounce, warned = row
            signatures = {
                variant: bytes(header)
                for variant, header in conn.execute(
                    "SELECT variant, header FROM signatures WHERE message_id = ?", (message_id,)
                )
            }
            return DeliveryJob(
                message_id,
                queue_id,
                sender,
                arrived_at,
                bytes(data),
                bool(b8),
                bool(utf8),
                bool(bounce),
                warned,
                recipients,
                signatures,
            )

        return await self._read(query)

    async def finish_attempt(
        self,
        message_id: int,
        outcomes: Sequence[RecipientOutcome],
        attempts: Sequence[AttemptRow],
        *,
        now: float,
        new_messages: Sequence[NewMessage] = (),
        suppress: Sequence[tuple[str, str, float | None]] = (),
        warned: bool = False,
        signatures: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Record an attempt's outcome in one transaction, with the bounces it caused.

        The DSNs (`new_messages`) and suppression entries commit together with the recipient
        states, so a crash can neither lose a bounce nor send it twice.

        An admin may act on the message while the attempt runs. What the attempt learnt for
        good (delivered, bounced) is recorded whatever the admin did; a deferral or a route's
        hold only replaces a recipient still queued or deferred, so an admin's hold made
        during the attempt stands. A message deleted meanwhile stays deleted: nothing is
        written and False is returned.
        """

        def apply(conn: sqlite3.Connection) -> bool:
            exists = conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone()
            if exists is None:
                return False
            for attempt in attempts:
                conn.execute(
                    "INSERT INTO attempts (message_id, started_at, finished_at, destination,"
                    " host, ip, port, tls, recipients, outcome, reply, transcript)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message_id,
                        attempt.started_at,
                        attempt.finished_at,
                        attempt.destination,
                        attempt.host,
                        attempt.ip,
                        attempt.port,
                        attempt.tls,
                        "\n".join(attempt.recipients),
                        attempt.outcome,
                        attempt.reply,
                        _encode_transcript(attempt.transcript),
                    ),
                )
            update = (
                "UPDATE recipients SET state = ?, last_reply = ?, next_attempt_at = ?,"
                " destination = COALESCE(?, destination), attempts = attempts + ?,"
                " updated_at = ? WHERE message_id = ? AND idx = ?"
            )
            for final in (True, False):
                conn.executemany(
                    update + (_NOT_FINISHED if final else _STILL_PENDING),
                    [
                        (
                            o.state,
                            o.reply,
                            o.next_attempt_at,
                            o.destination,
                            int(o.attempted),
                            now,
                            message_id,
                            o.idx,
                        )
                        for o in outcomes
                        if (o.state in ("delivered", "bounced")) == final
                    ],
                )
            if warned:
                conn.execute("UPDATE messages SET warned_at = ? WHERE id = ?", (now, message_id))
            if signatures:
                conn.executemany(
                    "INSERT OR IGNORE INTO signatures (message_id, variant, header)"
                    " VALUES (?, ?, ?)",
                    [(message_id, variant, header) for variant, header in signatures.items()],
                )
            _refresh_message(conn, message_id, now)
            for msg in new_messages:
                _insert_message(conn, msg)
            for address, reason, expires in suppress:
                conn.execute(
                    "INSERT OR REPLACE INTO suppressions (address, reason, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (address.lower(), reason, now, expires),
                )
            return True

        return await self._write(apply)

    async def refresh_state(self, message_id: int) -> None:
        """Recompute a message's state from its recipients (after an attempt found nothing due)."""
        await self._write(lambda conn: _refresh_message(conn, message_id, time.time()))

    async def recover_active(self) -> int:
        """After a crash, messages left `active` go back to what their recipients say."""

        def apply(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute("SELECT id FROM messages WHERE state = 'active'")]
            now = time.time()
            for message_id in ids:
                _refresh_message(conn, message_id, now)
            return len(ids)

        return await self._write(apply)

    async def update_recipients(
        self, flt: MessageFilter, action: str, now: float, reply: str | None = None
    ) -> list[str]:
        """Admin actions on the pending recipients of every matching message.

        `retry`: due now; `hold`: held until released; `release`: held ones due now;
        `delete`: remove the messages (whole: a message is never cut down to some of its
        recipients). `flt.domain` and `flt.recipients` narrow the other actions to the
        recipients they name. Returns the queue IDs touched.
        """
        changes = {
            "retry": ("state IN ('queued', 'deferred')", "next_attempt_at = ?", [now]),
            "hold": ("state IN ('queued', 'deferred')", "state = 'held'", []),
            "release": ("state = 'held'", "state = 'queued', next_attempt_at = ?", [now]),
        }
        if action not in (*changes, "delete"):
            raise ValueError(f"unknown action {action!r}")

        def apply(conn: sqlite3.Connection) -> list[str]:
            where, params = _where(flt)
            sql = "SELECT m.id, m.queue_id FROM messages m"
            if where:
                sql += " WHERE " + " AND ".join(where)
            rows = conn.execute(sql, params).fetchall()
            if action == "delete":
                conn.executemany("DELETE FROM messages WHERE id = ?", [(r[0],) for r in rows])
                return [r[1] for r in rows]
            which, setting, values = changes[action]
            narrow, narrow_params = _recipient_terms(flt, "recipients")
            which = " AND ".join([which, *narrow])
            touched = []
            for message_id, queue_id in rows:
                cur = conn.execute(
                    f"UPDATE recipients SET {setting}, updated_at = ?"
                    f" WHERE message_id = ? AND {which}",
                    [*values, now, message_id, *narrow_params],
                )
                if cur.rowcount:
                    _refresh_message(conn, message_id, now)
                    touched.append(queue_id)
            return touched

        return await self._write(apply)

    async def purge_finished(self, before: float, now: float | None = None) -> int:
        """Delete delivered and bounced messages finished before `before` (retention), and
        suppression entries expired by `now` (default: the time now)."""
        expired_by = time.time() if now is None else now

        def apply(conn: sqlite3.Connection) -> int:
            total = 0
            for state in ("delivered", "bounced"):
                total += conn.execute(
                    "DELETE FROM messages WHERE state = ? AND finished_at < ?", (state, before)
                ).rowcount
            conn.execute(
                "DELETE FROM sessions WHERE started_at < ? AND session_id NOT IN"
                " (SELECT session_id FROM messages)",
                (before,),
            )
            conn.execute(
                "DELETE FROM suppressions WHERE expires_at IS NOT NULL AND expires_at < ?",
                (expired_by,),
            )
            return total

        return await self._write(apply)

    # ------------------------------------------------------------------ suspended destinations

    async def suspend(self, destination: str, until: float, reason: str) -> None:
        """Hold back delivery to `destination` until `until` (admin action)."""
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO suspended (destination, until, reason) VALUES (?, ?, ?)",
                (destination, until, reason),
            )
        )

    async def resume(self, destination: str) -> bool:
        """Lift a suspension; False if there was none."""
        return await self._write(
            lambda conn: (
                conn.execute("DELETE FROM suspended WHERE destination = ?", (destination,)).rowcount
                > 0
            )
        )

    async def retry_destination(self, destination: str, now: float) -> list[str]:
        """Make every deferred recipient bound for `destination` due now (after a resume);
        returns the queue IDs touched. By recipient, whatever the message's last reply."""

        def apply(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT DISTINCT r.message_id, m.queue_id FROM recipients r"
                " JOIN messages m ON m.id = r.message_id"
                " WHERE r.state = 'deferred' AND r.destination = ?",
                (destination,),
            ).fetchall()
            conn.execute(
                "UPDATE recipients SET next_attempt_at = ?, updated_at = ?"
                " WHERE state = 'deferred' AND destination = ?",
                (now, now, destination),
            )
            for message_id, _ in rows:
                _refresh_message(conn, message_id, now)
            return [queue_id for _, queue_id in rows]

        return await self._write(apply)

    async def suspended(self) -> dict[str, tuple[float, str]]:
        """Suspended destinations: until when, and why."""
        return await self._read(
            lambda conn: {
                d: (until, reason)
                for d, until, reason in conn.execute(
                    "SELECT destination, until, reason FROM suspended"
                )
            }
        )

    # ------------------------------------------------------------------ suppression list

    async def suppression_lookup(self, address: str, now: float | None = None) -> str | None:
        """The reason `address` is suppressed, or None (expired entries do not count)."""
        at = time.time() if now is None else now

        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT reason, created_at FROM suppressions WHERE address = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (address.lower(), at),
            ).fetchone()
            if row is None:
                return None
            since = time.strftime("%Y-%m-%d", time.gmtime(row[1]))
            return f"{row[0]} (since {since})"

        return await self._read(query)

    async def suppression_add(
        self, address: str, reason: str, expires_at: float | None = None
    ) -> None:
        """Add or replace a suppression entry."""
        now = time.time()
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO suppressions (address, reason, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (address.lower(), reason, now, expires_at),
            )
        )

    async def suppression_remove(self, address: str) -> bool:
        """Remove an entry; False if there was none."""
        return await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM suppressions WHERE address = ?", (address.lower(),)
                ).rowcount
                > 0
            )
        )

    async def suppression_list(self) -> list[SuppressionRow]:
        """Every entry, expired ones included (they are purged by delivery housekeeping)."""
        return await self._read(
            lambda conn: [
                SuppressionRow(*r)
                for r in conn.execute(
                    "SELECT address, reason, created_at, expires_at FROM suppressions"
                    " ORDER BY address"
                )
            ]
        )


def _insert_message(conn: sqlite3.Connection, msg: NewMessage) -> tuple[int, str]:
    """Insert a message, its body and recipients (due at once); returns (row id, queue ID)."""
    try:
        cur = conn.execute(
            "INSERT INTO messages (queue_id, arrived_at, sender, size, state, rcpt_count,"
            " first_rcpt, next_attempt_at, session_id, listener, client_ip, client_port, helo,"
            " auth_user, tls, body_8bit, smtputf8, is_bounce, search)"
            " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                " ".join((msg.queue_id, msg.sender, *msg.recipients)),
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
        " updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
        [
            (message_id, i, rcpt, _domain(rcpt), msg.arrived_at, msg.arrived_at)
            for i, rcpt in enumerate(msg.recipients)
        ],
    )
    if msg.transcript:
        _upsert_session(
            conn,
            msg.session_id,
            msg.transcript[0].at,
            None,
            msg.listener,
            msg.client_ip,
            msg.transcript,
        )
    return message_id, msg.queue_id


def _encode_transcript(lines: Sequence[TranscriptLine]) -> str:
    return "\n".join(line.encode() for line in lines)


def _decode_transcript(text: str) -> tuple[TranscriptLine, ...]:
    return tuple(TranscriptLine.decode(line) for line in text.split("\n") if line)


def _refresh_message(conn: sqlite3.Connection, message_id: int, now: float) -> None:
    """Derive a message's state from its recipients': held > deferred > queued > finished.

    (`active` is set and cleared around an attempt by the scheduler, above all of these.)
    """
    counts: dict[str, int] = {}
    for state, n in conn.execute(
        "SELECT state, COUNT(*) FROM recipients WHERE message_id = ? GROUP BY state",
        (message_id,),
    ):
        counts[state] = n
    next_at, attempts = conn.execute(
        "SELECT MIN(CASE WHEN state IN ('queued', 'deferred') THEN next_attempt_at END),"
        " MAX(attempts) FROM recipients WHERE message_id = ?",
        (message_id,),
    ).fetchone()
    last = conn.execute(
        "SELECT last_reply FROM recipients WHERE message_id = ? AND last_reply IS NOT NULL"
        " ORDER BY state IN ('delivered') , updated_at DESC LIMIT 1",
        (message_id,),
    ).fetchone()
    if counts.get("held"):
        state = "held"
    elif counts.get("deferred"):
        state = "deferred"
    elif counts.get("queued"):
        state = "queued"
    elif counts.get("bounced"):
        state = "bounced"
    else:
        state = "delivered"
    finished = state in ("delivered", "bounced")
    conn.execute(
        "UPDATE messages SET state = ?, next_attempt_at = ?, attempts = ?, last_reply = ?,"
        " finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) END WHERE id = ?",
        (
            state,
            None if finished else next_at,
            attempts or 0,
            last[0] if last else None,
            finished,
            now,
            message_id,
        ),
    )


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _upsert_session(
    conn: sqlite3.Connection,
    session_id: str,
    started_at: float,
    ended_at: float | None,
    listener: str,
    client_ip: str,
    lines: Sequence[TranscriptLine],
) -> None:
    text = "\n".join(line.encode() for line in lines)
    conn.execute(
        # One writer applies writes in order, so a later call always carries the longer text.
        "INSERT OR REPLACE INTO sessions"
        " (session_id, started_at, ended_at, listener, client_ip, transcript)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, started_at, ended_at, listener, client_ip, text),
    )


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


def _where(flt: MessageFilter, *, states: bool = True) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters for `flt` (without the states when `states` is False)."""
    where: list[str] = []
    params: list[Any] = []
    if states and flt.states:
        where.append(f"m.state IN ({', '.join('?' * len(flt.states))})")
        params.extend(flt.states)
    if flt.queue_ids:
        where.append(f"m.queue_id IN ({', '.join('?' * len(flt.queue_ids))})")
        params.extend(flt.queue_ids)
    rcpt_terms, rcpt_params = _recipient_terms(flt)
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


def _detail(conn: sqlite3.Connection, queue_id: str) -> MessageDetail | None:
    row = conn.execute(
        f"SELECT {_ROW_COLUMNS}, m.listener, m.session_id, m.client_ip, m.client_port, m.helo,"
        " m.auth_user, m.tls, m.body_8bit, m.smtputf8, m.is_bounce FROM messages m"
        " WHERE m.queue_id = ?",
        (queue_id,),
    ).fetchone()
    if row is None:
        return None
    base = _row(row[:11])
    listener, session_id, client_ip, client_port, helo, auth_user, tls, b8, utf8, is_bounce = row[
        11:
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
        "SELECT substr(data, 1, 65536) FROM bodies WHERE message_id = ?", (base.id,)
    ).fetchone()
    headers: tuple[tuple[str, str], ...] = ()
    if head is not None:
        raw = bytes(head[0])
        end = raw.find(b"\r\n\r\n")
        block = raw[: end + 4] if end >= 0 else raw
        # RFC 6532 §3.2: an SMTPUTF8 message's headers are UTF-8 (BytesHeaderParser would turn
        # them into U+FFFD); stray 8-bit bytes of other charsets still show as U+FFFD.
        parsed = HeaderParser(policy=compat32).parsestr(block.decode("utf-8", "replace"))
        headers = tuple((k, str(v)) for k, v in parsed.items())
    session = conn.execute(
        "SELECT transcript FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    transcript = (
        tuple(TranscriptLine.decode(line) for line in session[0].split("\n") if line)
        if session
        else ()
    )
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
            transcript=_decode_transcript(a[10]),
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
