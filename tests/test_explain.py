"""Replies explained: each common reply, as real next hops and relaybox itself word it, gets
the right plain-words explanation; replies no rule knows get none."""

from __future__ import annotations

import pytest

from relaybox.message.explain import explain

CASES = [
    # greylisting (450/451 4.7.x, or the word)
    ("451 4.7.1 Please try again later", "greylisting"),
    (
        "450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.org.html",
        "greylisting",
    ),
    ("450 4.7.1 Client host rejected: cannot find your hostname, try again", "greylisting"),
    # rate limiting
    ("421 4.7.0 Too many connections from your address; try again later", "rate-limited"),
    (
        "421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected "
        "volume or user complaints",
        "rate-limited",
    ),
    (
        "451 4.7.0 Temporary server error. Please try again later. PRX4 rate limit exceeded",
        "rate-limited",
    ),
    ("452 4.3.1 Too many recipients received this hour, try again later", "rate-limited"),
    # recipient unknown
    (
        "550 5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos",
        "recipient-unknown",
    ),
    ("550 User unknown", "recipient-unknown"),
    # mailbox full
    ("452 4.2.2 The email account that you tried to reach is over quota.", "mailbox-full"),
    ("552 5.2.2 Mailbox full", "mailbox-full"),
    # sender authentication
    (
        "550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender "
        "and Gmail users, and has been blocked.",
        "sender-authentication",
    ),
    (
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation",
        "sender-authentication",
    ),
    (
        "550 5.7.25 The IP address sending this message does not have a PTR record",
        "sender-authentication",
    ),
    ("550 5.7.1 Message rejected due to DMARC policy of example.com", "sender-authentication"),
    ("554 5.7.1 SPF check failed: 203.0.113.7 not permitted", "sender-authentication"),
    (
        "550 5.7.1 Service unavailable, Client host [203.0.113.7] blocked using Spamhaus",
        "policy-rejected",
    ),
    # smart host AUTH, as the smart host says it and as relaybox wraps it
    ("535 5.7.8 Username and Password not accepted", "auth-failed"),
    (
        "454 4.7.0 AUTH failed at smtp.example.net: 535 5.7.8 Authentication credentials invalid",
        "auth-failed",
    ),
    (
        "454 4.7.0 AUTH failed at smtp.gmail.com: 534 5.7.9 Application-specific password "
        "required.",
        "auth-too-weak",
    ),
    (
        "538 5.7.11 Encryption required for requested authentication mechanism",
        "auth-needs-encryption",
    ),
    (
        "454 4.7.0 Not sending the password to relay.example.net without TLS (it did not offer "
        "STARTTLS; route tls = 'opportunistic')",
        "auth-needs-tls",
    ),
    # TLS
    (
        "454 4.7.5 TLS with mx.example.org failed and policy 'verify' requires it: [SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "(_ssl.c:1006)",
        "tls-certificate",
    ),
    (
        "454 4.7.5 TLS with mx.example.org failed and policy 'verify' requires it: [SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate "
        "is not valid for 'mx.example.org'. (_ssl.c:1006)",
        "tls-certificate",
    ),
    (
        "454 4.7.4 mx.example.org does not offer STARTTLS and policy 'required' requires TLS",
        "tls-not-offered",
    ),
    (
        "454 4.7.5 TLS with mx.example.org failed and policy 'required' requires it: [SSL: "
        "WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
        "tls-handshake",
    ),
    # DNS
    ("550 5.1.10 example.org accepts no mail (null MX, RFC 7505)", "null-mx"),
    ("550 5.1.2 Domain nosuch.example does not exist in DNS", "domain-not-found"),
    ("550 5.1.2 Domain example.org has no MX and no address in DNS", "domain-no-mail-host"),
    (
        "451 4.4.3 DNS lookup for example.org failed: DNS lookup of example.org MX failed: "
        "127.0.0.1:53 answered SERVFAIL",
        "dns-failure",
    ),
    (
        "451 4.4.3 DNS lookup for example.org failed: DNS lookup of example.org MX timed out "
        "after 5 s",
        "dns-failure",
    ),
    (
        "451 4.4.3 Cannot resolve the smart host: relay.example does not exist (NXDOMAIN)",
        "domain-not-found",
    ),
    # connections
    (
        "451 4.4.1 Cannot connect to mx.example.org [192.0.2.1]:25: [Errno 111] Connection refused",
        "connection-refused",
    ),
    (
        "451 4.4.1 Cannot connect to mx.example.org [192.0.2.1]:25: Timed out connecting to "
        "192.0.2.1 on port 25",
        "connection-timeout",
    ),
    (
        "451 4.4.1 Cannot connect to mx.example.org [2001:db8::1]:25: [Errno 101] Network is "
        "unreachable",
        "network-unreachable",
    ),
    ("451 4.4.2 mx.example.org [192.0.2.1]: Timed out waiting for server response", "timeout"),
]


@pytest.mark.parametrize(("reply", "key"), CASES, ids=[k + ":" + r[:30] for r, k in CASES])
def test_a_common_reply_is_explained(reply: str, key: str) -> None:
    found = explain(reply)
    assert found is not None, reply
    assert found.key == key
    assert found.summary and found.cause and found.fix
    assert "\n" not in found.summary


@pytest.mark.parametrize(
    "reply",
    [
        "250 2.0.0 Ok: queued as 4Xb1",
        "451 4.3.0 Temporary server error",
        "554 5.6.0 Message refused: it contains NUL characters",
        "550 5.7.0 Local policy",
        "something a broken server said",
        "",
    ],
)
def test_a_reply_no_rule_knows_is_not_guessed_at(reply: str) -> None:
    assert explain(reply) is None


def test_a_certificate_failure_says_certificate_and_names_the_route_tls_mode() -> None:
    wrapped = (
        "454 4.7.5 TLS with mx.example.org failed and policy 'verify' requires it: [SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired"
    )
    found = explain(wrapped)
    assert found is not None
    assert "certificate" in found.summary and "expired" in found.summary
    assert 'tls = "verify"' in found.summary
    # Implicit TLS reports the failure while connecting; the caller names the route's mode.
    implicit = (
        "451 4.4.1 Cannot connect to smtp.example.net [192.0.2.9]:465: [SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:1006)"
    )
    found = explain(implicit, tls_mode="implicit")
    assert found is not None and found.key == "tls-certificate"
    assert 'tls = "implicit"' in found.summary


def test_a_flood_of_junk_costs_a_bounded_look() -> None:
    junk = "451 4.7.1 " + "\x1b[31m" * 100_000
    found = explain(junk)
    assert found is not None and found.key == "greylisting"


def test_the_inspector_explains_each_kind_of_failure_once_wrapped_for_80_columns() -> None:
    from relaybox.tui.screens.inspector import explained_lines

    grey = "451 4.7.1 Please try again later"
    lines = explained_lines([grey, grey, "550 5.1.1 No such user", "weird 999"])
    whys = [text for kind, text in lines if text.strip().startswith("Why:")]
    assert whys == [
        "  Why: greylisting: the receiver asks to try again later",
        "  Why: recipient unknown: the receiver has no such mailbox",
    ]
    assert all(len(text) <= 80 for _, text in lines)
    assert any(text.strip().startswith("Fix:") for _, text in lines)
