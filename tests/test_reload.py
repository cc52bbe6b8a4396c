"""Reloading a running engine: a valid file is put in force as one object, an invalid one is
refused with every problem and changes nothing; listeners keep their sockets, queued mail
whose next hop changed is due at once, and the admin operations (check, apply, history,
rollback) go through the same path. In process, over real sockets; the signal, the command
and the file watch, across a process boundary, are in test_reload_triggers.py."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from relaybox.config import load_config
from relaybox.config.store import file_version
from relaybox.events import ConfigRefused, ConfigReloaded
from relaybox.message.replies import Reply
from relaybox.queue.model import MessageFilter

from .relayproc import free_port
from .smtpsink import SinkFactory
from .support.engine import EngineFactory, RunningEngine, admin_of, wait_state
from .support.reload import config_text, route_to, start_from_file
from .support.smtp import SMTPClient, said, send, simple_message

SENDER = "app@example.com"
RECIPIENT = "user@example.org"

Smtp = Callable[..., Awaitable[SMTPClient]]


async def reload_with(run: RunningEngine, path: Path, text: str, trigger: str = "command") -> Any:
    path.write_text(text, encoding="utf-8")
    return await run.engine.reload_config(trigger)


# ---------------------------------------------------------------------------- refused


async def test_an_unknown_key_is_refused_with_its_line_and_the_old_config_keeps_serving(
    start_engine: EngineFactory, tmp_path: Path, smtp_sink: SinkFactory
) -> None:
    sink = await smtp_sink()
    good = config_text(tmp_path, routes=route_to(sink))
    run, path = await start_from_file(start_engine, tmp_path, good)
    subscription = run.engine.bus.subscribe(types=[ConfigRefused])
    before = run.engine.config

    bad = good.replace("[delivery]\n", "[delivery]\nmax_conections = 3\n")
    result = await reload_with(run, path, bad)

    assert result.outcome == "refused"
    assert result.generation == run.engine.generation
    line = bad.splitlines().index("max_conections = 3") + 1
    texts = [str(p) for p in result.problems]
    assert any(t.startswith(f"{path}:{line}: delivery.max_conections: ") for t in texts), texts
    assert run.engine.config is before
    refused = await asyncio.wait_for(subscription.get(), 5)
    assert refused.problems == tuple(texts)
    assert "config-refused" in run.log_text() and f"{path}:{line}:" in run.log_text()
    await send(run, SENDER, [RECIPIENT])
    await sink.wait_for(1)


async def test_a_toml_syntax_error_is_refused_with_its_line(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    good = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, good)
    generation = run.engine.generation
    bad = good + '\n[[routes]]\ndomains = ["example.net"\ntransport = "hold"\n'

    result = await reload_with(run, path, bad)

    assert result.outcome == "refused"
    assert run.engine.generation == generation
    (problem,) = result.problems
    assert problem.line is not None and problem.line >= len(good.splitlines())
    assert "not valid TOML" in problem.message


async def test_a_new_state_dir_is_refused_while_running(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    good = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, good)
    moved = good.replace(str(tmp_path / "state"), str(tmp_path / "elsewhere"))

    result = await reload_with(run, path, moved)

    assert result.outcome == "refused"
    assert [p.key for p in result.problems] == ["server.state_dir"]
    assert "cannot change while relaybox runs" in result.problems[0].message


async def test_a_listener_address_that_cannot_be_bound_is_refused_and_nothing_changes(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        good = config_text(tmp_path)
        run, path = await start_from_file(start_engine, tmp_path, good)
        before = run.engine.config
        result = await reload_with(
            run,
            path,
            config_text(tmp_path, ports=(0, port), extra="[limits]\nmax_recipients = 5\n"),
        )
        assert result.outcome == "refused"
        (problem,) = result.problems
        assert problem.key == "listeners[1].listen" and str(port) in problem.message
        assert run.engine.config is before
        assert [a.port for _, a in run.engine.bound] == [run.port]
    finally:
        taken.close()


# ---------------------------------------------------------------------------- applied


async def test_a_new_route_applies_to_the_next_message_and_is_published_and_logged(
    start_engine: EngineFactory, tmp_path: Path, smtp_sink: SinkFactory
) -> None:
    first, second = await smtp_sink(), await smtp_sink()
    run, path = await start_from_file(
        start_engine, tmp_path, config_text(tmp_path, routes=route_to(first))
    )
    subscription = run.engine.bus.subscribe(types=[ConfigReloaded])
    await send(run, SENDER, [RECIPIENT], subject="before")
    await first.wait_for(1)

    result = await reload_with(run, path, config_text(tmp_path, routes=route_to(second)))

    assert result.outcome == "applied"
    assert result.generation == 2
    assert f"127.0.0.1:{second.port}" in result.summary and "routes" in result.summary
    event = await asyncio.wait_for(subscription.get(), 5)
    assert (event.generation, event.trigger, event.summary) == (2, "command", result.summary)
    assert "config-reloaded" in run.log_text() and "generation=2" in run.log_text()
    await send(run, SENDER, [RECIPIENT], subject="after")
    await second.wait_for(1)
    assert len(first.messages) == 1


async def test_an_applied_reload_returns_the_new_config_warnings(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    good = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, good)
    risky = good.replace("[delivery]\n", "[delivery]\nsoft_bounce = true\n")
    assert risky != good

    result = await reload_with(run, path, risky)

    assert result.outcome == "applied"
    assert [w.key for w in result.warnings] == ["delivery.soft_bounce"]
    assert result.to_json()["warnings"][0]["key"] == "delivery.soft_bounce"


async def test_deferred_mail_whose_next_hop_changed_is_due_at_once_and_the_rest_keeps_its_time(
    start_engine: EngineFactory, tmp_path: Path, smtp_sink: SinkFactory
) -> None:
    busy = "busy@example.org"
    refusing = await smtp_sink(
        rcpt_replies={busy: "451 4.3.0 try later", "stay@example.net": "451 4.3.0 later"}
    )
    taking = await smtp_sink()
    routes = route_to(refusing, '"example.org"') + route_to(refusing, '"example.net"')
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path, routes=routes))
    moved_id = await send(run, SENDER, [busy])
    kept_id = await send(run, SENDER, ["stay@example.net"])
    kept = await wait_state(run, kept_id, {"deferred"})
    await wait_state(run, moved_id, {"deferred"})

    preview = await run.engine.config_desk.check(
        config_text(
            tmp_path, routes=route_to(taking, '"example.org"') + route_to(refusing, '"example.net"')
        )
    )
    assert preview["errors"] == []
    assert preview["queue_effect"] == [
        {
            "from": f"smarthost:127.0.0.1:{refusing.port}",
            "to": f"smarthost:127.0.0.1:{taking.port}",
            "messages": 1,
            "recipients": 1,
        }
    ]

    result = await reload_with(
        run,
        path,
        config_text(
            tmp_path, routes=route_to(taking, '"example.org"') + route_to(refusing, '"example.net"')
        ),
    )
    assert result.outcome == "applied"
    (got,) = await taking.wait_for(1, timeout=10)
    assert got.recipients == [busy]
    assert "rerouted=1" in run.log_text()
    await wait_state(run, moved_id, {"delivered"})
    still = await admin_of(run).show(kept_id)
    assert still is not None and still.row.state == "deferred"
    assert still.row.next_attempt_at == kept.row.next_attempt_at


async def test_a_listener_added_takes_mail_and_one_removed_closes_after_its_transaction(
    start_engine: EngineFactory, tmp_path: Path, smtp_sink: SinkFactory
) -> None:
    sink = await smtp_sink()
    main_port, extra_port = free_port(), free_port()
    text = config_text(tmp_path, ports=(main_port,), routes=route_to(sink))
    run, path = await start_from_file(start_engine, tmp_path, text)

    result = await reload_with(
        run, path, config_text(tmp_path, ports=(main_port, extra_port), routes=route_to(sink))
    )
    assert result.outcome == "applied" and f"+127.0.0.1:{extra_port}" in result.summary
    busy = await SMTPClient.connect("127.0.0.1", extra_port)
    idle = await SMTPClient.connect("127.0.0.1", extra_port)
    try:
        await busy.greet()
        await idle.greet()
        assert (await busy.cmd(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await busy.cmd(f"RCPT TO:<{RECIPIENT}>"))[0] == 250

        result = await reload_with(
            run, path, config_text(tmp_path, ports=(main_port,), routes=route_to(sink))
        )
        assert result.outcome == "applied" and f"-127.0.0.1:{extra_port}" in result.summary
        assert said(*await idle.reply()) == Reply.SHUTTING_DOWN
        with pytest.raises(OSError):
            await SMTPClient.connect("127.0.0.1", extra_port)
        # The transaction in progress on the removed listener finishes, then it is closed.
        assert (await busy.cmd("DATA"))[0] == 354
        await busy.send(simple_message("on the removed listener") + b".\r\n")
        assert (await busy.reply())[0] == 250
        assert said(*await busy.reply()) == Reply.SHUTTING_DOWN
        assert await busy.closed()
    finally:
        await busy.close()
        await idle.close()
    await sink.wait_for(1)
    await send(run, SENDER, [RECIPIENT])
    await sink.wait_for(2)


async def test_an_unchanged_listener_never_refuses_a_connection_across_reloads(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    port = free_port()
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path, ports=(port,)))
    stop = asyncio.Event()
    connected = refused = 0

    async def knock() -> None:
        nonlocal connected, refused
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                refused += 1
            else:
                connected += 1
                writer.close()
            await asyncio.sleep(0)

    knocking = [asyncio.create_task(knock()) for _ in range(4)]
    for i in range(10):
        limit = f"[limits]\nmax_recipients = {100 + i}\n"
        network = '"127.0.0.0/8"' if i % 2 else '"127.0.0.0/8", "10.0.0.0/8"'
        text = config_text(tmp_path, ports=(port,), extra=limit).replace('"127.0.0.0/8"', network)
        assert (await reload_with(run, path, text)).outcome == "applied"
    stop.set()
    await asyncio.gather(*knocking)
    assert refused == 0 and connected > 20
    assert run.engine.config.limits.max_recipients == 109


async def test_sessions_in_progress_keep_their_settings_and_new_ones_take_the_new(
    start_engine: EngineFactory, tmp_path: Path, smtp: Smtp
) -> None:
    run, path = await start_from_file(
        start_engine, tmp_path, config_text(tmp_path, extra="[limits]\nmax_recipients = 2\n")
    )
    old = await smtp(run)
    await reload_with(run, path, config_text(tmp_path, extra="[limits]\nmax_recipients = 1\n"))
    new = await smtp(run)
    for client, allowed in ((old, 2), (new, 1)):
        assert (await client.cmd(f"MAIL FROM:<{SENDER}>"))[0] == 250
        codes = [(await client.cmd(f"RCPT TO:<r{i}@example.org>"))[0] for i in range(3)]
        assert codes.count(250) == allowed, codes


async def test_a_changed_certificate_and_tls_mode_apply_to_the_next_connection_on_the_same_socket(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    files = {}
    for name in ("one", "two"):
        cert = ca.issue_cert(f"{name}.example.test")
        files[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(files[name][0])
        cert.private_key_pem.write_to_path(files[name][1])
    port = free_port()

    def tls(mode: str, name: str) -> str:
        certificate, key = files[name]
        return (
            f'tls = "{mode}"\ncertificate = {json.dumps(str(certificate))}\n'
            f"private_key = {json.dumps(str(key))}\n"
        )

    run, path = await start_from_file(
        start_engine,
        tmp_path,
        config_text(tmp_path, ports=(port,), listener_extra=tls("starttls", "one")),
    )
    plain = await SMTPClient.connect("127.0.0.1", port)
    await plain.greet()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    result = await reload_with(
        run, path, config_text(tmp_path, ports=(port,), listener_extra=tls("implicit", "two"))
    )
    assert result.outcome == "applied"
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context, server_hostname="two.example.test"
    )
    try:
        assert (await reader.readline()).startswith(b"220 ")
    finally:
        writer.close()
    # The session that began in plain text still talks plain text, on its old settings.
    assert (await plain.cmd("NOOP"))[0] == 250
    await plain.close()


async def test_a_user_added_by_a_reload_can_log_in_at_once(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    from relaybox.config.passwords import hash_password

    ca = trustme.CA()
    cert = ca.issue_cert("relay.example.test")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "c.pem")
    cert.private_key_pem.write_to_path(tmp_path / "c.key")
    port = free_port()
    listener = (
        f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nrole = "submission"\ntls = "implicit"\n'
        f"certificate = {json.dumps(str(tmp_path / 'c.pem'))}\n"
        f"private_key = {json.dumps(str(tmp_path / 'c.key'))}\n\n"
    )
    base = config_text(tmp_path, extra=listener)
    run, path = await start_from_file(start_engine, tmp_path, base)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def login() -> int:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="relay.example.test"
        )
        client = SMTPClient(reader, writer)
        try:
            await client.reply()
            await client.cmd("EHLO client.example.test")
            import base64

            token = base64.b64encode(b"\0alice\0s3cret!").decode()
            return (await client.cmd(f"AUTH PLAIN {token}"))[0]
        finally:
            await client.close()

    assert await login() != 235
    users = f'[[users]]\nname = "alice"\npassword_hash = "{hash_password("s3cret!")}"\n'
    result = await reload_with(run, path, users + base)
    assert result.outcome == "applied" and "users: +alice" in result.summary
    assert "$scrypt$" not in result.summary
    assert await login() == 235


async def test_route_credentials_are_read_again_on_reload(
    start_engine: EngineFactory, tmp_path: Path, smtp_sink: SinkFactory
) -> None:
    sink = await smtp_sink(auth=("relay", "new-password"))
    secret = tmp_path / "secret"
    secret.write_text("old-password\n")
    secret.chmod(0o600)
    route = route_to(sink) + f'username = "relay"\npassword_file = {json.dumps(str(secret))}\n'
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path, routes=route))
    first = await send(run, SENDER, [RECIPIENT])
    await wait_state(run, first, {"deferred"})

    secret.write_text("new-password\n")
    assert (await run.engine.reload_config("signal")).outcome == "applied"
    await admin_of(run).retry(MessageFilter(queue_ids=(first,)))
    await sink.wait_for(1)


# ---------------------------------------------------------------------------- apply, history


async def test_apply_writes_the_file_atomically_keeps_a_private_backup_and_rolls_back(
    start_engine: EngineFactory, tmp_path: Path, smtp_sink: SinkFactory
) -> None:
    first, second = await smtp_sink(), await smtp_sink()
    original = config_text(tmp_path, routes=route_to(first))
    run, path = await start_from_file(start_engine, tmp_path, original)
    path.chmod(0o640)
    desk = run.engine.config_desk
    current = await desk.file()
    assert current["text"] == original and current["generation"] == 1

    edited = config_text(tmp_path, routes=route_to(second))
    result = await desk.apply(edited, current["version"])
    assert result["outcome"] == "applied" and result["generation"] == 2
    assert path.read_text() == edited
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    await send(run, SENDER, [RECIPIENT])
    await second.wait_for(1)

    # A second editor that started from the first version is refused, and told what is there.
    stale = await desk.apply(original.replace("hold", "capture"), current["version"])
    assert stale["outcome"] == "conflict" and stale["text"] == edited
    assert path.read_text() == edited

    history = await desk.history()
    assert [(h["generation"], h["trigger"]) for h in history] == [(2, "ui"), (1, "start")]
    backups = list((tmp_path / "state" / "config-history").glob("*.toml"))
    assert backups and all(stat.S_IMODE(b.stat().st_mode) == 0o600 for b in backups)

    rolled = await desk.rollback()
    assert rolled["outcome"] == "applied" and rolled["generation"] == 3
    assert path.read_text() == original
    await send(run, SENDER, [RECIPIENT])
    await first.wait_for(1)
    assert (await desk.history())[0]["trigger"] == "rollback"


async def test_an_invalid_apply_writes_nothing(start_engine: EngineFactory, tmp_path: Path) -> None:
    original = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, original)
    _, version = file_version(path)
    result = await run.engine.config_desk.apply("bogus = 1\n" + original, version)
    assert result["outcome"] == "refused"
    assert [p["key"] for p in result["problems"]] == ["bogus"]
    assert path.read_text() == original
    assert run.engine.generation == 1


async def test_reload_through_the_admin_socket_names_the_engines_file_or_says_which_it_is(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path))
    admin = admin_of(run)
    result = await admin.reload_config(str(path))
    assert result["outcome"] == "applied" and result["summary"] == "no change"
    with pytest.raises(ValueError, match=f"reads {path}, not"):
        await admin.reload_config(str(tmp_path / "other.toml"))


async def test_reloads_run_one_at_a_time_in_order(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path))
    texts = [config_text(tmp_path, extra=f"[limits]\nmax_recipients = {n}\n") for n in (7, 8, 9)]
    results = await asyncio.gather(*(run.engine.reload_config("ui", t) for t in texts))
    assert [r.generation for r in results] == [2, 3, 4]
    assert run.engine.config.limits.max_recipients == 9


async def test_a_file_saved_unchanged_reloads_nothing(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run, path = await start_from_file(start_engine, tmp_path, config_text(tmp_path))
    result = await run.engine.reload_config("file")
    assert result.outcome == "unchanged" and run.engine.generation == 1
    started = time.monotonic()
    assert (await run.engine.reload_config("signal")).outcome == "applied"
    assert time.monotonic() - started < 5


async def test_on_the_embedded_default_the_first_apply_creates_the_default_file_and_watches_it(
    start_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    run = await start_engine()
    desk = run.engine.config_desk
    current = await desk.file()
    expected = tmp_path / "xdg" / "relaybox" / "relaybox.toml"
    assert (current["path"], current["exists"], current["version"]) == (str(expected), False, "")

    text = config_text(tmp_path).replace("watch_config = false", "watch_config = true")
    text = text.replace(str(tmp_path / "state"), str(tmp_path / "state0"))
    result = await desk.apply(text, "")
    assert result["outcome"] == "applied", result
    assert expected.read_text() == text
    assert run.engine.config.source == expected
    edited = text.replace("[delivery]\n", "[delivery]\nmax_connections = 3\n")
    expected.write_text(edited)
    deadline = time.monotonic() + 10
    while run.engine.config.delivery.max_connections != 3:
        assert time.monotonic() < deadline, "the file written by the first apply is not watched"
        await asyncio.sleep(0.05)


async def test_a_restart_keeps_the_generation_of_an_unchanged_file_and_numbers_a_changed_one_next(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    text = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, text)
    await reload_with(run, path, config_text(tmp_path, extra="[limits]\nmax_recipients = 9\n"))
    assert run.engine.generation == 2
    await run.engine.stop()

    again = await start_engine(load_config(path))
    assert again.engine.generation == 2
    assert [h["generation"] for h in await again.engine.config_desk.history()] == [2, 1]
    await again.engine.stop()

    path.write_text(text)
    third = await start_engine(load_config(path))
    assert third.engine.generation == 3
    history = await third.engine.config_desk.history()
    assert [(h["generation"], h["trigger"]) for h in history] == [
        (3, "start"),
        (2, "command"),
        (1, "start"),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [("# \ud800\n", "not valid Unicode"), ("#" * (600 * 1024), "a config is at most")],
)
async def test_text_that_cannot_be_a_config_is_refused_before_it_is_read(
    start_engine: EngineFactory, tmp_path: Path, text: str, says: str
) -> None:
    original = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, original)
    admin = admin_of(run)
    checked = await admin.check_config_text(text)
    assert says in checked["errors"][0]["message"]
    applied = await admin.apply_config(text, file_version(path)[1])
    assert applied["outcome"] == "refused" and says in applied["problems"][0]["message"]
    assert path.read_text() == original


async def test_a_sending_domain_added_by_a_reload_is_checked_at_once(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    from relaybox.events import DomainsChecked
    from relaybox.signing.keys import generate, write_private_key

    def dkim(domain: str) -> str:
        key = tmp_path / f"{domain}.key"
        if not key.exists():
            write_private_key(generate("rsa-sha256", 2048), key)
        return (
            f'[[dkim]]\ndomain = "{domain}"\nselector = "s1"\n'
            f"private_key = {json.dumps(str(key))}\n\n"
        )

    base = config_text(tmp_path)
    run, path = await start_from_file(start_engine, tmp_path, dkim("old.example") + base)
    checked = run.engine.bus.subscribe(types=[DomainsChecked])
    first = await asyncio.wait_for(checked.get(), 10)  # the monitor's own, soon after start
    assert first.domains == ("old.example",)
    result = await reload_with(run, path, dkim("old.example") + dkim("new.example") + base)
    assert result.outcome == "applied"
    event = await asyncio.wait_for(checked.get(), 10)  # not in [health] check_interval (6 h)
    assert event.domains == ("new.example",)
