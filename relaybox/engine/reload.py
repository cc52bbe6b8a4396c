"""Reloading: a candidate config is checked completely, then swapped in as one object.

Every trigger (SIGHUP, `relaybox reload`, the file changing, the UI's apply, a rollback) ends
in `Reloader.reload`, which returns applied (a generation and what changed) or refused (every
problem, as `file:line: key: message`); refused means nothing changed. The steps that can fail
(reading the file, validating it, loading its certificates and route passwords, binding new
listener addresses) all come before the swap; the swap itself is one synchronous step, so no
session or attempt ever sees half of a config.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from relaybox.config.changes import NO_CHANGE, summarize
from relaybox.config.load import load_config_text
from relaybox.config.model import Config, default_config_path
from relaybox.config.positions import index_key_lines
from relaybox.config.problems import Problem
from relaybox.config.store import ConfigHistory, file_version, text_version
from relaybox.events import ConfigRefused, ConfigReloaded
from relaybox.health.checks import sending_domains
from relaybox.inbound.certificates import ServerCertificate
from relaybox.inbound.listeners import BindFailed
from relaybox.inbound.server import InboundSMTP
from relaybox.outbound.handshake import Credentials
from relaybox.outbound.routing import destination_for, load_credentials
from relaybox.queue.reroute import Unfinished
from relaybox.resolver import Resolver

if TYPE_CHECKING:
    from relaybox.engine.core import Engine

__all__ = [
    "Outcome",
    "delivery_resolver",
    "Prepared",
    "QueueMove",
    "ReloadResult",
    "Reloader",
    "queue_moves",
]

Outcome = Literal["applied", "refused", "conflict", "unchanged"]

REMOVED_LISTENER_GRACE = 60.0
"""Seconds a transaction on a listener a reload removed may take to finish before its
session is closed (idle sessions there are closed at once)."""

MAX_LOGGED_PROBLEMS = 20


@dataclass(frozen=True)
class ReloadResult:
    """What became of one reload (or apply): the contract of `relaybox reload` and the UI."""

    outcome: Outcome
    generation: int
    """The generation in force afterwards (unchanged unless applied)."""
    summary: str = ""
    problems: tuple[Problem, ...] = ()
    version: str = ""
    """The file's version (sha256) afterwards, for the UI's next apply."""
    text: str = ""
    """The file's current text, when the outcome is a conflict."""
    warnings: tuple[Problem, ...] = ()
    """What the applied config may not do as meant (`relaybox reload` prints them)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "generation": self.generation,
            "summary": self.summary,
            "problems": [problem_json(p) for p in self.problems],
            "version": self.version,
            "text": self.text,
            "warnings": [problem_json(p) for p in self.warnings],
        }


def problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as the admin protocol carries it."""
    return {
        "file": problem.file,
        "line": problem.line,
        "key": problem.key,
        "message": problem.message,
        "text": str(problem),
    }


@dataclass
class Prepared:
    """A valid candidate and everything it needs loaded, ready to swap in."""

    config: Config
    warnings: list[Problem]
    certificates: dict[str, ServerCertificate]
    credentials: dict[int, Credentials | None]
    resolver: Resolver | None
    """A new resolver when `[dns]` changed; None keeps the one in use."""


def delivery_resolver(config: Config) -> Resolver:
    """The resolver delivery asks (`[dns]`; with no servers the system's, read from
    resolv.conf: blocking then, so off the loop on reload)."""
    return Resolver([(a.host, a.port) for a in config.dns.resolvers], config.dns.timeout)


def prepare(
    text: str,
    path: Path,
    old: Config,
    certificates: dict[str, ServerCertificate],
) -> Prepared | list[Problem]:
    """Validate `text` as the file at `path` and load what it names (blocking: run in a
    thread). Returns every problem when it cannot be used as it is."""
    config, errors, warnings = load_config_text(text, path)
    if errors or config is None:
        return errors
    lines = index_key_lines(text)
    file = str(path)
    problems: list[Problem] = []

    def problem(key: str, message: str) -> None:
        problems.append(Problem(file, lines(key), key, message))

    if config.server.state_dir.resolve() != old.server.state_dir.resolve():
        problem(
            "server.state_dir",
            f"cannot change while relaybox runs (it is using {old.server.state_dir}); stop "
            "relaybox, move the folder, then start it with this setting",
        )
    loaded: dict[str, ServerCertificate] = {}
    for i, listener in enumerate(config.listeners):
        if listener.tls == "none" or not listener.certificate or not listener.private_key:
            continue
        kept = certificates.get(listener.name)
        if (
            kept is not None
            and (kept.certificate, kept.private_key) == (listener.certificate, listener.private_key)
            and not kept.changed()
        ):
            loaded[listener.name] = kept  # same files: the live context stays (no server swap)
            continue
        try:
            loaded[listener.name] = ServerCertificate.load(
                listener.certificate, listener.private_key
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            problem(f"listeners[{i}].certificate", f"cannot load the certificate: {exc}")
    credentials: dict[int, Credentials | None] = {}
    for i, route in enumerate(config.routes):
        try:
            credentials[id(route)] = load_credentials(route)
        except ValueError as exc:
            key = "password_file" if route.password_file else "password_env"
            problem(f"routes[{i}].{key}", str(exc))
    resolver = delivery_resolver(config) if config.dns != old.dns else None
    if problems:
        return problems
    return Prepared(config, warnings, loaded, credentials, resolver)


@dataclass(frozen=True)
class QueueMove:
    """Recipients queued or deferred for one destination that a config sends elsewhere."""

    source: str
    target: str
    messages: int
    recipients: int

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "messages": self.messages,
            "recipients": self.recipients,
        }


