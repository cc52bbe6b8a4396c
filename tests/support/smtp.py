"""SMTP clients for tests: a raw client over a real socket that reads replies as (code, text),
one-message sends to an engine (async) or to a `relaybox` process (smtplib), and the parser of
the queue ID in a `250 ... queued as` reply. It speaks only as a client; sinks live in
smtpsink.py."""

from __future__ import annotations

import asyncio
import re
import smtplib

from relaybox.message.replies import Reply

from .engine import RunningEngine

QUEUED = re.compile(re.escape(Reply.queued("<id>")[4:]).replace("<id>", "([0-9A-Z]{13})"))
"""The queue ID in the text of the 250 reply to DATA, as `Reply.queued` spells it."""
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.org"
MESSAGE_TO_SIGN = (
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: a subject that is long enough to be folded by the sender, as mail\r\n"
    b" clients do\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <dkim-test@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x80\x94 8-bit text.\r\n"
    b"A trailing space \t \r\n" + b"x" * 990 + b"\r\n"
    b".a line that starts with a dot\r\n"
    b"\r\n"
    b"\r\n"
)
"""A message that is hard to sign right: a folded header, 8-bit text, trailing white space,
a 990-character line, a line starting with a dot, empty lines at the end."""


def said(code: int, text: str | bytes) -> str:
    """A one-line reply as the catalogue spells it (`Reply.X`), from the (code, text) pair
    `SMTPClient` or smtplib returns."""
    return f"{code} {text.decode() if isinstance(text, bytes) else text}"


class SMTPClient:
    """A raw SMTP client over a real socket: sends bytes, reads replies as (code, lines)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> SMTPClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def reply(self, timeout: float = 10.0) -> tuple[int, str]:
        """The next (possibly multi-line) reply: its code and its text lines joined by \\n."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError(f"server closed the connection; got so far: {lines!r}")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), "\n".join(lines)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def cmd(self, line: str) -> tuple[int, str]:
        """Send one command line and read its reply."""
        await self.send(line + "\r\n")
        return await self.reply()

    async def greet(self, helo: str = "client.example.test") -> None:
        code, _ = await self.reply()
        assert code == 220
        code, _ = await self.cmd(f"EHLO {helo}")
        assert code == 250

    async def send_message(
        self, sender: str, recipients: list[str], body: bytes
    ) -> tuple[int, str]:
        """MAIL, RCPT..., DATA with `body` (already dot-stuffed, ending in CRLF); final reply."""
        code, text = await self.cmd(f"MAIL FROM:<{sender}>")
        assert said(code, text) == Reply.MAIL_OK, text
        for rcpt in recipients:
            code, text = await self.cmd(f"RCPT TO:<{rcpt}>")
            assert said(code, text) == Reply.RCPT_OK, text
        code, text = await self.cmd("DATA")
        assert said(code, text) == Reply.START_DATA, text
        await self.send(body + b".\r\n")
        return await self.reply()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (reads and discards the rest)."""
        try:
            while await asyncio.wait_for(self.reader.read(4096), timeout):
                pass
        except (ConnectionError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def simple_message(subject: str = "test", body: str = "Hello.") -> bytes:
    """A small message with a Message-ID made of `subject` (CRLF line ends, no final dot)."""
    return (
        f"From: a@example.com\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\n{body}\r\n"
    ).encode()


async def send(
    run: RunningEngine,
    sender: str,
    recipients: list[str],
    body: bytes | None = None,
    *,
    subject: str = "test",
) -> str:
    """One message (`body`, else `simple_message(subject)`) in its own SMTP session to the
    engine's first listener; returns its queue ID."""
    client = await SMTPClient.connect(*run.address())
    try:
        await client.greet()
        code, text = await client.send_message(sender, recipients, body or simple_message(subject))
        assert code == 250, text
        found = QUEUED.search(text)
        assert found is not None, text
        return found.group(1)
    finally:
        await client.close()


def _cli_message(subject: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <hello@example.com>\r\n\r\nHello from the test.\r\n"
    ).encode()


def send_sync(port: int, *, recipient: str = RECIPIENT, subject: str = "hello") -> str:
    """Send one message with smtplib to a relay on 127.0.0.1:`port` (a `relaybox` process, or
    an engine on another thread); returns the queue ID from the 250 reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.test")
        code, text = client.mail(SENDER)
        assert code == 250, text
        code, text = client.rcpt(recipient)
        assert code == 250, text
        code, text = client.data(_cli_message(subject))
    reply = text.decode()
    assert code == 250, reply
    found = QUEUED.search(reply)
    assert found, f"no queue ID in the 250 reply: {reply}"
    return found.group(1)
