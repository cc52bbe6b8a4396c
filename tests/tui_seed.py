"""A real engine over a temporary spool seeded with fixed messages, for UI snapshots.

Everything on screen must be the same on every run and machine: queue IDs, times (a fixed
clock in 2031, so no seeded retry is ever due while the test runs), session IDs, the pid and
ports in the status bar, the theme and the time zone (the tests set TZ=UTC).
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Any

from relaybox.config.model import Config, RouteConfig
from relaybox.engine import Engine
from relaybox.events import (
    AttemptFinished,
    AttemptStarted,
    MessageAccepted,
    MessageDeferred,
    MessageDelivered,
    SessionClosed,
    SessionOpened,
)
from relaybox.maillog import setup_logging
from relaybox.message.replies import Reply
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import AttemptRow, NewMessage, RecipientOutcome
from relaybox.tui.app import RelayboxApp
from relaybox.tui.bridge import UI_EVENTS
from relaybox.tui.link import EngineLink, ListenerInfo, stream_of

from .support.configs import make_config

SIZES = [(80, 24), (200, 60)]
"""The terminal sizes every snapshot is taken at."""
NOW = 1_925_035_200.0  # 2031-01-01 12:00:00 UTC
"""The fixed clock of the seeded UI."""


def _msg(n: int, sender: str, rcpts: tuple[str, ...], subject: str, age: float) -> NewMessage:
    at = NOW - age
    body = (
        f"Received: from client{n}.office.example ([192.0.2.{n}])\r\n"
        f"\tby relay.office.example (relaybox) with ESMTP id 0SEEDED0000{n:02d}\r\n"
        f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <seed{n}@office.example>\r\nDate: Wed, 31 Dec 2030 23:00:00 +0000\r\n"
        f"\r\nHello from message {n}.\r\n"
    ).encode()
    transcript = (
        TranscriptLine(at - 0.05, "-", f"connect from [192.0.2.{n}]:4{n:04d}"),
        TranscriptLine(at - 0.05, "S", "220 relay.office.example ESMTP relaybox"),
        TranscriptLine(at - 0.04, "C", f"EHLO client{n}.office.example"),
        TranscriptLine(at - 0.04, "S", "250 relay.office.example"),
        TranscriptLine(at - 0.03, "C", f"MAIL FROM:<{sender}>"),
        TranscriptLine(at - 0.03, "S", Reply.MAIL_OK),
        *(TranscriptLine(at - 0.02, "C", f"RCPT TO:<{r}>") for r in rcpts),
        TranscriptLine(at - 0.02, "C", "DATA"),
        TranscriptLine(at - 0.02, "S", Reply.START_DATA),
        TranscriptLine(at - 0.01, "-", f"<{len(body)} bytes of message data>"),
        TranscriptLine(at, "S", Reply.queued(f"0SEEDED0000{n:02d}")),
    )
    return NewMessage(
        sender=sender,
        recipients=rcpts,
        data=body,
        session_id=f"S0SEEDED000{n:02d}",
        listener="127.0.0.1:2525",
        client_ip=f"192.0.2.{n}",
        client_port=40000 + n,
        helo=f"client{n}.office.example",
        auth_user="alice" if n == 2 else None,
        tls="TLSv1.3 TLS_AES_256_GCM_SHA384" if n == 2 else None,
        body_8bit=False,
        smtputf8=False,
        arrived_at=at,
        transcript=transcript,
        queue_id=f"0SEEDED0000{n:02d}",
    )


def _attempt(at: float, rcpts: tuple[str, ...], outcome: str, reply: str) -> AttemptRow:
    lines = (
        TranscriptLine(at, "-", "connecting to smtp.example.net [198.51.100.25]:587"),
        TranscriptLine(at + 0.1, "S", "220 smtp.example.net ESMTP"),
        TranscriptLine(at + 0.1, "C", "EHLO relay.office.example"),
        TranscriptLine(at + 0.2, "S", "250-smtp.example.net"),
        TranscriptLine(at + 0.2, "S", "250 STARTTLS"),
        TranscriptLine(at + 0.2, "C", "STARTTLS"),
        TranscriptLine(at + 0.3, "S", "220 2.0.0 Ready to start TLS"),
        TranscriptLine(at + 0.4, "-", "TLS established: TLSv1.3 TLS_AES_256_GCM_SHA384"),
        TranscriptLine(at + 0.4, "C", "AUTH PLAIN <secret>"),
        TranscriptLine(at + 0.5, "S", Reply.AUTH_SUCCESSFUL),
        TranscriptLine(at + 0.5, "C", "MAIL FROM:<app@office.example> SIZE=420"),
        TranscriptLine(at + 0.6, "S", Reply.MAIL_OK),
        *(TranscriptLine(at + 0.6, "C", f"RCPT TO:<{r}>") for r in rcpts),
        TranscriptLine(at + 0.7, "S", reply),
    )
    return AttemptRow(
        at,
        at + 0.7,
        "smarthost:smtp.example.net:587",
        "smtp.example.net",
        "198.51.100.25",
        587,
        "TLSv1.3 TLS_AES_256_GCM_SHA384",
        rcpts,
        outcome,
        reply,
        lines,
    )


async def seed(engine: Engine) -> None:
    """Eight messages in every state, with attempts, and some log lines."""
    spool = engine.spool
    assert spool is not None
    greylisted = "451 4.7.1 Greylisted, please try again later"
    msgs = [
        _msg(1, "scanner@printer.local", ("accounts@example.org",), "Scan to email", 7200),
        _msg(
            2,
            "alice@office.example",
            ("bob@example.net", "carol@example.net", "dan@example.com"),
            "Quarterly figures",
            5400,
        ),
        _msg(3, "app@office.example", ("orders@shop.example",), "Order 1042", 3600),
        _msg(4, "backup@nas.office.example", ("it@example.org",), "Backup report", 1800),
        _msg(5, "", ("app@office.example",), "Undelivered Mail Returned to Sender", 900),
        _msg(6, "hr@office.example", ("gone@example.com",), "Payslip", 600),
        _msg(7, "app@office.example", ("newsletter@list.example",), "Newsletter", 120),
        _msg(8, "printer@office.example", ("boss@example.org",), "Held for review", 60),
    ]
    ids = {m.queue_id: m for m in msgs}
    for m in msgs:
        await spool.store_message(m)
    row_ids = {r.queue_id: r.id for r in await spool.list_messages(_all(), limit=100)}

    async def finish(
        qid: str, outcomes: list[RecipientOutcome], attempts: list[AttemptRow], at: float
    ) -> None:
        await spool.finish_attempt(row_ids[qid], outcomes, attempts, now=at)

    m = ids["0SEEDED000001"]
    await finish(
        m.queue_id,
        [RecipientOutcome(0, "deferred", greylisted, NOW + 1500, "smarthost:smtp.example.net:587")],
        [_attempt(NOW - 7100, m.recipients, "deferred", greylisted)],
        NOW - 7100,
    )
    m = ids["0SEEDED000002"]
    ok = "250 2.0.0 Ok: queued as 4XyZ9"
    await finish(
        m.queue_id,
        [
            RecipientOutcome(0, "delivered", ok, None, "smarthost:smtp.example.net:587"),
            RecipientOutcome(
                1,
                "bounced",
                "550 5.1.1 <carol@example.net>: Recipient address rejected",
                None,
                "smarthost:smtp.example.net:587",
            ),
            RecipientOutcome(
                2, "deferred", greylisted, NOW + 600, "smarthost:smtp.example.net:587"
            ),
        ],
        [_attempt(NOW - 5300, m.recipients, "mixed", ok)],
        NOW - 5300,
    )
    m = ids["0SEEDED000003"]
    await finish(
        m.queue_id,
        [RecipientOutcome(0, "delivered", ok, None, "smarthost:smtp.example.net:587")],
        [_attempt(NOW - 3590, m.recipients, "delivered", ok)],
        NOW - 3590,
    )
    m = ids["0SEEDED000006"]
    gone = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
    await finish(
        m.queue_id,
        [RecipientOutcome(0, "bounced", gone, None, "smarthost:smtp.example.net:587")],
        [_attempt(NOW - 590, m.recipients, "bounced", gone)],
        NOW - 590,
    )
    m = ids["0SEEDED000008"]
    await finish(
        m.queue_id,
        [RecipientOutcome(0, "held", "held by an admin", None, None, attempted=False)],
        [],
        NOW - 50,
    )
    # What the hold route does to the others, done here at fixed times: the scheduler then
    # has nothing due, and publishes nothing at a time of its own.
    by_route = "held by route (transport hold); release to send"
    for qid, at in (
        ("0SEEDED000004", NOW - 1799),
        ("0SEEDED000005", NOW - 899),
        ("0SEEDED000007", NOW - 119),
    ):
        held = [RecipientOutcome(0, "held", by_route, None, None, attempted=False)]
        await finish(qid, held, [], at)
    bus = engine.bus
    for event in (
        SessionOpened("S0SEEDED00007", "127.0.0.1:2525", "192.0.2.7", 40007, at=NOW - 120.1),
        MessageAccepted(
            "0SEEDED000007",
            "S0SEEDED00007",
            "app@office.example",
            ("newsletter@list.example",),
            410,
            "192.0.2.7",
            at=NOW - 120,
        ),
        SessionClosed("S0SEEDED00007", "192.0.2.7", 1, at=NOW - 119.9),
        AttemptStarted(
            "0SEEDED000001",
            "smarthost:smtp.example.net:587",
            ("accounts@example.org",),
            at=NOW - 60,
        ),
        AttemptFinished(
            "0SEEDED000001", "smarthost:smtp.example.net:587", "deferred", greylisted, at=NOW - 59
        ),
        MessageDeferred("0SEEDED000001", NOW + 1500, greylisted, at=NOW - 59),
        MessageDelivered("0SEEDED000003", at=NOW - 30),
    ):
        bus.publish(event)


def _all():  # every state
    from relaybox.queue import MessageFilter

    return MessageFilter(states=())


class SeededLink:
    """An in-process engine started on the app's own loop, over a seeded spool."""

    attached = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = NOW - 3 * 3600
        self.config_loaded_at = NOW - 3 * 3600
        self.config_generation = 1
        self.engine: Engine | None = None
        self.admin = None  # set by open()
        self._subscription = None

    async def open(self) -> None:
        log = setup_logging(stream=io.StringIO())
        self.engine = Engine(self.config, log, clock=lambda: NOW)
        await self.engine.start()
        self.admin = self.engine.admin
        self._subscription = self.engine.bus.subscribe(types=UI_EVENTS)
        await seed(self.engine)

    def describe(self) -> str:
        return "in-process (pid 4242)"

    async def listeners(self) -> list[ListenerInfo]:
        return [
            ListenerInfo("127.0.0.1:2525", "127.0.0.1:2525", "relay", "starttls"),
            ListenerInfo("0.0.0.0:587", "0.0.0.0:587", "submission", "starttls"),
        ]

    async def subscribe(self, types=None):
        # The app's own, subscribed in open() before seeding, so that the seeded events are
        # all there; any other from now on.
        assert self.engine is not None
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            return stream_of(subscription)
        return stream_of(self.engine.bus.subscribe(types=types))

    async def session_transcript(self, session_id: str):
        assert self.engine is not None and self.engine.admin is not None
        return self.engine.admin.session_transcript(session_id)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.stop()


