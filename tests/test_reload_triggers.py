"""Every way to reload a running `relaybox --headless`: SIGHUP, `relaybox reload`, the file
changing on disk, each seen from outside the process; and a sequence of reloads, good and
bad, by every trigger, under a steady load to a slow next hop, with every acknowledged
message delivered exactly once."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import smtplib
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .relayproc import Relay, RunCli, StartRelay, free_port, wait_until
from .smtpsink import Sink, SinkFactory

SENDER = "app@example.com"
RECIPIENT = "user@example.org"
PACE = 0.01
"""Seconds each load client waits between messages: a steady load the slow sinks keep up with."""
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r$", re.MULTILINE | re.IGNORECASE)


def config(
    tmp_path: Path,
    port: int,
    sink: Sink,
    *,
    extra_port: int | None = None,
    extra: str = "",
    watch: bool = True,
) -> str:
    ports = [port] if extra_port is None else [port, extra_port]
    listeners = "".join(
        f'[[listeners]]\nlisten = ["127.0.0.1:{p}"]\nallowed_networks = ["127.0.0.0/8"]\n\n'
        for p in ports
    )
    return (
        "# relaybox under test: comments stay\n"
        f'[server]\nhostname = "relay.example.test"\n'
        f"state_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        f"watch_config = {'true' if watch else 'false'}\n\n"
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n\n'
        f"[delivery]\nmax_connections = 4\n{extra}\n"
        f"{listeners}"
        '# where mail goes\n[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{sink.port}"]\ntls = "none"\n'
    )


def replace_file(path: Path, text: str) -> None:
    """Save as an editor does: a new file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def reloaded(relay: Relay, generation: int) -> bool:
    return f"config-reloaded generation={generation} " in relay.stderr()


def message(message_id: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: reload test\r\n"
        f"Message-ID: {message_id}\r\n\r\nbody\r\n"
    ).encode()


