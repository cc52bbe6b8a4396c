"""STARTTLS, implicit TLS and AUTH over real loopback sockets with trustme certificates."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
import time
import warnings
from pathlib import Path

import aiosmtplib
import pytest
import trustme

from relaybox.config.model import AuthConfig, LimitsConfig, SocketAddress, UserConfig
from relaybox.config.passwords import hash_password
from relaybox.events import SessionLine
from relaybox.inbound.auth import Authenticator, client_network
from relaybox.message.replies import Reply
from relaybox.queue import MessageFilter

from .support.configs import make_config, relay_listener
from .support.smtp import QUEUED, SMTPClient, said, simple_message

PASSWORD = "correct horse battery staple"
HOSTNAME = "relay.example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert(HOSTNAME, "127.0.0.1", "::1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


ALICE = UserConfig(
    name="alice",
    password_hash=hash_password(PASSWORD, log2_n=10),
    allowed_senders=("example.org", "bob@example.net"),
)


def tls_config(
    tmp_path: Path,
    cert_files: tuple[Path, Path],
    *,
    tls: str = "starttls",
    role: str = "relay",
    networks: tuple[str, ...] = ("127.0.0.0/8",),
    users: tuple[UserConfig, ...] = (ALICE,),
    auth: AuthConfig | None = None,
    limits: LimitsConfig | None = None,
):
    cert, key = cert_files
    listener = relay_listener(
        tls=tls,
        role=role,
        certificate=cert,
        private_key=key,
        allowed_networks=tuple(ipaddress.ip_network(n) for n in networks),
    )
    config = make_config(tmp_path / "state", listeners=(listener,), limits=limits)
    import dataclasses

    return dataclasses.replace(config, users=users, auth=auth or AuthConfig())


def alice_message() -> bytes:
    return b"From: Alice <alice@example.org>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhi\r\n"


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def starttls(client: SMTPClient, context: ssl.SSLContext) -> None:
    code, _ = await client.cmd("STARTTLS")
    assert code == 220
    await client.writer.start_tls(context, server_hostname=HOSTNAME)


async def stored_ids(run) -> list[str]:
    page = await run.engine.admin.list_messages(MessageFilter(states=()), limit=1000)
    return [r.queue_id for r in page.rows]


# ---------------------------------------------------------------------- TLS


async def test_starttls_session_is_recorded_with_version_and_cipher(
    start_engine, tmp_path, cert_files, client_tls
):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await SMTPClient.connect(*run.address())
    await client.reply()
    _, ehlo = await client.cmd("EHLO client.example.test")
    assert "STARTTLS" in ehlo.splitlines()
    assert not any(line.startswith("AUTH") for line in ehlo.splitlines())
    await starttls(client, client_tls)
    _, ehlo = await client.cmd("EHLO client.example.test")
    lines = ehlo.splitlines()
    assert "STARTTLS" not in lines  # RFC 3207 §4.2: not offered again
    assert "AUTH LOGIN PLAIN" in lines
    code, text = await client.send_message("a@example.com", ["b@example.org"], simple_message())
    assert code == 250
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    assert detail.tls and detail.tls.startswith("TLSv1.")
    assert "bits" in detail.tls
    assert any("TLS established: TLSv1." in line.text for line in detail.inbound_transcript)
    data = await run.engine.admin.message_data(detail.row.queue_id)
    assert b"with ESMTPS id" in data
    await client.close()


async def test_tls_below_1_2_is_refused(start_engine, tmp_path, cert_files, ca):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    assert (await client.cmd("STARTTLS"))[0] == 220
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(old)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client speak TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await client.writer.start_tls(old, server_hostname=HOSTNAME)
    await asyncio.sleep(0.1)
    assert re.search(r"tls-failed .*UNSUPPORTED_PROTOCOL", run.log_text())
    await client.close()


async def test_starttls_resets_the_session(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    assert said(*await client.cmd("MAIL FROM:<a@example.com>")) == Reply.MAIL_OK
    await starttls(client, client_tls)
    # No HELO carried over, and no MAIL either (RFC 3207 §4.2).
    assert (await client.cmd("MAIL FROM:<a@example.com>"))[0] == 503
    await client.cmd("EHLO client.example.test")
    assert said(*await client.cmd("RCPT TO:<b@example.org>")) == Reply.NEED_MAIL
    await client.close()


async def test_commands_pipelined_behind_starttls_are_discarded(
    start_engine, tmp_path, cert_files, client_tls
):
    """CVE-2011-0411: plaintext injected after STARTTLS must not run inside the TLS session."""
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await client.send(
        "STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<evil@example.com>\r\n"
        "RCPT TO:<victim@example.org>\r\n"
    )
    code, _ = await client.reply()
    assert code == 220
    await client.writer.start_tls(client_tls, server_hostname=HOSTNAME)
    # Had the injected commands run, a MAIL would be in progress (and RCPT accepted).
    assert (await client.cmd("RCPT TO:<b@example.org>"))[0] == 503
    await client.cmd("EHLO client.example.test")
    assert said(*await client.cmd("RCPT TO:<b@example.org>")) == Reply.NEED_MAIL
    code, _ = await client.cmd("NOOP")
    assert code == 250  # and no stray replies for the injected lines came before this
    await client.close()
    await run.engine.spool.flush()
    assert await stored_ids(run) == []


async def test_implicit_tls_listener_offers_auth_at_once(
    start_engine, tmp_path, cert_files, client_tls
):
    run = await start_engine(tls_config(tmp_path, cert_files, tls="implicit"))
    host, port = run.address()
    smtp = aiosmtplib.SMTP(hostname=host, port=port, use_tls=True, tls_context=client_tls)
    await smtp.connect()
    await smtp.ehlo()
    assert "auth" in smtp.esmtp_extensions
    assert "starttls" not in smtp.esmtp_extensions
    await smtp.login("alice", PASSWORD)
    errors, text = await smtp.sendmail("alice@example.org", ["b@example.org"], alice_message())
    assert errors == {}
    await smtp.quit()
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    assert detail.auth_user == "alice"
    assert detail.tls.startswith("TLSv1.")
    data = await run.engine.admin.message_data(detail.row.queue_id)
    assert b"with ESMTPSA id" in data


async def test_changed_certificate_is_used_for_new_connections(
    start_engine, tmp_path, cert_files, ca
):
    run = await start_engine(tls_config(tmp_path, cert_files, tls="implicit"))
    host, port = run.address()

    async def serial() -> int:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=HOSTNAME
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number

    before = await serial()
    renewed = ca.issue_cert(HOSTNAME, "127.0.0.1")
    cert_path, key_path = cert_files
    time.sleep(0.01)  # a new mtime even on coarse clocks
    renewed.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    renewed.private_key_pem.write_to_path(str(key_path))
    await run.engine._check_certificates()
    after = await serial()
    assert after != before
    assert "certificate-reloaded" in run.log_text()


async def test_broken_certificate_renewal_keeps_the_old_one(
    start_engine, tmp_path, cert_files, client_tls
):
    run = await start_engine(tls_config(tmp_path, cert_files, tls="implicit"))
    cert_path, _ = cert_files
    cert_path.write_text("not a certificate\n")
    await run.engine._check_certificates()
    assert "certificate-reload-failed" in run.log_text()
    host, port = run.address()
    smtp = aiosmtplib.SMTP(hostname=host, port=port, use_tls=True, tls_context=client_tls)
    await smtp.connect()
    await smtp.quit()


# ---------------------------------------------------------------------- AUTH


async def test_auth_is_never_offered_or_accepted_in_clear(start_engine, tmp_path, cert_files):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await SMTPClient.connect(*run.address())
    await client.reply()
    _, ehlo = await client.cmd("EHLO client.example.test")
    assert not any(line.startswith("AUTH") for line in ehlo.splitlines())
    code, text = await client.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
    assert code == 538 and text.startswith("5.7.11")
    await client.close()
    assert PASSWORD not in run.log_text()


async def test_auth_not_offered_without_users(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files, users=()))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await starttls(client, client_tls)
    _, ehlo = await client.cmd("EHLO client.example.test")
    assert not any(line.startswith("AUTH") for line in ehlo.splitlines())
    await client.close()


async def test_submission_refuses_mail_before_auth(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files, role="submission", networks=()))
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await starttls(client, client_tls)
    await client.cmd("EHLO client.example.test")
    code, text = await client.cmd("MAIL FROM:<alice@example.org>")
    assert (code, text) == (530, "5.7.0 Authentication required")
    await client.close()


async def auth_session(run, client_tls) -> SMTPClient:
    client = await SMTPClient.connect(*run.address())
    await client.greet()
    await starttls(client, client_tls)
    await client.cmd("EHLO client.example.test")
    return client


async def test_auth_plain_lets_a_user_relay_from_anywhere(
    start_engine, tmp_path, cert_files, client_tls
):
    # The listener trusts no network: only the login grants relay.
    run = await start_engine(tls_config(tmp_path, cert_files, role="submission", networks=()))
    client = await auth_session(run, client_tls)
    code, text = await client.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
    assert said(code, text) == Reply.AUTH_SUCCESSFUL
    code, text = await client.send_message("alice@example.org", ["x@example.com"], alice_message())
    assert code == 250
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    assert detail.auth_user == "alice"
    await client.close()


async def test_auth_login_with_continuations(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await auth_session(run, client_tls)
    code, text = await client.cmd("AUTH LOGIN")
    assert (code, base64.b64decode(text)) == (334, b"Username:")
    code, text = await client.cmd(b64("alice"))
    assert (code, base64.b64decode(text)) == (334, b"Password:")
    assert said(*await client.cmd(b64(PASSWORD))) == Reply.AUTH_SUCCESSFUL
    await client.close()


async def test_auth_plain_without_initial_response(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await auth_session(run, client_tls)
    assert (await client.cmd("AUTH PLAIN"))[0] == 334
    assert said(*await client.cmd(plain("alice", PASSWORD))) == Reply.AUTH_SUCCESSFUL
    await client.close()


@pytest.mark.parametrize(
    ("user", "password", "logged"),
    [("alice", "wrong", "alice"), ("mallory", PASSWORD, "unknown")],
)
async def test_bad_login_gets_535(
    start_engine, tmp_path, cert_files, client_tls, user, password, logged
):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await auth_session(run, client_tls)
    code, text = await client.cmd(f"AUTH PLAIN {plain(user, password)}")
    assert said(code, text) == Reply.AUTH_INVALID
    log = run.log_text()
    assert f"auth-failed user={logged} client=127.0.0.1" in log
    assert password not in log
    await client.close()


async def test_a_password_typed_as_the_user_name_is_never_written_down(
    start_engine, tmp_path, cert_files, client_tls
):
    """Only a configured user's name is logged: a password typed into the user-name field
    (LOGIN, and PLAIN) shows as `user=unknown`, and neither the transcript nor the live
    session lines the UI draws hold it."""
    run = await start_engine(tls_config(tmp_path, cert_files))
    events = run.engine.bus.subscribe()
    typed = "Tr0ub4dor&3-typed-as-name"
    client = await auth_session(run, client_tls)
    assert (await client.cmd("AUTH LOGIN"))[0] == 334
    assert (await client.cmd(b64(typed)))[0] == 334
    assert said(*await client.cmd(b64(""))) == Reply.AUTH_INVALID
    assert said(*await client.cmd(f"AUTH LOGIN {b64(typed)}"))[:3] == "334"
    assert said(*await client.cmd(b64("x"))) == Reply.AUTH_INVALID
    assert said(*await client.cmd(f"AUTH PLAIN {plain(typed, 'x')}")) == Reply.AUTH_INVALID
    await client.closed()
    await client.close()
    await asyncio.sleep(0.05)
    log = run.log_text()
    assert log.count("auth-failed user=unknown client=127.0.0.1") == 3, log
    lines = [e.text for e in events.drain() if isinstance(e, SessionLine)]
    assert lines and any("AUTH LOGIN" in line for line in lines)
    for secret in (typed, b64(typed), plain(typed, "x")):
        assert secret not in log
        assert not any(secret in line for line in lines)


async def test_auth_aborted_with_star_gets_one_reply(
    start_engine, tmp_path, cert_files, client_tls
):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await auth_session(run, client_tls)
    assert (await client.cmd("AUTH LOGIN"))[0] == 334
    code, _ = await client.cmd("*")
    assert code == 501
    assert (await client.cmd("NOOP"))[0] == 250  # not a stray 535 left in the pipe
    await client.close()


async def test_auth_refused_during_a_transaction(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await auth_session(run, client_tls)
    await client.cmd("MAIL FROM:<a@example.com>")
    reply = said(*await client.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}"))
    assert reply == Reply.AUTH_IN_TRANSACTION
    await client.close()


async def test_three_failures_end_the_session(start_engine, tmp_path, cert_files, client_tls):
    auth = AuthConfig(failures_before_delay=5, failures_before_lockout=10)
    run = await start_engine(tls_config(tmp_path, cert_files, auth=auth))
    client = await auth_session(run, client_tls)
    for _ in range(2):
        assert said(*await client.cmd(f"AUTH PLAIN {plain('alice', 'nope')}")) == Reply.AUTH_INVALID
    await client.send(f"AUTH PLAIN {plain('alice', 'nope')}\r\n")
    assert said(*await client.reply()) == Reply.AUTH_INVALID
    assert said(*await client.reply()) == Reply.TOO_MANY_FAILED_LOGINS
    assert await client.closed()
    await client.close()


# ---------------------------------------------------------------------- sender binding


async def logged_in(run, client_tls) -> SMTPClient:
    client = await auth_session(run, client_tls)
    assert (
        said(*await client.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")) == Reply.AUTH_SUCCESSFUL
    )
    return client


@pytest.mark.parametrize("sender", ["alice@example.org", "Bob@Example.NET", "x@EXAMPLE.org"])
async def test_user_may_send_as_allowed_senders(
    start_engine, tmp_path, cert_files, client_tls, sender
):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await logged_in(run, client_tls)
    assert said(*await client.cmd(f"MAIL FROM:<{sender}>")) == Reply.MAIL_OK
    await client.close()


@pytest.mark.parametrize("sender", ["ceo@example.com", "carol@example.net", "a@sub.example.org"])
async def test_user_may_not_send_as_others(start_engine, tmp_path, cert_files, client_tls, sender):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await logged_in(run, client_tls)
    code, text = await client.cmd(f"MAIL FROM:<{sender}>")
    assert f"{code} {text}" == Reply.sender_not_owned(sender, "alice")
    await client.close()


async def test_from_header_must_belong_to_the_user(start_engine, tmp_path, cert_files, client_tls):
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await logged_in(run, client_tls)
    forged = b"From: The CEO <ceo@example.com>\r\nTo: b@example.org\r\nSubject: pay\r\n\r\nnow\r\n"
    code, text = await client.send_message("alice@example.org", ["b@example.org"], forged)
    assert f"{code} {text}" == Reply.from_not_owned("ceo@example.com", "alice")
    honest = b"From: Alice <alice@example.org>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhi\r\n"
    assert (await client.send_message("alice@example.org", ["b@example.org"], honest))[0] == 250
    await client.close()


async def test_from_header_the_address_parser_refuses_is_refused_not_failed(
    start_engine, tmp_path, cert_files, client_tls
):
    """A display name that decodes to a line break makes the stdlib's parser raise: the
    message is refused as not the user's (553), not answered 451 for its client to retry."""
    run = await start_engine(tls_config(tmp_path, cert_files))
    client = await logged_in(run, client_tls)
    odd = b"From: =?utf-8?q?a=0D=0Ab?= <alice@example.org>\r\nSubject: x\r\n\r\nhi\r\n"
    code, text = await client.send_message("alice@example.org", ["b@example.org"], odd)
    assert code == 553, text
    await client.close()


