"""A terminal driver that survives losing its terminal.

When the SSH session behind `relaybox` drops, the terminal goes away while the relay runs in
the same process. Textual's output thread dies on the first failed write and the next
writes then block the event loop for good (its queue is bounded), which would freeze the
relay. Here a lost terminal swallows further output and asks the app to exit, so the
in-process engine stops gracefully and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, TextIO

from textual.drivers.linux_driver import LinuxDriver

__all__ = ["SurvivingDriver"]


class _TerminalOutput:
    """The terminal's output file; after the first failed write, writes go nowhere."""

    def __init__(self, file: TextIO, on_lost: Any) -> None:
        self._file = file
        self._on_lost = on_lost
        self._lost = threading.Event()

    def write(self, text: str) -> int:
        if self._lost.is_set():
            return len(text)
        try:
            return self._file.write(text)
        except (OSError, ValueError):
            self._lose()
            return len(text)

    def flush(self) -> None:
        if self._lost.is_set():
            return
        try:
            self._file.flush()
        except (OSError, ValueError):
            self._lose()

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return not self._lost.is_set() and self._file.isatty()

    def _lose(self) -> None:
        if not self._lost.is_set():
            self._lost.set()
            self._on_lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class SurvivingDriver(LinuxDriver):
    """Textual's Linux driver, with output that cannot block the loop once the tty is gone."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        loop = asyncio.get_running_loop()

        def lost() -> None:  # called from Textual's output thread: never wait for the loop
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
                loop.call_soon_threadsafe(app.exit, 0, "the terminal went away")

        original = self._file
        assert original is not None, "no terminal output (stderr is closed)"
        self._file = _TerminalOutput(original, lost)  # type: ignore[assignment]
