"""The state machine: a message's state, next attempt and finish time follow from its recipients'.

Runs `outcomes.refresh_message` on a real spool file through the writer's kind of connection,
with recipients set to each mix of states.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaybox.queue import RecipientOutcome
from relaybox.queue.arrival import insert_message
from relaybox.queue.outcomes import record_attempt, record_delivered, refresh_message
from relaybox.queue.schema import MIGRATIONS, connect, migrate

from .support.spool import new_message

NOW = 1_800_000_100.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    opened = connect(tmp_path / "spool.sqlite", readonly=False)
    migrate(opened, MIGRATIONS)
    yield opened
    opened.close()


def message_with(conn: sqlite3.Connection, *states: str) -> int:
    """A message whose recipients are in `states`, the n-th due at NOW + n."""
    recipients = tuple(f"r{i}@example.org" for i in range(len(states)))
    message_id, _ = insert_message(conn, new_message(recipients=recipients))
    for idx, state in enumerate(states):
        conn.execute(
            "UPDATE recipients SET state = ?, next_attempt_at = ?, attempts = ?"
            " WHERE message_id = ? AND idx = ?",
            (state, NOW + idx, idx, message_id, idx),
        )
    return message_id


def message_columns(conn: sqlite3.Connection, message_id: int) -> tuple[str, float | None, int]:
    state, next_at, attempts = conn.execute(
        "SELECT state, next_attempt_at, attempts FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return state, next_at, attempts


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (("delivered", "held", "deferred", "queued"), "held"),
        (("queued", "deferred", "bounced"), "deferred"),
        (("delivered", "queued", "bounced"), "queued"),
        (("delivered", "bounced"), "bounced"),
        (("delivered", "delivered"), "delivered"),
    ],
)
def test_message_state_is_the_highest_of_held_deferred_queued_then_finished(
    conn: sqlite3.Connection, states: tuple[str, ...], expected: str
) -> None:
    message_id = message_with(conn, *states)

    refresh_message(conn, message_id, NOW)

    assert message_columns(conn, message_id)[0] == expected


def test_next_attempt_is_the_soonest_of_the_queued_or_deferred_recipients(
    conn: sqlite3.Connection,
) -> None:
    """A held recipient is never due, so it does not pull the message's next attempt forward."""
    message_id = message_with(conn, "held", "delivered", "deferred", "queued")

    refresh_message(conn, message_id, NOW)

    assert message_columns(conn, message_id) == ("held", NOW + 2, 3)


def test_a_message_with_only_held_recipients_is_never_due(conn: sqlite3.Connection) -> None:
    message_id = message_with(conn, "held", "held")

    refresh_message(conn, message_id, NOW)

    assert message_columns(conn, message_id)[:2] == ("held", None)


def test_a_finished_message_keeps_the_time_it_first_finished(conn: sqlite3.Connection) -> None:
    message_id = message_with(conn, "delivered", "bounced")

    refresh_message(conn, message_id, NOW)
    refresh_message(conn, message_id, NOW + 60)

    finished_at, next_at = conn.execute(
        "SELECT finished_at, next_attempt_at FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    assert (finished_at, next_at) == (NOW, None)


def test_delivered_early_then_the_whole_attempt_counts_one_attempt(
    conn: sqlite3.Connection,
) -> None:
    """`record_delivered` marks what the next hop took at once; the attempt's record that
    follows leaves those recipients as they are (one attempt, the first reply) and derives
    the message's state, which reads as before until then."""
    message_id = message_with(conn, "queued", "queued")
    taken = RecipientOutcome(0, "delivered", "250 2.0.0 taken", None, "smarthost:h:25")
    record_delivered(conn, message_id, [taken], now=NOW)
    assert conn.execute(
        "SELECT state, attempts, last_reply FROM recipients WHERE message_id = ? AND idx = 0",
        (message_id,),
    ).fetchone() == ("delivered", 1, "250 2.0.0 taken")
    assert message_columns(conn, message_id)[0] == "queued"
    recorded = record_attempt(
        conn,
        message_id,
        [
            RecipientOutcome(0, "delivered", "250 2.0.0 again", None, "smarthost:h:25"),
            RecipientOutcome(1, "deferred", "451 4.3.0 later", NOW + 60, "smarthost:h:25"),
        ],
        [],
        now=NOW,
        new_messages=[],
        suppress=[],
        warned=False,
        signatures=None,
    )
    assert recorded
    rows = conn.execute(
        "SELECT state, attempts, last_reply FROM recipients WHERE message_id = ? ORDER BY idx",
        (message_id,),
    ).fetchall()
    assert rows == [("delivered", 1, "250 2.0.0 taken"), ("deferred", 2, "451 4.3.0 later")]
    assert message_columns(conn, message_id)[0] == "deferred"
