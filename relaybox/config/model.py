"""The typed, immutable configuration of a relaybox engine.

Only shapes, defaults and pure lookups (`UserConfig.may_send_as`, `Config.find_user`) live here;
reading TOML and validating values is `config.load`'s job.
Every object is frozen so a reload can swap one reference while running sessions keep theirs.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import platformdirs

__all__ = [
    "APP_NAME",
    "AuthConfig",
    "Config",
    "LimitsConfig",
    "ListenerConfig",
    "LogConfig",
    "ServerConfig",
    "SocketAddress",
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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    """One `host:port` a listener binds (IPv6 hosts without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """The `[server]` table."""

    hostname: str = field(default_factory=default_hostname)
    """HELO name and the `by` host of the Received: header."""
    state_dir: Path = field(default_factory=default_state_dir)
    """Spool, database, lock and admin socket; created with mode 0700."""
    min_free_space_mb: int = 100
    """Below this much free disk in state_dir, new mail is refused with 452 4.3.1 at MAIL."""


@dataclass(frozen=True)
class LimitsConfig:
    """The `[limits]` table: what a client may cost the relay."""

    max_message_size: int = 10_240_000
    """Largest message in bytes (advertised as SIZE; 552 when exceeded). Postfix's default."""
    max_recipients: int = 1000
    """Recipients per message; the next RCPT gets 452 4.5.3 (RFC 5321 §4.5.3.1.10)."""
    max_line_length: int = 998
    """Longest text line in DATA, without CRLF (RFC 5322 §2.1.1); longer lines get 500 5.5.2."""
    max_command_length: int = 512
    """Longest command line including CRLF (RFC 5321 §4.5.3.1.4), plus room for extensions."""
    idle_timeout: float = 300.0
    """Seconds a client may stay silent between commands (RFC 5321 §4.5.3.2.7)."""
    data_timeout: float = 600.0
    """Total seconds allowed for one DATA transfer, so a slow sender cannot hold a slot forever."""
    max_connections: int = 200
    """Concurrent SMTP connections over all listeners; more get 421 4.7.0."""
    max_connections_per_ip: int = 50
    """Concurrent connections from one client IP (IPv6 counted per address); more get 421."""
    max_messages_per_minute_per_ip: int = 0
    """Messages one client IP may send per minute (0 = no limit); beyond, 450 4.7.1 at MAIL."""
    max_messages_per_minute_per_user: int = 100
    """Messages one authenticated user may send per minute (0 = no limit); beyond, 450 4.7.1.

    `UserConfig.max_messages_per_minute` overrides it for one user."""


@dataclass(frozen=True)
class AuthConfig:
    """The `[auth]` table: how password checks are paced and brute force is slowed down."""

    failures_before_delay: int = 3
    """Failed logins from one client IP (IPv6 counted per /64) within failure_window after
    which every further reply to that IP is delayed."""
    failures_before_lockout: int = 10
    """Failed logins from one IP within failure_window after which AUTH from that IP is
    refused for lockout_seconds; always more than failures_before_delay."""
    failure_window: float = 900.0
    """Seconds over which failed logins are counted."""
    lockout_seconds: float = 900.0
    """Seconds AUTH stays refused for an IP that reached failures_before_lockout."""
    max_verifications_in_flight: int = 8
    """Password checks running at once over all sessions (each is slow by design); AUTH
    beyond this gets 454 4.7.0 at once rather than waiting."""


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
class ListenerConfig:
    """One `[[listeners]]` entry: where relaybox accepts SMTP and under what policy."""

    listen: tuple[SocketAddress, ...]
    """Addresses to bind."""
    role: Role = "relay"
    """`relay`: clients in allowed_networks may relay; `submission`: AUTH required."""
    tls: TlsMode = "none"
    """`none`, `starttls` (RFC 3207) or `implicit` (RFC 8314)."""
    certificate: Path | None = None
    """PEM certificate (chain) offered by TLS; required when tls is not `none`."""
    private_key: Path | None = None
    """PEM private key of `certificate`, without a passphrase; may be the same file."""
    allowed_networks: tuple[Network, ...] = ()
    """Client networks that may relay through a `relay` listener; everyone else gets 554 5.7.1."""
    bare_lf: BareLfPolicy = "reject"
    """`reject` bare LF/CR in DATA (SMTP smuggling defence) or `normalize` them to CRLF."""
    greet_pause: float = 0.0
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

    name: str
    """The AUTH login name; case-sensitive. A name that is an address (`alice@example.org`)
    may always send as itself."""
    password_hash: str = field(repr=False)
    """What `relaybox passwd NAME` prints (scrypt, per-user salt); never a plain password.
    Left out of repr() so a logged config does not hand out hashes to crack."""
    allowed_senders: tuple[str, ...] = ()
    """Domains (`example.org`: that exact domain, not its subdomains) and addresses
    (`bob@example.net`) this user may use in MAIL FROM and From:, lower-cased."""
    max_messages_per_minute: int | None = None
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


DEFAULT_LISTENER = ListenerConfig(
    listen=(SocketAddress("127.0.0.1", 2525),),
    role="relay",
    tls="none",
    allowed_networks=(
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ),
)


@dataclass(frozen=True)
class Config:
    """The whole configuration; one immutable object swapped atomically on reload."""

    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    """The `[auth]` table: pacing of password checks and the brute-force defence."""
    listeners: tuple[ListenerConfig, ...] = (DEFAULT_LISTENER,)
    users: tuple[UserConfig, ...] = ()
    """The `[[users]]` blocks: who may log in on submission listeners; names are unique."""
    source: Path | None = None
    """The file this came from, or None for the embedded default."""

    def find_user(self, name: str) -> UserConfig | None:
        """The user with exactly this login name (case-sensitive), or None."""
        for user in self.users:
            if user.name == name:
                return user
        return None


def default_config() -> Config:
    """The embedded default: what relaybox runs with when no config file exists."""
    return Config()
