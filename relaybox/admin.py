"""The admin layer: the one set of operations the CLI, the TUI and the control socket call.

It answers questions about the spool (list, count, show) and changes what an admin may change
(the suppression list now; retry, hold, release, delete and bounce with the delivery engine).
It holds no state of its own and knows nothing of who is asking.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from typing import Any

from .address import AddressError, parse_rcpt
from .spool import (
    MessageDetail,
    MessageFilter,
    MessageRow,
    Spool,
    SuppressionRow,
)

__all__ = ["Admin", "MessageFilter", "Page"]


@dataclass(frozen=True)
class Page:
    """One window of a message listing, and the key to ask for the next."""

    rows: tuple[MessageRow, ...]
    next_after: tuple[Any, int] | None
    """Pass as `after` to get the following page; None when this was the last."""


class Admin:
    """Operations on one spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    async def list(
        self,
        flt: MessageFilter | None = None,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 100,
    ) -> Page:
        """A page of messages (keyset pagination: pass `page.next_after` for the next)."""
        flt = flt or MessageFilter()
        rows = await self.spool.list_messages(
            flt, sort=sort, descending=descending, after=after, limit=limit
        )
        next_after = None
        if len(rows) == limit:
            last = rows[-1]
            key = {
                "arrived": last.arrived_at,
                "id": last.queue_id,
                "sender": last.sender,
                "size": last.size,
                "state": last.state,
                "attempts": last.attempts,
                "next_attempt": last.next_attempt_at,
            }[sort]
            next_after = (key, last.id)
        return Page(tuple(rows), next_after)

    async def list_all(
        self, flt: MessageFilter | None = None, page_size: int = 1000
    ) -> builtins.list[MessageRow]:
        """Every matching message, oldest first (the plain CLI prints them all, as mailq does)."""
        out: builtins.list[MessageRow] = []
        after: tuple[Any, int] | None = None
        while True:
            page = await self.list(flt, after=after, limit=page_size)
            out.extend(page.rows)
            if page.next_after is None:
                return out
            after = page.next_after

    async def count(self, flt: MessageFilter | None = None) -> int:
        """How many messages match."""
        return await self.spool.count_messages(flt or MessageFilter())

    async def count_by_state(self) -> dict[str, int]:
        """Messages per state (queued, deferred, held, delivered, bounced, ...)."""
        return await self.spool.count_by_state()

    async def show(self, queue_id: str) -> MessageDetail | None:
        """Everything about one message, or None if there is no such message."""
        return await self.spool.message_detail(queue_id.strip().upper())

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None:
        """The stored message (its first `limit` bytes)."""
        return await self.spool.message_data(queue_id.strip().upper(), limit)

    # ------------------------------------------------------------------ suppression list

    async def suppress_add(
        self, address: str, reason: str = "added by an admin", days: float | None = None
    ) -> str:
        """Refuse mail to `address` at RCPT; returns the normalised address.

        Raises ValueError when `address` is not a valid mailbox.
        """
        try:
            normalized = parse_rcpt(f"TO:<{address}>", smtputf8=True).recipient.lower()
        except AddressError as exc:
            raise ValueError(f"{address!r} is not a valid address: {exc.text}") from None
        expires = time.time() + days * 86400 if days else None
        await self.spool.suppression_add(normalized, reason, expires)
        return normalized

    async def suppress_remove(self, address: str) -> bool:
        """Allow mail to `address` again; False if it was not suppressed."""
        return await self.spool.suppression_remove(address.strip().lower())

    async def suppress_list(self) -> builtins.list[SuppressionRow]:
        """Every suppression entry."""
        return await self.spool.suppression_list()
