"""The Domains pane (key 5) and its detail screen: snapshots over a real engine whose domain
checks ask a real DNS server on loopback, and the keys that re-check and open a domain.

The zones hold one domain with a failing SPF record and a weak DMARC policy, and one with no
DMARC record and a null MX, so every status colour shows. The DKIM key is a fixed test key
(tests/data/dkim-snapshot.key) so the record to publish is the same on every run.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaybox.config.keys import load_private_key
from relaybox.config.model import (
    DeliveryConfig,
    DkimConfig,
    DnsConfig,
    HealthConfig,
    RouteConfig,
    SocketAddress,
    UserConfig,
)
from relaybox.tui.panes.domains import DomainsPane
from relaybox.tui.screens.domain import DomainScreen

from .dnsserver import DNSServer
from .healthzones import dkim_value
from .support.configs import make_config
from .tui_seed import NOW, SIZES, SeededApp, SeededLink

pytestmark = pytest.mark.usefixtures("utc")
"""Times on screen are local time: pinned to UTC for every test here."""

TESTS = Path(__file__).parent
KEY_FILE = Path("data") / "dkim-snapshot.key"
"""Relative to tests/ (each test runs there), so the path on screen is the same anywhere."""
KEY = load_private_key(TESTS / KEY_FILE, "rsa-sha256")
HELO = "relay.example.test"
IP = "203.0.113.7"
REVERSE = "7.113.0.203.in-addr.arpa"

ZONE: dict[str, Any] = {
    # office.example: signed and published, but SPF lacks the relay's address and DMARC
    # only monitors.
    "office.example": {
        "TXT": "v=spf1 include:_spf.mail.example -all",
        "MX": "10 mx.office.example.",
    },
    "_spf.mail.example": {"TXT": "v=spf1 ip4:198.51.100.0/24 -all"},
    "mx.office.example": {"A": "127.0.0.2"},
    "s2031._domainkey.office.example": {"TXT": dkim_value(KEY)},
    "_dmarc.office.example": {"TXT": "v=DMARC1; p=none; rua=mailto:dmarc@office.example"},
    "_mta-sts.office.example": {"TXT": "v=STSv1; id=2031010101"},
    "_smtp._tls.office.example": {"TXT": "v=TLSRPTv1; rua=mailto:tls@office.example"},
    # shop.example: a user's sender domain that accepts no mail and has no DMARC record.
    "shop.example": {"TXT": f"v=spf1 ip4:{IP} -all", "MX": "0 ."},
    HELO: {"A": IP},
    REVERSE: {"PTR": f"{HELO}."},
}


@pytest.fixture(autouse=True)
def in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)


@pytest.fixture
def domains_dns() -> Iterator[DNSServer]:
    with DNSServer(ZONE) as server:
        yield server


def domains_app(tmp_path: Path, dns: DNSServer) -> SeededApp:
    """The seeded UI over an engine that signs for office.example and has a user sending as
    shop.example; its domain checks ask only `dns`, and only when asked (`c`)."""
    base = make_config(tmp_path / "state", hostname=HELO)
    config = dataclasses.replace(
        base,
        routes=(RouteConfig(domains=("*",), transport="hold"),),
        dns=DnsConfig(resolvers=(SocketAddress(*dns.address),), timeout=1.0),
        delivery=DeliveryConfig(outbound_ips=(ipaddress.ip_address(IP),)),
        dkim=(DkimConfig("office.example", "s2031", KEY_FILE, "rsa-sha256", KEY),),
        users=(UserConfig("shop", "scrypt$unused", ("shop.example",)),),
        health=HealthConfig(check_interval=0),
    )
    return SeededApp(SeededLink(config), clock=lambda: NOW, theme="relaybox-dark")  # type: ignore[arg-type]


async def checked(pilot: Any) -> None:
    """Open the Domains pane, check now, and wait (bounded) until both domains are shown."""
    await pilot.press("5")
    await pilot.pause(0.1)
    pane = pilot.app.query_one(DomainsPane)
    await pilot.press("c")
    deadline = time.monotonic() + 20
    while len(pane.report.domains()) < 2 or pane.report.checking:
        assert time.monotonic() < deadline, "the domain check did not finish"
        await pilot.pause(0.05)
    await pilot.pause(0.3)


def test_domains_pane_after_a_check(snap_compare: Any, tmp_path: Path, domains_dns, size) -> None:
    """One row per sending domain; SPF FAIL and DMARC warn for office.example, DMARC and MX
    FAIL for shop.example."""
    assert snap_compare(domains_app(tmp_path, domains_dns), terminal_size=size, run_before=checked)


def test_domain_detail_lists_findings_and_the_record_to_publish(
    snap_compare: Any, tmp_path: Path, domains_dns, size
) -> None:
    """Enter on office.example: every finding, the first failing one selected, its SPF fix
    (the present record with the relay's address added) below."""

    async def run_before(pilot: Any) -> None:
        await checked(pilot)
        await pilot.press("enter")
        await pilot.pause(0.3)

    assert snap_compare(
        domains_app(tmp_path, domains_dns), terminal_size=size, run_before=run_before
    )


@pytest.fixture(params=SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def size(request: Any) -> tuple[int, int]:
    return request.param


async def test_the_table_reads_what_the_check_found(tmp_path: Path, domains_dns) -> None:
    """Not a picture: the cells of the Domains table hold each check's status, Enter opens the
    domain with its first failing finding and the record to publish, Escape comes back."""
    app = domains_app(tmp_path, domains_dns)
    async with app.run_test(size=(120, 30)) as pilot:
        await checked(pilot)
        table = app.query_one(DomainsPane).table
        rows = {
            str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)[1:6]]
            for i in range(table.row_count)
        }
        assert rows == {
            "office.example": ["FAIL", "ok", "warn", "ok", "ok"],
            "shop.example": ["ok", "warn", "FAIL", "FAIL", "ok"],
        }
        await pilot.press("enter")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, DomainScreen) and screen.domain == "office.example"
        selected = screen.selected
        assert selected is not None and selected.check == "spf" and selected.status == "fail"
        assert selected.fix == (
            'office.example. IN TXT "v=spf1 ip4:203.0.113.7 include:_spf.mail.example -all"'
        )
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert (
            isinstance(app.query_one(DomainsPane), DomainsPane)
            and app.screen is app.screen_stack[0]
        )


