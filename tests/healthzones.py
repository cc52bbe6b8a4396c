"""DNS zones and configs for the domain health checks: one domain whose every record is right,
and a helper to break one record of it at a time.

Only loopback and documentation addresses (203.0.113.0/24, RFC 5737) appear, as data: the
zones are served by `tests/dnsserver.py` on 127.0.0.1 and nothing is ever sent to them.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from relaybox.config.keys import DkimKey
from relaybox.config.model import (
    Config,
    DeliveryConfig,
    DkimConfig,
    DnsConfig,
    RouteConfig,
    ServerConfig,
    SocketAddress,
)
from relaybox.signing.keys import generate, private_pem

OUTBOUND_IP = "203.0.113.7"
HELO = "relay.example.org"
REVERSE = "7.113.0.203.in-addr.arpa"
SELECTOR = "s1"


def dkim_value(key: DkimKey, extra: str = "") -> str:
    """The TXT value publishing `key`, as `dns_record` writes it (with `extra` tags)."""
    kind = "rsa" if key.algorithm == "rsa-sha256" else "ed25519"
    return f"v=DKIM1; k={kind}; {extra}p={key.public_value()}"


def good_zone(domain: str, key: DkimKey) -> dict[str, Any]:
    """A zone in which every check of `domain` is ok for `config_for(...)`."""
    return {
        domain: {"TXT": f"v=spf1 ip4:{OUTBOUND_IP} -all", "MX": f"10 mx.{domain}."},
        f"mx.{domain}": {"A": "127.0.0.2"},
        f"_dmarc.{domain}": {"TXT": f"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"},
        f"{SELECTOR}._domainkey.{domain}": {"TXT": dkim_value(key)},
        f"_mta-sts.{domain}": {"TXT": "v=STSv1; id=2026010101"},
        f"_smtp._tls.{domain}": {"TXT": f"v=TLSRPTv1; rua=mailto:tls@{domain}"},
        HELO: {"A": OUTBOUND_IP},
        REVERSE: {"PTR": f"{HELO}."},
    }


def key_file(directory: Path, key: DkimKey, name: str = "s1.key") -> Path:
    path = directory / name
    if not path.exists():
        path.write_bytes(private_pem(key))
    return path


def config_for(
    domains: list[str],
    key_path: Path,
    server: tuple[str, int],
    *,
    outbound_ips: tuple[str, ...] = (OUTBOUND_IP,),
    routes: tuple[RouteConfig, ...] = (RouteConfig(domains=("*",), transport="mx"),),
    timeout: float = 1.0,
    state_dir: Path | None = None,
) -> Config:
    """A config signing each of `domains` with the key at `key_path`, asking only `server`."""
    return Config(
        server=ServerConfig(hostname=HELO, state_dir=state_dir or key_path.parent / "state"),
        dns=DnsConfig(resolvers=(SocketAddress(*server),), timeout=timeout),
        delivery=DeliveryConfig(
            outbound_ips=tuple(ipaddress.ip_address(ip) for ip in outbound_ips)
        ),
        dkim=tuple(DkimConfig(d, SELECTOR, key_path) for d in domains),
        routes=routes,
    )


def new_key() -> DkimKey:
    return generate("rsa-sha256", 2048)
