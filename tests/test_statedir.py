"""The state directory: one engine at a time (an offline CLI write is not an engine), the
engine's user's own (not another's, not writable by others), and no planted link followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from relaybox.queue import Spool
from relaybox.statedir import (
    DATABASE_NAME,
    IDENTITY_NAME,
    EngineRunning,
    StateDirUnsafe,
    StateLock,
    ensure_state_dir,
    read_identity,
    running_engine_pid,
    write_identity,
)

from .relayproc import EXIT_TIMEOUT, RunCli, free_port
from .support.configs import write_config


def test_an_engine_holding_the_lock_is_found_by_its_pid(tmp_path: Path) -> None:
    lock = StateLock(tmp_path)
    assert running_engine_pid(tmp_path) is None
    lock.acquire()
    try:
        assert running_engine_pid(tmp_path) == os.getpid()
    finally:
        lock.release()
    assert running_engine_pid(tmp_path) is None


def test_an_offline_write_holding_the_lock_is_not_taken_for_an_engine(tmp_path: Path) -> None:
    """Another command then works offline too (and its own write is refused by the lock,
    naming the writer) instead of looking for an engine's socket that does not exist."""
    writer = StateLock(tmp_path, holder="relaybox command changing the spool")
    writer.acquire()
    try:
        assert running_engine_pid(tmp_path) is None
        with pytest.raises(EngineRunning, match="relaybox command changing the spool"):
            StateLock(tmp_path).acquire()
    finally:
        writer.release()


# ---------------------------------------------------------------------------- whose directory


def test_a_state_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """As `postfix check` insists on the queue's ownership: whoever owns the directory could
    have planted links or a spool of their own in it (tests run as root, hence chown)."""
    state_dir = tmp_path / "theirs"
    state_dir.mkdir(mode=0o700)
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory away")
    os.chown(state_dir, 65534, 65534)
    with pytest.raises(StateDirUnsafe, match=rf"belongs to .*uid 65534.*chown -R \S+ {state_dir}"):
        ensure_state_dir(state_dir)
    assert state_dir.stat().st_uid == 65534  # left as it was


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_state_directory_others_may_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    state_dir = tmp_path / "open"
    state_dir.mkdir()
    state_dir.chmod(mode)
    with pytest.raises(
        StateDirUnsafe, match=rf"writable by group or others.*chmod 700 {state_dir}"
    ):
        ensure_state_dir(state_dir)
    assert stat.S_IMODE(state_dir.stat().st_mode) == mode


def test_a_state_directory_others_may_only_read_is_made_private(tmp_path: Path) -> None:
    state_dir = tmp_path / "readable"
    state_dir.mkdir()
    state_dir.chmod(0o755)
    ensure_state_dir(state_dir)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_a_state_directory_that_is_a_link_owned_by_another_user_is_refused(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    if os.geteuid() != 0:
        pytest.skip("only root can give a link away")
    os.lchown(link, 65534, 65534)
    with pytest.raises(StateDirUnsafe, match="symbolic link owned by"):
        ensure_state_dir(link)


# ---------------------------------------------------------------------------- planted links


def test_a_link_planted_as_the_lock_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("root's file\n")
    state_dir = ensure_state_dir(tmp_path / "state")
    (state_dir / "engine.lock").symlink_to(target)
    with pytest.raises(StateDirUnsafe, match=r"engine.lock is a symbolic link \(to .*precious\)"):
        StateLock(state_dir).acquire()
    assert target.read_text() == "root's file\n"
    assert running_engine_pid(state_dir) is None  # a link is never read as a PID either


@pytest.mark.parametrize("name", ["spool.db", "spool.db-wal", "spool.db-shm"])
async def test_a_link_planted_as_a_spool_file_is_refused_and_its_target_untouched(
    tmp_path: Path, name: str
) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not yours\n")
    state_dir = ensure_state_dir(tmp_path / "state")
    (state_dir / name).symlink_to(target)
    with pytest.raises(StateDirUnsafe, match=rf"{name} is a symbolic link"):
        await Spool.open(state_dir / DATABASE_NAME)
    with pytest.raises(StateDirUnsafe, match=rf"{name} is a symbolic link"):
        await Spool.open_for_reading(state_dir / DATABASE_NAME)
    assert target.read_bytes() == b"not yours\n"


def test_a_link_planted_as_the_identity_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / IDENTITY_NAME).symlink_to(target)
    with pytest.raises(StateDirUnsafe, match="is a symbolic link"):
        read_identity(tmp_path / IDENTITY_NAME)
    (tmp_path / IDENTITY_NAME).unlink()
    (tmp_path / (IDENTITY_NAME + ".tmp")).symlink_to(target)  # a planted temp file
    write_identity(tmp_path / IDENTITY_NAME, "feedface")
    assert read_identity(tmp_path / IDENTITY_NAME) == "feedface"
    assert target.read_text() == "0123456789abcdef0123456789abcdef\n"


def test_the_engine_refuses_a_planted_lock_link_and_says_so(
    tmp_path: Path, run_cli: RunCli
) -> None:
    """The whole path, in a real process: refused with the path and the fix, exit 1, the
    target (a file the engine's user may write) untouched."""
    target = tmp_path / "precious"
    target.write_text("root's file\n")
    state_dir = ensure_state_dir(tmp_path / "state")
    (state_dir / "engine.lock").symlink_to(target)
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    result = run_cli("--headless", "--config", config, timeout=EXIT_TIMEOUT)
    assert result.returncode == 1
    assert f"{state_dir / 'engine.lock'} is a symbolic link" in result.stderr
    assert target.read_text() == "root's file\n"


def test_the_engine_refuses_a_state_directory_owned_by_another_user(
    tmp_path: Path, run_cli: RunCli
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory away")
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    os.chown(state_dir, 65534, 65534)
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    result = run_cli("--headless", "--config", config, timeout=EXIT_TIMEOUT)
    assert result.returncode == 1
    assert f"the state directory {state_dir} belongs to" in result.stderr
    assert list(state_dir.iterdir()) == []  # nothing was made in it


def test_a_link_planted_as_the_log_file_is_refused_and_its_target_untouched(
    tmp_path: Path, run_cli: RunCli
) -> None:
    target = tmp_path / "precious"
    target.write_text("root's file\n")
    log_file = tmp_path / "relay.log"
    log_file.symlink_to(target)
    config = write_config(tmp_path, free_port(), log_file=log_file)
    result = run_cli("--headless", "--config", config, timeout=EXIT_TIMEOUT)
    assert result.returncode == 1
    assert f"cannot open the log file {log_file}" in result.stderr
    assert "Traceback" not in result.stderr
    assert target.read_text() == "root's file\n"
