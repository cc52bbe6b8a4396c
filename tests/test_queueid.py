"""Queue IDs: short, unique, and in arrival order within a process."""

from __future__ import annotations

import re

from relaybox.message.queueid import new_queue_id

ALPHABET = "0123456789BCDFGHJKMNPQRSTVWXYZ"


def test_ids_are_unique_and_strictly_increasing() -> None:
    ids = [new_queue_id() for _ in range(10_000)]

    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert len(set(ids)) == len(ids)


def test_ids_are_thirteen_letters_of_the_alphabet() -> None:
    pattern = re.compile(f"[{ALPHABET}]{{13}}")

    for _ in range(1000):
        queue_id = new_queue_id()
        assert pattern.fullmatch(queue_id), queue_id
