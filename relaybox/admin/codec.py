"""The JSON shapes of the admin protocol: values (filters, rows, message details, domain reports,
events) to and from what a JSON line holds, and the codecs the operations table is built of.

It knows nothing of sockets or of which operation carries a value; `operations` says that.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from relaybox import events as _events
from relaybox.admin.service import IdPage, Page
from relaybox.events import Event, RecentEvents
from relaybox.health.findings import Finding
from relaybox.health.monitor import DomainReport
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import (
    ALL_STATES,
    SORT_COLUMNS,
    UNFINISHED_STATES,
    AttemptRow,
    MessageDetail,
    MessageFilter,
    MessageRow,
    RecipientRow,
)

__all__ = [
    "AFTER",
    "BOOL",
    "DOMAINS",
    "EVENT_NAMES",
    "EVENT_TYPES",
    "FILTER",
    "FLOAT",
    "QUEUE_IDS",
    "REPORT",
    "SORT",
    "STR",
    "Codec",
    "Result",
    "int_range",
    "page_from_json",
    "id_page_from_json",
    "row_ids",
    "suspended_to_json",
    "BadRequest",
    "EventsDropped",
    "attempt_from_json",
    "detail_from_json",
    "recent_attempts_from_json",
    "recent_attempts_to_json",
    "domain_report_from_json",
    "dumps",
    "encode_events",
    "event_from_json",
    "event_to_json",
    "filter_from_json",
    "filter_to_json",
    "plain",
    "row_from_json",
]

MAX_LINE = 1 << 20
"""Longest request line (bytes); a longer one ends its connection."""
IDS_PER_FILTER = 10_000
"""Queue IDs or addresses in one filter (SQLite's variables, and time)."""


class BadRequest(Exception):
    """A request the server cannot act on; its text goes back to the client."""


@dataclass(frozen=True)
class EventsDropped:
    """Not an engine event: `count` events were lost before the next one; re-read a snapshot."""

    count: int


def plain(value: Any) -> Any:
    """`value` as JSON can hold it: dataclasses as objects of their fields, tuples as lists,
    inf and NaN (JSON has neither) as null."""
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def dumps(obj: Any) -> bytes:
    return (json.dumps(plain(obj), ensure_ascii=False, allow_nan=False) + "\n").encode()


def filter_to_json(flt: MessageFilter) -> dict[str, Any]:
    """A `MessageFilter` as the `filter` argument of a request."""
    return {
        "queue_ids": list(flt.queue_ids),
        "domain": flt.domain,
        "states": list(flt.states),
        "text": flt.text,
        "recipients": list(flt.recipients),
    }


def filter_from_json(value: Any) -> MessageFilter:
    """The `MessageFilter` of a request's `filter` argument (raises BadRequest)."""
    if not isinstance(value, dict):
        raise BadRequest("filter must be an object")
    only(value, "filter", "queue_ids", "domain", "states", "text", "recipients")
    states = value.get("states", list(UNFINISHED_STATES))
    if not is_str_list(states):
        raise BadRequest("filter.states must be a list of state names")
    unknown = [s for s in states if s not in ALL_STATES]
    if unknown:
        raise BadRequest(
            f"unknown state {unknown[0]!r} in filter.states; states: {', '.join(ALL_STATES)}"
        )
    queue_ids = value.get("queue_ids", [])
    if not is_str_list(queue_ids) or len(queue_ids) > IDS_PER_FILTER:
        raise BadRequest(f"filter.queue_ids must be a list of at most {IDS_PER_FILTER} queue IDs")
    recipients = value.get("recipients", [])
    if not is_str_list(recipients) or len(recipients) > IDS_PER_FILTER:
        raise BadRequest(f"filter.recipients must be a list of at most {IDS_PER_FILTER} addresses")
    return MessageFilter(
        states=tuple(states),
        text=take(value, "text", str, ""),
        domain=take(value, "domain", str, ""),
        queue_ids=tuple(queue_ids),
        recipients=tuple(recipients),
    )


def row_from_json(d: dict[str, Any]) -> MessageRow:
    return MessageRow(**d)


def _lines(raw: builtins.list[Any]) -> tuple[TranscriptLine, ...]:
    return tuple(TranscriptLine(*line) for line in raw)


def attempt_from_json(a: dict[str, Any]) -> AttemptRow:
    return AttemptRow(
        **{**a, "recipients": tuple(a["recipients"]), "transcript": _lines(a["transcript"])}
    )


def recent_attempts_to_json(found: Sequence[tuple[str, AttemptRow]]) -> builtins.list[Any]:
    return [{"queue_id": qid, "attempt": dataclasses.asdict(a)} for qid, a in found]


def recent_attempts_from_json(data: builtins.list[Any]) -> builtins.list[tuple[str, AttemptRow]]:
    return [(d["queue_id"], attempt_from_json(d["attempt"])) for d in data]


def detail_from_json(d: dict[str, Any]) -> MessageDetail:
    return MessageDetail(
        **{
            **d,
            "row": row_from_json(d["row"]),
            "recipients": tuple(RecipientRow(**r) for r in d["recipients"]),
            "headers": tuple((k, v) for k, v in d["headers"]),
            "inbound_transcript": _lines(d["inbound_transcript"]),
            "attempts": tuple(attempt_from_json(a) for a in d["attempts"]),
        }
    )


EVENT_TYPES: dict[str, type[Event]] = {
    name: cls
    for name in _events.__all__
    if isinstance(cls := getattr(_events, name), type)
    and issubclass(cls, Event)
    and cls is not Event
}


_EVENT_FIELDS: dict[type[Event], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES.values()
}


def event_to_json(event: Event) -> dict[str, Any]:
    """``{"event": "<class name>", **fields}`` for any event of `events`."""
    cls = type(event)
    names = _EVENT_FIELDS.get(cls) or tuple(f.name for f in dataclasses.fields(event))
    # Event fields are flat (numbers, strings, tuples of strings): no deep copy needed.
    fields = {name: getattr(event, name) for name in names}
    for name, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            fields[name] = None
    return {"event": cls.__name__, **fields}


def encode_events(batch: Sequence[Event], dropped: int, wanted: frozenset[str] | None) -> bytes:
    lines = [dumps({"event": "Dropped", "count": dropped})] if dropped else []
    lines.extend(
        dumps(event_to_json(e)) for e in batch if wanted is None or type(e).__name__ in wanted
    )
    return b"".join(lines)


def event_from_json(data: dict[str, Any]) -> Event | EventsDropped | None:
    """The event a stream line stands for; None for an event this relaybox does not know."""
    name = data.get("event")
    if name == "Dropped":
        return EventsDropped(int(data.get("count", 0)))
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    known = _EVENT_FIELDS[cls]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    make: Callable[..., Event] = cls
    try:
        return make(**values)
    except TypeError:
        return None


def recent_events_to_json(recent: RecentEvents) -> dict[str, Any]:
    return {"epoch": recent.epoch, "events": [event_to_json(e) for e in recent.events]}


def recent_events_from_json(data: dict[str, Any]) -> RecentEvents:
    """The `log_tail` answer; events this relaybox does not know are left out."""
    events = (event_from_json(e) for e in data.get("events", ()) if isinstance(e, dict))
    return RecentEvents(
        str(data.get("epoch", "")), tuple(e for e in events if isinstance(e, Event))
    )


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def domain_report_from_json(data: dict[str, Any]) -> DomainReport:
    """A `DomainReport` back from its JSON form."""
    return DomainReport(
        tuple(Finding(**f) for f in data["findings"]),
        {d: float(t) for d, t in data["checked_at"].items()},
        bool(data["checking"]),
    )


# ---------------------------------------------------------------------- argument checks

REQUIRED: Any = object()


def only(args: dict[str, Any], op: str, *names: str) -> None:
    extra = sorted(set(args) - set(names))
    if extra:
        allowed = ", ".join(names) or "none"
        raise BadRequest(f"{op} takes no argument {extra[0]!r} (arguments: {allowed})")


def take(args: dict[str, Any], name: str, kind: type, default: Any = REQUIRED) -> Any:
    if name not in args or (args[name] is None and default is not REQUIRED):
        if default is REQUIRED:
            raise BadRequest(f"argument {name!r} is required")
        return default
    value = args[name]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise BadRequest(f"argument {name!r} must be {KIND_NAMES.get(kind, kind.__name__)}")
    return float(value) if kind is float else value


KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def after_from_json(args: dict[str, Any]) -> tuple[Any, int] | None:
    """The `after` argument of a paged op: the `next_after` its previous page returned."""
    after = args.get("after")
    if after is None:
        return None
    if not (isinstance(after, list) and len(after) == 2 and type(after[1]) is int):
        raise BadRequest("after must be the next_after of the previous page")
    return after[0], after[1]


# ---------------------------------------------------------------------- arguments and results


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Codec:
    """How an argument travels: `encode` on the client (Python to JSON), `decode` on the server
    (JSON to Python, raising BadRequest with words for the admin)."""

    shape: str
    """What the JSON value is, for the protocol document."""
    decode: Callable[[Any, str], Any]
    """(JSON value, argument name) -> the value the `Admin` method takes."""
    encode: Callable[[Any], Any] = _same
    null_is_default: bool = True
    """Whether null stands for the default (as for plain values) or is an error (a filter)."""


@dataclass(frozen=True)
class Result:
    """How a result travels: `to_json` on the server, `from_json` back on the client."""

    shape: str
    to_json: Callable[[Any], Any] = plain
    from_json: Callable[[Any], Any] = _same


def _kind(kind: type, shape: str) -> Codec:
    return Codec(shape, lambda value, name: take({name: value}, name, kind))


STR = _kind(str, "string")
BOOL = _kind(bool, "true or false")
FLOAT = _kind(float, "number")
SORT = Codec(f"one of {', '.join(SORT_COLUMNS)}", STR.decode)


def int_range(low: int, high: int, *, clamp: bool = False) -> Codec:
    def decode(value: Any, name: str) -> int:
        number: int = take({name: value}, name, int)
        if not low <= number <= high:
            raise BadRequest(f"{name} must be between {low} and {high}")
        return number

    def encode(value: Any) -> Any:
        # `data`'s limit: the client asks for at most what one answer holds.
        return high if value is None else min(value, high)

    return Codec(f"integer, {low} to {high}", decode, encode if clamp else _same)


def row_ids(most: int, problem: str) -> Codec:
    def decode(value: Any, name: str) -> builtins.list[int]:
        if not (isinstance(value, list) and all(type(i) is int for i in value)) or (
            len(value) > most
        ):
            raise BadRequest(problem)
        return value

    return Codec(f"[row id] (at most {most})", decode, builtins.list, null_is_default=False)


def _domains(value: Any, name: str) -> builtins.list[str]:
    if not (is_str_list(value) and len(value) <= 1000):
        raise BadRequest("domains must be a list of at most 1000 domain names")
    return value  # type: ignore[no-any-return]


def _event_names(value: Any, name: str) -> builtins.list[str]:
    if not is_str_list(value):
        raise BadRequest("events must be a list of event names")
    return value  # type: ignore[no-any-return]


FILTER = Codec(
    "filter",
    lambda value, name: filter_from_json(value),
    lambda flt: filter_to_json(flt or MessageFilter()),
    null_is_default=False,
)
AFTER = Codec(
    "next_after of the previous page",
    lambda value, name: after_from_json({"after": value}),
    lambda after: None if after is None else builtins.list(after),
)
DOMAINS = Codec("[domain]", _domains, lambda d: None if d is None else builtins.list(d))
EVENT_NAMES = Codec("[event name]", _event_names, lambda n: None if n is None else list(n))


def page_from_json(data: dict[str, Any]) -> Page:
    after = data["next_after"]
    return Page(
        tuple(row_from_json(r) for r in data["rows"]),
        None if after is None else (after[0], after[1]),
    )


def id_page_from_json(data: dict[str, Any]) -> IdPage:
    after = data["next_after"]
    return IdPage(tuple(data["ids"]), None if after is None else (after[0], after[1]))


def suspended_to_json(found: dict[str, tuple[float, str]]) -> builtins.list[dict[str, Any]]:
    return [
        {"destination": key, "until": until, "reason": reason}
        for key, (until, reason) in sorted(found.items())
    ]


QUEUE_IDS = Result("[queue ID touched]", plain, builtins.list)
REPORT = Result("{findings, checked_at, checking}", plain, domain_report_from_json)
