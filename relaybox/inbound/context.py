"""What the receiving side shares across sessions: the engine's parts it uses, and session IDs.

One `InboundContext` per engine, built by the engine and handed to every listener; it holds
references, not behaviour (the protocol is `inbound.server`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relaybox.clock import Clock, system_clock
from relaybox.config.model import Config
from relaybox.events import EventBus
from relaybox.inbound.auth import Authenticator
from relaybox.inbound.certificates import ServerCertificate
from relaybox.inbound.throttle import ConnectionTable, RateTable
from relaybox.inbound.transcript_budget import TranscriptBudget
from relaybox.maillog import MailLog
from relaybox.message.queueid import new_queue_id
from relaybox.queue import Spool

if TYPE_CHECKING:
    from relaybox.inbound.server import InboundSMTP

__all__ = ["InboundContext", "new_session_id"]


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
    transcript_budget: TranscriptBudget = field(default_factory=TranscriptBudget)
    """What sessions that brought no message may still add to the spool this hour."""
    accepted: Callable[[], None] = lambda: None
    """Called after each message is spooled (wakes the delivery scheduler)."""
    shutting_down: bool = False
    clock: Clock = system_clock


def new_session_id() -> str:
    """`S` plus a queue-ID-style stamp: unique across restarts, so transcripts never collide."""
    return "S" + new_queue_id()
