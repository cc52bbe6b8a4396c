"""The review before an apply: what the engine says of the pending config (each problem with
its line and key; Enter on one jumps to it in the TOML editor), what it would change, how
many queued messages would change route, and the file's diff with secrets masked. `y`
applies; nothing is written before.

The engine checks and applies (`check_config_text`, `apply_config`); the screen only asks
and shows, so it reads the same in process and attached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from relaybox.admin.client import AdminClient
from relaybox.config.diff import masked_diff
from relaybox.tui.format import printable, printable_lines
from relaybox.tui.widgets.key_footer import KeyFooter
from relaybox.tui.widgets.line_view import LineView
from relaybox.tui.widgets.text_line import TextLine

__all__ = ["Outcome", "ReviewScreen", "diff_lines", "effect_lines", "problem_words"]


@dataclass(frozen=True)
class Outcome:
    """How the review ended: an apply's result, or a problem's line to jump to."""

    applied: Mapping[str, Any] | None = None
    jump_to: int | None = None


def problem_words(problem: Mapping[str, Any]) -> str:
    """A problem without its file's name (always the file being edited): `line 12: key:
    message`, so that the line and key fit at 80 columns."""
    parts = [f"line {problem['line']}"] if problem.get("line") is not None else []
    if problem.get("key"):
        parts.append(str(problem["key"]))
    return ": ".join([*parts, str(problem["message"])])


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff as (kind, text) lines for a `LineView`: added, removed, hunk heads."""
    lines: list[tuple[str, str]] = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "note"
        elif line.startswith("+"):
            kind = "good"
        elif line.startswith("-"):
            kind = "bad"
        else:
            kind = "plain"
        lines.append((kind, line))
    return lines


def effect_lines(effect: Sequence[Mapping[str, Any]]) -> list[str]:
    """The queue effect in words: one line per move of queued and deferred mail from one
    destination to another."""
    if not effect:
        return ["Queued mail: none changes route."]
    out = ["Queued mail that changes route (due now):"]
    for move in effect:
        messages, recipients = int(move["messages"]), int(move["recipients"])
        out.append(
            f"  {messages} message{'' if messages == 1 else 's'} "
            f"({recipients} recipient{'' if recipients == 1 else 's'}): "
            f"{move['from']} → {move['to']}"
        )
    return out


class ReviewScreen(Screen[Outcome | None]):
    """The pending config checked by the engine, its effect and its diff; `y` applies."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("y", "apply", "Apply"),
        Binding("tab", "focus_next", "Next part", show=False),
    ]

    def __init__(
        self,
        admin: Callable[[], AdminClient],
        *,
        text: str,
        base_text: str,
        base_version: str,
        label: str,
    ) -> None:
        """Args:
        admin: the engine's admin layer.
        text: the pending config.
        base_text, base_version: the file as it was when editing began.
        label: the file's name, for the diff's head.
        """
        super().__init__()
        self._admin = admin
        self.text = text
        self.base_text = base_text
        self.base_version = base_version
        self.label = label
        self.problems: list[Mapping[str, Any]] = []
        self.errors = 0
        self.checked = False
        self.busy = False

    def compose(self) -> ComposeResult:
        yield TextLine("Review · checking...", id="review-title")
        yield OptionList(id="review-problems")
        yield Static("", id="review-effect", markup=False)
        yield LineView(id="review-diff")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.show_diff(masked_diff(self.base_text, self.text, self.label))
        self.query_one("#review-problems", OptionList).display = False
        self.query_one(LineView).focus()
        self._check()

    @property
    def title_text(self) -> str:
        return self.query_one("#review-title", TextLine).text

    def set_title(self, text: str) -> None:
        self.query_one("#review-title", TextLine).set(text)

    def show_diff(self, diff: str, note: str = "") -> None:
        lines = diff_lines(diff) or [("note", "No change: the pending config is the file.")]
        if note:
            lines.insert(0, ("warn", note))
        self.query_one(LineView).set_lines(lines)

    def show_problems(self, errors: Sequence[Mapping[str, Any]], warnings: Sequence[Any]) -> None:
        self.problems = [*errors, *warnings]
        self.errors = len(errors)
        options = self.query_one("#review-problems", OptionList)
        options.clear_options()
        options.add_options(
            Option(
                Text(
                    ("error   " if n < len(errors) else "warning ") + printable(problem_words(p)),
                    style="bold red" if n < len(errors) else "yellow",
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
            for n, p in enumerate(self.problems)
        )
        options.display = bool(self.problems)
        if self.problems:
            options.highlighted = 0
            options.focus()

    @work(exclusive=True, group="config-check", exit_on_error=False)
    async def _check(self) -> None:
        try:
            result = await self._admin().check_config_text(self.text)
        except Exception as exc:
            self.set_title(f"Review · the engine could not check it: {exc}")
            return
        self.checked = True
        errors, warnings = result["errors"], result["warnings"]
        self.show_problems(errors, warnings)
        self.query_one("#review-effect", Static).update(
            printable_lines("\n".join(effect_lines(result["queue_effect"])))
        )
        if errors:
            self.set_title(
                f"Review · {len(errors)} error{'' if len(errors) == 1 else 's'}: not applicable"
                " · Enter jumps to the line · Escape back"
            )
        else:
            extra = f" · {len(warnings)} warning{'' if len(warnings) == 1 else 's'}"
            self.set_title(
                f"Review · valid{extra if warnings else ''} · {result['summary']} · y applies"
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        problem = self.problems[event.option_index]
        line = problem.get("line")
        if line is None:
            self.notify("This problem has no line: it is about the whole file.")
            return
        self.dismiss(Outcome(jump_to=int(line)))

    def action_back(self) -> None:
        self.dismiss(None)

    def action_apply(self) -> None:
        if self.busy:
            return
        if not self.checked:
            self.notify("Still checking; y again in a moment.")
            return
        if self.errors:
            self.notify("Fix the errors first (Enter on one jumps to its line).", severity="error")
            return
        self._apply()

    @work(exclusive=True, group="config-apply", exit_on_error=False)
    async def _apply(self) -> None:
        self.busy = True
        self.set_title("Review · applying...")
        try:
            result = await self._admin().apply_config(self.text, self.base_version)
        except Exception as exc:
            self.set_title(f"Review · the apply failed: {exc}")
            self.busy = False
            return
        outcome = result["outcome"]
        if outcome in ("applied", "unchanged"):
            self.dismiss(Outcome(applied=result))
            return
        self.busy = False
        if outcome == "conflict":
            # Someone changed the file since this edit began: theirs is not overwritten.
            self.checked = False
            self.set_title(
                "Review · NOT applied: the file changed since you began editing · "
                "Escape, then x discards yours and starts from the new file"
            )
            self.show_diff(
                masked_diff(self.base_text, str(result["text"]), self.label),
                note="What changed in the file underneath you (not your edit):",
            )
            return
        self.show_problems(result["problems"], [])
        self.set_title(f"Review · refused by the engine: {result['summary']}")
