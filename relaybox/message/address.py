"""Strict parsing of SMTP ``MAIL FROM:``/``RCPT TO:`` arguments (RFC 5321 §4.1.2, §4.5.3.1).

It checks syntax, size limits and relay-bypass tricks and turns refusals into SMTP replies; it
does no DNS lookups, does not decide whether relaying is allowed, and rewrites no addresses.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "AddressError",
    "MailFrom",
    "RcptTo",
    "domain_of",
    "parse_mail",
    "parse_rcpt",
    "split_address",
]

# RFC 5321 §4.5.3.1.1-3: size limits, in octets.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_PATH_OCTETS = 256  # includes the angle brackets ("<" Mailbox ">")
MAX_LABEL_OCTETS = 63  # RFC 1035 §2.3.4, per DNS label

# RFC 5322 §3.2.3 atext, minus ALPHA/DIGIT which are tested separately.
_ATEXT_SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~")
# RFC 5321 §4.1.2 esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# RFC 5321 §4.1.2 esmtp-value = 1*(%d33-60 / %d62-126), extended by RFC 6531 §3.3 with
# UTF8-non-ascii. Control characters are refused earlier, so "not SP and not '='" suffices.
_ESMTP_VALUE = re.compile(r"[^ =]+")
# RFC 1870 §3: size-value ::= 1*20DIGIT
_SIZE_VALUE = re.compile(r"[0-9]{1,20}")
# RFC 6152 §2 (8BITMIME) plus the default 7BIT.
_BODY_VALUES = frozenset({"7BIT", "8BITMIME"})
# Anything inet_aton() would accept (decimal, octal or hex parts, 1 to 4 of them).
_INET_ATON_LIKE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)
_IPV4_LITERAL = re.compile(r"[0-9.]+")
_IPV6_LITERAL = re.compile(r"[0-9A-Fa-f:.]+")


class AddressError(Exception):
    """A MAIL/RCPT argument the server refuses; carries the SMTP reply.

    The server sends :meth:`reply` verbatim, so ``text`` starts with the enhanced status code
    (RFC 3463) and is always plain ASCII, even when the offending address is not.
    """

    code: int
    text: str

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text

    def reply(self) -> str:
        """Return the reply line without CRLF, e.g. ``"553 5.1.3 Bad ..."``."""
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class MailFrom:
    """A parsed ``MAIL FROM:`` argument.

    Attributes:
        sender: Exact text between the brackets; ``""`` for the null reverse-path ``<>``.
        size: ``SIZE=`` parameter (RFC 1870), or None when absent.
        body: ``"7BIT"`` or ``"8BITMIME"`` (RFC 6152), uppercased; ``"7BIT"`` when absent.
        smtputf8: True when the ``SMTPUTF8`` parameter was given (RFC 6531).
    """

    sender: str
    size: int | None = None
    body: str = "7BIT"
    smtputf8: bool = False


@dataclass(frozen=True)
class RcptTo:
    """A parsed ``RCPT TO:`` argument.

    Attributes:
        recipient: Exact text between the brackets, or ``"postmaster"`` for ``<Postmaster>``.
    """

    recipient: str


@dataclass(frozen=True)
class _Role:
    """Wording and status codes that differ between MAIL and RCPT."""

    verb: str  # "MAIL FROM" / "RCPT TO"
    keyword: str  # "FROM:" / "TO:"
    who: str  # "sender" / "recipient"
    status: str  # RFC 3463 §3.2: X.1.7 bad sender syntax, X.1.3 bad destination syntax


# Reply-code policy, applied consistently:
# * 501 5.5.4: the command itself is malformed: missing FROM:/TO:, no <...>, control
#   characters/NUL/CR/LF/undecodable bytes anywhere in the argument, malformed or repeated
#   parameters, bad parameter values.
# * 555 5.5.4: a well-formed parameter we do not support (RFC 5321 §4.1.1.11).
# * 553: the address between the brackets is refused: any grammar error (including spaces or
#   other characters not allowed at that position), size limits, relay tricks. The enhanced
#   code is 5.1.3 for sender and recipient alike (RFC 3463 §3.2 would allow 5.1.7 for the
#   sender, but one code for every bad address is what relaybox documents and what scripts
#   match on), or 5.6.7 for a non-ASCII address without SMTPUTF8 (RFC 6531 §3.4).
_MAIL = _Role(verb="MAIL FROM", keyword="FROM:", who="sender", status="5.1.3")
_RCPT = _Role(verb="RCPT TO", keyword="TO:", who="recipient", status="5.1.3")


def parse_mail(
    arg: str, *, smtputf8_enabled: bool = True, allow_ip_literal: bool = False
) -> MailFrom:
    """Parse the argument of ``MAIL`` (everything after the verb).

    Args:
        arg: e.g. ``"FROM:<a@b.example> SIZE=1000 BODY=8BITMIME"``; the CRLF must already be
            removed. Spaces around the whole argument are ignored.
        smtputf8_enabled: Whether the server advertises SMTPUTF8; when False the parameter is
            unknown (555) and non-ASCII senders are refused with 5.6.7.
        allow_ip_literal: Accept ``user@[192.0.2.1]`` style domains (validated), which are
            otherwise refused because they bypass domain-based relay policy.

    Returns:
        The sender and its parameters.

    Raises:
        AddressError: With the reply to send; see the module docstring for the code policy.
    """
    path, tokens = _split_command(arg, _MAIL)
    known = {"SIZE", "BODY", "SMTPUTF8"} if smtputf8_enabled else {"SIZE", "BODY"}
    params = _parse_params(tokens, _MAIL, known)

    size: int | None = None
    if "SIZE" in params:
        value = params["SIZE"]
        if value is None or not _SIZE_VALUE.fullmatch(value):
            raise AddressError(501, "5.5.4 SIZE parameter must be a number of bytes (SIZE=12345)")
        size = int(value)

    body = "7BIT"
    if "BODY" in params:
        value = params["BODY"]
        if value is None or value.upper() not in _BODY_VALUES:
            raise AddressError(501, "5.5.4 BODY parameter must be 7BIT or 8BITMIME")
        body = value.upper()

    smtputf8 = "SMTPUTF8" in params
    if smtputf8 and params["SMTPUTF8"] is not None:
        # RFC 6531 §3.4: the SMTPUTF8 parameter has no value.
        raise AddressError(501, "5.5.4 SMTPUTF8 parameter does not take a value")

    if path:  # RFC 5321 §4.5.5: the null reverse-path <> is a valid sender.
        _check_mailbox(path, _MAIL, smtputf8=smtputf8, allow_ip_literal=allow_ip_literal)
    return MailFrom(sender=path, size=size, body=body, smtputf8=smtputf8)


def parse_rcpt(arg: str, *, smtputf8: bool, allow_ip_literal: bool = False) -> RcptTo:
    """Parse the argument of ``RCPT`` (everything after the verb).

    Args:
        arg: e.g. ``"TO:<x@y.example>"``; the CRLF must already be removed.
        smtputf8: Whether the transaction's MAIL FROM carried SMTPUTF8; only then may the
            recipient contain non-ASCII characters (RFC 6531 §3.4).
        allow_ip_literal: Accept ``user@[192.0.2.1]`` style domains (validated).

    Returns:
        The recipient; bare ``<postmaster>`` in any case comes back as ``"postmaster"``.

    Raises:
        AddressError: With the reply to send. No RCPT parameters are supported (555).
    """
    path, tokens = _split_command(arg, _RCPT)
    _parse_params(tokens, _RCPT, set())
    if not path:
        # RFC 5321 §4.1.1.3: Forward-path has no null form; <> is only a reverse-path.
        raise _refuse(_RCPT, "the empty address <> cannot be a recipient")
    if path.lower() == "postmaster":
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain must be accepted.
        return RcptTo(recipient="postmaster")
    _check_mailbox(path, _RCPT, smtputf8=smtputf8, allow_ip_literal=allow_ip_literal)
    return RcptTo(recipient=path)


def split_address(address: str) -> tuple[str, str]:
    """Split an address returned by :func:`parse_mail`/:func:`parse_rcpt` into its parts.

    Splitting at the last ``@`` is safe only because the parser refuses quoted local parts
    containing ``@``; do not use this on unparsed input.

    Returns:
        ``(local_part, domain)`` exactly as given (quotes kept, case kept). The domain is
        ``""`` for the null sender ``""`` and for the bare recipient ``"postmaster"``.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


