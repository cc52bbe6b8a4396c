"""The one clock of a relay: wall-clock seconds since the epoch, passed in, never read behind
the engine's back.

The engine owns one `Clock` and hands it to everything that stamps or schedules: events, the
spool, delivery, signing, reports, the log. Tests give the engine a clock they move, so a retry
"an hour later" is a call, not a sleep. Intervals that only measure elapsed time (timeouts, idle
connections, rate windows) use `time.monotonic` instead and are not this clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Clock", "system_clock"]

Clock: TypeAlias = Callable[[], float]
"""A function returning the time now, in wall-clock seconds since the epoch (like `time.time`)."""

system_clock: Clock = time.time
"""The default: the system's wall clock."""
