"""A real aiosmtpd server on loopback to deliver to: it records what it gets and can misbehave.

Behaviours a test can ask for: refuse chosen recipients (`rcpt_replies`), greylist (`451` the
first time a recipient is seen), drop the connection at DATA, offer STARTTLS with a test
certificate, require AUTH, leave out 8BITMIME or SMTPUTF8. It runs on the test's own event loop
(created with `loop.create_server`, like relaybox's listeners).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One message the sink accepted."""

    sender: str
    recipients: list[str]
    data: bytes
    mail_options: list[str]
    at: float = field(default_factory=time.monotonic)
    """When it arrived (time.monotonic, comparable with the test's own times)."""


@dataclass
class SinkBehaviour:
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    """Recipient (lower case) -> the reply to RCPT instead of 250."""
    greylist: bool = False
    """Answer 451 to a recipient the first time it is seen."""
    mail_reply: str | None = None
    """Answer MAIL with this instead of 250."""
    data_reply: str | None = None
    """Answer the end of DATA with this instead of 250."""
    drop_at_data: bool = False
    """Close the connection when DATA arrives."""
    stall: asyncio.Event | None = None
    """Hold the reply to the end of DATA until this is set (a delivery kept in flight)."""
    on_mail: Callable[[], None] | None = None
    """Called when a MAIL command arrives, before it is answered (to look at the relay then)."""
    data_delay: float = 0.0
    """Seconds to wait before answering the end of DATA (a slow next hop)."""
    quit_stall: asyncio.Event | None = None
    """Hold the reply to QUIT until this is set (a slow goodbye)."""
    auth: tuple[str, str] | None = None
    """(user, password) the sink requires; AUTH is then offered (after TLS when tls_context)."""
    tls_context: ssl.SSLContext | None = None
    implicit_tls: ssl.SSLContext | None = None
    """Speak TLS from the first byte (port 465 style) with this context; no STARTTLS."""
    no_8bitmime: bool = False
    smtputf8: bool = True


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        behaviour = self.sink.behaviour
        if behaviour.on_mail is not None:
            behaviour.on_mail()
        if behaviour.mail_reply:
            return behaviour.mail_reply
        envelope.mail_from = address  # "<>" for the null sender: aiosmtpd needs it truthy
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        behaviour = self.sink.behaviour
        reply = behaviour.rcpt_replies.get(address.lower())
        if reply:
            return reply
        if behaviour.greylist and address.lower() not in self.sink.seen:
            self.sink.seen.add(address.lower())
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        behaviour = self.sink.behaviour
        self.sink.data_started += 1
        self.sink.in_data.set()
        if behaviour.stall is not None:
            await behaviour.stall.wait()
        if behaviour.data_delay:
            await asyncio.sleep(behaviour.data_delay)
        if behaviour.data_reply:
            return behaviour.data_reply
        assert envelope.original_content is not None
        self.sink.messages.append(
            Received(
                "" if envelope.mail_from == "<>" else envelope.mail_from or "",
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
            )
        )
        self.sink.arrived.set()
        return "250 2.0.0 Ok: queued at the sink"


class _SinkSMTP(SMTP):
    def __init__(self, sink: Sink, **kwargs: Any) -> None:
        self.sink = sink
        super().__init__(_Handler(sink), **kwargs)

    async def smtp_DATA(self, arg: str) -> None:
        if self.sink.behaviour.drop_at_data:
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_DATA(arg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.disconnected.set()
        super().connection_lost(exc)

    async def smtp_QUIT(self, arg: str) -> None:
        self.sink.quitting.set()
        if self.sink.behaviour.quit_stall is not None:
            await self.sink.behaviour.quit_stall.wait()
        await super().smtp_QUIT(arg)

    async def smtp_EHLO(self, hostname: str) -> None:
        if self.sink.behaviour.no_8bitmime:
            self._decode_data = True  # aiosmtpd advertises 8BITMIME only when not decoding
        await super().smtp_EHLO(hostname)
        self._decode_data = False


class Sink:
    """The server; `messages` fills as mail arrives, `connections` counts TCP connections."""

    def __init__(self, behaviour: SinkBehaviour) -> None:
        self.behaviour = behaviour
        self.messages: list[Received] = []
        self.seen: set[str] = set()
        self.connections = 0
        self.arrived = asyncio.Event()
        self.data_started = 0
        """Messages whose data has arrived, answered or not (`stall` may hold the replies)."""
        self.in_data = asyncio.Event()
        """Set when a message's data has arrived (before the reply, which `stall` may hold)."""
        self.quitting = asyncio.Event()
        """Set when a client has sent QUIT (before the reply, which `quit_stall` may hold)."""
        self.disconnected = asyncio.Event()
        """Set when a connection has ended (either side closed it)."""
        self.server: asyncio.Server | None = None
        self.port = 0

    def _protocol(self) -> SMTP:
        self.connections += 1
        behaviour = self.behaviour

        def authenticator(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and behaviour.auth is not None
                and (data.login.decode(), data.password.decode()) == behaviour.auth
            )
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends 535

        return _SinkSMTP(
            self,
            hostname="sink.example.test",
            enable_SMTPUTF8=behaviour.smtputf8,
            tls_context=behaviour.tls_context,
            authenticator=authenticator if behaviour.auth else None,
            auth_required=behaviour.auth is not None,
            auth_require_tls=behaviour.tls_context is not None,
        )

    async def start(self, host: str = "127.0.0.1") -> Sink:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            self._protocol, host=host, port=0, ssl=self.behaviour.implicit_tls
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait (bounded) until `count` messages arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"the sink got {len(self.messages)} of {count} messages")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.2))
            except TimeoutError:
                pass
        return self.messages

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


SinkFactory = Callable[..., Awaitable[Sink]]


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SinkFactory]:
    """`sink = await smtp_sink(**SinkBehaviour fields)`: a running sink, stopped after."""
    sinks: list[Sink] = []

    async def start(**behaviour: Any) -> Sink:
        sink = await Sink(SinkBehaviour(**behaviour)).start()
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        await sink.stop()


@pytest.fixture
def sink_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for the sink (certificate for sink.example.test and 127.0.0.1) and the
    CA file that verifies it."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("sink.example.test", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file