def domain_of(address: str) -> str:
    """Return the lowercased domain of a parsed address, for policy lookups.

    Domains are case-insensitive (RFC 5321 §2.4) while local parts are not, so only the
    domain is lowercased. Returns ``""`` when there is no domain (see :func:`split_address`).
    IP literals are lowercased too, e.g. ``"[ipv6:2001:db8::1]"``.
    """
    return split_address(address)[1].lower()


# --- command structure -------------------------------------------------------------------


def _split_command(arg: str, role: _Role) -> tuple[str, list[str]]:
    """Split ``FROM:<path> params`` into the path text and the parameter tokens.

    Structure errors are 501 because the client did not send a parseable command at all.
    """
    for ch in arg:
        if _is_control(ch):
            raise AddressError(
                501, "5.5.4 Syntax error: the command contains control characters or invalid bytes"
            )
    text = arg.strip(" ")
    keyword = role.keyword
    head = text[: len(keyword)]
    # isascii() first: str.upper() maps some non-ASCII letters onto ASCII ones.
    if not (head.isascii() and head.upper() == keyword):
        raise AddressError(501, f"5.5.4 Syntax: {role.verb}:<address>")
    # Postfix tolerates spaces between the colon and "<"; RFC 5321 §4.1.1.2 has none.
    rest = text[len(keyword) :].lstrip(" ")
    must_bracket = f"5.5.4 Syntax: {role.verb}:<address> (the address must be in <>)"
    if not rest.startswith("<"):
        raise AddressError(501, must_bracket)

    # Find the closing ">" that is not inside a quoted local part (RFC 5321 §4.1.2
    # Quoted-string may contain ">").
    in_quote = False
    i = 1
    while i < len(rest):
        ch = rest[i]
        if in_quote:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == ">":
            break
        i += 1
    else:
        if in_quote:
            raise _refuse(role, "the quoted user name has no closing quote")
        raise AddressError(501, must_bracket)

    path = rest[1:i]
    after = rest[i + 1 :]
    if after and not after.startswith(" "):
        raise AddressError(501, "5.5.4 Syntax error: expected a space after the closing '>'")
    # RFC 5321 §4.1.2 wants exactly one SP between parameters; runs of spaces are tolerated.
    return path, [token for token in after.split(" ") if token]


