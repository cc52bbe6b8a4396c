"""Checking smart host routes: hosts and ports, logging in with a password file or variable,
and the CA file."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybox.config import (
    DEFAULT_ROUTE,
    load_config,
    read_route_password,
)
from relaybox.outbound.routing import load_credentials

from .support.configs import (
    errors_of,
    make_pair,
    only_error,
    password_file,
    route,
    smarthost,
    warnings_of,
    write,
)


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
