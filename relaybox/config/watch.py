"""Watching the config file, so that saving it in vim reloads the running relay.

The folder is watched, not the file: editors and tools replace a file by renaming a new one
over it (vim's backupcopy, `sed -i`, Ansible, the UI's own atomic write), which a watch on
the old file would never see. Other files in the folder are ignored. Changes are gathered
until the writing stops for `QUIET` seconds, so one save (often a write, a rename and a
chmod) is one reload. The watching is watchfiles' (inotify on Linux, polling elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import watchfiles

__all__ = ["QUIET", "watch_config_file"]

QUIET = 0.3
"""Seconds without a change to the file before it is reloaded."""
LONGEST_SAVE = 10.0
"""A save that goes on writing longer than this is reloaded anyway (and again when done)."""
STOP_CHECK_MS = 500
"""The longest the watching thread waits before it looks at the stop event again."""
RETRY_AFTER = 5.0
"""Seconds before watching again when the folder cannot be watched (it was removed)."""


async def watch_config_file(
    path: Path,
    changed: Callable[[], Awaitable[object]],
    failed: Callable[[Exception], None],
    stop: asyncio.Event,
    *,
    quiet: float = QUIET,
) -> None:
    """Call `changed()` after each burst of writes to `path`, until `stop` is set.

    Set `stop` to end it: the watching thread looks at it every `quiet` seconds. (Cancelling
    alone waits for the thread's own timeout: watchfiles runs it as a thread that cannot be
    cancelled.) `failed` is told when the folder cannot be watched (it is tried again later).
    """
    folder = path.absolute().parent
    name = path.name

    def wanted(_: watchfiles.Change, changed_path: str) -> bool:
        return Path(changed_path).name == name

    while not stop.is_set():
        try:
            async for _ in watchfiles.awatch(
                folder,
                watch_filter=wanted,
                step=int(quiet * 1000),
                debounce=int(LONGEST_SAVE * 1000),
                recursive=False,
                stop_event=stop,
                rust_timeout=STOP_CHECK_MS,
            ):
                await changed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a missing folder, inotify limits: say so and try again
            failed(exc)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_AFTER)
