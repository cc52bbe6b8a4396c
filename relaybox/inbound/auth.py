"""SMTP AUTH decisions: password checks off the event loop, capped, and a brute-force brake.

`Authenticator.verify` runs the slow scrypt check in one of two small thread pools (lanes):
one for clients whose network has not failed a login recently, one thread for the rest.
Guessers therefore wait for and are refused because of each other, never a clean client: a
failure moves them out of its way. In the clean lane a network checks one login at a time,
and a network that logged in successfully within a day goes ahead of unknown ones. Beyond a
lane's cap an unknown client is refused at once (454) rather than queued. A bounded table of
failures per client network delays replies after a few failures and locks the network out
after more. The protocol side (`inbound.sasl` decodes the SASL exchange, `inbound.server`
sends the replies); nothing here sees a socket.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import heapq
import ipaddress
import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from relaybox.config.model import AuthConfig, UserConfig
from relaybox.config.passwords import VerifiedCache, verify_password
from relaybox.message.replies import Reply

__all__ = ["UNKNOWN_USER", "AuthOutcome", "Authenticator", "FailureTable", "client_network"]

UNKNOWN_USER = "unknown"
"""What the log says instead of a login name that no `[[users]]` entry has."""

KNOWN_FOR = 86400.0
"""Seconds a network that logged in successfully is let ahead of unknown ones (a day)."""

MAX_WAITING_KNOWN = 1000
"""Logins from known networks that may wait for a thread (one per network at a time)."""

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
        self._known: collections.OrderedDict[str, float] = collections.OrderedDict()
        """Networks with a recent successful login, and when it was."""
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

    def failed_recently(self, key: str) -> bool:
        """True when `key` has a failure within failure_window (or is locked out)."""
        return self._recent(key) is not None

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
        """A good login clears the network's record (a typo is not an attack) and makes it
        known for KNOWN_FOR seconds."""
        self._entries.pop(key, None)
        self._known[key] = self._clock()
        self._known.move_to_end(key)
        while len(self._known) > self._max:
            self._known.popitem(last=False)

    def known(self, key: str) -> bool:
        """True when `key` logged in successfully within KNOWN_FOR seconds."""
        at = self._known.get(key)
        if at is not None and self._clock() - at > KNOWN_FOR:
            del self._known[key]
            return False
        return at is not None


@dataclass(frozen=True)
class AuthOutcome:
    """What to answer a login: `user` on success, else the reply to send."""

    user: UserConfig | None
    reply: str
    delay: float = 0.0
    """Seconds to wait before sending the reply (the brute-force brake)."""


def _lowest_priority() -> None:
    """Run this thread at nice 19: guessers' checks get the CPU the relay leaves over.

    Linux gives each thread its own nice value (setpriority on the thread's id); elsewhere,
    or when it is refused, the thread keeps the process's priority.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class _Lane:
    """One class of password checks: its own threads, and who runs next on them.

    At most `threads` checks run at once (more would wait inside the pool, in arrival order);
    the others wait here, known networks first, so a login from a network that logged in
    before never waits behind a stranger's. `cap` bounds the checks of unknown networks
    running or waiting; beyond it they are refused at once.
    """

    def __init__(self, name: str, threads: int, cap: int, *, background: bool = False) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix=f"auth-{name}",
            initializer=_lowest_priority if background else None,
        )
        self.threads = threads
        self.cap = cap
        self.running = 0
        self.unknown = 0
        """Checks of unknown networks running or waiting (bounded by `cap`)."""
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def enter(self, known: bool) -> bool:
        """Wait for a thread; False (at once) when the lane is full for this client."""
        if known:
            if len(self._waiting) >= MAX_WAITING_KNOWN:
                return False
        elif self.unknown >= self.cap:
            return False
        if not known:
            self.unknown += 1
        if self.running < self.threads and not self._waiting:
            self.running += 1
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (0 if known else 1, next(self._arrivals), turn)
        heapq.heappush(self._waiting, entry)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(known)  # the thread was handed over just as the session went
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                if not known:
                    self.unknown -= 1
            raise
        return True

    def leave(self, known: bool) -> None:
        """A check is over: its thread goes to the first in line."""
        if not known:
            self.unknown -= 1
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # (`running` stays: the thread changes hands)
                return
        self.running -= 1


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
        self._clean = _Lane("clean", 2, config.max_verifications_in_flight)
        # One thread, at the lowest priority: guessers share at most one core, whatever
        # their number, and only what the relay leaves of it.
        self._suspect = _Lane("suspect", 1, config.suspect_verifications_in_flight, background=True)
        self._first_checks: dict[str, asyncio.Event] = {}
        """Networks with a check in the clean lane now, and what is set when it ends."""
        self.verifications = 0
        """Password hashes actually computed (for tests: the brake bounds this)."""

    def update(self, users: Mapping[str, UserConfig], config: AuthConfig) -> None:
        """A reload: the next AUTH checks against these users and limits. What was learnt
        about networks (failures, lockouts, known good) is kept: a reload is not an amnesty."""
        self.users = users
        self.config = self.failures.config = config
        self._clean.cap = config.max_verifications_in_flight
        self._suspect.cap = config.suspect_verifications_in_flight

    def loggable_name(self, login: bytes) -> str:
        """What the log may say about a login name: the name when it is a configured user,
        else `unknown`.

        A name nobody configured is often a password typed into the user-name field, or a
        list of guesses: it is never written down, so the log cannot leak a password.
        """
        name = login.decode("utf-8", "replace")
        return name if name in self.users else UNKNOWN_USER

    def close(self) -> None:
        """Stop the verification threads."""
        for lane in (self._clean, self._suspect):
            lane.pool.shutdown(wait=False, cancel_futures=True)

    async def _lane_for(self, network: str) -> _Lane | None:
        """The lane a check from `network` runs in, or None when the network is locked out.

        A network with no recent failure gets the clean lane, one check at a time: a second
        login from it waits for the first, so that a fresh address opening fifty sessions at
        once puts one check in the clean lane, not fifty; if that one fails, the others are
        suspects.
        """
        while (running := self._first_checks.get(network)) is not None:
            await running.wait()
        if self.failures.locked_for(network) > 0:
            return None
        return self._suspect if self.failures.failed_recently(network) else self._clean

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
        lane = await self._lane_for(network)
        if lane is None:
            return AuthOutcome(None, self.LOCKED)
        # Only a clean network is ever let ahead: one that failed since is a suspect.
        known = lane is self._clean and self.failures.known(network)
        finished: asyncio.Event | None = None
        if lane is self._clean:
            finished = self._first_checks[network] = asyncio.Event()
        try:
            if not await lane.enter(known):
                return AuthOutcome(None, self.BUSY)
            try:
                loop = asyncio.get_running_loop()
                # Unknown users cost the same as known ones, so timing does not reveal names.
                ok = await loop.run_in_executor(lane.pool, verify_password, password, encoded)
            finally:
                lane.leave(known)
            self.verifications += 1
            if ok and user is not None:
                self._cache.remember(username, password, encoded)
                self.failures.succeed(network)
                return AuthOutcome(user, self.SUCCESS)
            delay = self.failures.delay(network)
            self.failures.fail(network)
        finally:
            if finished is not None:
                # Recorded before the waiters wake, so they see this check's outcome.
                del self._first_checks[network]
                finished.set()
        if self.failures.locked_for(network) > 0:
            return AuthOutcome(None, self.LOCKED, delay)
        return AuthOutcome(None, self.INVALID, delay)


# A valid hash of a random password, checked for unknown user names.
_DUMMY_HASH = (
    "$scrypt$ln=15,r=8,p=1$yzK1fp3ZBM0B3xg9l2sJdA$SmVkIsG2FstNQiQ0v9dx7gpiZNGjc3D3VzYH3F0bVK8"
)
