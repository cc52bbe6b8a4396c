"""SASL decoding for AUTH PLAIN and LOGIN: strict base64, three-part PLAIN, no acting as another."""

from __future__ import annotations

import base64

import pytest

from relaybox.inbound.sasl import (
    CANNOT_DECODE,
    MALFORMED_PLAIN,
    Credentials,
    SaslError,
    decode_base64,
    decode_plain,
)


def test_plain_response_gives_login_and_password() -> None:
    blob = decode_base64(base64.b64encode(b"\0alice\0correct horse").decode())
    assert decode_plain(blob) == Credentials(b"alice", b"correct horse", b"")


def test_plain_password_may_hold_any_bytes_but_nul() -> None:
    creds = decode_plain(b"\0alice\0p\xc3\xa4ss:\xff")
    assert creds.password == b"p\xc3\xa4ss:\xff"


@pytest.mark.parametrize("blob", [b"alice\0secret", b"\0a\0b\0c", b"", b"alice"])
def test_plain_without_exactly_three_parts_is_refused(blob: bytes) -> None:
    with pytest.raises(SaslError) as caught:
        decode_plain(blob)
    assert caught.value.reply == MALFORMED_PLAIN


def test_base64_is_decoded() -> None:
    assert decode_base64("YWxp") == b"ali"


@pytest.mark.parametrize("text", ["not base64!", "YWxpY2U", "Y=Wx", "é"])
def test_bad_base64_is_refused(text: str) -> None:
    with pytest.raises(SaslError) as caught:
        decode_base64(text)
    assert caught.value.reply == CANNOT_DECODE


def test_authzid_of_another_user_is_acting_as_another() -> None:
    assert decode_plain(b"bob\0alice\0pw").acts_as_another()
    assert not decode_plain(b"alice\0alice\0pw").acts_as_another()
    assert not decode_plain(b"\0alice\0pw").acts_as_another()
