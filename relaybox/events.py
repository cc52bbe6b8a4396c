"""Typed facts the engine publishes, and the bus that carries them to subscribers.

Events are frozen dataclasses named in the past tense. The bus never makes the engine wait: each
subscriber has a bounded queue, and when it overflows the oldest events are dropped and the
subscriber is told (`dropped`), so it can re-read a snapshot through `admin` instead.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AttemptFinished",
    "AttemptLine",
    "AttemptStarted",
    "ConfigRefused",
    "ConfigReloaded",
    "DeliveryPaused",
    "DeliveryResumed",
    "DestinationSuspended",
    "DkimKeyChecked",
    "DomainsChecked",
    "Event",
    "EventBus",
    "MessageAccepted",
    "MessageBounced",
    "MessageDeferred",
    "MessageDeleted",
    "MessageDelivered",
    "MessageHeld",
    "MessageRejected",
    "MessageReleased",
    "MESSAGE_CHANGES",
    "SessionClosed",
    "SessionLine",
    "SessionOpened",
    "Subscription",
]


@dataclass(frozen=True)
class Event:
    """Base of every event."""

    at: float = field(kw_only=True)
    """Wall-clock time of the fact (seconds since the epoch), from the publisher's clock.

    Required, never defaulted: a default would read the system clock behind the engine's back
    (tests move the engine's clock), and the publisher already holds the time it acted at."""


@dataclass(frozen=True)
class SessionOpened(Event):
    """A client connected to a listener."""

    session_id: str
    listener: str
    client_ip: str
    client_port: int


@dataclass(frozen=True)
class SessionLine(Event):
    """One line of a live SMTP session: a command from the client or a reply from us."""

    session_id: str
    direction: Literal["C", "S", "-"]
    """`C` client, `S` server, `-` a note (TLS, size of DATA)."""
    text: str


@dataclass(frozen=True)
class SessionClosed(Event):
    """A client session ended (QUIT, timeout, drop or shutdown)."""

    session_id: str
    client_ip: str
    messages: int
    """Messages accepted in this session."""


@dataclass(frozen=True)
class MessageAccepted(Event):
    """A message is durably spooled and the client got 250."""

    queue_id: str
    session_id: str
    sender: str
    recipients: tuple[str, ...]
    size: int
    client_ip: str


@dataclass(frozen=True)
class MessageRejected(Event):
    """A command of a transaction was refused; the reason is the reply we sent."""

    session_id: str
    client_ip: str
    stage: str
    """`MAIL`, `RCPT`, `DATA` or `CONNECT`."""
    reply: str
    sender: str | None = None
    recipient: str | None = None


class Subscription:
    """A subscriber's bounded inbox; read with `await get()` or `async for`."""

    def __init__(
        self, bus: EventBus, maxsize: int, types: frozenset[type[Event]] | None = None
    ) -> None:
        self._bus = bus
        self.types = types
        """The event classes this subscriber takes; None for all."""
        self._queue: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        """Events lost to overflow since the last `take_dropped()`: re-read a snapshot."""

    def _put(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_dropped(self) -> int:
        """How many events were lost since the last call; resets the count."""
        n, self.dropped = self.dropped, 0
        return n

    def drain(self) -> list[Event]:
        """Everything queued now, without waiting."""
        items = list(self._queue)
        self._queue.clear()
        return items

    async def get(self) -> Event:
        """The next event, waiting for one if none is queued."""
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving events."""
        self._bus._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


class EventBus:
    """Fan-out of events to subscribers; `publish` is synchronous and never blocks."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self._wanted: dict[type[Event], tuple[Subscription, ...]] = {}
        """Per event class, the subscribers that take it (rebuilt when subscriptions change)."""

    def subscribe(
        self, maxsize: int = 10_000, types: Iterable[type[Event]] | None = None
    ) -> Subscription:
        """A new subscription that keeps at most `maxsize` undelivered events.

        `types` limits it to those event classes: the per-line events of every session
        (hundreds a second under load) are then never even built for a subscriber that only
        wants to know what happened to messages.
        """
        sub = Subscription(self, maxsize, frozenset(types) if types is not None else None)
        self._subscribers.append(sub)
        self._wanted.clear()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            self._wanted.clear()

    def _takers(self, cls: type[Event]) -> tuple[Subscription, ...]:
        takers = self._wanted.get(cls)
        if takers is None:
            takers = tuple(s for s in self._subscribers if s.types is None or cls in s.types)
            self._wanted[cls] = takers
        return takers

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone listens at all."""
        return bool(self._subscribers)

    def wants(self, cls: type[Event]) -> bool:
        """Lets hot paths skip building events nobody takes (per-line session events)."""
        return bool(self._takers(cls))

    def publish(self, event: Event) -> None:
        """Hand `event` to every subscriber that takes it; a full one loses its oldest event."""
        for sub in self._takers(type(event)):
            sub._put(event)


@dataclass(frozen=True)
class AttemptStarted(Event):
    """A delivery attempt of a message to one destination began."""

    queue_id: str
    destination: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class AttemptLine(Event):
    """One line of a live delivery attempt (so a watched retry streams into the inspector)."""

    queue_id: str
    destination: str
    host: str
    direction: Literal["C", "S", "-"]
    text: str
    connection: str = ""
    """The courier's id of the connection the line was said on (`O1`), once it has one."""


@dataclass(frozen=True)
class AttemptFinished(Event):
    """A delivery attempt ended; `outcome` is delivered, deferred, bounced or mixed."""

    queue_id: str
    destination: str
    outcome: str
    reply: str | None


@dataclass(frozen=True)
class MessageDelivered(Event):
    """Every recipient of the message is delivered (or captured)."""

    queue_id: str


@dataclass(frozen=True)
class MessageDeferred(Event):
    """Some recipients wait for a retry."""

    queue_id: str
    next_attempt_at: float | None
    reply: str | None


@dataclass(frozen=True)
class MessageBounced(Event):
    """Some recipients failed for good; a DSN went to the sender unless it was `<>`."""

    queue_id: str
    recipients: tuple[str, ...]
    reply: str | None


@dataclass(frozen=True)
class MessageHeld(Event):
    """Recipients of a message are held until an admin releases them: by a `hold` route, or
    by an admin (then `recipients` is empty: every recipient the hold applied to)."""

    queue_id: str
    recipients: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DkimKeyChecked(Event):
    """Delivery looked up a signing key in DNS and found something new about it.

    Published when a selector's status changes (first look included), not per message.
    `status`: ok, missing, mismatch, revoked, unparsable (the published record is wrong or
    absent: receivers will fail the signature) or error (DNS could not be asked).
    """

    domain: str
    selector: str
    status: str
    detail: str


@dataclass(frozen=True)
class DomainsChecked(Event):
    """New findings about these sending domains are ready (a check finished, or delivery
    learnt something about a signing key): read them with `Admin.domain_report`."""

    domains: tuple[str, ...]
    checked_at: float


@dataclass(frozen=True)
class MessageReleased(Event):
    """An admin released a message's held recipients: they are due now."""

    queue_id: str


@dataclass(frozen=True)
class MessageDeleted(Event):
    """An admin deleted a message, with its body and transcripts; nobody was told."""

    queue_id: str


@dataclass(frozen=True)
class DestinationSuspended(Event):
    """An admin held back delivery to a destination until `until` (0 when resumed)."""

    destination: str
    until: float


@dataclass(frozen=True)
class DeliveryPaused(Event):
    """The spool could not record what an attempt did (a full disk, a write error): delivery
    stopped, so that no recipient is sent again because its "delivered" was not written. The
    outcomes wait in memory and are written again until the spool takes them."""

    unrecorded: int
    """Attempts whose outcome waits to be written."""
    error: str
    """Why the spool refused the write, as SQLite said it."""


@dataclass(frozen=True)
class DeliveryResumed(Event):
    """Every outcome that waited is written now; delivery goes on."""


MESSAGE_CHANGES: tuple[type[Event], ...] = (
    MessageDelivered,
    MessageDeferred,
    MessageBounced,
    MessageHeld,
    MessageReleased,
    MessageDeleted,
)
"""The events after which a message reads differently from the spool (each names it by
`queue_id`): a screen showing the message re-reads it on these."""


@dataclass(frozen=True)
class ConfigReloaded(Event):
    """A new config is in force (`generation` counts them from 1, the one the engine started
    with); `trigger` is what asked: signal, command, file, ui or rollback."""

    generation: int
    trigger: str
    summary: str
    """What changed, in one line; secrets never appear in it."""


@dataclass(frozen=True)
class ConfigRefused(Event):
    """A reload was refused; the config in force stays as it was."""

    trigger: str
    problems: tuple[str, ...]
    """Each problem as `file:line: key: message`."""
