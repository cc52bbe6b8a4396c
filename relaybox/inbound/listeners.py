"""Listeners: the sockets each `[[listeners]]` entry binds, serving `InboundSMTP` on the loop.

Servers are created with `loop.create_server` on the running loop (aiosmtpd's `Controller`
runs a loop of its own in a thread, which the engine and the TUI cannot share). Implicit TLS
(RFC 8314 §3.3) is set up here; STARTTLS and everything said on a connection is the server's.
"""

from __future__ import annotations

import asyncio

from relaybox.config.model import ListenerConfig, SocketAddress
from relaybox.inbound.context import InboundContext
from relaybox.inbound.server import InboundSMTP

__all__ = ["start_listener"]


async def start_listener(
    ctx: InboundContext, listener: ListenerConfig
) -> list[tuple[asyncio.Server, SocketAddress]]:
    """Bind every address of `listener` on the running loop; returns servers and bound addresses.

    Port 0 binds a free port; the returned address has the real one (tests use this).
    """
    loop = asyncio.get_running_loop()
    servers: list[tuple[asyncio.Server, SocketAddress]] = []
    try:
        for address in listener.listen:
            certificate = ctx.certificates.get(listener.name)
            implicit = certificate.context if certificate and listener.tls == "implicit" else None
            server = await loop.create_server(
                lambda: InboundSMTP(ctx, listener),
                ssl=implicit,
                host=address.host,
                port=address.port,
                reuse_address=True,
                backlog=1024,
            )
            sock = server.sockets[0].getsockname()
            servers.append((server, SocketAddress(address.host, int(sock[1]))))
    except BaseException:
        for server, _ in servers:
            server.close()
        raise
    return servers
