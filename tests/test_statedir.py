"""The state directory's lock: one engine at a time, and an offline CLI write is not an engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaybox.statedir import EngineRunning, StateLock, running_engine_pid


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
