"""The retry policy: what an attempt's per-recipient outcomes mean for the message, as data.

`decide` turns the outcomes of one attempt into the decisions the scheduler then carries out:
when each deferred recipient is tried again (backoff), which ones give up at the queue lifetime,
whether a failure or delay DSN is owed, and which recipients go on the suppression list. It is
a pure function of the job, the outcomes, the delivery settings and the time: no I/O, no
clock, no spool; building the DSN and recording the attempt are the scheduler's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relaybox.config.model import DeliveryConfig
from relaybox.dsn.bounce import enhanced_status
from relaybox.queue import DeliveryJob, RecipientOutcome

__all__ = ["HARD_RECIPIENT_STATUSES", "RetryDecision", "decide"]

# RFC 3463 §3.2 (and RFC 7505 for X.1.10): in the reply to a recipient's own RCPT, these say
# its mailbox or domain does not exist, so later mail to it is refused at once. Only there: a
# DNS failure, a refused MAIL FROM or relaybox's own 553 say nothing about the mailbox.
HARD_RECIPIENT_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.10", "5.1.3", "5.1.6"})


@dataclass(frozen=True)
class RetryDecision:
    """What the scheduler records and sends after one attempt of one message."""

    outcomes: tuple[RecipientOutcome, ...]
    """Every recipient's final outcome: deferred ones carry their next attempt time, and
    those past the queue lifetime are bounced instead."""
    failure_dsn: bool
    """A "failed" DSN (RFC 3464 Action: failed) about `bounced` is owed to the sender."""
    bounce_dropped: bool
    """Recipients bounced but no DSN is sent: the message is itself a bounce or has the null
    sender (RFC 5321 §6.1), so the failure is only logged."""
    delay_dsn: bool
    """A "delayed" DSN about `deferred` is owed (the first and only delay warning)."""
    suppress: tuple[tuple[str, str, float], ...]
    """(address, reason, expires_at) to add to the suppression list."""

    @property
    def bounced(self) -> tuple[RecipientOutcome, ...]:
        """The recipients that failed for good in this attempt."""
        return tuple(o for o in self.outcomes if o.state == "bounced")

    @property
    def deferred(self) -> tuple[RecipientOutcome, ...]:
        """The recipients to try again, each at its `next_attempt_at`."""
        return tuple(o for o in self.outcomes if o.state == "deferred")

    @property
    def held(self) -> tuple[RecipientOutcome, ...]:
        """The recipients held (by a route, or an unpublished DKIM key) until released."""
        return tuple(o for o in self.outcomes if o.state == "held")

    @property
    def delivered(self) -> bool:
        """Every recipient of this attempt was delivered."""
        return all(o.state == "delivered" for o in self.outcomes)

    @property
    def next_attempt_at(self) -> float | None:
        """When the message is next tried (its earliest deferred recipient), if ever."""
        times = [o.next_attempt_at for o in self.deferred if o.next_attempt_at is not None]
        return min(times) if times else None


def decide(
    job: DeliveryJob,
    outcomes: Sequence[RecipientOutcome],
    delivery: DeliveryConfig,
    now: float,
) -> RetryDecision:
    """Decide backoff, bounce, delay warning and suppression for one attempt's outcomes.

    Args:
        job: The message as loaded for the attempt (its recipients' failure counts, its
            sender, arrival and whether it was warned of a delay already).
        outcomes: What the attempt did to each recipient of `job`, in any order.
        delivery: The delivery settings (backoff, queue lifetime, delay warning, suppression).
        now: The time the attempt is recorded at.

    Returns:
        The final outcomes and what is owed because of them.
    """
    by_idx = {r.idx: r for r in job.recipients}
    final = tuple(
        _settle(outcome, by_idx[outcome.idx].attempts, job.arrived_at, delivery, now)
        for outcome in outcomes
    )
    bounced = [o for o in final if o.state == "bounced"]
    deferred = [o for o in final if o.state == "deferred"]
    returnable = bool(job.sender) and not job.is_bounce
    delay_dsn = (
        bool(deferred)
        and delivery.delay_warning > 0
        and job.warned_at is None
        and returnable
        and now - job.arrived_at >= delivery.delay_warning
    )
    suppress: list[tuple[str, str, float]] = []
    if delivery.suppress_hard_bounces:
        expires = now + delivery.suppression_days * 86400
        for outcome in bounced:
            status = enhanced_status(outcome.reply, "5.0.0")
            if status in HARD_RECIPIENT_STATUSES and outcome.rcpt_reply:
                suppress.append((by_idx[outcome.idx].address, outcome.reply[:300], expires))
    return RetryDecision(
        outcomes=final,
        failure_dsn=bool(bounced) and returnable,
        bounce_dropped=bool(bounced) and not returnable,
        delay_dsn=delay_dsn,
        suppress=tuple(suppress),
    )


def _settle(
    outcome: RecipientOutcome,
    failures_before: int,
    arrived_at: float,
    delivery: DeliveryConfig,
    now: float,
) -> RecipientOutcome:
    """A deferred outcome with its next attempt time, or bounced past the queue lifetime."""
    if outcome.state != "deferred":
        return outcome
    if now - arrived_at >= delivery.queue_lifetime:
        # RFC 5321 §4.5.4.1: give up after the queue lifetime, with the last reply.
        return RecipientOutcome(
            outcome.idx,
            "bounced",
            f"{outcome.reply} (gave up: in the queue longer than "
            f"{delivery.queue_lifetime / 86400:g} days, status 5.4.7)",
            None,
            outcome.destination,
            outcome.attempted,
        )
    if outcome.next_attempt_at is not None:
        return outcome  # the sender of the outcome chose the time (a pace, a suspension)
    # An outcome with nothing sent (held back before a connection) does not count as a failure.
    failures = failures_before + (1 if outcome.attempted else 0)
    return RecipientOutcome(
        outcome.idx,
        "deferred",
        outcome.reply,
        now + delivery.backoff(failures),
        outcome.destination,
        outcome.attempted,
    )
