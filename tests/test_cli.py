"""The `relaybox` command end to end: `main(argv)` in this process (the `cli` fixture), and the
real program as a subprocess where a process boundary matters (signals, the state lock, the
console script, a pipe closed early).

Every relay listens on a free loopback port with its state directory, config and home folders
under the test's tmp_path, so nothing here reads or writes the real home; clients are smtplib
on 127.0.0.1. Waits poll a condition with a deadline; every process is killed at teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from relaybox.admin.connect import open_offline
from relaybox.config import load_config_with_warnings, sample_config_text
from relaybox.message.replies import Reply
from relaybox.statedir import EngineRunning, StateLock

from .relayproc import (
    EXIT_TIMEOUT,
    Cli,
    RunCli,
    StartRelay,
    free_port,
    wait_until,
)
from .support.configs import HOSTNAME, toml_string, write_config
from .support.smtp import QUEUED, RECIPIENT, SENDER, said, send_sync

SUPPRESSION_TIMEOUT = 7.0
"""A running engine re-reads the suppression list every 5 s."""
# ---------------------------------------------------------------------------- helpers


def rcpt_reply(port: int, recipient: str) -> tuple[int, str]:
    """The reply a fresh session gets to RCPT TO:<recipient>."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.test")
        code, text = client.mail(SENDER)
        assert code == 250, text
        code, text = client.rcpt(recipient)
        client.rset()
    return code, text.decode()


def turned_away(port: int) -> bool:
    """True when a new connection is refused, or closed without the 220 greeting."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionRefusedError:
        return True
    with sock:
        try:
            greeting = sock.recv(512)
        except ConnectionError:
            return True
        except TimeoutError:
            pytest.fail(f"a new connection to port {port} was neither greeted nor closed")
    return not greeting.startswith(b"220")


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


# ---------------------------------------------------------------------------- init, check-config


def assert_is_sample_with_starttls(path: Path) -> None:
    """init writes the sample config with only the first listener's three TLS lines changed."""
    tls_dir = path.parent / "tls"
    written = path.read_text(encoding="utf-8").splitlines()
    sample = sample_config_text().splitlines()
    assert len(written) == len(sample)
    changed = [(old, new) for old, new in zip(sample, written, strict=True) if old != new]
    assert changed == [
        ('tls = "none"', 'tls = "starttls"'),
        (
            '# certificate = "/etc/relaybox/tls/cert.pem"',
            f"certificate = {toml_string(tls_dir / 'cert.pem')}",
        ),
        (
            '# private_key = "/etc/relaybox/tls/key.pem"',
            f"private_key = {toml_string(tls_dir / 'key.pem')}",
        ),
    ]
    assert stat.S_IMODE((tls_dir / "key.pem").stat().st_mode) == 0o600


