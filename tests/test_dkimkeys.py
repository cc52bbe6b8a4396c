"""DKIM keys: `relaybox dkim keygen` output (key file, DNS record, [[dkim]] block), and the
config refusing at load time a key that could not sign."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relaybox.config import ConfigError, load_config, load_config_with_warnings
from relaybox.config.keys import load_private_key
from relaybox.signing.keys import dns_record, generate, private_pem, txt_strings

from .relayproc import Cli

RECORD = re.compile(r'^(\S+)\._domainkey\.(\S+)\. IN TXT ((?:"[^"]*" ?)+)$')
LISTENER = '[[listeners]]\nlisten = ["127.0.0.1:0"]\nallowed_networks = ["127.0.0.0/8"]\n'


def record_value(line: str) -> str:
    found = RECORD.match(line)
    assert found, line
    strings = re.findall(r'"([^"]*)"', found.group(3))
    assert all(len(s.encode()) <= 255 for s in strings), [len(s) for s in strings]
    return "".join(strings)


def config_with(tmp_path: Path, block: str) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n{LISTENER}\n{block}\n')
    return path


def test_keygen_writes_a_private_key_and_prints_the_record_and_block(
    tmp_path: Path,
    cli: Cli,
) -> None:
    key_path = tmp_path / "keys" / "example.org.s2026.key"
    result = cli("dkim", "keygen", "Example.ORG", "--selector", "s2026", "--out", key_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    lines = result.stdout.splitlines()
    (record,) = [line for line in lines if "IN TXT" in line]
    assert record.startswith("s2026._domainkey.example.org. IN TXT ")
    value = record_value(record)
    assert value.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(value.split("p=", 1)[1]))
    private = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]

    # The printed block, pasted into a config, loads.
    block = result.stdout[result.stdout.index("[[dkim]]") :]
    config = load_config(config_with(tmp_path, block))
    (entry,) = config.dkim
    assert (entry.domain, entry.selector, entry.private_key) == ("example.org", "s2026", key_path)
    assert cli("check-config", config_with(tmp_path, block)).stdout.strip() == "ok"

    # A zone made of that record verifies a message signed with that key (dkimpy).
    message = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"
    signed = dkim.sign(message, b"s2026", b"example.org", key_path.read_bytes()) + message

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2026._domainkey.example.org."
        return value.encode()

    assert dkim.verify(signed, dnsfunc=dns)

    again = cli("dkim", "keygen", "example.org", "--selector", "s2026", "--out", key_path)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_keygen_ed25519_and_its_short_name(
    tmp_path: Path,
    cli: Cli,
) -> None:
    key_path = tmp_path / "ed.key"
    result = cli(
        "dkim",
        "keygen",
        "example.org",
        "--selector",
        "ed1",
        "--algorithm",
        "ed25519",
        "--out",
        key_path,
    )
    assert result.returncode == 0, result.stderr
    (record,) = [line for line in result.stdout.splitlines() if "IN TXT" in line]
    value = record_value(record)
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(value.split("p=", 1)[1])) == 32
    assert 'algorithm = "ed25519-sha256"' in result.stdout
    key = load_private_key(key_path, "ed25519-sha256")
    assert key.public_value() == value.split("p=", 1)[1]


def test_keygen_without_out_writes_beside_the_config(
    tmp_path: Path,
    cli: Cli,
) -> None:
    config = config_with(tmp_path, "")
    result = cli("dkim", "keygen", "example.org", "--selector", "s1", "--config", config)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dkim" / "example.org.s1.key").exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--selector", "s1", "--bits", "1024"), "too short"),
        (("--selector", "s1", "--algorithm", "dsa"), "unknown DKIM algorithm"),
        (("--selector", "no spaces"), "not a DNS name part"),
        (("--selector", "s1", "--bits", "8192"), "up to 4096"),
        (("--selector", "s1", "--algorithm", "ed25519", "--bits", "4096"), "--bits is for RSA"),
    ],
)
def test_keygen_refuses_what_would_not_work(
    tmp_path: Path,
    cli: Cli,
    args: tuple[str, ...],
    error: str,
) -> None:
    result = cli("dkim", "keygen", "example.org", *args, "--out", tmp_path / "k.key")
    assert result.returncode == 2
    assert error in result.stderr
    assert not (tmp_path / "k.key").exists()


def test_keygen_refuses_a_domain_that_is_no_domain(
    tmp_path: Path,
    cli: Cli,
) -> None:
    """A domain like ../../x.org would also put the default key path outside dkim/."""
    config = config_with(tmp_path, "")
    for bad in ("../../evil.org", "exa_mple.org", "localhost"):
        result = cli("dkim", "keygen", bad, "--selector", "s1", "--config", config)
        assert result.returncode == 2, bad
        assert "not a domain name" in result.stderr
    assert not (tmp_path / "dkim").exists()
    assert not list(tmp_path.parent.glob("*.s1.key"))


def test_txt_strings_are_at_most_255_octets() -> None:
    value = "p=" + "A" * 600
    parts = txt_strings(value)
    assert [len(p) for p in parts] == [255, 255, 92] and "".join(parts) == value
    record = dns_record("example.org", "s", generate("rsa-sha256", 4096))
    assert record_value(record).startswith("v=DKIM1; k=rsa; p=")


# ---------------------------------------------------------------------- load-time checks


def write_key(path: Path, bits: int) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def block(
    key: Path | str, *, domain: str = "example.org", selector: str = "s1", **more: str
) -> str:
    extra = "".join(f'{k} = "{v}"\n' for k, v in more.items())
    return f'[[dkim]]\ndomain = "{domain}"\nselector = "{selector}"\nprivate_key = "{key}"\n{extra}'


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(config_with(tmp_path, text))
    return str(caught.value)


def test_a_missing_or_unusable_key_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    assert "dkim[0].private_key" in problems(tmp_path, block(tmp_path / "nope.key"))
    assert "no such file" in problems(tmp_path, block(tmp_path / "nope.key"))
    rsa_key = write_key(tmp_path / "rsa.key", 2048)
    text = problems(tmp_path, block(rsa_key, algorithm="ed25519-sha256"))
    assert "not an ed25519 key" in text
    os.mkfifo(tmp_path / "fifo.key")  # reading it would wait for a writer forever
    assert "not a regular file" in problems(tmp_path, block(tmp_path / "fifo.key"))
    (tmp_path / "junk.key").write_text("not a key\n")
    assert "neither PEM nor" in problems(tmp_path, block(tmp_path / "junk.key"))
    # A key under 1024 bits (cryptography will not make one: openssl does).
    made = subprocess.run(["openssl", "genrsa", "768"], capture_output=True, timeout=30)
    if made.returncode == 0:
        (tmp_path / "short.key").write_bytes(made.stdout)
        assert "too short" in problems(tmp_path, block(tmp_path / "short.key"))


def test_wildcards_and_duplicate_selectors_are_refused(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k.key", 2048)
    assert "signs for one domain" in problems(tmp_path, block(key, domain="*.example.org"))
    twice = block(key) + "\n" + block(key, domain="EXAMPLE.org")
    assert "already has a key under selector s1" in problems(tmp_path, twice)


def test_a_1024_bit_key_loads_with_a_warning(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k.key", 1024)
    config, warnings = load_config_with_warnings(config_with(tmp_path, block(key)))
    assert config.dkim[0].private_key == key
    assert any("1024-bit" in str(w) for w in warnings)
    # And dual signing: an ed25519 key beside it for the same domain.
    ed = tmp_path / "ed.key"
    ed.write_bytes(private_pem(generate("ed25519-sha256")))
    both = block(key) + "\n" + block(ed, selector="ed", algorithm="ed25519-sha256")
    assert [d.selector for d in load_config(config_with(tmp_path, both)).dkim] == ["s1", "ed"]
