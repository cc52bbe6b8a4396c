"""The admin layer: the one set of operations the CLI, the TUI and the control socket call.

It answers questions about the spool (list, count, show) and changes what an admin may change:
retry, hold, release, delete and bounce messages chosen by one `MessageFilter`, suspend and
resume a destination, and the suppression list. It holds no state of its own and knows nothing
of who is asking; inside a running engine it is given a `LiveEngine` hook, so that an action
takes effect at once (delivery wakes up, a suspension reaches the scheduler, events are
published). Without one (the CLI beside a stopped engine) the same calls only change the spool,
and the next engine to start acts on it.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from relaybox.admin.destinations import group_by_destination
from relaybox.admin.sessions import follow, snapshot
from relaybox.clock import Clock, system_clock
from relaybox.config.model import Config, default_config
from relaybox.dsn.bounce import dsn_message
from relaybox.dsn.report import ORIGINAL_READ
from relaybox.events import (
    Event,
    EventBus,
    MessageBounced,
    MessageDeleted,
    MessageHeld,
    MessageReleased,
)
from relaybox.health import check_domains, resolver_for
from relaybox.health.monitor import DomainReport
from relaybox.message.address import AddressError, parse_rcpt
from relaybox.message.replies import Reply
from relaybox.message.transcript import TranscriptLine
from relaybox.outbound.connections import OutboundConnection
from relaybox.outbound.routing import destination_for, smarthost_key
from relaybox.queue import (
    SORT_COLUMNS,
    DeliveryJob,
    MessageDetail,
    MessageFilter,
    MessageRow,
    NewMessage,
    Overview,
    PendingRecipient,
    RecipientOutcome,
    RecipientRow,
    Spool,
    SuppressionRow,
)
from relaybox.queue.reroute import ROUTABLE
from relaybox.untrusted import first_unsafe, visible

if TYPE_CHECKING:
    from relaybox.inbound.server import InboundSMTP

__all__ = [
    "ACTIONS",
    "MAX_REASON_CHARS",
    "MAX_SUPPRESSION_DAYS",
    "UNTIL_RESUMED",
    "Admin",
    "LiveEngine",
    "MessageFilter",
    "Page",
    "IdPage",
    "every_page",
    "reason_problem",
    "suppression_days_problem",
    "suspension_reply",
]

UNTIL_RESUMED = 253_402_300_799.0
"""The end of a suspension that has none (9999-12-31 23:59:59 UTC): finite, so that every
time format and JSON can hold it."""

MAX_SUPPRESSION_DAYS = 3650
"""The longest an admin's suppression entry may last (as `[delivery] suppression_days`)."""

ACTIONS: tuple[str, ...] = ("retry", "hold", "release", "delete", "bounce")
"""The actions on messages, by the name the CLI and the socket use."""

ADMIN_HOLD = "held by an admin"
"""The reason of the `MessageHeld` events an admin's hold publishes."""

# A recipient in one of these states has not reached its end yet, so "bounce now" can end it.
_BOUNCEABLE = frozenset({"queued", "deferred", "held"})
_BOUNCE_BATCH = 200


async def every_page(
    list_page: Callable[..., Awaitable[Page]], flt: MessageFilter | None, page_size: int
) -> builtins.list[MessageRow]:
    """Every row `list_page` (an admin layer's `list_messages`) has for `flt`, page after page."""
    out: builtins.list[MessageRow] = []
    after: tuple[Any, int] | None = None
    while True:
        page = await list_page(flt, after=after, limit=page_size)
        out.extend(page.rows)
        if page.next_after is None:
            return out
        after = page.next_after


def suppression_days_problem(days: float) -> str | None:
    """What is wrong with `days` as the life of a suppression entry, or None."""
    if math.isfinite(days) and 0 < days <= MAX_SUPPRESSION_DAYS:
        return None
    return (
        f"days must be a number above 0 and at most {MAX_SUPPRESSION_DAYS} (or left out, "
        f"for no end), not {days:g}"
    )


