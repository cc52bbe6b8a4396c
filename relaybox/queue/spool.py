"""The durable spool: one SQLite file of messages, recipients' states, transcripts, suppressions.

`Spool` opens the file (WAL mode, `synchronous=FULL`), runs the writer thread (`writer`) and a
small pool of reader threads, and hands each call to the module that knows its tables. Nothing
here runs SQLite on the event loop: it only hands work to threads and awaits their futures.
Reads use their own connections and never wait for the writer (WAL readers see the last
commit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence, Set
from pathlib import Path
from typing import Any, TypeVar

from relaybox.clock import Clock, system_clock
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import (
    actions,
    detail,
    jobs,
    listing,
    reroute,
    suppression,
    suspension,
    vacuum,
)
from relaybox.queue.arrival import insert_message, upsert_session
from relaybox.queue.integrity import (
    SpoolDamaged,
    SpoolReplaced,
    expected_identity,
    is_damage,
    quick_check,
    settle_identity,
    spool_identity,
)
from relaybox.queue.model import (
    AttemptRow,
    DeliveryJob,
    MessageDetail,
    MessageFilter,
    MessageRow,
    NewMessage,
    Overview,
    RecipientOutcome,
    RecipientRow,
    SpoolError,
    SuppressionRow,
)
from relaybox.queue.outcomes import (
    record_attempt,
    record_delivered,
    recover_active,
    refresh_message,
)
from relaybox.queue.schema import MIGRATIONS, connect, migrate
from relaybox.queue.writer import Writer
from relaybox.statedir import refuse_links, sqlite_files

__all__ = ["Spool"]

T = TypeVar("T")

RECHECK_INTERVAL = 60.0
"""Seconds between two integrity checks prompted by errors (a damaged file errs on every write)."""


class Spool:
    """The message store of one state directory.

    Open with `await Spool.open(path)`; close with `await spool.close()`.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str] = MIGRATIONS,
        *,
        clock: Clock = system_clock,
        min_free_bytes: int = 0,
    ) -> None:
        self.path = path
        self.clock = clock
        """The time for what the spool stamps by itself (state refreshes, suppressions)."""
        self.min_free_bytes = min_free_bytes
        """The disk's free-space floor (`min_free_space_mb`): the WAL stays within half of it,
        and the conversion to auto-vacuum runs only with room above it."""
        self.vacuum_note: str | None = None
        """What opening did about auto-vacuum (converted, or why not), for the log."""
        self._migrations = migrations
        self._writer: Writer | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="spool-read"
        )
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self.migrated_from: int | None = None
        self.damaged: SpoolDamaged | None = None
        """Set when a check prompted by a failed write or read found the file damaged: every
        write is refused from then on (the engine stops accepting and delivering)."""
        self.on_damaged: Callable[[SpoolDamaged], None] | None = None
        """Called (on the event loop) once, when the file is found damaged while in use."""
        self._last_check = float("-inf")
        self._checking = False

    @property
    def commits(self) -> int:
        """Transactions committed by the writer (for tests and metrics: group commit)."""
        return self._writer.commits if self._writer is not None else 0

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        path: Path,
        migrations: Sequence[str] = MIGRATIONS,
        *,
        clock: Clock = system_clock,
        min_free_bytes: int = 0,
        check: bool = False,
        identity: Path | None = None,
    ) -> Spool:
        """Open (creating and migrating if needed, switching an old spool to incremental
        auto-vacuum when there is room) and start the writer thread.

        Args:
            min_free_bytes: the free-space floor, which bounds the write-ahead log.
            check: run `PRAGMA quick_check` first (the engine does: it reads the whole file,
                about a second per 100 MB).
            identity: the state directory's identity file: a spool that vanished or was
                replaced is refused, a new (or older relaybox's) spool's identity written there.

        Raises:
            SpoolDamaged, SpoolLost, SpoolReplaced: see `queue.integrity`.
            StateDirUnsafe: spool.db or its -wal/-shm is a link.
            SpoolError: anything else SQLite or the file system refused.
        """
        spool = cls(path, migrations, clock=clock, min_free_bytes=min_free_bytes)
        await asyncio.to_thread(spool._open_sync, check, identity)
        return spool

    @classmethod
    async def open_for_reading(
        cls,
        path: Path,
        *,
        clock: Clock = system_clock,
        identity: Path | None = None,
        check: bool = False,
    ) -> Spool:
        """Open without a writer and without migrating: for `queue` and `show` beside an engine.

        With `check`, `PRAGMA quick_check` reads the whole file first (as the engine does at
        start): a listing cannot tell damage in pages it does not read.

        Raises SpoolError when there is no spool yet, its schema is not this relaybox's, it is
        damaged as far as opening it shows, or (`identity`, the state directory's identity
        file) it vanished or is not this state directory's.
        """
        spool = cls(path, clock=clock)

        def examine() -> None:
            refuse_links(sqlite_files(path))
            expected = expected_identity(path, identity) if identity is not None else None
            if not path.exists():
                raise SpoolError(
                    f"no spool at {path} yet (relaybox has not run with this state_dir)"
                )
            try:
                version = int(spool._reader().execute("PRAGMA user_version").fetchone()[0])
            except sqlite3.Error as exc:
                if is_damage(exc):
                    raise SpoolDamaged(path, [str(exc)]) from exc
                raise SpoolError(f"cannot read the spool database {path}: {exc}") from exc
            problems = quick_check(spool._reader()) if check else []
            if problems:
                raise SpoolDamaged(path, problems)
            if version != len(spool._migrations):
                raise SpoolError(
                    f"the spool at {path} has schema version {version}, this relaybox uses "
                    f"{len(spool._migrations)}; start the engine once to migrate it"
                )
            if identity is not None:
                found = spool_identity(spool._reader())
                if expected is not None and found is not None and found != expected:
                    raise SpoolReplaced(path, identity, expected, found)

        try:
            await asyncio.get_running_loop().run_in_executor(spool._readers, examine)
        except BaseException:
            await spool.close()
            raise
        return spool

    def _open_sync(self, check: bool, identity: Path | None) -> None:
        conn: sqlite3.Connection | None = None
        # SQLite takes no open flags: its files are looked at before it opens (or makes) them.
        refuse_links(sqlite_files(self.path))
        expected = expected_identity(self.path, identity) if identity is not None else None
        try:
            # Create the file private before SQLite opens it (and its -wal, which copies its mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            conn = connect(self.path, readonly=False, min_free_bytes=self.min_free_bytes)
            problems = quick_check(conn) if check else []
            if problems:
                raise SpoolDamaged(self.path, problems)
            self.migrated_from = migrate(conn, self._migrations)
            if identity is not None:
                settle_identity(conn, self.path, identity, expected)
            self.vacuum_note = vacuum.convert(conn, self.path, self.min_free_bytes)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if is_damage(exc):
                raise SpoolDamaged(self.path, [str(exc)]) from exc
            raise SpoolError(f"cannot open the spool database {self.path}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise SpoolError(f"cannot open the spool database {self.path}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._writer_conn = conn
        self._writer = Writer(conn)
        self._writer.start()

    async def close(self) -> None:
        """Finish pending writes, stop the writer and close every connection."""
        if self._writer is not None:
            await self._writer.stop()
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    # ------------------------------------------------------------------ threads

    async def _write(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """Run `apply` in the writer's next transaction; returns once it is committed.

        A write that fails as a damaged file fails prompts an integrity check; once the file is
        found damaged, every write is refused at once, saying so.
        """
        if self._writer is None:
            raise SpoolError("the spool is closed")
        if self.damaged is not None:
            raise self.damaged
        try:
            return await self._writer.write(apply)
        except SpoolError as exc:
            if is_damage(exc.__cause__):
                await self._check_after_error()
                if self.damaged is not None:
                    raise self.damaged from exc
            raise

    def _write_later(self, apply: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue a write nobody waits for (it rides along with the next commit)."""
        if self._writer is not None:
            self._writer.write_later(apply)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` on a reader's connection. SQLite saying the file is damaged comes back
        as SpoolError (a caller shows it; never a traceback) after an integrity check."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, lambda: query(self._reader()))
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            await self._check_after_error()
            raise (self.damaged or SpoolDamaged(self.path, [str(exc)])) from exc

    async def _check_after_error(self) -> None:
        """`PRAGMA quick_check` after SQLite said the file is damaged (at most once a minute):
        when it agrees, refuse writes from now on and tell `on_damaged`."""
        now = self.clock()
        if self.damaged is not None or self._checking or now - self._last_check < RECHECK_INTERVAL:
            return
        self._checking, self._last_check = True, now
        try:
            loop = asyncio.get_running_loop()
            problems = await loop.run_in_executor(
                self._readers, lambda: quick_check(self._reader())
            )
        except sqlite3.Error as exc:
            problems = [str(exc)]
        finally:
            self._checking = False
        if problems and self.damaged is None:
            self.damaged = SpoolDamaged(self.path, problems)
            if self.on_damaged is not None:
                self.on_damaged(self.damaged)

    # ------------------------------------------------------------------ messages

    async def store_message(self, msg: NewMessage) -> str:
        """Store a message durably; returns its queue ID once the commit is on disk.

        Nothing may answer 250 to DATA before this returns: `Writer.write` resolves only after
        the COMMIT holding the message has fsynced the WAL. Raises SpoolError if the write
        failed, in which case the client must get a 4xx.
        """
        return await self._write(lambda conn: insert_message(conn, msg)[1])

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
            lambda conn: upsert_session(
                conn, session_id, started_at, ended_at, listener, client_ip, frozen
            )
        )

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._write(lambda conn: None)

    # ------------------------------------------------------------------ disk space

    async def vacuum(self, min_pages: int = vacuum.VACUUM_AFTER_PAGES) -> int:
        """Give the pages of deleted mail back to the disk once `min_pages` are free; returns
        the bytes given back.

        In steps of `vacuum.PAGES_PER_STEP` pages, each one of the writer's transactions, so
        mail being received waits behind one step at most; then a checkpoint cuts the file.
        """
        free, page_size = await self._read(vacuum.free_pages)
        if free < max(1, min_pages):
            return 0
        freed = 0
        while True:
            step = await self._write(vacuum.incremental_step)
            freed += step
            if step < vacuum.PAGES_PER_STEP:  # none left, or none can go (no auto-vacuum)
                break
        if freed:
            await self.checkpoint()
        return freed * page_size

    async def checkpoint(self) -> bool:
        """Copy the WAL into the database and cut it to zero bytes (when disk space is short,
        or after a vacuum); False when readers or the writer kept it from finishing."""
        return await self._read(vacuum.checkpoint)

    async def count_by_state(self) -> dict[str, int]:
        """Number of messages in each state."""
        return await self._read(listing.count_by_state)

    async def overview(self, since: float) -> Overview:
        """Counts for a status line: by state, finished since `since`, the oldest deferred."""
        return await self._read(lambda conn: listing.overview(conn, since))

    async def message_ids(
        self, flt: MessageFilter, *, sort: str = "arrived", descending: bool = False
    ) -> list[int]:
        """The row ids of every matching message, in `sort` order (then row id).

        For a view over the whole queue (the TUI): ids are 8 bytes each, so 100,000 messages
        cost under a megabyte, and the rows themselves are read a screenful at a time
        (`rows_by_id`).
        """
        column = listing.sort_column(sort)
        return await self._read(lambda conn: listing.message_ids(conn, flt, column, descending))

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
        column = listing.sort_column(sort)
        return await self._read(
            lambda conn: listing.message_id_page(conn, flt, column, descending, after, limit)
        )

    async def rows_by_id(self, ids: Sequence[int]) -> dict[int, MessageRow]:
        """The listing rows of these messages (those that still exist), by row id."""
        return await self._read(lambda conn: listing.rows_by_id(conn, ids))

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
        column = listing.sort_column(sort)
        return await self._read(
            lambda conn: listing.list_messages(conn, flt, column, descending, after, limit)
        )

    async def count_messages(self, flt: MessageFilter) -> int:
        """How many messages match `flt`."""
        return await self._read(lambda conn: listing.count_messages(conn, flt))

    async def recipients_of(self, message_ids: Sequence[int]) -> dict[int, list[RecipientRow]]:
        """Recipients of many messages at once (for listings that show them)."""
        return await self._read(lambda conn: listing.recipients_of(conn, message_ids))

    async def recent_attempts(
        self, destination: str, limit: int = 20
    ) -> list[tuple[str, AttemptRow]]:
        """The newest attempts to `destination`, newest first, with their queue IDs."""
        return await self._read(lambda conn: detail.recent_attempts(conn, destination, limit))

    async def message_detail(self, queue_id: str) -> MessageDetail | None:
        """Envelope, recipients, headers and inbound transcript of one message."""
        return await self._read(lambda conn: detail.message_detail(conn, queue_id))

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None:
        """The stored message bytes (at most `limit` of them)."""
        return await self._read(lambda conn: detail.message_data(conn, queue_id, limit))

    # ------------------------------------------------------------------ delivery

    async def due_messages(self, now: float, limit: int, skip: Set[int] = frozenset()) -> list[int]:
        """Row ids of messages with a recipient whose next attempt is due, soonest first."""
        return await self._read(lambda conn: jobs.due_messages(conn, now, limit, skip))

    async def next_due_at(self) -> float | None:
        """When the next message with a queued or deferred recipient falls due (None when
        none waits)."""
        return await self._read(jobs.next_due_at)

    async def load_job(self, message_id: int, now: float) -> DeliveryJob | None:
        """A message and its recipients due by `now`; None if it is gone or nothing is due."""
        return await self._read(lambda conn: jobs.load_job(conn, message_id, now))

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
        return await self._write(
            lambda conn: record_attempt(
                conn,
                message_id,
                outcomes,
                attempts,
                now=now,
                new_messages=new_messages,
                suppress=suppress,
                warned=warned,
                signatures=signatures,
            )
        )

    async def record_delivered(
        self, message_id: int, outcomes: Sequence[RecipientOutcome], *, now: float
    ) -> None:
        """Mark recipients delivered the moment the next hop took them (see `finish_attempt`).

        Committed (fsynced, with whatever else the writer has pending) before this returns;
        the scheduler starts no other transaction on that connection until it has.
        """
        await self._write(lambda conn: record_delivered(conn, message_id, outcomes, now=now))

    async def refresh_state(self, message_id: int) -> None:
        """Recompute a message's state from its recipients (after an attempt found nothing due)."""
        await self._write(lambda conn: refresh_message(conn, message_id, self.clock()))

    async def recover_active(self) -> int:
        """After a crash, messages left `active` go back to what their recipients say."""
        return await self._write(lambda conn: recover_active(conn, self.clock()))

    async def update_recipients(
        self, flt: MessageFilter, action: str, now: float, reply: str | None = None
    ) -> list[str]:
        """Admin actions on the pending recipients of every matching message.

        `retry`: due now; `hold`: held until released; `release`: held ones due now;
        `delete`: remove the messages (whole: a message is never cut down to some of its
        recipients). `flt.domain` and `flt.recipients` narrow the other actions to the
        recipients they name. Returns the queue IDs touched.
        """
        actions.check_action(action)
        return await self._write(lambda conn: actions.update_recipients(conn, flt, action, now))

    async def purge_finished(self, before: float, now: float | None = None) -> int:
        """Delete delivered and bounced messages finished before `before` (retention), and
        suppression entries expired by `now` (default: the spool's clock now)."""
        expired_by = self.clock() if now is None else now
        return await self._write(lambda conn: actions.purge_finished(conn, before, expired_by))

    # ------------------------------------------------------------------ suspended destinations

    async def suspend(self, destination: str, until: float, reason: str) -> list[str]:
        """Hold back delivery to `destination` until `until` (admin action); the queue IDs
        whose deferred recipients now say so."""
        now = self.clock()
        return await self._write(
            lambda conn: suspension.suspend(conn, destination, until, reason, now)
        )

    async def resume(self, destination: str) -> bool:
        """Lift a suspension; False if there was none."""
        return await self._write(lambda conn: suspension.resume(conn, destination))

    async def retry_destination(self, destination: str, now: float) -> list[str]:
        """Make every deferred recipient bound for `destination` due now (after a resume);
        returns the queue IDs touched. By recipient, whatever the message's last reply."""
        return await self._write(lambda conn: suspension.retry_destination(conn, destination, now))

    async def unfinished_recipients(
        self, states: tuple[str, ...] = reroute.ROUTABLE
    ) -> list[reroute.Unfinished]:
        """Every recipient in `states` (default: queued or deferred) with its sender, last
        destination and reply (a reload places each under the new routes; the destinations
        view groups them)."""
        return await self._read(lambda conn: reroute.unfinished_recipients(conn, states))

    async def make_due(self, recipients: Sequence[tuple[int, int]], now: float) -> int:
        """Make these (message row id, recipient idx) due now: their next hop changed."""
        if not recipients:
            return 0
        return await self._write(lambda conn: reroute.make_due(conn, recipients, now))

    async def suspended(self) -> dict[str, tuple[float, str]]:
        """Suspended destinations: until when, and why."""
        return await self._read(suspension.suspended)

    # ------------------------------------------------------------------ suppression list

    async def suppression_lookup(self, address: str, now: float | None = None) -> str | None:
        """The reason `address` is suppressed, or None (expired entries do not count)."""
        at = self.clock() if now is None else now
        return await self._read(lambda conn: suppression.lookup(conn, address, at))

    async def suppression_add(
        self, address: str, reason: str, expires_at: float | None = None
    ) -> None:
        """Add or replace a suppression entry."""
        now = self.clock()
        await self._write(lambda conn: suppression.add(conn, address, reason, now, expires_at))

    async def suppression_remove(self, address: str) -> bool:
        """Remove an entry; False if there was none."""
        return await self._write(lambda conn: suppression.remove(conn, address))

    async def suppression_list(self) -> list[SuppressionRow]:
        """Every entry, expired ones included (they are purged by delivery housekeeping)."""
        return await self._read(suppression.entries)
