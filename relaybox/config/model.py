"""The typed, immutable configuration of a relaybox engine.

Shapes, defaults, the rules each setting carries (`Annotated[int, Range(...)]`, applied by
`config.tables`) and pure lookups (`UserConfig.may_send_as`, `Config.route_for`) live here;
reading TOML and checking values is `config.load`'s job. Every object is frozen so a reload can
swap one reference while running sessions keep theirs.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import platformdirs

from relaybox.config.keys import DkimKey
from relaybox.config.rules import Example, Range

__all__ = [
    "APP_NAME",
    "DEFAULT_LISTENER",
    "DEFAULT_ROUTE",
    "AuthConfig",
    "Config",
    "DeliveryConfig",
    "HealthConfig",
    "DnsConfig",
    "HostPort",
    "LimitsConfig",
    "ListenerConfig",
    "LogConfig",
    "RouteConfig",
    "RouteTls",
    "ServerConfig",
    "SocketAddress",
    "Transport",
    "UserConfig",
    "default_config",
    "default_config_path",
    "default_state_dir",
]

APP_NAME = "relaybox"

Role = Literal["relay", "submission"]
TlsMode = Literal["none", "starttls", "implicit"]
BareLfPolicy = Literal["reject", "normalize"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Transport = Literal["mx", "smarthost", "reject", "hold", "capture"]
RouteTls = Literal["none", "opportunistic", "required", "verify", "implicit"]
DkimKeyCheck = Literal["warn", "hold", "off"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DAY = 86400
_POSITIVE = Range(0, low_inclusive=False)
_TIMEOUT = Range(0, 3600, low_inclusive=False, unit="seconds")
_BACKOFF = Range(0, _DAY, low_inclusive=False, unit="seconds")
_DOMAINS = Example('["example.org", "*.example.org"]')


def default_config_path() -> Path:
    """Where `relaybox init` writes and every command looks when `--config` is not given."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "relaybox.toml"


def default_state_dir() -> Path:
    """Spool, database and admin socket when `[server] state_dir` is not set."""
    return Path(platformdirs.user_state_dir(APP_NAME))


def default_hostname() -> str:
    """The machine's FQDN, as Postfix's `myhostname` defaults to."""
    return socket.getfqdn() or "localhost"


@dataclass(frozen=True)
class SocketAddress:
    """One IP address and port: a listener binds it, a DNS resolver is asked there.

    The host is always an IP address literal, IPv6 without brackets."""

    host: str
    """An IP address literal (`127.0.0.1`, `::1`); `0.0.0.0` or `::` binds every address."""
    port: int
    """The TCP or UDP port; 0 for a listener means any free port."""

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HostPort:
    """One smart host of a route: a DNS name or an IP address (IPv6 without brackets), and
    the port to connect to."""

    host: str
    """A lower-cased DNS name, or an IP address literal."""
    port: int
    """The port to connect to: 587 for submission, 465 for implicit TLS, 25 between servers."""

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """The `[server]` table."""

    hostname: str = field(default_factory=default_hostname)
    """HELO name and the `by` host of the Received: header; mail to the bare `postmaster`
    goes to `postmaster@` this name (see `Config.qualify`)."""
    state_dir: Path = field(default_factory=default_state_dir)
    """Spool, database, lock and admin socket; created with mode 0700."""
    min_free_space_mb: Annotated[int, Range(0, unit="MB")] = 100
    """Below this much free disk in state_dir, new mail is refused with 452 4.3.1 at MAIL."""
    watch_config: bool = True
    """Reload when the config file changes on disk (its folder is watched); false: reload
    only on SIGHUP, `relaybox reload` or the UI's apply."""


