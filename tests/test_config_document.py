"""Editing a config file's text with `ConfigDocument`: the edited keys change, every other byte
stays (comments, order, formatting), a moved or deleted `[[routes]]` table takes its comment
block along, and every result is a config `load_config` accepts."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from relaybox.config import ConfigError, load_config, sample_config_text
from relaybox.config.document import ConfigDocument, EditError
from relaybox.config.model import Config, HostPort, SocketAddress
from relaybox.config.passwords import verify_password
from relaybox.signing.keys import generate, write_private_key

# The sample, with three routes of an office's own written above its live "*" route, each
# with the comment block an admin writes about it (two paragraphs in the third).
_LIVE = "# The default route, live:"
PREFIX, DEFAULT = sample_config_text().split(_LIVE)
DEFAULT = _LIVE + DEFAULT
ACCOUNTING = """\
# Invoices for the accounting firm go through their provider, who asked for
# TLS with a checked certificate (ticket 4711).
[[routes]]
domains = ["accounting.example", "*.accounting.example"]  # both: see above
transport = "smarthost"
hosts = ["smtp.accounting.example:587"]
tls = "verify"
# max_connections = 2
"""
COMPETITOR = """\
# Never mail the competitor.
[[routes]]
domains   =   [ "competitor.example" ]
transport = 'reject'
reject_text = "Mail to this domain is not allowed from our office"
"""
SHOP = """\
# Test domains of the web shop stay here.
#
# (Its staging server sends to *.test addresses.)
[[routes]]
domains = [
    "*.test",
    "*.invalid",
]
transport = "capture"
"""
ROUTES = [ACCOUNTING, COMPETITOR, SHOP, DEFAULT]


def office(*routes: str) -> str:
    """The sample with these route blocks, one blank line apart, where its live route was."""
    return PREFIX + "\n".join(routes)


def loads(tmp_path: Path, text: str) -> Config:
    """The config `text` gives when written as a file; load_config raises if it is invalid."""
    path = tmp_path / "relaybox.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]


@pytest.fixture
def text(tmp_path: Path) -> str:
    original = office(*ROUTES)
    assert loads(tmp_path, original).routes[1].transport == "reject"
    return original


def test_untouched_document_is_the_file_byte_for_byte(text: str) -> None:
    assert ConfigDocument.from_text(text).text() == text
    assert len(ConfigDocument.from_text(text).routes()) == 4


def test_changing_one_key_of_one_route_changes_only_that_line(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.update_route(0, {"tls": "required"})
    assert changed_lines(text, doc.text()) == [('tls = "verify"\n', 'tls = "required"\n')]
    assert loads(tmp_path, doc.text()).routes[0].tls == "required"


def test_changed_value_keeps_the_comment_written_after_it(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.update_route(0, {"domains": ["accounting.example"]})
    assert changed_lines(text, doc.text()) == [
        (
            'domains = ["accounting.example", "*.accounting.example"]  # both: see above\n',
            'domains = ["accounting.example"]  # both: see above\n',
        )
    ]
    assert loads(tmp_path, doc.text()).routes[0].domains == ("accounting.example",)


def test_a_new_key_is_one_line_at_the_end_of_its_own_table(text: str, tmp_path: Path) -> None:
    """Not under the next route's comment, and not below the commented-out setting that
    belongs to this route."""
    doc = ConfigDocument.from_text(text)
    doc.update_route(0, {"max_messages_per_minute": 30})
    expected = ACCOUNTING.replace(
        'tls = "verify"\n', 'tls = "verify"\nmax_messages_per_minute = 30\n'
    )
    assert doc.text() == office(expected, COMPETITOR, SHOP, DEFAULT)
    assert loads(tmp_path, doc.text()).routes[0].max_messages_per_minute == 30


def test_none_removes_the_key_line_only(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.update_route(1, {"reject_text": None, "transport": "hold"})
    expected = COMPETITOR.replace("transport = 'reject'", 'transport = "hold"').replace(
        'reject_text = "Mail to this domain is not allowed from our office"\n', ""
    )
    assert doc.text() == office(ACCOUNTING, expected, SHOP, DEFAULT)
    assert loads(tmp_path, doc.text()).routes[1].transport == "hold"


def test_a_multi_line_array_stays_one_item_per_line(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.update_route(2, {"domains": ["*.test", "*.example"]})
    expected = SHOP.replace('"*.invalid"', '"*.example"')
    assert doc.text() == office(ACCOUNTING, COMPETITOR, expected, DEFAULT)
    assert loads(tmp_path, doc.text()).routes[2].domains == ("*.test", "*.example")


def test_moving_a_route_moves_its_comment_block_and_nothing_else(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.move_route(2, 0)
    assert doc.text() == office(SHOP, ACCOUNTING, COMPETITOR, DEFAULT)
    assert [r.transport for r in loads(tmp_path, doc.text()).routes] == [
        "capture",
        "smarthost",
        "reject",
        "mx",
    ]
    doc.move_route(0, 2)
    assert doc.text() == text


def test_moving_the_last_route_up_and_back(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.move_route(3, 1)
    assert doc.text() == office(ACCOUNTING, DEFAULT, COMPETITOR, SHOP)
    assert loads(tmp_path, doc.text()).routes[1].domains == ("*",)
    doc.move_route(1, 3)
    assert doc.text() == text


def test_the_section_comments_above_the_first_route_stay_in_place(text: str) -> None:
    """The sample's long [[routes]] documentation is not the first route's own comment."""
    doc = ConfigDocument.from_text(text)
    doc.move_route(0, 1)
    assert doc.text() == office(COMPETITOR, ACCOUNTING, SHOP, DEFAULT)
    assert doc.text().startswith(PREFIX)


def test_deleting_a_route_deletes_its_comment_block(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.delete_route(1)
    assert doc.text() == office(ACCOUNTING, SHOP, DEFAULT)
    assert len(loads(tmp_path, doc.text()).routes) == 3
    doc.delete_route(0)
    assert doc.text() == office(SHOP, DEFAULT)
    loads(tmp_path, doc.text())


def test_every_comment_between_two_routes_belongs_to_the_second(tmp_path: Path) -> None:
    """Except the lines written directly under the first route's last key, which are its
    own (a commented-out setting); paragraphs apart belong to the route they are above."""
    first = '[[routes]]\ndomains = ["a.example"]\ntransport = "hold"\n# tls = "none"\n'
    second = (
        "# Customer B.\n\n# Their provider throttles: see ticket 12.\n"
        '[[routes]]\ndomains = ["b.example"]\ntransport = "hold"\n'
    )
    third = '[[routes]]\ndomains = ["*"]\ntransport = "mx"\n'
    doc = ConfigDocument.from_text(first + "\n" + second + "\n" + third)
    doc.move_route(1, 2)
    assert doc.text() == first + "\n" + third + "\n" + second
    doc.move_route(0, 1)
    assert doc.text() == third + "\n" + first + "\n" + second
    doc.delete_route(2)
    assert doc.text() == third + "\n" + first
    loads(tmp_path, doc.text())


def test_deleting_the_last_route_leaves_no_trailing_blank_line(text: str) -> None:
    doc = ConfigDocument.from_text(text)
    doc.delete_route(3)
    assert doc.text() == office(ACCOUNTING, COMPETITOR, SHOP)


def test_adding_a_route_at_a_position(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.add_route({"transport": "hold", "domains": ["new.example"]}, 1)
    new = '[[routes]]\ndomains = ["new.example"]\ntransport = "hold"\n'
    assert doc.text() == office(ACCOUNTING, new, COMPETITOR, SHOP, DEFAULT)
    config = loads(tmp_path, doc.text())
    assert config.route_for("a@new.example", "b@example.org") == config.routes[1]
    doc.add_route({"domains": ["last.example"], "transport": "hold"})
    assert doc.text().endswith(
        DEFAULT + '\n[[routes]]\ndomains = ["last.example"]\ntransport = "hold"\n'
    )


def test_the_first_route_of_a_file_keeps_other_mail_on_the_default_route(
    tmp_path: Path,
) -> None:
    """Without [[routes]] every domain goes to its MX hosts; one rule for one domain must
    not make every other domain unroutable."""
    text = "[limits]\nmax_recipients = 10\n"
    before = loads(tmp_path, text)
    doc = ConfigDocument.from_text(text)
    assert doc.routes() == []
    doc.add_route({"domains": ["example.org"], "transport": "hold"})
    assert doc.text().startswith(text + "\n[[routes]]\n")
    after = loads(tmp_path, doc.text())
    assert after.route_for("a@example.org", "") is not None
    assert after.route_for("a@example.org", "").transport == "hold"  # type: ignore[union-attr]
    assert after.route_for("a@other.example", "") == before.route_for("a@other.example", "")
    assert doc.routes()[1] == {"domains": ["*"], "transport": "mx", "tls": "opportunistic"}


def test_a_first_route_for_every_domain_needs_no_default_after_it(tmp_path: Path) -> None:
    doc = ConfigDocument.from_text("")
    doc.add_route({"domains": ["*"], "transport": "hold"})
    assert doc.text() == '[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
    assert loads(tmp_path, doc.text()).routes[0].transport == "hold"


def test_a_table_inside_a_multi_line_string_is_not_a_table(tmp_path: Path) -> None:
    """The line scanner must not take text inside a value for a header or a comment."""
    tricky = (
        '# first\n[[routes]]\ndomains = ["a.example"]\ntransport = "reject"\n'
        'reject_text = """\\\n[[routes]] is not a table, \\\n# nor this a comment"""\n'
    )
    second = '# second\n[[routes]]\ndomains = ["*"]\ntransport = "hold"\n'
    doc = ConfigDocument.from_text(tricky + "\n" + second)
    doc.move_route(1, 0)
    assert doc.text() == second + "\n" + tricky
    route = loads(tmp_path, doc.text()).routes[1]
    assert route.reject_text == "[[routes]] is not a table, # nor this a comment"


