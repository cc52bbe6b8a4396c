"""Session transcripts: secrets never kept, memory bounded, lines mirrored only to listeners."""

from __future__ import annotations

from relaybox.events import EventBus, SessionLine
from relaybox.message.transcript import (
    MAX_KEPT_CHARS,
    MAX_LINE_CHARS,
    MAX_LINES,
    SUMMARY_HEAD,
    SUMMARY_LINE_BYTES,
    SUMMARY_TAIL,
    Transcript,
    redact_command,
)
from relaybox.queue.schema import encode_transcript


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def texts(transcript: Transcript) -> list[tuple[str, str]]:
    return [(line.direction, line.text) for line in transcript.lines]


def test_auth_plain_initial_response_is_replaced_by_secret() -> None:
    transcript = Transcript("S1")

    transcript.client("AUTH PLAIN AGFsaWNlAHMzY3IzdA==")

    assert texts(transcript) == [("C", "AUTH PLAIN <secret>")]


def test_auth_command_case_is_kept_and_secret_still_removed() -> None:
    assert redact_command("auth login YWxpY2U=") == "auth login <secret>"


def test_auth_without_initial_response_is_kept() -> None:
    assert redact_command("AUTH LOGIN") == "AUTH LOGIN"


def test_other_commands_are_kept_verbatim() -> None:
    assert redact_command("MAIL FROM:<a@example.com> SIZE=100") == (
        "MAIL FROM:<a@example.com> SIZE=100"
    )


def test_expect_secret_hides_the_next_client_line_only() -> None:
    transcript = Transcript("S1")
    transcript.client("AUTH LOGIN")
    transcript.server("334 VXNlcm5hbWU6")
    transcript.expect_secret = True

    transcript.client("YWxpY2U=")
    transcript.client("QUIT")

    assert texts(transcript) == [
        ("C", "AUTH LOGIN"),
        ("S", "334 VXNlcm5hbWU6"),
        ("C", "<secret>"),
        ("C", "QUIT"),
    ]
    assert transcript.expect_secret is False


def test_long_lines_are_truncated_with_their_length() -> None:
    transcript = Transcript("S1")

    transcript.client("HELO " + "x" * 5000)

    [(_, text)] = texts(transcript)
    assert text.startswith("HELO xxx")
    assert text.endswith("... (5005 characters)")
    assert len(text) < MAX_LINE_CHARS + 30


def test_lines_beyond_max_lines_are_counted_not_kept() -> None:
    transcript = Transcript("S1")

    for n in range(MAX_LINES + 25):
        transcript.client(f"NOOP {n}")

    assert len(transcript.lines) == MAX_LINES
    assert transcript.lines[-1].text == f"NOOP {MAX_LINES - 1}"
    assert transcript.truncated == 25


def test_long_lines_are_kept_up_to_a_total_then_counted() -> None:
    """A session's memory is bounded in characters too, not only in lines: 2,000 lines of
    1,000 characters would be 2 MB a connection."""
    transcript = Transcript("S1")

    for _ in range(MAX_LINES):
        transcript.client("NOOP " + "x" * 995)

    kept = sum(len(line.text) for line in transcript.lines)
    assert MAX_KEPT_CHARS <= kept < MAX_KEPT_CHARS + MAX_LINE_CHARS + 30
    assert transcript.truncated == MAX_LINES - len(transcript.lines)
    assert transcript.tail[-1].text.startswith("NOOP xxx")  # the end is still known


def test_lines_carry_the_clock_time_and_direction() -> None:
    transcript = Transcript("S1", clock=Clock())

    transcript.note("connect from [192.0.2.1]:40000")
    transcript.server("220 relay.example.test ESMTP")

    assert [(line.at, line.direction) for line in transcript.lines] == [
        (1_800_000_000.25, "-"),
        (1_800_000_000.5, "S"),
    ]


def test_lines_are_published_to_subscribers_secrets_removed() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    transcript = Transcript("S1", bus, clock=Clock())

    transcript.client("AUTH PLAIN AGFsaWNlAHMzY3IzdA==")
    transcript.server("235 2.7.0 Authentication successful")

    assert sub.drain() == [
        SessionLine("S1", "C", "AUTH PLAIN <secret>", at=1_800_000_000.25),
        SessionLine("S1", "S", "235 2.7.0 Authentication successful", at=1_800_000_000.5),
    ]


