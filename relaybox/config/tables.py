"""One TOML table into one model dataclass, by the type and rules on each field; and the
`[[name]]` blocks of an array of tables, checked for their shape once for all four.

What a section's settings mean together (a TLS listener's files, a route's transport) is
checked by its module in `config.checks`, which hands its own readers to `read_table` for
the settings a type alone cannot check.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from relaybox.config.positions import join_key
from relaybox.config.problems import Report
from relaybox.config.readers import read_bool, read_choice, read_number, read_path, read_str
from relaybox.config.rules import split_rules

__all__ = ["FieldReader", "blocks_of", "read_table", "then", "unknown_keys"]

FieldReader = Callable[[Report, str, object], Any]
"""Reads one setting: `(report, dotted key, value as parsed)` -> the value, or None once the
problem is recorded."""

V = TypeVar("V")
W = TypeVar("W")


def then(
    read: Callable[[Report, str, object], V | None], check: Callable[[Report, str, V], W | None]
) -> Callable[[Report, str, object], W | None]:
    """A reader that reads with `read` (say, `read_str`) and, when that succeeded, checks
    the value with `check` (say, that the text is a host name)."""

    def read_then_check(report: Report, key: str, value: object) -> W | None:
        first = read(report, key, value)
        return None if first is None else check(report, key, first)

    return read_then_check


def unknown_keys(
    report: Report, prefix: str, table: Mapping[str, Any], known: list[str], where: str
) -> None:
    """Report every key of `table` not in `known`, with the closest known one as a hint."""
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            hint = f'did you mean "{close[0]}"?'
        else:
            hint = f"{where} may contain: {', '.join(known)}"
        report.error(join_key(prefix, key), f"unknown key ({hint})")


def read_table(
    report: Report,
    prefix: str,
    cls: type[Any],
    table: Mapping[str, Any],
    readers: Mapping[str, FieldReader] | None = None,
    *,
    block: str | None = None,
) -> Any:
    """Build one model dataclass from its table; None when any of its settings is wrong.

    Args:
        report: Where problems go.
        prefix: The table's dotted key: `server`, or `listeners[0]` for a block.
        cls: The model class; its fields are the keys the table may hold, except fields
            marked `LOADED` (filled in by the loader, not settings).
        table: The table as parsed.
        readers: The section's own readers, by field name, for settings a type alone
            cannot check; every other field is read by its type and the rules on it.
        block: For one `[[name]]` block, its name, as messages name the block.
    """
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("loaded")]
    where = f"a [[{block}]] block" if block else f"a [{prefix}] table"
    unknown_keys(report, prefix, table, [f.name for f in fields], where)
    hints = typing.get_type_hints(cls, include_extras=True)
    readers = readers or {}
    values: dict[str, Any] = {}
    valid = True
    for field in fields:
        if field.name not in table:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                example = split_rules(hints[field.name])[2]
                report.error(
                    prefix,
                    f'has no "{field.name}" key; add one, like '
                    f"{field.name} = {example.text if example else '...'}",
                )
                valid = False
            continue
        key = join_key(prefix, field.name)
        value = table[field.name]
        read = readers.get(field.name)
        checked = (
            read(report, key, value) if read else _read_typed(report, key, hints[field.name], value)
        )
        if checked is None:
            valid = False
        else:
            values[field.name] = checked
    return cls(**values) if valid else None


def _read_typed(report: Report, key: str, hint: Any, value: object) -> Any:
    """Check and convert one setting by its type and the rules on its field."""
    hint, allowed, _ = split_rules(hint)
    if hint is bool:
        return read_bool(report, key, value)
    if hint is int or hint is float or hint == (int | None):
        number = read_number(report, key, value, whole=hint is not float)
        if number is not None and allowed is not None:
            message = allowed.violation(number)
            if message:
                report.error(key, message)
                return None
        return number
    if hint is str or hint == (str | None):
        return read_str(report, key, value)
    if hint is Path or hint == (Path | None):
        return read_path(report, key, value)
    if typing.get_origin(hint) is Literal:
        return read_choice(report, key, value, typing.get_args(hint))
    raise TypeError(f"config.tables has no reader for {key} ({hint!r}); give its section one")


def blocks_of(
    report: Report,
    data: Mapping[str, Any],
    name: str,
    *,
    noun: str | None,
    shape: str,
    empty: str | None = None,
) -> list[dict[str, Any]] | None:
    """The `[[name]]` blocks of an array of tables, once their shape is checked.

    Args:
        report: Where problems go.
        data: The whole file as parsed.
        name: The array's key: `listeners`, `users`, `routes`, `dkim`.
        noun: What one block is (`listener`), for the message about a single `[name]`
            table; None reports that mistake with `shape` too.
        shape: The message when `name` is not a list of tables.
        empty: The message when the list is empty, or None when no blocks are fine.

    Returns:
        None when the file has no `name` at all (the caller's default applies); an empty
        list when the shape is wrong (reported) or there are no blocks; else the blocks.
    """
    if name not in data:
        return None
    blocks = data[name]
    if isinstance(blocks, dict) and noun is not None:
        report.error(
            name,
            f"write each {noun} as its own [[{name}]] block (with double square brackets), "
            f"not [{name}]",
        )
        return []
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        report.error(name, shape)
        return []
    if not blocks and empty is not None:
        report.error(name, empty)
        return []
    return blocks
