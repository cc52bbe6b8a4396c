"""The writer thread: a write returns only once committed, and writes that wait together share
one commit (group commit). Runs `Writer` on a real spool file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from relaybox.queue import SpoolError
from relaybox.queue.schema import MIGRATIONS, connect, migrate
from relaybox.queue.writer import Writer


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.sqlite"


@pytest.fixture
async def writer(path: Path) -> AsyncIterator[Writer]:
    conn = connect(path, readonly=False)
    migrate(conn, MIGRATIONS)
    started = Writer(conn)
    started.start()
    yield started
    await started.stop()
    conn.close()


def insert_suspension(name: str) -> Callable[[sqlite3.Connection], str]:
    """A write that suspends `name` and returns it."""

    def apply(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO suspended VALUES (?, 1.0, 'test')", (name,))
        return name

    return apply


def stored(path: Path) -> set[str]:
    """What another connection (another process, say) finds on disk."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT destination FROM suspended")}
    finally:
        conn.close()


async def test_a_write_returns_only_once_its_commit_is_on_disk(writer: Writer, path: Path) -> None:
    result = await writer.write(insert_suspension("mx:a.example"))

    assert result == "mx:a.example"
    assert writer.commits == 1
    assert stored(path) == {"mx:a.example"}


async def test_writes_waiting_behind_a_commit_share_the_next_one(writer: Writer) -> None:
    """While one transaction runs, twenty more callers queue: they cost one commit, not twenty."""
    running, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        running.set()
        release.wait(10)

    first = asyncio.ensure_future(writer.write(slow))
    await asyncio.to_thread(running.wait, 10)
    rest = [asyncio.ensure_future(writer.write(insert_suspension(f"d{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # every write is queued before the writer wakes again
    release.set()
    await asyncio.gather(first, *rest)

    assert writer.commits == 2


async def test_a_write_after_stop_is_refused(writer: Writer, path: Path) -> None:
    await writer.stop()

    with pytest.raises(SpoolError, match="closed"):
        await writer.write(insert_suspension("mx:late.example"))
    writer.write_later(insert_suspension("mx:later.example"))
    assert stored(path) == set()
