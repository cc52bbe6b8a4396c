"""The Config pane (key 6) driven with Textual's Pilot over a real engine started from a real
file: each structured editor edits the pending text, the review shows what the engine says,
`y` applies, and the running engine then behaves differently (mail takes the new route, a
new user can AUTH, a network is refused, a limit bites, mail is signed, a listener answers);
rollback brings the previous file and behaviour back; a file changed underneath is not
overwritten."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import pytest
import trustme
from textual import events
from textual.app import App

from relaybox.admin.client import ControlClient
from relaybox.config import load_config
from relaybox.config.passwords import hash_password
from relaybox.statedir import SOCKET_NAME
from relaybox.tui.app import RelayboxApp
from relaybox.tui.link import EngineLink, InProcessLink, SocketLink
from relaybox.tui.panes.config import ConfigPane
from relaybox.tui.panes.config_edits import limit_value, route_problem, route_values, user_problem
from relaybox.tui.panes.config_tables import HiddenHashes, route_rows, user_rows
from relaybox.tui.screens.config_forms import Field, FormScreen, RouteTesterScreen, TextScreen
from relaybox.tui.screens.config_review import ReviewScreen
from relaybox.tui.screens.confirm import ConfirmScreen

from .relayproc import StartRelay, free_port
from .smtpsink import Sink
from .support.configs import toml_string, write_config
from .support.engine import EngineFactory, RunningEngine, wait_state
from .support.smtp import SMTPClient, send, simple_message
from .support.tui import until
from .tui_seed import NOW, SIZES, SeededApp, SeededLink, settled

T = TypeVar("T")
SIZE = (120, 36)
PASSWORD = "correct horse battery staple"


def config_text(state: Path, port: int, routes: str, extra: str = "") -> str:
    return (
        "# The relay of the tests (this comment must survive every edit).\n"
        "[server]\n"
        'hostname = "relay.example.test"\n'
        f"state_dir = {toml_string(state)}\n\n"
        "[[listeners]]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        'allowed_networks = ["127.0.0.0/8"]\n\n'
        '[dns]\nresolvers = ["127.0.0.1:9"]\ntimeout = 0.5\n\n'
        f"{extra}"
        f"{routes}"
    )


def smarthost(domains: str, sink: Sink) -> str:
    return (
        f'[[routes]]\ndomains = [{domains}]\ntransport = "smarthost"\n'
        f'hosts = ["127.0.0.1:{sink.port}"]\ntls = "none"\n\n'
    )


HOLD = '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'


async def relay(
    start_engine: EngineFactory, tmp_path: Path, routes: str, text: str | None = None
) -> tuple[RunningEngine, Path, str]:
    """An engine started from tmp_path/relaybox.toml, which holds `text` (by default the
    test relay with `routes`); the engine, the file and its text."""
    path = tmp_path / "relaybox.toml"
    text = text or config_text(tmp_path / "state", free_port(), routes)
    path.write_text(text, encoding="utf-8")
    return await start_engine(load_config(path)), path, text


async def screen_of(app: RelayboxApp, pilot: Any, kind: type[T]) -> T:
    """The screen of this kind once it is up (bounded)."""
    return await until(lambda: app.screen if isinstance(app.screen, kind) else None, pilot)  # type: ignore[no-any-return]


async def open_config(app: RelayboxApp, pilot: Any, section: str = "routes") -> ConfigPane:
    """Key 6, wait until the file is read, and show `section`."""
    await pilot.press("6")
    pane = app.config_pane
    await until(lambda: pane.loaded, pilot)
    pane.show_section(section)
    return pane


async def replies(address: tuple[str, int], sender: str, recipients: list[str]) -> list[int]:
    """The reply codes to MAIL and each RCPT in one session (stops at a refused MAIL)."""
    client = await SMTPClient.connect(*address)
    try:
        await client.greet()
        codes = [(await client.cmd(f"MAIL FROM:<{sender}>"))[0]]
        for rcpt in recipients if codes[0] == 250 else []:
            codes.append((await client.cmd(f"RCPT TO:<{rcpt}>"))[0])
        return codes
    finally:
        await client.close()


async def answer(pilot: Any, *answers: str | None) -> None:
    """Fill the form on screen field by field: a string replaces the field's text, None
    keeps it; Enter after each (the last saves)."""
    for text in answers:
        if text is not None:
            await pilot.press("ctrl+u", *text)
        await pilot.press("enter")


async def review(app: RelayboxApp, pilot: Any, key: str = "w") -> ReviewScreen:
    """`key` (w or Ctrl+S) and the review once the engine has checked the edit."""
    await pilot.press(key)
    screen = await screen_of(app, pilot, ReviewScreen)
    await until(lambda: screen.checked, pilot)
    return screen


async def review_and_apply(app: RelayboxApp, pilot: Any, pane: ConfigPane) -> None:
    """`w`, wait for the engine's check, `y`, and wait until the pane reads the new file."""
    generation = pane.generation
    screen = await review(app, pilot, "w")
    assert screen.errors == 0, screen.problems
    await pilot.press("y")
    await until(
        lambda: (
            not isinstance(app.screen, ReviewScreen)
            and pane.generation > generation
            and not pane.dirty
        ),
        pilot,
    )