def test_a_sub_table_moves_with_its_route(tmp_path: Path) -> None:
    first = (
        '[[routes]]\ndomains = ["a.example"]\ntransport = "smarthost"\n'
        'hosts = ["smtp.example.net:587"]\n\n'
        '[routes.rewrite_senders]\n"scanner@printer.local" = "scanner@example.org"\n'
    )
    second = '[[routes]]\ndomains = ["*"]\ntransport = "mx"\n'
    doc = ConfigDocument.from_text(first + "\n" + second)
    doc.move_route(0, 1)
    assert doc.text() == second + "\n" + first
    route = loads(tmp_path, doc.text()).routes[1]
    assert route.rewrite_sender("scanner@printer.local") == "scanner@example.org"


def test_a_new_key_lines_up_with_the_keys_of_an_indented_table(tmp_path: Path) -> None:
    text = '[[routes]]  # customer A\n  domains = ["a.example"]\n  transport = "hold"\n'
    doc = ConfigDocument.from_text(text)
    doc.update_route(0, {"sender_domains": ["example.org"]})
    assert doc.text() == text + '  sender_domains = ["example.org"]\n'
    loads(tmp_path, doc.text())


def test_the_models_objects_are_written_as_the_file_writes_them(tmp_path: Path) -> None:
    doc = ConfigDocument.from_text("")
    doc.add_listener(
        {
            "listen": [SocketAddress("::1", 2526)],
            "allowed_networks": [ipaddress.ip_network("192.168.1.0/24")],
        }
    )
    doc.add_route(
        {"domains": ("*",), "transport": "smarthost", "hosts": (HostPort("2001:db8::1", 25),)}
    )
    assert 'listen = ["[::1]:2526"]\nallowed_networks = ["192.168.1.0/24"]\n' in doc.text()
    assert 'hosts = ["[2001:db8::1]:25"]\n' in doc.text()
    config = loads(tmp_path, doc.text())
    assert config.listeners[1].listen == (SocketAddress("::1", 2526),)
    assert config.routes[0].hosts == (HostPort("2001:db8::1", 25),)