async def test_an_authentication_bounce_links_to_its_domain(tmp_path: Path, domains_dns) -> None:
    """A message bounced with 5.7.26 (DMARC) says so in the inspector, and `a` opens the
    findings of its From: domain; a message refused for another reason offers no `a`."""
    from relaybox.queue import AttemptRow, MessageFilter, RecipientOutcome
    from relaybox.tui.screens.inspector import InspectorScreen

    from .tui_seed import _msg

    app = domains_app(tmp_path, domains_dns)
    async with app.run_test(size=(120, 40)) as pilot:
        await checked(pilot)
        engine = app.link.engine  # type: ignore[attr-defined]
        message = dataclasses.replace(
            _msg(9, "alice@office.example", ("ceo@bigmail.example",), "Invoice", 30),
            queue_id="0SEEDED000009",
        )
        await engine.spool.store_message(message)
        rows = await engine.admin.list_all(MessageFilter(states=()))
        row_id = next(r.id for r in rows if r.queue_id == "0SEEDED000009")
        reply = (
            "550 5.7.26 Unauthenticated email from office.example is not accepted due to "
            "domain's DMARC policy"
        )
        await engine.spool.finish_attempt(
            row_id,
            [RecipientOutcome(0, "bounced", reply, None, "mx:bigmail.example")],
            [
                AttemptRow(
                    NOW,
                    NOW,
                    "mx:bigmail.example",
                    None,
                    None,
                    None,
                    None,
                    ("ceo@bigmail.example",),
                    "bounced",
                    reply,
                    (),
                )
            ],
            now=NOW,
        )
        app.push_screen(
            InspectorScreen(app.link, "0SEEDED000009", app.mail.act_on, clock=app.clock)
        )
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, InspectorScreen)
        text = "\n".join(t for _, t in screen.view.lines)
        assert "refused this over office.example's sender authentication" in text
        await pilot.press("a")
        await pilot.pause(0.3)
        assert isinstance(app.screen, DomainScreen) and app.screen.domain == "office.example"
        assert [f.check for f in app.screen.findings][:3] == ["spf", "dkim", "dmarc"]
        await pilot.press("escape")
        await pilot.pause(0.1)
        # A message deferred for an ordinary reason: no authentication words, no `a`.
        app.push_screen(
            InspectorScreen(app.link, "0SEEDED000001", app.mail.act_on, clock=app.clock)
        )
        await pilot.pause(0.5)
        assert isinstance(app.screen, InspectorScreen)
        await pilot.press("a")
        await pilot.pause(0.2)
        assert isinstance(app.screen, InspectorScreen)
