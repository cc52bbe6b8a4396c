"""Edit a relaybox config file's text as an admin would by hand: one key, one table, one
comment block at a time, every other byte left as it was.

Used by the terminal UI's Config pane and by apply and rollback; it knows the file's shape
(`[[routes]]`, `[[listeners]]`, `[[users]]`, `[[dkim]]`, single tables such as `[limits]`)
but not what the values mean: `config.load` validates the text this produces.

How edits keep the file:

- Changing keys of one table re-renders only that table through tomlkit: a changed value
  rewrites its own line (keeping an inline comment after it), a new key is added as a line
  at the end of that table, a removed key loses its line.
- Adding, deleting and moving a `[[name]]` table cuts and splices whole lines
  (`config.layout` says which lines belong to which table): the comment block written above
  a table travels with it, the blank lines between tables stay where they were.
- After every edit the new text is parsed again and compared with the data the edit should
  give; if the file is laid out in a way the line surgery does not expect (an array of
  inline tables, say), the edit is made by tomlkit on the whole document instead, which may
  reformat that array but never changes its meaning.

Two defaults of the embedded config matter when an array is empty. A file without
`[[routes]]` sends every domain to its MX hosts (`DEFAULT_ROUTE`): adding the first route
therefore also writes that default route after it, so mail for every other domain keeps
going where it went (unless the new route already takes every domain from every sender).
A file without `[[listeners]]` listens on 127.0.0.1:2525 for this machine's programs
(`DEFAULT_LISTENER`): adding the first listener writes that one before it, unless the new
listener uses port 2525 itself. Deleting the last route (or listener) brings the embedded
default back, as the file then has none.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Array, Item, Table

from relaybox.config.layout import Layout, scan_layout
from relaybox.config.load import _syntax_message
from relaybox.config.model import DEFAULT_LISTENER, DEFAULT_ROUTE, HostPort, SocketAddress
from relaybox.config.passwords import hash_password
from relaybox.config.problems import ConfigError, Problem

__all__ = ["ConfigDocument", "EditError"]

_KEY_ORDER: dict[str, tuple[str, ...]] = {
    "routes": (
        "domains",
        "sender_domains",
        "transport",
        "hosts",
        "round_robin",
        "tls",
        "ca_file",
        "username",
        "password_file",
        "password_env",
        "reject_text",
        "max_messages_per_minute",
        "max_connections",
        "rewrite_senders",
    ),
    "listeners": (
        "listen",
        "role",
        "tls",
        "certificate",
        "private_key",
        "allowed_networks",
        "bare_lf",
        "greet_pause",
        "allow_ip_literals",
    ),
    "users": ("name", "password_hash", "allowed_senders", "max_messages_per_minute"),
    "dkim": ("domain", "selector", "private_key", "algorithm"),
}
"""The order keys are written in a new table: the order sample-config.toml documents them."""

_ONE_LINE_WIDTH = 88
"""An array whose one-line form would make its line longer than this is written one item
per line, as an admin would wrap it."""

_DEFAULT_ROUTE_COMMENT = (
    "# Every other domain: straight to its own mail servers, as before the rules above\n"
    "# were added (the route of a file without [[routes]]). Keep it last.\n"
)
_DEFAULT_LISTENER_COMMENT = (
    "# Programs on this machine, on port 2525 (the listener of a file without\n"
    "# [[listeners]], kept when the listener below was added).\n"
)


class EditError(ValueError):
    """An edit that cannot be made: no such entry, a user name taken, a value TOML cannot
    hold. The document is unchanged."""


class ConfigDocument:
    """A config file's text and the edits the Config pane makes to it.

    Every method that changes something leaves the text valid TOML (or raises `EditError`
    and changes nothing); whether the result is a valid relaybox config is for
    `config.load` to say. Indexes count the `[[name]]` tables in file order from 0.
    """

    def __init__(self, text: str, data: dict[str, Any], file: str) -> None:
        self._text = text
        self._data = data
        self.file = file
        """How problems name the file."""

    @classmethod
    def from_text(cls, text: str, file: str = "relaybox.toml") -> ConfigDocument:
        """Parse `text` for editing.

        Raises:
            ConfigError: The text is not TOML; its one problem has the line.
        """
        return cls(text, _parse(text, file), file)

    def text(self) -> str:
        """The file's text with every edit made so far; the rest byte for byte as read."""
        return self._text

    # --- arrays of tables ------------------------------------------------------------------

    def routes(self) -> list[dict[str, Any]]:
        """The `[[routes]]` in file order; [] when the file has none (then the embedded
        default route, every domain to its MX hosts, applies)."""
        return self._entries("routes")

    def add_route(self, values: Mapping[str, Any], index: int | None = None) -> None:
        """Insert a route before the route at `index` (None: after the last one).

        In a file without routes, the embedded default route is written after it too (see
        the module docstring), unless this route takes every domain from every sender.
        """
        tables = [("", values)]
        if not self._entries("routes") and not _catches_all(values):
            tables.append((_DEFAULT_ROUTE_COMMENT, _default_route()))
        self._add("routes", tables, index)

    def update_route(self, index: int, values: Mapping[str, Any]) -> None:
        """Set keys of one route; a value None removes that key."""
        self._update("routes", index, values)

    def delete_route(self, index: int) -> None:
        """Remove one route with the comment block above it."""
        self._delete("routes", index)

    def move_route(self, index: int, to: int) -> None:
        """Move one route, with the comment block above it, to position `to` (0 is first)."""
        self._move("routes", index, to)

    def listeners(self) -> list[dict[str, Any]]:
        """The `[[listeners]]` in file order; [] when the file has none."""
        return self._entries("listeners")

    def add_listener(self, values: Mapping[str, Any], index: int | None = None) -> None:
        """Insert a listener (None: after the last one). The first listener of a file also
        writes the embedded default listener, unless it uses port 2525 itself."""
        tables = [("", values)]
        if not self._entries("listeners") and not _uses_default_port(values):
            tables.insert(0, (_DEFAULT_LISTENER_COMMENT, _default_listener()))
        self._add("listeners", tables, index)

    def update_listener(self, index: int, values: Mapping[str, Any]) -> None:
        """Set keys of one listener; a value None removes that key."""
        self._update("listeners", index, values)

    def delete_listener(self, index: int) -> None:
        """Remove one listener with the comment block above it."""
        self._delete("listeners", index)

    def set_networks(self, listener_index: int, networks: Sequence[str]) -> None:
        """Replace the allowed_networks of one listener (written even when empty)."""
        self._update("listeners", listener_index, {"allowed_networks": list(networks)})

    def users(self) -> list[dict[str, Any]]:
        """The `[[users]]` in file order, password hashes included: mask them when shown."""
        return self._entries("users")

    def add_user(self, name: str, password: str, allowed_senders: Sequence[str] = ()) -> None:
        """Add a user after the last one; only the scrypt hash of `password` is written.

        Hashing takes a fraction of a second of CPU by design: call this off the UI loop.

        Raises:
            EditError: A user of that name exists (names are case-sensitive).
        """
        if self._find_user(name) is not None:
            raise EditError(f"there is already a user named {name!r}")
        values: dict[str, Any] = {"name": name, "password_hash": hash_password(password)}
        if allowed_senders:
            values["allowed_senders"] = list(allowed_senders)
        self._add("users", [("", values)], None)

    def delete_user(self, name: str) -> None:
        """Remove the user of that name with the comment block above it."""
        self._delete("users", self._user_index(name))

    def set_allowed_senders(self, name: str, senders: Sequence[str]) -> None:
        """Replace the allowed_senders of a user; an empty list removes the key when the
        user had none written, else writes `[]`."""
        index = self._user_index(name)
        if not senders and "allowed_senders" not in self._entries("users")[index]:
            return
        self._update("users", index, {"allowed_senders": list(senders)})

    def dkim_entries(self) -> list[dict[str, Any]]:
        """The `[[dkim]]` in file order."""
        return self._entries("dkim")

    def add_dkim(self, values: Mapping[str, Any]) -> None:
        """Add a DKIM key (domain, selector, private_key, algorithm) after the last one."""
        self._add("dkim", [("", values)], None)

    def update_dkim(self, index: int, values: Mapping[str, Any]) -> None:
        """Set keys of one DKIM entry; a value None removes that key."""
        self._update("dkim", index, values)

    def delete_dkim(self, index: int) -> None:
        """Remove one DKIM entry with the comment block above it."""
        self._delete("dkim", index)

    # --- single tables ---------------------------------------------------------------------

    def table(self, name: str) -> dict[str, Any]:
        """A single table such as `limits` as written ({} when the file has none): only the
        keys the file sets, the rest take their defaults."""
        value = self._data.get(name, {})
        return dict(value) if isinstance(value, dict) else {}

    def set_value(self, table: str, key: str, value: Any) -> None:
        """Set one key of a single table (`limits`, `delivery`, ...); None removes it.

        The table is added at the end of the file when it is not written yet.
        """
        expected = _copy(self._data)
        section = expected.setdefault(table, {})
        if not isinstance(section, dict):
            raise EditError(f"{table} is not a table in this file")
        if value is None:
            if key not in section:
                return
            del section[key]
        else:
            section[key] = _plain(value)

        def surgery(layout: Layout) -> str | None:
            unit = layout.table(table)
            if unit is None:
                if value is None:
                    return None
                return _append(layout, _render_table(table, {key: value}, array=False))
            return _edit_lines(layout, unit.header, unit.end, table, False, {key: value})

        def whole(document: tomlkit.TOMLDocument) -> None:
            if table not in document:
                document[table] = tomlkit.table()
            target = document[table]
            if value is None:
                del target[key]
            else:
                target[key] = _value_item(value)

        self._commit(expected, surgery, whole)

    # --- the machinery ---------------------------------------------------------------------

    def _entries(self, name: str) -> list[dict[str, Any]]:
        value = self._data.get(name, [])
        if not isinstance(value, list):
            return []
        return [_copy(entry) for entry in value if isinstance(entry, dict)]

    def _checked_index(self, name: str, index: int, *, insert: bool = False) -> int:
        count = len(self._entries(name))
        limit = count + 1 if insert else count
        if not 0 <= index < limit:
            raise EditError(f"there is no [[{name}]] number {index} (the file has {count})")
        return index

    def _find_user(self, name: str) -> int | None:
        for index, user in enumerate(self._entries("users")):
            if user.get("name") == name:
                return index
        return None

    def _user_index(self, name: str) -> int:
        index = self._find_user(name)
        if index is None:
            raise EditError(f"there is no user named {name!r}")
        return index

    def _add(
        self, name: str, tables: Sequence[tuple[str, Mapping[str, Any]]], index: int | None
    ) -> None:
        """Insert `[[name]]` tables, each `(comment above it, its keys)`, at `index`."""
        entries = self._entries(name)
        position = len(entries) if index is None else self._checked_index(name, index, insert=True)
        expected = _copy(self._data)
        added = [_plain(values) for _, values in tables]
        expected[name] = [*entries[:position], *added, *entries[position:]]
        chunk = "\n".join(
            comment + _render_table(name, values, array=True) for comment, values in tables
        )

        def surgery(layout: Layout) -> str | None:
            found = layout.entries(name)
            if len(found) != len(entries):
                return None
            if not found:
                return _append(layout, chunk)
            lines = _terminated(layout.lines)
            if position == len(found):
                cut = found[-1].unit.end + 1
                return "".join(lines[:cut]) + "\n" + chunk + "".join(lines[cut:])
            cut = found[position].start
            return "".join(lines[:cut]) + chunk + "\n" + "".join(lines[cut:])

        def whole(document: tomlkit.TOMLDocument) -> None:
            document[name] = _aot(name, expected[name])

        self._commit(expected, surgery, whole)

    def _update(self, name: str, index: int, values: Mapping[str, Any]) -> None:
        entries = self._entries(name)
        self._checked_index(name, index)
        expected = _copy(self._data)
        entry = _copy(entries[index])
        for key, value in values.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = _plain(value)
        if entry == entries[index]:
            return
        expected[name] = [*entries[:index], entry, *entries[index + 1 :]]

        def surgery(layout: Layout) -> str | None:
            found = layout.entries(name)
            if len(found) != len(entries):
                return None
            unit = found[index].unit
            return _edit_lines(layout, unit.header, unit.end, name, True, values)

        def whole(document: tomlkit.TOMLDocument) -> None:
            target = document[name][index]
            for key, value in values.items():
                if value is None:
                    if key in target:
                        del target[key]
                else:
                    target[key] = _value_item(value, target.get(key))

        self._commit(expected, surgery, whole)

    def _delete(self, name: str, index: int) -> None:
        entries = self._entries(name)
        self._checked_index(name, index)
        expected = _copy(self._data)
        remaining = [*entries[:index], *entries[index + 1 :]]
        if remaining:
            expected[name] = remaining
        else:
            del expected[name]

        def surgery(layout: Layout) -> str | None:
            found = layout.entries(name)
            if len(found) != len(entries):
                return None
            lines = layout.lines
            before, after = lines[: found[index].start], lines[found[index].stop :]
            if before and not before[-1].strip() and (not after or not after[0].strip()):
                # The blank line that separated it goes too (as `_add` wrote one).
                if after:
                    after = after[1:]
                else:
                    before = before[:-1]
            return "".join(before + after)

        def whole(document: tomlkit.TOMLDocument) -> None:
            if remaining:
                document[name] = _aot(name, remaining)
            else:
                del document[name]

        self._commit(expected, surgery, whole)

    def _move(self, name: str, index: int, to: int) -> None:
        entries = self._entries(name)
        self._checked_index(name, index)
        self._checked_index(name, to)
        if index == to:
            return
        order = [*entries]
        order.insert(to, order.pop(index))
        expected = _copy(self._data)
        expected[name] = order

        def surgery(layout: Layout) -> str | None:
            found = layout.entries(name)
            if len(found) != len(entries):
                return None
            lines = _terminated(layout.lines)
            cores = [lines[entry.start : entry.stop] for entry in found]
            gaps = [lines[a.stop : b.start] for a, b in zip(found, found[1:], strict=False)]
            cores.insert(to, cores.pop(index))
            out = lines[: found[0].start]
            for position, core in enumerate(cores):
                out += core
                if position < len(gaps):
                    out += gaps[position]
            out += lines[found[-1].stop :]
            return "".join(out)

        def whole(document: tomlkit.TOMLDocument) -> None:
            document[name] = _aot(name, order)

        self._commit(expected, surgery, whole)

    def _commit(
        self,
        expected: dict[str, Any],
        surgery: Callable[[Layout], str | None],
        whole: Callable[[tomlkit.TOMLDocument], None],
    ) -> None:
        """Make the edit by line surgery, or by tomlkit on the whole document when the
        surgery cannot place it; keep the result only if it parses to `expected`."""
        # Only a file whose every line ends in CRLF gets CRLF on added lines too: in a file
        # that mixes both, converting would change lines the edit did not touch.
        crlf = "\r\n" in self._text and _LONE_LF.search(self._text) is None
        newline = "\r\n" if crlf else "\n"
        candidate = surgery(scan_layout(self._text))
        if candidate is not None:
            candidate = _newlines(candidate, newline)
            data = _parse_or_none(candidate)
            if data == expected:
                self._text, self._data = candidate, data
                return
        try:
            document = tomlkit.parse(self._text)
            whole(document)
        except (
            KeyError,
            IndexError,
            TypeError,
            ValueError,
            tomlkit.exceptions.TOMLKitError,
        ) as exc:
            raise EditError(f"this edit cannot be written in this file: {exc}") from exc
        candidate = _newlines(document.as_string(), newline)
        data = _parse_or_none(candidate)
        if data != expected:
            raise EditError("this edit cannot be written in this file without changing others")
        self._text, self._data = candidate, data


