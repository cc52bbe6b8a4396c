"""The admin socket: a running engine's `admin` layer served on `state_dir/admin.sock`, and the
client that reaches it (the CLI now, the TUI attached to a `--headless` engine later).

The protocol is JSON lines. A request is ``{"id": 1, "op": "count", "args": {...}}``; its
response ``{"id": 1, "ok": true, "result": ...}`` or ``{"id": 1, "ok": false, "error": "..."}``.
Requests on one connection are answered as they finish (match them by `id`); a bad line gets an
error response and the connection stays usable. `subscribe` turns its connection into a stream
of events, one object a line: ``{"event": "MessageAccepted", "at": ..., "queue_id": ...}``,
the fields of the `events` dataclass of that name; ``{"event": "Dropped", "count": n}`` says
that `n` events were lost to a slow reader, who should re-read a snapshot.

Ops and their args (a `filter` is ``{"queue_ids": [...], "domain": "", "states": [...],
"text": ""}``, every key optional; without `states` it means the unfinished messages, with
``"states": []`` messages in any state):

====================  ===============================================  ========================
op                    args                                             result
====================  ===============================================  ========================
list                  filter, sort, descending, after, limit           {rows, next_after}
count                 filter                                           int
count_by_state        -                                                {state: int}
show                  queue_id                                         detail or null
ids                   filter, sort, descending, after, limit           {ids, next_after}
recipients            ids (row ids from list)                          [[id, [recipient]]]
retry, hold,          filter (required)                                [queue ID touched]
release, delete
bounce                filter (required), reason                        [queue ID touched]
suspend               destination, seconds (null: until resumed),      {destination, until}
                      reason
resume                destination                                      bool (was suspended)
suspended             -                                                [{destination, until,
                                                                       reason}]
suppress_add          address, reason, days                            address as stored
suppress_remove       address                                          bool
suppress_list         -                                                [entry]
domain_report         -                                                {findings, checked_at,
                                                                       checking}
check_domains         domains (names; default every sending domain)    as domain_report
subscribe             events (names; default all), maxsize             then the event stream
====================  ===============================================  ========================

Times are seconds since the epoch. The server is a thin shell over `admin.Admin`: every op is
an `Admin` call, and `ControlClient` has a method of the same name and signature for each
(`recipients` is `recipients_of`), so code written against `AdminClient` runs in process or
over the socket alike.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import dataclasses
import json
import math
import os
import socket
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from relaybox import events as _events
from relaybox.admin.service import UNTIL_RESUMED, Admin, Page, every_page
from relaybox.events import Event, EventBus
from relaybox.health.findings import Finding
from relaybox.health.monitor import DomainReport
from relaybox.maillog import MailLog
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import (
    ALL_STATES,
    UNFINISHED_STATES,
    AttemptRow,
    MessageDetail,
    MessageFilter,
    MessageRow,
    Overview,
    RecipientRow,
    SpoolError,
    SuppressionRow,
)

__all__ = [
    "AdminClient",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "EventsDropped",
    "event_from_json",
    "event_to_json",
]

SOCKET_MODE = 0o600
MAX_LINE = 1 << 20
"""Longest request line (bytes); a longer one ends its connection."""
MAX_IN_FLIGHT = 16
"""Requests of one connection worked on at once; more wait their turn."""
MAX_CLIENTS = 32
"""Connections served at once (the TUI takes two); one more gets an error line and is closed."""
_EVENTS_ENCODED_INLINE = 64  # a larger batch is encoded in a thread
DEFAULT_EVENT_QUEUE = 10_000
_DATA_LIMIT = 512 * 1024  # base64 of it stays under MAX_LINE
_IDS_PER_REQUEST = 50_000  # 50,000 ids of JSON stay well under MAX_LINE
MAX_EVENT_QUEUE = 100_000
OPS: tuple[str, ...] = (
    "info",
    "overview",
    "data",
    "list",
    "ids",
    "rows",
    "count",
    "count_by_state",
    "show",
    "recipients",
    "retry",
    "hold",
    "release",
    "delete",
    "bounce",
    "suspend",
    "resume",
    "suspended",
    "domain_report",
    "check_domains",
    "suppress_add",
    "suppress_remove",
    "suppress_list",
    "subscribe",
)
"""Every op a request may name."""
_RECIPIENTS_PER_REQUEST = 5000  # keeps a request well under MAX_LINE
_IDS_PER_FILTER = 10_000  # queue IDs or addresses in one filter (SQLite's variables and time)
_MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on the BSDs


class ControlError(Exception):
    """The engine refused a request (the text says why), or the connection to it was lost."""


class _BadRequest(Exception):
    """A request the server cannot act on; its text goes back to the client."""


@dataclass(frozen=True)
class EventsDropped:
    """Not an engine event: `count` events were lost before the next one; re-read a snapshot."""

    count: int


# ---------------------------------------------------------------------- the client interface


class AdminClient(Protocol):
    """What the CLI and the TUI call: an `Admin` in process, or a `ControlClient` on the socket.

    The methods and their meaning are `admin.Admin`'s; see there.
    """

    async def list(
        self,
        flt: MessageFilter | None = None,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 100,
    ) -> Page: ...

    async def list_all(
        self, flt: MessageFilter | None = None, page_size: int = 1000
    ) -> builtins.list[MessageRow]: ...

    async def message_ids(
        self, flt: MessageFilter | None = None, *, sort: str = "arrived", descending: bool = False
    ) -> builtins.list[int]: ...

    async def rows_by_id(self, ids: Sequence[int]) -> dict[int, MessageRow]: ...

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None: ...

    async def overview(self, since: float) -> Overview: ...

    async def count(self, flt: MessageFilter | None = None) -> int: ...

    async def count_by_state(self) -> dict[str, int]: ...

    async def show(self, queue_id: str) -> MessageDetail | None: ...

    async def recipients_of(
        self, message_ids: Sequence[int]
    ) -> dict[int, builtins.list[RecipientRow]]: ...

    async def retry(self, flt: MessageFilter) -> builtins.list[str]: ...

    async def hold(self, flt: MessageFilter) -> builtins.list[str]: ...

    async def release(self, flt: MessageFilter) -> builtins.list[str]: ...

    async def delete(self, flt: MessageFilter) -> builtins.list[str]: ...

    async def bounce(self, flt: MessageFilter, reason: str = "") -> builtins.list[str]: ...

    async def suspend(
        self, destination: str, seconds: float | None = None, reason: str = ""
    ) -> tuple[str, float]: ...

    async def resume(self, destination: str) -> bool: ...

    async def suspended(self) -> dict[str, tuple[float, str]]: ...

    async def domain_report(self) -> DomainReport: ...

    async def check_domains(self, domains: Sequence[str] | None = None) -> DomainReport: ...

    async def suppress_add(
        self, address: str, reason: str = "added by an admin", days: float | None = None
    ) -> str: ...

    async def suppress_remove(self, address: str) -> bool: ...

    async def suppress_list(self) -> builtins.list[SuppressionRow]: ...


# ---------------------------------------------------------------------- JSON shapes


def _plain(value: Any) -> Any:
    """`value` as JSON can hold it: dataclasses as objects of their fields, tuples as lists,
    inf and NaN (JSON has neither) as null."""
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dumps(obj: Any) -> bytes:
    return (json.dumps(_plain(obj), ensure_ascii=False, allow_nan=False) + "\n").encode()


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
    """The `MessageFilter` of a request's `filter` argument (raises _BadRequest)."""
    if not isinstance(value, dict):
        raise _BadRequest("filter must be an object")
    _only(value, "filter", "queue_ids", "domain", "states", "text", "recipients")
    states = value.get("states", list(UNFINISHED_STATES))
    if not _is_str_list(states):
        raise _BadRequest("filter.states must be a list of state names")
    unknown = [s for s in states if s not in ALL_STATES]
    if unknown:
        raise _BadRequest(
            f"unknown state {unknown[0]!r} in filter.states; states: {', '.join(ALL_STATES)}"
        )
    queue_ids = value.get("queue_ids", [])
    if not _is_str_list(queue_ids) or len(queue_ids) > _IDS_PER_FILTER:
        raise _BadRequest(f"filter.queue_ids must be a list of at most {_IDS_PER_FILTER} queue IDs")
    recipients = value.get("recipients", [])
    if not _is_str_list(recipients) or len(recipients) > _IDS_PER_FILTER:
        raise _BadRequest(
            f"filter.recipients must be a list of at most {_IDS_PER_FILTER} addresses"
        )
    return MessageFilter(
        states=tuple(states),
        text=_arg(value, "text", str, ""),
        domain=_arg(value, "domain", str, ""),
        queue_ids=tuple(queue_ids),
        recipients=tuple(recipients),
    )


