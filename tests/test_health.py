"""The domain health checks (`relaybox.health`) against a loopback DNS server serving a good
zone and zones broken one record at a time: each finding's status and the record it proposes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from relaybox.config.keys import DkimKey
from relaybox.config.model import (
    Config,
    DkimConfig,
    HostPort,
    RouteConfig,
    UserConfig,
)
from relaybox.health import Finding, check_domain, check_domains, resolver_for, sending_domains
from relaybox.health.pyspf_query import evaluate
from relaybox.signing.keys import dns_record, generate, private_pem

from .dnsserver import DNSServer, DNSServerFactory, Failure
from .healthzones import (
    HELO,
    OUTBOUND_IP,
    REVERSE,
    SELECTOR,
    config_for,
    dkim_value,
    good_zone,
    key_file,
    new_key,
)
from .relayproc import RunCli

D = "example.org"
EVERY_FINDING = [
    "spf",
    f"dkim {SELECTOR}",
    "dmarc",
    "mx",
    f"ptr {OUTBOUND_IP}",
    "mta-sts",
    "tls-rpt",
]
"""The findings of example.org in the good zone, in the order check_domain gives them."""


@pytest.fixture
def key_path(tmp_path: Path, key: DkimKey) -> Path:
    return key_file(tmp_path, key)


Check = Callable[..., Any]


@pytest.fixture
def check(dns_server: DNSServerFactory, key: DkimKey, key_path: Path) -> Callable[..., Any]:
    """`await check(edit)`: serve the good zone changed by `edit(zone)`, run every check of
    example.org, and return {check name (or "dkim s1", "ptr IP"): Finding}."""

    async def run(
        edit: Callable[[dict[str, Any]], None] | None = None, **config: Any
    ) -> dict[str, Finding]:
        zone = good_zone(D, key)
        if edit is not None:
            edit(zone)
        server = dns_server(zone)
        cfg = config_for([D], key_path, server.address, **config)
        findings = await check_domain(D, cfg, resolver_for(cfg))
        assert server.errors == []
        return {_label(f): f for f in findings}

    return run


def _label(finding: Finding) -> str:
    extra = finding.selector or finding.ip
    return f"{finding.check} {extra}" if extra else finding.check


def txt(owner: str, value: str) -> str:
    return f'{owner}. IN TXT "{value}"'


# ---------------------------------------------------------------------- the good zone


async def test_a_correct_domain_is_ok_everywhere(check: Check) -> None:
    found = await check()
    assert list(found) == EVERY_FINDING
    assert {name: f.status for name, f in found.items() if f.status != "ok"} == {}
    assert all(f.fix is None for f in found.values())
    assert "passes for 203.0.113.7" in found["spf"].summary
    assert "2048-bit RSA" in found[f"dkim {SELECTOR}"].summary
    assert "aligns through DKIM (d=example.org) and SPF" in found["dmarc"].summary


def test_json_shape_has_selector_on_dkim_and_ip_on_ptr() -> None:
    base = {"domain": D, "status": "fail", "summary": "s", "fix": "f"}
    assert Finding(D, "dkim", "fail", "s", "f", selector="s1").to_json() == {
        **base,
        "check": "dkim",
        "selector": "s1",
    }
    assert Finding(D, "ptr", "fail", "s", "f", ip=OUTBOUND_IP).to_json() == {
        **base,
        "check": "ptr",
        "ip": OUTBOUND_IP,
    }
    assert Finding(D, "spf", "ok", "s", None).to_json() == {
        **base,
        "check": "spf",
        "status": "ok",
        "fix": None,
    }


# ---------------------------------------------------------------------- SPF


async def test_missing_spf_fails_with_a_record_listing_the_outbound_ip(check: Check) -> None:
    found = await check(lambda z: z[D].pop("TXT"))
    assert found["spf"].status == "fail"
    assert found["spf"].fix == txt(D, f"v=spf1 ip4:{OUTBOUND_IP} ~all")


async def test_spf_without_the_relays_ip_fails_and_the_fix_adds_it(check: Check) -> None:
    found = await check(lambda z: z[D].update(TXT="v=spf1 mx -all"))
    assert found["spf"].status == "fail"
    assert "203.0.113.7 gets fail" in found["spf"].summary
    assert found["spf"].fix == txt(D, f"v=spf1 ip4:{OUTBOUND_IP} mx -all")
    # DMARC then rests on DKIM alone, which still aligns.
    assert found["dmarc"].status == "ok"
    assert "aligns through DKIM" in found["dmarc"].summary


async def test_an_ipv6_outbound_address_gets_an_ip6_term(check: Check) -> None:
    ips = (OUTBOUND_IP, "2001:db8::7")
    found = await check(outbound_ips=ips)
    assert found["spf"].status == "fail"
    assert found["spf"].fix == txt(D, f"v=spf1 ip6:2001:db8::7 ip4:{OUTBOUND_IP} -all")
    assert found["ptr 2001:db8::7"].status == "fail"


async def test_more_than_ten_lookups_through_includes_fails_and_the_fix_flattens(
    check: Check,
) -> None:
    def edit(zone: dict[str, Any]) -> None:
        zone[D]["TXT"] = f"v=spf1 include:one.{D} include:two.{D} -all"
        hosts = " ".join(f"a:h{n}.{D}" for n in range(1, 6))
        zone[f"one.{D}"] = {"TXT": f"v=spf1 {hosts} ip4:{OUTBOUND_IP} -all"}
        zone[f"two.{D}"] = {"TXT": "v=spf1 " + " ".join(f"a:h{n}.{D}" for n in range(6, 11))}
        for n in range(1, 11):
            zone[f"h{n}.{D}"] = {"A": f"203.0.113.{10 + n}"}

    found = await check(edit)
    spf = found["spf"]
    assert spf.status == "fail"
    assert "takes 12 DNS lookups" in spf.summary
    # The costlier include (6 lookups) is replaced by the addresses it names; 6 remain.
    flat = " ".join(f"ip4:203.0.113.{10 + n}" for n in range(1, 6))
    assert spf.fix == txt(D, f"v=spf1 {flat} ip4:{OUTBOUND_IP} include:two.{D} -all")


@pytest.mark.parametrize("ending", ["+all", "?all"])
async def test_plus_all_and_question_all_are_warned(check: Check, ending: str) -> None:
    found = await check(lambda z: z[D].update(TXT=f"v=spf1 ip4:{OUTBOUND_IP} {ending}"))
    assert found["spf"].status == "warn"
    assert f'"{ending}" lets any server' in found["spf"].summary
    assert found["spf"].fix == txt(D, f"v=spf1 ip4:{OUTBOUND_IP} ~all")


async def test_two_spf_records_fail_and_the_fix_merges_them(check: Check) -> None:
    found = await check(
        lambda z: z[D].update(TXT=[f"v=spf1 ip4:{OUTBOUND_IP} -all", "v=spf1 mx ~all"])
    )
    assert found["spf"].status == "fail"
    assert "2 SPF records" in found["spf"].summary
    assert found["spf"].fix == txt(D, f"v=spf1 ip4:{OUTBOUND_IP} mx -all")


async def test_an_invalid_term_fails_and_the_fix_drops_it(check: Check) -> None:
    found = await check(lambda z: z[D].update(TXT=f"v=spf1 ip4:{OUTBOUND_IP} ip4:300.1.1.1 -all"))
    assert found["spf"].status == "fail"
    assert '"ip4:300.1.1.1" is not a valid ip4 address' in found["spf"].summary
    assert found["spf"].fix == txt(D, f"v=spf1 ip4:{OUTBOUND_IP} -all")


async def test_an_include_without_spf_record_fails(check: Check) -> None:
    found = await check(
        lambda z: z[D].update(TXT=f"v=spf1 ip4:{OUTBOUND_IP} include:gone.{D} -all")
    )
    assert found["spf"].status == "fail"
    assert f"include:gone.{D}: gone.{D} has no SPF record" in found["spf"].summary


async def test_a_smarthost_route_checks_the_smart_hosts_addresses(check: Check) -> None:
    """Receivers see the smart host, not this relay: its address is what SPF must pass."""
    route = RouteConfig(
        domains=("*",), transport="smarthost", hosts=(HostPort("smtp.provider.example", 587),)
    )

    def edit(zone: dict[str, Any]) -> None:
        zone["smtp.provider.example"] = {"A": "203.0.113.50"}

    found = await check(edit, routes=(route,), outbound_ips=())
    spf = found["spf"]
    assert spf.status == "fail"
    assert "smart host smtp.provider.example" in spf.summary
    assert "203.0.113.50 gets fail" in spf.summary
    assert spf.fix == txt(D, f"v=spf1 ip4:203.0.113.50 ip4:{OUTBOUND_IP} -all")
    assert found["ptr"].status == "ok" and "smart host" in found["ptr"].summary


async def test_with_no_outbound_ips_and_no_smarthost_spf_is_warned_as_unchecked(
    check: Check,
) -> None:
    found = await check(outbound_ips=())
    assert found["spf"].status == "warn"
    assert "cannot be checked" in found["spf"].summary and found["spf"].fix is None
    assert found["ptr"].status == "warn" and found["ptr"].ip is None


async def test_pyspf_asks_only_the_configured_server(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyspf's own lookups (the include chain it follows) go to [dns] resolvers: a "system"
    resolver put where pyspf would otherwise ask (dnspython's default) gets no query."""

    def edit(zone: dict[str, Any]) -> dict[str, Any]:
        zone[D]["TXT"] = f"v=spf1 include:spf.{D} -all"
        zone[f"spf.{D}"] = {"TXT": f"v=spf1 a:out.{D} -all"}
        zone[f"out.{D}"] = {"A": OUTBOUND_IP}
        return zone

    configured = dns_server(edit(good_zone(D, key)))
    system = dns_server(edit(good_zone(D, key)))
    spy = dns.resolver.Resolver(configure=False)
    spy.nameservers = [system.address[0]]
    spy.port = system.address[1]
    monkeypatch.setattr(dns.resolver, "default_resolver", spy)
    # The spy works: pyspf's module-level path would reach it.
    assert dns.resolver.resolve(f"out.{D}", "A").rrset is not None
    system.queries.clear()

    cfg = config_for([D], key_path, configured.address)
    found = {_label(f): f for f in await check_domain(D, cfg, resolver_for(cfg))}
    assert found["spf"].status == "ok", found["spf"]
    assert configured.query_count(f"out.{D}", "A") >= 1  # pyspf's a: lookup
    assert sum(system.queries.values()) == 0, system.queries


