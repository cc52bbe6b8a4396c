"""The courier: sends one message to one destination's next hops, one SMTP transaction each.

`Courier.deliver` takes an ordered list of next hops (resolved by `routing`), tries them in turn
until one gives per-recipient answers, and reports for every recipient whether it was delivered,
deferred (try again later) or bounced (permanent), as chasquid's courier does. Connections are
kept for reuse for a short idle time, and given back only once the caller has recorded the
transaction's outcome (`on_answered`). Connecting, TLS policy and AUTH are `handshake`'s job, the
commands and their transcript `smtp_wire`'s; nothing here touches the spool or decides retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiosmtplib

from relaybox.clock import Clock, system_clock
from relaybox.message.transcript import TranscriptLine, tls_summary
from relaybox.outbound.connections import ConnectionTable, OutboundConnection
from relaybox.outbound.handshake import (
    Credentials,
    Handshake,
    Hop,
    HopFailed,
    TlsPolicy,
    closing_on_failure,
)
from relaybox.outbound.smtp_wire import RecordingSMTP, reply_text

__all__ = ["Courier", "HopAttempt", "Outcome", "Result", "Transaction"]

# RFC 4954 §6 and common practice: codes that mean "your credentials", never "this recipient",
# also as replies to MAIL and RCPT (530 5.7.0 Authentication required). They defer: one expired
# credential must not bounce the queue (Postfix's smtp_sasl_auth_soft_bounce).
_AUTH_FAILURE_CODES = {530, 534, 535, 538, 454}
_UNSAFE = re.compile(r"[\r\n\0]")


@dataclass(frozen=True)
class Outcome:
    """What happened to one recipient."""

    state: Literal["delivered", "deferred", "bounced"]
    reply: str
    """The server's reply, or relaybox's own words for a failure before one."""
    rcpt_reply: bool = False
    """True when `reply` is the next hop's answer to this recipient's own RCPT: the only
    reply that says something about the mailbox itself (see `suppress_hard_bounces`)."""


@dataclass
class HopAttempt:
    """The record of one connection to one hop: what the attempts table stores."""

    hop: Hop
    started_at: float
    finished_at: float = 0.0
    tls: str | None = None
    lines: list[TranscriptLine] = field(default_factory=list)
    outcome: str = "deferred"
    reply: str | None = None
    auth_failed: bool = False
    """The hop refused our credentials, or wanted some (the scheduler says so in the log)."""
    connection: str = ""
    """The id of the connection it used (`connections`), once it has one."""


@dataclass(frozen=True)
class Transaction:
    """Everything needed to send one message to one group of recipients."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    body_8bit: bool = False
    smtputf8: bool = False
    queue_id: str = ""
    """For the live view of connections only (`connections`): the message carried."""
    destination: str = ""
    """For the live view of connections only: the destination key it is sent to."""


@dataclass
class Result:
    """Per-recipient outcomes plus the record of every hop tried."""

    outcomes: dict[str, Outcome]
    attempts: list[HopAttempt]


Answered = Callable[[dict[str, "Outcome"]], Awaitable[None]]
"""Told each transaction's per-recipient outcomes before the connection carries another."""


def _state_for(code: int, soft_bounce: bool) -> Literal["delivered", "deferred", "bounced"]:
    if 200 <= code < 300:
        return "delivered"
    if code >= 500 and not soft_bounce:
        return "bounced"
    return "deferred"


@dataclass
class _Idle:
    smtp: RecordingSMTP
    since: float
    record: OutboundConnection


async def _quit_all(entries: Sequence[_Idle]) -> None:
    """QUIT each connection (at most 2 s each, all at once), then close it."""

    async def quit_one(smtp: RecordingSMTP) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(smtp.quit(), 2)
        smtp.close()

    for entry in entries:
        entry.record.state = "idle"
        entry.record.queue_id = ""
    await asyncio.gather(*(quit_one(entry.smtp) for entry in entries))


