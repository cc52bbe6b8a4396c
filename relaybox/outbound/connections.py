"""The courier's open connections, for the admin's live view: one record per connection to a
next hop, while it is being opened, carrying a message, or idle in the connection cache.

It costs nothing per SMTP line: a record points at the transcript of the attempt using the
connection (the list the courier appends to anyway), and a snapshot is made only when asked
for. It decides nothing about delivery and never closes a connection (`client` does).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal, Protocol

from relaybox.clock import Clock, system_clock
from relaybox.message.transcript import TranscriptLine

__all__ = ["ConnectionTable", "OutboundConnection"]


class _Connected(Protocol):
    @property
    def is_connected(self) -> bool: ...


@dataclass
class OutboundConnection:
    """One connection of the courier's, as the Sessions pane shows it."""

    connection_id: str
    """`O` and a number counted from 1 in this engine's life (the view's key; never stored)."""
    host: str
    ip: str
    port: int
    opened_at: float
    destination: str = ""
    """The destination key of the message it carries now, or carried last."""
    queue_id: str = ""
    """The message it carries now; empty while it waits in the cache."""
    state: Literal["connecting", "sending", "idle"] = "connecting"
    tls: str | None = None
    """TLS version and cipher once encrypted, as transcripts say it."""
    messages: int = 0
    """Messages the next hop accepted on this connection (DATA answered 250)."""
    lines: list[TranscriptLine] = field(default_factory=list, repr=False)
    """The transcript of the attempt using it now, or of the last one (shared, not copied)."""
    smtp: _Connected | None = field(default=None, repr=False)
    """The client connection once open: the table forgets records whose socket is gone."""


class ConnectionTable:
    """The courier's connections by id; records whose socket closed are forgotten lazily."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self.clock = clock
        self._open: dict[str, OutboundConnection] = {}
        self._numbers = itertools.count(1)

    def opening(
        self,
        host: str,
        ip: str,
        port: int,
        *,
        destination: str,
        queue_id: str,
        lines: list[TranscriptLine],
    ) -> OutboundConnection:
        """A connection is being opened (connect, TLS, EHLO, AUTH) for a message."""
        self._forget_closed()
        record = OutboundConnection(
            f"O{next(self._numbers)}",
            host,
            ip,
            port,
            self.clock(),
            destination=destination,
            queue_id=queue_id,
            lines=lines,
        )
        self._open[record.connection_id] = record
        return record

    def forget(self, record: OutboundConnection) -> None:
        """The connection is closed (or never opened)."""
        self._open.pop(record.connection_id, None)

    def get(self, connection_id: str) -> OutboundConnection | None:
        """The connection with this id while it is open."""
        record = self._open.get(connection_id)
        if record is not None and _closed(record):
            self.forget(record)
            return None
        return record

    def snapshot(self) -> list[OutboundConnection]:
        """The connections open now, oldest first."""
        self._forget_closed()
        return sorted(self._open.values(), key=lambda r: (r.opened_at, r.connection_id))

    def __len__(self) -> int:
        return len(self._open)

    def _forget_closed(self) -> None:
        # A connection closed by a failure mid-transaction or by the next hop is never
        # reported here: it is noticed by its socket instead (a few dozen records at most).
        for record in [r for r in self._open.values() if _closed(r)]:
            self.forget(record)


def _closed(record: OutboundConnection) -> bool:
    return record.smtp is not None and not record.smtp.is_connected
