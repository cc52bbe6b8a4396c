"""The admin socket's server: a running engine's `Admin` and event bus served as JSON lines on
`state_dir/admin.sock` (see docs/admin-protocol.md).

Which operations there are, and their arguments and results, is `operations`'s table; this
module frames requests, runs them (several at once per connection) and streams events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from relaybox.admin.codec import EVENT_TYPES, MAX_LINE, BadRequest, dumps, encode_events
from relaybox.admin.operations import BY_NAME, OPS, Operation, Served
from relaybox.admin.service import Admin
from relaybox.admin.socketpath import addressable
from relaybox.clock import Clock, system_clock
from relaybox.events import Event, EventBus
from relaybox.maillog import MailLog
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import SpoolError

__all__ = ["MAX_CLIENTS", "MAX_IN_FLIGHT", "MAX_LINE", "ControlServer"]

SOCKET_MODE = 0o600
MAX_IN_FLIGHT = 16
"""Requests of one connection worked on at once; more wait their turn."""
MAX_CLIENTS = 32
"""Connections served at once (the TUI takes two); one more gets an error line and is closed."""
_EVENTS_ENCODED_INLINE = 64  # a larger batch is encoded in a thread


class ControlServer:
    """Serves one engine's `Admin` and event bus on a Unix socket (mode 0600)."""

    def __init__(
        self, admin: Admin, bus: EventBus, path: Path, log: MailLog, clock: Clock = system_clock
    ) -> None:
        self.admin = admin
        self.bus = bus
        self.path = path
        self.log = log
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.started_at = clock()
        """When the engine serving this socket started (wall clock), for `info`."""
        self._served = Served(admin, log, self.started_at)

    async def start(self) -> None:
        """Listen on `path`, replacing a socket file left by an engine that crashed.

        Only the engine holding the state directory's lock calls this, so a file already at
        `path` belongs to no running engine. Raises OSError when the socket cannot be made.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with addressable(self.path) as address:
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
                if op == "session_transcript":
                    if working:
                        await asyncio.wait(working)
                    if await self._stream_transcript(request_id, args, reader, writer):
                        break  # the session ended or the client hung up
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
            operation = BY_NAME[op]
            result = await operation.serve(self._served, args)
        except (BadRequest, ValueError, SpoolError) as exc:
            response = _failure(request_id, str(exc))
        except Exception as exc:
            self.log.exception("admin-request-failed", op=op)
            response = _failure(request_id, f"internal error in {op}: {exc}")
        else:
            # A page of rows is milliseconds of encoding: not on the loop that serves SMTP.
            data = await asyncio.to_thread(_answer_line, request_id, operation, result)
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
            kwargs = BY_NAME["subscribe"].decode(args)
            names, maxsize = kwargs["events"], kwargs["maxsize"]
            unknown = [n for n in names or () if n not in EVENT_TYPES]
            if unknown:
                raise BadRequest(
                    f"no event {unknown[0]!r}; events: {', '.join(sorted(EVENT_TYPES))}"
                )
        except BadRequest as exc:
            await _send(writer, _failure(request_id, str(exc)))
            return False
        wanted = frozenset(names) if names else None
        subscription = self.bus.subscribe(
            maxsize, None if wanted is None else [EVENT_TYPES[n] for n in wanted]
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
                    data = await asyncio.to_thread(encode_events, batch, dropped, wanted)
                else:
                    data = encode_events(batch, dropped, wanted)
                if data:
                    writer.write(data)
                    await writer.drain()
        finally:
            if get is not None:
                get.cancel()
            subscription.close()
            hangup.cancel()

    async def _stream_transcript(
        self,
        request_id: Any,
        args: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Send one session's lines until it closes or the client hangs up (True), or answer
        with an error (False) when there is no such session open."""
        try:
            session_id = BY_NAME["session_transcript"].decode(args)["session"]
            lines = self.admin.session_transcript(session_id)
        except (BadRequest, ValueError) as exc:
            await _send(writer, _failure(request_id, str(exc)))
            return False
        hangup = asyncio.create_task(_read_until_eof(reader))
        step: asyncio.Task[TranscriptLine] | None = None
        try:
            await _send(writer, {"id": request_id, "ok": True, "result": {}})
            while True:
                step = asyncio.create_task(anext(lines))
                await asyncio.wait({step, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return True
                try:
                    line = step.result()
                except StopAsyncIteration:
                    await _send(writer, {"end": True})
                    return True
                writer.write(dumps({"line": list(line)}))
                await writer.drain()
        finally:
            if step is not None and not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            await lines.aclose()
            hangup.cancel()


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


def _answer_line(request_id: Any, operation: Operation, result: Any) -> bytes:
    return dumps({"id": request_id, "ok": True, "result": operation.result.to_json(result)})


def _failure(request_id: Any, error: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": error}


async def _send(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
    writer.write(dumps(response))
    await writer.drain()


async def _read_until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, ValueError):
        while await reader.read(65536):
            pass  # a subscriber has nothing more to say; whatever it sends is ignored
