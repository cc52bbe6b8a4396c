"""SMTP policy decisions as pure functions of the session, the envelope and the config.

The inbound server asks; these functions answer with a reply to send, or None to go on. Nothing
here does I/O, so every rule is tested without sockets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from relaybox.config.model import LimitsConfig, ListenerConfig, RouteConfig
from relaybox.message.replies import Reply

__all__ = ["Client", "check_mail", "check_rcpt", "check_route", "client_ip", "may_relay"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(text: str) -> IPAddress:
    """Parse a peer address; IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes plain IPv4.

    A dual-stack socket reports IPv4 clients in mapped form; matching those against IPv4
    networks without unmapping would deny (or, worse, mis-grant) relay access.
    """
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class Client:
    """Who is talking to us, as far as policy cares."""

    ip: IPAddress
    listener: ListenerConfig
    auth_user: str | None = None


def may_relay(client: Client) -> bool:
    """Relay is granted only to trusted networks of a relay listener, or to authenticated users.

    Never an open relay: a listener with no allowed_networks and no AUTH relays for nobody.
    """
    if client.auth_user is not None:
        return True
    if client.listener.role != "relay":
        return False
    return any(client.ip in net for net in client.listener.allowed_networks)


def check_mail(
    *,
    declared_size: int | None,
    limits: LimitsConfig,
    free_space_mb: float | None,
    min_free_space_mb: int,
    rate_exceeded: bool,
) -> str | None:
    """Decide MAIL FROM: disk space, declared size and the client's message rate."""
    if free_space_mb is not None and free_space_mb < min_free_space_mb:
        return Reply.INSUFFICIENT_STORAGE  # RFC 3463 4.3.1: the relay's disk is nearly full
    if declared_size is not None and declared_size > limits.max_message_size:
        return Reply.size_exceeded(limits.max_message_size)  # RFC 1870 §6.1
    if rate_exceeded:
        return Reply.RATE_LIMITED
    return None


def check_rcpt(
    client: Client,
    recipient: str,
    *,
    accepted_so_far: int,
    limits: LimitsConfig,
    suppression_reason: str | None,
) -> str | None:
    """Decide RCPT TO: relay access first (so strangers learn nothing), then limits."""
    if not may_relay(client):
        return Reply.RELAY_DENIED
    if accepted_so_far >= limits.max_recipients:
        return Reply.TOO_MANY_RECIPIENTS  # RFC 5321 §4.5.3.1.10
    if suppression_reason is not None:
        return Reply.suppressed(recipient, suppression_reason)
    return None


def check_route(route: RouteConfig | None) -> str | None:
    """Refuse at RCPT what routing would refuse anyway, so the client learns it now."""
    if route is None:
        return "550 5.7.1 Relaying to this domain is not allowed: no route matches it"
    if route.transport == "reject":
        return f"550 5.7.1 {route.reject_text}"
    return None
