"""The queue stage: the durable spool of messages and their recipients' states.

Everything outside this package imports from here (`from relaybox.queue import Spool`); the
modules inside are the spool's parts: `model` (records and states), `schema` (tables,
migrations, connections), `writer` (group commit), `arrival`, `listing`, `detail`, `jobs`,
`outcomes` (the state machine), `actions`, `suspension`, `suppression`, and `spool`, which
composes them.
"""

from relaybox.queue.listing import SORT_COLUMNS
from relaybox.queue.model import (
    ALL_STATES,
    UNFINISHED_STATES,
    AttemptRow,
    DeliveryJob,
    MessageDetail,
    MessageFilter,
    MessageRow,
    MessageState,
    NewMessage,
    OutcomeState,
    Overview,
    PendingRecipient,
    RecipientOutcome,
    RecipientRow,
    RecipientState,
    SpoolError,
    SuppressionRow,
)
from relaybox.queue.schema import MIGRATIONS, SCHEMA_VERSION
from relaybox.queue.spool import Spool

__all__ = [
    "ALL_STATES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SORT_COLUMNS",
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
    "Spool",
    "SpoolError",
    "SuppressionRow",
]
