"""Where each recipient goes: its route, its destination, and the hops to try for it.

A destination is what connections and limits are counted per: one MX domain for the `mx`
transport, one list of upstreams for a smart host. `resolve_hops` turns a destination into the
ordered addresses to try (MX hosts by preference, each host's IPv6 then IPv4 addresses; smart
hosts in order, or rotated for round robin), or into the reason there are none, permanent
(null MX, no such domain) or not (DNS trouble).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from dataclasses import dataclass

from relaybox.config.model import Config, RouteConfig
from relaybox.config.secrets import read_route_password
from relaybox.outbound.handshake import Credentials, Hop
from relaybox.resolver import Resolver

__all__ = [
    "Destination",
    "HopList",
    "destination_for",
    "load_credentials",
    "resolve_hops",
    "smarthost_key",
]

MAX_HOPS = 10
"""Addresses tried in one attempt at most (Postfix's smtp_mx_address_limit is 5 per domain)."""


@dataclass(frozen=True)
class Destination:
    """A next hop as the scheduler counts it."""

    key: str
    """`mx:example.org`, `smarthost:smtp.example.net:587`, or the transport for local ones."""
    route: RouteConfig
    domain: str
    """The recipient domain (what the MX lookup is for)."""


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def destination_for(
    config: Config, recipient: str, sender: str, released: bool = False
) -> Destination | None:
    """The destination of `recipient`, or None when no route matches it (`released`: an
    admin released it from a hold, see `Config.route_for`)."""
    route = config.route_for(recipient, sender, released=released)
    if route is None:
        return None
    domain = _domain(config.qualify(recipient))
    if route.transport == "mx":
        key = f"mx:{domain}"
    elif route.transport == "smarthost":
        key = smarthost_key(route)
    else:
        key = route.transport
    return Destination(key, route, domain)


def smarthost_key(route: RouteConfig) -> str:
    """The destination key of a smart host route: all its hosts, in the order written."""
    return "smarthost:" + ",".join(str(h) for h in route.hosts)


@dataclass(frozen=True)
class HopList:
    """The hops to try, or why there are none."""

    hops: tuple[Hop, ...] = ()
    failure: str | None = None
    """The reply to record for every recipient when there are no hops."""
    permanent: bool = False


_round_robin = itertools.count()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _hops_of(resolver: Resolver, host: str, port: int) -> tuple[list[Hop], str | None]:
    if _is_ip(host):
        return [Hop(host, host, port)], None
    found = await resolver.addresses(host)
    if found.kind != "ok" or not found.addresses:
        return [], f"{host}: {found.error or found.kind}"
    return [Hop(host, ip, port) for ip in found.addresses], None


async def resolve_hops(destination: Destination, resolver: Resolver, mx_port: int) -> HopList:
    """The addresses to try for `destination`, in order."""
    route = destination.route
    if route.transport == "smarthost":
        hosts = list(route.hosts)
        if route.round_robin and hosts:
            start = next(_round_robin) % len(hosts)
            hosts = hosts[start:] + hosts[:start]
        found = await asyncio.gather(*(_hops_of(resolver, h.host, h.port) for h in hosts))
        hops = [hop for hop_list, _ in found for hop in hop_list]
        errors = [error for _, error in found if error]
        if not hops:
            return HopList(failure=f"451 4.4.3 Cannot resolve the smart host: {'; '.join(errors)}")
        return HopList(tuple(hops[:MAX_HOPS]))
    mx = await resolver.mx(destination.domain)
    if mx.kind == "null_mx":
        return HopList(
            failure=f"550 5.1.10 {destination.domain} accepts no mail (null MX, RFC 7505)",
            permanent=True,
        )
    if mx.kind in ("nxdomain", "no_address"):
        what = "does not exist" if mx.kind == "nxdomain" else "has no MX and no address"
        return HopList(
            failure=f"550 5.1.2 Domain {destination.domain} {what} in DNS", permanent=True
        )
    if mx.kind == "temporary":
        return HopList(failure=f"451 4.4.3 DNS lookup for {destination.domain} failed: {mx.error}")
    found = await asyncio.gather(*(_hops_of(resolver, host, mx_port) for _, host in mx.hosts))
    hops = [hop for hop_list, _ in found for hop in hop_list]
    if not hops:
        why = "; ".join(error for _, error in found if error)
        return HopList(
            failure=f"451 4.4.3 No address for the MX hosts of {destination.domain}: {why}"
        )
    return HopList(tuple(hops[:MAX_HOPS]))


def load_credentials(route: RouteConfig) -> Credentials | None:
    """The AUTH credentials of a route, read from its file or environment variable.

    Blocking (reads a file): call it from a thread. The password is read, and checked, by
    the config loader's `read_route_password`: one reading for both. Raises ValueError, in
    words for the admin, when the secret cannot be read any more.
    """
    password = read_route_password(route)
    if route.username is None or password is None:
        return None
    return Credentials(route.username, password)
