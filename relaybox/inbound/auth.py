"""SMTP AUTH decisions: password checks off the event loop, capped, and a brute-force brake.

`Authenticator.verify` runs the slow scrypt check in a small thread pool, refuses at once when
too many checks are already running (so a flood cannot queue up work or stall other sessions),
and keeps a bounded table of failures per client network: after a few failures each further
reply is delayed, after more the network is locked out for a while. The protocol side
(`inbound.sasl` decodes the SASL exchange, `inbound.server` sends the replies); nothing here sees
a socket.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from relaybox.config.model import AuthConfig, UserConfig
from relaybox.config.passwords import VerifiedCache, verify_password
from relaybox.message.replies import Reply

__all__ = ["AuthOutcome", "Authenticator", "FailureTable", "client_network"]

MAX_DELAY = 16.0
"""Longest pause before answering a failed login (seconds)."""


def client_network(ip: str) -> str:
    """The unit failures are counted per: the address for IPv4, the /64 for IPv6.

    One IPv6 host usually holds a whole /64, so counting per address would let it rotate
    through billions of addresses.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


@dataclass
class _Failures:
    times: collections.deque[float]
    locked_until: float = 0.0


class FailureTable:
    """Recent failed logins per client network; bounded (the oldest entries are forgotten)."""

    def __init__(
        self,
        config: AuthConfig,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._entries: collections.OrderedDict[str, _Failures] = collections.OrderedDict()
        self._max = max_entries
        self._clock = clock

    def _recent(self, key: str) -> _Failures | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        horizon = self._clock() - self.config.failure_window
        while entry.times and entry.times[0] < horizon:
            entry.times.popleft()
        if not entry.times and entry.locked_until <= self._clock():
            del self._entries[key]
            return None
        return entry

    def locked_for(self, key: str) -> float:
        """Seconds `key` stays locked out (0 when it may try)."""
        entry = self._recent(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self._clock())

    def delay(self, key: str) -> float:
        """How long to wait before answering `key`'s next failed login."""
        entry = self._recent(key)
        count = len(entry.times) if entry else 0
        over = count - self.config.failures_before_delay
        return 0.0 if over < 0 else min(MAX_DELAY, 2.0**over)

    def fail(self, key: str) -> None:
        """Count one failure; lock `key` out once it reaches the lockout threshold."""
        now = self._clock()
        entry = self._recent(key) or _Failures(collections.deque())
        entry.times.append(now)
        if len(entry.times) >= self.config.failures_before_lockout:
            entry.locked_until = now + self.config.lockout_seconds
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def succeed(self, key: str) -> None:
        """A good login clears the network's record (a typo is not an attack)."""
        self._entries.pop(key, None)


@dataclass(frozen=True)
class AuthOutcome:
    """What to answer a login: `user` on success, else the reply to send."""

    user: UserConfig | None
    reply: str
    delay: float = 0.0
    """Seconds to wait before sending the reply (the brute-force brake)."""


class Authenticator:
    """Checks logins against `[[users]]` for every listener of one engine."""

    SUCCESS = Reply.AUTH_SUCCESSFUL
    INVALID = Reply.AUTH_INVALID
    LOCKED = Reply.AUTH_LOCKED_OUT
    BUSY = Reply.AUTH_BUSY

    def __init__(
        self,
        users: Mapping[str, UserConfig],
        config: AuthConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.config = config
        self.failures = FailureTable(config, clock=clock)
        self._cache = VerifiedCache()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="auth")
        self._in_flight = 0
        self.verifications = 0
        """Password hashes actually computed (for tests: the brake bounds this)."""

    def close(self) -> None:
        """Stop the verification threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def verify(self, client_ip: str, username: str, password: str) -> AuthOutcome:
        """Decide one login. Never raises for bad input; never logs or returns the password."""
        network = client_network(client_ip)
        if self.failures.locked_for(network) > 0:
            return AuthOutcome(None, self.LOCKED)
        user = self.users.get(username)
        encoded = user.password_hash if user is not None else _DUMMY_HASH
        if user is not None and self._cache.hit(username, password, encoded):
            self.failures.succeed(network)
            return AuthOutcome(user, self.SUCCESS)
        if self._in_flight >= self.config.max_verifications_in_flight:
            return AuthOutcome(None, self.BUSY)
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            # Unknown users cost the same as known ones, so timing does not reveal names.
            ok = await loop.run_in_executor(self._pool, verify_password, password, encoded)
            self.verifications += 1
        finally:
            self._in_flight -= 1
        if ok and user is not None:
            self._cache.remember(username, password, encoded)
            self.failures.succeed(network)
            return AuthOutcome(user, self.SUCCESS)
        delay = self.failures.delay(network)
        self.failures.fail(network)
        if self.failures.locked_for(network) > 0:
            return AuthOutcome(None, self.LOCKED, delay)
        return AuthOutcome(None, self.INVALID, delay)


# A valid hash of a random password, checked for unknown user names.
_DUMMY_HASH = (
    "$scrypt$ln=15,r=8,p=1$yzK1fp3ZBM0B3xg9l2sJdA$SmVkIsG2FstNQiQ0v9dx7gpiZNGjc3D3VzYH3F0bVK8"
)
