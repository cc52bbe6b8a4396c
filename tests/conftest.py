"""Shared fixtures: a real engine on loopback over a temporary spool, raw SMTP clients, a spool
on its own, a DKIM key, a pinned time zone; and the real peers' fixtures (sinks, a DNS server,
`relaybox` runs) registered here. Plain helpers live in tests/support/, not here."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaybox.clock import Clock, system_clock
from relaybox.config.keys import DkimKey
from relaybox.config.model import Config
from relaybox.engine import Engine
from relaybox.maillog import MailLog
from relaybox.queue import Spool

from .dnsserver import dns_server as dns_server
from .healthzones import new_key
from .relayproc import cli, env, run_cli, start_relay  # noqa: F401 (fixtures)
from .smtpsink import sink_tls as sink_tls
from .smtpsink import smtp_sink as smtp_sink
from .support.configs import make_config
from .support.engine import EngineFactory, RunningEngine
from .support.smtp import SMTPClient


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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the `spool` fixture keeps its SQLite file."""
    return tmp_path / "spool.sqlite"


@pytest.fixture
async def spool(db_path: Path) -> AsyncIterator[Spool]:
    """A spool on a real SQLite file in tmp_path, without an engine (closed after)."""
    opened = await Spool.open(db_path)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def key() -> DkimKey:
    """A fresh DKIM key for the domain health checks, one per test module (RSA is slow)."""
    return new_key()


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
