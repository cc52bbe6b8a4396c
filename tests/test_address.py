"""Tests for relaybox.message.address: strict MAIL/RCPT argument parsing (RFC 5321 §4.1.2)."""

from __future__ import annotations

import pytest

from relaybox.message.address import (
    AddressError,
    MailFrom,
    RcptTo,
    domain_of,
    parse_mail,
    parse_rcpt,
    split_address,
)


def mail_error(arg: str, **kwargs: bool) -> AddressError:
    with pytest.raises(AddressError) as info:
        parse_mail(arg, **kwargs)
    return info.value


def rcpt_error(arg: str, *, smtputf8: bool = False, allow_ip_literal: bool = False) -> AddressError:
    with pytest.raises(AddressError) as info:
        parse_rcpt(arg, smtputf8=smtputf8, allow_ip_literal=allow_ip_literal)
    return info.value


def assert_reply(err: AddressError, code: int, status: str) -> None:
    assert err.code == code, err.reply()
    assert err.text.startswith(status + " "), err.reply()
    assert err.reply().isascii()


def rcpt(address: str, *, smtputf8: bool = False) -> str:
    return parse_rcpt(f"TO:<{address}>", smtputf8=smtputf8).recipient


# --- command structure ---------------------------------------------------------------------


def test_simple_mail_from_is_accepted() -> None:
    assert parse_mail("FROM:<alice@example.com>") == MailFrom(
        sender="alice@example.com", size=None, body="7BIT", smtputf8=False
    )


def test_simple_rcpt_to_is_accepted() -> None:
    assert parse_rcpt("TO:<bob@example.org>", smtputf8=False) == RcptTo(recipient="bob@example.org")


@pytest.mark.parametrize("arg", ["from:<a@example.com>", "From:<a@example.com>"])
def test_mail_keyword_is_case_insensitive(arg: str) -> None:
    assert parse_mail(arg).sender == "a@example.com"


@pytest.mark.parametrize("arg", ["to:<a@example.com>", "tO:<a@example.com>"])
def test_rcpt_keyword_is_case_insensitive(arg: str) -> None:
    assert parse_rcpt(arg, smtputf8=False).recipient == "a@example.com"


def test_spaces_between_colon_and_bracket_are_tolerated() -> None:
    assert parse_mail("FROM:  <a@example.com>").sender == "a@example.com"
    assert parse_rcpt("TO: <a@example.com>", smtputf8=False).recipient == "a@example.com"


def test_spaces_around_argument_and_between_parameters_are_tolerated() -> None:
    result = parse_mail("  FROM:<a@example.com>   SIZE=10  BODY=8BITMIME  ")
    assert (result.sender, result.size, result.body) == ("a@example.com", 10, "8BITMIME")


@pytest.mark.parametrize(
    "arg", ["<a@example.com>", "FROM <a@example.com>", "TO:<a@example.com>", ""]
)
def test_missing_from_keyword_is_syntax_error(arg: str) -> None:
    err = mail_error(arg)
    assert_reply(err, 501, "5.5.4")
    assert err.text == "5.5.4 Syntax: MAIL FROM:<address>"


@pytest.mark.parametrize("arg", ["<a@example.com>", "FROM:<a@example.com>", "T O:<a@example.com>"])
def test_missing_to_keyword_is_syntax_error(arg: str) -> None:
    err = rcpt_error(arg)
    assert_reply(err, 501, "5.5.4")
    assert err.text == "5.5.4 Syntax: RCPT TO:<address>"


@pytest.mark.parametrize("arg", ["FROM:a@example.com", "FROM:", "FROM:<a@example.com", "FROM:a@b>"])
def test_address_must_be_in_angle_brackets(arg: str) -> None:
    err = mail_error(arg)
    assert_reply(err, 501, "5.5.4")
    assert "<>" in err.text


def test_rcpt_address_must_be_in_angle_brackets() -> None:
    err = rcpt_error("TO:a@example.com")
    assert_reply(err, 501, "5.5.4")
    assert "must be in <>" in err.text


@pytest.mark.parametrize("arg", ["FROM:<a@example.com>SIZE=1", "FROM:<a@example.com>>"])
def test_text_glued_to_closing_bracket_is_syntax_error(arg: str) -> None:
    assert_reply(mail_error(arg), 501, "5.5.4")


