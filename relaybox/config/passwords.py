"""Password hashes for `[[users]]`: scrypt with a per-user salt, and a cache of recent successes.

Hashes look like `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without padding), the layout
passlib and others use, so an admin can tell at a glance what they are. Verifying one costs about
0.15 s of CPU by design; `VerifiedCache` remembers recent successful logins (keyed by an HMAC
under a per-process random key, never the password itself) so a PC that logs in for every
message does not pay that each time. Failures are never cached. Nothing here runs on the loop:
callers use a thread.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import os
import re
import threading
import time

__all__ = ["VerifiedCache", "check_hash_format", "hash_password", "verify_password"]

DEFAULT_LOG2_N = 15
_R = 8
_P = 1
_DKLEN = 32
_MAXMEM = 256 * 1024 * 1024
_FORMAT = re.compile(
    r"^\$scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})"
    r"\$(?P<salt>[A-Za-z0-9+/]{16,})\$(?P<hash>[A-Za-z0-9+/]{32,})$"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, log2_n: int = DEFAULT_LOG2_N) -> str:
    """A new hash of `password` with a fresh random salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=2**log2_n, r=_R, p=_P, maxmem=_MAXMEM, dklen=_DKLEN
    )
    return f"$scrypt$ln={log2_n},r={_R},p={_P}${_b64(salt)}${_b64(digest)}"


def check_hash_format(encoded: str) -> str | None:
    """What is wrong with a stored hash, or None when it is usable (for config validation)."""
    match = _FORMAT.match(encoded)
    if match is None:
        return (
            "is not a relaybox password hash (expected $scrypt$ln=..,r=..,p=..$salt$hash); "
            "create one with `relaybox passwd USER`"
        )
    ln, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not 10 <= ln <= 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        return f"has scrypt parameters out of range (ln={ln}, r={r}, p={p})"
    return None


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches `encoded`; False for a wrong password or a bad hash."""
    match = _FORMAT.match(encoded)
    if match is None:
        return False
    expected = _unb64(match["hash"])
    try:
        digest = hashlib.scrypt(
            password.encode("utf-8", "surrogateescape"),
            salt=_unb64(match["salt"]),
            n=2 ** int(match["ln"]),
            r=int(match["r"]),
            p=int(match["p"]),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


class VerifiedCache:
    """Recently verified (user, password, hash) triples, bounded in size and age.

    The key includes the stored hash, so changing a user's password in the config invalidates
    their entry at once.
    """

    def __init__(self, max_entries: int = 1000, ttl: float = 3600.0) -> None:
        self._key = os.urandom(32)
        self._entries: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._max = max_entries
        self._ttl = ttl
        self._lock = threading.Lock()

    def _fingerprint(self, user: str, password: str, encoded: str) -> bytes:
        message = "\0".join((user, password, encoded)).encode("utf-8", "surrogateescape")
        return hmac.digest(self._key, message, "sha256")

    def hit(self, user: str, password: str, encoded: str) -> bool:
        """True if this exact login succeeded within the TTL."""
        key = self._fingerprint(user, password, encoded)
        with self._lock:
            at = self._entries.get(key)
            if at is None:
                return False
            if time.monotonic() - at > self._ttl:
                del self._entries[key]
                return False
            self._entries.move_to_end(key)
            return True

    def remember(self, user: str, password: str, encoded: str) -> None:
        """Record a successful verification."""
        key = self._fingerprint(user, password, encoded)
        with self._lock:
            self._entries[key] = time.monotonic()
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
