"""DKIM keys for `relaybox dkim keygen`: make a key, write it safely, and say what DNS record
publishes it.

Reading and checking a key file is the config's job (`relaybox.config.keys`), so that a key
that cannot sign is found when the config loads; this module only makes new ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relaybox.config.keys import Algorithm, DkimKey

__all__ = ["dns_record", "generate", "private_pem", "txt_strings", "write_private_key"]


def generate(algorithm: Algorithm, bits: int = 2048) -> DkimKey:
    """A new key (RSA of `bits`, or ed25519)."""
    if algorithm == "rsa-sha256":
        if bits < 2048:
            raise ValueError(f"{bits} bits is too short; DKIM RSA keys should be 2048 or more")
        if bits > 4096:
            raise ValueError(
                f"{bits} bits is more than receivers must handle (RFC 8301: up to 4096)"
            )
        return DkimKey(algorithm, rsa.generate_private_key(public_exponent=65537, key_size=bits))
    return DkimKey(algorithm, ed25519.Ed25519PrivateKey.generate())


def private_pem(key: DkimKey) -> bytes:
    """The private key as PEM: PKCS#1 for RSA (what dkimpy and OpenDKIM read), PKCS#8 for
    ed25519."""
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key.key, rsa.RSAPrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_private_key(key: DkimKey, path: Path) -> None:
    """Write the key readable by its owner only (0600), never over an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem(key))


def txt_strings(value: str, size: int = 255) -> list[str]:
    """A TXT record's value cut into character-strings of at most `size` octets (RFC 1035)."""
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def dns_record(domain: str, selector: str, key: DkimKey) -> str:
    """The zone-file line that publishes `key`: one TXT record, its value in quoted strings."""
    k = "rsa" if key.algorithm == "rsa-sha256" else "ed25519"
    strings = [f"v=DKIM1; k={k}; ", *txt_strings(f"p={key.public_value()}")]
    quoted = " ".join(f'"{s}"' for s in strings)
    return f"{selector}._domainkey.{domain.rstrip('.')}. IN TXT {quoted}"
