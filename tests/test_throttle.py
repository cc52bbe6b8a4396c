"""Connection and rate tables: limits per client and in total, with bounded memory."""

from __future__ import annotations

from relaybox.inbound.throttle import ConnectionTable, RateTable


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 6_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_connections_beyond_the_total_are_refused() -> None:
    table = ConnectionTable()

    assert table.open("192.0.2.1", max_total=2, max_per_ip=5) is None
    assert table.open("192.0.2.2", max_total=2, max_per_ip=5) is None
    assert table.open("192.0.2.3", max_total=2, max_per_ip=5) == "total"
    assert table.total == 2


def test_reserved_slots_are_left_to_trusted_clients() -> None:
    table = ConnectionTable()

    for n in range(3):
        assert table.open(f"203.0.113.{n}", 5, 5, reserved=2, trusted=False) is None
    assert table.open("203.0.113.9", 5, 5, reserved=2, trusted=False) == "total"
    assert table.open("192.0.2.1", 5, 5, reserved=2, trusted=True) is None
    assert table.open("192.0.2.1", 5, 5, reserved=2, trusted=True) is None
    assert table.open("192.0.2.2", 5, 5, reserved=2, trusted=True) == "total"
    table.close("192.0.2.1")
    assert table.open("203.0.113.9", 5, 5, reserved=2, trusted=False) == "total"


def test_connections_beyond_the_per_ip_limit_are_refused() -> None:
    table = ConnectionTable()

    assert table.open("192.0.2.1", max_total=10, max_per_ip=2) is None
    assert table.open("192.0.2.1", max_total=10, max_per_ip=2) is None
    assert table.open("192.0.2.1", max_total=10, max_per_ip=2) == "per_ip"
    assert table.open("192.0.2.2", max_total=10, max_per_ip=2) is None
    assert table.per_ip == {"192.0.2.1": 2, "192.0.2.2": 1}


def test_closing_a_connection_frees_its_slot() -> None:
    table = ConnectionTable()
    table.open("192.0.2.1", max_total=1, max_per_ip=1)

    table.close("192.0.2.1")

    assert table.total == 0
    assert table.per_ip == {}
    assert table.open("192.0.2.1", max_total=1, max_per_ip=1) is None


def test_closing_a_connection_that_was_never_counted_changes_nothing() -> None:
    table = ConnectionTable()
    table.open("192.0.2.1", max_total=1, max_per_ip=1)

    table.close("198.51.100.7")

    assert table.total == 1
    assert table.open("192.0.2.2", max_total=1, max_per_ip=1) == "total"


def test_rate_limit_is_enforced_within_a_minute() -> None:
    clock = FakeClock()
    rates = RateTable(clock=clock)

    allowed = [not rates.hit("192.0.2.1", limit=3) for _ in range(5)]

    assert allowed == [True, True, True, False, False]
    assert not rates.hit("192.0.2.2", limit=3)  # other clients are not affected


def test_rate_window_slides() -> None:
    clock = FakeClock(6_000.0)  # the start of a minute
    rates = RateTable(clock=clock)
    for _ in range(4):
        rates.hit("192.0.2.1", limit=4)

    clock.now += 60  # the next minute begins: the previous one still weighs in fully
    assert rates.hit("192.0.2.1", limit=4)

    clock.now += 45  # now it weighs 15/60 of 4 = 1: three more fit
    assert [rates.hit("192.0.2.1", limit=4) for _ in range(4)] == [False, False, False, True]

    clock.now += 120  # two quiet minutes later nothing is remembered
    assert rates.count("192.0.2.1") == 0


def test_rate_limit_zero_means_unlimited() -> None:
    rates = RateTable(clock=FakeClock())

    assert not any(rates.hit("192.0.2.1", limit=0) for _ in range(10_000))


def test_rate_table_is_bounded_and_fails_open_for_new_clients() -> None:
    rates = RateTable(max_entries=2, clock=FakeClock())
    rates.hit("192.0.2.1", limit=1)
    rates.hit("192.0.2.2", limit=1)

    for _ in range(5):
        assert not rates.hit("192.0.2.3", limit=1)  # not tracked: never limited

    assert rates.count("192.0.2.3") == 0
    assert rates.hit("192.0.2.1", limit=1)  # clients already tracked stay limited
