"""Checks of `[delivery]` (how mail leaves, is retried and kept) and `[dns]` (where names are
looked up); routes, which also shape delivery, are `checks.routes`'.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from relaybox.config.model import DeliveryConfig, DnsConfig, IPAddress, SocketAddress
from relaybox.config.positions import join_key
from relaybox.config.problems import Report
from relaybox.config.readers import (
    address_reason,
    list_of,
    read_port,
    read_str,
    split_host_port,
)
from relaybox.config.rules import example_of, show
from relaybox.config.tables import read_table, then
from relaybox.message.address import AddressError, parse_rcpt

__all__ = ["delivery_warnings", "read_delivery", "read_dns"]

_DNS_PORT = 53


def read_dns(report: Report, table: dict[str, Any]) -> DnsConfig | None:
    """The `[dns]` table."""
    resolvers = list_of(_resolver, example_of(DnsConfig, "resolvers"), unique=True)
    config: DnsConfig | None = read_table(report, "dns", DnsConfig, table, {"resolvers": resolvers})
    return config


def read_delivery(report: Report, table: dict[str, Any]) -> DeliveryConfig | None:
    """The `[delivery]` table, with the settings that must agree with each other."""
    readers = {
        "outbound_ips": list_of(
            _outbound_ip, example_of(DeliveryConfig, "outbound_ips"), unique=True
        ),
        "bounce_sender": then(read_str, _bounce_sender),
    }
    delivery: DeliveryConfig | None = read_table(report, "delivery", DeliveryConfig, table, readers)
    if delivery is None:
        return None
    valid = True
    if delivery.max_backoff < delivery.min_backoff:
        written = "max_backoff" if "max_backoff" in table else "min_backoff"
        report.error(
            join_key("delivery", written),
            f"max_backoff ({show(delivery.max_backoff)}) must not be less than min_backoff "
            f"({show(delivery.min_backoff)}): retries start min_backoff seconds apart and the "
            "wait doubles up to max_backoff",
        )
        valid = False
    if delivery.delay_warning and delivery.delay_warning >= delivery.queue_lifetime:
        written = "delay_warning" if "delay_warning" in table else "queue_lifetime"
        report.error(
            join_key("delivery", written),
            f"delay_warning ({show(delivery.delay_warning)} seconds) must be less than "
            f"queue_lifetime ({show(delivery.queue_lifetime)} seconds), or the message "
            "bounces before its sender is warned; use 0 for no warning",
        )
        valid = False
    return delivery if valid else None


def delivery_warnings(report: Report, delivery: DeliveryConfig) -> None:
    """Settings of `[delivery]` that are valid but do not do what an admin may expect."""
    if delivery.max_connections_per_destination > delivery.max_connections:
        report.warn(
            "delivery.max_connections_per_destination",
            f"is more than max_connections ({delivery.max_connections}), which caps it; "
            "lower it, or raise max_connections",
        )
    for position, address in enumerate(delivery.outbound_ips):
        if not address.is_global:
            report.warn(
                f"delivery.outbound_ips[{position}]",
                f"{address} is not a public internet address; receiving servers check "
                "SPF and reverse DNS against the address they see, which for a relay "
                "behind a router (NAT) is the router's public address",
            )
    if delivery.soft_bounce:
        report.warn(
            "delivery.soft_bounce",
            "while this is on, no mail bounces: mail that can never be delivered waits "
            "in the queue until queue_lifetime, and its senders do not learn why. Turn it "
            "off once the problem is found",
        )


def _resolver(report: Report, key: str, value: object) -> SocketAddress | None:
    """`address`, `address:port`, `[v6]` or `[v6]:port`; the port is 53 when not written."""
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "127.0.0.1" or "127.0.0.1:5353"', value)
        return None
    parts = split_host_port(value)
    if parts is None:
        report.error(
            key,
            f'"{value}": write an IPv6 address in square brackets, like "[::1]" (port 53) '
            'or "[::1]:5353"',
        )
        return None
    host, port_text, bracketed = parts
    port = _DNS_PORT if port_text is None else read_port(report, key, value, port_text, "53")
    if port is None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        report.error(
            key,
            f'"{host}" is not an IP address: name each DNS server by its address, like '
            '"127.0.0.1" or "[::1]", because looking up a name would itself need a DNS '
            "server",
        )
        return None
    if bracketed and address.version == 4:
        report.error(key, f'"{value}": square brackets are only for IPv6 addresses; write "{host}"')
        return None
    return SocketAddress(str(address), port)


def _outbound_ip(report: Report, key: str, value: object) -> IPAddress | None:
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "203.0.113.7"', value)
        return None
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        hint = (
            "list single addresses, not networks"
            if "/" in value
            else 'write an address like "203.0.113.7" or "2001:db8::7"'
        )
        report.error(key, f'"{value}" is not an IP address; {hint}')
        return None
    if address.is_unspecified or address.is_multicast:
        report.error(
            key,
            f'"{value}" cannot be the address mail is sent from; write the public '
            'address receiving servers see, like "203.0.113.7"',
        )
        return None
    return address


def _bounce_sender(report: Report, key: str, text: str) -> str | None:
    if "@" in text:
        report.error(
            key,
            f'"{text}": write only the part before the @, like "MAILER-DAEMON"; the '
            "domain is always [server] hostname",
        )
        return None
    problem = None
    if not text:
        problem = 'must not be empty; write a name like "MAILER-DAEMON"'
    else:
        try:
            parse_rcpt(f"TO:<{text}@example.com>", smtputf8=False)
        except AddressError as exc:
            problem = (
                f'"{text}" cannot be the part before the @ of an address '
                f'({address_reason(exc)}); use a name like "MAILER-DAEMON"'
            )
    if problem:
        report.error(key, problem)
        return None
    return text
