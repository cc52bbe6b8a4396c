"""Postfix's per-session error limits: count a session's error replies, slow it, then end it.

Sans-I/O: `SessionErrors.judge(reply)` is asked about every reply a session sends and says, for
an error, how long to wait before sending it and whether the session ends after it;
`inbound.server` sleeps and closes. Counts belong to one session, never to a client address
(an office behind NAT shares one address).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JUNK_VERBS", "ErrorVerdict", "SessionErrors", "is_error"]

JUNK_VERBS = frozenset({"NOOP", "VRFY", "ETRN", "RSET"})
"""Commands that move no mail forward (Postfix's junk commands): free only up to a limit."""


def is_error(reply: str) -> bool:
    """Whether a reply is an error: a 4xx or 5xx code (RFC 5321 §4.2.1)."""
    return reply[:1] in ("4", "5")


@dataclass(frozen=True)
class ErrorVerdict:
    """What to do with one reply."""

    delay: float = 0.0
    """Seconds to wait before sending it."""
    close: bool = False
    """True when the session must end after it (the hard limit is reached)."""


class SessionErrors:
    """One session's error replies, as Postfix's smtpd counts them (`smtpd_soft_error_limit`,
    `smtpd_hard_error_limit`, `smtpd_error_sleep_time`).

    Every error reply counts, whatever caused it: a refused MAIL or RCPT, a syntax error, an
    unknown command, a blank line, a 530 before AUTH. From the error after `soft_limit` on,
    each error reply waits `sleep_time` seconds; the error that reaches `hard_limit` is the
    session's last. With the defaults (10, 20, 1 s) a session that sends nothing but errors
    ends about 10 seconds after its first.

    Junk commands (`JUNK_VERBS`) are answered 250 but move nothing forward, so a flood of them
    would cost the relay for the whole session lifetime: past `junk_limit` of them each one's
    reply counts as an error too (Postfix's `smtpd_junk_command_limit`), and the count starts
    again once a message has been accepted.
    """

    def __init__(
        self, soft_limit: int, hard_limit: int, sleep_time: float, junk_limit: int = 100
    ) -> None:
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.sleep_time = sleep_time
        self.junk_limit = junk_limit
        self.junk = 0
        """Junk commands since the session began or its last accepted message."""
        self._count_next = False
        self.count = 0
        """Error replies so far."""
        self.last: str | None = None
        """The last error reply, for the session's summary log line."""
        self.unlogged = 0
        """Error replies without a log line of their own: the session's summary line counts
        them (when there are any)."""
        self._refusal_logged = False
        self._next_is_logged = False

    def judge(self, reply: str) -> ErrorVerdict | None:
        """Count `reply` if it is an error; say whether to delay it and whether to close after.

        Args:
            reply: The reply about to be sent (the last line of a multi-line reply).

        Returns:
            None for a reply that is no error; else the delay before sending it and whether
            the session ends after it.
        """
        counted, self._count_next = self._count_next, False
        if not (counted or is_error(reply)):
            return None
        self.count += 1
        self.last = reply
        if self._next_is_logged:
            self._next_is_logged = False
        else:
            self.unlogged += 1
        delay = self.sleep_time if self.count > self.soft_limit else 0.0
        return ErrorVerdict(delay, self.count >= self.hard_limit)

    def junk_command(self) -> None:
        """A junk command is about to be answered: past the junk limit its reply counts."""
        self.junk += 1
        self._count_next = self.junk > self.junk_limit

    def message_accepted(self) -> None:
        """A message was queued: the session did something useful, junk is free again."""
        self.junk = 0

    def log_refusal(self) -> bool:
        """Whether the refusal about to be sent gets a log line of its own: only a session's
        first does (admins grep for it), so a flood of refused commands cannot flood the log."""
        if self._refusal_logged:
            return False
        self._refusal_logged = self._next_is_logged = True
        return True

    @property
    def exhausted(self) -> bool:
        """Whether the hard limit has been reached."""
        return self.count >= self.hard_limit