MAX_REASON_CHARS = 200
"""The longest reason an admin may give: it is written into SMTP replies (a 550 at RCPT, a 451
on deferred mail), whose lines RFC 5321 §4.5.3.1.5 caps at 512 octets with the address."""


def reason_problem(field: str, text: str) -> str | None:
    """What is wrong with `text`, free text an admin gave as `field`, or None when it may go
    into replies, DSNs and the log as it is.

    Every such text is checked here, whoever asks (the socket, the CLI beside a stopped
    engine, the UI): a CR LF in a reason would become a reply line of its own at RCPT and throw
    every client out of step; other control characters would reach terminals.
    """
    bad = first_unsafe(text)
    if bad is not None:
        return (
            f"{field} may not contain control characters (it has {visible(bad)}); "
            "give it as one line of plain text"
        )
    if len(text) > MAX_REASON_CHARS:
        return f"{field} is {len(text)} characters long; keep it to {MAX_REASON_CHARS} at most"
    return None


def _checked_reason(field: str, text: str) -> str:
    """`text` when `reason_problem` finds nothing; raises ValueError saying what is wrong."""
    problem = reason_problem(field, text)
    if problem is not None:
        raise ValueError(problem)
    return text


def suspension_reply(destination: str, reason: str) -> str:
    """The reply recorded for mail deferred because `destination` is suspended."""
    return Reply.suspended(destination, reason)


class LiveEngine(Protocol):
    """What `Admin` needs of the engine it runs in, so that an action is felt at once."""

    @property
    def config(self) -> Config:
        """The config in force."""
        ...

    @property
    def bus(self) -> EventBus:
        """Where admin actions are published as events."""
        ...

    def wake_delivery(self) -> None:
        """Let delivery look at the queue now (after a retry, release or bounce)."""

    def delivering(self, message_id: int) -> bool:
        """Whether the message (`MessageRow.id`) is being delivered right now."""

    def claim(self, message_id: int) -> bool:
        """Keep delivery off the message until `unclaim`; False if it is being delivered."""

    def unclaim(self, message_id: int) -> None:
        """Give the message back to delivery."""

    async def refresh_suppression(self) -> None:
        """Make RCPT checks see the suppression list as the spool has it now."""

    def suspend(self, destination: str, until: float, reason: str) -> None:
        """Hold back delivery to `destination` until `until` from now on."""

    def resume(self, destination: str) -> None:
        """Deliver to `destination` again."""

    def domain_report(self) -> DomainReport:
        """The latest findings about the sending domains."""
        ...

    async def check_domains(self, domains: Sequence[str] | None = None) -> DomainReport:
        """Check these sending domains (default: all) now."""
        ...

    def attempts_to(self, destination: str) -> int:
        """Attempts holding or awaiting a connection to `destination` right now."""
        ...

    def sessions(self) -> list[InboundSMTP]:
        """The inbound SMTP sessions open now."""
        ...

    def outbound_connections(self) -> list[OutboundConnection]:
        """The courier's connections open now (in use or idle), oldest first."""
        ...

    def outbound_connection(self, connection_id: str) -> OutboundConnection | None:
        """The courier's connection of this id while it is open."""
        ...

    @property
    def config_desk(self) -> ConfigDesk:
        """The engine's config file: reading, checking, applying, history."""
        ...


