"""`relaybox spool check` and `relaybox spool recover`: is the spool file whole and this state
directory's own, and, when it is damaged, save what can be read into a new file.

`check` only reads (it may run beside an engine). `recover` holds the state directory's lock
(no engine may run), keeps the damaged file aside as `spool.db.damaged-TIME` (its WAL as
`spool.db.damaged-TIME-wal`), and puts the rebuilt spool in its place; the rows are read by
the `sqlite3` shell's `.recover` where that shell has it, else row by row
(`queue.salvage`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relaybox.cli.common import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, load_config
from relaybox.config import Config
from relaybox.queue import SpoolError
from relaybox.queue.integrity import (
    SpoolReplaced,
    expected_identity,
    quick_check,
    spool_identity,
)
from relaybox.queue.salvage import Salvaged, rebuild
from relaybox.queue.schema import connect
from relaybox.statedir import (
    DATABASE_NAME,
    IDENTITY_NAME,
    LOCK_NAME,
    EngineRunning,
    StateLock,
    check_state_dir,
    read_identity,
    refuse_links,
    sqlite_files,
    write_identity,
)

__all__ = ["spool_check", "spool_recover", "state_problem"]

RECOVER_HOLDER = "relaybox spool recover"
SHELL = "sqlite3"
"""The SQLite command-line shell (Debian package `sqlite3`)."""
SHELL_TIMEOUT = 3600.0


def spool_check(args: argparse.Namespace) -> int:
    """`relaybox spool check`: "ok" and what the spool holds (exit 0), or what is wrong (1)."""
    config = load_config(args, warn=False)
    if config is None:
        return EXIT_CONFIG
    state_dir = config.server.state_dir
    path = state_dir / DATABASE_NAME
    if not state_dir.exists() or (not path.exists() and _identity_or_marker(state_dir) is None):
        print(f"ok: no spool at {path} yet (relaybox has not run with this state_dir)")
        return EXIT_OK
    problems: list[str] = []
    try:
        _check_state_dir(state_dir)
        refuse_links(sqlite_files(path))
        expected = expected_identity(path, state_dir / IDENTITY_NAME)
    except (OSError, SpoolError) as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_FAIL
    started = time.monotonic()
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error as exc:
        print(f"relaybox: cannot open {path}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        problems = quick_check(conn)
        found = None if problems else spool_identity(conn)
        counts = None if problems else _counts(conn)
    finally:
        conn.close()
    took = time.monotonic() - started
    if problems:
        print(f"damaged: {path}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"save what can be saved with: {_command(args, 'recover')}", file=sys.stderr)
        return EXIT_FAIL
    if expected is not None and found is not None and found != expected:
        print(
            f"relaybox: {path} is spool {found}, but {state_dir / IDENTITY_NAME} says "
            f"{expected}: it is not this state directory's spool",
            file=sys.stderr,
        )
        return EXIT_FAIL
    assert counts is not None
    print(
        f"ok: {path} is whole (quick_check, {took:.1f} s): {counts[0]} messages "
        f"({counts[1]} not finished), {counts[2]} recipients; spool {found or 'with no identity'}"
    )
    return EXIT_OK


def _identity_or_marker(state_dir: Path) -> str | None:
    try:
        return read_identity(state_dir / IDENTITY_NAME)
    except OSError:
        return "unreadable"


def _check_state_dir(state_dir: Path) -> None:
    """The engine's checks of the directory (without creating or changing it)."""
    if state_dir.is_dir():
        check_state_dir(state_dir)


