"""Admin actions on a message while it is being delivered: what the admin asked for and what
the attempt learnt must both survive, in the way an admin expects.

A sink that holds its reply to the end of DATA keeps an attempt in flight for as long as the
test needs, over a real loopback connection.
"""

from __future__ import annotations

import asyncio
import time

from relaybox.queue import MessageFilter

from .test_delivery import relay_config, send, to_sink, wait_attempts, wait_state


async def in_flight(run, smtp_sink, tmp_path, **behaviour):
    """An engine relaying to a sink that stalls; returns (run, sink, stall, queue_id) once the
    message's data has reached the sink and the attempt waits for the final reply."""
    stall = asyncio.Event()
    sink = await smtp_sink(stall=stall, **behaviour)
    engine = await run(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(engine, "a@example.com", ["b@example.org"])
    await asyncio.wait_for(sink.in_data.wait(), 10)
    return engine, sink, stall, queue_id


async def test_a_hold_made_during_an_attempt_that_defers_stands(start_engine, smtp_sink, tmp_path):
    run, _, stall, queue_id = await in_flight(
        start_engine, smtp_sink, tmp_path, data_reply="451 4.3.0 Try again later"
    )
    only = MessageFilter(queue_ids=(queue_id,))
    assert await run.engine.admin.hold(only) == [queue_id]
    stall.set()
    detail = await wait_attempts(run, queue_id, 1)
    assert detail.attempts[0].outcome == "deferred"
    assert detail.row.state == "held"
    assert [r.state for r in detail.recipients] == ["held"]


async def test_mail_delivered_during_a_hold_is_recorded_as_delivered(
    start_engine, smtp_sink, tmp_path
):
    """The hold came too late: the mail is gone, and the record must say so."""
    run, sink, stall, queue_id = await in_flight(start_engine, smtp_sink, tmp_path)
    await run.engine.admin.hold(MessageFilter(queue_ids=(queue_id,)))
    stall.set()
    await sink.wait_for(1)
    detail = await wait_state(run, queue_id, {"delivered"})
    assert [r.state for r in detail.recipients] == ["delivered"]


async def test_a_message_deleted_during_its_attempt_stays_deleted(
    start_engine, smtp_sink, tmp_path
):
    run, _, stall, queue_id = await in_flight(
        start_engine, smtp_sink, tmp_path, data_reply="550 5.1.1 No such user"
    )
    assert await run.engine.admin.delete(MessageFilter(queue_ids=(queue_id,))) == [queue_id]
    stall.set()
    deadline = time.monotonic() + 10
    while "deleted-in-flight" not in run.log_text():
        assert time.monotonic() < deadline, run.log_text()
        await asyncio.sleep(0.05)
    assert await run.engine.admin.show(queue_id) is None
    assert "delivery-failed" not in run.log_text()
    # The bounce the attempt would have caused is dropped with it: nobody is told.
    assert await run.engine.admin.count(MessageFilter(states=("queued", "deferred"))) == 0


async def test_bounce_now_leaves_a_message_in_flight_alone(start_engine, smtp_sink, tmp_path):
    run, sink, stall, queue_id = await in_flight(start_engine, smtp_sink, tmp_path)
    assert await run.engine.admin.bounce(MessageFilter(queue_ids=(queue_id,))) == []
    stall.set()
    await sink.wait_for(1)
    await wait_state(run, queue_id, {"delivered"})
    assert await run.engine.admin.count(MessageFilter(states=("queued", "deferred"))) == 0


async def test_a_claimed_message_is_not_attempted_until_given_back(
    start_engine, smtp_sink, tmp_path
):
    """Bounce-now claims messages for its read-then-write; a retry meanwhile must wait."""
    sink = await smtp_sink(greylist=True)
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    queue_id = await send(run, "a@example.com", ["b@example.org"])
    detail = await wait_state(run, queue_id, {"deferred"})
    assert run.engine.claim(detail.row.id)
    assert not run.engine.claim(detail.row.id)
    try:
        await run.engine.admin.retry(MessageFilter(queue_ids=(queue_id,)))
        await asyncio.sleep(0.5)
        assert len((await run.engine.admin.show(queue_id)).attempts) == 1
    finally:
        run.engine.unclaim(detail.row.id)
    await sink.wait_for(1)
    detail = await wait_state(run, queue_id, {"delivered"})
    assert len(detail.attempts) == 2
