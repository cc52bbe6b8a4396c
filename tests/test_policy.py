"""SMTP policy as pure functions: who may relay, and what MAIL and RCPT are answered.

No sockets: each rule is a function of the client, the envelope and the config.
"""

from __future__ import annotations

import ipaddress

import pytest

from relaybox.config.model import LimitsConfig, ListenerConfig, SocketAddress, UserConfig
from relaybox.inbound.policy import (
    Client,
    check_from,
    check_hops,
    check_mail,
    check_rates,
    check_rcpt,
    check_sender,
    client_ip,
    may_relay,
    may_send_as,
    may_take_reserved_slot,
)
from relaybox.inbound.throttle import RateTable
from relaybox.message.headers import MAX_HOPS
from relaybox.message.replies import Reply

OFFICE = ipaddress.ip_network("192.0.2.0/24")
RELAY = ListenerConfig(
    listen=(SocketAddress("0.0.0.0", 25),), role="relay", allowed_networks=(OFFICE,)
)
SUBMISSION = ListenerConfig(listen=(SocketAddress("0.0.0.0", 587),), role="submission")
LIMITS = LimitsConfig(
    max_recipients=2,
    max_message_size=1000,
    max_messages_per_minute_per_ip=3,
    max_messages_per_minute_per_user=2,
)
ALICE = UserConfig(
    name="alice",
    password_hash="not used here",
    allowed_senders=(
        "example.org",
        "bob@example.net",
        "josé@bücher.example",
        "xn--mnchen-3ya.example",
    ),
)


class FixedClock:
    """A clock that stays at one moment (rates are per minute)."""

    def __call__(self) -> float:
        return 6_000.0


def client(ip: str, listener: ListenerConfig = RELAY, auth_user: str | None = None) -> Client:
    return Client(client_ip(ip), listener, auth_user)


# ---------------------------------------------------------------------- client_ip


def test_ipv4_mapped_ipv6_address_becomes_ipv4() -> None:
    assert client_ip("::ffff:127.0.0.1") == ipaddress.IPv4Address("127.0.0.1")


def test_zone_id_is_stripped() -> None:
    assert client_ip("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")


def test_plain_addresses_are_kept() -> None:
    assert client_ip("192.0.2.7") == ipaddress.IPv4Address("192.0.2.7")
    assert client_ip("2001:db8::1") == ipaddress.IPv6Address("2001:db8::1")


def test_mapped_client_of_an_allowed_ipv4_network_may_relay() -> None:
    assert may_relay(client("::ffff:192.0.2.7"))


# ---------------------------------------------------------------------- may_relay


def test_allowed_network_may_relay() -> None:
    assert may_relay(client("192.0.2.7"))


def test_unknown_network_cannot_relay() -> None:
    assert not may_relay(client("198.51.100.7"))


def test_submission_without_auth_cannot_relay() -> None:
    assert not may_relay(client("192.0.2.7", SUBMISSION))


def test_submission_with_auth_may_relay() -> None:
    assert may_relay(client("198.51.100.7", SUBMISSION, auth_user="alice"))


def test_relay_listener_without_allowed_networks_denies_everyone() -> None:
    closed = ListenerConfig(listen=(SocketAddress("0.0.0.0", 25),), role="relay")

    for ip in ("127.0.0.1", "192.0.2.7", "::1", "::ffff:10.0.0.1"):
        assert not may_relay(client(ip, closed)), ip


# ---------------------------------------------------------------------- check_rcpt


def rcpt(c: Client, *, accepted_so_far: int = 0, suppressed: str | None = None) -> str | None:
    return check_rcpt(
        c,
        "bob@example.org",
        accepted_so_far=accepted_so_far,
        limits=LIMITS,
        suppression_reason=suppressed,
    )


def test_rcpt_from_a_trusted_client_is_accepted() -> None:
    assert rcpt(client("192.0.2.7")) is None


def test_relay_denial_comes_before_limits_and_suppression() -> None:
    """A stranger learns nothing about limits or the suppression list."""
    reply = rcpt(client("198.51.100.7"), accepted_so_far=99, suppressed="bounced")

    assert reply == Reply.RELAY_DENIED
    assert reply.startswith("554 5.7.1")


def test_too_many_recipients_is_a_temporary_452() -> None:
    reply = rcpt(client("192.0.2.7"), accepted_so_far=2, suppressed="bounced")

    assert reply == Reply.TOO_MANY_RECIPIENTS
    assert reply.startswith("452 4.5.3")


def test_suppressed_recipient_is_refused_with_the_reason() -> None:
    reply = rcpt(client("192.0.2.7"), suppressed="550 user unknown (since 2026-01-02)")

    assert reply is not None
    assert reply.startswith("550 5.1.1 <bob@example.org>")
    assert "550 user unknown (since 2026-01-02)" in reply


# ---------------------------------------------------------------------- check_mail


