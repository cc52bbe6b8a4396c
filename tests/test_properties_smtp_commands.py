"""Properties of what relaybox makes of an SMTP command line: the MAIL/RCPT argument parser and
the EHLO/HELO check (pure functions), then a real session on loopback fed random command lines.

Whatever a client sends, it gets one well-formed reply per line and the session stays in step;
nothing raises but `AddressError`, and nothing accepted holds a character that could end a
header line or a reply.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import typing
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from relaybox.clock import system_clock
from relaybox.config.model import UserConfig
from relaybox.engine import Engine
from relaybox.inbound.policy import check_helo, may_send_as
from relaybox.maillog import MailLog
from relaybox.message.address import (
    AddressError,
    domain_of,
    parse_mail,
    parse_rcpt,
    split_address,
)
from relaybox.message.headers import header_safe
from relaybox.message.replies import Reply

from .support.configs import make_config
from .support.properties import budget

# --- what clients send ---------------------------------------------------------------------

ATEXT = "abcxyzABZ0189!#$%&'*+-/=?^_`{|}~"
_label = st.text("abcz019-", min_size=1, max_size=10).filter(
    lambda label: not (label.startswith("-") or label.endswith("-"))
)
domains = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda d: not d.rsplit(".", 1)[-1].isdigit())
)
"""Host names as a sender writes them (the last label not all digits: that looks like an IP)."""
dot_atoms = st.lists(
    st.text(ATEXT.replace("%", "").replace("!", ""), min_size=1, max_size=8), min_size=1, max_size=3
).map(".".join)
valid_addresses = st.builds(lambda local, domain: f"{local}@{domain}", dot_atoms, domains)

# Characters that matter to the grammar, plus a little of everything else (controls, non-ASCII,
# lone surrogates: what undecodable bytes become after surrogateescape).
_SPECIAL = list('<>@"\\:,.% !=[]-') + ["\r", "\x00", "\x7f", "\x85", "\u2028", "é", "\udcff"]
grammar_text = st.lists(
    st.one_of(
        st.sampled_from(_SPECIAL), st.text(ATEXT, min_size=1, max_size=5), st.text(max_size=3)
    ),
    max_size=20,
).map("".join)
"""Text built from the pieces an address parser trips on."""

any_arg = st.one_of(
    grammar_text,
    st.text(),
    # One odd character in each part of an address: a quoted or plain user name, a domain.
    st.builds(lambda c: f'TO:<"a{c}"@example.org>', st.characters()),
    st.builds(lambda c: f"FROM:<a{c}@example.org> SMTPUTF8", st.characters()),
    st.builds(lambda c: f"TO:<a@exa{c}mple.org>", st.characters()),
    st.builds(
        lambda k, t: f"{k}:<{t}>", st.sampled_from(["FROM", "TO", "from", "to"]), grammar_text
    ),
    st.builds(
        lambda k, a, p: f"{k}:<{a}>{p}",
        st.sampled_from(["FROM", "TO"]),
        st.one_of(valid_addresses, grammar_text),
        st.lists(
            st.sampled_from(
                [
                    "SIZE=10",
                    "SIZE=",
                    "SIZE=x",
                    "BODY=8BITMIME",
                    "BODY=7bit",
                    "SMTPUTF8",
                    "SMTPUTF8=1",
                    "X=y",
                    "=",
                    "",
                    "SIZE=99999999999999999999",
                ]
            ),
            max_size=4,
        ).map(lambda ps: "".join(" " + p for p in ps)),
    ),
)
"""MAIL and RCPT arguments: near misses of the grammar, random text, and valid ones."""


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs")


def _check_refusal(err: AddressError) -> None:
    """A refusal is one line of 7-bit text: a 5xx code, then an enhanced status code."""
    reply = err.reply()
    assert err.code in (501, 553, 555), reply
    assert reply.isascii() and reply.isprintable(), repr(reply)
    assert err.text[:2] == "5." and err.text[1:].split(" ", 1)[0].count(".") == 2, reply


# --- MAIL and RCPT arguments ------------------------------------------------------------------


@budget(200)
@given(arg=any_arg, smtputf8=st.booleans(), literal=st.booleans())
def test_any_mail_argument_gets_a_result_or_a_clean_refusal(
    arg: str, smtputf8: bool, literal: bool
) -> None:
    try:
        mail = parse_mail(arg, smtputf8_enabled=smtputf8, allow_ip_literal=literal)
    except AddressError as err:
        _check_refusal(err)
        return
    assert not any(_is_control(c) for c in mail.sender), repr(mail.sender)
    assert len(mail.sender.encode("utf-8")) <= 254
    assert mail.sender.isascii() or mail.smtputf8
    assert mail.body in ("7BIT", "8BITMIME")
    local, domain = split_address(mail.sender)
    assert (local and domain) or mail.sender == ""
    assert domain_of(mail.sender) == domain.lower()
    # What was accepted is accepted again, the same, when a client sends it back.
    again = parse_mail(
        f"FROM:<{mail.sender}>" + (" SMTPUTF8" if mail.smtputf8 else ""),
        smtputf8_enabled=smtputf8,
        allow_ip_literal=literal,
    )
    assert again.sender == mail.sender


@budget(200)
@given(arg=any_arg, smtputf8=st.booleans(), literal=st.booleans())
def test_any_rcpt_argument_gets_a_result_or_a_clean_refusal(
    arg: str, smtputf8: bool, literal: bool
) -> None:
    try:
        rcpt = parse_rcpt(arg, smtputf8=smtputf8, allow_ip_literal=literal)
    except AddressError as err:
        _check_refusal(err)
        return
    address = rcpt.recipient
    assert address, "a recipient is never empty"
    assert not any(_is_control(c) for c in address), repr(address)
    assert header_safe(address) == address  # fit for a Received: "for <...>" clause
    assert address.isascii() or smtputf8
    assert address == "postmaster" or "@" in address
    for c in "<> ":
        assert c not in address or address.startswith('"'), repr(address)
    assert parse_rcpt(f"TO:<{address}>", smtputf8=smtputf8, allow_ip_literal=literal) == rcpt


@budget(60)
@given(
    address=valid_addresses,
    size=st.integers(0, 10**20 - 1),
    body=st.sampled_from(["7bit", "8BITMIME"]),
)
def test_valid_addresses_and_parameters_come_back_as_sent(
    address: str, size: int, body: str
) -> None:
    assume(len(address) <= 254 and len(address.split("@")[0]) <= 64)
    mail = parse_mail(f"FROM:<{address}> SIZE={size} BODY={body}")
    assert (mail.sender, mail.size, mail.body) == (address, size, body.upper())
    assert parse_rcpt(f"to:<{address}>", smtputf8=False).recipient == address


@pytest.mark.parametrize("char", ["\u202e", "\u200e", "\ue000", "\U00018d09", "\u2028", "\xa0"])
@pytest.mark.parametrize("form", ["a{}b@example.org", '"a{}b"@example.org'])
def test_a_user_name_with_an_invisible_or_unassigned_character_is_refused(
    char: str, form: str
) -> None:
    """Found by the properties above: a bidirectional override (U+202E shows the address
    backwards in the UI), a private-use or unassigned code point or a non-ASCII space was taken
    in an SMTPUTF8 user name, and then written as "?" in the Received: field."""
    with pytest.raises(AddressError) as refused:
        parse_rcpt(f"TO:<{form.format(char)}>", smtputf8=True)
    assert refused.value.code == 553 and f"U+{ord(char):04X}" in refused.value.text
    assert parse_rcpt(f"TO:<{form.format('é')}>", smtputf8=True)  # letters stay welcome


# --- EHLO and HELO ----------------------------------------------------------------------------

helo_names = st.one_of(
    domains,
    grammar_text,
    st.text(max_size=40),
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip}]"),
    # RFC 4007 zone IDs: ipaddress takes any text after "%", control characters too.
    st.builds(lambda zone: f"fe80::1%{zone}", st.one_of(st.text(max_size=8), grammar_text)),
    st.builds(
        lambda a, b: f"{a}{b}",
        domains,
        st.sampled_from(["\r", "\rFrom: x", "\x1b]0;t\x07", "\udcff", " x", "\x00", "\u2028"]),
    ),
)


@budget(200)
@given(name=helo_names)
def test_any_helo_name_is_taken_or_refused_with_501_and_a_taken_one_is_header_safe(
    name: str,
) -> None:
    refusal = check_helo(name)
    if refusal is not None:
        assert refusal == Reply.BAD_HELO
        return
    assert header_safe(name) == name, repr(name)
    assert not any(c.isspace() for c in name)
    name.encode("utf-8")  # no lone surrogate: undecodable bytes are refused


@budget(100)
@given(name=domains)
def test_every_host_name_is_a_good_helo_name(name: str) -> None:
    assert check_helo(name) is None


@budget(100)
@given(
    address=st.one_of(valid_addresses, grammar_text, st.text()),
    allowed=st.lists(st.one_of(domains, valid_addresses, st.text(max_size=10)), max_size=3),
)
def test_sender_binding_answers_for_any_address(address: str, allowed: list[str]) -> None:
    user = UserConfig(name="user@example.org", password_hash="x", allowed_senders=tuple(allowed))
    assert may_send_as(user, address) in (True, False)


# --- a real session on loopback ---------------------------------------------------------------


class ThreadedEngine:
    """A real engine on loopback in a thread of its own, so that plain sockets in the test
    (and hypothesis, which runs synchronous tests) can talk to it for a whole module."""

    def __init__(self, state_dir: Path) -> None:
        self.stream = io.StringIO()
        self.log = MailLog(stream=self.stream, level="debug", clock=system_clock)
        self.engine = Engine(make_config(state_dir), self.log, system_clock)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.engine.start(), self.loop).result(30)
        self.port = self.engine.bound[0][1].port

    def log_text(self) -> str:
        self.log.flush()
        return self.stream.getvalue()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.stop(grace=1.0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.log.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedEngine]:
    running = ThreadedEngine(tmp_path_factory.mktemp("fuzz") / "state")
    yield running
    running.stop()


def _wire(text: str) -> bytes:
    """A command line as bytes; lone surrogates are the bytes that were not UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


