"""Route passwords, read from their file or environment variable when they are used.

The config names where a smart host's password lives, never the password itself; this module
is the one reader of it, for the config check (the file can be read now) and for delivery (the
password at each login), so that both see the same rules and the same errors.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

from relaybox.config.model import RouteConfig

__all__ = ["read_password_file", "read_route_password"]


_MAX_PASSWORD_FILE = 64 * 1024


def read_password_file(path: Path) -> str:
    """The first line of a password file, without its line ending.

    Raises:
        ValueError: Why the file cannot be used, in words for the admin; never its content.
    """
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ValueError(f"{path} is a folder; name the password file inside it")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not an ordinary file")
        with path.open("rb") as file:
            data = file.read(_MAX_PASSWORD_FILE)
    except FileNotFoundError:
        raise ValueError(
            f"the file {path} does not exist; create it with the password on its first "
            "line, readable by relaybox only (chmod 600)"
        ) from None
    except PermissionError:
        raise ValueError(
            f"{path} cannot be read (permission denied); let the user relaybox runs as read it"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the first line of {path} is not UTF-8 text") from None
    if not password:
        raise ValueError(f"the first line of {path} is empty; put the password on it")
    if any(unicodedata.category(char) == "Cc" for char in password):
        raise ValueError(
            f"the first line of {path} holds a control character, which cannot be sent in SMTP AUTH"
        )
    return password


def read_route_password(route: RouteConfig) -> str | None:
    """The AUTH password of a smart host route, read now from its file or environment variable.

    Read at each use rather than kept in the config, so that a changed password file takes
    effect without a reload and the password never sits in a logged or compared object.

    Returns:
        The password, or None when the route does not log in (no username).

    Raises:
        ValueError: The password cannot be read any more (file gone, variable unset); the
            message says why and never contains the password.
    """
    if route.username is None:
        return None
    if route.password_file is not None:
        return read_password_file(route.password_file)
    if route.password_env is not None:
        password = os.environ.get(route.password_env)
        if not password:
            raise ValueError(f"the environment variable {route.password_env} is not set or empty")
        return password
    raise ValueError("the route has a username but neither password_file nor password_env")
