"""The content step before delivery (Postfix's cleanup): the bytes one destination is sent.

`prepare` rewrites the From:/Sender: senders for the route (`rewrite`), then signs the result
with DKIM (`relaybox.signing.signer`), or says why the message is held when the signing key is
not published; `received_count` finds mail that loops. It sends nothing, decides no retry and
writes nothing to the spool: the signatures it makes are handed back in `signed` for the
scheduler to record.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, MutableMapping

from relaybox.config.model import Config, RouteConfig
from relaybox.maillog import MailLog
from relaybox.message.headers import (
    MAX_HOPS,
    field_count,
    parse_header,
    received_upper_bound,
    split_header,
)
from relaybox.outbound.rewrite import rewrite_header_senders
from relaybox.signing.signer import (
    KeyCheck,
    PublishedKeys,
    SigningError,
    from_domain,
    sign,
    signing_keys,
)

__all__ = ["prepare", "received_count"]


async def received_count(data: bytes) -> int:
    """How many Received: fields the message's header has, exactly once there may be too many.

    The upper bound settles the usual case without parsing; only a header that may have more
    than `MAX_HOPS` is parsed, off the event loop. The Received: relaybox added counts.
    """
    head = split_header(data)[0]
    rough = received_upper_bound(head)
    if rough <= MAX_HOPS:
        return rough
    return await asyncio.to_thread(lambda: field_count(parse_header(head), "Received"))


async def prepare(
    data: bytes,
    route: RouteConfig,
    config: Config,
    signed: MutableMapping[str, bytes],
    *,
    published_keys: PublishedKeys,
    on_key_checked: Callable[[KeyCheck], None],
    log: MailLog,
    queue_id: str,
    now: float,
) -> bytes | str:
    """The bytes sent to a destination of `route`: From:/Sender: rewritten, then signed.

    The signature is made once per message and rewrite (its "variant": `""` for the message
    as received, else a hash of the rewritten header) and kept in `signed`, which the
    attempt's record stores, so every retry sends the same one.

    Args:
        data: The message as spooled.
        route: The route of the destination (its `rewrite_senders`).
        config: The config of this attempt (DKIM keys, `dkim_key_check`).
        signed: Signatures already made, by variant; a new one is added to it.
        published_keys: The DNS lookups of the keys a receiver will fetch.
        on_key_checked: Told of every key looked up before signing.
        log: Where a message that cannot be signed is noted (it is sent unsigned).
        queue_id: The message's queue id, for that note.
        now: The signature's timestamp (t=).

    Returns:
        The bytes to send; or, when `dkim_key_check = "hold"` finds the key unpublished,
        a sentence saying why the message is held.
    """
    original = data
    variant = ""
    if route.rewrite_senders:
        data = await asyncio.to_thread(rewrite_header_senders, data, route.rewrite_sender)
        if data is not original:
            # Routes may rewrite one message differently: one signature per result.
            variant = hashlib.sha256(split_header(data)[0]).hexdigest()[:32]
    if variant in signed:
        return signed[variant] + data
    if not config.dkim:
        return data  # nothing to sign with: the From: domain need not be read
    # Parsing a header block (up to 256 KB) is too much for the event loop.
    entries = signing_keys(config.dkim, await asyncio.to_thread(from_domain, data))
    if not entries:
        return data
    check = config.delivery.dkim_key_check
    if check != "off":
        for entry in entries:
            found = published_keys.cached(entry) or await published_keys.check(entry)
            on_key_checked(found)
            if check == "hold" and found.status not in ("ok", "error"):
                return f"held: DKIM key not usable: {found.detail}; release after fixing DNS"
    try:
        header = await asyncio.to_thread(sign, data, entries, now=now)
    except SigningError as exc:
        log.warning("dkim-not-signed", queue_id=queue_id, reason=str(exc))
        header = b""
    signed[variant] = header
    return header + data