def _parse_params(tokens: list[str], role: _Role, known: set[str]) -> dict[str, str | None]:
    """Parse ``esmtp-param`` tokens (RFC 5321 §4.1.2) into uppercase keyword -> value."""
    params: dict[str, str | None] = {}
    for token in tokens:
        keyword, eq, value = token.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(keyword) or (eq and not _ESMTP_VALUE.fullmatch(value)):
            raise AddressError(501, f"5.5.4 Syntax error in {role.verb} parameters")
        name = keyword.upper()  # RFC 5321 §2.4: keywords are case-insensitive
        if name not in known:
            # RFC 5321 §4.1.1.11: 555 for unrecognized MAIL/RCPT parameters.
            raise AddressError(555, f"5.5.4 {role.verb} parameter {name} not recognized")
        if name in params:
            raise AddressError(501, f"5.5.4 {role.verb} parameter {name} given more than once")
        params[name] = value if eq else None
    return params


# --- the address itself ------------------------------------------------------------------


def _check_mailbox(path: str, role: _Role, *, smtputf8: bool, allow_ip_literal: bool) -> None:
    """Validate ``Mailbox`` (RFC 5321 §4.1.2) text from between the brackets, or raise 553."""
    if path.startswith("@"):
        if ":" in path:
            # RFC 5321 §4.1.2 A-d-l / §C: source routes are refused, never stripped, so a
            # client cannot smuggle a relay hop past our checks.
            raise _refuse(role, "source routes (@host,@host:user@domain) are not accepted")
        raise _refuse(role, "the address has no user name before '@'")

    if not path.isascii() and not smtputf8:
        # RFC 6531 §3.4: non-ASCII mailboxes only in an SMTPUTF8 transaction.
        raise AddressError(
            553, f"5.6.7 Bad {role.who} address: non-ASCII address requires SMTPUTF8"
        )

    if path.startswith('"'):
        end = _closing_quote(path)
        if end < 0:
            raise _refuse(role, "the quoted user name has no closing quote")
        local, rest = path[: end + 1], path[end + 1 :]
        if rest and not rest.startswith("@"):
            raise _refuse(role, "unexpected text after the quoted user name (expected '@')")
        has_at, domain = bool(rest), rest[1:]
    else:
        local, at, domain = path.partition("@")
        has_at = bool(at)

    if not has_at:
        raise _refuse(role, "the address has no domain (expected user@domain)")
    if "@" in domain:
        raise _refuse(role, "the address contains more than one '@'")

    # RFC 5321 §4.5.3.1.1 and §4.5.3.1.2, measured in UTF-8 octets (RFC 6531 §3.3).
    if _octets(local) > MAX_LOCAL_PART_OCTETS:
        raise _refuse(role, f"the user name is longer than the {MAX_LOCAL_PART_OCTETS}-byte limit")
    if _octets(domain) > MAX_DOMAIN_OCTETS:
        raise _refuse(role, f"the domain is longer than the {MAX_DOMAIN_OCTETS}-byte limit")
    # RFC 5321 §4.5.3.1.3: the path, including "<" and ">", is at most 256 octets, so in
    # practice a mailbox is at most 254 octets. Checked last so the reply names the most
    # specific limit that was exceeded.
    if _octets(path) + 2 > MAX_PATH_OCTETS:
        raise _refuse(role, f"the address is longer than the {MAX_PATH_OCTETS}-byte limit")

    if local.startswith('"'):
        _check_quoted_local(local, role)
    else:
        _check_dot_string(local, role)

    if domain.startswith("["):
        _check_address_literal(domain, role, allow_ip_literal=allow_ip_literal)
    else:
        _check_domain(domain, role)