@pytest.mark.parametrize(
    "allowed",
    [
        "josé@bücher.example",
        "josé@xn--bcher-kva.example",
        "bücher.example",
        "xn--bcher-kva.example",
    ],
)
async def test_utf8_from_header_is_accepted_for_its_owner(
    start_engine, tmp_path, cert_files, client_tls, allowed
):
    """RFC 6532: a UTF-8 local part and an IDN domain in From: are the user's own, whichever
    way allowed_senders writes the domain (U-label or A-label)."""
    jose = UserConfig(name="alice", password_hash=ALICE.password_hash, allowed_senders=(allowed,))
    run = await start_engine(tls_config(tmp_path, cert_files, users=(jose,)))
    client = await logged_in(run, client_tls)
    assert said(*await client.cmd("MAIL FROM:<josé@bücher.example> SMTPUTF8")) == Reply.MAIL_OK
    assert said(*await client.cmd("RCPT TO:<b@example.org>")) == Reply.RCPT_OK
    assert said(*await client.cmd("DATA")) == Reply.START_DATA
    await client.send(
        "From: José <josé@bücher.example>\r\nTo: b@example.org\r\nSubject: olá\r\n\r\n"
        "hi\r\n.\r\n".encode()
    )
    code, text = await client.reply()
    assert code == 250, text
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    assert detail.smtputf8 and detail.row.sender == "josé@bücher.example"
    # Someone else's UTF-8 address is still refused.
    await client.cmd("MAIL FROM:<josé@bücher.example> SMTPUTF8")
    await client.cmd("RCPT TO:<b@example.org>")
    await client.cmd("DATA")
    await client.send("From: <zoë@bücher.example>\r\n\r\nhi\r\n.\r\n".encode())
    code, text = await client.reply()
    if "@" in allowed:
        assert f"{code} {text}" == Reply.from_not_owned("zoë@bücher.example", "alice")
    else:
        assert code == 250, text  # the whole domain is theirs
    await client.close()