class SeededApp(RelayboxApp):
    """The UI over a seeded engine at a fixed time; stops its engine when it exits."""

    async def on_unmount(self) -> None:
        await self.link.close()


def seeded_app(tmp_path: Path, **config: Any) -> SeededApp:
    """The seeded UI; `config` replaces fields of the engine's config (`limits=...`)."""
    # A hold route and a dead resolver: nothing seeded or sent here ever leaves the machine.
    config = dataclasses.replace(
        make_config(tmp_path / "state"),
        routes=(RouteConfig(domains=("*",), transport="hold"),),
        **config,
    )
    link: EngineLink = SeededLink(config)  # type: ignore[assignment]
    return SeededApp(link, clock=lambda: NOW, theme="relaybox-dark")


async def settled(pilot: Any) -> None:
    """Until the seeded queue is loaded and the engine has held what it was given (bounded)."""
    app = pilot.app
    deadline = time.monotonic() + 15
    while True:
        view = app.queue_view
        rows = [view.rows.get(i) for i in view.ids]
        status = app.status_text()
        if (
            len(view.ids) == 6  # the unfinished ones
            and all(r is not None and r.state != "queued" for r in rows)
            and "held 4" in status
            and app.status_bar.listeners  # (shown when the width leaves room)
        ):
            break
        assert time.monotonic() < deadline, (
            f"the seeded UI did not settle: {len(view.ids)} rows "
            f"{[r.state if r else None for r in rows]}; status {status!r}"
        )
        await pilot.pause(0.05)
    await pilot.pause(0.3)  # (not workers.wait_for_complete: the event pump never completes)
