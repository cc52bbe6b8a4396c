"""Config files for the config tests: write one, and check it for errors or warnings."""

from __future__ import annotations

from pathlib import Path

from relaybox.config import (
    Problem,
    check_config,
)
from relaybox.config.passwords import hash_password
from relaybox.inbound.certificates import generate_self_signed


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
