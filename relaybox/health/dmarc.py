"""The DMARC check (RFC 7489): one `_dmarc` record that parses, its policy, its report
address, and whether mail from the domain aligns with DKIM or SPF.

Alignment is judged from the config and the other checks' results (handed in as
`Alignment`), not by looking anything up again.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaybox.health.findings import Finding, Status, worst, zone_txt
from relaybox.resolver import Resolver
from relaybox.signing.tags import TagError, format_tags, parse_tags

__all__ = ["Alignment", "check_dmarc", "relaxed_aligned"]

_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class Alignment:
    """What the DKIM and SPF checks learned, for DMARC's alignment rule (RFC 7489 §3.1)."""

    dkim: bool
    """A `[[dkim]]` key signs the domain's mail (d= is the From: domain) and its published
    key checks out."""
    spf: bool | None
    """SPF passes for the addresses the mail leaves from, for an envelope domain aligned
    with the From: domain; None when that could not be checked."""
    spf_domain: str
    """The envelope sender (SPF) domain of the domain's mail after any route rewriting."""


def relaxed_aligned(one: str, other: str) -> bool:
    """Relaxed alignment, approximated without the public suffix list: the same domain, or
    one a subdomain of the other (RFC 7489 §3.1's organisational domains are wider: this
    never says aligned when they are not)."""
    a, b = one.lower().rstrip("."), other.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


async def check_dmarc(domain: str, alignment: Alignment, resolver: Resolver) -> Finding:
    """The DMARC finding of `domain`: the record at `_dmarc.DOMAIN` (or, when it has none,
    at a parent domain, whose `sp=` then applies, RFC 7489 §6.6.3), and alignment."""
    default_rua = f"mailto:postmaster@{domain}"
    owner = f"_dmarc.{domain}"
    records: list[str] = []
    found_at = domain
    for candidate in _policy_domains(domain):
        found = await resolver.txt(f"_dmarc.{candidate}")
        if found.kind == "temporary":
            return Finding(domain, "dmarc", "error", f"could not check: {found.error}", None)
        records = [r for r in found.records if r.strip()[:8].upper() == "V=DMARC1"]
        if records:
            found_at = candidate
            break
    notes: list[tuple[Status, str]] = []
    inherited = found_at != domain
    if not records:
        record = {"v": "DMARC1", "p": "none", "rua": default_rua}
        notes.append(
            (
                "fail",
                f"{domain} has no DMARC record, so receivers apply their own guesses to mail "
                "that fails SPF and DKIM, and nobody reports forgeries to you; start with "
                "p=none and reports, then tighten the policy once the reports look clean",
            )
        )
    else:
        if len(records) > 1:
            records.sort(key=_preference)
            notes.append(
                (
                    "fail",
                    f"_dmarc.{found_at} has {len(records)} DMARC records; receivers then "
                    "ignore them all (RFC 7489 §6.6.3): publish only the record below",
                )
            )
        try:
            record = parse_tags(records[0])
        except TagError as exc:
            record = {"v": "DMARC1", "p": "none", "rua": default_rua}
            notes.append(("fail", f"the DMARC record does not parse ({exc})"))
        policy_tag = "sp" if inherited and "sp" in record else "p"
        policy = record.get(policy_tag, "").lower()
        if inherited:
            notes.append(("ok", f"the record of {found_at} applies to {domain} ({policy_tag}=)"))
        if record.get("v") != "DMARC1" or next(iter(record)) != "v":
            notes.append(("fail", 'the record must begin with "v=DMARC1"'))
        if policy not in _POLICIES:
            notes.append(
                (
                    "fail",
                    f"the policy {policy_tag}= is {'missing' if not policy else policy!r}; "
                    "it is one of none, quarantine, reject",
                )
            )
            record[policy_tag] = "none"
        elif policy == "none":
            notes.append(
                (
                    "warn",
                    f"the policy is {policy_tag}=none: receivers deliver mail that fails "
                    "DMARC as if it passed. Once the reports show your own mail passing, "
                    "move to quarantine",
                )
            )
            record[policy_tag] = "quarantine"
        if not record.get("rua"):
            notes.append(
                (
                    "warn",
                    "no rua= address: nobody receives the receivers' aggregate reports, so "
                    "forgeries and your own failing mail go unseen",
                )
            )
            record["rua"] = default_rua
    # Only a wrong record gets a fix line: when just alignment is wrong, the records to
    # change are SPF's or DKIM's, and their findings carry them.
    record_wrong = worst([s for s, _ in notes]) != "ok"
    notes.extend(_alignment_notes(domain, alignment, record))
    status = worst([s for s, _ in notes])
    summary = "; ".join(text for _s, text in notes)
    if status == "ok":
        rua = record.get("rua", "")
        summary = f"p={record.get('p')}, reports to {rua}; {summary}"
        return Finding(domain, "dmarc", "ok", summary, None)
    # The fix is always published at the domain's own name, which then overrides a parent's
    # record for it alone; an inherited sp= becomes that record's p=.
    policy = record.get("sp", "none") if inherited and "sp" in record else record.get("p", "none")
    ordered = {"v": "DMARC1", "p": policy}
    ordered.update((k, v) for k, v in record.items() if k not in ("v", "p", "sp"))
    fix = zone_txt(owner, format_tags(ordered)) if record_wrong else None
    return Finding(domain, "dmarc", status, summary, fix)


def _preference(record: str) -> tuple[int, bool, str]:
    """Which of several DMARC records the fix keeps (DNS gives them in no fixed order): one
    that parses, with the strictest policy, with reports; then by text."""
    try:
        tags = parse_tags(record)
    except TagError:
        return (1, True, record)
    policy = tags.get("p", "").lower()
    rank = _POLICIES.index(policy) if policy in _POLICIES else -1
    return (-rank, not tags.get("rua"), record)


def _policy_domains(domain: str) -> list[str]:
    """`domain`, then its parents down to two labels: where a DMARC record may apply from."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(max(1, len(labels) - 1))]


def _alignment_notes(
    domain: str, alignment: Alignment, record: dict[str, str]
) -> list[tuple[Status, str]]:
    strict_spf = record.get("aspf", "r").lower() == "s"
    spf_domain = alignment.spf_domain
    if strict_spf:
        spf_aligned_domain = spf_domain == domain
    else:
        spf_aligned_domain = relaxed_aligned(spf_domain, domain)
    ways: list[str] = []
    if alignment.dkim:
        ways.append(f"DKIM (d={domain})")
    if spf_aligned_domain and alignment.spf:
        ways.append(f"SPF ({spf_domain})")
    if ways:
        return [("ok", "mail aligns through " + " and ".join(ways))]
    if alignment.spf is None and spf_aligned_domain:
        return [("ok", "DKIM does not align, and whether SPF does could not be checked")]
    why_spf = (
        f"the envelope sender domain {spf_domain} does not align with {domain}"
        if not spf_aligned_domain
        else "SPF does not pass"
    )
    return [
        (
            "warn",
            f"mail from {domain} aligns with neither DKIM (no working [[dkim]] key) nor SPF "
            f"({why_spf}): receivers will fail DMARC for it",
        )
    ]
