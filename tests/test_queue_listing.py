"""Listings of the queue: filters select the right messages, keyset pages return each message
once in order, and every page of a large queue is an index range.

Every test runs on a real SQLite file in `tmp_path`; `spool._write` and `spool._read` set up
states and trace the readers' SQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from relaybox.admin.service import Admin
from relaybox.queue import (
    SORT_COLUMNS,
    UNFINISHED_STATES,
    MessageFilter,
    MessageRow,
    Spool,
    listing,
)

from .support.spool import (
    MESSAGE,
    check_trigram_indexes,
    new_message,
    queue_ids_matching,
    set_column,
    sort_key,
)

# ---------------------------------------------------------------------- keyset pagination


async def seed_for_paging(spool: Spool, count: int = 250) -> None:
    """Messages with many equal sizes, senders and arrival times (ties the keys must break)."""
    await asyncio.gather(
        *(
            spool.store_message(
                new_message(
                    sender=f"sender{i % 7}@example.com",
                    data=MESSAGE + b"x" * (i % 5),
                    arrived_at=1_800_000_000.0 + i // 3,
                )
            )
            for i in range(count)
        )
    )


async def page_through(
    admin: Admin, flt: MessageFilter, sort: str, descending: bool
) -> list[MessageRow]:
    rows: list[MessageRow] = []
    after = None
    for _ in range(10):
        page = await admin.list_messages(
            flt, sort=sort, descending=descending, after=after, limit=100
        )
        rows.extend(page.rows)
        if page.next_after is None:
            return rows
        after = page.next_after
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", ["arrived", "size", "sender", "next_attempt"])
async def test_keyset_pages_return_every_message_once_in_order(
    spool: Spool, sort: str, descending: bool
) -> None:
    """next_attempt is NULL for every message here: the key is then the row id alone."""
    await seed_for_paging(spool)

    rows = await page_through(Admin(spool), MessageFilter(), sort, descending)

    assert len(rows) == 250
    assert len({r.id for r in rows}) == 250
    keys = [sort_key(r, sort) for r in rows]
    assert keys == sorted(keys, reverse=descending)


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", list(SORT_COLUMNS))
async def test_keyset_pages_merge_several_states_and_null_keys(
    spool: Spool, sort: str, descending: bool
) -> None:
    """Messages in three states, some with no next attempt or last reply, keys with ties."""
    await seed_for_paging(spool)
    await set_column(spool, "UPDATE messages SET state = 'deferred' WHERE id % 3 = 1")
    await set_column(spool, "UPDATE messages SET state = 'held' WHERE id % 3 = 2")
    await set_column(
        spool,
        "UPDATE messages SET attempts = id % 4,"
        " next_attempt_at = CASE WHEN id % 5 < 2 THEN NULL ELSE 1800000000 + id % 9 END,"
        " first_rcpt = 'rcpt' || (id % 6) || '@example.org',"
        " last_reply = CASE WHEN id % 4 = 0 THEN NULL ELSE '451 4.7.1 busy ' || (id % 7) END",
    )

    rows = await page_through(Admin(spool), MessageFilter(), sort, descending)

    assert len({r.id for r in rows}) == len(rows) == 250
    keys = [sort_key(r, sort) for r in rows]
    assert keys == sorted(keys, reverse=descending)


async def test_last_full_page_is_followed_by_an_empty_one(spool: Spool) -> None:
    await seed_for_paging(spool, count=200)
    admin = Admin(spool)

    first = await admin.list_messages(limit=100)
    second = await admin.list_messages(after=first.next_after, limit=100)
    third = await admin.list_messages(after=second.next_after, limit=100)

    assert len(first.rows) == len(second.rows) == 100
    assert third.rows == () and third.next_after is None


async def test_unknown_sort_is_refused(spool: Spool) -> None:
    with pytest.raises(ValueError, match="cannot sort by 'colour'"):
        await spool.list_messages(MessageFilter(), sort="colour")


# ---------------------------------------------------------------------- filters and counts


async def test_filter_by_state(spool: Spool) -> None:
    held = await spool.store_message(new_message())
    await spool.store_message(new_message())
    await set_column(spool, f"UPDATE messages SET state = 'held' WHERE queue_id = '{held}'")

    assert await queue_ids_matching(spool, MessageFilter(states=("held",))) == {held}


async def test_filter_by_text_matches_queue_id_sender_and_recipient(spool: Spool) -> None:
    by_sender = await spool.store_message(new_message(sender="Marketing@Shop.example"))
    by_rcpt = await spool.store_message(new_message(recipients=("x@a.test", "Finance@b.test")))
    other = await spool.store_message(new_message())

    assert await queue_ids_matching(spool, MessageFilter(text="marketing")) == {by_sender}
    assert await queue_ids_matching(spool, MessageFilter(text="finance@B")) == {by_rcpt}
    assert await queue_ids_matching(spool, MessageFilter(text=other[-6:])) == {other}


async def test_filter_text_treats_percent_and_underscore_literally(spool: Spool) -> None:
    percent = await spool.store_message(new_message(sender="100%off@example.com"))
    underscore = await spool.store_message(new_message(sender="no_reply@example.com"))
    await spool.store_message(new_message(sender="noXreply@example.com"))
    await spool.store_message(new_message(sender="100xoff@example.com"))

    assert await queue_ids_matching(spool, MessageFilter(text="%")) == {percent}
    assert await queue_ids_matching(spool, MessageFilter(text="0%o")) == {percent}
    assert await queue_ids_matching(spool, MessageFilter(text="o_r")) == {underscore}


INVOICE = MESSAGE.replace(b"Subject: =?utf-8?q?caf=C3=A9?=", b"Subject: Invoice 42")


async def test_filter_by_text_matches_the_subject(spool: Spool) -> None:
    """The subject is stored at arrival (encoded words decoded) and listed; the filter finds
    it by the trigram index (3 characters and more) and by LIKE (fewer)."""
    invoice = await spool.store_message(new_message(data=INVOICE))
    cafe = await spool.store_message(new_message())  # MESSAGE's subject: =?utf-8?q?caf=C3=A9?=

    assert await queue_ids_matching(spool, MessageFilter(text="Invoice")) == {invoice}
    assert await queue_ids_matching(spool, MessageFilter(text="invoice 4")) == {invoice}
    assert await queue_ids_matching(spool, MessageFilter(text=" 4")) == {invoice}
    assert await queue_ids_matching(spool, MessageFilter(text="Café")) == {cafe}
    assert await spool.count_messages(MessageFilter(text="nvoice")) == 1
    rows = await spool.list_messages(MessageFilter(), sort="arrived")
    assert {r.queue_id: r.subject for r in rows} == {invoice: "Invoice 42", cafe: "café"}
    detail = await spool.message_detail(invoice)
    assert detail is not None and detail.row.subject == "Invoice 42"


async def test_the_subject_is_stored_safe_and_short(spool: Spool) -> None:
    """A client's subject: an encoded ESC and BEL are shown as escapes, never stored as
    control characters; an encoded CR LF is one space (one line), and a long one is cut."""
    hostile = MESSAGE.replace(
        b"Subject: =?utf-8?q?caf=C3=A9?=",
        b"Subject: =?utf-8?q?a=1B]0;owned=07=0D=0Ab?= " + b"x" * 500,
    )
    queue_id = await spool.store_message(new_message(data=hostile))

    (row,) = await spool.list_messages(MessageFilter(text="owned"))
    assert row.queue_id == queue_id
    assert row.subject.startswith("a\\x1b]0;owned\\x07 b xxx")
    assert row.subject.isprintable() and len(row.subject) == 200


async def test_the_trigram_index_follows_the_last_reply_and_deletion(spool: Spool) -> None:
    """The index changes in the transaction that changes a message: a new last reply is
    found and the old one no longer is; a deleted message is gone from it."""
    queue_id = await spool.store_message(new_message())
    other = await spool.store_message(new_message())
    where = f"WHERE queue_id = '{queue_id}'"
    await set_column(spool, f"UPDATE messages SET last_reply = '451 4.7.1 greylisted' {where}")
    assert await queue_ids_matching(spool, MessageFilter(text="greylisted")) == {queue_id}

    await set_column(spool, f"UPDATE messages SET last_reply = '421 too busy' {where}")
    assert await queue_ids_matching(spool, MessageFilter(text="greylisted")) == set()
    assert await queue_ids_matching(spool, MessageFilter(text="too busy")) == {queue_id}
    await check_trigram_indexes(spool)

    # Delivered: its reply leaves the index of replies (a "250 ... queued as" is what most
    # mail ends with); a view with delivered mail in it still finds it, by LIKE.
    delivered = "UPDATE messages SET state = 'delivered', last_reply = '250 2.0.0 queued as 4XYZ'"
    await set_column(spool, f"{delivered} {where}")
    await check_trigram_indexes(spool)
    assert await queue_ids_matching(spool, MessageFilter(text="as 4XYZ", states=())) == {queue_id}
    assert await queue_ids_matching(spool, MessageFilter(text="as 4XYZ")) == set()
    await set_column(spool, f"UPDATE messages SET state = 'deferred' {where}")  # (retried)
    assert await queue_ids_matching(spool, MessageFilter(text="as 4XYZ")) == {queue_id}
    await check_trigram_indexes(spool)

    await spool.update_recipients(MessageFilter(queue_ids=(queue_id,)), "delete", now=1.0)
    assert await queue_ids_matching(spool, MessageFilter(text="too busy")) == set()
    assert await queue_ids_matching(spool, MessageFilter(text="alice@")) == {other}
    await check_trigram_indexes(spool)


async def test_a_filter_with_few_matches_starts_from_the_index_and_selects_the_same(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few matches: the listing reads them from the trigram index; many (FEW_MATCHES set to
    0 here): it walks the sort's index. Both select exactly what LIKE selects (the index
    also folds the case of É, LIKE does not: "CAFÉ" finds nothing either way)."""
    ids = [await spool.store_message(new_message(sender=f"s{i}@example.com")) for i in range(6)]
    await set_column(spool, f"UPDATE messages SET state = 'held' WHERE queue_id = '{ids[0]}'")
    filters = [
        MessageFilter(text="s3@example"),
        MessageFilter(text="example.com", states=("held",)),
        MessageFilter(text="CAFÉ"),
        MessageFilter(text="Café"),
        MessageFilter(text='a"b'),
        MessageFilter(text="s1@", domain="example.org"),
    ]

    def source(flt: MessageFilter) -> str:
        return spool._read(lambda c: listing._source(c, flt)[0])  # type: ignore[return-value]

    assert (await source(filters[0])).startswith("json_each")
    assert (await source(MessageFilter(text="s3"))).startswith("messages")  # too short
    few = [await queue_ids_matching(spool, flt) for flt in filters]
    counts = [await spool.count_messages(flt) for flt in filters]
    monkeypatch.setattr(listing, "FEW_MATCHES", 0)
    assert (await source(filters[0])).startswith("messages")
    assert [await queue_ids_matching(spool, flt) for flt in filters] == few
    assert [await spool.count_messages(flt) for flt in filters] == counts
    assert few == [{ids[3]}, {ids[0]}, set(), set(ids), set(), {ids[1]}]


