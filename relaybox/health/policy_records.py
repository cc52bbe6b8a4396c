"""The MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) checks: informational, from their TXT
records alone. Neither is needed to send mail; they protect and report on mail *to* the
domain, so a missing one is a warning and never a failure. The MTA-STS policy file itself is
not fetched."""

from __future__ import annotations

from relaybox.health.findings import Check, Finding
from relaybox.resolver import Resolver
from relaybox.signing.tags import TagError, parse_tags

__all__ = ["check_mta_sts", "check_tls_rpt"]


async def check_mta_sts(domain: str, resolver: Resolver) -> Finding:
    """The `_mta-sts` TXT record: one, "v=STSv1" with an id (RFC 8461 §3.1). A missing one
    has no fix line: the record is only meaningful beside a policy file served over HTTPS."""
    return await _check(
        domain,
        "mta-sts",
        f"_mta-sts.{domain}",
        "v=STSv1",
        "id",
        f"no MTA-STS record (optional): senders may deliver mail to {domain} without TLS if "
        f"an attacker strips it. To add it, publish a policy at "
        f"https://mta-sts.{domain}/.well-known/mta-sts.txt and then the TXT record "
        f'_mta-sts.{domain} "v=STSv1; id=..." naming its version',
        None,
        resolver,
    )


async def check_tls_rpt(domain: str, resolver: Resolver) -> Finding:
    """The `_smtp._tls` TXT record: one, "v=TLSRPTv1" with rua (RFC 8460 §3)."""
    owner = f"_smtp._tls.{domain}"
    return await _check(
        domain,
        "tls-rpt",
        owner,
        "v=TLSRPTv1",
        "rua",
        "no TLS-RPT record (optional): senders that fail to reach your mail server over TLS "
        "have nobody to report it to",
        f'{owner}. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@{domain}"',
        resolver,
    )


async def _check(
    domain: str,
    check: Check,
    owner: str,
    version: str,
    required: str,
    missing: str,
    fix: str | None,
    resolver: Resolver,
) -> Finding:
    """One TXT record at `owner` beginning with `version` and holding a `required` tag: ok;
    anything else: a warning (`missing` says why it matters when there is none)."""
    found = await resolver.txt(owner)
    if found.kind == "temporary":
        return Finding(domain, check, "error", f"could not check: {found.error}", None)
    records = [r for r in found.records if r.startswith(version)]
    name = check.upper()
    if not records:
        return Finding(domain, check, "warn", missing, fix)
    problem = _problem(records, required)
    if problem:
        return Finding(domain, check, "warn", f"the {name} record {problem}", fix)
    return Finding(domain, check, "ok", f"{name} is published ({records[0]})", None)


def _problem(records: list[str], required: str) -> str | None:
    """What makes the records unusable: senders ignore them all when there are several."""
    if len(records) > 1:
        return f"is published {len(records)} times; senders then ignore it"
    try:
        tags = parse_tags(records[0])
    except TagError as exc:
        return f"does not parse ({exc})"
    if not tags.get(required):
        return f"has no {required}= tag"
    return None
