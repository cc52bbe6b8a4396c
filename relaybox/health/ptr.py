"""The PTR check: each address the relay sends from has reverse DNS that resolves back to it
(forward-confirmed reverse DNS), ideally to the HELO name; many receivers refuse or
distrust mail from addresses without it."""

from __future__ import annotations

import dns.reversename

from relaybox.health.findings import Finding, Status
from relaybox.health.outbound import Senders
from relaybox.resolver import Resolver

__all__ = ["check_ptr"]


async def check_ptr(
    domain: str, outbound_ips: tuple[str, ...], senders: Senders, helo: str, resolver: Resolver
) -> list[Finding]:
    """One finding per outbound IP; with none configured, one saying why nothing was checked."""
    if not outbound_ips:
        if senders.smarthost is not None:
            summary = (
                f"mail from {domain} leaves through {senders.via}, whose reverse DNS is its "
                "operator's to keep"
            )
            return [Finding(domain, "ptr", "ok", summary, None)]
        return [
            Finding(
                domain,
                "ptr",
                "warn",
                "reverse DNS cannot be checked: set [delivery] outbound_ips to the public "
                "addresses this relay sends from",
                None,
            )
        ]
    return [await _check_ip(domain, ip, helo, resolver) for ip in outbound_ips]


async def _check_ip(domain: str, ip: str, helo: str, resolver: Resolver) -> Finding:
    helo = helo.lower().rstrip(".")
    reverse = dns.reversename.from_address(ip).to_text()
    ptr_fix = f"{reverse} IN PTR {helo}."

    def finding(status: Status, summary: str, fix: str | None) -> Finding:
        return Finding(domain, "ptr", status, summary, fix, ip=ip)

    found = await resolver.ptr(ip)
    if found.kind == "temporary":
        return finding("error", f"could not check: {found.error}", None)
    helo_addresses = await resolver.addresses(helo)
    if helo_addresses.kind == "temporary":
        return finding("error", f"could not check: {helo_addresses.error}", None)
    helo_ok = ip in helo_addresses.addresses
    address_fix = f"{helo}. IN {'AAAA' if ':' in ip else 'A'} {ip}"
    if not found.names:
        also = "" if helo_ok else f" (and {helo} needs the address record {address_fix})"
        return finding(
            "fail",
            f"{ip} has no reverse DNS (PTR) record: many receivers refuse mail from it. Ask "
            f"whoever provides the address (your ISP or host) to publish the record below{also}",
            ptr_fix,
        )
    confirmed: list[str] = []
    for name in found.names:
        forward = await resolver.addresses(name)
        if forward.kind == "temporary":
            return finding("error", f"could not check: {forward.error}", None)
        if ip in forward.addresses:
            confirmed.append(name.lower())
    names = ", ".join(found.names)
    if helo in confirmed:
        return finding("ok", f"{ip} has reverse DNS {helo}, which resolves back to it", None)
    if not confirmed:
        if helo in (n.lower() for n in found.names):
            return finding(
                "fail",
                f"{ip} has reverse DNS {helo}, but {helo} does not resolve back to {ip}: "
                "receivers see the reverse DNS as forged; publish the address record below",
                address_fix,
            )
        also = "" if helo_ok else f" (and {helo} needs the address record {address_fix})"
        return finding(
            "fail",
            f"{ip} has reverse DNS {names}, which does not resolve back to {ip}: receivers "
            f"see the reverse DNS as forged. Ask whoever provides the address to publish the "
            f"record below{also}",
            ptr_fix,
        )
    return finding(
        "warn",
        f"{ip} has reverse DNS {', '.join(confirmed)}, which resolves back to it, but the "
        f"relay introduces itself (HELO) as {helo}; set [server] hostname to "
        f"{confirmed[0]}, or publish the record below"
        + ("" if helo_ok else f" and the address record {address_fix}"),
        ptr_fix,
    )