def state_problem(state_dir: Path) -> str | None:
    """What would keep an engine from starting on `state_dir`, found without reading the whole
    spool (`relaybox doctor` says it): its owner or mode, a planted link, a lost or replaced
    spool. None when nothing is wrong, or when there is no state directory yet."""
    if not state_dir.is_dir():
        return None
    path = state_dir / DATABASE_NAME
    try:
        check_state_dir(state_dir)
        refuse_links((state_dir / LOCK_NAME, state_dir / IDENTITY_NAME, *sqlite_files(path)))
        expected = expected_identity(path, state_dir / IDENTITY_NAME)
        if expected is None or not path.exists():
            return None
        conn = connect(path, readonly=True)
        try:
            found = spool_identity(conn)
        finally:
            conn.close()
    except (OSError, SpoolError) as exc:
        return str(exc)
    except sqlite3.Error as exc:
        return f"cannot read the spool database {path}: {exc}"
    if found is not None and found != expected:
        return str(SpoolReplaced(path, state_dir / IDENTITY_NAME, expected, found))
    return None


def _counts(conn: sqlite3.Connection) -> tuple[int, int, int]:
    messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    unfinished = conn.execute(
        "SELECT count(*) FROM messages WHERE state NOT IN ('delivered', 'bounced')"
    ).fetchone()[0]
    recipients = conn.execute("SELECT count(*) FROM recipients").fetchone()[0]
    return int(messages), int(unfinished), int(recipients)


def _command(args: argparse.Namespace, action: str) -> str:
    config = f" --config {args.config}" if getattr(args, "config", None) else ""
    return f"relaybox spool {action}{config}"


