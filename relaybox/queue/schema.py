"""The spool's SQLite file: its schema and migrations, opening connections, how values are stored.

It creates and upgrades tables and opens connections; it never reads or writes messages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from relaybox.message.transcript import TranscriptLine
from relaybox.queue.model import SpoolError
from relaybox.queue.vacuum import wal_limits

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "connect",
    "decode_transcript",
    "encode_transcript",
    "migrate",
    "sql_list",
]

# Each entry upgrades the schema from its index to index + 1; never edit a released entry.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        queue_id TEXT NOT NULL UNIQUE,
        arrived_at REAL NOT NULL,
        sender TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        rcpt_count INTEGER NOT NULL,
        first_rcpt TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_reply TEXT,
        finished_at REAL,
        session_id TEXT NOT NULL,
        listener TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        client_port INTEGER NOT NULL,
        helo TEXT NOT NULL,
        auth_user TEXT,
        tls TEXT,
        body_8bit INTEGER NOT NULL DEFAULT 0,
        smtputf8 INTEGER NOT NULL DEFAULT 0,
        is_bounce INTEGER NOT NULL DEFAULT 0,
        warned_at REAL
    );
    -- Every listing pages by (sort column, id) through an index, never by sorting the queue:
    -- (state, column, id) serves a state filter, and list_messages asks each state separately
    -- and merges (for "all states" too), so each index leads with the state. Each index costs
    -- every insert and state change: add one only for a sort the UI offers.
    CREATE INDEX messages_by_state ON messages (state, id);
    CREATE INDEX messages_by_state_arrival ON messages (state, arrived_at, id);
    CREATE INDEX messages_by_state_queue_id ON messages (state, queue_id);
    CREATE INDEX messages_by_state_sender ON messages (state, sender, id);
    CREATE INDEX messages_by_state_size ON messages (state, size, id);
    CREATE INDEX messages_by_state_attempts ON messages (state, attempts, id);
    CREATE INDEX messages_by_state_next_attempt ON messages (state, next_attempt_at, id);
    CREATE TABLE bodies (
        message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        data BLOB NOT NULL
    );
    CREATE TABLE recipients (
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        address TEXT NOT NULL,
        domain TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_reply TEXT,
        updated_at REAL NOT NULL,
        destination TEXT,
        PRIMARY KEY (message_id, idx)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        destination TEXT NOT NULL,
        host TEXT,
        ip TEXT,
        port INTEGER,
        tls TEXT,
        recipients TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reply TEXT,
        transcript TEXT NOT NULL
    );
    CREATE INDEX attempts_by_message ON attempts (message_id, id);
    CREATE TABLE suspended (
        destination TEXT PRIMARY KEY,
        until REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX recipients_by_domain ON recipients (domain, message_id);
    CREATE INDEX recipients_by_address ON recipients (address, message_id);
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        listener TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        transcript TEXT NOT NULL
    );
    CREATE INDEX sessions_by_start ON sessions (started_at);
    CREATE TABLE suppressions (
        address TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL
    );
    """,
    # 1 -> 2: DKIM signatures, made once per message (and per From: rewrite) and reused on
    # every retry, so a retried message carries the same signature as its first attempt.
    """
    CREATE TABLE signatures (
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        variant TEXT NOT NULL,
        header BLOB NOT NULL,
        PRIMARY KEY (message_id, variant)
    );
    """,
    # 2 -> 3: the queue sorts by its Recipients (the first one) and Last reply columns too,
    # each page an index range like the other sorts.
    """
    CREATE INDEX messages_by_state_first_rcpt ON messages (state, first_rcpt, id);
    CREATE INDEX messages_by_state_last_reply ON messages (state, last_reply, id);
    """,
    # 3 -> 4: what a text filter looks in, but the last reply (which changes), in one column:
    # four LIKEs and a subquery per message took 250 ms over 100,000 messages, one LIKE
    # over this takes 40.
    """
    ALTER TABLE messages ADD COLUMN search TEXT NOT NULL DEFAULT '';
    UPDATE messages SET search = queue_id || ' ' || sender || ' ' || coalesce(
        (SELECT group_concat(address, ' ') FROM recipients r WHERE r.message_id = messages.id),
        ''
    );
    """,
    # 4 -> 5: the spool's identity, also written to state_dir/spool.id, so that a spool that
    # vanished or was replaced is not taken for a first start (queue/integrity.py).
    """
    CREATE TABLE identity (id TEXT NOT NULL);
    INSERT INTO identity (id) VALUES (lower(hex(randomblob(16))));
    """,
    # 5 -> 6: a recipient an admin released goes past `hold` routes from then on (routing
    # would hold it again at once otherwise), until it is delivered or bounced.
    """
    ALTER TABLE recipients ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
    """,
    # 6 -> 7: the Subject (a message stored before has none: its body is not parsed here),
    # which `search` holds too from now on; and trigram indexes, so that a filter of 3
    # characters or more looks up its matches instead of reading every message (listing.py):
    # one of `search`, written once with the message, and one of the last reply, which
    # changes (apart, so a new reply re-indexes its few words, not the message's addresses),
    # but for delivered messages: their "250 ... queued as" is what most mail ends with and
    # no admin looks for, and indexing it cost a quarter of the relay's time per message
    # (a view that shows delivered mail filters without this index). Which messages hold each
    # trigram, no positions (detail = none) nor lengths (columnsize = 0): the cheapest to
    # write, and the listing checks each match with LIKE anyway. The triggers keep them in
    # step in the transaction of every write.
    """
    ALTER TABLE messages ADD COLUMN subject TEXT NOT NULL DEFAULT '';
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        search, content = 'messages', content_rowid = 'id', tokenize = 'trigram',
        detail = none, columnsize = 0
    );
    CREATE VIRTUAL TABLE replies_fts USING fts5 (
        last_reply, content = 'messages', content_rowid = 'id', tokenize = 'trigram',
        detail = none, columnsize = 0
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, search) VALUES (new.id, new.search);
        INSERT INTO replies_fts (rowid, last_reply) SELECT new.id, new.last_reply
        WHERE new.last_reply IS NOT NULL AND new.state <> 'delivered';
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, search)
        VALUES ('delete', old.id, old.search);
        INSERT INTO replies_fts (replies_fts, rowid, last_reply)
        SELECT 'delete', old.id, old.last_reply
        WHERE old.last_reply IS NOT NULL AND old.state <> 'delivered';
    END;
    CREATE TRIGGER messages_fts_search AFTER UPDATE OF search ON messages
    WHEN old.search IS NOT new.search BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, search)
        VALUES ('delete', old.id, old.search);
        INSERT INTO messages_fts (rowid, search) VALUES (new.id, new.search);
    END;
    CREATE TRIGGER messages_fts_reply AFTER UPDATE OF last_reply, state ON messages
    WHEN old.last_reply IS NOT new.last_reply
        OR (old.state = 'delivered') <> (new.state = 'delivered') BEGIN
        INSERT INTO replies_fts (replies_fts, rowid, last_reply)
        SELECT 'delete', old.id, old.last_reply
        WHERE old.last_reply IS NOT NULL AND old.state <> 'delivered';
        INSERT INTO replies_fts (rowid, last_reply) SELECT new.id, new.last_reply
        WHERE new.last_reply IS NOT NULL AND new.state <> 'delivered';
    END;
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    INSERT INTO replies_fts (rowid, last_reply) SELECT id, last_reply FROM messages
    WHERE last_reply IS NOT NULL AND state <> 'delivered';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, readonly: bool, min_free_bytes: int = 0) -> sqlite3.Connection:
    """The writer's connection, or (`readonly`) a reader's.

    A reader opens the file read-write (WAL readers need the shared-memory index) but never
    creates it, never changes its journal mode and refuses to write (`query_only`). The
    writer's WAL is kept within half of `min_free_bytes`, the disk's free-space floor.
    """
    conn = sqlite3.connect(
        path if not readonly else path.resolve().as_uri() + "?mode=rw",
        uri=readonly,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
    )
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        # Before the first table exists: then a new spool gives deleted mail's pages back to
        # the disk (`vacuum`). On an existing spool it changes nothing until a VACUUM.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit returns only after the WAL is fsynced; this is what 250 promises.
        conn.execute("PRAGMA synchronous = FULL")
        wal_bytes, wal_pages = wal_limits(min_free_bytes)
        conn.execute(f"PRAGMA journal_size_limit = {wal_bytes}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {wal_pages}")
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Bring the schema forward; returns the version found before migrating."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > len(migrations):
        raise SpoolError(
            f"the spool database has schema version {found}, newer than this relaybox knows "
            f"({len(migrations)}); run the newer relaybox or restore a backup"
        )
    for version in range(found, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements (a `;` inside a string, comment or trigger stays put).

    `executescript` would do the splitting but commits first, and a migration must be one
    transaction together with its `user_version`.
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending)  # unterminated: let SQLite report the error
    return [s for s in statements if s.strip(" \t\r\n;")]


def sql_list(values: Iterable[str]) -> str:
    """`('queued', 'deferred')`: states written into SQL text as literals.

    Only for the spool's own state constants (never outside input), so the SQL text stays
    exactly what it was when the states were spelt out in it.
    """
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def encode_transcript(lines: Sequence[TranscriptLine]) -> str:
    """A transcript as stored in a TEXT column: one encoded line per line."""
    return "\n".join(line.encode() for line in lines)


def decode_transcript(text: str) -> tuple[TranscriptLine, ...]:
    """The lines `encode_transcript` stored."""
    return tuple(TranscriptLine.decode(line) for line in text.split("\n") if line)