def test_rewrite_senders_are_written_as_an_inline_table(tmp_path: Path) -> None:
    doc = ConfigDocument.from_text("")
    senders = {"scanner@printer.local": "scanner@example.org", "@printer.local": "n@example.org"}
    doc.add_route(
        {
            "domains": ["*"],
            "transport": "smarthost",
            "hosts": ["smtp.example.net:587"],
            "rewrite_senders": senders,
        }
    )
    assert (
        'rewrite_senders = { "scanner@printer.local" = "scanner@example.org", '
        '"@printer.local" = "n@example.org" }\n' in doc.text()
    )
    assert loads(tmp_path, doc.text()).routes[0].rewrite_sender("x@printer.local") == (
        "n@example.org"
    )


def test_an_array_of_inline_tables_is_still_edited_correctly(tmp_path: Path) -> None:
    """A layout the line surgery does not know falls back to tomlkit on the whole file."""
    text = 'routes = [{ domains = ["a.example"], transport = "hold" }, { domains = ["*"], transport = "mx" }]\n'  # noqa: E501
    doc = ConfigDocument.from_text(text)
    doc.move_route(1, 0)
    doc.update_route(1, {"transport": "capture"})
    assert [r["transport"] for r in doc.routes()] == ["mx", "capture"]
    assert [r.transport for r in loads(tmp_path, doc.text()).routes] == ["mx", "capture"]


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    text = '# routes\r\n[[routes]]\r\ndomains = ["*"]\r\ntransport = "mx"\r\n'
    doc = ConfigDocument.from_text(text)
    doc.update_route(0, {"tls": "none"})
    doc.add_route({"domains": ["a.example"], "transport": "hold"}, 0)
    assert "\n" not in doc.text().replace("\r\n", "")
    assert doc.text().endswith(
        '# routes\r\n[[routes]]\r\ndomains = ["*"]\r\ntransport = "mx"\r\ntls = "none"\r\n'
    )
    assert [r.transport for r in loads(tmp_path, doc.text()).routes] == ["hold", "mx"]


