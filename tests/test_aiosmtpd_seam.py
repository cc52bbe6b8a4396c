"""The seam to aiosmtpd: every private name relaybox uses still exists in the installed aiosmtpd.

These tests are what an aiosmtpd upgrade must pass: a renamed or dropped private attribute, or a
changed signature of a method the inbound server overrides, fails here by name instead of in a
session on a production relay.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path

import aiosmtpd
from aiosmtpd.smtp import SMTP

from relaybox.events import EventBus
from relaybox.inbound import server as server_module
from relaybox.inbound.aiosmtpd_seam import (
    OVERRIDDEN,
    PRIVATE_ATTRIBUTES,
    PRIVATE_METHODS,
    READER_ATTRIBUTES,
)
from relaybox.inbound.context import InboundContext
from relaybox.inbound.server import InboundSMTP
from relaybox.maillog import MailLog

from .support.configs import make_config


class _Sink:
    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        return "250 OK"


async def _connected_aiosmtpd() -> tuple[SMTP, dict[str, object]]:
    """A stock aiosmtpd SMTP that has served a greeting over loopback, and its attributes."""
    protocols: list[SMTP] = []

    def factory() -> SMTP:
        protocol = SMTP(_Sink(), hostname="sink.example.test")
        protocols.append(protocol)
        return protocol

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"220 ")
    attributes = dict(vars(protocols[0]))
    writer.close()
    server.close()
    await server.wait_closed()
    return protocols[0], attributes


def test_installed_aiosmtpd_is_the_pinned_series() -> None:
    assert aiosmtpd.__version__.startswith("1.4."), aiosmtpd.__version__


def test_every_listed_private_attribute_is_set_by_aiosmtpd() -> None:
    _, attributes = asyncio.run(_connected_aiosmtpd())
    missing = sorted(set(PRIVATE_ATTRIBUTES) - set(attributes))
    assert missing == [], f"aiosmtpd no longer sets {missing}; review inbound/aiosmtpd_seam.py"


def test_every_listed_private_method_exists_in_aiosmtpd() -> None:
    for name in PRIVATE_METHODS:
        assert callable(getattr(SMTP, name, None)), f"aiosmtpd's SMTP has no method {name}"


def test_stream_reader_still_has_the_attributes_data_uses() -> None:
    async def attributes() -> set[str]:
        return set(vars(asyncio.StreamReader()))

    assert set(READER_ATTRIBUTES) <= asyncio.run(attributes())


def test_overridden_methods_keep_aiosmtpds_signatures() -> None:
    for name in OVERRIDDEN:
        assert name in vars(InboundSMTP), f"{name} is listed as overridden but is not"
        ours = inspect.signature(getattr(InboundSMTP, name)).parameters.values()
        theirs = inspect.signature(getattr(SMTP, name)).parameters.values()
        shape = [(p.kind, p.default is p.empty) for p in theirs]
        assert [(p.kind, p.default is p.empty) for p in ours] == shape, name


def test_no_private_aiosmtpd_name_is_used_outside_the_list() -> None:
    """Every `self._x` in the server is its own, or listed in the seam with its reason."""
    tree = ast.parse(Path(server_module.__file__).read_text())
    used: set[str] = set()
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            used.add(node.attr)
            if isinstance(node.ctx, ast.Store):
                assigned.add(node.attr)
    own = assigned | {n for n in vars(InboundSMTP) if n.startswith("_") and not n.startswith("__")}
    listed = set(PRIVATE_ATTRIBUTES) | set(PRIVATE_METHODS)
    assert sorted(used - own - listed) == []
    # And what the server sets that is aiosmtpd's is listed too.
    _, attributes = asyncio.run(_connected_aiosmtpd())
    aiosmtpd_names = {name for name in [*dir(SMTP), *attributes] if name.startswith("_")}
    assert sorted((own & aiosmtpd_names) - listed) == []


def test_protocol_sets_everything_aiosmtpd_sets(tmp_path) -> None:
    """We replace aiosmtpd's constructor for speed; it must not miss an attribute."""

    async def attrs() -> tuple[set[str], set[str]]:
        base = set(vars(SMTP(handler=None)))
        config = make_config(tmp_path)
        log = MailLog()
        ctx = InboundContext(
            config=lambda: config,
            spool=None,  # type: ignore[arg-type]  # the constructor does not touch it
            bus=EventBus(),
            log=log,
            suppression=lambda a: None,
            free_space_mb=lambda: None,
        )
        ours = set(vars(InboundSMTP(ctx, config.listeners[0])))
        log.close()
        return base, ours

    base, ours = asyncio.run(attrs())
    assert base - ours == set()
    listed_init = {name for name in PRIVATE_ATTRIBUTES if name not in ("_reader", "_writer")}
    assert listed_init <= ours
