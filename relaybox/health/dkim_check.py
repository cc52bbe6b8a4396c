"""The DKIM check (RFC 6376): for each `[[dkim]]` key of a domain, the key published at
SELECTOR._domainkey.DOMAIN exists, parses, is not revoked and is the public half of the
configured private key.

One finding per configured selector. Signing is `relaybox.signing.signer`'s job; this only
compares what is configured with what DNS publishes.
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import rsa

from relaybox.config.keys import DkimKey, DkimKeyError, load_private_key, published_key
from relaybox.config.model import DkimConfig
from relaybox.health.findings import Finding, Status
from relaybox.resolver import Resolver
from relaybox.signing.keys import dns_record
from relaybox.signing.tags import TagError, parse_tags

__all__ = ["check_dkim"]

_RECOMMENDED_BITS = 2048
"""RFC 8301 §3.2: signers SHOULD use at least 2048 bits."""
_KEY_TYPE = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}


async def check_dkim(domain: str, entries: list[DkimConfig], resolver: Resolver) -> list[Finding]:
    """One finding per `[[dkim]]` entry of `domain`; a warning when it has none (its mail
    leaves unsigned)."""
    if not entries:
        return [
            Finding(
                domain,
                "dkim",
                "warn",
                f"no [[dkim]] key is configured for {domain}: its mail leaves unsigned, and "
                f"DMARC rests on SPF alone. Make one with: relaybox dkim keygen {domain} "
                "--selector s1",
                None,
            )
        ]
    return list(await asyncio.gather(*(_check_one(domain, e, resolver) for e in entries)))


async def _check_one(domain: str, entry: DkimConfig, resolver: Resolver) -> Finding:
    selector = entry.selector
    name = f"{selector}._domainkey.{domain}"

    def finding(status: Status, summary: str, fix: str | None) -> Finding:
        return Finding(domain, "dkim", status, summary, fix, selector=selector)

    # The key the config loaded is the one mail is signed with (a file changed on disk since
    # signs nothing until a reload); read the file only for an entry built without it.
    key = entry.key
    if key is None:
        try:
            key = await asyncio.to_thread(load_private_key, entry.private_key, entry.algorithm)
        except DkimKeyError as exc:
            return finding("error", f"could not check: the private key cannot be read: {exc}", None)
    record = dns_record(domain, selector, key)
    found = await resolver.txt(name)
    if found.kind == "temporary":
        return finding("error", f"could not check: {found.error}", None)
    if not found.records:
        return finding(
            "fail",
            f"no DKIM key is published at {name}: receivers cannot verify mail signed with "
            f"selector {selector}; publish the record below",
            record,
        )
    if len(found.records) > 1:
        return finding(
            "fail",
            f"{name} has {len(found.records)} TXT records; a verifier may pick any of them "
            "(RFC 6376 §3.6.2.2): publish only the record below",
            record,
        )
    problem, warnings, bits = _compare(found.records[0], key, entry)
    if problem:
        return finding("fail", f"the key at {name} {problem}; publish the record below", record)
    if warnings:
        # A short key needs a new key, not a new record: no record to give.
        fix = record if any("t=y" in w for w in warnings) else None
        return finding("warn", f"the key at {name} matches, but " + "; ".join(warnings), fix)
    what = f"{bits}-bit RSA" if bits else "ed25519"
    return finding(
        "ok", f"the {what} key at {name} matches the configured key {entry.private_key}", None
    )


def _compare(text: str, key: DkimKey, entry: DkimConfig) -> tuple[str | None, list[str], int]:
    """What is wrong with the published record (fail), what should improve (warn), and the
    RSA key size (0 for ed25519)."""
    try:
        tags = parse_tags(text)
    except TagError as exc:
        return f"is not a DKIM key record ({exc})", [], 0
    version = tags.get("v")
    if version is not None and (version != "DKIM1" or next(iter(tags)) != "v"):
        return 'is not a DKIM key record (v= must come first and be "DKIM1")', [], 0
    if "p" not in tags:
        return "has no public key (no p= tag)", [], 0
    if not tags["p"]:
        return "is revoked (p= is empty, RFC 6376 §3.6.1): mail signed with it fails", [], 0
    key_type = tags.get("k", "rsa").lower()
    wanted = _KEY_TYPE[entry.algorithm]
    if key_type != wanted:
        return f"is k={key_type}, but the configured key is {entry.algorithm}", [], 0
    hashes = [h.strip().lower() for h in tags.get("h", "sha256").split(":")]
    if "sha256" not in hashes:
        return f"allows only h={tags['h']}, not the sha256 relaybox signs with", [], 0
    services = [s.strip().lower() for s in tags.get("s", "*").split(":")]
    if "*" not in services and "email" not in services:
        return f"is for s={tags['s']}, not email", [], 0
    try:
        public = published_key(tags["p"], key_type)
    except DkimKeyError as exc:
        return f"cannot be read: {exc}", [], 0
    if not key.matches(public):
        return (
            f"does not match the configured private key {entry.private_key}: mail signed "
            "with it fails verification",
            [],
            0,
        )
    warnings: list[str] = []
    bits = public.key_size if isinstance(public, rsa.RSAPublicKey) else 0
    if bits and bits < _RECOMMENDED_BITS:
        warnings.append(
            f"it is a {bits}-bit RSA key; receivers expect 2048 bits or more (RFC 8301): "
            f"make a new one with relaybox dkim keygen {entry.domain} --selector NEW, "
            "publish its record and switch [[dkim]] to it"
        )
    flags = [f.strip().lower() for f in tags.get("t", "").split(":")]
    if "y" in flags:
        warnings.append(
            "it is marked as testing (t=y): receivers may treat signed mail as unsigned; "
            "publish the record below, without t=y"
        )
    return None, warnings, bits