def test_a_file_mixing_line_ends_keeps_each_line_as_it_was() -> None:
    text = '# written on Windows\r\n[[routes]]\ndomains = ["*"]\r\ntransport = "mx"\n'
    doc = ConfigDocument.from_text(text)
    doc.update_route(0, {"tls": "none"})
    assert doc.text() == text + 'tls = "none"\n'


def test_control_characters_in_a_value_are_escaped_and_read_back() -> None:
    nasty = 'x\x00\x1b[31m\r\n"""\\ \u2028 end'
    doc = ConfigDocument.from_text('[[routes]]\ndomains = ["*"]\ntransport = "reject"\n')
    doc.update_route(0, {"reject_text": nasty})
    assert doc.routes()[0]["reject_text"] == nasty
    assert ConfigDocument.from_text(doc.text()).routes()[0]["reject_text"] == nasty
    assert doc.text().count("\n") == 4


def test_a_next_line_or_line_separator_in_a_comment_does_not_end_its_line() -> None:
    text = (
        '# a\x85[[routes]]\n[[routes]]\ndomains = ["a.example"]  # b\u2028[x]\ntransport = "hold"\n'
        '\n[[routes]]\ndomains = ["*"]\ntransport = "mx"\n'
    )
    doc = ConfigDocument.from_text(text)
    doc.move_route(1, 0)
    assert doc.text() == (
        '[[routes]]\ndomains = ["*"]\ntransport = "mx"\n\n# a\x85[[routes]]\n[[routes]]\n'
        'domains = ["a.example"]  # b\u2028[x]\ntransport = "hold"\n'
    )


