"""What the live-sessions tests share: a stranger's commands (control characters, a long
argument) and whether the engine builds per-line events for anyone."""

from __future__ import annotations

from relaybox.events import AttemptLine, EventBus, SessionLine

__all__ = ["ESCAPED_EHLO", "LONG_MAIL", "line_subscribers"]

ESCAPED_EHLO = "EHLO evil\x1b[2J\x1b]0;owned\x07.test"
"""An EHLO whose name would clear the screen and retitle the window, were it printed raw."""
LONG_MAIL = "MAIL FROM:<" + "x" * 2000 + "@example.com>"
"""A command with a 2000-character argument (needs `max_command_length` over 2024)."""


def line_subscribers(bus: EventBus) -> bool:
    """Whether anyone takes the per-line events (a watcher's subscription)."""
    return bus.wants(SessionLine) or bus.wants(AttemptLine)
