"""Counters that keep one client from taking the whole relay: connections and message rates.

Both tables are bounded: entries for idle clients are dropped, so a scan from many addresses
costs memory in proportion to the clients connected now, not to every address ever seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ConnectionTable", "RateTable"]


class ConnectionTable:
    """Concurrent connections, in total and per client IP."""

    def __init__(self) -> None:
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def open(
        self, ip: str, max_total: int, max_per_ip: int, reserved: int = 0, trusted: bool = True
    ) -> str | None:
        """Count a new connection; returns why it is refused (then it is not counted).

        Args:
            ip: The client's address.
            max_total: Connections allowed over all clients.
            max_per_ip: Connections allowed from one address.
            reserved: How many of `max_total` only trusted clients may take.
            trusted: Whether this client may take a reserved slot (it is in allowed_networks).
        """
        if self.total >= (max_total if trusted else max_total - reserved):
            return "total"
        if self.per_ip.get(ip, 0) >= max_per_ip:
            return "per_ip"
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def close(self, ip: str) -> None:
        """Forget one connection of `ip` (one that `open` counted; others are ignored)."""
        held = self.per_ip.get(ip, 0)
        if held <= 0:
            return  # never counted: taking it off the total would let one more in
        self.total -= 1
        if held == 1:
            del self.per_ip[ip]
        else:
            self.per_ip[ip] = held - 1


class RateTable:
    """Events per client per minute, as a sliding window of two fixed one-minute buckets."""

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._max_entries = max_entries
        self._minute = -1
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def _roll(self) -> float:
        now = self._clock()
        minute = int(now // 60)
        if minute != self._minute:
            self._previous = self._current if minute == self._minute + 1 else {}
            self._current = {}
            self._minute = minute
        return now

    def count(self, key: str) -> float:
        """Estimated events of `key` in the last 60 seconds."""
        now = self._roll()
        weight = 1.0 - (now % 60) / 60
        return self._current.get(key, 0) + self._previous.get(key, 0) * weight

    def hit(self, key: str, limit: int) -> bool:
        """Record one event; True if that goes over `limit` per minute (then it is not counted)."""
        if limit <= 0:
            return False
        if self.count(key) >= limit:
            return True
        if len(self._current) >= self._max_entries and key not in self._current:
            return False  # table full: fail open for new keys rather than grow without bound
        self._current[key] = self._current.get(key, 0) + 1
        return False