class ConfigDesk(Protocol):
    """What the admin layer asks of a running engine about its config (engine.config_desk).

    Results are plain JSON-ready values: the admin protocol carries them as they are, in
    process and over the socket alike (see `docs/admin-protocol.md`)."""

    async def file(self) -> dict[str, Any]: ...

    async def check(self, text: str) -> dict[str, Any]: ...

    async def reload(self, path: str | None) -> dict[str, Any]: ...

    async def apply(self, text: str, base_version: str) -> dict[str, Any]: ...

    async def history(self) -> list[dict[str, Any]]: ...

    async def rollback(self) -> dict[str, Any]: ...

    async def dkim_keygen(self, domain: str, selector: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Page:
    """One window of a message listing, and the key to ask for the next."""

    rows: tuple[MessageRow, ...]
    next_after: tuple[Any, int] | None
    """Pass as `after` to get the following page; None when this was the last."""


@dataclass(frozen=True)
class IdPage:
    """One window of the row ids of a message listing, and the key to ask for the next."""

    ids: tuple[int, ...]
    next_after: tuple[Any, int] | None
    """Pass as `after` to get the following page; None when this was the last."""


ALL_UNFINISHED = (*ROUTABLE, "held")
"""The recipients the destinations view groups: everything not yet delivered or bounced."""


class Admin:
    """Operations on one spool (and on the engine serving it, when there is one)."""

    def __init__(
        self,
        spool: Spool,
        *,
        config: Callable[[], Config] | None = None,
        live: LiveEngine | None = None,
        clock: Clock = system_clock,
    ) -> None:
        """The admin layer of `spool`.

        Args:
            spool: The spool to read and change.
            config: The config in force (for DSN wording and resolving destinations); ignored
                when `live` is given, whose config is used. Default: the embedded default.
            live: The running engine this admin layer belongs to; None beside no engine.
            clock: Wall-clock time, for tests with a fixed clock.
        """
        self.spool = spool
        self._config = config
        self.live = live
        self.clock = clock

    def config(self) -> Config:
        """The config actions are taken under."""
        if self.live is not None:
            return self.live.config
        return self._config() if self._config is not None else default_config()

    async def list_messages(
        self,
        flt: MessageFilter | None = None,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 100,
    ) -> Page:
        """A page of messages (keyset pagination: pass `page.next_after` for the next)."""
        flt = flt or MessageFilter()
        rows = await self.spool.list_messages(
            flt, sort=sort, descending=descending, after=after, limit=limit
        )
        next_after = None
        if len(rows) == limit:
            last = rows[-1]
            # MessageRow's fields are named as the spool's columns.
            next_after = (getattr(last, SORT_COLUMNS[sort]), last.id)
        return Page(tuple(rows), next_after)

    async def overview(self, since: float) -> Overview:
        """Counts by state, delivered and bounced since `since`, the oldest deferred arrival."""
        return await self.spool.overview(since)

    async def message_ids(
        self, flt: MessageFilter | None = None, *, sort: str = "arrived", descending: bool = False
    ) -> builtins.list[int]:
        """Row ids of every matching message in order (a view reads rows by `rows_by_id`)."""
        return await self.spool.message_ids(
            _upper(flt or MessageFilter()), sort=sort, descending=descending
        )

    async def message_id_page(
        self,
        flt: MessageFilter | None = None,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 10_000,
    ) -> IdPage:
        """`message_ids` a window at a time: the row ids after `after`."""
        keys = await self.spool.message_id_page(
            _upper(flt or MessageFilter()),
            sort=sort,
            descending=descending,
            after=after,
            limit=limit,
        )
        return IdPage(
            tuple(message_id for _, message_id in keys),
            keys[-1] if len(keys) == limit else None,
        )

    async def rows_by_id(self, ids: Sequence[int]) -> dict[int, MessageRow]:
        """The listing rows of these messages (those that still exist)."""
        return await self.spool.rows_by_id(ids)

    async def list_all(
        self, flt: MessageFilter | None = None, page_size: int = 1000
    ) -> builtins.list[MessageRow]:
        """Every matching message, oldest first (the plain CLI prints them all, as mailq does)."""
        return await every_page(self.list_messages, flt, page_size)

    async def count(self, flt: MessageFilter | None = None) -> int:
        """How many messages match."""
        return await self.spool.count_messages(flt or MessageFilter())

    async def count_by_state(self) -> dict[str, int]:
        """Messages per state (queued, deferred, held, delivered, bounced, ...)."""
        return await self.spool.count_by_state()

    async def show(self, queue_id: str) -> MessageDetail | None:
        """Everything about one message, or None if there is no such message."""
        return await self.spool.message_detail(queue_id.strip().upper())

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None:
        """The stored message (its first `limit` bytes)."""
        return await self.spool.message_data(queue_id.strip().upper(), limit)

    async def recipients_of(
        self, message_ids: Sequence[int]
    ) -> dict[int, builtins.list[RecipientRow]]:
        """The recipients of many listed messages at once, by `MessageRow.id`."""
        return await self.spool.recipients_of(message_ids)

    async def delivering(self, message_ids: Sequence[int]) -> dict[int, bool]:
        """Which of these messages a delivery attempt holds right now (mailq's `*`): only
        the running engine knows; without one, none."""
        live = self.live
        return {i: True for i in message_ids if live is not None and live.delivering(i)}

    # ------------------------------------------------------------------ actions on messages
    #
    # Each takes the messages `flt` selects (MessageFilter() is every unfinished message) and
    # returns the queue IDs of those it changed, in no particular order. A message changed
    # while it is being delivered may have the change overwritten by the attempt's outcome.

    async def retry(self, flt: MessageFilter) -> builtins.list[str]:
        """Make every queued or deferred recipient due now."""
        touched = await self.spool.update_recipients(_upper(flt), "retry", self.clock())
        self._wake(touched)
        return touched

    async def hold(self, flt: MessageFilter) -> builtins.list[str]:
        """Keep every queued or deferred recipient until it is released."""
        now = self.clock()
        touched = await self.spool.update_recipients(_upper(flt), "hold", now)
        self._publish(MessageHeld(queue_id, (), ADMIN_HOLD, at=now) for queue_id in touched)
        return touched

    async def release(self, flt: MessageFilter) -> builtins.list[str]:
        """Make every held recipient due now (held by an admin or by a `hold` route).

        A released recipient goes past `hold` routes from then on: by the first other route
        that matches it, else by MX (`Config.route_for`).
        """
        now = self.clock()
        touched = await self.spool.update_recipients(_upper(flt), "release", now)
        self._publish(MessageReleased(queue_id, at=now) for queue_id in touched)
        self._wake(touched)
        return touched

    async def delete(self, flt: MessageFilter) -> builtins.list[str]:
        """Remove the messages with their bodies and transcripts; nobody is told.

        Whole messages only: naming recipients (`flt.recipients`) is refused with ValueError,
        because deleting one recipient of a message is bouncing it without telling anyone.
        """
        if flt.recipients:
            raise ValueError(
                "delete removes whole messages; to stop mail to one recipient, bounce it"
            )
        now = self.clock()
        touched = await self.spool.update_recipients(_upper(flt), "delete", now)
        self._publish(MessageDeleted(queue_id, at=now) for queue_id in touched)
        return touched

    async def bounce(self, flt: MessageFilter, reason: str = "") -> builtins.list[str]:
        """Fail every recipient not yet delivered or bounced, now, and tell the sender.

        Each such recipient gets a `550 5.0.0` reply naming this admin action (and `reason`),
        and the sender gets one RFC 3464 DSN per message, committed with the recipient states
        (none for a null sender `<>`: a bounce is never bounced). A message being delivered
        right now is left alone (its attempt would overwrite the bounce): bounce it again
        once the attempt is over. Raises ValueError for a `reason` that `reason_problem`
        refuses.
        """
        reply = Reply.bounced_by_admin(_checked_reason("reason", reason))
        now = self.clock()
        config = self.config()
        flt = _upper(flt)
        rows = await self.list_all(flt)
        touched: builtins.list[str] = []
        # Messages in groups taken at once, so that their writes share commits (group commit).
        for start in range(0, len(rows), _BOUNCE_BATCH):
            batch = rows[start : start + _BOUNCE_BATCH]
            # Claimed for the length of the read-DSN-write, so that the scheduler cannot start
            # an attempt in between whose outcome would overwrite the bounce.
            claimed = [row for row in batch if self.live is None or self.live.claim(row.id)]
            try:
                done = await asyncio.gather(
                    *(self._bounce_one(row, flt, reply, config, now) for row in claimed)
                )
            finally:
                if self.live is not None:
                    for row in claimed:
                        self.live.unclaim(row.id)
            touched.extend(queue_id for queue_id in done if queue_id is not None)
        self._wake(touched)
        return touched

    async def _bounce_one(
        self, row: MessageRow, flt: MessageFilter, reply: str, config: Config, now: float
    ) -> str | None:
        detail = await self.spool.message_detail(row.queue_id)
        # Only what the DSN quotes (the headers, capped): never whole bodies, 200 at a time.
        data = await self.spool.message_data(row.queue_id, ORIGINAL_READ)
        if detail is None or data is None:
            return None  # deleted meanwhile
        # A message's recipients are stored with idx 0, 1, ... and listed in that order.
        pending = tuple(
            PendingRecipient(idx, rc.address, rc.state, rc.attempts, rc.last_reply)
            for idx, rc in enumerate(detail.recipients)
            if rc.state in _BOUNCEABLE and _names(flt, rc.address)
        )
        if not pending:
            return None
        job = DeliveryJob(
            row.id,
            row.queue_id,
            row.sender,
            row.arrived_at,
            data,
            detail.body_8bit,
            detail.smtputf8,
            detail.is_bounce,
            None,
            pending,
        )
        outcomes = [
            RecipientOutcome(p.idx, "bounced", reply, None, None, attempted=False) for p in pending
        ]
        dsn: builtins.list[NewMessage] = []
        # RFC 5321 §6.1 / RFC 3464 §2: never a DSN about a message with the null sender.
        if row.sender and not detail.is_bounce:
            dsn.append(await asyncio.to_thread(dsn_message, job, outcomes, "failed", config, now))
        await self.spool.finish_attempt(row.id, outcomes, [], now=now, new_messages=dsn)
        bounced = tuple(p.address for p in pending)
        self._publish([MessageBounced(row.queue_id, bounced, reply, at=self.clock())])
        return row.queue_id

    def _publish(self, events: Iterable[Event]) -> None:
        """Tell the engine's subscribers (the UI, the socket's) what an action changed."""
        if self.live is not None:
            for event in events:
                self.live.bus.publish(event)

    def _wake(self, touched: Sequence[str]) -> None:
        if touched and self.live is not None:
            self.live.wake_delivery()

    # ------------------------------------------------------------------ destinations

    def destination_key(self, destination: str, suspended: Collection[str] = ()) -> str:
        """The scheduler's name for `destination`: `mx:example.org`, `smarthost:host:port`.

        A name with a transport prefix must be one routing can produce (as
        `routing.destination_for` builds it): `mx:DOMAIN` for a domain an `mx` route takes,
        `smarthost:` and all the hosts of a smart host route (`smarthost:a:587,b:587`), or
        one of `suspended` (a suspension made under an older config can always be lifted).
        A bare domain (or address) is the destination the config routes its mail to, so
        `example.org` behind a smart host names that smart host. Raises ValueError, naming
        the forms that work, for anything else.
        """
        text = destination.strip()
        kind, colon, rest = text.partition(":")
        if colon and kind.lower() in ("mx", "smarthost"):
            if not rest:
                raise ValueError(f"{destination!r} names no destination")
            mx = kind.lower() == "mx"
            key = f"mx:{rest.lower().rstrip('.')}" if mx else f"smarthost:{rest}"
            if key in suspended or self._routes_to(key):
                return key
            hosts = [smarthost_key(r) for r in self.config().routes if r.transport == "smarthost"]
            forms = ", ".join([*hosts, "mx:DOMAIN for a domain an mx route takes"])
            raise ValueError(
                f"{text!r} is not a destination of this config; name a domain (example.org) "
                f"or a destination: {forms} (a smart host route is named with all its hosts)"
            )
        domain = text.rpartition("@")[2].lower().rstrip(".")
        if not domain or any(c in domain for c in " :/[]<>"):
            raise ValueError(
                f"{destination!r} is not a domain or a destination like mx:example.org"
            )
        found = destination_for(self.config(), f"postmaster@{domain}", "")
        if found is None:
            raise ValueError(f"no route takes mail to {domain}; there is nothing to suspend")
        if found.route.transport not in ("mx", "smarthost"):
            raise ValueError(
                f"mail to {domain} is not sent anywhere (transport {found.route.transport});"
                " there is nothing to suspend"
            )
        return found.key

    def _routes_to(self, key: str) -> bool:
        """Whether routing can send mail to the destination `key` under the config now."""
        routes = self.config().routes
        if key.startswith("mx:"):
            return any(r.transport == "mx" and r.takes(key[3:]) for r in routes)
        return any(r.transport == "smarthost" and smarthost_key(r) == key for r in routes)

    async def suspend(
        self, destination: str, seconds: float | None = None, reason: str = ""
    ) -> tuple[str, float]:
        """Hold back delivery to a destination for `seconds` (None: until resumed).

        Mail for it is deferred, not bounced, until then. Returns the destination's key and
        the time the suspension ends (`UNTIL_RESUMED` for none). Raises ValueError for a
        destination that cannot be suspended, a duration that is not positive or a `reason`
        that `reason_problem` refuses.
        """
        if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"suspend for a positive number of seconds, not {seconds}")
        _checked_reason("reason", reason)
        key = self.destination_key(destination)
        until = UNTIL_RESUMED if seconds is None else min(UNTIL_RESUMED, self.clock() + seconds)
        why = " ".join(reason.split()) or "no reason given"
        await self.spool.suspend(key, until, why)
        if self.live is not None:
            self.live.suspend(key, until, why)
        return key, until

    async def resume(self, destination: str) -> bool:
        """Deliver to a destination again, and retry the mail its suspension deferred.

        Returns False when it was not suspended.
        """
        key = self.destination_key(destination, (await self.spool.suspended()).keys())
        found = await self.spool.resume(key)
        if self.live is not None:
            self.live.resume(key)
        self._wake(await self.spool.retry_destination(key, self.clock()))
        return found

    async def domain_report(self) -> DomainReport:
        """The latest findings about the sending domains (none beside no engine: use
        `check_domains`)."""
        if self.live is None:
            return DomainReport((), {}, False)
        return self.live.domain_report()

    # ------------------------------------------------------------------ the config file

    def _desk(self) -> ConfigDesk:
        if self.live is None:
            raise ValueError(
                "no relaybox engine is running on this state directory: the config is read "
                "when relaybox starts (start it, or run relaybox check-config to check a file)"
            )
        return self.live.config_desk

    async def config_file(self) -> dict[str, Any]:
        """The engine's config file: path, text, version and the generation in force."""
        return await self._desk().file()

    async def check_config_text(self, text: str) -> dict[str, Any]:
        """What applying `text` would do: problems, warnings, changes, queue moves."""
        return await self._desk().check(text)

    async def reload_config(self, path: str | None = None) -> dict[str, Any]:
        """Reload the engine's file (which `path`, when given, must name)."""
        return await self._desk().reload(path)

    async def apply_config(self, text: str, base_version: str) -> dict[str, Any]:
        """Write `text` as the engine's file and reload it, unless the file changed since
        `base_version` was read (a conflict) or `text` is invalid (refused)."""
        return await self._desk().apply(text, base_version)

    async def config_history(self) -> builtins.list[dict[str, Any]]:
        """The versions applied, newest first."""
        return await self._desk().history()

    async def rollback_config(self) -> dict[str, Any]:
        """Apply again the version before the one in force."""
        return await self._desk().rollback()

    async def dkim_keygen(self, domain: str, selector: str) -> dict[str, Any]:
        """Make a signing key in the state directory; its path and the DNS record."""
        return await self._desk().dkim_keygen(domain, selector)

    async def check_domains(self, domains: Sequence[str] | None = None) -> DomainReport:
        """Check these sending domains (default: every one of the config) now.

        With an engine, its monitor does it and keeps the findings; beside none, the checks
        run here and only the answer keeps them.
        """
        if self.live is not None:
            return await self.live.check_domains(domains)
        config = self.config()
        found = await check_domains(config, resolver_for(config), domains)
        now = self.clock()
        return DomainReport(tuple(found), {f.domain: now for f in found}, False)

    async def destinations(self) -> builtins.list[dict[str, Any]]:
        """The unfinished queue by next hop, the one needing attention first (qshape's view,
        with causes; see `admin.destinations`)."""
        recipients = await self.spool.unfinished_recipients(ALL_UNFINISHED)
        suspended = await self.suspended()
        live = self.live
        found = await asyncio.to_thread(
            group_by_destination,
            recipients,
            self.config(),
            suspended=suspended,
            delivering=live.delivering if live is not None else (lambda _: False),
            attempts_now=live.attempts_to if live is not None else (lambda _: 0),
        )
        return [summary.to_json() for summary in found]

    async def sessions(self) -> dict[str, Any]:
        """The inbound sessions and outbound connections open now (none beside no engine)."""
        live = self.live
        if live is None:
            return snapshot([], [], self.clock())
        return snapshot(live.sessions(), live.outbound_connections(), self.clock())

    def session_transcript(self, session_id: str) -> AsyncGenerator[TranscriptLine, None]:
        """One open session's or connection's lines, so far and live (see `sessions.follow`;
        close it with `aclose()`). Raises ValueError when it is not open (or no engine runs)."""
        live = self.live
        if live is None:
            raise ValueError("no relaybox engine is running: there are no sessions to watch")
        return follow(
            live.bus,
            session_id,
            inbound=live.sessions,
            outbound=live.outbound_connection,
            clock=self.clock,
        )

    async def suspended(self) -> dict[str, tuple[float, str]]:
        """Destinations suspended now: until when (`UNTIL_RESUMED`: no end), and why."""
        now = self.clock()
        return {
            key: (until, reason)
            for key, (until, reason) in (await self.spool.suspended()).items()
            if until > now
        }

    # ------------------------------------------------------------------ suppression list

    async def suppress_add(
        self, address: str, reason: str = "added by an admin", days: float | None = None
    ) -> str:
        """Refuse mail to `address` at RCPT; returns the normalised address.

        `days` (None: for ever) is counted from now on the engine's clock. Raises ValueError
        when `address` is not a valid mailbox, `days` is not a number above 0 and at most
        `MAX_SUPPRESSION_DAYS`, or `reason_problem` refuses `reason`.
        """
        if days is not None and (problem := suppression_days_problem(days)):
            raise ValueError(problem)
        _checked_reason("reason", reason)
        try:
            normalized = parse_rcpt(f"TO:<{address}>", smtputf8=True).recipient.lower()
        except AddressError as exc:
            raise ValueError(f"{address!r} is not a valid address: {exc.text}") from None
        expires = None if days is None else self.clock() + days * 86400
        await self.spool.suppression_add(normalized, reason, expires)
        if self.live is not None:
            await self.live.refresh_suppression()
        return normalized

    async def suppress_remove(self, address: str) -> bool:
        """Allow mail to `address` again; False if it was not suppressed."""
        found = await self.spool.suppression_remove(address.strip().lower())
        if self.live is not None:
            await self.live.refresh_suppression()
        return found

    async def suppress_list(self) -> builtins.list[SuppressionRow]:
        """Every suppression entry."""
        return await self.spool.suppression_list()


def _names(flt: MessageFilter, address: str) -> bool:
    """Whether an action under `flt` touches this recipient (see `MessageFilter.recipients`)."""
    lowered = address.lower()
    if flt.domain and lowered.rpartition("@")[2] != flt.domain.lower().rstrip("."):
        return False
    return not flt.recipients or lowered in {a.strip().lower() for a in flt.recipients}


def _upper(flt: MessageFilter) -> MessageFilter:
    """Queue IDs as stored (upper case), whatever case the admin typed them in."""
    if not flt.queue_ids:
        return flt
    return dataclasses.replace(flt, queue_ids=tuple(q.strip().upper() for q in flt.queue_ids))
