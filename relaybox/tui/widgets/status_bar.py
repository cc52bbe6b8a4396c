"""The status bar: listeners, counts by state, mail in and out per minute with their
sparklines, where the engine runs, and that delivery is paused when the spool cannot write. It
reads the queue's overview on its own timer; the event bridge only marks it stale, counts
arrivals and deliveries, and says when the engine is gone or delivery paused.
"""

from __future__ import annotations

import collections
import re
import time

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline

from relaybox.clock import Clock, system_clock
from relaybox.tui import format as fmt
from relaybox.tui.link import EngineLink, ListenerInfo
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["Rates", "StatusBar"]

_FOLDER = re.compile(r"^/[^:]*/")
"""The folders of a problem's file ("/etc/relaybox/relaybox.toml:3: ...")."""
_RATE_BUCKET = 10.0  # seconds per sparkline bar
_RATE_BARS = 30


class Rates:
    """Messages in and out, counted per ten-second bucket; the last thirty buckets are the
    sparklines' bars. Counting is an increment: it runs once per message under load."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.bars: dict[str, collections.deque[float]] = {
            "in": collections.deque([0.0] * _RATE_BARS, maxlen=_RATE_BARS),
            "out": collections.deque([0.0] * _RATE_BARS, maxlen=_RATE_BARS),
        }
        """Finished buckets, oldest first, by direction ("in", "out")."""
        self._bucket_start = clock()
        self._counts = {"in": 0, "out": 0}

    def count(self, direction: str) -> None:
        """One message in (accepted) or out (delivered)."""
        self.roll()
        self._counts[direction] += 1

    def roll(self) -> None:
        """Close the buckets whose time is up (a long quiet spell starts again from now)."""
        now = self._clock()
        while now - self._bucket_start >= _RATE_BUCKET:
            for direction in ("in", "out"):
                self.bars[direction].append(float(self._counts[direction]))
                self._counts[direction] = 0
            self._bucket_start += _RATE_BUCKET
            if now - self._bucket_start > _RATE_BUCKET * _RATE_BARS:
                self._bucket_start = now

    def per_minute(self, direction: str) -> float:
        """The rate over the last minute's finished buckets."""
        return sum(list(self.bars[direction])[-6:]) * 60 / (_RATE_BUCKET * 6)