def _check_dot_string(local: str, role: _Role) -> None:
    """Validate an unquoted local part: RFC 5321 §4.1.2 Dot-string of RFC 5322 atext."""
    # Both are legal atext but are old routing syntaxes ("user%other@here",
    # "other!user@here") that some MTAs still honour, turning us into an open relay.
    if "%" in local:
        raise _refuse(role, "'%' routing is not accepted")
    if "!" in local:
        raise _refuse(role, "'!' (UUCP bang path) routing is not accepted")
    if local.startswith(".") or local.endswith("."):
        raise _refuse(role, "the user name cannot start or end with a dot")
    if ".." in local:
        raise _refuse(role, "the user name cannot contain two dots in a row")
    for ch in local:
        # RFC 5322 §3.2.3 atext; RFC 6531 §3.3 adds UTF8-non-ascii (already gated on SMTPUTF8),
        # printable only (see `_is_unicode_text`).
        if not (ch == "." or _is_ascii_alnum(ch) or ch in _ATEXT_SPECIALS or _is_unicode_text(ch)):
            raise _refuse(
                role, f"the user name contains a character that is not allowed: {_describe(ch)}"
            )


def _check_quoted_local(local: str, role: _Role) -> None:
    """Validate a quoted local part (RFC 5321 §4.1.2 Quoted-string) including its quotes."""
    content: list[str] = []
    body = local[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            # quoted-pairSMTP = %d92 %d32-126 (RFC 6531 does not extend it to non-ASCII).
            escaped = body[i + 1]  # _closing_quote() guarantees a character follows
            if not (escaped.isascii() and escaped.isprintable()):
                raise _refuse(
                    role,
                    "the quoted user name contains a character that is not allowed: "
                    f"{_describe(escaped)}",
                )
            content.append(escaped)
            i += 2
            continue
        # qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii (RFC 6531 §3.3). The
        # only printable ASCII exclusions, '"' and '\', cannot occur here unescaped.
        if not ch.isascii() and not _is_unicode_text(ch):
            raise _refuse(
                role,
                f"the quoted user name contains a character that is not allowed: {_describe(ch)}",
            )
        content.append(ch)
        i += 1
    text = "".join(content)
    for trick in ("@", "%", "!"):
        if trick in text:
            # '"user@outside"@here' is delivered as user@outside by some back ends.
            raise _refuse(role, f"a quoted user name containing '{trick}' is not accepted")
    if not text:
        # Grammatical, but no real mailbox is called "" and it confuses downstream tools.
        raise _refuse(role, "the user name is empty")


def _check_domain(domain: str, role: _Role) -> None:
    """Validate an RFC 5321 §4.1.2 Domain, with U-labels allowed (RFC 6531 §3.3)."""
    if not domain:
        raise _refuse(role, "the domain after '@' is empty")
    if domain.endswith("."):
        # RFC 5321 §2.3.5: only fully-qualified names without the root dot are used.
        raise _refuse(role, "the domain cannot end with a dot")
    labels = domain.split(".")
    if any(not label for label in labels):
        raise _refuse(role, "the domain cannot start with a dot or contain two dots in a row")
    for label in labels:
        for ch in label:
            # sub-domain = Let-dig [Ldh-str]; U-labels: any non-ASCII letter, mark or digit.
            if not (ch == "-" or _is_ascii_alnum(ch) or _is_unicode_label_char(ch)):
                raise _refuse(
                    role, f"the domain contains a character that is not allowed: {_describe(ch)}"
                )
        if label.startswith("-") or label.endswith("-"):
            raise _refuse(role, "a part of the domain cannot start or end with a hyphen")
        # RFC 1035 §2.3.4: 63 octets per label, measured on the wire (A-label) form.
        if _label_octets(label) > MAX_LABEL_OCTETS:
            raise _refuse(
                role, f"a part of the domain is longer than the {MAX_LABEL_OCTETS}-byte limit"
            )
    if labels[-1].isascii() and (
        labels[-1].isdigit() or _INET_ATON_LIKE.fullmatch(domain) is not None
    ):
        # RFC 3696 §2: top-level domains are never all-numeric. Names like "192.0.2.1" or
        # "0x7f000001" would be resolved by inet_aton() as IP addresses, bypassing the
        # IP-literal refusal.
        raise _refuse(
            role, "the domain looks like an IP address, which is not accepted as a domain name"
        )


def _check_address_literal(domain: str, role: _Role, *, allow_ip_literal: bool) -> None:
    """Validate ``[IPv4]`` / ``[IPv6:...]`` (RFC 5321 §4.1.3), refused unless allowed."""
    if not allow_ip_literal:
        # Relay policy is by domain; an IP literal sidesteps it, so refuse by default.
        raise _refuse(role, "addresses at an IP address like [192.0.2.1] are not accepted")
    invalid = _refuse(role, "the IP address in [...] is not valid")
    if not domain.endswith("]"):
        raise invalid
    literal = domain[1:-1]
    try:
        if literal[:5].lower() == "ipv6:":
            # IPv6-address-literal; the character filter also rejects "%zone" suffixes,
            # which ipaddress would accept but RFC 5321 does not.
            if not _IPV6_LITERAL.fullmatch(literal[5:]):
                raise invalid
            ipaddress.IPv6Address(literal[5:])
        else:
            # IPv4-address-literal; General-address-literal tags are not supported.
            if not _IPV4_LITERAL.fullmatch(literal):
                raise invalid
            ipaddress.IPv4Address(literal)
    except ValueError:
        raise invalid from None


# --- helpers -----------------------------------------------------------------------------


def _refuse(role: _Role, reason: str) -> AddressError:
    """Build the 553 reply for a refused address."""
    return AddressError(553, f"{role.status} Bad {role.who} address syntax: {reason}")


def _closing_quote(text: str) -> int:
    """Index of the quote closing the Quoted-string that opens ``text``, or -1."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i
        else:
            i += 1
    return -1


def _is_control(ch: str) -> bool:
    """C0/C1 controls, DEL, and lone surrogates (undecodable input bytes)."""
    cp = ord(ch)
    return cp < 0x20 or 0x7F <= cp <= 0x9F or 0xD800 <= cp <= 0xDFFF


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _is_unicode_text(ch: str) -> bool:
    """A non-ASCII character a user name may hold: printable, so not a format character (the
    bidirectional overrides that show an address backwards), a private-use or unassigned code
    point, or a space or line separator (RFC 5198 §2: Net-Unicode has none of them). The
    address then reads the same in the envelope, the Received: field and the UI."""
    return not ch.isascii() and ch.isprintable()


def _is_unicode_label_char(ch: str) -> bool:
    """Letters, combining marks and digits outside ASCII, as used in U-labels."""
    return not ch.isascii() and unicodedata.category(ch)[0] in "LMN"


def _label_octets(label: str) -> int:
    """Length of a label as sent in DNS: itself if ASCII, else its ``xn--`` A-label."""
    if label.isascii():
        return len(label)
    return len("xn--") + len(label.encode("punycode"))


def _octets(text: str) -> int:
    return len(text.encode("utf-8"))


def _describe(ch: str) -> str:
    """Name a character in ASCII so the reply stays 7-bit even for non-ASCII input."""
    if ch == " ":
        return "a space"
    if ch.isascii() and ch.isprintable():
        return f"'{ch}'"
    return f"U+{ord(ch):04X}"
