"""`relaybox reload [--config PATH]`: ask the running engine to reload its config file, and
wait until it is in force (exit 0, the generation and what changed) or refused (every problem
as `file:line: key: message`, exit 1), as `systemctl reload` would want.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import tomlkit
import tomlkit.exceptions

from relaybox.admin.client import ControlError
from relaybox.admin.connect import EngineUnreachable, attach
from relaybox.cli.common import EXIT_FAIL, EXIT_OK
from relaybox.config import default_config_path, load_config_text
from relaybox.config.model import default_state_dir
from relaybox.untrusted import visible

__all__ = ["reload"]


def reload(args: argparse.Namespace) -> int:
    """The command: the engine is found through the state directory the file names."""
    path: Path = (args.config or default_config_path()).expanduser().absolute()
    state_dir = _state_dir(path)
    return asyncio.run(_reload(state_dir, path if args.config else None))


async def _reload(state_dir: Path, path: Path | None) -> int:
    try:
        attached = await attach(state_dir)
    except EngineUnreachable as exc:
        print(f"relaybox: {exc}; nothing was reloaded", file=sys.stderr)
        return EXIT_FAIL
    if attached is None:
        print(
            f"relaybox: no relaybox engine is running on {state_dir}; nothing to reload (the "
            "config is read when relaybox starts)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    try:
        result = await attached.client.admin.reload_config(None if path is None else str(path))
    except (ValueError, ControlError) as exc:
        print(f"relaybox: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        await attached.client.close()
    if result.get("outcome") == "applied":
        print(f"relaybox: generation {result['generation']} applied: {result['summary']}")
        for warning in result.get("warnings", []):
            print(f"warning: {visible(str(warning.get('text', warning)))}", file=sys.stderr)
        return EXIT_OK
    print(
        f"relaybox: the config was refused; generation {result.get('generation')} stays in force:",
        file=sys.stderr,
    )
    for problem in result.get("problems", []):
        print(visible(str(problem.get("text", problem))), file=sys.stderr)
    return EXIT_FAIL


def _state_dir(path: Path) -> Path:
    """The state directory the file names, read from its `[server]` table alone: the rest of
    the file may be the broken edit the engine is about to refuse, and its refusal is what
    the admin must see."""
    try:
        data = tomlkit.parse(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError):
        return default_state_dir()
    server = data.get("server")
    if not isinstance(server, dict):
        return default_state_dir()
    only = tomlkit.document()
    only["server"] = server
    config, _, _ = load_config_text(tomlkit.dumps(only), path)
    return config.server.state_dir if config is not None else default_state_dir()
