"""Deleting mail gives its disk space back, and the WAL stays within the free-space floor:
real SQLite files, and a real small filesystem (tmpfs) where the test may mount one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaybox.queue import MIGRATIONS, MessageFilter, Spool
from relaybox.queue.arrival import insert_message
from relaybox.queue.schema import migrate

from .support.configs import make_config
from .support.smtp import SMTPClient
from .support.spool import new_message

BODY = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 400  # about 31 KB


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wal(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def auto_vacuum(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    finally:
        conn.close()


async def store(spool: Spool, count: int) -> list[str]:
    return list(
        await asyncio.gather(*(spool.store_message(new_message(data=BODY)) for _ in range(count)))
    )


async def test_a_new_spool_gives_pages_back_incrementally(spool: Spool, db_path: Path) -> None:
    assert auto_vacuum(db_path) == 2  # INCREMENTAL


async def test_deleting_many_messages_shrinks_spool_db_after_the_vacuum(
    spool: Spool, db_path: Path
) -> None:
    await store(spool, 200)
    await spool.checkpoint()
    full = size(db_path)
    assert full > 6 * 2**20

    await spool.update_recipients(MessageFilter(states=()), "delete", 0.0)
    freed = await spool.vacuum()

    assert freed > 5 * 2**20
    assert size(db_path) < full / 4
    assert size(wal(db_path)) == 0  # cut by the checkpoint after the vacuum


async def test_a_few_free_pages_are_left_for_reuse(spool: Spool, db_path: Path) -> None:
    [queue_id] = await store(spool, 1)
    await spool.update_recipients(MessageFilter(queue_ids=(queue_id,), states=()), "delete", 0.0)

    assert await spool.vacuum() == 0  # 31 KB: below VACUUM_AFTER_PAGES
    assert await spool.vacuum(min_pages=1) > 0


def old_spool(db: Path, messages: int) -> None:
    """A spool as relaybox made it before auto-vacuum: no auto_vacuum pragma, then mail."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, MIGRATIONS)
        conn.execute("BEGIN")
        for _ in range(messages):
            insert_message(conn, new_message(data=BODY))
        conn.execute("COMMIT")
        conn.execute("DELETE FROM messages WHERE id % 2 = 0")  # half of it deleted: free pages
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    assert auto_vacuum(db) == 0


async def test_an_old_spool_is_converted_at_start_and_keeps_its_mail(db_path: Path) -> None:
    old_spool(db_path, 100)
    before = size(db_path)

    spool = await Spool.open(db_path)
    try:
        assert spool.vacuum_note is not None and spool.vacuum_note.startswith("converted")
        assert auto_vacuum(db_path) == 2
        assert size(db_path) < before * 0.6  # the deleted half went at once
        assert await spool.count_messages(MessageFilter(states=())) == 50
        assert size(wal(db_path)) == 0
    finally:
        await spool.close()

    again = await Spool.open(db_path)
    assert again.vacuum_note is None  # only once
    await again.close()


async def test_the_conversion_waits_when_the_disk_has_no_room_for_it(db_path: Path) -> None:
    old_spool(db_path, 10)

    spool = await Spool.open(db_path, min_free_bytes=2**60)
    try:
        assert spool.vacuum_note is not None
        assert "tried again at the next start" in spool.vacuum_note
        assert auto_vacuum(db_path) == 0
        await store(spool, 1)  # still serves mail
    finally:
        await spool.close()


async def test_the_wal_stays_within_half_the_free_space_floor(db_path: Path) -> None:
    """A floor of 1 MB: the WAL is checkpointed and cut long before it could eat it (it once
    grew to 4 MB and more, and filled a 2 MB disk with a floor of 1 MB)."""
    spool = await Spool.open(db_path, min_free_bytes=2**20)
    largest = 0
    try:
        for _ in range(100):
            await spool.store_message(new_message(data=BODY))
            largest = max(largest, size(wal(db_path)))
    finally:
        await spool.close()

    assert largest <= 2**20 // 2 + 128 * 1024  # the limit, plus the last transaction's pages


# ---------------------------------------------------------------------- a small disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (root only: skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**20


async def test_on_a_small_disk_the_floor_holds_and_the_wal_is_cut(
    start_engine, small_disk: Path
) -> None:
    """A 4 MB disk, a floor of 1 MB: messages are accepted until the floor, then refused with
    452; the disk never fills (no SQLITE_FULL), and once space is short the WAL is cut."""
    run = await start_engine(make_config(small_disk / "state", min_free_space_mb=1))
    with open(small_disk / "ballast", "wb") as ballast:  # leave about 2.5 MB
        ballast.write(b"\0" * int((free_mb(small_disk) - 2.5) * 2**20))
    codes = []
    for _ in range(60):
        client = await SMTPClient.connect(*run.address())
        with contextlib.suppress(ConnectionError):
            await client.greet()
            code, _ = await client.cmd("MAIL FROM:<a@example.com>")
            if code == 250:
                await client.cmd("RCPT TO:<b@example.org>")
                await client.cmd("DATA")
                await client.send(BODY * 2 + b".\r\n")
                code, _ = await client.reply()
            codes.append(code)
        await client.close()
        if code != 250:
            break
        await asyncio.sleep(0.2)  # the free space is measured every 2 s

    assert 250 in codes and codes[-1] == 452  # refused at the floor, not by a full disk
    assert "spool-failed" not in run.log_text()
    await asyncio.sleep(2.5)  # the next measure finds space short and cuts the WAL
    assert size(wal(small_disk / "state" / "spool.db")) == 0
    assert free_mb(small_disk) > 0.5
