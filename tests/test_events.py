"""The event bus: publish never waits, each subscriber gets its own bounded, ordered inbox."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from relaybox.events import Event, EventBus, SessionClosed, SessionOpened


def opened(n: int) -> SessionOpened:
    return SessionOpened(f"S{n}", "127.0.0.1:2525", "192.0.2.1", 40000 + n, at=float(n))


def test_publish_without_subscribers_is_fine() -> None:
    bus = EventBus()

    bus.publish(opened(1))

    assert not bus.has_subscribers


def test_each_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    first, second = bus.subscribe(), bus.subscribe()
    events = [opened(n) for n in range(5)]

    for event in events:
        bus.publish(event)

    assert first.drain() == events
    assert second.drain() == events
    assert first.drain() == []


def test_full_subscriber_drops_the_oldest_and_counts_them() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=3)

    for n in range(5):
        bus.publish(opened(n))

    assert [e.session_id for e in sub.drain()] == ["S2", "S3", "S4"]  # type: ignore[attr-defined]
    assert sub.dropped == 2
    assert sub.take_dropped() == 2
    assert sub.take_dropped() == 0


def test_publish_is_synchronous() -> None:
    assert not inspect.iscoroutinefunction(EventBus.publish)


async def test_publish_never_waits_for_a_subscriber_that_is_not_reading() -> None:
    bus = EventBus()
    stalled = bus.subscribe(maxsize=10)
    reading = bus.subscribe(maxsize=100_000)

    for n in range(50_000):  # would block or fail if publish waited for `stalled`
        bus.publish(opened(n))

    assert len(reading.drain()) == 50_000
    assert stalled.take_dropped() == 49_990


async def test_get_waits_for_the_next_event() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiting.done()

    event = SessionClosed("S1", "192.0.2.1", 3, at=1_800_000_000.0)
    bus.publish(event)

    assert await asyncio.wait_for(waiting, 1) is event


async def test_get_returns_queued_events_without_waiting() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(opened(1))
    bus.publish(opened(2))

    got: list[Event] = [await sub.get(), await sub.get()]

    assert got == [opened(1), opened(2)]


async def test_subscription_is_an_async_iterator() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for n in range(3):
        bus.publish(opened(n))

    seen = []
    async for event in sub:
        seen.append(event)
        if len(seen) == 3:
            break

    assert seen == [opened(0), opened(1), opened(2)]


def test_closed_subscription_receives_nothing_more() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    other = bus.subscribe()
    bus.publish(opened(1))

    sub.close()
    bus.publish(opened(2))

    assert sub.drain() == [opened(1)]
    assert other.drain() == [opened(1), opened(2)]


def test_has_subscribers_follows_subscribe_and_close() -> None:
    bus = EventBus()
    assert not bus.has_subscribers

    sub = bus.subscribe()
    assert bus.has_subscribers

    sub.close()
    sub.close()  # closing twice is harmless
    assert not bus.has_subscribers


def test_event_time_comes_from_the_publisher_and_events_are_frozen() -> None:
    """No default time: an event stamped by the system clock would ignore the engine's."""
    with pytest.raises(TypeError, match="at"):
        SessionClosed("S1", "192.0.2.1", 0)  # type: ignore[call-arg]
    event = SessionClosed("S1", "192.0.2.1", 0, at=1_800_000_000.5)

    assert event.at == 1_800_000_000.5
    try:
        event.messages = 5  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("events must be immutable")