def send_one(port: int, message_id: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(SENDER, [RECIPIENT], message(message_id))


async def start(start_relay: StartRelay, path: Path, port: int) -> Relay:
    return await asyncio.to_thread(start_relay, "--headless", "--config", path, port=port)


async def wait_for(condition, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(wait_until, condition, what, timeout)


# ---------------------------------------------------------------------------- one trigger each


async def test_sighup_reloads_the_file_and_the_relay_keeps_running(
    tmp_path: Path, start_relay: StartRelay, smtp_sink: SinkFactory
) -> None:
    first, second = await smtp_sink(), await smtp_sink()
    port = free_port()
    path = tmp_path / "relaybox.toml"
    path.write_text(config(tmp_path, port, first, watch=False), encoding="utf-8")
    relay = await start(start_relay, path, port)
    await asyncio.to_thread(send_one, port, "<one@example.com>")
    await first.wait_for(1)

    path.write_text(config(tmp_path, port, second, watch=False), encoding="utf-8")
    relay.proc.send_signal(signal.SIGHUP)
    await wait_for(lambda: reloaded(relay, 2), "the reload after SIGHUP")
    assert relay.proc.poll() is None
    assert "trigger=signal" in relay.stderr()
    await asyncio.to_thread(send_one, port, "<two@example.com>")
    await second.wait_for(1)
    assert relay.terminate() == 0


async def test_relaybox_reload_waits_and_prints_the_generation_or_every_problem(
    tmp_path: Path, start_relay: StartRelay, smtp_sink: SinkFactory, run_cli: RunCli
) -> None:
    sink = await smtp_sink()
    port = free_port()
    path = tmp_path / "relaybox.toml"
    good = config(tmp_path, port, sink, watch=False)
    path.write_text(good, encoding="utf-8")
    relay = await start(start_relay, path, port)

    path.write_text(good.replace("max_connections = 4", "max_connections = 6"), encoding="utf-8")
    done = await asyncio.to_thread(run_cli, "reload", "--config", path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "relaybox: generation 2 applied: delivery.max_connections 4 -> 6"
    )

    bad = good.replace("[delivery]\n", "[delivery]\nretry_forever = true\n").replace(
        'tls = "none"', 'tls = "sometimes"'
    )
    path.write_text(bad, encoding="utf-8")
    refused = await asyncio.to_thread(run_cli, "reload", "--config", path)
    assert refused.returncode == 1
    lines = bad.splitlines()
    unknown = lines.index("retry_forever = true") + 1
    wrong = lines.index('tls = "sometimes"') + 1
    assert f"{path}:{unknown}: delivery.retry_forever: " in refused.stderr
    assert f"{path}:{wrong}: routes[0].tls: " in refused.stderr
    assert "generation 2 stays in force" in refused.stderr
    assert f'config-problem trigger=command problem="{path}:{unknown}:' in relay.stderr()

    other = tmp_path / "other.toml"
    other.write_text(good, encoding="utf-8")
    wrong_file = await asyncio.to_thread(run_cli, "reload", "--config", other)
    assert wrong_file.returncode == 1
    assert f"reads {path}, not {other}" in wrong_file.stderr
    assert relay.terminate() == 0

    nothing = await asyncio.to_thread(run_cli, "reload", "--config", path)
    assert nothing.returncode == 1 and "no relaybox engine is running" in nothing.stderr


async def test_saving_the_file_reloads_once_within_a_second_and_other_files_are_ignored(
    tmp_path: Path, start_relay: StartRelay, smtp_sink: SinkFactory
) -> None:
    sink = await smtp_sink()
    port = free_port()
    path = tmp_path / "relaybox.toml"
    good = config(tmp_path, port, sink)
    path.write_text(good, encoding="utf-8")
    relay = await start(start_relay, path, port)
    await asyncio.sleep(0.5)  # the watch is set up just after the relay listens

    (tmp_path / "notes.txt").write_text("not the config")
    edited = good.replace("max_connections = 4", "max_connections = 5")
    saved = time.monotonic()
    # An editor's save: write a copy, rename it over, then touch the mode.
    replace_file(path, edited)
    path.chmod(0o640)
    await wait_for(lambda: reloaded(relay, 2), "the reload after the file changed", 5)
    took = time.monotonic() - saved
    assert took < 1.5, took
    assert "trigger=file" in relay.stderr()
    await asyncio.sleep(1.0)
    assert relay.stderr().count("config-reloaded") == 1

    # A broken save is refused, with its line, and the relay carries on.
    replace_file(path, edited + "[[routes]\n")
    await wait_for(lambda: "config-refused" in relay.stderr(), "the refusal")
    assert re.search(
        rf'config-problem trigger=file problem="{re.escape(str(path))}:\d+: ', relay.stderr()
    )
    await asyncio.to_thread(send_one, port, "<after@example.com>")
    await sink.wait_for(1)
    assert relay.terminate() == 0


# ---------------------------------------------------------------------------- under load


@dataclass
class Load:
    """Clients sending continuously; what was acknowledged, and when each began."""

    port: int
    acked: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Message-ID -> (time its transaction began, time of its 250), time.monotonic."""
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, n: int, port: int | None = None) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port or self.port, timeout=10) as smtp:
                    smtp.ehlo(f"client{n}.example.test")
                    for _ in range(5):
                        message_id = f"<load.{n}.{i}@example.com>"
                        began = time.monotonic()
                        smtp.sendmail(SENDER, [RECIPIENT], message(message_id))
                        with self.lock:
                            self.acked[message_id] = (began, time.monotonic())
                        i += 1
                        time.sleep(PACE)
            except (OSError, smtplib.SMTPException) as exc:
                self.failures.append(f"client {n}: {exc!r}")
                return

    def knock(self) -> None:
        """The main listener must never refuse a connection."""
        while not self.stop.is_set():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
            except OSError as exc:
                self.failures.append(f"connection refused: {exc!r}")
            time.sleep(0.01)


async def test_reloads_by_every_trigger_under_load_lose_and_double_nothing(
    tmp_path: Path, start_relay: StartRelay, smtp_sink: SinkFactory, run_cli: RunCli
) -> None:
    slow = {"data_delay": 0.02}
    first, second, third = await smtp_sink(**slow), await smtp_sink(**slow), await smtp_sink()
    port, extra_port = free_port(), free_port()
    path = tmp_path / "relaybox.toml"
    path.write_text(config(tmp_path, port, first), encoding="utf-8")
    relay = await start(start_relay, path, port)
    await asyncio.sleep(0.5)
    load = Load(port)
    threads = [threading.Thread(target=load.client, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=load.knock))
    for thread in threads:
        thread.start()
    phases: list[tuple[float, float, Sink]] = []
    """(applied at, next reload began at, the sink in force) for each route in force."""
    timings: list[tuple[str, float]] = []
    generation = 1

    async def applied(trigger: str, act, expect_generation: int) -> float:  # type: ignore[no-untyped-def]
        began = time.monotonic()
        await act()
        await wait_for(
            lambda: reloaded(relay, expect_generation), f"generation {expect_generation}"
        )
        done = time.monotonic()
        timings.append((trigger, done - began))
        return done

    async def hup() -> None:
        relay.proc.send_signal(signal.SIGHUP)

    try:
        await asyncio.sleep(1.0)
        # 1. the route moves to another sink, by signal
        path.write_text(config(tmp_path, port, second, watch=False), encoding="utf-8")
        phases.append((0.0, time.monotonic(), first))
        generation += 1
        applied_at = await applied("signal", hup, generation)
        await asyncio.sleep(1.0)

        # 2. an unknown key, by command: refused, the old config keeps serving
        bad = config(tmp_path, port, second, extra='colour = "blue"\n', watch=False)
        path.write_text(bad, encoding="utf-8")
        refused = await asyncio.to_thread(run_cli, "reload", "--config", path)
        assert refused.returncode == 1 and "delivery.colour" in refused.stderr, refused.stderr

        # 3. a listener added, by command, and mail flows through it; then removed, by
        # signal (which also turns the file watch on)
        phases.append((applied_at, time.monotonic(), second))
        path.write_text(
            config(tmp_path, port, second, extra_port=extra_port, watch=False), encoding="utf-8"
        )
        began = time.monotonic()
        added = await asyncio.to_thread(run_cli, "reload", "--config", path)
        assert added.returncode == 0, added.stderr
        generation += 1
        assert f"generation {generation} applied" in added.stdout
        timings.append(("command", time.monotonic() - began))
        applied_at = time.monotonic()
        extra = threading.Thread(target=load.client, args=(99, extra_port))
        extra.start()
        await asyncio.sleep(1.0)
        path.write_text(config(tmp_path, port, second), encoding="utf-8")
        phases.append((applied_at, time.monotonic(), second))
        generation += 1
        applied_at = await applied("signal", hup, generation)
        await asyncio.to_thread(extra.join, 15)
        await asyncio.sleep(1.0)

        # 4. a TOML syntax error, by file change: refused, and nothing changes
        replace_file(path, config(tmp_path, port, second) + "[[routes]\n")
        await wait_for(lambda: relay.stderr().count("config-refused") >= 2, "the syntax error")

        # 5. the route moves on, by file change
        phases.append((applied_at, time.monotonic(), second))
        generation += 1
        applied_at = await applied(
            "file",
            lambda: asyncio.to_thread(replace_file, path, config(tmp_path, port, third)),
            generation,
        )
        await asyncio.sleep(1.5)
        phases.append((applied_at, float("inf"), third))
    finally:
        load.stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 15)

    # The load's 421s from the removed listener are expected; nothing else failed.
    assert [f for f in load.failures if "client 99" not in f] == []
    drained_from = time.monotonic()
    deadline = drained_from + 60
    sinks = (first, second, third)

    def arrived() -> collections.Counter[str]:
        return collections.Counter(
            m.decode()
            for sink in sinks
            for got in sink.messages
            for m in MESSAGE_ID.findall(got.data)
        )

    def missing() -> list[str]:
        seen = arrived()  # once per look: a scan per message made this minutes long
        return [m for m in load.acked if not seen[m]]

    while left := missing():
        if time.monotonic() > deadline:
            listing = await asyncio.to_thread(run_cli, "queue", "--config", path)
            deferred = [line for line in relay.stderr().splitlines() if "deferred" in line]
            print(len(load.acked), listing.stdout[-3000:], "\n".join(deferred[-20:]))
        assert time.monotonic() < deadline, f"{len(left)} not delivered"
        await asyncio.sleep(0.2)
    counts = arrived()
    duplicated = sum(n - 1 for n in counts.values())
    lost = [m for m in load.acked if not counts[m]]
    # Mail whose transaction began after a reload applied, and that arrived before the next
    # reload began, went where that config sends mail.
    where = {
        m.decode(): sink
        for sink in sinks
        for got in sink.messages
        for m in MESSAGE_ID.findall(got.data)
    }
    arrival = {
        m.decode(): got.at
        for sink in sinks
        for got in sink.messages
        for m in MESSAGE_ID.findall(got.data)
    }
    misrouted = [
        m
        for m, (began, _) in load.acked.items()
        for start, end, sink in phases
        if start < began and arrival[m] < end and where[m] is not sink
    ]
    print(
        f"\nreload under load: {len(load.acked)} acknowledged, {sum(counts.values())} delivered"
        f" (the last {time.monotonic() - drained_from:.1f} s after the load ended),"
        f" lost {len(lost)}, duplicated {duplicated}, misrouted {len(misrouted)};"
        " trigger -> applied, seen from outside: "
        + ", ".join(f"{t} {s * 1000:.0f} ms" for t, s in timings)
        + "; inside the engine (took_ms): "
        + ", ".join(re.findall(r"config-reloaded .*?took_ms=(\d+)", relay.stderr()))
    )
    assert lost == [] and duplicated == 0 and misrouted == []
    assert len(load.acked) > 100
    assert relay.terminate() == 0