def _row_from_json(d: dict[str, Any]) -> MessageRow:
    return MessageRow(**d)


def _detail_from_json(d: dict[str, Any]) -> MessageDetail:
    def lines(raw: builtins.list[Any]) -> tuple[TranscriptLine, ...]:
        return tuple(TranscriptLine(*line) for line in raw)

    return MessageDetail(
        **{
            **d,
            "row": _row_from_json(d["row"]),
            "recipients": tuple(RecipientRow(**r) for r in d["recipients"]),
            "headers": tuple((k, v) for k, v in d["headers"]),
            "inbound_transcript": lines(d["inbound_transcript"]),
            "attempts": tuple(
                AttemptRow(
                    **{
                        **a,
                        "recipients": tuple(a["recipients"]),
                        "transcript": lines(a["transcript"]),
                    }
                )
                for a in d["attempts"]
            ),
        }
    )


_EVENT_TYPES: dict[str, type[Event]] = {
    name: cls
    for name in _events.__all__
    if isinstance(cls := getattr(_events, name), type)
    and issubclass(cls, Event)
    and cls is not Event
}


_EVENT_FIELDS: dict[type[Event], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _EVENT_TYPES.values()
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


def _encode_events(batch: Sequence[Event], dropped: int, wanted: frozenset[str] | None) -> bytes:
    lines = [_dumps({"event": "Dropped", "count": dropped})] if dropped else []
    lines.extend(
        _dumps(event_to_json(e)) for e in batch if wanted is None or type(e).__name__ in wanted
    )
    return b"".join(lines)


def event_from_json(data: dict[str, Any]) -> Event | EventsDropped | None:
    """The event a stream line stands for; None for an event this relaybox does not know."""
    name = data.get("event")
    if name == "Dropped":
        return EventsDropped(int(data.get("count", 0)))
    cls = _EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    make: Callable[..., Event] = cls
    try:
        return make(**values)
    except TypeError:
        return None


# ---------------------------------------------------------------------- argument checks

_REQUIRED: Any = object()


def _only(args: dict[str, Any], op: str, *names: str) -> None:
    extra = sorted(set(args) - set(names))
    if extra:
        allowed = ", ".join(names) or "none"
        raise _BadRequest(f"{op} takes no argument {extra[0]!r} (arguments: {allowed})")


def _arg(args: dict[str, Any], name: str, kind: type, default: Any = _REQUIRED) -> Any:
    if name not in args or (args[name] is None and default is not _REQUIRED):
        if default is _REQUIRED:
            raise _BadRequest(f"argument {name!r} is required")
        return default
    value = args[name]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise _BadRequest(f"argument {name!r} must be {_KIND_NAMES.get(kind, kind.__name__)}")
    return float(value) if kind is float else value


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _after(args: dict[str, Any]) -> tuple[Any, int] | None:
    """The `after` argument of a paged op: the `next_after` its previous page returned."""
    after = args.get("after")
    if after is None:
        return None
    if not (isinstance(after, list) and len(after) == 2 and type(after[1]) is int):
        raise _BadRequest("after must be the next_after of the previous page")
    return after[0], after[1]


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _domain_report(data: dict[str, Any]) -> DomainReport:
    """A `DomainReport` back from its JSON form."""
    return DomainReport(
        tuple(Finding(**f) for f in data["findings"]),
        {d: float(t) for d, t in data["checked_at"].items()},
        bool(data["checking"]),
    )


# ---------------------------------------------------------------------- the server


class ControlServer:
    """Serves one engine's `Admin` and event bus on a Unix socket (mode 0600)."""

    def __init__(self, admin: Admin, bus: EventBus, path: Path, log: MailLog) -> None:
        self.admin = admin
        self.bus = bus
        self.path = path
        self.log = log
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.started_at = time.time()
        """When the engine serving this socket started (wall clock), for `info`."""
        self._ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "info": self._info,
            "overview": self._overview,
            "data": self._data,
            "list": self._list,
            "ids": self._ids,
            "rows": self._rows,
            "count": self._count,
            "count_by_state": self._count_by_state,
            "show": self._show,
            "recipients": self._recipients,
            "retry": self._action("retry"),
            "hold": self._action("hold"),
            "release": self._action("release"),
            "delete": self._action("delete"),
            "bounce": self._bounce,
            "suspend": self._suspend,
            "resume": self._resume,
            "suspended": self._suspended,
            "domain_report": self._domain_report,
            "check_domains": self._check_domains,
            "suppress_add": self._suppress_add,
            "suppress_remove": self._suppress_remove,
            "suppress_list": self._suppress_list,
        }

    async def start(self) -> None:
        """Listen on `path`, replacing a socket file left by an engine that crashed.

        Only the engine holding the state directory's lock calls this, so a file already at
        `path` belongs to no running engine. Raises OSError when the socket cannot be made.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _addressable(self.path) as address:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
                sock.bind(address)
            # bind() made the file by the umask; the state directory (0700) keeps others out
            # until this tightens the file itself.
            os.chmod(self.path, SOCKET_MODE)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise

    async def stop(self) -> None:
        """Stop listening, end every connection and remove the socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # ------------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            with contextlib.suppress(ConnectionError):
                await _send(
                    writer,
                    _failure(
                        None,
                        f"the engine serves at most {MAX_CLIENTS} admin connections at once; "
                        "close one (another relaybox command or UI) and try again",
                    ),
                )
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            return
        self._clients.add(task)
        working: set[asyncio.Task[None]] = set()
        turns = asyncio.Semaphore(MAX_IN_FLIGHT)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: the rest cannot be framed
                    await _send(writer, _failure(None, f"request longer than {MAX_LINE} bytes"))
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                request_id, op, args, error = _parse(line)
                if error is not None:
                    await _send(writer, _failure(request_id, error))
                    continue
                if op == "subscribe":
                    if working:
                        await asyncio.wait(working)
                    if await self._stream(request_id, args, reader, writer):
                        break  # the client hung up
                    continue
                await turns.acquire()
                job = asyncio.create_task(self._answer(request_id, op, args, writer))
                working.add(job)
                job.add_done_callback(working.discard)
                job.add_done_callback(lambda _: turns.release())
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() ends the connection; asyncio would report a cancelled callback task.
            pass
        finally:
            for job in working:
                job.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._clients.discard(task)

    async def _answer(
        self, request_id: Any, op: str, args: dict[str, Any], writer: asyncio.StreamWriter
    ) -> None:
        try:
            result = await self._ops[op](args)
        except (_BadRequest, ValueError, SpoolError) as exc:
            response = _failure(request_id, str(exc))
        except Exception as exc:
            self.log.exception("admin-request-failed", op=op)
            response = _failure(request_id, f"internal error in {op}: {exc}")
        else:
            # A page of rows is milliseconds of encoding: not on the loop that serves SMTP.
            data = await asyncio.to_thread(_dumps, {"id": request_id, "ok": True, "result": result})
            with contextlib.suppress(ConnectionError):
                writer.write(data)
                await writer.drain()
            return
        with contextlib.suppress(ConnectionError):
            await _send(writer, response)

    async def _stream(
        self,
        request_id: Any,
        args: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Send bus events until the client hangs up; a slow client loses the oldest.

        Returns False, having answered with an error, when the subscription was refused.
        """
        try:
            _only(args, "subscribe", "events", "maxsize")
            maxsize = _arg(args, "maxsize", int, DEFAULT_EVENT_QUEUE)
            if not 1 <= maxsize <= MAX_EVENT_QUEUE:
                raise _BadRequest(f"maxsize must be between 1 and {MAX_EVENT_QUEUE}")
            names = args.get("events")
            if names is not None and not _is_str_list(names):
                raise _BadRequest("events must be a list of event names")
            unknown = [n for n in names or () if n not in _EVENT_TYPES]
            if unknown:
                raise _BadRequest(
                    f"no event {unknown[0]!r}; events: {', '.join(sorted(_EVENT_TYPES))}"
                )
        except _BadRequest as exc:
            await _send(writer, _failure(request_id, str(exc)))
            return False
        wanted = frozenset(names) if names else None
        subscription = self.bus.subscribe(
            maxsize, None if wanted is None else [_EVENT_TYPES[n] for n in wanted]
        )
        hangup = asyncio.create_task(_read_until_eof(reader))
        get: asyncio.Task[Event] | None = None
        try:
            await _send(writer, {"id": request_id, "ok": True, "result": {"maxsize": maxsize}})
            while True:
                get = asyncio.create_task(subscription.get())
                await asyncio.wait({get, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    return True
                batch = [get.result(), *subscription.drain()]
                # Anything dropped was older than everything still queued: say so first.
                dropped = subscription.take_dropped()
                if len(batch) > _EVENTS_ENCODED_INLINE:
                    data = await asyncio.to_thread(_encode_events, batch, dropped, wanted)
                else:
                    data = _encode_events(batch, dropped, wanted)
                if data:
                    writer.write(data)
                    await writer.drain()
        finally:
            if get is not None:
                get.cancel()
            subscription.close()
            hangup.cancel()

    # ------------------------------------------------------------------ ops

    async def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "list", "filter", "sort", "descending", "after", "limit")
        after = _after(args)
        limit = _arg(args, "limit", int, 100)
        if not 1 <= limit <= 10_000:
            raise _BadRequest("limit must be between 1 and 10000")
        page = await self.admin.list(
            filter_from_json(args.get("filter", {})),
            sort=_arg(args, "sort", str, "arrived"),
            descending=_arg(args, "descending", bool, False),
            after=after,
            limit=limit,
        )
        return {"rows": page.rows, "next_after": page.next_after}

    async def _info(self, args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "info")
        config = self.admin.config()
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "config_loaded_at": getattr(self.admin.live, "config_loaded_at", self.started_at),
            "listeners": [
                {"name": li.name, "address": str(a), "role": li.role, "tls": li.tls}
                for li in config.listeners
                for a in li.listen
            ],
        }

    async def _overview(self, args: dict[str, Any]) -> Overview:
        _only(args, "overview", "since")
        return await self.admin.overview(_arg(args, "since", float, 0.0))

    async def _data(self, args: dict[str, Any]) -> str | None:
        _only(args, "data", "queue_id", "limit")
        limit = _arg(args, "limit", int, _DATA_LIMIT)
        if not 1 <= limit <= _DATA_LIMIT:
            raise _BadRequest(f"limit must be between 1 and {_DATA_LIMIT}")
        data = await self.admin.message_data(_arg(args, "queue_id", str), limit)
        return None if data is None else base64.b64encode(data).decode("ascii")

    async def _ids(self, args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "ids", "filter", "sort", "descending", "after", "limit")
        limit = _arg(args, "limit", int, _IDS_PER_REQUEST)
        if not 1 <= limit <= _IDS_PER_REQUEST:
            raise _BadRequest(f"limit must be between 1 and {_IDS_PER_REQUEST}")
        keys = await self.admin.message_id_page(
            filter_from_json(args.get("filter", {})),
            sort=_arg(args, "sort", str, "arrived"),
            descending=_arg(args, "descending", bool, False),
            after=_after(args),
            limit=limit,
        )
        return {
            "ids": [message_id for _, message_id in keys],
            "next_after": keys[-1] if len(keys) == limit else None,
        }

    async def _rows(self, args: dict[str, Any]) -> builtins.list[Any]:
        _only(args, "rows", "ids")
        ids = args.get("ids")
        if not (isinstance(ids, list) and all(type(i) is int for i in ids)) or len(ids) > 1000:
            raise _BadRequest("ids must be a list of at most 1000 message row ids")
        return builtins.list((await self.admin.rows_by_id(ids)).values())

    async def _count(self, args: dict[str, Any]) -> int:
        _only(args, "count", "filter")
        return await self.admin.count(filter_from_json(args.get("filter", {})))

    async def _count_by_state(self, args: dict[str, Any]) -> dict[str, int]:
        _only(args, "count_by_state")
        return await self.admin.count_by_state()

    async def _show(self, args: dict[str, Any]) -> MessageDetail | None:
        _only(args, "show", "queue_id")
        return await self.admin.show(_arg(args, "queue_id", str))

    async def _recipients(self, args: dict[str, Any]) -> builtins.list[Any]:
        _only(args, "recipients", "ids")
        ids = args.get("ids")
        if not (isinstance(ids, list) and all(type(i) is int for i in ids)) or (
            len(ids) > _RECIPIENTS_PER_REQUEST
        ):
            raise _BadRequest(
                f"ids must be a list of at most {_RECIPIENTS_PER_REQUEST} message row ids "
                "(the `id` of list rows)"
            )
        found = await self.admin.recipients_of(ids)
        return [[i, rows] for i, rows in found.items()]

    def _action(self, name: str) -> Callable[[dict[str, Any]], Awaitable[builtins.list[str]]]:
        async def act(args: dict[str, Any]) -> builtins.list[str]:
            _only(args, name, "filter")
            if "filter" not in args:
                raise _BadRequest(f"{name} needs a filter saying which messages")
            touched: builtins.list[str] = await getattr(self.admin, name)(
                filter_from_json(args["filter"])
            )
            self._log_action(name, touched)
            return touched

        return act

    async def _bounce(self, args: dict[str, Any]) -> builtins.list[str]:
        _only(args, "bounce", "filter", "reason")
        if "filter" not in args:
            raise _BadRequest("bounce needs a filter saying which messages")
        touched = await self.admin.bounce(
            filter_from_json(args["filter"]), _arg(args, "reason", str, "")
        )
        self._log_action("bounce", touched)
        return touched

    async def _suspend(self, args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "suspend", "destination", "seconds", "reason")
        key, until = await self.admin.suspend(
            _arg(args, "destination", str),
            _arg(args, "seconds", float, None),
            _arg(args, "reason", str, ""),
        )
        ends = "resumed" if until >= UNTIL_RESUMED else _iso(until)
        self.log.event("admin-suspend", destination=key, until=ends)
        return {"destination": key, "until": until}

    async def _resume(self, args: dict[str, Any]) -> bool:
        _only(args, "resume", "destination")
        destination = _arg(args, "destination", str)
        key = self.admin.destination_key(destination, (await self.admin.suspended()).keys())
        found = await self.admin.resume(key)
        self.log.event("admin-resume", destination=key, was_suspended=found)
        return found

    async def _suspended(self, args: dict[str, Any]) -> builtins.list[dict[str, Any]]:
        _only(args, "suspended")
        return [
            {"destination": key, "until": until, "reason": reason}
            for key, (until, reason) in sorted((await self.admin.suspended()).items())
        ]

    async def _domain_report(self, args: dict[str, Any]) -> DomainReport:
        _only(args, "domain_report")
        return await self.admin.domain_report()

    async def _check_domains(self, args: dict[str, Any]) -> DomainReport:
        _only(args, "check_domains", "domains")
        domains = args.get("domains")
        if domains is not None and not (_is_str_list(domains) and len(domains) <= 1000):
            raise ValueError("domains must be a list of at most 1000 domain names")
        return await self.admin.check_domains(domains)

    async def _suppress_add(self, args: dict[str, Any]) -> str:
        _only(args, "suppress_add", "address", "reason", "days")
        return await self.admin.suppress_add(
            _arg(args, "address", str),
            _arg(args, "reason", str, "added by an admin"),
            _arg(args, "days", float, None),
        )

    async def _suppress_remove(self, args: dict[str, Any]) -> bool:
        _only(args, "suppress_remove", "address")
        return await self.admin.suppress_remove(_arg(args, "address", str))

    async def _suppress_list(self, args: dict[str, Any]) -> builtins.list[SuppressionRow]:
        _only(args, "suppress_list")
        return await self.admin.suppress_list()

    def _log_action(self, action: str, touched: Sequence[str]) -> None:
        if touched:
            shown = " ".join(touched[:20]) + (" ..." if len(touched) > 20 else "")
            self.log.event("admin-" + action, messages=len(touched), queue_ids=shown)


def _parse(line: bytes) -> tuple[Any, str, dict[str, Any], str | None]:
    """(id, op, args, error) of a request line; `error` says what is wrong with it."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        return None, "", {}, f"not a JSON request: {exc}"
    except RecursionError:
        return None, "", {}, "not a request: JSON nested too deeply"
    if not isinstance(request, dict):
        return None, "", {}, 'a request is an object: {"id": 1, "op": "count", "args": {}}'
    request_id = request.get("id")
    if not (request_id is None or isinstance(request_id, int | str)):
        return None, "", {}, "id must be a number or a string"
    op = request.get("op")
    args = request.get("args", {})
    if not isinstance(args, dict):
        return request_id, "", {}, "args must be an object"
    if op not in OPS:
        return request_id, "", {}, f"unknown op {op!r}; ops: {', '.join(OPS)}"
    return request_id, op, args, None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _failure(request_id: Any, error: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": error}


async def _send(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
    writer.write(_dumps(response))
    await writer.drain()


async def _read_until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, ValueError):
        while await reader.read(65536):
            pass  # a subscriber has nothing more to say; whatever it sends is ignored


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
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


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _event_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> AsyncGenerator[Event | EventsDropped, None]:
    """The events on a subscribed connection, until the engine closes it; then it is closed."""
    try:
        while line := await reader.readline():
            event = event_from_json(json.loads(line))
            if event is not None:
                yield event
    finally:
        await _close(writer)


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with _addressable(path) as address:
        return await asyncio.open_unix_connection(address, limit=MAX_LINE * 64)


# ---------------------------------------------------------------------- the client


class ControlClient:
    """A connection to a running engine's admin socket.

    `await ControlClient.connect(path)`, then `await client.request(op, **args)` for the raw
    protocol or the `AdminClient` methods for typed results; `client.events()` streams events
    over a connection of its own. Requests may be made concurrently. Raises ControlError when
    the engine refuses a request or goes away.
    """

    def __init__(
        self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._closed: str | None = None
        self._receiver = asyncio.create_task(self._receive())

    @classmethod
    async def connect(cls, path: Path, timeout: float = 5.0) -> ControlClient:
        """Connect to the socket at `path` (OSError when nothing listens there)."""
        reader, writer = await asyncio.wait_for(_open(path), timeout)
        return cls(path, reader, writer)

    @property
    def closed(self) -> str | None:
        """Why the connection is closed (the engine went away, say); None while it is open."""
        return self._closed

    async def close(self) -> None:
        """Close the connection; requests still waiting fail."""
        self._receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._receiver
        self._fail_waiting("the connection was closed")
        await _close(self._writer)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; ControlError if it failed."""
        if self._closed is not None:
            raise ControlError(self._closed)
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            self._writer.write(_dumps({"id": request_id, "op": op, "args": args}))
            await self._writer.drain()
            return await future
        except ConnectionError as exc:
            # The engine may have said why it hung up (too many connections): read that first.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._receiver), 1.0)
            raise ControlError(self._closed or f"lost the connection to the engine: {exc}") from exc
        finally:
            self._waiting.pop(request_id, None)

    async def _receive(self) -> None:
        reason = "the engine closed the admin connection"
        told: str | None = None
        """What the engine said before hanging up (an error about no request), if anything."""
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                response = json.loads(line)
                if not isinstance(response, dict):
                    continue
                request_id = response.get("id")
                if request_id is None and not response.get("ok"):
                    told = str(response.get("error") or reason)  # why it may hang up now
                future = self._waiting.get(request_id) if isinstance(request_id, int) else None
                if future is None or future.done():
                    continue
                if response.get("ok"):
                    future.set_result(response.get("result"))
                else:
                    future.set_exception(ControlError(response.get("error") or "failed"))
        except (ConnectionError, ValueError) as exc:
            reason = f"lost the connection to the engine: {exc}"
        finally:
            self._closed = told or reason
            self._fail_waiting(self._closed)

    def _fail_waiting(self, reason: str) -> None:
        self._closed = self._closed or reason
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ControlError(reason))

    async def events(
        self, names: Sequence[str] | None = None, maxsize: int = DEFAULT_EVENT_QUEUE
    ) -> AsyncIterator[Event | EventsDropped]:
        """The engine's events as they happen (only `names`, when given), until it stops.

        An `EventsDropped` says events were lost because this reader fell behind by more than
        `maxsize`: re-read what is shown. Runs on a connection of its own, opened when the
        first event is asked for (see `subscribe` to open it first).
        """
        stream = await self.subscribe(names, maxsize)
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    async def subscribe(
        self, names: Sequence[str] | None = None, maxsize: int = DEFAULT_EVENT_QUEUE
    ) -> AsyncGenerator[Event | EventsDropped, None]:
        """`events()`, returned once the engine has confirmed the subscription: every event
        published after this returns is in the stream (close it with `aclose()`)."""
        reader, writer = await _open(self.path)
        try:
            args: dict[str, Any] = {"maxsize": maxsize}
            if names is not None:
                args["events"] = list(names)
            writer.write(_dumps({"id": 1, "op": "subscribe", "args": args}))
            await writer.drain()
            response = json.loads(await reader.readline() or b"null")
            if not isinstance(response, dict) or not response.get("ok"):
                error = response.get("error") if isinstance(response, dict) else None
                raise ControlError(error or "the engine refused the subscription")
        except BaseException:
            await _close(writer)
            raise
        return _event_stream(reader, writer)

    # ------------------------------------------------------------------ AdminClient

    async def list(
        self,
        flt: MessageFilter | None = None,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 100,
    ) -> Page:
        result = await self.request(
            "list",
            filter=filter_to_json(flt or MessageFilter()),
            sort=sort,
            descending=descending,
            after=list(after) if after is not None else None,
            limit=limit,
        )
        next_after = result["next_after"]
        return Page(
            tuple(_row_from_json(r) for r in result["rows"]),
            (next_after[0], next_after[1]) if next_after is not None else None,
        )

    async def message_ids(
        self, flt: MessageFilter | None = None, *, sort: str = "arrived", descending: bool = False
    ) -> builtins.list[int]:
        out: builtins.list[int] = []
        after = None
        while True:
            result = await self.request(
                "ids",
                filter=filter_to_json(flt or MessageFilter()),
                sort=sort,
                descending=descending,
                after=after,
            )
            out.extend(result["ids"])
            after = result["next_after"]
            if after is None:
                return out

    async def overview(self, since: float) -> Overview:
        return Overview(**await self.request("overview", since=since))

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None:
        """The stored message's first `limit` bytes (at most 512 KB over the socket)."""
        wanted = _DATA_LIMIT if limit is None else min(limit, _DATA_LIMIT)
        result = await self.request("data", queue_id=queue_id, limit=wanted)
        return None if result is None else base64.b64decode(result)

    async def rows_by_id(self, ids: Sequence[int]) -> dict[int, MessageRow]:
        found: dict[int, MessageRow] = {}
        wanted = builtins.list(ids)
        for start in range(0, len(wanted), 1000):
            for r in await self.request("rows", ids=wanted[start : start + 1000]):
                row = _row_from_json(r)
                found[row.id] = row
        return found

    async def list_all(
        self, flt: MessageFilter | None = None, page_size: int = 1000
    ) -> builtins.list[MessageRow]:
        return await every_page(self.list, flt, page_size)

    async def count(self, flt: MessageFilter | None = None) -> int:
        return int(await self.request("count", filter=filter_to_json(flt or MessageFilter())))

    async def count_by_state(self) -> dict[str, int]:
        return dict(await self.request("count_by_state"))

    async def show(self, queue_id: str) -> MessageDetail | None:
        result = await self.request("show", queue_id=queue_id)
        return None if result is None else _detail_from_json(result)

    async def recipients_of(
        self, message_ids: Sequence[int]
    ) -> dict[int, builtins.list[RecipientRow]]:
        found: dict[int, builtins.list[RecipientRow]] = {}
        ids = builtins.list(message_ids)
        for start in range(0, len(ids), _RECIPIENTS_PER_REQUEST):
            chunk = ids[start : start + _RECIPIENTS_PER_REQUEST]
            result = await self.request("recipients", ids=chunk)
            found.update({i: [RecipientRow(**r) for r in rows] for i, rows in result})
        return found

    async def _act(self, op: str, flt: MessageFilter, **more: Any) -> builtins.list[str]:
        return builtins.list(await self.request(op, filter=filter_to_json(flt), **more))

    async def retry(self, flt: MessageFilter) -> builtins.list[str]:
        return await self._act("retry", flt)

    async def hold(self, flt: MessageFilter) -> builtins.list[str]:
        return await self._act("hold", flt)

    async def release(self, flt: MessageFilter) -> builtins.list[str]:
        return await self._act("release", flt)

    async def delete(self, flt: MessageFilter) -> builtins.list[str]:
        return await self._act("delete", flt)

    async def bounce(self, flt: MessageFilter, reason: str = "") -> builtins.list[str]:
        return await self._act("bounce", flt, reason=reason)

    async def suspend(
        self, destination: str, seconds: float | None = None, reason: str = ""
    ) -> tuple[str, float]:
        result = await self.request(
            "suspend", destination=destination, seconds=seconds, reason=reason
        )
        return result["destination"], float(result["until"])

    async def resume(self, destination: str) -> bool:
        return bool(await self.request("resume", destination=destination))

    async def suspended(self) -> dict[str, tuple[float, str]]:
        return {
            s["destination"]: (float(s["until"]), s["reason"])
            for s in await self.request("suspended")
        }

    async def domain_report(self) -> DomainReport:
        return _domain_report(await self.request("domain_report"))

    async def check_domains(self, domains: Sequence[str] | None = None) -> DomainReport:
        wanted = list(domains) if domains is not None else None
        return _domain_report(await self.request("check_domains", domains=wanted))

    async def suppress_add(
        self, address: str, reason: str = "added by an admin", days: float | None = None
    ) -> str:
        return str(await self.request("suppress_add", address=address, reason=reason, days=days))

    async def suppress_remove(self, address: str) -> bool:
        return bool(await self.request("suppress_remove", address=address))

    async def suppress_list(self) -> builtins.list[SuppressionRow]:
        return [SuppressionRow(**r) for r in await self.request("suppress_list")]
