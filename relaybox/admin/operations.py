"""The table of admin operations: each one's wire name, arguments, result and `Admin` method.

The socket server, the client and `docs/admin-protocol.md` are all made from `OPERATIONS`, so
adding an operation is one entry here (and the `Admin` method it calls). This module does no
I/O; `python -m relaybox.admin.operations` prints the protocol document.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from relaybox.admin.codec import (
    AFTER,
    BOOL,
    DOMAINS,
    EVENT_NAMES,
    FILTER,
    FLOAT,
    QUEUE_IDS,
    REPORT,
    REQUIRED,
    SORT,
    STR,
    BadRequest,
    Codec,
    Result,
    detail_from_json,
    id_page_from_json,
    int_range,
    only,
    page_from_json,
    plain,
    recent_attempts_from_json,
    recent_attempts_to_json,
    recent_events_from_json,
    recent_events_to_json,
    row_from_json,
    row_ids,
    suspended_to_json,
)
from relaybox.admin.service import UNTIL_RESUMED, Admin
from relaybox.health.findings import Finding
from relaybox.maillog import MailLog
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import (
    AttemptRow,
    MessageDetail,
    MessageFilter,
    MessageRow,
    Overview,
    RecipientRow,
    SuppressionRow,
)

__all__ = [
    "BY_METHOD",
    "BY_NAME",
    "DATA_LIMIT",
    "DEFAULT_EVENT_QUEUE",
    "MAX_EVENT_QUEUE",
    "OPERATIONS",
    "OPS",
    "Arg",
    "Operation",
    "Served",
    "protocol_markdown",
]

DATA_LIMIT = 512 * 1024
"""Most bytes of a stored message one `data` request returns (its base64 stays under a line)."""
IDS_PER_REQUEST = 50_000
"""Row ids in one `ids` answer (50,000 ids of JSON stay well under the longest line)."""
ROWS_PER_REQUEST = 1000
"""Row ids in one `rows` request."""
RECIPIENTS_PER_REQUEST = 5000
"""Row ids in one `recipients` request (keeps a request well under the longest line)."""
DEFAULT_EVENT_QUEUE = 10_000
"""Events a subscriber may fall behind by before the oldest are dropped, unless it says."""
MAX_EVENT_QUEUE = 100_000


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Arg:
    """One argument of an operation."""

    name: str
    """Its key in the request's `args`."""
    codec: Codec
    default: Any = REQUIRED
    """The value when the request leaves it out (REQUIRED: it must be given)."""
    param: str = ""
    """The `Admin` method's parameter, when not named as on the wire."""
    missing: str = ""
    """The error when a required argument is left out, when a plain one would not do."""

    @property
    def parameter(self) -> str:
        return self.param or self.name

    def take(self, args: dict[str, Any]) -> Any:
        """This argument's value in a request's `args` (raises BadRequest)."""
        if self.name not in args or (
            args[self.name] is None and self.codec.null_is_default and self.default is not REQUIRED
        ):
            if self.default is REQUIRED:
                raise BadRequest(self.missing or f"argument {self.name!r} is required")
            return self.default
        return self.codec.decode(args[self.name], self.name)


@dataclass(frozen=True)
class Served:
    """What an operation runs against in the engine: its admin layer, log and start time."""

    admin: Admin
    log: MailLog
    started_at: float


