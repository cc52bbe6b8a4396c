"""The spool: what is stored reads back, writes are durable and grouped, listings page right.

Every test runs on a real SQLite file in `tmp_path`; the only private doors used are
`spool._write` and `spool._read` (to set up states and plans the public API does not reach yet).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relaybox.admin.service import Admin
from relaybox.queue.spool import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SORT_COLUMNS,
    UNFINISHED_STATES,
    MessageFilter,
    MessageRow,
    NewMessage,
    Spool,
    SpoolError,
    TranscriptLine,
)

MESSAGE = (
    b"Received: from client.example.test ([127.0.0.1]) by relay.example.test\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello,\r\n\xc3\xa9t\xc3\xa9 in 8 bits, a NUL \x00 and a lone dot:\r\n.\r\n"
)


def new_message(**overrides: Any) -> NewMessage:
    """A message as the inbound side would hand it over; `overrides` replace fields."""
    base = NewMessage(
        sender="alice@example.com",
        recipients=("bob@example.org", "carol@example.net"),
        data=MESSAGE,
        session_id="S1",
        listener="127.0.0.1:2525",
        client_ip="127.0.0.1",
        client_port=40000,
        helo="client.example.test",
        auth_user=None,
        tls=None,
        body_8bit=True,
        smtputf8=False,
        arrived_at=1_800_000_000.0,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "spool.sqlite"


@pytest.fixture
async def spool(db_path: Path) -> AsyncIterator[Spool]:
    opened = await Spool.open(db_path)
    yield opened
    await opened.close()


async def set_column(spool: Spool, sql: str) -> None:
    """Change stored rows the way delivery will (it has no public API yet)."""
    await spool._write(lambda conn: conn.execute(sql))


# ---------------------------------------------------------------------- storing and reading


async def test_stored_message_reads_back_in_detail(spool: Spool) -> None:
    transcript = (
        TranscriptLine(1_800_000_000.0, "-", "connect from [127.0.0.1]:40000"),
        TranscriptLine(1_800_000_000.5, "C", "EHLO client.example.test"),
        TranscriptLine(1_800_000_001.0, "S", "250 relay.example.test"),
    )
    queue_id = await spool.store_message(new_message(transcript=transcript, tls="TLSv1.3"))

    detail = await spool.message_detail(queue_id)

    assert detail is not None
    assert detail.row.queue_id == queue_id
    assert detail.row.sender == "alice@example.com"
    assert detail.row.size == len(MESSAGE)
    assert detail.row.state == "queued"
    assert detail.row.rcpt_count == 2
    assert detail.row.first_rcpt == "bob@example.org"
    assert detail.row.arrived_at == 1_800_000_000.0
    assert [(r.address, r.state) for r in detail.recipients] == [
        ("bob@example.org", "queued"),
        ("carol@example.net", "queued"),
    ]
    assert (detail.listener, detail.session_id, detail.helo) == (
        "127.0.0.1:2525",
        "S1",
        "client.example.test",
    )
    assert (detail.client_ip, detail.client_port, detail.tls) == ("127.0.0.1", 40000, "TLSv1.3")
    assert detail.body_8bit is True and detail.smtputf8 is False
    assert dict(detail.headers)["Subject"] == "=?utf-8?q?caf=C3=A9?="
    assert [k for k, _ in detail.headers] == ["Received", "From", "To", "Subject", "Message-ID"]
    assert detail.inbound_transcript == transcript


async def test_message_data_returns_the_exact_bytes(spool: Spool) -> None:
    queue_id = await spool.store_message(new_message())

    assert await spool.message_data(queue_id) == MESSAGE
    assert await spool.message_data(queue_id, limit=10) == MESSAGE[:10]


async def test_utf8_headers_read_back_as_text(spool: Spool) -> None:
    """RFC 6532: an SMTPUTF8 message's headers are UTF-8, and show as such."""
    data = "From: Zoë <zoë@exämple.com>\r\nSubject: café\r\n\r\nbody\r\n".encode()
    queue_id = await spool.store_message(new_message(data=data, smtputf8=True))

    detail = await spool.message_detail(queue_id)

    assert detail is not None
    assert detail.headers == (("From", "Zoë <zoë@exämple.com>"), ("Subject", "café"))


async def test_unknown_queue_id_has_no_detail_and_no_data(spool: Spool) -> None:
    assert await spool.message_detail("0000000000000") is None
    assert await spool.message_data("0000000000000") is None


async def test_transcript_line_with_a_newline_reads_back_as_one_line(spool: Spool) -> None:
    line = TranscriptLine(1_800_000_000.0, "C", "HELO a\nb\rc")
    queue_id = await spool.store_message(new_message(transcript=(line,)))

    detail = await spool.message_detail(queue_id)

    assert detail is not None
    assert [(t.direction, t.text) for t in detail.inbound_transcript] == [("C", "HELO a\\nb\\rc")]


