"""What sessions that bring no message may store: a summary, within an hourly budget per client
and in total; sessions that bring a message are stored whole. Real sessions on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from relaybox.config.model import LimitsConfig
from relaybox.inbound.transcript_budget import TranscriptBudget

from .support.clock import FakeClock
from .support.configs import make_config
from .support.smtp import SMTPClient

NOOP = "NOOP " + "x" * 500


def take(budget: TranscriptBudget, ip: str, size: int, now: float, room: bool = True):
    return budget.take(ip, size, now, per_client=10_000, total=25_000, room=room)


def test_a_client_stores_until_its_budget_is_spent_then_only_counts() -> None:
    budget = TranscriptBudget()

    grants = [take(budget, "192.0.2.1", 3000, 100.0 + n) for n in range(6)]

    assert [g.store for g in grants] == [True, True, True, False, False, False]
    assert [g.first_refusal for g in grants] == [False, False, False, True, False, False]
    # Another client has its own budget.
    assert take(budget, "192.0.2.2", 3000, 110.0).store


def test_after_the_hour_the_next_stored_summary_counts_the_unstored_sessions() -> None:
    budget = TranscriptBudget()
    for n in range(5):
        take(budget, "192.0.2.1", 4000, 100.0 + n)  # 2 stored, 3 not

    grant = take(budget, "192.0.2.1", 4000, 100.0 + 3600)

    assert grant.store and grant.unstored_before == 3
    assert take(budget, "192.0.2.1", 4000, 100.0 + 3601).unstored_before == 0


def test_all_clients_together_stop_at_the_total() -> None:
    budget = TranscriptBudget()

    stored = [take(budget, f"192.0.2.{n}", 4000, 100.0).store for n in range(10)]

    assert stored == [True] * 6 + [False] * 4  # 25,000 bytes: six summaries of 4,000


def test_nothing_is_stored_or_charged_when_the_disk_is_low() -> None:
    budget = TranscriptBudget()

    assert not take(budget, "192.0.2.1", 100, 100.0, room=False).store
    assert take(budget, "192.0.2.1", 10_000, 101.0).store  # the whole budget was left


def test_an_ipv6_slash_64_is_one_client() -> None:
    budget = TranscriptBudget()
    take(budget, "2001:db8:1:2::1", 10_000, 100.0)

    assert not take(budget, "2001:db8:1:2:ffff::9", 1, 100.0).store
    assert take(budget, "2001:db8:1:3::1", 1, 100.0).store


def test_many_addresses_cannot_grow_the_table() -> None:
    budget = TranscriptBudget(max_clients=100)

    for n in range(20_000):
        take(budget, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 10, 100.0 + n / 1000)

    assert len(budget) <= 101
    # Windows past their hour make room for new clients again.
    assert take(budget, "192.0.2.200", 10, 100.0 + 2 * 3600).store


# ---------------------------------------------------------------------- real sessions


def stored_sessions(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT session_id, transcript FROM sessions"))
    finally:
        conn.close()


def spool_size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


async def noop_session(run, count: int) -> None:
    """One session of `count` pipelined `NOOP <500 characters>`, then QUIT."""
    client = await SMTPClient.connect(*run.address())
    try:
        await client.greet()
        await client.send((NOOP + "\r\n") * count)
        for _ in range(count):
            assert (await client.reply())[0] == 250
        await client.cmd("QUIT")
        assert await client.closed()
    finally:
        await client.close()


JUNK_FREE = LimitsConfig(junk_command_limit=10**9)
"""These sessions flood NOOPs to be stored; the junk-command limit would close them first
(tests/test_inbound_limits.py pins that)."""


async def settle(run) -> None:
    await asyncio.sleep(0.1)  # connection_lost queues the transcript
    await run.engine.spool.flush()


async def test_a_flood_of_noop_is_stored_as_a_summary_of_a_few_kb(start_engine, tmp_path) -> None:
    """3,000 NOOPs of 500 characters (1.5 MB said) leave one row of a few KB in the spool."""
    run = await start_engine(make_config(tmp_path / "state", limits=JUNK_FREE))
    db = run.engine.spool.path
    await settle(run)
    before = spool_size(db)

    for _ in range(4):
        await noop_session(run, 3000)
    await settle(run)

    rows = stored_sessions(db)
    assert len(rows) == 4
    assert all(len(text.encode()) < 8 * 1024 for text in rows.values())
    assert all("NOOP ×3000" in text for text in rows.values())
    assert spool_size(db) - before < 1024 * 1024


async def test_beyond_its_budget_a_client_sessions_are_counted_not_stored(
    start_engine, tmp_path: Path
) -> None:
    limits = dataclasses.replace(JUNK_FREE, transcript_budget_per_client=2500)
    run = await start_engine(make_config(tmp_path / "state", limits=limits))

    for _ in range(5):
        await noop_session(run, 300)
    await settle(run)

    rows = stored_sessions(run.engine.spool.path)
    assert len(rows) == 2  # about 1 KB each
    log = run.log_text()
    assert log.count("transcript-not-stored") == 1
    assert 'reason="budget spent"' in log


async def test_after_the_hour_the_stored_summary_says_how_many_were_left_out(
    start_engine, tmp_path: Path
) -> None:
    clock = FakeClock()
    limits = dataclasses.replace(JUNK_FREE, transcript_budget_per_client=1500)
    run = await start_engine(make_config(tmp_path / "state", limits=limits), clock=clock)
    for _ in range(3):
        await noop_session(run, 300)
    await settle(run)
    clock.advance(3601)

    await noop_session(run, 1)
    await settle(run)

    rows = stored_sessions(run.engine.spool.path)
    assert len(rows) == 2
    assert any("2 earlier sessions from this client were not stored" in t for t in rows.values())


async def test_no_summary_is_stored_below_the_free_space_floor(start_engine, tmp_path) -> None:
    run = await start_engine(make_config(tmp_path / "state", min_free_space_mb=10**12))

    await noop_session(run, 10)
    await settle(run)

    assert stored_sessions(run.engine.spool.path) == {}
    assert 'reason="disk below min_free_space_mb"' in run.log_text()


async def test_a_session_that_brought_a_message_is_stored_whole(start_engine, tmp_path) -> None:
    limits = dataclasses.replace(JUNK_FREE, transcript_budget_per_client=0)
    run = await start_engine(make_config(tmp_path / "state", limits=limits))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await client.send((NOOP + "\r\n") * 100)
    for _ in range(100):
        await client.reply()
    message = b"Subject: x\r\n\r\nhi\r\n"
    code, _ = await client.send_message("a@example.com", ["b@example.org"], message)
    assert code == 250
    await client.cmd("NOOP")
    await client.cmd("QUIT")
    await client.closed()
    await client.close()
    await settle(run)

    [text] = stored_sessions(run.engine.spool.path).values()
    assert text.count(NOOP) == 100  # whole lines, none clipped
    assert "lines omitted" not in text
