"""The mail log's line for what became of each recipient of an attempt: `sent`, `captured`,
`deferred`, `bounced` or `held`, with the queue ID, the recipient, the destination and the
reason (the reply, and for a failure what it means in plain words), in one place so that no
outcome goes unlogged, however it was decided."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from relaybox.maillog import MailLog
from relaybox.message.explain import explain
from relaybox.outbound.routing import Destination
from relaybox.queue import AttemptRow, DeliveryJob, RecipientOutcome

__all__ = ["CAPTURE", "log_outcomes"]

CAPTURE = "capture"
"""The destination of a recipient taken by a `capture` route: kept, never sent on."""

_EVENT = {"delivered": "sent", "deferred": "deferred", "bounced": "bounced", "held": "held"}


def log_outcomes(
    log: MailLog,
    job: DeliveryJob,
    outcomes: Sequence[RecipientOutcome],
    attempts: Sequence[AttemptRow],
    now: float,
    routed: Mapping[int, Destination | None] | None = None,
) -> None:
    """One line per recipient outcome (as decided: a deferral past the queue lifetime is a
    bounce here).

    Args:
        outcomes: The final outcomes of the attempt (`RetryDecision.outcomes`).
        attempts: The attempt's rows: the last one to a destination names the relay and TLS.
        now: When the outcome was decided (the line's `delay` is counted from arrival to it).
        routed: Each recipient's destination (None: no route), for outcomes that name none
            (a `hold` or `reject` route, no route at all) and the route's TLS mode (which the
            explanation of a TLS failure names).
    """
    address = {r.idx: r.address for r in job.recipients}
    last = {a.destination: a for a in attempts}
    for outcome in outcomes:
        routed_to = (routed or {}).get(outcome.idx)
        destination = outcome.destination or (routed_to.key if routed_to else None)
        if destination is None and routed is not None and outcome.idx in routed:
            destination = "no route"
        explained = None
        if outcome.state in ("deferred", "bounced"):
            found = explain(outcome.reply, tls_mode=routed_to.route.tls if routed_to else None)
            explained = found.summary if found is not None else None
        attempt = last.get(destination) if destination else None
        relay = None
        if attempt is not None and attempt.host:
            relay = f"{attempt.host}[{attempt.ip}]:{attempt.port}"
        event = _EVENT[outcome.state]
        if outcome.state == "delivered" and destination == CAPTURE:
            event = "captured"
        log.event(
            event,
            queue_id=job.queue_id,
            to=f"<{address.get(outcome.idx, '?')}>",
            relay=relay,
            destination=destination,
            delay=round(now - job.arrived_at, 2),
            tls=attempt.tls if attempt is not None else None,
            next_attempt=_iso(outcome.next_attempt_at) if outcome.state == "deferred" else None,
            reply=outcome.reply,
            explained=explained,
        )


def _iso(at: float | None) -> str | None:
    return None if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
