"""DKIM signing: signatures made by relaybox verify with dkimpy and with Perl's Mail::DKIM (an
independent implementation), against keys served by a real DNS server on loopback; retries
reuse the first signature; an unpublished or different key is noticed before delivery."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import subprocess
import time
from pathlib import Path

import dkim as dkimpy
import dns.resolver
import pytest
from dkim.canonicalization import CanonicalizationPolicy

from relaybox.config.keys import DkimKey
from relaybox.config.model import Config, DkimConfig
from relaybox.events import DkimKeyChecked
from relaybox.queue import MessageFilter
from relaybox.signing.keys import dns_record, generate
from relaybox.signing.signer import from_domain, read_record, relaxed_body, sign, signing_keys

from .dnsserver import DNSServer
from .support.clock import FakeClock
from .support.configs import relay_config, to_sink
from .support.engine import wait_state
from .support.smtp import MESSAGE_TO_SIGN as MESSAGE
from .support.smtp import send

RSA = generate("rsa-sha256", 2048)
ED25519 = generate("ed25519-sha256")
OTHER_RSA = generate("rsa-sha256", 2048)


def entry(key: DkimKey, selector: str = "s2026", domain: str = "example.com") -> DkimConfig:
    return DkimConfig(domain, selector, Path(f"/keys/{selector}"), key.algorithm, key)


def zone_for(*entries: DkimConfig) -> dict[str, object]:
    """The records `relaybox dkim keygen` prints, as the DNS server serves them."""
    zone: dict[str, object] = {}
    for e in entries:
        assert e.key is not None
        line = dns_record(e.domain, e.selector, e.key)
        strings = tuple(s.strip('"') for s in line.split(" IN TXT ", 1)[1].split('" "'))
        zone[f"{e.selector}._domainkey.{e.domain}"] = {"TXT": strings}
    return zone


def dkimpy_verify(message: bytes, server: DNSServer) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature, keys fetched from the loopback server only."""
    resolver = dns.resolver.Resolver(configure=False)
    host, port = server.address
    resolver.nameservers = [host]
    resolver.port = port
    resolver.lifetime = 2.0

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT")
        except dns.exception.DNSException:
            return None
        return b"".join(b"".join(r.strings) for r in answer)

    verifier = dkimpy.DKIM(message)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    verdicts = []
    for i in range(count):
        try:
            verdicts.append(bool(verifier.verify(idx=i, dnsfunc=txt)))
        except dkimpy.DKIMException:
            verdicts.append(False)
    return verdicts


MAIL_DKIM = r"""
use strict;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;
my $resolver = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0],
                                       recurse => 1, tcp_timeout => 5, udp_timeout => 5);
Mail::DKIM::DNS::resolver($resolver);
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (<STDIN>) { s/\015?\012\z/\015\012/; $dkim->PRINT($_); }
$dkim->CLOSE;
foreach my $sig ($dkim->signatures) {
    print $sig->get_tag('a'), " ", $sig->selector, " ", $sig->result_detail, "\n";
}
"""


