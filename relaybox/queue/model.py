"""The spool's vocabulary: message and recipient states, and the records it takes and returns.

Plain frozen dataclasses and string enums, with no SQL and no I/O: the states' values are the
exact strings stored in SQLite and sent over the admin socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from relaybox.message.queueid import new_queue_id
from relaybox.message.transcript import TranscriptLine

__all__ = [
    "ALL_STATES",
    "UNFINISHED_STATES",
    "AttemptRow",
    "DeliveryJob",
    "MessageDetail",
    "MessageFilter",
    "MessageRow",
    "MessageState",
    "NewMessage",
    "OutcomeState",
    "Overview",
    "PendingRecipient",
    "RecipientOutcome",
    "RecipientRow",
    "RecipientState",
    "SpoolError",
    "SuppressionRow",
]


class RecipientState(StrEnum):
    """Where one recipient of a message stands; the value is what the `recipients` table holds."""

    QUEUED = "queued"
    """Never tried yet, or released by an admin: due at its `next_attempt_at`."""
    DEFERRED = "deferred"
    """Tried and refused for now (4xx, no answer): due again at its `next_attempt_at`."""
    HELD = "held"
    """Held by an admin or a route; never due until released."""
    DELIVERED = "delivered"
    """Accepted by the next hop (finished)."""
    BOUNCED = "bounced"
    """Refused for good, or given up on (finished; a DSN went to the sender)."""


class MessageState(StrEnum):
    """Where a message stands, derived from its recipients' states (see `outcomes.refresh_message`).

    The value is what the `messages` table holds.
    """

    QUEUED = "queued"
    """Some recipient is queued, none held or deferred."""
    ACTIVE = "active"
    """Being delivered. Nothing sets it today; `Spool.recover_active` clears it after a crash."""
    DEFERRED = "deferred"
    """Some recipient is deferred, none held."""
    HELD = "held"
    """Some recipient is held (the others may still be delivered)."""
    DELIVERED = "delivered"
    """Every recipient is finished and none bounced."""
    BOUNCED = "bounced"
    """Every recipient is finished and at least one bounced."""


# Each state by its stored string: the records below turn what SQLite and JSON give back into
# members with a dict lookup (calling the enum costs several times more, on every listed row).
_RECIPIENT_STATES = {state.value: state for state in RecipientState}
_MESSAGE_STATES = {state.value: state for state in MessageState}

OutcomeState = Literal["queued", "deferred", "delivered", "bounced", "held"]
"""A `RecipientState` value as callers write it in a `RecipientOutcome` (a literal string)."""

#: Message states that are not finished; `relaybox queue` lists these, as mailq does.
UNFINISHED_STATES: tuple[MessageState, ...] = (
    MessageState.QUEUED,
    MessageState.ACTIVE,
    MessageState.DEFERRED,
    MessageState.HELD,
)
#: Every state a message can be in; a listing of "all" walks each state's index in turn.
ALL_STATES: tuple[MessageState, ...] = (
    *UNFINISHED_STATES,
    MessageState.DELIVERED,
    MessageState.BOUNCED,
)


class SpoolError(Exception):
    """The spool cannot be opened or written; callers answer 451 and keep running."""


@dataclass(frozen=True)
class NewMessage:
    """Everything the inbound side knows about a message at the end of DATA."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    """The whole message as stored: Received: header first, CRLF line endings."""
    session_id: str
    listener: str
    client_ip: str
    client_port: int
    helo: str
    auth_user: str | None
    tls: str | None
    body_8bit: bool
    smtputf8: bool
    arrived_at: float
    """When the message arrived, from the receiving side's clock (the engine's)."""
    transcript: tuple[TranscriptLine, ...] = ()
    """The session's dialogue up to this message, stored in the same commit."""
    queue_id: str = field(default_factory=new_queue_id)
    is_bounce: bool = False
    """A delivery status notification relaybox generated (sent with the null sender)."""
    subject: str | None = None
    """The Subject: as listed (`headers.subject_line`); None: read from `data` when stored."""


@dataclass(frozen=True)
class MessageRow:
    """One line of the queue listing."""

    id: int
    queue_id: str
    arrived_at: float
    sender: str
    size: int
    state: MessageState
    rcpt_count: int
    first_rcpt: str
    attempts: int
    next_attempt_at: float | None
    last_reply: str | None
    subject: str = ""
    """One line of safe text (decoded, control characters escaped, cut at 200 characters);
    empty for a message stored before relaybox kept subjects."""

    def __post_init__(self) -> None:
        # SQLite and the admin socket hand back plain strings; the record carries the enum.
        object.__setattr__(self, "state", _MESSAGE_STATES[self.state])


