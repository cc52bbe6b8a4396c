"""The catalogue of SMTP replies relaybox sends, named, so code and tests share one spelling.

Each text says what is wrong and, where the client or its admin can do something, what.
Enhanced status codes follow RFC 3463; the section that calls for each reply is cited beside it.
"""

from __future__ import annotations

from relaybox.untrusted import one_line

__all__ = ["Reply"]

_REASON_CHARS = 200
"""Most characters of a reason (an admin's, a next hop's) a reply quotes: a reply line is at
most 512 octets (RFC 5321 §4.5.3.1.5)."""


class Reply:
    """Named replies; methods build the ones that carry a value."""

    # RFC 5321 §4.2.2 / RFC 3463
    RELAY_DENIED = "554 5.7.1 Relay access denied"
    TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients for one message; send the rest in another"
    NEED_MAIL = "503 5.5.1 Error: send MAIL FROM first"
    NEED_RCPT = "503 5.5.1 Error: send RCPT TO first (no valid recipients)"
    NESTED_MAIL = "503 5.5.1 Error: nested MAIL command; finish or RSET the current message"
    DATA_SYNTAX = "501 5.5.4 Syntax: DATA takes no arguments"
    START_DATA = "354 End data with <CR><LF>.<CR><LF>"
    INSUFFICIENT_STORAGE = "452 4.3.1 Insufficient system storage; try again later"
    SPOOL_FAILED = "451 4.3.0 Message not stored: temporary spool failure; try again later"
    SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed maximum message size"
    NUL_IN_DATA = "554 5.6.0 Message refused: it contains NUL characters"
    TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections; try again later"
    TOO_MANY_FROM_IP = "421 4.7.0 Too many connections from your address; try again later"
    PREGREET = "554 5.5.1 Error: you talked before the greeting; goodbye"
    DATA_TIMEOUT = "421 4.4.2 Error: timeout exceeded while receiving DATA; goodbye"
    SHUTTING_DOWN = "421 4.3.2 Service shutting down; try again later"
    SESSION_TOO_LONG = "421 4.4.2 Error: this session has lasted too long; connect again to go on"
    PIPELINED_DATA = (  # RFC 2920 §3.1: DATA ends a command group; Postfix 3.9's wording
        "554 5.5.0 Error: SMTP protocol synchronization; wait for the 354 reply to DATA "
        "before sending the message"
    )
    TOO_MANY_HOPS = (  # RFC 5321 §6.3: a mail loop; Postfix's hopcount_limit reply
        "554 5.4.6 Too many hops: the message has been through too many servers (a mail loop?)"
    )
    RATE_LIMITED = "450 4.7.1 Too many messages from your address; slow down and try again later"
    USER_RATE_LIMITED = "450 4.7.1 Too many messages from your account this minute; try again later"
    BAD_HELO = (
        "501 5.5.2 Helo command rejected: give this host's name or an address literal such as "
        "[192.0.2.1]"
    )
    MAIL_OK = "250 2.1.0 Ok"
    VRFY_UNKNOWABLE = (  # RFC 5321 §3.5.3: a relay has no mailboxes to confirm
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"
    )
    VRFY_SYNTAX = "501 5.5.4 Syntax: VRFY <address>"
    RCPT_OK = "250 2.1.5 Ok"
    AUTH_IN_TRANSACTION = "503 5.5.1 Error: AUTH is not allowed during a mail transaction"
    TOO_MANY_FAILED_LOGINS = "421 4.7.0 Too many failed logins; goodbye"
    TLS_HANDSHAKE_FAILED = "454 4.7.0 TLS not available due to a handshake failure"
    INTERNAL_ERROR = "451 4.3.0 Internal error; try again later"
    NO_FROM_ADDRESS = (
        "553 5.7.1 Message refused: it has no From: header address for the sender check"
    )

    # RFC 4954 §6 (AUTH), worded as Postfix does
    AUTH_SUCCESSFUL = "235 2.7.0 Authentication successful"
    AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
    AUTH_LOCKED_OUT = (
        "454 4.7.0 Too many failed logins from your address; "
        "AUTH is refused for a while, try again later"
    )
    AUTH_BUSY = "454 4.7.0 Temporary authentication failure: too many logins in progress; try again"

    @staticmethod
    def suspended(destination: str, reason: str) -> str:
        """Mail deferred because an admin suspended its destination (`Admin.resume` finds it
        again by this text)."""
        reason = one_line(reason, _REASON_CHARS)
        return f"451 4.4.5 Delivery to {destination} is suspended by the admin: {reason}"

    @staticmethod
    def too_many_errors(hostname: str) -> str:
        """A session that reached `[limits] hard_error_limit`, worded as Postfix's smtpd."""
        return f"421 4.7.0 {hostname} Error: too many errors"

    @staticmethod
    def queued(queue_id: str) -> str:
        """RFC 5321 §4.2.2: 250 with the ID admins grep logs for."""
        return f"250 2.0.0 Ok: queued as {queue_id}"

    @staticmethod
    def size_exceeded(limit: int) -> str:
        """RFC 1870 §6.1."""
        return f"552 5.3.4 Message size exceeds fixed maximum message size ({limit} bytes)"

    @staticmethod
    def line_too_long(limit: int) -> str:
        """RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6."""
        return (
            f"500 5.5.2 Message refused: a line is longer than {limit} characters "
            "(RFC 5322 §2.1.1); wrap lines or use a MIME encoding"
        )

    @staticmethod
    def bare_line_ending(kind: str) -> str:
        """SMTP smuggling defence (CVE-2023-51764 class): only CRLF ends a line in DATA."""
        return (
            f"554 5.5.2 Message refused: bare {kind} received in DATA; lines must end with CRLF "
            '(an old device that sends bare LF needs bare_lf = "normalize" on this listener)'
        )

    @staticmethod
    def sender_not_owned(address: str, user: str) -> str:
        """RFC 4954 §3 leaves sender policy to us; worded as Postfix's login mismatch."""
        return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {user}"

    @staticmethod
    def from_not_owned(address: str, user: str) -> str:
        """The From: header must be the user's too, or the login could forge any sender."""
        return f"553 5.7.1 <{address}>: From: header address rejected: not owned by user {user}"

    @staticmethod
    def rejected_by_route(reject_text: str) -> str:
        """A `transport = "reject"` route's refusal: at RCPT, and at delivery for mail queued
        before the route said so."""
        return f"550 5.7.1 {reject_text}"

    @staticmethod
    def bounced_by_admin(reason: str = "") -> str:
        """What `Admin.bounce` records for each recipient it returns (the DSN quotes it), with
        the admin's reason on one line."""
        reply = "550 5.0.0 Returned to the sender by the relay's admin (bounce now)"
        reason = one_line(reason, _REASON_CHARS)
        return f"{reply}: {reason}" if reason else reply

    @staticmethod
    def suppressed(address: str, reason: str) -> str:
        """Recipient on the suppression list (filled by earlier hard bounces).

        The reason is put on one line here whoever wrote it (an admin, a next hop's reply, an
        entry stored before reasons were checked): a CR LF in it would be a reply of its own.
        """
        reason = one_line(reason, _REASON_CHARS)
        return (
            f"550 5.1.1 <{address}>: recipient suppressed after an earlier hard bounce: {reason}; "
            "ask the relay's admin to remove it if the address works again"
        )

    @staticmethod
    def looping(received: int, limit: int) -> str:
        """A queued message found looping at delivery: RFC 5321 §6.3 (Postfix's
        `hopcount_limit`), for mail queued before the end of DATA counted its hops."""
        return (
            f"554 5.4.6 Too many hops: {received} Received: headers (more than {limit}); "
            "the message is looping between mail servers and was not sent on"
        )