def mail(
    *,
    sender: str = "alice@example.org",
    declared_size: int | None = None,
    free_space_mb: float | None = 500.0,
    rate_exceeded: bool = False,
    user: UserConfig | None = None,
    rates: RateTable | None = None,
) -> str | None:
    if rates is None:
        rates = RateTable(clock=FixedClock())
    if rate_exceeded:
        for _ in range(LIMITS.max_messages_per_minute_per_ip):
            rates.hit("192.0.2.7", LIMITS.max_messages_per_minute_per_ip)
    return check_mail(
        sender=sender,
        declared_size=declared_size,
        user=user,
        limits=LIMITS,
        free_space_mb=free_space_mb,
        min_free_space_mb=100,
        rates=rates,
        client_ip="192.0.2.7",
    )


@pytest.mark.parametrize("free", [None, 100.0, 500.0])
def test_mail_within_limits_is_accepted(free: float | None) -> None:
    assert mail(declared_size=1000, free_space_mb=free) is None


def test_low_disk_space_is_a_temporary_452_first() -> None:
    reply = mail(declared_size=5000, free_space_mb=99.5, rate_exceeded=True)

    assert reply == Reply.INSUFFICIENT_STORAGE
    assert reply.startswith("452 4.3.1")


def test_declared_size_over_the_limit_is_a_permanent_552() -> None:
    reply = mail(declared_size=1001, rate_exceeded=True)

    assert reply == Reply.size_exceeded(1000)
    assert reply.startswith("552 5.3.4") and "1000 bytes" in reply


def test_client_over_its_message_rate_gets_450() -> None:
    reply = mail(rate_exceeded=True)

    assert reply == Reply.RATE_LIMITED
    assert reply.startswith("450 4.7.1")


def test_user_sending_as_another_is_refused_before_rates_count() -> None:
    rates = RateTable(clock=FixedClock())
    for _ in range(5):
        reply = mail(sender="ceo@example.com", user=ALICE, rates=rates)
        assert reply == Reply.sender_not_owned("ceo@example.com", "alice")
    assert rates.count("192.0.2.7") == 0  # a refused MAIL costs no rate


def test_user_over_their_message_rate_gets_450() -> None:
    rates = RateTable(clock=FixedClock())
    assert mail(user=ALICE, rates=rates) is None
    assert mail(user=ALICE, rates=rates) is None
    assert mail(user=ALICE, rates=rates) == Reply.USER_RATE_LIMITED


def test_address_rate_is_counted_before_the_users() -> None:
    rates = RateTable(clock=FixedClock())
    for _ in range(3):
        assert check_rates(rates, "192.0.2.7", None, LIMITS) is None
    assert check_rates(rates, "192.0.2.7", ALICE, LIMITS) == Reply.RATE_LIMITED
    assert rates.count("user:alice") == 0


# ---------------------------------------------------------------------- sender binding


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org",
        "Bob@Example.NET",
        "josé@bücher.example",
        "josé@xn--bcher-kva.example",
        "anna@münchen.example",
        "anna@xn--mnchen-3ya.example",
    ],
)
def test_user_may_send_as_allowed_senders_in_either_idn_form(address: str) -> None:
    assert may_send_as(ALICE, address)
    assert check_sender(ALICE, address) is None
    assert check_from(ALICE, [address]) is None


@pytest.mark.parametrize(
    "address", ["ceo@example.com", "a@sub.example.org", "jose@bücher.example", "x@xn--zz.example"]
)
def test_user_may_not_send_as_others(address: str) -> None:
    assert not may_send_as(ALICE, address)
    assert check_sender(ALICE, address) == Reply.sender_not_owned(address, "alice")
    assert check_from(ALICE, ["alice@example.org", address]) == Reply.from_not_owned(
        address, "alice"
    )


def test_message_without_a_from_address_is_refused_for_users() -> None:
    assert check_from(ALICE, []) == Reply.NO_FROM_ADDRESS


# ---------------------------------------------------------------------- reserved slots, hops


def test_only_a_relay_listener_s_allowed_networks_may_take_reserved_slots() -> None:
    """The office's machines (any relay listener's allowed_networks, whichever listener they
    connect to) may; strangers and a submission listener's networks may not."""
    other = ListenerConfig(
        listen=(SocketAddress("0.0.0.0", 2525),),
        role="submission",
        allowed_networks=(ipaddress.ip_network("198.51.100.0/24"),),
    )
    listeners = (SUBMISSION, RELAY, other)
    assert may_take_reserved_slot(client_ip("192.0.2.7"), listeners)
    assert may_take_reserved_slot(client_ip("::ffff:192.0.2.7"), listeners)
    assert not may_take_reserved_slot(client_ip("203.0.113.9"), listeners)
    assert not may_take_reserved_slot(client_ip("198.51.100.1"), listeners)


def test_more_than_fifty_received_fields_is_a_loop() -> None:
    assert MAX_HOPS == 50  # Postfix's hopcount_limit
    assert check_hops(50) is None
    assert check_hops(51) == Reply.TOO_MANY_HOPS
    assert Reply.TOO_MANY_HOPS.startswith("554 5.4.6 ")  # RFC 3463: routing loop detected
