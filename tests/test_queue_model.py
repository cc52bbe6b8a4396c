"""The spool's states: their values are the strings stored in SQLite and sent as JSON, and the
records carry them as enums however they were built."""

from __future__ import annotations

import json
from typing import get_args

from relaybox.queue import (
    ALL_STATES,
    UNFINISHED_STATES,
    MessageRow,
    MessageState,
    OutcomeState,
    PendingRecipient,
    RecipientRow,
    RecipientState,
)


def test_state_values_are_the_strings_in_every_stored_spool() -> None:
    """Changing one of these strings would strand the messages of every spool on disk."""
    assert [s.value for s in MessageState] == [
        "queued",
        "active",
        "deferred",
        "held",
        "delivered",
        "bounced",
    ]
    assert [s.value for s in RecipientState] == [
        "queued",
        "deferred",
        "held",
        "delivered",
        "bounced",
    ]


def test_unfinished_and_all_states_are_those_mailq_and_the_admin_socket_name() -> None:
    assert UNFINISHED_STATES == ("queued", "active", "deferred", "held")
    assert ALL_STATES == (*UNFINISHED_STATES, "delivered", "bounced")
    assert set(ALL_STATES) == set(MessageState)


def test_an_outcome_may_name_every_recipient_state() -> None:
    """`OutcomeState` is how callers spell a `RecipientState`: the two lists must agree."""
    assert set(get_args(OutcomeState)) == {s.value for s in RecipientState}


def test_states_read_and_write_as_their_plain_strings() -> None:
    state = MessageState.DEFERRED

    assert state == "deferred" and f"{state}" == "deferred" and str(state) == "deferred"
    assert {"deferred": 1}[state] == 1
    assert json.dumps({state: [state]}) == '{"deferred": ["deferred"]}'


def test_rows_built_from_plain_strings_carry_the_enum() -> None:
    """The admin socket's client builds rows from JSON: they must match the in-process ones."""
    row = MessageRow(1, "Q1", 1.0, "a@example.com", 10, "held", 1, "b@example.org", 0, None, None)
    rcpt = RecipientRow("b@example.org", "deferred", 1, 2.0, "451 busy", 1.0)
    pending = PendingRecipient(0, "b@example.org", "queued", 0, None)

    assert row.state is MessageState.HELD
    assert rcpt.state is RecipientState.DEFERRED
    assert pending.state is RecipientState.QUEUED