# --- rendering values the way an admin writes them -------------------------------------------


def _render_table(name: str, values: Mapping[str, Any], *, array: bool) -> str:
    """`[[name]]` (or `[name]`) and its keys, in the documented order, ending in a newline."""
    order = _KEY_ORDER.get(name, ())
    keys = sorted(values, key=lambda k: order.index(k) if k in order else len(order))
    lines = [f"[[{name}]]" if array else f"[{name}]"]
    for key in keys:
        if values[key] is not None:
            lines.append(f"{tomlkit.key(key).as_string()} = {_render(values[key])}")
    return "\n".join(lines) + "\n"


def _render(value: Any, multiline: bool | None = None, indent: int = 0) -> str:
    """One value as TOML text: arrays on one line unless long, inline tables `{ k = v }`."""
    value = _plain(value)
    if isinstance(value, bool | int | float):
        return tomlkit.item(value).as_string()
    if isinstance(value, str):
        return tomlkit.string(value).as_string()
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        pairs = [f"{tomlkit.key(str(k)).as_string()} = {_render(v)}" for k, v in value.items()]
        return "{ " + ", ".join(pairs) + " }"
    if isinstance(value, list | tuple):
        items = [_render(item) for item in value]
        one_line = "[" + ", ".join(items) + "]"
        if not items or multiline is False:
            return one_line
        if multiline or indent + len(one_line) > _ONE_LINE_WIDTH:
            return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
        return one_line
    raise EditError(f"{value!r} cannot be written in a config file")


