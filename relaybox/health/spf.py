"""The SPF check (RFC 7208): one valid record that lets the relay's addresses pass, within
the 10-lookup limit, and that does not let everyone else pass too.

It gives one finding per domain, whose fix is the whole corrected record: the present record
with every correction applied at once (missing addresses added, "+all" softened, includes
flattened, two records merged), so the admin publishes one line, not several that conflict.
"""

from __future__ import annotations

import asyncio

import dns.resolver

from relaybox.health.findings import Finding, Status, worst, zone_txt
from relaybox.health.outbound import Senders
from relaybox.health.pyspf_query import evaluate
from relaybox.health.spf_record import (
    MAX_LOOKUPS,
    LookupFailed,
    SpfRecord,
    count_lookups,
    flatten,
    is_spf,
    merge,
)
from relaybox.resolver import Resolver

__all__ = ["check_spf"]


async def check_spf(
    domain: str,
    senders: Senders,
    helo: str,
    resolver: Resolver,
    blocking: dns.resolver.Resolver,
) -> Finding:
    """Check the SPF record of `domain` against the addresses its mail leaves from.

    Args:
        domain: the sending domain (the envelope sender's domain, which SPF checks).
        senders: where its mail leaves from (`outbound.senders_of`).
        helo: the relay's HELO name, for records whose macros use it.
        resolver: the configured resolver, for the record and its includes.
        blocking: the same servers for pyspf, which runs in a worker thread.
    """

    def error(why: str) -> Finding:
        return Finding(domain, "spf", "error", f"could not check: {why}", None)

    found = await resolver.txt(domain)
    if found.kind == "temporary":
        return error(found.error or "DNS failed")
    texts = [r for r in found.records if is_spf(r)]
    notes: list[tuple[Status, str]] = []
    addresses = senders.addresses
    if not texts:
        if not addresses:
            why = senders.error or f"mail leaves through {senders.via} and no address is known"
            return Finding(
                domain,
                "spf",
                "fail",
                f"{domain} has no SPF record, so receivers cannot tell its mail from forgeries; "
                f"publish one listing the addresses your mail leaves from ({why})",
                None,
            )
        fixed = SpfRecord.parse("v=spf1 ~all").allowing(addresses)
        return Finding(
            domain,
            "spf",
            "fail",
            f"{domain} has no SPF record, so receivers cannot tell its mail from forgeries "
            f"(mail leaves through {senders.via}: {', '.join(addresses)})",
            zone_txt(domain, fixed.text()),
        )
    records = [SpfRecord.parse(t) for t in texts]
    record = records[0]
    if len(records) > 1:
        record = merge(records)
        notes.append(
            (
                "fail",
                f"{domain} has {len(records)} SPF records; receivers treat that as a permanent "
                "error (RFC 7208 §3.2): publish the one record below instead of them all",
            )
        )
    fixed = record.with_terms(record.terms)
    if record.problems:
        notes.append(("fail", "the record is not valid SPF (" + "; ".join(record.problems) + ")"))

    all_term = record.all_term
    if all_term is not None and all_term.qualifier in "+?":
        notes.append(
            (
                "warn",
                f'"{all_term.text}" lets any server on the internet pass as {domain}; '
                '"~all" marks strangers\' mail instead',
            )
        )
        fixed = fixed.softened()

    try:
        walk = await count_lookups(domain, record, resolver)
        notes.extend(("fail", problem) for problem in walk.problems)
        if walk.lookups > MAX_LOOKUPS:
            notes.append(
                (
                    "fail",
                    f"evaluating it takes {walk.lookups} DNS lookups counted through its "
                    f"includes, more than the {MAX_LOOKUPS} receivers allow (RFC 7208 §4.6.4): "
                    "every receiver gets a permanent error. The fix below lists, instead of "
                    "the costliest includes, the addresses they name today; check it again "
                    "when a provider changes its addresses",
                )
            )
            fixed = await flatten(domain, fixed, walk, resolver)
    except LookupFailed as exc:
        return error(str(exc))

    if senders.error and not addresses:
        return error(senders.error)
    if not addresses:
        notes.append(
            (
                "warn",
                "which addresses must pass cannot be checked: set [delivery] outbound_ips to "
                "the public addresses this relay sends from (or route the mail through a "
                "smart host)",
            )
        )
    elif len(records) == 1:
        results = await asyncio.to_thread(_evaluate_all, addresses, domain, helo, blocking)
        failing = [ip for ip, (result, _why) in results.items() if result != "pass"]
        temporary = [why for result, why in results.values() if result == "temperror"]
        if temporary:
            return error(temporary[0])
        if failing:
            detail = ", ".join(f"{ip} gets {results[ip][0]}" for ip in failing)
            notes.append(
                (
                    "fail",
                    f"SPF does not pass for the addresses mail leaves from (through "
                    f"{senders.via}): {detail}",
                )
            )
            fixed = fixed.allowing(failing)
    else:
        fixed = fixed.allowing(addresses)

    status = worst([s for s, _ in notes])
    if status == "ok":
        passing = f"passes for {', '.join(addresses)} (mail leaves through {senders.via}); "
        return Finding(
            domain,
            "spf",
            "ok",
            f'"{record.text()}" {passing}{walk.lookups} of {MAX_LOOKUPS} DNS lookups',
            None,
        )
    summary = "; ".join(text for _s, text in notes)
    changed = fixed.text() != texts[0] or len(records) > 1
    return Finding(
        domain, "spf", status, summary, zone_txt(domain, fixed.text()) if changed else None
    )


def _evaluate_all(
    addresses: tuple[str, ...], domain: str, helo: str, resolver: dns.resolver.Resolver
) -> dict[str, tuple[str, str]]:
    """pyspf's result for each address (blocking: runs in a worker thread)."""
    return {ip: evaluate(ip, domain, helo, resolver) for ip in addresses}