@pytest.mark.parametrize(
    "arg",
    [
        "FROM:<a\x00b@example.com>",
        "FROM:<ab@example.com>\r",
        "FROM:<ab@exa\nmple.com>",
        "FROM:<a\tb@example.com>",
        'FROM:<"a\tb"@example.com>',
        "FROM:<a\x7fb@example.com>",
        "FROM:<a\x85b@example.com>",
        "FROM:<a\udcffb@example.com>",
        "FROM:<a@example.com> SIZE=1\x00",
    ],
)
def test_control_characters_are_syntax_errors(arg: str) -> None:
    assert_reply(mail_error(arg, smtputf8_enabled=True), 501, "5.5.4")


# --- valid addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "first.last+tag@sub.example.co.uk",
        "a#b$c&d'e*f/g=h?i^j_k`l{m|n}o~p-q@example.com",
        "1234@example.com",
        "user@localhost",
        "user@printer.local",
        "user@mail-1.example.com",
        "user@xn--bcher-kva.example",
        "user@123.example.com",
        "User.Name@EXAMPLE.COM",
    ],
)
def test_valid_addresses_are_accepted_verbatim(address: str) -> None:
    assert parse_mail(f"FROM:<{address}>").sender == address
    assert rcpt(address) == address


@pytest.mark.parametrize(
    "address",
    ['"john smith"@example.com', r'"a\"b"@example.com', r'"a\\b"@example.com', '"a>b"@example.com'],
)
def test_quoted_local_part_is_accepted_with_quotes_kept(address: str) -> None:
    assert rcpt(address) == address
    assert parse_mail(f"FROM:<{address}> SIZE=5").sender == address


# --- relay tricks --------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["user%outside.example@here.example", "%@here.example"])
def test_percent_hack_is_refused(address: str) -> None:
    err = rcpt_error(f"TO:<{address}>")
    assert_reply(err, 553, "5.1.3")
    assert err.text == "5.1.3 Bad recipient address syntax: '%' routing is not accepted"


def test_bang_path_is_refused() -> None:
    err = rcpt_error("TO:<outside!user@here.example>")
    assert_reply(err, 553, "5.1.3")
    assert "'!'" in err.text


@pytest.mark.parametrize(
    ("address", "char"),
    [
        ('"user@outside.example"@here.example', "@"),
        (r'"user\@outside.example"@here.example', "@"),
        ('"user%outside"@here.example', "%"),
        ('"outside!user"@here.example', "!"),
    ],
)
def test_quoted_local_part_with_at_is_refused(address: str, char: str) -> None:
    err = rcpt_error(f"TO:<{address}>")
    assert_reply(err, 553, "5.1.3")
    assert f"quoted user name containing '{char}'" in err.text


@pytest.mark.parametrize(
    "address", ["@a.example,@b.example:user@c.example", "@a.example:user@c.example"]
)
def test_source_route_is_refused(address: str) -> None:
    err = rcpt_error(f"TO:<{address}>")
    assert_reply(err, 553, "5.1.3")
    assert "source routes" in err.text


@pytest.mark.parametrize("address", ["user@[192.0.2.1]", "user@[IPv6:2001:db8::1]"])
def test_ip_literal_refused_unless_allowed(address: str) -> None:
    err = rcpt_error(f"TO:<{address}>")
    assert_reply(err, 553, "5.1.3")
    assert "IP address" in err.text
    allowed = parse_rcpt(f"TO:<{address}>", smtputf8=False, allow_ip_literal=True)
    assert allowed.recipient == address
    assert parse_mail(f"FROM:<{address}>", allow_ip_literal=True).sender == address


@pytest.mark.parametrize(
    "domain",
    [
        "[300.1.1.1]",
        "[1.2.3]",
        "[01.2.3.4]",
        "[IPv6:fe80::1%eth0]",
        "[IPv6:1.2.3.4]",
        "[IPv6:2001:db8::g]",
        "[x-tag:content]",
        "[192.0.2.1",
        "[]",
    ],
)
def test_invalid_ip_literal_is_refused_even_when_allowed(domain: str) -> None:
    err = rcpt_error(f"TO:<user@{domain}>", allow_ip_literal=True)
    assert_reply(err, 553, "5.1.3")
    assert "not valid" in err.text


@pytest.mark.parametrize(
    "domain", ["192.0.2.1", "2130706433", "0x7f000001", "0x7f.1", "example.123"]
)
def test_numeric_domain_that_resolves_as_ip_is_refused(domain: str) -> None:
    err = rcpt_error(f"TO:<user@{domain}>", allow_ip_literal=True)
    assert_reply(err, 553, "5.1.3")
    assert "looks like an IP address" in err.text