def app_for(run: RunningEngine) -> RelayboxApp:
    return RelayboxApp(InProcessLink(run.engine))


# ---------------------------------------------------------------------- what the tables show


def test_tables_never_show_a_password_hash_and_say_where_mail_goes() -> None:
    users = [{"name": "bob", "password_hash": hash_password("x", log2_n=10)}]
    assert user_rows(users) == [("bob", "scrypt ••••••", "(any)", "default")]
    routes = [
        {"domains": ["a.example"], "transport": "smarthost", "hosts": ["gw:587"], "tls": "none"},
        {"domains": ["*"], "sender_domains": ["printer.local"], "transport": "hold"},
        {"domains": ["*"], "transport": "mx"},
    ]
    assert route_rows(routes) == [
        ("1", "a.example", "*", "smarthost gw:587", "none"),
        ("2", "*", "printer.local", "hold (kept in the queue)", ""),
        ("3", "*", "*", "mx (each domain's MX)", ""),
    ]
    many = [{"domains": [f"d{n}.example" for n in range(9)], "transport": "mx"}]
    assert route_rows(many)[0][1] == "d0.example, d1.example,…"  # 80 columns still fit


def test_form_answers_become_values_and_typos_are_caught_before_the_engine() -> None:
    answers = {"domains": "a.example, b.example c.example", "transport": "mx", "tls": "", "x": ""}
    assert route_values(answers) == {
        "domains": ["a.example", "b.example", "c.example"],
        "transport": "mx",
        "tls": None,  # removes the key: the default applies
        "x": None,
    }
    assert route_problem({"domains": "", "transport": "mx", "tls": ""})
    assert "smarthost" in (route_problem({"domains": "*", "transport": "smtp", "tls": ""}) or "")
    assert user_problem({"name": "bob", "password": "a", "again": "b"}) is not None
    assert limit_value("max_recipients", "2") == 2
    assert limit_value("idle_timeout", "2.5") == 2.5
    assert limit_value("max_recipients", "") is None
    with pytest.raises(ValueError):
        limit_value("max_recipients", "many")


# ---------------------------------------------------------------------- routing rules


