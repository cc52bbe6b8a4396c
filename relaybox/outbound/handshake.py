"""Opening a connection to one next hop, ready for MAIL: TLS as the route's policy says, AUTH.

`Handshake.open` connects (implicit TLS from the first byte, or plain TCP), reads the
greeting, says EHLO (HELO when refused), upgrades with STARTTLS under the route's `tls` policy
and logs in to a smart host. Anything that stops a hop here is a `HopFailed` saying why, so the
courier tries the next hop. It sends no mail and keeps no connection: that is `client`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiosmtplib

from relaybox.clock import Clock, system_clock
from relaybox.message.transcript import TranscriptLine, tls_summary
from relaybox.outbound.smtp_wire import RecordingSMTP, authenticate, reply_text

__all__ = ["Credentials", "Handshake", "Hop", "HopFailed", "TlsPolicy", "closing_on_failure"]

TlsPolicy = Literal["none", "opportunistic", "required", "verify", "implicit"]
"""A route's `tls`: none; STARTTLS when offered (unverified, plaintext if it fails); STARTTLS
required (unverified); STARTTLS required and verified; implicit TLS (RFC 8314), verified."""


@dataclass(frozen=True)
class Hop:
    """One address to try: the name (for TLS verification and the record) and where it lives."""

    host: str
    ip: str
    port: int


@dataclass(frozen=True)
class Credentials:
    """AUTH for a smart host; the password never enters a transcript, log or event."""

    username: str
    password: str = field(repr=False)


class HopFailed(Exception):
    """This hop could not take the message; try the next one (`permanent` if 5xx, `auth`
    when it was about our credentials)."""

    def __init__(self, reply: str, permanent: bool = False, auth: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.auth = auth


@contextlib.contextmanager
def closing_on_failure(smtp: RecordingSMTP, failure: str) -> Iterator[None]:
    """Close `smtp` when the block fails, whatever the failure: a connection left mid-command
    must never be used again. An SMTP or socket error becomes `HopFailed("<failure>: <error>")`;
    a `HopFailed`, a bug or a cancellation goes on as it is."""
    try:
        yield
    except HopFailed:
        smtp.close()
        raise
    except (aiosmtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise HopFailed(f"{failure}: {exc}") from None
    except BaseException:
        smtp.close()
        raise


class Handshake:
    """Opens connections for one courier; holds the TLS contexts, made once and reused."""

    def __init__(
        self,
        *,
        helo_name: str,
        connect_timeout: float,
        command_timeout: float,
        clock: Clock = system_clock,
    ) -> None:
        self.helo_name = helo_name
        self.clock = clock
        """What stamps the transcript lines (the courier's clock)."""
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._unverified = ssl.create_default_context()
        self._unverified.check_hostname = False
        self._unverified.verify_mode = ssl.CERT_NONE
        self._verified: dict[str | None, ssl.SSLContext] = {}

    def _context(self, verify: bool, ca_file: str | None) -> ssl.SSLContext:
        if not verify:
            return self._unverified
        context = self._verified.get(ca_file)
        if context is None:
            context = ssl.create_default_context(cafile=ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._verified[ca_file] = context
        return context

    async def open(
        self,
        hop: Hop,
        tls: TlsPolicy,
        credentials: Credentials | None,
        ca_file: str | None,
        record: Callable[[TranscriptLine], None],
        *,
        plaintext_retry: bool = False,
    ) -> RecordingSMTP:
        """A connection to `hop` past EHLO, TLS and AUTH, recording into `record`.

        `plaintext_retry` is for this method's own second try under `opportunistic`, after
        STARTTLS failed: connect again and stay in plain text.

        Raises:
            HopFailed: The hop cannot be used now (unreachable, refused us, TLS that the
                policy requires failed, AUTH refused); `permanent` for a 5xx greeting.
        """
        implicit = tls == "implicit"
        common: dict[str, Any] = {
            "on_line": record,
            "clock": self.clock,
            "local_hostname": self.helo_name,
            "timeout": self.command_timeout,
            "start_tls": False,
        }
        record(TranscriptLine(self.clock(), "-", f"connecting to {hop.host} [{hop.ip}]:{hop.port}"))
        try:
            if implicit:
                # TLS from the first byte (RFC 8314 §3), verified against the host name, on a
                # socket to the address routing resolved.
                sock = await self._open_socket(hop)
                smtp = RecordingSMTP(
                    hostname=hop.host,
                    use_tls=True,
                    tls_context=self._context(True, ca_file),
                    sock=sock,
                    **common,
                )
            else:
                smtp = RecordingSMTP(hostname=hop.ip, port=hop.port, **common)
            greeting = await smtp.connect(timeout=self.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            record(TranscriptLine(self.clock(), "S", f"{exc.code} {exc.message}"))
            raise HopFailed(
                f"{exc.code} {exc.message}".strip(), permanent=exc.code >= 500
            ) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            # A certificate refused while connecting with implicit TLS says so, and names
            # the route's mode as STARTTLS failures do (the admin's words for it).
            mode = f" (route tls = {tls!r})" if tls == "implicit" else ""
            raise HopFailed(
                f"451 4.4.1 Cannot connect to {hop.host} [{hop.ip}]:{hop.port}: {exc}{mode}"
            ) from None
        smtp.note("S", reply_text(greeting))
        with closing_on_failure(smtp, f"451 4.4.2 {hop.host} [{hop.ip}]"):
            await self._ehlo(smtp)
            if tls in ("opportunistic", "required", "verify") and not plaintext_retry:
                if smtp.supports_extension("starttls"):
                    try:
                        await smtp.starttls(
                            server_hostname=hop.host,
                            tls_context=self._context(tls == "verify", ca_file),
                        )
                    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                        smtp.close()
                        if tls == "opportunistic":
                            smtp.note("-", f"STARTTLS failed ({exc}); trying again without TLS")
                            return await self.open(
                                hop, tls, credentials, ca_file, record, plaintext_retry=True
                            )
                        raise HopFailed(
                            f"454 4.7.5 TLS with {hop.host} failed and policy {tls!r} requires "
                            f"it: {exc}"
                        ) from None
                    smtp.note(
                        "-",
                        f"TLS established: {tls_summary(smtp.get_transport_info('ssl_object'))}",
                    )
                    await self._ehlo(smtp)
                elif tls != "opportunistic":
                    raise HopFailed(
                        f"454 4.7.4 {hop.host} does not offer STARTTLS and policy {tls!r} "
                        "requires TLS"
                    )
            if credentials is not None:
                await self._login(smtp, hop, tls, credentials)
        return smtp

    async def _open_socket(self, hop: Hop) -> socket.socket:
        sock = socket.socket(
            socket.AF_INET6 if ":" in hop.ip else socket.AF_INET, socket.SOCK_STREAM
        )
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (hop.ip, hop.port)),
                self.connect_timeout,
            )
        except BaseException:
            sock.close()
            raise
        return sock

    async def _ehlo(self, smtp: RecordingSMTP) -> None:
        try:
            await smtp.ehlo(hostname=self.helo_name)
        except aiosmtplib.SMTPHeloError as exc:
            if exc.code >= 500:
                await smtp.helo(hostname=self.helo_name)  # RFC 5321 §4.1.4: fall back to HELO
            else:
                raise HopFailed(f"{exc.code} {exc.message}") from None

    async def _login(
        self, smtp: RecordingSMTP, hop: Hop, tls: TlsPolicy, credentials: Credentials
    ) -> None:
        encrypted = smtp.get_transport_info("sslcontext") is not None
        if not encrypted and tls != "none":
            raise HopFailed(
                f"454 4.7.0 Not sending the password to {hop.host} without TLS "
                f"(it did not offer STARTTLS; route tls = {tls!r})"
            )
        response = await authenticate(smtp, credentials.username, credentials.password)
        if response is None:
            raise HopFailed(
                f"454 4.7.0 {hop.host} offers no AUTH mechanism relaybox speaks "
                f"({', '.join(smtp.supported_auth_methods)})"
            )
        if response.code != 235:
            # Soft: one expired credential must not bounce the queue (Postfix's
            # smtp_sasl_auth_soft_bounce); the scheduler logs it loudly.
            raise HopFailed(
                f"454 4.7.0 AUTH failed at {hop.host}: {reply_text(response)}", auth=True
            )
