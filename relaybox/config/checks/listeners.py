"""Checks of the `[[listeners]]` blocks: addresses to bind (none twice), trusted networks,
TLS files and the warnings about a relay open to too many; serving SMTP is `inbound`'s job.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from relaybox.config.checks.tls import check_tls_pair
from relaybox.config.model import DEFAULT_LISTENER, ListenerConfig, SocketAddress
from relaybox.config.problems import Report
from relaybox.config.readers import list_of, read_each, read_list, read_network, read_socket_address
from relaybox.config.rules import example_of
from relaybox.config.tables import blocks_of, read_table

__all__ = ["read_listeners"]

_TLS_FILES = ("certificate", "private_key")

_WIDE_PREFIX = {4: 8, 6: 32}
"""Allowed networks shorter than these prefixes are warned about. An IPv4 /8 is a large
company's whole address block; /32 is what a registry hands a whole ISP in IPv6."""

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def read_listeners(report: Report, data: dict[str, Any]) -> tuple[ListenerConfig, ...]:
    """The `[[listeners]]` blocks; `(DEFAULT_LISTENER,)` when the file has none."""
    blocks = blocks_of(
        report,
        data,
        "listeners",
        noun="listener",
        shape="must be [[listeners]] blocks, one per listener, each with its own "
        "listen = [...] line",
        empty="relaybox needs at least one listener; add a [[listeners]] block with "
        f"listen = {example_of(ListenerConfig, 'listen')}",
    )
    if blocks is None:
        return (DEFAULT_LISTENER,)
    readers = {
        "listen": _listen,
        "allowed_networks": list_of(read_network, example_of(ListenerConfig, "allowed_networks")),
    }
    built: list[tuple[int, ListenerConfig]] = []
    for index, block in enumerate(blocks):
        prefix = f"listeners[{index}]"
        listener = read_table(report, prefix, ListenerConfig, block, readers, block="listeners")
        if listener is not None:
            _listener_tls(report, prefix, listener)
            built.append((index, listener))
    _duplicate_addresses(report, built)
    for index, listener in built:
        _listener_warnings(report, f"listeners[{index}]", listener)
    return tuple(listener for _, listener in built)


def _listen(report: Report, key: str, value: object) -> tuple[SocketAddress, ...] | None:
    items = read_list(report, key, value, example_of(ListenerConfig, "listen"))
    if items is None:
        return None
    if not items:
        report.error(
            key, f"must list at least one address, like {example_of(ListenerConfig, 'listen')}"
        )
        return None
    return read_each(report, key, items, read_socket_address)


def _duplicate_addresses(report: Report, listeners: list[tuple[int, ListenerConfig]]) -> None:
    """Two binds of one port on one address (or a wildcard of the same family) cannot both
    succeed; say so now rather than with EADDRINUSE at start."""
    seen: list[tuple[SocketAddress, str]] = []
    for index, listener in listeners:
        owner = f"listeners[{index}]"
        for position, address in enumerate(listener.listen):
            if address.port == 0:  # each bind gets its own free port
                continue
            for earlier, earlier_owner in seen:
                message = _clash(address, earlier, earlier_owner, owner)
                if message:
                    report.error(f"{owner}.listen[{position}]", message)
                    break
            seen.append((address, owner))


def _listener_warnings(report: Report, prefix: str, listener: ListenerConfig) -> None:
    exposed = [a for a in listener.listen if not ipaddress.ip_address(a.host).is_loopback]
    exposed_text = ", ".join(str(a) for a in exposed)
    if listener.role == "relay" and not listener.allowed_networks:
        report.warn(
            prefix,
            "this relay listener has no allowed_networks, so no client may "
            "send mail through it; add the networks of the machines that send "
            'mail, like allowed_networks = ["192.168.1.0/24"]',
        )
    for position, network in enumerate(listener.allowed_networks):
        key = f"{prefix}.allowed_networks[{position}]"
        if (
            listener.role == "relay"
            and exposed
            and any(
                network.overlaps(loopback)
                for loopback in _LOOPBACK
                if loopback.version == network.version
            )
        ):
            report.warn(
                key,
                f"this relay listener can be reached from other machines "
                f"({exposed_text}) and trusts {network}, which includes this "
                "machine's own loopback addresses. Every program on this machine "
                "may then relay, and so may anything that reaches relaybox "
                "through a local proxy, port forward or NAT, because those "
                "connections appear to come from this machine. Give local programs "
                "their own listener on 127.0.0.1 and trust only your office "
                "networks here",
            )
        if network.prefixlen < _WIDE_PREFIX[network.version]:
            size = (
                f"every IPv{network.version} address"
                if network.prefixlen == 0
                else f"{network.num_addresses:,} addresses"
            )
            report.warn(
                key,
                f"{network} covers {size}; everyone in it may send mail through "
                "relaybox, which makes it an open relay if this listener can be "
                "reached from the internet. List only your office networks, like "
                '"192.168.1.0/24" (networks wider than an IPv4 /8 or an IPv6 /32 '
                "are reported)",
            )


def _listener_tls(report: Report, prefix: str, listener: ListenerConfig) -> None:
    """A TLS listener needs a certificate and key that load as a pair; a submission
    listener needs TLS, because AUTH is only ever offered over it."""
    given = [name for name in _TLS_FILES if getattr(listener, name) is not None]
    if listener.tls == "none":
        if listener.role == "submission":
            report.error(
                f"{prefix}.tls",
                'a submission listener needs tls = "starttls" or "implicit": relaybox '
                "offers log-in (AUTH) only over an encrypted connection, so with "
                'tls = "none" nobody could ever log in and send mail through it. Add '
                'tls = "starttls" with certificate and private_key (relaybox init makes '
                "a self-signed pair)",
            )
        for name in given:
            report.warn(
                f"{prefix}.{name}",
                'is not used, because this listener has tls = "none"; remove it, or set '
                'tls = "starttls" to offer encryption',
            )
        return
    if listener.certificate is None or listener.private_key is None:
        missing = [name for name in _TLS_FILES if name not in given]
        detail = f" ({missing[0]} is missing)" if len(missing) == 1 else ""
        report.error(
            prefix,
            f'tls = "{listener.tls}" needs certificate and private_key{detail}; '
            "relaybox init makes a self-signed pair",
        )
        return
    check_tls_pair(report, prefix, listener.certificate, listener.private_key)


def _clash(
    address: SocketAddress, earlier: SocketAddress, earlier_owner: str, owner: str
) -> str | None:
    """Why `address` cannot be bound next to `earlier`, or None when both can be."""
    if address.port != earlier.port:
        return None
    where = "this listener" if earlier_owner == owner else earlier_owner
    if address == earlier:
        return f"{address} is already listed in {where}; each address and port can be used once"
    ip, earlier_ip = ipaddress.ip_address(address.host), ipaddress.ip_address(earlier.host)
    if ip.version != earlier_ip.version:
        return None  # asyncio binds IPv6 sockets IPV6_V6ONLY, so [::] does not take 0.0.0.0
    if ip.is_unspecified or earlier_ip.is_unspecified:
        wildcard = "0.0.0.0" if ip.version == 4 else "[::]"
        return (
            f"{address} overlaps {earlier} in {where}: {wildcard} means every IPv{ip.version} "
            f"address of this machine, so both cannot use port {address.port}; use a "
            "different port, or list only specific addresses"
        )
    return None
