"""What delivery did is written before anything else is sent, and nothing is sent while it
cannot be: a real engine (or a real `relaybox` process on a real, full tmpfs) delivering to a
real aiosmtpd sink, with real SQLite failures. Also the queued half of mail-loop detection."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from relaybox.events import DeliveryPaused, DeliveryResumed, EventBus
from relaybox.maillog import MailLog
from relaybox.message.headers import MAX_HOPS
from relaybox.outbound.recorder import Recorder
from relaybox.queue import NewMessage, Spool, SpoolError

from .relayproc import RELAYBOX, StartRelay, free_port
from .support.configs import relay_config, to_sink
from .support.engine import RunningEngine, wait_state
from .support.smtp import send
from .support.spool import new_message

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r$", re.MULTILINE | re.IGNORECASE)


def spool_db(run: RunningEngine) -> Path:
    return run.engine.config.server.state_dir / "spool.db"


def delivered_in_spool(db: Path) -> int:
    """Recipients the spool says are delivered, read as another process would (committed)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM recipients WHERE state = 'delivered'"
        ).fetchone()
    finally:
        conn.close()
    return int(count)


async def test_delivery_is_recorded_before_the_connection_carries_another_message(
    start_engine, smtp_sink, tmp_path
):
    """One connection to the next hop: each MAIL must find every message it took before
    already delivered in the spool, so a crash can send again only the one in flight."""
    seen_at_mail: list[tuple[int, int]] = []
    """(messages the sink had taken, recipients the spool said were delivered) at each MAIL."""
    sink = await smtp_sink(on_mail=lambda: seen_at_mail.append((len(sink.messages), -1)))
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, max_connections=1),)))
    db = spool_db(run)
    sink.behaviour.on_mail = lambda: seen_at_mail.append(
        (len(sink.messages), delivered_in_spool(db))
    )
    queue_ids = [
        await send(run, "a@example.com", [f"b{n}@example.org"], subject=f"m{n}") for n in range(12)
    ]
    await sink.wait_for(len(queue_ids))
    for queue_id in queue_ids:
        await wait_state(run, queue_id, {"delivered"})
    assert sink.connections == 1, "the test needs every message on one connection"
    assert len(seen_at_mail) == len(queue_ids)
    assert [taken for taken, delivered in seen_at_mail if delivered != taken] == []


async def filled_spool(run: RunningEngine) -> None:
    """The spool's file may not grow by one more page: SQLite's own SQLITE_FULL from now on."""
    assert run.engine.spool is not None
    await run.engine.spool._write(
        lambda conn: conn.execute(
            "PRAGMA max_page_count = " + str(conn.execute("PRAGMA page_count").fetchone()[0])
        )
    )


async def test_an_outcome_the_spool_refuses_pauses_delivery_until_it_is_written(
    start_engine, smtp_sink, tmp_path
):
    stall = asyncio.Event()
    sink = await smtp_sink(stall=stall)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    events = run.engine.bus.subscribe(types=(DeliveryPaused, DeliveryResumed))
    # Recording a hundred recipients' replies needs new pages, which the spool cannot have.
    recipients = [f"r{n}@example.org" for n in range(100)]
    first = await send(run, "a@example.com", recipients, subject="first")
    await asyncio.wait_for(sink.in_data.wait(), 10)
    await filled_spool(run)
    stall.set()  # the sink says 250; the attempt's record cannot be written
    paused = await asyncio.wait_for(events.get(), 10)
    assert isinstance(paused, DeliveryPaused) and "full" in paused.error
    assert re.search(rf"error outcome-unrecorded .*{first}", run.log_text())
    assert run.engine.scheduler is not None and run.engine.scheduler.recorder.paused
    await asyncio.sleep(2.5)  # more than two retries: still refused, nothing sent again
    assert len(sink.messages) == 1
    assert events.drain() == []

    assert run.engine.spool is not None
    await run.engine.spool._write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    resumed = await asyncio.wait_for(events.get(), 10)
    assert isinstance(resumed, DeliveryResumed)
    detail = await wait_state(run, first, {"delivered"})
    assert len(detail.attempts) == 1
    second = await send(run, "a@example.com", ["c@example.org"], subject="second")
    await wait_state(run, second, {"delivered"})
    assert len(sink.messages) == 2
    assert "delivery-resumed" in run.log_text()


async def test_a_write_that_breaks_a_constraint_is_not_retried(spool: Spool) -> None:
    """A bug (here a NOT NULL constraint) is not a full disk: it goes up at once, without
    pausing delivery, as it did before outcomes were retried."""
    stream = io.StringIO()
    log = MailLog(stream=stream)
    bus = EventBus()
    events = bus.subscribe()
    recorder = Recorder(bus=bus, log=log, retry_every=0.01)
    with pytest.raises(SpoolError, match="NOT NULL"):
        await asyncio.wait_for(
            recorder.record(
                lambda: spool._write(
                    lambda conn: conn.execute("INSERT INTO messages DEFAULT VALUES")
                ),
                lambda: "a broken write",
            ),
            5,
        )
    assert not recorder.paused
    assert events.drain() == []
    log.close()
    assert "outcome-unrecorded" not in stream.getvalue()


# ---------------------------------------------------------------------- a full disk, for real

TMPFS_KB = 3072
"""The state directory's tmpfs: room for the spool of a few messages, filled by the test."""


def _can_mount() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("nsenter"))


