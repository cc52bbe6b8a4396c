"""Reading and writing the config file safely, and the history of the versions applied.

A write replaces the file atomically (a temporary file beside it, fsync, rename, fsync of
the folder), keeping its mode and owner, so a crash leaves either the old file or the new
one, never half of each. `ConfigHistory` keeps the last few applied texts as private
backups for rollback. Nothing here validates a config: `config.load` does that first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relaybox.config.diff import mask_secrets
from relaybox.config.problems import ONE_LINE

__all__ = [
    "KEEP_VERSIONS",
    "NEW_FILE_MODE",
    "ConfigHistory",
    "HistoryEntry",
    "file_version",
    "text_version",
    "write_atomically",
]

NEW_FILE_MODE = 0o640
"""Mode of a config file written where there was none: the owner writes, its group (the
admins) reads, others nothing, since the file may name key files and users."""

KEEP_VERSIONS = 10
"""How many applied versions `ConfigHistory` keeps; older backups are deleted."""

_BACKUP_MODE = 0o600
_HISTORY_DIR_MODE = 0o700


def text_version(text: str) -> str:
    """The version of a text as `file_version` gives it for the file holding it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_version(path: Path) -> tuple[str, str]:
    """The file's text and version (the sha256 hex digest of its bytes).

    Returns:
        `("", "")` when the file does not exist.

    Raises:
        OSError: The file exists but cannot be read.
        UnicodeDecodeError: It is not UTF-8 text.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "", ""
    return data.decode("utf-8"), hashlib.sha256(data).hexdigest()


def write_atomically(
    path: Path,
    text: str,
    *,
    before_rename: Callable[[Path], None] | None = None,
) -> str:
    """Replace the file at `path` with `text` so that a crash leaves the old or the new file.

    The text goes to a temporary file in the same folder, is fsynced, gets the old file's
    mode and owner (a new file gets `NEW_FILE_MODE`), and is renamed over the old one; the
    folder is fsynced so the rename itself survives a power cut.

    A symbolic link is followed, as vim does when it saves: the file it points to is
    replaced (the temporary file goes beside that file, so the rename stays within one
    filesystem) and the link still points to it. Config files managed elsewhere and linked
    into place keep working; replacing the link itself with a file would silently cut them
    off. (`sed -i` and Postfix's `postconf -e` replace the link instead.)

    Args:
        path: The config file.
        text: The new contents, written as UTF-8.
        before_rename: Called with the fsynced temporary file just before the rename: a test
            seam to fail between writing and renaming. If it raises, the temporary file is
            removed and the old file is untouched.

    Returns:
        The new version (sha256 hex of the bytes written).

    Raises:
        PermissionError: The file belongs to another user and relaybox is not root, so the
            new file could not keep its owner; nothing is written.
        OSError: Writing failed (a full disk, a read-only folder); the old file is untouched.
    """
    return _write(Path(path), text.encode("utf-8"), None, before_rename)


def _write(
    path: Path,
    data: bytes,
    mode: int | None,
    before_rename: Callable[[Path], None] | None = None,
) -> str:
    target = Path(os.path.realpath(path))
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    owner: tuple[int, int] | None = None
    if old is not None:
        if mode is None:
            mode = stat.S_IMODE(old.st_mode)
        owner = _owner_to_keep(target, old)
    if mode is None:
        mode = NEW_FILE_MODE
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename(temporary)
        os.rename(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(target.parent)
    return hashlib.sha256(data).hexdigest()


def _owner_to_keep(target: Path, old: os.stat_result) -> tuple[int, int]:
    """The owner and group the new file must get (the old file's)."""
    uid = os.geteuid()
    if uid in (0, old.st_uid):
        # The group too: a new file would get our group, or the folder's when it is setgid.
        return old.st_uid, old.st_gid
    raise PermissionError(
        errno.EPERM,
        f"{target} belongs to user id {old.st_uid}; relaybox runs as user id {uid} and "
        "could not keep that owner when it replaces the file. Edit it as that user or as "
        "root, or give the file to the user relaybox runs as",
        str(target),
    )


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class HistoryEntry:
    """One applied version of the config file."""

    generation: int
    """The engine's config generation this text became."""
    at: float
    """When it was applied (the engine clock's time, seconds since the epoch)."""
    trigger: str
    """What applied it: `signal`, `command`, `file`, `ui` or `rollback`."""
    summary: str
    """One line saying what changed, secrets masked."""
    version: str
    """sha256 hex of the text, as `file_version` gives it."""

    def as_dict(self) -> dict[str, Any]:
        """The shape `admin.config_history()` returns."""
        return asdict(self)


class ConfigHistory:
    """The last `keep` applied versions, newest first, in a private folder.

    Each version's text is a file of its own (mode 0600: it holds password hashes) named by
    a sequence number, and `index.jsonl` lists them, one JSON object a line, rewritten
    atomically on each record. A line that cannot be read is skipped; a text file the index
    does not list (left by a crash between the two writes) is deleted at the next record.
    Numbering by sequence rather than by generation keeps every version apart even when a
    restarted engine counts generations from 1 again.
    """

    INDEX = "index.jsonl"

    def __init__(self, directory: Path, keep: int = KEEP_VERSIONS) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def record(self, generation: int, trigger: str, summary: str, text: str, at: float) -> None:
        """Keep `text` as the version applied as `generation`; prune the oldest beyond
        `keep`.

        Raises:
            OSError: The folder or a file could not be written; the history is as before.
        """
        self._ensure_folder()
        rows = self._rows()
        sequence = max((row["sequence"] for row in rows), default=0) + 1
        _write(self.directory / _text_name(sequence), text.encode("utf-8"), _BACKUP_MODE)
        entry = HistoryEntry(
            generation=generation,
            at=at,
            trigger=trigger,
            summary=mask_secrets(summary).translate(ONE_LINE),
            version=text_version(text),
        )
        rows.append({"sequence": sequence, **entry.as_dict()})
        rows = rows[-self.keep :]
        index = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        _write(self.directory / self.INDEX, index.encode("utf-8"), _BACKUP_MODE)
        self._prune({row["sequence"] for row in rows})

    def entries(self) -> list[HistoryEntry]:
        """The versions kept, newest first."""
        return [_entry(row) for row in reversed(self._rows())]

    def text_of(self, generation: int) -> str | None:
        """The text applied as `generation` (the newest such, if it was used twice), or None
        when it is no longer kept."""
        for row in reversed(self._rows()):
            if row["generation"] == generation:
                try:
                    return (
                        (self.directory / _text_name(row["sequence"])).read_bytes().decode("utf-8")
                    )
                except (OSError, UnicodeDecodeError):
                    return None
        return None

    def _ensure_folder(self) -> None:
        self.directory.mkdir(mode=_HISTORY_DIR_MODE, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) != _HISTORY_DIR_MODE:
            os.chmod(self.directory, _HISTORY_DIR_MODE)

    def _rows(self) -> list[dict[str, Any]]:
        """The index's readable rows, oldest first."""
        try:
            lines = (self.directory / self.INDEX).read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        rows = [row for row in map(_row, lines.split("\n")) if row is not None]
        return sorted(rows, key=lambda row: int(row["sequence"]))

    def _prune(self, kept: set[int]) -> None:
        for path in self.directory.iterdir():
            match = _TEXT_NAME.fullmatch(path.name)
            if match is not None and int(match[1]) not in kept:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


_TEXT_NAME = re.compile(r"(\d+)\.toml")


def _text_name(sequence: int) -> str:
    return f"{sequence:06d}.toml"


def _row(line: str) -> dict[str, Any] | None:
    """One index line, or None when it is damaged (half written, edited by hand)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    fields = {
        "sequence": int,
        "generation": int,
        "at": float,
        "trigger": str,
        "summary": str,
        "version": str,
    }
    for name, kind in fields.items():
        value = row.get(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = row[name] = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None
    if not math.isfinite(row["at"]):
        return None
    return row


def _entry(row: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        generation=row["generation"],
        at=row["at"],
        trigger=row["trigger"],
        summary=row["summary"],
        version=row["version"],
    )
