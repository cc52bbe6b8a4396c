"""SMTP policy decisions as functions of the session, the envelope and the config.

The inbound server asks; these functions answer with a reply to send, or None to go on: relay
access, MAIL limits, sender binding (MAIL FROM and From: against the user's allowed_senders),
message rates. Nothing here does I/O (the only state touched is the rate table passed in), so
every rule is tested without sockets.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from relaybox.config.model import LimitsConfig, ListenerConfig, RouteConfig, UserConfig
from relaybox.inbound.throttle import RateTable
from relaybox.message.headers import MAX_HOPS
from relaybox.message.replies import Reply

__all__ = [
    "Client",
    "check_from",
    "check_helo",
    "check_hops",
    "check_mail",
    "check_rates",
    "check_rcpt",
    "check_route",
    "check_sender",
    "client_ip",
    "may_relay",
    "may_send_as",
    "may_take_reserved_slot",
]


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


def may_take_reserved_slot(ip: IPAddress, listeners: Sequence[ListenerConfig]) -> bool:
    """Whether a client may take one of `[limits] reserved_connections`: it is in the
    allowed_networks of a relay listener (the office's own machines), on whichever listener
    it connects to, so strangers cannot take every slot."""
    return any(
        ip in net
        for listener in listeners
        if listener.role == "relay"
        for net in listener.allowed_networks
    )


def check_hops(received_fields: int) -> str | None:
    """Refuse a message that has passed through more than `MAX_HOPS` servers: a mail loop
    (RFC 5321 §6.3 asks for a limit on Received: fields; Postfix's hopcount_limit is 50)."""
    return Reply.TOO_MANY_HOPS if received_fields > MAX_HOPS else None


def check_mail(
    *,
    sender: str,
    declared_size: int | None,
    user: UserConfig | None,
    limits: LimitsConfig,
    free_space_mb: float | None,
    min_free_space_mb: int,
    rates: RateTable,
    client_ip: str,
) -> str | None:
    """Decide MAIL FROM: disk space, declared size, sender binding, then message rates.

    Rates are counted last, and only when everything else passed: a refused MAIL costs no rate.
    """
    if free_space_mb is not None and free_space_mb < min_free_space_mb:
        return Reply.INSUFFICIENT_STORAGE  # RFC 3463 4.3.1: the relay's disk is nearly full
    if declared_size is not None and declared_size > limits.max_message_size:
        return Reply.size_exceeded(limits.max_message_size)  # RFC 1870 §6.1
    if user is not None and sender:
        refusal = check_sender(user, sender)
        if refusal is not None:
            return refusal
    return check_rates(rates, client_ip, user, limits)


def check_rates(
    rates: RateTable, client_ip: str, user: UserConfig | None, limits: LimitsConfig
) -> str | None:
    """Count one message for the client's address, then for its user; refuse over a limit.

    The user's count is taken only when the address's passed, so one refusal counts nowhere.
    """
    if rates.hit(client_ip, limits.max_messages_per_minute_per_ip):
        return Reply.RATE_LIMITED
    if user is not None:
        per_user = user.max_messages_per_minute or limits.max_messages_per_minute_per_user
        if rates.hit("user:" + user.name, per_user):
            return Reply.USER_RATE_LIMITED
    return None


def may_send_as(user: UserConfig, address: str) -> bool:
    """`UserConfig.may_send_as`, for an IDN domain written either way (RFC 5890 §2.3.2.1).

    An address from SMTPUTF8 mail has a U-label domain (`bücher.example`), an ASCII one an
    A-label (`xn--bcher-kva.example`); allowed_senders may hold either, so both are tried.
    """
    if user.may_send_as(address):
        return True
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        return False
    try:
        if domain.isascii():
            other = domain.encode("ascii").decode("idna")
        else:
            other = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return False  # not a valid IDN: it can only match as written
    return other != domain and user.may_send_as(f"{local}@{other}")


def check_sender(user: UserConfig, sender: str) -> str | None:
    """An authenticated user's MAIL FROM must be one of theirs (as Postfix's
    reject_sender_login_mismatch; RFC 4954 §3 leaves sender policy to the server)."""
    if may_send_as(user, sender):
        return None
    return Reply.sender_not_owned(sender, user.name)


def check_from(user: UserConfig, from_addresses: list[str]) -> str | None:
    """Every From: address of an authenticated user's message must be theirs (RFC 5322 §3.6.2),
    or the login could forge any author."""
    if not from_addresses:
        return Reply.NO_FROM_ADDRESS
    for address in from_addresses:
        if not may_send_as(user, address):
            return Reply.from_not_owned(address, user.name)
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
        return Reply.rejected_by_route(route.reject_text)
    return None


_HELO_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
"""A host name label, with underscores allowed as Postfix allows them (Windows names)."""


def check_helo(name: str) -> str | None:
    """The refusal of an EHLO/HELO argument, or None when it may be used.

    RFC 5321 §4.1.1.1 asks for a domain or an address literal. Like Postfix, relaybox is
    lenient with what many office devices send (underscores, a bare IP address, a name
    without dots) but never takes a space, a control character or bytes that are not UTF-8,
    because the name is written into the Received: header of every message of the session;
    non-ASCII only as a domain of U-labels (RFC 6531 §3.7.1).
    """
    if not name or len(name) > 255 or "%" in name:
        # "%" is in no domain; after an IPv6 address `ipaddress` takes any text as a zone ID.
        return Reply.BAD_HELO
    if any(
        char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn")
        for char in name
    ):
        return Reply.BAD_HELO
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1]
        try:
            if literal[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            return Reply.BAD_HELO
        return None
    try:
        ipaddress.ip_address(name)  # a bare address, as some devices send
        return None
    except ValueError:
        pass
    labels = name.removesuffix(".").split(".")
    for label in labels:
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return Reply.BAD_HELO
        if not _HELO_LABEL.fullmatch(label):
            return Reply.BAD_HELO
    return None
