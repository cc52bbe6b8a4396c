"""The spool's one writing thread: group commit, and durability before a caller's future resolves.

Every write is a function of the writer's connection; whatever is pending when the thread wakes
is applied in one transaction and committed with one fsync. It knows nothing of messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from relaybox.queue.model import SpoolError

__all__ = ["Writer"]

T = TypeVar("T")


@dataclass
class _Write:
    """One unit of work for the writer thread; `future` is None for fire-and-forget writes."""

    apply: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None


_STOP = object()


class Writer:
    """The thread that owns the spool's writing connection (opened by `schema.connect`).

    Concurrent callers share commits: while one transaction is being fsynced, the writes
    queued behind it gather and go into the next one together.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._writes: queue.SimpleQueue[_Write | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0
        """Transactions committed (for tests and metrics: group commit)."""

    def start(self) -> None:
        """Start the thread; writes are refused before this and after `stop`."""
        self._thread = threading.Thread(target=self._loop, name="spool-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Commit what is pending, then end the thread (the connection stays open)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            # `write` refuses from now on, so nothing can be queued behind _STOP and hang.
            self._writes.put(_STOP)
            await asyncio.to_thread(thread.join)

    async def write(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """Run `apply` in the writer's next transaction; returns once it is committed.

        The result (or `apply`'s exception; SQLite's errors as SpoolError) is handed back only
        after the COMMIT that holds it has returned, that is after the WAL is fsynced
        (`synchronous = FULL`): when this returns, what `apply` wrote survives a crash.

        Raises:
            SpoolError: the spool is closed, or the write or its commit failed.
        """
        if self._thread is None:
            raise SpoolError("the spool is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.put(_Write(apply, future, loop))
        return await future

    def write_later(self, apply: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue a write nobody waits for (it rides along with the next commit)."""
        if self._thread is not None:
            self._writes.put(_Write(apply, None, None))

    def _loop(self) -> None:
        """Commit everything pending in one transaction, then wake the waiters: group commit."""
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
                self._commit_batch(batch)

    def _commit_batch(self, batch: list[_Write]) -> None:
        conn = self._conn
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
            failure.__cause__ = exc  # what SQLite said: a full disk is not a bug, damage is checked
            results = [(w, None, failure) for w in batch]
        # Only now, after the COMMIT (or its failure), are the waiters woken.
        for write, result, error in results:
            if write.future is not None and write.loop is not None:
                # A waiter whose loop has closed is gone; the writer must outlive it.
                with contextlib.suppress(RuntimeError):
                    write.loop.call_soon_threadsafe(_settle, write.future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