async def test_user_message_rate_is_limited(start_engine, tmp_path, cert_files, client_tls):
    limited = UserConfig(
        name="alice",
        password_hash=ALICE.password_hash,
        allowed_senders=("example.org",),
        max_messages_per_minute=2,
    )
    run = await start_engine(tls_config(tmp_path, cert_files, users=(limited,)))
    client = await logged_in(run, client_tls)
    body = b"From: alice@example.org\r\n\r\nhi\r\n"
    for _ in range(2):
        assert (await client.send_message("alice@example.org", ["b@example.org"], body))[0] == 250
    code, text = await client.cmd("MAIL FROM:<alice@example.org>")
    assert f"{code} {text}" == Reply.USER_RATE_LIMITED
    await client.close()


# ---------------------------------------------------------------------- brute force


def test_ipv6_failures_count_per_64():
    assert client_network("2001:db8:1:2::1") == client_network("2001:db8:1:2:ffff::9")
    assert client_network("2001:db8:1:2::1") != client_network("2001:db8:1:3::1")
    assert client_network("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_network("192.0.2.7") != client_network("192.0.2.8")


async def test_password_guessing_is_braked_while_others_are_served(
    start_engine, tmp_path, cert_files, client_tls
):
    auth = AuthConfig(failures_before_delay=2, failures_before_lockout=4, lockout_seconds=600)
    run = await start_engine(tls_config(tmp_path, cert_files, auth=auth))
    host, port = run.address()
    authenticator = run.engine.authenticator

    async def guess(n: int) -> str:
        client = await SMTPClient.connect(host, port)
        try:
            await client.greet()
            await starttls(client, client_tls)
            await client.cmd("EHLO guesser.example")
            return said(*await client.cmd(f"AUTH PLAIN {plain('alice', f'Zq9-guess-{n}')}"))
        finally:
            await client.close()

    async def attack() -> list[str]:
        return [await guess(n) for n in range(12)]  # reconnecting for every guess

    async def legitimate() -> float:
        await asyncio.sleep(0.5)
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
        client = SMTPClient(reader, writer)
        await client.greet()
        await starttls(client, client_tls)
        await client.cmd("EHLO office-pc.example")
        reply = said(*await client.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}"))
        assert reply == Reply.AUTH_SUCCESSFUL
        code, _ = await client.send_message("alice@example.org", ["b@example.org"], alice_message())
        assert code == 250
        await client.close()
        return time.monotonic() - started

    replies, served_in = await asyncio.wait_for(asyncio.gather(attack(), legitimate()), 60)
    # Passwords were checked only until the lockout; everything after got 454 without a check.
    assert authenticator.verifications <= auth.failures_before_lockout + 1
    assert replies[:3] == [Reply.AUTH_INVALID] * 3
    assert replies[-5:] == [Reply.AUTH_LOCKED_OUT] * 5
    assert served_in < 5.0
    log = run.log_text()
    assert "auth-failed user=alice client=127.0.0.1" in log
    assert "Zq9-guess" not in log


async def test_guessers_from_many_addresses_never_crowd_out_a_clean_client(
    start_engine, tmp_path, cert_files, client_tls
):
    """Six addresses guess passwords over 24 sessions at once, never locked out (so every
    guess costs a real scrypt check), while an office PC on another address logs in eight
    times as eight users (no cached success to lean on): every one of its logins succeeds,
    none is told "too many logins in progress", each within a bound."""
    users = tuple(
        UserConfig(name=f"pc{n}", password_hash=hash_password(f"{PASSWORD} {n}", log2_n=13))
        for n in range(8)
    )
    auth = AuthConfig(
        failures_before_delay=1000,
        failures_before_lockout=1000,
        max_verifications_in_flight=3,
        suspect_verifications_in_flight=2,
    )
    run = await start_engine(tls_config(tmp_path, cert_files, auth=auth, users=users))
    host, port = run.address()
    stop = asyncio.Event()
    guesses: list[str] = []

    async def session_from(address: str) -> SMTPClient:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(address, 0))
        client = SMTPClient(reader, writer)
        await client.greet()
        await starttls(client, client_tls)
        await client.cmd("EHLO pc.example")
        return client

    async def guesser(address: str) -> None:
        while not stop.is_set():
            client = await session_from(address)
            try:
                for n in range(3):  # the session's failure limit ends it after three
                    guesses.append(said(*await client.cmd(f"AUTH PLAIN {plain('pc0', f'g{n}')}")))
            except ConnectionError:
                pass
            finally:
                await client.close()

    attackers = [asyncio.create_task(guesser(f"127.0.0.{10 + n // 4}")) for n in range(24)]
    try:
        await asyncio.sleep(1.0)  # every guessing address has failed by now
        replies, times = [], []
        for n in range(8):
            client = await session_from("127.0.0.2")
            started = time.monotonic()
            reply = await client.cmd(f"AUTH PLAIN {plain(f'pc{n}', f'{PASSWORD} {n}')}")
            times.append(time.monotonic() - started)
            replies.append(said(*reply))
            await client.close()
    finally:
        stop.set()
        await asyncio.gather(*attackers, return_exceptions=True)
    assert replies == [Reply.AUTH_SUCCESSFUL] * 8
    assert max(times) < 3.0, times  # (about 0.1-0.5 s on a busy 2-core machine)
    # Every guessing address had its guesses checked (and failed), and they were the ones
    # refused for being too many.
    assert guesses.count(Reply.AUTH_INVALID) >= 6
    assert Reply.AUTH_BUSY in guesses
    assert "auth-failed user=pc0 client=127.0.0.10" in run.log_text()


