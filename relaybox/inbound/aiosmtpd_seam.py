"""Where relaybox reaches inside aiosmtpd's `SMTP` class: the one list of private names it uses.

aiosmtpd's public face (the `smtp_*` commands, `push`, `challenge_auth`, `check_*_needed`,
`handle_*` hooks, `AuthResult`) covers most of what the inbound server needs; the rest is below,
each with why. tests/test_aiosmtpd_seam.py fails when an aiosmtpd release renames or drops one
of them, or changes the signature of a method we override, so an upgrade is a test run rather
than a surprise (aiosmtpd is pinned `>=1.4.6,<1.5`). Nothing else in relaybox touches an
underscored aiosmtpd or asyncio-stream name. This module holds no SMTP policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterator
from types import MethodType
from typing import Any

from aiosmtpd.smtp import SMTP, _AuthMechAttr, login_always_fail

__all__ = [
    "OVERRIDDEN",
    "PRIVATE_ATTRIBUTES",
    "PRIVATE_METHODS",
    "READER_ATTRIBUTES",
    "buffered",
    "init_protocol",
    "push_back",
    "wide_reader",
]

PRIVATE_ATTRIBUTES: dict[str, str] = {
    # Set by `init_protocol` because `SMTP.__init__` is not called (see there); each is what
    # `SMTP.__init__` would set from the public constructor argument named.
    "_decode_data": "constructor's decode_data=False: DATA content stays bytes",
    "_timeout_duration": "constructor's timeout: the idle timeout `_reset_timeout` re-arms",
    "_timeout_handle": "the idle timer, owned by our lazy `_reset_timeout`",
    "_tls_handshake_okay": "aiosmtpd refuses commands after a failed STARTTLS hook when False",
    "_tls_protocol": "set by smtp_STARTTLS; read to know whether STARTTLS happened",
    "_original_transport": "set by smtp_STARTTLS; connection_made tells STARTTLS by it",
    "_handler_coroutine": "the task running `_handle_client`; QUIT and connection_lost cancel it",
    "_auth_require_tls": "constructor's auth_require_tls; False on implicit TLS (RFC 8314 §3.3)",
    "_proxy_timeout": "constructor's proxy_protocol_timeout (None: no PROXY header expected)",
    "_authenticator": "constructor's authenticator; unused: our auth_* hooks verify",
    "_auth_callback": "constructor's auth_callback; unused, as aiosmtpd's default",
    "_auth_required": "constructor's auth_required: RFC 6409 §4.3 on submission listeners",
    "_auth_methods": "the AUTH mechanisms offered (none when there are no [[users]])",
    "_handle_hooks": "the handle_* hooks (handle_EHLO), as SMTP.__init__ collects them",
    "_ehlo_hook_ver": "'new': our handle_EHLO takes the 5-argument form",
    "_smtp_methods": "the command table; its entries go through the transcript first",
    "_enforce_call_limit": "constructor's command_call_limit=None",
    # Set by asyncio.StreamReaderProtocol through aiosmtpd's `_cb_client_connected`.
    "_reader": "the connection's StreamReader: DATA is read from it in blocks",
    "_writer": "the connection's StreamWriter: `push` writes replies through it",
}
"""Private attributes of an aiosmtpd `SMTP` instance that relaybox sets or reads, and why."""

PRIVATE_METHODS: dict[str, str] = {
    "_handle_client": "overridden: connection limits and the greeting pause come before the "
    "greeting, which aiosmtpd's `_handle_client` sends (after any PROXY header)",
    "_reset_timeout": "overridden: one lazily re-armed timer per connection instead of a new "
    "timer per command and per DATA block",
    "_timeout_cb": "called when the idle deadline passes: aiosmtpd closes the connection",
    "_cb_client_connected": "given to StreamReaderProtocol, as SMTP.__init__ does",
    "_set_post_data_state": "called after DATA, as aiosmtpd's smtp_DATA does: a new envelope",
}
"""Private methods of aiosmtpd's `SMTP` that relaybox overrides or calls, and why."""