@dataclass(frozen=True)
class Overview:
    """The queue at a glance (the UI's status bar)."""

    by_state: dict[str, int]
    delivered_since: int
    bounced_since: int
    oldest_deferred_at: float | None


@dataclass(frozen=True)
class RecipientRow:
    """One recipient of a message and how far it got."""

    address: str
    state: RecipientState
    attempts: int
    next_attempt_at: float | None
    last_reply: str | None
    updated_at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", _RECIPIENT_STATES[self.state])


@dataclass(frozen=True)
class MessageDetail:
    """Everything `relaybox show` and the inspector display about one message."""

    row: MessageRow
    recipients: tuple[RecipientRow, ...]
    listener: str
    session_id: str
    client_ip: str
    client_port: int
    helo: str
    auth_user: str | None
    tls: str | None
    body_8bit: bool
    smtputf8: bool
    headers: tuple[tuple[str, str], ...]
    inbound_transcript: tuple[TranscriptLine, ...]
    attempts: tuple[AttemptRow, ...] = ()
    """Every delivery attempt, oldest first."""
    is_bounce: bool = False


@dataclass(frozen=True)
class AttemptRow:
    """One delivery attempt of a message to one next hop, with its whole dialogue."""

    started_at: float
    finished_at: float
    destination: str
    """The route's next hop: `mx:example.org` or `smarthost:smtp.example.net:587`."""
    host: str | None
    ip: str | None
    port: int | None
    tls: str | None
    recipients: tuple[str, ...]
    outcome: str
    """`delivered`, `deferred`, `bounced` or `mixed` (per-recipient replies differed)."""
    reply: str | None
    transcript: tuple[TranscriptLine, ...]


@dataclass(frozen=True)
class PendingRecipient:
    """A recipient still to be delivered, as the scheduler sees it."""

    idx: int
    address: str
    state: RecipientState
    attempts: int
    last_reply: str | None
    released: bool = False
    """An admin released it: it goes past `hold` routes (see `Config.route_for`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", _RECIPIENT_STATES[self.state])


@dataclass(frozen=True)
class DeliveryJob:
    """One message as loaded for a delivery attempt (its due recipients only)."""

    message_id: int
    queue_id: str
    sender: str
    arrived_at: float
    data: bytes
    body_8bit: bool
    smtputf8: bool
    is_bounce: bool
    warned_at: float | None
    recipients: tuple[PendingRecipient, ...]
    signatures: Mapping[str, bytes] = field(default_factory=dict)
    """DKIM-Signature fields made by an earlier attempt, by variant: `""` for the message
    as received, or the From: address a route rewrote it to."""


@dataclass(frozen=True)
class RecipientOutcome:
    """What became of one recipient in an attempt."""

    idx: int
    state: OutcomeState
    reply: str
    next_attempt_at: float | None = None
    destination: str | None = None
    attempted: bool = True
    """False when nothing was sent for it (held by a route, say): the attempt count stays."""
    rcpt_reply: bool = False
    """`reply` is the next hop's answer to this recipient's RCPT (not DNS, MAIL, DATA or
    relaybox's own words): only such a reply may put the recipient on the suppression list."""


@dataclass(frozen=True)
class SuppressionRow:
    """A recipient that mail is refused to, and why."""

    address: str
    reason: str
    created_at: float
    expires_at: float | None


@dataclass(frozen=True)
class MessageFilter:
    """Which messages: one type for every listing and bulk action (as mox's queue.Filter)."""

    states: tuple[str, ...] = UNFINISHED_STATES
    """Message states to include (`MessageState` values); empty means all."""
    text: str = ""
    """Substring of the queue ID, sender, a recipient, the subject or the last reply
    (case-insensitive)."""
    domain: str = ""
    """Only messages with a recipient in this domain (exact, case-insensitive)."""
    queue_ids: tuple[str, ...] = ()
    """Only these messages."""
    recipients: tuple[str, ...] = ()
    """Only messages to one of these addresses (case-insensitive).

    With `domain`, this also narrows what an action on recipients (retry, hold, release,
    bounce) touches to the recipients it names: "retry everything deferred to example.com"
    leaves the message's other recipients alone.
    """
