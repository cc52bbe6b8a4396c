"""The message inspector: envelope, per-recipient state, the inbound session, headers, every
delivery attempt's transcript in order, and the raw message (its first part only).

A retry started here streams the new attempt's lines in as they happen (`AttemptLine`
events), then the page is re-read from the spool once the attempt is recorded.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from relaybox.admin.client import AdminClient
from relaybox.admin.service import ACTIONS
from relaybox.clock import Clock, system_clock
from relaybox.events import (
    MESSAGE_CHANGES,
    AttemptLine,
    Event,
    MessageBounced,
    MessageDeferred,
    MessageDelivered,
    MessageHeld,
)
from relaybox.message.explain import explain
from relaybox.message.headers import field_addresses
from relaybox.message.transcript import TranscriptLine
from relaybox.queue import MessageDetail
from relaybox.tui import format as fmt
from relaybox.tui.link import EngineLink
from relaybox.tui.screens.domain import DomainScreen
from relaybox.tui.widgets.key_footer import KeyFooter
from relaybox.tui.widgets.line_view import LineView

__all__ = ["InspectorScreen", "auth_domain", "detail_lines", "explained_lines"]

_WATCHED = (AttemptLine, MessageDelivered, MessageDeferred, MessageBounced, MessageHeld)
RAW_LIMIT = 64 * 1024
"""Bytes of the message the raw view shows; a large message is never loaded whole."""

_PREFIX = {"C": ("client", "C: "), "S": ("server", "S: "), "-": ("note", "-- ")}


def _transcript(lines: tuple[TranscriptLine, ...]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        kind, prefix = _PREFIX.get(line.direction, ("note", "-- "))
        out.append((kind, f"  {fmt.clock(line.at)} {prefix}{line.text}"))
    return out


# RFC 7372 §3: 5.7.20-5.7.26 are SPF/DKIM/DMARC/reverse-DNS failures, 5.7.27 a sender domain
# with a null MX (RFC 7505); receivers also use 5.7.1 (and 4.7.x while they only defer) with
# words saying so ("unauthenticated", "DMARC policy").
_AUTH_STATUS = re.compile(r"\b[45]\.7\.(?:2[0-7])\b")
_AUTH_WORDS = re.compile(
    r"\b[45]\.7\.1\b.*\b(?:spf|dkim|dmarc|authenticat\w*|ptr|reverse dns)\b", re.I
)


def auth_domain(detail: MessageDetail) -> str | None:
    """The sending domain whose DNS records a receiver's authentication refusal is about
    (the From: domain, else the envelope sender's), when a reply to this message is one."""
    replies = [r.last_reply or "" for r in detail.recipients]
    replies += [a.reply or "" for a in detail.attempts]
    if not any(_AUTH_STATUS.search(r) or _AUTH_WORDS.search(r) for r in replies):
        return None
    for name, value in detail.headers:
        if name.lower() == "from":
            found = field_addresses("From", value)
            if found and "@" in found[0]:
                return found[0].rpartition("@")[2].lower()
    sender = detail.row.sender
    return sender.rpartition("@")[2].lower() if "@" in sender else None


def explained_lines(replies: Iterable[str], width: int = 76) -> list[tuple[str, str]]:
    """What the replies most likely mean and where to fix it (`relaybox.message.explain`),
    once per kind of failure; nothing for replies no rule knows."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for reply in replies:
        found = explain(reply)
        if found is None or found.key in seen:
            continue
        seen.add(found.key)
        out += [("plain", ""), ("warn", f"  Why: {found.summary}")]
        out += [
            ("note", line)
            for line in textwrap.wrap(
                found.cause, width, initial_indent="    ", subsequent_indent="    "
            )
        ]
        out += [
            ("note", line)
            for line in textwrap.wrap(
                "Fix: " + found.fix, width, initial_indent="    ", subsequent_indent="         "
            )
        ]
    return out


def detail_lines(detail: MessageDetail, now: float) -> list[tuple[str, str]]:
    """The inspector's page for one message, as (kind, text) lines."""
    row = detail.row
    out: list[tuple[str, str]] = [
        ("head", f"Message {row.queue_id}  ({row.state})"),
        ("plain", f"  From:     <{row.sender}>" + ("  (a bounce)" if detail.is_bounce else "")),
        ("plain", f"  Size:     {row.size} bytes ({fmt.size(row.size)})"),
        ("plain", f"  Arrived:  {fmt.clock(row.arrived_at)} ({fmt.age(now - row.arrived_at)} ago)"),
        ("plain", f"  Attempts: {row.attempts}"),
        ("plain", ""),
        ("head", "Recipients"),
    ]
    kinds = {"delivered": "good", "bounced": "bad", "deferred": "warn", "held": "warn"}
    for rcpt in detail.recipients:
        nxt = ""
        if rcpt.state == "deferred" and rcpt.next_attempt_at:
            nxt = f", next {fmt.until(rcpt.next_attempt_at, now)}"
        out.append(
            (
                kinds.get(rcpt.state, "plain"),
                f"  <{rcpt.address}>  {rcpt.state}, {rcpt.attempts} "
                f"attempt{'' if rcpt.attempts == 1 else 's'}{nxt}",
            )
        )
        if rcpt.last_reply:
            out.append(("note", f"      {rcpt.last_reply}"))
    out += explained_lines(
        [r.last_reply or "" for r in detail.recipients if r.state != "delivered"]
    )
    domain = auth_domain(detail)
    if domain:
        out += [
            ("plain", ""),
            ("bad", f"  A receiver refused this over {domain}'s sender authentication"),
            ("bad", f"  (SPF, DKIM or DMARC): press a for {domain}'s DNS findings and the fix."),
        ]
    out += [
        ("plain", ""),
        ("head", "Received"),
        ("plain", f"  Client:   {detail.client_ip}:{detail.client_port} (HELO {detail.helo})"),
        ("plain", f"  Listener: {detail.listener}   Session: {detail.session_id}"),
        ("plain", f"  AUTH:     {detail.auth_user or 'none'}"),
        ("plain", f"  TLS:      {detail.tls or 'none'}"),
        ("plain", ""),
        ("head", "Headers"),
    ]
    # A folded header's value holds CRLF and tabs: one line on screen, never a raw CR.
    out += [("plain", f"  {name}: {' '.join(value.split())}") for name, value in detail.headers]
    out += [("plain", ""), ("head", "Inbound session")]
    out += _transcript(detail.inbound_transcript)
    for n, attempt in enumerate(detail.attempts, 1):
        where = attempt.destination
        if attempt.host:
            where += f" via {attempt.host} [{attempt.ip}]:{attempt.port}"
        kind = {"delivered": "good", "bounced": "bad"}.get(attempt.outcome, "warn")
        out += [
            ("plain", ""),
            ("head", f"Delivery attempt {n}: {where}"),
            (kind, f"  {fmt.clock(attempt.started_at)} {attempt.outcome}: {attempt.reply or ''}"),
        ]
        if attempt.tls:
            out.append(("note", f"  TLS: {attempt.tls}"))
        out += _transcript(attempt.transcript)
    return out


def raw_lines(data: bytes, total: int) -> list[tuple[str, str]]:
    """The first RAW_LIMIT bytes of a message, one line per line."""
    text = data.decode("utf-8", "replace")
    out = [("head", f"Raw message ({total} bytes)")]
    out += [("plain", line) for line in text.split("\r\n")]
    if total > len(data):
        out.append(("note", f"... {total - len(data)} more bytes not shown"))
    return out


class InspectorScreen(Screen[None]):
    """One message; Escape goes back to the queue."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("m", "toggle_raw", "Raw/Details"),
        Binding("r", "act('retry')", "Retry"),
        Binding("h", "act('hold')", "Hold"),
        Binding("l", "act('release')", "Release"),
        Binding("d", "act('delete')", "Delete"),
        Binding("b", "act('bounce')", "Bounce"),
        Binding("a", "domain_findings", "Domain checks"),
    ]

    def __init__(
        self,
        link: EngineLink,
        queue_id: str,
        act: Callable[[str, list[str], Callable[[list[str]], object]], object],
        *,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__()
        self.link = link
        self.queue_id = queue_id
        self._act = act
        self.clock = clock
        self.raw = False
        self.detail: MessageDetail | None = None
        self.watching = False
        """A live attempt is streaming in: its lines are appended as they come."""

    def compose(self) -> ComposeResult:
        yield Static(f"Message {fmt.printable(self.queue_id)}", id="inspector-title", markup=False)
        yield LineView(id="inspector-lines")
        yield KeyFooter()

    @property
    def admin(self) -> AdminClient:
        """The engine's admin layer (the link's current one: it may reconnect)."""
        return self.link.admin

    @property
    def view(self) -> LineView:
        return self.query_one("#inspector-lines", LineView)

    def on_mount(self) -> None:
        self.view.follow = False
        self.view.focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="inspector", exit_on_error=False)
    async def _load(self) -> None:
        try:
            if self.raw:
                data = await self.admin.message_data(self.queue_id, RAW_LIMIT)
                detail = self.detail or await self.admin.show(self.queue_id)
                total = detail.row.size if detail else len(data or b"")
                lines = raw_lines(data or b"", total) if data is not None else []
            else:
                self.detail = await self.admin.show(self.queue_id)
                lines = detail_lines(self.detail, self.clock()) if self.detail else []
        except Exception as exc:
            if self.link.connected:  # (an engine gone is said once, by the status bar)
                self.notify(f"Cannot read {self.queue_id}: {exc}", severity="error")
            return
        if not lines:
            lines = [("bad", f"Message {self.queue_id} is no longer in the spool.")]
        top = self.view.scroll_offset.y
        self.view.set_lines(lines)
        self.view.scroll_to(y=top, animate=False, immediate=True)
        self.refresh_bindings()  # `a` shows only for an authentication refusal
        state = self.detail.row.state if self.detail else "gone"
        mode = "raw" if self.raw else "details"
        self.query_one("#inspector-title", Static).update(
            f"Message {fmt.printable(self.queue_id)} · {state} · {mode} · Esc back"
        )

    def commands(self) -> Iterable[SystemCommand]:
        """The command palette's entries for this screen: actions on this message."""
        for action in ACTIONS:
            yield SystemCommand(
                f"{action.capitalize()} this message",
                f"{action.capitalize()} {self.queue_id}, the message shown",
                lambda a=action: self.action_act(a),
            )
        yield SystemCommand(
            "Raw message / details", "Switch this page between the two (m)", self.action_toggle_raw
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`a` is offered only for a message refused over sender authentication."""
        if action == "domain_findings":
            return self.detail is not None and auth_domain(self.detail) is not None
        return True

    def action_domain_findings(self) -> None:
        domain = auth_domain(self.detail) if self.detail else None
        if domain:
            self._open_domain(domain)

    @work(group="inspector-domain", exit_on_error=False)
    async def _open_domain(self, domain: str) -> None:
        try:
            report = await self.admin.domain_report()
        except Exception as exc:
            self.notify(f"Cannot read the domain checks: {exc}", severity="error")
            return
        await self.app.push_screen(DomainScreen(domain, report.of(domain), lambda: self.admin))

    def action_toggle_raw(self) -> None:
        self.raw = not self.raw
        self.reload()

    def action_act(self, action: str) -> None:
        if action == "retry":
            self._retry()
        else:
            # The page is re-read once the action has run, whatever the engine publishes.
            self._act(action, [self.queue_id], lambda _: self.reload())

    @work(exclusive=True, group="inspector-watch", exit_on_error=False)
    async def _retry(self) -> None:
        """Retry now and show the attempt's lines as they happen, then the page as recorded.

        The subscription is open before the retry is asked for, so an attempt over before
        the first line is drawn is still seen whole; and the page is re-read from the spool
        however the watch ends (the outcome published, nothing to retry, the engine gone).
        """
        worker = get_current_worker()
        self.watching = True
        try:
            stream = await self.link.subscribe(_WATCHED)
        except Exception as exc:
            self.watching = False
            self.notify(f"Cannot watch the attempt: {exc}", severity="error")
            return
        try:
            if not self.raw:
                self.view.add("head", "")
                self.view.add("head", "Retry: live attempt")
                self.view.follow = True
                self.view.scroll_end(animate=False, immediate=True)

            def retried(touched: list[str]) -> None:
                if not touched:  # (held, or finished): no attempt is coming to wait for
                    worker.cancel()

            self._act("retry", [self.queue_id], retried)
            async for event in stream:
                if getattr(event, "queue_id", None) != self.queue_id:
                    continue
                if not isinstance(event, AttemptLine):
                    break  # the outcome is recorded
                if not self.raw:
                    kind, prefix = _PREFIX.get(event.direction, ("note", "-- "))
                    self.view.add(kind, f"  {fmt.clock(event.at)} {prefix}{event.text}")
        finally:
            self.watching = False
            await stream.aclose()
            self.reload()

    def on_engine_event(self, event: Event) -> None:
        """Called by the app for engine events while this screen is open."""
        if self.watching:
            return  # the watch worker re-reads the page when the attempt is recorded
        if getattr(event, "queue_id", None) == self.queue_id and isinstance(event, MESSAGE_CHANGES):
            self.reload()