class Courier:
    """Sends messages; one per engine, holding the connection cache."""

    def __init__(
        self,
        *,
        helo_name: str,
        connect_timeout: float,
        command_timeout: float,
        data_timeout: float,
        cache_idle: float,
        soft_bounce: bool = False,
        clock: Clock = system_clock,
    ) -> None:
        self.clock = clock
        """Wall-clock time for attempts and transcripts (the engine's clock); the connection
        cache's idle times are intervals and use `time.monotonic`."""
        self._idle: dict[tuple[Any, ...], list[_Idle]] = {}
        self._closed = False
        self.connections = ConnectionTable(clock)
        """Every connection open now, in use or idle, for the admin's live view."""
        self._settle(
            helo_name=helo_name,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            data_timeout=data_timeout,
            cache_idle=cache_idle,
            soft_bounce=soft_bounce,
        )

    def _settle(
        self,
        *,
        helo_name: str,
        connect_timeout: float,
        command_timeout: float,
        data_timeout: float,
        cache_idle: float,
        soft_bounce: bool,
    ) -> None:
        self.data_timeout = data_timeout
        self.cache_idle = cache_idle
        self.soft_bounce = soft_bounce
        self._handshake = Handshake(
            helo_name=helo_name,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            clock=self.clock,
        )

    # ------------------------------------------------------------------ connection cache

    def _take_idle(self, key: tuple[Any, ...]) -> _Idle | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            entry = pool.pop()
            if now - entry.since <= self.cache_idle and entry.smtp.is_connected:
                return entry
            entry.smtp.close()
            self.connections.forget(entry.record)
        return None

    def _put_idle(
        self, key: tuple[Any, ...], smtp: RecordingSMTP, record: OutboundConnection
    ) -> None:
        record.state, record.queue_id = "idle", ""
        if self.cache_idle <= 0 or not smtp.is_connected or self._closed:
            smtp.close()
            self.connections.forget(record)
            return
        self._idle.setdefault(key, []).append(_Idle(smtp, time.monotonic(), record))

    async def reap_idle(self) -> None:
        """Close connections idle longer than the cache time (QUIT, politely).

        The expired entries leave the pool before the first await: while a QUIT waits for its
        reply, deliveries take and return connections, and must never find a closing one
        there (nor have one they took put back under them).
        """
        now = time.monotonic()
        expired: list[_Idle] = []
        for key, pool in list(self._idle.items()):
            keep = []
            for entry in pool:
                if now - entry.since > self.cache_idle or not entry.smtp.is_connected:
                    expired.append(entry)
                else:
                    keep.append(entry)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        await _quit_all(expired)

    async def reconfigure(self, **settings: Any) -> None:
        """A reload: new connections use these settings (the constructor's, but the clock),
        and idle ones are closed (they said the old HELO name, and may have logged in with a
        password the admin just changed). Connections in use finish as they began."""
        self._settle(**settings)
        entries = [entry for pool in self._idle.values() for entry in pool]
        self._idle.clear()
        await _quit_all(entries)

    async def close(self) -> None:
        """Close every cached connection; connections given back afterwards are closed too."""
        self._closed = True
        entries = [entry for pool in self._idle.values() for entry in pool]
        self._idle.clear()
        await _quit_all(entries)

    # ------------------------------------------------------------------ delivery

    async def deliver(
        self,
        hops: Sequence[Hop],
        message: Transaction,
        *,
        tls: TlsPolicy,
        credentials: Credentials | None = None,
        ca_file: str | None = None,
        on_line: Callable[[HopAttempt, TranscriptLine], None] | None = None,
        on_answered: Answered | None = None,
    ) -> Result:
        """Try `hops` in order until one answers for the recipients; never raises for SMTP.

        `on_answered` is awaited with the outcomes of the transaction that answered, before
        its connection is given back for another message: the scheduler records there what
        the next hop took, so that a crash sends again at most the transactions in flight.

        A hop that cannot take the message at all (no connection, a 4xx/5xx greeting, TLS
        that policy requires failing, AUTH refused, MAIL refused) makes way for the next; the
        first hop that answers RCPT decides every recipient (RFC 5321 §5.1: other MX hosts
        are for when one is unreachable, not a second opinion).
        """
        attempts: list[HopAttempt] = []
        unsafe = [r for r in (message.sender, *message.recipients) if _UNSAFE.search(r)]
        if unsafe:
            # GHSA-v3q9-hj7j-63hq: such an address would inject commands. Inbound refuses them;
            # this is the last guard for addresses from anywhere else.
            reply = "553 5.1.3 Address contains CR, LF or NUL; not sent"
            return Result({r: Outcome("bounced", reply) for r in message.recipients}, attempts)
        last_failure: HopFailed | None = None
        for hop in hops:
            attempt = HopAttempt(hop, self.clock())
            attempts.append(attempt)

            def record(line: TranscriptLine, attempt: HopAttempt = attempt) -> None:
                attempt.lines.append(line)
                if on_line is not None:
                    on_line(attempt, line)

            try:
                outcomes = await self._try_hop(
                    hop, message, tls, credentials, ca_file, attempt, record, on_answered
                )
            except HopFailed as failure:
                attempt.finished_at = self.clock()
                attempt.outcome = "bounced" if failure.permanent else "deferred"
                attempt.reply = failure.reply
                attempt.auth_failed = failure.auth
                record(TranscriptLine(attempt.finished_at, "-", failure.reply))
                last_failure = failure
                continue
            attempt.finished_at = self.clock()
            states = {o.state for o in outcomes.values()}
            attempt.outcome = states.pop() if len(states) == 1 else "mixed"
            attempt.reply = next(iter(outcomes.values())).reply if outcomes else None
            return Result(outcomes, attempts)
        if last_failure is None:
            last_failure = HopFailed("451 4.4.4 No next hop to try (no usable MX or address)")
        # Every hop refused; a 5xx from all of them is permanent, anything else is deferred.
        permanent = all(a.outcome == "bounced" for a in attempts) and bool(attempts)
        state: Literal["deferred", "bounced"] = (
            "bounced" if permanent and not self.soft_bounce else "deferred"
        )
        return Result({r: Outcome(state, last_failure.reply) for r in message.recipients}, attempts)

    async def _try_hop(
        self,
        hop: Hop,
        message: Transaction,
        tls: TlsPolicy,
        credentials: Credentials | None,
        ca_file: str | None,
        attempt: HopAttempt,
        record: Callable[[TranscriptLine], None],
        on_answered: Answered | None,
    ) -> dict[str, Outcome]:
        key = (hop.ip, hop.port, hop.host, tls, credentials.username if credentials else None)
        lost = f"451 4.4.2 Connection to {hop.host} lost"
        idle = self._take_idle(key)
        if idle is not None:
            # A cached connection ended its last transaction cleanly, so it needs no RSET
            # (RFC 5321 §4.1.1.5); if the server closed it meanwhile, MAIL fails at once and
            # a fresh connection takes over.
            smtp, connection = idle.smtp, idle.record
            self._carry(connection, attempt, message)
            smtp.on_line = record
            smtp.note("-", f"reusing the connection to {hop.host} [{hop.ip}]:{hop.port}")
            attempt.tls = tls_summary(smtp.get_transport_info("ssl_object"))
            with closing_on_failure(smtp, lost):
                try:
                    outcomes = await self._transaction(smtp, message)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    smtp.close()
                    outcomes = None  # the server closed it meanwhile: a fresh one takes over
            if outcomes is not None:
                await self._give_back(key, smtp, connection, outcomes, on_answered)
                return outcomes
            self.connections.forget(connection)
        connection = self.connections.opening(
            hop.host,
            hop.ip,
            hop.port,
            destination=message.destination,
            queue_id=message.queue_id,
            lines=attempt.lines,
        )
        attempt.connection = connection.connection_id
        try:
            smtp = await self._handshake.open(hop, tls, credentials, ca_file, record)
        except BaseException:
            self.connections.forget(connection)
            raise
        attempt.tls = connection.tls = tls_summary(smtp.get_transport_info("ssl_object"))
        connection.smtp, connection.state = smtp, "sending"
        # On any failure mid-transaction the connection is in an unknown state: it is closed,
        # never left open or given to the next message.
        with closing_on_failure(smtp, lost):
            outcomes = await self._transaction(smtp, message)
        await self._give_back(key, smtp, connection, outcomes, on_answered)
        return outcomes

    @staticmethod
    def _carry(connection: OutboundConnection, attempt: HopAttempt, message: Transaction) -> None:
        """A cached connection is taken for `message`: the live view follows it there."""
        connection.state = "sending"
        connection.queue_id, connection.destination = message.queue_id, message.destination
        connection.lines = attempt.lines
        attempt.connection = connection.connection_id

    async def _give_back(
        self,
        key: tuple[Any, ...],
        smtp: RecordingSMTP,
        connection: OutboundConnection,
        outcomes: dict[str, Outcome],
        on_answered: Answered | None,
    ) -> None:
        """Cache the connection once the caller has recorded the transaction's outcome.

        Until then it carries nothing else: a crash in between must find at most this one
        transaction done at the next hop and not in the spool. A failure or cancellation
        while recording closes it.
        """
        if any(o.state == "delivered" for o in outcomes.values()):
            connection.messages += 1
        if on_answered is not None:
            try:
                await on_answered(outcomes)
            except BaseException:
                smtp.close()
                self.connections.forget(connection)
                raise
        self._put_idle(key, smtp, connection)

    async def _transaction(self, smtp: RecordingSMTP, message: Transaction) -> dict[str, Outcome]:
        """MAIL, RCPT for each, DATA; per-recipient outcomes (RFC 5321 §3.3)."""
        addresses = (message.sender, *message.recipients)
        utf8 = message.smtputf8 or not all(address.isascii() for address in addresses)
        if utf8 and not smtp.supports_extension("smtputf8"):
            # RFC 6531 §3.4: no downgrade exists for SMTPUTF8 addresses.
            if message.smtputf8:
                reply = "553 5.6.7 The next hop does not support SMTPUTF8, which this message needs"
                return {r: Outcome("bounced", reply) for r in message.recipients}
            # The client sent ASCII; relaybox made an address non-ASCII (a rewrite_senders
            # target). That is the relay's config, not the sender's mistake: deferred, so
            # that mail goes out once the config is fixed, instead of bouncing.
            wide = next(address for address in addresses if not address.isascii())
            reply = (
                f"451 4.6.7 <{wide}> is not ASCII, which needs SMTPUTF8, and the next hop does "
                "not support it; the address comes from relaybox's config (rewrite_senders?)"
            )
            return {r: Outcome("deferred", reply) for r in message.recipients}
        if message.body_8bit and not smtp.supports_extension("8bitmime"):
            # RFC 6152 §3: never send 8-bit data to a server that did not ask for it.
            reply = "451 4.6.0 The next hop does not accept 8-bit messages (no 8BITMIME)"
            return {r: Outcome("deferred", reply) for r in message.recipients}
        options = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(message.data)}")
        if message.body_8bit:
            options.append("BODY=8BITMIME")
        if utf8:
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            await smtp.mail_from(message.sender, options, encoding)
        except aiosmtplib.SMTPSenderRefused as exc:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.rset()
            if exc.code in _AUTH_FAILURE_CODES:
                raise HopFailed(f"{exc.code} {exc.message}", auth=True) from None
            if exc.code >= 500:
                reply = f"{exc.code} {exc.message}"
                state = _state_for(exc.code, self.soft_bounce)
                return {r: Outcome(state, reply) for r in message.recipients}
            raise HopFailed(f"{exc.code} {exc.message}") from None
        outcomes: dict[str, Outcome] = {}
        accepted: list[str] = []
        for recipient in message.recipients:
            try:
                response = await smtp.rcpt_to(recipient, encoding)
                accepted.append(recipient)
                outcomes[recipient] = Outcome("delivered", reply_text(response))
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code in _AUTH_FAILURE_CODES:
                    # About the session, not this recipient: no DATA for anyone, all deferred.
                    with contextlib.suppress(aiosmtplib.SMTPException):
                        await smtp.rset()
                    raise HopFailed(f"{exc.code} {exc.message}", auth=True) from None
                outcomes[recipient] = Outcome(
                    _state_for(exc.code, self.soft_bounce),
                    f"{exc.code} {exc.message}",
                    rcpt_reply=True,
                )
        if not accepted:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.rset()
            return outcomes
        try:
            response = await smtp.send_data(message.data, self.data_timeout)
        except aiosmtplib.SMTPDataError as exc:
            reply = f"{exc.code} {exc.message}"
            for recipient in accepted:
                outcomes[recipient] = Outcome(_state_for(exc.code, self.soft_bounce), reply)
            return outcomes
        for recipient in accepted:
            outcomes[recipient] = Outcome("delivered", reply_text(response))
        return outcomes