async def test_a_fresh_address_opening_many_sessions_gets_one_clean_check():
    """Ten logins at once from an address that never failed: one is checked in the clean
    lane; when it fails, the rest are suspects (one more check, the others 454), instead of
    ten checks taking every clean place."""
    users = {"pc0": UserConfig(name="pc0", password_hash=hash_password(PASSWORD, log2_n=12))}
    auth = AuthConfig(max_verifications_in_flight=8, suspect_verifications_in_flight=1)
    authenticator = Authenticator(users, auth)
    try:
        outcomes = await asyncio.gather(
            *(authenticator.verify("127.0.0.9", "pc0", f"guess {n}") for n in range(10))
        )
    finally:
        authenticator.close()
    replies = [o.reply for o in outcomes]
    assert authenticator.verifications == 2
    assert replies.count(Reply.AUTH_INVALID) == 2
    assert replies.count(Reply.AUTH_BUSY) == 8


async def test_an_office_behind_one_address_logs_in_at_once():
    """Five PCs behind one NAT address log in at the same moment: their checks take turns
    in the clean lane and every one succeeds."""
    users = {
        f"pc{n}": UserConfig(name=f"pc{n}", password_hash=hash_password(f"pw{n}", log2_n=12))
        for n in range(5)
    }
    authenticator = Authenticator(users, AuthConfig(suspect_verifications_in_flight=1))
    try:
        outcomes = await asyncio.gather(
            *(authenticator.verify("192.0.2.7", f"pc{n}", f"pw{n}") for n in range(5))
        )
    finally:
        authenticator.close()
    assert [o.reply for o in outcomes] == [Reply.AUTH_SUCCESSFUL] * 5