READER_ATTRIBUTES: dict[str, str] = {
    "_buffer": "bytes pipelined after the DATA terminator go back in front of the buffer; "
    "bytes already there when DATA is read were sent before the 354 (RFC 2920 §3.1)",
    "_limit": "widened during DATA so the transport is not paused every few kilobytes",
}
"""Private attributes of `asyncio.StreamReader` used while reading DATA (`wide_reader`)."""

OVERRIDDEN = (
    "connection_made",
    "connection_lost",
    "push",
    "handle_exception",
    "smtp_HELO",
    "smtp_EHLO",
    "smtp_AUTH",
    "smtp_VRFY",
    "smtp_MAIL",
    "smtp_RCPT",
    "smtp_DATA",
    "auth_PLAIN",
    "auth_LOGIN",
    "_handle_client",
    "_reset_timeout",
)
"""aiosmtpd `SMTP` methods the inbound server overrides; each must keep aiosmtpd's signature."""

_Command = Callable[[Any, str | None], Awaitable[None]]


def init_protocol(
    protocol: SMTP,
    *,
    hostname: str,
    ident: str,
    data_size_limit: int,
    command_size_limit: int,
    tls_context: ssl.SSLContext | None,
    timeout: float,
    auth_required: bool,
    auth_require_tls: bool,
    offer_auth: bool,
    dispatch: str,
    proxy_protocol_timeout: float | None = None,
) -> None:
    """Set up what `SMTP.__init__` sets up, from the same arguments, without its cost.

    `SMTP.__init__` walks the class with `inspect.getmembers` on every connection (about
    0.4 ms, a quarter of the CPU of a short session); the method tables depend only on the
    class, so they are built once per class and bound per connection. Every attribute
    `SMTP.__init__` sets is set here too (tests/test_aiosmtpd_seam.py checks).

    Args:
        protocol: The new connection's protocol object.
        hostname: Our name in the greeting and EHLO.
        ident: The greeting's text after the name.
        data_size_limit: Advertised in EHLO SIZE (RFC 1870).
        command_size_limit: Longest command line (RFC 5321 §4.5.3.1.4), never grown by EHLO.
        tls_context: Offered with STARTTLS, or None.
        timeout: Idle timeout in seconds.
        auth_required: Refuse MAIL, RCPT and DATA before AUTH.
        auth_require_tls: Offer AUTH only once the connection is encrypted.
        offer_auth: Whether any AUTH mechanism is offered.
        dispatch: The name of the protocol's method every command runs through, called as
            `dispatch(verb, function, arg)` (the transcript records commands there).
        proxy_protocol_timeout: Expect a PROXY protocol header first (aiosmtpd reads it, then
            calls a `handle_PROXY` hook if the class has one); None: no PROXY header.
    """
    loop = asyncio.get_running_loop()
    asyncio.StreamReaderProtocol.__init__(
        protocol,
        asyncio.StreamReader(
            loop=loop, limit=max(protocol.line_length_limit, command_size_limit + 64)
        ),
        client_connected_cb=protocol._cb_client_connected,
        loop=loop,
    )
    p: Any = protocol  # the attributes below are aiosmtpd's, listed above
    p.__ident__ = ident
    p.loop = loop
    p.event_handler = None
    p.data_size_limit = data_size_limit
    p.enable_SMTPUTF8 = True
    p._decode_data = False
    # aiosmtpd keeps these limits in a class-wide dict that every EHLO grows; keep our own.
    p.command_size_limits = _CommandLimits(command_size_limit)
    p.command_size_limit = command_size_limit
    p.hostname = hostname
    p.tls_context = tls_context
    p.require_starttls = False
    p._timeout_duration = timeout
    p._timeout_handle = None
    p._tls_handshake_okay = True
    p._tls_protocol = None
    p._original_transport = None
    p.session = None
    p.envelope = None
    p.transport = None
    p._handler_coroutine = None
    p._auth_require_tls = auth_require_tls
    p._proxy_timeout = proxy_protocol_timeout
    p._authenticator = None
    p._auth_callback = login_always_fail
    p._auth_required = auth_required
    auth_methods, smtp_methods, hooks = _method_tables(type(protocol), dispatch)  # type: ignore[arg-type]
    p._auth_methods = (
        {mech: _AuthMechAttr(MethodType(fn, protocol), True) for mech, fn in auth_methods}
        if offer_auth
        else {}
    )
    p._handle_hooks = {verb: MethodType(fn, protocol) for verb, fn in hooks}
    p._ehlo_hook_ver = "new" if "EHLO" in p._handle_hooks else None
    p._smtp_methods = {verb: MethodType(fn, protocol) for verb, fn in smtp_methods}
    p._enforce_call_limit = False


