"""The receiving side: aiosmtpd's SMTP protocol, tightened, feeding the durable spool.

`InboundSMTP` subclasses aiosmtpd's `SMTP` for four things it does not do the way a relay must:
strict RFC 5321 address parsing (`address`), relay and limit policy (`policy`), a DATA reader that
scans blocks instead of lines (fast on large messages, and strict about line endings: SMTP
smuggling), and a transcript of every session (`transcript`). Protocol state and replies for
everything else (EHLO, RSET, NOOP, QUIT, STARTTLS, AUTH) stay aiosmtpd's.
Delivery, TLS certificates and AUTH users are not handled here.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from types import MethodType
from typing import Any

from aiosmtpd.smtp import (
    SMTP,
    AuthResult,
    TLSSetupException,
    _AuthMechAttr,
    login_always_fail,
    syntax,
)

from relaybox.config.model import Config, ListenerConfig, SocketAddress, UserConfig
from relaybox.events import EventBus, MessageAccepted, MessageRejected, SessionClosed, SessionOpened
from relaybox.inbound.auth import Authenticator
from relaybox.inbound.certificates import ServerCertificate
from relaybox.inbound.policy import Client, check_mail, check_rcpt, check_route, client_ip
from relaybox.inbound.throttle import ConnectionTable, RateTable
from relaybox.maillog import MailLog
from relaybox.message.address import AddressError, parse_mail, parse_rcpt
from relaybox.message.queueid import new_queue_id
from relaybox.message.replies import Reply
from relaybox.message.transcript import Transcript, TranscriptLine, tls_summary
from relaybox.queue import NewMessage, Spool, SpoolError

__all__ = ["InboundContext", "InboundSMTP", "start_listener"]

_READ_CHUNK = 1 << 16
_MAX_AUTH_FAILURES_PER_SESSION = 3


@dataclass
class InboundContext:
    """What the receiving side needs from the engine; one per engine, shared by all sessions."""

    config: Callable[[], Config]
    """The current config; a session reads it once, when it starts (reloads don't change it)."""
    spool: Spool
    bus: EventBus
    log: MailLog
    suppression: Callable[[str], str | None]
    """Why a recipient is suppressed, or None."""
    free_space_mb: Callable[[], float | None]
    authenticator: Authenticator | None = None
    """Checks AUTH logins; None when there are no `[[users]]` (AUTH is then not offered)."""
    certificates: dict[str, ServerCertificate] = field(default_factory=dict)
    """Live TLS contexts by listener name, for listeners with TLS."""
    connections: ConnectionTable = field(default_factory=ConnectionTable)
    rates: RateTable = field(default_factory=RateTable)
    sessions: set[InboundSMTP] = field(default_factory=set)
    accepted: Callable[[], None] = lambda: None
    """Called after each message is spooled (wakes the delivery scheduler)."""
    shutting_down: bool = False
    clock: Callable[[], float] = time.time


def _new_session_id() -> str:
    """`S` plus a queue-ID-style stamp: unique across restarts, so transcripts never collide."""
    return "S" + new_queue_id()


class _DataError(Exception):
    """DATA content that must be refused; `close` when the session cannot safely go on."""

    def __init__(self, reply: str, *, close: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.close = close


class InboundSMTP(SMTP):
    """One SMTP connection on one listener."""

    def __init__(self, ctx: InboundContext, listener: ListenerConfig) -> None:
        config = ctx.config()
        self.ctx = ctx
        self.listener = listener
        self.config = config
        self.limits = config.limits
        self.server_config = config.server
        self._init_protocol(config)
        self.session_id = _new_session_id()
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

    # ------------------------------------------------------------------ plumbing

    def _init_protocol(self, config: Config) -> None:
        """Set up what aiosmtpd's `SMTP.__init__` sets up, without its per-connection cost.

        `SMTP.__init__` walks the class with `inspect.getmembers` on every connection (a quarter
        of the CPU of a short session); the method tables depend only on the class, so we build
        them once per class and bind them per connection. tests/test_inbound_protocol.py checks
        that every attribute aiosmtpd's own constructor sets is set here too.
        """
        loop = asyncio.get_running_loop()
        max_cmd = config.limits.max_command_length
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=max(self.line_length_limit, max_cmd + 64)),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.__ident__ = "ESMTP relaybox"
        self.loop = loop
        self.event_handler = None
        self.data_size_limit = config.limits.max_message_size
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        # aiosmtpd keeps these limits in a class-wide dict that every EHLO grows; keep our own.
        self.command_size_limits = _Limits(max_cmd)
        self.command_size_limit = max_cmd
        self.hostname = config.server.hostname
        certificate = self.ctx.certificates.get(self.listener.name)
        self.tls_context = (
            certificate.context if certificate and self.listener.tls == "starttls" else None
        )
        self.require_starttls = False
        self._timeout_duration = config.limits.idle_timeout
        self._timeout_handle = None
        self._idle_deadline = 0.0
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        # RFC 6409 §4.3: a submission port takes mail only from authenticated users.
        self._auth_required = self.listener.role == "submission"
        auth_methods, smtp_methods = _method_tables(type(self))  # type: ignore[arg-type]
        self._auth_methods = {
            mech: _AuthMechAttr(MethodType(fn, self), True) for mech, fn in auth_methods
        }
        self._handle_hooks = {"EHLO": self._ehlo_hook}
        self._ehlo_hook_ver = "new"
        if self.ctx.authenticator is None:
            self._auth_methods = {}
        self._smtp_methods = {verb: MethodType(fn, self) for verb, fn in smtp_methods}
        self._enforce_call_limit = False
        self._pending_reply: list[bytes] = []

    async def _dispatch(self, verb: str, method: _Command, arg: str | None) -> None:
        """Every command goes through here: into the transcript, then to its handler."""
        self.transcript.client(verb if arg is None else f"{verb} {arg}")
        envelope = self.envelope
        if self.ctx.shutting_down and verb != "QUIT" and envelope and envelope.mail_from is None:
            await self._goodbye(Reply.SHUTTING_DOWN)
            return
        await method(self, arg)

    async def push(self, status: str | bytes) -> None:
        """Send a reply line; the lines of a multi-line reply go out in one write."""
        if isinstance(status, bytes):  # aiosmtpd's AUTH challenges come as bytes
            line, status = status + b"\r\n", status.decode("ascii", "replace")
        else:
            line = status.encode("utf-8") + b"\r\n"
        self.transcript.server(status)
        if len(status) > 3 and status[3] == "-":
            self._pending_reply.append(line)  # RFC 5321 §4.2.1: more lines follow
            return
        if self._pending_reply:
            line = b"".join(self._pending_reply) + line
            self._pending_reply.clear()
        self._writer.write(line)
        await self._writer.drain()

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's last resort: log it in our log (concisely for TLS failures) and reply."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__ or error
            reason = str(cause) or type(cause).__name__
            self.ctx.log.warning(
                "tls-failed", client=self.client_ip, session=self.session_id, error=reason
            )
            self.transcript.note(f"TLS handshake failed: {reason}")
            return "454 4.7.0 TLS not available due to a handshake failure"
        self.ctx.log.exception("session-error", client=self.client_ip, session=self.session_id)
        return "451 4.3.0 Internal error; try again later"

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

    async def _goodbye(self, reply: str) -> None:
        """Send a final reply and close the connection."""
        try:
            await self.push(reply)
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

    async def _ehlo_hook(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Adjust aiosmtpd's EHLO reply: no AUTH line without mechanisms (RFC 4954 §3)."""
        session.host_name = hostname
        return [line for line in responses if line.rstrip() != "250-AUTH"]

    async def _handle_client(self) -> None:
        limits = self.limits
        refused = self.ctx.connections.open(
            self.client_ip, limits.max_connections, limits.max_connections_per_ip
        )
        if refused is not None:
            reply = Reply.TOO_MANY_CONNECTIONS if refused == "total" else Reply.TOO_MANY_FROM_IP
            self._reject("CONNECT", reply)
            await self._goodbye(reply)
            return
        self._counted = True
        self.ctx.sessions.add(self)
        self.ctx.bus.publish(
            SessionOpened(self.session_id, self.listener.name, self.client_ip, self.client_port)
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
        if not self._counted:
            return
        self._counted = False
        ctx = self.ctx
        ctx.connections.close(self.client_ip)
        ctx.sessions.discard(self)
        now = ctx.clock()
        if self.transcript.truncated:
            self.transcript.note(f"{self.transcript.truncated} more lines not kept")
        self.transcript.note("disconnect")
        if self._stored_lines and _only_goodbye(self.transcript.lines[self._stored_lines :]):
            pass  # the stored copy has everything but QUIT: spare the disk a write per session
        else:
            ctx.spool.record_session(
                self.session_id,
                self.started_at,
                now,
                self.listener.name,
                self.client_ip,
                self.transcript.lines,
            )
        ctx.bus.publish(SessionClosed(self.session_id, self.client_ip, self.messages))
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

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        assert self.envelope is not None
        if self.envelope.mail_from is not None:
            # RFC 4954 §4: AUTH is not permitted during a mail transaction.
            await self.push("503 5.5.1 Error: AUTH is not allowed during a mail transaction")
            return
        await super().smtp_AUTH(arg)
        if self.session is not None and self.session.authenticated:
            return
        if self._auth_failures >= _MAX_AUTH_FAILURES_PER_SESSION:
            await self._goodbye("421 4.7.0 Too many failed logins; goodbye")

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
        if len(args) == 1:
            blob = await self._challenge("")
            if blob is None:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await self.push("501 5.5.2 Cannot decode the base64 response")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push(
                "501 5.5.2 Malformed PLAIN response (want authzid NUL user NUL password)"
            )
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            # We never let one user act as another (RFC 4616 §2 authorization identity).
            await self._fail_auth(login, Authenticator.INVALID, 0.0)
            return AuthResult(success=False, handled=True)
        return await self._check_login(login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        """The LOGIN mechanism (draft-murchison-sasl-login), still what many devices speak."""
        if len(args) == 1:
            login = await self._challenge("Username:")
            if login is None:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1], validate=True)
            except ValueError:
                await self.push("501 5.5.2 Cannot decode the base64 response")
                return AuthResult(success=False, handled=True)
        password = await self._challenge("Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check_login(login, password)

    async def _check_login(self, login: bytes, password: bytes) -> AuthResult:
        assert self.ctx.authenticator is not None
        username = login.decode("utf-8", "replace")
        outcome = await self.ctx.authenticator.verify(
            self.client_ip, username, password.decode("utf-8", "surrogateescape")
        )
        if outcome.user is None:
            await self._fail_auth(login, outcome.reply, outcome.delay)
            return AuthResult(success=False, handled=True)
        self.auth_user = outcome.user
        self._client = None
        self.ctx.log.event(
            "auth", user=outcome.user.name, client=self.client_ip, session=self.session_id
        )
        self.transcript.note(f"authenticated as {outcome.user.name}")
        return AuthResult(success=True, handled=False, auth_data=outcome.user.name)

    async def _fail_auth(self, login: bytes, reply: str, delay: float) -> None:
        """Log the failure (IP and user name, never the password), pause, then answer."""
        self._auth_failures += 1
        self.ctx.log.warning(
            "auth-failed",
            user=login.decode("utf-8", "replace")[:100],
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
            declared_size=parsed.size,
            limits=self.limits,
            free_space_mb=self.ctx.free_space_mb(),
            min_free_space_mb=self.server_config.min_free_space_mb,
            rate_exceeded=False,
        )
        user = self.auth_user
        if (
            reply is None
            and user is not None
            and parsed.sender
            and not user.may_send_as(parsed.sender)
        ):
            # As Postfix's reject_sender_login_mismatch.
            reply = Reply.sender_not_owned(parsed.sender, user.name)
        if reply is None and self.ctx.rates.hit(
            self.client_ip, self.limits.max_messages_per_minute_per_ip
        ):
            # Counted only once everything else passed: a refused MAIL costs no rate.
            reply = Reply.RATE_LIMITED
        if reply is None and user is not None:
            per_user = user.max_messages_per_minute or self.limits.max_messages_per_minute_per_user
            if self.ctx.rates.hit("user:" + user.name, per_user):
                reply = Reply.USER_RATE_LIMITED
        if reply is not None:
            self._reject("MAIL", reply, sender=parsed.sender)
            await self.push(reply)
            return
        self.envelope.mail_from = parsed.sender
        self.envelope.smtp_utf8 = parsed.smtputf8
        self._body_8bit_declared = parsed.body == "8BITMIME"
        await self.push("250 2.1.0 Ok")

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
        await self.push("250 2.1.5 Ok")

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
        self._in_data = True
        try:
            await self.push(Reply.START_DATA)
            try:
                async with asyncio.timeout(self.limits.data_timeout):
                    content, body_8bit = await self._read_data()
            except TimeoutError:
                self.transcript.note("DATA deadline passed")
                self._reject("DATA", Reply.DATA_TIMEOUT, sender=self.envelope.mail_from)
                await self._goodbye(Reply.DATA_TIMEOUT)
                return
            except _DataError as exc:
                self._reject("DATA", exc.reply, sender=self.envelope.mail_from)
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                if exc.close:
                    await self._goodbye(exc.reply)
                else:
                    await self.push(exc.reply)
                return
            if self.auth_user is not None:
                refusal = _from_header_refusal(content, self.auth_user)
                if refusal is not None:
                    self._reject("DATA", refusal, sender=self.envelope.mail_from)
                    self._set_post_data_state()  # type: ignore[no-untyped-call]
                    await self.push(refusal)
                    return
            await self._store(content, body_8bit)
        finally:
            self._in_data = False

    async def _read_data(self) -> tuple[list[bytes], bool]:
        """Read DATA up to `<CRLF>.<CRLF>` a block at a time; returns (unstuffed lines, 8-bit).

        Rules, in the order a block is checked:
        - only `<CRLF>.<CRLF>` ends DATA (RFC 5321 §4.1.1.4); a bare LF or CR anywhere refuses
          the message and drops the connection, so a smuggled `<LF>.<LF>` can never start a
          second message (CVE-2023-51764 class). With `bare_lf = "normalize"` bare LF line ends
          are accepted and stored as CRLF; bare CR is still refused.
        - dot-stuffing is undone (RFC 5321 §4.5.2);
        - over the size limit, the rest is read and discarded and 552 sent at the end
          (RFC 5321 §4.2.5 lets us reply only after the terminator);
        - a line over the line limit, or a NUL, refuses the message after the terminator.
        """
        reader = self._reader
        normalize = self.listener.bare_lf == "normalize"
        size_limit = self.limits.max_message_size
        max_line = self.limits.max_line_length + 2  # plus CRLF
        parts: list[bytes] = []
        size = 0
        body_8bit = False
        refusal: str | None = None
        carry = b""
        prev_crlf = True  # DATA's own CRLF precedes the first line
        saved_limit: int = reader._limit  # type: ignore[attr-defined]
        reader._limit = max(saved_limit, _READ_CHUNK * 4)  # type: ignore[attr-defined]
        try:
            while True:
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    raise ConnectionResetError("connection closed during DATA")
                self._reset_timeout()
                data = carry + chunk if carry else chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    if len(carry) > max_line + 1 and refusal is None:
                        refusal = Reply.line_too_long(self.limits.max_line_length)
                    if len(carry) > max_line + 1:
                        carry = carry[-2:]  # keep only what a terminator could start with
                    continue
                block, carry = data[:cut], data[cut:]
                # Where does DATA end? Only at CRLF "." CRLF, the CRLF possibly in the last block.
                if prev_crlf and block.startswith(b".\r\n"):
                    end = 0
                else:
                    end = block.find(b"\r\n.\r\n")
                    if end >= 0:
                        end += 2
                rest = b""
                if end >= 0:
                    rest = block[end + 3 :] + carry
                    block = block[:end]
                    carry = b""
                if block:
                    crlf = block.count(b"\r\n")
                    lf = block.count(b"\n")
                    if lf != crlf:
                        if not normalize:
                            raise _DataError(Reply.bare_line_ending("LF"), close=True)
                        block = block.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                        crlf = lf
                    if block.count(b"\r") != crlf:
                        raise _DataError(Reply.bare_line_ending("CR"), close=True)
                    prev_crlf = block.endswith(b"\r\n")
                    if refusal is None:
                        if b"\0" in block:
                            refusal = Reply.NUL_IN_DATA
                        elif len(block) > max_line and max(map(len, block.split(b"\n"))) > (
                            max_line - 1
                        ):
                            refusal = Reply.line_too_long(self.limits.max_line_length)
                    # RFC 5321 §4.5.2: a leading dot was added by the client; take it away.
                    if block.startswith(b"."):
                        block = block[1:]
                    block = block.replace(b"\r\n.", b"\r\n")
                    size += len(block)
                    if refusal is None and size > size_limit:
                        refusal = Reply.size_exceeded(size_limit)
                    if refusal is None:
                        body_8bit = body_8bit or not block.isascii()
                        parts.append(block)
                    else:
                        parts.clear()
                if end >= 0:
                    if rest:
                        # Commands pipelined after the terminator (RFC 2920) go back to the
                        # reader for the command loop.
                        reader._buffer[0:0] = rest  # type: ignore[attr-defined]
                    break
        finally:
            reader._limit = saved_limit  # type: ignore[attr-defined]
        self.transcript.note(f"<{size} bytes of message data>")
        if refusal is not None:
            raise _DataError(refusal)
        return parts, body_8bit

    def _received_header(self, queue_id: str, recipients: list[str], smtputf8: bool) -> bytes:
        """RFC 5321 §4.4 trace header; `with` per RFC 3848 and RFC 6531 §3.7.3."""
        assert self.session is not None
        protocol = "UTF8SMTP" if smtputf8 else ("ESMTP" if self.session.extended_smtp else "SMTP")
        if protocol != "SMTP":
            protocol += ("S" if self.tls else "") + ("A" if self.auth_user else "")
        helo = self.session.host_name or "unknown"
        when = email.utils.format_datetime(email.utils.localtime())
        for_clause = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
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
                queue_id, self.session_id, sender, tuple(recipients), len(data), self.client_ip
            )
        )
        self.ctx.accepted()
        await self.push(Reply.queued(queue_id))


_Command = Callable[[Any, str | None], Awaitable[None]]


def _recorded(verb: str, method: _Command) -> _Command:
    """Wrap an `smtp_VERB` method so that it runs through `InboundSMTP._dispatch`."""

    async def call(self: InboundSMTP, arg: str | None) -> None:
        await self._dispatch(verb, method, arg)

    # aiosmtpd's HELP and syntax checks read these attributes from the method.
    for attr in ("__smtp_syntax__", "__smtp_syntax_when__", "__smtp_syntax_extended__"):
        if hasattr(method, attr):
            setattr(call, attr, getattr(method, attr))
    return call


@functools.cache
def _method_tables(
    cls: type,
) -> tuple[tuple[tuple[str, Callable[..., Any]], ...], tuple[tuple[str, _Command], ...]]:
    """(AUTH mechanism, function) and (SMTP verb, recorded function) pairs of a class."""
    auth = tuple(
        (
            getattr(getattr(cls, name), "__auth_mechanism_name__", name[5:].replace("__", "-")),
            getattr(cls, name),
        )
        for name in dir(cls)
        if name.startswith("auth_")
    )
    smtp = tuple(
        (name[5:], _recorded(name[5:], getattr(cls, name)))
        for name in dir(cls)
        if name.startswith("smtp_")
    )
    return auth, smtp


class _Limits(dict[str, int]):
    """Command line limits: one value for all commands, and never grown by EHLO."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def __missing__(self, key: str) -> int:
        return self._limit

    def __setitem__(self, key: str, value: int) -> None:
        # aiosmtpd adds room for SIZE/SMTPUTF8 parameters on every EHLO; allow it once.
        super().__setitem__(key, min(value, self._limit + 64))


def _from_header_refusal(content: list[bytes], user: UserConfig) -> str | None:
    """Check the From: addresses of a message an authenticated user sends (RFC 5322 §3.6.2).

    Returns the refusal, or None when every From: address is one the user may send as.
    """
    head = b"".join(content[:64])
    end = head.find(b"\r\n\r\n")
    if end < 0 and len(head) > 65536:
        end = 65536
    headers = BytesHeaderParser(policy=compat32).parsebytes(head[: end + 4] if end >= 0 else head)
    values = headers.get_all("From") or []
    addresses = [addr for _, addr in email.utils.getaddresses([str(v) for v in values]) if addr]
    if not addresses:
        return "553 5.7.1 Message refused: it has no From: header address for the sender check"
    for address in addresses:
        if not user.may_send_as(address):
            return Reply.from_not_owned(address, user.name)
    return None


def _only_goodbye(lines: Sequence[TranscriptLine]) -> bool:
    """True when a session's last lines are just its farewell (QUIT, 221, the hang-up)."""
    return all(
        (line.direction == "C" and line.text.upper() == "QUIT")
        or (line.direction == "S" and line.text.startswith("221"))
        or (line.direction == "-" and line.text == "disconnect")
        for line in lines
    )


def _valid_utf8(arg: str | None) -> None:
    """aiosmtpd decodes arguments with surrogateescape; bytes that were not UTF-8 are refused."""
    if arg is not None:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise AddressError(501, "5.5.2 Error: the command is not valid UTF-8") from None


async def start_listener(
    ctx: InboundContext, listener: ListenerConfig
) -> list[tuple[asyncio.Server, SocketAddress]]:
    """Bind every address of `listener` on the running loop; returns servers and bound addresses.

    Port 0 binds a free port; the returned address has the real one (tests use this).
    """
    loop = asyncio.get_running_loop()
    servers: list[tuple[asyncio.Server, SocketAddress]] = []
    try:
        for address in listener.listen:
            certificate = ctx.certificates.get(listener.name)
            implicit = certificate.context if certificate and listener.tls == "implicit" else None
            server = await loop.create_server(
                lambda: InboundSMTP(ctx, listener),
                ssl=implicit,
                host=address.host,
                port=address.port,
                reuse_address=True,
                backlog=1024,
            )
            sock = server.sockets[0].getsockname()
            servers.append((server, SocketAddress(address.host, int(sock[1]))))
    except BaseException:
        for server, _ in servers:
            server.close()
        raise
    return servers


logging.getLogger("mail.log").setLevel(
    logging.ERROR
)  # aiosmtpd: our transcript and log do this job