def test_a_file_without_a_final_newline(tmp_path: Path) -> None:
    text = '[[routes]]\ndomains = ["a.example"]\ntransport = "hold"\n\n[[routes]]\ndomains = ["*"]\ntransport = "mx"'  # noqa: E501
    doc = ConfigDocument.from_text(text)
    doc.move_route(1, 0)
    doc.update_route(1, {"tls": "none"})
    assert [r.domains for r in loads(tmp_path, doc.text()).routes] == [("*",), ("a.example",)]


def test_bad_indexes_and_values_change_nothing(text: str) -> None:
    doc = ConfigDocument.from_text(text)
    for edit in (
        lambda: doc.update_route(4, {"tls": "none"}),
        lambda: doc.delete_route(-1),
        lambda: doc.move_route(0, 4),
        lambda: doc.add_route({"domains": ["x.example"]}, 5),
        lambda: doc.update_route(0, {"hosts": [object()]}),
        lambda: doc.delete_user("nobody"),
    ):
        with pytest.raises(EditError):
            edit()
    assert doc.text() == text


def test_a_syntax_error_is_a_config_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        ConfigDocument.from_text('[limits]\nmax_recipients = 10\nmax_line_length = "998\n')
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert "relaybox.toml:3" in str(problem)


# --- listeners ---------------------------------------------------------------------------------


