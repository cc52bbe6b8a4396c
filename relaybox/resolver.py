"""DNS lookups for delivery and the domain checks, through the one resolver the config names.

Every lookup in relaybox goes through `Resolver`: MX with the RFC 5321 §5.1 rules, addresses,
TXT, PTR and plain queries. It answers with results that say what was found, what does not
exist and what could not be learned now; it never raises a DNS error, and it decides nothing
about delivery (that is `outbound/client.py`'s job, from `MxResult.permanent`).

Results:

    MxResult        hosts | implicit | null_mx | nxdomain | no_address | temporary
    AddressResult   ok | nxdomain | nodata | temporary     (IPv6 then IPv4 addresses)
    TxtResult       ok | nxdomain | nodata | temporary     (one str per record)
    PtrResult       ok | nxdomain | nodata | temporary     (host names)
    QueryResult     ok | nxdomain | nodata | temporary     (dnspython rdata)
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

__all__ = [
    "AddressResult",
    "LookupKind",
    "MxKind",
    "MxResult",
    "PtrResult",
    "QueryResult",
    "Resolver",
    "TxtResult",
]

MxKind = Literal["hosts", "implicit", "null_mx", "nxdomain", "no_address", "temporary"]
LookupKind = Literal["ok", "nxdomain", "nodata", "temporary"]

# The EDNS payload size of DNS Flag Day 2020: fits any path MTU without fragmenting, and
# spares most answers bigger than 512 bytes the TCP retry (RFC 6891 §6.2.5).
_EDNS_PAYLOAD = 1232
# The longest a single attempt waits before trying the next server (or the same one again):
# dnspython's default, so one lost UDP packet does not use up the whole lifetime.
_ATTEMPT_TIMEOUT = 2.0


@dataclass(frozen=True, kw_only=True)
class MxResult:
    """Where mail for a domain goes, after RFC 5321 §5.1 and RFC 7505.

    `kind` is one of:
    - `hosts`: the MX hosts, in `hosts`;
    - `implicit`: no MX records but the domain has addresses, so the domain itself is the
      one host, preference 0 (RFC 5321 §5.1);
    - `null_mx`: the domain publishes "MX 0 ." and accepts no mail (RFC 7505 §3);
    - `nxdomain`: the domain does not exist (or is not a valid domain name);
    - `no_address`: the domain exists but has neither MX nor A/AAAA records: nowhere to
      deliver (RFC 5321 §5.1);
    - `temporary`: DNS did not answer usefully now (SERVFAIL, REFUSED, timeout, network);
      retry later. `error` says what happened.
    """

    kind: MxKind
    """What the lookup found; see the class docstring."""
    hosts: tuple[tuple[int, str], ...] = ()
    """(preference, host name) to try in this order: by preference, equal preferences in
    random order (RFC 5321 §5.1). Host names are ASCII (A-labels) without the final dot."""
    error: str | None = None
    """Why the lookup failed, in words for the log and a bounce; None when it did not."""

    @property
    def permanent(self) -> bool:
        """True when asking again will not help: bounce now instead of deferring."""
        return self.kind in ("null_mx", "nxdomain", "no_address")

    @property
    def enhanced_status(self) -> str | None:
        """The RFC 3463 status of a failure: 5.1.10 null MX (RFC 7505 §4.2), 5.1.2 bad
        destination domain, 4.4.3 directory server failure; None when there are hosts."""
        return {
            "null_mx": "5.1.10",
            "nxdomain": "5.1.2",
            "no_address": "5.1.2",
            "temporary": "4.4.3",
        }.get(self.kind)


@dataclass(frozen=True, kw_only=True)
class _Result:
    kind: LookupKind
    """`ok` (something found), `nxdomain` (no such name), `nodata` (the name exists, without
    records of this type) or `temporary` (DNS failed now; `error` says how)."""
    error: str | None = None
    """Why the lookup failed (or, for an `ok` address lookup, why one family is missing)."""


@dataclass(frozen=True, kw_only=True)
class AddressResult(_Result):
    """The IPv6 and IPv4 addresses of a host."""

    addresses: tuple[str, ...] = ()
    """IPv6 addresses first, then IPv4 (RFC 6724 §10.3 prefers IPv6 by default); each
    family in the order the server gave. Delivery tries them all in turn."""

    @property
    def ipv6(self) -> tuple[str, ...]:
        """The IPv6 addresses only."""
        return tuple(a for a in self.addresses if ":" in a)

    @property
    def ipv4(self) -> tuple[str, ...]:
        """The IPv4 addresses only."""
        return tuple(a for a in self.addresses if ":" not in a)


@dataclass(frozen=True, kw_only=True)
class TxtResult(_Result):
    """The TXT records of a name."""

    records: tuple[str, ...] = ()
    """One str per record, its character-strings joined with nothing between them, as SPF
    (RFC 7208 §3.3) and DKIM (RFC 6376 §3.6.2.2) read them; bytes that are not UTF-8 are
    replaced with U+FFFD."""


@dataclass(frozen=True, kw_only=True)
class PtrResult(_Result):
    """The PTR records (reverse DNS) of an IP address."""

    names: tuple[str, ...] = ()
    """Host names, without the final dot."""


@dataclass(frozen=True, kw_only=True)
class QueryResult(_Result):
    """The records of one type at one name, for checks that need more than text."""

    records: tuple[dns.rdata.Rdata, ...] = ()
    """The records of the asked type (after following CNAMEs)."""
    ttl: int | None = None
    """Their TTL in seconds, when found."""

    @property
    def texts(self) -> tuple[str, ...]:
        """The records in zone-file text, e.g. "10 mx.example.org."."""
        return tuple(rdata.to_text() for rdata in self.records)


@dataclass(frozen=True)
class _Lookup:
    kind: LookupKind
    rrset: dns.rrset.RRset | None = None
    error: str | None = None


class Resolver:
    """A stub resolver bound to the configured name servers, with a small TTL-honouring cache.

    With servers configured it asks those and only those; with none it uses the system's
    (`/etc/resolv.conf`). All lookups run on the event loop (dnspython's asyncresolver), never
    in a blocking call.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        timeout: float = 5.0,
        *,
        cache_size: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        """Build the resolver; reading resolv.conf is the only I/O, and only with no servers.

        Args:
            nameservers: (address, port) of each server to ask, in order; empty for the
                system's. Addresses are IP literals ("127.0.0.1", "::1").
            timeout: seconds one lookup may take in all (the dnspython lifetime) before it
                counts as `temporary`.
            cache_size: answers (negative ones included) kept until their TTL runs out,
                least recently used dropped first; 0 turns the cache off, for checks that
                must see a record the moment it is published.
            rng: the randomness for shuffling equal MX preferences (tests pass a seeded one).

        Raises:
            ValueError: a name server address is not an IP address (the config loader
                checks this first, so it is a programming error here).
        """
        self.timeout = timeout
        self._rng = rng or random.Random()
        self._setup_error: str | None = None
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(_server_address(host), port)
                for host, port in nameservers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.exception.DNSException as exc:
                # No resolv.conf (a bare container): every lookup is `temporary` and says
                # why, rather than the engine failing to start over a fixable setting.
                resolver = dns.asyncresolver.Resolver(configure=False)
                self._setup_error = f"no [dns] resolvers configured and the system has none ({exc})"
        _tune(resolver, timeout)
        if cache_size > 0:
            resolver.cache = dns.resolver.LRUCache(cache_size)
        self._resolver = resolver

    @property
    def nameservers(self) -> tuple[tuple[str, int], ...]:
        """(address, port) of the servers actually asked, for logs and `doctor`."""
        servers: list[tuple[str, int]] = []
        for server in self._resolver.nameservers:
            if isinstance(server, dns.nameserver.AddressAndPortNameserver):
                servers.append((server.address, server.port))
            else:  # a bare address string, as resolv.conf gives them
                servers.append((str(server), self._resolver.port))
        return tuple(servers)

    def blocking(self) -> dns.resolver.Resolver:
        """A blocking dnspython resolver asking the same servers with the same timeout.

        For libraries that do their own lookups with dnspython's blocking API (pyspf), in a
        worker thread: handing them this keeps their queries on the configured servers
        instead of the system's. It has its own cache (dnspython's is thread-safe).
        """
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(self._resolver.nameservers)
        _tune(resolver, self.timeout)
        resolver.cache = dns.resolver.LRUCache(1000)
        return resolver

    async def mx(self, domain: str) -> MxResult:
        """Where to deliver mail for `domain`, per RFC 5321 §5.1 and RFC 7505.

        Args:
            domain: a domain name (U-labels are converted to A-labels). Not an address
                literal: those need no DNS.

        Returns:
            The MX hosts sorted by preference with equal preferences shuffled, the implicit
            MX, or why there is none (see `MxResult`).
        """
        try:
            name = _absolute(domain)
        except ValueError as exc:
            return MxResult(kind="nxdomain", error=str(exc))
        found = await self._lookup(name, dns.rdatatype.MX)
        if found.kind == "temporary":
            return MxResult(kind="temporary", error=found.error)
        if found.kind == "nxdomain":
            return MxResult(kind="nxdomain", error=found.error)
        if found.kind == "ok" and found.rrset is not None:
            records = [rdata for rdata in found.rrset if isinstance(rdata, MX)]
            # RFC 7505 §3: "MX 0 ." says the domain takes no mail. The RFC forbids any other
            # MX beside it; when a zone has both anyway, the real hosts are still usable.
            usable = [r for r in records if r.exchange != dns.name.root]
            if records and not usable:
                return MxResult(
                    kind="null_mx",
                    error=f"{_text(name)} publishes a null MX: it accepts no mail (RFC 7505)",
                )
            if usable:
                return MxResult(kind="hosts", hosts=self._order(usable))

        # RFC 5321 §5.1: no MX records at all, so the domain itself is the mail host, an
        # "implicit MX" of preference 0, if it has an address.
        addresses = await self._addresses(name)
        if addresses.kind == "ok":
            return MxResult(kind="implicit", hosts=((0, _text(name)),))
        if addresses.kind == "temporary":
            return MxResult(kind="temporary", error=addresses.error)
        if addresses.kind == "nxdomain":
            return MxResult(kind="nxdomain", error=addresses.error)
        return MxResult(
            kind="no_address",
            error=f"{_text(name)} has no MX record and no address: it cannot receive mail",
        )

    async def addresses(self, host: str) -> AddressResult:
        """The IPv6 and IPv4 addresses of `host`, AAAA and A asked at the same time.

        One family failing does not hide the other: a host whose AAAA lookup times out (some
        servers drop AAAA queries) is still reached over IPv4, with the failure in `error`.

        Args:
            host: a host name, e.g. an MX host.

        Returns:
            `ok` with IPv6 addresses then IPv4 ones (RFC 6724 §10.3's default preference);
            otherwise `temporary` if either lookup failed, `nxdomain`, or `nodata`.
        """
        try:
            name = _absolute(host)
        except ValueError as exc:
            return AddressResult(kind="nxdomain", error=str(exc))
        return await self._addresses(name)

    async def txt(self, name: str) -> TxtResult:
        """The TXT records at `name` (SPF, DKIM keys, DMARC, MTA-STS, TLS-RPT).

        Args:
            name: the owner name, e.g. "s2026._domainkey.example.org".

        Returns:
            Each record as one string (its character-strings joined), or why there is none.
        """
        try:
            owner = _absolute(name)
        except ValueError as exc:
            return TxtResult(kind="nxdomain", error=str(exc))
        found = await self._lookup(owner, dns.rdatatype.TXT)
        if found.kind != "ok" or found.rrset is None:
            return TxtResult(kind=found.kind, error=found.error)
        records = tuple(
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in found.rrset
            if isinstance(rdata, TXT)
        )
        return TxtResult(kind="ok", records=records)

    async def ptr(self, ip: str) -> PtrResult:
        """The reverse DNS names of `ip` (for forward-confirmed reverse DNS checks).

        Args:
            ip: an IPv4 or IPv6 address.

        Returns:
            The PTR host names, or why there are none.

        Raises:
            ValueError: `ip` is not an IP address (a caller's mistake, not a DNS outcome).
        """
        address = ipaddress.ip_address(ip)
        found = await self._lookup(dns.reversename.from_address(str(address)), dns.rdatatype.PTR)
        if found.kind != "ok" or found.rrset is None:
            return PtrResult(kind=found.kind, error=found.error)
        names = tuple(
            rdata.target.to_text(omit_final_dot=True)
            for rdata in found.rrset
            if isinstance(rdata, PTR)
        )
        return PtrResult(kind="ok", names=names)

    async def query(self, name: str, rdtype: str | dns.rdatatype.RdataType) -> QueryResult:
        """The records of type `rdtype` at `name`, for checks the methods above do not cover.

        Args:
            name: the owner name.
            rdtype: a record type, e.g. "CAA" or `dns.rdatatype.SOA`.

        Returns:
            The records and their TTL, or why there are none.

        Raises:
            ValueError: `rdtype` is not a record type one can query (a caller's mistake).
        """
        kind = _rdtype(rdtype)
        try:
            owner = _absolute(name)
        except ValueError as exc:
            return QueryResult(kind="nxdomain", error=str(exc))
        found = await self._lookup(owner, kind)
        if found.kind != "ok" or found.rrset is None:
            return QueryResult(kind=found.kind, error=found.error)
        return QueryResult(kind="ok", records=tuple(found.rrset), ttl=found.rrset.ttl)

    # -- internals ------------------------------------------------------------------------

    def _order(self, records: Sequence[MX]) -> tuple[tuple[int, str], ...]:
        """RFC 5321 §5.1: lowest preference first; equal preferences MUST be randomized."""
        shuffled = list(records)
        self._rng.shuffle(shuffled)
        shuffled.sort(key=lambda r: r.preference)  # sort is stable: the shuffle survives
        return tuple((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in shuffled)

    async def _addresses(self, name: dns.name.Name) -> AddressResult:
        v6, v4 = await asyncio.gather(
            self._lookup(name, dns.rdatatype.AAAA), self._lookup(name, dns.rdatatype.A)
        )
        found: list[str] = []
        for lookup in (v6, v4):
            if lookup.kind == "ok" and lookup.rrset is not None:
                found.extend(r.address for r in lookup.rrset if isinstance(r, A | AAAA))
        failed = [lookup for lookup in (v6, v4) if lookup.kind == "temporary"]
        if found:
            return AddressResult(
                kind="ok", addresses=tuple(found), error=failed[0].error if failed else None
            )
        if failed:
            return AddressResult(kind="temporary", error=failed[0].error)
        if "nxdomain" in (v6.kind, v4.kind):
            return AddressResult(kind="nxdomain", error=v4.error or v6.error)
        return AddressResult(kind="nodata", error=f"{_text(name)} has no A or AAAA record")

    async def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Lookup:
        """One query, with every dnspython failure turned into a result kind."""
        what = f"{_text(name)} {dns.rdatatype.to_text(rdtype)}"
        if self._setup_error is not None:
            return _Lookup("temporary", error=f"cannot look up {what}: {self._setup_error}")
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return _Lookup("nxdomain", error=f"{_text(name)} does not exist (NXDOMAIN)")
        except dns.resolver.LifetimeTimeout:
            return _Lookup(
                "temporary",
                error=f"DNS lookup of {what} timed out after {self.timeout:g} s"
                f" ({self._servers_text()})",
            )
        except dns.resolver.NoNameservers as exc:
            return _Lookup("temporary", error=f"DNS lookup of {what} failed: {_no_servers(exc)}")
        except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
            return _Lookup("temporary", error=f"DNS lookup of {what} failed: {exc}")
        if answer.rrset is None:
            return _Lookup("nodata", error=f"{_text(name)} has no {_rdtype_text(rdtype)} record")
        return _Lookup("ok", rrset=answer.rrset)

    def _servers_text(self) -> str:
        return ", ".join(f"{host}:{port}" for host, port in self.nameservers) or "no servers"


def _tune(resolver: dns.resolver.BaseResolver, timeout: float) -> None:
    """The settings every relaybox resolver shares, blocking or not."""
    resolver.lifetime = timeout
    # With several servers, each gets a share of the lifetime before the next is asked.
    resolver.timeout = min(_ATTEMPT_TIMEOUT, timeout / max(1, len(resolver.nameservers)))
    resolver.use_edns(0, 0, _EDNS_PAYLOAD)
    # Names are always absolute: the system's search list must never turn "example" into
    # "example.corp.local" for mail routing.
    resolver.use_search_by_default = False
    resolver.search = []


def _server_address(host: str) -> str:
    """A name server's address, checked: asking a name for the address of the DNS server
    would need a DNS server (and dnspython would only fail at query time)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise ValueError(f"DNS server {host!r} is not an IP address") from None


def _absolute(domain: str) -> dns.name.Name:
    """`domain` as an absolute name; ValueError (in words) when it cannot be a domain name."""
    text = domain.strip()
    if not text or text == ".":
        raise ValueError("an empty domain name cannot receive mail")
    try:
        return dns.name.from_text(text, origin=dns.name.root)
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise ValueError(f"{domain!r} is not a valid domain name: {exc}") from None


def _rdtype(rdtype: str | dns.rdatatype.RdataType) -> dns.rdatatype.RdataType:
    try:
        kind = dns.rdatatype.RdataType.make(rdtype)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{rdtype!r} is not a DNS record type: {exc}") from None
    if dns.rdatatype.is_metatype(kind):
        raise ValueError(f"{_rdtype_text(kind)} is a meta-type; ask for a record type")
    return kind


def _rdtype_text(rdtype: dns.rdatatype.RdataType) -> str:
    return dns.rdatatype.to_text(rdtype)


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _no_servers(exc: dns.resolver.NoNameservers) -> str:
    """What each server said, e.g. "127.0.0.1:53 answered SERVFAIL"."""
    parts: list[str] = []
    for error in exc.kwargs.get("errors", []):
        server, tcp, port, problem = error[0], error[1], error[2], error[3]
        address = server.split(":", 1)[-1].split("@", 1)[0] if ":" in server else server
        where = f"{address}:{port}{' (TCP)' if tcp else ''}"
        if isinstance(problem, str):
            parts.append(f"{where} answered {problem}")
        else:
            parts.append(f"{where}: {problem or type(problem).__name__}")
    return "; ".join(parts) or "no DNS server could answer"
