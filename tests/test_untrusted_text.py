"""Strangers' text never drives the admin's terminal, and an admin's free text never breaks a
reply: escape sequences sent over SMTP come out of `relaybox show` and `relaybox queue` as
visible escapes, and reasons with control characters are refused by the admin layer whoever
asks (the CLI with and without an engine, the socket), with the field named.
"""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from relaybox.admin.service import MAX_REASON_CHARS, reason_problem
from relaybox.maillog import MailLog
from relaybox.untrusted import UNSAFE, first_unsafe, one_line, visible

from .relayproc import Cli, StartRelay, free_port
from .support.configs import write_config
from .support.smtp import QUEUED, SMTPClient
from .support.spool import new_message, store_offline

ESC_TITLE = "\x1b]0;pwned\x07"
"""OSC 0: sets the terminal window's title (ended by BEL)."""
ESC_CLEAR = "\x1b[2J"
"""CSI 2 J: clears the screen."""
C1_CSI = "\x9b2J"
"""The same as one 8-bit C1 character (U+009B), which some terminals honour."""


def unsafe_in(text: str) -> list[str]:
    """The characters of `text` that must never reach a terminal (newlines end lines here)."""
    return sorted({c for line in text.splitlines() for c in line if ord(c) in UNSAFE})


# ---------------------------------------------------------------------- the function


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        (ESC_TITLE + ESC_CLEAR, "\\x1b]0;pwned\\x07\\x1b[2J"),
        ("a\r\nb\tc\x00d\x7f", "a\\r\\nb\\tc\\x00d\\x7f"),
        (C1_CSI, "\\x9b2J"),
        ("caf\xe9 \u00e9t\u00e9", "caf\xe9 \u00e9t\u00e9"),  # letters are letters
        ("bad\udcffbyte", "bad\\xffbyte"),  # a byte that was not UTF-8 (surrogateescape)
        ("lone\ud800", "lone\\ud800"),
        ("evil\u202etset.", "evil\\u202etset."),  # a right-to-left override
        ("line\u2028sep", "line\\u2028sep"),
    ],
)
def test_visible_shows_every_control_character_as_an_escape(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert not unsafe_in(visible(raw))
    assert visible(raw).encode("utf-8")  # nothing left that UTF-8 cannot write


def test_first_unsafe_and_one_line() -> None:
    assert first_unsafe("fine, thanks") is None
    assert first_unsafe("no\rway") == "\r"
    assert first_unsafe("tab\there") == "\t"
    assert one_line("bad\r\n250 2.1.5 Ok") == "bad 250 2.1.5 Ok"
    assert one_line("x" * 300, 200) == "x" * 197 + "..."
    assert one_line(ESC_CLEAR) == "\\x1b[2J"


# ---------------------------------------------------------------------- show and queue


def hostile_session(port: int) -> str:
    """A session that puts escape sequences where the input path still lets them through (a
    junk command line, an SMTPUTF8 sender, header fields); returns the message's queue ID."""
    junk = f"NOOP {ESC_TITLE}{ESC_CLEAR}"
    # The address parser refuses C0, C1 and invisible characters such as a right-to-left
    # override in a user name (553); a sender an older relaybox stored is tested below.
    hostile_sender = "a\u202eb@example.org"
    header = (
        f"From: a@example.org\r\nTo: b@example.org\r\n"
        f"Subject: hi{ESC_TITLE}{ESC_CLEAR}{C1_CSI}\x7f\r\n"
        f"X-Folded: first\r\n\tsecond{ESC_CLEAR}\r\n\r\nbody\r\n.\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")

        def cmd(line: str) -> str:
            stream.write(line.encode("utf-8") + b"\r\n")
            stream.flush()
            while True:
                reply = stream.readline().decode("utf-8", "replace")
                if reply[3:4] != "-":
                    return reply

        assert stream.readline().startswith(b"220")
        assert cmd("EHLO client.example.test").startswith("250")
        cmd(junk)
        assert cmd(f"MAIL FROM:<{hostile_sender}> SMTPUTF8").startswith("553")
        assert cmd("MAIL FROM:<ä@example.org> SMTPUTF8").startswith("250")
        assert cmd("RCPT TO:<b@example.org>").startswith("250")
        assert cmd("DATA").startswith("354")
        reply = cmd(header.removesuffix("\r\n"))
        cmd("QUIT")
    found = QUEUED.search(reply)
    assert found, reply
    return found.group(1)


def test_show_and_queue_print_escape_sequences_from_a_session_as_visible_text(
    tmp_path: Path, start_relay: StartRelay, cli: Cli
) -> None:
    """The ESC ] 0 ; ... BEL and ESC [ 2 J a stranger sent never reach the admin's terminal:
    `relaybox show` prints them as `\\x1b]0;pwned\\x07\\x1b[2J`, as does `relaybox queue`."""
    port = free_port()
    config = write_config(tmp_path, port)
    start_relay("--headless", "--config", config, port=port)
    queue_id = hostile_session(port)

    shown = cli("show", queue_id, "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert unsafe_in(shown.stdout) == []
    assert "\x1b" not in shown.stdout and "\x9b" not in shown.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in shown.stdout  # the transcript's NOOP line
    assert "Subject: hi\\x1b]0;pwned\\x07\\x1b[2J\\x9b2J\\x7f" in shown.stdout
    assert "second\\x1b[2J" in shown.stdout  # the fold of a folded header

    # JSON keeps the text exactly, escaped as JSON escapes it.
    as_json = cli("show", queue_id, "--json", "--config", config)
    assert as_json.returncode == 0, as_json.stderr
    assert "\x1b" not in as_json.stdout
    headers = json.loads(as_json.stdout)["headers"]
    assert any("\x1b]0;pwned" in value for _, value in headers)


def test_queue_prints_a_stored_sender_with_an_invisible_character_as_visible_text(
    tmp_path: Path, cli: Cli
) -> None:
    """A spool may hold what an older relaybox accepted (a right-to-left override in a user
    name shows an address backwards): `relaybox queue` and `show` print it escaped."""
    state_dir = tmp_path / "state"
    config = write_config(tmp_path, free_port(), state_dir=state_dir)
    (queue_id,) = store_offline(state_dir, new_message(sender="a\u202eb@example.org"))
    for command in (["queue"], ["show", queue_id]):
        result = cli(*command, "--config", config)
        assert result.returncode == 0, result.stderr
        assert unsafe_in(result.stdout) == []
        assert "a\\u202eb@example.org" in result.stdout


# ---------------------------------------------------------------------- admins' reasons


BAD_REASONS = ["bad\r\n250 2.1.5 Ok", "nul\x00", "esc" + ESC_CLEAR, "c1" + C1_CSI, "del\x7f"]


@pytest.mark.parametrize("reason", [*BAD_REASONS, "x" * (MAX_REASON_CHARS + 1)])
def test_reason_problem_names_the_field(reason: str) -> None:
    problem = reason_problem("reason", reason)
    assert problem is not None and problem.startswith("reason ")
    assert first_unsafe(problem) is None  # the refusal itself is safe to print


def test_a_plain_reason_is_fine() -> None:
    assert reason_problem("reason", "mailbox closed, ticket #4411 (Zoë)") is None
    assert reason_problem("reason", "x" * MAX_REASON_CHARS) is None


@pytest.mark.parametrize("engine", [False, True], ids=["offline", "through-the-engine"])
def test_reasons_with_control_characters_are_refused_by_every_command(
    tmp_path: Path, start_relay: StartRelay, cli: Cli, engine: bool
) -> None:
    """`suppress add`, `queue bounce` and `queue suspend` refuse a CR LF (or any control
    character) in --reason with exit 1 and a message naming the field, and change nothing."""
    port = free_port()
    config = write_config(tmp_path, port)
    if engine:
        start_relay("--headless", "--config", config, port=port)
    for reason in BAD_REASONS:
        commands = [
            ("suppress", "add", "x@example.org", "--reason", reason),
            ("queue", "bounce", "--all", "--reason", reason),
            ("queue", "suspend", "example.org", "--reason", reason),
        ]
        for command in commands:
            result = cli(*command, "--config", config)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert "reason may not contain control characters" in result.stderr, result.stderr
            assert unsafe_in(result.stderr) == []
    long = cli("suppress", "add", "x@example.org", "--reason", "y" * 201, "--config", config)
    assert long.returncode == 1 and "reason is 201 characters long" in long.stderr
    listed = cli("suppress", "list", "--config", config)
    assert "x@example.org" not in listed.stdout
    assert "No destination is suspended" in cli("queue", "suspended", "--config", config).stdout


async def test_a_suppressed_recipients_reply_is_one_line_whatever_reason_is_stored(
    start_engine,
) -> None:
    """A reason stored with CR LF (written before reasons were checked, or by a next hop's
    reply) still gives one 550 line at RCPT: the client stays in step."""
    run = await start_engine()
    await run.engine.spool.suppression_add("x@example.org", "bad\r\n250 2.1.5 Ok\x1b[2J", None)
    await run.engine.refresh_suppression()
    client = await SMTPClient.connect(*run.address())
    try:
        await client.greet()
        assert (await client.cmd("MAIL FROM:<a@example.com>"))[0] == 250
        code, text = await client.cmd("RCPT TO:<x@example.org>")
        assert code == 550 and "\n" not in text, text
        assert "bad 250 2.1.5 Ok\\x1b[2J" in text
        assert await client.cmd("NOOP") == (250, "OK")  # the next reply is NOOP's
    finally:
        await client.close()


# ---------------------------------------------------------------------- the mail log


class _Utf8Stream(io.TextIOWrapper):
    """A terminal's stderr: UTF-8, strict (a lone surrogate cannot be written)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="strict")

    def text(self) -> str:
        self.flush()
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode("utf-8")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_log_writes_strangers_text_visible_and_loses_no_line_over_it(fmt: str) -> None:
    """A HELO with DEL, a C1 CSI, a bidi override and a byte that was not UTF-8 is logged as
    escapes (the JSON line still gives the text back), and the lines logged with it are
    written too."""
    hostile = f"pc\x7f{C1_CSI}\u202e\udcff{ESC_CLEAR}"
    stream = _Utf8Stream()
    log = MailLog(fmt=fmt, stream=stream)
    try:
        log.event("connect", helo=hostile)
        log.event("after", n=1)
        log.flush()
    finally:
        log.close()
    lines = stream.text().splitlines()
    assert len(lines) == 2, lines
    assert [unsafe_in(line) for line in lines] == [[], []]
    if fmt == "json":
        assert json.loads(lines[0])["helo"] == hostile
    else:
        assert 'helo="pc\\u007f\\u009b2J\\u202e\\udcff\\u001b[2J"' in lines[0]