# --- local-part grammar --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (".user@example.com", "start or end with a dot"),
        ("user.@example.com", "start or end with a dot"),
        ("us..er@example.com", "two dots in a row"),
    ],
)
def test_bad_dots_in_local_part_are_refused(address: str, reason: str) -> None:
    err = rcpt_error(f"TO:<{address}>")
    assert_reply(err, 553, "5.1.3")
    assert reason in err.text


@pytest.mark.parametrize(
    ("local", "shown"),
    [
        ("a b", "a space"),
        ("a,b", "','"),
        ("a<b", "'<'"),
        ("a(b)", "'('"),
        ("a[b", "'['"),
        ("a:b", "':'"),
        ("a;b", "';'"),
        ('a"b"', "'\"'"),
        ("a\\b", "'\\'"),
    ],
)
def test_character_not_allowed_in_local_part_is_refused(local: str, shown: str) -> None:
    err = rcpt_error(f"TO:<{local}@example.com>")
    assert_reply(err, 553, "5.1.3")
    assert f"user name contains a character that is not allowed: {shown}" in err.text


def test_unclosed_quoted_local_part_is_refused() -> None:
    for arg in ['TO:<"user@example.com>', r'TO:<"user\"@example.com>']:
        err = rcpt_error(arg)
        assert_reply(err, 553, "5.1.3")
        assert "no closing quote" in err.text


def test_text_after_quoted_local_part_is_refused() -> None:
    err = rcpt_error('TO:<"user"x@example.com>')
    assert_reply(err, 553, "5.1.3")
    assert "after the quoted user name" in err.text


def test_empty_quoted_local_part_is_refused() -> None:
    err = rcpt_error('TO:<""@example.com>')
    assert_reply(err, 553, "5.1.3")
    assert "user name is empty" in err.text


def test_quoted_pair_with_non_ascii_is_refused() -> None:
    err = rcpt_error('TO:<"\\é"@example.com>', smtputf8=True)
    assert_reply(err, 553, "5.1.3")
    assert "U+00E9" in err.text


def test_missing_local_part_is_refused() -> None:
    err = rcpt_error("TO:<@example.com>")
    assert_reply(err, 553, "5.1.3")
    assert "no user name" in err.text


def test_more_than_one_at_is_refused() -> None:
    err = rcpt_error("TO:<a@b@example.com>")
    assert_reply(err, 553, "5.1.3")
    assert "more than one '@'" in err.text


@pytest.mark.parametrize("address", ["user", '"user"', "postmaster@"])
def test_address_without_domain_is_refused(address: str) -> None:
    err = rcpt_error(f"TO:<{address}>")
    assert_reply(err, 553, "5.1.3")
    assert "domain" in err.text


# --- domain grammar ------------------------------------------------------------------------


def test_trailing_dot_domain_is_refused() -> None:
    err = rcpt_error("TO:<user@example.com.>")
    assert_reply(err, 553, "5.1.3")
    assert "cannot end with a dot" in err.text


@pytest.mark.parametrize("domain", [".example.com", "example..com"])
def test_empty_domain_label_is_refused(domain: str) -> None:
    err = rcpt_error(f"TO:<user@{domain}>")
    assert_reply(err, 553, "5.1.3")
    assert "two dots in a row" in err.text


@pytest.mark.parametrize("domain", ["-example.com", "example-.com", "mail.-x.example"])
def test_domain_label_starting_or_ending_with_hyphen_is_refused(domain: str) -> None:
    err = rcpt_error(f"TO:<user@{domain}>")
    assert_reply(err, 553, "5.1.3")
    assert "hyphen" in err.text


@pytest.mark.parametrize(
    ("domain", "shown"),
    [("exa_mple.com", "'_'"), ("exa mple.com", "a space"), ("example.com:25", "':'")],
)
def test_character_not_allowed_in_domain_is_refused(domain: str, shown: str) -> None:
    err = rcpt_error(f"TO:<user@{domain}>")
    assert_reply(err, 553, "5.1.3")
    assert f"domain contains a character that is not allowed: {shown}" in err.text


def test_domain_label_limit_is_63_octets() -> None:
    assert rcpt(f"user@{'a' * 63}.example") == f"user@{'a' * 63}.example"
    err = rcpt_error(f"TO:<user@{'a' * 64}.example>")
    assert_reply(err, 553, "5.1.3")
    assert "63" in err.text


