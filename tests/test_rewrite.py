"""From:/Sender: rewriting for a route's rewrite_senders: only the mapped addresses change."""

from __future__ import annotations

from relaybox.outbound.rewrite import rewrite_header_senders

MAPPING = {"scanner@printer.local": "scanner@example.org"}


def rewrite(address: str) -> str:
    return MAPPING.get(address.lower(), address)


def test_from_and_sender_change_and_the_rest_stays() -> None:
    data = (
        b"Received: from printer\r\n"
        b"From: Scanner <SCANNER@printer.local>\r\n"
        b"Sender:\r\n scanner@printer.local\r\n"
        b"Reply-To: scanner@printer.local\r\n"
        b"\r\n"
        b"From: scanner@printer.local\r\n"
    )
    out = rewrite_header_senders(data, rewrite)
    assert out == (
        b"Received: from printer\r\n"
        b"From: Scanner <scanner@example.org>\r\n"
        b"Sender:\r\n scanner@example.org\r\n"
        b"Reply-To: scanner@printer.local\r\n"
        b"\r\n"
        b"From: scanner@printer.local\r\n"
    )


def test_unmapped_mail_comes_back_unchanged() -> None:
    data = b"From: a@example.com\r\nTo: b@example.org\r\n\r\nbody\r\n"
    assert rewrite_header_senders(data, rewrite) is data
    no_header_end = b"From: scanner@printer.local\r\n"
    assert rewrite_header_senders(no_header_end, rewrite) is no_header_end


def test_a_display_name_with_a_comma_keeps_its_quotes() -> None:
    data = b'From: "Scanner, 2nd floor" <scanner@printer.local>\r\n\r\n'
    assert rewrite_header_senders(data, rewrite) == (
        b'From: "Scanner, 2nd floor" <scanner@example.org>\r\n\r\n'
    )


def test_a_non_ascii_target_is_not_written_into_an_ascii_header() -> None:
    data = b"From: scanner@printer.local\r\n\r\n"
    assert rewrite_header_senders(data, lambda a: "sc\u00e4nner@example.org") is data
