"""The relay engine: owns the state directory, the spool, the listeners, the bus and the clock.

It runs on whatever asyncio loop is current (the headless runner's, or later the TUI's), knows
nothing of any UI, and is driven by `start()` and `stop()`. Periodic housekeeping that touches the
disk (free space, the suppression list) runs in threads so the loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from relaybox.admin.server import ControlServer
from relaybox.admin.service import Admin
from relaybox.clock import Clock, system_clock
from relaybox.config.model import Config, SocketAddress
from relaybox.config.watch import watch_config_file
from relaybox.engine.config_desk import ConfigDesk
from relaybox.engine.reload import Reloader, ReloadResult, delivery_resolver
from relaybox.events import DestinationSuspended, EventBus
from relaybox.health.monitor import DomainMonitor, DomainReport
from relaybox.inbound.auth import Authenticator
from relaybox.inbound.certificates import ServerCertificate
from relaybox.inbound.context import InboundContext
from relaybox.inbound.listeners import ListenerSet
from relaybox.inbound.server import InboundSMTP
from relaybox.maillog import MailLog
from relaybox.outbound.client import Courier
from relaybox.outbound.connections import OutboundConnection
from relaybox.outbound.handshake import Credentials
from relaybox.outbound.routing import load_credentials
from relaybox.outbound.scheduler import Scheduler
from relaybox.queue import Spool
from relaybox.queue.integrity import RECOVER_COMMAND, SpoolDamaged
from relaybox.resolver import Resolver
from relaybox.statedir import (
    DATABASE_NAME,
    IDENTITY_NAME,
    SOCKET_NAME,
    StateLock,
    ensure_state_dir,
)

__all__ = ["Engine"]

FREE_SPACE_INTERVAL = 2.0
SUPPRESSION_REFRESH_INTERVAL = 5.0
SHUTDOWN_GRACE = 30.0
CERTIFICATE_CHECK_INTERVAL = 5.0
DELIVERY_HOUSEKEEPING_INTERVAL = 2.0
PURGE_INTERVAL = 600.0
VACUUM_INTERVAL = 30.0
"""Seconds between looks at the spool's free pages (deleted mail), given back to the disk."""


