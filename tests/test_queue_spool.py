"""The spool through its public API: what is stored reads back, writes are durable and grouped,
schemas migrate forward, the suppression list answers.

Every test runs on a real SQLite file in `tmp_path`; the only private doors used are
`spool._write` and `spool._read` (to set up states the public API does not reach yet).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from relaybox.admin.service import Admin
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import MIGRATIONS, SCHEMA_VERSION, MessageFilter, Spool, SpoolError
from relaybox.queue.listing import trigram_query

from .support.spool import (
    MESSAGE,
    check_trigram_indexes,
    insert_old_messages,
    new_message,
    queue_ids_matching,
)

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
    await old._write(lambda c: insert_old_messages(c, (1, 2)))
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


async def test_a_version_6_spool_opens_with_its_messages_in_the_trigram_index(
    db_path: Path,
) -> None:
    """Migration 6 -> 7 adds the subject (empty for the messages already there) and indexes
    the messages already there, last replies included: a filter finds them through the
    index, and a message deleted afterwards leaves it."""
    old = await Spool.open(db_path, migrations=MIGRATIONS[:6])
    await old._write(lambda c: insert_old_messages(c, (1, 2, 3)))
    await old._write(
        lambda c: c.execute(
            "UPDATE messages SET last_reply = '451 4.7.1 greylisted, come back later' WHERE id = 3"
        )
    )
    await old.close()

    spool = await Spool.open(db_path)
    try:
        assert spool.migrated_from == 6
        rows = await spool.list_messages(MessageFilter(text="greylisted"))
        assert [(r.queue_id, r.subject) for r in rows] == [("0OLDQUEUEID03", "")]
        indexed = await spool._read(
            lambda c: c.execute(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid",
                (trigram_query("second"),),
            ).fetchall()
        )
        assert indexed == [(1,), (2,), (3,)]
        replies = await spool._read(
            lambda c: c.execute(
                "SELECT rowid FROM replies_fts WHERE replies_fts MATCH ?",
                (trigram_query("greylisted"),),
            ).fetchall()
        )
        assert replies == [(3,)]
        assert await queue_ids_matching(spool, MessageFilter(text="second2@")) == {"0OLDQUEUEID02"}
        await spool.update_recipients(
            MessageFilter(queue_ids=("0OLDQUEUEID02",)), "delete", now=2.0
        )
        assert await queue_ids_matching(spool, MessageFilter(text="second2@")) == set()
        await check_trigram_indexes(spool)
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