async def test_pyspf_runs_in_a_thread_so_the_loop_keeps_running(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path
) -> None:
    """A record whose evaluation waits on a DNS server that never answers (an exists: macro
    only pyspf expands) leaves the event loop free meanwhile."""
    zone = good_zone(D, key)
    zone[D]["TXT"] = f"v=spf1 exists:%{{i}}.slow.{D} ip4:{OUTBOUND_IP} -all"
    zone[f"{OUTBOUND_IP}.slow.{D}"] = "TIMEOUT"
    server = dns_server(zone)
    cfg = config_for([D], key_path, server.address, timeout=1.0)
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    started = time.monotonic()
    findings = await check_domain(D, cfg, resolver_for(cfg))
    beating.cancel()
    assert time.monotonic() - started >= 0.9  # it did wait on the silent server
    spf = next(f for f in findings if f.check == "spf")
    assert spf.status == "error" and spf.summary.startswith("could not check:")
    assert max(gaps) < 0.5, max(gaps)


def test_evaluate_follows_includes_through_the_given_resolver(dns_server: DNSServerFactory) -> None:
    server = dns_server(
        {
            D: {"TXT": f"v=spf1 include:a.{D} -all"},
            f"a.{D}": {"TXT": "v=spf1 ip4:203.0.113.0/24 -all"},
        }
    )
    resolver = resolver_for(config_for([], Path("/nonexistent"), server.address)).blocking()
    assert evaluate(OUTBOUND_IP, D, HELO, resolver)[0] == "pass"
    assert evaluate("127.0.0.1", D, HELO, resolver)[0] == "fail"
    assert server.query_count(f"a.{D}", "TXT") == 1


