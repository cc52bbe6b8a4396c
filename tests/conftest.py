"""Shared fixtures: a real engine on loopback over a temporary spool, and raw SMTP clients."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import ipaddress
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaybox.clock import Clock, system_clock
from relaybox.config.model import (
    Config,
    DnsConfig,
    LimitsConfig,
    ListenerConfig,
    RouteConfig,
    ServerConfig,
    SocketAddress,
)
from relaybox.engine import Engine
from relaybox.maillog import MailLog

from .dnsserver import dns_server as dns_server
from .relayproc import cli, env, run_cli, start_relay  # noqa: F401 (fixtures)
from .smtpsink import smtp_sink as smtp_sink

LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Tests that are not about delivery keep their mail: nothing may leave loopback, and the
# system's resolver is never asked (a dead loopback port answers nothing, at once).
HOLD_EVERYTHING = (RouteConfig(domains=("*",), transport="hold"),)
NO_DNS = DnsConfig(resolvers=(SocketAddress("127.0.0.1", 9),), timeout=0.5)


def make_config(
    state_dir: Path,
    *,
    listeners: tuple[ListenerConfig, ...] | None = None,
    limits: LimitsConfig | None = None,
    **server: Any,
) -> Config:
    """A config with one loopback relay listener on a free port, unless told otherwise."""
    if listeners is None:
        listeners = (
            ListenerConfig(
                listen=(SocketAddress("127.0.0.1", 0),),
                role="relay",
                allowed_networks=LOOPBACK_NETS,
            ),
        )
    server.setdefault("hostname", "relay.example.test")
    return Config(
        server=ServerConfig(state_dir=state_dir, **server),
        limits=limits or LimitsConfig(),
        listeners=listeners,
        routes=HOLD_EVERYTHING,
        dns=NO_DNS,
    )


def relay_listener(**overrides: Any) -> ListenerConfig:
    """A loopback relay listener on a free port, with `overrides` applied."""
    base = ListenerConfig(
        listen=(SocketAddress("127.0.0.1", 0),), role="relay", allowed_networks=LOOPBACK_NETS
    )
    return dataclasses.replace(base, **overrides)


class RunningEngine:
    """An engine started in the test's event loop, with its log captured."""

    def __init__(self, engine: Engine, log_stream: io.StringIO, log: MailLog) -> None:
        self.engine = engine
        self.log_stream = log_stream
        self._log = log

    @property
    def port(self) -> int:
        return self.engine.bound[0][1].port

    def address(self, index: int = 0) -> tuple[str, int]:
        bound = self.engine.bound[index][1]
        return bound.host, bound.port

    def log_text(self) -> str:
        """Everything logged so far (waits for the log thread)."""
        self._log.flush()
        return self.log_stream.getvalue()


EngineFactory = Callable[..., Awaitable[RunningEngine]]


@pytest.fixture
async def start_engine(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    """`await start_engine(**config_overrides)` starts a real engine; all are stopped after.

    `clock=` gives the engine (and its log) a clock, such as a `FakeClock` the test moves.
    """
    running: list[RunningEngine] = []

    async def start(
        config: Config | None = None, *, clock: Clock = system_clock, **kwargs: Any
    ) -> RunningEngine:
        cfg = config or make_config(tmp_path / f"state{len(running)}", **kwargs)
        stream = io.StringIO()
        log = MailLog(stream=stream, level="debug", clock=clock)
        engine = Engine(cfg, log, clock)
        await engine.start()
        run = RunningEngine(engine, stream, log)
        running.append(run)
        return run

    yield start
    for run in running:
        try:
            await asyncio.wait_for(run.engine.stop(grace=1.0), 20)
        except TimeoutError:
            import io as _io

            stacks = _io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(limit=8, file=stacks)
            pytest.fail(f"the engine did not stop within 20 s; tasks:\n{stacks.getvalue()}")
        finally:
            run._log.close()


class SMTPClient:
    """A raw SMTP client over a real socket: sends bytes, reads replies as (code, lines)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> SMTPClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def reply(self, timeout: float = 10.0) -> tuple[int, str]:
        """The next (possibly multi-line) reply: its code and its text lines joined by \\n."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError(f"server closed the connection; got so far: {lines!r}")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), "\n".join(lines)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def cmd(self, line: str) -> tuple[int, str]:
        """Send one command line and read its reply."""
        await self.send(line + "\r\n")
        return await self.reply()

    async def greet(self, helo: str = "client.example.test") -> None:
        code, _ = await self.reply()
        assert code == 220
        code, _ = await self.cmd(f"EHLO {helo}")
        assert code == 250

    async def send_message(
        self, sender: str, recipients: list[str], body: bytes
    ) -> tuple[int, str]:
        """MAIL, RCPT..., DATA with `body` (already dot-stuffed, ending in CRLF); final reply."""
        code, text = await self.cmd(f"MAIL FROM:<{sender}>")
        assert code == 250, text
        for rcpt in recipients:
            code, text = await self.cmd(f"RCPT TO:<{rcpt}>")
            assert code == 250, text
        code, text = await self.cmd("DATA")
        assert code == 354, text
        await self.send(body + b".\r\n")
        return await self.reply()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (reads and discards the rest)."""
        try:
            while await asyncio.wait_for(self.reader.read(4096), timeout):
                pass
        except (ConnectionError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@pytest.fixture
async def smtp() -> AsyncIterator[Callable[..., Awaitable[SMTPClient]]]:
    """`client = await smtp(engine)` connects to the engine's first listener (closed after)."""
    clients: list[SMTPClient] = []

    async def connect(run: RunningEngine, index: int = 0, greet: bool = True) -> SMTPClient:
        client = await SMTPClient.connect(*run.address(index))
        clients.append(client)
        if greet:
            await client.greet()
        return client

    yield connect
    for client in clients:
        await client.close()


def simple_message(subject: str = "test", body: str = "Hello.") -> bytes:
    return (
        f"From: a@example.com\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def utc() -> Iterator[None]:
    """Times on screen are local time: pin the zone (snapshot modules use it autouse)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()
