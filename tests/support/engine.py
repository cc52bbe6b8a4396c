"""A running engine as the `start_engine` fixture hands it over, and bounded waits on what its
spool says. It starts and stops nothing (the fixture in conftest.py does)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable

from relaybox.admin.service import Admin
from relaybox.engine import Engine
from relaybox.maillog import MailLog
from relaybox.queue import MessageDetail

from .clock import FakeClock


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
"""`await start_engine(config)` or `await start_engine(**make_config_options)`."""


def admin_of(run: RunningEngine) -> Admin:
    """The engine's admin (in process), the way the UI and the CLI reach the spool."""
    assert run.engine.admin is not None
    return run.engine.admin


async def wait_state(
    run: RunningEngine, queue_id: str, states: set[str], timeout: float = 15.0
) -> MessageDetail:
    """Poll (bounded) until the message is in one of `states`; its detail then."""
    deadline = time.monotonic() + timeout
    while True:
        detail = await admin_of(run).show(queue_id)
        if detail is not None and detail.row.state in states:
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{queue_id} stayed {detail.row.state if detail else 'missing'}, not {states}"
            )
        await asyncio.sleep(0.05)


async def wait_attempts(
    run: RunningEngine, queue_id: str, count: int, timeout: float = 10.0
) -> MessageDetail:
    """Poll (bounded) until the message has at least `count` attempts; its detail then."""
    deadline = time.monotonic() + timeout
    while True:
        detail = await admin_of(run).show(queue_id)
        if detail is not None and len(detail.attempts) >= count:
            return detail
        assert time.monotonic() < deadline, f"{queue_id} has fewer than {count} attempts"
        await asyncio.sleep(0.05)


def let_time_pass(run: RunningEngine, clock: FakeClock, seconds: float) -> None:
    """`seconds` pass on the engine's clock, and delivery looks at the queue at once."""
    clock.advance(seconds)
    run.engine.wake_delivery()