Runner = Callable[[Served, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One request a client may make: `op` on the wire, a method of `Admin` in process."""

    name: str
    method: str
    """The `Admin` method it calls, and the client's method of that name ("" for none)."""
    args: tuple[Arg, ...]
    result: Result
    doc: str
    """What it does, in a line of the protocol document."""
    run: Runner | None = None
    """What it does, when more than calling `method` (logging an action, say)."""
    batch: int = 0
    """The client sends its `ids` this many at a time and merges the answers (0: at once)."""
    streams: bool = False
    """Whether it turns its connection into a stream of events (`subscribe`)."""

    def decode(self, args: dict[str, Any]) -> dict[str, Any]:
        """The `Admin` method's keyword arguments for a request's `args` (raises BadRequest)."""
        only(args, self.name, *(a.name for a in self.args))
        return {a.parameter: a.take(args) for a in self.args}

    def encode(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A request's `args` for the `Admin` method's keyword arguments (the client's side)."""
        return {a.name: a.codec.encode(kwargs[a.parameter]) for a in self.args}

    async def serve(self, served: Served, args: dict[str, Any]) -> Any:
        """Run the operation on a request's `args`; the result as Python (see `result`)."""
        kwargs = self.decode(args)
        if self.run is not None:
            return await self.run(served, kwargs)
        return await getattr(served.admin, self.method)(**kwargs)


def _logged(action: str) -> Runner:
    async def run(served: Served, kwargs: dict[str, Any]) -> builtins.list[str]:
        touched: builtins.list[str] = await getattr(served.admin, action)(**kwargs)
        if touched:
            shown = " ".join(touched[:20]) + (" ..." if len(touched) > 20 else "")
            served.log.event("admin-" + action, messages=len(touched), queue_ids=shown)
        return touched

    return run


async def _suspend(served: Served, kwargs: dict[str, Any]) -> tuple[str, float]:
    key, until = await served.admin.suspend(**kwargs)
    ends = "resumed" if until >= UNTIL_RESUMED else _iso(until)
    served.log.event("admin-suspend", destination=key, until=ends)
    return key, until


async def _resume(served: Served, kwargs: dict[str, Any]) -> bool:
    admin = served.admin
    # The key first: once resumed, a destination named only by its suspension has no key.
    key = admin.destination_key(kwargs["destination"], (await admin.suspended()).keys())
    found = await admin.resume(key)
    served.log.event("admin-resume", destination=key, was_suspended=found)
    return found


async def _info(served: Served, kwargs: dict[str, Any]) -> dict[str, Any]:
    config = served.admin.config()
    return {
        "pid": os.getpid(),
        "started_at": served.started_at,
        "config_loaded_at": getattr(served.admin.live, "config_loaded_at", served.started_at),
        "generation": getattr(served.admin.live, "generation", 1),
        "listeners": [
            {"name": li.name, "address": str(a), "role": li.role, "tls": li.tls}
            for li in config.listeners
            for a in li.listen
        ],
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _listing(limit: Codec, default: int) -> tuple[Arg, ...]:
    return (
        Arg("filter", FILTER, MessageFilter(), param="flt"),
        Arg("sort", SORT, "arrived"),
        Arg("descending", BOOL, False),
        Arg("after", AFTER, None),
        Arg("limit", limit, default),
    )


def _action(name: str, doc: str) -> Operation:
    return Operation(
        name,
        name,
        (
            Arg(
                "filter",
                FILTER,
                param="flt",
                missing=f"{name} needs a filter saying which messages",
            ),
        ),
        QUEUE_IDS,
        doc,
        run=_logged(name),
    )


RELOADED = Result(
    "{outcome: applied|refused|conflict|unchanged, generation, summary, problems: [{file, "
    "line, key, message, text}], version, text, warnings: [{file, line, key, message, text}]}",
    plain,
    dict,
)

_MESSAGE_IDS = Arg(
    "ids",
    row_ids(
        RECIPIENTS_PER_REQUEST,
        f"ids must be a list of at most {RECIPIENTS_PER_REQUEST} message row ids "
        "(the `id` of list rows)",
    ),
    param="message_ids",
    missing=f"ids must be a list of at most {RECIPIENTS_PER_REQUEST} message row "
    "ids (the `id` of list rows)",
)
"""Row ids of listed messages, in batches a request line holds (recipients, delivering)."""

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "info",
        "",
        (),
        Result(
            "{pid, started_at, config_loaded_at, generation, listeners: [{name, address, "
            "role, tls}]}"
        ),
        "The engine serving the socket.",
        run=_info,
    ),
    Operation(
        "overview",
        "overview",
        (Arg("since", FLOAT, 0.0),),
        Result("overview", plain, lambda data: Overview(**data)),
        "Counts by state, delivered and bounced since `since`, the oldest deferred arrival.",
    ),
    Operation(
        "data",
        "message_data",
        (Arg("queue_id", STR), Arg("limit", int_range(1, DATA_LIMIT, clamp=True), DATA_LIMIT)),
        Result(
            "base64 or null",
            lambda data: None if data is None else base64.b64encode(data).decode("ascii"),
            lambda text: None if text is None else base64.b64decode(text),
        ),
        "The stored message's first `limit` bytes.",
    ),
    Operation(
        "list",
        "list_messages",
        _listing(int_range(1, 10_000), 100),
        Result("{rows, next_after}", plain, page_from_json),
        "A page of messages; pass its `next_after` as `after` for the next.",
    ),
    Operation(
        "ids",
        "message_id_page",
        _listing(int_range(1, IDS_PER_REQUEST), IDS_PER_REQUEST),
        Result("{ids, next_after}", plain, id_page_from_json),
        "Row ids of the matching messages in order, a page at a time.",
    ),
    Operation(
        "rows",
        "rows_by_id",
        (
            Arg(
                "ids",
                row_ids(
                    ROWS_PER_REQUEST,
                    f"ids must be a list of at most {ROWS_PER_REQUEST} message row ids",
                ),
                missing=f"ids must be a list of at most {ROWS_PER_REQUEST} message row ids",
            ),
        ),
        Result(
            "[row]",
            lambda found: plain(builtins.list(found.values())),
            lambda rows: {(row := row_from_json(r)).id: row for r in rows},
        ),
        "The listing rows of these messages (those that still exist).",
        batch=ROWS_PER_REQUEST,
    ),
    Operation(
        "count",
        "count",
        (Arg("filter", FILTER, MessageFilter(), param="flt"),),
        Result("int", plain, int),
        "How many messages match.",
    ),
    Operation(
        "count_by_state",
        "count_by_state",
        (),
        Result("{state: int}", plain, dict),
        "Messages per state.",
    ),
    Operation(
        "show",
        "show",
        (Arg("queue_id", STR),),
        Result("detail or null", plain, lambda d: None if d is None else detail_from_json(d)),
        "Everything about one message: envelope, recipients, headers, transcripts, attempts.",
    ),
    Operation(
        "recipients",
        "recipients_of",
        (_MESSAGE_IDS,),
        Result(
            "[[id, [recipient]]]",
            lambda found: plain([[i, rows] for i, rows in found.items()]),
            lambda pairs: {i: [RecipientRow(**r) for r in rows] for i, rows in pairs},
        ),
        "The recipients of many listed messages at once, by row id (the `id` of list rows).",
        batch=RECIPIENTS_PER_REQUEST,
    ),
    Operation(
        "delivering",
        "delivering",
        (_MESSAGE_IDS,),
        Result(
            "[id]",
            lambda found: plain(builtins.list(found)),
            lambda ids: dict.fromkeys(ids, True),
        ),
        "Which of these messages (row ids) are being delivered right now: mailq's `*`.",
        batch=RECIPIENTS_PER_REQUEST,
    ),
    _action("retry", "Make every queued or deferred recipient due now."),
    _action("hold", "Keep every queued or deferred recipient until released."),
    _action("release", "Make every held recipient due now."),
    _action("delete", "Remove the messages, bodies and transcripts; nobody is told."),
    Operation(
        "bounce",
        "bounce",
        (
            Arg(
                "filter", FILTER, param="flt", missing="bounce needs a filter saying which messages"
            ),
            Arg("reason", STR, ""),
        ),
        QUEUE_IDS,
        "Fail every recipient not yet delivered or bounced now; the sender gets a DSN.",
        run=_logged("bounce"),
    ),
    Operation(
        "suspend",
        "suspend",
        (Arg("destination", STR), Arg("seconds", FLOAT, None), Arg("reason", STR, "")),
        Result(
            "{destination, until}",
            lambda found: {"destination": found[0], "until": found[1]},
            lambda data: (data["destination"], float(data["until"])),
        ),
        "Defer mail to a destination for `seconds` (null: until resumed).",
        run=_suspend,
    ),
    Operation(
        "resume",
        "resume",
        (Arg("destination", STR),),
        Result("bool (was suspended)", plain, bool),
        "Deliver to a destination again and retry the mail its suspension deferred.",
        run=_resume,
    ),
    Operation(
        "destinations",
        "destinations",
        (),
        Result(
            "[{destination, domains, queued, active, deferred, held, oldest_at, "
            "next_attempt_at, causes: [{reply, count, explained}], suspended_until, "
            "suspended_reason, "
            "attempts_now, connections, connection_limit, pace, started_last_minute, tls, "
            "queue_ids (the first 1000)}]",
            plain,
            list,
        ),
        "The unfinished queue by next hop, most deferred first (qshape's view, with causes).",
    ),
    Operation(
        "recent_attempts",
        "recent_attempts",
        (Arg("destination", STR), Arg("limit", int_range(1, 200), 20)),
        Result(
            "[{queue_id, attempt: {started_at, finished_at, destination, host, ip, port, tls, "
            "recipients, outcome, reply, transcript}}]",
            recent_attempts_to_json,
            recent_attempts_from_json,
        ),
        "The newest attempts to a destination key (among the last 50,000), newest first.",
    ),
    Operation(
        "sessions",
        "sessions",
        (),
        Result(
            "{at, inbound: [{session_id, listener, client_ip, client_port, started_at, tls, "
            "auth_user, helo, command, bytes_received, messages}], outbound: [{connection_id, "
            "destination, host, ip, port, state, queue_id, tls, messages, opened_at}]}",
            plain,
            dict,
        ),
        "The inbound SMTP sessions and delivery's connections open now, oldest first (text "
        "from clients as they sent it, `command` cut at 200 characters).",
    ),
    Operation(
        "session_transcript",
        "",
        (Arg("session", STR),),
        Result("{}, then the lines"),
        "Turn the connection into a stream of one open session's (`session_id`) or outbound "
        "connection's (`connection_id`) transcript: its lines so far, then each as it is said, "
        'one `{"line": [at, direction, text]}` a line, and `{"end": true}` when it closes.',
        streams=True,
    ),
    Operation(
        "log_tail",
        "log_tail",
        (
            Arg("limit", int_range(1, 10_000, clamp=True), 1000),
            Arg("before", int_range(0, 2**62), 0),
        ),
        Result(
            "{epoch, events: [event]}",
            recent_events_to_json,
            recent_events_from_json,
        ),
        "The engine's latest log events (what the Log pane shows), oldest first, with `seq` "
        "below `before` (0: any): a page of at most 256 KB; the next page back is "
        "`before` = its first event's `seq`. `epoch` names the engine's run.",
    ),
    Operation(
        "suspended",
        "suspended",
        (),
        Result(
            "[{destination, until, reason}]",
            suspended_to_json,
            lambda rows: {r["destination"]: (float(r["until"]), r["reason"]) for r in rows},
        ),
        "Destinations suspended now.",
    ),
    Operation(
        "domain_report",
        "domain_report",
        (),
        REPORT,
        "The latest findings about the sending domains.",
    ),
    Operation(
        "check_domains",
        "check_domains",
        (Arg("domains", DOMAINS, None),),
        REPORT,
        "Check these sending domains (default: every one) now.",
    ),
    Operation(
        "config_file",
        "config_file",
        (),
        Result("{path, exists, text, version, generation}", plain, dict),
        "The engine's config file as it is now, and the generation in force.",
    ),
    Operation(
        "check_config_text",
        "check_config_text",
        (Arg("text", STR),),
        Result("{errors, warnings, summary, queue_effect}", plain, dict),
        "What applying `text` as the config would do: each problem as `file:line: key: "
        "message`, what would change, and the queued mail that would move (`{from, to, "
        "messages, recipients}`); nothing changes.",
    ),
    Operation(
        "reload",
        "reload_config",
        (Arg("path", STR, None),),
        RELOADED,
        "Reload the config file, as SIGHUP does; `path` (optional) must name the engine's "
        "file. Answers when the new config is in force (`applied`) or `refused`.",
    ),
    Operation(
        "apply_config",
        "apply_config",
        (Arg("text", STR), Arg("base_version", STR)),
        RELOADED,
        "Write `text` as the config file (atomically, the old one kept as a backup) and "
        "reload it; `conflict` (nothing written) when the file is no longer `base_version`.",
    ),
    Operation(
        "config_history",
        "config_history",
        (),
        Result("[{generation, at, trigger, summary, version}]", plain, list),
        "The config versions applied, newest first.",
    ),
    Operation(
        "rollback_config",
        "rollback_config",
        (),
        RELOADED,
        "Apply again the version before the one in force (validated and reloaded).",
    ),
    Operation(
        "dkim_keygen",
        "dkim_keygen",
        (Arg("domain", STR), Arg("selector", STR)),
        Result("{private_key, record_name, record}", plain, dict),
        "Make a 2048-bit RSA signing key in the state directory; its path and DNS record.",
    ),
    Operation(
        "suppress_add",
        "suppress_add",
        (Arg("address", STR), Arg("reason", STR, "added by an admin"), Arg("days", FLOAT, None)),
        Result("address as stored", plain, str),
        "Refuse mail to an address at RCPT (for `days`, null: for ever).",
    ),
    Operation(
        "suppress_remove",
        "suppress_remove",
        (Arg("address", STR),),
        Result("bool", plain, bool),
        "Accept mail to an address again.",
    ),
    Operation(
        "suppress_list",
        "suppress_list",
        (),
        Result("[entry]", plain, lambda rows: [SuppressionRow(**r) for r in rows]),
        "Every suppression entry.",
    ),
    Operation(
        "subscribe",
        "",
        (
            Arg("events", EVENT_NAMES, None),
            Arg("maxsize", int_range(1, MAX_EVENT_QUEUE), DEFAULT_EVENT_QUEUE),
        ),
        Result("{maxsize}, then the event stream"),
        "Turn the connection into a stream of events (only `events`, default all).",
        streams=True,
    ),
)
"""Every operation, in the order the protocol document (and an unknown op's error) names them."""

OPS: tuple[str, ...] = tuple(op.name for op in OPERATIONS)
"""Every op a request may name."""
BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
BY_METHOD: dict[str, Operation] = {op.method: op for op in OPERATIONS if op.method}

# ---------------------------------------------------------------------- the protocol document

_PREAMBLE = """\
# The admin protocol

<!-- Made by `python -m relaybox.admin.operations` from relaybox/admin/operations.py; do not
edit by hand (tests/test_control.py checks that this file is what the table makes). -->

A running engine serves its admin layer on `state_dir/admin.sock` (a Unix socket, mode 0600).
The protocol is JSON lines. A request is `{"id": 1, "op": "count", "args": {...}}`; its
response `{"id": 1, "ok": true, "result": ...}` or `{"id": 1, "ok": false, "error": "..."}`.
Requests on one connection are answered as they finish (match them by `id`); a bad line gets
an error response and the connection stays usable.

`subscribe` turns its connection into a stream of events, one object a line:
`{"event": "MessageAccepted", "at": ..., "queue_id": ...}`, the fields of the `events`
dataclass of that name; `{"event": "Dropped", "count": n}` says that `n` events were lost to a
slow reader, who should re-read a snapshot. Every event's `seq` is its place among all the
engine published since it started: `log_tail`'s recent events and a stream opened before it join
without a gap or a double by it.

A `filter` is `{"queue_ids": [...], "domain": "", "states": [...], "text": "",
"recipients": [...]}`, every key optional; without `states` it means the unfinished messages,
with `"states": []` messages in any state. Times are seconds since the epoch. An argument
left out (or null, but for `filter`) takes its default.
"""


def _arg_doc(arg: Arg) -> str:
    if arg.default is REQUIRED:
        return f"`{arg.name}` ({arg.codec.shape}, required)"
    default = arg.default
    if isinstance(default, MessageFilter):
        shown = "unfinished messages"
    else:
        shown = "null" if default is None else repr(default).replace("'", '"')
        shown = {"True": "true", "False": "false"}.get(shown, shown)
    return f"`{arg.name}` ({arg.codec.shape}, default {shown})"


_VALUES: tuple[tuple[str, type], ...] = (
    ("row", MessageRow),
    ("recipient", RecipientRow),
    ("detail", MessageDetail),
    ("attempt (in a detail)", AttemptRow),
    ("transcript line (in a detail)", TranscriptLine),
    ("overview", Overview),
    ("entry (suppression)", SuppressionRow),
    ("finding", Finding),
)
"""The objects results are made of: each is the dataclass of that name, field for field."""


def protocol_markdown() -> str:
    """The protocol document (`docs/admin-protocol.md`), made from `OPERATIONS`."""
    lines = [_PREAMBLE, "## Operations", ""]
    lines += ["| op | arguments | result | what it does |", "|---|---|---|---|"]
    for op in OPERATIONS:
        args = "<br>".join(_arg_doc(a) for a in op.args) or "-"
        lines.append(f"| `{op.name}` | {args} | {op.result.shape} | {op.doc} |")
    lines += [
        "",
        "## Values",
        "",
        "Objects with these keys (a transcript line is a list of its values, in order):",
        "",
    ]
    for name, cls in _VALUES:
        names = getattr(cls, "_fields", None) or [f.name for f in dataclasses.fields(cls)]
        keys = ", ".join(names)
        lines.append(f"- {name} (`{cls.__name__}`): {keys}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(protocol_markdown(), end="")
