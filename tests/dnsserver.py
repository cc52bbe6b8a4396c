"""A real DNS server on loopback for tests, answering from a dict of records over UDP and TCP.

mox's `MockResolver` idea (a resolver built from maps) moved onto the wire, so the production
resolver code in `relaybox.resolver` runs unchanged against it: real packets, real truncation and
TCP fallback, real timeouts. It is authoritative for every name it is given and knows nothing
else; it never recurses and never forwards.

    zone = {
        "example.org": {"MX": ["10 mx1.example.org.", "20 mx2.example.org."], "TXT": "v=spf1 -all"},
        "mx1.example.org": {"A": ["127.0.0.2"], "AAAA": ["::1"], "TTL": 0},
        "nullmx.example": {"MX": ["0 ."]},
        "servfail.example": "SERVFAIL",   # SERVFAIL for any type
        "timeout.example": "TIMEOUT",     # never answers
    }
    server = DNSServer(zone)              # 127.0.0.1, UDP and TCP on one free port
    server.address                        # ("127.0.0.1", port)

Record values are zone-file text (`"10 mx1.example.org."`; names are absolute whether or not
they end in a dot), a list of them, or for TXT the text itself: a `str` is one record, split
into 255-octet strings automatically, and a tuple of `str` is one record given string by
string. A type may also map to a `Failure` (`{"A": [...], "AAAA": Failure.TIMEOUT}` models a
server that drops AAAA queries). `"TTL": n` sets the TTL of a name's records (default: the
server's `ttl`).

The server runs its own event loop in a thread, so it serves sync tests and async tests alike
and never depends on the test's loop being free to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest

__all__ = ["DNSServer", "Failure", "dns_server"]

_UDP_SIZE_WITHOUT_EDNS = 512  # RFC 1035 §4.2.1
_MAX_CNAME_HOPS = 8


class Failure(enum.StrEnum):
    """Ways a name (or one type of a name) fails instead of answering."""

    SERVFAIL = "SERVFAIL"
    """Answer with rcode SERVFAIL, as a server whose upstream or zone is broken."""
    REFUSED = "REFUSED"
    """Answer with rcode REFUSED, as a server that will not serve this client."""
    TIMEOUT = "TIMEOUT"
    """Never answer (over UDP or TCP), as a lost packet or a dead server."""


@dataclass
class _Node:
    """Everything the server knows about one owner name."""

    failure: Failure | None = None
    ttl: int | None = None
    rdatas: dict[dns.rdatatype.RdataType, list[dns.rdata.Rdata]] = field(default_factory=dict)
    failures: dict[dns.rdatatype.RdataType, Failure] = field(default_factory=dict)


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text, origin=dns.name.root)


def _query_key(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> tuple[str, str]:
    return name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(rdtype)


def _txt_strings(text: str | bytes) -> list[bytes]:
    """One TXT record's text as character-strings of at most 255 octets (RFC 1035 §3.3.14)."""
    data = text.encode() if isinstance(text, str) else text
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


def _parse_rdatas(rdtype: dns.rdatatype.RdataType, values: Any) -> list[dns.rdata.Rdata]:
    IN = dns.rdataclass.IN
    if rdtype == dns.rdatatype.TXT:
        if isinstance(values, str | bytes | tuple):
            values = [values]
        rdatas: list[dns.rdata.Rdata] = []
        for value in values:
            if isinstance(value, tuple):
                strings = [s.encode() if isinstance(s, str) else s for s in value]
            else:
                strings = _txt_strings(value)
            rdatas.append(dns.rdtypes.ANY.TXT.TXT(IN, dns.rdatatype.TXT, strings))
        return rdatas
    if isinstance(values, str):
        values = [values]
    return [
        dns.rdata.from_text(IN, rdtype, text, origin=dns.name.root, relativize=False)
        for text in values
    ]


def _parse_node(entry: Any, default: _Node | None = None) -> _Node:
    if isinstance(entry, str):
        return _Node(failure=Failure(entry))
    if not isinstance(entry, Mapping):
        raise TypeError(f"a zone entry is a dict of records or a Failure, not {entry!r}")
    node = default or _Node()
    for key, values in entry.items():
        if key.upper() == "TTL":
            node.ttl = int(values)
            continue
        rdtype = dns.rdatatype.from_text(key)
        if isinstance(values, Failure):
            node.failures[rdtype] = values
        else:
            node.rdatas[rdtype] = _parse_rdatas(rdtype, values)
    return node