def _key(config: Config, recipient: Unfinished) -> str:
    destination = destination_for(config, recipient.address, recipient.sender, recipient.released)
    return "no route (bounced)" if destination is None else destination.key


def queue_moves(
    unfinished: Sequence[Unfinished], old: Config, new: Config
) -> tuple[list[QueueMove], list[tuple[int, int]]]:
    """Where `new` sends unfinished recipients that `old` sent elsewhere: the moves by
    (from, to), most recipients first, and the (message id, idx) of every recipient moved.

    "From" is where the recipient was last tried, or where `old` would send it when it never
    was (or was deferred before any destination was known).
    """
    by_pair: dict[tuple[str, str], tuple[set[int], list[int]]] = defaultdict(lambda: (set(), [0]))
    moved: list[tuple[int, int]] = []
    for recipient in unfinished:
        source = recipient.destination or _key(old, recipient)
        target = _key(new, recipient)
        if source == target:
            continue
        messages, count = by_pair[(source, target)]
        messages.add(recipient.message_id)
        count[0] += 1
        moved.append((recipient.message_id, recipient.idx))
    moves = [
        QueueMove(source, target, len(messages), count[0])
        for (source, target), (messages, count) in by_pair.items()
    ]
    moves.sort(key=lambda m: (-m.recipients, m.source, m.target))
    return moves, moved