async def test_a_rule_added_in_the_ui_routes_new_mail_once_applied(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    old, new = await smtp_sink(), await smtp_sink()
    run, path, text = await relay(start_engine, tmp_path, smarthost('"*"', old))
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        assert pane.title.startswith("Config")
        assert "127.0.0.1:" + str(old.port) in str(pane.table("routes").get_row_at(0))
        await pilot.press("a")
        assert isinstance(app.screen, FormScreen)
        await answer(pilot, "partner.example", "", "smarthost", f"127.0.0.1:{new.port}", "none")
        await answer(pilot, None, None)
        await until(lambda: not isinstance(app.screen, FormScreen), pilot)
        # Pending only: the file and the engine are as they were.
        assert pane.dirty and path.read_text() == text
        assert "partner.example" in str(pane.table("routes").get_row_at(0))
        await send(run, "a@example.com", ["x@partner.example"])
        await old.wait_for(1)
        await review_and_apply(app, pilot, pane)
        assert "partner.example" in path.read_text()
        assert path.read_text().startswith("# The relay of the tests")
        await send(run, "a@example.com", ["y@partner.example"])
        got = await new.wait_for(1)
        assert got[0].recipients == ["y@partner.example"]
        await send(run, "a@example.com", ["z@elsewhere.example"])
        await old.wait_for(2)
        assert len(new.messages) == 1


async def test_reorder_delete_and_the_route_tester(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    a, b = await smtp_sink(), await smtp_sink()
    routes = smarthost('"*"', a) + smarthost('"example.org"', b)
    run, _, _ = await relay(start_engine, tmp_path, routes)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        await pilot.press("t")
        tester = await screen_of(app, pilot, RouteTesterScreen)
        await pilot.press(*"bob@example.org")
        await until(lambda: "Rule 1" in tester.result, pilot)  # "*" comes first: shadows
        assert f"\nNext hop: smarthost:127.0.0.1:{a.port}" in tester.result  # a line of its own
        await pilot.press("escape", "down", "K")  # move the example.org rule up
        await until(lambda: "example.org" in str(pane.table("routes").get_row_at(0)), pilot)
        await pilot.press("t")
        tester = await screen_of(app, pilot, RouteTesterScreen)
        await pilot.press(*"bob@example.org")
        await until(lambda: "Rule 1" in tester.result, pilot)
        assert f"smarthost:127.0.0.1:{b.port}" in tester.result
        await pilot.press("ctrl+u", "escape", "down", "d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(lambda: pane.table("routes").row_count == 1, pilot)
        await pilot.press("t")
        tester = await screen_of(app, pilot, RouteTesterScreen)
        await pilot.press(*"bob@example.net")
        await until(lambda: "No rule matches" in tester.result, pilot)


async def test_the_queue_effect_counts_the_mail_that_would_move(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    busy = {f"u{n}@example.org": "451 4.2.1 busy" for n in range(4)}
    busy |= {"v@example.net": "451 4.2.1 busy"}
    old, new = await smtp_sink(rcpt_replies=busy), await smtp_sink()
    run, path, _ = await relay(start_engine, tmp_path, smarthost('"*"', old))
    ids = [
        await send(run, "a@example.com", ["u0@example.org", "u1@example.org"]),
        await send(run, "a@example.com", ["u2@example.org"]),
        await send(run, "a@example.com", ["v@example.net"]),
    ]
    for queue_id in ids:
        await wait_state(run, queue_id, {"deferred"})
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        await pilot.press("a")
        await answer(pilot, "example.org", "", "smarthost", f"127.0.0.1:{new.port}", "none")
        await answer(pilot, None, None)
        screen = await review(app, pilot, "w")
        effect = str(screen.query_one("#review-effect").render())
        assert (
            f"2 messages (3 recipients): smarthost:127.0.0.1:{old.port} → "
            f"smarthost:127.0.0.1:{new.port}"
        ) in effect
        assert "example.net" not in effect and pane.dirty


async def test_rollback_restores_the_previous_file_and_routes(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    old, new = await smtp_sink(), await smtp_sink()
    run, path, text = await relay(start_engine, tmp_path, smarthost('"*"', old))
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        await pilot.press("e")  # the only rule, to the new sink
        await answer(pilot, None, None, None, f"127.0.0.1:{new.port}", None, None, None)
        await review_and_apply(app, pilot, pane)
        await send(run, "a@example.com", ["x@example.org"])
        await new.wait_for(1)
        generation = pane.generation
        await pilot.press("z")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(lambda: pane.generation > generation and pane.base_text == text, pilot)
        assert path.read_text() == text
        await send(run, "a@example.com", ["y@example.org"])
        await old.wait_for(1)
        assert len(new.messages) == 1
        pane.show_section("history")
        await until(lambda: pane.table("history").row_count >= 2, pilot)
        assert "rollback" in str(pane.table("history").get_row_at(0))


async def test_an_apply_over_a_file_changed_underneath_is_refused_and_shows_their_change(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink()
    run, path, text = await relay(start_engine, tmp_path, smarthost('"*"', sink))
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        await pilot.press("a")
        await answer(pilot, "mine.example", "", "hold", "", "", "", "")
        await until(lambda: pane.dirty, pilot)
        theirs = text + '[[routes]]\ndomains = ["theirs.example"]\ntransport = "hold"\n'
        path.write_text(theirs, encoding="utf-8")  # another admin, in vim, then a reload
        assert run.engine.admin is not None
        assert (await run.engine.admin.reload_config())["outcome"] == "applied"
        # The pane keeps the admin's edit, says the file changed, and does not take theirs
        # in under it (an apply then would silently drop their change).
        await until(lambda: pane.changed_underneath, pilot)
        assert "FILE CHANGED" in pane.title and "mine.example" in pane.pending
        assert "theirs.example" not in pane.pending
        screen = await review(app, pilot, "w")
        await pilot.press("y")
        await until(lambda: "NOT applied" in screen.title_text, pilot)
        shown = "\n".join(t for _, t in screen.query_one("#review-diff").lines)  # type: ignore[attr-defined]
        assert '+domains = ["theirs.example"]' in shown and "mine.example" not in shown
        assert path.read_text() == theirs


async def test_a_problem_in_the_review_jumps_to_its_line_in_the_toml_editor(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink()
    run, path, text = await relay(start_engine, tmp_path, smarthost('"*"', sink))
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        await pilot.press("e")
        await answer(pilot, None, None, "smarthostt", None, None, None, None)
        form = app.screen
        assert isinstance(form, FormScreen)  # refused before the engine sees it
        await pilot.press("escape")
        pane.show_section("toml")
        editor = pane.editor
        line = text.splitlines().index('transport = "smarthost"')
        editor.cursor_location = (line, len('transport = "smarthost"'))
        await pilot.press("backspace", "x", '"')
        await until(lambda: pane.dirty, pilot)
        screen = await review(app, pilot, "ctrl+s")
        assert screen.errors >= 1
        await pilot.press("y")  # errors: nothing is applied
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("enter")
        await until(lambda: not isinstance(app.screen, ReviewScreen), pilot)
        assert pane.section == "toml" and editor.has_focus
        assert editor.cursor_location[0] == line
        assert path.read_text() == text


# ---------------------------------------------------------------------- the other editors


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_a_user_added_with_the_password_prompt_can_authenticate(
    start_engine: EngineFactory, tmp_path: Path, ca: trustme.CA
) -> None:
    cert = ca.issue_cert("relay.example.test", "127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    port = free_port()
    text = config_text(tmp_path / "state", free_port(), HOLD).replace(
        "[dns]",
        f'[[listeners]]\nlisten = ["127.0.0.1:{port}"]\nrole = "submission"\n'
        f'tls = "implicit"\ncertificate = {toml_string(cert_path)}\n'
        f"private_key = {toml_string(key_path)}\n\n"
        # alice is there from the start, so AUTH is offered before bob exists.
        f'[[users]]\nname = "alice"\npassword_hash = "{hash_password("x", log2_n=10)}"\n\n[dns]',
    )
    run, path, _ = await relay(start_engine, tmp_path, HOLD, text)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def login() -> bool:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, use_tls=True, tls_context=context, timeout=10
        )
        await client.connect()
        try:
            await client.login("bob", PASSWORD)
            return True
        except aiosmtplib.SMTPAuthenticationError:
            return False
        finally:
            await client.quit()

    assert not await login()
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot, "users")
        await pilot.press("a")
        await answer(pilot, "bob", PASSWORD, PASSWORD + "!", "example.org")
        form = app.screen
        assert isinstance(form, FormScreen)
        assert "differ" in str(form.query_one("#form-problem").render())
        await pilot.press("shift+tab", "ctrl+u", *PASSWORD, "enter", "enter")
        await until(lambda: "bob" in pane.pending, pilot)
        assert PASSWORD not in pane.pending and "$scrypt$" in pane.pending
        row = str(pane.table("users").get_row_at(1))
        assert "bob" in row and "scrypt ••••••" in row and "$scrypt$" not in row
        assert "$scrypt$ln=" not in pane.editor.text and "$scrypt$hidden-2" in pane.editor.text
        await review_and_apply(app, pilot, pane)
    assert PASSWORD not in path.read_text()
    assert await login()


async def test_allowed_networks_edited_in_the_ui_refuse_relaying(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink()
    run, path, _ = await relay(start_engine, tmp_path, smarthost('"*"', sink))
    await send(run, "a@example.com", ["x@example.org"])
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot, "listeners")
        await pilot.press("n")
        await answer(pilot, "192.0.2.0/24")
        await until(lambda: "192.0.2.0/24" in str(pane.table("listeners").get_row_at(0)), pilot)
        await review_and_apply(app, pilot, pane)
    assert (await replies(run.address(), "a@example.com", ["x@example.org"]))[-1] >= 500


async def test_a_limit_edited_in_the_ui_bites_the_next_session(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink()
    run, path, _ = await relay(start_engine, tmp_path, smarthost('"*"', sink))
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot, "limits")
        row = [str(pane.table("limits").get_row_at(n)) for n in range(3)]
        index = next(n for n, r in enumerate(row) if "max_recipients" in r)
        pane.table("limits").move_cursor(row=index)
        await pilot.press("enter")
        await answer(pilot, "x")
        assert isinstance(app.screen, FormScreen)  # not a number: said, not saved
        await answer(pilot, "2")
        await until(lambda: "max_recipients = 2" in pane.pending, pilot)
        await review_and_apply(app, pilot, pane)
    rcpts = ["a@example.org", "b@example.org", "c@example.org"]
    assert await replies(run.address(), "a@example.com", rcpts) == [250, 250, 250, 452]


async def test_a_dkim_key_made_in_the_ui_signs_the_next_message(
    start_engine: EngineFactory, smtp_sink: Any, tmp_path: Path
) -> None:
    sink = await smtp_sink()
    run, path, _ = await relay(start_engine, tmp_path, smarthost('"*"', sink))
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot, "dkim")
        await pilot.press("k")
        await answer(pilot, "office.example", "s2031")
        shown = await screen_of(app, pilot, TextScreen)
        body = str(shown.query_one("#text-body").render())
        assert "\nDNS record to publish:\ns2031._domainkey.office.example IN TXT" in body
        assert "v=DKIM1" in body
        await pilot.press("escape")
        assert "office.example" in str(pane.table("dkim").get_row_at(0))
        await review_and_apply(app, pilot, pane)
    body = (
        b"From: app@office.example\r\nTo: x@example.org\r\nSubject: signed\r\n"
        b"Message-ID: <signed@office.example>\r\n\r\nHello.\r\n"
    )
    await send(run, "app@office.example", ["x@example.org"], body)
    got = await sink.wait_for(1)
    assert b"DKIM-Signature:" in got[0].data and b"s=s2031" in got[0].data


async def test_a_listener_added_in_the_ui_accepts_mail(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run, _, _ = await relay(start_engine, tmp_path, HOLD)
    port = free_port()
    with pytest.raises(OSError):
        await SMTPClient.connect("127.0.0.1", port)
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot, "listeners")
        await pilot.press("a")
        await answer(pilot, f"127.0.0.1:{port}", "relay", "none", "", "", "127.0.0.1")
        await until(lambda: pane.table("listeners").row_count == 2, pilot)
        await review_and_apply(app, pilot, pane)
    client = await SMTPClient.connect("127.0.0.1", port)
    try:
        await client.greet()
        code, _ = await client.send_message(
            "a@example.com", ["x@example.org"], simple_message("new")
        )
        assert code == 250
    finally:
        await client.close()


# ---------------------------------------------------------------------- snapshots

SNAPSHOT_CONFIG = """\
# The office relay.
[server]
hostname = "relay.office.example"
state_dir = {state}

[[listeners]]
listen = ["127.0.0.1:0"]
allowed_networks = ["127.0.0.0/8", "192.168.10.0/24"]

[dns]
resolvers = ["127.0.0.1:9"]
timeout = 0.5

[limits]
max_recipients = 200

# The partner's mail goes through their gateway, with our account there.
[[routes]]
domains = ["partner.example", "partner.example.net"]
transport = "smarthost"
hosts = ["gw.partner.example:587"]
tls = "verify"
username = "relay"
password_file = "partner.secret"

# Anything from the scanner stays in the queue for review.
[[routes]]
domains = ["*"]
sender_domains = ["printer.local"]
transport = "hold"

# Everything else waits in the queue until the provider's account is ready.
[[routes]]
domains = ["*"]
transport = "hold"
"""


def config_app(tmp_path: Path) -> SeededApp:
    """The seeded UI (fixed messages, fixed time) over an engine started from a file whose
    rules, as the snapshots show them, are the same on every run."""
    path = tmp_path / "relaybox.toml"
    secret = tmp_path / "partner.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    path.write_text(SNAPSHOT_CONFIG.format(state=toml_string(tmp_path / "state")))
    link: EngineLink = SeededLink(load_config(path))  # type: ignore[assignment]
    return SeededApp(link, clock=lambda: NOW, theme="relaybox-dark")


def config_then(*steps: tuple[str, ...] | list[str | None], reviewed: bool = False) -> Any:
    """A `run_before`: key 6, then each step (a tuple of keys to press, or a list of form
    answers), then (`reviewed`) `w` and the engine's check."""

    async def run_before(pilot: Any) -> None:
        await settled(pilot)
        app = pilot.app
        await open_config(app, pilot)
        for step in steps:
            if isinstance(step, list):
                await answer(pilot, *step)
            else:
                await pilot.press(*step)
            await pilot.pause(0.1)
        if reviewed:
            await review(app, pilot)
        await pilot.pause(0.3)

    return run_before


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_config_pane_snapshot(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """Key 6: the title line, the tabs, and the routing rules (domains, senders, transport,
    next hop, TLS) with no further key, the first rule under the cursor."""
    assert snap_compare(config_app(tmp_path), terminal_size=size, run_before=config_then())


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_config_validation_snapshot(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    """The review of an edit the engine refuses (a smart host port out of range): the
    error with its line and key, "not applicable", and the diff with the password file
    line as context."""
    steps = (("e",), [None, None, None, "gw.partner.example:99999", None, None, None])
    run_before = config_then(*steps, reviewed=True)
    assert snap_compare(config_app(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_config_diff_preview_snapshot(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    """The review of a valid edit (a rule added above the first): "valid", the summary, the
    queue effect, and the diff with the new table in green."""
    steps = (("a",), ["example.org", "", "mx", "", "", "", ""])
    run_before = config_then(*steps, reviewed=True)
    assert snap_compare(config_app(tmp_path), terminal_size=size, run_before=run_before)


def test_the_toml_editor_hides_password_hashes_and_keeps_them() -> None:
    hidden = HiddenHashes()
    first, second = hash_password("a", log2_n=10), hash_password("b", log2_n=10)
    text = (
        f'[[users]]\nname = "a"\npassword_hash = "{first}"\n\n'
        f'[[users]]\npassword_hash = "{second}"\n'
    )
    shown = hidden.hide(text)
    assert first not in shown and second not in shown
    assert 'password_hash = "$scrypt$hidden-1"' in shown and "hidden-2" in shown
    edited = shown.replace('name = "a"', 'name = "alice"')
    assert hidden.restore(edited) == text.replace('name = "a"', 'name = "alice"')
    assert hidden.hide(text) == shown  # the same tokens each time


async def test_attached_the_pane_edits_the_headless_engines_file_and_it_reloads(
    tmp_path: Path, start_relay: StartRelay
) -> None:
    port = free_port()
    path = write_config(tmp_path, port)
    relay = start_relay("--headless", "--config", path, port=port)
    client = await ControlClient.connect(tmp_path / "state" / SOCKET_NAME)
    app = RelayboxApp(SocketLink(client, relay.proc.pid))
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = await open_config(app, pilot)
            assert pane.path == str(path)
            await pilot.press("a")
            await answer(pilot, "refused.example", "", "reject", "", "", "", "")
            await review_and_apply(app, pilot, pane)
    finally:
        await client.close()
    assert 'domains = ["refused.example"]' in path.read_text()
    codes = await replies(("127.0.0.1", port), "a@example.com", ["x@refused.example", "x@b.org"])
    assert codes[0] == 250 and codes[1] >= 500 and codes[2] == 250
    assert relay.terminate() == 0


async def test_keys_typed_fast_behind_enter_go_to_the_next_field() -> None:
    """As a paste or a fast typist in a real terminal sends them: every key is queued before
    the app handles the first (Pilot's `press` waits between keys, a terminal does not)."""
    answered: list[dict[str, str] | None] = []

    class FormApp(App[None]):
        def on_mount(self) -> None:
            fields = [Field("a", "A"), Field("b", "B"), Field("c", "C")]
            self.push_screen(FormScreen("Three fields", fields), answered.append)

    app = FormApp()
    async with app.run_test() as pilot:
        await until(lambda: isinstance(app.screen, FormScreen) and app.screen.focused, pilot)
        driver = app._driver
        assert driver is not None
        for char in "one\rtwo\rthree\r":  # as Pilot sends a key, without its wait after each
            event = events.Key("enter" if char == "\r" else char, char)
            event.set_sender(app)
            driver.send_message(event)
        await until(lambda: answered, pilot)
    assert answered == [{"a": "one", "b": "two", "c": "three"}]


async def test_a_reload_from_elsewhere_shows_in_the_status_bar_the_log_and_the_pane(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    run, path, text = await relay(start_engine, tmp_path, HOLD)
    admin = run.engine.admin
    assert admin is not None
    app = app_for(run)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_config(app, pilot)
        path.write_text(text + "[limits]\nmax_recipients = -1\n", encoding="utf-8")
        assert (await admin.reload_config())["outcome"] == "refused"
        await until(lambda: "CONFIG REFUSED" in app.status_text(), pilot)
        assert "max_recipients" in app.status_text()
        assert app.status_bar.has_class("warning")
        path.write_text(text + "[limits]\nmax_recipients = 7\n", encoding="utf-8")
        assert (await admin.reload_config())["outcome"] == "applied"
        await until(lambda: "CONFIG REFUSED" not in app.status_text(), pilot)
        # The pane, with no edit of its own, reads the file the engine now runs.
        await until(lambda: pane.generation == 2 and "max_recipients = 7" in pane.pending, pilot)
        await pilot.press("4")
        await until(
            lambda: any("config generation 2 applied" in t for _, t in app.log_view.lines), pilot
        )
        assert any("config refused" in t and "max_recipients" in t for _, t in app.log_view.lines)
