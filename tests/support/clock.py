"""A clock the test moves: give it to the engine, then `advance` instead of sleeping.

It stands still between calls to `advance`, so what the engine schedules "in a minute" happens
only when the test says a minute has passed. It starts at the real time, so libraries that
read the system clock themselves (TLS certificates, dkimpy's t= check) agree with it.
"""

from __future__ import annotations

import time


class FakeClock:
    """A `relaybox.clock.Clock`: returns `now`, which only `advance` changes."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        """Wall-clock seconds since the epoch, as the engine sees them."""

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the time on by `seconds` (the engine notices at its next look: wake it)."""
        self.now += seconds
