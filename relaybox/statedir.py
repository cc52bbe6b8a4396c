"""The state directory: created private (0700), and locked so only one engine uses it.

The lock is an flock on `state_dir/engine.lock` holding the engine's PID, so a second engine can
name the one already running; the kernel drops the lock when the process dies, even by SIGKILL.
A CLI command changing the spool with no engine running holds it too, and writes what it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["EngineRunning", "StateLock", "ensure_state_dir", "running_engine_pid"]

LOCK_NAME = "engine.lock"
DATABASE_NAME = "spool.db"
SOCKET_NAME = "admin.sock"


class EngineRunning(Exception):
    """Another engine holds the state directory."""

    def __init__(self, state_dir: Path, pid: int | None, holder: str = "") -> None:
        who = f"pid {pid}" if pid else "another process"
        if holder:
            message = f"a {holder} ({who}) holds {state_dir}; try again when it is done"
        else:
            message = (
                f"another relaybox engine ({who}) is already running on {state_dir}; "
                "stop it first, or give this one its own [server] state_dir"
            )
        super().__init__(message)
        self.pid = pid
        self.holder = holder
        """What holds the lock when it is not an engine ("" for an engine)."""


def ensure_state_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 and tighten it if it exists looser."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def _read_holder(path: Path) -> tuple[int | None, str]:
    """The PID in a lock file, and what holds it ("" for an engine)."""
    try:
        pid, _, holder = path.read_text().strip().partition(" ")
    except OSError:
        return None, ""
    return (int(pid) if pid.isdigit() else None), holder


def running_engine_pid(state_dir: Path) -> int | None:
    """PID of the engine running on `state_dir` (-1 when its lock file does not say), or None
    when no engine holds the lock: nothing does, or a CLI command writing the spool offline
    (whose lock says so), which has no socket to talk to."""
    lock_path = state_dir / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = _read_holder(lock_path)
            return None if holder else (pid or -1)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class StateLock:
    """Exclusive hold on a state directory for the life of one engine."""

    def __init__(self, state_dir: Path, holder: str = "") -> None:
        """The lock of `state_dir`, for an engine or (`holder` says what) something else."""
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise EngineRunning naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EngineRunning(self.state_dir, *_read_holder(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.holder}".strip().encode() + b"\n")
        self._fd = fd

    def release(self) -> None:
        """Let go (also happens when the process exits)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