@dataclass
class Reloader:
    """The one path from a candidate config to the config in force, for one engine."""

    engine: Engine
    generation: int = 1
    """1 is the config the engine started with; each applied reload adds one."""
    version: str = ""
    """The sha256 of the file text in force ("" for the embedded default): a file change
    that leaves the text as it is (an editor saving unchanged) reloads nothing."""
    history: ConfigHistory | None = None
    """Every version applied, kept as a backup (set once the state directory is known)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a reload runs: reloads (and the UI's write-then-reload) run one at a time."""
    _drains: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def path(self) -> Path:
        """The file reloads read: the one the engine started with, or the default path it
        would have read (a file created there later is picked up)."""
        return self.engine.config.source or default_config_path()

    async def reload(self, trigger: str, text: str | None = None) -> ReloadResult:
        """Check the file (or `text`, as that file's new content) and put it in force.

        Reloads run one at a time, in the order asked.
        """
        async with self.lock:
            return await self.reload_locked(trigger, text)

    async def started(self, history: ConfigHistory) -> None:
        """The engine is up: a file as it was last recorded keeps its generation; a file that
        changed while the engine was down is the next one, and is recorded (so a generation
        names one version across restarts, and restarts do not push versions out)."""
        self.history = history
        text, self.version = await asyncio.to_thread(file_version, self.path)
        entries = await asyncio.to_thread(history.entries)
        if entries and entries[0].version == self.version:
            self.generation = entries[0].generation
            return
        if entries:
            self.generation = entries[0].generation + 1
        await self._record("start", "started", text)

    async def check(self, text: str) -> tuple[list[Problem], list[Problem], str, list[QueueMove]]:
        """What `text` would do if applied: errors, warnings, the change summary and the
        queue's moves; nothing changes."""
        engine = self.engine
        old = engine.config
        prepared = await asyncio.to_thread(prepare, text, self.path, old, dict(engine.certificates))
        if isinstance(prepared, list):
            return prepared, [], "", []
        assert engine.spool is not None
        unfinished = await engine.spool.unfinished_recipients()
        moves, _ = await asyncio.to_thread(queue_moves, unfinished, old, prepared.config)
        return [], prepared.warnings, summarize(old, prepared.config), moves

    async def reload_locked(self, trigger: str, given: str | None = None) -> ReloadResult:
        """`reload`, for a caller that holds `lock` already."""
        began = time.monotonic()
        engine = self.engine
        path = self.path
        listeners = engine.listeners
        if listeners is None or engine.spool is None or engine.stopping:
            why = "relaybox is stopping" if engine.stopping else "relaybox is not running"
            return self._refuse(trigger, [Problem(str(path), None, "", why)])
        if given is None:
            try:
                text, version = await asyncio.to_thread(file_version, path)
                if not version:
                    return self._refuse(trigger, [Problem(str(path), None, "", "file not found")])
            except (OSError, UnicodeDecodeError) as exc:
                return self._refuse(
                    trigger, [Problem(str(path), None, "", f"cannot read the file: {exc}")]
                )
        else:
            text, version = given, text_version(given)
        if trigger == "file" and version == self.version:
            return ReloadResult("unchanged", self.generation, NO_CHANGE)
        old = engine.config
        prepared = await asyncio.to_thread(prepare, text, path, old, dict(engine.certificates))
        if isinstance(prepared, list):
            return self._refuse(trigger, prepared)
        new = prepared.config
        summary = summarize(old, new)
        try:
            opened = await listeners.bind_new(new.listeners)
        except BindFailed as exc:
            index = new.listeners.index(exc.listener)
            key = f"listeners[{index}].listen"
            lines = index_key_lines(text)
            return self._refuse(trigger, [Problem(str(path), lines(key), key, str(exc))])
        # The swap: one synchronous step, nothing awaited until every part is switched.
        engine.swap_config(new, prepared.certificates, prepared.credentials, prepared.resolver)
        removed = listeners.reconfigure(new.listeners)
        self.generation += 1
        self.version = version
        generation = self.generation
        # Then what takes time, none of which can fail the reload.
        await listeners.swap_implicit_tls()
        await listeners.close(removed)
        self._drain_sessions_on(set(removed))
        await engine.after_swap()
        moved = await self._reroute(old, new)
        for warning in prepared.warnings:
            engine.log.warning("config-warning", problem=str(warning))
        engine.log.event(
            "config-reloaded",
            generation=generation,
            trigger=trigger,
            changes=summary,
            listening_added=" ".join(str(a) for a in opened) or None,
            listening_removed=" ".join(str(a) for a in removed) or None,
            rerouted=moved or None,
            took_ms=round((time.monotonic() - began) * 1000),
        )
        engine.bus.publish(ConfigReloaded(generation, trigger, summary, at=engine.clock()))
        self._check_new_domains(old, new)
        await self._record(trigger, summary, text)
        return ReloadResult(
            "applied", generation, summary, version=version, warnings=tuple(prepared.warnings)
        )

    async def _record(self, trigger: str, summary: str, text: str) -> None:
        """Keep the version now in force (a 0600 backup) under its generation."""
        if self.history is None:
            return
        generation, at = self.generation, self.engine.clock()
        try:
            await asyncio.to_thread(self.history.record, generation, trigger, summary, text, at)
        except OSError as exc:  # the config is in force; only its backup is missing
            self.engine.log.error("config-history-failed", error=str(exc))

    def _refuse(self, trigger: str, problems: list[Problem]) -> ReloadResult:
        engine = self.engine
        shown = [str(p) for p in problems[:MAX_LOGGED_PROBLEMS]]
        engine.log.error(
            "config-refused",
            generation=self.generation,
            trigger=trigger,
            problems=len(problems),
            note="still running on the config in force",
        )
        for line in shown:
            engine.log.error("config-problem", trigger=trigger, problem=line)
        engine.bus.publish(ConfigRefused(trigger, tuple(shown), at=engine.clock()))
        return ReloadResult("refused", self.generation, "", tuple(problems))

    async def _reroute(self, old: Config, new: Config) -> int:
        """Recipients whose next hop changed are due now; the rest keep their schedule."""
        engine = self.engine
        if old.routes == new.routes and old.server.hostname == new.server.hostname:
            return 0
        assert engine.spool is not None
        try:
            unfinished = await engine.spool.unfinished_recipients()
            _, moved = await asyncio.to_thread(queue_moves, unfinished, old, new)
            count = await engine.spool.make_due(moved, engine.clock())
        except Exception as exc:  # the config is in force; mail keeps its old schedule
            engine.log.error("reroute-failed", error=str(exc))
            return 0
        if count:
            engine.wake_delivery()
        return count

    def _drain_sessions_on(self, removed: set[Any]) -> None:
        """Sessions on removed addresses: idle ones are closed now, the others once their
        transaction is over (at most `REMOVED_LISTENER_GRACE` seconds)."""
        if not removed:
            return
        sessions = [s for s in self.engine.sessions() if s.listen_address in removed]
        if sessions:
            task = asyncio.create_task(drain(sessions, REMOVED_LISTENER_GRACE))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)

    def _check_new_domains(self, old: Config, new: Config) -> None:
        added = [d for d in sending_domains(new) if d not in sending_domains(old)]
        if added and new.health.check_interval > 0:
            task = asyncio.create_task(self.engine.domains.check(added))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)

    async def stop(self) -> None:
        """Cancel drains and checks still running (the engine is stopping)."""
        for task in list(self._drains):
            task.cancel()
        if self._drains:
            await asyncio.wait(self._drains, timeout=1.0)


async def drain(sessions: Sequence[InboundSMTP], grace: float) -> None:
    """Close idle sessions now and the others once their transaction ends (or `grace` runs
    out); the reply is 421, as at shutdown."""
    idle = [s for s in sessions if not s.in_transaction]
    await asyncio.gather(*(s.close_for_shutdown() for s in idle), return_exceptions=True)
    busy = [s for s in sessions if s not in idle]
    deadline = time.monotonic() + grace
    while busy and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        done = [s for s in busy if not s.in_transaction]
        await asyncio.gather(*(s.close_for_shutdown() for s in done), return_exceptions=True)
        busy = [s for s in busy if s not in done]
    await asyncio.gather(*(s.close_for_shutdown() for s in busy), return_exceptions=True)
