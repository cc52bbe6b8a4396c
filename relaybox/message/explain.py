"""Replies from next hops explained in plain words: what the reply most likely means, and the
place that fixes it.

An admin on call sees "451 4.7.1 Please try again later" or "[SSL: CERTIFICATE_VERIFY_FAILED]"
and needs to know whether to wait, call the recipient, fix DNS or fix a password. The table
below holds the common cases, most specific first; a reply no rule knows gets no explanation
(it is shown as it is, never guessed at). The words "the Domains pane" and "the route" point
at the place in relaybox where the fix is made.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    """What a reply means, for a person."""

    key: str
    """A stable word for the kind of failure (for logs and filters), e.g. "greylisting"."""
    summary: str
    """One short line, e.g. "greylisting: the receiver asks to try again later"."""
    cause: str
    """The likely cause, in a sentence or two."""
    fix: str
    """What to do and where (relaybox's pane or key, the receiver, DNS)."""


_REPLY = re.compile(r"^\s*(?P<code>[2-5]\d\d)(?:[ -](?P<status>[245]\.\d{1,3}\.\d{1,3}))?")
_INNER = re.compile(r"(?<![\d.])(?P<code>[45]\d\d)[ -](?P<status>[45]\.\d{1,3}\.\d{1,3})\b")
_POLICY = re.compile(r"policy '(?P<mode>[a-z]+)'|route tls = '(?P<mode2>[a-z]+)'")


@dataclass(frozen=True)
class _Reply:
    """A reply taken apart: its code, its enhanced status (the innermost one quoted, when
    relaybox wrapped a next hop's reply in its own), and its text in lower case."""

    code: int | None
    status: str | None
    text: str
    outer_status: str | None

    def status_in(self, *prefixes: str) -> bool:
        return any(
            s is not None and (s == p or s.startswith(p + "."))
            for s in (self.status, self.outer_status)
            for p in prefixes
        )

    def has(self, *words: str) -> bool:
        return any(w in self.text for w in words)


def _parse(reply: str) -> _Reply:
    head = _REPLY.match(reply)
    code = int(head.group("code")) if head else None
    outer = head.group("status") if head else None
    # relaybox quotes a next hop's reply inside its own ("454 4.7.0 AUTH failed at HOST:
    # 535 5.7.8 ..."): the quoted reply is the one that says what happened.
    inner = [m for m in _INNER.finditer(reply) if not head or m.start() >= head.end()]
    if inner:
        last = inner[-1]
        return _Reply(int(last.group("code")), last.group("status"), reply.lower(), outer)
    return _Reply(code, outer, reply.lower(), outer)


def _tls_mode(reply: str, tls_mode: str | None) -> str | None:
    found = _POLICY.search(reply)
    if found:
        return found.group("mode") or found.group("mode2")
    return tls_mode


def _route_tls(mode: str | None) -> str:
    return f'the route\'s tls = "{mode}"' if mode else "the route's tls mode"


_Rule = Callable[[_Reply, str | None], Explanation | None]


def _certificate(r: _Reply, mode: str | None) -> Explanation | None:
    if not r.has("certificate", "self signed", "self-signed", "hostname mismatch"):
        return None
    if r.has("expired"):
        what = "its certificate has expired"
    elif r.has("hostname mismatch", "doesn't match", "does not match"):
        what = "its certificate is for another name"
    elif r.has("self signed", "self-signed"):
        what = "its certificate is self-signed"
    else:
        what = "its certificate is not trusted"
    return Explanation(
        "tls-certificate",
        f"TLS certificate failure: {what} ({_route_tls(mode)})",
        f"The next hop's TLS certificate could not be verified: {what}. With "
        f"{_route_tls(mode)} relaybox will not send mail over a connection it cannot verify.",
        "The next hop's admin fixes the certificate; or, if the route points at the wrong "
        "host name, fix its hosts in the Config pane; a private CA goes in the route's "
        'ca_file. Only if the hop cannot be verified and you accept that, tls = "required".',
    )


def _tls(r: _Reply, mode: str | None) -> Explanation | None:
    if r.has("does not offer starttls"):
        return Explanation(
            "tls-not-offered",
            f"no TLS: the next hop does not offer STARTTLS ({_route_tls(mode)})",
            f"The next hop did not offer STARTTLS, and {_route_tls(mode)} requires TLS.",
            "Ask the next hop's admin to enable STARTTLS; check the route's hosts and port "
            '(port 465 needs tls = "implicit"); only then consider a weaker tls mode.',
        )
    if not (
        r.has("tls", "ssl", "handshake", "wrong_version_number", "wrong version number")
        and (r.status_in("4.7.5", "4.7.4") or r.has("[ssl", "handshake", "wrong_version"))
    ):
        return None
    return Explanation(
        "tls-handshake",
        f"TLS handshake failure ({_route_tls(mode)})",
        "The TLS handshake with the next hop failed: no common protocol or cipher, or the "
        "port speaks something else (implicit TLS on 465 against STARTTLS on 587).",
        'Check the route\'s port and tls mode in the Config pane (465 is tls = "implicit", '
        '587 and 25 use STARTTLS: "verify" or "required"); the next hop\'s admin can see why '
        "it refused the handshake.",
    )


def _smarthost_auth(r: _Reply, mode: str | None) -> Explanation | None:
    if r.has("not sending the password"):
        return Explanation(
            "auth-needs-tls",
            "smart host AUTH not tried: no TLS to send the password over",
            "The smart host offered no STARTTLS, so relaybox kept the password to itself.",
            "Check the route's host, port and tls mode in the Config pane (465 needs "
            'tls = "implicit").',
        )
    if r.has("offers no auth mechanism"):
        return Explanation(
            "auth-no-mechanism",
            "smart host AUTH: no mechanism in common",
            "The smart host offers no AUTH mechanism relaybox speaks (PLAIN, LOGIN).",
            "Check that the route points at the provider's submission host and port.",
        )
    if r.code == 535 or r.status_in("5.7.8"):
        return Explanation(
            "auth-failed",
            "smart host AUTH failed: the username or password was refused",
            "The smart host refused the route's credentials: a wrong or expired password, an "
            "API key revoked, or a username that is not the one the provider expects.",
            "Fix the route's username and password_file (or password_env) in the Config pane; "
            "providers often need an API key or app password, not the account password.",
        )
    if r.code == 534 or r.status_in("5.7.9", "5.7.14"):
        return Explanation(
            "auth-too-weak",
            "smart host AUTH refused: it wants another way to log in",
            "The smart host refused this way of logging in (534): it wants an app password, "
            "OAuth, or logging in once on the web first (Google, Microsoft).",
            "Create an app password or SMTP credential at the provider and put it in the "
            "route's password_file; or use the provider's relay service without a password.",
        )
    if r.code == 538 or r.status_in("5.7.11"):
        return Explanation(
            "auth-needs-encryption",
            "smart host AUTH refused: encryption required",
            "The smart host will not take a password over this connection (538).",
            'Set the route\'s tls to "verify" (or "implicit" on port 465) in the Config pane.',
        )
    if r.has("auth failed"):
        return Explanation(
            "auth-failed",
            "smart host AUTH failed",
            "The smart host refused the route's credentials.",
            "Check the route's username and password_file in the Config pane.",
        )
    return None


def _dns(r: _Reply, mode: str | None) -> Explanation | None:
    if r.status_in("5.1.10") or r.has("null mx"):
        return Explanation(
            "null-mx",
            "the recipient's domain accepts no mail (null MX)",
            "The recipient's domain publishes a null MX (RFC 7505): it says it receives no mail.",
            "Nothing to fix here: the address is wrong or the domain takes no mail. Tell the "
            "sender.",
        )
    if r.has("nxdomain", "does not exist in dns"):
        return Explanation(
            "domain-not-found",
            "the recipient's domain does not exist (NXDOMAIN)",
            "DNS says the recipient's domain does not exist: most often a typo in the address.",
            "Tell the sender to check the address; if the domain is new, its DNS is not "
            "published yet.",
        )
    if r.has("has no mx and no address"):
        return Explanation(
            "domain-no-mail-host",
            "the recipient's domain has no mail server in DNS",
            "The domain exists but has neither an MX record nor an address to deliver to.",
            "The recipient's DNS admin must publish an MX record; tell the sender.",
        )
    if r.has("dns lookup", "cannot resolve", "servfail", "no address for the mx"):
        return Explanation(
            "dns-failure",
            "DNS failure: the lookup did not answer (try again later)",
            "The DNS lookup for the next hop failed for now: a server answered SERVFAIL or "
            "REFUSED, timed out, or the network is down. relaybox tries again.",
            "Check relaybox's [dns] servers and this machine's network (relaybox doctor); if "
            "only one domain fails, its DNS is broken at the recipient's side.",
        )
    return None


def _connection(r: _Reply, mode: str | None) -> Explanation | None:
    if not r.has("cannot connect", "connection refused", "timed out", "unreachable"):
        return None
    if not r.has("cannot connect", "connection refused", "unreachable"):
        return Explanation(
            "timeout",
            "the next hop stopped answering in time",
            "The connection was open but the next hop did not answer a command within the "
            "timeout: it is overloaded, or a firewall cut the connection. relaybox tries again.",
            "Usually nothing; if it persists, the next hop's admin looks at its load, or raise "
            "[delivery] command_timeout / data_timeout for slow receivers.",
        )
    if r.has("refused"):
        return Explanation(
            "connection-refused",
            "connection refused: nothing listens at the next hop's port",
            "The next hop's address answered, but nothing accepts connections on that port "
            "(a server down, or the wrong port).",
            "Check the route's hosts and port in the Config pane; the next hop's admin checks "
            "that its mail server runs.",
        )
    if r.has("timed out", "timeout"):
        return Explanation(
            "connection-timeout",
            "connection timed out: no answer from the next hop",
            "The next hop did not answer in time: a firewall drops the traffic (many networks "
            "block outgoing port 25), or the host is down.",
            "Check that this machine may connect out on that port (relaybox doctor); use a "
            "smart host on 587 if port 25 is blocked.",
        )
    return Explanation(
        "network-unreachable",
        "network unreachable: no route to the next hop",
        "This machine has no route to the next hop's address (network down, or IPv6 without "
        "IPv6 connectivity).",
        "Check this machine's network (relaybox doctor); if only IPv6 addresses fail, its "
        "IPv6 connectivity.",
    )


def _rate(r: _Reply, mode: str | None) -> Explanation | None:
    limited = r.has("rate", "too many", "throttl", "slow down")
    if not ((r.code == 421 and (limited or r.status_in("4.7.0"))) or (r.status and limited)):
        return None
    if r.code is not None and r.code >= 500:
        return None
    return Explanation(
        "rate-limited",
        "rate limited: the receiver takes mail from us more slowly",
        "The receiver limits how much mail (or how many connections) it takes from this "
        "address at a time. relaybox defers and tries again.",
        "Usually nothing: the mail goes out as the limit allows. If it persists, lower "
        "[delivery] max_connections_per_destination (or the route's max_connections), or "
        "suspend the destination for a while (the Destinations pane).",
    )


def _greylisting(r: _Reply, mode: str | None) -> Explanation | None:
    if r.code not in (450, 451) or not (r.status_in("4.7") or r.has("greylist")):
        return None
    return Explanation(
        "greylisting",
        "greylisting: the receiver asks to try again later",
        "The receiver turns away mail from senders it has not seen before, once, to see "
        "whether they come back (greylisting). relaybox comes back by itself.",
        "Nothing to do: the next attempt normally gets through within minutes.",
    )


def _recipient_unknown(r: _Reply, mode: str | None) -> Explanation | None:
    if not (
        r.status_in("5.1.1")
        or (r.code == 550 and r.has("user unknown", "no such user", "does not exist"))
    ):
        return None
    return Explanation(
        "recipient-unknown",
        "recipient unknown: the receiver has no such mailbox",
        "The receiving server says the address does not exist there: a typo, or a person who left.",
        "Tell the sender to check the address; relaybox's retrying will not change it.",
    )


def _mailbox_full(r: _Reply, mode: str | None) -> Explanation | None:
    if not (r.status_in("4.2.2", "5.2.2") or r.has("mailbox full", "over quota", "quota exceeded")):
        return None
    final = r.code is not None and r.code >= 500
    return Explanation(
        "mailbox-full",
        "mailbox full: the recipient's mailbox is over its quota",
        "The recipient's mailbox has no room"
        + (" and the receiver gave up." if final else "; relaybox tries again."),
        "The recipient must make room (or their admin raise the quota); tell the sender.",
    )


_SENDER_AUTH = {
    "5.7.23": ("SPF", "the sending IP is not allowed by the sender domain's SPF record"),
    "5.7.24": ("SPF", "the sender domain's SPF record is broken (SPF permerror)"),
    "5.7.25": ("reverse DNS", "this machine's IP has no matching reverse DNS (PTR) name"),
    "5.7.26": ("DMARC", "the message failed DMARC: neither SPF nor DKIM aligned"),
    "5.7.27": ("sender domain", "the sender's domain accepts no mail (null MX)"),
}


def _sender_authentication(r: _Reply, mode: str | None) -> Explanation | None:
    for status, (what, why) in _SENDER_AUTH.items():
        if r.status_in(status):
            return _sender_auth(what, why)
    mentions = [w for w in ("spf", "dkim", "dmarc") if w in r.text]
    if r.code is not None and r.code >= 500 and (r.status_in("5.7.1") or r.status_in("5.7")):
        if mentions:
            names = "/".join(m.upper() for m in mentions)
            return _sender_auth(names, f"the receiver's {names} check failed for this message")
        if r.has("ptr", "reverse dns", "rdns"):
            return _sender_auth("reverse DNS", "this machine's IP has no matching reverse DNS")
        if r.has("spam", "blocked", "blacklist", "blocklist", "reputation"):
            return Explanation(
                "policy-rejected",
                "refused by the receiver's policy (reputation, content or blocklist)",
                "The receiver refused the message on policy: this machine's IP or the sender's "
                "domain is on a blocklist, or the content looked like spam.",
                "Read the reply's words and any URL in it; check the sending domain's SPF, DKIM "
                "and DMARC in the Domains pane; a smart host may help if this IP is listed.",
            )
    return None


def _sender_auth(what: str, why: str) -> Explanation:
    return Explanation(
        "sender-authentication",
        f"sender authentication failed: {what}",
        f"The receiver refused the message because {why}.",
        "Fix the sending domain's SPF, DKIM and DMARC records (the Domains pane shows what is "
        "wrong and what to publish); check that [[dkim]] signs this sender's domain.",
    )


_RULES: tuple[_Rule, ...] = (
    _certificate,
    _tls,
    _smarthost_auth,
    _dns,
    _connection,
    _rate,
    _greylisting,
    _recipient_unknown,
    _mailbox_full,
    _sender_authentication,
)
"""Most specific first: a TLS failure relaybox reports as 454 4.7.5 must not read as
greylisting, and a 535 quoted inside relaybox's 454 is an AUTH failure."""


def explain(reply: str | None, *, tls_mode: str | None = None) -> Explanation | None:
    """What `reply` most likely means, or None when no rule knows it (show it as it is).

    `tls_mode` is the route's `tls` setting, named in the explanation of a TLS failure when
    the reply itself does not say it.
    """
    if not reply:
        return None
    parsed = _parse(reply[:2000])
    mode = _tls_mode(reply, tls_mode)
    for rule in _RULES:
        found = rule(parsed, mode)
        if found is not None:
            return found
    return None
