"""Durability: a message that got 250 survives SIGKILL of the relay, stored exactly once.

A real `relaybox --headless` subprocess takes mail from several concurrent clients and is killed
mid-stream; after a restart on the same state directory every acknowledged queue ID and every
acknowledged Message-ID must be in the spool once, no more, no less. Killed while it delivers
to a real next hop, it may send again only the transactions in flight at the kill.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import signal
import smtplib
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

from .relayproc import RELAYBOX, StartRelay, free_port, wait_until
from .support.smtp import QUEUED

CLIENTS = 8
MESSAGES_PER_CLIENT = 50
"""400 messages planned in all: the relay is killed long before they are through."""
KILL_AFTER = 150
"""Acknowledged messages before the SIGKILL."""
TIMEOUT = 20.0
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.org"
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r$", re.MULTILINE | re.IGNORECASE)


def message(message_id: str) -> bytes:
    filler = "".join(f"line {n} of a message that must not be lost\r\n" for n in range(40))
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: crash test\r\n"
        f"Message-ID: {message_id}\r\n\r\n{filler}"
    ).encode()


def send_one(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.test")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RECIPIENT)[0] == 250
        code, text = client.data(message(f"<after-restart.{uuid.uuid4().hex}@example.com>"))
    assert code == 250, text
    found = QUEUED.search(text.decode())
    assert found, text
    return found.group(1)


def test_every_acknowledged_message_survives_sigkill_exactly_once(
    tmp_path: Path, env: dict[str, str], start_relay: StartRelay
) -> None:
    port = free_port()
    state_dir = tmp_path / "state"
    config = tmp_path / "relaybox.toml"
    config.write_text(
        f'[server]\nhostname = "relay.example.test"\nstate_dir = {json.dumps(str(state_dir))}\n\n'
        f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nallowed_networks = ["127.0.0.0/8"]\n'
        # Nothing leaves loopback: mail is held, and DNS goes to a dead loopback port.
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
        '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n',
        encoding="utf-8",
    )
    relay = start_relay("--headless", "--config", config, port=port).proc

    acked: list[tuple[str, str]] = []
    """(queue ID, Message-ID) of every message whose 250 reply the client read."""
    lock = threading.Lock()
    killed = threading.Event()
    failed_before_kill: list[BaseException] = []
    cut_off_by_kill: list[int] = []

    def client(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo(f"client{n}.example.test")
                for i in range(MESSAGES_PER_CLIENT):
                    message_id = f"<crash.{n}.{i}.{uuid.uuid4().hex}@example.com>"
                    code, text = smtp.mail(SENDER)
                    assert code == 250, text
                    code, text = smtp.rcpt(RECIPIENT)
                    assert code == 250, text
                    code, text = smtp.data(message(message_id))
                    assert code == 250, text
                    found = QUEUED.search(text.decode())
                    assert found, text
                    with lock:
                        acked.append((found.group(1), message_id))
        except Exception as exc:  # every failure is sorted below
            if killed.is_set():
                cut_off_by_kill.append(n)  # expected: the relay died under this client
            else:
                failed_before_kill.append(exc)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: (
            len(acked) >= KILL_AFTER or failed_before_kill or not any(t.is_alive() for t in threads)
        ),
        f"{KILL_AFTER} acknowledged messages",
        TIMEOUT,
    )
    killed.set()
    relay.send_signal(signal.SIGKILL)
    assert relay.wait(timeout=10) == -signal.SIGKILL
    for thread in threads:
        thread.join(timeout=15)
    assert not any(t.is_alive() for t in threads), "a client hung after the relay died"
    assert not failed_before_kill, failed_before_kill
    # The kill must land mid-stream, or this test proves nothing.
    assert KILL_AFTER <= len(acked) < CLIENTS * MESSAGES_PER_CLIENT
    assert cut_off_by_kill, "no client was still sending when the relay was killed"

    relay = start_relay("--headless", "--config", config, port=port).proc
    listing = subprocess.run(
        [*RELAYBOX, "queue", "--json", "--config", str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listing.returncode == 0, listing.stderr
    queue_ids = collections.Counter(m["queue_id"] for m in json.loads(listing.stdout))
    assert [q for q, _ in acked if queue_ids[q] != 1] == [], "acknowledged, then lost"
    assert [q for q, n in queue_ids.items() if n > 1] == [], "listed more than once"

    new_id = send_one(port)  # the restarted relay takes mail again
    relay.send_signal(signal.SIGTERM)
    assert relay.wait(timeout=10) == 0

    db = sqlite3.connect(f"file:{state_dir / 'spool.db'}?mode=ro", uri=True)
    try:
        stored = db.execute(
            "SELECT m.queue_id, b.data FROM messages m JOIN bodies b ON b.message_id = m.id"
        ).fetchall()
        (messages,) = db.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        db.close()
    assert messages == len(stored), "a message row without its body"
    body_of = {queue_id: bytes(data) for queue_id, data in stored}
    assert new_id in body_of
    message_ids = collections.Counter(
        mid.decode() for data in body_of.values() for mid in MESSAGE_ID.findall(data)
    )
    assert [m for m, n in message_ids.items() if n > 1] == [], "stored more than once"
    for queue_id, message_id in acked:
        assert message_ids[message_id] == 1, f"{queue_id} {message_id} lost"
        assert f"Message-ID: {message_id}\r\n".encode() in body_of[queue_id]


# ---------------------------------------------------------------------- delivery and SIGKILL

DELIVERY_CONNECTIONS = 4
"""`[delivery] max_connections`: at most this many transactions are in flight at a kill."""
LOAD_CLIENTS = 6
LOAD_MESSAGES = 60
"""Per client: 360 messages in all, still arriving while the relay delivers."""
KILL_AT_DELIVERED = 120


async def test_a_kill_mid_delivery_sends_again_at_most_the_transactions_in_flight(
    tmp_path: Path, start_relay: StartRelay, run_cli, smtp_sink
) -> None:
    """Under a steady load to a real next hop, a SIGKILL and a restart deliver every
    acknowledged message, and deliver twice at most one message per delivery connection:
    each outcome is committed before its connection carries another message."""
    sink = await smtp_sink()
    port = free_port()
    config = tmp_path / "relaybox.toml"
    config.write_text(
        f'[server]\nhostname = "relay.example.test"\n'
        f"state_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nallowed_networks = ["127.0.0.0/8"]\n'
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n'
        f"[delivery]\nmax_connections = {DELIVERY_CONNECTIONS}\n"
        '[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{sink.port}"]\ntls = "none"\n',
        encoding="utf-8",
    )
    relay = (await asyncio.to_thread(start_relay, "--headless", "--config", config, port=port)).proc
    acked: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo(f"client{n}.example.test")
                for i in range(LOAD_MESSAGES):
                    message_id = f"<kill.{n}.{i}@example.com>"
                    smtp.sendmail(SENDER, [RECIPIENT], message(message_id))
                    with lock:
                        acked.append(message_id)
        except (OSError, smtplib.SMTPException):
            if not killed.is_set():
                raise

    def arrived() -> collections.Counter[str]:
        return collections.Counter(
            m.decode() for got in sink.messages for m in MESSAGE_ID.findall(got.data)
        )

    clients = [asyncio.create_task(asyncio.to_thread(client, n)) for n in range(LOAD_CLIENTS)]
    deadline = time.monotonic() + TIMEOUT
    while len(sink.messages) < KILL_AT_DELIVERED:
        assert time.monotonic() < deadline, f"only {len(sink.messages)} delivered"
        assert not any(c.done() for c in clients), "the load ended before the kill"
        await asyncio.sleep(0.005)
    killed.set()
    relay.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(relay.wait, 10) == -signal.SIGKILL
    await asyncio.gather(*clients)
    assert len(acked) < LOAD_CLIENTS * LOAD_MESSAGES, "the kill must land mid-stream"

    relay = (await asyncio.to_thread(start_relay, "--headless", "--config", config, port=port)).proc
    deadline = time.monotonic() + TIMEOUT
    while True:
        listing = await asyncio.to_thread(run_cli, "queue", "--json", "--config", config)
        assert listing.returncode == 0, listing.stderr
        if json.loads(listing.stdout) == [] and all(arrived()[m] for m in acked):
            break
        assert time.monotonic() < deadline, "the restarted relay did not drain its queue"
        await asyncio.sleep(0.2)
    relay.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(relay.wait, 10) == 0
    counts = arrived()
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= DELIVERY_CONNECTIONS, counts.most_common(DELIVERY_CONNECTIONS + 2)
