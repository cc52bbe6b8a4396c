"""Checking `[[routes]]`: domain patterns, transports, reject routes, sender rewriting, the
warnings about risky or hidden routes, and matching."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relaybox.config import (
    DEFAULT_ROUTE,
    Config,
    HostPort,
    RouteConfig,
    check_config,
    default_config,
    load_config,
    sample_config_text,
)

from .support.configs import (
    CATCH_ALL,
    errors_of,
    make_pair,
    only_error,
    password_file,
    route,
    smarthost,
    warnings_of,
    write,
)

# --- [[routes]] ------------------------------------------------------------------------------


def test_routes_load_in_file_order(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    text = (
        route(
            'domains = ["Example.ORG", "*.Example.org"]',
            'sender_domains = ["corp.example"]',
            'transport = "smarthost"',
            'hosts = ["SMTP.example.net:587", "[2001:db8::25]:465", "192.0.2.25:25"]',
            'tls = "verify"',
            "round_robin = true",
            'username = "relay@example.org"',
            f"password_file = '{pw}'",
            "max_messages_per_minute = 30",
            "max_connections = 2",
        )
        + route('domains = ["*.test"]', 'transport = "capture"')
        + route('domains = ["blocked.example"]', 'transport = "reject"', 'reject_text = "No."')
        + route('domains = ["held.example"]', 'transport = "hold"')
        + route('domains = ["*"]', 'transport = "mx"', 'tls = "required"')
    )
    routes = load_config(write(tmp_path, text)).routes
    assert routes[0] == RouteConfig(
        domains=("example.org", "*.example.org"),
        sender_domains=("corp.example",),
        transport="smarthost",
        hosts=(
            HostPort("smtp.example.net", 587),
            HostPort("2001:db8::25", 465),
            HostPort("192.0.2.25", 25),
        ),
        tls="verify",
        round_robin=True,
        username="relay@example.org",
        password_file=pw,
        max_messages_per_minute=30,
        max_connections=2,
    )
    assert [r.transport for r in routes] == ["smarthost", "capture", "reject", "hold", "mx"]
    assert routes[1].tls == "opportunistic" and routes[1].hosts == ()
    assert routes[2].reject_text == "No."
    assert routes[3].reject_text == "Relaying to this domain is not allowed"
    assert str(routes[0].hosts[1]) == "[2001:db8::25]:465"


def test_international_domain_patterns_are_stored_as_a_labels(tmp_path: Path) -> None:
    text = route('domains = ["Bücher.example", "*.bücher.example"]', 'transport = "hold"')
    [held, _] = load_config(write(tmp_path, text + CATCH_ALL)).routes
    assert held.domains == ("xn--bcher-kva.example", "*.xn--bcher-kva.example")
    assert held.matches("bücher.example", "")
    assert held.matches("shop.BÜCHER.example", "")


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("*example.org", '"*" may only stand alone'),
        ("mail.*.example.org", '"*" may only stand alone'),
        ("*.*.example.org", '"*" may only stand alone'),
        (".example.org", 'write "*.example.org" for the subdomains of example.org'),
        ("user@example.org", 'routes match domains, so write "example.org"'),
        ("192.0.2.1", "is an IP address"),
        ("[192.0.2.1]", "is an IP address"),
        ("exa mple.org", "contains a space"),
        ("mail_server.example.com", "not a valid host name"),
        ("example..org", "not a valid host name"),
        ("", "must not be empty"),
    ],
)
def test_bad_domain_pattern_is_explained(tmp_path: Path, pattern: str, words: str) -> None:
    for setting in ("domains", "sender_domains"):
        lines = [f'domains = ["{pattern}"]'] if setting == "domains" else ['domains = ["*"]']
        if setting == "sender_domains":
            lines.append(f'sender_domains = ["{pattern}"]')
        problem = only_error(tmp_path, route(*lines, 'transport = "mx"'))
        assert (problem.key, problem.line) == (f"routes[0].{setting}[0]", len(lines) + 1)
        assert words in problem.message


def test_star_cannot_be_combined_with_other_domains(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["example.org", "*"]', 'transport = "mx"'))
    assert problem.key == "routes[0].domains[1]"
    assert '"*" already matches every domain' in problem.message
    text = route('domains = ["*"]', 'sender_domains = ["*", "example.org"]', 'transport = "mx"')
    assert only_error(tmp_path, text).key == "routes[0].sender_domains[0]"


def test_route_needs_domains_and_a_transport(tmp_path: Path) -> None:
    text = route('transport = "mx"') + route('domains = ["*"]')
    errors = errors_of(tmp_path, text)
    assert [(p.key, p.line) for p in errors] == [("routes[0]", 1), ("routes[1]", 3)]
    assert 'has no "domains" key; add one, like domains = ["example.org"' in errors[0].message
    assert 'has no "transport" key' in errors[1].message
    problem = only_error(tmp_path, route("domains = []", 'transport = "mx"'))
    assert problem.key == "routes[0].domains"
    assert "at least one domain" in problem.message


def test_unknown_transport_lists_the_choices(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "relay"'))
    assert problem.key == "routes[0].transport"
    assert '"mx", "smarthost", "reject", "hold", "capture"' in problem.message
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "mx"', 'tls = "yes"'))
    assert '"none", "opportunistic", "required", "verify", "implicit"' in problem.message


def test_routes_written_as_a_single_table_or_an_empty_list_are_explained(
    tmp_path: Path,
) -> None:
    problem = only_error(tmp_path, '[routes]\ndomains = ["*"]\ntransport = "mx"\n')
    assert problem.key == "routes" and "[[routes]]" in problem.message
    problem = only_error(tmp_path, "routes = []\n")
    assert problem.key == "routes" and "no route" in problem.message


def test_unknown_key_in_routes_suggests_the_right_one(tmp_path: Path) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "mx"', 'host = ["a:25"]'))
    assert (problem.key, problem.line) == ("routes[0].host", 4)
    assert 'did you mean "hosts"?' in problem.message


# --- reject routes, limits and sender rewriting ---------------------------------------------


def test_reject_text_is_only_for_reject_routes(tmp_path: Path) -> None:
    text = route('domains = ["*"]', 'transport = "mx"', 'reject_text = "Go away"')
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].reject_text"
    assert 'only used with transport = "reject"' in problem.message


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "must not be empty"), ("Zurück", "ASCII"), ("x" * 401, "keep it under 400")],
)
def test_bad_reject_text_is_explained(tmp_path: Path, text: str, words: str) -> None:
    lines = ('domains = ["x.example"]', 'transport = "reject"', f'reject_text = "{text}"')
    problem = only_error(tmp_path, route(*lines) + CATCH_ALL)
    assert problem.key == "routes[0].reject_text"
    assert words in problem.message


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("max_messages_per_minute = -1", "between 0 and 100000"),
        ("max_connections = 0", "between 1 and 1000"),
    ],
)
def test_route_limits(tmp_path: Path, setting: str, words: str) -> None:
    problem = only_error(tmp_path, route('domains = ["*"]', 'transport = "mx"', setting))
    assert problem.key == "routes[0]." + setting.split(" ")[0]
    assert words in problem.message


def test_rewrite_senders_are_loaded_and_applied(tmp_path: Path) -> None:
    text = smarthost(
        "rewrite_senders = { "
        '"Scanner@Printer.local" = "scanner@example.org", '
        '"@printer.local" = "noreply@example.org" }'
    )
    [smart] = load_config(write(tmp_path, text)).routes
    assert smart.rewrite_senders == (
        ("scanner@printer.local", "scanner@example.org"),
        ("@printer.local", "noreply@example.org"),
    )
    assert smart.rewrite_sender("scanner@printer.local") == "scanner@example.org"
    assert smart.rewrite_sender("SCANNER@printer.LOCAL") == "scanner@example.org"
    assert smart.rewrite_sender("copier@printer.local") == "noreply@example.org"
    assert smart.rewrite_sender("alice@example.org") == "alice@example.org"
    assert smart.rewrite_sender("") == ""
    assert DEFAULT_ROUTE.rewrite_sender("scanner@printer.local") == "scanner@printer.local"


def test_rewrite_senders_as_a_sub_table(tmp_path: Path) -> None:
    text = smarthost() + '[routes.rewrite_senders]\n"@printer.local" = "noreply@example.org"\n'
    [smart] = load_config(write(tmp_path, text)).routes
    assert smart.rewrite_senders == (("@printer.local", "noreply@example.org"),)


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ('"printer.local" = "a@example.org"', "printer.local", "neither an address nor an @"),
        ('"@" = "a@example.org"', "@", "the domain after @ is empty"),
        ('"@printer_1.local" = "a@example.org"', "@printer_1.local", "not a valid host name"),
        ('"a b@printer.local" = "a@example.org"', "a b@printer.local", "not a valid address"),
        ('"@printer.local" = "@example.org"', "@printer.local", "must be a whole address"),
        ('"@printer.local" = "example.org"', "@printer.local", "must be a whole address"),
        ('"@printer.local" = "a@@example.org"', "@printer.local", "not a valid address"),
        ('"@printer.local" = 5', "@printer.local", "an address in quotes"),
    ],
)
def test_bad_rewrite_senders_entry_is_explained(
    tmp_path: Path, entry: str, key: str, words: str
) -> None:
    problem = only_error(tmp_path, smarthost(f"rewrite_senders = {{ {entry} }}"))
    assert (problem.key, problem.line) == (f"routes[0].rewrite_senders.{key}", 6)
    assert words in problem.message


def test_rewrite_senders_differing_only_in_case_are_an_error(tmp_path: Path) -> None:
    text = smarthost(
        'rewrite_senders = { "a@x.local" = "a@example.org", "A@X.local" = "b@example.org" }'
    )
    problem = only_error(tmp_path, text)
    assert problem.key == "routes[0].rewrite_senders.A@X.local"
    assert "listed twice" in problem.message
    problem = only_error(tmp_path, smarthost('rewrite_senders = ["a@x.local"]'))
    assert "a table in curly brackets" in problem.message


# --- route warnings --------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["none", "opportunistic", "required"])
def test_password_without_a_verified_server_is_warned_about(tmp_path: Path, tls: str) -> None:
    pw = password_file(tmp_path)
    [warning] = warnings_of(
        tmp_path, smarthost('username = "relay"', f"password_file = '{pw}'", tls=tls)
    )
    assert (warning.key, warning.line) == ("routes[0].tls", 5)
    assert (
        "the password would be sent where it can be intercepted or to an unverified server; "
        'use tls = "verify"'
    ) in warning.message


@pytest.mark.parametrize("tls", ["verify", "implicit"])
def test_password_to_a_verified_server_is_fine(tmp_path: Path, tls: str) -> None:
    pw = password_file(tmp_path)
    port = 465 if tls == "implicit" else 587
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        f'hosts = ["smtp.example.net:{port}"]',
        f'tls = "{tls}"',
        'username = "relay"',
        f"password_file = '{pw}'",
    )
    assert warnings_of(tmp_path, text) == []


def test_password_warning_points_at_username_when_tls_is_the_default(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["smtp.example.net:587"]',
        'username = "relay"',
        f"password_file = '{pw}'",
    )
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("routes[0].username", 5)
    assert 'tls = "opportunistic"' in warning.message


def test_smarthost_without_encryption_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, smarthost(tls="none"))
    assert warning.key == "routes[0].tls"
    assert "sent unencrypted" in warning.message


def test_port_and_tls_mode_that_do_not_fit_are_warned_about(tmp_path: Path) -> None:
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["a.example.net:465", "b.example.net:587"]',
    )
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "routes[0].hosts[0]"
    assert 'set tls = "implicit"' in warning.message
    text = route(
        'domains = ["*"]',
        'transport = "smarthost"',
        'hosts = ["a.example.net:587"]',
        'tls = "implicit"',
    )
    [warning] = warnings_of(tmp_path, text)
    assert "port 587 starts without TLS" in warning.message
    [warning] = warnings_of(
        tmp_path, route('domains = ["*"]', 'transport = "mx"', 'tls = "implicit"')
    )
    assert "MX servers on port 25 expect STARTTLS" in warning.message


def test_route_after_a_catch_all_is_warned_about(tmp_path: Path) -> None:
    text = CATCH_ALL + route('domains = ["*.test"]', 'transport = "capture"')
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("routes[1]", 4)
    assert "can never be used: routes[0] (line 1) comes first" in warning.message


@pytest.mark.parametrize(
    ("earlier", "later", "hidden"),
    [
        (['domains = ["*.example.org"]'], ['domains = ["a.example.org"]'], True),
        (['domains = ["*.example.org"]'], ['domains = ["*.a.example.org"]'], True),
        (['domains = ["*.example.org"]'], ['domains = ["example.org"]'], False),
        (['domains = ["example.org"]'], ['domains = ["example.org", "example.net"]'], False),
        (
            ['domains = ["example.org"]'],
            ['domains = ["example.org"]', 'sender_domains = ["corp.example"]'],
            True,
        ),
        (
            ['domains = ["example.org"]', 'sender_domains = ["corp.example"]'],
            ['domains = ["example.org"]'],
            False,
        ),
        (
            ['domains = ["example.org"]', 'sender_domains = ["*.corp.example"]'],
            ['domains = ["example.org"]', 'sender_domains = ["a.corp.example"]'],
            True,
        ),
    ],
)
def test_route_hidden_by_an_earlier_one_is_warned_about(
    tmp_path: Path, earlier: list[str], later: list[str], hidden: bool
) -> None:
    text = route(*earlier, 'transport = "hold"') + route(*later, 'transport = "hold"')
    warnings = warnings_of(tmp_path, text + CATCH_ALL)
    assert [w.key for w in warnings] == (["routes[1]"] if hidden else [])


def test_routes_without_a_catch_all_are_warned_about(tmp_path: Path) -> None:
    text = route('domains = ["example.org"]', 'transport = "mx"')
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("routes", 1)
    assert "mail to other domains will be refused at RCPT with 550 5.7.1" in warning.message
    # A "*" route for some senders only does not catch everything.
    text = route('domains = ["*"]', 'sender_domains = ["corp.example"]', 'transport = "mx"')
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "routes"


def test_settings_a_reject_or_capture_route_does_not_use_are_warned_about(
    tmp_path: Path,
) -> None:
    text = route(
        'domains = ["*.test"]', 'transport = "capture"', 'tls = "verify"', "max_connections = 3"
    )
    warnings = warnings_of(tmp_path, text + CATCH_ALL)
    assert [w.key for w in warnings] == ["routes[0].tls", "routes[0].max_connections"]
    assert 'transport = "capture" sends nothing on' in warnings[0].message


def test_round_robin_over_one_host_and_too_many_connections_are_warned_about(
    tmp_path: Path,
) -> None:
    text = smarthost("round_robin = true", "max_connections = 60")
    warnings = warnings_of(tmp_path, text)
    assert [w.key for w in warnings] == ["routes[0].round_robin", "routes[0].max_connections"]
    assert "only one host" in warnings[0].message
    assert "[delivery] max_connections (50)" in warnings[1].message


# --- matching --------------------------------------------------------------------------------


def test_matches_exact_wildcard_and_star() -> None:
    exact = RouteConfig(domains=("example.org",), transport="mx")
    assert exact.matches("example.org", "")
    assert exact.matches("EXAMPLE.Org", "x.example")
    assert not exact.matches("mail.example.org", "")
    assert not exact.matches("notexample.org", "")
    wildcard = RouteConfig(domains=("*.example.org",), transport="mx")
    assert wildcard.matches("mail.example.org", "")
    assert wildcard.matches("a.b.Example.ORG", "")
    assert not wildcard.matches("example.org", "")  # the apex needs its own entry
    assert not wildcard.matches("badexample.org", "")
    star = RouteConfig(domains=("*",), transport="mx")
    assert star.matches("anything.example", "")
    assert star.matches("", "")


def test_matches_sender_domains() -> None:
    corp = RouteConfig(
        domains=("*",), sender_domains=("corp.example", "*.corp.example"), transport="smarthost"
    )
    assert corp.matches("example.org", "corp.example")
    assert corp.matches("example.org", "Branch.Corp.Example")
    assert not corp.matches("example.org", "other.example")
    assert not corp.matches("example.org", "")  # the null sender has no domain
    anyone = RouteConfig(domains=("*",), sender_domains=("*",), transport="mx")
    assert anyone.matches("example.org", "")


def test_route_for_takes_the_first_match() -> None:
    capture = RouteConfig(domains=("*.test",), transport="capture")
    corp = RouteConfig(domains=("*",), sender_domains=("corp.example",), transport="smarthost")
    reject = RouteConfig(domains=("competitor.example",), transport="reject")
    mx = RouteConfig(domains=("*",), transport="mx")
    config = Config(routes=(capture, corp, reject, mx))
    assert config.route_for("a@app.test", "me@corp.example") is capture
    assert config.route_for("a@example.org", "me@corp.example") is corp
    assert config.route_for("a@competitor.example", "me@corp.example") is corp
    assert config.route_for("a@competitor.example", "me@home.example") is reject
    assert config.route_for("a@example.org", "") is mx
    assert config.route_for("postmaster", "") is mx


def test_route_for_is_none_when_nothing_matches() -> None:
    config = Config(routes=(RouteConfig(domains=("example.org",), transport="mx"),))
    assert config.route_for("a@example.org", "b@example.net") is not None
    assert config.route_for("a@example.net", "b@example.org") is None
    assert config.route_for("postmaster", "") is None
    assert default_config().route_for("anyone@anywhere.example", "") is DEFAULT_ROUTE


def test_sample_route_examples_work_when_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing the # from every example [[routes]] line gives a valid config whose only
    warning is that the live "*" block after the smart host example is never used."""
    monkeypatch.setenv("PROVIDER_PASSWORD", "x")
    certificate, _ = make_pair(tmp_path)
    pw = password_file(tmp_path)
    text = sample_config_text()
    routes = text[text.index("\n# [[routes]]\n") :]
    examples = "\n".join(
        line[2:] if re.match(r"# ?(\[\[routes\]\]|\w+ = )", line) else line
        for line in routes.splitlines()
    )
    examples = examples.replace("/etc/relaybox/provider-ca.pem", str(certificate))
    examples = examples.replace("/etc/relaybox/smarthost.password", str(pw))
    config = load_config(write(tmp_path, examples))
    assert [r.transport for r in config.routes] == [
        "smarthost",
        "reject",
        "capture",
        "smarthost",
        "mx",
    ]
    [warning] = check_config(write(tmp_path, examples))[1]
    assert warning.key == "routes[4]"
    assert "can never be used" in warning.message