async def test_a_network_that_logged_in_before_goes_ahead_of_strangers():
    """Eight strangers' first logins are waiting for the two threads when a network that
    logged in earlier asks: its check runs next, not ninth."""
    # The strangers guess at pc0, whose check is slow enough (log2_n 15) that the two threads
    # stay busy while every stranger gets in line; pc1's own check is quick.
    users = {
        f"pc{n}": UserConfig(
            name=f"pc{n}", password_hash=hash_password(f"pw{n}", log2_n=15 if n == 0 else 13)
        )
        for n in range(2)
    }
    authenticator = Authenticator(users, AuthConfig(max_verifications_in_flight=16))
    finished: list[str] = []

    async def login(ip: str, user: str, password: str) -> None:
        await authenticator.verify(ip, user, password)
        finished.append(ip)

    try:
        await login("192.0.2.1", "pc0", "pw0")  # (pc1's password is not in the cache)
        finished.clear()
        strangers = [
            asyncio.create_task(login(f"198.51.100.{n}", "pc0", "guess")) for n in range(8)
        ]
        await asyncio.sleep(0.02)  # every stranger is in line (two of them in the threads)
        await asyncio.gather(login("192.0.2.1", "pc1", "pw1"), *strangers)
    finally:
        authenticator.close()
    assert finished.index("192.0.2.1") <= 2, finished


