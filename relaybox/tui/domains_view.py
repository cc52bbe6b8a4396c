"""The Domains pane (key 5): each sending domain's SPF, DKIM, DMARC and MX status at a glance,
and a detail screen with every finding, its explanation and the DNS record that fixes it.

The findings come from the engine's domain monitor (`health/monitor.py`) through the admin
layer; checking runs in the engine as async DNS, so the UI only reads and asks for re-checks.
A few dozen domains at most: a DataTable is the right widget here, unlike the queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from relaybox.admin.client import AdminClient
from relaybox.health.findings import Finding, worst
from relaybox.health.monitor import DomainReport
from relaybox.tui import format as fmt
from relaybox.tui.widgets import TextLine, printable

__all__ = ["DomainScreen", "DomainsPane", "finding_text", "status_text"]

COLUMNS = ("spf", "dkim", "dmarc", "mx", "ptr")
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


def _colours(app: object) -> dict[str, str]:
    theme = getattr(app, "current_theme", None)
    return {
        "ok": getattr(theme, "success", None) or "green",
        "warn": getattr(theme, "warning", None) or "yellow",
        "fail": f"bold {getattr(theme, 'error', None) or 'red'}",
        "error": "dim",
    }


class DomainsPane(Vertical):
    """The table of sending domains; Enter opens one, `c` checks them all again now."""

    BINDINGS = [
        Binding("c", "recheck", "Check now"),
        Binding("enter", "open", "Details", show=False),
    ]
    DEFAULT_CSS = """
    DomainsPane #domains-title { background: $panel; padding: 0 1; }
    DomainsPane DataTable { height: 1fr; }
    """

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Callable[[], float] = time.time,
        id: str | None = None,  # noqa: A002
    ) -> None:
        super().__init__(id=id)
        self._admin = admin
        self.clock = clock
        self.report = DomainReport((), {}, False)

    def compose(self) -> ComposeResult:
        yield TextLine("Domains", id="domains-title")
        table: DataTable[Text | str] = DataTable(id="domains-table", cursor_type="row")
        table.add_columns("Domain", "SPF", "DKIM", "DMARC", "MX", "PTR", "Checked")
        yield table

    @property
    def table(self) -> DataTable[Text | str]:
        return self.query_one("#domains-table", DataTable)

    def reload(self) -> None:
        """Read the latest findings from the engine (no lookups)."""
        self._load()

    @work(exclusive=True, group="domains", exit_on_error=False)
    async def _load(self) -> None:
        try:
            report = await self._admin().domain_report()
        except Exception as exc:
            self.notify(f"Cannot read the domain checks: {exc}", severity="error")
            return
        self.show_report(report)

    def show_report(self, report: DomainReport) -> None:
        self.report = report
        table = self.table
        keep = table.cursor_row
        table.clear()
        colours = _colours(self.app)
        now = self.clock()
        for domain in report.domains():
            checked = report.checked_at.get(domain)
            table.add_row(
                domain,
                *(status_text(report.status(domain, c), colours) for c in COLUMNS),
                f"{fmt.age(now - checked)} ago" if checked else "-",
                key=domain,
            )
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))
        self._title()

    def _title(self) -> None:
        report = self.report
        domains = report.domains()
        bad = [d for d in domains if worst([f.status for f in report.of(d)]) == "fail"]
        text = f"Domains · {len(domains)} sending domain{'' if len(domains) == 1 else 's'}"
        if bad:
            text += f" · {len(bad)} failing"
        if report.checking:
            text += " · checking..."
        elif not domains:
            text += " · none: add [[dkim]] keys or [[users]] allowed_senders"
        text += " · Enter details · c check now"
        self.query_one("#domains-title", TextLine).set(text)

    def action_recheck(self) -> None:
        self.recheck(None)

    @work(exclusive=True, group="domains-check", exit_on_error=False)
    async def recheck(self, domains: Sequence[str] | None) -> None:
        """Ask the engine to check now; the table shows the result when it is done."""
        self.report = DomainReport(self.report.findings, self.report.checked_at, True)
        self._title()
        try:
            report = await self._admin().check_domains(list(domains) if domains else None)
        except Exception as exc:
            self.notify(f"The domain check failed: {exc}", severity="error")
            self.reload()
            return
        self.show_report(report)

    def action_open(self) -> None:
        table = self.table
        if not table.row_count:
            return
        domain = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        self.open_domain(domain)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_domain(str(event.row_key.value))

    def open_domain(self, domain: str) -> None:
        self.app.push_screen(
            DomainScreen(domain, self.report.of(domain), self._admin, self.show_report)
        )


class DomainScreen(Screen[None]):
    """Every finding of one domain; the selected one's explanation and record below."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("y", "copy_fix", "Copy record"),
        Binding("c", "recheck", "Check now"),
    ]
    DEFAULT_CSS = """
    DomainScreen #domain-title { height: 1; background: $panel; padding: 0 1; }
    DomainScreen OptionList { height: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    DomainScreen #domain-detail { height: auto; max-height: 50%; padding: 0 1;
                                  border-top: solid $primary; }
    """

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
        yield Static(f"Domain {self.domain}", id="domain-title")
        yield OptionList(*self._options(), id="domain-findings")
        yield Static("", id="domain-detail")
        yield Footer()

    def _options(self) -> list[Option]:
        colours = _colours(self.app)
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
        self.query_one("#domain-title", Static).update(f"Domain {self.domain} · checking...")
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
        self.query_one("#domain-title", Static).update(f"Domain {self.domain}")
        if self.findings:
            options.highlighted = 0
        self._show_detail()
