"""`relaybox queue` read as a Postfix admin reads mailq: pending recipients only, `*` for a
message being delivered, `!` for a held one; `--all` adds the finished, each with its state."""

from __future__ import annotations

import argparse
import asyncio
import io
import re
from pathlib import Path

import pytest

from relaybox.admin.service import UNTIL_RESUMED
from relaybox.cli.queue import queue_list
from relaybox.cli.show import show
from relaybox.config.model import RouteConfig
from relaybox.queue import MessageFilter

from .relayproc import Cli, free_port
from .smtpsink import SinkFactory
from .support.configs import relay_config, to_sink, write_config
from .support.engine import EngineFactory, admin_of, wait_state
from .support.smtp import send

BUSY = "451 4.2.1 mailbox busy, try later"


async def _listing(admin: object, every: bool = False) -> list[str]:
    out = io.StringIO()
    assert await queue_list(admin, argparse.Namespace(all=every, json=False), out) == 0  # type: ignore[arg-type]
    return out.getvalue().splitlines()


async def test_mailq_lists_pending_recipients_marks_active_and_held(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    sink = await smtp_sink(rcpt_replies={"b@busy.example": BUSY})
    stall = asyncio.Event()
    slow = await smtp_sink(stall=stall)
    routes = (
        to_sink(slow, ("slow.example",)),
        RouteConfig(domains=("held.example",), transport="hold"),
        to_sink(sink, ("*",)),
    )
    run = await start_engine(relay_config(tmp_path, routes))
    half = await send(run, "app@example.com", ["a@busy.example", "b@busy.example"])
    held = await send(run, "app@example.com", ["x@held.example"])
    await wait_state(run, half, {"deferred"})
    await wait_state(run, held, {"held"})
    active = await send(run, "app@example.com", ["c@slow.example"])
    admin = admin_of(run)
    try:
        for _ in range(200):  # bounded: until the slow sink holds the end of DATA
            if slow.connections and await admin.delivering([r.id for r in await admin.list_all()]):
                break
            await asyncio.sleep(0.02)
        lines = await _listing(admin)
    finally:
        stall.set()
    text = "\n".join(lines)
    entry = {line.split()[0]: n for n, line in enumerate(lines) if line[:1].isalnum()}
    assert f"{active}*" in entry, text
    assert f"{held}!" in entry, text
    assert half in entry, text
    under_half = [line.strip() for line in lines[entry[half] + 1 :][:3]]
    # The delivered recipient of the half-deferred message is not listed; the pending one is,
    # under the reply that holds it up.
    assert under_half[:2] == [f"({BUSY})", "b@busy.example"], text
    assert "a@busy.example" not in text

    await wait_state(run, active, {"delivered"})
    lines = await _listing(admin, every=True)
    text = "\n".join(lines)
    assert "a@busy.example  [delivered]" in text
    assert "c@slow.example  [delivered]" in text
    assert any(line.strip() == "b@busy.example" for line in lines), text


async def test_show_in_text_says_when_each_pending_recipient_is_tried_next_and_why(
    start_engine: EngineFactory, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    grey = "451 4.7.1 Greylisted, please try again later"
    sink = await smtp_sink(rcpt_replies={"b@busy.example": grey})
    run = await start_engine(relay_config(tmp_path, (to_sink(sink, ("*",)),)))
    queue_id = await send(run, "app@example.com", ["a@busy.example", "b@busy.example"])
    await wait_state(run, queue_id, {"deferred"})
    admin = admin_of(run)
    out = io.StringIO()
    assert await show(admin, argparse.Namespace(queue_id=queue_id, json=False), out) == 0  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    pending = next(n for n, line in enumerate(lines) if "b@busy.example" in line)
    assert re.search(
        r"deferred  attempts=1  next=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  451", lines[pending]
    )
    assert lines[pending + 1].strip() == "why: greylisting: the receiver asks to try again later"
    delivered = next(line for line in lines if "a@busy.example" in line)
    assert "next=" not in delivered

    key = f"smarthost:127.0.0.1:{sink.port}"
    await admin.suspend(key, UNTIL_RESUMED, "asked to wait")
    await admin.retry(MessageFilter())
    for _ in range(200):  # bounded: until the attempt met the suspension
        out = io.StringIO()
        await show(admin, argparse.Namespace(queue_id=queue_id, json=False), out)
        if "next=when resumed (suspended)" in out.getvalue():
            break
        await asyncio.sleep(0.02)
    assert "next=when resumed (suspended)" in out.getvalue(), out.getvalue()


@pytest.mark.parametrize("action", ["delete", "retry", "bounce"])
def test_an_action_without_messages_prints_its_own_usage_and_only_its_options(
    action: str, tmp_path: Path, cli: Cli
) -> None:
    result = cli("queue", action, "--config", write_config(tmp_path, free_port()))
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"usage: relaybox queue {action} "), result.stderr
    assert "relaybox queue [--json]" not in result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"relaybox queue {action}: error: say which messages to {action}")
    assert ("--recipient" in error) == (action != "delete")


def test_listings_and_actions_do_not_repeat_the_config_warnings(tmp_path: Path, cli: Cli) -> None:
    path = write_config(tmp_path, free_port())
    text = path.read_text(encoding="utf-8").replace('listen = ["127.0.0.1:', 'listen = ["0.0.0.0:')
    path.write_text(text, encoding="utf-8")
    checked = cli("check-config", path)
    assert "warning" in checked.stdout  # the config has one, and check-config says it
    for args in (("queue",), ("queue", "--json"), ("queue", "retry", "--all"), ("show", "X")):
        result = cli(*args, "--config", path)
        assert "warning" not in result.stderr, (args, result.stderr)
