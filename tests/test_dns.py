"""The production resolver (`relaybox.resolver`) against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import dns.exception
import dns.message
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from relaybox.resolver import Resolver

from .dnsserver import DNSServer, DNSServerFactory, Failure

ZONE: dict[str, Any] = {
    "example.org": {
        "MX": ["20 mx2.example.org.", "10 mx1.example.org."],
        "TXT": ["v=spf1 -all"],
    },
    "mx1.example.org": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
    "mx2.example.org": {"A": ["127.0.0.3"]},
    "implicit.example": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
    "nullmx.example": {"MX": ["0 ."]},
    "nomail.example": {"TXT": ["nothing to see"]},
    "servfail.example": "SERVFAIL",
    "refused.example": "REFUSED",
    "timeout.example": "TIMEOUT",
    "7.113.0.203.in-addr.arpa": {"PTR": ["mail.example.org."]},
}


@pytest.fixture
def server(dns_server: DNSServerFactory) -> DNSServer:
    return dns_server(ZONE)


def resolver_for(server: DNSServer, **options: Any) -> Resolver:
    options.setdefault("timeout", 2.0)
    return Resolver([server.address], **options)


# -- MX -----------------------------------------------------------------------------------


async def test_mx_hosts_come_sorted_by_preference(server: DNSServer) -> None:
    result = await resolver_for(server).mx("example.org")
    assert result.kind == "hosts"
    assert result.hosts == ((10, "mx1.example.org"), (20, "mx2.example.org"))
    assert not result.permanent
    assert result.error is None


async def test_equal_mx_preferences_are_tried_in_every_order(
    dns_server: DNSServerFactory,
) -> None:
    """RFC 5321 §5.1: equal preferences are randomized, the lower preference always first."""
    server = dns_server(
        {
            "spread.example": {
                "MX": ["5 first.example.", "10 a.example.", "10 b.example.", "10 c.example."]
            }
        }
    )
    resolver = resolver_for(server, rng=random.Random(5321))
    seen = set()
    for _ in range(200):
        result = await resolver.mx("spread.example")
        assert result.hosts[0] == (5, "first.example")
        seen.add(tuple(host for _, host in result.hosts[1:]))
        if len(seen) == 6:
            break
    assert seen == set(itertools.permutations(["a.example", "b.example", "c.example"]))
    assert server.query_count("spread.example", "MX") == 1, "the answer was cached"


async def test_domain_without_mx_but_with_address_is_its_own_mx(server: DNSServer) -> None:
    result = await resolver_for(server).mx("implicit.example")
    assert result.kind == "implicit"
    assert result.hosts == ((0, "implicit.example"),)
    assert not result.permanent


async def test_null_mx_is_a_permanent_failure(server: DNSServer) -> None:
    result = await resolver_for(server).mx("nullmx.example")
    assert result.kind == "null_mx"
    assert result.permanent
    assert result.enhanced_status == "5.1.10"
    assert result.hosts == ()
    assert result.error and "null MX" in result.error


async def test_null_mx_beside_real_hosts_keeps_the_real_hosts(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server({"mixed.example": {"MX": ["0 .", "10 mx.mixed.example."]}})
    result = await resolver_for(server).mx("mixed.example")
    assert result.kind == "hosts"
    assert result.hosts == ((10, "mx.mixed.example"),)


async def test_nonexistent_domain_is_a_permanent_failure(server: DNSServer) -> None:
    result = await resolver_for(server).mx("nowhere.example")
    assert result.kind == "nxdomain"
    assert result.permanent
    assert result.enhanced_status == "5.1.2"
    assert result.error and "NXDOMAIN" in result.error


async def test_domain_with_neither_mx_nor_address_cannot_receive_mail(server: DNSServer) -> None:
    result = await resolver_for(server).mx("nomail.example")
    assert result.kind == "no_address"
    assert result.permanent
    assert result.enhanced_status == "5.1.2"


async def test_invalid_domain_name_is_a_permanent_failure_without_a_query(
    server: DNSServer,
) -> None:
    result = await resolver_for(server).mx("bad..example")
    assert result.kind == "nxdomain"
    assert result.permanent
    assert not server.queries


async def test_international_domain_is_looked_up_by_its_a_label(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server({"xn--bcher-kva.example": {"MX": ["10 mx.xn--bcher-kva.example."]}})
    result = await resolver_for(server).mx("bücher.example")
    assert result.hosts == ((10, "mx.xn--bcher-kva.example"),)


@pytest.mark.parametrize("name", ["servfail.example", "refused.example"])
async def test_server_failure_is_temporary(server: DNSServer, name: str) -> None:
    result = await resolver_for(server).mx(name)
    assert result.kind == "temporary"
    assert not result.permanent
    assert result.enhanced_status == "4.4.3"
    assert result.error and f"{server.address[0]}:{server.address[1]}" in result.error


async def test_servfail_names_the_answer_in_the_error(server: DNSServer) -> None:
    result = await resolver_for(server).mx("servfail.example")
    assert result.error and "SERVFAIL" in result.error


async def test_timeout_is_temporary_and_returns_within_the_configured_time(
    server: DNSServer,
) -> None:
    started = time.monotonic()
    result = await resolver_for(server, timeout=0.5).mx("timeout.example")
    elapsed = time.monotonic() - started
    assert result.kind == "temporary"
    assert result.error and "timed out" in result.error
    assert elapsed < 3.0
    assert server.query_count("timeout.example", "MX") >= 1


async def test_implicit_mx_lookup_that_times_out_is_temporary(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server(
        {"slow.example": {"A": Failure.TIMEOUT, "AAAA": Failure.TIMEOUT, "TXT": ["x"]}}
    )
    result = await resolver_for(server, timeout=0.5).mx("slow.example")
    assert result.kind == "temporary"


async def test_a_dead_server_is_temporary_not_an_exception() -> None:
    # A port nobody listens on: ICMP port unreachable, or silence, either way temporary.
    with DNSServer({}) as gone:
        address = gone.address
    result = await Resolver([address], timeout=0.5).mx("example.org")
    assert result.kind == "temporary"


# -- addresses ----------------------------------------------------------------------------


async def test_addresses_returns_ipv6_then_ipv4(server: DNSServer) -> None:
    result = await resolver_for(server).addresses("mx1.example.org")
    assert result.kind == "ok"
    assert result.addresses == ("::1", "127.0.0.2")
    assert result.ipv6 == ("::1",)
    assert result.ipv4 == ("127.0.0.2",)
    assert server.query_count("mx1.example.org", "A") == 1
    assert server.query_count("mx1.example.org", "AAAA") == 1


async def test_addresses_of_an_ipv4_only_host(server: DNSServer) -> None:
    result = await resolver_for(server).addresses("mx2.example.org")
    assert result.kind == "ok"
    assert result.addresses == ("127.0.0.3",)


async def test_addresses_of_nonexistent_and_addressless_names(server: DNSServer) -> None:
    resolver = resolver_for(server)
    assert (await resolver.addresses("nowhere.example")).kind == "nxdomain"
    assert (await resolver.addresses("nomail.example")).kind == "nodata"
    assert (await resolver.addresses("servfail.example")).kind == "temporary"


async def test_one_family_timing_out_does_not_hide_the_other(
    dns_server: DNSServerFactory,
) -> None:
    """Some servers drop AAAA queries; the host is still reachable over IPv4."""
    server = dns_server({"v4only.example": {"A": ["192.0.2.4"], "AAAA": Failure.TIMEOUT}})
    result = await resolver_for(server, timeout=0.5).addresses("v4only.example")
    assert result.kind == "ok"
    assert result.addresses == ("192.0.2.4",)
    assert result.error and "AAAA" in result.error


async def test_addresses_follow_a_cname(dns_server: DNSServerFactory) -> None:
    server = dns_server(
        {
            "alias.example": {"CNAME": ["host.example."]},
            "host.example": {"A": ["192.0.2.5"], "AAAA": ["2001:db8::5"]},
        }
    )
    result = await resolver_for(server).addresses("alias.example")
    assert result.addresses == ("2001:db8::5", "192.0.2.5")


async def test_large_answer_is_fetched_again_over_tcp(
    dns_server: DNSServerFactory,
) -> None:
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(300)]
    server = dns_server({"many.example": {"A": many}})
    result = await resolver_for(server).addresses("many.example")
    assert result.kind == "ok"
    assert sorted(result.ipv4) == sorted(many)
    assert server.tcp_queries["many.example", "A"] == 1
    assert server.query_count("many.example", "A") == 2, "first over UDP, truncated"


# -- TXT, PTR, plain queries ----------------------------------------------------------------


async def test_txt_record_of_many_strings_is_reassembled(
    dns_server: DNSServerFactory,
) -> None:
    key = "p=" + "A" * 400
    server = dns_server(
        {
            "long.example": {"TXT": ["v=DKIM1; k=rsa; " + key]},
            "parts.example": {"TXT": [("v=DKIM1; k=rsa; ", key[:200], key[200:])]},
        }
    )
    resolver = resolver_for(server)
    long = await resolver.txt("long.example")
    assert long.kind == "ok"
    assert long.records == ("v=DKIM1; k=rsa; " + key,)
    parts = await resolver.txt("parts.example")
    assert parts.records == ("v=DKIM1; k=rsa; " + key,)


async def test_server_splits_long_txt_into_255_octet_strings(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server({"long.example": {"TXT": ["x" * 600]}})
    query = dns.message.make_query("long.example", "TXT")
    response = await asyncio.to_thread(
        dns.query.tcp, query, server.address[0], timeout=2, port=server.address[1]
    )
    (rdata,) = response.answer[0]
    assert [len(s) for s in rdata.strings] == [255, 255, 90]


async def test_very_long_txt_record_comes_over_tcp(
    dns_server: DNSServerFactory,
) -> None:
    text = "v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(200)) + " -all"
    assert len(text) > 3000
    server = dns_server({"big.example": {"TXT": [text]}})
    result = await resolver_for(server).txt("big.example")
    assert result.records == (text,)
    assert server.tcp_queries["big.example", "TXT"] == 1


async def test_txt_lookups_distinguish_missing_name_missing_record_and_failure(
    server: DNSServer,
) -> None:
    resolver = resolver_for(server)
    assert (await resolver.txt("example.org")).records == ("v=spf1 -all",)
    assert (await resolver.txt("nowhere.example")).kind == "nxdomain"
    assert (await resolver.txt("mx1.example.org")).kind == "nodata"
    assert (await resolver.txt("servfail.example")).kind == "temporary"


async def test_txt_under_an_empty_non_terminal_is_nodata(
    dns_server: DNSServerFactory,
) -> None:
    """RFC 8020: `_domainkey.example.org` exists when a selector below it does."""
    server = dns_server({"s1._domainkey.example.org": {"TXT": ["v=DKIM1; p=abc"]}})
    resolver = resolver_for(server)
    assert (await resolver.txt("_domainkey.example.org")).kind == "nodata"
    assert (await resolver.txt("s2._domainkey.example.org")).kind == "nxdomain"


async def test_ptr_of_an_ipv4_address(server: DNSServer) -> None:
    resolver = resolver_for(server)
    result = await resolver.ptr("203.0.113.7")
    assert result.kind == "ok"
    assert result.names == ("mail.example.org",)
    assert (await resolver.ptr("203.0.113.8")).kind == "nxdomain"


async def test_ptr_of_an_ipv6_address(dns_server: DNSServerFactory) -> None:
    reverse = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    server = dns_server({reverse: {"PTR": ["v6.example.org."]}})
    result = await resolver_for(server).ptr("2001:db8::1")
    assert result.names == ("v6.example.org",)


async def test_ptr_of_something_not_an_address_is_a_caller_error(server: DNSServer) -> None:
    with pytest.raises(ValueError):
        await resolver_for(server).ptr("mail.example.org")


async def test_generic_query_returns_records_and_ttl(server: DNSServer) -> None:
    result = await resolver_for(server).query("example.org", "MX")
    assert result.kind == "ok"
    assert sorted(result.texts) == ["10 mx1.example.org.", "20 mx2.example.org."]
    assert result.ttl == 300
    assert (await resolver_for(server).query("example.org", dns.rdatatype.CAA)).kind == "nodata"
    slow = resolver_for(server, timeout=0.5)
    assert (await slow.query("timeout.example", "SOA")).kind == "temporary"


# -- caching and changes --------------------------------------------------------------------


async def test_answers_are_cached_for_their_ttl(server: DNSServer) -> None:
    resolver = resolver_for(server)
    for _ in range(3):
        assert (await resolver.txt("example.org")).records == ("v=spf1 -all",)
        assert (await resolver.txt("nowhere.example")).kind == "nxdomain"
    assert server.query_count("example.org", "TXT") == 1
    assert server.query_count("nowhere.example", "TXT") == 1


async def test_cache_can_be_turned_off(server: DNSServer) -> None:
    resolver = resolver_for(server, cache_size=0)
    for _ in range(3):
        await resolver.txt("example.org")
    assert server.query_count("example.org", "TXT") == 3


async def test_changed_record_with_ttl_zero_is_seen_at_once(
    dns_server: DNSServerFactory,
) -> None:
    """DKIM key rotation: the new key is what the next lookup returns."""
    server = dns_server({"s1._domainkey.example.org": {"TXT": ["v=DKIM1; p=old"], "TTL": 0}})
    resolver = resolver_for(server)
    assert (await resolver.txt("s1._domainkey.example.org")).records == ("v=DKIM1; p=old",)
    server.set("s1._domainkey.example.org", "TXT", "v=DKIM1; p=new")
    assert (await resolver.txt("s1._domainkey.example.org")).records == ("v=DKIM1; p=new",)


async def test_changed_record_is_seen_after_the_cached_answer_expires(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server({"rotate.example": {"TXT": ["one"]}}, ttl=1)
    resolver = resolver_for(server)
    assert (await resolver.txt("rotate.example")).records == ("one",)
    server.set("rotate.example", "TXT", ["two"])
    assert (await resolver.txt("rotate.example")).records == ("one",), "cached"
    await asyncio.sleep(1.1)
    assert (await resolver.txt("rotate.example")).records == ("two",)


async def test_record_published_later_is_seen_once_the_denial_expires(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server({}, ttl=0)  # negative_ttl follows ttl
    resolver = resolver_for(server)
    assert (await resolver.txt("_dmarc.example.org")).kind == "nxdomain"
    server.set("_dmarc.example.org", "TXT", "v=DMARC1; p=reject")
    assert (await resolver.txt("_dmarc.example.org")).records == ("v=DMARC1; p=reject",)
    server.delete("_dmarc.example.org")
    assert (await resolver.txt("_dmarc.example.org")).kind == "nxdomain"


# -- which servers are asked ----------------------------------------------------------------


async def test_only_the_configured_server_is_asked(
    dns_server: DNSServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_system_resolver(*args: object) -> None:
        raise AssertionError("read /etc/resolv.conf although servers are configured")

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", no_system_resolver)
    configured = dns_server({"only.example": {"A": ["192.0.2.1"]}, "timeout.example": "TIMEOUT"})
    other = dns_server(
        {"only.example": {"A": ["198.51.100.1"]}, "timeout.example": {"A": ["198.51.100.2"]}}
    )
    resolver = Resolver([configured.address], timeout=0.5)
    assert resolver.nameservers == (configured.address,)

    assert (await resolver.addresses("only.example")).addresses == ("192.0.2.1",)
    assert configured.query_count("only.example", "A") == 1
    # A server that does not answer is not a reason to ask anyone else.
    assert (await resolver.addresses("timeout.example")).kind == "temporary"
    assert not other.queries


async def test_second_server_is_asked_when_the_first_fails(
    dns_server: DNSServerFactory,
) -> None:
    broken = dns_server({"example.org": "SERVFAIL"})
    working = dns_server({"example.org": {"MX": ["10 mx.example.org."]}})
    resolver = Resolver([broken.address, working.address], timeout=2.0)
    result = await resolver.mx("example.org")
    assert result.hosts == ((10, "mx.example.org"),)
    assert broken.query_count("example.org", "MX") == 1


# -- the test server itself -----------------------------------------------------------------


def test_server_answers_sync_callers_over_udp_and_tcp(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server(ZONE)
    host, port = server.address
    query = dns.message.make_query("example.org", "MX")
    over_udp = dns.query.udp(query, host, timeout=2, port=port)
    over_tcp = dns.query.tcp(query, host, timeout=2, port=port)
    assert over_udp.answer == over_tcp.answer
    missing = dns.query.udp(dns.message.make_query("no.example", "A"), host, timeout=2, port=port)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority and missing.authority[0].rdtype == dns.rdatatype.SOA
    assert server.queries["example.org", "MX"] == 2
    assert server.tcp_queries["example.org", "MX"] == 1


def test_server_stops_and_frees_its_port() -> None:
    server = DNSServer({"example.org": {"A": ["192.0.2.1"]}})
    host, port = server.address
    server.stop()
    server.stop()  # idempotent
    with pytest.raises((OSError, dns.exception.Timeout)):
        dns.query.tcp(dns.message.make_query("example.org", "A"), host, timeout=0.5, port=port)


async def test_without_configured_servers_the_systems_are_used(
    dns_server: DNSServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dns_server(ZONE)

    def system_points_at_loopback(self: dns.resolver.BaseResolver, f: object) -> None:
        self.nameservers = [dns.nameserver.Do53Nameserver(*server.address)]

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", system_points_at_loopback)
    resolver = Resolver(timeout=2.0)
    assert resolver.nameservers == (server.address,)
    assert (await resolver.mx("example.org")).kind == "hosts"


async def test_no_system_configuration_is_temporary_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(self: dns.resolver.BaseResolver, f: object) -> None:
        raise dns.resolver.NoResolverConfiguration

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", missing)
    result = await Resolver(timeout=0.5).mx("example.org")
    assert result.kind == "temporary"
    assert result.error and "no [dns] resolvers configured" in result.error


def test_name_server_must_be_an_ip_address() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Resolver([("dns.example", 53)])
