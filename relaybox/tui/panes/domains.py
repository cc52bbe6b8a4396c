"""The Domains pane (key 5): each sending domain's SPF, DKIM, DMARC and MX status at a glance;
Enter opens the domain's detail screen (`screens/domain.py`).

The findings come from the engine's domain monitor (`health/monitor.py`) through the admin
layer; checking runs in the engine as async DNS, so the UI only reads and asks for re-checks.
A few dozen domains at most: a DataTable is the right widget here, unlike the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable

from relaybox.admin.client import AdminClient
from relaybox.clock import Clock, system_clock
from relaybox.health.findings import worst
from relaybox.health.monitor import DomainReport
from relaybox.tui import format as fmt
from relaybox.tui.screens.domain import DomainScreen, status_text, theme_colours
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["COLUMNS", "DomainsPane"]

COLUMNS = ("spf", "dkim", "dmarc", "mx", "ptr")


class DomainsPane(Vertical):
    """The table of sending domains; Enter opens one, `c` checks them all again now."""

    BINDINGS = [
        Binding("c", "recheck", "Check now"),
        Binding("enter", "open", "Details", show=False),
    ]

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        clock: Clock = system_clock,
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
        colours = theme_colours(self.app)
        now = self.clock()
        for domain in report.domains():
            checked = report.checked_at.get(domain)
            table.add_row(
                Text(fmt.printable(domain)),  # (a str cell would be parsed as markup)
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
