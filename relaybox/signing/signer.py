"""DKIM signing (RFC 6376, RFC 8463): the DKIM-Signature header fields a message leaves with.

dkimpy parses the message, canonicalises it (relaxed/relaxed), picks the header fields to sign
and folds the header; the private-key step is done by `cryptography`, because dkimpy's RSA is
pure Python (about 7 ms a signature, holding the GIL) where OpenSSL takes about 0.3 ms. This
module also checks that the key a receiver will fetch from DNS is the one relaybox signs with,
so a rotated or unpublished selector is noticed before the receiver's DMARC check fails.
It decides nothing about delivery and never touches the spool.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim import canonicalization
from dkim.canonicalization import CanonicalizationPolicy

from relaybox.clock import Clock, system_clock
from relaybox.config.keys import DkimKey, DkimKeyError, published_key
from relaybox.config.model import DkimConfig
from relaybox.message.headers import (
    MAX_HEADER_BLOCK,
    addresses,
    field_count,
    header_end,
    parse_header,
    split_header,
)
from relaybox.resolver import Resolver
from relaybox.signing.tags import TagError, parse_tags

__all__ = [
    "KeyCheck",
    "PublishedKeys",
    "read_record",
    "relaxed_body",
    "SigningError",
    "from_domain",
    "sign",
    "signing_keys",
]

_CANONICALIZATION = b"relaxed/relaxed"
_POLICY = CanonicalizationPolicy.from_c_value(_CANONICALIZATION)
# RFC 6376 §5.4.1's list (dkimpy's DKIM.SHOULD), each signed where present; From is signed
# once more than it occurs ("oversigned", §8.15) so a second From: added later breaks the
# signature instead of being shown to the reader.
_SIGNED = frozenset(dkim.DKIM.SHOULD)
_OVERSIGNED = frozenset((b"from",))
_HEADER_NAME = b"DKIM-Signature"


class SigningError(Exception):
    """A message that cannot be signed as it is (no From: field, an unparseable header)."""


def from_domain(data: bytes) -> str | None:
    """The domain of the message's From: address, lower-cased; None when there is none.

    Reads only the header block. With several From: fields or several addresses in one, the
    message is not signed (RFC 5322 allows one From: field; DMARC receivers reject others).
    """
    head, _ = split_header(data)
    message = parse_header(head[:MAX_HEADER_BLOCK])
    if field_count(message, "From") != 1:
        return None
    found = addresses(message, "From")
    if len(found) != 1:
        return None
    _, at, domain = found[0].rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    return domain if at and domain else None


def signing_keys(entries: Sequence[DkimConfig], domain: str | None) -> list[DkimConfig]:
    """The `[[dkim]]` entries that sign mail whose From: domain is `domain` (exact match)."""
    if not domain:
        return []
    return [entry for entry in entries if entry.domain == domain and entry.key is not None]


def sign(data: bytes, entries: Sequence[DkimConfig], *, now: float) -> bytes:
    """The DKIM-Signature fields for a message, one per entry, to put in front of it.

    Each signature covers the message as given (not the others' DKIM-Signature fields, which
    RFC 6376 §5.4 says not to sign). Returns b"" when `entries` is empty. `now` is the
    signing time (t=, epoch seconds), from the caller's clock.

    Raises:
        SigningError: the message has no From: field, or its header cannot be parsed.
    """
    if not entries:
        return b""
    # The header block is parsed whole; a message whose header is bigger than that (no blank
    # line within 256 KB) is sent unsigned rather than parsed at any cost.
    end = header_end(data)
    if end is None and len(data) > MAX_HEADER_BLOCK:
        raise SigningError("the header is longer than 256 KB")
    head, body = (data[:end], data[end:]) if end is not None else (data, b"")
    try:
        # The header block only: dkimpy would otherwise split the whole body into lines.
        message = dkim.DKIM(head)
    except dkim.MessageFormatError as exc:
        raise SigningError(f"the header cannot be parsed: {exc}") from None
    present = [name.lower() for name, _ in message.headers]
    if b"from" not in present:
        raise SigningError("the message has no From: field")
    include = [name for name in present if name in _SIGNED]
    include += [name for name in include if name in _OVERSIGNED]
    headers = _POLICY.canonicalize_headers(message.headers)
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
    stamp = str(int(now)).encode("ascii")
    return b"".join(_signature(entry, headers, include, body_hash, stamp) for entry in entries)


def relaxed_body(body: bytes) -> bytes:
    """The relaxed body canonicalisation (RFC 6376 §3.4.4), as dkimpy computes it.

    Its two whole-body regular expressions (whitespace before a line end, runs of whitespace)
    change nothing in a body without tabs, double spaces or a space before CRLF, which is most
    mail: such a body skips them (a 100 KB body costs 0.1 ms instead of 3 ms).
    """
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        return bytes(_POLICY.canonicalize_body(body))
    return bytes(canonicalization.correct_empty_body(canonicalization.strip_trailing_lines(body)))


def _signature(
    entry: DkimConfig,
    headers: list[tuple[bytes, bytes]],
    include: list[bytes],
    body_hash: bytes,
    stamp: bytes,
) -> bytes:
    """One DKIM-Signature field, as dkimpy's `DKIM.sign` writes it, signed by `cryptography`."""
    assert entry.key is not None
    fields = [
        (b"v", b"1"),
        (b"a", entry.algorithm.encode("ascii")),
        (b"c", _CANONICALIZATION),
        (b"d", entry.domain.encode("ascii")),
        (b"s", entry.selector.encode("ascii")),
        (b"t", stamp),
        (b"h", b" : ".join(include)),
        (b"bh", body_hash),
        # A placeholder as long as a signature line puts b= on a line of its own, so folding
        # the real value later leaves every earlier line (and so the signed text) unchanged.
        (b"b", b"0" * 60),
    ]
    value: bytes = dkim.fold(
        b"; ".join(b"=".join(f) for f in fields), namelen=len(_HEADER_NAME), linesep=b"\r\n"
    )
    unsigned = dkim.RE_BTAG.sub(b"\\1", value)
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, _POLICY, headers, include, (_HEADER_NAME, b" " + unsigned), {})
    signature = base64.b64encode(_sign_digest(entry.key, hasher.digest()))
    value = dkim.fold(unsigned + signature + b"\r\n", namelen=len(_HEADER_NAME))
    return _HEADER_NAME + b": " + value


