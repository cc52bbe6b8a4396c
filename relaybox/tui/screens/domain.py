"""The domain detail screen: every finding of one sending domain, the selected one's
explanation and the DNS record that fixes it (`y` copies it). It reads nothing itself but
a re-check of its domain; the findings come from the Domains pane."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from relaybox.admin.client import AdminClient
from relaybox.health.findings import Finding
from relaybox.health.monitor import DomainReport
from relaybox.tui.format import printable
from relaybox.tui.widgets.key_footer import KeyFooter

__all__ = ["DomainScreen", "finding_text", "status_text", "theme_colours"]

_LABEL = {"ok": "ok", "warn": "warn", "fail": "FAIL", "error": "error", None: "-"}


def status_text(status: str | None, colours: dict[str, str]) -> Text:
    """A status word in its colour (and in capitals for a failure, to read without colour)."""
    return Text(_LABEL.get(status, status or "-"), style=colours.get(status or "", ""))


def finding_text(finding: Finding) -> str:
    """One finding as a line of the detail list: status, check, selector or IP, summary."""
    what: str = finding.check
    if finding.selector:
        what += f" {finding.selector}"
    if finding.ip:
        what += f" {finding.ip}"
    return f"{_LABEL[finding.status]:<5} {what:<18} {printable(finding.summary)}"


def theme_colours(app: object) -> dict[str, str]:
    """The status words' colours, from the app's current theme."""
    theme = getattr(app, "current_theme", None)
    return {
        "ok": getattr(theme, "success", None) or "green",
        "warn": getattr(theme, "warning", None) or "yellow",
        "fail": f"bold {getattr(theme, 'error', None) or 'red'}",
        "error": "dim",
    }


class DomainScreen(Screen[None]):
    """Every finding of one domain; the selected one's explanation and record below."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("y", "copy_fix", "Copy record"),
        Binding("c", "recheck", "Check now"),
    ]

    def __init__(
        self,
        domain: str,
        findings: list[Finding],
        admin: Callable[[], AdminClient],
        on_report: Callable[[DomainReport], None] | None = None,
    ) -> None:
        """Args:
        domain: the domain shown.
        findings: what is known of it now (empty: not checked yet).
        admin: the engine's admin layer, for a re-check (`c`).
        on_report: told of a re-check's whole report (the Domains pane's table).
        """
        super().__init__()
        self.domain = domain
        self.findings = findings
        self._admin = admin
        self._on_report = on_report

    def compose(self) -> ComposeResult:
        yield Static(f"Domain {printable(self.domain)}", id="domain-title", markup=False)
        # The list takes the rows its findings need (up to half the screen); the selected
        # finding's explanation and record get the rest, and scroll when longer.
        yield OptionList(*self._options(), id="domain-findings")
        with VerticalScroll(id="domain-detail-box", can_focus=False):
            yield Static("", id="domain-detail")
        yield KeyFooter()

    def _options(self) -> list[Option]:
        colours = theme_colours(self.app)
        if not self.findings:
            return [Option("Not checked yet: press c to check now.", disabled=True)]
        return [
            Option(Text(finding_text(f), style=colours.get(f.status, ""), no_wrap=True))
            for f in self.findings
        ]

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        if self.findings:
            options.highlighted = next(
                (i for i, f in enumerate(self.findings) if f.status != "ok"), 0
            )
        self._show_detail()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_detail()

    @property
    def selected(self) -> Finding | None:
        index = self.query_one(OptionList).highlighted
        if index is None or not 0 <= index < len(self.findings):
            return None
        return self.findings[index]

    def _show_detail(self) -> None:
        finding = self.selected
        detail = self.query_one("#domain-detail", Static)
        if finding is None:
            detail.update("")
            return
        text = Text()
        text.append(f"{finding.check.upper()}: {_LABEL[finding.status]}\n", style="bold")
        text.append(printable(finding.summary) + "\n")
        if finding.fix:
            text.append("\nPublish this record (y copies it):\n", style="bold")
            text.append(printable(finding.fix))
        detail.update(text)

    def action_copy_fix(self) -> None:
        finding = self.selected
        if finding is None or not finding.fix:
            self.notify("This finding needs no change.")
            return
        # OSC 52: the terminal puts it on the clipboard of the admin's own machine over SSH.
        self.app.copy_to_clipboard(finding.fix)
        self.notify("The record is on the clipboard (if the terminal allows OSC 52).")

    def action_recheck(self) -> None:
        self._recheck()

    @work(exclusive=True, group="domain-check", exit_on_error=False)
    async def _recheck(self) -> None:
        title = self.query_one("#domain-title", Static)
        title.update(f"Domain {printable(self.domain)} · checking...")
        try:
            report = await self._admin().check_domains([self.domain])
        except Exception as exc:
            self.notify(f"The domain check failed: {exc}", severity="error")
            return
        if self._on_report is not None:
            self._on_report(report)
        self.findings = report.of(self.domain)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(self._options())
        title.update(f"Domain {printable(self.domain)}")
        if self.findings:
            options.highlighted = 0
        self._show_detail()