async def test_new_spool_file_is_private(spool: Spool, db_path: Path) -> None:
    assert db_path.stat().st_mode & 0o777 == 0o600


async def test_spool_in_a_directory_with_uri_characters(tmp_path: Path) -> None:
    """Readers open the file by URI: `?`, `#`, `%` and spaces in its path must not matter."""
    directory = tmp_path / "state dir #1 ?x=%20"
    directory.mkdir()
    spool = await Spool.open(directory / "spool.sqlite")
    try:
        queue_id = await spool.store_message(new_message())
        assert await spool.message_data(queue_id) == MESSAGE
    finally:
        await spool.close()


# ---------------------------------------------------------------------- durability


async def test_concurrent_stores_share_commits(spool: Spool) -> None:
    """Group commit: 200 sessions finishing DATA together cost a handful of fsyncs, not 200."""
    before = spool.commits

    queue_ids = await asyncio.gather(*(spool.store_message(new_message()) for _ in range(200)))

    assert len(set(queue_ids)) == 200
    assert spool.commits - before < 20


async def test_stored_messages_survive_close_and_reopen(db_path: Path) -> None:
    spool = await Spool.open(db_path)
    queue_ids = await asyncio.gather(
        *(spool.store_message(new_message(sender=f"s{i}@example.com")) for i in range(200))
    )
    await spool.close()

    reopened = await Spool.open(db_path)
    try:
        rows = await Admin(reopened).list_all(MessageFilter(states=()))
        assert sorted(r.queue_id for r in rows) == sorted(queue_ids)
        assert await reopened.message_data(queue_ids[-1]) == MESSAGE
    finally:
        await reopened.close()


async def test_failed_write_raises_spool_error_and_the_spool_recovers(spool: Spool) -> None:
    await spool.store_message(new_message())
    pages = await spool._write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await spool._write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    big = b"Subject: big\r\n\r\n" + b"x" * 1_000_000 + b"\r\n"

    with pytest.raises(SpoolError, match="full"):
        await spool.store_message(new_message(data=big))

    await spool._write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    queue_id = await spool.store_message(new_message(data=big))
    assert await spool.message_data(queue_id) == big
    assert await spool.count_messages(MessageFilter(states=())) == 2


async def test_one_failing_write_does_not_sink_the_others(spool: Spool) -> None:
    bad = spool._write(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
    good = [spool.store_message(new_message()) for _ in range(5)]

    results = await asyncio.gather(bad, *good, return_exceptions=True)

    assert isinstance(results[0], SpoolError)
    assert all(isinstance(r, str) for r in results[1:])
    assert await spool.count_messages(MessageFilter()) == 5


async def test_store_after_close_raises_spool_error(db_path: Path) -> None:
    spool = await Spool.open(db_path)
    await spool.close()

    with pytest.raises(SpoolError, match="closed"):
        await spool.store_message(new_message())


# ---------------------------------------------------------------------- schema versions

# A test-only second migration; the `;` inside the string must not split the statement.
EXTRA_MIGRATION = """
    ALTER TABLE messages ADD COLUMN note TEXT NOT NULL DEFAULT 'a;b';
    CREATE INDEX messages_by_note ON messages (note);
"""


async def user_version(spool: Spool) -> int:
    return int(await spool._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]))


async def test_new_spool_is_created_at_the_current_version(spool: Spool) -> None:
    assert spool.migrated_from == 0
    assert await user_version(spool) == SCHEMA_VERSION


async def test_older_spool_migrates_forward_on_open(db_path: Path) -> None:
    old = await Spool.open(db_path)
    queue_id = await old.store_message(new_message())
    await old.close()

    spool = await Spool.open(db_path, migrations=[*MIGRATIONS, EXTRA_MIGRATION])
    try:
        assert spool.migrated_from == SCHEMA_VERSION
        assert await user_version(spool) == SCHEMA_VERSION + 1
        notes = await spool._read(lambda c: c.execute("SELECT note FROM messages").fetchall())
        assert notes == [("a;b",)]
        assert await spool.message_data(queue_id) == MESSAGE
    finally:
        await spool.close()


