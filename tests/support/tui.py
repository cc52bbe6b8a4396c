"""Driving the UI in tests: wait (bounded) for what the screen should come to, and read the
notifications it shows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from relaybox.tui.app import RelayboxApp

__all__ = ["notes", "until"]


async def until(check: Callable[[], Any], pilot: Any = None, timeout: float = 10.0) -> Any:
    """Let the app (or, without a `pilot`, the test's loop) run until `check()` is truthy
    (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "the UI did not get there in time"
        await (pilot.pause(0.05) if pilot is not None else asyncio.sleep(0.02))


def notes(app: RelayboxApp) -> list[str]:
    """The notifications on screen now."""
    return [n.message for n in app._notifications]
