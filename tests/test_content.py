"""The content step before delivery, called directly: the route's sender rewrite comes first and
the DKIM signature covers its result; each rewrite of a message is signed once, and a retry
sends the very same bytes. No sockets: the key check is off, the key handed to dkimpy."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import dkim as dkimpy

from relaybox.config.model import Config, DeliveryConfig, DkimConfig, RouteConfig
from relaybox.maillog import MailLog
from relaybox.outbound.content import prepare
from relaybox.resolver import Resolver
from relaybox.signing.keys import dns_record, generate
from relaybox.signing.signer import KeyCheck, PublishedKeys

from .support.configs import make_config

KEY = generate("rsa-sha256", 2048)
DKIM = DkimConfig("example.org", "s1", Path("/keys/s1"), KEY.algorithm, KEY)
MESSAGE = (
    b"From: Scanner <scanner@printer.local>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Scan\r\n"
    b"\r\n"
    b"page 1\r\n"
)
PLAIN = RouteConfig(domains=("*",), transport="smarthost")
REWRITING = dataclasses.replace(PLAIN, rewrite_senders=(("@printer.local", "scanner@example.org"),))


def config(tmp_path: Path) -> Config:
    return dataclasses.replace(
        make_config(tmp_path), dkim=(DKIM,), delivery=DeliveryConfig(dkim_key_check="off")
    )


def verify(message: bytes) -> bool:
    """dkimpy's verdict, with the selector's record as `relaybox dkim keygen` prints it."""
    record = dns_record(DKIM.domain, DKIM.selector, KEY).split(" IN TXT ", 1)[1]
    text = "".join(part.strip('"') for part in record.split('" "')).encode()

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        return text if name == b"s1._domainkey.example.org." else None

    return bool(dkimpy.verify(message, dnsfunc=txt))


async def run(route: RouteConfig, cfg: Config, signed: dict[str, bytes]) -> bytes | str:
    checked: list[KeyCheck] = []
    result = await prepare(
        MESSAGE,
        route,
        cfg,
        signed,
        published_keys=PublishedKeys(Resolver()),
        on_key_checked=checked.append,
        log=MailLog(stream=io.StringIO()),
        queue_id="04F7K2M9QXB3T",
        now=time.time(),  # dkimpy refuses a signature from the future
    )
    assert checked == []  # dkim_key_check = "off": no lookup
    return result


async def test_the_signature_covers_the_rewritten_from(tmp_path: Path) -> None:
    sent = await run(REWRITING, config(tmp_path), {})
    assert isinstance(sent, bytes)
    assert b"\r\nFrom: Scanner <scanner@example.org>\r\n" in sent
    assert sent.startswith(b"DKIM-Signature: ")
    assert b"d=example.org" in sent.split(b"\r\n\r\n")[0]
    assert verify(sent)


async def test_each_rewrite_is_signed_once_and_a_retry_sends_the_same_bytes(
    tmp_path: Path,
) -> None:
    """The unrewritten message is not from example.org: it goes unsigned, and that is
    remembered too (an empty signature under the variant `""`)."""
    cfg = config(tmp_path)
    signed: dict[str, bytes] = {}
    first = await run(REWRITING, cfg, signed)
    assert await run(PLAIN, cfg, signed) == MESSAGE
    assert await run(REWRITING, cfg, signed) == first
    (variant,) = signed
    assert len(variant) == 32 and signed[variant] and isinstance(first, bytes)
    assert first == signed[variant] + first[len(signed[variant]) :]
