"""The client side of the admin layer: `AdminClient`, the one interface the CLI and the UI call,
and `ControlClient`, which reaches a running engine's admin socket.

`ControlClient`'s admin methods are made from `operations.OPERATIONS` (each the `Admin` method
of the same name and signature, sent over the socket), so code written against `AdminClient`
runs in process (an `Admin`) or over the socket alike.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from relaybox.admin.codec import MAX_LINE, EventsDropped, dumps, event_from_json
from relaybox.admin.operations import (
    DEFAULT_EVENT_QUEUE,
    IDS_PER_REQUEST,
    OPERATIONS,
    Operation,
)
from relaybox.admin.service import Admin, IdPage, Page, every_page
from relaybox.admin.socketpath import addressable
from relaybox.events import Event
from relaybox.health.monitor import DomainReport
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import (
    MessageDetail,
    MessageFilter,
    MessageRow,
    Overview,
    RecipientRow,
    SuppressionRow,
)

__all__ = ["AdminClient", "ControlClient", "ControlError", "EventsDropped"]


class ControlError(Exception):
    """The engine refused a request (the text says why), or the connection to it was lost."""


class AdminClient(Protocol):
    """What the CLI and the TUI call: an `Admin` in process, or a `ControlClient` on the socket.

    The methods and their meaning are `admin.Admin`'s; see there. This is where their
    signatures are written for the type checker; tests/test_control.py checks that `Admin`
    has each of them and that each is an operation of the table or made of those.
    """

    async def list_messages(
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

    async def message_id_page(
        self,
        flt: MessageFilter | None = None,
        *,
        sort: str = "arrived",
        descending: bool = False,
        after: tuple[Any, int] | None = None,
        limit: int = 10_000,
    ) -> IdPage: ...

    async def rows_by_id(self, ids: Sequence[int]) -> dict[int, MessageRow]: ...

    async def message_data(self, queue_id: str, limit: int | None = None) -> bytes | None: ...

    async def overview(self, since: float) -> Overview: ...

    async def count(self, flt: MessageFilter | None = None) -> int: ...

    async def count_by_state(self) -> dict[str, int]: ...

    async def show(self, queue_id: str) -> MessageDetail | None: ...

    async def recipients_of(
        self, message_ids: Sequence[int]
    ) -> dict[int, builtins.list[RecipientRow]]: ...

    async def delivering(self, message_ids: Sequence[int]) -> dict[int, bool]: ...

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

    async def destinations(self) -> builtins.list[dict[str, Any]]: ...

    async def sessions(self) -> dict[str, Any]: ...

    async def config_file(self) -> dict[str, Any]: ...

    async def check_config_text(self, text: str) -> dict[str, Any]: ...

    async def reload_config(self, path: str | None = None) -> dict[str, Any]: ...

    async def apply_config(self, text: str, base_version: str) -> dict[str, Any]: ...

    async def config_history(self) -> builtins.list[dict[str, Any]]: ...

    async def rollback_config(self) -> dict[str, Any]: ...

    async def dkim_keygen(self, domain: str, selector: str) -> dict[str, Any]: ...

    async def suppress_add(
        self, address: str, reason: str = "added by an admin", days: float | None = None
    ) -> str: ...

    async def suppress_remove(self, address: str) -> bool: ...

    async def suppress_list(self) -> builtins.list[SuppressionRow]: ...


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


async def _transcript_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> AsyncGenerator[TranscriptLine, None]:
    """The lines of a `session_transcript` connection until its end; then it is closed."""
    try:
        while line := await reader.readline():
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("end"):
                return
            at, direction, text = data["line"]
            yield TranscriptLine(float(at), str(direction), str(text))
    finally:
        await _close(writer)


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with addressable(path) as address:
        return await asyncio.open_unix_connection(address, limit=MAX_LINE * 64)


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
            self._writer.write(dumps({"id": request_id, "op": op, "args": args}))
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
        args: dict[str, Any] = {"maxsize": maxsize}
        if names is not None:
            args["events"] = list(names)
        reader, writer = await self._open_stream(
            "subscribe", args, "the engine refused the subscription"
        )
        return _event_stream(reader, writer)

    async def session_transcript(self, session_id: str) -> AsyncGenerator[TranscriptLine, None]:
        """`Admin.session_transcript` over a connection of its own, returned once the engine
        has found the session (ControlError when it has not). Close it with `aclose()`: the
        connection closes and the engine lets go of its subscription."""
        reader, writer = await self._open_stream(
            "session_transcript",
            {"session": session_id},
            "the engine refused to stream the session",
        )
        return _transcript_stream(reader, writer)

    async def _open_stream(
        self, op: str, args: dict[str, Any], refused: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection of its own made a stream by `op`, once the engine said yes (else
        ControlError with the engine's words, or `refused`)."""
        reader, writer = await _open(self.path)
        try:
            writer.write(dumps({"id": 1, "op": op, "args": args}))
            await writer.drain()
            response = json.loads(await reader.readline() or b"null")
            if not isinstance(response, dict) or not response.get("ok"):
                error = response.get("error") if isinstance(response, dict) else None
                raise ControlError(error or refused)
        except BaseException:
            await _close(writer)
            raise
        return reader, writer

    # ------------------------------------------------------------------ AdminClient

    @property
    def admin(self) -> AdminClient:
        """This connection as the `AdminClient` the CLI and the UI call (its methods are made
        from the operations table when this module loads, so the type checker is told here)."""
        return cast(AdminClient, self)

    async def call(self, operation: Operation, kwargs: dict[str, Any]) -> Any:
        """Run `operation` with the `Admin` method's keyword arguments; its result, decoded."""
        args = operation.encode(kwargs)
        if not operation.batch:
            return operation.result.from_json(await self.request(operation.name, **args))
        # The ids in batches, so that no request outgrows a line; the answers are merged.
        found: dict[Any, Any] = {}
        ids = args["ids"]
        for start in range(0, len(ids), operation.batch):
            chunk = {**args, "ids": ids[start : start + operation.batch]}
            found.update(operation.result.from_json(await self.request(operation.name, **chunk)))
        return found

    async def list_all(
        self, flt: MessageFilter | None = None, page_size: int = 1000
    ) -> builtins.list[MessageRow]:
        """Every matching message, oldest first."""
        return await every_page(self.admin.list_messages, flt, page_size)

    async def message_ids(
        self, flt: MessageFilter | None = None, *, sort: str = "arrived", descending: bool = False
    ) -> builtins.list[int]:
        """Row ids of every matching message in order, a page of `ids` at a time."""
        out: builtins.list[int] = []
        after = None
        while True:
            page = await self.admin.message_id_page(
                flt, sort=sort, descending=descending, after=after, limit=IDS_PER_REQUEST
            )
            out.extend(page.ids)
            after = page.next_after
            if after is None:
                return out


def _remote(operation: Operation) -> Callable[..., Awaitable[Any]]:
    """The `ControlClient` method for `operation`: the `Admin` method's name, signature and
    docstring, run over the socket."""
    method = getattr(Admin, operation.method)
    signature = inspect.signature(method)

    @functools.wraps(method)
    async def remote(self: ControlClient, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        return await self.call(operation, dict(bound.arguments))

    return remote


for _operation in OPERATIONS:
    if _operation.method:
        setattr(ControlClient, _operation.method, _remote(_operation))