def test_init_writes_the_sample_config_and_never_overwrites_without_force(
    tmp_path: Path, cli: Cli
) -> None:
    path = tmp_path / "etc" / "relaybox.toml"
    result = cli("init", "--config", path)
    assert result.returncode == 0, result.stderr
    assert_is_sample_with_starttls(path)

    path.write_text("# the admin's own settings\n", encoding="utf-8")
    result = cli("init", "--config", path)
    assert result.returncode != 0
    assert "--force" in result.stderr
    assert path.read_text(encoding="utf-8") == "# the admin's own settings\n"

    result = cli("init", "--config", path, "--force")
    assert result.returncode == 0, result.stderr
    assert_is_sample_with_starttls(path)

    result = cli("check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok"


def test_init_without_config_writes_to_the_platformdirs_config_path(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    cli: Cli,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    expected = Path(platformdirs.user_config_dir("relaybox")) / "relaybox.toml"
    assert expected.is_relative_to(env["HOME"])

    result = cli("init")
    assert result.returncode == 0, result.stderr
    assert_is_sample_with_starttls(expected)
    result = cli("check-config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok"


def test_check_config_prints_every_problem_as_file_line_key_message(
    tmp_path: Path, cli: Cli
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [server]
            hostname = "relay.example.test"
            colour = "blue"

            [[listeners]]
            listen = ["127.0.0.1:2525"]
            allowed_networks = [
                "127.0.0.0/8",
                "192.168.1.0/33",
            ]
            """
        ),
        encoding="utf-8",
    )
    result = cli("check-config", path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok" not in lines
    assert len(lines) == 2, lines
    unknown, network = lines
    assert unknown.startswith(f"{path}:3: server.colour: unknown key"), unknown
    assert network.startswith(f'{path}:9: listeners[0].allowed_networks[1]: "192.168.1.0/33"'), (
        network
    )


def test_check_config_prints_warnings_and_still_says_ok(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "risky.toml"
    path.write_text(
        '[[listeners]]\nlisten = ["0.0.0.0:2525"]\nallowed_networks = ["127.0.0.0/8"]\n',
        encoding="utf-8",
    )
    result = cli("check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "ok"
    warnings = [line for line in lines[:-1] if "warning" in line]
    assert len(warnings) == 1, lines
    assert warnings[0].startswith(f"{path}:3: listeners[0].allowed_networks[0]: warning: ")
    assert "127.0.0.0/8" in warnings[0]


# ---------------------------------------------------------------------------- queue and show


def test_accepted_message_is_listed_by_queue_and_shown_by_show_while_the_engine_runs(
    tmp_path: Path,
    start_relay: StartRelay,
    cli: Cli,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    relay = start_relay("--headless", "--config", config, port=port)
    queue_id = send_sync(port)

    result = cli("queue", "--config", config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("-Queue ID-")
    entry = next(i for i, line in enumerate(lines) if line.startswith(queue_id))
    # Postfix's mailq: ID, size, arrival ("Fri Nov 27 01:40:27"), sender; recipients below.
    arrival = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d"
    # "!" marks a held message (these tests hold all mail), as in mailq.
    assert re.fullmatch(rf"{queue_id}!?\s+\d+ {arrival}\s+{SENDER}", lines[entry]), lines[entry]
    below = lines[entry + 1 : entry + 3]
    assert RECIPIENT in [line.strip() for line in below], below
    assert all(line.startswith(" ") for line in below)
    assert lines[-1].endswith("in 1 Request.")

    result = cli("queue", "--json", "--config", config)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert [m["queue_id"] for m in listing] == [queue_id]
    assert listing[0]["sender"] == SENDER
    assert [r["address"] for r in listing[0]["recipients"]] == [RECIPIENT]
    assert listing[0]["state"] in ("queued", "held")

    # The reply to DATA joins the stored transcript when the session ends (after QUIT).
    final_reply = f"S: {Reply.queued(queue_id)}"

    def shown() -> str | None:
        # Bytes, so that a stray CR in the output is not hidden by universal newlines.
        result = cli("show", queue_id, "--config", config, text=False)
        assert result.returncode == 0, result.stderr
        out: str = result.stdout.decode("utf-8")
        return out if final_reply in out else None

    text = wait_until(shown, "the transcript with the 250 reply in `relaybox show`")
    assert f"Queue ID:   {queue_id}" in text
    assert f"<{SENDER}>" in text
    assert RECIPIENT in text
    headers = text.split("\nHeaders:\n", 1)[1].split("\nInbound session", 1)[0]
    assert re.search(rf"Received: from .*\n.*by {re.escape(HOSTNAME)} \(relaybox\)", headers)
    assert f"id {queue_id}" in headers
    assert "Subject: hello" in headers
    assert "\r" not in text
    transcript = text.split("\nInbound session", 1)[1]
    assert re.search(rf"C: MAIL FROM:<{SENDER}>", transcript)
    assert re.search(rf"C: RCPT TO:<{RECIPIENT}>", transcript)
    assert final_reply in transcript

    result = cli("show", queue_id, "--json", "--config", config)
    assert result.returncode == 0, result.stderr
    detail = json.loads(result.stdout)
    assert detail["queue_id"] == queue_id
    assert detail["sender"] == SENDER
    assert [r["address"] for r in detail["recipients"]] == [RECIPIENT]
    received = [value for key, value in detail["headers"] if key == "Received"]
    assert len(received) == 1
    assert f"by {HOSTNAME} (relaybox)" in received[0]
    assert f"id {queue_id}" in received[0]
    exchanged = [(line["direction"], line["text"]) for line in detail["inbound_transcript"]]
    assert any(d == "C" and t.startswith(f"MAIL FROM:<{SENDER}>") for d, t in exchanged), exchanged
    assert ("S", Reply.queued(queue_id)) in exchanged

    result = cli("show", "NOSUCHID0000", "--config", config)
    assert result.returncode == 1
    assert "NOSUCHID0000" in result.stderr
    assert relay.proc.poll() is None


def test_output_into_a_pipe_closed_early_ends_quietly(
    tmp_path: Path,
    env: dict[str, str],
    start_relay: StartRelay,
) -> None:
    """`relaybox show ID --json | head -1`: the installed command stops without a traceback."""
    command = Path(sys.executable).with_name("relaybox")
    assert command.is_file(), (
        f"the relaybox console script is not installed next to {sys.executable}"
    )
    port = free_port()
    config = write_config(tmp_path, port)
    start_relay("--headless", "--config", config, port=port)
    # 64 KB of headers, shown as about 95 KB of JSON: more than a pipe holds, so the command
    # is still writing when the pipe closes.
    filler = "".join(f"X-Filler-{n}: {'x' * 50}\r\n" for n in range(1000))
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail(SENDER, [RECIPIENT], filler + "\r\nbody\r\n") == {}
    listing = subprocess.run(
        [command, "queue", "--json", "--config", config],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listing.returncode == 0, listing.stderr
    queue_id = json.loads(listing.stdout)[0]["queue_id"]

    stderr_path = tmp_path / "show.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [command, "show", queue_id, "--json", "--config", config],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"{\n"
    proc.stdout.close()  # what `head -1` does after its line
    proc.wait(timeout=30)
    assert stderr_path.read_text() == ""


def test_queue_on_a_fresh_state_dir_says_the_queue_is_empty(tmp_path: Path, cli: Cli) -> None:
    state_dir = tmp_path / "never-used" / "state"
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    result = cli("queue", "--config", config, umask=0)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Mail queue is empty\n"
    result = cli("queue", "--json", "--config", config)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    if state_dir.exists():  # whatever the command created is the relay's user's only
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert all(private(p) for p in state_dir.iterdir())


def test_config_before_the_subcommand_name_is_not_ignored(
    tmp_path: Path,
    start_relay: StartRelay,
    cli: Cli,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    start_relay("--headless", "--config", config, port=port)
    queue_id = send_sync(port)
    result = cli("--config", config, "queue")
    assert result.returncode == 0, result.stderr
    assert queue_id in result.stdout


# ---------------------------------------------------------------------------- one engine per spool


def test_second_engine_refuses_and_names_the_first(
    tmp_path: Path,
    start_relay: StartRelay,
    run_cli: RunCli,
) -> None:
    first_port, second_port = free_port(), free_port()
    state_dir = tmp_path / "state"
    first = start_relay(
        "--headless",
        "--config",
        write_config(tmp_path, first_port, state_dir=state_dir, name="first.toml"),
        port=first_port,
    )
    second = write_config(tmp_path, second_port, state_dir=state_dir, name="second.toml")

    result = run_cli("--headless", "--config", second, timeout=EXIT_TIMEOUT)
    assert result.returncode != 0
    assert re.search(rf"\bpid {first.proc.pid}\b", result.stderr), result.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", second_port), timeout=2).close()
    assert first.proc.poll() is None
    send_sync(first_port)


def test_an_engine_cannot_start_while_an_offline_write_holds_the_spool(
    tmp_path: Path, run_cli: RunCli, start_relay: StartRelay
) -> None:
    """A `queue bounce` with no engine running holds the state directory's lock while it
    changes the spool: an engine starting meanwhile refuses, naming what holds it."""
    port = free_port()
    path = write_config(tmp_path, port)
    config, _ = load_config_with_warnings(path)

    async def start_engine_during_an_offline_write() -> subprocess.CompletedProcess[str]:
        offline = await open_offline(config, write=True)
        try:
            return await asyncio.to_thread(
                run_cli, "--headless", "--config", path, timeout=EXIT_TIMEOUT
            )
        finally:
            await offline.close()

    result = asyncio.run(start_engine_during_an_offline_write())
    assert result.returncode == 1
    assert f"relaybox command changing the spool (pid {os.getpid()})" in result.stderr
    assert "try again when it is done" in result.stderr
    start_relay("--headless", "--config", path, port=port)  # the write is over: it starts


def test_an_offline_write_changes_nothing_when_an_engine_holds_the_state_directory(
    tmp_path: Path, cli: Cli
) -> None:
    """An engine that has taken the lock but is not serving its socket yet (starting): a write
    is refused, before the socket is tried (no engine answers) and after (it started between
    the command's look for an engine and its opening the spool)."""
    path = write_config(tmp_path, free_port())
    config, _ = load_config_with_warnings(path)
    assert cli("suppress", "add", "kept@example.org", "--config", path).returncode == 0
    lock = StateLock(config.server.state_dir)
    lock.acquire()
    try:
        result = cli("suppress", "remove", "kept@example.org", "--config", path)
        assert result.returncode == 1
        assert "nothing was changed" in result.stderr, result.stderr
        with pytest.raises(EngineRunning, match=rf"engine \(pid {os.getpid()}\)"):
            asyncio.run(open_offline(config, write=True))
    finally:
        lock.release()
    assert "kept@example.org" in cli("suppress", "list", "--config", path).stdout


def test_state_dir_is_0700_and_spool_and_log_files_are_private(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    port = free_port()
    state_dir = tmp_path / "var" / "state"
    log_file = tmp_path / "relay.log"
    config = write_config(tmp_path, port, state_dir=state_dir, log_file=log_file)
    # With umask 0 anything not created private on purpose would be world-readable.
    start_relay("--headless", "--config", config, port=port, umask=0)
    send_sync(port)

    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in state_dir.iterdir())
    assert "spool.db" in files
    loose = [f"{p.name} {stat.filemode(p.stat().st_mode)}" for p in state_dir.iterdir()]
    assert all(private(p) for p in state_dir.iterdir()), loose
    assert private(log_file), stat.filemode(log_file.stat().st_mode)


# ---------------------------------------------------------------------------- running and stopping


def start_transaction(port: int) -> smtplib.SMTP:
    """A session stopped in the middle of DATA: half the message sent, no final dot."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("busy.example.test")
    assert client.mail(SENDER)[0] == 250
    assert client.rcpt(RECIPIENT)[0] == 250
    assert said(*client.docmd("DATA")) == Reply.START_DATA
    client.send(b"Subject: in flight\r\nMessage-ID: <in-flight@example.com>\r\n\r\nfirst half\r\n")
    return client


def finish_transaction(client: smtplib.SMTP) -> str:
    """Send the rest of the message started by `start_transaction`; returns its queue ID."""
    client.send(b"second half\r\n.\r\n")
    code, text = client.getreply()
    assert code == 250, text
    found = QUEUED.search(text.decode())
    assert found, text
    return found.group(1)


def test_sigterm_lets_a_transaction_in_flight_finish_and_turns_new_clients_away(
    tmp_path: Path,
    start_relay: StartRelay,
    cli: Cli,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    relay = start_relay("--headless", "--config", config, port=port)

    busy = start_transaction(port)
    idle = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        idle.ehlo("idle.example.test")
        relay.proc.send_signal(signal.SIGTERM)
        # A session with no transaction is told to go; once it is, the engine is stopping.
        assert said(*idle.getreply()) == Reply.SHUTTING_DOWN
        wait_until(lambda: turned_away(port), "new connections to be turned away after SIGTERM")
        assert relay.proc.poll() is None, "exited with a transaction in flight"
        queue_id = finish_transaction(busy)
    finally:
        busy.close()
        idle.close()

    assert relay.wait_exit() == 0
    assert re.search(r"\bstopped\b", relay.stderr())
    listing = json.loads(cli("queue", "--json", "--config", config).stdout)
    assert [m["queue_id"] for m in listing] == [queue_id]


def test_sigusr1_during_the_graceful_stop_does_not_kill_the_relay(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    """logrotate may signal while transactions in flight finish after SIGTERM."""
    port = free_port()
    log_file = tmp_path / "relay.log"
    config = write_config(tmp_path, port, log_file=log_file)
    relay = start_relay("--headless", "--config", config, port=port)

    busy = start_transaction(port)
    idle = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        idle.ehlo("idle.example.test")
        relay.proc.send_signal(signal.SIGTERM)
        assert said(*idle.getreply()) == Reply.SHUTTING_DOWN  # the engine is stopping
        relay.proc.send_signal(signal.SIGUSR1)
        queue_id = finish_transaction(busy)
    finally:
        busy.close()
        idle.close()
    assert relay.wait_exit() == 0
    assert queue_id in log_file.read_text()


def test_plain_relaybox_without_a_terminal_says_so_and_runs_headless(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    port = free_port()
    relay = start_relay("--config", write_config(tmp_path, port), port=port)
    send_sync(port)
    notices = [line for line in relay.stderr().splitlines() if "no terminal for the UI" in line]
    assert len(notices) == 1, relay.stderr()
    assert "headless" in notices[0]

    started = time.monotonic()
    assert relay.terminate() == 0
    assert time.monotonic() - started < 5
    assert re.search(r"\bstopped\b", relay.stderr())


# ---------------------------------------------------------------------------- observability


def test_json_log_format_writes_one_object_per_event(
    tmp_path: Path,
    start_relay: StartRelay,
    cli: Cli,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    relay = start_relay("--headless", "--log-format", "json", "--config", config, port=port)
    queue_id = send_sync(port)

    def accepted() -> dict[str, Any] | None:
        for line in relay.stderr().splitlines():
            if queue_id in line and '"accepted"' in line:
                entry: dict[str, Any] = json.loads(line)
                return entry
        return None

    entry = wait_until(accepted, "the accepted event in the JSON log")
    assert entry["event"] == "accepted"
    assert entry["queue_id"] == queue_id
    listing = json.loads(cli("queue", "--json", "--config", config).stdout)
    assert entry["size"] == listing[0]["size"] > 0

    assert relay.terminate() == 0
    events = [json.loads(line) for line in relay.stderr().splitlines()]
    assert all(isinstance(e, dict) and {"time", "level", "event"} <= e.keys() for e in events)
    names = [e["event"] for e in events]
    assert names[0] == "started"
    assert names[-1] == "stopped"
    assert "connect" in names


def test_log_file_is_reopened_on_sigusr1_after_rotation(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    port = free_port()
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    log_file = log_dir / "relay.log"
    rotated = log_dir / "relay.log.1"
    relay = start_relay(
        "--headless", "--config", write_config(tmp_path, port, log_file=log_file), port=port
    )
    before = send_sync(port, subject="before")
    # Its last line: the hold route's outcome, logged once delivery has looked at it.
    wait_until(lambda: f"{before}: held" in log_file.read_text(), "the first message held")

    log_file.rename(rotated)
    relay.proc.send_signal(signal.SIGUSR1)
    wait_until(log_file.exists, "a fresh log file after SIGUSR1")
    after = send_sync(port, subject="after")
    wait_until(lambda: after in log_file.read_text(), "the second message in the fresh log file")

    assert relay.proc.poll() is None
    assert before not in log_file.read_text()
    assert after not in rotated.read_text()
    assert private(log_file)


def test_suppressed_recipient_is_refused_at_rcpt_until_removed(
    tmp_path: Path,
    start_relay: StartRelay,
    cli: Cli,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    start_relay("--headless", "--config", config, port=port)
    suppressed = "x@example.org"
    assert rcpt_reply(port, suppressed)[0] == 250

    result = cli("suppress", "add", suppressed, "--config", config)
    assert result.returncode == 0, result.stderr
    result = cli("suppress", "list", "--config", config)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [suppressed]

    def refused() -> tuple[int, str] | None:
        code, text = rcpt_reply(port, suppressed)
        return (code, text) if code != 250 else None

    code, text = wait_until(
        refused, "the running engine to refuse the suppressed recipient", SUPPRESSION_TIMEOUT
    )
    assert code == 550, text
    assert "suppress" in text
    assert rcpt_reply(port, "y@example.org")[0] == 250

    result = cli("suppress", "remove", suppressed, "--config", config)
    assert result.returncode == 0, result.stderr
    result = cli("suppress", "list", "--config", config)
    assert suppressed not in result.stdout
    wait_until(
        lambda: rcpt_reply(port, suppressed)[0] == 250,
        "the running engine to accept the recipient again",
        SUPPRESSION_TIMEOUT,
    )
    send_sync(port, recipient=suppressed)


@pytest.mark.parametrize("days", ["-5", "0", "1e300", "3651", "nan", "soon"])
def test_suppress_add_refuses_days_that_are_not_a_sane_number(
    tmp_path: Path, cli: Cli, days: str
) -> None:
    config = write_config(tmp_path, free_port())
    result = cli("suppress", "add", "x@example.org", "--days", days, "--config", config)
    assert result.returncode == 2
    assert "--days" in result.stderr and "days" in result.stderr.split("--days", 1)[1]
    result = cli("suppress", "list", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "x@example.org" not in result.stdout


# ---------------------------------------------------------------------------- embedded default


def test_without_a_config_file_relaybox_serves_127_0_0_1_2525_with_its_spool_in_the_state_dir(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    start_relay: StartRelay,
    cli: Cli,
) -> None:
    try:
        socket.create_connection(("127.0.0.1", 2525), timeout=1).close()
    except OSError:
        pass
    else:
        pytest.fail(
            "something already listens on 127.0.0.1:2525, the port of relaybox's embedded "
            "default, so it cannot be tested; stop that program (`ss -ltnp 'sport = :2525'` "
            "names it) and run the tests again"
        )
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, env[var])
    assert not (Path(platformdirs.user_config_dir("relaybox")) / "relaybox.toml").exists()
    state_dir = Path(platformdirs.user_state_dir("relaybox"))
    assert state_dir.is_relative_to(env["HOME"])

    # With no config file relaybox routes mail by MX through the system's resolver. Nothing
    # may leave loopback in tests, so this relay sees a resolv.conf naming 127.0.0.1 (where
    # nothing answers), in a mount namespace of its own; the machine's file is untouched.
    fake_resolv = env["HOME"] + "/resolv.conf"
    Path(fake_resolv).write_text("nameserver 127.0.0.1\n", encoding="utf-8")
    assert shutil.which("unshare"), "util-linux's unshare is needed (root runs the suite)"
    prefix = (
        "unshare",
        "--mount",
        "--",
        "sh",
        "-c",
        f'mount --bind "{fake_resolv}" /etc/resolv.conf && exec "$@"',
        "sh",
    )
    start_relay("--headless", port=2525, prefix=prefix)
    queue_id = send_sync(2525)

    assert (state_dir / "spool.db").is_file()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    result = cli("queue", "--json")
    assert result.returncode == 0, result.stderr
    assert [m["queue_id"] for m in json.loads(result.stdout)] == [queue_id]


# ---------------------------------------------------------------------------- passwd, TLS + AUTH


def test_passwd_reads_one_line_from_stdin_and_prints_a_users_block(cli: Cli) -> None:
    result = cli("passwd", "alice", input="s3cret pass\n")
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    import tomllib

    from relaybox.config.passwords import verify_password

    block = tomllib.loads(result.stdout)
    (user,) = block["users"]
    assert user["name"] == "alice"
    assert user["allowed_senders"] == []
    assert user["password_hash"].startswith("$scrypt$")
    assert verify_password("s3cret pass", user["password_hash"])
    assert not verify_password("s3cret pass\n", user["password_hash"])
    # A fresh salt every time: the same password never gives the same hash.
    again = tomllib.loads(cli("passwd", "alice", input="s3cret pass\n").stdout)
    assert again["users"][0]["password_hash"] != user["password_hash"]


@pytest.mark.parametrize(("user", "stdin"), [("alice", "\n"), ("bad name", "pw\n")])
def test_passwd_refuses_an_empty_password_or_a_bad_name(cli: Cli, user: str, stdin: str) -> None:
    result = cli("passwd", user, input=stdin)
    assert result.returncode != 0
    assert "[[users]]" not in result.stdout


def test_swaks_sends_over_starttls_with_auth_as_the_readme_shows(
    tmp_path: Path, cli: Cli, start_relay: StartRelay
) -> None:
    """init's self-signed certificate plus a passwd block: STARTTLS and AUTH work at once."""
    import shutil

    swaks = shutil.which("swaks")
    assert swaks, "swaks is not installed (apt-get install swaks; .ci/run does this)"
    path = tmp_path / "etc" / "relaybox.toml"
    assert cli("init", "--config", path).returncode == 0
    port = free_port()
    users = cli("passwd", "alice", input="office password\n").stdout
    users = users.replace("allowed_senders = []", 'allowed_senders = ["example.org"]')
    text = path.read_text(encoding="utf-8").replace("127.0.0.1:2525", f"127.0.0.1:{port}")
    text = text.replace("[server]\n", f"[server]\nstate_dir = {toml_string(tmp_path / 'st')}\n", 1)
    # Delivery to example.net and the domain checks of example.org must not reach the
    # system's resolver: a dead loopback port answers nothing.
    text = text.replace("[dns]\n", '[dns]\nresolvers = ["127.0.0.1:9"]\n', 1)
    path.write_text(text + "\n" + users, encoding="utf-8")
    assert cli("check-config", path).stdout.splitlines()[-1] == "ok"
    relay = start_relay("--headless", "--config", path, port=port)
    result = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{port}",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "office password",
            "--from",
            "alice@example.org",
            "--to",
            "friend@example.net",
            "--header",
            "From: alice@example.org",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    queue_id = QUEUED.search(result.stdout)
    assert queue_id
    shown = json.loads(cli("show", queue_id.group(1), "--json", "--config", path).stdout)
    assert shown["client"]["auth_user"] == "alice"
    assert shown["client"]["tls"].startswith("TLSv1.")
    assert "office password" not in relay.stderr()
    assert relay.terminate() == 0


# ---------------------------------------------------------------------------- queue actions


class _Deferring:
    """An aiosmtpd handler that answers every RCPT with 451: mail to it stays deferred."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        return "451 4.2.1 mailbox busy, try later"


@pytest.fixture
def deferring_smarthost() -> Iterator[int]:
    """The port of an aiosmtpd server on 127.0.0.1 (in a thread) that defers every recipient."""
    from aiosmtpd.controller import Controller

    controller = Controller(_Deferring(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def write_smarthost_config(tmp_path: Path, port: int, smarthost: int) -> Path:
    """write_config, but mail goes to the loopback smart host on `smarthost` instead of held."""
    path = write_config(tmp_path, port)
    text = path.read_text(encoding="utf-8")
    hold = '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
    assert hold in text
    route = (
        '[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{smarthost}"]\ntls = "none"\n'
    )
    path.write_text(text.replace(hold, route), encoding="utf-8")
    return path


def listing(cli: Cli, config: Path, *extra: str) -> dict[str, dict[str, Any]]:
    """`relaybox queue --json` by queue ID."""
    result = cli("queue", "--json", *extra, "--config", config)
    assert result.returncode == 0, result.stderr
    return {m["queue_id"]: m for m in json.loads(result.stdout)}


def test_queue_actions_go_through_the_running_engine(
    tmp_path: Path, start_relay: StartRelay, cli: Cli, deferring_smarthost: int
) -> None:
    port = free_port()
    config = write_smarthost_config(tmp_path, port, deferring_smarthost)
    relay = start_relay("--headless", "--config", config, port=port)
    org = send_sync(port, subject="org")
    net = send_sync(port, recipient="rcpt@example.net", subject="net")

    def deferred() -> bool:
        return all(m["state"] == "deferred" for m in listing(cli, config).values())

    wait_until(deferred, "both messages to be deferred by the smart host")

    result = cli("queue", "hold", "--domain", "example.net", "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{net}: held\n1 message held\n"
    states = {q: m["state"] for q, m in listing(cli, config).items()}
    assert states == {org: "deferred", net: "held"}

    result = cli("queue", "release", net, "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{net}: released\n1 message released\n"
    # Released, it is due at once: the engine tries it again, and the smart host defers it.
    wait_until(
        lambda: listing(cli, config)[net]["attempts"] == 2,
        "a second attempt after the release",
    )

    result = cli("queue", "bounce", org.lower(), "--reason", "cleanup", "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{org}: bounced\n1 message bounced\n"
    everything = listing(cli, config, "--all")
    assert everything[org]["state"] == "bounced"
    assert "cleanup" in everything[org]["recipients"][0]["last_reply"]
    (dsn,) = [m for q, m in everything.items() if q not in (org, net)]
    assert dsn["sender"] == ""
    assert [r["address"] for r in dsn["recipients"]] == [SENDER]

    result = cli("queue", "delete", net, "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{net}: deleted\n1 message deleted\n"
    assert net not in listing(cli, config, "--all")

    result = cli("queue", "hold", "NOSUCHID00000", "--config", config)
    assert result.returncode == 1
    assert result.stdout == "0 messages held\n"
    assert "NOSUCHID00000: not held" in result.stderr

    # The engine did each of these itself (its log names them), not a second writer.
    log = relay.stderr()
    for action in ("hold", "release", "bounce", "delete"):
        assert re.search(rf"\badmin-{action}\b", log), log
    assert relay.proc.poll() is None


def test_queue_actions_without_a_running_engine_change_the_spool_directly(
    tmp_path: Path, start_relay: StartRelay, cli: Cli
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    relay = start_relay("--headless", "--config", config, port=port)
    first = send_sync(port, subject="first")
    net = send_sync(port, recipient="rcpt@example.net", subject="net")
    kept = send_sync(port, subject="kept")
    assert relay.terminate() == 0
    assert not (tmp_path / "state" / "admin.sock").exists()

    result = cli("queue", "delete", first, "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{first}: deleted\n1 message deleted\n"
    result = cli("queue", "delete", "--domain", "example.net", "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{net}: deleted\n1 message deleted\n"
    assert list(listing(cli, config, "--all")) == [kept]
    # Held by its route or still queued (the engine may not have got to it): bounce takes both.
    result = cli("queue", "bounce", "--recipient", "RCPT@example.org", "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{kept}: bounced\n")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("delete",), "say which messages to delete"),
        (("retry", "--all", "ABC"), "--all"),
        (("hold", "ABC", "--domain", "example.org"), "not both"),
        (("release", "--state", "lost"), "invalid choice"),
        (("retry", "--all", "--recipient", "a@example.org"), "--recipient"),
        (("delete", "ABC", "--recipient", "a@example.org"), "unrecognized arguments"),
    ],
)
def test_queue_action_without_a_clear_selection_is_a_usage_error(
    tmp_path: Path, cli: Cli, args: tuple[str, ...], error: str
) -> None:
    config = write_config(tmp_path, free_port())
    result = cli("queue", *args, "--config", config)
    assert result.returncode == 2
    assert error in result.stderr
    assert result.stdout == ""


def test_show_prints_every_delivery_attempt_with_its_transcript(
    tmp_path: Path, start_relay: StartRelay, cli: Cli, deferring_smarthost: int
) -> None:
    port = free_port()
    config = write_smarthost_config(tmp_path, port, deferring_smarthost)
    start_relay("--headless", "--config", config, port=port)
    queue_id = send_sync(port)

    def attempts(count: int) -> list[dict[str, Any]] | None:
        result = cli("show", queue_id, "--json", "--config", config)
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout)["attempts"]
        return found if len(found) >= count else None

    (attempt,) = wait_until(lambda: attempts(1), "the first delivery attempt")
    assert attempt["destination"] == f"smarthost:127.0.0.1:{deferring_smarthost}"
    assert attempt["outcome"] == "deferred"
    assert attempt["port"] == deferring_smarthost
    assert attempt["recipients"] == [RECIPIENT]
    exchanged = [(line["direction"], line["text"]) for line in attempt["transcript"]]
    assert ("C", f"RCPT TO:<{RECIPIENT}>") in exchanged
    assert ("S", "451 4.2.1 mailbox busy, try later") in exchanged

    result = cli("queue", "retry", queue_id, "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{queue_id}: retried\n1 message retried\n"
    wait_until(lambda: attempts(2), "a second attempt after the retry")

    result = cli("show", queue_id, "--config", config)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    first, second = text.split("\nDelivery attempt 1: ")[1].split("\nDelivery attempt 2: ")
    for part in (first, second):
        assert f"to smarthost:127.0.0.1:{deferring_smarthost}: deferred" in part.splitlines()[0]
        assert f"Host:       127.0.0.1 [127.0.0.1]:{deferring_smarthost}" in part
        assert f"C: RCPT TO:<{RECIPIENT}>" in part
        assert "S: 451 4.2.1 mailbox busy, try later" in part
    # In order: the MAIL of an attempt comes before its RCPT.
    assert first.index("C: MAIL FROM:") < first.index("C: RCPT TO:")


def test_suspend_and_resume_a_destination_from_the_command_line(
    tmp_path: Path, start_relay: StartRelay, cli: Cli, deferring_smarthost: int
) -> None:
    port = free_port()
    config = write_smarthost_config(tmp_path, port, deferring_smarthost)
    start_relay("--headless", "--config", config, port=port)
    destination = f"smarthost:127.0.0.1:{deferring_smarthost}"

    result = cli(
        "queue", "suspend", "example.org", "--for", "2h", "--reason", "upgrade", "--config", config
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"suspended {destination} until ")
    result = cli("queue", "suspended", "--json", "--config", config)
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["destination"] == destination and entry["reason"] == "upgrade"

    queue_id = send_sync(port)
    wait_until(
        lambda: (
            "suspended by the admin: upgrade"
            in (listing(cli, config).get(queue_id, {}).get("last_reply") or "")
        ),
        "the message to be deferred by the suspension",
    )
    result = cli("queue", "resume", "example.org", "--config", config)
    assert result.returncode == 0, result.stderr
    assert cli("queue", "suspended", "--config", config).stdout == ("No destination is suspended\n")
    # Resumed, the mail it deferred goes to the smart host at once (which defers it in turn).
    wait_until(
        lambda: "mailbox busy" in (listing(cli, config)[queue_id]["last_reply"] or ""),
        "an attempt after the resume",
    )
    result = cli("queue", "resume", "example.org", "--config", config)
    assert result.returncode == 1
    assert "was not suspended" in result.stderr
