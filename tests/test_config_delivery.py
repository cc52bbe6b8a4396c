"""Checking the `[dns]` and `[delivery]` tables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from relaybox.config import (
    DEFAULT_ROUTE,
    DeliveryConfig,
    DnsConfig,
    RouteConfig,
    SocketAddress,
    default_config,
    load_config,
)

from .support.configs import (
    only_error,
    warnings_of,
    write,
)

# --- [dns] -----------------------------------------------------------------------------------


def test_dns_delivery_and_routes_have_defaults_when_absent(tmp_path: Path) -> None:
    for config in (default_config(), load_config(write(tmp_path, "[limits]\n"))):
        assert config.dns == DnsConfig(resolvers=(), timeout=5.0)
        assert config.delivery == DeliveryConfig()
        assert config.routes == (DEFAULT_ROUTE,)
    assert DEFAULT_ROUTE == RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
    assert DEFAULT_ROUTE.hosts == () and DEFAULT_ROUTE.username is None


def test_resolvers_take_port_53_unless_one_is_written(tmp_path: Path) -> None:
    text = '[dns]\nresolvers = ["127.0.0.1", "127.0.0.1:5353", "[::1]", "[::1]:5354"]\n'
    text += "timeout = 0.5\n"
    dns = load_config(write(tmp_path, text)).dns
    assert dns.resolvers == (
        SocketAddress("127.0.0.1", 53),
        SocketAddress("127.0.0.1", 5353),
        SocketAddress("::1", 53),
        SocketAddress("::1", 5354),
    )
    assert dns.timeout == 0.5
    assert [str(r) for r in dns.resolvers] == [
        "127.0.0.1:53",
        "127.0.0.1:5353",
        "[::1]:53",
        "[::1]:5354",
    ]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("::1", "square brackets"),
        ("2001:db8::53", "square brackets"),
        ("localhost", '"localhost" is not an IP address'),
        ("dns.example.net:53", "not an IP address"),
        ("127.0.0.1:0", "from 1 to 65535"),
        ("127.0.0.1:70000", "from 1 to 65535"),
        ("127.0.0.1:dns", "from 1 to 65535"),
        ("127.0.0.1:", "ends with a colon"),
        ("[127.0.0.1]:53", "only for IPv6"),
    ],
)
def test_bad_resolver_is_explained(tmp_path: Path, entry: str, words: str) -> None:
    problem = only_error(tmp_path, f'[dns]\nresolvers = [\n  "{entry}",\n]\n')
    assert (problem.key, problem.line) == ("dns.resolvers[0]", 3)
    assert words in problem.message


def test_resolver_listed_twice_is_an_error(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[dns]\nresolvers = ["127.0.0.1", "127.0.0.1:53"]\n')
    assert problem.key == "dns.resolvers[1]"
    assert "listed twice" in problem.message


@pytest.mark.parametrize("timeout", ["0", "0.05", "61"])
def test_dns_timeout_range(tmp_path: Path, timeout: str) -> None:
    problem = only_error(tmp_path, f"[dns]\ntimeout = {timeout}\n")
    assert problem.key == "dns.timeout"
    assert "between 0.1 and 60 seconds" in problem.message


# --- [delivery] ------------------------------------------------------------------------------


def test_delivery_settings_load(tmp_path: Path) -> None:
    text = (
        "[delivery]\nmx_port = 2525\n"
        'outbound_ips = ["8.8.8.8", "2001:4860:4860::8888"]\n'
        "max_connections = 20\nmax_connections_per_destination = 5\n"
        "connection_cache_idle = 0\nconnect_timeout = 5\ncommand_timeout = 60\n"
        "data_timeout = 120\nmin_backoff = 60\nmax_backoff = 3600\n"
        "queue_lifetime = 86400\ndelay_warning = 14400\nretention = 0\n"
        "suppress_hard_bounces = false\nsuppression_days = 7.5\n"
        'bounce_sender = "bounces"\n'
    )
    delivery = load_config(write(tmp_path, text)).delivery
    assert delivery == DeliveryConfig(
        mx_port=2525,
        outbound_ips=(
            ipaddress.ip_address("8.8.8.8"),
            ipaddress.ip_address("2001:4860:4860::8888"),
        ),
        max_connections=20,
        max_connections_per_destination=5,
        connection_cache_idle=0.0,
        connect_timeout=5.0,
        command_timeout=60.0,
        data_timeout=120.0,
        min_backoff=60.0,
        max_backoff=3600.0,
        queue_lifetime=86400.0,
        delay_warning=14400.0,
        retention=0.0,
        suppress_hard_bounces=False,
        suppression_days=7.5,
        bounce_sender="bounces",
    )


def test_delivery_defaults_are_postfix_like() -> None:
    delivery = DeliveryConfig()
    assert (delivery.mx_port, delivery.max_connections) == (25, 50)
    assert delivery.max_connections_per_destination == 10
    assert (delivery.min_backoff, delivery.max_backoff) == (300.0, 4000.0)
    assert delivery.queue_lifetime == 5 * 86400
    assert delivery.retention == 7 * 86400
    assert delivery.delay_warning == 0.0 and not delivery.soft_bounce
    assert delivery.suppress_hard_bounces and delivery.suppression_days == 30.0
    assert delivery.bounce_sender == "MAILER-DAEMON"
    assert delivery.outbound_ips == ()


def test_backoff_doubles_from_min_up_to_max() -> None:
    delivery = DeliveryConfig()
    assert [delivery.backoff(n) for n in range(1, 8)] == [
        300.0,
        600.0,
        1200.0,
        2400.0,
        4000.0,
        4000.0,
        4000.0,
    ]
    assert delivery.backoff(0) == 300.0
    assert delivery.backoff(10_000) == 4000.0


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("mx_port = 0", "between 1 and 65535"),
        ("max_connections = 0", "between 1 and 10000"),
        ("max_connections_per_destination = 0", "between 1 and 1000"),
        ("connection_cache_idle = 301", "between 0 and 300 seconds"),
        ("connect_timeout = 0", "between 0 and 600 seconds"),
        ("command_timeout = 0", "between 0 and 3600 seconds"),
        ("data_timeout = 7200", "between 0 and 3600 seconds"),
        ("min_backoff = 0", "between 0 and 86400 seconds"),
        ("queue_lifetime = 0", "between 0 and 2592000 seconds"),
        ("delay_warning = -1", "between 0 and 2592000 seconds"),
        ("retention = -1", "between 0 and 31622400 seconds"),
        ("suppression_days = 0", "between 0 and 3650 days"),
        ("mx_port = 25.5", "whole number"),
        ('soft_bounce = "yes"', "true or false"),
    ],
)
def test_delivery_ranges(tmp_path: Path, setting: str, words: str) -> None:
    problem = only_error(tmp_path, f"[delivery]\n{setting}\n")
    assert (problem.key, problem.line) == ("delivery." + setting.split(" ")[0], 2)
    assert words in problem.message


def test_max_backoff_may_not_be_below_min_backoff(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[delivery]\nmin_backoff = 600\nmax_backoff = 300\n")
    assert (problem.key, problem.line) == ("delivery.max_backoff", 3)
    assert "must not be less than min_backoff (600)" in problem.message
    # Only the minimum written, above the default maximum: the written line is named.
    problem = only_error(tmp_path, "[delivery]\nmin_backoff = 5000\n")
    assert (problem.key, problem.line) == ("delivery.min_backoff", 2)
    backoff = load_config(write(tmp_path, "[delivery]\nmin_backoff = 60\nmax_backoff = 60\n"))
    assert backoff.delivery.backoff(5) == 60.0


def test_delay_warning_must_come_before_the_queue_lifetime(tmp_path: Path) -> None:
    text = "[delivery]\nqueue_lifetime = 3600\ndelay_warning = 3600\n"
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("delivery.delay_warning", 3)
    assert "must be less than queue_lifetime" in problem.message
    assert "use 0 for no warning" in problem.message
    config = load_config(write(tmp_path, "[delivery]\nqueue_lifetime = 60\ndelay_warning = 0\n"))
    assert config.delivery.delay_warning == 0.0


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("203.0.113.0/24", "list single addresses, not networks"),
        ("mail.example.com", "is not an IP address"),
        ("0.0.0.0", "cannot be the address mail is sent from"),
        ("224.0.0.1", "cannot be the address mail is sent from"),
    ],
)
def test_bad_outbound_ip_is_explained(tmp_path: Path, entry: str, words: str) -> None:
    problem = only_error(tmp_path, f'[delivery]\noutbound_ips = ["{entry}"]\n')
    assert problem.key == "delivery.outbound_ips[0]"
    assert words in problem.message


def test_outbound_ip_that_is_not_public_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, '[delivery]\noutbound_ips = ["8.8.8.8", "192.168.1.5"]\n')
    assert (warning.key, warning.line) == ("delivery.outbound_ips[1]", 2)
    assert "not a public internet address" in warning.message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("postmaster@example.org", "only the part before the @"),
        ("mailer daemon", "cannot be the part before the @"),
        ("", "must not be empty"),
    ],
)
def test_bad_bounce_sender_is_explained(tmp_path: Path, value: str, words: str) -> None:
    problem = only_error(tmp_path, f'[delivery]\nbounce_sender = "{value}"\n')
    assert problem.key == "delivery.bounce_sender"
    assert words in problem.message


def test_soft_bounce_is_warned_about_while_on(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, "[delivery]\nsoft_bounce = true\n")
    assert warning.key == "delivery.soft_bounce"
    assert "no mail bounces" in warning.message


def test_per_destination_limit_above_the_total_is_warned_about(tmp_path: Path) -> None:
    text = "[delivery]\nmax_connections = 5\nmax_connections_per_destination = 10\n"
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("delivery.max_connections_per_destination", 3)
    assert "caps it" in warning.message
