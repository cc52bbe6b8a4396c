"""How much transcript text sessions that brought no message may add to the spool in an hour.

A session that brought a message in is stored in full, unasked; the others (strangers refused,
probes, floods of NOOP) are stored as a summary of a few KB, and only while their client's hourly
budget and the relay's lasts: beyond it nothing is stored but a count, which the next stored
session of that client mentions. It decides, and queues what is kept with the spool's next
commit; nothing here waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from relaybox.inbound.auth import client_network
from relaybox.message.transcript import Transcript, TranscriptLine

if TYPE_CHECKING:
    from relaybox.inbound.context import InboundContext

__all__ = ["BUDGET_WINDOW", "Grant", "TranscriptBudget", "keep_transcript"]

BUDGET_WINDOW = 3600.0
"""Seconds a budget lasts before it starts afresh (one hour)."""
MAX_CLIENTS = 10_000
"""Client networks tracked at once; beyond, new ones share one budget (memory stays bounded
however many addresses an attacker has)."""
_OVERFLOW = "*"


class Grant(NamedTuple):
    """The budget's answer for one session."""

    store: bool
    """Store the summary (its size is charged)."""
    unstored_before: int
    """Sessions of this client whose summary was not stored since the last stored one: a
    stored summary says so."""
    first_refusal: bool
    """This is the first session of the client refused in this window: worth one log line."""


@dataclass
class _Window:
    started: float
    used: int = 0
    """Bytes stored in this window."""
    refused: int = 0
    """Sessions not stored in this window."""
    unstored: int = 0
    """Sessions not stored since the last stored one (carried into the next window)."""


class TranscriptBudget:
    """Bytes of summaries stored per client network (IPv4 address, IPv6 /64) and in total,
    per hour. One per engine; used on the event loop only (no locking)."""

    def __init__(self, max_clients: int = MAX_CLIENTS, window: float = BUDGET_WINDOW) -> None:
        self._max_clients = max_clients
        self._window = window
        self._clients: dict[str, _Window] = {}
        """Oldest window first: a window that starts afresh moves to the end."""
        self._total = _Window(started=float("-inf"))

    def take(
        self, client_ip: str, size: int, now: float, *, per_client: int, total: int, room: bool
    ) -> Grant:
        """Whether a summary of `size` bytes from `client_ip` may be stored now.

        Args:
            per_client: bytes one client network may use per window (`[limits]`).
            total: bytes all clients together may use per window.
            room: False when the disk is below its free-space floor: nothing is stored then,
                and nothing charged.
        """
        total_window = self._fresh(self._total, now)
        self._total = total_window
        window = self._client_window(_network(client_ip), now)
        fits = room and window.used + size <= per_client and total_window.used + size <= total
        if not fits:
            window.refused += 1
            window.unstored += 1
            return Grant(False, window.unstored, window.refused == 1)
        window.used += size
        total_window.used += size
        unstored, window.unstored = window.unstored, 0
        return Grant(True, unstored, False)

    def _client_window(self, key: str, now: float) -> _Window:
        window = self._clients.get(key)
        if window is not None:
            fresh = self._fresh(window, now)
            if fresh is not window:  # starts afresh: now the newest
                del self._clients[key]
                self._clients[key] = fresh
            return fresh
        # Windows past their hour are forgotten oldest first (cheap: they lead the dict).
        while self._clients:
            oldest_key = next(iter(self._clients))
            oldest = self._clients[oldest_key]
            if now - oldest.started < self._window:
                break
            del self._clients[oldest_key]
        if len(self._clients) >= self._max_clients:
            key = _OVERFLOW
            if key in self._clients:
                return self._client_window(key, now)
        window = _Window(started=now)
        self._clients[key] = window
        return window

    def _fresh(self, window: _Window, now: float) -> _Window:
        """`window`, or a new one when its hour is over (carrying the count of unstored
        sessions, so the next stored summary still mentions them)."""
        if now - window.started < self._window:
            return window
        return _Window(started=now, unstored=window.unstored)

    def __len__(self) -> int:
        """Client networks tracked (for tests: memory stays bounded)."""
        return len(self._clients)


def keep_transcript(
    ctx: InboundContext,
    transcript: Transcript,
    *,
    started_at: float,
    ended_at: float,
    listener: str,
    client_ip: str,
    brought_message: bool,
    stored_lines: int,
) -> None:
    """Queue for the spool what is kept of a session that ended (nothing is awaited).

    Args:
        brought_message: the session stored a message: its transcript is kept whole.
        stored_lines: lines already stored with its last message (the rest may be just QUIT).
    """
    session_id = transcript.session_id
    lines: Sequence[TranscriptLine]
    if brought_message:
        if stored_lines and _only_goodbye(transcript.lines[stored_lines:]):
            return  # the stored copy has everything but QUIT: spare the disk a write per session
        lines = transcript.lines
    else:
        summary = transcript.summary()
        config = ctx.config()
        free = ctx.free_space_mb()
        room = free is None or free >= config.server.min_free_space_mb
        grant = ctx.transcript_budget.take(
            client_ip,
            sum(len(line.encode().encode("utf-8")) + 1 for line in summary),
            ended_at,
            per_client=config.limits.transcript_budget_per_client,
            total=config.limits.transcript_budget_total,
            room=room,
        )
        if not grant.store:
            if grant.first_refusal:
                ctx.log.warning(
                    "transcript-not-stored",
                    client=client_ip,
                    session=session_id,
                    reason="disk below min_free_space_mb" if not room else "budget spent",
                    note="sessions from this client that bring no message are counted, not "
                    "stored, for the rest of the hour (limits.transcript_budget_per_client, "
                    "limits.transcript_budget_total)",
                )
            return
        if grant.unstored_before:
            summary.append(
                TranscriptLine(
                    ended_at,
                    "-",
                    f"{grant.unstored_before} earlier sessions from this client were not stored"
                    " (transcript budget or low disk space)",
                )
            )
        lines = summary
    ctx.spool.record_session(session_id, started_at, ended_at, listener, client_ip, lines)


def _only_goodbye(lines: Sequence[TranscriptLine]) -> bool:
    """True when a session's last lines are just its farewell (QUIT, 221, the hang-up)."""
    return all(
        (line.direction == "C" and line.text.upper() == "QUIT")
        or (line.direction == "S" and line.text.startswith("221"))
        or (line.direction == "-" and line.text == "disconnect")
        for line in lines
    )


def _network(client_ip: str) -> str:
    try:
        return client_network(client_ip)
    except ValueError:  # not an IP address (a test transport): counted as it is
        return client_ip[:64]