class Engine:
    """One relay: `await engine.start()`, serve, `await engine.stop()`.

    `clock` is the one wall clock of the relay (`relaybox.clock`): the engine hands it to the
    spool, the inbound sessions, delivery, the admin layer and the control socket.
    """

    def __init__(self, config: Config, log: MailLog, clock: Clock = system_clock):
        self._config = config
        self.config_loaded_at = clock()
        """When the config in force was loaded (wall clock): at start, for now."""
        self.log = log
        self.clock = clock
        self.bus = EventBus()
        self.spool: Spool | None = None
        self.admin: Admin | None = None
        self.listeners: ListenerSet | None = None
        """The listening sockets, kept across reloads."""
        self.reloader = Reloader(self)
        """Where every reload goes (signal, command, file change, UI)."""
        self.config_desk = ConfigDesk(self)
        """The config file for the admin layer: read, check, apply, history, rollback."""
        self.started_at: float | None = None
        self._lock = StateLock(config.server.state_dir)
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: InboundContext | None = None
        self._free_space_mb: float | None = None
        self.certificates: dict[str, ServerCertificate] = {}
        self.authenticator: Authenticator | None = None
        self.scheduler: Scheduler | None = None
        self.courier: Courier | None = None
        self.resolver: Resolver | None = None
        self._last_purge = 0.0
        self._suppressed: dict[str, tuple[str, float | None]] = {}
        """Suppressed address -> (why, when the entry expires or None)."""
        self._stopped = asyncio.Event()
        self.domains = DomainMonitor(lambda: self._config, self.bus, log, clock)
        """The sending domains' health (SPF, DKIM, DMARC...), checked in the background."""
        self.stopping = False
        """Set when `stop()` begins: reloads are refused from then on."""
        self._watcher: asyncio.Task[None] | None = None
        self._watch_stop = asyncio.Event()
        """Reloads the config file when it changes (`[server] watch_config`)."""
        self._watch_failed = False
        self.control: ControlServer | None = None
        """The admin socket (`state_dir/admin.sock`) the CLI and the TUI attach through."""

    @property
    def config(self) -> Config:
        """The config in force; sessions read it once when they start."""
        return self._config

    @property
    def bound(self) -> list[tuple[str, SocketAddress]]:
        """(listener name, address actually bound) for every listening socket."""
        return self.listeners.bound if self.listeners is not None else []

    @property
    def generation(self) -> int:
        """How many configs have been in force: 1 at start, one more per applied reload."""
        return self.reloader.generation

    async def start(self) -> None:
        """Lock the state directory, open the spool and start listening.

        Raises EngineRunning if another engine holds the state directory, SpoolError if the
        database cannot be opened or is damaged, lost or replaced (`queue.integrity`), OSError
        if a listener cannot bind or the state directory is not the engine's own
        (`statedir.StateDirUnsafe`). Nothing is left running when it raises.
        """
        state_dir = self._config.server.state_dir
        await asyncio.to_thread(ensure_state_dir, state_dir)
        self._lock.acquire()
        try:
            # The whole file is checked before anything is accepted or delivered (in a thread).
            self.spool = await Spool.open(
                state_dir / DATABASE_NAME,
                clock=self.clock,
                min_free_bytes=self._config.server.min_free_space_mb * 2**20,
                check=True,
                identity=state_dir / IDENTITY_NAME,
            )
            self.spool.on_damaged = self._spool_damaged
            if self.spool.vacuum_note:
                self.log.event("spool-vacuum", note=self.spool.vacuum_note)
            self.admin = Admin(self.spool, live=self, clock=self.clock)
            await self.reloader.started(self.config_desk.versions)
            self.config_loaded_at = self.clock()
            await self._refresh_free_space()
            await self.refresh_suppression()
            self.certificates = await asyncio.to_thread(self._load_certificates)
            # Always there: a reload may add the first user (AUTH is offered only with users).
            self.authenticator = Authenticator(
                {u.name: u for u in self._config.users}, self._config.auth
            )
            self._ctx = InboundContext(
                config=lambda: self._config,
                spool=self.spool,
                bus=self.bus,
                log=self.log,
                suppression=self.suppression_reason,
                free_space_mb=lambda: self._free_space_mb,
                clock=self.clock,
                authenticator=self.authenticator,
                certificates=self.certificates,
            )
            await self._start_scheduler()
            self._ctx.accepted = self.scheduler.wake if self.scheduler else self._ctx.accepted
            self.listeners = ListenerSet(self._ctx)
            await self.listeners.bind_new(self._config.listeners)
            self.control = ControlServer(
                self.admin, self.bus, state_dir / SOCKET_NAME, self.log, self.clock
            )
            await self.control.start()
        except BaseException:
            await self._close_everything()
            raise
        self.started_at = self.clock()
        self._tasks = [
            asyncio.create_task(self._every(FREE_SPACE_INTERVAL, self._refresh_free_space)),
            asyncio.create_task(
                self._every(SUPPRESSION_REFRESH_INTERVAL, self.refresh_suppression)
            ),
            asyncio.create_task(self._every(CERTIFICATE_CHECK_INTERVAL, self._check_certificates)),
            asyncio.create_task(
                self._every(DELIVERY_HOUSEKEEPING_INTERVAL, self._housekeep_delivery)
            ),
            asyncio.create_task(self._every(VACUUM_INTERVAL, self._vacuum_spool)),
            asyncio.create_task(self.domains.run()),
        ]
        self._sync_watcher()
        self.log.event(
            "started",
            pid=os.getpid(),
            state_dir=str(state_dir),
            listening=" ".join(f"{addr}" for _, addr in self.bound),
            config=str(self._config.source) if self._config.source else "embedded default",
        )

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, let transactions in flight finish (up to `grace` s), then close."""
        if self._ctx is None:
            await self._close_everything()
            return
        ctx = self._ctx
        ctx.shutting_down = self.stopping = True
        # Python 3.11 loses a connection accepted in the same loop step as Server.close() (an
        # assertion in Server._attach, swallowed): let pending accepts finish first.
        await asyncio.sleep(0)
        if self.listeners is not None:
            self.listeners.stop_accepting()
        await self.reloader.stop()
        idle = [s for s in ctx.sessions if not s.in_transaction]
        await asyncio.gather(*(s.close_for_shutdown() for s in idle), return_exceptions=True)
        deadline = time.monotonic() + grace
        while any(s.in_transaction for s in ctx.sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left: list[InboundSMTP] = list(ctx.sessions)
        await asyncio.gather(*(s.close_for_shutdown() for s in left), return_exceptions=True)
        if self.scheduler is not None:
            await self.scheduler.stop(grace=max(1.0, deadline - time.monotonic()))
            self.scheduler = None
        await asyncio.sleep(0)  # let connection_lost callbacks queue their transcripts
        self.log.event("stopped", unfinished_sessions=len([s for s in left if s.in_transaction]))
        await self._close_everything()

    async def _close_everything(self) -> None:
        await self._stop_watcher()
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.scheduler is not None:
            await self.scheduler.stop(grace=1.0)
            self.scheduler = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.authenticator is not None:
            self.authenticator.close()
        if self.listeners is not None:
            await self.listeners.close()
        if self.spool is not None:
            await self.spool.close()
            self.spool = None
        self._lock.release()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once `stop()` has finished."""
        await self._stopped.wait()

    # ------------------------------------------------------------------ reload

    async def reload_config(self, trigger: str, text: str | None = None) -> ReloadResult:
        """Check the config file (or `text` as its new content) and put it in force, or refuse
        it and keep the config in force; see `engine.reload`."""
        return await self.reloader.reload(trigger, text)

    def _sync_watcher(self) -> None:
        """Watch the config file while `[server] watch_config` says so (a reload may turn it
        on or off)."""
        # On the embedded default there is no file to watch (until the UI writes one).
        wanted = (
            self._config.server.watch_config
            and self._config.source is not None
            and self.started_at is not None
        )
        if wanted and self._watcher is None:
            self._watch_stop = asyncio.Event()
            self._watcher = asyncio.create_task(
                watch_config_file(
                    self.reloader.path, self._file_changed, self._watch_trouble, self._watch_stop
                ),
                name="config-watch",
            )
        elif not wanted and self._watcher is not None:
            self._watch_stop.set()  # ends within half a second; nothing waits for it here
            self._watcher = None

    async def _stop_watcher(self) -> None:
        """End the file watch and its thread (bounded: a stuck thread does not hold up a
        stop)."""
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        self._watch_stop.set()
        done, _ = await asyncio.wait({watcher}, timeout=2.0)
        if not done:
            watcher.cancel()

    async def _file_changed(self) -> None:
        await self.reload_config("file")

    def _watch_trouble(self, exc: Exception) -> None:
        if not self._watch_failed:  # once: it is retried every few seconds
            self._watch_failed = True
            self.log.warning(
                "config-watch-failed",
                folder=str(self.reloader.path.absolute().parent),
                error=str(exc),
                note="reload with SIGHUP or relaybox reload; watching is retried",
            )

    def swap_config(
        self,
        config: Config,
        certificates: dict[str, ServerCertificate],
        credentials: dict[int, Credentials | None],
        resolver: Resolver | None,
    ) -> None:
        """Put a checked config in force: one synchronous step (no await), so every session
        and attempt starting afterwards sees all of it, and none sees part."""
        self._config = config
        self.config_loaded_at = self.clock()
        self.certificates = certificates
        if self._ctx is not None:
            self._ctx.certificates = certificates
        if self.authenticator is not None:
            self.authenticator.update({u.name: u for u in config.users}, config.auth)
        if resolver is not None:
            self.resolver = resolver
        if self.scheduler is not None and self.resolver is not None:
            self.scheduler.reconfigure(credentials, self.resolver)

    async def after_swap(self) -> None:
        """What follows a swap and may take a moment: outbound connection settings (idle
        connections close), the log level and the file watch."""
        config = self._config
        if self.courier is not None:
            await self.courier.reconfigure(**_courier_settings(config))
        self.log.set_level(config.log.level)
        self._sync_watcher()  # watch_config may have changed, or the first file appeared

    def sessions(self) -> list[InboundSMTP]:
        """The inbound sessions open now."""
        return list(self._ctx.sessions) if self._ctx is not None else []

    def outbound_connections(self) -> list[OutboundConnection]:
        """Delivery's connections open now, in use or idle in its cache, oldest first."""
        return self.courier.connections.snapshot() if self.courier is not None else []

    def outbound_connection(self, connection_id: str) -> OutboundConnection | None:
        """Delivery's connection of this id while it is open."""
        return self.courier.connections.get(connection_id) if self.courier is not None else None

    # ------------------------------------------------------------------ admin hooks
    # What `admin.LiveEngine` asks for, so that an admin action takes effect at once.

    def wake_delivery(self) -> None:
        """Let delivery look at the queue now (an admin retried, released or bounced mail)."""
        if self.scheduler is not None:
            self.scheduler.wake()

    def delivering(self, message_id: int) -> bool:
        """Whether the message with this row id is in an attempt right now."""
        return self.scheduler is not None and self.scheduler.is_delivering(message_id)

    def attempts_to(self, destination: str) -> int:
        """Attempts holding or awaiting a connection to `destination` right now."""
        return self.scheduler.attempts_to(destination) if self.scheduler is not None else 0

    def claim(self, message_id: int) -> bool:
        """Keep delivery off the message until `unclaim`; False while it is being delivered."""
        return self.scheduler is None or self.scheduler.claim(message_id)

    def unclaim(self, message_id: int) -> None:
        """Give a claimed message back to delivery."""
        if self.scheduler is not None:
            self.scheduler.unclaim(message_id)

    def suspend(self, destination: str, until: float, reason: str) -> None:
        """Defer mail to `destination` until `until` (the spool already records it)."""
        if self.scheduler is not None:
            self.scheduler.suspended[destination] = (until, reason)
        self.bus.publish(DestinationSuspended(destination, until, at=self.clock()))

    def domain_report(self) -> DomainReport:
        """The latest findings about the sending domains, without looking anything up."""
        return self.domains.report()

    async def check_domains(self, domains: Sequence[str] | None = None) -> DomainReport:
        """Check these sending domains (default: all) now."""
        return await self.domains.check(domains)

    def resume(self, destination: str) -> None:
        """Deliver to `destination` again (the spool already forgot its suspension)."""
        if self.scheduler is not None:
            self.scheduler.suspended.pop(destination, None)
            self.scheduler.wake()
        self.bus.publish(DestinationSuspended(destination, 0.0, at=self.clock()))

    def _spool_damaged(self, damaged: SpoolDamaged) -> None:
        """The spool was found damaged while running: writes are refused from now on (mail is
        answered 451, delivery results are not recorded), so the admin must act."""
        self.log.error(
            "spool-damaged",
            path=str(damaged.path),
            problems="; ".join(damaged.problems[:5]),
            fix=f"stop relaybox, then run: {RECOVER_COMMAND}",
        )

    # ------------------------------------------------------------------ housekeeping

    async def _every(self, interval: float, job: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = job()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                self.log.exception("housekeeping-failed", job=getattr(job, "__name__", "job"))

    async def _start_scheduler(self) -> None:
        """Delivery: the resolver, the courier and the scheduler over this spool."""
        assert self.spool is not None
        config = self._config
        self.resolver = delivery_resolver(config)
        self.courier = Courier(**_courier_settings(config), clock=self.clock)
        credentials = await asyncio.to_thread(
            lambda: {id(route): load_credentials(route) for route in config.routes}
        )
        self.scheduler = Scheduler(
            config=lambda: self._config,
            spool=self.spool,
            resolver=self.resolver,
            courier=self.courier,
            credentials=credentials,
            bus=self.bus,
            log=self.log,
            clock=self.clock,
            on_suppressed=self.note_suppressed,
            on_key_checked=self.domains.note_key,
        )
        await self.scheduler.start()

    async def _housekeep_delivery(self) -> None:
        """Close idle outbound connections, forget idle destinations' limits; purge finished
        mail past its retention."""
        if self.courier is not None:
            await self.courier.reap_idle()
        if self.scheduler is not None:
            self.scheduler.forget_idle()
        now = self.clock()
        retention = self._config.delivery.retention
        # A short retention is purged as often as it asks for (0: seconds after finishing).
        interval = min(PURGE_INTERVAL, max(retention, DELIVERY_HOUSEKEEPING_INTERVAL))
        if self.spool is not None and now - self._last_purge >= interval:
            self._last_purge = now
            purged = await self.spool.purge_finished(now - retention, now)
            if purged:
                self.log.event("purged", messages=purged)

    def _load_certificates(self) -> dict[str, ServerCertificate]:
        """One live context per TLS listener (blocking: reads the files; run in a thread)."""
        loaded: dict[str, ServerCertificate] = {}
        for listener in self._config.listeners:
            if listener.tls != "none" and listener.certificate and listener.private_key:
                loaded[listener.name] = ServerCertificate.load(
                    listener.certificate, listener.private_key
                )
        return loaded

    async def _check_certificates(self) -> None:
        """Pick up renewed certificate files for new connections, without a restart."""
        for name, cert in self.certificates.items():
            if not await asyncio.to_thread(cert.changed):
                continue
            error = await asyncio.to_thread(cert.try_new_pair)
            if error is not None:
                self.log.error(
                    "certificate-reload-failed",
                    listener=name,
                    certificate=str(cert.certificate),
                    error=error,
                    note="still serving the previous certificate",
                )
                continue
            cert.apply_new_pair()
            self.log.event("certificate-reloaded", listener=name, certificate=str(cert.certificate))

    async def _refresh_free_space(self) -> None:
        def measure() -> float:
            st = os.statvfs(self._config.server.state_dir)
            return st.f_bavail * st.f_frsize / 1_048_576

        self._free_space_mb = free = await asyncio.to_thread(measure)
        floor = self._config.server.min_free_space_mb
        if self.spool is not None and floor and free < 2 * floor:
            # Short of space: free pages go back to the disk and the WAL is cut to zero now,
            # not when it next reaches its checkpoint size.
            await self._vacuum_spool(every_page=True)
            await self.spool.checkpoint()

    async def _vacuum_spool(self, every_page: bool = False) -> None:
        """Give the pages of deleted mail back to the disk (in the spool's threads): once
        enough are free to be worth it, or `every_page` when space is short."""
        if self.spool is not None:
            freed = await (self.spool.vacuum(min_pages=1) if every_page else self.spool.vacuum())
            if freed:
                self.log.event("spool-vacuumed", freed_mb=round(freed / 2**20, 2))

    async def refresh_suppression(self) -> None:
        """Keep an in-memory copy so RCPT never waits on the disk.

        Edits through the admin layer of this engine call this at once; a CLI editing the
        database with no engine to ask shows within the refresh interval (5 s).
        """
        assert self.spool is not None
        now = self.clock()
        rows = await self.spool.suppression_list()
        fresh = {
            row.address: (f"{row.reason} (since {_day(row.created_at)})", row.expires_at)
            for row in rows
            if row.expires_at is None or row.expires_at > now
        }
        self._suppressed.clear()
        self._suppressed.update(fresh)

    def note_suppressed(self, entries: Sequence[tuple[str, str, float | None]]) -> None:
        """Entries the scheduler just added (address, reason, expiry): refused from now on."""
        since = _day(self.clock())
        for address, reason, expires in entries:
            self._suppressed[address.lower()] = (f"{reason} (since {since})", expires)

    def suppression_reason(self, address: str) -> str | None:
        """Why mail to `address` is refused, or None."""
        found = self._suppressed.get(address.lower())
        if found is None:
            return None
        reason, expires = found
        return reason if expires is None or expires > self.clock() else None


def _courier_settings(config: Config) -> dict[str, Any]:
    """What delivery's connections are made with, from the config (at start and on reload)."""
    delivery = config.delivery
    return {
        "helo_name": config.server.hostname,
        "connect_timeout": delivery.connect_timeout,
        "command_timeout": delivery.command_timeout,
        "data_timeout": delivery.data_timeout,
        "cache_idle": delivery.connection_cache_idle,
        "soft_bounce": delivery.soft_bounce,
    }


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))
