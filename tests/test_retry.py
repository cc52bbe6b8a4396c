"""The retry policy as data: one attempt's outcomes in, backoff, bounce, DSN and suppression
decisions out. No sockets, no spool, no clock: `decide` is called directly."""

from __future__ import annotations

from relaybox.config.model import DeliveryConfig
from relaybox.outbound.retry import decide
from relaybox.queue import DeliveryJob, PendingRecipient, RecipientOutcome

ARRIVED = 1_800_000_000.0
HOUR = 3600.0
DAY = 86400.0


def job(
    *attempts: int, sender: str = "alice@example.com", is_bounce: bool = False, warned_at=None
) -> DeliveryJob:
    """A message with one recipient per entry of `attempts` (its earlier failures)."""
    return DeliveryJob(
        message_id=1,
        queue_id="04F7K2M9QXB3T",
        sender=sender,
        arrived_at=ARRIVED,
        data=b"Subject: x\r\n\r\nx\r\n",
        body_8bit=False,
        smtputf8=False,
        is_bounce=is_bounce,
        warned_at=warned_at,
        recipients=tuple(
            PendingRecipient(i, f"r{i}@example.org", "queued", n, None)
            for i, n in enumerate(attempts or (0,))
        ),
    )


def deferred(idx: int = 0, *, attempted: bool = True, at: float | None = None):
    return RecipientOutcome(idx, "deferred", "451 4.7.1 Try later", at, "example.org", attempted)


def bounced(idx: int = 0, reply: str = "550 5.1.1 No such user", *, rcpt_reply: bool = True):
    return RecipientOutcome(idx, "bounced", reply, None, "example.org", rcpt_reply=rcpt_reply)


DEFAULTS = DeliveryConfig()


def test_a_first_failure_waits_min_backoff_and_each_further_one_doubles_it() -> None:
    now = ARRIVED + 60
    times = [
        decide(job(n), [deferred()], DEFAULTS, now).outcomes[0].next_attempt_at for n in range(6)
    ]
    assert times == [now + wait for wait in (300, 600, 1200, 2400, 4000, 4000)]


def test_an_outcome_with_nothing_sent_does_not_count_as_a_failure() -> None:
    (outcome,) = decide(job(2), [deferred(attempted=False)], DEFAULTS, ARRIVED).outcomes
    assert outcome.next_attempt_at == ARRIVED + DEFAULTS.backoff(2)


def test_a_time_chosen_by_the_attempt_is_kept() -> None:
    """A paced or suspended destination names its own next time; backoff does not replace it."""
    (outcome,) = decide(job(3), [deferred(at=ARRIVED + 42)], DEFAULTS, ARRIVED).outcomes
    assert outcome.next_attempt_at == ARRIVED + 42


def test_deferred_past_the_queue_lifetime_bounces_with_the_last_reply_and_5_4_7() -> None:
    now = ARRIVED + 5 * DAY
    decision = decide(job(9), [deferred()], DEFAULTS, now)
    (outcome,) = decision.outcomes
    assert outcome.state == "bounced"
    assert outcome.reply.startswith("451 4.7.1 Try later (gave up")
    assert "5 days, status 5.4.7" in outcome.reply
    assert decision.failure_dsn and not decision.deferred
    assert decision.next_attempt_at is None


def test_a_bounce_owes_the_sender_a_failure_dsn() -> None:
    decision = decide(job(0, 0), [bounced(0), deferred(1)], DEFAULTS, ARRIVED)
    assert decision.failure_dsn and not decision.bounce_dropped
    assert [o.idx for o in decision.bounced] == [0]
    assert [o.idx for o in decision.deferred] == [1]


def test_a_bounce_of_a_bounce_or_of_the_null_sender_is_dropped_not_returned() -> None:
    for failed in (job(0, is_bounce=True), job(0, sender="")):
        decision = decide(failed, [bounced()], DEFAULTS, ARRIVED)
        assert decision.bounce_dropped and not decision.failure_dsn


def test_the_delay_warning_is_sent_once_after_delay_warning_seconds() -> None:
    delivery = DeliveryConfig(delay_warning=4 * HOUR)
    assert not decide(job(1), [deferred()], delivery, ARRIVED + 3 * HOUR).delay_dsn
    assert decide(job(1), [deferred()], delivery, ARRIVED + 4 * HOUR).delay_dsn
    warned = job(1, warned_at=ARRIVED + 4 * HOUR)
    assert not decide(warned, [deferred()], delivery, ARRIVED + 5 * HOUR).delay_dsn
    assert not decide(job(1, sender=""), [deferred()], delivery, ARRIVED + 5 * HOUR).delay_dsn
    assert not decide(job(1), [deferred()], DEFAULTS, ARRIVED + 5 * HOUR).delay_dsn  # 0: never


def test_a_hard_rcpt_reply_suppresses_the_recipient_for_suppression_days() -> None:
    decision = decide(job(0), [bounced()], DEFAULTS, ARRIVED)
    assert decision.suppress == (("r0@example.org", "550 5.1.1 No such user", ARRIVED + 30 * DAY),)


def test_only_the_recipients_own_rcpt_reply_with_a_mailbox_status_suppresses() -> None:
    """A DNS failure, a refused sender or a 5.7.1 policy refusal say nothing of the mailbox."""
    not_rcpt = bounced(reply="550 5.1.1 No such user", rcpt_reply=False)
    policy = bounced(reply="550 5.7.1 Relay denied")
    for outcome in (not_rcpt, policy):
        assert decide(job(0), [outcome], DEFAULTS, ARRIVED).suppress == ()
    off = DeliveryConfig(suppress_hard_bounces=False)
    assert decide(job(0), [bounced()], off, ARRIVED).suppress == ()


def test_all_delivered_is_delivered_and_held_is_reported_as_held() -> None:
    done = RecipientOutcome(0, "delivered", "250 2.0.0 Ok")
    held = RecipientOutcome(1, "held", "held by route", attempted=False)
    assert decide(job(0), [done], DEFAULTS, ARRIVED).delivered
    decision = decide(job(0, 0), [done, held], DEFAULTS, ARRIVED)
    assert not decision.delivered and [o.idx for o in decision.held] == [1]
