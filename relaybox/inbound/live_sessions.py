"""What the admin's live view reads of the inbound sessions open now: a count of the bytes each
connection received, and a snapshot of a session made only when asked for.

Nothing here runs per command: the snapshot reads what the session keeps anyway (its
transcript's last command, its TLS and AUTH state). The protocol is `inbound.server`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from relaybox.message.transcript import Transcript, TranscriptLine, shortened

if TYPE_CHECKING:
    from relaybox.inbound.server import InboundSMTP

__all__ = ["COMMAND_CHARS", "ByteCount", "backlog", "describe"]

COMMAND_CHARS = 200
"""UTF-8 bytes of a session's last command a snapshot carries, then a note of its length (the
transcript keeps up to 1000 characters; a snapshot of a few hundred sessions stays small)."""


class ByteCount(asyncio.StreamReaderProtocol):
    """Counts the bytes a connection received (after TLS: what the session read), one
    addition per chunk the transport hands over, never per command."""

    bytes_received = 0

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        super().data_received(data)


def describe(session: InboundSMTP) -> dict[str, Any]:
    """One open session as the `sessions` operation reports it (JSON-ready, text as the
    client sent it: a reader shows it through `relaybox.untrusted`)."""
    command = shortened(session.transcript.last_command, COMMAND_CHARS)
    helo = session.session.host_name if session.session is not None else None
    return {
        "session_id": session.session_id,
        "listener": session.listener.name,
        "client_ip": session.client_ip,
        "client_port": session.client_port,
        "started_at": session.started_at,
        "tls": session.tls,
        "auth_user": session.auth_user.name if session.auth_user is not None else None,
        "helo": helo or None,
        "command": command,
        "bytes_received": session.bytes_received,
        "messages": session.messages,
    }


def backlog(transcript: Transcript) -> list[TranscriptLine]:
    """The session's lines so far, as a watcher joining now first sees them: those kept, and
    when some were not (a flood past the transcript's bounds), a note and the latest few."""
    lines = list(transcript.lines)
    if transcript.truncated:
        last = transcript.tail[-1]
        lines.append(
            TranscriptLine(last.at, "-", f"... {transcript.truncated} lines not kept; the latest:")
        )
        kept = {id(line) for line in transcript.lines[-len(transcript.tail) :]}
        lines.extend(line for line in transcript.tail if id(line) not in kept)
    return lines
