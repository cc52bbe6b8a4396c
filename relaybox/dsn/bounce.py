"""Bounce messages as spool entries: the DSN a failed or delayed recipient sends its sender.

`report.py` writes the report's bytes; this module wraps them in the `NewMessage` the spool stores
beside the recipient states that caused it, addressed from the null sender `<>` to the original
sender. The scheduler (a failure on delivery) and `admin` (an admin's "bounce now") both make
their DSNs here. It does no I/O and decides nothing about *whether* a DSN is due.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Sequence

from relaybox.config.model import Config
from relaybox.dsn.report import Action, RecipientStatus, build_dsn, find_status
from relaybox.message.queueid import new_queue_id
from relaybox.queue import DeliveryJob, NewMessage, RecipientOutcome

__all__ = ["dsn_message", "enhanced_status"]


def enhanced_status(reply: str, default: str) -> str:
    """The RFC 3463 status in a reply ("550 5.1.1 ..." -> "5.1.1"), or `default`."""
    return find_status(reply) or default


def dsn_message(
    job: DeliveryJob,
    outcomes: Sequence[RecipientOutcome],
    action: Action,
    config: Config,
    now: float,
) -> NewMessage:
    """A DSN about `outcomes` of `job`, to spool like any message and send with `<>`.

    Args:
        job: The original message; `job.recipients` must hold every recipient in `outcomes`.
        outcomes: The recipients to report, in order, with the reply that explains each.
        action: `failed` for a bounce, `delayed` for a delay warning (RFC 3464 §2.3.3).
        config: For the reporting host name, the From: address and the queue lifetime.
        now: The report's date and each recipient's Last-Attempt-Date.

    Returns:
        The message to pass to `Spool.finish_attempt(new_messages=...)`, so it commits in the
        same transaction as the recipient states it reports.
    """
    by_idx = {r.idx: r for r in job.recipients}
    hostname = config.server.hostname
    statuses = [
        RecipientStatus(
            recipient=by_idx[o.idx].address,
            action=action,
            status=enhanced_status(o.reply, "5.0.0" if action == "failed" else "4.0.0"),
            diagnostic=o.reply,
            remote_mta=None,
            last_attempt_at=now,
            will_retry_until=(
                job.arrived_at + config.delivery.queue_lifetime if action == "delayed" else None
            ),
        )
        for o in outcomes
    ]
    queue_id = new_queue_id()
    body = build_dsn(
        reporting_mta=hostname,
        bounce_from=f"{config.delivery.bounce_sender}@{hostname}",
        original_sender=job.sender,
        queue_id=job.queue_id,
        arrived_at=job.arrived_at,
        recipients=statuses,
        original_message=job.data,
        now=now,
    )
    received = (
        f"Received: by {hostname} (relaybox) id {queue_id}; "
        f"{email.utils.format_datetime(datetime.datetime.fromtimestamp(now).astimezone())}\r\n"
    ).encode()
    return NewMessage(
        sender="",
        recipients=(job.sender,),
        data=received + body,
        session_id=f"dsn-{job.queue_id}",
        listener="relaybox",
        client_ip="127.0.0.1",
        client_port=0,
        helo=hostname,
        auth_user=None,
        tls=None,
        body_8bit=False,
        # RFC 6531 §3.4: an internationalised sender can only be reached with SMTPUTF8.
        smtputf8=not job.sender.isascii(),
        arrived_at=now,
        queue_id=queue_id,
        is_bounce=True,
    )
