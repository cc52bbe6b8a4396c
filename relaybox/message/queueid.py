"""Short, unique, time-ordered queue IDs such as `04F7K2M9QXB3T`.

An ID is the arrival time in microseconds plus a random tail, written in a 30-letter alphabet
without vowels (no accidental words, and no I, O or U to mistake for 1, 0 or V). IDs from one
process strictly increase; across restarts the clock and the random tail keep them apart, and the
spool's UNIQUE constraint is the final guard.
"""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["new_queue_id"]

_ALPHABET = "0123456789BCDFGHJKMNPQRSTVWXYZ"
_BASE = len(_ALPHABET)
_EPOCH_US = 1_700_000_000_000_000  # 2023-11-14; 11 letters of time last for centuries
_lock = threading.Lock()
_last = 0


def _encode(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, _BASE)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def new_queue_id() -> str:
    """A fresh queue ID: 11 letters of time, 2 of randomness."""
    global _last
    with _lock:
        now = max(time.time_ns() // 1000 - _EPOCH_US, _last + 1)
        _last = now
    return _encode(now, 11) + _encode(secrets.randbelow(_BASE**2), 2)
