"""Checks of the TLS files a config names: a listener's certificate and private key (read,
matched as a pair, dates checked) and a route's CA bundle; making certificates is
`inbound.certificates`' job.
"""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path

from relaybox.config.problems import Report

__all__ = ["check_ca_file", "check_tls_pair", "read_pem"]

_MAX_PEM_BYTES = 1024 * 1024
"""Certificate and key files larger than this are not what they claim to be."""


def read_pem(
    report: Report,
    key: str,
    path: Path,
    missing: str = "relaybox init makes a self-signed certificate and key",
) -> bytes | None:
    """The start of a certificate or key file; None (reported) when it cannot be read.

    `missing` ends the message about a file that does not exist: how to get one."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            report.error(key, f"{path} is a folder; name the file inside it")
            return None
        if not stat.S_ISREG(mode):
            report.error(key, f"{path} is not an ordinary file")
            return None
        with path.open("rb") as file:
            data = file.read(_MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        report.error(
            key,
            f"the file {path} does not exist; check the path ({missing})",
        )
        return None
    except PermissionError:
        report.error(
            key,
            f"{path} cannot be read (permission denied); let the user relaybox runs as read it",
        )
        return None
    except OSError as exc:
        report.error(key, f"cannot read {path}: {exc.strerror or exc}")
        return None
    if len(data) > _MAX_PEM_BYTES:
        report.error(key, f"{path} is larger than 1 MB, too large for a certificate or key")
        return None
    return data


def check_tls_pair(report: Report, prefix: str, certificate: Path, private_key: Path) -> None:
    """Check that the listener at `prefix` has a PEM certificate and an unencrypted PEM key
    that OpenSSL loads as a pair, and warn when the certificate is not valid today."""
    cert_key, private_key_key = f"{prefix}.certificate", f"{prefix}.private_key"
    cert_pem = read_pem(report, cert_key, certificate)
    key_pem = read_pem(report, private_key_key, private_key)
    if cert_pem is None or key_pem is None:
        return
    usable = True
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        usable = False
        if b"PRIVATE KEY-----" in cert_pem:
            report.error(
                cert_key,
                f"{certificate} holds a private key, not a certificate; are certificate "
                "and private_key swapped?",
            )
        else:
            report.error(
                cert_key,
                f"{certificate} is not a certificate in PEM format (text starting with "
                '"-----BEGIN CERTIFICATE-----"); a binary .der or .cer file can be '
                "converted with: openssl x509 -inform der -in FILE -out cert.pem",
            )
    if b"PRIVATE KEY-----" not in key_pem:
        usable = False
        what = (
            "holds a certificate, not a private key"
            if b"-----BEGIN CERTIFICATE-----" in key_pem
            else 'is not a private key in PEM format (text starting with "-----BEGIN" '
            'and ending "PRIVATE KEY-----")'
        )
        report.error(private_key_key, f"{private_key} {what}")
    elif b"ENCRYPTED" in key_pem:
        # OpenSSL would stop and ask for the passphrase on the terminal, or fail oddly.
        usable = False
        report.error(
            private_key_key,
            f"{private_key} is protected by a passphrase, which relaybox cannot type "
            "in; save the key without one (openssl pkey -in FILE -out key.pem) and keep "
            "the file readable only by relaybox",
        )
    if not usable:
        return
    # Imported here: it pulls in `cryptography`, which configs without TLS never need.
    from relaybox.config.keys import server_context

    try:
        server_context(certificate, private_key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            message = (
                f"the certificate and private key do not match: {private_key} is not "
                f"the key of the certificate in {certificate}; name the key that was "
                "made together with this certificate"
            )
        else:
            message = (
                f"the certificate {certificate} and private key {private_key} cannot be "
                f"loaded together (OpenSSL says: {exc.reason or exc}); check that both "
                "files are complete and in PEM format"
            )
        report.error(private_key_key, message)
        return
    except OSError as exc:
        report.error(
            private_key_key,
            f"the certificate {certificate} and private key {private_key} cannot be "
            f"loaded: {exc.strerror or exc}",
        )
        return
    _certificate_dates(report, cert_key, certificate, cert_pem)


def _certificate_dates(report: Report, key: str, path: Path, pem: bytes) -> None:
    """Warn about a certificate that is not valid today: clients that check refuse it."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        when = f"expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    elif cert.not_valid_before_utc > now:
        when = f"is only valid from {cert.not_valid_before_utc:%Y-%m-%d}"
    else:
        return
    report.warn(
        key,
        f"the certificate in {path} {when}; mail programs that check certificates will "
        "refuse to connect. Renew it, or let relaybox init make a new self-signed pair",
    )


def check_ca_file(report: Report, key: str, path: Path) -> Path | None:
    """A route's `ca_file`: PEM CA certificates that OpenSSL can load; None once reported."""
    pem = read_pem(report, key, path, "it must be a PEM file of the CA certificates to trust")
    if pem is None:
        return None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        report.error(
            key,
            f"{path} holds no certificate in PEM format (text starting with "
            '"-----BEGIN CERTIFICATE-----"); name the CA certificate file of the smart host',
        )
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        report.error(
            key,
            f"the CA certificates in {path} cannot be loaded (OpenSSL says: "
            f"{exc.reason or exc}); check that the file is complete and in PEM format",
        )
        return None
    return path
