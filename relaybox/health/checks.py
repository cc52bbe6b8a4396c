"""Run every check of a sending domain, and every sending domain of a config, concurrently.

This is the entry point `relaybox doctor` and the Domains pane call; each check lives in its
own module. Nothing here blocks the event loop: pyspf and key files are read in threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from relaybox.config.model import Config
from relaybox.health.dkim_check import check_dkim
from relaybox.health.dmarc import Alignment, check_dmarc
from relaybox.health.findings import Finding
from relaybox.health.mx import check_mx
from relaybox.health.outbound import internet_route, senders_of
from relaybox.health.policy_records import check_mta_sts, check_tls_rpt
from relaybox.health.ptr import check_ptr
from relaybox.health.spf import check_spf
from relaybox.resolver import Resolver

__all__ = ["check_domain", "check_domains", "resolver_for", "sending_domains"]

MAX_DOMAINS_AT_ONCE = 8
"""Domains checked at the same time: enough to finish a few dozen quickly, few enough that a
slow DNS server is not flooded."""


def sending_domains(config: Config) -> list[str]:
    """The domains mail leaves relaybox from: every `[[dkim]]` domain, and each user's
    allowed sender domains (an allowed address counts by its domain, as does a user name that
    is an address). Lower case, each once, sorted."""
    found: set[str] = {entry.domain for entry in config.dkim}
    for user in config.users:
        for entry in (*user.allowed_senders, *([user.name] if "@" in user.name else [])):
            found.add(entry.rpartition("@")[2])
    return sorted({d.lower().rstrip(".") for d in found if d.strip(".")})


def resolver_for(config: Config) -> Resolver:
    """A resolver asking `[dns] resolvers` (or the system's when none) with `[dns] timeout`;
    caching off, so a record just published is seen at once."""
    servers = [(a.host, a.port) for a in config.dns.resolvers]
    return Resolver(servers, config.dns.timeout, cache_size=0)


async def check_domain(domain: str, config: Config, resolver: Resolver) -> list[Finding]:
    """Every check of one sending domain: SPF, DKIM, DMARC, MX, PTR, MTA-STS, TLS-RPT, in
    that order (DKIM one finding per selector, PTR one per outbound IP).

    Args:
        domain: the domain, any case.
        config: whose keys, routes and outbound addresses the checks compare with DNS.
        resolver: the lookups go through it only (`resolver_for(config)`).
    """
    domain = domain.lower().rstrip(".")
    helo = config.server.hostname
    senders = await senders_of(config, domain, resolver)
    entries = [e for e in config.dkim if e.domain.lower() == domain]
    outbound_ips = tuple(str(ip) for ip in config.delivery.outbound_ips)
    spf, dkim, mx, ptr, mta_sts, tls_rpt = await asyncio.gather(
        check_spf(domain, senders, helo, resolver, resolver.blocking()),
        check_dkim(domain, entries, resolver),
        check_mx(domain, resolver),
        check_ptr(domain, outbound_ips, senders, helo, resolver),
        check_mta_sts(domain, resolver),
        check_tls_rpt(domain, resolver),
    )
    alignment = Alignment(
        dkim=bool(entries) and all(f.status in ("ok", "warn") for f in dkim),
        spf=None if spf.status == "error" or not senders.addresses else spf.status != "fail",
        spf_domain=_envelope_domain(config, domain),
    )
    dmarc = await check_dmarc(domain, alignment, resolver)
    return [spf, *dkim, dmarc, mx, *ptr, mta_sts, tls_rpt]


async def check_domains(
    config: Config, resolver: Resolver, domains: Iterable[str] | None = None
) -> list[Finding]:
    """The findings of several domains, checked at most MAX_DOMAINS_AT_ONCE at a time.

    Args:
        config: as for `check_domain`.
        resolver: as for `check_domain` (`resolver_for(config)`).
        domains: the domains to check, each once in the order given (any case, a final dot
            allowed); None for `sending_domains(config)`.

    Returns:
        Every domain's findings, domain after domain, each as `check_domain` orders them.
    """
    if domains is None:
        wanted = sending_domains(config)
    else:
        wanted = list(dict.fromkeys(d.lower().rstrip(".") for d in domains))
    gate = asyncio.Semaphore(MAX_DOMAINS_AT_ONCE)

    async def one(domain: str) -> list[Finding]:
        async with gate:
            return await check_domain(domain, config, resolver)

    results = await asyncio.gather(*(one(d) for d in wanted))
    return [finding for findings in results for finding in findings]


def _envelope_domain(config: Config, domain: str) -> str:
    """The envelope sender domain of `domain`'s mail to the internet, after the route's
    `rewrite_senders` (an `@domain` rule), which SPF then checks instead."""
    route = internet_route(config, domain)
    if route is None:
        return domain
    rewritten = dict(route.rewrite_senders).get("@" + domain)
    return rewritten.rpartition("@")[2].lower() if rewritten else domain