async def test_filter_by_domain_ignores_case(spool: Spool) -> None:
    match = await spool.store_message(new_message(recipients=("a@other.test", "b@Example.ORG")))
    await spool.store_message(new_message(recipients=("c@example.org.uk",)))

    assert await queue_ids_matching(spool, MessageFilter(domain="EXAMPLE.org")) == {match}
    assert await queue_ids_matching(spool, MessageFilter(domain="example.org.")) == {match}


async def test_filter_by_queue_ids(spool: Spool) -> None:
    ids = [await spool.store_message(new_message()) for _ in range(4)]

    assert await queue_ids_matching(spool, MessageFilter(queue_ids=(ids[0], ids[2]))) == {
        ids[0],
        ids[2],
    }


async def test_count_messages_and_count_by_state(spool: Spool) -> None:
    for _ in range(5):
        await spool.store_message(new_message())
    await spool.store_message(new_message(sender="other@example.com"))
    await set_column(spool, "UPDATE messages SET state = 'delivered' WHERE id <= 2")

    assert await spool.count_messages(MessageFilter()) == 4
    assert await spool.count_messages(MessageFilter(states=())) == 6
    assert await spool.count_messages(MessageFilter(text="other@")) == 1
    assert await spool.count_by_state() == {"queued": 4, "delivered": 2}