def test_networks_of_one_listener_change_on_their_own_line(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.set_networks(0, ["127.0.0.0/8", "192.168.1.0/24"])
    assert changed_lines(text, doc.text()) == [
        (
            'allowed_networks = ["127.0.0.0/8", "::1/128"]\n',
            'allowed_networks = ["127.0.0.0/8", "192.168.1.0/24"]\n',
        )
    ]
    assert str(loads(tmp_path, doc.text()).listeners[0].allowed_networks[1]) == "192.168.1.0/24"


def test_a_long_list_of_networks_is_written_one_per_line(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    networks = [f"10.{n}.0.0/16" for n in range(8)]
    doc.set_networks(0, networks)
    assert "allowed_networks = [\n" + "".join(f'    "{n}",\n' for n in networks) + "]\n" in (
        doc.text()
    )
    assert len(loads(tmp_path, doc.text()).listeners[0].allowed_networks) == 8


def test_listeners_are_added_updated_and_deleted(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.add_listener({"listen": ["127.0.0.1:2526"], "allowed_networks": ["127.0.0.1"]})
    doc.update_listener(1, {"greet_pause": 2})
    assert [str(each.listen[0]) for each in loads(tmp_path, doc.text()).listeners] == [
        "127.0.0.1:2525",
        "127.0.0.1:2526",
    ]
    assert loads(tmp_path, doc.text()).listeners[1].greet_pause == 2
    doc.delete_listener(1)
    assert doc.text() == text


def test_the_first_listener_of_a_file_keeps_the_default_one(tmp_path: Path) -> None:
    """Without [[listeners]] programs on this machine relay through 127.0.0.1:2525; adding a
    listener for the office must not take that away."""
    doc = ConfigDocument.from_text("")
    doc.add_listener({"listen": ["0.0.0.0:25"], "allowed_networks": ["192.168.1.0/24"]})
    listeners = loads(tmp_path, doc.text()).listeners
    assert [str(each.listen[0]) for each in listeners] == ["127.0.0.1:2525", "0.0.0.0:25"]
    assert loads(tmp_path, "").listeners[0] == listeners[0]

    own_port = ConfigDocument.from_text("")
    own_port.add_listener({"listen": ["0.0.0.0:2525"], "allowed_networks": ["10.0.0.0/8"]})
    assert [str(each.listen[0]) for each in loads(tmp_path, own_port.text()).listeners] == [
        "0.0.0.0:2525"
    ]


# --- users -------------------------------------------------------------------------------------


def test_a_new_user_is_stored_as_a_hash_only(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.add_user("alice", "correct horse battery", ["example.org"])
    assert "correct horse" not in doc.text()
    assert doc.text().startswith(text)
    (user,) = loads(tmp_path, doc.text()).users
    assert user.name == "alice"
    assert user.allowed_senders == ("example.org",)
    assert verify_password("correct horse battery", user.password_hash)
    assert not verify_password("correct horse", user.password_hash)
    with pytest.raises(EditError):
        doc.add_user("alice", "again")


def test_allowed_senders_and_removing_a_user(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    doc.add_user("alice", "pw-a")
    with_alice = doc.text()
    doc.add_user("bob@example.org", "pw-b", ["example.net"])
    doc.delete_user("bob@example.org")
    assert doc.text() == with_alice
    doc.add_user("bob@example.org", "pw-b", ["example.net"])
    doc.set_allowed_senders("alice", ["example.org", "carol@example.net"])
    config = loads(tmp_path, doc.text())
    assert config.users[0].may_send_as("carol@example.net")
    assert config.users[1].may_send_as("x@example.net")
    doc.set_allowed_senders("alice", [])
    assert "allowed_senders = []" in doc.text()
    assert loads(tmp_path, doc.text()).users[0].allowed_senders == ()
    doc.delete_user("alice")
    assert [u["name"] for u in doc.users()] == ["bob@example.org"]
    loads(tmp_path, doc.text())


def test_setting_no_senders_for_a_user_who_had_none_changes_nothing(text: str) -> None:
    doc = ConfigDocument.from_text(text)
    doc.add_user("alice", "pw")
    before = doc.text()
    doc.set_allowed_senders("alice", [])
    assert doc.text() == before


# --- single tables and DKIM --------------------------------------------------------------------


def test_a_limit_changes_on_its_own_line(text: str, tmp_path: Path) -> None:
    doc = ConfigDocument.from_text(text)
    assert doc.table("limits")["max_recipients"] == 1000
    doc.set_value("limits", "max_recipients", 50)
    assert changed_lines(text, doc.text()) == [("max_recipients = 1000\n", "max_recipients = 50\n")]
    assert loads(tmp_path, doc.text()).limits.max_recipients == 50
    doc.set_value("limits", "max_recipients", None)
    assert "max_recipients =" not in doc.text()
    assert loads(tmp_path, doc.text()).limits.max_recipients == 1000


def test_a_table_the_file_lacks_is_added_at_the_end(tmp_path: Path) -> None:
    text = '[[routes]]\ndomains = ["*"]\ntransport = "mx"\n'
    doc = ConfigDocument.from_text(text)
    assert doc.table("limits") == {}
    doc.set_value("limits", "idle_timeout", 60.5)
    assert doc.text() == text + "\n[limits]\nidle_timeout = 60.5\n"
    assert loads(tmp_path, doc.text()).limits.idle_timeout == 60.5
    doc.set_value("delivery", "min_backoff", None)
    assert "[delivery]" not in doc.text()


def test_dkim_entries_are_added_updated_and_deleted(text: str, tmp_path: Path) -> None:
    key = generate("ed25519-sha256")
    key_file = tmp_path / "example.org.s1.key"
    write_private_key(key, key_file)
    doc = ConfigDocument.from_text(text)
    values: dict[str, Any] = {
        "domain": "example.org",
        "selector": "s1",
        "private_key": key_file,
        "algorithm": "ed25519-sha256",
    }
    doc.add_dkim(values)
    assert doc.text() == text + (
        f'\n[[dkim]]\ndomain = "example.org"\nselector = "s1"\nprivate_key = "{key_file}"\n'
        'algorithm = "ed25519-sha256"\n'
    )
    assert loads(tmp_path, doc.text()).dkim[0].selector == "s1"
    doc.update_dkim(0, {"selector": "s2"})
    assert doc.dkim_entries()[0]["selector"] == "s2"
    assert loads(tmp_path, doc.text()).dkim[0].selector == "s2"
    doc.delete_dkim(0)
    assert doc.text() == text
