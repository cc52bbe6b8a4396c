"""The relay engine: `Engine` (core.py) and how it takes a new config while running (reload.py)."""

from relaybox.engine.core import Engine

__all__ = ["Engine"]
