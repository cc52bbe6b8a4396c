"""A real `relaybox` process for tests where the process boundary matters (signals, crashes,
the state lock, the UI in a terminal, the console script), and the same command run in this
process for the rest: free loopback ports, bounded waits, and fixtures that run relaybox with
its home and XDG folders inside the test's tmp_path."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

RELAYBOX = (sys.executable, "-m", "relaybox")
READY_TIMEOUT = 10.0
"""Seconds a relay has to start listening (and a condition to come true by default)."""
EXIT_TIMEOUT = 10.0
"""Seconds a relay has to exit after SIGTERM."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = READY_TIMEOUT) -> T:
    """Poll `condition` until it returns something true; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Relay:
    """A running `relaybox` process; its output goes to files so it can never block on a pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, stderr_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.stderr_path = stderr_path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        """Poll the port until it accepts a connection; fail if the process exits first."""

        def listening() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"relaybox exited with {self.proc.returncode} before listening on "
                    f"{self.port}:\n{self.stderr()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(listening, f"relaybox to listen on 127.0.0.1:{self.port}")

    def terminate(self, timeout: float = EXIT_TIMEOUT) -> int:
        """SIGTERM, then the exit status (failing the test if it takes longer than `timeout`)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"relaybox did not exit within {timeout} s:\n{self.stderr()}")


RunCli = Callable[..., "subprocess.CompletedProcess[Any]"]
"""`run_cli(*args, **subprocess_options)`: run one relaybox command to completion."""
Cli = Callable[..., "subprocess.CompletedProcess[Any]"]
"""`cli(*args, input=..., text=..., umask=...)`: run one relaybox command in this process."""
StartRelay = Callable[..., Relay]
"""`start_relay(*args, port=PORT, **popen_options)`: a running relay, listening."""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of every relaybox run: home and XDG folders inside tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    environ.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    return environ


@pytest.fixture
def run_cli(tmp_path: Path, env: dict[str, str]) -> RunCli:
    """`run_cli("queue", "--config", path)` runs a relaybox command to completion."""

    def run(*args: object, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        options: dict[str, Any] = {"capture_output": True, "text": True, **kwargs}
        if "input" not in options:
            options["stdin"] = subprocess.DEVNULL
        return subprocess.run(
            [*RELAYBOX, *map(str, args)], env=env, cwd=tmp_path, timeout=timeout, **options
        )

    return run


@pytest.fixture
def cli(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """`cli("queue", "--config", path)`: `relaybox.cli.main.main` run in this process, with the
    environment `run_cli` gives its process; its exit status and output as `run_cli` returns
    them. Many times faster than a process (no interpreter to start, nothing to import)."""
    from relaybox.cli.main import main

    for key in [k for k in os.environ if k.startswith("XDG_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)

    def run(
        *args: object, text: bool = True, umask: int | None = None, **options: Any
    ) -> subprocess.CompletedProcess[Any]:
        """`options` as `run_cli` takes them: `input` is standard input, the rest is ignored."""
        argv = [str(a) for a in args]
        out, err = io.StringIO(), io.StringIO()
        old_umask = os.umask(umask) if umask is not None else None
        try:
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                _stdin(options.get("input", "")),
            ):
                try:
                    code = main(argv)
                except SystemExit as exc:  # argparse: --help, --version, usage errors
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        stdout: Any = out.getvalue() if text else out.getvalue().encode("utf-8")
        stderr: Any = err.getvalue() if text else err.getvalue().encode("utf-8")
        return subprocess.CompletedProcess(["relaybox", *argv], code, stdout, stderr)

    yield run


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    """Standard input as a pipe holding `text` (not a terminal), as `run_cli` gives it."""
    old, sys.stdin = sys.stdin, io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = old


@pytest.fixture
def start_relay(tmp_path: Path, env: dict[str, str]) -> Iterator[StartRelay]:
    """`start_relay(*args, port=...)` starts `relaybox *args` and waits until it listens."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: object, port: int, prefix: tuple[str, ...] = (), **kwargs: Any) -> Relay:
        n = len(started)
        stderr_path = tmp_path / f"relay{n}.stderr"
        with (
            open(tmp_path / f"relay{n}.stdout", "wb") as out,
            open(stderr_path, "wb") as err,
        ):
            proc = subprocess.Popen(
                [*prefix, *RELAYBOX, *map(str, args)],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                **kwargs,
            )
        started.append(proc)
        relay = Relay(proc, port, stderr_path)
        relay.wait_ready()
        return relay

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