def buffered(reader: asyncio.StreamReader) -> int:
    """How many bytes `reader` has received that nobody has read yet."""
    return len(reader._buffer)  # type: ignore[attr-defined]


def push_back(reader: asyncio.StreamReader, data: bytes) -> None:
    """Put `data` back in front of what `reader` will return next (pipelined commands)."""
    reader._buffer[0:0] = data  # type: ignore[attr-defined]


@contextlib.contextmanager
def wide_reader(reader: asyncio.StreamReader, limit: int) -> Iterator[None]:
    """Let `reader` buffer up to about `limit` bytes for a while (DATA); the line limit after."""
    saved: int = reader._limit  # type: ignore[attr-defined]
    reader._limit = max(saved, limit)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        reader._limit = saved  # type: ignore[attr-defined]


def _recorded(verb: str, method: _Command, dispatch: str) -> _Command:
    """Wrap an `smtp_VERB` method so that it runs through the protocol's `dispatch` method."""

    async def call(self: Any, arg: str | None) -> None:
        await getattr(self, dispatch)(verb, method, arg)

    # aiosmtpd's HELP and syntax checks read these attributes from the method.
    for attr in ("__smtp_syntax__", "__smtp_syntax_when__", "__smtp_syntax_extended__"):
        if hasattr(method, attr):
            setattr(call, attr, getattr(method, attr))
    return call


_Table = tuple[tuple[str, Callable[..., Any]], ...]


@functools.cache
def _method_tables(cls: type, dispatch: str) -> tuple[_Table, _Table, _Table]:
    """(AUTH mechanism, function), (verb, recorded function) and (verb, hook) pairs of a class.

    As `SMTP.__init__` names them: `auth_X__Y` is mechanism `X-Y` unless `@auth_mechanism`
    says otherwise, `smtp_VERB` is command VERB, `handle_VERB` the hook for VERB.
    """
    auth = tuple(
        (
            getattr(getattr(cls, name), "__auth_mechanism_name__", name[5:].replace("__", "-")),
            getattr(cls, name),
        )
        for name in dir(cls)
        if name.startswith("auth_")
    )
    smtp = tuple(
        (name[5:], _recorded(name[5:], getattr(cls, name), dispatch))
        for name in dir(cls)
        if name.startswith("smtp_")
    )
    hooks = tuple(
        (name[7:], getattr(cls, name))
        for name in dir(cls)
        if name.startswith("handle_") and name[7:].isupper()
    )
    return auth, smtp, hooks


class _CommandLimits(dict[str, int]):
    """Command line limits: one value for all commands, and never grown by EHLO."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def __missing__(self, key: str) -> int:
        return self._limit

    def __setitem__(self, key: str, value: int) -> None:
        # aiosmtpd adds room for SIZE/SMTPUTF8 parameters on every EHLO; allow it once.
        super().__setitem__(key, min(value, self._limit + 64))