def spool_recover(args: argparse.Namespace) -> int:
    """`relaybox spool recover`: rebuild a damaged spool from what can be read, keeping the
    damaged file aside; refused while an engine runs."""
    config = load_config(args, warn=False)
    if config is None:
        return EXIT_CONFIG
    state_dir = config.server.state_dir
    path = state_dir / DATABASE_NAME
    if not path.exists() or path.stat().st_size == 0:
        print(f"relaybox: there is no spool at {path} to recover", file=sys.stderr)
        return EXIT_FAIL
    lock = StateLock(state_dir, holder=RECOVER_HOLDER)
    try:
        _check_state_dir(state_dir)
        lock.acquire()
    except EngineRunning as exc:
        print(f"relaybox: {exc}; stop the engine first, nothing was changed", file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        return _recover(args, config, path)
    finally:
        lock.release()


def _recover(args: argparse.Namespace, config: Config, path: Path) -> int:
    state_dir = config.server.state_dir
    identity_file = state_dir / IDENTITY_NAME
    try:
        refuse_links(sqlite_files(path))
        identity = read_identity(identity_file)
    except OSError as exc:
        print(f"relaybox: {exc}", file=sys.stderr)
        return EXIT_FAIL
    problems = _quick_check(path)
    if not problems and not args.force:
        print(f"ok: {path} is not damaged (quick_check); nothing was changed")
        return EXIT_OK
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    new = path.with_name(f"{path.name}.recovered-{stamp}")
    shell = shutil.which(SHELL)
    with tempfile.TemporaryDirectory(dir=state_dir, prefix=".recover-") as scratch:
        raw = Path(scratch) / "recovered.db"
        method, why_not = "the sqlite3 shell's .recover", None
        if shell is None:
            why_not = (
                "the sqlite3 command-line shell is not installed (Debian package `sqlite3`: "
                "apt-get install sqlite3); its .recover can also read a spool whose first "
                "page is damaged"
            )
        else:
            why_not = _shell_recover(shell, path, raw)
        if why_not is not None:
            print(f"relaybox: note: {why_not}; reading the damaged file row by row instead")
            method = "row by row"
            source_path = path
        else:
            source_path = raw
        try:
            source = sqlite3.connect(f"{source_path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            print(f"relaybox: cannot read {source_path}: {exc}", file=sys.stderr)
            return EXIT_FAIL
        try:
            identity = identity or _identity_of(source)
            saved = rebuild(source, new, identity)
        except sqlite3.Error as exc:
            _remove(sqlite_files(new))
            print(f"relaybox: the recovery failed ({exc}); nothing was changed", file=sys.stderr)
            return EXIT_FAIL
        finally:
            source.close()
    if saved.messages == 0 and "messages" in saved.unreadable:
        _remove(sqlite_files(new))
        print(
            f"relaybox: nothing could be read from {path} ({method}); nothing was changed. "
            + (
                f"{why_not}; or restore the spool from a backup"
                if why_not
                else "Restore the spool from a backup"
            ),
            file=sys.stderr,
        )
        return EXIT_FAIL
    if saved.problems:
        _remove(sqlite_files(new))
        print(
            f"relaybox: the rebuilt spool is not whole ({'; '.join(saved.problems[:3])}); "
            "nothing was changed",
            file=sys.stderr,
        )
        return EXIT_FAIL
    aside = _swap(path, new, stamp)
    if identity:
        write_identity(identity_file, identity)
    after = _quick_check(path)
    if after:
        print(f"relaybox: the recovered spool fails its check: {'; '.join(after)}", file=sys.stderr)
        return EXIT_FAIL
    _report(path, aside, method, saved)
    return EXIT_OK


def _quick_check(path: Path) -> list[str]:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        return quick_check(conn)
    except sqlite3.Error as exc:
        return [str(exc)]
    finally:
        conn.close()


def _identity_of(conn: sqlite3.Connection) -> str | None:
    try:
        return spool_identity(conn)
    except sqlite3.DatabaseError:
        return None


def _shell_recover(shell: str, damaged: Path, raw: Path) -> str | None:
    """`sqlite3 DAMAGED .recover | sqlite3 RAW`; None when it worked, else why not.

    A shell built without the `sqlite_dbpage` table (Debian 12's 3.40, for one) prints a few
    PRAGMAs and fails: its partial output is never used.
    """
    with open(raw.with_suffix(".sql"), "w+b") as sql, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                [shell, "-readonly", str(damaged), ".recover"],
                stdout=sql,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=SHELL_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the sqlite3 shell's .recover failed ({exc})"
        err.seek(0)
        said = err.read().decode("utf-8", "replace").strip()
        if done.returncode != 0:
            return (
                f"the sqlite3 shell ({shell}) cannot .recover here ({said or done.returncode}; "
                "shells built without SQLITE_ENABLE_DBPAGE_VTAB, as Debian 12's, cannot)"
            )
        sql.seek(0)
        try:
            loaded = subprocess.run(
                [shell, str(raw)],
                stdin=sql,
                capture_output=True,
                timeout=SHELL_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"loading .recover's output failed ({exc})"
        if loaded.returncode != 0:
            return f"loading .recover's output failed ({loaded.stderr.decode(errors='replace')})"
    return None


def _swap(path: Path, new: Path, stamp: str) -> Path:
    """Keep the damaged spool (and its WAL) aside, put `new` in its place; durable."""
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    database, wal, shm = sqlite_files(path)
    os.replace(database, aside)
    if wal.exists():
        # Named so that SQLite opens it with the damaged file, and never with the new one.
        os.replace(wal, aside.with_name(aside.name + "-wal"))
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()
    os.replace(new, path)
    _remove(sqlite_files(new)[1:])
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside


def _remove(paths: tuple[Path, ...] | list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _report(path: Path, aside: Path, method: str, saved: Salvaged) -> None:
    print(
        f"recovered {path} ({method}): saved {saved.messages} messages with "
        f"{saved.recipients} recipients; {saved.pending_messages} messages "
        f"({saved.pending_recipients} recipients) still to deliver"
    )
    if saved.lost_messages or saved.lost_recipients:
        print(
            f"lost: {_count(saved.lost_messages, 'message')} whose envelope, body or every "
            f"recipient could not be read, and {_count(saved.lost_recipients, 'recipient')} "
            "of saved messages"
        )
    if saved.unreadable:
        print(f"could not read at all: {', '.join(saved.unreadable)}")
    print(f"the damaged file is kept as {aside}; start relaybox again to deliver what was saved")
