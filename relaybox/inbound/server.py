"""The receiving side: aiosmtpd's SMTP protocol, tightened, feeding the durable spool.

`InboundSMTP` subclasses aiosmtpd's `SMTP` and overrides its public `smtp_MAIL`, `smtp_RCPT`,
`smtp_DATA`, `smtp_AUTH` and `auth_*` methods for what it does not do the way a relay must:
strict RFC 5321 address parsing (`message.address`), policy (`inbound.policy`), a DATA reader
that is strict about line endings (`inbound.data_reader`: SMTP smuggling), checks of the header
block (`inbound.content_checks`), per-session error limits (`inbound.error_limit`), a session
lifetime, and a transcript of every session (`message.transcript`). EHLO, RSET, NOOP, QUIT,
STARTTLS and the AUTH exchange stay aiosmtpd's; the private aiosmtpd names still used are
listed in `inbound.aiosmtpd_seam`. Delivery, TLS certificates, AUTH users and binding sockets
(`inbound.listeners`) are not here. At about 780 lines it is over the usual size because
aiosmtpd's protocol is one class holding the session's state; the decisions it makes are in
the modules named above.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, TLSSetupException, syntax

from relaybox.config.model import Config, ListenerConfig, SocketAddress, UserConfig
from relaybox.events import MessageAccepted, MessageRejected, SessionClosed, SessionOpened
from relaybox.inbound.aiosmtpd_seam import buffered, init_protocol, push_back, wide_reader
from relaybox.inbound.auth import Authenticator
from relaybox.inbound.content_checks import from_addresses, hop_refusal
from relaybox.inbound.context import InboundContext, new_session_id
from relaybox.inbound.data_reader import DataEnd, DataReader
from relaybox.inbound.error_limit import JUNK_VERBS, SessionErrors
from relaybox.inbound.live_sessions import ByteCount
from relaybox.inbound.policy import (
    Client,
    check_from,
    check_helo,
    check_mail,
    check_rcpt,
    check_route,
    client_ip,
    may_take_reserved_slot,
)
from relaybox.inbound.sasl import Credentials, SaslError, decode_base64, decode_plain
from relaybox.inbound.transcript_budget import keep_transcript
from relaybox.message.address import AddressError, parse_mail, parse_rcpt
from relaybox.message.headers import header_safe
from relaybox.message.queueid import new_queue_id
from relaybox.message.replies import Reply
from relaybox.message.transcript import Transcript, TranscriptLine, tls_summary
from relaybox.queue import NewMessage, SpoolError

__all__ = ["InboundSMTP"]

_READ_CHUNK = 1 << 16
_MAX_AUTH_FAILURES_PER_SESSION = 3


class InboundSMTP(ByteCount, SMTP):
    """One SMTP connection on one listener (`ByteCount`: bytes received, for the live view)."""

    def __init__(
        self, ctx: InboundContext, listener: ListenerConfig, address: SocketAddress | None = None
    ) -> None:
        config = ctx.config()
        self.ctx = ctx
        self.listener = listener
        self.listen_address = address
        """The configured address this session came in on (a reload that removes it closes
        the session once its transaction is done)."""
        self.config = config
        self.limits = config.limits
        self.server_config = config.server
        self._init_protocol(config)
        self.session_id = new_session_id()
        self.transcript = Transcript(self.session_id, ctx.bus, ctx.clock)
        self.started_at = ctx.clock()
        self.client_ip = ""
        self.client_port = 0
        self.messages = 0
        self._counted = False
        self._stored_lines = 0
        """Transcript lines already in the spool with the last message (then its 250)."""
        self.tls: str | None = None
        """TLS version and cipher once the connection is encrypted."""
        self.auth_user: UserConfig | None = None
        self._auth_failures = 0
        self._client: Client | None = None
        self._in_data = False
        self._body_8bit_declared = False
        self._errors = SessionErrors(
            self.limits.soft_error_limit,
            self.limits.hard_error_limit,
            self.limits.error_sleep_time,
            self.limits.junk_command_limit,
        )
        self._closing = False
        """The last reply has been sent: nothing more is said on this connection."""
        self._session_deadline = self.loop.time() + self.limits.max_session_time
        self._lifetime_handle: asyncio.TimerHandle | None = None
        self._expiry: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ plumbing

    def _init_protocol(self, config: Config) -> None:
        """What aiosmtpd's constructor would do with this listener's settings (see the seam)."""
        certificate = self.ctx.certificates.get(self.listener.name)
        init_protocol(
            self,
            hostname=config.server.hostname,
            ident="ESMTP relaybox",
            data_size_limit=config.limits.max_message_size,
            command_size_limit=config.limits.max_command_length,
            tls_context=(
                certificate.context if certificate and self.listener.tls == "starttls" else None
            ),
            timeout=config.limits.idle_timeout,
            # RFC 6409 §4.3: a submission port takes mail only from authenticated users.
            auth_required=self.listener.role == "submission",
            auth_require_tls=True,
            offer_auth=bool(config.users) and self.ctx.authenticator is not None,
            dispatch="_dispatch",
        )
        self._idle_deadline = 0.0
        self._pending_reply: list[bytes] = []

    async def _dispatch(
        self, verb: str, method: Callable[[Any, str | None], Awaitable[None]], arg: str | None
    ) -> None:
        """Every command goes through here: into the transcript, then to its handler."""
        self.transcript.client(verb if arg is None else f"{verb} {arg}")
        if verb in JUNK_VERBS:
            self._errors.junk_command()
        envelope = self.envelope
        if self.ctx.shutting_down and verb != "QUIT" and envelope and envelope.mail_from is None:
            await self._goodbye(Reply.SHUTTING_DOWN)
            return
        await method(self, arg)

    async def push(self, status: str | bytes) -> None:
        """Send a reply line; the lines of a multi-line reply go out in one write.

        Every error reply is counted (`inbound.error_limit`): past `[limits] soft_error_limit`
        it waits `error_sleep_time` first, and the command loop reads nothing meanwhile, so
        pipelined errors are slowed too; at `hard_error_limit` the session ends with 421.
        """
        if self._closing:
            return  # after the goodbye nothing more is said
        if isinstance(status, bytes):  # aiosmtpd's AUTH challenges come as bytes
            line, status = status + b"\r\n", status.decode("ascii", "replace")
        else:
            line = status.encode("utf-8") + b"\r\n"
        if len(status) > 3 and status[3] == "-":
            self.transcript.server(status)
            self._pending_reply.append(line)  # RFC 5321 §4.2.1: more lines follow
            return
        verdict = self._errors.judge(status)
        if verdict is not None and verdict.delay > 0:
            await asyncio.sleep(verdict.delay)
            if self._closing:
                return
        self.transcript.server(status)
        if self._pending_reply:
            line = b"".join(self._pending_reply) + line
            self._pending_reply.clear()
        self._writer.write(line)
        await self._writer.drain()
        if verdict is not None and verdict.close:
            self.transcript.note(f"{self._errors.count} errors: session ended")
            await self._goodbye(Reply.too_many_errors(self.hostname))

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's last resort: log it in our log (concisely for TLS failures) and reply."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__ or error
            reason = str(cause) or type(cause).__name__
            self.ctx.log.warning(
                "tls-failed", client=self.client_ip, session=self.session_id, error=reason
            )
            self.transcript.note(f"TLS handshake failed: {reason}")
            return Reply.TLS_HANDSHAKE_FAILED
        self.ctx.log.exception("session-error", client=self.client_ip, session=self.session_id)
        return Reply.INTERNAL_ERROR

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Push the idle deadline back (aiosmtpd calls this on every command and DATA chunk).

        aiosmtpd cancels and creates a timer each time; here one timer per connection moves
        lazily: when it fires early it re-arms for the deadline that is now in force.
        """
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or deadline < handle.when():
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_timer)

    def _idle_timer(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_timer)
            return
        self._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd: closes the connection

    def _lifetime_timer(self) -> None:
        """`[limits] max_session_time` has passed: an idle session ends now. A message being
        transferred is not cut off (Postfix bounds a transfer by its timeout only): DATA ends
        the session itself once its reply is sent."""
        self._lifetime_handle = None
        if not self._in_data and not self._closing and self.transport is not None:
            self._expiry = self.loop.create_task(self._expire())

    async def _expire(self) -> None:
        """End a session older than `[limits] max_session_time` (NOOP, RSET or HELP cannot keep
        one open for ever, so neither can a stranger holding a connection slot)."""
        if self._closing:
            return
        seconds = round(self.ctx.clock() - self.started_at)
        self.transcript.note(f"session time limit reached after {seconds} s")
        self.ctx.log.event(
            "session-expired", client=self.client_ip, session=self.session_id, seconds=seconds
        )
        await self._goodbye(Reply.SESSION_TOO_LONG)

    async def _goodbye(self, reply: str) -> None:
        """Send a final reply (never delayed, never counted as an error) and close."""
        if self._closing:
            return
        self._closing = True
        self.transcript.server(reply)
        self._pending_reply.clear()
        try:
            self._writer.write(reply.encode("utf-8") + b"\r\n")
            await self._writer.drain()
        except (ConnectionError, RuntimeError):
            pass
        if self.transport is not None:
            self.transport.close()

    @property
    def client(self) -> Client:
        """The client as policy sees it."""
        if self._client is None:
            user = self.auth_user.name if self.auth_user else None
            self._client = Client(client_ip(self.client_ip), self.listener, user)
        return self._client

    @property
    def in_transaction(self) -> bool:
        """Between MAIL and the end of DATA: shutdown waits for these (bounded)."""
        return self._in_data or (self.envelope is not None and self.envelope.mail_from is not None)

    def _reject(self, stage: str, reply: str, **fields: Any) -> None:
        """Publish a refusal, and log it if it is the session's first; later ones are counted
        in the `errors` line the session ends with."""
        if self._errors.log_refusal():
            self.ctx.log.event(
                "reject",
                stage=stage,
                client=self.client_ip,
                session=self.session_id,
                reply=reply,
                **fields,
            )
        self.ctx.bus.publish(
            MessageRejected(
                self.session_id,
                self.client_ip,
                stage,
                reply,
                sender=fields.get("sender"),
                recipient=fields.get("recipient"),
                at=self.ctx.clock(),
            )
        )

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first and self.session is not None and self.session.peer:
            host, port = self.session.peer[0], self.session.peer[1]
            self.client_ip = str(client_ip(host))
            self.client_port = int(port)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls = tls_summary(ssl_object)
            if first:
                # Implicit TLS (RFC 8314 §3.3): encrypted from the first byte, so AUTH may be
                # offered at once; STARTTLS is not offered (tls_context is None).
                self._auth_require_tls = False
            else:
                # RFC 3207 §4.2: after STARTTLS the client starts over; nothing carries over
                # (aiosmtpd made a fresh session and envelope and dropped buffered input).
                self.auth_user = None
                self._client = None
                self._body_8bit_declared = False
            self.transcript.note(f"TLS established: {self.tls}")

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd's EHLO hook: its reply lines in, ours out: PIPELINING (RFC 2920; the
        command loop reads commands that arrive together one by one, and DATA ends a group),
        and no AUTH line without mechanisms (RFC 4954 §3)."""
        session.host_name = hostname
        lines = [line for line in responses if line.rstrip() != "250-AUTH"]
        return [*lines[:1], "250-PIPELINING", *lines[1:]]

    async def _handle_client(self) -> None:
        limits = self.limits
        refused = self.ctx.connections.open(
            self.client_ip,
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.reserved_connections,
            may_take_reserved_slot(client_ip(self.client_ip), self.config.listeners),
        )
        if refused is not None:
            reply = Reply.TOO_MANY_CONNECTIONS if refused == "total" else Reply.TOO_MANY_FROM_IP
            self._reject("CONNECT", reply)
            await self._goodbye(reply)
            return
        self._counted = True
        self.ctx.sessions.add(self)
        self._lifetime_handle = self.loop.call_at(self._session_deadline, self._lifetime_timer)
        self.ctx.bus.publish(
            SessionOpened(
                self.session_id,
                self.listener.name,
                self.client_ip,
                self.client_port,
                at=self.ctx.clock(),
            )
        )
        self.ctx.log.event(
            "connect",
            client=f"[{self.client_ip}]:{self.client_port}",
            listener=self.listener.name,
            session=self.session_id,
        )
        self.transcript.note(f"connect from [{self.client_ip}]:{self.client_port}")
        if self.ctx.shutting_down:
            await self._goodbye(Reply.SHUTTING_DOWN)
            return
        if self.listener.greet_pause > 0 and await self._talks_before_greeting():
            self._reject("CONNECT", Reply.PREGREET)
            await self._goodbye(Reply.PREGREET)
            return
        await super()._handle_client()

    async def _talks_before_greeting(self) -> bool:
        """RFC 5321 §4.3.1: a client must wait for the greeting; spamware often does not."""
        try:
            await asyncio.wait_for(self._reader.readexactly(1), timeout=self.listener.greet_pause)
        except TimeoutError:
            return False
        except asyncio.IncompleteReadError:
            return True  # hung up before the greeting: nothing to serve
        return True

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._closing = True
        if self._lifetime_handle is not None:
            self._lifetime_handle.cancel()
            self._lifetime_handle = None
        if not self._counted:
            return
        self._counted = False
        ctx = self.ctx
        if self._errors.unlogged:
            ctx.log.event(
                "errors",
                client=self.client_ip,
                session=self.session_id,
                count=self._errors.count,
                last=self._errors.last,
                ended="too many errors" if self._errors.exhausted else None,
            )
        ctx.connections.close(self.client_ip)
        ctx.sessions.discard(self)
        now = ctx.clock()
        if self.transcript.truncated and self.messages:
            self.transcript.note(f"{self.transcript.truncated} more lines not kept")
        self.transcript.note("disconnect")
        keep_transcript(
            ctx,
            self.transcript,
            started_at=self.started_at,
            ended_at=now,
            listener=self.listener.name,
            client_ip=self.client_ip,
            brought_message=self.messages > 0,
            stored_lines=self._stored_lines,
        )
        ctx.bus.publish(
            SessionClosed(self.session_id, self.client_ip, self.messages, at=ctx.clock())
        )
        ctx.log.event(
            "disconnect",
            client=f"[{self.client_ip}]:{self.client_port}",
            session=self.session_id,
            messages=self.messages,
            seconds=round(now - self.started_at, 3),
        )

    async def close_for_shutdown(self) -> None:
        """Tell the client we are going away and hang up."""
        await self._goodbye(Reply.SHUTTING_DOWN)

    # ------------------------------------------------------------------ AUTH

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        """HELO, once its name is one relaybox may write into a Received: header."""
        refusal = check_helo(hostname) if hostname else None
        if refusal is not None:
            await self.push(refusal)
            return
        await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        """EHLO, once its name is one relaybox may write into a Received: header."""
        refusal = check_helo(hostname) if hostname else None
        if refusal is not None:
            await self.push(refusal)
            return
        await super().smtp_EHLO(hostname)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:
        """252 for any address: a relay has no mailboxes to confirm (RFC 5321 §3.5.3). The
        argument is not parsed: aiosmtpd's parser raises on some (`VRFY a@`), which logged a
        traceback per 9-byte command."""
        if await self.check_auth_needed("VRFY"):
            return
        await self.push(Reply.VRFY_UNKNOWABLE if arg else Reply.VRFY_SYNTAX)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        assert self.envelope is not None
        if self.envelope.mail_from is not None:
            # RFC 4954 §4: AUTH is not permitted during a mail transaction.
            await self.push(Reply.AUTH_IN_TRANSACTION)
            return
        await super().smtp_AUTH(arg)
        if self.session is not None and self.session.authenticated:
            return
        if self._auth_failures >= _MAX_AUTH_FAILURES_PER_SESSION:
            await self._goodbye(Reply.TOO_MANY_FAILED_LOGINS)

    async def _challenge(self, prompt: str) -> bytes | None:
        """One SASL round trip (RFC 4954 §4); the client's answer never enters the transcript."""
        self.transcript.expect_secret = True
        answer = await self.challenge_auth(prompt)
        if self.transcript.expect_secret:  # aiosmtpd read the line itself: note it, hidden
            self.transcript.client("")
        if isinstance(answer, bytes):
            return answer
        return None  # "*" or bad base64: aiosmtpd has already answered 501

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 4616: authzid NUL authcid NUL passwd, base64, inline or after a 334."""
        try:
            if len(args) == 1:
                blob = await self._challenge("")
                if blob is None:
                    return AuthResult(success=False, handled=True)
            else:
                blob = decode_base64(args[1])
            credentials = decode_plain(blob)
        except SaslError as exc:
            await self.push(exc.reply)
            return AuthResult(success=False, handled=True)
        if credentials.acts_as_another():
            # We never let one user act as another (RFC 4616 §2 authorization identity).
            await self._fail_auth(credentials.login, Authenticator.INVALID, 0.0)
            return AuthResult(success=False, handled=True)
        return await self._check_login(credentials)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        """The LOGIN mechanism (draft-murchison-sasl-login), still what many devices speak."""
        if len(args) == 1:
            login = await self._challenge("Username:")
            if login is None:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = decode_base64(args[1])
            except SaslError as exc:
                await self.push(exc.reply)
                return AuthResult(success=False, handled=True)
        password = await self._challenge("Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check_login(Credentials(login, password))

    async def _check_login(self, credentials: Credentials) -> AuthResult:
        assert self.ctx.authenticator is not None
        username = credentials.login.decode("utf-8", "replace")
        outcome = await self.ctx.authenticator.verify(
            self.client_ip, username, credentials.password.decode("utf-8", "surrogateescape")
        )
        if outcome.user is None:
            await self._fail_auth(credentials.login, outcome.reply, outcome.delay)
            return AuthResult(success=False, handled=True)
        self.auth_user = outcome.user
        self._client = None
        self.ctx.log.event(
            "auth", user=outcome.user.name, client=self.client_ip, session=self.session_id
        )
        self.transcript.note(f"authenticated as {outcome.user.name}")
        return AuthResult(success=True, handled=False, auth_data=outcome.user.name)

    async def _fail_auth(self, login: bytes, reply: str, delay: float) -> None:
        """Log the failure (IP and a configured user's name, never the password), pause,
        then answer."""
        assert self.ctx.authenticator is not None
        self._auth_failures += 1
        self.ctx.log.warning(
            "auth-failed",
            user=self.ctx.authenticator.loggable_name(login),
            client=self.client_ip,
            session=self.session_id,
            reply=reply,
        )
        if delay > 0:
            await asyncio.sleep(delay)
        await self.push(reply)

    # ------------------------------------------------------------------ MAIL / RCPT

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("MAIL"):
            return
        assert self.envelope is not None and self.session is not None
        if self.envelope.mail_from is not None:
            await self.push(Reply.NESTED_MAIL)
            return
        try:
            _valid_utf8(arg)
            parsed = parse_mail(
                arg or "", smtputf8_enabled=True, allow_ip_literal=self.listener.allow_ip_literals
            )
        except AddressError as exc:
            self._reject("MAIL", exc.reply(), sender=arg)
            await self.push(exc.reply())
            return
        reply = check_mail(
            sender=parsed.sender,
            declared_size=parsed.size,
            user=self.auth_user,
            limits=self.limits,
            free_space_mb=self.ctx.free_space_mb(),
            min_free_space_mb=self.server_config.min_free_space_mb,
            rates=self.ctx.rates,
            client_ip=self.client_ip,
        )
        if reply is not None:
            self._reject("MAIL", reply, sender=parsed.sender)
            await self.push(reply)
            return
        self.envelope.mail_from = parsed.sender
        self.envelope.smtp_utf8 = parsed.smtputf8
        self._body_8bit_declared = parsed.body == "8BITMIME"
        await self.push(Reply.MAIL_OK)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("RCPT"):
            return
        assert self.envelope is not None
        if self.envelope.mail_from is None:
            await self.push(Reply.NEED_MAIL)
            return
        try:
            _valid_utf8(arg)
            parsed = parse_rcpt(
                arg or "",
                smtputf8=self.envelope.smtp_utf8,
                allow_ip_literal=self.listener.allow_ip_literals,
            )
        except AddressError as exc:
            self._reject("RCPT", exc.reply(), sender=self.envelope.mail_from, recipient=arg)
            await self.push(exc.reply())
            return
        recipient = parsed.recipient
        reply = check_rcpt(
            self.client,
            recipient,
            accepted_so_far=len(self.envelope.rcpt_tos),
            limits=self.limits,
            suppression_reason=self.ctx.suppression(recipient),
        )
        if reply is None:
            reply = check_route(self.config.route_for(recipient, self.envelope.mail_from or ""))
        if reply is not None:
            self._reject("RCPT", reply, sender=self.envelope.mail_from, recipient=recipient)
            await self.push(reply)
            return
        self.envelope.rcpt_tos.append(recipient)
        await self.push(Reply.RCPT_OK)

    # ------------------------------------------------------------------ DATA

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if self.envelope.mail_from is None:
            await self.push(Reply.NEED_MAIL)
            return
        if not self.envelope.rcpt_tos:
            await self.push(Reply.NEED_RCPT)
            return
        if arg:
            await self.push(Reply.DATA_SYNTAX)
            return
        if buffered(self._reader):
            # RFC 2920 §3.1: DATA ends a command group, so nothing may follow it before the
            # 354. A client that sends its message anyway is out of step (or hoping that what
            # we read next is taken for something else): refuse and close, as Postfix 3.9 does.
            self.transcript.note(f"{buffered(self._reader)} bytes sent before the 354")
            self._reject("DATA", Reply.PIPELINED_DATA, sender=self.envelope.mail_from)
            await self._goodbye(Reply.PIPELINED_DATA)
            return
        self._in_data = True
        try:
            await self._receive_message()
        finally:
            self._in_data = False
        if self.loop.time() >= self._session_deadline:
            await self._expire()  # the lifetime passed during DATA, which it does not cut off

    async def _receive_message(self) -> None:
        """After an accepted DATA: 354, the message, its checks, and the spool's answer."""
        assert self.envelope is not None
        await self.push(Reply.START_DATA)
        try:
            async with asyncio.timeout(self.limits.data_timeout):
                end = await self._read_data()
        except TimeoutError:
            self.transcript.note("DATA deadline passed")
            self._reject("DATA", Reply.DATA_TIMEOUT, sender=self.envelope.mail_from)
            await self._goodbye(Reply.DATA_TIMEOUT)
            return
        refusal = end.refusal
        if refusal is None:
            refusal = await hop_refusal(end.content)
        if refusal is None and self.auth_user is not None:
            refusal = check_from(self.auth_user, await from_addresses(end.content))
        if refusal is not None:
            self._reject("DATA", refusal, sender=self.envelope.mail_from)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            if end.close:
                await self._goodbye(refusal)
            else:
                await self.push(refusal)
            return
        await self._store(end.content, end.body_8bit)

    async def _read_data(self) -> DataEnd:
        """Feed the connection's bytes to a `DataReader` until DATA ends (its docstring has the
        rules); commands pipelined after the terminator go back to the command loop."""
        data = DataReader(
            bare_lf=self.listener.bare_lf,
            max_message_size=self.limits.max_message_size,
            max_line_length=self.limits.max_line_length,
        )
        reader = self._reader
        with wide_reader(reader, _READ_CHUNK * 4):
            while True:
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    raise ConnectionResetError("connection closed during DATA")
                self._reset_timeout()
                end = data.feed(chunk)
                if end is not None:
                    break
        if end.rest:
            push_back(reader, end.rest)  # RFC 2920: pipelined commands
        if not end.close:
            self.transcript.note(f"<{end.size} bytes of message data>")
        return end

    def _received_header(self, queue_id: str, recipients: list[str], smtputf8: bool) -> bytes:
        """RFC 5321 §4.4 trace header; `with` per RFC 3848 and RFC 6531 §3.7.3."""
        assert self.session is not None
        protocol = "UTF8SMTP" if smtputf8 else ("ESMTP" if self.session.extended_smtp else "SMTP")
        if protocol != "SMTP":
            protocol += ("S" if self.tls else "") + ("A" if self.auth_user else "")
        # Checked at EHLO already; checked again where it is written (defence in depth).
        helo = header_safe(self.session.host_name or "unknown")
        stamp = datetime.datetime.fromtimestamp(self.ctx.clock(), datetime.UTC)
        when = email.utils.format_datetime(email.utils.localtime(stamp))  # the engine's clock
        for_clause = f"\r\n\tfor <{header_safe(recipients[0])}>" if len(recipients) == 1 else ""
        header = (
            f"Received: from {helo} ([{self.client_ip}])\r\n"
            f"\tby {self.hostname} (relaybox) with {protocol} id {queue_id}"
            f"{for_clause}; {when}\r\n"
        )
        return header.encode("utf-8")

    async def _store(self, content: list[bytes], body_8bit: bool) -> None:
        assert self.envelope is not None and self.session is not None
        envelope = self.envelope
        sender = envelope.mail_from or ""
        recipients = list(envelope.rcpt_tos)
        queue_id = new_queue_id()
        received = self._received_header(queue_id, recipients, envelope.smtp_utf8)
        data = b"".join([received, *content])
        content.clear()
        message = NewMessage(
            sender=sender,
            recipients=tuple(recipients),
            data=data,
            session_id=self.session_id,
            listener=self.listener.name,
            client_ip=self.client_ip,
            client_port=self.client_port,
            helo=self.session.host_name or "",
            auth_user=self.auth_user.name if self.auth_user else None,
            tls=self.tls,
            body_8bit=body_8bit or self._body_8bit_declared,
            smtputf8=bool(envelope.smtp_utf8),
            arrived_at=self.ctx.clock(),
            # The 250 that follows a good commit is part of the stored dialogue, so the message
            # shows it without a second write (if the commit fails, none of this is stored).
            transcript=(
                *self.transcript.lines,
                TranscriptLine(self.ctx.clock(), "S", Reply.queued(queue_id)),
            ),
            queue_id=queue_id,
        )
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        try:
            queue_id = await self.ctx.spool.store_message(message)
        except SpoolError as exc:
            self.ctx.log.error("spool-failed", session=self.session_id, error=str(exc))
            self._reject("DATA", Reply.SPOOL_FAILED, sender=sender)
            await self.push(Reply.SPOOL_FAILED)
            return
        # The message is on disk (fsynced): only now may we promise delivery.
        self.messages += 1
        self._stored_lines = len(message.transcript)
        self.ctx.log.event(
            "accepted",
            queue_id=queue_id,
            sender=f"<{sender}>",
            rcpts=len(recipients),
            size=len(data),
            client=self.client_ip,
            session=self.session_id,
        )
        self.ctx.bus.publish(
            MessageAccepted(
                queue_id,
                self.session_id,
                sender,
                tuple(recipients),
                len(data),
                self.client_ip,
                at=self.ctx.clock(),
            )
        )
        self.ctx.accepted()
        self._errors.message_accepted()
        await self.push(Reply.queued(queue_id))


def _valid_utf8(arg: str | None) -> None:
    """aiosmtpd decodes arguments with surrogateescape; bytes that were not UTF-8 are refused."""
    if arg is not None:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise AddressError(501, "5.5.2 Error: the command is not valid UTF-8") from None


logging.getLogger("mail.log").setLevel(
    logging.ERROR
)  # aiosmtpd: our transcript and log do this job
