"""Listeners: the sockets each `[[listeners]]` entry binds, serving `InboundSMTP` on the loop,
kept across reloads.

Servers are created with `loop.create_server` on the running loop (aiosmtpd's `Controller`
runs a loop of its own in a thread, which the engine and the TUI cannot share). Implicit TLS
(RFC 8314 §3.3) is set up here; STARTTLS and everything said on a connection is the server's.

A reload must never make a listener refuse a connection. Each socket is known by the address
the config names: a new session reads the listener entry in force when it is accepted, so a
changed role, allowed networks or STARTTLS certificate applies without touching the socket.
Only implicit TLS is fixed in the server object; when it changes, a second server starts on
a duplicate of the same listening socket before the first one lets go of it (the kernel's
queue of waiting connections is the socket's, so nothing is dropped in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from relaybox.config.model import ListenerConfig, SocketAddress
from relaybox.inbound.context import InboundContext
from relaybox.inbound.server import InboundSMTP

__all__ = ["BindFailed", "ListenerSet"]

BACKLOG = 1024


class BindFailed(OSError):
    """A listener's address could not be bound; `listener` and `address` say which."""

    def __init__(self, listener: ListenerConfig, address: SocketAddress, error: OSError) -> None:
        super().__init__(error.errno, f"cannot listen on {address}: {error.strerror or error}")
        self.listener = listener
        self.address = address


@dataclass
class _Bound:
    listener: ListenerConfig
    """The entry in force for this address: new sessions read it when they are accepted."""
    server: asyncio.Server
    bound: SocketAddress
    """The address actually bound (port 0 in the config gets a real port)."""
    implicit: ssl.SSLContext | None


class ListenerSet:
    """The listening sockets of one engine, by configured address."""

    def __init__(self, ctx: InboundContext) -> None:
        self._ctx = ctx
        self._by_address: dict[SocketAddress, _Bound] = {}
        self._entries: dict[SocketAddress, ListenerConfig] = {}
        """The latest entry for every address ever bound: a connection the loop accepted just
        before its socket closed still finds the entry it came in on."""

    @property
    def bound(self) -> list[tuple[str, SocketAddress]]:
        """(listener name, address actually bound) for every listening socket."""
        return [(b.listener.name, b.bound) for b in self._by_address.values()]

    def listener_at(self, address: SocketAddress) -> ListenerConfig | None:
        """The entry in force for a configured address."""
        found = self._by_address.get(address)
        return None if found is None else found.listener

    async def bind_new(self, listeners: tuple[ListenerConfig, ...]) -> list[SocketAddress]:
        """Bind the addresses of `listeners` not yet listening; returns them.

        Nothing else changes, so a reload can bind first and give up cleanly: raises
        BindFailed (with the new sockets closed again) when one cannot be bound.
        """
        opened: list[SocketAddress] = []
        try:
            for listener in listeners:
                for address in listener.listen:
                    if address in self._by_address:
                        continue
                    self._by_address[address] = await self._bind(listener, address)
                    opened.append(address)
        except BaseException:
            await self.close(opened)
            raise
        return opened

    def reconfigure(self, listeners: tuple[ListenerConfig, ...]) -> list[SocketAddress]:
        """Point each kept address at its new entry; returns the addresses no entry names any
        more (the caller closes them with `close`, after deciding about their sessions)."""
        wanted = {address: listener for listener in listeners for address in listener.listen}
        for address, bound in self._by_address.items():
            if address in wanted:
                bound.listener = self._entries[address] = wanted[address]
        return [address for address in self._by_address if address not in wanted]

    async def swap_implicit_tls(self) -> list[SocketAddress]:
        """Give each socket whose implicit TLS context changed a server with the new one;
        returns the addresses swapped."""
        swapped = []
        for address, bound in self._by_address.items():
            context = self._implicit_context(bound.listener)
            if context is bound.implicit:
                continue
            listening = bound.server.sockets[0]
            duplicate = socket.socket(fileno=listening.dup().detach())
            server = await asyncio.get_running_loop().create_server(
                self._factory(address),
                sock=duplicate,
                ssl=context,
                backlog=BACKLOG,
            )
            # The new server accepts before the old one stops: no moment without either.
            bound.server.close()
            bound.server, bound.implicit = server, context
            swapped.append(address)
        return swapped

    async def close(self, addresses: list[SocketAddress] | None = None) -> None:
        """Stop listening on these addresses (default: all); sessions are not touched."""
        chosen = list(self._by_address) if addresses is None else addresses
        servers = [self._by_address.pop(a).server for a in chosen if a in self._by_address]
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def stop_accepting(self) -> None:
        """Close every socket now (shutdown); `close()` later forgets them."""
        for bound in self._by_address.values():
            bound.server.close()

    # ------------------------------------------------------------------ one socket

    async def _bind(self, listener: ListenerConfig, address: SocketAddress) -> _Bound:
        context = self._implicit_context(listener)
        try:
            server = await asyncio.get_running_loop().create_server(
                self._factory(address),
                ssl=context,
                host=address.host,
                port=address.port,
                reuse_address=True,
                backlog=BACKLOG,
            )
        except OSError as exc:
            raise BindFailed(listener, address, exc) from exc
        self._entries[address] = listener
        port = int(server.sockets[0].getsockname()[1])
        return _Bound(listener, server, SocketAddress(address.host, port), context)

    def _implicit_context(self, listener: ListenerConfig) -> ssl.SSLContext | None:
        certificate = self._ctx.certificates.get(listener.name)
        return certificate.context if certificate and listener.tls == "implicit" else None

    def _factory(self, address: SocketAddress) -> Callable[[], InboundSMTP]:
        def make() -> InboundSMTP:
            # The entry in force now, not the one the socket was opened with.
            return InboundSMTP(self._ctx, self._entries[address], address)

        return make
