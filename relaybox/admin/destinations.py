"""The unfinished queue by next hop, as Postfix's qshape shows it, with the cause: for each
destination key (`mx:example.org`, `smarthost:HOST:PORT`), the recipient domains bound for
it, how many recipients are queued, active, deferred and held, the oldest, the most common
last replies, the next attempt and whether an admin suspended it.

Pure: the admin layer reads the recipients and the engine's live figures, this groups them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from relaybox.config.model import Config
from relaybox.outbound.routing import destination_for
from relaybox.queue.reroute import Unfinished

__all__ = ["NO_ROUTE", "DestinationSummary", "group_by_destination"]

NO_ROUTE = "no route"
"""The key of recipients no route takes any more (their next attempt bounces them)."""
MOST_CAUSES = 3


@dataclass
class DestinationSummary:
    """One destination's share of the unfinished queue."""

    destination: str
    domains: list[str] = field(default_factory=list)
    queued: int = 0
    active: int = 0
    deferred: int = 0
    held: int = 0
    oldest_at: float | None = None
    """Arrival of the oldest message with a recipient here."""
    next_attempt_at: float | None = None
    causes: list[tuple[str, int]] = field(default_factory=list)
    """The most common last replies of its deferred and held recipients, with their counts."""
    suspended_until: float | None = None
    suspended_reason: str | None = None
    attempts_now: int = 0
    """Attempts holding or awaiting one of its connections right now."""
    pace: int = 0
    """Message starts a minute its route allows (0: no pace)."""

    @property
    def recipients(self) -> int:
        return self.queued + self.active + self.deferred + self.held

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["causes"] = [{"reply": reply, "count": count} for reply, count in self.causes]
        return data


def group_by_destination(
    recipients: Iterable[Unfinished],
    config: Config,
    *,
    suspended: Mapping[str, tuple[float, str]],
    delivering: Callable[[int], bool],
    attempts_now: Callable[[str], int],
) -> list[DestinationSummary]:
    """The destinations of `recipients`, the one needing attention first (most deferred,
    then oldest).

    A deferred recipient counts where its last attempt went; any other where the config in
    force sends it now. One of a message being delivered counts as active.
    """
    found: dict[str, DestinationSummary] = {}
    domains: dict[str, set[str]] = collections.defaultdict(set)
    causes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for rcpt in recipients:
        destination = destination_for(config, rcpt.address, rcpt.sender, rcpt.released)
        key = NO_ROUTE if destination is None else destination.key
        if rcpt.state == "deferred" and rcpt.destination:
            key = rcpt.destination
        summary = found.get(key)
        if summary is None:
            summary = found[key] = DestinationSummary(key)
            if destination is not None:
                summary.pace = destination.route.max_messages_per_minute
        domains[key].add(rcpt.address.rpartition("@")[2].lower())
        if delivering(rcpt.message_id) and rcpt.state != "held":
            summary.active += 1
        elif rcpt.state == "queued":
            summary.queued += 1
        elif rcpt.state == "deferred":
            summary.deferred += 1
        else:
            summary.held += 1
        if rcpt.state in ("deferred", "held") and rcpt.last_reply:
            causes[key][rcpt.last_reply] += 1
        if summary.oldest_at is None or rcpt.arrived_at < summary.oldest_at:
            summary.oldest_at = rcpt.arrived_at
        due = rcpt.next_attempt_at
        if rcpt.state != "held" and due is not None:
            if summary.next_attempt_at is None or due < summary.next_attempt_at:
                summary.next_attempt_at = due
    for key, summary in found.items():
        summary.domains = sorted(domains[key])
        summary.causes = causes[key].most_common(MOST_CAUSES)
        if key in suspended:
            summary.suspended_until, summary.suspended_reason = suspended[key]
        summary.attempts_now = attempts_now(key)
    return sorted(found.values(), key=lambda s: (-s.deferred, s.oldest_at or 0.0, s.destination))
