"""Loading and checking config files: the sample, every kind of mistake, and the warnings."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relaybox.config import (
    DEFAULT_ROUTE,
    AuthConfig,
    Config,
    ConfigError,
    DeliveryConfig,
    DkimConfig,
    DnsConfig,
    HealthConfig,
    HostPort,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    Problem,
    RouteConfig,
    ServerConfig,
    SocketAddress,
    UiConfig,
    UserConfig,
    check_config,
    check_user_name,
    default_config,
    load_config,
    read_route_password,
    sample_config_text,
)
from relaybox.config.passwords import hash_password
from relaybox.inbound.certificates import generate_self_signed
from relaybox.outbound.routing import load_credentials


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[Problem]:
    errors, _ = check_config(write(tmp_path, text))
    return errors


def warnings_of(tmp_path: Path, text: str) -> list[Problem]:
    errors, warnings = check_config(write(tmp_path, text))
    assert errors == []
    return warnings


def only_error(tmp_path: Path, text: str) -> Problem:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


def listener(*lines: str) -> str:
    return "[[listeners]]\n" + "\n".join(lines) + "\n"


def test_sample_config_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, sample_config_text())
    config = load_config(path)
    default = default_config()
    assert config.source == path
    # hostname and state_dir are commented out in the sample, so they take the same
    # machine-dependent defaults as the embedded config.
    assert dataclasses.replace(config, source=None) == default


def test_every_setting_is_documented_in_the_sample() -> None:
    """A new field in the model must be added to sample-config.toml (commented out or not).

    Sections that are only shown as commented-out examples (`# [[users]]`) count too: their
    keys must appear in the example, and each is explained either by the comment just above
    its line or by a `# key: ...` paragraph.
    """
    text = sample_config_text()
    sections: dict[str, type] = {
        "server": ServerConfig,
        "limits": LimitsConfig,
        "log": LogConfig,
        "auth": AuthConfig,
        "listeners": ListenerConfig,
        "users": UserConfig,
        "dns": DnsConfig,
        "delivery": DeliveryConfig,
        "health": HealthConfig,
        "ui": UiConfig,
        "dkim": DkimConfig,
        "routes": RouteConfig,
    }
    blocks = dict.fromkeys(sections, "")
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?(\w+)\]\]?\s*", line)
        if header:
            current = header.group(1)
        elif current:
            blocks[current] += line + "\n"
    assert {f.name for f in dataclasses.fields(Config)} - {"source"} == set(sections)
    for section, cls in sections.items():
        for field in dataclasses.fields(cls):
            if field.metadata.get("loaded"):
                continue  # filled in by the loader (a key read from its file), not a setting
            setting = re.search(rf"^#? ?{field.name} = ", blocks[section], re.MULTILINE)
            assert setting, f"[{section}] {field.name} is not in sample-config.toml"
            # The comment lines right above the setting, not counting commented-out settings.
            above = re.search(
                r"((?:^#(?! ?\w+ = ).*\n)+)\Z", blocks[section][: setting.start()], re.M
            )
            paragraph = re.search(rf"^# {field.name}: .*\n(?:^#  .*\n)*", text, re.M)
            documented = [m.group() for m in (above, paragraph) if m]
            assert any(re.search(r"Default|Required", doc) for doc in documented), (
                f"[{section}] {field.name} needs a comment saying what it does and its default"
            )


def test_sample_config_has_no_warnings(tmp_path: Path) -> None:
    assert check_config(write(tmp_path, sample_config_text())) == ([], [])


def test_unknown_key_is_reported_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, '[server]\nmin_free_space_mb = 5\nhostnme = "mail.example.com"\n'
    )
    assert problem.line == 3
    assert problem.key == "server.hostnme"
    assert 'did you mean "hostname"?' in problem.message
    assert str(problem).startswith(f"{tmp_path / 'relaybox.toml'}:3: server.hostnme: unknown key")


def test_unknown_table_is_reported(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limit]\nmax_recipients = 5\n")
    assert (problem.key, problem.line) == ("limit", 1)
    assert '"limits"' in problem.message


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        "[limits]\n"
        "max_recipients = 0\n"  # 2
        "\n"
        "[log]\n"
        'level = "loud"\n'  # 5
        "\n"
        + listener(
            'listen = ["127.0.0.1:2525"]',
            "allowed_networks = [",
            '  "192.168.1.0/24",',
            '  "not-a-network",',  # 11
            "]",
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    problems = caught.value.problems
    assert [(p.key, p.line) for p in problems] == [
        ("limits.max_recipients", 2),
        ("log.level", 5),
        ("listeners[0].allowed_networks[1]", 11),
    ]
    assert str(caught.value).splitlines() == [str(p) for p in problems]


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


def test_bool_is_not_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nmax_recipients = true\n")
    assert problem.key == "limits.max_recipients"
    assert "whole number" in problem.message


def test_whole_number_is_accepted_for_a_decimal_setting(tmp_path: Path) -> None:
    limits = load_config(write(tmp_path, "[limits]\nidle_timeout = 60\n")).limits
    assert limits.idle_timeout == 60.0
    assert isinstance(limits.idle_timeout, float)


def test_out_of_range_limit_names_the_range(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nmax_line_length = 50\n")
    assert "between 78 and 100000" in problem.message


def test_enum_value_lists_the_allowed_values(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[log]\nformat = "xml"\n')
    assert problem.key == "log.format"
    assert '"text", "json"' in problem.message


def test_invalid_hostname_is_rejected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[server]\nhostname = "mail_server.example.com"\n')
    assert "not a valid host name" in problem.message


def test_relative_paths_start_at_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    path = write(tmp_path, '[server]\nstate_dir = "state"\n[log]\nfile = "logs/relay.log"\n')
    config = load_config(path)
    assert config.server.state_dir == tmp_path / "state"
    assert config.log.file == tmp_path / "logs" / "relay.log"


def test_log_file_folder_must_exist(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[log]\nfile = "missing/relay.log"\n')
    assert "does not exist" in problem.message


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: file not found")


def test_toml_syntax_error_reports_its_line(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[server]\nmin_free_space_mb = 5\nhostname = = "x"\n')
    assert problem.line == 3
    assert "not valid TOML" in problem.message


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


def test_config_objects_are_frozen() -> None:
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_recipients = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listeners[0].role = "submission"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.routes[0].transport = "reject"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.delivery.soft_bounce = True  # type: ignore[misc]


# --- TLS on listeners ------------------------------------------------------------------------

HASH = hash_password("x", log2_n=10)
"""A valid hash that is quick to make; nothing here verifies it."""


def make_pair(folder: Path, hostname: str = "mail.example.com") -> tuple[Path, Path]:
    certificate, private_key = folder / "cert.pem", folder / "key.pem"
    generate_self_signed(hostname, certificate, private_key)
    return certificate, private_key


def user_block(name: str = "alice@example.org", *lines: str, password_hash: str = HASH) -> str:
    return (
        "[[users]]\n"
        + f'name = "{name}"\npassword_hash = "{password_hash}"\n'
        + ("\n".join(lines) + "\n" if lines else "")
    )


def tls_listener(certificate: Path, private_key: Path, *lines: str) -> str:
    return listener(
        'listen = ["127.0.0.1:587"]',
        'role = "submission"',
        'tls = "starttls"',
        f"certificate = '{certificate}'",
        f"private_key = '{private_key}'",
        *lines,
    )


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


# --- users -----------------------------------------------------------------------------------


def test_users_are_loaded(tmp_path: Path) -> None:
    text = user_block(
        "alice",
        'allowed_senders = ["Example.ORG", "Bob@Example.NET"]',
        "max_messages_per_minute = 20",
    ) + user_block("scanner@example.org")
    config = load_config(write(tmp_path, text))
    alice, scanner = config.users
    assert alice == UserConfig(
        name="alice",
        password_hash=HASH,
        allowed_senders=("example.org", "bob@example.net"),
        max_messages_per_minute=20,
    )
    assert scanner.allowed_senders == () and scanner.max_messages_per_minute is None
    assert config.find_user("alice") is alice
    assert config.find_user("Alice") is None
    assert HASH not in repr(alice)


def test_no_users_by_default(tmp_path: Path) -> None:
    assert default_config().users == ()
    assert load_config(write(tmp_path, "[limits]\nmax_recipients = 5\n")).users == ()


def test_user_without_name_or_hash_is_an_error(tmp_path: Path) -> None:
    text = '[[users]]\nname = "alice"\n\n[[users]]\npassword_hash = "' + HASH + '"\n'
    errors = errors_of(tmp_path, text)
    assert [(p.key, p.line) for p in errors] == [("users[0]", 1), ("users[1]", 4)]
    assert 'has no "password_hash" key' in errors[0].message
    assert "relaybox passwd" in errors[0].message
    assert 'has no "name" key' in errors[1].message


def test_duplicate_user_names_are_an_error(tmp_path: Path) -> None:
    text = user_block("alice", 'allowed_senders = ["example.org"]') + user_block(
        "alice", 'allowed_senders = ["example.net"]'
    )
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("users[1].name", 6)
    assert "already defined in users[0]" in problem.message
    # Reported even when both blocks have other mistakes too.
    text = user_block("alice", password_hash="secret") + '[[users]]\nname = "alice"\n'
    assert [p.key for p in errors_of(tmp_path, text)] == [
        "users[0].password_hash",
        "users[1]",
        "users[1].name",
    ]


def test_user_names_differing_in_case_are_warned_about(tmp_path: Path) -> None:
    text = user_block("alice@example.org") + user_block("Alice@example.org")
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "users[1].name"
    assert "upper and lower case" in warning.message


@pytest.mark.parametrize("name", ["", "alice smith", "alice\t", "al\u200bice", "bob\n"])
def test_user_name_must_be_a_plain_login(tmp_path: Path, name: str) -> None:
    text = f'[[users]]\nname = "{name.encode("unicode_escape").decode()}"\n'
    text += f'password_hash = "{HASH}"\nallowed_senders = ["example.org"]\n'
    problem = only_error(tmp_path, text)
    assert problem.key == "users[0].name"
    assert "empty" in problem.message or "may not hold spaces" in problem.message


def test_user_name_rule_is_public_for_relaybox_passwd() -> None:
    assert check_user_name("alice@example.org") is None
    assert check_user_name("Ålice") is None
    assert "contains a tab" in (check_user_name("a\tb") or "")
    assert "U+200B" in (check_user_name("al\u200bice") or "")


def test_plain_password_is_refused_and_never_repeated(tmp_path: Path) -> None:
    text = user_block("alice", password_hash="Summer2024!")
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("users[0].password_hash", 3)
    assert "never stores plain passwords" in problem.message
    assert "`relaybox passwd alice`" in problem.message
    assert "Summer2024" not in str(problem)


def test_password_that_is_a_number_is_not_repeated(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[[users]]\nname = "alice"\npassword_hash = 123456\n')
    assert problem.key == "users[0].password_hash"
    assert "123456" not in str(problem)


def test_malformed_hash_uses_the_password_module_message(tmp_path: Path) -> None:
    problem = only_error(tmp_path, user_block("bob", password_hash="$scrypt$garbage"))
    assert problem.key == "users[0].password_hash"
    assert "is not a relaybox password hash" in problem.message
    assert "relaybox passwd bob" in problem.message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("*@example.org", "wildcards are not supported"),
        ("*.example.org", '"example.org" allows every address at example.org, but not'),
        ("@example.org", 'write just the domain, like "example.org"'),
        ("bob@", "domain after '@' is empty"),
        ("a@b@example.org", "more than one '@'"),
        ("<bob@example.net>", "without < and >"),
        ("bob @example.net", "contains a space"),
        ("mail_server.example.com", "not a valid host name"),
        ("example.org.", "not a valid host name"),
        ("192.0.2.1", "is an IP address"),
        ("", "must not be empty"),
    ],
)
def test_bad_allowed_senders_entry_is_explained(tmp_path: Path, entry: str, words: str) -> None:
    problem = only_error(tmp_path, user_block("alice", f'allowed_senders = ["{entry}"]'))
    assert (problem.key, problem.line) == ("users[0].allowed_senders[0]", 4)
    assert words in problem.message


def test_allowed_senders_must_be_a_list(tmp_path: Path) -> None:
    problem = only_error(tmp_path, user_block("alice", 'allowed_senders = "example.org"'))
    assert "a list in square brackets" in problem.message


def test_user_who_may_send_as_nobody_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, user_block("alice"))
    assert (warning.key, warning.line) == ("users[0]", 1)
    assert warning.message.startswith("alice may not send as any address: add allowed_senders")
    assert warnings_of(tmp_path, user_block("alice@example.org")) == []


def test_unknown_key_in_users_is_reported_with_its_line(tmp_path: Path) -> None:
    text = user_block("alice", 'allowed_senders = ["example.org"]') + user_block(
        "bob", 'allowed_sender = ["example.net"]'
    )
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("users[1].allowed_sender", 8)
    assert 'did you mean "allowed_senders"?' in problem.message


def test_users_written_as_a_single_table_is_explained(tmp_path: Path) -> None:
    problem = only_error(tmp_path, f'[users]\nname = "alice"\npassword_hash = "{HASH}"\n')
    assert problem.key == "users"
    assert "[[users]]" in problem.message


def test_per_user_limit_must_be_at_least_one(tmp_path: Path) -> None:
    problem = only_error(tmp_path, user_block("a@example.org", "max_messages_per_minute = 0"))
    assert problem.key == "users[0].max_messages_per_minute"
    assert "1 or more" in problem.message


def test_may_send_as() -> None:
    alice = UserConfig(
        name="alice",
        password_hash=HASH,
        allowed_senders=("example.org", "bob@example.net"),
    )
    assert alice.may_send_as("anyone@example.org")
    assert alice.may_send_as("Anyone@EXAMPLE.org")
    assert alice.may_send_as("BOB@example.NET")
    assert not alice.may_send_as("carol@example.net")
    assert not alice.may_send_as("anyone@sub.example.org")
    assert not alice.may_send_as("anyone@notexample.org")
    assert not alice.may_send_as("example.org")
    assert not alice.may_send_as("alice")
    assert not alice.may_send_as("")
    scanner = UserConfig(name="Scanner@Example.org", password_hash=HASH)
    assert scanner.may_send_as("scanner@example.org")
    assert not scanner.may_send_as("other@example.org")
    # Entries built by hand, not lower-cased by the loader, still match.
    mixed = UserConfig(name="m", password_hash=HASH, allowed_senders=("Example.COM",))
    assert mixed.may_send_as("x@example.com")


# --- [auth] and the per-user limit -----------------------------------------------------------


def test_auth_defaults_and_values(tmp_path: Path) -> None:
    assert default_config().auth == AuthConfig()
    assert default_config().limits.max_messages_per_minute_per_user == 100
    text = (
        "[auth]\nfailures_before_delay = 5\nfailures_before_lockout = 6\n"
        "failure_window = 60\nlockout_seconds = 86400\nmax_verifications_in_flight = 2\n"
        "[limits]\nmax_messages_per_minute_per_user = 0\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.auth == AuthConfig(5, 6, 60.0, 86400.0, 2)
    assert config.limits.max_messages_per_minute_per_user == 0


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("failures_before_delay = 0", "1 or more"),
        ("failure_window = 0.5", "between 1 and 86400 seconds"),
        ("lockout_seconds = 100000", "between 1 and 86400 seconds"),
        ("max_verifications_in_flight = 0", "between 1 and 256"),
        ("failures_before_lockout = 2.5", "whole number"),
    ],
)
def test_auth_ranges(tmp_path: Path, setting: str, words: str) -> None:
    problem = only_error(tmp_path, f"[auth]\n{setting}\n")
    assert problem.key == "auth." + setting.split(" ")[0]
    assert words in problem.message


def test_lockout_must_come_after_the_delay(tmp_path: Path) -> None:
    text = "[auth]\nfailures_before_delay = 5\nfailures_before_lockout = 5\n"
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("auth.failures_before_lockout", 3)
    assert "must be more than failures_before_delay (5)" in problem.message
    # Only the delay written: the problem points at the line that was written.
    problem = only_error(tmp_path, "[auth]\nfailures_before_delay = 20\n")
    assert (problem.key, problem.line) == ("auth.failures_before_delay", 2)


def test_negative_per_user_limit_is_rejected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nmax_messages_per_minute_per_user = -1\n")
    assert problem.key == "limits.max_messages_per_minute_per_user"


# --- [dns] -----------------------------------------------------------------------------------


def test_dns_delivery_and_routes_have_defaults_when_absent(tmp_path: Path) -> None:
    for config in (default_config(), load_config(write(tmp_path, "[limits]\n"))):
        assert config.dns == DnsConfig(resolvers=(), timeout=5.0)
        assert config.delivery == DeliveryConfig()
        assert config.routes == (DEFAULT_ROUTE,)
    assert DEFAULT_ROUTE == RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
    assert DEFAULT_ROUTE.hosts == () and DEFAULT_ROUTE.username is None


def test_resolvers_take_port_53_unless_one_is_written(tmp_path: Path) -> None:
    text = '[dns]\nresolvers = ["127.0.0.1", "127.0.0.1:5353", "[::1]", "[::1]:5354"]\n'
    text += "timeout = 0.5\n"
    dns = load_config(write(tmp_path, text)).dns
    assert dns.resolvers == (
        SocketAddress("127.0.0.1", 53),
        SocketAddress("127.0.0.1", 5353),
        SocketAddress("::1", 53),
        SocketAddress("::1", 5354),
    )
    assert dns.timeout == 0.5
    assert [str(r) for r in dns.resolvers] == [
        "127.0.0.1:53",
        "127.0.0.1:5353",
        "[::1]:53",
        "[::1]:5354",
    ]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("::1", "square brackets"),
        ("2001:db8::53", "square brackets"),
        ("localhost", '"localhost" is not an IP address'),
        ("dns.example.net:53", "not an IP address"),
        ("127.0.0.1:0", "from 1 to 65535"),
        ("127.0.0.1:70000", "from 1 to 65535"),
        ("127.0.0.1:dns", "from 1 to 65535"),
        ("127.0.0.1:", "ends with a colon"),
        ("[127.0.0.1]:53", "only for IPv6"),
    ],
)
def test_bad_resolver_is_explained(tmp_path: Path, entry: str, words: str) -> None:
    problem = only_error(tmp_path, f'[dns]\nresolvers = [\n  "{entry}",\n]\n')
    assert (problem.key, problem.line) == ("dns.resolvers[0]", 3)
    assert words in problem.message


def test_resolver_listed_twice_is_an_error(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[dns]\nresolvers = ["127.0.0.1", "127.0.0.1:53"]\n')
    assert problem.key == "dns.resolvers[1]"
    assert "listed twice" in problem.message


@pytest.mark.parametrize("timeout", ["0", "0.05", "61"])
def test_dns_timeout_range(tmp_path: Path, timeout: str) -> None:
    problem = only_error(tmp_path, f"[dns]\ntimeout = {timeout}\n")
    assert problem.key == "dns.timeout"
    assert "between 0.1 and 60 seconds" in problem.message


# --- [delivery] ------------------------------------------------------------------------------


def test_delivery_settings_load(tmp_path: Path) -> None:
    text = (
        "[delivery]\nmx_port = 2525\n"
        'outbound_ips = ["8.8.8.8", "2001:4860:4860::8888"]\n'
        "max_connections = 20\nmax_connections_per_destination = 5\n"
        "connection_cache_idle = 0\nconnect_timeout = 5\ncommand_timeout = 60\n"
        "data_timeout = 120\nmin_backoff = 60\nmax_backoff = 3600\n"
        "queue_lifetime = 86400\ndelay_warning = 14400\nretention = 0\n"
        "suppress_hard_bounces = false\nsuppression_days = 7.5\n"
        'bounce_sender = "bounces"\n'
    )
    delivery = load_config(write(tmp_path, text)).delivery
    assert delivery == DeliveryConfig(
        mx_port=2525,
        outbound_ips=(
            ipaddress.ip_address("8.8.8.8"),
            ipaddress.ip_address("2001:4860:4860::8888"),
        ),
        max_connections=20,
        max_connections_per_destination=5,
        connection_cache_idle=0.0,
        connect_timeout=5.0,
        command_timeout=60.0,
        data_timeout=120.0,
        min_backoff=60.0,
        max_backoff=3600.0,
        queue_lifetime=86400.0,
        delay_warning=14400.0,
        retention=0.0,
        suppress_hard_bounces=False,
        suppression_days=7.5,
        bounce_sender="bounces",
    )


def test_delivery_defaults_are_postfix_like() -> None:
    delivery = DeliveryConfig()
    assert (delivery.mx_port, delivery.max_connections) == (25, 50)
    assert delivery.max_connections_per_destination == 10
    assert (delivery.min_backoff, delivery.max_backoff) == (300.0, 4000.0)
    assert delivery.queue_lifetime == 5 * 86400
    assert delivery.retention == 7 * 86400
    assert delivery.delay_warning == 0.0 and not delivery.soft_bounce
    assert delivery.suppress_hard_bounces and delivery.suppression_days == 30.0
    assert delivery.bounce_sender == "MAILER-DAEMON"
    assert delivery.outbound_ips == ()


def test_backoff_doubles_from_min_up_to_max() -> None:
    delivery = DeliveryConfig()
    assert [delivery.backoff(n) for n in range(1, 8)] == [
        300.0,
        600.0,
        1200.0,
        2400.0,
        4000.0,
        4000.0,
        4000.0,
    ]
    assert delivery.backoff(0) == 300.0
    assert delivery.backoff(10_000) == 4000.0


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("mx_port = 0", "between 1 and 65535"),
        ("max_connections = 0", "between 1 and 10000"),
        ("max_connections_per_destination = 0", "between 1 and 1000"),
        ("connection_cache_idle = 301", "between 0 and 300 seconds"),
        ("connect_timeout = 0", "between 0 and 600 seconds"),
        ("command_timeout = 0", "between 0 and 3600 seconds"),
        ("data_timeout = 7200", "between 0 and 3600 seconds"),
        ("min_backoff = 0", "between 0 and 86400 seconds"),
        ("queue_lifetime = 0", "between 0 and 2592000 seconds"),
        ("delay_warning = -1", "between 0 and 2592000 seconds"),
        ("retention = -1", "between 0 and 31622400 seconds"),
        ("suppression_days = 0", "between 0 and 3650 days"),
        ("mx_port = 25.5", "whole number"),
        ('soft_bounce = "yes"', "true or false"),
    ],
)
def test_delivery_ranges(tmp_path: Path, setting: str, words: str) -> None:
    problem = only_error(tmp_path, f"[delivery]\n{setting}\n")
    assert (problem.key, problem.line) == ("delivery." + setting.split(" ")[0], 2)
    assert words in problem.message


def test_max_backoff_may_not_be_below_min_backoff(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[delivery]\nmin_backoff = 600\nmax_backoff = 300\n")
    assert (problem.key, problem.line) == ("delivery.max_backoff", 3)
    assert "must not be less than min_backoff (600)" in problem.message
    # Only the minimum written, above the default maximum: the written line is named.
    problem = only_error(tmp_path, "[delivery]\nmin_backoff = 5000\n")
    assert (problem.key, problem.line) == ("delivery.min_backoff", 2)
    backoff = load_config(write(tmp_path, "[delivery]\nmin_backoff = 60\nmax_backoff = 60\n"))
    assert backoff.delivery.backoff(5) == 60.0


def test_delay_warning_must_come_before_the_queue_lifetime(tmp_path: Path) -> None:
    text = "[delivery]\nqueue_lifetime = 3600\ndelay_warning = 3600\n"
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("delivery.delay_warning", 3)
    assert "must be less than queue_lifetime" in problem.message
    assert "use 0 for no warning" in problem.message
    config = load_config(write(tmp_path, "[delivery]\nqueue_lifetime = 60\ndelay_warning = 0\n"))
    assert config.delivery.delay_warning == 0.0


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("203.0.113.0/24", "list single addresses, not networks"),
        ("mail.example.com", "is not an IP address"),
        ("0.0.0.0", "cannot be the address mail is sent from"),
        ("224.0.0.1", "cannot be the address mail is sent from"),
    ],
)
def test_bad_outbound_ip_is_explained(tmp_path: Path, entry: str, words: str) -> None:
    problem = only_error(tmp_path, f'[delivery]\noutbound_ips = ["{entry}"]\n')
    assert problem.key == "delivery.outbound_ips[0]"
    assert words in problem.message


def test_outbound_ip_that_is_not_public_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, '[delivery]\noutbound_ips = ["8.8.8.8", "192.168.1.5"]\n')
    assert (warning.key, warning.line) == ("delivery.outbound_ips[1]", 2)
    assert "not a public internet address" in warning.message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("postmaster@example.org", "only the part before the @"),
        ("mailer daemon", "cannot be the part before the @"),
        ("", "must not be empty"),
    ],
)
def test_bad_bounce_sender_is_explained(tmp_path: Path, value: str, words: str) -> None:
    problem = only_error(tmp_path, f'[delivery]\nbounce_sender = "{value}"\n')
    assert problem.key == "delivery.bounce_sender"
    assert words in problem.message


def test_soft_bounce_is_warned_about_while_on(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, "[delivery]\nsoft_bounce = true\n")
    assert warning.key == "delivery.soft_bounce"
    assert "no mail bounces" in warning.message


def test_per_destination_limit_above_the_total_is_warned_about(tmp_path: Path) -> None:
    text = "[delivery]\nmax_connections = 5\nmax_connections_per_destination = 10\n"
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("delivery.max_connections_per_destination", 3)
    assert "caps it" in warning.message


# --- [[routes]] ------------------------------------------------------------------------------


def route(*lines: str) -> str:
    return "[[routes]]\n" + "\n".join(lines) + "\n"


CATCH_ALL = route('domains = ["*"]', 'transport = "mx"')
"""A last route that keeps the "no route for other domains" warning out of a test."""


def password_file(tmp_path: Path, content: str = "s3cret\nignored second line\n") -> Path:
    path = tmp_path / "smarthost.password"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    return path


def smarthost(*lines: str, tls: str = "verify") -> str:
    return route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["smtp.example.net:587"]',
        f'tls = "{tls}"',
        *lines,
    )


def test_routes_load_in_file_order(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    text = (
        route(
            'domains = ["Example.ORG", "*.Example.org"]',
            'sender_domains = ["corp.example"]',
            'transport = "smarthost"',
            'hosts = ["SMTP.example.net:587", "[2001:db8::25]:465", "192.0.2.25:25"]',
            'tls = "verify"',
            "round_robin = true",
            'username = "relay@example.org"',
            f"password_file = '{pw}'",
            "max_messages_per_minute = 30",
            "max_connections = 2",
        )
        + route('domains = ["*.test"]', 'transport = "capture"')
        + route('domains = ["blocked.example"]', 'transport = "reject"', 'reject_text = "No."')
        + route('domains = ["held.example"]', 'transport = "hold"')
        + route('domains = ["*"]', 'transport = "mx"', 'tls = "required"')
    )
    routes = load_config(write(tmp_path, text)).routes
    assert routes[0] == RouteConfig(
        domains=("example.org", "*.example.org"),
        sender_domains=("corp.example",),
        transport="smarthost",
        hosts=(
            HostPort("smtp.example.net", 587),
            HostPort("2001:db8::25", 465),
            HostPort("192.0.2.25", 25),
        ),
        tls="verify",
        round_robin=True,
        username="relay@example.org",
        password_file=pw,
        max_messages_per_minute=30,
        max_connections=2,
    )
    assert [r.transport for r in routes] == ["smarthost", "capture", "reject", "hold", "mx"]
    assert routes[1].tls == "opportunistic" and routes[1].hosts == ()
    assert routes[2].reject_text == "No."
    assert routes[3].reject_text == "Relaying to this domain is not allowed"
    assert str(routes[0].hosts[1]) == "[2001:db8::25]:465"


def test_international_domain_patterns_are_stored_as_a_labels(tmp_path: Path) -> None:
    text = route('domains = ["Bücher.example", "*.bücher.example"]', 'transport = "hold"')
    [held, _] = load_config(write(tmp_path, text + CATCH_ALL)).routes
    assert held.domains == ("xn--bcher-kva.example", "*.xn--bcher-kva.example")
    assert held.matches("bücher.example", "")
    assert held.matches("shop.BÜCHER.example", "")


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("*example.org", '"*" may only stand alone'),
        ("mail.*.example.org", '"*" may only stand alone'),
        ("*.*.example.org", '"*" may only stand alone'),
        (".example.org", 'write "*.example.org" for the subdomains of example.org'),
        ("user@example.org", 'routes match domains, so write "example.org"'),
        ("192.0.2.1", "is an IP address"),
        ("[192.0.2.1]", "is an IP address"),
        ("exa mple.org", "contains a space"),
        ("mail_server.example.com", "not a valid host name"),
        ("example..org", "not a valid host name"),
        ("", "must not be empty"),
    ],
)
def test_bad_domain_pattern_is_explained(tmp_path: Path, pattern: str, words: str) -> None:
    for setting in ("domains", "sender_domains"):
        lines = [f'domains = ["{pattern}"]'] if setting == "domains" else ['domains = ["*"]']
        if setting == "sender_domains":
            lines.append(f'sender_domains = ["{pattern}"]')
        problem = only_error(tmp_path, route(*lines, 'transport = "mx"'))
        assert (problem.key, problem.line) == (f"routes[0].{setting}[0]", len(lines) + 1)
        assert words in problem.message


def test_star_cannot_be_combined_with_other_domains(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["example.org", "*"]', 'transport = "mx"'))
    assert problem.key == "routes[0].domains[1]"
    assert '"*" already matches every domain' in problem.message
    text = route('domains = ["*"]', 'sender_domains = ["*", "example.org"]', 'transport = "mx"')
    assert only_error(tmp_path, text).key == "routes[0].sender_domains[0]"


def test_route_needs_domains_and_a_transport(tmp_path: Path) -> None:
    text = route('transport = "mx"') + route('domains = ["*"]')
    errors = errors_of(tmp_path, text)
    assert [(p.key, p.line) for p in errors] == [("routes[0]", 1), ("routes[1]", 3)]
    assert 'has no "domains" key; add one, like domains = ["example.org"' in errors[0].message
    assert 'has no "transport" key' in errors[1].message
    problem = only_error(tmp_path, route("domains = []", 'transport = "mx"'))
    assert problem.key == "routes[0].domains"
    assert "at least one domain" in problem.message


def test_unknown_transport_lists_the_choices(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "relay"'))
    assert problem.key == "routes[0].transport"
    assert '"mx", "smarthost", "reject", "hold", "capture"' in problem.message
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "mx"', 'tls = "yes"'))
    assert '"none", "opportunistic", "required", "verify", "implicit"' in problem.message


def test_routes_written_as_a_single_table_or_an_empty_list_are_explained(
    tmp_path: Path,
) -> None:
    problem = only_error(tmp_path, '[routes]\ndomains = ["*"]\ntransport = "mx"\n')
    assert problem.key == "routes" and "[[routes]]" in problem.message
    problem = only_error(tmp_path, "routes = []\n")
    assert problem.key == "routes" and "no route" in problem.message


def test_unknown_key_in_routes_suggests_the_right_one(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "mx"', 'host = ["a:25"]'))
    assert (problem.key, problem.line) == ("routes[0].host", 4)
    assert 'did you mean "hosts"?' in problem.message


# --- smart hosts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (
            "smtp.example.net",
            '"smtp.example.net" has no port; add one after a colon, like "smtp.example.net:587"',
        ),
        ("[2001:db8::25]", 'like "[2001:db8::25]:587"'),
        ("2001:db8::25:587", "square brackets"),
        ("smtp.example.net:0", "from 1 to 65535"),
        ("smtp.example.net:smtp", "from 1 to 65535"),
        ("[192.0.2.1]:25", "only for IPv6"),
        ("smtp_relay.example.net:587", "not a valid host name"),
        (":587", "the host name before the colon is empty"),
    ],
)
def test_bad_smart_host_is_explained(tmp_path: Path, entry: str, words: str) -> None:
    text = route('domains = ["*"]', 'transport = "smarthost"', f'hosts = ["{entry}"]')
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("routes[0].hosts[0]", 4)
    assert words in problem.message


def test_smarthost_needs_hosts_and_other_transports_take_none(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "smarthost"'))
    assert problem.key == "routes[0]"
    assert "needs hosts" in problem.message and '"smtp.example.net:587"' in problem.message
    problem = only_error(
        tmp_path, route('domains = ["*"]', 'transport = "smarthost"', "hosts = []")
    )
    assert problem.key == "routes[0].hosts"
    text = route('domains = ["*"]', 'transport = "mx"', 'hosts = ["smtp.example.net:25"]')
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("routes[0].hosts", 4)
    assert 'only used with transport = "smarthost"' in problem.message
    problem = only_error(
        tmp_path, route('domains = ["*"]', 'transport = "mx"', "round_robin = true")
    )
    assert problem.key == "routes[0].round_robin"


def test_password_file_and_username_log_in(tmp_path: Path) -> None:
    pw = password_file(tmp_path, "s3cret  \r\nsecond line\n")
    text = smarthost('username = "relay"', f"password_file = '{pw}'")
    [smart] = load_config(write(tmp_path, text)).routes
    assert smart.username == "relay" and smart.password_file == pw
    assert read_route_password(smart) == "s3cret  "
    assert "s3cret" not in repr(smart)
    assert read_route_password(DEFAULT_ROUTE) is None
    pw.unlink()
    with pytest.raises(ValueError, match="does not exist"):
        read_route_password(smart)


def test_delivery_reads_the_password_exactly_as_the_loader_checked_it(tmp_path: Path) -> None:
    """One reading of the password file for the loader and for delivery: the first line up
    to its line end (U+2028 is no line end in a file), and a file emptied since the config
    loaded is an error saying so, never an empty password sent to the smart host."""
    pw = password_file(tmp_path, "pass\u2028word\nsecond line\n")
    text = smarthost('username = "relay"', f"password_file = '{pw}'")
    [smart] = load_config(write(tmp_path, text)).routes
    credentials = load_credentials(smart)
    assert credentials is not None
    assert credentials.password == read_route_password(smart) == "pass\u2028word"
    assert load_credentials(DEFAULT_ROUTE) is None
    pw.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_credentials(smart)


def test_password_env_must_be_set_when_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = smarthost('username = "relay"', 'password_env = "RELAYBOX_TEST_PASSWORD"')
    monkeypatch.delenv("RELAYBOX_TEST_PASSWORD", raising=False)
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("routes[0].password_env", 7)
    assert "the environment variable RELAYBOX_TEST_PASSWORD is not set" in problem.message
    monkeypatch.setenv("RELAYBOX_TEST_PASSWORD", "")
    assert "set but empty" in only_error(tmp_path, text).message
    monkeypatch.setenv("RELAYBOX_TEST_PASSWORD", "from-the-environment")
    [smart] = load_config(write(tmp_path, text)).routes
    assert smart.password_env == "RELAYBOX_TEST_PASSWORD"
    assert read_route_password(smart) == "from-the-environment"
    monkeypatch.delenv("RELAYBOX_TEST_PASSWORD")
    with pytest.raises(ValueError, match="RELAYBOX_TEST_PASSWORD is not set"):
        read_route_password(smart)


def test_password_written_into_password_env_is_not_repeated(tmp_path: Path) -> None:
    text = smarthost('username = "relay"', 'password_env = "Summer 2024!"')
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].password_env"
    assert "not the password itself" in problem.message
    assert "Summer" not in str(problem)


def test_password_in_the_config_file_is_refused_and_not_repeated(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, smarthost('username = "relay"', 'password = "hunter2"'))
    assert [(p.key, p.line) for p in errors] == [
        ("routes[0].username", 6),
        ("routes[0].password", 7),
    ]
    assert "password_file" in errors[1].message and "password_env" in errors[1].message
    assert not any("hunter2" in str(problem) for problem in errors)


def test_password_file_and_password_env_exclude_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYBOX_TEST_PASSWORD", "x")
    pw = password_file(tmp_path)
    text = smarthost(
        'username = "relay"', f"password_file = '{pw}'", 'password_env = "RELAYBOX_TEST_PASSWORD"'
    )
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].password_env"
    assert "both set" in problem.message


def test_username_and_password_need_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = only_error(tmp_path, smarthost('username = "relay"'))
    assert problem.key == "routes[0].username"
    assert "needs a password" in problem.message
    pw = password_file(tmp_path)
    problem = only_error(tmp_path, smarthost(f"password_file = '{pw}'"))
    assert problem.key == "routes[0].password_file"
    assert 'needs username = "..." too' in problem.message
    monkeypatch.setenv("RELAYBOX_TEST_PASSWORD", "x")
    problem = only_error(tmp_path, smarthost('password_env = "RELAYBOX_TEST_PASSWORD"'))
    assert problem.key == "routes[0].password_env"


def test_log_in_is_only_for_smart_hosts(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    text = route('domains = ["*"]', 'transport = "mx"', 'username = "u"', f"password_file = '{pw}'")
    errors = errors_of(tmp_path, text)
    assert [p.key for p in errors] == ["routes[0].username", "routes[0].password_file"]
    assert "only done at a smart host" in errors[0].message


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "is empty"), ("\nsecret\n", "is empty"), ("se\x00cret\n", "control character")],
)
def test_unusable_password_file_is_explained(tmp_path: Path, content: str, words: str) -> None:
    pw = password_file(tmp_path, content)
    problem = only_error(tmp_path, smarthost('username = "relay"', f"password_file = '{pw}'"))
    assert problem.key == "routes[0].password_file"
    assert words in problem.message
    assert "secret" not in problem.message


def test_missing_password_file_is_an_error(tmp_path: Path) -> None:
    text = smarthost('username = "relay"', "password_file = 'nowhere.password'")
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].password_file"
    assert f"the file {tmp_path / 'nowhere.password'} does not exist" in problem.message


def test_password_file_readable_by_everyone_is_warned_about(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    pw.chmod(0o644)
    [warning] = warnings_of(tmp_path, smarthost('username = "relay"', f"password_file = '{pw}'"))
    assert warning.key == "routes[0].password_file"
    assert "chmod 600" in warning.message


def test_ca_file_is_loaded_and_checked(tmp_path: Path) -> None:
    certificate, _ = make_pair(tmp_path)
    [smart] = load_config(write(tmp_path, smarthost(f"ca_file = '{certificate}'"))).routes
    assert smart.ca_file == certificate
    problem = only_error(tmp_path, smarthost("ca_file = 'missing-ca.pem'"))
    assert problem.key == "routes[0].ca_file"
    assert "does not exist" in problem.message and "CA certificates" in problem.message
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    problem = only_error(tmp_path, smarthost(f"ca_file = '{junk}'"))
    assert "holds no certificate in PEM format" in problem.message


def test_ca_file_needs_a_verifying_tls_mode(tmp_path: Path) -> None:
    certificate, _ = make_pair(tmp_path)
    problem = only_error(tmp_path, smarthost(f"ca_file = '{certificate}'", tls="opportunistic"))
    assert problem.key == "routes[0].ca_file"
    assert 'set tls = "verify"' in problem.message


# --- reject routes, limits and sender rewriting ---------------------------------------------


def test_reject_text_is_only_for_reject_routes(tmp_path: Path) -> None:
    text = route('domains = ["*"]', 'transport = "mx"', 'reject_text = "Go away"')
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].reject_text"
    assert 'only used with transport = "reject"' in problem.message


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "must not be empty"), ("Zurück", "ASCII"), ("x" * 401, "keep it under 400")],
)
def test_bad_reject_text_is_explained(tmp_path: Path, text: str, words: str) -> None:
    lines = ('domains = ["x.example"]', 'transport = "reject"', f'reject_text = "{text}"')
    problem = only_error(tmp_path, route(*lines) + CATCH_ALL)
    assert problem.key == "routes[0].reject_text"
    assert words in problem.message


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("max_messages_per_minute = -1", "between 0 and 100000"),
        ("max_connections = 0", "between 1 and 1000"),
    ],
)
def test_route_limits(tmp_path: Path, setting: str, words: str) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "mx"', setting))
    assert problem.key == "routes[0]." + setting.split(" ")[0]
    assert words in problem.message


def test_rewrite_senders_are_loaded_and_applied(tmp_path: Path) -> None:
    text = smarthost(
        "rewrite_senders = { "
        '"Scanner@Printer.local" = "scanner@example.org", '
        '"@printer.local" = "noreply@example.org" }'
    )
    [smart] = load_config(write(tmp_path, text)).routes
    assert smart.rewrite_senders == (
        ("scanner@printer.local", "scanner@example.org"),
        ("@printer.local", "noreply@example.org"),
    )
    assert smart.rewrite_sender("scanner@printer.local") == "scanner@example.org"
    assert smart.rewrite_sender("SCANNER@printer.LOCAL") == "scanner@example.org"
    assert smart.rewrite_sender("copier@printer.local") == "noreply@example.org"
    assert smart.rewrite_sender("alice@example.org") == "alice@example.org"
    assert smart.rewrite_sender("") == ""
    assert DEFAULT_ROUTE.rewrite_sender("scanner@printer.local") == "scanner@printer.local"


def test_rewrite_senders_as_a_sub_table(tmp_path: Path) -> None:
    text = smarthost() + '[routes.rewrite_senders]\n"@printer.local" = "noreply@example.org"\n'
    [smart] = load_config(write(tmp_path, text)).routes
    assert smart.rewrite_senders == (("@printer.local", "noreply@example.org"),)


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ('"printer.local" = "a@example.org"', "printer.local", "neither an address nor an @"),
        ('"@" = "a@example.org"', "@", "the domain after @ is empty"),
        ('"@printer_1.local" = "a@example.org"', "@printer_1.local", "not a valid host name"),
        ('"a b@printer.local" = "a@example.org"', "a b@printer.local", "not a valid address"),
        ('"@printer.local" = "@example.org"', "@printer.local", "must be a whole address"),
        ('"@printer.local" = "example.org"', "@printer.local", "must be a whole address"),
        ('"@printer.local" = "a@@example.org"', "@printer.local", "not a valid address"),
        ('"@printer.local" = 5', "@printer.local", "an address in quotes"),
    ],
)
def test_bad_rewrite_senders_entry_is_explained(
    tmp_path: Path, entry: str, key: str, words: str
) -> None:
    problem = only_error(tmp_path, smarthost(f"rewrite_senders = {{ {entry} }}"))
    assert (problem.key, problem.line) == (f"routes[0].rewrite_senders.{key}", 6)
    assert words in problem.message


def test_rewrite_senders_differing_only_in_case_are_an_error(tmp_path: Path) -> None:
    text = smarthost(
        'rewrite_senders = { "a@x.local" = "a@example.org", "A@X.local" = "b@example.org" }'
    )
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].rewrite_senders.A@X.local"
    assert "listed twice" in problem.message
    problem = only_error(tmp_path, smarthost('rewrite_senders = ["a@x.local"]'))
    assert "a table in curly brackets" in problem.message


# --- route warnings --------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["none", "opportunistic", "required"])
def test_password_without_a_verified_server_is_warned_about(tmp_path: Path, tls: str) -> None:
    pw = password_file(tmp_path)
    [warning] = warnings_of(
        tmp_path, smarthost('username = "relay"', f"password_file = '{pw}'", tls=tls)
    )
    assert (warning.key, warning.line) == ("routes[0].tls", 5)
    assert (
        "the password would be sent where it can be intercepted or to an unverified server; "
        'use tls = "verify"'
    ) in warning.message


@pytest.mark.parametrize("tls", ["verify", "implicit"])
def test_password_to_a_verified_server_is_fine(tmp_path: Path, tls: str) -> None:
    pw = password_file(tmp_path)
    port = 465 if tls == "implicit" else 587
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        f'hosts = ["smtp.example.net:{port}"]',
        f'tls = "{tls}"',
        'username = "relay"',
        f"password_file = '{pw}'",
    )
    assert warnings_of(tmp_path, text) == []


def test_password_warning_points_at_username_when_tls_is_the_default(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["smtp.example.net:587"]',
        'username = "relay"',
        f"password_file = '{pw}'",
    )
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("routes[0].username", 5)
    assert 'tls = "opportunistic"' in warning.message


def test_smarthost_without_encryption_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, smarthost(tls="none"))
    assert warning.key == "routes[0].tls"
    assert "sent unencrypted" in warning.message


def test_port_and_tls_mode_that_do_not_fit_are_warned_about(tmp_path: Path) -> None:
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["a.example.net:465", "b.example.net:587"]',
    )
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "routes[0].hosts[0]"
    assert 'set tls = "implicit"' in warning.message
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["a.example.net:587"]',
        'tls = "implicit"',
    )
    [warning] = warnings_of(tmp_path, text)
    assert "port 587 starts without TLS" in warning.message
    [warning] = warnings_of(
        tmp_path, route('domains = ["*"]', 'transport = "mx"', 'tls = "implicit"')
    )
    assert "MX servers on port 25 expect STARTTLS" in warning.message


def test_route_after_a_catch_all_is_warned_about(tmp_path: Path) -> None:
    text = CATCH_ALL + route('domains = ["*.test"]', 'transport = "capture"')
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("routes[1]", 4)
    assert "can never be used: routes[0] (line 1) comes first" in warning.message


@pytest.mark.parametrize(
    ("earlier", "later", "hidden"),
    [
        (['domains = ["*.example.org"]'], ['domains = ["a.example.org"]'], True),
        (['domains = ["*.example.org"]'], ['domains = ["*.a.example.org"]'], True),
        (['domains = ["*.example.org"]'], ['domains = ["example.org"]'], False),
        (['domains = ["example.org"]'], ['domains = ["example.org", "example.net"]'], False),
        (
            ['domains = ["example.org"]'],
            ['domains = ["example.org"]', 'sender_domains = ["corp.example"]'],
            True,
        ),
        (
            ['domains = ["example.org"]', 'sender_domains = ["corp.example"]'],
            ['domains = ["example.org"]'],
            False,
        ),
        (
            ['domains = ["example.org"]', 'sender_domains = ["*.corp.example"]'],
            ['domains = ["example.org"]', 'sender_domains = ["a.corp.example"]'],
            True,
        ),
    ],
)
def test_route_hidden_by_an_earlier_one_is_warned_about(
    tmp_path: Path, earlier: list[str], later: list[str], hidden: bool
) -> None:
    text = route(*earlier, 'transport = "hold"') + route(*later, 'transport = "hold"')
    warnings = warnings_of(tmp_path, text + CATCH_ALL)
    assert [w.key for w in warnings] == (["routes[1]"] if hidden else [])


def test_routes_without_a_catch_all_are_warned_about(tmp_path: Path) -> None:
    text = route('domains = ["example.org"]', 'transport = "mx"')
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("routes", 1)
    assert "mail to other domains will be refused at RCPT with 550 5.7.1" in warning.message
    # A "*" route for some senders only does not catch everything.
    text = route('domains = ["*"]', 'sender_domains = ["corp.example"]', 'transport = "mx"')
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "routes"


def test_settings_a_reject_or_capture_route_does_not_use_are_warned_about(
    tmp_path: Path,
) -> None:
    text = route(
        'domains = ["*.test"]', 'transport = "capture"', 'tls = "verify"', "max_connections = 3"
    )
    warnings = warnings_of(tmp_path, text + CATCH_ALL)
    assert [w.key for w in warnings] == ["routes[0].tls", "routes[0].max_connections"]
    assert 'transport = "capture" sends nothing on' in warnings[0].message


def test_round_robin_over_one_host_and_too_many_connections_are_warned_about(
    tmp_path: Path,
) -> None:
    text = smarthost("round_robin = true", "max_connections = 60")
    warnings = warnings_of(tmp_path, text)
    assert [w.key for w in warnings] == ["routes[0].round_robin", "routes[0].max_connections"]
    assert "only one host" in warnings[0].message
    assert "[delivery] max_connections (50)" in warnings[1].message


# --- matching --------------------------------------------------------------------------------


def test_matches_exact_wildcard_and_star() -> None:
    exact = RouteConfig(domains=("example.org",), transport="mx")
    assert exact.matches("example.org", "")
    assert exact.matches("EXAMPLE.Org", "x.example")
    assert not exact.matches("mail.example.org", "")
    assert not exact.matches("notexample.org", "")
    wildcard = RouteConfig(domains=("*.example.org",), transport="mx")
    assert wildcard.matches("mail.example.org", "")
    assert wildcard.matches("a.b.Example.ORG", "")
    assert not wildcard.matches("example.org", "")  # the apex needs its own entry
    assert not wildcard.matches("badexample.org", "")
    star = RouteConfig(domains=("*",), transport="mx")
    assert star.matches("anything.example", "")
    assert star.matches("", "")


def test_matches_sender_domains() -> None:
    corp = RouteConfig(
        domains=("*",), sender_domains=("corp.example", "*.corp.example"), transport="smarthost"
    )
    assert corp.matches("example.org", "corp.example")
    assert corp.matches("example.org", "Branch.Corp.Example")
    assert not corp.matches("example.org", "other.example")
    assert not corp.matches("example.org", "")  # the null sender has no domain
    anyone = RouteConfig(domains=("*",), sender_domains=("*",), transport="mx")
    assert anyone.matches("example.org", "")


def test_route_for_takes_the_first_match() -> None:
    capture = RouteConfig(domains=("*.test",), transport="capture")
    corp = RouteConfig(domains=("*",), sender_domains=("corp.example",), transport="smarthost")
    reject = RouteConfig(domains=("competitor.example",), transport="reject")
    mx = RouteConfig(domains=("*",), transport="mx")
    config = Config(routes=(capture, corp, reject, mx))
    assert config.route_for("a@app.test", "me@corp.example") is capture
    assert config.route_for("a@example.org", "me@corp.example") is corp
    assert config.route_for("a@competitor.example", "me@corp.example") is corp
    assert config.route_for("a@competitor.example", "me@home.example") is reject
    assert config.route_for("a@example.org", "") is mx
    assert config.route_for("postmaster", "") is mx


def test_route_for_is_none_when_nothing_matches() -> None:
    config = Config(routes=(RouteConfig(domains=("example.org",), transport="mx"),))
    assert config.route_for("a@example.org", "b@example.net") is not None
    assert config.route_for("a@example.net", "b@example.org") is None
    assert config.route_for("postmaster", "") is None
    assert default_config().route_for("anyone@anywhere.example", "") is DEFAULT_ROUTE


def test_sample_route_examples_work_when_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing the # from every example [[routes]] line gives a valid config whose only
    warning is that the live "*" block after the smart host example is never used."""
    monkeypatch.setenv("PROVIDER_PASSWORD", "x")
    certificate, _ = make_pair(tmp_path)
    pw = password_file(tmp_path)
    text = sample_config_text()
    routes = text[text.index("\n# [[routes]]\n") :]
    examples = "\n".join(
        line[2:] if re.match(r"# ?(\[\[routes\]\]|\w+ = )", line) else line
        for line in routes.splitlines()
    )
    examples = examples.replace("/etc/relaybox/provider-ca.pem", str(certificate))
    examples = examples.replace("/etc/relaybox/smarthost.password", str(pw))
    config = load_config(write(tmp_path, examples))
    assert [r.transport for r in config.routes] == [
        "smarthost",
        "reject",
        "capture",
        "smarthost",
        "mx",
    ]
    [warning] = check_config(write(tmp_path, examples))[1]
    assert warning.key == "routes[4]"
    assert "can never be used" in warning.message
