"""The engine's config file as the admin layer sees it: read it, check an edit, apply one
(write, keep the old version, reload), list and roll back the versions applied.

The engine writes its own file: the UI (in process or attached) and any other client send
text and the version they started from, so two editors can never silently overwrite each
other (the second apply is a conflict, and nothing is written).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaybox.config.keys import check_domain, check_selector
from relaybox.config.problems import Problem
from relaybox.config.store import ConfigHistory, file_version, write_atomically
from relaybox.engine.reload import ReloadResult, problem_json
from relaybox.signing.keys import dns_record, generate, write_private_key
from relaybox.statedir import HISTORY_DIR_NAME

if TYPE_CHECKING:
    from relaybox.engine.core import Engine

__all__ = ["MAX_CONFIG_BYTES", "ConfigDesk"]

MAX_CONFIG_BYTES = 512 * 1024
"""A config text larger than this is refused (a real one is a few kilobytes)."""


class ConfigDesk:
    """Reading, checking, applying and rolling back the config of one running engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.versions = ConfigHistory(engine.config.server.state_dir / HISTORY_DIR_NAME)

    @property
    def path(self) -> Path:
        return self.engine.reloader.path

    async def file(self) -> dict[str, Any]:
        text, version = await asyncio.to_thread(file_version, self.path)
        return {
            "path": str(self.path),
            "exists": bool(version),
            "text": text,
            "version": version,
            "generation": self.engine.generation,
        }

    async def check(self, text: str) -> dict[str, Any]:
        if (refused := _unusable(text, self.path)) is not None:
            return {
                "errors": [problem_json(refused)],
                "warnings": [],
                "summary": "",
                "queue_effect": [],
            }
        errors, warnings, summary, moves = await self.engine.reloader.check(text)
        return {
            "errors": [problem_json(p) for p in errors],
            "warnings": [problem_json(p) for p in warnings],
            "summary": summary,
            "queue_effect": [m.to_json() for m in moves],
        }

    async def reload(self, path: str | None, trigger: str = "command") -> dict[str, Any]:
        if path is not None and not _same_file(Path(path), self.path):
            raise ValueError(
                f"the running relaybox reads {self.path}, not {path}: reload always reads the "
                "engine's own file (edit that one, or restart relaybox with --config "
                f"{path} to use the other)"
            )
        return await self._with_version(await self.engine.reload_config(trigger))

    async def apply(self, text: str, base_version: str, trigger: str = "ui") -> dict[str, Any]:
        engine = self.engine
        if (refused := _unusable(text, self.path)) is not None:
            return ReloadResult("refused", engine.generation, "", (refused,)).to_json()
        async with engine.reloader.lock:
            current, version = await asyncio.to_thread(file_version, self.path)
            if version != base_version:
                return ReloadResult(
                    "conflict", engine.generation, "", (), version, current
                ).to_json()
            errors, _, _, _ = await engine.reloader.check(text)
            if errors:
                return ReloadResult("refused", engine.generation, "", tuple(errors)).to_json()
            if text == current:
                return ReloadResult("unchanged", engine.generation, "", (), version).to_json()
            try:
                # On the embedded default, the first apply creates the default file.
                await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
                await asyncio.to_thread(write_atomically, self.path, text)
            except OSError as exc:
                problem = Problem(str(self.path), None, "", f"cannot write the file: {exc}")
                return ReloadResult("refused", engine.generation, "", (problem,)).to_json()
            result = await engine.reloader.reload_locked(trigger)
        return await self._with_version(result)

    async def history(self) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.versions.entries)
        return [e.as_dict() for e in entries]

    async def rollback(self) -> dict[str, Any]:
        entries = await asyncio.to_thread(self.versions.entries)
        if len(entries) < 2:
            raise ValueError("there is no earlier version to roll back to")
        previous = await asyncio.to_thread(self.versions.text_of, entries[1].generation)
        if previous is None:
            raise ValueError(f"the backup of generation {entries[1].generation} is gone")
        _, version = await asyncio.to_thread(file_version, self.path)
        return await self.apply(previous, version, trigger="rollback")

    async def dkim_keygen(self, domain: str, selector: str) -> dict[str, Any]:
        domain = domain.strip().lower().rstrip(".")
        selector = selector.strip().lower()
        problem = check_domain(domain) or check_selector(selector)
        if problem:
            raise ValueError(problem)
        path = self.path.parent / "dkim" / f"{domain}.{selector}.key"
        if await asyncio.to_thread(path.exists):  # a stat: never on the loop
            raise ValueError(f"{path} already exists; choose another selector")
        key = await asyncio.to_thread(generate, "rsa-sha256", 2048)
        await asyncio.to_thread(write_private_key, key, path)
        record = dns_record(domain, selector, key)
        return {
            "private_key": str(path),
            "record_name": f"{selector}._domainkey.{domain}",
            "record": record,
        }

    async def _with_version(self, result: ReloadResult) -> dict[str, Any]:
        _, version = await asyncio.to_thread(file_version, self.path)
        answer = result.to_json()
        answer["version"] = version
        return answer


def _same_file(given: Path, engine_file: Path) -> bool:
    try:
        return given.expanduser().resolve() == engine_file.resolve()
    except OSError:
        return False


def _unusable(text: str, path: Path) -> Problem | None:
    """Why `text` cannot be a config file at all (before it is even parsed), or None."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate, which JSON can carry
        return Problem(
            str(path), None, "", f"the text is not valid Unicode (at character {exc.start})"
        )
    if size <= MAX_CONFIG_BYTES:
        return None
    return Problem(
        str(path), None, "", f"the text is {size} bytes; a config is at most {MAX_CONFIG_BYTES}"
    )
