"""The key help (`?`, F1): every key of every pane and screen, in one scrolling dialog.

It scrolls (at 80x24 most of it is below the fold) and only Escape, q, ? and F1 close it: a
key pressed to scroll must not throw the page away. Keep it in step with the bindings: the
bindings are the truth, this is their summary.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP_TEXT", "HelpScreen"]

HELP_TEXT = """\
[b]relaybox keys[/b]  (↑ ↓ PgUp PgDn Home End scroll; Escape closes)

[b]Everywhere[/b] (when no text box has focus)
  1  Queue pane         2  Destinations pane    3  Sessions pane
  4  Log pane           5  Domains pane         6  Config pane
  /            filter the pane
  Escape       back; clear the filter or the selection
  ?  F1        this help
  Ctrl+P       command palette (every action, themes)
  q  Ctrl+Q  Ctrl+C   quit (asks first; in-process it stops the relay)

[b]Queue[/b]
  ↑ ↓  j k     move                 PgUp PgDn  a page
  Home g       first                End G      last
  Enter        open the message     Space      select / unselect
  r  h  l      retry, hold, release the selected messages (or the
               one under the cursor)
  d  b         delete, bounce (asks first)
  R H L D B    the same for every message shown (asks first)
  v            next state view (unfinished, deferred, held, ...)
  s  S         sort by the next column; reverse the order
  filter text  matches queue ID, sender, recipient, subject, reply;
               @example.org is a domain

[b]Message inspector[/b]
  ↑ ↓ PgUp PgDn Home End   scroll
  m            raw message / details
  r            retry now and watch the attempt live
  h l d b      hold, release, delete, bounce
  a            (after a sender authentication refusal) the domain's
               DNS findings
  Escape       back to the queue

[b]Destinations[/b]
  ↑ ↓  j k     move                 Enter      open the destination
  (in one)     r retry all now, s suspend, u resume

[b]Sessions[/b]
  ↑ ↓  j k     move                 Enter      watch its transcript live

[b]Log[/b]
  / filters the log; End follows new lines again after scrolling up.

[b]Domains[/b]
  ↑ ↓  j k     move                 Enter      every finding, with the
                                               record to publish
  c            check every sending domain now (also every few hours)
  y            (in a domain) copy the selected finding's record

[b]Config[/b]  (edits stay pending until you apply them)
  [  ]         previous, next tab: Routes Listeners Users Limits DKIM
               TOML History
  a  e  d      add, edit (or Enter), delete the selected rule,
               listener, user, key
  K  J         move the selected routing rule up, down (the first
               that matches wins)
  t            route tester: a recipient (and sender) in, the rule
               and next hop out
  n            allowed networks of the selected listener
  k            new DKIM key (made by the engine), with its DNS record
  w  Ctrl+S    review: problems (Enter jumps to the line), queue
               effect, diff; y applies
  z            roll back to the version applied before (asks first)
  x            discard your edit    Escape     (in the TOML editor)
                                               leave it
"""


class HelpScreen(ModalScreen[None]):
    """Every key, in a dialog that scrolls."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
        Binding("j", "scroll('down')", show=False),
        Binding("k", "scroll('up')", show=False),
        Binding("space", "scroll('page_down')", show=False),
        Binding("g", "scroll('home')", show=False),
        Binding("G", "scroll('end')", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-scroll"):
            yield Static(HELP_TEXT)

    def on_mount(self) -> None:
        # Focused, the scroll takes ↑ ↓ PgUp PgDn Home End itself.
        self.query_one(VerticalScroll).focus()

    def action_scroll(self, where: str) -> None:
        box = self.query_one(VerticalScroll)
        {
            "down": box.scroll_down,
            "up": box.scroll_up,
            "page_down": box.scroll_page_down,
            "home": box.scroll_home,
            "end": box.scroll_end,
        }[where](animate=False)

    def action_close(self) -> None:
        self.dismiss()

    def on_click(self) -> None:
        self.dismiss()
