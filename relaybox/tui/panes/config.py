"""The Config pane (key 6): the engine's config file as tables to edit (routing rules,
listeners and their networks, users, limits, DKIM keys), the raw TOML for everything else,
and the history of applied versions with a one-key rollback.

Every editor changes the pending text (a `ConfigDocument` over it, so comments and layout
survive), never the file: nothing changes until `w` shows the engine's review (problems,
queue effect, masked diff, `screens/config_review.py`) and the admin applies it. The engine
reads, checks, writes and reloads (`config_file`, `check_config_text`, `apply_config`,
`rollback_config`), so the pane works the same in process and attached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, TabbedContent, TabPane, TextArea

from relaybox.admin.client import AdminClient
from relaybox.config import load_config_text
from relaybox.config.document import ConfigDocument
from relaybox.config.model import Config
from relaybox.config.problems import ConfigError
from relaybox.outbound.routing import destination_for
from relaybox.tui import format as fmt
from relaybox.tui.panes import config_edits as edits
from relaybox.tui.panes import config_tables as tables
from relaybox.tui.screens.config_forms import (
    Answers,
    Field,
    FormScreen,
    RouteTesterScreen,
    TextScreen,
)
from relaybox.tui.screens.config_review import Outcome, ReviewScreen
from relaybox.tui.screens.confirm import confirm_then
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["SECTIONS", "ConfigPane", "route_words"]

SECTIONS = ("routes", "listeners", "users", "limits", "dkim", "toml", "history")
"""The pane's tabs, in order (`[` and `]` move between them)."""
_TITLES = {
    "routes": "Routes",
    "listeners": "Listeners",
    "users": "Users",
    "limits": "Limits",
    "dkim": "DKIM",
    "toml": "TOML",
    "history": "History",
}
_COLUMNS = {
    "routes": tables.ROUTE_COLUMNS,
    "listeners": tables.LISTENER_COLUMNS,
    "users": tables.USER_COLUMNS,
    "limits": tables.LIMITS_COLUMNS,
    "dkim": tables.DKIM_COLUMNS,
    "history": tables.HISTORY_COLUMNS,
}
_ACTIONS = {
    "add": {"routes", "listeners", "users", "dkim"},
    "edit": {"routes", "listeners", "users", "limits", "dkim"},
    "delete": {"routes", "listeners", "users", "dkim"},
    "move": {"routes"},
    "tester": {"routes"},
    "networks": {"listeners"},
    "keygen": {"dkim"},
}
"""The sections each table action works in (elsewhere its key does nothing and the footer
does not show it)."""


def route_words(config: Config, recipient: str, sender: str) -> str:
    """Which rule of `config` mail from `sender` to `recipient` takes, and its next hop."""
    destination = destination_for(config, recipient, sender)
    if destination is None:
        return "No rule matches: mail to this recipient is refused at RCPT (550 5.7.1)."
    route = destination.route
    number = next((n for n, r in enumerate(config.routes, 1) if r is route), None)
    which = f"Rule {number}" if number else "The built-in rule"
    senders = f" from {', '.join(route.sender_domains)}" if route.sender_domains else ""
    return (
        f"{which} ({', '.join(route.domains)}{senders}): transport {route.transport}\n"
        f"Next hop: {destination.key}"
    )