def test_nothing_is_published_without_subscribers() -> None:
    bus = EventBus()
    transcript = Transcript("S1", bus)
    transcript.client("EHLO early.example")  # nobody listening yet

    sub = bus.subscribe()
    transcript.client("QUIT")

    assert [e.text for e in sub.drain()] == ["QUIT"]  # type: ignore[attr-defined]
    assert len(transcript.lines) == 2


def test_a_line_that_was_not_utf8_is_kept_as_storable_text() -> None:
    """Bytes that are not UTF-8 arrive as lone surrogates; stored as they are, they would make
    every later message of the session fail to store (451 for ever)."""
    transcript = Transcript("S1", clock=lambda: 0.0)
    transcript.client("EHLO caf\udce9.example")
    (line,) = transcript.lines
    assert line.text == "EHLO caf\\xe9.example"
    line.text.encode("utf-8")  # storable


def flooded(noops: int) -> Transcript:
    """A stranger's session: refused once, then `noops` NOOPs of 500 characters, then 421."""
    transcript = Transcript("S1", clock=Clock())
    transcript.note("connect from [192.0.2.9]:40000")
    transcript.server("220 relay.example.test ESMTP relaybox")
    transcript.client("EHLO stranger.example")
    transcript.server("250 relay.example.test")
    for n in range(noops):
        transcript.client("NOOP " + "x" * 500)
        transcript.server("250 OK")
        if n == 20:
            transcript.client("RCPT TO:<victim@example.org>")
            transcript.server("554 5.7.1 <victim@example.org>: Relay access denied")
    transcript.server("421 4.7.0 relay.example.test closing: too many errors")
    transcript.note("disconnect")
    return transcript


def test_summary_of_a_short_session_is_all_of_it_long_lines_clipped() -> None:
    transcript = flooded(2)

    summary = transcript.summary()

    assert [line.at for line in summary] == [line.at for line in transcript.lines]
    assert summary[4].text == "NOOP " + "x" * (SUMMARY_LINE_BYTES - 5) + "... (505 characters)"


def test_summary_of_a_flood_is_a_few_kb_with_its_start_end_and_counts() -> None:
    """20,000 NOOPs of 500 characters (20 MB said) are kept as a few KB that still say who
    connected, what they sent most, why they were refused and how the session ended."""
    transcript = flooded(10_000)

    summary = transcript.summary()
    text = encode_transcript(summary)

    assert len(text.encode("utf-8")) < 8 * 1024
    assert summary[:SUMMARY_HEAD] == [
        line._replace(text=line.text[:SUMMARY_LINE_BYTES] + "... (505 characters)")
        if len(line.text) > SUMMARY_LINE_BYTES
        else line
        for line in transcript.lines[:SUMMARY_HEAD]
    ]
    assert summary[-1].text == "disconnect"
    assert summary[-2].text.startswith("421 4.7.0")
    [counts] = [line.text for line in summary if "lines omitted" in line.text]
    assert f"{transcript.total - SUMMARY_HEAD - SUMMARY_TAIL} lines omitted" in counts
    assert "NOOP ×10000" in counts and "RCPT ×1" in counts
    assert "554 5.7.1 ×1" in counts and "421 4.7.0 ×1" in counts
    # The refusal fell in the omitted middle: its command and reply are shown anyway.
    texts_kept = [line.text for line in summary]
    assert "RCPT TO:<victim@example.org>" in texts_kept
    assert "554 5.7.1 <victim@example.org>: Relay access denied" in texts_kept


def test_summary_lines_are_clipped_as_utf8_and_say_their_length() -> None:
    transcript = Transcript("S1")
    for _ in range(SUMMARY_HEAD + SUMMARY_TAIL + 1):
        transcript.client("HELO " + "é" * 3000)

    for line in transcript.summary():
        if line.direction == "C":
            assert len(line.text.encode("utf-8")) <= SUMMARY_LINE_BYTES + 30
            # Cut once at MAX_LINE_CHARS already: the note gives the length the client sent.
            assert line.text.endswith("... (3005 characters)")


def test_junk_verbs_do_not_grow_the_counters() -> None:
    transcript = Transcript("S1")
    for n in range(5000):
        transcript.client(f"X{n} junk")
        transcript.server("500 Error: command not recognized")

    assert set(transcript.commands) == {"other"}
    assert transcript.errors == {"500": 5000}
    assert len(transcript.tail) == SUMMARY_TAIL
