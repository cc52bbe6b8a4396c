"""The key help (`?`, F1): every key of every pane and screen on one page; any key closes it.

Keep it in step with the bindings: the bindings are the truth, this is their summary.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP_TEXT", "HelpScreen"]

HELP_TEXT = """\
[b]relaybox keys[/b]  (any key closes this)

[b]Everywhere[/b] (when no text box has focus)
  1            Queue pane              4          Log pane
  5            Domains pane            6          Config pane
  2            Destinations pane       3          (reserved)
  /            filter the pane         Escape     back, clear the filter or selection
  ?  F1        this help               Ctrl+P     command palette (every action, themes)
  q  Ctrl+Q  Ctrl+C   quit (asks first; in-process this stops the relay)

[b]Queue[/b]
  ↑ ↓  j k     move                    PgUp PgDn  a page
  Home g  End G   first, last          Enter      open the message
  Space        select / unselect (actions then take the selection)
  r  h  l      retry, hold, release the selected messages (or the one under the cursor)
  d  b         delete, bounce (asks first)
  R H L D B    the same for every message the view and filter show (asks first)
  v            next state view (unfinished, deferred, held, queued, delivered, ...)
  s  S         sort by the next column, reverse the order
  filter text  matches queue ID, sender, recipient, reply; @example.org is a domain

[b]Message inspector[/b]
  ↑ ↓ PgUp PgDn Home End   scroll      m          raw message / details
  r            retry now and watch the attempt live
  h l d b      hold, release, delete, bounce          Escape     back to the queue

[b]Destinations[/b]  (the queue by next hop, most deferred first; the cause below)
  Enter        open: its messages, recent attempts (Tab, Enter for the transcript)
  r  s  u      (in a destination) retry all now, suspend (for a while or until resumed), resume

[b]Log[/b]
  / filters the log; End follows new lines again after scrolling up.

[b]Domains[/b]
  ↑ ↓  j k     move                    Enter      every finding, with the record to publish
  c            check every sending domain now (they are also checked every few hours)
  y            (in a domain) copy the selected finding's record to the clipboard

[b]Config[/b]  (edits stay pending until you apply them)
  [  ]         previous, next tab: Routes Listeners Users Limits DKIM TOML History
  a  e  d      add, edit (or Enter), delete the selected rule, listener, user, key
  K  J         move the selected routing rule up, down (the first that matches wins)
  t            route tester: type a recipient (and sender), see the rule and next hop
  n            allowed networks of the selected listener
  k            new DKIM key (made by the engine), with the DNS record to publish
  w  Ctrl+S    review: problems (Enter jumps to the line), queue effect, diff; y applies
  z            roll back to the version applied before (asks first)
  x            discard your edit          Escape (in the TOML editor) leaves it
"""


class HelpScreen(ModalScreen[None]):
    """Every key, on one screen."""

    def compose(self) -> ComposeResult:
        yield Static(HELP_TEXT)

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss()

    def on_click(self) -> None:
        self.dismiss()
