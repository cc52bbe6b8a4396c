"""The MX check: a sending domain must be able to receive mail too (bounces, replies), so it
needs MX records or at least an address (RFC 5321 §5.1), and must not publish a null MX
(RFC 7505: receivers may refuse mail from such a domain, §4.2)."""

from __future__ import annotations

from relaybox.health.findings import Finding
from relaybox.resolver import Resolver

__all__ = ["check_mx"]


async def check_mx(domain: str, resolver: Resolver) -> Finding:
    """The MX finding of `domain`. A failure has no fix line: which server receives the
    domain's mail is the admin's to say."""
    result = await resolver.mx(domain)
    if result.kind == "temporary":
        return Finding(domain, "mx", "error", f"could not check: {result.error}", None)
    if result.kind == "hosts":
        hosts = ", ".join(f"{host} ({preference})" for preference, host in result.hosts)
        return Finding(domain, "mx", "ok", f"mail for {domain} goes to {hosts}", None)
    if result.kind == "implicit":
        return Finding(
            domain,
            "mx",
            "ok",
            f"{domain} has no MX record; mail for it goes to its own address (RFC 5321 §5.1)",
            None,
        )
    if result.kind == "null_mx":
        why = (
            f'{domain} publishes a null MX ("MX 0 ."): it says it receives no mail, so '
            "receivers may refuse its mail (RFC 7505 §4.2) and bounces to it are lost; "
            "replace it with the MX record of the server that receives its mail"
        )
    elif result.kind == "nxdomain":
        why = f"{domain} does not exist in DNS: receivers refuse mail from it"
    else:
        why = (
            f"{domain} has neither an MX record nor an address: nobody can answer or "
            "bounce its mail, and receivers may refuse it; publish the MX record of the "
            "server that receives its mail"
        )
    return Finding(domain, "mx", "fail", why, None)