async def test_verifications_in_flight_are_capped(start_engine, tmp_path, cert_files, client_tls):
    slow = UserConfig(name="alice", password_hash=hash_password(PASSWORD, log2_n=16))
    auth = AuthConfig(max_verifications_in_flight=2, failures_before_lockout=100)
    run = await start_engine(tls_config(tmp_path, cert_files, auth=auth, users=(slow,)))

    async def one() -> str:
        client = await auth_session(run, client_tls)
        reply = said(*await client.cmd(f"AUTH PLAIN {plain('alice', 'wrong')}"))
        await client.close()
        return reply

    replies = await asyncio.gather(*(one() for _ in range(6)))
    busy = replies.count(Reply.AUTH_BUSY)
    assert busy >= 1  # refused at once rather than queued
    assert run.engine.authenticator.verifications <= 6 - busy


# ---------------------------------------------------------------------- secrets


async def test_auth_secrets_never_reach_logs_transcripts_or_events(
    start_engine, tmp_path, cert_files, client_tls
):
    run = await start_engine(tls_config(tmp_path, cert_files))
    events = run.engine.bus.subscribe()
    client = await auth_session(run, client_tls)
    reply = said(*await client.cmd(f"AUTH PLAIN {plain('alice', 'wrong one')}"))
    assert reply == Reply.AUTH_INVALID
    await client.cmd("AUTH LOGIN")
    await client.cmd(b64("alice"))
    assert said(*await client.cmd(b64(PASSWORD))) == Reply.AUTH_SUCCESSFUL
    code, text = await client.send_message(
        "alice@example.org", ["b@example.org"], b"From: alice@example.org\r\n\r\nhi\r\n"
    )
    assert code == 250
    await client.cmd("QUIT")
    await client.closed()
    await asyncio.sleep(0.05)
    await run.engine.spool.flush()
    secrets = [
        PASSWORD,
        "wrong one",
        plain("alice", "wrong one"),
        plain("alice", PASSWORD),
        b64(PASSWORD),
        b64("alice"),
    ]
    detail = await run.engine.admin.show(QUEUED.search(text).group(1))
    transcript = "\n".join(line.text for line in detail.inbound_transcript)
    lines = [e.text for e in events.drain() if isinstance(e, SessionLine)]
    assert "AUTH PLAIN <secret>" in transcript
    assert "<secret>" in lines
    for secret in secrets:
        assert secret not in transcript
        assert secret not in run.log_text()
        assert not any(secret in line for line in lines)


async def test_session_ipv6_implicit(start_engine, tmp_path, cert_files, client_tls):
    """Implicit TLS on [::1] works like on 127.0.0.1."""
    import dataclasses

    config = tls_config(tmp_path, cert_files, tls="implicit", networks=("::1/128",))
    listener = dataclasses.replace(config.listeners[0], listen=(SocketAddress("::1", 0),))
    run = await start_engine(dataclasses.replace(config, listeners=(listener,)))
    host, port = run.address()
    smtp = aiosmtplib.SMTP(hostname=host, port=port, use_tls=True, tls_context=client_tls)
    await smtp.connect()
    errors, _ = await smtp.sendmail("a@example.com", ["b@example.org"], simple_message())
    assert errors == {}
    await smtp.quit()
