"""The key material a config names, read and checked when the config loads: DKIM private keys
and listeners' TLS certificate pairs, so that a config that loads is one whose keys work.

DKIM keys are read with `cryptography` (RSA in PEM, PKCS#1 as `keygen` writes it or PKCS#8;
ed25519 in PEM or dkimpy's raw base64 form); a key that cannot sign is found now, not when the
first message is delivered. Making new keys is `relaybox.signing.keys`'s job.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "ALGORITHMS",
    "check_domain",
    "check_selector",
    "DkimKey",
    "DkimKeyError",
    "load_private_key",
    "normalize_algorithm",
    "published_key",
    "refuse_passphrase",
    "server_context",
]

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")
_SHORT = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
MIN_RSA_BITS = 1024
"""Below this a key is refused (RFC 8301 §3.2: verifiers must not accept shorter)."""


class DkimKeyError(ValueError):
    """A key file that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class DkimKey:
    """A private key read from its file."""

    algorithm: Algorithm
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def bits(self) -> int:
        return self.key.key_size if isinstance(self.key, rsa.RSAPrivateKey) else 256

    def public_value(self) -> str:
        """The `p=` value of the DNS record: base64 of the public key (RFC 6376 §3.6.1;
        SubjectPublicKeyInfo for RSA, the raw 32 bytes for ed25519 as RFC 8463 §4)."""
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            der = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(der).decode("ascii")

    def matches(self, public: PublicKey) -> bool:
        """Whether `public` (say, the key published in DNS) is this key's public half."""
        mine = self.key.public_key()
        if isinstance(mine, rsa.RSAPublicKey) and isinstance(public, rsa.RSAPublicKey):
            return mine.public_numbers() == public.public_numbers()
        if isinstance(mine, ed25519.Ed25519PublicKey) and isinstance(
            public, ed25519.Ed25519PublicKey
        ):
            raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
            return mine.public_bytes(*raw) == public.public_bytes(*raw)
        return False


PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def published_key(value: str, key_type: str = "rsa") -> PublicKey:
    """The public key in a DKIM record's `p=` value, as a verifier reads it.

    Args:
        value: the base64 of `p=` (whitespace allowed, RFC 6376 §3.6.1); not empty (an
            empty `p=` is a revoked key, for the caller to report).
        key_type: the record's `k=`: `rsa` (SubjectPublicKeyInfo, or the bare PKCS#1
            RSAPublicKey some tools publish) or `ed25519` (the raw 32 bytes, RFC 8463 §4).

    Raises:
        DkimKeyError: the value is not base64 or not a key of that type, in plain words.
    """
    try:
        der = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DkimKeyError("the p= value is not base64") from None
    if key_type == "ed25519":
        if len(der) != 32:
            raise DkimKeyError(f"an ed25519 p= value is 32 bytes, not {len(der)}")
        return ed25519.Ed25519PublicKey.from_public_bytes(der)
    if key_type != "rsa":
        raise DkimKeyError(f"k={key_type} is not a key type DKIM knows (rsa or ed25519)")
    for load in (serialization.load_der_public_key, _load_pkcs1_public):
        try:
            key = load(der)
        except ValueError:
            continue
        if isinstance(key, rsa.RSAPublicKey):
            return key
    raise DkimKeyError("the p= value is not an RSA public key")


def _load_pkcs1_public(der: bytes) -> object:
    pem = b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der)
    return serialization.load_pem_public_key(pem + b"-----END RSA PUBLIC KEY-----\n")


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
MAX_KEY_FILE = 64 * 1024
"""A PEM private key is a few KB; anything bigger is not one (and is not read whole)."""


def check_selector(selector: str) -> str | None:
    """What is wrong with a selector, or None (the rule `[[dkim]]` and keygen share)."""
    if not SELECTOR.fullmatch(selector):
        return (
            f'"{selector}" is not a DNS name part: use letters, digits, "-" and dots, like "s2026"'
        )
    return None


def check_domain(domain: str) -> str | None:
    """What is wrong with a signing domain written as an ASCII name, or None."""
    if not _DOMAIN.fullmatch(domain) or len(domain) > 253:
        return f'"{domain}" is not a domain name like example.org'
    return None


def normalize_algorithm(name: str) -> Algorithm:
    """`rsa`/`rsa-sha256`/`ed25519`/`ed25519-sha256` -> the full name; ValueError otherwise."""
    full = _SHORT.get(name.strip().lower(), name.strip().lower())
    if full not in ALGORITHMS:
        raise ValueError(f"unknown DKIM algorithm {name!r}; use rsa-sha256 or ed25519-sha256")
    return full


def load_private_key(path: Path, algorithm: Algorithm) -> DkimKey:
    """Read and check a private key file; raises DkimKeyError saying what is wrong."""
    try:
        if not path.is_file():  # a FIFO or a device would hang or fill the memory
            if path.exists():
                raise DkimKeyError(f"{path}: not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
        if len(data) > MAX_KEY_FILE:
            raise DkimKeyError(f"{path}: larger than any key file ({MAX_KEY_FILE} bytes)")
    except FileNotFoundError:
        raise DkimKeyError(f"{path}: no such file (relaybox dkim keygen writes one)") from None
    except IsADirectoryError:
        raise DkimKeyError(f"{path}: is a folder, not a key file") from None
    except OSError as exc:
        raise DkimKeyError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    key: object
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise DkimKeyError(
                f"{path}: the key has a passphrase; relaybox needs it without"
            ) from None
        except ValueError as exc:
            raise DkimKeyError(f"{path}: not a PEM private key relaybox can read ({exc})") from None
    else:
        try:
            raw = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise DkimKeyError(f"{path}: neither PEM nor a base64 ed25519 key") from None
        if len(raw) not in (32, 64):
            raise DkimKeyError(f"{path}: a raw ed25519 key is 32 bytes of base64, not {len(raw)}")
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    if algorithm == "rsa-sha256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimKeyError(f"{path}: not an RSA key, but algorithm is rsa-sha256")
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(
                f"{path}: a {key.key_size}-bit RSA key is too short to sign with (receivers "
                f"ignore DKIM keys under {MIN_RSA_BITS} bits); make a 2048-bit one"
            )
        return DkimKey(algorithm, key)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"{path}: not an ed25519 key, but algorithm is ed25519-sha256")
    return DkimKey(algorithm, key)


def server_context(certificate: Path, private_key: Path) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, the system's default ciphers, no client certs.

    Raises ssl.SSLError or OSError when the files are missing, unreadable or do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE  # mail clients do not present certificates
    context.load_cert_chain(certificate, private_key, password=refuse_passphrase)
    return context


def refuse_passphrase() -> str:
    """An encrypted key would make OpenSSL prompt on the terminal and hang the engine."""
    raise ssl.SSLError("the private key is protected by a passphrase; relaybox needs it without")
