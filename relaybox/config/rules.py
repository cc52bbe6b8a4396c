"""The rules a setting carries on its model field: allowed numeric range and unit, and the
example quoted when it is missing or mistyped.

Written as `typing.Annotated` extras in `config.model` (`Annotated[int, Range(1, 1000)]`) and
applied by `config.tables`; this module only describes rules, it reads no file.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from typing import Any

__all__ = ["Example", "Range", "example_of", "show", "split_rules"]


@dataclass(frozen=True)
class Range:
    """Allowed numeric values of one setting, and the unit to name in the message."""

    low: float
    """The smallest value allowed (or, without `low_inclusive`, the value it must exceed)."""
    high: float | None = None
    """The largest value allowed; None for no upper bound."""
    low_inclusive: bool = True
    """Whether `low` itself is allowed (a count may be 0, a timeout may not)."""
    unit: str = ""
    """What the number counts, as the message names it: `seconds`, `bytes`, `MB`..."""

    def violation(self, value: float) -> str | None:
        """Why `value` is out of range, or None when it is fine."""
        unit = f" {self.unit}" if self.unit else ""
        too_low = value < self.low if self.low_inclusive else value <= self.low
        low, got = show(self.low), show(value)
        if self.high is not None and (too_low or value > self.high):
            return f"must be between {low} and {show(self.high)}{unit} (got {got})"
        if too_low and self.low_inclusive:
            return f"must be {low}{unit} or more (got {got})"
        if too_low:
            return f"must be more than {low}{unit} (got {got})"
        return None


@dataclass(frozen=True)
class Example:
    """How a setting is written, quoted in the messages about it (a missing required key, a
    list written as something else)."""

    text: str


def show(number: float) -> str:
    """A number as an admin writes it: 2592000, not 2.592e+06; 0.5, not 0.50000."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def split_rules(hint: Any) -> tuple[Any, Range | None, Example | None]:
    """A field's type hint (from `get_type_hints(include_extras=True)`) without its
    `Annotated` extras, and the range and example among those extras."""
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, None, None
    extras = hint.__metadata__
    found_range = next((extra for extra in extras if isinstance(extra, Range)), None)
    example = next((extra for extra in extras if isinstance(extra, Example)), None)
    return hint.__origin__, found_range, example


@functools.cache
def example_of(cls: type, name: str) -> str:
    """The example on field `name` of model class `cls`, for messages that quote it."""
    example = split_rules(typing.get_type_hints(cls, include_extras=True)[name])[2]
    if example is None:
        raise KeyError(f"{cls.__name__}.{name} has no Example")
    return example.text