_VERBS = [
    "HELO",
    "EHLO",
    "MAIL FROM:",
    "RCPT TO:",
    "MAIL",
    "RCPT",
    "DATA",
    "RSET",
    "NOOP",
    "VRFY",
    "EXPN",
    "HELP",
    "AUTH",
    "AUTH PLAIN",
    "AUTH LOGIN",
    "BDAT",
    "STARTTLS",
    "ehlo",
    "",
    "X-JUNK",
]
command_lines = st.one_of(
    st.builds(
        lambda verb, arg: f"{verb} {arg}" if arg else verb,
        st.sampled_from(_VERBS),
        st.one_of(st.just(""), any_arg, helo_names),
    ),
    st.just("MAIL FROM:<a@example.org>"),
    st.just("RCPT TO:<b@example.org>"),
    st.text(max_size=30),
    st.text(max_size=600, alphabet="aB<>: "),
).map(lambda line: line.replace("\n", " "))
"""Lines a client may send: known verbs with near-miss arguments, junk, over-long lines."""


def _reply(stream: typing.BinaryIO) -> tuple[int, list[bytes]]:
    """One reply, checked for its form (RFC 5321 §4.2): code, then "-" or " " on each line."""
    lines: list[bytes] = []
    while True:
        line = stream.readline(2048)
        assert line.endswith(b"\r\n"), f"no whole reply line: {line!r} after {lines!r}"
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-", b"\r"), line
        assert b"\r" not in line[:-2] and line[:-2].isascii(), line
        lines.append(line)
        if lines[0][:3] != line[:3]:
            raise AssertionError(f"one reply with two codes: {lines!r}")
        if line[3:4] != b"-":
            return int(line[:3]), lines