def test_u_label_limit_is_measured_as_a_label() -> None:
    # 40 x "é" is 80 UTF-8 octets but only 52 octets as xn--...
    assert rcpt(f"user@{'é' * 40}.example", smtputf8=True) == f"user@{'é' * 40}.example"
    err = rcpt_error(f"TO:<user@{'é' * 63}.example>", smtputf8=True)
    assert_reply(err, 553, "5.1.3")
    assert "63" in err.text


# --- RFC 5321 §4.5.3.1 size limits ---------------------------------------------------------


def test_local_part_limit_is_64_octets() -> None:
    assert rcpt(f"{'a' * 64}@example.com") == f"{'a' * 64}@example.com"
    err = rcpt_error(f"TO:<{'a' * 65}@example.com>")
    assert_reply(err, 553, "5.1.3")
    assert "user name is longer than the 64-byte limit" in err.text


def test_local_part_limit_counts_utf8_octets() -> None:
    err = rcpt_error(f"TO:<{'é' * 33}@example.com>", smtputf8=True)  # 66 octets
    assert_reply(err, 553, "5.1.3")
    assert "64-byte" in err.text


def test_domain_limit_is_255_octets() -> None:
    domain = ".".join(["a" * 63] * 4) + "a"  # 256 octets
    err = rcpt_error(f"TO:<u@{domain}>")
    assert_reply(err, 553, "5.1.3")
    assert "domain is longer than the 255-byte limit" in err.text


def test_path_limit_is_256_octets_including_brackets() -> None:
    domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 octets
    assert len(f"<x@{domain}>") == 257
    err = rcpt_error(f"TO:<x@{domain}>")
    assert_reply(err, 553, "5.1.3")
    assert "address is longer than the 256-byte limit" in err.text
    shorter = domain[:-1]
    assert rcpt(f"x@{shorter}") == f"x@{shorter}"


# --- SMTPUTF8 (RFC 6531) -------------------------------------------------------------------


@pytest.mark.parametrize("address", ["josé@example.com", "user@例子.广告"])
def test_utf8_address_needs_smtputf8(address: str) -> None:
    err = mail_error(f"FROM:<{address}>")
    assert_reply(err, 553, "5.6.7")
    assert "non-ASCII address requires SMTPUTF8" in err.text
    assert parse_mail(f"FROM:<{address}> SMTPUTF8").sender == address

    err = rcpt_error(f"TO:<{address}>", smtputf8=False)
    assert_reply(err, 553, "5.6.7")
    assert rcpt(address, smtputf8=True) == address


@pytest.mark.parametrize(
    "address",
    ["用户@例子.广告", "δοκιμή@παράδειγμα.δοκιμή", "उपयोगकर्ता@उदाहरण.कॉम", "Jörg@Bücher.example"],
)
def test_utf8_u_label_addresses_are_accepted_unchanged(address: str) -> None:
    assert rcpt(address, smtputf8=True) == address


def test_non_letter_in_u_label_is_refused() -> None:
    err = rcpt_error("TO:<user@☃.example>", smtputf8=True)
    assert_reply(err, 553, "5.1.3")
    assert "U+2603" in err.text


def test_utf8_sender_is_refused_when_smtputf8_disabled() -> None:
    err = mail_error("FROM:<josé@example.com>", smtputf8_enabled=False)
    assert_reply(err, 553, "5.6.7")


# --- null sender and postmaster ------------------------------------------------------------


def test_null_sender_allowed_only_in_mail() -> None:
    assert parse_mail("FROM:<>") == MailFrom(sender="", size=None, body="7BIT", smtputf8=False)
    assert parse_mail("FROM:<> SIZE=100").size == 100
    err = rcpt_error("TO:<>")
    assert_reply(err, 553, "5.1.3")
    assert "<>" in err.text


@pytest.mark.parametrize("address", ["postmaster", "Postmaster", "POSTMASTER"])
def test_bare_postmaster_recipient_is_accepted(address: str) -> None:
    assert rcpt(address) == "postmaster"


def test_postmaster_with_domain_is_an_ordinary_address() -> None:
    assert rcpt("PostMaster@Example.com") == "PostMaster@Example.com"


def test_bare_postmaster_is_not_a_valid_sender() -> None:
    assert_reply(mail_error("FROM:<postmaster>"), 553, "5.1.3")


# --- MAIL parameters -----------------------------------------------------------------------


def test_mail_parameters_are_parsed() -> None:
    assert parse_mail("FROM:<a@example.com> size=1000 body=8bitmime SmtpUtf8") == MailFrom(
        sender="a@example.com", size=1000, body="8BITMIME", smtputf8=True
    )