class StatusBar(Horizontal):
    """Listeners, counts by state, rates in and out, where the engine runs."""

    def __init__(
        self,
        link: EngineLink,
        *,
        clock: Clock = system_clock,
        deferred_warning: int = 100,
        oldest_deferred_warning: float = 4 * 3600,
        reconnect_every: float = 2.0,
        id: str | None = None,  # noqa: A002 (Textual's name for it)
    ) -> None:
        """Args:
        link: the engine, for the overview, the listeners and where it runs.
        deferred_warning: more deferred messages than this turn the bar to a warning.
        oldest_deferred_warning: so does a deferred message older than this (seconds).
        reconnect_every: how often the bridge looks for a gone engine (said on the bar).
        """
        super().__init__(id=id)
        self.link = link
        self.clock = clock
        self.deferred_warning = deferred_warning
        self.oldest_deferred_warning = oldest_deferred_warning
        self.reconnect_every = reconnect_every
        self.rates = Rates(clock)
        self.listeners: list[ListenerInfo] = []
        self.engine_gone = False
        """The engine went away (attached); the event bridge sets and clears it."""
        self.stale = False
        """Mail moved since the overview was read (the event bridge sets it)."""
        self.delivery_paused: str | None = None
        """Why delivery is paused (the spool refused an outcome), None when it is not; the
        event bridge sets and clears it."""
        self.config_refused: str | None = None
        """Why the last reload was refused (its first problem), None once one applies; the
        event bridge sets and clears it."""
        self._read_at = 0.0
        self._status: list[fmt.Part] = []
        """The last counts read, shown while the engine cannot be read."""

    def compose(self) -> ComposeResult:
        with Vertical(id="status-text"):
            yield TextLine(id="status-line-1")
            yield TextLine(id="status-line-2")
        with Vertical(classes="rate-label"):
            yield TextLine("in")
            yield TextLine(id="rate-in-value")
        yield Sparkline([0.0], id="rate-in")
        with Vertical(classes="rate-label"):
            yield TextLine("out")
            yield TextLine(id="rate-out-value")
        yield Sparkline([0.0], id="rate-out")

    def start(self) -> None:
        """Read the overview now and keep it fresh (once the link is open)."""
        self.set_interval(0.5, self._tick)
        self.refresh_overview()

    @work(exit_on_error=False)
    async def load_listeners(self) -> None:
        """Read the engine's listeners (at start, and when it is back after going away)."""
        try:
            self.listeners = await self.link.listeners()
        except Exception as exc:
            self.notify(f"Cannot read the engine's listeners: {exc}", severity="warning")
        self.refresh_overview()

    def _tick(self) -> None:
        # A second after mail moves, and every 2 s anyway (ages, rates).
        since = time.monotonic() - self._read_at
        if (self.stale and since >= 1.0) or since >= 2.0:
            self.refresh_overview()

    def refresh_overview(self) -> None:
        """Read the queue's overview again now."""
        self.stale = False
        self._read_at = time.monotonic()
        self._load_overview()

    @work(exclusive=True, group="overview", exit_on_error=False)
    async def _load_overview(self) -> None:
        midnight = time.mktime(time.localtime(self.clock())[:3] + (0, 0, 0, 0, 0, -1))
        try:
            overview = await self.link.admin.overview(midnight)
        except Exception:
            overview = None
        self.show(overview)

    def show(self, overview: object | None) -> None:
        """Bring both lines and the rates up to date; `overview` None: the engine could not
        be read (the last counts stay, or the bar says the engine is gone)."""
        self.rates.roll()
        now = self.clock()
        shown = [
            f"{li.role} {li.address}" + (f" ({li.tls})" if li.tls != "none" else "")
            for li in self.listeners
        ]
        listeners = ", ".join(shown) or "no listeners"
        some = f"{shown[0]} +{len(shown) - 1}" if len(shown) > 1 else listeners
        mode = self.link.describe()
        if self.engine_gone:
            mode += " · ENGINE GONE (stopped, or the connection lost)"
        up = fmt.age(now - self.link.started_at)
        loaded = fmt.age(now - self.link.config_loaded_at)
        gen = self.link.config_generation
        # Each piece ranked (0 most telling): a narrow terminal shortens or leaves out the
        # least telling first, and never cuts a word (fmt.fit).
        first: list[fmt.Part] = [
            (0, ("relaybox",)),
            (0, (mode,)),
            (2, (listeners, some, "")),
            (3, (f"up {up}", "")),
            (1, (f"config gen {gen} loaded {loaded} ago", f"config gen {gen}")),
        ]
        warning = False
        second: list[fmt.Part]
        if overview is not None:
            by_state = getattr(overview, "by_state", {})
            deferred = by_state.get("deferred", 0)
            oldest = getattr(overview, "oldest_deferred_at", None)
            oldest_age = now - oldest if oldest else 0.0
            warning = deferred > self.deferred_warning or oldest_age > self.oldest_deferred_warning
            sent = getattr(overview, "delivered_since", 0)
            bounced = getattr(overview, "bounced_since", 0)
            second = [
                (1, (f"queued {by_state.get('queued', 0)}", "")),
                (3, (f"active {by_state.get('active', 0)}", "")),
                (
                    0,
                    (
                        f"deferred {deferred}"
                        + (f" (oldest {fmt.age(oldest_age)})" if oldest else ""),
                        f"deferred {deferred}",
                        "",
                    ),
                ),
                (1, (f"held {by_state.get('held', 0)}", "")),
                (2, (f"today: {sent} sent, {bounced} bounced", f"today {sent} sent", "")),
            ]
            self._status = second
        elif self.engine_gone:
            warning = True
            second = [
                (
                    0,
                    (
                        "showing what was last read · looking for the engine every "
                        f"{self.reconnect_every:.0f} s",
                        "showing what was last read",
                    ),
                )
            ]
        else:
            second = self._status or [(0, ("reading the queue…",))]
        if self.config_refused is not None:
            warning = True
            # The problem is the point: its file is named without its folder, and the rest
            # of the line gives way to it (the notification and the Log pane have it whole).
            short = _FOLDER.sub("", self.config_refused)
            second = [
                (
                    0,
                    (
                        f"CONFIG REFUSED, gen {gen} still in force: {self.config_refused}",
                        f"CONFIG REFUSED, gen {gen} still in force: {short}",
                        f"CONFIG REFUSED: {short}",
                    ),
                ),
                *second,
            ]
        if self.delivery_paused is not None:
            # First on the line: nothing is being sent until the spool can write again.
            warning = True
            second = [
                (
                    0,
                    (
                        f"DELIVERY PAUSED: the spool cannot write ({self.delivery_paused})",
                        f"DELIVERY PAUSED: {self.delivery_paused}",
                    ),
                ),
                *second,
            ]
        wide = self.app.size.width >= 120  # the sparklines only where they leave the text room
        # The text's room: the bar less the rates (when shown) and the padding.
        width = max(20, self.app.size.width - (2 + (2 * (7 + 9) if wide else 0)))
        # Only what changed is touched: under load this runs twice a second beside the relay.
        if self.has_class("warning") != warning:
            self.set_class(warning, "warning")
        for widget in self.query(".rate-label, Sparkline"):
            if widget.display != wide:
                widget.display = wide
        self.query_one("#status-line-1", TextLine).set(fmt.fit(first, width))
        self.query_one("#status-line-2", TextLine).set(fmt.fit(second, width))
        for direction in ("in", "out"):
            self.query_one(f"#rate-{direction}-value", TextLine).set(
                f"{self.rates.per_minute(direction):.0f}/min"
            )
        for direction in ("in", "out"):
            spark = self.query_one(f"#rate-{direction}", Sparkline)
            data = list(self.rates.bars[direction])
            if list(spark.data or ()) != data:
                spark.data = data

    def text(self) -> str:
        """The two lines of text, as shown."""
        return "\n".join(self.query_one(f"#status-line-{n}", TextLine).text for n in (1, 2))