def _ends_session(code: int, reply: list[bytes]) -> bool:
    """221 and 421 close a session (RFC 5321 §3.8); so does a reply that says goodbye
    (aiosmtpd's 502 after five unknown commands, relaybox's refusals that hang up)."""
    return code in (221, 421) or b"goodbye" in reply[-1].lower()


@budget(40, cost=100)
@given(lines=st.lists(command_lines, min_size=1, max_size=6))
def test_every_command_line_gets_one_reply_and_the_session_stays_in_step(
    engine: ThreadedEngine, lines: list[str]
) -> None:
    logged_before = len(engine.log_text())
    said: list[tuple[str, int]] = []  # for the failure message: what was sent, what came back
    with socket.create_connection(("127.0.0.1", engine.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        code, greeting = _reply(stream)
        assert code == 220, greeting
        for line in lines:
            sock.sendall(_wire(line) + b"\r\n")
            code, reply = _reply(stream)
            said.append((line, code))
            if code == 354:  # a message: end it at once
                sock.sendall(b".\r\n")
                code, reply = _reply(stream)
                said.append((".", code))
            elif code == 334:  # a SASL challenge: cancel (RFC 4954 §4)
                sock.sendall(b"*\r\n")
                code, reply = _reply(stream)
                said.append(("*", code))
            if _ends_session(code, reply) or (code == 220 and "STARTTLS" in line.upper()):
                return  # the session ends here, as the reply said
            assert 200 <= code < 600
        sock.sendall(b"NOOP\r\n")
        try:
            code, _ = _reply(stream)
        except (AssertionError, OSError) as err:
            raise AssertionError(f"no reply to NOOP after {said!r}: {err}") from None
        assert code == 250, f"the session is out of step after {said!r}"
    log = engine.log_text()[logged_before:]  # this example's lines only
    assert "Traceback" not in log, log
