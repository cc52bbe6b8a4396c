"""Server TLS: SSL contexts for the listeners, reloaded when the certificate files change, and
the self-signed certificate `relaybox init` makes so that STARTTLS works out of the box.

A listener keeps one `ssl.SSLContext` for its life; when the certificate or key file changes
(a renewal by certbot, say) the new pair is first tried in a throw-away context in a thread and,
only if it loads, put into the live context, so new connections get the new certificate and a
broken renewal leaves the old one in service.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relaybox.config.keys import refuse_passphrase, server_context

__all__ = ["ServerCertificate", "generate_self_signed"]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass
class ServerCertificate:
    """The live context of one certificate/key pair and what the files looked like at load."""

    certificate: Path
    private_key: Path
    context: ssl.SSLContext
    _stamps: tuple[tuple[int, int, int], tuple[int, int, int]]

    @classmethod
    def load(cls, certificate: Path, private_key: Path) -> ServerCertificate:
        """Load the pair (blocking: call from a thread or at start-up)."""
        stamps = (_stamp(certificate), _stamp(private_key))
        return cls(certificate, private_key, server_context(certificate, private_key), stamps)

    def changed(self) -> bool:
        """Whether either file differs from what was loaded (blocking: a stat each)."""
        try:
            return (_stamp(self.certificate), _stamp(self.private_key)) != self._stamps
        except OSError:
            return False  # mid-renewal, a file may be missing for a moment: keep serving

    def try_new_pair(self) -> str | None:
        """Check the files on disk load as a pair; returns the error, or None when they do.

        Blocking (reads the files): call from a thread, then `apply_new_pair()` on the loop.
        """
        try:
            server_context(self.certificate, self.private_key)
        except (OSError, ssl.SSLError) as exc:
            return str(exc)
        return None

    def apply_new_pair(self) -> None:
        """Load the files into the live context; new handshakes use them from now on."""
        stamps = (_stamp(self.certificate), _stamp(self.private_key))
        self.context.load_cert_chain(self.certificate, self.private_key, password=refuse_passphrase)
        self._stamps = stamps


def generate_self_signed(
    hostname: str, certificate: Path, private_key: Path, days: int = 3650
) -> None:
    """Write a self-signed certificate for `hostname` and its key (mode 0600).

    Good enough for STARTTLS between the office's own machines and this relay (mail clients
    encrypt without verifying, or are told to trust it); use a real certificate for submission
    from outside.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    try:
        alt_names = [x509.IPAddress(ipaddress.ip_address(hostname))]
    except ValueError:
        pass
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    private_key.parent.mkdir(parents=True, exist_ok=True)
    certificate.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