class ConfigPane(Vertical):
    """The config file as the engine has it, and the admin's pending edit of it."""

    BINDINGS = [
        Binding("w,ctrl+s", "review", "Review & apply"),
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("d,delete", "delete", "Delete"),
        Binding("K,shift+up", "move(-1)", "Move up"),
        Binding("J,shift+down", "move(1)", "Move down", show=False),
        Binding("t", "tester", "Test a route"),
        Binding("n", "networks", "Networks"),
        Binding("k", "keygen", "New key"),
        Binding("z", "rollback", "Roll back"),
        Binding("x", "discard", "Discard edits", show=False),
        Binding("right_square_bracket", "section(1)", "Next tab", show=False),
        Binding("left_square_bracket", "section(-1)", "Previous tab", show=False),
    ]

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        id: str | None = None,  # noqa: A002
    ) -> None:
        super().__init__(id=id)
        self._admin = admin
        self.loaded = False
        self.path = ""
        self.exists = False
        self.generation = 0
        self.base_text = ""
        """The file as it was when editing began (what a diff and a conflict compare to)."""
        self.base_version = ""
        self.pending = ""
        """The admin's edit: what a review checks and an apply writes."""
        self.problem = ""
        """Why the pending text does not parse (the tables then show the last that did)."""
        self.changed_underneath = False
        """The file changed on disk while the admin had pending edits."""
        self.history: list[dict[str, Any]] = []
        self._stale = False
        self._replace = False
        self._hidden = tables.HiddenHashes()
        """The TOML editor shows no password hash (see `HiddenHashes`)."""

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield TextLine("Config · reading the file...", id="config-title")
        with TabbedContent(id="config-tabs"):
            for section in SECTIONS:
                with TabPane(_TITLES[section], id=f"cfg-{section}"):
                    if section == "toml":
                        yield TextArea.code_editor(
                            "", language="toml", theme="css", compact=True, id="config-toml"
                        )
                    else:
                        yield DataTable(id=f"config-{section}", cursor_type="row")

    def on_mount(self) -> None:
        for section, columns in _COLUMNS.items():
            self.table(section).add_columns(*columns)

    def on_resize(self) -> None:
        if self.loaded and not self._stale and not self.problem:
            self._set_pending(self.pending, from_editor=True)  # the cut widths change

    def table(self, section: str) -> DataTable[str | Text]:
        return self.query_one(f"#config-{section}", DataTable)

    @property
    def editor(self) -> TextArea:
        return self.query_one("#config-toml", TextArea)

    @property
    def title(self) -> str:
        return self.query_one("#config-title", TextLine).text

    @property
    def section(self) -> str:
        active = self.query_one(TabbedContent).active
        return active.removeprefix("cfg-") if active else "routes"

    @property
    def dirty(self) -> bool:
        """The pending text is not the file."""
        return self.pending != self.base_text

    def show_section(self, section: str) -> None:
        self.query_one(TabbedContent).active = f"cfg-{section}"
        self._focus_section(section)

    def _focus_section(self, section: str) -> None:
        if section == "toml":
            self.editor.focus()
        else:
            self.table(section).focus()

    def shown(self) -> None:
        """The pane came on screen: its section has focus, and the file is read again unless
        the admin is in the middle of an edit."""
        self._focus_section(self.section)
        if not self.loaded or not self.dirty:
            self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        sections = _ACTIONS.get(action)
        return True if sections is None else self.section in sections

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        section = self.section
        if section != "toml" and self._stale:
            self._set_pending(self.pending, from_editor=True)
        if section == "history":
            self.load_history()
        self.refresh_bindings()
        if self.display:  # (not while another pane shows: focus stays there)
            self._focus_section(section)

    def action_section(self, step: int) -> None:
        at = SECTIONS.index(self.section)
        self.show_section(SECTIONS[(at + step) % len(SECTIONS)])

    # ------------------------------------------------------------------ the file and the edit

    def load(self, *, replace: bool = False) -> None:
        """Read the engine's config file; it becomes the pending text unless the admin has
        edits (`replace` drops them, even if another read overtakes this one)."""
        self._replace = self._replace or replace
        self._load()

    @work(exclusive=True, group="config-load", exit_on_error=False)
    async def _load(self) -> None:
        try:
            info = await self._admin().config_file()
        except Exception as exc:
            self.notify(f"Cannot read the config file: {exc}", severity="error")
            return
        self.take_file(info, replace=self._replace)
        self._replace = False

    def take_file(self, info: Mapping[str, Any], *, replace: bool = False) -> None:
        """The file as the engine has it now (a `config_file` answer)."""
        self.path = str(info["path"])
        self.exists = bool(info["exists"])
        self.generation = int(info["generation"])
        # The admin's edit is kept unless asked, or unless it is what the file now holds
        # (their own apply, read back).
        keep = self.loaded and self.dirty and not replace and info["text"] != self.pending
        if keep:
            # Theirs is not taken in under the admin's edit: the apply will be refused as a
            # conflict and show what changed.
            self.changed_underneath = str(info["version"]) != self.base_version
        else:
            self.base_text = str(info["text"])
            self.base_version = str(info["version"])
            self.changed_underneath = False
            self._set_pending(self.base_text)
        self.loaded = True
        self._title()

    def _set_pending(self, text: str, *, from_editor: bool = False) -> None:
        """The pending text is now `text`: the tables show it (and the TOML editor, unless
        the change came from there)."""
        self.pending = text
        self._stale = False
        shown = self._hidden.hide(text)
        if not from_editor and self.editor.text != shown:
            self.editor.load_text(shown)
        try:
            document = ConfigDocument.from_text(text, file=self.file_name)
        except ConfigError as exc:
            self.problem = str(exc)
        else:
            self.problem = ""
            self._show_tables(document)
        self._title()

    @on(TextArea.Changed, "#config-toml")
    def _typed(self, event: TextArea.Changed) -> None:
        event.stop()
        text = self._hidden.restore(event.text_area.text)
        if text != self.pending:
            self.pending = text
            self._stale = True  # the tables are parsed again when next shown
            self._title()

    @property
    def file_name(self) -> str:
        return Path(self.path).name if self.path else "relaybox.toml"

    def _title(self) -> None:
        parts = [f"Config · {self.file_name}"]
        if self.loaded:
            parts.append(f"generation {self.generation}")
            if not self.exists:
                parts.append("no file yet: built-in defaults")
        if self.problem:
            parts.append(f"TOML error: {self.problem.splitlines()[0]}")
        if self.changed_underneath:
            parts.append("FILE CHANGED on disk: x discards your edit")
        if self.dirty:
            parts.append("edited, not applied: w reviews")
        elif self.loaded:
            parts.append("as applied")
        self.query_one("#config-title", TextLine).set(" · ".join(parts))

    def _show_tables(self, document: ConfigDocument) -> None:
        routes = tables.route_rows(document.routes(), self.app.size.width)
        if not routes:
            routes = [("", "(no [[routes]]: the built-in route applies)", "", "", "")]
        self._fill("routes", routes)
        self._fill("listeners", tables.listener_rows(document.listeners()))
        self._fill("users", tables.user_rows(document.users()))
        self._fill("limits", tables.limits_rows(document.table("limits")))
        self._fill("dkim", tables.dkim_rows(document.dkim_entries()))

    def _fill(self, section: str, rows: list[tuple[str, ...]]) -> None:
        table = self.table(section)
        keep = table.cursor_row
        table.clear()
        for row in rows:
            # Text cells: a `[` in a value is not markup.
            table.add_row(*(Text(fmt.printable(cell)) for cell in row))
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))

    def document(self) -> ConfigDocument | None:
        """The pending text as a document to edit; None (and said) when it does not parse."""
        if self._stale:
            self._set_pending(self.pending, from_editor=True)
        try:
            return ConfigDocument.from_text(self.pending, file=self.file_name)
        except ConfigError as exc:
            self.notify(f"Fix the TOML first (the TOML tab): {exc}", severity="error")
            return None

    def change(self, edit: Callable[[ConfigDocument], object]) -> bool:
        """Apply one edit to the pending text; False (and said) when it cannot be made."""
        document = self.document()
        if document is None:
            return False
        try:
            edit(document)
        except (ValueError, KeyError, IndexError, ConfigError) as exc:
            self.notify(f"Not changed: {exc}", severity="error")
            return False
        self._set_pending(document.text())
        return True

    @property
    def row(self) -> int | None:
        """The cursor's row in the section's table (None when the table is empty)."""
        table = self.table(self.section)
        return table.cursor_row if table.row_count else None

    # ------------------------------------------------------------------ the editors

    def _ask(
        self,
        title: str,
        fields: list[Field],
        check: Callable[[Answers], str | None] | None,
        then: Callable[[Answers], object],
        note: str = "",
    ) -> None:
        def answered(answers: Answers | None) -> None:
            if answers is not None:
                then(answers)

        self.app.push_screen(FormScreen(title, fields, check, note), answered)

    def action_add(self) -> None:
        document = self.document()
        if document is None:
            return
        section = self.section
        if section == "routes":
            at = self.row if document.routes() else None

            def add_route(a: Answers) -> None:
                values = _present(edits.route_values(a))
                self.change(lambda d: d.add_route(values, index=at))

            self._ask(
                "Add a routing rule",
                edits.route_fields(),
                edits.route_problem,
                add_route,
                "It goes above the selected rule: the first rule that matches wins. "
                "Enter: next field · Escape: cancel",
            )
        elif section == "listeners":
            self._ask(
                "Add a listener",
                edits.listener_fields(),
                edits.listener_problem,
                lambda a: self.change(lambda d: d.add_listener(_present(edits.listener_values(a)))),
            )
        elif section == "users":
            self._ask(
                "Add a user (only the password's scrypt hash is stored)",
                edits.user_fields(),
                edits.user_problem,
                self._add_user,
            )
        elif section == "dkim":
            self._ask(
                "Add a DKIM key you already have (k makes a new one)",
                edits.dkim_fields(),
                edits.dkim_problem,
                lambda a: self.change(lambda d: d.add_dkim(_present(edits.dkim_values(a)))),
            )

    @work(group="config-hash", exit_on_error=False)
    async def _add_user(self, answers: Answers) -> None:
        document = self.document()
        if document is None:
            return
        before = self.pending
        senders = tables.listify(answers["allowed_senders"])
        # scrypt takes a good part of a second on purpose: not on the event loop.
        try:
            await asyncio.to_thread(
                document.add_user, answers["name"], answers["password"], senders
            )
        except (ValueError, ConfigError) as exc:
            self.notify(f"Not added: {exc}", severity="error")
            return
        if self.pending != before:
            self.notify("The config changed while the password was hashed: add the user again.")
            return
        self._set_pending(document.text())
        self.notify(f"User {answers['name']} added (not applied yet: w reviews).")

    def action_edit(self) -> None:
        document = self.document()
        index = self.row
        if document is None or index is None:
            return
        section = self.section
        if section == "routes":
            routes = document.routes()
            if index >= len(routes):
                return
            self._ask(
                f"Edit routing rule {index + 1}",
                edits.route_fields(routes[index]),
                edits.route_problem,
                lambda a: self.change(lambda d: d.update_route(index, edits.route_values(a))),
            )
        elif section == "listeners":
            self._ask(
                f"Edit listener {index + 1}",
                edits.listener_fields(document.listeners()[index]),
                edits.listener_problem,
                lambda a: self.change(lambda d: d.update_listener(index, edits.listener_values(a))),
            )
        elif section == "users":
            user = document.users()[index]
            name = str(user.get("name", ""))
            self._ask(
                f"Allowed senders of {name}",
                [edits.senders_field(user)],
                None,
                lambda a: self.change(
                    lambda d: d.set_allowed_senders(name, tables.listify(a["allowed_senders"]))
                ),
            )
        elif section == "limits":
            name = tables.limit_names()[index]

            def problem(a: Answers) -> str | None:
                try:
                    edits.limit_value(name, a["value"])
                except ValueError:
                    return f"{name}: a number, or empty for the default"
                return None

            self._ask(
                f"Limit {name}",
                [edits.limit_field(name, document.table("limits").get(name))],
                problem,
                lambda a: self.change(
                    lambda d: d.set_value("limits", name, edits.limit_value(name, a["value"]))
                ),
            )
        elif section == "dkim":
            self._ask(
                f"Edit DKIM key {index + 1}",
                edits.dkim_fields(document.dkim_entries()[index]),
                edits.dkim_problem,
                lambda a: self.change(lambda d: d.update_dkim(index, edits.dkim_values(a))),
            )

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.section in _ACTIONS["edit"]:
            self.action_edit()

    def action_delete(self) -> None:
        document = self.document()
        index = self.row
        if document is None or index is None:
            return
        section = self.section
        deletions: dict[str, tuple[list[dict[str, Any]], str, Callable[[ConfigDocument], None]]]
        deletions = {
            "routes": (document.routes(), "routing rule", lambda d: d.delete_route(index)),
            "listeners": (document.listeners(), "listener", lambda d: d.delete_listener(index)),
            "dkim": (document.dkim_entries(), "DKIM key", lambda d: d.delete_dkim(index)),
        }
        if section == "users":
            users = document.users()
            if index >= len(users):
                return
            name = str(users[index].get("name", ""))
            what, delete = f"user {name}", lambda d: d.delete_user(name)
        else:
            entries, noun, delete = deletions[section]
            if index >= len(entries):
                return
            what = f"{noun} {index + 1} ({self._row_text(index)})"
        confirm_then(
            self.app,
            f"Delete {what}? Nothing is applied until you review and apply (w).",
            lambda: self.change(delete),
        )

    def _row_text(self, index: int) -> str:
        table = self.table(self.section)
        return " ".join(str(c) for c in table.get_row_at(index)[1:3]).strip()

    def action_move(self, step: int) -> None:
        document = self.document()
        index = self.row
        if document is None or index is None:
            return
        to = index + step
        if not 0 <= to < len(document.routes()):
            return
        if self.change(lambda d: d.move_route(index, to)):
            self.table("routes").move_cursor(row=to)

    def action_networks(self) -> None:
        document = self.document()
        index = self.row
        if document is None or index is None or index >= len(document.listeners()):
            return
        self._ask(
            f"Allowed networks of listener {index + 1}",
            [edits.networks_field(document.listeners()[index])],
            None,
            lambda a: self.change(
                lambda d: d.set_networks(index, tables.listify(a["allowed_networks"]))
            ),
        )

    def action_keygen(self) -> None:
        self._ask(
            "New DKIM key: the engine makes it and the record to publish",
            edits.dkim_fields(keygen=True),
            edits.dkim_problem,
            self._keygen,
        )

    @work(group="config-keygen", exit_on_error=False)
    async def _keygen(self, answers: Answers) -> None:
        domain, selector = answers["domain"], answers["selector"]
        try:
            made = await self._admin().dkim_keygen(domain, selector)
        except Exception as exc:
            self.notify(f"No key made: {exc}", severity="error")
            return
        values = {"domain": domain, "selector": selector, "private_key": made["private_key"]}
        if not self.change(lambda d: d.add_dkim(values)):
            return
        record = f"{made['record_name']} IN TXT {made['record']}"
        self.app.push_screen(
            TextScreen(
                f"New key for {domain}, selector {selector}: publish this record, then apply (w)",
                f"Private key: {made['private_key']}\n\nDNS record to publish:\n{record}",
                copy=record,
            )
        )

    def action_tester(self) -> None:
        self._tester()

    @work(exclusive=True, group="config-tester", exit_on_error=False)
    async def _tester(self) -> None:
        if self._stale:
            self._set_pending(self.pending, from_editor=True)
        path = Path(self.path or "relaybox.toml")
        # Keys and certificates are loaded too: off the event loop.
        config, errors, _ = await asyncio.to_thread(load_config_text, self.pending, path)
        if config is None:
            first = str(errors[0]) if errors else "invalid"
            self.notify(
                f"The edited config has errors ({first}); w shows them all.", severity="error"
            )
            return
        self.app.push_screen(RouteTesterScreen(lambda r, s: route_words(config, r, s)))

    # ------------------------------------------------------------------ review, apply, history

    def action_review(self) -> None:
        if self._stale:
            self._set_pending(self.pending, from_editor=True)
        if not self.loaded:
            self.notify("The config file is not read yet.")
            return
        screen = ReviewScreen(
            self._admin,
            text=self.pending,
            base_text=self.base_text,
            base_version=self.base_version,
            label=self.file_name,
        )
        self.app.push_screen(screen, self._reviewed)

    def _reviewed(self, outcome: Outcome | None) -> None:
        if outcome is None:
            return
        if outcome.jump_to is not None:
            self.jump_to(outcome.jump_to)
            return
        result = outcome.applied or {}
        if result.get("outcome") == "unchanged":
            self.notify("Nothing to apply: the engine already runs this config.")
        # (An apply is said by the event bridge, as every reload is, whoever asked.)
        self.load(replace=True)
        self.load_history()

    def jump_to(self, line: int) -> None:
        """Show line `line` (1-based) of the pending text in the TOML editor."""
        self.show_section("toml")
        editor = self.editor
        editor.cursor_location = (max(0, line - 1), 0)
        editor.scroll_cursor_visible(center=True)
        editor.focus()

    def action_discard(self) -> None:
        if not self.dirty:
            self.load(replace=True)
            return
        confirm_then(
            self.app,
            "Discard your edit and start again from the file as it is now?",
            lambda: self.load(replace=True),
        )

    def action_rollback(self) -> None:
        question = "Roll back to the version applied before this one? It is checked first."
        if self.dirty:
            question += " Your pending edit is discarded."
        confirm_then(self.app, question, self._rollback)

    @work(exclusive=True, group="config-apply", exit_on_error=False)
    async def _rollback(self) -> None:
        try:
            result = await self._admin().rollback_config()
        except Exception as exc:
            self.notify(f"No rollback: {exc}", severity="error")
            return
        if result["outcome"] != "applied":  # (an applied one is said by the event bridge)
            problems = "; ".join(str(p["text"]) for p in result["problems"])
            self.notify(
                f"No rollback ({result['outcome']}): {result['summary']} {problems}",
                severity="error",
                timeout=10,
            )
        self.load(replace=True)
        self.load_history()

    @work(exclusive=True, group="config-history", exit_on_error=False)
    async def load_history(self) -> None:
        try:
            self.history = await self._admin().config_history()
        except Exception as exc:
            self.notify(f"Cannot read the config history: {exc}", severity="error")
            return
        self._fill("history", tables.history_rows(self.history, _when))

    def file_changed(self) -> None:
        """The engine applied a config (from any trigger): read the file again (an edit in
        progress is kept, and said to be out of date). Nothing while it was never opened."""
        if not self.loaded:
            return
        self.load()
        if self.section == "history":
            self.load_history()


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values with the empty ones left out (a new table gets only the keys given)."""
    return {k: v for k, v in values.items() if v is not None}