def mail_dkim_verify(message: bytes, server: DNSServer) -> list[str]:
    """Perl's Mail::DKIM (Debian's libmail-dkim-perl) on the message: one line per signature."""
    assert shutil.which("perl")
    check = subprocess.run(["perl", "-MMail::DKIM", "-e", "1"], capture_output=True)
    assert check.returncode == 0, (
        "Mail::DKIM is not installed (apt-get install libmail-dkim-perl; .ci/run does this)"
    )
    done = subprocess.run(
        ["perl", "-e", MAIL_DKIM, str(server.address[1])],
        input=message,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


# ---------------------------------------------------------------------- signing


def test_from_domain_reads_the_one_from_address() -> None:
    assert from_domain(MESSAGE) == "example.com"
    assert from_domain(b'From: "Doe, J" <J@Sub.Example.COM>\r\n\r\n') == "sub.example.com"
    assert from_domain(b"From: a@x.example,\r\n b@y.example\r\n\r\n") is None
    assert from_domain(b"From: a@x.example\r\nFrom: b@x.example\r\n\r\n") is None
    assert from_domain(b"To: b@example.org\r\n\r\nFrom: a@x.example\r\n") is None


def test_relaxed_body_is_dkimpys_for_any_body() -> None:
    """The shortcut for bodies without tabs or runs of spaces gives dkimpy's bytes exactly."""
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    pieces = [b"a", b"b c", b" ", b"  ", b"\t", b"\r\n", b"\r\n\r\n", b"x\ty", b".", b"\xc3\xa4"]
    rng = random.Random(6376)
    bodies = [b"", b"\r\n", b"\r\n\r\n", b"a", b"a\r\n", b"a \r\n", b"a\r\n\r\n\r\n", MESSAGE]
    bodies += [b"".join(rng.choices(pieces, k=rng.randrange(0, 30))) for _ in range(3000)]
    for body in bodies:
        assert relaxed_body(body) == policy.canonicalize_body(body), body


def test_keys_are_chosen_by_exact_from_domain() -> None:
    keys = (entry(RSA), entry(ED25519, "ed"), entry(RSA, domain="sub.example.com"))
    assert [e.selector for e in signing_keys(keys, "example.com")] == ["s2026", "ed"]
    assert [e.domain for e in signing_keys(keys, "sub.example.com")] == ["sub.example.com"]
    assert signing_keys(keys, "other.example.com") == []
    assert signing_keys(keys, None) == []


def test_rsa_and_ed25519_signatures_verify_with_dkimpy(dns_server) -> None:
    """Dual signing: one signature per selector, each verifies; From is oversigned."""
    keys = [entry(RSA, "rsa"), entry(ED25519, "ed")]
    dns = dns_server(zone_for(*keys))
    header = sign(MESSAGE, keys, now=time.time())
    assert header.count(b"DKIM-Signature:") == 2
    assert b"s=rsa;" in header and b"s=ed;" in header
    assert b"a=ed25519-sha256" in header and b"c=relaxed/relaxed" in header
    unfolded = header.replace(b"\r\n ", b" ")
    assert (
        unfolded.count(
            b"h=from : to : subject : date : message-id : mime-version : content-type :"
            b" content-transfer-encoding : from;"
        )
        == 2
    )
    assert dkimpy_verify(header + MESSAGE, dns) == [True, True]


def test_a_changed_message_fails_verification(dns_server) -> None:
    """The check above can fail: one changed body byte, or a From: added, breaks it."""
    keys = [entry(RSA)]
    dns = dns_server(zone_for(*keys))
    signed = sign(MESSAGE, keys, now=time.time()) + MESSAGE
    assert dkimpy_verify(signed.replace(b"8-bit text", b"8-bit test"), dns) == [False]
    added = signed.replace(b"To: bob", b"From: mallory@example.com\r\nTo: bob", 1)
    assert dkimpy_verify(added, dns) == [False]


def test_rsa_signature_verifies_with_mail_dkim(dns_server) -> None:
    keys = [entry(RSA, "rsa"), entry(ED25519, "ed")]
    dns = dns_server(zone_for(*keys))
    signed = sign(MESSAGE, keys, now=time.time()) + MESSAGE
    lines = mail_dkim_verify(signed, dns)
    assert "rsa-sha256 rsa pass" in lines, lines
    bad = mail_dkim_verify(signed.replace(b"8-bit text", b"8-bit test"), dns)
    assert "rsa-sha256 rsa pass" not in bad, bad


def test_the_published_record_is_read_as_a_verifier_reads_it() -> None:
    assert read_record(["v=DKIM1; k=rsa; p=" + RSA.public_value()], RSA) == ("ok", "")
    assert read_record(["v=DKIM1; k=rsa; p=" + OTHER_RSA.public_value()], RSA)[0] == "mismatch"
    assert read_record(["v=DKIM1; k=ed25519; p=" + ED25519.public_value()], ED25519)[0] == "ok"
    assert read_record(["v=DKIM1; k=rsa; p="], RSA)[0] == "revoked"
    assert read_record(["v=spf1 -all"], RSA)[0] == "unparsable"
    assert read_record(["v=DKIM1; p=!!!"], RSA)[0] == "unparsable"
    assert read_record(["v=DKIM1; p=a", "v=DKIM1; p=b"], RSA)[0] == "unparsable"


# ---------------------------------------------------------------------- through the relay


def signing_config(tmp_path: Path, sink, dns: DNSServer, *keys: DkimConfig, **delivery) -> Config:
    config = relay_config(tmp_path, (to_sink(sink),), dns=dns.address, **delivery)
    return dataclasses.replace(config, dkim=keys)


async def test_relayed_mail_is_signed_and_verifies(start_engine, smtp_sink, dns_server, tmp_path):
    """8-bit content, a 990-octet line, a folded header and a dot-line, dual signed, through
    SMTP in and out: both signatures verify with dkimpy, the RSA one with Mail::DKIM too."""
    keys = (entry(RSA, "rsa"), entry(ED25519, "ed"))
    dns = dns_server(zone_for(*keys))
    sink = await smtp_sink()
    run = await start_engine(signing_config(tmp_path, sink, dns, *keys))
    await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    (got,) = await sink.wait_for(1)
    assert got.data.count(b"DKIM-Signature:") == 2
    assert got.data.startswith(b"DKIM-Signature:")
    assert dkimpy_verify(got.data, dns) == [True, True]
    assert "rsa-sha256 rsa pass" in mail_dkim_verify(got.data, dns)


async def test_mail_from_other_domains_is_not_signed(start_engine, smtp_sink, dns_server, tmp_path):
    keys = (entry(RSA, domain="example.net"),)
    dns = dns_server(zone_for(*keys))
    sink = await smtp_sink()
    run = await start_engine(signing_config(tmp_path, sink, dns, *keys))
    await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    (got,) = await sink.wait_for(1)
    assert b"DKIM-Signature" not in got.data


async def test_a_retry_sends_the_first_signature(start_engine, smtp_sink, dns_server, tmp_path):
    """Signed once: the signature made for the first attempt (deferred here) is stored and
    sent on the retry a minute later, not made again (its t= would differ)."""
    keys = (entry(RSA),)
    dns = dns_server(zone_for(*keys))
    sink = await smtp_sink(rcpt_replies={"bob@example.org": "451 4.2.1 try later"})
    clock = FakeClock()
    run = await start_engine(signing_config(tmp_path, sink, dns, *keys), clock=clock)
    queue_id = await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    await wait_state(run, queue_id, {"deferred"})
    stored = await run.engine.spool._read(
        lambda c: c.execute("SELECT header FROM signatures").fetchall()
    )
    assert len(stored) == 1
    clock.advance(60)
    sink.behaviour.rcpt_replies.clear()
    await run.engine.admin.retry(MessageFilter(queue_ids=(queue_id,)))
    (got,) = await sink.wait_for(1)
    assert got.data.startswith(bytes(stored[0][0]))
    assert dkimpy_verify(got.data, dns) == [True]


async def test_rewritten_from_is_what_gets_signed(start_engine, smtp_sink, dns_server, tmp_path):
    """A route rewrites the printer's From: to the company domain; the company key signs it."""
    keys = (entry(RSA, domain="example.org"),)
    dns = dns_server(zone_for(*keys))
    sink = await smtp_sink()
    route = to_sink(sink, rewrite_senders=(("@printer.local", "scanner@example.org"),))
    config = relay_config(tmp_path, (route,), dns=dns.address)
    run = await start_engine(dataclasses.replace(config, dkim=keys))
    message = MESSAGE.replace(b"alice@example.com", b"scanner@printer.local")
    await send(run, "scanner@printer.local", ["bob@example.org"], message)
    (got,) = await sink.wait_for(1)
    assert b"From: Alice Example <scanner@example.org>" in got.data
    assert b"d=example.org" in got.data
    assert dkimpy_verify(got.data, dns) == [True]


async def test_an_unpublished_key_is_warned_about_and_mail_still_goes(
    start_engine, smtp_sink, dns_server, tmp_path
):
    keys = (entry(RSA, "gone"), entry(OTHER_RSA, "rotated"))
    dns = dns_server(zone_for(entry(RSA, "rotated")))  # "rotated" publishes the wrong key
    sink = await smtp_sink()
    run = await start_engine(signing_config(tmp_path, sink, dns, *keys))
    events = run.engine.bus.subscribe(types=(DkimKeyChecked,))
    await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    await sink.wait_for(2)
    seen = {}
    while len(seen) < 2:
        event = await asyncio.wait_for(events.get(), 5)
        seen[event.selector] = event.status
    assert seen == {"gone": "missing", "rotated": "mismatch"}
    log = run.log_text()
    assert "dkim-key-missing" in log and "dkim-key-mismatch" in log
    assert log.count("dkim-key-missing") == 1  # once per change, not once per message
    assert dns.query_count("gone._domainkey.example.com", "TXT") == 1


async def test_hold_mode_holds_mail_until_the_key_is_published(
    start_engine, smtp_sink, dns_server, tmp_path
):
    keys = (entry(RSA),)
    dns = dns_server({}, negative_ttl=0)  # DNS caches "no such record" for this long
    sink = await smtp_sink()
    clock = FakeClock()
    config = signing_config(tmp_path, sink, dns, *keys, dkim_key_check="hold")
    run = await start_engine(config, clock=clock)
    queue_id = await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    detail = await wait_state(run, queue_id, {"held"})
    assert "s2026._domainkey.example.com has no TXT record" in detail.recipients[0].last_reply
    assert sink.messages == [] and sink.connections == 0
    for name, value in zone_for(*keys).items():
        dns.set_name(name, value)
    clock.advance(run.engine.scheduler.published_keys.retry_after)  # "missing" is stale now
    await run.engine.admin.release(MessageFilter(queue_ids=(queue_id,)))
    (got,) = await sink.wait_for(1)
    assert dkimpy_verify(got.data, dns) == [True]


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_keygen_output_verifies(cli, dns_server, tmp_path, algorithm) -> None:
    """The record `relaybox dkim keygen` prints, served as printed, verifies a signature made
    with the key file it wrote and the [[dkim]] block it printed."""
    from relaybox.config.load import load_config

    key_path = tmp_path / "k.key"
    done = cli(
        "dkim",
        "keygen",
        "example.com",
        "--selector",
        "k1",
        "--algorithm",
        algorithm,
        "--out",
        key_path,
    )
    assert done.returncode == 0, done.stderr
    record = next(line for line in done.stdout.splitlines() if " IN TXT " in line)
    strings = tuple(s.strip('"') for s in record.split(" IN TXT ", 1)[1].split('" "'))
    dns = dns_server({record.split()[0]: {"TXT": strings}})
    block = done.stdout[done.stdout.index("[[dkim]]") :]
    config_path = tmp_path / "relaybox.toml"
    config_path.write_text(block, encoding="utf-8")
    config = load_config(config_path)
    assert dkimpy_verify(sign(MESSAGE, config.dkim, now=time.time()) + MESSAGE, dns) == [True]
