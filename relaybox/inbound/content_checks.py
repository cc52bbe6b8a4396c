"""What the receiving side reads in a message's header block once DATA has ended: the From:
addresses a logged-in user's message is checked by, and its hop count (mail loops).

Only the header block is read, and at most a fixed number of bytes of it; parsing goes through
the one header parser (`message.headers`) in a thread, so the event loop never waits on the
email package. The decisions are `inbound.policy`'s.
"""

from __future__ import annotations

import asyncio

from relaybox.inbound.policy import check_hops
from relaybox.message.headers import (
    MAX_HEADER_BLOCK,
    MAX_HOPS,
    addresses,
    field_count,
    parse_header,
    received_upper_bound,
    split_header,
)

__all__ = ["from_addresses", "hop_refusal"]

_MAX_FROM_CHECKED = 1 << 16
"""The From: check reads this much of a message at most for its header block."""


async def from_addresses(content: list[bytes]) -> list[str]:
    """The From: addresses of a message received as `content` (RFC 5322 §3.6.2)."""
    block = _header_block(content, _MAX_FROM_CHECKED)
    return await asyncio.to_thread(lambda: addresses(parse_header(block), "From"))


async def hop_refusal(content: list[bytes]) -> str | None:
    """The refusal of a message that has looped (`policy.check_hops`), or None.

    The upper bound costs next to nothing, so the header is parsed only when it is over the
    limit.
    """
    block = _header_block(content, MAX_HEADER_BLOCK)
    if received_upper_bound(block) <= MAX_HOPS:
        return None
    fields = await asyncio.to_thread(lambda: field_count(parse_header(block), "Received"))
    return check_hops(fields)


def _header_block(content: list[bytes], limit: int) -> bytes:
    """The header block of a message received as `content` (the parts of its bytes, as many
    as the client's writes), or its first `limit` bytes.

    The parts are joined first and searched once: a search after each part would cost time
    in the square of the number of parts, which a client sending its header a few bytes per
    write chooses.
    """
    taken: list[bytes] = []
    size = 0
    for part in content:
        taken.append(part)
        size += len(part)
        if size > limit:
            break
    block, _ = split_header(b"".join(taken), limit)
    return block[:limit]
