"""AUTH toward a smart host, over loopback to a real aiosmtpd server that requires it: the
mechanism aiosmtplib picks works, and the secret never reaches a transcript, neither the one
the attempt stores nor the lines published live while it runs (in clear or in base64)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from relaybox.message.transcript import TranscriptLine
from relaybox.outbound.client import Courier, Result, Transaction
from relaybox.outbound.handshake import Credentials, Hop

from .support.smtp import simple_message

# Plain TCP on loopback keeps these tests about AUTH and the transcript; TLS is tested with
# trustme certificates in test_delivery.py.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER = "relay"
PASSWORD = "wire-secret-K7x"


class _Handler:
    """Keeps what arrived; MAIL is refused by aiosmtpd itself until AUTH succeeded."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str]]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok"


async def _server(offered: str) -> AsyncIterator[tuple[int, _Handler]]:
    handler = _Handler()

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = (mechanism, data.login.decode())
        handler.logins.append(login)
        ok = (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends 535

    excluded = [m for m in ("PLAIN", "LOGIN") if m != offered]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="smarthost.example.test",
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
            auth_exclude_mechanism=excluded,
        ),
        host="127.0.0.1",
        port=0,
    )
    try:
        yield server.sockets[0].getsockname()[1], handler
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def plain_only() -> AsyncIterator[tuple[int, _Handler]]:
    async for served in _server("PLAIN"):
        yield served


@pytest.fixture
async def login_only() -> AsyncIterator[tuple[int, _Handler]]:
    async for served in _server("LOGIN"):
        yield served


async def _deliver(port: int, password: str) -> tuple[Result, list[TranscriptLine]]:
    """One delivery with AUTH over plain TCP (route tls = "none"); the result and every line
    published through `on_line` while it ran."""
    published: list[TranscriptLine] = []
    courier = Courier(
        helo_name="relay.example.test",
        connect_timeout=5.0,
        command_timeout=5.0,
        data_timeout=5.0,
        cache_idle=0.0,
    )
    try:
        result = await courier.deliver(
            [Hop("127.0.0.1", "127.0.0.1", port)],
            Transaction("a@example.com", ("b@example.org",), simple_message()),
            tls="none",
            credentials=Credentials(USER, password),
            on_line=lambda attempt, line: published.append(line),
        )
    finally:
        await courier.close()
    return result, published


def _assert_secret_absent(password: str, *transcripts: list[TranscriptLine]) -> None:
    forms = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{password}".encode()).decode(),
    }
    for lines in transcripts:
        text = "\n".join(line.text for line in lines)
        for form in forms:
            assert form not in text


async def test_auth_plain_logs_in_and_neither_transcript_holds_the_secret(plain_only) -> None:
    port, handler = plain_only
    result, published = await _deliver(port, PASSWORD)
    assert result.outcomes["b@example.org"].state == "delivered"
    assert handler.logins == [("PLAIN", USER)]
    assert handler.messages == [("a@example.com", ["b@example.org"])]
    stored = result.attempts[0].lines
    assert "AUTH PLAIN <secret>" in [line.text for line in stored]
    assert [line.text for line in published] == [line.text for line in stored]
    _assert_secret_absent(PASSWORD, stored, published)


async def test_auth_login_hides_both_steps_when_only_login_is_offered(login_only) -> None:
    """LOGIN sends the user with the command and the password on a line of its own (RFC 4954
    §4 continuation): both are `<secret>` in the transcript."""
    port, handler = login_only
    result, published = await _deliver(port, PASSWORD)
    assert result.outcomes["b@example.org"].state == "delivered"
    assert handler.logins == [("LOGIN", USER)]
    sent = [line.text for line in result.attempts[0].lines if line.direction == "C"]
    assert sent[sent.index("AUTH LOGIN <secret>") + 1] == "<secret>"
    assert sent[sent.index("AUTH LOGIN <secret>") + 2].startswith("MAIL FROM:")
    _assert_secret_absent(PASSWORD, result.attempts[0].lines, published)


async def test_a_refused_password_defers_and_stays_out_of_the_transcript(login_only) -> None:
    port, handler = login_only
    result, published = await _deliver(port, "a-wrong-one-Q2")
    outcome = result.outcomes["b@example.org"]
    assert outcome.state == "deferred"
    assert outcome.reply.startswith("454 4.7.0 AUTH failed at 127.0.0.1: 535")
    assert result.attempts[0].auth_failed
    assert handler.messages == []
    _assert_secret_absent("a-wrong-one-Q2", result.attempts[0].lines, published)