def in_relay_namespace(relay_pid: int, *command: str) -> subprocess.CompletedProcess[str]:
    """Run `command` where the relay sees its tmpfs (its own mount namespace)."""
    return subprocess.run(
        ["nsenter", "-t", str(relay_pid), "-m", "--", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def wait_for(condition, what: str, timeout: float = 15.0) -> None:
    """Poll without blocking the loop (the sink runs on it) until `condition()` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.skipif(not _can_mount(), reason="needs root, unshare and nsenter to mount a tmpfs")
async def test_delivered_mail_is_never_sent_again_while_the_disk_is_full(
    tmp_path: Path, env: dict[str, str], start_relay: StartRelay, smtp_sink
):
    """A relay whose state directory is a full tmpfs: what it delivered is sent once, the
    outage is an error in the log, and delivery resumes once space is back."""
    stall = asyncio.Event()
    sink = await smtp_sink(stall=stall)
    port = free_port()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = tmp_path / "relaybox.toml"
    config.write_text(
        f'[server]\nhostname = "relay.example.test"\nstate_dir = {json.dumps(str(state))}\n'
        "min_free_space_mb = 0\n"
        f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nallowed_networks = ["127.0.0.0/8"]\n'
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
        '[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{sink.port}"]\ntls = "none"\n',
        encoding="utf-8",
    )
    mount = f'mount -t tmpfs -o size={TMPFS_KB}k,mode=0700 tmpfs "$0" && exec "$@"'
    relay = start_relay(
        "--headless",
        "--config",
        config,
        port=port,
        prefix=("unshare", "-m", "--propagation", "private", "sh", "-c", mount, str(state)),
    )
    pid = relay.proc.pid
    sent = [await asyncio.to_thread(_send_sync, port, f"<full.{n}@example.com>") for n in range(3)]
    await wait_for(lambda: sink.data_started == len(sent), "the three messages at the sink")
    filled = in_relay_namespace(pid, "sh", "-c", f'cat /dev/zero > "{state}/fill"')
    assert "No space left" in filled.stderr, filled
    stall.set()  # the sink takes all three; the relay cannot write that down
    await wait_for(
        lambda: relay.stderr().count("outcome-unrecorded") >= len(sent), "the outage logged"
    )
    assert re.search(r"error outcome-unrecorded .*disk is full", relay.stderr()), relay.stderr()
    await asyncio.sleep(3)  # three retries: nothing may be sent again meanwhile
    assert len(sink.messages) == len(sent)

    freed = in_relay_namespace(pid, "rm", "-f", f"{state}/fill")
    assert freed.returncode == 0, freed
    await wait_for(lambda: "delivery-resumed" in relay.stderr(), "delivery to resume")

    def queue() -> list[dict[str, object]]:
        listing = in_relay_namespace(pid, *RELAYBOX, "queue", "--json", "--config", str(config))
        assert listing.returncode == 0, listing.stderr
        return list(json.loads(listing.stdout))

    await wait_for(lambda: queue() == [], "an empty queue")
    after = await asyncio.to_thread(_send_sync, port, "<after@example.com>")
    await wait_for(lambda: len(sink.messages) > len(sent), "mail sent after the outage")
    await asyncio.sleep(0.5)
    relay.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(relay.proc.wait, 15) == 0
    arrived = collections.Counter(
        m.decode() for got in sink.messages for m in MESSAGE_ID.findall(got.data)
    )
    assert arrived == collections.Counter([*sent, after])


def _send_sync(port: int, message_id: str) -> str:
    import smtplib

    body = (
        f"From: a@example.com\r\nTo: b@example.org\r\nSubject: full disk\r\n"
        f"Message-ID: {message_id}\r\n\r\nHello.\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.org"], body)
    return message_id


# ---------------------------------------------------------------------- mail loops, queued


def with_received(count: int) -> bytes:
    """A message with `count` Received: fields (relaybox's own among them, as it stores it)."""
    hops = b"".join(
        b"Received: from hop%d.example.net by hop%d.example.net;\r\n"
        b" Mon, 7 Dec 2026 10:00:00 +0000\r\n" % (n, n + 1)
        for n in range(count)
    )
    return hops + b"From: a@example.com\r\nTo: b@example.org\r\nSubject: loop\r\n\r\nHi\r\n"


async def queue_directly(run: RunningEngine, message: NewMessage) -> str:
    """Put a message in the spool as an older relaybox (or an admin) left it."""
    assert run.engine.spool is not None
    queue_id = await run.engine.spool.store_message(message)
    run.engine.wake_delivery()
    return queue_id


async def test_a_queued_message_with_too_many_hops_is_bounced_not_sent(
    start_engine, smtp_sink, tmp_path
):
    sink = await smtp_sink()
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    now = time.time()
    looping = await queue_directly(
        run,
        new_message(
            data=with_received(MAX_HOPS + 1), recipients=("b@example.org",), arrived_at=now
        ),
    )
    at_limit = await queue_directly(
        run,
        new_message(data=with_received(MAX_HOPS), recipients=("c@example.org",), arrived_at=now),
    )
    detail = await wait_state(run, looping, {"bounced"})
    (recipient,) = detail.recipients
    assert recipient.last_reply is not None
    assert recipient.last_reply.startswith("554 5.4.6 Too many hops: 51 Received: headers")
    await wait_state(run, at_limit, {"delivered"})
    # The sink gets the message at the limit and the sender's DSN, never the looping one.
    await sink.wait_for(2)
    await asyncio.sleep(0.3)
    assert len(sink.messages) == 2
    (dsn,) = [m for m in sink.messages if m.sender == ""]
    assert dsn.recipients == ["alice@example.com"]
    assert b"5.4.6" in dsn.data
    (sent,) = [m for m in sink.messages if m.sender]
    assert sent.recipients == ["c@example.org"]
    assert "looping" in run.log_text()
