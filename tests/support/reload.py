"""Config files for reload tests: a loopback relay whose routes, listeners and tables a test
rewrites, and an engine started from such a file (so that it has a file to reload)."""

from __future__ import annotations

import json
from pathlib import Path

from relaybox.config import load_config

from ..smtpsink import Sink
from .engine import EngineFactory, RunningEngine

__all__ = ["config_text", "route_to", "start_from_file"]


def route_to(sink: Sink, domains: str = '"*"') -> str:
    return (
        f'[[routes]]\ndomains = [{domains}]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{sink.port}"]\ntls = "none"\n'
    )


def config_text(
    tmp_path: Path,
    *,
    ports: tuple[int, ...] = (0,),
    routes: str = '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n',
    extra: str = "",
    listener_extra: str = "",
) -> str:
    listeners = "".join(
        f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nallowed_networks = ["127.0.0.0/8"]\n'
        f"{listener_extra}\n"
        for port in ports
    )
    return (
        "# the office relay\n"
        f'[server]\nhostname = "relay.example.test"\n'
        f"state_dir = {json.dumps(str(tmp_path / 'state'))}\nwatch_config = false\n\n"
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n\n'
        "[delivery]\nconnection_cache_idle = 0\n\n"
        f"{extra}{listeners}{routes}"
    )


async def start_from_file(
    start_engine: EngineFactory, tmp_path: Path, text: str
) -> tuple[RunningEngine, Path]:
    path = tmp_path / "relaybox.toml"
    path.write_text(text, encoding="utf-8")
    return await start_engine(load_config(path)), path
