"""One interface from the UI to an engine, with two implementations: the engine running in
this process (same event loop) or one running elsewhere, reached by its admin socket.

The screens use only this interface, so they behave, and are tested, the same in both modes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from relaybox.admin.client import AdminClient, ControlClient, ControlError, EventsDropped
from relaybox.clock import Clock, system_clock
from relaybox.engine import Engine
from relaybox.events import Event, Subscription
from relaybox.message.transcript import TranscriptLine

__all__ = [
    "EngineLink",
    "InProcessLink",
    "ListenerInfo",
    "SocketLink",
    "listener_infos",
    "stream_of",
]


LINGER = 0.02
"""Seconds a stream waits after an event for the ones right behind it (see `stream_of`)."""


@dataclass(frozen=True)
class ListenerInfo:
    """What the status bar says of one listener."""

    name: str
    address: str
    role: str
    tls: str


class EngineLink(Protocol):
    """What the UI needs of an engine."""

    attached: bool
    """True when the engine runs in another process (quitting the UI leaves it running)."""
    admin: AdminClient
    started_at: float
    """When the engine started (wall clock)."""

    @property
    def config_loaded_at(self) -> float:
        """When the engine's config in force was loaded (wall clock)."""
        ...

    @property
    def config_generation(self) -> int:
        """The generation of the engine's config in force (1 at start, +1 per reload)."""
        ...

    @property
    def connected(self) -> bool:
        """False once the engine is known to be out of reach (its requests fail)."""
        ...

    async def open(self) -> None:
        """Get ready (called once by the app as it starts, on its event loop)."""
        ...

    async def reconnect(self) -> bool:
        """Reach the engine again after it went away (attached only): True once connected,
        False while nothing answers (or in process, where an engine never comes back)."""
        ...

    def describe(self) -> str:
        """The status bar's words for where the engine runs."""
        ...

    async def listeners(self) -> list[ListenerInfo]:
        """The engine's listeners."""
        ...

    async def subscribe(
        self, types: Sequence[type[Event]] | None = None
    ) -> AsyncGenerator[Event | EventsDropped, None]:
        """The engine's events of these classes (None: all) as they happen, returned once the
        subscription is in place: nothing published after this returns is missed. Close the
        stream with `aclose()`."""
        ...

    async def session_transcript(self, session_id: str) -> AsyncGenerator[TranscriptLine, None]:
        """One open inbound session's (`S...`) or outbound connection's (`O...`) lines, so far
        and then live, ending when it closes; returned once the engine found it (an error
        when it did not). Close it with `aclose()`: the engine lets go of its subscription."""
        ...

    async def close(self) -> None:
        """Let go of the engine (the in-process one keeps running until its owner stops it)."""
        ...


def listener_infos(engine_config: object) -> list[ListenerInfo]:
    listeners = getattr(engine_config, "listeners", ())
    out = []
    for listener in listeners:
        for address in listener.listen:
            out.append(ListenerInfo(listener.name, str(address), listener.role, listener.tls))
    return out


async def stream_of(subscription: Subscription) -> AsyncGenerator[Event | EventsDropped, None]:
    """A bus subscription's events as a stream (an `EventsDropped` first when some were
    lost); closing the stream closes the subscription."""
    try:
        while True:
            # One wake-up per burst, not per event: under load the engine publishes
            # thousands a second, and the UI shares its event loop. A burst is what comes
            # within LINGER of its first event (a delay no one sees, even in a live transcript).
            first = await subscription.get()
            await asyncio.sleep(LINGER)
            batch = [first, *subscription.drain()]
            lost = subscription.take_dropped()
            if lost:
                yield EventsDropped(lost)
            for event in batch:
                yield event
    finally:
        subscription.close()


class InProcessLink:
    """The engine in this process: its admin layer and its bus, directly."""

    attached = False

    def __init__(self, engine: Engine, clock: Clock = system_clock) -> None:
        assert engine.admin is not None, "start the engine first"
        self.engine = engine
        self.admin: AdminClient = engine.admin
        self.started_at = clock()

    @property
    def config_loaded_at(self) -> float:
        return self.engine.config_loaded_at

    @property
    def config_generation(self) -> int:
        return self.engine.generation

    @property
    def connected(self) -> bool:
        return True

    async def open(self) -> None:
        return None

    async def reconnect(self) -> bool:
        return False

    def describe(self) -> str:
        return f"in-process (pid {os.getpid()})"

    async def listeners(self) -> list[ListenerInfo]:
        return listener_infos(self.engine.config)

    async def subscribe(
        self, types: Sequence[type[Event]] | None = None
    ) -> AsyncGenerator[Event | EventsDropped, None]:
        return stream_of(self.engine.bus.subscribe(types=types))

    async def session_transcript(self, session_id: str) -> AsyncGenerator[TranscriptLine, None]:
        assert self.engine.admin is not None
        return self.engine.admin.session_transcript(session_id)

    async def close(self) -> None:
        return None


class SocketLink:
    """An engine in another process (`relaybox --headless`), through its admin socket."""

    attached = True

    def __init__(self, client: ControlClient, pid: int, clock: Clock = system_clock) -> None:
        self.client = client
        self.admin: AdminClient = client.admin
        self.pid = pid
        self.started_at = clock()
        self._config_loaded_at = self.started_at
        self._config_generation = 1

    @property
    def config_loaded_at(self) -> float:
        return self._config_loaded_at

    @property
    def config_generation(self) -> int:
        return self._config_generation

    @property
    def connected(self) -> bool:
        return self.client.closed is None

    async def open(self) -> None:
        return None

    async def reconnect(self) -> bool:
        """Connect to the socket again: the engine restarted, or another one now serves the
        same state directory (its pid is then the one shown)."""
        try:
            client = await ControlClient.connect(self.client.path, timeout=2.0)
        except (OSError, TimeoutError):
            return False
        try:
            info = await client.request("info")
        except ControlError:
            await client.close()
            return False
        old, self.client, self.admin = self.client, client, client.admin
        self.pid = int(info.get("pid", self.pid))
        await old.close()
        return True

    def describe(self) -> str:
        return f"attached to pid {self.pid}" if self.pid > 0 else "attached"

    async def listeners(self) -> list[ListenerInfo]:
        info = await self.client.request("info")
        self.started_at = float(info.get("started_at", self.started_at))
        self._config_loaded_at = float(info.get("config_loaded_at", self.started_at))
        self._config_generation = int(info.get("generation", 1))
        return [ListenerInfo(**entry) for entry in info.get("listeners", [])]

    async def subscribe(
        self, types: Sequence[type[Event]] | None = None
    ) -> AsyncGenerator[Event | EventsDropped, None]:
        return await self.client.subscribe(None if types is None else [t.__name__ for t in types])

    async def session_transcript(self, session_id: str) -> AsyncGenerator[TranscriptLine, None]:
        return await self.client.session_transcript(session_id)

    async def close(self) -> None:
        await self.client.close()