async def test_recipients_of_many_messages(spool: Spool) -> None:
    first = await spool.store_message(new_message(recipients=("a@x.test", "b@y.test")))
    second = await spool.store_message(new_message(recipients=("c@z.test",)))
    rows = {r.queue_id: r.id for r in await Admin(spool).list_all()}

    found = await spool.recipients_of([rows[first], rows[second], 999_999])

    assert [r.address for r in found[rows[first]]] == ["a@x.test", "b@y.test"]
    assert [r.address for r in found[rows[second]]] == ["c@z.test"]
    assert found[999_999] == []
    assert all(r.state == "queued" for rs in found.values() for r in rs)


# ---------------------------------------------------------------------- scale: query plans

SCALE = 100_000
STATES = ("queued", "deferred", "held", "active", "delivered", "bounced")


async def seed_fast(spool: Spool, count: int) -> None:
    """`count` messages in one transaction (no bodies: listings never read them)."""

    def insert(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO messages (id, queue_id, arrived_at, sender, size, state, rcpt_count,"
            " first_rcpt, attempts, next_attempt_at, session_id, listener, client_ip,"
            " client_port, helo) VALUES (?, ?, ?, ?, ?, ?, 1, 'r@example.org', ?, ?, 'S',"
            " 'l', '127.0.0.1', 25, 'h')",
            (
                (
                    i,
                    f"Q{i:012d}",
                    1_800_000_000.0 + i // 2,
                    f"sender{i % 97}@example.com",
                    1000 + i % 500,
                    STATES[i % len(STATES)],
                    i % 7,
                    None if i % 3 else 1_800_000_000.0 + i % 1000,
                )
                for i in range(1, count + 1)
            ),
        )

    await spool._write(insert)


class PlanRecorder:
    """Records the SQL every reader connection runs (expanded, so it can be EXPLAINed)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, sql: str) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            with self._lock:
                self.statements.append(sql)


async def record_both_readers(spool: Spool, recorder: PlanRecorder) -> None:
    """Trace both reader connections: two reads held at a barrier make both threads open one."""
    barrier = threading.Barrier(2, timeout=10)
    await asyncio.gather(*(spool._read(lambda c: barrier.wait()) for _ in range(2)))
    assert len(spool._reader_conns) == 2
    for conn in spool._reader_conns:
        conn.set_trace_callback(recorder)


def plan_of(path: Path, sql: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    finally:
        conn.close()


async def test_listings_of_a_large_queue_walk_an_index(spool: Spool, db_path: Path) -> None:
    """With 100,000 messages, every page (first or after a key) is an index range.

    No query scans the messages table without an index or sorts the queue in a temporary
    B-tree: both would make each keypress in the TUI cost time in proportion to the queue.
    """
    await seed_fast(spool, SCALE)
    admin = Admin(spool)
    recorder = PlanRecorder()
    await record_both_readers(spool, recorder)
    filters = {
        "one state": MessageFilter(states=("deferred",)),
        "unfinished": MessageFilter(states=UNFINISHED_STATES),
        "all": MessageFilter(states=()),
    }

    checked = 0
    for name, flt in filters.items():
        for sort in SORT_COLUMNS:
            for descending in (False, True):
                first = await admin.list_messages(flt, sort=sort, descending=descending, limit=100)
                assert first.next_after is not None, (name, sort)
                second = await admin.list_messages(
                    flt, sort=sort, descending=descending, after=first.next_after, limit=100
                )
                assert len(second.rows) == 100
                for sql in recorder.statements:
                    plan = plan_of(db_path, sql)
                    assert not any("TEMP B-TREE" in step for step in plan), (name, sql, plan)
                    assert not any(step.strip() == "SCAN m" for step in plan), (name, sql, plan)
                    assert any("INDEX" in step for step in plan), (name, sql, plan)
                    checked += 1
                recorder.statements.clear()
    assert checked >= len(filters) * len(SORT_COLUMNS) * 2 * 2