def _sign_digest(key: DkimKey, digest: bytes) -> bytes:
    if isinstance(key.key, rsa.RSAPrivateKey):
        # RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 over the SHA-256 of the signed text.
        return key.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    # RFC 8463 §3: Ed25519 (PureEdDSA) signs the SHA-256 hash itself, as data.
    return key.key.sign(digest)


# ---------------------------------------------------------------------- the published key

KeyStatus = Literal["ok", "missing", "mismatch", "revoked", "unparsable", "error"]


@dataclass(frozen=True)
class KeyCheck:
    """Whether `SELECTOR._domainkey.DOMAIN` publishes the key relaybox signs with."""

    domain: str
    selector: str
    status: KeyStatus
    detail: str
    """Plain words for the log and the Domains pane."""

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def read_record(records: Sequence[str], key: DkimKey) -> tuple[KeyStatus, str]:
    """Whether a selector's TXT records publish `key` (RFC 6376 §3.6.1): a status and, when
    not ok, why in plain words."""
    if len(records) != 1:
        return "unparsable", f"{len(records)} TXT records where one key record is expected"
    try:
        tags = parse_tags(records[0])
    except TagError as exc:
        return "unparsable", f"not a DKIM key record ({exc})"
    if tags.get("v", "DKIM1") != "DKIM1" or "p" not in tags:
        return "unparsable", "not a DKIM key record (no v=DKIM1 or no p=)"
    if not tags["p"]:
        return "revoked", "the record's p= is empty: the key has been revoked"
    try:
        public = published_key(tags["p"], tags.get("k", "rsa").lower())
    except DkimKeyError as exc:
        return "unparsable", str(exc)
    return ("ok", "") if key.matches(public) else ("mismatch", "")


class PublishedKeys:
    """The keys published in DNS for the configured selectors, looked up at most every `ttl`.

    Delivery asks before a signed message's first attempt; a lookup happens once per
    selector per `ttl` seconds however many messages are signed, so the check costs nothing
    on the hot path.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        ttl: float = 300.0,
        retry_after: float = 10.0,
        clock: Clock = system_clock,
    ) -> None:
        self.resolver = resolver
        self.ttl = ttl
        """Seconds a key found as published is trusted before it is looked up again."""
        self.retry_after = retry_after
        """Seconds before a key found missing or wrong is looked up again: soon, so mail
        held for it goes as soon as the admin has fixed DNS and releases it."""
        self.clock = clock
        self._cache: dict[tuple[str, str, DkimKey], tuple[float, KeyCheck]] = {}
        """By domain, selector and the loaded key (a reload that loads another key asks again)."""
        self._pending: dict[tuple[str, str, DkimKey], asyncio.Future[KeyCheck]] = {}

    def cached(self, entry: DkimConfig) -> KeyCheck | None:
        """The last answer for this key if still fresh, without a lookup."""
        assert entry.key is not None
        found = self._cache.get((entry.domain, entry.selector, entry.key))
        if found is None:
            return None
        ttl = self.ttl if found[1].status == "ok" else min(self.ttl, self.retry_after)
        return found[1] if self.clock() - found[0] < ttl else None

    async def check(self, entry: DkimConfig) -> KeyCheck:
        """Whether DNS publishes this entry's public key under its selector.

        Messages signed at the same moment share one lookup.
        """
        assert entry.key is not None
        fresh = self.cached(entry)
        if fresh is not None:
            return fresh
        cache_key = (entry.domain, entry.selector, entry.key)
        pending = self._pending.get(cache_key)
        if pending is None:
            pending = self._pending[cache_key] = asyncio.ensure_future(self._lookup(entry))
            pending.add_done_callback(lambda _: self._pending.pop(cache_key, None))
        result = await asyncio.shield(pending)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[cache_key] = (self.clock(), result)
        return result

    async def _lookup(self, entry: DkimConfig) -> KeyCheck:
        assert entry.key is not None
        name = f"{entry.selector}._domainkey.{entry.domain}"

        def found(status: KeyStatus, detail: str) -> KeyCheck:
            return KeyCheck(entry.domain, entry.selector, status, detail)

        answer = await self.resolver.txt(name)
        if answer.kind == "temporary":
            return found("error", f"could not look up {name}: {answer.error}")
        if answer.kind != "ok":
            return found("missing", f"{name} has no TXT record: the key is not published")
        status, detail = read_record(answer.records, entry.key)
        if status == "mismatch":
            return found(
                "mismatch",
                f"{name} publishes a different key from {entry.private_key} (rotated "
                "selector, or the record was not updated): receivers will fail the signature",
            )
        if status != "ok":
            return found(status, f"{name}: {detail}")
        return found("ok", f"{name} publishes the key relaybox signs with")
