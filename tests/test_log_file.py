"""Where the log goes: a file rotated by size; headless to stderr (journald) or, with `[log]
file`, to that file instead; beside the UI to relaybox.log in the state directory. A file that
cannot be written (a full disk, a folder gone) costs its lines, never the relay, and is said
once: on stderr, on the bus, in the Log pane."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path

from relaybox.config.model import LogConfig
from relaybox.engine import Engine
from relaybox.events import LogFileFailed
from relaybox.maillog import MailLog
from relaybox.statedir import LOG_NAME
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import InProcessLink
from relaybox.tui.run import ui_log

from .relayproc import StartRelay, free_port, wait_until
from .support.configs import make_config, write_config
from .support.engine import RunningEngine
from .support.smtp import send, send_sync
from .support.tui import notes, until

FULL = Path("/dev/full")
"""Every write to it fails with ENOSPC: a full disk, without filling one."""


def _log(tmp_path: Path, **kwargs: object) -> tuple[MailLog, io.StringIO]:
    stream = io.StringIO()
    return MailLog(stream=stream, **kwargs), stream  # type: ignore[arg-type]


def _lines_then_close(log: MailLog, count: int, every: int = 1) -> None:
    """`count` accepted lines (Q0000, Q0001, ...), written out every `every`; then closed."""
    try:
        for n in range(count):
            log.event("accepted", queue_id=f"Q{n:04d}", size=1000)
            if n % every == every - 1:
                log.flush()
        log.flush()
    finally:
        log.close()


def test_the_file_is_rotated_by_size_keeping_so_many_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "relaybox.log"
    log, _ = _log(tmp_path, file=path, max_size=2000, keep=2)
    _lines_then_close(log, 200, every=10)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["relaybox.log", "relaybox.log.1", "relaybox.log.2"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size <= 2000
        assert p.stat().st_mode & 0o777 == 0o600
    newest, older, oldest = (tmp_path / n for n in ("relaybox.log", "relaybox.log.1", names[2]))
    assert "Q0199" in newest.read_text()
    last_of = [f.read_text().splitlines()[-1] for f in (oldest, older)]
    first_of = [f.read_text().splitlines()[0] for f in (older, newest)]
    # Nothing lost or repeated between one file and the next.
    for before, after in zip(last_of, first_of, strict=True):
        assert int(after.split("Q")[1][:4]) == int(before.split("Q")[1][:4]) + 1


def test_without_old_files_to_keep_rotation_starts_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "relaybox.log"
    log, _ = _log(tmp_path, file=path, max_size=1000, keep=0)
    _lines_then_close(log, 100)
    assert [p.name for p in tmp_path.iterdir()] == ["relaybox.log"]
    assert 0 < path.stat().st_size <= 1000 and "Q0099" in path.read_text()


def test_a_full_disk_is_said_once_and_the_log_goes_on(tmp_path: Path) -> None:
    heard: list[str] = []
    log, stream = _log(tmp_path, file=FULL, stream_too=False)
    log.on_problem(heard.append)
    _lines_then_close(log, 50)
    assert len(heard) == 1 and "No space left on device" in heard[0]
    assert "keeps running" in heard[0]
    said = stream.getvalue().splitlines()
    assert len(said) == 1 and "log-file-failed" in said[0] and "/dev/full" in said[0]


def test_a_file_that_cannot_be_opened_is_said_once_then_gets_its_lines_again(
    tmp_path: Path,
) -> None:
    """The folder of the file is missing: said once (even before anyone listened); once it
    is back, the file starts with how many lines it missed."""
    folder = tmp_path / "logs"
    log, stream = _log(tmp_path, file=folder / "relaybox.log", stream_too=False, must_open=False)
    try:
        for n in range(5):
            log.event("accepted", queue_id=f"LOST{n}")
            log.flush()
        heard: list[str] = []
        log.on_problem(heard.append)  # told of what happened before it listened
        assert len(heard) == 1 and "cannot write the log file" in heard[0]
        folder.mkdir()
        log.event("accepted", queue_id="BACK")
        log.flush()
    finally:
        log.close()
    text = (folder / "relaybox.log").read_text()
    first, second = text.splitlines()[:2]
    assert "log-file-resumed" in first and "lines_lost=5" in first
    assert "BACK" in second and "LOST" not in text
    assert len(heard) == 1
    assert stream.getvalue().count("log-file-failed") == 1


def test_headless_with_a_log_file_writes_there_instead_of_stderr(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    """As Postfix's maillog_file replaces syslog: one place to look, not two copies."""
    port = free_port()
    log_file = tmp_path / "relay.log"
    relay = start_relay(
        "--headless", "--config", write_config(tmp_path, port, log_file=log_file), port=port
    )
    queue_id = send_sync(port)
    wait_until(lambda: queue_id in log_file.read_text(), "the message in the log file")
    assert relay.terminate() == 0
    assert queue_id not in relay.stderr()
    assert " started " in log_file.read_text()


def test_headless_without_a_log_file_writes_to_stderr(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    port = free_port()
    relay = start_relay("--headless", "--config", write_config(tmp_path, port), port=port)
    queue_id = send_sync(port)
    wait_until(lambda: queue_id in relay.stderr(), "the message on stderr (journald)")
    assert relay.terminate() == 0
    assert not (tmp_path / "state" / LOG_NAME).exists()


def test_beside_the_ui_the_log_goes_to_the_state_directory_or_the_file_named(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path / "fresh" / "state")  # not made yet: the log makes it
    log = ui_log(config)
    try:
        log.event("started", pid=1)
        log.flush()
    finally:
        log.close()
    assert " started pid=1" in (tmp_path / "fresh" / "state" / LOG_NAME).read_text()
    assert (tmp_path / "fresh" / "state").stat().st_mode & 0o777 == 0o700

    named = tmp_path / "named.log"
    config = dataclasses.replace(
        make_config(tmp_path / "state2"), log=LogConfig(file=named, max_size=500, keep=1)
    )
    log = ui_log(config)
    _lines_then_close(log, 30)
    assert "Q0029" in named.read_text() and (tmp_path / "named.log.1").exists()
    assert not (tmp_path / "state2" / LOG_NAME).exists()


async def test_a_log_file_that_fails_is_shown_once_in_the_log_pane_and_a_notification(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path / "state")
    stream = io.StringIO()
    log = MailLog(stream=stream, file=FULL, stream_too=False)
    engine = Engine(config, log)
    await engine.start()
    run = RunningEngine(engine, stream, log)
    seen = engine.bus.subscribe(types=[LogFileFailed])
    try:
        app = RelayboxApp(InProcessLink(engine))
        async with app.run_test(size=(120, 30)) as pilot:
            for _ in range(3):
                await send(run, "printer@office.example", ["boss@example.org"])
            await until(lambda: seen.drain(), pilot)
            await until(lambda: any("cannot write the log file" in n for n in notes(app)), pilot)
            await pilot.press("4")
            lines = app.log_view.lines
            await until(lambda: any("/dev/full" in t for _, t in lines), pilot)
            await asyncio.sleep(0.3)
            log.flush()
            await pilot.pause(0.3)
            assert len([t for _, t in lines if "cannot write the log file" in t]) == 1
            assert not seen.drain()
    finally:
        await engine.stop()
        log.close()
