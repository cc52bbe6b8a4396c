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

from relaybox.certificates import generate_self_signed
from relaybox.config import (
    AuthConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    Problem,
    ServerConfig,
    SocketAddress,
    UserConfig,
    check_config,
    check_user_name,
    default_config,
    load_config,
    sample_config_text,
)
from relaybox.passwords import hash_password


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
