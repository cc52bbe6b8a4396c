"""SASL decoding for SMTP AUTH (RFC 4954): the PLAIN and LOGIN responses, from base64 to names.

Pure functions of the client's text; they raise `SaslError` with the reply to send when it is
malformed. Sending challenges and checking passwords are not done here (`inbound.server` and
`inbound.auth`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

__all__ = ["Credentials", "SaslError", "decode_base64", "decode_plain"]

CANNOT_DECODE = "501 5.5.2 Cannot decode the base64 response"
MALFORMED_PLAIN = "501 5.5.2 Malformed PLAIN response (want authzid NUL user NUL password)"


class SaslError(Exception):
    """A response that cannot be decoded; `reply` says why, to the client."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class Credentials:
    """A login name and password as the client sent them (bytes: SASL does not say UTF-8)."""

    login: bytes
    password: bytes = b""
    authzid: bytes = b""
    """RFC 4616 §2: the identity to act as; empty means the login's own."""

    def acts_as_another(self) -> bool:
        """True when the client asks to act as someone else, which relaybox never allows."""
        return bool(self.authzid) and self.authzid != self.login


def decode_base64(text: str) -> bytes:
    """RFC 4954 §4: an initial response or a continuation line, strictly base64.

    Raises:
        SaslError: `text` is not valid base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError(CANNOT_DECODE) from None


def decode_plain(blob: bytes) -> Credentials:
    """RFC 4616 §2: `authzid NUL authcid NUL passwd`, already base64-decoded.

    Raises:
        SaslError: the response does not have exactly three parts.
    """
    parts = blob.split(b"\0")
    if len(parts) != 3:
        raise SaslError(MALFORMED_PLAIN)
    authzid, login, password = parts
    return Credentials(login, password, authzid)
