"""Every outcome of a message has a mail log line, in text and JSON alike, naming the queue ID,
the recipient, the destination and the reason: a DNS failure (SERVFAIL, a timeout, no network),
a domain that does not exist, a suspended destination, a `hold` or `capture` route,
a deferral past the queue lifetime; and the Log pane says "captured", not "delivered"."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from relaybox.config.model import RouteConfig
from relaybox.engine import Engine
from relaybox.maillog import MailLog
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink

from .dnsserver import DNSServerFactory
from .support.clock import FakeClock
from .support.configs import relay_config, to_sink
from .support.engine import RunningEngine, admin_of, let_time_pass, wait_state
from .support.smtp import send
from .support.tui import until

Started = Callable[..., Awaitable[RunningEngine]]


@pytest.fixture
async def engine_logging(tmp_path: Path) -> AsyncIterator[Started]:
    """`await engine_logging(config, fmt)`: a real engine whose mail log is in `fmt`."""
    running: list[tuple[Engine, MailLog]] = []

    async def start(config: Any, fmt: str = "text") -> RunningEngine:
        stream = io.StringIO()
        log = MailLog(fmt=fmt, stream=stream, level="debug")
        engine = Engine(config, log)
        await engine.start()
        running.append((engine, log))
        return RunningEngine(engine, stream, log)

    yield start
    for engine, log in running:
        await engine.stop()
        log.close()


def lines_for(run: RunningEngine, queue_id: str, recipient: str, fmt: str) -> list[dict[str, Any]]:
    """The log lines about `recipient` of `queue_id`, as {event, field: value} whatever the
    format (text lines parsed as `key=value`)."""
    found = []
    for line in run.log_text().splitlines():
        if fmt == "json":
            obj = json.loads(line)
        else:
            head = re.match(r"\S+ \w+ (\S+): (\S+) ?(.*)$", line)
            if head is None:
                continue
            obj = {"queue_id": head[1], "event": head[2]}
            for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', head[3]):
                obj[key] = json.loads(value) if value.startswith('"') else value
        if obj.get("queue_id") == queue_id and obj.get("to") == f"<{recipient}>":
            found.append(obj)
    return found


async def wait_line(
    run: RunningEngine, queue_id: str, recipient: str, fmt: str, event: str
) -> dict[str, Any]:
    """The first `event` line about the recipient, waiting for it (bounded)."""
    deadline = time.monotonic() + 15
    while True:
        for obj in lines_for(run, queue_id, recipient, fmt):
            if obj["event"] == event:
                return obj
        assert time.monotonic() < deadline, (
            f"no {event} line for {recipient}:\n{run.log_text()[-3000:]}"
        )
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_each_outcome_decided_without_a_next_hop_has_its_log_line(
    engine_logging: Started,
    dns_server: DNSServerFactory,
    smtp_sink: Any,
    tmp_path: Path,
    fmt: str,
) -> None:
    sink = await smtp_sink()
    dns = dns_server({"servfail.example": "SERVFAIL", "timeout.example": "TIMEOUT"})
    routes = (
        RouteConfig(domains=("held.example",), transport="hold"),
        RouteConfig(domains=("captured.example",), transport="capture"),
        to_sink(sink, ("suspended.example",)),
        RouteConfig(domains=("*",), transport="mx", tls="opportunistic"),
    )
    config = relay_config(tmp_path, routes, dns=dns.address)
    config = dataclasses.replace(config, dns=dataclasses.replace(config.dns, timeout=0.3))
    run = await engine_logging(config, fmt)
    destination, _ = await admin_of(run).suspend(
        f"smarthost:127.0.0.1:{sink.port}", None, "the office's provider is down"
    )
    expected = {
        # recipient: (event, destination, what the reason says, what it means)
        "x@servfail.example": (
            "deferred",
            "mx:servfail.example",
            "451 4.4.3 DNS lookup",
            "DNS failure",
        ),
        "x@timeout.example": ("deferred", "mx:timeout.example", "451 4.4.3 DNS lookup", "DNS"),
        "x@nxdomain.example": (
            "bounced",
            "mx:nxdomain.example",
            "550 5.1.2 Domain",
            "domain does not exist",
        ),
        "x@suspended.example": ("deferred", destination, "provider is down", None),
        "x@held.example": ("held", "hold", "held by route", None),
        "x@captured.example": ("captured", "capture", "Captured by relaybox", None),
    }
    queue_id = await send(run, "a@example.com", list(expected))
    for recipient, (event, where, reason, meaning) in expected.items():
        line = await wait_line(run, queue_id, recipient, fmt, event)
        assert line["destination"] == where, line
        assert reason in line["reply"], line
        assert (meaning is None) == ("explained" not in line), line
        if meaning is not None:
            assert meaning in line["explained"], line
        if event == "deferred":
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["next_attempt"]), line
    # Exactly one line each: nothing said twice (an attempt that also reached the courier).
    for recipient in expected:
        assert len(lines_for(run, queue_id, recipient, fmt)) == 1, recipient


async def test_a_dns_server_out_of_reach_defers_with_a_line(
    engine_logging: Started, tmp_path: Path
) -> None:
    """No network to the resolver (a non-routed address: no route at all inside a network
    namespace with only loopback, or silence elsewhere)."""
    route = RouteConfig(domains=("*",), transport="mx", tls="opportunistic")
    config = relay_config(tmp_path, (route,), dns=("192.0.2.1", 53))
    config = dataclasses.replace(config, dns=dataclasses.replace(config.dns, timeout=0.3))
    run = await engine_logging(config)
    queue_id = await send(run, "a@example.com", ["x@example.org"])
    line = await wait_line(run, queue_id, "x@example.org", "text", "deferred")
    assert line["destination"] == "mx:example.org"
    assert line["reply"].startswith("451 4.4.3")


async def test_queue_lifetime_turns_deferral_into_bounce_and_the_log_says_so(
    start_engine: Any, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink(rcpt_replies={"slow@example.org": "451 4.3.0 try later"})
    clock = FakeClock()
    config = relay_config(tmp_path, (to_sink(sink),), queue_lifetime=3600.0)
    run = await start_engine(config, clock=clock)
    queue_id = await send(run, "a@example.com", ["slow@example.org"])
    await wait_state(run, queue_id, {"deferred"})
    first = lines_for(run, queue_id, "slow@example.org", "text")
    assert [line["event"] for line in first] == ["deferred"]
    assert first[0]["relay"] == f"127.0.0.1[127.0.0.1]:{sink.port}"
    let_time_pass(run, clock, 3600)
    detail = await wait_state(run, queue_id, {"bounced"})
    assert "451 4.3.0 try later" in detail.recipients[0].last_reply
    assert "5.4.7" in detail.recipients[0].last_reply
    line = await wait_line(run, queue_id, "slow@example.org", "text", "bounced")
    assert "5.4.7" in line["reply"] and "try later" in line["reply"]
    assert [x["event"] for x in lines_for(run, queue_id, "slow@example.org", "text")] == [
        "deferred",
        "bounced",
    ]


async def test_the_log_pane_says_captured_not_delivered(start_engine: Any, tmp_path: Path) -> None:
    route = RouteConfig(domains=("*",), transport="capture")
    run = await start_engine(relay_config(tmp_path, (route,)))
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        queue_id = await send(run, "a@example.com", ["b@example.org"])
        lines = app.log_view.lines
        await until(lambda: any(f"{queue_id}: captured" in t for _, t in lines), pilot)
        (line,) = [t for _, t in lines if f"{queue_id}: captured" in t]
        assert "not sent on: b@example.org" in line
        assert not any(f"{queue_id}: delivered" in t for _, t in lines)


async def test_a_greylisted_deferral_is_explained_in_the_log_and_the_log_pane(
    start_engine: Any, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink(rcpt_replies={"new@example.org": "451 4.7.1 Greylisted, come back"})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink),)))
    app = RelayboxApp(InProcessLink(run.engine))
    async with app.run_test(size=(200, 30)) as pilot:
        await pilot.press("4")
        queue_id = await send(run, "a@example.com", ["new@example.org"])
        line = await wait_line(run, queue_id, "new@example.org", "text", "deferred")
        assert line["explained"] == "greylisting: the receiver asks to try again later"
        lines = app.log_view.lines
        await until(lambda: any(f"{queue_id}: deferred (" in t for _, t in lines), pilot)
        shown = [t for _, t in lines if queue_id in t and "4.7.1" in t]
        assert len(shown) == 2  # the attempt, and the message's deferral
        assert all("(greylisting: the receiver asks to try again later): 451" in t for t in shown)
