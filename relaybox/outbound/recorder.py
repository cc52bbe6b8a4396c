"""Writes what delivery attempts did to the spool, and holds delivery back while it cannot.

When the spool refuses an outcome (a full disk, a write error), the outcome stays in memory
and is written again every `retry_every` seconds until the spool takes it; meanwhile the
scheduler starts no transaction (`paused`), so a recipient the next hop took is never sent
again because its "delivered" was not written, nor left reading "queued". What is written is
`queue.outcomes`' business, when to send the scheduler's.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from relaybox.clock import Clock, system_clock
from relaybox.events import DeliveryPaused, DeliveryResumed, EventBus
from relaybox.maillog import MailLog
from relaybox.queue import SpoolError

__all__ = ["RETRY_EVERY", "Recorder"]

T = TypeVar("T")

RETRY_EVERY = 1.0
"""Seconds between writes of an outcome the spool refused (one small write: cheap to retry,
and delivery waits for it)."""
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
"""SQLite's refusals that say the write itself is wrong: writing it again cannot help."""

REMIND_EVERY = 60.0
"""Seconds between error lines while an outcome still cannot be written."""


class Recorder:
    """The scheduler's one way to write outcomes; `paused` while any waits in memory."""

    def __init__(
        self,
        *,
        bus: EventBus,
        log: MailLog,
        clock: Clock = system_clock,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self.bus = bus
        self.log = log
        self.clock = clock
        self.retry_every = retry_every
        self._waiting: dict[int, str] = {}
        """What each outcome held in memory is about (queue ID, recipients), by token."""
        self._tokens = itertools.count()
        self._clear = asyncio.Event()
        self._clear.set()

    @property
    def paused(self) -> bool:
        """An outcome waits to be written: no transaction may start."""
        return bool(self._waiting)

    @property
    def waiting(self) -> list[str]:
        """What the outcomes held in memory are about, oldest first."""
        return list(self._waiting.values())

    async def wait_clear(self) -> None:
        """Return once no outcome waits to be written (at once when none does)."""
        await self._clear.wait()

    async def record(self, write: Callable[[], Awaitable[T]], what: Callable[[], str]) -> T:
        """Run `write` (one spool write) until it succeeds; its result.

        The first refusal pauses delivery and says so once, in the log (an error line) and
        on the bus (`DeliveryPaused`); the last outcome written resumes it (`DeliveryResumed`).
        Only the spool's refusals (`SpoolError`: a full disk, an I/O error, a read-only or
        damaged file) are retried; a bug (an exception of another kind, or a constraint the
        write breaks) goes up at once, as it would without this.

        Args:
            write: Writes the outcome; called again, whole, after each refusal.
            what: Says which queue ID and recipients are concerned, for the log (called only
                when there is something to log).

        Raises:
            asyncio.CancelledError: relaybox is stopping; the outcome is logged as lost (its
                recipients may be sent again at the next start).
        """
        try:
            return await write()
        except SpoolError as exc:
            if isinstance(exc.__cause__, _BUGS):
                raise
            error = str(exc)
        about = what()
        token = next(self._tokens)
        self._waiting[token] = about
        self._clear.clear()
        self.log.error(
            "outcome-unrecorded",
            outcome=about,
            error=error,
            note=f"delivery paused; the spool write is retried every {self.retry_every:g} s",
        )
        if len(self._waiting) == 1:
            self.bus.publish(DeliveryPaused(1, error, at=self.clock()))
        written = False
        since = self.clock()
        try:
            while True:
                await asyncio.sleep(self.retry_every)
                try:
                    result = await write()
                except SpoolError as exc:
                    if self.clock() - since >= REMIND_EVERY:
                        since = self.clock()
                        self.log.error(
                            "outcome-unrecorded",
                            outcome=about,
                            error=str(exc),
                            note="delivery still paused",
                        )
                        self.bus.publish(DeliveryPaused(len(self._waiting), str(exc), at=since))
                    continue
                written = True
                self.log.event("outcome-recorded", outcome=about, note="written after a retry")
                return result
        except asyncio.CancelledError:
            self.log.error(
                "outcome-lost",
                outcome=about,
                note="relaybox stopped before the spool took it; these recipients may be "
                "sent again at the next start",
            )
            raise
        finally:
            del self._waiting[token]
            if not self._waiting:
                self._clear.set()
                if written:
                    self.log.event("delivery-resumed", note="every outcome is written")
                    self.bus.publish(DeliveryResumed(at=self.clock()))