class DNSServer:
    """An authoritative DNS server on loopback serving `zone`, UDP and TCP on one port.

    Answers:
    - a name not in the zone: NXDOMAIN, with an SOA in the authority section so resolvers
      cache the denial for `negative_ttl` seconds (RFC 2308 §3); a name that only has names
      below it (an empty non-terminal, like `_domainkey.example.org`) is NODATA instead
      (RFC 8020 §2);
    - a name without the asked type: NOERROR with no answer (NODATA) and the same SOA;
    - a CNAME: the CNAME itself, then the target's records of the asked type when the target
      is in the zone (following further CNAMEs in the zone);
    - over UDP, an answer larger than 512 bytes (or the EDNS size the query advertises) is
      sent empty with TC set, so the resolver asks again over TCP (RFC 7766 §5).

    Attributes:
        address: (host, port) the server listens on, UDP and TCP.
        queries: queries received per (name, type), e.g. `queries["example.org", "MX"]`;
            names lower case without the final dot. A truncated answer retried over TCP
            counts twice.
        tcp_queries: the subset of `queries` that came over TCP.
        errors: exceptions raised while answering (answered SERVFAIL); the fixture fails
            the test at teardown when there are any.
    """

    def __init__(
        self,
        zone: Mapping[str, Any] | None = None,
        *,
        ttl: int = 300,
        negative_ttl: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Bind UDP and TCP on one free port of `host` and start serving at once.

        Args:
            zone: owner name -> records (see the module docstring) or a `Failure` name.
            ttl: TTL of records whose name sets no `"TTL"`. Pass 0 for records a test will
                change while a caching resolver is running.
            negative_ttl: how long resolvers may cache NXDOMAIN and NODATA (the SOA minimum);
                defaults to `ttl`.
            host: loopback address to bind.
        """
        self.ttl = ttl
        self.negative_ttl = ttl if negative_ttl is None else negative_ttl
        self.queries: Counter[tuple[str, str]] = Counter()
        self.tcp_queries: Counter[tuple[str, str]] = Counter()
        self.errors: list[Exception] = []
        self._lock = threading.Lock()
        self._nodes: dict[dns.name.Name, _Node] = {}
        for name, entry in (zone or {}).items():
            self._nodes[_name(name)] = _parse_node(entry)

        tcp_sock, udp_sock = self._bind_same_port(host)
        self.address: tuple[str, int] = (host, tcp_sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(tcp_sock, udp_sock),
            name=f"dnsserver-{self.address[1]}",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise RuntimeError("the test DNS server did not start") from self._startup_error

    # -- the zone -------------------------------------------------------------------------

    @property
    def hostport(self) -> str:
        """The address as `[dns] resolvers` writes it: "127.0.0.1:PORT"."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def set(self, name: str, rdtype: str, values: Any, *, ttl: int | None = None) -> None:
        """Replace the records of one type of `name` (creating the name); takes effect at once.

        Args:
            name: owner name, e.g. "s2026._domainkey.example.org".
            rdtype: record type, e.g. "TXT".
            values: as in the zone dict: zone-file text or a list of it (TXT: the text),
                a `Failure`, or an empty list to leave the name with no records of this type.
            ttl: when given, the TTL of all of this name's records from now on.
        """
        owner = _name(name)
        with self._lock:
            node = self._nodes.get(owner) or _Node()
            node.failure = None
            kind = dns.rdatatype.from_text(rdtype)
            node.failures.pop(kind, None)
            node.rdatas.pop(kind, None)
            _parse_node({rdtype: values}, node)
            if ttl is not None:
                node.ttl = ttl
            self._nodes[owner] = node

    def set_name(self, name: str, entry: Any) -> None:
        """Replace everything about `name` with `entry` (a dict of records or a `Failure`)."""
        node = _parse_node(entry)
        with self._lock:
            self._nodes[_name(name)] = node

    def delete(self, name: str, rdtype: str | None = None) -> None:
        """Forget `name` (then NXDOMAIN), or only its records of `rdtype` (then NODATA)."""
        owner = _name(name)
        with self._lock:
            if rdtype is None:
                self._nodes.pop(owner, None)
            elif (node := self._nodes.get(owner)) is not None:
                kind = dns.rdatatype.from_text(rdtype)
                node.rdatas.pop(kind, None)
                node.failures.pop(kind, None)

    def query_count(self, name: str, rdtype: str) -> int:
        """Queries received for (name, type) so far; `name` in any case, final dot optional."""
        with self._lock:
            return self.queries[name.rstrip(".").lower(), rdtype.upper()]

    # -- life cycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving and close both sockets; waits for the server thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            # Queued even if run_forever has not started yet: it runs this first.
            with contextlib.suppress(RuntimeError):  # the loop closed on its own already
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> DNSServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _bind_same_port(host: str) -> tuple[socket.socket, socket.socket]:
        """A TCP and a UDP socket bound to the same free port (retried if UDP's is taken)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(50):
            tcp_sock = socket.socket(family, socket.SOCK_STREAM)
            tcp_sock.bind((host, 0))
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp_sock.bind((host, tcp_sock.getsockname()[1]))
            except OSError:
                tcp_sock.close()
                udp_sock.close()
                continue
            tcp_sock.listen(64)
            tcp_sock.setblocking(False)
            udp_sock.setblocking(False)
            return tcp_sock, udp_sock
        raise OSError(f"no port free on {host} for both UDP and TCP")

    def _run(self, tcp_sock: socket.socket, udp_sock: socket.socket) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            transport, _ = loop.run_until_complete(
                loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=udp_sock)
            )
            server = loop.run_until_complete(asyncio.start_server(self._serve_tcp, sock=tcp_sock))
        except BaseException as exc:  # reported to the constructor, which raises it
            self._startup_error = exc
            tcp_sock.close()
            udp_sock.close()
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            if not self._stopped:
                loop.run_forever()
        finally:
            transport.close()
            server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- answering ------------------------------------------------------------------------

    def _answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The reply to one query in wire format, or None to stay silent.

        A bug here (or a record that cannot be rendered) is kept in `errors`, which the
        fixture raises at teardown, and answered with SERVFAIL rather than silence, so the
        test fails for its real cause instead of timing out.
        """
        try:
            return self._reply(wire, tcp=tcp)
        except Exception as exc:
            self.errors.append(exc)
            try:
                response = dns.message.make_response(dns.message.from_wire(wire))
            except Exception:
                return None
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()

    def _reply(self, wire: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS, or too broken to even echo an id: drop it, as servers do
        response = dns.message.make_response(query, our_payload=4096)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if len(query.question) == 1 else dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            key = _query_key(question.name, question.rdtype)
            self.queries[key] += 1
            if tcp:
                self.tcp_queries[key] += 1
            failure = self._fill(response, question.name, question.rdtype)
        if failure is Failure.TIMEOUT:
            return None
        if failure is not None:
            response.set_rcode(dns.rcode.from_text(failure.value))
        if tcp:
            return response.to_wire(max_size=65535)
        limit = _UDP_SIZE_WITHOUT_EDNS
        if query.edns >= 0:  # RFC 6891 §6.2.5: the requestor's payload size, at least 512
            limit = max(query.payload, _UDP_SIZE_WITHOUT_EDNS)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 2181 §9 / RFC 7766 §5: set TC and send what fits; we send no records at
            # all, as most servers do, so nobody mistakes a partial answer for the whole.
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    def _fill(
        self, response: dns.message.Message, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
    ) -> Failure | None:
        """Put the answer for (qname, qtype) into `response`; returns a failure to apply."""
        node = self._nodes.get(qname)
        if node is None:
            if not any(name.is_subdomain(qname) for name in self._nodes):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._add_soa(response, qname)
            return None
        if node.failure is not None:
            return node.failure
        if qtype in node.failures:
            return node.failures[qtype]

        owner, hops = qname, 0
        while True:
            ttl = self.ttl if node.ttl is None else node.ttl
            if qtype == dns.rdatatype.ANY:
                for rdatas in node.rdatas.values():
                    if rdatas:
                        self._add(response.answer, owner, ttl, rdatas)
                return None
            if node.rdatas.get(qtype):
                self._add(response.answer, owner, ttl, node.rdatas[qtype])
                return None
            cname = node.rdatas.get(dns.rdatatype.CNAME)
            if not cname or qtype == dns.rdatatype.CNAME:
                break
            self._add(response.answer, owner, ttl, cname)
            target = cname[0].target  # type: ignore[attr-defined]
            following = self._nodes.get(target)
            hops += 1
            if following is None or following.failure is not None or hops > _MAX_CNAME_HOPS:
                return None  # the resolver sees the CNAME and goes no further
            owner, node = target, following
        if not response.answer:
            self._add_soa(response, owner)
        return None

    @staticmethod
    def _add(
        section: list[dns.rrset.RRset],
        owner: dns.name.Name,
        ttl: int,
        rdatas: Iterable[dns.rdata.Rdata],
    ) -> None:
        section.append(dns.rrset.from_rdata_list(owner, ttl, list(rdatas)))

    def _add_soa(self, response: dns.message.Message, qname: dns.name.Name) -> None:
        """An SOA for negative answers (RFC 2308 §3): the nearest one in the zone, else root's."""
        owner = qname
        while True:
            node = self._nodes.get(owner)
            if node is not None and node.rdatas.get(dns.rdatatype.SOA):
                soa_rdatas = node.rdatas[dns.rdatatype.SOA]
                self._add(response.authority, owner, self.negative_ttl, soa_rdatas)
                return
            try:
                owner = owner.parent()
            except dns.name.NoParent:
                break
        soa = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            f"localhost. hostmaster.localhost. 1 3600 600 86400 {self.negative_ttl}",
        )
        response.authority.append(
            dns.rrset.from_rdata_list(dns.name.root, self.negative_ttl, [soa])
        )

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Queries over one TCP connection, each with a two-octet length (RFC 1035 §4.2.2)."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                reply = self._answer(await reader.readexactly(length), tcp=True)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._server._answer(data, tcp=False)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)


DNSServerFactory = Callable[..., DNSServer]


@pytest.fixture
def dns_server() -> Iterator[DNSServerFactory]:
    """`server = dns_server(zone, **options)` starts a `DNSServer`; all are stopped after.

    A plain (sync) fixture, so sync and async tests can both use it.
    """
    servers: list[DNSServer] = []

    def start(zone: Mapping[str, Any] | None = None, **options: Any) -> DNSServer:
        server = DNSServer(zone, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    errors = [exc for server in servers for exc in server.errors]
    if errors:
        raise AssertionError(f"the test DNS server failed while answering: {errors!r}") from (
            errors[0]
        )
