"""Where the admin socket is: a path bind() and connect() take, however deep the state
directory lies. It opens and serves nothing itself."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["addressable"]

_MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on the BSDs


@contextlib.contextmanager
def addressable(path: Path) -> Iterator[str]:
    """`path` in a form bind() and connect() take.

    A Unix socket address holds about 100 bytes; a longer path is reached through an open
    descriptor of its directory (`/proc/self/fd/N/name`, Linux).
    """
    if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