# ---------------------------------------------------------------------- DKIM


async def test_a_missing_dkim_key_fails_with_its_record(check: Check, key: DkimKey) -> None:
    found = await check(lambda z: z.pop(f"{SELECTOR}._domainkey.{D}"))
    dkim = found[f"dkim {SELECTOR}"]
    assert dkim.status == "fail" and "no DKIM key is published" in dkim.summary
    assert dkim.fix == dns_record(D, SELECTOR, key)
    assert dkim.to_json()["selector"] == SELECTOR


OTHER_KEY = new_key()


@pytest.mark.parametrize(
    ("published", "status", "why"),
    [
        (lambda key: dkim_value(OTHER_KEY), "fail", "does not match"),
        (lambda key: dkim_value(key, extra="t=y; "), "warn", "testing (t=y)"),
        (lambda key: "v=DKIM1; k=rsa; p=", "fail", "revoked"),
        (lambda key: "v=DKIM1; k=rsa; p=not*base64", "fail", "not base64"),
        (lambda key: dkim_value(key).replace("k=rsa", "k=ed25519"), "fail", "is k=ed25519"),
        (lambda key: [dkim_value(key), dkim_value(OTHER_KEY)], "fail", "2 TXT records"),
    ],
    ids=["mismatch", "testing", "revoked", "unparseable", "wrong-type", "two-records"],
)
async def test_a_wrong_published_key_gets_the_configured_keys_record(
    check: Check,
    key: DkimKey,
    published: Callable[[DkimKey], Any],
    status: str,
    why: str,
) -> None:
    name = f"{SELECTOR}._domainkey.{D}"
    found = await check(lambda z: z.update({name: {"TXT": published(key)}}))
    dkim = found[f"dkim {SELECTOR}"]
    assert (dkim.status, dkim.selector) == (status, SELECTOR)
    assert why in dkim.summary
    assert dkim.fix == dns_record(D, SELECTOR, key)


