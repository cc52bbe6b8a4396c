"""The SMTP client connection under the courier: aiosmtplib's `SMTP`, recording every line.

This is the one module that reaches past aiosmtplib's public API (its `execute_command`, which
every command goes through, and its protocol's `write` and `read_response` for DATA), so
pyproject.toml bounds aiosmtplib to the major tested here (5.x). It records the transcript,
writes `<secret>` for AUTH data, and speaks MAIL, RCPT and DATA; it decides nothing about
TLS policy, retries or outcomes.

Why aiosmtplib, and not our own protocol layer: it does connect, implicit TLS, STARTTLS, EHLO
parsing and AUTH well, and relaybox needs all of those unchanged. Pipelining (RFC 2920) is
what it cannot do: its 5.x protocol keeps one reply per `read_response` and drops replies
that arrive while no command waits (`SMTPProtocol.data_received`), so MAIL, RCPT and DATA
written together would lose their replies. That work needs a reply reader that keeps
every reply that arrives; it belongs here, in place of `read_response` for the pipelined
commands, and only this module changes. Owning the whole protocol (TLS, EHLO, AUTH) for
that one feature would be more code to get right than that reader.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponse

from relaybox.clock import Clock, system_clock
from relaybox.message.transcript import TranscriptLine

__all__ = ["RecordingSMTP", "authenticate", "reply_text"]

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
SECRET = "<secret>"
"""What the transcript shows in place of AUTH data (RFC 4954 §4): credentials and the
responses to challenges, whichever mechanism sent them."""


def reply_text(response: SMTPResponse) -> str:
    """A reply on one line ("250 2.0.0 Ok"), as replies are stored and shown."""
    return f"{response.code} {response.message}".replace("\n", " ")


class RecordingSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, writing every command and reply into the current attempt."""

    def __init__(
        self,
        *,
        on_line: Callable[[TranscriptLine], None],
        clock: Clock = system_clock,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.on_line = on_line
        """Where each line goes; the courier points it at the attempt using the connection."""
        self.clock = clock
        """What stamps each line (the courier's clock)."""
        self._secret_replies = False
        """An AUTH exchange is under way: the lines we send are credentials."""

    def note(self, direction: str, text: str) -> None:
        """Record one line: "C" sent, "S" received, "-" relaybox's own remark."""
        self.on_line(TranscriptLine(self.clock(), direction, text))

    async def execute_command(self, *args: bytes, timeout: Any = ...) -> SMTPResponse:
        """Every command aiosmtplib sends, recorded with its reply (AUTH data as `<secret>`)."""
        verb = args[0].upper() if args else b""
        if verb == b"AUTH":
            # "AUTH PLAIN <initial response>", "AUTH LOGIN <user>": the mechanism is shown,
            # what follows it never is.
            shown = b" ".join(args[:2]).decode("ascii", "replace") + (
                f" {SECRET}" if len(args) > 2 else ""
            )
            self._secret_replies = True
        elif self._secret_replies:
            shown = SECRET  # an AUTH continuation line (RFC 4954 §4)
        else:
            shown = b" ".join(args).decode("utf-8", "replace")
        self.note("C", shown)
        try:
            if timeout is ...:
                response = await super().execute_command(*args)
            else:
                response = await super().execute_command(*args, timeout=timeout)
        except aiosmtplib.SMTPException as exc:
            self.note("-", f"{type(exc).__name__}: {exc}")
            raise
        if response.code != 334:  # 334: the server wants more AUTH data
            self._secret_replies = False
        for line in (response.message or "").split("\n") or [""]:
            self.note("S", f"{response.code} {line}".rstrip())
        return response

    # MAIL, RCPT and DATA without aiosmtplib's per-call address parsing and whole-message
    # regexes: the spool holds validated addresses (CR, LF, NUL refused, and checked again
    # by the courier and by aiosmtplib's protocol) and CRLF-clean messages, and these three
    # run once per message on the hot path.

    async def mail_from(self, sender: str, options: list[str], encoding: str) -> SMTPResponse:
        """MAIL FROM:<sender>; raises SMTPSenderRefused unless 250."""
        args = [b"MAIL", b"FROM:<" + sender.encode(encoding) + b">"]
        args.extend(option.encode("ascii") for option in options)
        response = await self.execute_command(*args)
        if response.code != 250:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
        return response

    async def rcpt_to(self, recipient: str, encoding: str) -> SMTPResponse:
        """RCPT TO:<recipient>; raises SMTPRecipientRefused unless 250 or 251."""
        response = await self.execute_command(b"RCPT", b"TO:<" + recipient.encode(encoding) + b">")
        if response.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
        return response

    async def send_data(self, message: bytes, timeout: float) -> SMTPResponse:
        """DATA, the dot-stuffed message and its end; raises SMTPDataError unless 354/250."""
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != 354:
            # End the transaction, or the next message on this cached connection would be
            # refused as a nested MAIL (and bounced).
            with contextlib.suppress(aiosmtplib.SMTPException):
                await self.rset()
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        if message.count(b"\n") != message.count(b"\r\n") or b"\r" in message.replace(b"\r\n", b""):
            message = _LINE_ENDING.sub(b"\r\n", message)  # RFC 5321 §2.3.8: CRLF only
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        # RFC 5321 §4.5.2: a line that starts with a period gets one more.
        stuffed = message.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        self.note("-", f"<{len(message)} bytes of message data>")
        protocol = self.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            protocol.write(stuffed + b".\r\n")
            response = await protocol.read_response(timeout=timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            self.note("-", f"{type(exc).__name__}: {exc}")
            self.close()
            raise
        self.note("S", reply_text(response))
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response


async def authenticate(smtp: RecordingSMTP, username: str, password: str) -> SMTPResponse | None:
    """AUTH with aiosmtplib's own mechanisms (RFC 4954): PLAIN, or LOGIN when only it is offered.

    PLAIN is also tried when the hop names no mechanism relaybox knows (some announce AUTH
    without any). The transcript shows the mechanism, never the data (`execute_command`).

    Returns:
        The hop's final reply (235 when it took the credentials, the refusal otherwise), or
        None when it offers mechanisms but neither PLAIN nor LOGIN.
    """
    methods = smtp.supported_auth_methods
    try:
        if "plain" in methods or not methods:
            return await smtp.auth_plain(username, password)
        if "login" in methods:
            return await smtp.auth_login(username, password)
    except aiosmtplib.SMTPResponseException as exc:  # SMTPAuthenticationError among them
        return SMTPResponse(exc.code, exc.message)
    return None