def _value_item(value: Any, previous: Any = None, indent: int = 0) -> Item:
    """`value` as a tomlkit item; an array that was written one item per line stays so.

    `indent` is how far the value starts into its line (`key = `), for the wrapping rule.
    """
    multiline = None
    if isinstance(previous, Array) and "\n" in previous.as_string():
        multiline = True
    parsed = tomlkit.parse(f"v = {_render(value, multiline, indent)}\n")
    item = parsed.item("v")
    assert isinstance(item, Item)
    return item


def _edit_lines(
    layout: Layout, first: int, last: int, name: str, array: bool, values: Mapping[str, Any]
) -> str:
    """Lines `first..last` (one table) edited by tomlkit on their own, spliced back."""
    lines = layout.lines
    core = "".join(_terminated(lines[first : last + 1]))
    part = tomlkit.parse(core)
    table = part[name][0] if array else part[name]
    indent = _key_indent(table)
    for key, value in values.items():
        if value is None:
            if key in table:
                del table[key]
        elif key in table:
            table[key] = _value_item(value, table.get(key), indent=len(f"{key} = "))
        else:
            item = _value_item(value, indent=len(indent) + len(f"{key} = "))
            item.trivia.indent = indent
            table[key] = item
    return "".join(lines[:first]) + part.as_string() + "".join(lines[last + 1 :])