@dataclass(frozen=True)
class LimitsConfig:
    """The `[limits]` table: what a client may cost the relay."""

    max_message_size: Annotated[int, Range(1024, 2**31, unit="bytes")] = 10_240_000
    """Largest message in bytes (advertised as SIZE; 552 when exceeded). Postfix's default."""
    max_recipients: Annotated[int, _POSITIVE] = 1000
    """Recipients per message; the next RCPT gets 452 4.5.3 (RFC 5321 §4.5.3.1.10)."""
    max_line_length: Annotated[int, Range(78, 100_000, unit="characters")] = 998
    """Longest text line in DATA, without CRLF (RFC 5322 §2.1.1); longer lines get 500 5.5.2."""
    max_command_length: Annotated[int, Range(512, 4096, unit="characters")] = 512
    """Longest command line including CRLF (RFC 5321 §4.5.3.1.4), plus room for extensions."""
    idle_timeout: Annotated[float, _TIMEOUT] = 300.0
    """Seconds a client may stay silent between commands (RFC 5321 §4.5.3.2.7)."""
    data_timeout: Annotated[float, _TIMEOUT] = 300.0
    """Total seconds allowed for one DATA transfer, so a slow sender cannot hold a slot forever
    (Postfix's smtpd_timeout is 300 s)."""
    max_session_time: Annotated[float, Range(0, 4 * 3600, low_inclusive=False, unit="seconds")] = (
        3600.0
    )
    """Longest life of one SMTP session: past it the client gets 421 4.4.2 at its next command
    (NOOP, RSET and HELP included) or as soon as it is idle, and must connect again. A message
    being transferred is not cut off; the session ends right after its reply."""
    max_connections: Annotated[int, _POSITIVE] = 200
    """Concurrent SMTP connections over all listeners; more get 421 4.7.0."""
    reserved_connections: Annotated[int, Range(0)] = 20
    """How many of max_connections only clients in a listener's allowed_networks may take, so
    strangers cannot crowd out the office's own machines; less than max_connections."""
    max_connections_per_ip: Annotated[int, _POSITIVE] = 50
    """Concurrent connections from one client IP (IPv6 counted per address); more get 421."""
    max_messages_per_minute_per_ip: Annotated[int, Range(0)] = 0
    """Messages one client IP may send per minute (0 = no limit); beyond, 450 4.7.1 at MAIL."""
    max_messages_per_minute_per_user: Annotated[int, Range(0)] = 100
    """Messages one authenticated user may send per minute (0 = no limit); beyond, 450 4.7.1.

    `UserConfig.max_messages_per_minute` overrides it for one user."""
    soft_error_limit: Annotated[int, Range(0)] = 10
    """Error replies in one session (refused commands, syntax errors, unknown commands, blank
    lines) after which each further error reply is delayed by error_sleep_time (Postfix's
    smtpd_soft_error_limit)."""
    hard_error_limit: Annotated[int, Range(1)] = 20
    """Error replies in one session after which it gets 421 4.7.0 and is closed (Postfix's
    smtpd_hard_error_limit); at least soft_error_limit."""
    junk_command_limit: Annotated[int, Range(1)] = 100
    """NOOP, VRFY, ETRN and RSET commands one session may send free (since its last accepted
    message); each further one counts as an error (Postfix's smtpd_junk_command_limit)."""
    error_sleep_time: Annotated[float, Range(0, 60, unit="seconds")] = 1.0
    """Seconds each error reply past soft_error_limit waits before it is sent (Postfix's
    smtpd_error_sleep_time); the session reads nothing more meanwhile."""
    transcript_budget_per_client: Annotated[int, Range(0, 2**30, unit="bytes")] = 65_536
    """Bytes of transcript one client IP (IPv6: its /64) may add to the spool per hour for
    sessions that brought no message (each stored as a summary of at most about 6 KB); beyond,
    such sessions are only counted. Sessions that brought a message are always stored whole."""
    transcript_budget_total: Annotated[int, Range(0, 2**31, unit="bytes")] = 16_777_216
    """Bytes of such summaries all clients together may add per hour, so many addresses
    cannot fill the disk either (16 MB an hour at most by default)."""


@dataclass(frozen=True)
class AuthConfig:
    """The `[auth]` table: how password checks are paced and brute force is slowed down."""

    failures_before_delay: Annotated[int, Range(1)] = 3
    """Failed logins from one client IP (IPv6 counted per /64) within failure_window after
    which every further reply to that IP is delayed."""
    failures_before_lockout: Annotated[int, Range(1)] = 10
    """Failed logins from one IP within failure_window after which AUTH from that IP is
    refused for lockout_seconds; always more than failures_before_delay."""
    failure_window: Annotated[float, Range(1, 86400, unit="seconds")] = 900.0
    """Seconds over which failed logins are counted."""
    lockout_seconds: Annotated[float, Range(1, 86400, unit="seconds")] = 900.0
    """Seconds AUTH stays refused for an IP that reached failures_before_lockout."""
    max_verifications_in_flight: Annotated[int, Range(1, 256)] = 8
    """Password checks in progress (running or waiting for one of two threads) for clients
    whose address has not failed a login within failure_window (each check is slow by
    design); AUTH beyond this gets 454 4.7.0 at once rather than waiting. An address that
    logged in successfully within a day is not counted and goes first. Checks for clients
    that failed never take these places."""
    suspect_verifications_in_flight: Annotated[int, Range(1, 256)] = 2
    """Password checks in progress, on one thread of their own, for clients whose address
    failed a login within failure_window; beyond this they get 454 4.7.0 at once. However
    many addresses are guessing, clients that have not failed are not slowed by them."""


