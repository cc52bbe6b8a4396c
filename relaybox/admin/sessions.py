"""The live view of connections for the admin layer: a snapshot of the inbound SMTP sessions
and the courier's outbound connections open now, and one of them followed line by line.

Following subscribes to the per-line events only while someone watches (the engine builds
none otherwise) and lets go of the subscription when the watcher stops. Nothing is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from relaybox.clock import Clock, system_clock
from relaybox.events import AttemptLine, Event, EventBus, SessionClosed, SessionLine, Subscription
from relaybox.inbound.live_sessions import backlog, describe
from relaybox.message.transcript import TranscriptLine
from relaybox.outbound.connections import OutboundConnection

if TYPE_CHECKING:
    from relaybox.inbound.server import InboundSMTP

__all__ = ["FOLLOW_QUEUE", "STILL_OPEN_EVERY", "follow", "snapshot"]

FOLLOW_QUEUE = 10_000
"""Line events a watcher may fall behind by (every session's lines pass its queue)."""
STILL_OPEN_EVERY = 1.0
"""Seconds between looks at whether a quiet connection is still open (an outbound one ends
without an event)."""


def snapshot(
    inbound: Iterable[InboundSMTP], outbound: Iterable[OutboundConnection], now: float
) -> dict[str, Any]:
    """`{at, inbound: [...], outbound: [...]}`, oldest first, as the `sessions` operation
    answers (the text of strangers as they sent it: readers show it through `untrusted`)."""
    return {
        "at": now,
        "inbound": sorted(
            (describe(s) for s in inbound), key=lambda d: (d["started_at"], d["session_id"])
        ),
        "outbound": [_connection(c) for c in outbound],
    }


def _connection(connection: OutboundConnection) -> dict[str, Any]:
    return {
        "connection_id": connection.connection_id,
        "destination": connection.destination,
        "host": connection.host,
        "ip": connection.ip,
        "port": connection.port,
        "state": connection.state,
        "queue_id": connection.queue_id,
        "tls": connection.tls,
        "messages": connection.messages,
        "opened_at": connection.opened_at,
    }


def follow(
    bus: EventBus,
    session_id: str,
    *,
    inbound: Callable[[], list[InboundSMTP]],
    outbound: Callable[[str], OutboundConnection | None],
    clock: Clock = system_clock,
    maxsize: int = FOLLOW_QUEUE,
) -> AsyncGenerator[TranscriptLine, None]:
    """The lines of one open session (`S...`) or outbound connection (`O...`): those so far,
    then each as it is said, ending with a note when the connection closes.

    The stream subscribes and reads the lines so far in one step of the loop, as it starts, so
    no line is missed or shown twice; its subscription ends with it (`aclose()`, or the end).

    Raises:
        ValueError: no session or connection of that id is open now.
    """
    session = next((s for s in inbound() if s.session_id == session_id), None)
    if session is not None:
        return _follow(
            lambda: bus.subscribe(maxsize, (SessionLine, SessionClosed)),
            lambda: backlog(session.transcript),
            lambda e: getattr(e, "session_id", None) == session_id,
            lambda: session in inbound(),
            clock,
        )
    connection = outbound(session_id)
    if connection is not None:
        return _follow(
            lambda: bus.subscribe(maxsize, (AttemptLine,)),
            lambda: list(connection.lines),
            lambda e: isinstance(e, AttemptLine) and e.connection == session_id,
            lambda: outbound(session_id) is not None,
            clock,
        )
    raise ValueError(f"no session or connection {session_id!r} is open now (it may have ended)")


async def _follow(
    subscribe: Callable[[], Subscription],
    so_far: Callable[[], list[TranscriptLine]],
    ours: Callable[[Event], bool],
    still_open: Callable[[], bool],
    clock: Clock,
) -> AsyncGenerator[TranscriptLine, None]:
    subscription = subscribe()
    try:
        for line in so_far():
            yield line
        while True:
            try:
                async with asyncio.timeout(STILL_OPEN_EVERY):
                    event = await subscription.get()
            except TimeoutError:
                if still_open():
                    continue
                yield TranscriptLine(clock(), "-", "connection closed")
                return
            lost = subscription.take_dropped()
            if lost:
                yield TranscriptLine(event.at, "-", "lines may be missing: the view fell behind")
            if not ours(event):
                continue
            if isinstance(event, SessionClosed):
                yield TranscriptLine(event.at, "-", "session closed")
                return
            assert isinstance(event, SessionLine | AttemptLine)
            yield TranscriptLine(event.at, event.direction, event.text)
    finally:
        subscription.close()
