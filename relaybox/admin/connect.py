"""Reaching the admin layer of a state directory: the running engine's socket, or the spool
opened here when no engine runs. The CLI and the UI both start here; it prints nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from relaybox.admin.client import ControlClient
from relaybox.admin.service import Admin
from relaybox.config.model import Config
from relaybox.queue import Spool
from relaybox.statedir import (
    DATABASE_NAME,
    IDENTITY_NAME,
    SOCKET_NAME,
    StateLock,
    ensure_state_dir,
    running_engine_pid,
)

__all__ = ["Attached", "EngineUnreachable", "Offline", "attach", "open_offline"]

OFFLINE_WRITER = "relaybox command changing the spool"
"""Who holds the state directory's lock in an offline write (an engine starting then says so)."""


class EngineUnreachable(Exception):
    """An engine holds the state directory but its admin socket does not answer."""

    def __init__(self, state_dir: Path, pid: int, reason: BaseException) -> None:
        who = f"pid {pid}" if pid > 0 else "an engine"
        super().__init__(
            f"the engine ({who}) runs on {state_dir} but its admin socket does not answer "
            f"({reason})"
        )
        self.state_dir = state_dir
        self.pid = pid
        self.reason = reason


@dataclass
class Attached:
    """A connection to the engine running on a state directory."""

    client: ControlClient
    pid: int
    """The engine's process id (-1 when its lock file does not say)."""


async def attach(state_dir: Path, timeout: float = 5.0) -> Attached | None:
    """The admin socket of the engine running on `state_dir`; None when none runs there.

    Raises EngineUnreachable when an engine holds the directory but its socket does not answer
    (an engine that stopped meanwhile counts as none).
    """
    pid = running_engine_pid(state_dir)
    if pid is None:
        return None
    try:
        client = await ControlClient.connect(state_dir / SOCKET_NAME, timeout)
    except (OSError, TimeoutError) as exc:
        if running_engine_pid(state_dir) is not None:
            raise EngineUnreachable(state_dir, pid, exc) from exc
        return None  # it stopped meanwhile: the spool is all there is
    return Attached(client, pid)


@dataclass
class Offline:
    """An `Admin` over a spool opened here, beside no engine; `close()` when done."""

    admin: Admin
    spool: Spool
    lock: StateLock | None
    """The state directory's lock, held by a write so that no engine starts meanwhile."""

    async def close(self) -> None:
        try:
            await self.spool.close()
        finally:
            if self.lock is not None:
                self.lock.release()


async def open_offline(config: Config, *, write: bool) -> Offline:
    """The admin layer of `config`'s spool, opened directly (no engine runs).

    A read opens the spool read-only and takes no lock (a spool not made yet is created
    empty, so a fresh machine's queue reads as empty). A write takes the state directory's
    lock first and keeps it until `close()`: an engine starting meanwhile would act on a
    spool being changed under it, so it is refused until the write is done.

    Raises:
        EngineRunning: An engine (or another offline write) holds the state directory.
        SpoolError, OSError: The spool cannot be opened, or is damaged, lost or replaced
            (`queue.integrity`), or the state directory is not the engine's user's own.
    """
    state_dir = config.server.state_dir
    path = state_dir / DATABASE_NAME
    lock: StateLock | None = None
    create = write or not path.exists()
    if create:
        await asyncio.to_thread(ensure_state_dir, state_dir)
    if write:
        lock = StateLock(state_dir, holder=OFFLINE_WRITER)
        lock.acquire()
    try:
        # The identity file tells a spool that vanished from a first start: a read refuses
        # it as the engine would, instead of making an empty spool in its place.
        # No engine checked the file at its start: damage in pages a listing never reads
        # would go unseen, and a write would land in a damaged file.
        if create:
            spool = await Spool.open(path, identity=state_dir / IDENTITY_NAME, check=True)
        else:
            spool = await Spool.open_for_reading(
                path, identity=state_dir / IDENTITY_NAME, check=True
            )
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Offline(Admin(spool, config=lambda: config), spool, lock)