async def test_a_version_3_spool_gets_every_message_searchable_by_text(db_path: Path) -> None:
    """Migration 3 -> 4 fills the text filter's column for the messages already there."""
    old = await Spool.open(db_path, migrations=MIGRATIONS[:3])
    await old._write(
        lambda c: [
            c.execute(
                "INSERT INTO messages (id, queue_id, arrived_at, sender, size, state, rcpt_count,"
                " first_rcpt, session_id, listener, client_ip, client_port, helo, body_8bit,"
                " smtputf8, is_bounce) VALUES (?, ?, 1.0, ?, 10, 'queued', 2, ?, 'S1', 'l',"
                " '127.0.0.1', 1, 'h', 0, 0, 0)",
                (n, f"0OLDQUEUEID0{n}", f"app{n}@office.example", f"first{n}@a.example"),
            )
            and c.executemany(
                "INSERT INTO recipients (message_id, idx, address, domain, state, updated_at)"
                " VALUES (?, ?, ?, ?, 'queued', 1.0)",
                [
                    (n, 0, f"first{n}@a.example", "a.example"),
                    (n, 1, f"second{n}@b.example", "b.example"),
                ],
            )
            for n in (1, 2)
        ]
    )
    await old.close()

    spool = await Spool.open(db_path)
    try:
        assert spool.migrated_from == 3
        for text, want in [
            ("second2@B.example", {"0OLDQUEUEID02"}),
            ("app1@", {"0OLDQUEUEID01"}),
            ("oldqueueid0", {"0OLDQUEUEID01", "0OLDQUEUEID02"}),
            ("nobody", set()),
        ]:
            assert await queue_ids_matching(spool, MessageFilter(text=text)) == want, text
    finally:
        await spool.close()


async def test_spool_from_a_newer_relaybox_is_refused(db_path: Path) -> None:
    newer = await Spool.open(db_path, migrations=[*MIGRATIONS, EXTRA_MIGRATION])
    await newer.close()
    found, known = len(MIGRATIONS) + 1, len(MIGRATIONS)

    with pytest.raises(SpoolError, match=rf"version {found}.*\({known}\)"):
        await Spool.open(db_path)


async def test_open_for_reading_refuses_a_missing_spool(db_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool"):
        await Spool.open_for_reading(db_path)
    assert not db_path.exists()


async def test_open_for_reading_refuses_an_unmigrated_spool(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE unrelated (x)")
    conn.close()

    with pytest.raises(SpoolError, match="start the engine once"):
        await Spool.open_for_reading(db_path)


async def test_open_for_reading_reads_what_the_engine_stored(db_path: Path) -> None:
    engine_spool = await Spool.open(db_path)
    try:
        queue_id = await engine_spool.store_message(new_message())
        reader = await Spool.open_for_reading(db_path)
        try:
            assert await reader.message_data(queue_id) == MESSAGE
        finally:
            await reader.close()
    finally:
        await engine_spool.close()


# ---------------------------------------------------------------------- keyset pagination


def sort_key(row: MessageRow, sort: str) -> tuple[bool, Any, int]:
    """SQLite's order: NULLs first, then values, ties broken by row id."""
    value = getattr(row, SORT_COLUMNS[sort])
    return (value is not None, value, row.id)


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


async def queue_ids_matching(spool: Spool, flt: MessageFilter) -> set[str]:
    return {r.queue_id for r in await Admin(spool).list_all(flt)}


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


# ---------------------------------------------------------------------- suppression list


async def test_suppressed_address_is_found_with_its_reason(spool: Spool) -> None:
    await spool.suppression_add("Gone@Example.com", "550 5.1.1 user unknown")

    reason = await spool.suppression_lookup("gone@example.COM")

    assert reason is not None and reason.startswith("550 5.1.1 user unknown (since ")
    assert await spool.suppression_lookup("other@example.com") is None


async def test_removed_suppression_is_no_longer_found(spool: Spool) -> None:
    await spool.suppression_add("gone@example.com", "bounced")

    assert await spool.suppression_remove("GONE@example.com") is True
    assert await spool.suppression_remove("gone@example.com") is False
    assert await spool.suppression_lookup("gone@example.com") is None


async def test_expired_suppression_is_not_reported_but_still_listed(spool: Spool) -> None:
    await spool.suppression_add("old@example.com", "bounced", expires_at=1_000.0)
    await spool.suppression_add("new@example.com", "bounced", expires_at=4_000_000_000.0)

    assert await spool.suppression_lookup("old@example.com") is None
    assert await spool.suppression_lookup("new@example.com") is not None
    assert await spool.suppression_lookup("new@example.com", now=4_000_000_001.0) is None
    listed = await spool.suppression_list()
    assert [(r.address, r.expires_at) for r in listed] == [
        ("new@example.com", 4_000_000_000.0),
        ("old@example.com", 1_000.0),
    ]


async def test_adding_a_suppression_again_replaces_it(spool: Spool) -> None:
    await spool.suppression_add("a@example.com", "first")
    await spool.suppression_add("a@example.com", "second")

    assert [r.reason for r in await spool.suppression_list()] == ["second"]


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
