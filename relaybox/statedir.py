"""The state directory: created private (0700), checked to be the engine's own, and locked so only
one engine uses it; and the files in it that relaybox opens itself (lock, spool identity).

The lock is an flock on `state_dir/engine.lock` holding the engine's PID, so a second engine can
name the one already running; the kernel drops the lock when the process dies, even by SIGKILL.
A CLI command changing the spool with no engine running holds it too, and writes what it is.
A directory someone else owns, or can write to, is refused (as `postfix check` insists on the
queue's ownership), and no file relaybox opens in it may be a symbolic link (`O_NOFOLLOW`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "DATABASE_NAME",
    "HISTORY_DIR_NAME",
    "IDENTITY_NAME",
    "LOCK_NAME",
    "LOG_NAME",
    "EngineRunning",
    "StateDirUnsafe",
    "StateLock",
    "check_state_dir",
    "ensure_state_dir",
    "read_identity",
    "refuse_links",
    "running_engine_pid",
    "sqlite_files",
    "write_identity",
]

LOCK_NAME = "engine.lock"
DATABASE_NAME = "spool.db"
SOCKET_NAME = "admin.sock"
LOG_NAME = "relaybox.log"
"""The log file of an engine run under the UI when `[log] file` names none."""
IDENTITY_NAME = "spool.id"
HISTORY_DIR_NAME = "config-history"
"""The versions of the config applied (backups, 0600), for history and rollback."""
"""The spool's identity, also stored inside spool.db: a spool that vanished or was replaced
is told from a first start by it (`queue.integrity`)."""

_IDENTITY_MAX = 256
"""An identity is 32 hex digits; anything longer is not one."""


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


class StateDirUnsafe(PermissionError):
    """The state directory, or a file in it, is not the engine's own: someone else owns it, may
    write to it, or planted a link in it. An OSError, so every "cannot start" path reports it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


def _user(uid: int) -> str:
    """`name (uid N)`, or `uid N` for a uid with no account."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def ensure_state_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700; check an existing one is the engine's own.

    A directory readable by others is tightened to 0700. One owned by another user, or writable
    by group or others, is refused: whoever could write there could have planted links or a
    spool of their own (`postfix check` refuses a queue it does not own for the same reason).

    Raises:
        StateDirUnsafe: the directory (or the link naming it) is not the engine's user's.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = check_state_dir(path)
    if mode & 0o077:
        os.chmod(path, 0o700)
    return path


def check_state_dir(path: Path) -> int:
    """Refuse an existing state directory that is not the engine's user's own; changes nothing.

    Returns:
        Its permission bits.

    Raises:
        StateDirUnsafe: see `ensure_state_dir`.
    """
    me = os.geteuid()
    link = path.lstat()
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (me, 0):
        raise StateDirUnsafe(
            f"the state directory {path} is a symbolic link owned by {_user(link.st_uid)}, "
            f"who could point it anywhere; use the real directory ({path.resolve()}) as "
            "[server] state_dir, or remove the link"
        )
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirUnsafe(f"the state directory {path} is not a directory")
    if st.st_uid != me:
        raise StateDirUnsafe(
            f"the state directory {path} belongs to {_user(st.st_uid)}, not to the user "
            f"relaybox runs as, {_user(me)}: whoever owns it could plant files in it. Check "
            f"what is in it, then: chown -R {_name(me)} {path} (or give relaybox a "
            "[server] state_dir of its own)"
        )
    if st.st_mode & 0o022:
        raise StateDirUnsafe(
            f"the state directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): anyone who can write there could plant "
            f"files in it. Check what is in it, then: chmod 700 {path}"
        )
    return stat.S_IMODE(st.st_mode)


def _open_own(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` that refuses a symbolic link (O_NOFOLLOW) with a message saying what to do."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_refused(path) from None
        raise


def _link_refused(path: Path) -> StateDirUnsafe:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return StateDirUnsafe(
        f"{path} is a symbolic link{target}: relaybox opens only files of its own there and "
        "never follows a link someone planted. Remove the link (the file it points to was "
        "not touched)"
    )


def refuse_links(paths: Iterable[Path]) -> None:
    """Refuse any of `paths` that is a symbolic link or not a regular file (missing ones are
    fine): SQLite takes no open flags, so its files are looked at (`lstat`) before it opens them.

    Raises:
        StateDirUnsafe: naming the first such path.
    """
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _link_refused(path)
        if not stat.S_ISREG(st.st_mode):
            raise StateDirUnsafe(f"{path} is not a regular file; move it away")


def sqlite_files(database: Path) -> tuple[Path, Path, Path]:
    """The database file and the two SQLite makes beside it in WAL mode."""
    return (
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + "-shm"),
    )


def read_identity(path: Path) -> str | None:
    """The identity recorded in the file `path` (None when there is none yet).

    Raises:
        StateDirUnsafe: the file is a link, or holds something that is not an identity.
    """
    try:
        fd = _open_own(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, _IDENTITY_MAX + 1)
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    if not text or len(data) > _IDENTITY_MAX or not text.isalnum():
        raise StateDirUnsafe(
            f"{path} does not hold a spool identity ({len(data)} bytes); it is relaybox's "
            "own file: if it was damaged, remove it and relaybox adopts the spool in place"
        )
    return text


def write_identity(path: Path, identity: str) -> None:
    """Record `identity` in `path` (mode 0600), durably: written beside, fsynced, renamed."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash (unlink removes a link, never its target)
    fd = _open_own(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(fd, identity.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_holder(fd: int) -> tuple[int | None, str]:
    """The PID in an open lock file, and what holds it ("" for an engine)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return None, ""
    pid, _, holder = text.strip().partition(" ")
    return (int(pid) if pid.isdigit() else None), holder


def running_engine_pid(state_dir: Path) -> int | None:
    """PID of the engine running on `state_dir` (-1 when its lock file does not say), or None
    when no engine holds the lock: nothing does, or a CLI command writing the spool offline
    (whose lock says so), which has no socket to talk to."""
    lock_path = state_dir / LOCK_NAME
    try:
        fd = _open_own(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = _read_holder(fd)
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
        """Take the lock or raise EngineRunning naming the holder.

        Raises:
            EngineRunning: another engine (or an offline write) holds it.
            StateDirUnsafe: `engine.lock` is a symbolic link (its target is left untouched).
        """
        fd = _open_own(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise EngineRunning(self.state_dir, *holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.holder}".strip().encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        """Let go (also happens when the process exits)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
