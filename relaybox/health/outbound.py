"""Where a sending domain's mail leaves from, as receivers see it: the relay's own outbound
addresses, or the smart host its route hands the mail to.

Receivers check SPF and reverse DNS against the address that connects to them, so the checks
need to know which one that is. This module reads the config and resolves smart host names; it
judges nothing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from relaybox.config.model import Config, RouteConfig
from relaybox.resolver import Resolver

__all__ = ["Senders", "internet_route", "senders_of"]


@dataclass(frozen=True)
class Senders:
    """The addresses mail from one domain reaches receivers from, and how that was learned."""

    addresses: tuple[str, ...]
    """The IP addresses to check SPF for; empty when they cannot be known."""
    via: str
    """How mail leaves, in words: "this relay (outbound_ips)", "smart host smtp.example.net"."""
    smarthost: RouteConfig | None = None
    """The smarthost route the domain's mail to the internet takes, or None when it goes
    straight to the recipients' MX hosts."""
    error: str | None = None
    """Why no smart host address could be found (DNS failed, or a name has no address)."""


def internet_route(config: Config, domain: str) -> RouteConfig | None:
    """The route mail from `domain` to an arbitrary internet domain takes.

    That is the first route whose sender_domains allow `domain` and whose domains are `*`:
    routes for named recipient domains (an internal mail server, a partner) carry mail that
    general receivers never see, so their hosts are not what SPF is checked against.
    """
    for route in config.routes:
        if "*" in route.domains and (
            not route.sender_domains or route.matches("any.invalid", domain)
        ):
            return route
    return None


async def senders_of(config: Config, domain: str, resolver: Resolver) -> Senders:
    """Where mail from `domain` leaves, with the addresses to check (smart hosts resolved).

    A `smarthost` route wins over `[delivery] outbound_ips`: the receivers then see the smart
    host, not this relay.
    """
    route = internet_route(config, domain)
    if route is not None and route.transport == "smarthost" and route.hosts:
        names = ", ".join(h.host for h in route.hosts)
        found: list[str] = []
        problems: list[str] = []
        for host in route.hosts:
            try:
                found.append(str(ipaddress.ip_address(host.host)))
                continue
            except ValueError:
                pass
            result = await resolver.addresses(host.host)
            if result.kind == "ok":
                found.extend(result.addresses)
            elif result.kind == "temporary":
                problems.append(result.error or f"cannot look up {host.host}")
            else:
                problems.append(f"the smart host {host.host} has no address")
        unique = tuple(dict.fromkeys(found))
        error = "; ".join(problems) if problems and not unique else None
        return Senders(unique, f"smart host {names}", smarthost=route, error=error)
    ips = tuple(str(ip) for ip in config.delivery.outbound_ips)
    return Senders(ips, "this relay ([delivery] outbound_ips)")