async def test_a_short_rsa_key_is_warned_without_a_record_to_publish(
    dns_server: DNSServerFactory, tmp_path: Path
) -> None:
    """A 1024-bit key still verifies, so it is a warning; the remedy is a new key (and
    selector), which no record of this key can give."""
    short = DkimKey("rsa-sha256", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    server = dns_server(good_zone(D, short))
    cfg = config_for([D], key_file(tmp_path, short, "short.key"), server.address)
    (dkim,) = [f for f in await check_domain(D, cfg, resolver_for(cfg)) if f.check == "dkim"]
    assert dkim.status == "warn" and "1024-bit RSA key" in dkim.summary
    assert "relaybox dkim keygen example.org --selector NEW" in dkim.summary
    assert dkim.fix is None


async def test_an_ed25519_key_and_an_rsa_key_are_each_checked(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path, tmp_path: Path
) -> None:
    """Dual signing: one finding per selector."""
    ed = generate("ed25519-sha256")
    zone = good_zone(D, key)
    zone[f"ed1._domainkey.{D}"] = {"TXT": dkim_value(ed)}
    server = dns_server(zone)
    base = config_for([D], key_path, server.address)
    ed_entry = DkimConfig(D, "ed1", key_file(tmp_path, ed, "ed.key"), "ed25519-sha256")
    cfg = dataclasses.replace(base, dkim=(*base.dkim, ed_entry))
    found = [f for f in await check_domain(D, cfg, resolver_for(cfg)) if f.check == "dkim"]
    assert [(f.selector, f.status) for f in found] == [(SELECTOR, "ok"), ("ed1", "ok")]
    assert "ed25519 key" in found[1].summary


async def test_the_key_checked_is_the_one_the_config_loaded_not_the_file_now(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path
) -> None:
    """Mail is signed with the key read when the config loaded; a key file replaced on disk
    since signs nothing until a reload, so it must not change what the check says."""
    server = dns_server(good_zone(D, key))
    base = config_for([D], key_path, server.address)
    loaded = dataclasses.replace(base.dkim[0], key=key)
    key_path.write_bytes(private_pem(OTHER_KEY))  # the file now holds another key
    cfg = dataclasses.replace(base, dkim=(loaded,))
    (dkim,) = [f for f in await check_domain(D, cfg, resolver_for(cfg)) if f.check == "dkim"]
    assert dkim.status == "ok", dkim


async def test_a_domain_without_dkim_key_is_warned(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path
) -> None:
    server = dns_server(good_zone(D, key))
    cfg = config_for([], key_path, server.address)
    found = {_label(f): f for f in await check_domain(D, cfg, resolver_for(cfg))}
    assert found["dkim"].status == "warn" and "unsigned" in found["dkim"].summary
    assert found["dkim"].to_json()["selector"] is None
    assert found["dmarc"].status == "ok" and "aligns through SPF" in found["dmarc"].summary


async def test_a_zone_made_from_keygen_output_verifies(
    tmp_path: Path, run_cli: RunCli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    """The line `relaybox dkim keygen` prints, loaded as zone-file text, is the key doctor
    accepts (the quoted strings joined, as verifiers join them)."""
    key_path = tmp_path / "keygen.key"
    result = run_cli("dkim", "keygen", D, "--selector", "k26", "--out", key_path)
    assert result.returncode == 0, result.stderr
    (line,) = [row for row in result.stdout.splitlines() if " IN TXT " in row]
    owner, _in, _txt, rdata_text = line.split(" ", 3)
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, rdata_text)
    zone = good_zone(D, key)
    zone[owner.rstrip(".")] = {"TXT": tuple(s.decode() for s in rdata.strings)}  # type: ignore[attr-defined]
    server = dns_server(zone)
    cfg = dataclasses.replace(
        config_for([], key_path, server.address), dkim=(DkimConfig(D, "k26", key_path),)
    )
    findings = await check_domain(D, cfg, resolver_for(cfg))
    (dkim,) = [f for f in findings if f.check == "dkim"]
    assert (dkim.status, dkim.selector, dkim.fix) == ("ok", "k26", None), dkim


# ---------------------------------------------------------------------- DMARC


async def test_no_dmarc_record_fails_with_a_starting_record(check: Check) -> None:
    found = await check(lambda z: z.pop(f"_dmarc.{D}"))
    assert found["dmarc"].status == "fail"
    assert found["dmarc"].fix == txt(f"_dmarc.{D}", f"v=DMARC1; p=none; rua=mailto:postmaster@{D}")


async def test_policy_none_is_warned_and_the_fix_quarantines(check: Check) -> None:
    record = {"TXT": f"v=DMARC1; p=none; rua=mailto:dmarc@{D}"}
    found = await check(lambda z: z.update({f"_dmarc.{D}": record}))
    assert found["dmarc"].status == "warn" and "p=none" in found["dmarc"].summary
    assert found["dmarc"].fix == txt(f"_dmarc.{D}", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{D}")


async def test_no_rua_is_warned_and_the_fix_adds_one(check: Check) -> None:
    record = {"TXT": "v=DMARC1; p=reject; adkim=s"}
    found = await check(lambda z: z.update({f"_dmarc.{D}": record}))
    assert found["dmarc"].status == "warn" and "no rua=" in found["dmarc"].summary
    assert found["dmarc"].fix == txt(
        f"_dmarc.{D}", f"v=DMARC1; p=reject; adkim=s; rua=mailto:postmaster@{D}"
    )


async def test_two_dmarc_records_fail(check: Check) -> None:
    records = {"TXT": [f"v=DMARC1; p=reject; rua=mailto:a@{D}", "v=DMARC1; p=none"]}
    found = await check(lambda z: z.update({f"_dmarc.{D}": records}))
    assert found["dmarc"].status == "fail" and "2 DMARC records" in found["dmarc"].summary
    assert found["dmarc"].fix == txt(f"_dmarc.{D}", f"v=DMARC1; p=reject; rua=mailto:a@{D}")


async def test_mail_aligned_with_neither_dkim_nor_spf_is_warned(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path
) -> None:
    zone = good_zone(D, key)
    zone[D]["TXT"] = "v=spf1 -all"
    server = dns_server(zone)
    cfg = config_for([], key_path, server.address)
    found = {_label(f): f for f in await check_domain(D, cfg, resolver_for(cfg))}
    assert found["spf"].status == "fail"
    assert found["dmarc"].status == "warn"
    assert "aligns with neither DKIM" in found["dmarc"].summary
    assert found["dmarc"].fix is None  # the DMARC record itself is right


# ---------------------------------------------------------------------- MX, PTR, MTA-STS, TLS-RPT


async def test_null_mx_fails(check: Check) -> None:
    found = await check(lambda z: z[D].update(MX="0 ."))
    assert found["mx"].status == "fail" and "null MX" in found["mx"].summary
    assert found["mx"].fix is None


async def test_neither_mx_nor_address_fails(check: Check) -> None:
    found = await check(lambda z: z[D].pop("MX"))
    assert found["mx"].status == "fail" and "neither an MX record nor an address" in (
        found["mx"].summary
    )


async def test_a_ptr_that_is_not_the_helo_name_is_warned(check: Check) -> None:
    def edit(zone: dict[str, Any]) -> None:
        zone[REVERSE] = {"PTR": "host7.isp.example."}
        zone["host7.isp.example"] = {"A": OUTBOUND_IP}

    ptr = (await check(edit))[f"ptr {OUTBOUND_IP}"]
    assert ptr.status == "warn" and "host7.isp.example" in ptr.summary
    assert ptr.fix == f"{REVERSE}. IN PTR {HELO}."
    assert ptr.to_json()["ip"] == OUTBOUND_IP


async def test_a_ptr_that_does_not_resolve_back_fails(check: Check) -> None:
    def edit(zone: dict[str, Any]) -> None:
        zone[REVERSE] = {"PTR": "ghost.isp.example."}

    ptr = (await check(edit))[f"ptr {OUTBOUND_IP}"]
    assert ptr.status == "fail" and "does not resolve back" in ptr.summary
    assert ptr.fix == f"{REVERSE}. IN PTR {HELO}."


async def test_a_helo_name_that_does_not_resolve_back_fails_with_its_address_record(
    check: Check,
) -> None:
    ptr = (await check(lambda z: z.pop(HELO)))[f"ptr {OUTBOUND_IP}"]
    assert ptr.status == "fail"
    assert ptr.fix == f"{HELO}. IN A {OUTBOUND_IP}"


async def test_no_ptr_fails(check: Check) -> None:
    ptr = (await check(lambda z: z.pop(REVERSE)))[f"ptr {OUTBOUND_IP}"]
    assert ptr.status == "fail" and "no reverse DNS" in ptr.summary
    assert ptr.fix == f"{REVERSE}. IN PTR {HELO}."


async def test_mta_sts_and_tls_rpt_missing_are_only_warnings(check: Check) -> None:
    found = await check(lambda z: [z.pop(f"_mta-sts.{D}"), z.pop(f"_smtp._tls.{D}")])
    assert found["mta-sts"].status == "warn" and found["mta-sts"].fix is None
    assert found["tls-rpt"].status == "warn"
    assert found["tls-rpt"].fix == txt(f"_smtp._tls.{D}", f"v=TLSRPTv1; rua=mailto:postmaster@{D}")


# ---------------------------------------------------------------------- DNS failures


@pytest.mark.parametrize("failure", [Failure.SERVFAIL, Failure.TIMEOUT])
async def test_dns_failures_are_errors_never_pass_or_fail(check: Check, failure: Failure) -> None:
    def edit(zone: dict[str, Any]) -> None:
        for name in list(zone):
            if name.endswith(D):
                zone[name] = failure.value

    started = time.monotonic()
    found = await check(edit)
    assert time.monotonic() - started < 10
    # Every name under example.org fails, the HELO name relay.example.org included.
    for name in EVERY_FINDING:
        finding = found[name]
        assert finding.status == "error", finding
        assert finding.summary.startswith("could not check: ")
        assert finding.fix is None
    word = "SERVFAIL" if failure is Failure.SERVFAIL else "timed out"
    assert word in found["mx"].summary


# ---------------------------------------------------------------------- domains of a config


def test_sending_domains_are_dkim_and_allowed_sender_domains(key_path: Path) -> None:
    cfg = config_for(["B.example", "a.example"], key_path, ("127.0.0.1", 9))
    users = (
        UserConfig("scanner@Office.example", "x", ("a.example", "bob@c.example")),
        UserConfig("alice", "x", ("d.example",)),
    )
    cfg = Config(dkim=cfg.dkim, users=users)
    assert sending_domains(cfg) == [
        "a.example",
        "b.example",
        "c.example",
        "d.example",
        "office.example",
    ]


async def test_check_domains_keeps_the_order_and_checks_each(
    dns_server: DNSServerFactory, key: DkimKey, key_path: Path
) -> None:
    zone = {**good_zone("z.example", key), **good_zone("a.example", key)}
    server: DNSServer = dns_server(zone)
    cfg = config_for(["z.example", "a.example"], key_path, server.address)
    findings = await check_domains(cfg, resolver_for(cfg))
    assert [f.domain for f in findings if f.check == "spf"] == ["a.example", "z.example"]
    assert {f.status for f in findings} == {"ok"}
    findings = await check_domains(cfg, resolver_for(cfg), ["Z.example.", "z.example"])
    assert {f.domain for f in findings} == {"z.example"}
    assert [f.check for f in findings].count("spf") == 1
    assert await check_domains(cfg, resolver_for(cfg), []) == []
