"""Checking `[[users]]` (names, password hashes, allowed senders) and the `[auth]` table."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybox.config import (
    AuthConfig,
    UserConfig,
    check_user_name,
    default_config,
    load_config,
)

from .support.configs import (
    HASH,
    errors_of,
    only_error,
    user_block,
    warnings_of,
    write,
)

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