def _key_indent(table: Any) -> str:
    """How the table's keys are indented, so a key added to it lines up with them."""
    indent = ""
    for key, item in table.value.body:
        if key is not None and isinstance(item, Item) and not isinstance(item, Table | AoT):
            indent = item.trivia.indent
    return str(indent)


def _aot(name: str, entries: Sequence[Mapping[str, Any]]) -> Any:
    """A whole array of tables for the tomlkit fallback, written in the documented order."""
    return tomlkit.parse("\n".join(_render_table(name, e, array=True) for e in entries))[name]


def _append(layout: Layout, chunk: str) -> str:
    """`chunk` at the end of the file, after one blank line."""
    text = "".join(_terminated(layout.lines))
    if text and not text.endswith("\n\n"):
        text += "\n"
    return text + chunk


def _terminated(lines: list[str]) -> list[str]:
    """The lines, the last one ending in a newline too (a file may end without one)."""
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines


_LONE_LF = re.compile(r"(?<!\r)\n")


def _newlines(text: str, newline: str) -> str:
    """Lines added by an edit end like the file's other lines (CRLF files stay CRLF)."""
    return _LONE_LF.sub("\r\n", text) if newline == "\r\n" else text


# --- data --------------------------------------------------------------------------------------


def _parse(text: str, file: str) -> dict[str, Any]:
    """The data of `text`. tomllib is fifty times quicker than tomlkit on the sample; tomlkit
    words a syntax error as `config.load` does, so it is asked only then."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        try:
            tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as kit:
            raise ConfigError([Problem(file, kit.line, "", _syntax_message(kit))]) from exc
        found = re.search(r"line (\d+)", str(exc))
        line = int(found[1]) if found else None
        raise ConfigError([Problem(file, line, "", f"this is not valid TOML: {exc}")]) from exc


def _parse_or_none(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


_WRITTEN_AS_TEXT = (
    Path,
    HostPort,
    SocketAddress,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
)
"""Values the model holds as objects and the file as text; `str()` gives the file's form
(`smtp.example.net:587`, `[::1]:2525`, `192.168.1.0/24`)."""


def _plain(value: Any) -> Any:
    """`value` as the parsed file will hold it: tuples as lists, paths and the model's
    addresses and networks as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, _WRITTEN_AS_TEXT):
        return str(value)
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _catches_all(values: Mapping[str, Any]) -> bool:
    domains = list(values.get("domains") or [])
    return domains == ["*"] and not values.get("sender_domains")


def _uses_default_port(values: Mapping[str, Any]) -> bool:
    port = str(DEFAULT_LISTENER.listen[0].port)
    return any(str(address).rpartition(":")[2] == port for address in values.get("listen") or [])


def _default_route() -> dict[str, Any]:
    return {
        "domains": list(DEFAULT_ROUTE.domains),
        "transport": DEFAULT_ROUTE.transport,
        "tls": DEFAULT_ROUTE.tls,
    }


def _default_listener() -> dict[str, Any]:
    return {
        "listen": [str(address) for address in DEFAULT_LISTENER.listen],
        "role": DEFAULT_LISTENER.role,
        "tls": DEFAULT_LISTENER.tls,
        "allowed_networks": [str(network) for network in DEFAULT_LISTENER.allowed_networks],
    }
