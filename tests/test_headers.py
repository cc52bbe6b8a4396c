"""The one header-block parser: UTF-8 fields (RFC 6532), the block's end, addresses and values."""

from __future__ import annotations

from relaybox.message.headers import (
    addresses,
    field_addresses,
    field_count,
    fields,
    header_end,
    header_safe,
    header_value,
    parse_header,
    split_header,
    subject_line,
)

UTF8_MESSAGE = (
    "From: José <josé@bücher.example>\r\n"
    "Sender: =?utf-8?q?Secr=C3=A9taire?= <sec@xn--bcher-kva.example>\r\n"
    "To: undisclosed-recipients:;\r\n"
    "Subject: Grüße\r\n"
    " folded\r\n"
    "\r\n"
    "From: not a header, body text\r\n"
).encode()


def test_header_end_is_just_past_the_empty_line() -> None:
    end = header_end(UTF8_MESSAGE)
    assert end is not None
    assert UTF8_MESSAGE[end:] == b"From: not a header, body text\r\n"


def test_message_without_fields_has_an_empty_header() -> None:
    assert header_end(b"\r\nbody\r\n\r\nmore\r\n") == 2


def test_no_empty_line_within_the_limit_means_all_header() -> None:
    data = b"Subject: x\r\n" * 10 + b"\r\nbody"
    assert header_end(data, limit=50) is None
    assert split_header(data, limit=50) == (data, b"")
    head, body = split_header(data)
    assert head + body == data and body == b"body"


def test_utf8_addresses_survive_parsing() -> None:
    head, _ = split_header(UTF8_MESSAGE)
    message = parse_header(head)
    assert addresses(message, "From") == ["josé@bücher.example"]
    assert addresses(message, "Sender") == ["sec@xn--bcher-kva.example"]
    assert addresses(message, "To") == []
    assert addresses(message, "Reply-To") == []


def test_values_are_decoded_and_unfolded() -> None:
    message = parse_header(split_header(UTF8_MESSAGE)[0])
    assert header_value(message, "subject") == "Grüße folded"
    assert header_value(message, "Sender") == "Secrétaire <sec@xn--bcher-kva.example>"
    assert header_value(message, "X-Missing") is None
    assert [name for name, _ in fields(message)] == ["From", "Sender", "To", "Subject"]


def test_every_address_of_every_field_in_order() -> None:
    message = parse_header(
        b'From: a@example.org, "Last, First" <f@example.net>\r\n'
        b"From: Group: g@example.com;\r\nFrom: <>\r\n\r\n"
    )
    assert addresses(message, "From") == ["a@example.org", "f@example.net", "g@example.com"]


def test_a_value_that_is_no_address_is_kept_so_checks_refuse_it() -> None:
    assert addresses(parse_header(b"From: garbage\r\n\r\n"), "From") == ["garbage"]


def test_bytes_of_another_charset_do_not_break_the_other_fields() -> None:
    message = parse_header(b"Subject: caf\xe9\r\nFrom: a@example.org\r\n\r\n")
    assert header_value(message, "Subject") == "caf\ufffd"
    assert addresses(message, "From") == ["a@example.org"]


def test_addresses_of_one_field_taken_out_of_a_message() -> None:
    """A stored header view's From: value reads as the parsed message's would."""
    assert field_addresses("From", '"José" <josé@bücher.example>') == ["josé@bücher.example"]
    assert field_addresses("From", "a@example.org,\r\n <b@example.net>") == [
        "a@example.org",
        "b@example.net",
    ]
    assert field_addresses("Subject", "a@example.org") == []


def test_an_address_the_parser_refuses_comes_back_as_written() -> None:
    """An encoded display name that decodes to CR LF makes the stdlib raise; the From: check
    must get a value that owns nothing (a refusal), not an exception (a 451 for ever)."""
    message = parse_header(b"From: =?utf-8?q?a=0D=0Ab?= <a@example.org>\r\n\r\n")
    assert addresses(message, "From") == ["=?utf-8?q?a=0D=0Ab?= <a@example.org>"]
    assert field_count(message, "from") == 1


def test_text_written_into_a_header_cannot_start_a_field() -> None:
    """The last check before client input reaches a header relaybox writes."""
    assert header_safe("pc.example") == "pc.example"
    assert header_safe("bücher.example") == "bücher.example"
    assert header_safe('pc\rFrom: "CEO" <ceo@victim.test>') == 'pc?From: "CEO" <ceo@victim.test>'
    assert header_safe("a\nb\x00c\x1b[2J\udcff\u2028") == "a?b?c?[2J??"


def test_subject_line_decodes_unfolds_escapes_and_cuts() -> None:
    """The Subject: as the queue lists it: one line, encoded words decoded, control
    characters escaped, cut at the limit; the body's "Subject:" lines are not the header's."""
    assert subject_line(b"From: a@b\r\nSubject: =?utf-8?q?Invoice_42?=\r\n\tfolded\r\n\r\n") == (
        "Invoice 42 folded"
    )
    assert subject_line(b"SUBJECT :  plain \r\n\r\n") == "plain"
    assert subject_line(b"Subject: a\x1b[2Jb\r\n\r\n") == "a\\x1b[2Jb"
    assert subject_line(b"Subject: =?utf-8?b?eBtdMDtwd24HDQpCY2M6IHk=?=\r\n\r\n") == (
        "x\\x1b]0;pwn\\x07 Bcc: y"
    )
    assert subject_line(b"Subject: caf\xc3\xa9 \xff\r\n\r\n") == "caf\u00e9 \ufffd"
    assert subject_line(b"Subject: " + b"A" * 500 + b"\r\n\r\n", limit=20) == "A" * 17 + "..."
    assert subject_line(b"To: x@y\r\n\r\nSubject: in the body\r\n") == ""
    assert subject_line(b"X-Note: one\r\n subject: a folded line, no field\r\n\r\n") == ""
    assert subject_line(b"Subject: =?bogus-charset?q?x?=\r\n\r\n").isprintable()
