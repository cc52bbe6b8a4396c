"""Checks of the `[[users]]` blocks: login names (unique), password hashes and the senders
each user may use; checking a password at login is `inbound.auth`'s job.
"""

from __future__ import annotations

import shlex
import unicodedata
from typing import Any

from relaybox.config.model import ListenerConfig, UserConfig
from relaybox.config.passwords import check_hash_format
from relaybox.config.problems import ONE_LINE, Report
from relaybox.config.readers import (
    address_problem,
    host_name_problem,
    is_ip_address,
    list_of,
    read_str,
)
from relaybox.config.rules import example_of
from relaybox.config.tables import blocks_of, read_table, then

__all__ = ["check_user_name", "read_users", "users_warnings"]


def read_users(report: Report, data: dict[str, Any]) -> tuple[UserConfig, ...]:
    """The `[[users]]` blocks; none when the file has none."""
    blocks = blocks_of(
        report,
        data,
        "users",
        noun="user",
        shape="must be [[users]] blocks, one per user, each with its own name = ... and "
        "password_hash = ... lines (relaybox passwd NAME prints one)",
    )
    if not blocks:
        return ()
    readers = {
        "name": then(read_str, _user_name),
        "password_hash": _password_hash_text,
        "allowed_senders": list_of(_sender, example_of(UserConfig, "allowed_senders")),
    }
    built: list[tuple[int, UserConfig]] = []
    for index, block in enumerate(blocks):
        prefix = f"users[{index}]"
        user = read_table(report, prefix, UserConfig, block, readers, block="users")
        hash_ok = _password_hash(report, prefix, block)
        if user is not None and hash_ok:
            built.append((index, user))
    # Judged on every usable name, so a duplicate is reported next to other mistakes.
    names = [
        (index, block["name"])
        for index, block in enumerate(blocks)
        if isinstance(block.get("name"), str) and check_user_name(block["name"]) is None
    ]
    _duplicate_users(report, names)
    for index, user in built:
        if not user.allowed_senders and not _is_address(user.name):
            report.warn(
                f"users[{index}]",
                f"{user.name} may not send as any address: add allowed_senders, like "
                f"allowed_senders = {example_of(UserConfig, 'allowed_senders')} (a user whose "
                "name is an address, like alice@example.org, may always send as that address)",
            )
    return tuple(user for _, user in built)


def check_user_name(name: str) -> str | None:
    """What is wrong with a `[[users]]` login name, or None when it is usable.

    The rule `[[users]] name` is checked with, for `relaybox passwd NAME` to refuse a name
    before asking for a password. The message reads after the name's key, as in
    `users[0].name: must not be empty; ...`.
    """
    if not name:
        return 'must not be empty; write the name the mail program logs in with, like "alice"'
    for char in name:
        if char == " ":
            bad = "a space"
        elif char == "\t":
            bad = "a tab"
        elif char in "\r\n":
            bad = "a line break"
        elif char.isspace() or unicodedata.category(char).startswith("C"):
            bad = f"the invisible character U+{ord(char):04X}"
        else:
            continue
        shown = name.translate(ONE_LINE)
        return (
            f'"{shown}" contains {bad}; a user name may not hold spaces, line breaks or '
            'invisible characters. Use a name like "alice" or "alice@example.org"'
        )
    return None


def _is_address(name: str) -> bool:
    """Whether a user name is itself a valid email address (so the user may send as it)."""
    return "@" in name and address_problem(name) is None


def users_warnings(
    report: Report, listeners: tuple[ListenerConfig, ...], users: tuple[UserConfig, ...]
) -> None:
    """Settings that are each valid but do not work together."""
    if users:
        return
    for index, listener in enumerate(listeners):
        if listener.role == "submission":
            report.warn(
                f"listeners[{index}].role",
                "this submission listener has no [[users]] to log in with, so nobody "
                "can send mail through it; add a [[users]] block for each person "
                "(relaybox passwd NAME prints one)",
            )


def _duplicate_users(report: Report, names: list[tuple[int, str]]) -> None:
    """Names are case-sensitive: the same name twice is an error, the same name in
    another case a warning (two logins an admin will probably mix up)."""
    exact: dict[str, int] = {}
    folded: dict[str, tuple[int, str]] = {}
    for index, name in names:
        key = f"users[{index}].name"
        if name in exact:
            report.error(
                key,
                f'the user "{name}" is already defined in users[{exact[name]}]; '
                "each name may appear once, so remove or rename one of the blocks",
            )
            continue
        exact[name] = index
        lower = name.lower()
        if lower in folded:
            other_index, other = folded[lower]
            report.warn(
                key,
                f'"{name}" and "{other}" (users[{other_index}]) differ only in upper '
                "and lower case; they are two separate users, each with its own "
                "password, which is easy to mix up",
            )
        else:
            folded[lower] = (index, name)


def _user_name(report: Report, key: str, name: str) -> str | None:
    problem = check_user_name(name)
    if problem:
        report.error(key, problem)
        return None
    return name


def _password_hash_text(report: Report, key: str, value: object) -> str | None:
    """The type check of password_hash, which never repeats the value: it may be a
    password someone typed in by mistake."""
    if isinstance(value, str):
        return value
    report.error(
        key,
        "must be the hash that relaybox passwd NAME prints, in double quotes; "
        "relaybox never stores plain passwords",
    )
    return None


def _password_hash(report: Report, prefix: str, block: dict[str, Any]) -> bool:
    """Check a user's password_hash (its type is checked by `_password_hash_text`); False
    if wrong."""
    encoded = block.get("password_hash")
    if not isinstance(encoded, str):
        return True  # missing or not text: `read_table` has reported it
    name = block.get("name")
    command = "relaybox passwd " + (shlex.quote(name) if isinstance(name, str) and name else "NAME")
    key = f"{prefix}.password_hash"
    if not encoded.startswith("$"):
        report.error(
            key,
            "looks like a plain password, but relaybox never stores plain passwords; "
            f"run `{command}` and paste the password_hash line it prints instead",
        )
        return False
    problem = check_hash_format(encoded)
    if problem:
        report.error(key, problem.replace("relaybox passwd USER", command))
        return False
    return True


def _sender(report: Report, key: str, value: object) -> str | None:
    """One allowed_senders entry: a domain or an address, lower-cased."""
    example = 'write a domain like "example.org" or an address like "bob@example.net"'
    if not isinstance(value, str):
        report.type_error(key, 'text in quotes, like "example.org"', value)
        return None
    problem = None
    if not value.strip():
        problem = f"must not be empty; {example}"
    elif any(char.isspace() for char in value):
        problem = f'"{value}" contains a space; {example}'
    elif "*" in value:
        domain = value.rpartition("@")[2].lstrip("*.") or "example.org"
        problem = (
            f'"{value}": wildcards are not supported; "{domain}" allows every address '
            f"at {domain}, but not at its subdomains, which are listed one by one"
        )
    elif "<" in value or ">" in value:
        problem = f'"{value}": write the address without < and >, like "bob@example.net"'
    elif value.startswith("@"):
        problem = (
            f'"{value}": to allow every address at a domain, write just the domain, '
            f'like "{value[1:]}"'
        )
    elif "@" in value:
        problem = address_problem(value)
        if problem:
            problem = f"{problem}; {example}"
    elif is_ip_address(value):
        problem = f'"{value}" is an IP address; {example}'
    else:
        problem = host_name_problem(value)
        if problem:
            problem = f"{problem}; {example}"
    if problem:
        report.error(key, problem)
        return None
    return value.lower()