@dataclass(frozen=True)
class DnsConfig:
    """The `[dns]` table: where delivery and the domain checks look names up."""

    resolvers: Annotated[tuple[SocketAddress, ...], Example('["127.0.0.1", "[::1]:5353"]')] = ()
    """DNS servers to ask, in order (written `"127.0.0.1"` for port 53, `"127.0.0.1:5353"`,
    `"[::1]:53"`); empty means the system's resolvers from /etc/resolv.conf."""
    timeout: Annotated[float, Range(0.1, 60, unit="seconds")] = 5.0
    """Seconds to wait for the answer to one query; a query that runs out counts as a
    temporary DNS failure (the message is retried later, never bounced for it)."""


@dataclass(frozen=True)
class DeliveryConfig:
    """The `[delivery]` table: how mail leaves the relay, how failures are retried, how long
    messages are kept. Durations are in seconds."""

    mx_port: Annotated[int, Range(1, 65535)] = 25
    """The SMTP port of MX hosts; only a lab setup delivering to a test server changes it."""
    outbound_ips: Annotated[tuple[IPAddress, ...], Example('["203.0.113.7"]')] = ()
    """The public addresses receiving servers see this relay send from, for the SPF and PTR
    checks of `relaybox doctor`; empty means those checks cannot be made."""
    max_connections: Annotated[int, Range(1, 10_000)] = 50
    """Outbound SMTP connections open at once, over all destinations."""
    max_connections_per_destination: Annotated[int, Range(1, 1000)] = 10
    """Outbound connections open at once to one destination (an MX domain or a smart host);
    `RouteConfig.max_connections` overrides it for one route."""
    connection_cache_idle: Annotated[float, Range(0, 300, unit="seconds")] = 10.0
    """Seconds an idle outbound connection is kept open for the next message to the same
    destination (RSET between messages); 0 closes every connection after its messages."""
    connect_timeout: Annotated[float, Range(0, 600, low_inclusive=False, unit="seconds")] = 30.0
    """Seconds to wait for a TCP connection and the server's greeting (Postfix's
    smtp_connect_timeout is 30 s)."""
    command_timeout: Annotated[float, _TIMEOUT] = 300.0
    """Seconds to wait for the reply to one SMTP command (RFC 5321 §4.5.3.2 suggests 5 minutes
    for MAIL, RCPT and the greeting)."""
    data_timeout: Annotated[float, _TIMEOUT] = 600.0
    """Seconds to wait while sending a message's content and for the reply to its final dot
    (RFC 5321 §4.5.3.2.5-6 suggest 3 and 10 minutes)."""
    min_backoff: Annotated[float, _BACKOFF] = 300.0
    """Seconds before the first retry of a deferred recipient (Postfix's minimal_backoff_time);
    each further failure doubles the wait, up to max_backoff."""
    max_backoff: Annotated[float, _BACKOFF] = 4000.0
    """Longest wait between two retries (Postfix's maximal_backoff_time); never less than
    min_backoff."""
    queue_lifetime: Annotated[float, Range(0, 30 * _DAY, low_inclusive=False, unit="seconds")] = (
        432_000.0
    )
    """Seconds a recipient may stay deferred before it is bounced with the last reply
    (5 days, as Postfix's maximal_queue_lifetime)."""
    delay_warning: Annotated[float, Range(0, 30 * _DAY, unit="seconds")] = 0.0
    """Seconds after which the sender gets a "delayed" DSN for a still-deferred recipient
    (RFC 3464 Action: delayed); 0 never sends one. Less than queue_lifetime."""
    soft_bounce: bool = False
    """Turn every permanent (5xx) failure into a deferral, so nothing bounces while an admin
    investigates (Postfix's soft_bounce); off again, the deferred mail bounces on its next try."""
    retention: Annotated[float, Range(0, 366 * _DAY, unit="seconds")] = 604_800.0
    """Seconds a delivered or bounced message (body and transcripts) is kept for viewing
    before it is purged (7 days); 0 purges it within seconds of finishing."""
    suppress_hard_bounces: bool = True
    """Add a recipient to the suppression list when the next hop's reply to its own RCPT says
    it does not exist (5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10); later mail to it is refused at RCPT.
    DNS failures, a refused sender and relaybox's own refusals never add one."""
    suppression_days: Annotated[float, Range(0, 3650, low_inclusive=False, unit="days")] = 30.0
    """Days a suppression list entry lasts before mail to that recipient is tried again."""
    dkim_key_check: DkimKeyCheck = "warn"
    """Before a signed message's first attempt, look up its selector's key in DNS (cached
    for 5 minutes): `warn` logs and shows a missing or different key and sends anyway,
    `hold` also holds the message for an admin, `off` does not look."""
    bounce_sender: str = "MAILER-DAEMON"
    """Local part of the From: of the DSNs (bounces) relaybox writes; the domain is
    `[server] hostname`. DSNs are always sent with the null envelope sender `<>`."""

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the next attempt after `failures` failed ones (1 or more).

        min_backoff after the first failure, doubling with each further one, at most
        max_backoff: 300, 600, 1200, 2400, 4000, 4000, ... with the defaults.
        """
        doublings = min(max(failures, 1) - 1, 64)  # 2**64 * any sane minimum exceeds the cap
        return min(self.max_backoff, self.min_backoff * 2.0**doublings)


@dataclass(frozen=True)
class LogConfig:
    """The `[log]` table."""

    format: LogFormat = "text"
    """`text` for people, `json` for log shippers (one object per line)."""
    level: LogLevel = "info"
    """Lowest level written."""
    file: Path | None = None
    """Also append to this file (reopened on SIGUSR1 for logrotate); stderr always gets the log."""


@dataclass(frozen=True)
class UiConfig:
    """The `[ui]` table: how the terminal UI looks and when its status bar warns."""

    theme: str = "relaybox-dark"
    """Theme name: one of `themes/*.toml` (relaybox-dark, relaybox-light), a file in the config
    folder's `themes/`, or one of Textual's built-in themes."""
    deferred_warning: Annotated[int, Range(0, 10_000_000, unit="messages")] = 100
    """The status bar turns to the warning colour above this many deferred messages."""
    oldest_deferred_warning: Annotated[float, Range(0, 366 * _DAY, unit="seconds")] = 14_400.0
    """...or when the oldest deferred message has waited longer than this (seconds)."""


@dataclass(frozen=True)
class HealthConfig:
    """The `[health]` table: how often the running engine checks its sending domains."""

    check_interval: Annotated[float, Range(0, 2_678_400, unit="seconds")] = 21_600.0
    """Seconds between checks of every sending domain's SPF, DKIM, DMARC, MX and reverse DNS
    records (the Domains pane and the log show what changed); 0 checks only at start and
    when asked (the Domains pane's re-check, `relaybox doctor`)."""


LOADED = {"loaded": True}
"""Field metadata of what the loader fills in from elsewhere (a key file): not a setting."""

DkimAlgorithm = Literal["rsa-sha256", "ed25519-sha256"]


@dataclass(frozen=True)
class DkimConfig:
    """One `[[dkim]]` entry: a key that signs mail from one domain, under one selector."""

    domain: str
    """Mail whose From: domain is exactly this (case-insensitive) is signed with this key."""
    selector: str
    """The selector: the key is published at SELECTOR._domainkey.DOMAIN."""
    private_key: Path
    """The private key file (PEM; for ed25519 also dkimpy's raw base64), as `relaybox dkim
    keygen` writes it; read and checked when the config loads."""
    algorithm: DkimAlgorithm = "rsa-sha256"
    """`rsa-sha256` or `ed25519-sha256`; two entries for one domain sign twice."""
    key: DkimKey | None = field(default=None, repr=False, compare=False, metadata=LOADED)
    """The key read from `private_key` when the config loaded (not a setting): what mail is
    signed with until the next reload, so a key file changed or removed on disk later
    changes nothing until the config is reloaded and checked again."""


@dataclass(frozen=True)
class ListenerConfig:
    """One `[[listeners]]` entry: where relaybox accepts SMTP and under what policy."""

    listen: Annotated[tuple[SocketAddress, ...], Example('["127.0.0.1:2525"]')]
    """Addresses to bind."""
    role: Role = "relay"
    """`relay`: clients in allowed_networks may relay; `submission`: AUTH required."""
    tls: TlsMode = "none"
    """`none`, `starttls` (RFC 3207) or `implicit` (RFC 8314)."""
    certificate: Path | None = None
    """PEM certificate (chain) offered by TLS; required when tls is not `none`."""
    private_key: Path | None = None
    """PEM private key of `certificate`, without a passphrase; may be the same file."""
    allowed_networks: Annotated[tuple[Network, ...], Example('["192.168.1.0/24"]')] = ()
    """Client networks that may relay through a `relay` listener; everyone else gets 554 5.7.1."""
    bare_lf: BareLfPolicy = "reject"
    """`reject` bare LF/CR in DATA (SMTP smuggling defence) or `normalize` them to CRLF."""
    greet_pause: Annotated[float, Range(0, 300, unit="seconds")] = 0.0
    """Seconds to wait before the greeting; a client that talks first is dropped (0 = off)."""
    allow_ip_literals: bool = False
    """Accept `user@[192.0.2.1]` addresses."""

    @property
    def name(self) -> str:
        """How problems and logs name this listener: its first address."""
        return str(self.listen[0]) if self.listen else "listener"


@dataclass(frozen=True)
class UserConfig:
    """One `[[users]]` entry: a login for `submission` listeners and whom it may send as."""

    name: Annotated[str, Example('"alice"')]
    """The AUTH login name; case-sensitive. A name that is an address (`alice@example.org`)
    may always send as itself."""
    password_hash: Annotated[
        str, Example('"$scrypt$..." (run relaybox passwd NAME and paste what it prints)')
    ] = field(repr=False)
    """What `relaybox passwd NAME` prints (scrypt, per-user salt); never a plain password.
    Left out of repr() so a logged config does not hand out hashes to crack."""
    allowed_senders: Annotated[tuple[str, ...], Example('["example.org", "bob@example.net"]')] = ()
    """Domains (`example.org`: that exact domain, not its subdomains) and addresses
    (`bob@example.net`) this user may use in MAIL FROM and From:, lower-cased."""
    max_messages_per_minute: Annotated[int | None, Range(1)] = None
    """This user's own limit, instead of `[limits] max_messages_per_minute_per_user`."""

    def may_send_as(self, address: str) -> bool:
        """Whether this user may send as `address` (a parsed MAIL FROM or From: address).

        Case-insensitive. True when the address equals the user's name (if the name is an
        address) or an address in allowed_senders, or when its domain equals a domain in
        allowed_senders (exactly: `example.org` does not cover `sub.example.org`). The null
        sender `""` and addresses without a domain never match.
        """
        wanted = address.lower()
        local, at, domain = wanted.rpartition("@")
        if not at or not local or not domain:
            return False
        if "@" in self.name and wanted == self.name.lower():
            return True
        for entry in self.allowed_senders:
            entry = entry.lower()
            matched = wanted == entry if "@" in entry else domain == entry
            if matched:
                return True
        return False


@dataclass(frozen=True)
class RouteConfig:
    """One `[[routes]]` entry: which mail it applies to and how that mail leaves.

    Routes are tried in the order written and the first that `matches` wins
    (`Config.route_for`). Domain patterns, in `domains` and `sender_domains`, are lower-case
    ASCII (IDNs as `xn--` A-labels) and each one of: an exact domain (`example.com`), a
    wildcard (`*.example.com`: its subdomains at any depth, not example.com itself, as
    Postfix's `.example.com`), or `*` alone (every domain).
    """

    domains: Annotated[tuple[str, ...], _DOMAINS]
    """Recipient domain patterns this route takes; at least one. `*` is never combined with
    other patterns."""
    transport: Annotated[Transport, Example('"mx" (or "smarthost", "reject", "hold", "capture")')]
    """`mx`: look up the domain's MX hosts and deliver there; `smarthost`: hand the mail to
    `hosts`; `reject`: refuse the recipient at RCPT with 550 5.7.1 `reject_text`; `hold`:
    accept and keep the message until an admin releases it (a released recipient goes on by
    the next route that matches it, else by MX); `capture`: accept, keep it for
    viewing and mark it delivered without sending it anywhere (a test sandbox)."""
    sender_domains: Annotated[tuple[str, ...], _DOMAINS] = ()
    """When not empty, the route applies only when the envelope sender's domain matches one
    of these patterns too (a sender-dependent relay host, as Postfix's
    sender_dependent_relayhost_maps); the null sender `<>` matches only `*`."""
    hosts: Annotated[tuple[HostPort, ...], Example('["smtp.example.net:587"]')] = ()
    """`smarthost` only, and required there: the upstreams, tried in order (the next when one
    cannot be reached or defers), or in turn with round_robin."""
    tls: RouteTls = "opportunistic"
    """Outbound TLS for `mx` and `smarthost`: `none` (never), `opportunistic` (STARTTLS when
    offered, else plain), `required` (STARTTLS or defer, certificate not checked), `verify`
    (STARTTLS with the certificate and host name verified), `implicit` (TLS from the first
    byte, as on port 465, verified)."""
    round_robin: bool = False
    """`smarthost` only: spread connections over `hosts` in turn instead of always starting
    with the first."""
    username: str | None = None
    """`smarthost` only: log in (SMTP AUTH) with this name; needs password_file or
    password_env."""
    password_file: Path | None = None
    """The file whose first line is the AUTH password (keep it readable by relaybox only).
    Exclusive with password_env."""
    password_env: str | None = None
    """The environment variable holding the AUTH password; it must be set when the config is
    loaded. Exclusive with password_file."""
    ca_file: Path | None = None
    """PEM bundle of the CA certificates that `verify` and `implicit` trust for this route,
    instead of the system's store (for an upstream with a private CA)."""
    reject_text: str = "Relaying to this domain is not allowed"
    """`reject` only: the text of the `550 5.7.1` reply to RCPT."""
    max_messages_per_minute: Annotated[int, Range(0, 100_000)] = 0
    """Messages per minute sent to one destination of this route, for providers that
    throttle (0 = no limit); further messages wait, they do not fail."""
    max_connections: Annotated[int | None, Range(1, 1000)] = None
    """Connections at once to one destination of this route, instead of
    `[delivery] max_connections_per_destination`."""
    rewrite_senders: Annotated[
        tuple[tuple[str, str], ...],
        Example('{ "scanner@printer.local" = "scanner@example.org" }'),
    ] = ()
    """Sender rewriting for mail leaving through this route, as Postfix's canonical maps:
    `(from, to)` pairs, where `from` is a lower-cased address or `@domain` (every address at
    that domain) and `to` an address. Applied to the envelope sender and the From: header;
    an exact address wins over its `@domain`. See `rewrite_sender`."""

    def matches(self, recipient_domain: str, sender_domain: str) -> bool:
        """Whether mail to `recipient_domain` from `sender_domain` takes this route.

        Both are domains without `@`, in any case; `sender_domain` is `""` for the null
        sender. Domains with non-ASCII letters are compared in their `xn--` form.
        """
        if not self.takes(recipient_domain):
            return False
        return not self.sender_domains or _domain_matches(self.sender_domains, sender_domain)

    def takes(self, recipient_domain: str) -> bool:
        """Whether `domains` match `recipient_domain`, for some sender at least."""
        return _domain_matches(self.domains, recipient_domain)

    def rewrite_sender(self, address: str) -> str:
        """`address` as mail leaving through this route carries it (case-insensitive lookup).

        The exact address is looked up first, then `@` and its domain; an address found in
        neither, and the null sender `""`, come back unchanged.
        """
        if "@" not in address or not self.rewrite_senders:
            return address
        wanted = address.lower()
        domain = "@" + wanted.rpartition("@")[2]
        found = dict(self.rewrite_senders)
        return found.get(wanted) or found.get(domain) or address


def _domain_matches(patterns: tuple[str, ...], domain: str) -> bool:
    domain = _ascii_domain(domain)
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            if domain.endswith(pattern[1:]):
                return True
        elif domain == pattern:
            return True
    return False


def _ascii_domain(domain: str) -> str:
    """Lower-cased, with IDN labels as `xn--` A-labels (RFC 5890), the form patterns use."""
    domain = domain.lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain  # not a valid IDN: it can only ever match "*"


DEFAULT_ROUTE = RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
"""The route of a config without `[[routes]]`: every domain straight to its MX hosts."""


DEFAULT_LISTENER = ListenerConfig(
    listen=(SocketAddress("127.0.0.1", 2525),),
    role="relay",
    tls="none",
    allowed_networks=(
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ),
)
"""The listener of a config without `[[listeners]]`: port 2525 on loopback, relaying for
programs on this machine only."""


@dataclass(frozen=True)
class Config:
    """The whole configuration; one immutable object swapped atomically on reload."""

    server: ServerConfig = field(default_factory=ServerConfig)
    """The `[server]` table: host name, state folder, free space floor."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """The `[limits]` table: what one client or message may cost the relay."""
    log: LogConfig = field(default_factory=LogConfig)
    """The `[log]` table: format, level and optional file of the log."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    """The `[auth]` table: pacing of password checks and the brute-force defence."""
    listeners: tuple[ListenerConfig, ...] = (DEFAULT_LISTENER,)
    """The `[[listeners]]` blocks: where SMTP is accepted; `(DEFAULT_LISTENER,)` when the
    file has none."""
    users: tuple[UserConfig, ...] = ()
    """The `[[users]]` blocks: who may log in on submission listeners; names are unique."""
    dns: DnsConfig = field(default_factory=DnsConfig)
    """The `[dns]` table: resolvers and their timeout."""
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    """The `[delivery]` table: outbound connections, retries, bounces, retention."""
    dkim: tuple[DkimConfig, ...] = ()
    """The `[[dkim]]` blocks: the keys mail is signed with, by From: domain."""
    health: HealthConfig = field(default_factory=HealthConfig)
    """The `[health]` table: the periodic domain checks."""
    ui: UiConfig = field(default_factory=UiConfig)
    """The `[ui]` table: the terminal UI's theme and warning thresholds."""
    routes: tuple[RouteConfig, ...] = (DEFAULT_ROUTE,)
    """The `[[routes]]` blocks in file order, first match wins; `(DEFAULT_ROUTE,)` when the
    file has none."""
    source: Path | None = None
    """The file this came from, or None for the embedded default."""

    def find_user(self, name: str) -> UserConfig | None:
        """The user with exactly this login name (case-sensitive), or None."""
        for user in self.users:
            if user.name == name:
                return user
        return None

    def qualify(self, recipient: str) -> str:
        """`recipient` as it is routed and sent on: the bare `postmaster` becomes
        `postmaster@` + `[server] hostname`; any other address comes back unchanged.

        RFC 5321 §4.1.1.3 makes every server accept `<Postmaster>` without a domain. A relay
        has no mailbox of its own to put it in, so it does what Postfix does for an address
        without a domain (append_at_myorigin, with myorigin = myhostname, as a null client is
        set up): the relay's own name is added and the mail goes wherever the routes send mail
        for that domain, to a person at the organisation. Sent on bare, `postmaster` would
        mean the next hop's postmaster instead.
        """
        return recipient if "@" in recipient else f"{recipient}@{self.server.hostname}"

    def route_for(
        self, recipient: str, sender: str, *, released: bool = False
    ) -> RouteConfig | None:
        """The first route that matches a recipient and envelope sender, or None.

        Args:
            recipient: A parsed recipient address; the bare `postmaster` is routed as
                `qualify` writes it, by the domain of `[server] hostname`.
            sender: The parsed envelope sender; `""` for the null sender.
            released: An admin released this recipient from a hold: `hold` routes are
                passed over, and when no other route matches it goes by MX (direct
                delivery), so that a release always sends the mail on.

        Returns:
            The route, or None when no route matches: mail to that recipient is refused at
            RCPT with 550 5.7.1 (the loader warns when no route has domains = ["*"]).
        """
        recipient_domain = self.qualify(recipient).rpartition("@")[2]
        sender_domain = sender.rpartition("@")[2] if "@" in sender else ""
        for route in self.routes:
            if released and route.transport == "hold":
                continue
            if route.matches(recipient_domain, sender_domain):
                return route
        return DEFAULT_ROUTE if released else None


def default_config() -> Config:
    """The embedded default: what relaybox runs with when no config file exists."""
    return Config()
