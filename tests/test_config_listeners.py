"""Checking `[[listeners]]`: addresses, trusted networks, TLS files and the open-relay warnings."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relaybox.config import (
    SocketAddress,
    check_config,
    default_config,
    load_config,
)

from .support.configs import (
    errors_of,
    listener,
    make_pair,
    only_error,
    tls_listener,
    user_block,
    warnings_of,
    write,
)


def test_bad_network_is_rejected_with_an_example(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["192.168.1/24"]')
    )
    assert problem.key == "listeners[0].allowed_networks[0]"
    assert "is not a network" in problem.message
    assert "192.168.1.0/24" in problem.message


def test_network_with_host_bits_set_suggests_the_network(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["10.0.0.1/8"]')
    )
    assert '"10.0.0.0/8"' in problem.message
    assert '"10.0.0.1/32"' in problem.message


def test_single_address_is_a_network_of_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["127.0.0.1", "::1"]'),
    )
    networks = load_config(path).listeners[0].allowed_networks
    assert networks == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


def test_port_out_of_range_is_rejected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, listener('listen = ["127.0.0.1:70000"]'))
    assert problem.key == "listeners[0].listen[0]"
    assert "0 to 65535" in problem.message


def test_port_zero_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, listener('listen = ["127.0.0.1:0", "127.0.0.1:0"]'))
    assert load_config(path).listeners[0].listen == (SocketAddress("127.0.0.1", 0),) * 2


def test_ipv6_listen_address_is_written_in_brackets(tmp_path: Path) -> None:
    path = write(tmp_path, listener('listen = ["[::1]:2525", "[::]:25"]'))
    assert load_config(path).listeners[0].listen == (
        SocketAddress("::1", 2525),
        SocketAddress("::", 25),
    )
    problem = only_error(tmp_path, listener('listen = ["::1:2525"]'))
    assert "square brackets" in problem.message


def test_host_name_instead_of_ip_address_is_explained(tmp_path: Path) -> None:
    problem = only_error(tmp_path, listener('listen = ["localhost:2525"]'))
    assert '"localhost" is not an IP address' in problem.message
    assert "127.0.0.1" in problem.message


def test_same_address_in_two_listeners_is_an_error(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:2525"]') + listener('listen = ["127.0.0.1:2525"]')
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("listeners[1].listen[0]", 4)
    assert "listeners[0]" in problem.message


def test_listener_without_listen_is_named_by_index(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:25"]') + listener('role = "relay"')
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("listeners[1]", 3)
    assert '"listen"' in problem.message


def test_file_without_listeners_gets_the_default_listener(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[limits]\nmax_recipients = 10\n"))
    assert config.listeners == default_config().listeners


def test_exposed_relay_trusting_loopback_is_warned_about(tmp_path: Path) -> None:
    text = listener(
        'listen = ["0.0.0.0:25"]', 'allowed_networks = ["192.168.1.0/24", "127.0.0.0/8"]'
    )
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("listeners[0].allowed_networks[1]", 3)
    assert "proxy" in warning.message


def test_network_wider_than_slash_8_is_warned_about(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["16.0.0.0/4"]')
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "listeners[0].allowed_networks[0]"
    assert "open relay" in warning.message


def test_relay_without_allowed_networks_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, listener('listen = ["127.0.0.1:25"]'))
    assert warning.key == "listeners[0]"
    assert "no client may" in warning.message


def test_tls_without_certificate_names_the_listener(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["127.0.0.1"]') + listener(
        'listen = ["127.0.0.1:465"]', 'tls = "implicit"'
    )
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("listeners[1]", 4)
    assert str(problem).endswith(
        'listeners[1]: tls = "implicit" needs certificate and private_key; '
        "relaybox init makes a self-signed pair"
    )


def test_tls_with_only_a_certificate_says_which_file_is_missing(tmp_path: Path) -> None:
    certificate, _ = make_pair(tmp_path)
    text = listener(
        'listen = ["127.0.0.1:587"]', 'tls = "starttls"', f"certificate = '{certificate}'"
    )
    problem = only_error(tmp_path, text)
    assert problem.key == "listeners[0]"
    assert "needs certificate and private_key (private_key is missing)" in problem.message


def test_a_good_certificate_pair_loads_with_relative_paths(tmp_path: Path) -> None:
    make_pair(tmp_path / "tls")
    text = tls_listener(Path("tls/cert.pem"), Path("tls/key.pem")) + user_block(
        "alice", 'allowed_senders = ["example.org"]'
    )
    path = write(tmp_path, text)
    assert check_config(path) == ([], [])
    [submission] = load_config(path).listeners
    assert submission.certificate == tmp_path / "tls" / "cert.pem"
    assert submission.private_key == tmp_path / "tls" / "key.pem"


def test_one_file_holding_certificate_and_key_is_accepted(tmp_path: Path) -> None:
    certificate, private_key = make_pair(tmp_path)
    both = tmp_path / "both.pem"
    both.write_bytes(certificate.read_bytes() + private_key.read_bytes())
    text = tls_listener(both, both) + user_block("alice@example.org")
    assert check_config(write(tmp_path, text)) == ([], [])


def test_missing_certificate_file_is_an_error(tmp_path: Path) -> None:
    _, private_key = make_pair(tmp_path)
    problem = only_error(tmp_path, tls_listener(Path("nope.pem"), private_key) + user_block())
    assert (problem.key, problem.line) == ("listeners[0].certificate", 5)
    assert f"the file {tmp_path / 'nope.pem'} does not exist" in problem.message


def test_certificate_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    _, private_key = make_pair(tmp_path)
    problem = only_error(tmp_path, tls_listener(tmp_path, private_key) + user_block())
    assert problem.key == "listeners[0].certificate"
    assert "is a folder" in problem.message


def test_unreadable_private_key_is_an_error(tmp_path: Path) -> None:
    """Checked as an ordinary user: root reads every file, so as root the check runs as nobody."""
    if os.geteuid() != 0:
        certificate, private_key = make_pair(tmp_path)
        private_key.chmod(0)
        problem = only_error(tmp_path, tls_listener(certificate, private_key) + user_block())
        assert problem.key == "listeners[0].private_key"
        assert "permission denied" in problem.message
        return
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="relaybox-unreadable."))
    try:
        folder.chmod(0o755)
        certificate, private_key = make_pair(folder)
        certificate.chmod(0o644)
        private_key.chmod(0o600)  # root's, and so unreadable for nobody
        config = folder / "relaybox.toml"
        config.write_text(tls_listener(certificate, private_key) + user_block())
        config.chmod(0o644)
        # Fork (no exec: the interpreter lives under /root) and drop to nobody in the child;
        # what the check imports lazily is imported here first, for the same reason.
        import encodings.idna  # noqa: F401

        check_config(config)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                errors, _ = check_config(config)
                text = "\n".join(f"{p.key}|{p.message}" for p in errors)
            except BaseException as exc:  # report it to the parent rather than lose it
                text = f"child|{type(exc).__name__}: {exc}"
            try:
                os.write(write_end, text.encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            output = pipe.read().decode()
        os.waitpid(pid, 0)
        (line,) = output.splitlines()
        key, message = line.split("|", 1)
        assert key == "listeners[0].private_key", output
        assert "permission denied" in message
    finally:
        import shutil

        shutil.rmtree(folder)


def test_certificate_and_key_of_different_pairs_do_not_match(tmp_path: Path) -> None:
    certificate_a, _ = make_pair(tmp_path / "a", "a.example.com")
    _, private_key_b = make_pair(tmp_path / "b", "b.example.com")
    problem = only_error(tmp_path, tls_listener(certificate_a, private_key_b) + user_block())
    assert problem.key == "listeners[0].private_key"
    assert problem.message.startswith("the certificate and private key do not match")
    assert str(private_key_b) in problem.message and str(certificate_a) in problem.message


def test_swapped_certificate_and_key_are_explained(tmp_path: Path) -> None:
    certificate, private_key = make_pair(tmp_path)
    errors = errors_of(tmp_path, tls_listener(private_key, certificate) + user_block())
    assert [(p.key, p.message.split(",")[0]) for p in errors] == [
        ("listeners[0].certificate", f"{private_key} holds a private key"),
        ("listeners[0].private_key", f"{certificate} holds a certificate"),
    ]


def test_file_that_is_not_pem_is_explained(tmp_path: Path) -> None:
    _, private_key = make_pair(tmp_path)
    junk = tmp_path / "cert.der"
    junk.write_bytes(b"\x30\x82\x01\x0a junk")
    problem = only_error(tmp_path, tls_listener(junk, private_key) + user_block())
    assert "is not a certificate in PEM format" in problem.message


def test_private_key_with_a_passphrase_is_refused_without_asking_for_it(tmp_path: Path) -> None:
    certificate, private_key = make_pair(tmp_path)
    key = serialization.load_pem_private_key(private_key.read_bytes(), None)
    private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    problem = only_error(tmp_path, tls_listener(certificate, private_key) + user_block())
    assert problem.key == "listeners[0].private_key"
    assert "protected by a passphrase" in problem.message


def test_expired_certificate_is_warned_about(tmp_path: Path) -> None:
    _, private_key = make_pair(tmp_path)
    key = serialization.load_pem_private_key(private_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")])
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2019, 1, 2, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    certificate = tmp_path / "old.pem"
    certificate.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    [warning] = warnings_of(tmp_path, tls_listener(certificate, private_key) + user_block())
    assert warning.key == "listeners[0].certificate"
    assert "expired on 2020-01-02" in warning.message


def test_submission_without_tls_is_an_error(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, listener('listen = ["127.0.0.1:587"]', 'role = "submission"') + user_block()
    )
    assert (problem.key, problem.line) == ("listeners[0].tls", 1)
    assert "nobody could ever log in" in problem.message


def test_certificate_on_a_listener_without_tls_is_warned_about(tmp_path: Path) -> None:
    certificate, private_key = make_pair(tmp_path)
    text = listener(
        'listen = ["127.0.0.1:25"]',
        'allowed_networks = ["127.0.0.1"]',
        f"certificate = '{certificate}'",
        f"private_key = '{private_key}'",
    )
    warnings = warnings_of(tmp_path, text)
    assert [(w.key, w.line) for w in warnings] == [
        ("listeners[0].certificate", 4),
        ("listeners[0].private_key", 5),
    ]
    assert 'tls = "none"' in warnings[0].message


def test_submission_listener_without_users_is_warned_about(tmp_path: Path) -> None:
    certificate, private_key = make_pair(tmp_path)
    [warning] = warnings_of(tmp_path, tls_listener(certificate, private_key))
    assert warning.key == "listeners[0].role"
    assert "no [[users]]" in warning.message
