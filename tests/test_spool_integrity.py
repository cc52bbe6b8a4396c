"""A damaged, vanished or replaced spool: the engine refuses it with words and a non-zero exit,
`relaybox queue` says so without a traceback, `relaybox spool check` tells whole from damaged,
and `relaybox spool recover` saves every message that can be read, keeping the damaged file.

Damage is real: 4 KB pages of spool.db overwritten with random bytes (in the middle of the
file, and its first page), as a failing disk or a stray `dd` would leave it.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from relaybox.queue import MIGRATIONS, Spool, SpoolError
from relaybox.queue.integrity import SpoolDamaged, SpoolLost, SpoolReplaced
from relaybox.statedir import DATABASE_NAME, IDENTITY_NAME, ensure_state_dir, read_identity

from .relayproc import EXIT_TIMEOUT, Cli, Relay, RunCli, StartRelay, free_port
from .support.configs import write_config
from .support.engine import EngineFactory
from .support.smtp import send_sync
from .support.spool import insert_old_messages, new_message

PAGE = 4096
MESSAGES = 400
"""Enough for a spool of about 500 pages: damage can land in the middle of every table."""


def seed(state_dir: Path, count: int = MESSAGES) -> dict[str, bytes]:
    """A spool in `state_dir` as an engine leaves it (identity file included), holding `count`
    messages with distinct bodies of about 3 KB; returns queue ID -> the stored bytes."""
    return asyncio.run(seed_async(state_dir, count))


async def seed_async(state_dir: Path, count: int = MESSAGES) -> dict[str, bytes]:
    """`seed` from a test already on an event loop."""
    ensure_state_dir(state_dir)
    spool = await Spool.open(state_dir / DATABASE_NAME, identity=state_dir / IDENTITY_NAME)
    try:
        bodies = [
            b"Subject: %d\r\n\r\n" % n + random.Random(n).randbytes(1500).hex().encode()
            for n in range(count)
        ]
        # All at once: group commit makes it a few transactions.
        ids = await asyncio.gather(*(spool.store_message(new_message(data=d)) for d in bodies))
        return dict(zip(ids, bodies, strict=True))
    finally:
        await spool.close()


def overwrite_pages(path: Path, pages: list[int], seed_: int = 7) -> None:
    """Overwrite whole 4 KB pages (numbered from 1, as SQLite numbers them) with random bytes."""
    noise = random.Random(seed_)
    with open(path, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * PAGE)
            f.write(noise.randbytes(PAGE))


def middle_pages(path: Path, count: int = 6) -> list[int]:
    """`count` pages spread over the middle of the file, never one of the schema's (the first
    page, and those the migrations' CREATE statements spill into): rows are damaged, not the
    tables' definitions, which only the sqlite3 shell's .recover gets round."""
    with sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True) as conn:
        schema = {
            row[0] for row in conn.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'")
        }
    conn.close()
    pages = path.stat().st_size // PAGE
    chosen: set[int] = set()
    for k in range(count):
        page = 2 + (pages - 3) * (k + 1) // (count + 1)
        while page in schema:
            page += 1
        chosen.add(page)
    return sorted(chosen)


def relay_with_mail(tmp_path: Path, start_relay: StartRelay) -> tuple[Relay, Path, Path]:
    """A relay running on tmp_path/state that has accepted one message: (relay, config file,
    state directory)."""
    port = free_port()
    state_dir = tmp_path / "state"
    config = write_config(tmp_path, port, state_dir=state_dir)
    relay = start_relay("--headless", "--config", config, port=port)
    send_sync(port)
    return relay, config, state_dir


def saved_bodies(state_dir: Path) -> dict[str, bytes]:
    with sqlite3.connect(state_dir / DATABASE_NAME) as conn:
        rows = conn.execute(
            "SELECT queue_id, data FROM messages JOIN bodies ON bodies.message_id = messages.id"
        ).fetchall()
    return {str(q): bytes(d) for q, d in rows}


# ---------------------------------------------------------------------------- a damaged spool


@pytest.mark.parametrize("where", ["middle", "first page"])
def test_the_engine_refuses_a_damaged_spool_naming_the_file_and_the_command(
    tmp_path: Path, run_cli: RunCli, where: str
) -> None:
    """Without the check, this engine starts and accepts mail on a spool that cannot record
    a delivery (run_cli then times out: the relay never exits)."""
    state_dir = tmp_path / "state"
    seed(state_dir)
    spool_db = state_dir / DATABASE_NAME
    overwrite_pages(spool_db, middle_pages(spool_db) if where == "middle" else [1])
    config = write_config(tmp_path, free_port(), state_dir=state_dir)

    result = run_cli("--headless", "--config", config, timeout=EXIT_TIMEOUT)
    assert result.returncode == 1, result.stderr
    assert f"the spool database {spool_db} is damaged" in result.stderr
    assert f"relaybox spool recover --config {config}" in result.stderr
    assert "Traceback" not in result.stderr


def test_queue_without_an_engine_on_a_damaged_spool_says_so_without_a_traceback(
    tmp_path: Path, cli: Cli
) -> None:
    state_dir = tmp_path / "state"
    seed(state_dir)
    overwrite_pages(state_dir / DATABASE_NAME, middle_pages(state_dir / DATABASE_NAME))
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    for command in (["queue"], ["queue", "--json"], ["queue", "hold", "--all"]):
        result = cli(*command, "--config", config)
        assert result.returncode == 1, (command, result.stdout)
        assert "is damaged" in result.stderr, (command, result.stderr)
        assert "relaybox spool recover" in result.stderr


def test_spool_check_says_ok_on_a_whole_spool_and_what_is_wrong_on_a_damaged_one(
    tmp_path: Path, cli: Cli
) -> None:
    state_dir = tmp_path / "state"
    seed(state_dir, 50)
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    result = cli("spool", "check", "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {state_dir / DATABASE_NAME} is whole")
    assert "50 messages" in result.stdout

    overwrite_pages(state_dir / DATABASE_NAME, middle_pages(state_dir / DATABASE_NAME, 2))
    result = cli("spool", "check", "--config", config)
    assert result.returncode == 1
    assert f"damaged: {state_dir / DATABASE_NAME}" in result.stderr
    assert f"relaybox spool recover --config {config}" in result.stderr


async def test_a_write_that_finds_the_file_damaged_stops_every_later_write(
    tmp_path: Path,
) -> None:
    """Damage that appears while the spool is open (a write trips on it): the file is
    checked, found damaged, reported once, and no write is tried on it again."""
    state_dir = tmp_path / "state"
    await seed_async(state_dir)
    spool_db = state_dir / DATABASE_NAME
    overwrite_pages(spool_db, middle_pages(spool_db))
    spool = await Spool.open(spool_db)  # an offline write opens without the check
    reported: list[SpoolDamaged] = []
    spool.on_damaged = reported.append
    try:
        with pytest.raises(SpoolDamaged, match="relaybox spool recover"):
            await spool._write(lambda conn: conn.execute("UPDATE bodies SET data = data || 'x'"))
        assert len(reported) == 1 and reported[0].path == spool_db
        with pytest.raises(SpoolDamaged):  # refused at once: nothing reaches the file
            await spool.store_message(new_message())
        assert len(reported) == 1
    finally:
        await spool.close()


# ---------------------------------------------------------------------------- recovering it


def test_spool_recover_saves_every_whole_message_and_keeps_the_damaged_file(
    tmp_path: Path, cli: Cli, start_relay: StartRelay
) -> None:
    state_dir = tmp_path / "state"
    stored = seed(state_dir)
    spool_db = state_dir / DATABASE_NAME
    identity = read_identity(state_dir / IDENTITY_NAME)
    overwrite_pages(spool_db, middle_pages(spool_db))
    damaged = spool_db.read_bytes()
    port = free_port()
    config = write_config(tmp_path, port, state_dir=state_dir)

    result = cli("spool", "recover", "--config", config)
    assert result.returncode == 0, result.stderr
    saved = saved_bodies(state_dir)
    # Every message saved is exactly the one stored; most survive six bad pages. (Since the
    # trigram index's pages came between them, one or two of the six are leaves of
    # recipients, as group commit happens to batch the writes: each holds the recipients of
    # some 30 messages, which are lost with it. Bodies' pages lose one message each.)
    assert saved and all(stored[q] == data for q, data in saved.items())
    assert len(saved) >= MESSAGES * 0.75, len(saved)
    lost = MESSAGES - len(saved)
    with sqlite3.connect(spool_db) as conn:
        (recipients,) = conn.execute("SELECT count(*) FROM recipients").fetchone()
    conn.close()
    # Two each, but where a page of recipients was lost a saved message may have one left.
    assert len(saved) <= recipients <= 2 * len(saved)
    assert f"saved {len(saved)} messages with {recipients} recipients" in result.stdout
    assert f"lost: {lost} message{'' if lost == 1 else 's'} " in result.stdout or lost == 0
    # The damaged file is kept as it was, beside the new one.
    (aside,) = state_dir.glob(f"{DATABASE_NAME}.damaged-*[0-9]Z")
    assert aside.read_bytes() == damaged
    assert str(aside) in result.stdout
    assert stat_mode(spool_db) == 0o600
    assert read_identity(state_dir / IDENTITY_NAME) == identity
    assert cli("spool", "check", "--config", config).returncode == 0

    # The engine starts on it and lists what was saved.
    start_relay("--headless", "--config", config, port=port)
    listing = cli("queue", "--config", config)
    assert f"in {len(saved)} Requests" in listing.stdout, listing.stdout[-200:]


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_spool_recover_refuses_while_an_engine_runs_and_changes_nothing(
    tmp_path: Path, cli: Cli, start_relay: StartRelay
) -> None:
    relay, config, state_dir = relay_with_mail(tmp_path, start_relay)
    before = sorted(p.name for p in state_dir.iterdir())
    result = cli("spool", "recover", "--force", "--config", config)
    assert result.returncode == 1
    assert f"relaybox engine (pid {relay.proc.pid})" in result.stderr
    assert "stop the engine first" in result.stderr
    assert sorted(p.name for p in state_dir.iterdir()) == before


def test_spool_recover_without_the_sqlite3_shell_names_its_debian_package(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No `sqlite3` on PATH: said, with the package that brings it; the rows are read all
    the same."""
    state_dir = tmp_path / "state"
    seed(state_dir, 60)
    overwrite_pages(state_dir / DATABASE_NAME, middle_pages(state_dir / DATABASE_NAME, 2))
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cli("spool", "recover", "--config", config)
    assert "the sqlite3 command-line shell is not installed (Debian package `sqlite3`" in (
        result.stdout
    )
    assert result.returncode == 0, result.stderr
    assert "row by row" in result.stdout


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 shell is not installed")
def test_spool_recover_never_uses_a_partial_recover_output(tmp_path: Path, cli: Cli) -> None:
    """A shell that cannot `.recover` (Debian 12's lacks sqlite_dbpage) prints a few PRAGMAs
    and fails; that output would make an empty spool. Whatever the shell, every message is
    saved from a spool with a damaged page that holds none of them (the free list's)."""
    state_dir = tmp_path / "state"
    seed(state_dir, 30)
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    result = cli("spool", "recover", "--force", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "saved 30 messages with 60 recipients" in result.stdout


# ---------------------------------------------------------------------------- vanished, replaced


@pytest.mark.parametrize("how", ["missing", "empty (0 bytes)"])
def test_a_spool_that_vanished_is_not_a_fresh_start(
    tmp_path: Path, run_cli: RunCli, start_relay: StartRelay, how: str
) -> None:
    relay, config, state_dir = relay_with_mail(tmp_path, start_relay)
    assert relay.terminate() == 0
    spool_db = state_dir / DATABASE_NAME
    if how == "missing":
        spool_db.unlink()
    else:
        spool_db.write_bytes(b"")

    result = run_cli("--headless", "--config", config, timeout=EXIT_TIMEOUT)
    assert result.returncode == 1, result.stderr
    assert f"the spool database {spool_db} is {how}" in result.stderr
    assert f"remove {state_dir / IDENTITY_NAME}" in result.stderr
    # `relaybox queue` refuses too, instead of making an empty spool in its place.
    listing = run_cli("queue", "--config", config)
    assert listing.returncode == 1 and f"is {how}" in listing.stderr
    assert not spool_db.exists() or spool_db.stat().st_size == 0

    # Starting afresh is a deliberate act: remove the identity file.
    (state_dir / IDENTITY_NAME).unlink()
    start_relay("--headless", "--config", config, port=relay.port)
    assert (state_dir / IDENTITY_NAME).exists()


async def test_a_spool_replaced_by_another_is_refused(
    tmp_path: Path, start_engine: EngineFactory
) -> None:
    first = await start_engine()
    other = await start_engine()
    first_dir = first.engine.config.server.state_dir
    other_dir = other.engine.config.server.state_dir
    config = first.engine.config
    await first.engine.stop(grace=0)
    await other.engine.stop(grace=0)
    shutil.copy(other_dir / DATABASE_NAME, first_dir / DATABASE_NAME)
    with pytest.raises(SpoolReplaced, match=f"remove {first_dir / IDENTITY_NAME}"):
        await start_engine(config)


async def test_a_backup_of_the_same_spool_is_taken_back(
    tmp_path: Path, start_engine: EngineFactory
) -> None:
    run = await start_engine()
    state_dir = run.engine.config.server.state_dir
    await run.engine.stop(grace=0)
    backup = tmp_path / "backup.db"
    shutil.copy(state_dir / DATABASE_NAME, backup)
    (state_dir / DATABASE_NAME).unlink()
    shutil.copy(backup, state_dir / DATABASE_NAME)
    await start_engine(run.engine.config)


async def test_a_state_directory_of_an_older_relaybox_is_adopted(
    tmp_path: Path, start_engine: EngineFactory
) -> None:
    """spool.db made before spool identities, no identity file: the spool is kept (its mail
    with it) and its new identity recorded."""
    state_dir = ensure_state_dir(tmp_path / "old")
    old = await Spool.open(state_dir / DATABASE_NAME, MIGRATIONS[:4])
    await old._write(lambda c: insert_old_messages(c, (1,)))
    queue_id = "0OLDQUEUEID01"
    await old.close()
    assert not (state_dir / IDENTITY_NAME).exists()

    from .support.configs import make_config

    run = await start_engine(make_config(state_dir))
    assert run.engine.spool is not None
    assert await run.engine.spool.message_detail(queue_id) is not None
    with sqlite3.connect(state_dir / DATABASE_NAME) as conn:
        (inside,) = conn.execute("SELECT id FROM identity").fetchone()
    assert read_identity(state_dir / IDENTITY_NAME) == inside


async def test_open_refuses_a_lost_spool_before_creating_one(tmp_path: Path) -> None:
    identity = tmp_path / IDENTITY_NAME
    identity.write_text("0123456789abcdef0123456789abcdef\n")
    with pytest.raises(SpoolLost, match="is missing"):
        await Spool.open(tmp_path / DATABASE_NAME, identity=identity)
    assert not (tmp_path / DATABASE_NAME).exists()
    assert issubclass(SpoolLost, SpoolError)  # every "cannot open the spool" path reports it


def test_doctor_fails_on_a_state_directory_the_engine_would_refuse(
    tmp_path: Path, cli: Cli
) -> None:
    """A vanished spool is a failure (exit 1) even when the DNS could not be checked (exit 2
    alone: the config's resolver is a dead loopback port)."""
    state_dir = tmp_path / "state"
    seed(state_dir, 1)
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    assert cli("doctor", "example.org", "--config", config).returncode == 2
    (state_dir / DATABASE_NAME).write_bytes(b"")
    result = cli("doctor", "example.org", "--config", config)
    assert result.returncode == 1
    assert f"FAIL state directory: the spool database {state_dir / DATABASE_NAME} is empty" in (
        result.stderr
    )
