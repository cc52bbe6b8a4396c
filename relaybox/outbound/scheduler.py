"""The queue manager: picks due messages, sends each recipient group to its destination, and
records what happened: delivered, deferred with a backoff, or bounced with a DSN.

It reads the spool for work (so a restart resumes exactly where it stopped), keeps only the ids
in flight in memory, limits connections in total and per destination, paces destinations that
throttle, and never waits on the disk on the event loop. What the next hop took is written
before its connection carries another message, through `recorder`, which holds delivery back
while the spool cannot write. Routing is `routing`'s job, the bytes sent
(rewrite, DKIM) `content`'s, SMTP `client`'s, retry or bounce `retry`'s (a pure function), DSN
wording `dsn`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from relaybox.clock import Clock, system_clock
from relaybox.config.model import Config
from relaybox.dsn.bounce import dsn_message
from relaybox.events import (
    AttemptFinished,
    AttemptLine,
    AttemptStarted,
    DkimKeyChecked,
    EventBus,
    MessageBounced,
    MessageDeferred,
    MessageDelivered,
    MessageHeld,
)
from relaybox.maillog import MailLog
from relaybox.message.headers import MAX_HOPS
from relaybox.message.replies import Reply
from relaybox.message.transcript import TranscriptLine
from relaybox.outbound.client import Courier, HopAttempt, Outcome, Transaction
from relaybox.outbound.content import prepare, received_count
from relaybox.outbound.handshake import Credentials
from relaybox.outbound.recorder import RETRY_EVERY, Recorder
from relaybox.outbound.retry import decide
from relaybox.outbound.routing import Destination, destination_for, resolve_hops
from relaybox.queue import (
    AttemptRow,
    DeliveryJob,
    NewMessage,
    PendingRecipient,
    RecipientOutcome,
    Spool,
)
from relaybox.resolver import Resolver
from relaybox.signing.signer import KeyCheck, PublishedKeys

__all__ = ["Scheduler"]

IDLE_POLL = 5.0
"""Longest sleep between looks at the queue when nothing woke the scheduler."""
WAKE_COALESCE = 0.01
"""Seconds to gather wake-ups before looking at the queue (a message waits at most this)."""


@dataclass
class _Pace:
    """Message starts per minute to one destination (for providers that throttle)."""

    starts: collections.deque[float] = field(default_factory=collections.deque)

    def wait(self, limit: int, now: float) -> float:
        self._forget(now)
        if len(self.starts) < limit:
            self.starts.append(now)
            return 0.0
        return 60 - (now - self.starts[0])

    def idle(self, now: float) -> bool:
        """No start in the last minute: forgetting this pace changes nothing."""
        self._forget(now)
        return not self.starts

    def _forget(self, now: float) -> None:
        while self.starts and now - self.starts[0] >= 60:
            self.starts.popleft()


class _Gate:
    """The connection limit of one destination, and how many attempts hold or await it."""

    def __init__(self, limit: int) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self.users = 0

    async def __aenter__(self) -> None:
        self.users += 1
        try:
            await self._semaphore.acquire()
        except BaseException:
            self.users -= 1
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()
        self.users -= 1


FAILED_ATTEMPT_PAUSE = 60.0
"""Seconds before a message whose attempt failed inside relaybox (a bug, a spool error) is
tried again."""


def _listed(items: Iterable[str], most: int = 5) -> str:
    """The first `most` items, then how many more: a log line stays a line."""
    remaining = iter(items)
    shown = list(itertools.islice(remaining, most + 1))
    if len(shown) <= most:
        return ", ".join(shown)
    rest = sum(1 for _ in remaining) + 1
    return ", ".join(shown[:most]) + f" and {rest} more"


class Scheduler:
    """Runs deliveries for one engine; `start()`, `wake()` when work arrives, `stop()`."""

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        spool: Spool,
        resolver: Resolver,
        courier: Courier,
        credentials: dict[int, Credentials | None],
        bus: EventBus,
        log: MailLog,
        clock: Clock = system_clock,
        on_suppressed: Callable[[Sequence[tuple[str, str, float | None]]], None] | None = None,
        on_key_checked: Callable[[DkimKeyChecked], None] | None = None,
        record_retry_every: float = RETRY_EVERY,
    ) -> None:
        self._config = config
        self._on_suppressed = on_suppressed
        """Told of the suppression entries each attempt added, once they are committed."""
        self._on_key_checked = on_key_checked
        """Told when a signing key's DNS status changes (the domain monitor shows it)."""
        self.spool = spool
        self.resolver = resolver
        self.courier = courier
        self.credentials = credentials
        """AUTH credentials by `id()` of the route config object (read once, off the loop)."""
        self.bus = bus
        self.log = log
        self.clock = clock
        self.recorder = Recorder(bus=bus, log=log, clock=clock, retry_every=record_retry_every)
        """Writes outcomes; while one waits in memory (the spool refused it), nothing starts."""
        self._active: set[int] = set()
        self._paused: dict[int, float] = {}
        """Messages whose last attempt failed inside relaybox: not before this time."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._max_connections = config().delivery.max_connections
        self._connections = asyncio.Semaphore(self._max_connections)
        self._per_destination: dict[str, _Gate] = {}
        """Connection limits by destination key; `forget_idle` drops those nobody uses."""
        self._pace: dict[str, _Pace] = {}
        """Message starts by destination key, for paced routes; `forget_idle` drops idle ones."""
        self.suspended: dict[str, tuple[float, str]] = {}
        """Destinations an admin suspended: until when, and why."""
        self.published_keys = PublishedKeys(resolver, clock=clock)
        self._key_status: dict[tuple[str, str], str] = {}
        """The last DKIM key status published per (domain, selector), to publish changes only."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Resume after a restart (messages left active go back to their state) and run."""
        recovered = await self.spool.recover_active()
        if recovered:
            self.log.event("recovered", messages=recovered, note="were being delivered at a stop")
        self.suspended = await self.spool.suspended()
        self._task = asyncio.create_task(self._run(), name="scheduler")

    def wake(self) -> None:
        """Look at the queue now (new mail, an admin retry, a finished attempt)."""
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop starting attempts; let those in flight finish (bounded), then cancel them."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._jobs:
            _, pending = await asyncio.wait(self._jobs, timeout=grace)
            for job in pending:
                job.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        await self.courier.close()

    @property
    def in_flight(self) -> int:
        """Messages being delivered right now."""
        return len(self._active)

    def is_delivering(self, message_id: int) -> bool:
        """Whether the message with this row id is in an attempt right now."""
        return message_id in self._active

    def attempts_to(self, destination: str) -> int:
        """Attempts holding or awaiting one of `destination`'s connections now."""
        gate = self._per_destination.get(destination)
        return gate.users if gate is not None else 0

    def claim(self, message_id: int) -> bool:
        """Keep the message out of attempts until `unclaim` (for an admin's read-then-write).

        False when it is in an attempt now. Claimed messages count as in flight, which is
        what they are: something is working on them.
        """
        if message_id in self._active:
            return False
        self._active.add(message_id)
        return True

    def unclaim(self, message_id: int) -> None:
        """Give a claimed message back to delivery."""
        self._active.discard(message_id)
        self.wake()

    def reconfigure(self, credentials: dict[int, Credentials | None], resolver: Resolver) -> None:
        """A reload put a new config in force (`config()` returns it from now on): take its
        routes' credentials, connection limits and name servers. Call in the same step as the
        swap. Attempts in flight finish as they began; limits of busy destinations apply once
        they are idle."""
        config = self._config()
        self.credentials = credentials
        if resolver is not self.resolver:
            self.resolver = resolver
            self.published_keys = PublishedKeys(resolver, clock=self.clock)
        if config.delivery.max_connections != self._max_connections:
            # Attempts in flight release the semaphore they took; new ones take this one.
            self._max_connections = config.delivery.max_connections
            self._connections = asyncio.Semaphore(self._max_connections)
        for key in [k for k, gate in self._per_destination.items() if not gate.users]:
            del self._per_destination[key]
        self.wake()

    def forget_idle(self) -> None:
        """Drop the connection limits and paces of destinations nobody uses right now.

        One of each is made per destination ever delivered to; without this, a relay that
        sends to many domains keeps them all. A limit comes back on next use (with the
        config's value then); a pace is dropped only when it has no start in the last minute.
        """
        now = self.clock()
        for key in [k for k, gate in self._per_destination.items() if not gate.users]:
            del self._per_destination[key]
        for key in [k for k, pace in self._pace.items() if pace.idle(now)]:
            del self._pace[key]

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            if self.recorder.paused:
                # An outcome the spool refused waits in memory: start nothing until it is
                # written (its message stays in `_active`, so it is not picked again either).
                await self.recorder.wait_clear()
            self._wake.clear()
            config = self._config()
            capacity = config.delivery.max_connections * 2 - len(self._active)
            started = 0
            now = self.clock()
            for message_id in [m for m, until in self._paused.items() if until <= now]:
                del self._paused[message_id]
            if capacity > 0:
                try:
                    due = await self.spool.due_messages(
                        now, capacity, self._active | self._paused.keys()
                    )
                except Exception as exc:  # the loop must outlive a failing read
                    self.log.error("scheduler-read-failed", error=str(exc))
                    due = []
                for message_id in due:
                    if message_id in self._active:
                        continue
                    # In flight is known here (`in_flight`), not written to the spool: a write
                    # per message for a state that lasts milliseconds costs more than it shows.
                    self._active.add(message_id)
                    job = asyncio.create_task(self._attempt(message_id))
                    self._jobs.add(job)
                    job.add_done_callback(self._jobs.discard)
                    started += 1
            if started and started == capacity:
                continue  # more may be due right away
            timeout = IDLE_POLL
            if not started:
                try:
                    next_at = await self.spool.next_due_at()
                except Exception as exc:
                    self.log.error("scheduler-read-failed", error=str(exc))
                    next_at = None
                # Something due now is in flight or paused: its end wakes us (no busy poll).
                if next_at is not None and next_at > self.clock():
                    timeout = min(IDLE_POLL, next_at - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            # Under load every accepted and every finished message wakes us: gather a few
            # wake-ups into one look at the queue instead of one query per message.
            await asyncio.sleep(WAKE_COALESCE)

    # ------------------------------------------------------------------ one message

    async def _attempt(self, message_id: int) -> None:
        try:
            job = await self.spool.load_job(message_id, self.clock())
            if job is not None:
                await self._deliver(job)
            else:
                await self.spool.refresh_state(message_id)
        except Exception:
            # Its recipients are still due: without a pause the loop would pick it again at
            # once, over and over (and send again what this attempt had delivered).
            self._paused[message_id] = self.clock() + FAILED_ATTEMPT_PAUSE
            self.log.exception(
                "delivery-failed", message=message_id, note=f"retried in {FAILED_ATTEMPT_PAUSE:g} s"
            )
            with contextlib.suppress(Exception):
                await self.spool.refresh_state(message_id)
        finally:
            self._active.discard(message_id)
            self.wake()

    async def _deliver(self, job: DeliveryJob) -> None:
        # Read together, in one step: a reload swaps both at once, and an attempt that began
        # under one config finishes with that config's routes and their credentials.
        config, credentials = self._config(), self.credentials
        now = self.clock()
        outcomes: dict[int, RecipientOutcome] = {}
        received = await received_count(job.data)
        if received > MAX_HOPS:
            # Queued before the end of DATA counted hops (or put back by an admin): bounce it.
            reply = Reply.looping(received, MAX_HOPS)
            looping = [RecipientOutcome(r.idx, "bounced", reply) for r in job.recipients]
            self.log.warning("looping", queue_id=job.queue_id, received=received, reply=reply)
            await self._record(job, looping, [], config, now)
            return
        groups: dict[str, tuple[Destination, list[PendingRecipient]]] = {}
        for rcpt in job.recipients:
            destination = destination_for(config, rcpt.address, job.sender, rcpt.released)
            if destination is None:
                outcomes[rcpt.idx] = RecipientOutcome(
                    rcpt.idx, "bounced", "550 5.7.1 No route for this recipient's domain"
                )
            elif destination.route.transport == "reject":
                outcomes[rcpt.idx] = RecipientOutcome(
                    rcpt.idx, "bounced", Reply.rejected_by_route(destination.route.reject_text)
                )
            elif destination.route.transport == "hold":
                outcomes[rcpt.idx] = RecipientOutcome(
                    rcpt.idx,
                    "held",
                    "held by route (transport hold); release to send",
                    attempted=False,
                )
            elif destination.route.transport == "capture":
                outcomes[rcpt.idx] = RecipientOutcome(
                    rcpt.idx,
                    "delivered",
                    "250 2.0.0 Captured by relaybox (transport capture); not sent on",
                    destination="capture",
                )
            else:
                groups.setdefault(destination.key, (destination, []))[1].append(rcpt)
        attempts: list[AttemptRow] = []
        signed = dict(job.signatures)
        sends = list(groups.values())
        # One group failing inside relaybox must not lose what the others did (delivered
        # mail recorded as delivered, never sent twice): its recipients alone are deferred.
        results = await asyncio.gather(
            *(
                self._send_group(job, dest, rcpts, signed, config, credentials.get(id(dest.route)))
                for dest, rcpts in sends
            ),
            return_exceptions=True,
        )
        for (destination, rcpts), result in zip(sends, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                self.log.error(
                    "delivery-failed",
                    queue_id=job.queue_id,
                    destination=destination.key,
                    traceback="".join(traceback.format_exception(result)),
                )
                reply = f"451 4.3.0 relaybox failed delivering to {destination.key}: {result}"
                outcomes.update(
                    (r.idx, RecipientOutcome(r.idx, "deferred", reply, None, destination.key))
                    for r in rcpts
                )
                continue
            group_outcomes, group_attempts = result
            outcomes.update({o.idx: o for o in group_outcomes})
            attempts.extend(group_attempts)
        new_signatures = {v: h for v, h in signed.items() if v not in job.signatures}
        await self._record(job, list(outcomes.values()), attempts, config, now, new_signatures)

    async def _send_group(
        self,
        job: DeliveryJob,
        destination: Destination,
        recipients: list[PendingRecipient],
        signed: dict[str, bytes],
        config: Config,
        credentials: Credentials | None,
    ) -> tuple[list[RecipientOutcome], list[AttemptRow]]:
        """One destination's share of an attempt, under the config the attempt began with."""
        route = destination.route
        now = self.clock()
        suspended = self.suspended.get(destination.key)
        if suspended is not None and suspended[0] > now:
            until, reason = suspended
            reply = Reply.suspended(destination.key, reason)
            return [
                RecipientOutcome(r.idx, "deferred", reply, until, destination.key, False)
                for r in recipients
            ], []
        if route.max_messages_per_minute:
            pace = self._pace.setdefault(destination.key, _Pace())
            delay = pace.wait(route.max_messages_per_minute, now)
            if delay > 0:
                reply = (
                    f"451 4.4.5 Paced: {destination.key} takes at most "
                    f"{route.max_messages_per_minute} messages a minute"
                )
                return [
                    RecipientOutcome(r.idx, "deferred", reply, now + delay, destination.key, False)
                    for r in recipients
                ], []
        limit = route.max_connections or config.delivery.max_connections_per_destination
        per_destination = self._per_destination.get(destination.key)
        if per_destination is None:
            per_destination = self._per_destination[destination.key] = _Gate(limit)
        # The bare postmaster is sent on as postmaster@hostname (see Config.qualify).
        addresses = tuple(config.qualify(r.address) for r in recipients)
        content = await prepare(
            job.data,
            route,
            config,
            signed,
            published_keys=self.published_keys,
            on_key_checked=self._note_key,
            log=self.log,
            queue_id=job.queue_id,
            now=self.clock(),
        )
        if isinstance(content, str):
            return [
                RecipientOutcome(r.idx, "held", content, None, destination.key, False)
                for r in recipients
            ], []
        async with per_destination, self._connections:
            self.bus.publish(
                AttemptStarted(job.queue_id, destination.key, addresses, at=self.clock())
            )
            hops = await resolve_hops(destination, self.resolver, config.delivery.mx_port)
            if hops.failure is not None:
                state = "bounced" if hops.permanent else "deferred"
                finished = self.clock()
                attempt = AttemptRow(
                    now,
                    finished,
                    destination.key,
                    None,
                    None,
                    None,
                    None,
                    addresses,
                    state,
                    hops.failure,
                    (),
                )
                self.bus.publish(
                    AttemptFinished(job.queue_id, destination.key, state, hops.failure, at=finished)
                )
                return [
                    RecipientOutcome(r.idx, state, hops.failure, None, destination.key)  # type: ignore[arg-type]
                    for r in recipients
                ], [attempt]
            sender = route.rewrite_sender(job.sender)

            def live(attempt: HopAttempt, line: TranscriptLine) -> None:
                if self.bus.wants(AttemptLine):
                    # Stamped with the line's own time: no second reading of the clock.
                    self.bus.publish(
                        AttemptLine(
                            job.queue_id,
                            destination.key,
                            attempt.hop.host,
                            line.direction,  # type: ignore[arg-type]
                            line.text,
                            connection=attempt.connection,
                            at=line.at,
                        )
                    )

            address_of = {r.idx: r.address for r in recipients}

            async def answered(outcomes: dict[str, Outcome]) -> None:
                # Written before this connection carries another message (see Courier).
                delivered = [
                    RecipientOutcome(r.idx, "delivered", found.reply, None, destination.key)
                    for r, address in zip(recipients, addresses, strict=True)
                    if (found := outcomes.get(address)) is not None and found.state == "delivered"
                ]
                if delivered:
                    await self.recorder.record(
                        lambda: self.spool.record_delivered(
                            job.message_id, delivered, now=self.clock()
                        ),
                        lambda: (
                            f"{job.queue_id} delivered to {destination.key}: "
                            + _listed(f"<{address_of[o.idx]}>" for o in delivered)
                        ),
                    )

            # Started attempts too must wait while an outcome is unwritten (see `_run`).
            await self.recorder.wait_clear()
            result = await self.courier.deliver(
                hops.hops,
                Transaction(
                    sender,
                    addresses,
                    content,
                    job.body_8bit,
                    job.smtputf8,
                    queue_id=job.queue_id,
                    destination=destination.key,
                ),
                tls=route.tls,
                credentials=credentials,
                ca_file=str(route.ca_file) if route.ca_file else None,
                on_line=live,
                on_answered=answered,
            )
        rows = [
            AttemptRow(
                a.started_at,
                a.finished_at,
                destination.key,
                a.hop.host,
                a.hop.ip,
                a.hop.port,
                a.tls,
                addresses,
                a.outcome,
                a.reply,
                tuple(a.lines),
            )
            for a in result.attempts
        ]
        for row in rows:
            self.bus.publish(
                AttemptFinished(
                    job.queue_id, destination.key, row.outcome, row.reply, at=row.finished_at
                )
            )
        failed_auth = [a for a in result.attempts if a.auth_failed]
        if failed_auth:
            self.log.error(
                "smarthost-auth-failed",
                destination=destination.key,
                reply=failed_auth[-1].reply,
                note="mail is deferred, not bounced; check the route's username and password",
            )
        last_hop = result.attempts[-1].hop if result.attempts else None
        outcomes = []
        for r, address in zip(recipients, addresses, strict=True):
            outcome = result.outcomes.get(address) or Outcome("deferred", "451 4.3.0 No result")
            outcomes.append(
                RecipientOutcome(
                    r.idx,
                    outcome.state,
                    outcome.reply,
                    None,
                    destination.key,
                    rcpt_reply=outcome.rcpt_reply,
                )
            )
            self.log.event(
                {"delivered": "sent", "deferred": "deferred", "bounced": "bounced"}[outcome.state],
                queue_id=job.queue_id,
                to=f"<{r.address}>",
                relay=f"{last_hop.host}[{last_hop.ip}]:{last_hop.port}" if last_hop else None,
                delay=round(self.clock() - job.arrived_at, 2),
                tls=result.attempts[-1].tls if result.attempts else None,
                reply=outcome.reply,
            )
        return outcomes, rows

    # ------------------------------------------------------------------ content

    def _note_key(self, found: KeyCheck) -> None:
        """Log and publish a selector's DNS status when it changes (not once per message)."""
        key = (found.domain, found.selector)
        if self._key_status.get(key) == found.status:
            return
        self._key_status[key] = found.status
        if found.status != "ok":
            self.log.warning(
                "dkim-key-" + found.status,
                domain=found.domain,
                selector=found.selector,
                note=found.detail,
            )
        event = DkimKeyChecked(
            found.domain, found.selector, found.status, found.detail, at=self.clock()
        )
        self.bus.publish(event)
        if self._on_key_checked is not None:
            self._on_key_checked(event)

    # ------------------------------------------------------------------ recording

    async def _record(
        self,
        job: DeliveryJob,
        outcomes: list[RecipientOutcome],
        attempts: list[AttemptRow],
        config: Config,
        started: float,
        signatures: dict[str, bytes] | None = None,
    ) -> None:
        now = self.clock()
        by_idx = {r.idx: r for r in job.recipients}
        decision = decide(job, outcomes, config.delivery, now)
        bounced, deferred, held = decision.bounced, decision.deferred, decision.held
        new_messages: list[NewMessage] = []
        # A DSN quotes the original's headers: milliseconds, off the loop that serves SMTP.
        if decision.failure_dsn:
            new_messages.append(
                await asyncio.to_thread(dsn_message, job, list(bounced), "failed", config, now)
            )
        elif decision.bounce_dropped:
            # RFC 5321 §6.1 / RFC 3464 §2: never bounce a bounce; log it and let it go.
            self.log.warning(
                "bounce-dropped",
                queue_id=job.queue_id,
                note="a message with the null sender failed; no DSN is sent for it",
            )
        if decision.delay_dsn:
            new_messages.append(
                await asyncio.to_thread(dsn_message, job, list(deferred), "delayed", config, now)
            )
        suppress = list(decision.suppress)
        recorded = await self.recorder.record(
            lambda: self.spool.finish_attempt(
                job.message_id,
                list(decision.outcomes),
                attempts,
                now=now,
                new_messages=new_messages,
                suppress=suppress,
                warned=decision.delay_dsn,
                signatures=signatures,
            ),
            lambda: (
                f"{job.queue_id} attempt: "
                + _listed(f"<{by_idx[o.idx].address}> {o.state}" for o in decision.outcomes)
            ),
        )
        if not recorded:
            self.log.event(
                "deleted-in-flight",
                queue_id=job.queue_id,
                note="an admin deleted the message during its attempt; its outcome is dropped",
            )
            return
        if suppress and self._on_suppressed is not None:
            self._on_suppressed(suppress)
        if new_messages or suppress:
            self.wake()
        for msg in new_messages:
            self.log.event(
                "dsn", queue_id=msg.queue_id, original=job.queue_id, to=f"<{job.sender}>"
            )
        at = self.clock()
        if bounced:
            self.bus.publish(
                MessageBounced(
                    job.queue_id,
                    tuple(by_idx[o.idx].address for o in bounced),
                    bounced[0].reply,
                    at=at,
                )
            )
        if deferred:
            next_at = decision.next_attempt_at or now
            self.bus.publish(MessageDeferred(job.queue_id, next_at, deferred[0].reply, at=at))
        if held:
            self.bus.publish(
                MessageHeld(
                    job.queue_id, tuple(by_idx[o.idx].address for o in held), held[0].reply, at=at
                )
            )
        if decision.delivered:
            self.bus.publish(MessageDelivered(job.queue_id, at=at))