def test_body_7bit_is_accepted() -> None:
    assert parse_mail("FROM:<a@example.com> BODY=7bit").body == "7BIT"


@pytest.mark.parametrize(
    "param", ["SIZE=abc", "SIZE=-1", "SIZE=1.5", "SIZE", "SIZE=١٢", "SIZE=" + "9" * 21]
)
def test_size_parameter_must_be_digits(param: str) -> None:
    err = mail_error(f"FROM:<a@example.com> {param}")
    assert_reply(err, 501, "5.5.4")


@pytest.mark.parametrize("param", ["BODY=BINARYMIME", "BODY=8BIT", "BODY"])
def test_body_parameter_must_be_7bit_or_8bitmime(param: str) -> None:
    err = mail_error(f"FROM:<a@example.com> {param}")
    assert_reply(err, 501, "5.5.4")
    assert "7BIT or 8BITMIME" in err.text


def test_smtputf8_parameter_with_value_is_refused() -> None:
    assert_reply(mail_error("FROM:<a@example.com> SMTPUTF8=yes"), 501, "5.5.4")


def test_smtputf8_parameter_when_disabled_is_not_recognized() -> None:
    err = mail_error("FROM:<a@example.com> SMTPUTF8", smtputf8_enabled=False)
    assert_reply(err, 555, "5.5.4")
    assert err.text == "5.5.4 MAIL FROM parameter SMTPUTF8 not recognized"


@pytest.mark.parametrize(
    "params", ["SIZE=1 SIZE=2", "BODY=7BIT body=8BITMIME", "SMTPUTF8 smtputf8"]
)
def test_repeated_mail_parameter_is_refused(params: str) -> None:
    err = mail_error(f"FROM:<a@example.com> {params}")
    assert_reply(err, 501, "5.5.4")
    assert "more than once" in err.text


@pytest.mark.parametrize(("param", "name"), [("AUTH=<>", "AUTH"), ("ret=FULL", "RET")])
def test_unknown_mail_parameter_is_not_recognized(param: str, name: str) -> None:
    err = mail_error(f"FROM:<a@example.com> {param}")
    assert_reply(err, 555, "5.5.4")
    assert err.text == f"5.5.4 MAIL FROM parameter {name} not recognized"


@pytest.mark.parametrize("param", ["=1", "-SIZE=1", "SIZE=1=2", "SIZE=", "SI_ZE=1", "SÍZE=1"])
def test_malformed_mail_parameter_is_syntax_error(param: str) -> None:
    err = mail_error(f"FROM:<a@example.com> {param}")
    assert_reply(err, 501, "5.5.4")


@pytest.mark.parametrize(
    ("param", "name"), [("NOTIFY=NEVER", "NOTIFY"), ("orcpt=rfc822;a@b", "ORCPT")]
)
def test_rcpt_parameters_are_not_recognized(param: str, name: str) -> None:
    err = rcpt_error(f"TO:<a@example.com> {param}")
    assert_reply(err, 555, "5.5.4")
    assert err.text == f"5.5.4 RCPT TO parameter {name} not recognized"


# --- reply format --------------------------------------------------------------------------


def test_sender_syntax_errors_use_5_1_3() -> None:
    err = mail_error("FROM:<user%outside@here.example>")
    assert_reply(err, 553, "5.1.3")
    assert err.text == "5.1.3 Bad sender address syntax: '%' routing is not accepted"


def test_reply_is_code_and_text() -> None:
    err = AddressError(553, "5.1.3 Bad address syntax: source routes are not accepted")
    assert err.reply() == "553 5.1.3 Bad address syntax: source routes are not accepted"
    assert str(err) == err.reply()


# --- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "parts", "domain"),
    [
        ("User@Example.COM", ("User", "Example.COM"), "example.com"),
        ('"john smith"@example.com', ('"john smith"', "example.com"), "example.com"),
        ("user@[IPv6:2001:DB8::1]", ("user", "[IPv6:2001:DB8::1]"), "[ipv6:2001:db8::1]"),
        ("Jörg@BÜCHER.example", ("Jörg", "BÜCHER.example"), "bücher.example"),
        ("", ("", ""), ""),
        ("postmaster", ("postmaster", ""), ""),
    ],
)
def test_split_address_and_domain_of(address: str, parts: tuple[str, str], domain: str) -> None:
    assert split_address(address) == parts
    assert domain_of(address) == domain
