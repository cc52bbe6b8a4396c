"""The running engine's domain monitor: checks on request and in the background, findings over
the admin socket, and what delivery learns about a signing key shown at once."""

from __future__ import annotations

import asyncio
import dataclasses

from relaybox.admin.client import ControlClient
from relaybox.config.model import HealthConfig
from relaybox.events import DkimKeyChecked, DomainsChecked
from relaybox.statedir import SOCKET_NAME

from .healthzones import SELECTOR, config_for, good_zone, key_file, new_key
from .support.configs import make_config, to_sink
from .support.smtp import MESSAGE_TO_SIGN as MESSAGE
from .support.smtp import send

KEY = new_key()


def engine_config(tmp_path, dns, *, routes=None, **health):
    config = config_for(
        ["example.com"],
        key_file(tmp_path, KEY),
        dns.address,
        state_dir=tmp_path / "state",
        **({"routes": routes} if routes else {}),
    )
    listeners = make_config(tmp_path / "state").listeners
    dkim = tuple(dataclasses.replace(e, key=KEY) for e in config.dkim)
    return dataclasses.replace(
        config, listeners=listeners, dkim=dkim, health=HealthConfig(**health)
    )


async def test_a_check_on_request_keeps_its_findings(start_engine, dns_server, tmp_path):
    dns = dns_server(good_zone("example.com", KEY))
    run = await start_engine(engine_config(tmp_path, dns, check_interval=0))
    events = run.engine.bus.subscribe(types=(DomainsChecked,))
    report = await run.engine.admin.check_domains()
    assert report.domains() == ["example.com"]
    assert {f.check: f.status for f in report.findings} == {
        "spf": "ok",
        "dkim": "ok",
        "dmarc": "ok",
        "mx": "ok",
        "ptr": "ok",
        "mta-sts": "ok",
        "tls-rpt": "ok",
    }
    event = await asyncio.wait_for(events.get(), 5)
    assert event.domains == ("example.com",)
    kept = await run.engine.admin.domain_report()
    assert kept.findings == report.findings and "example.com" in kept.checked_at


async def test_the_socket_serves_the_report_and_the_check(start_engine, dns_server, tmp_path):
    zone = good_zone("example.com", KEY)
    del zone["_dmarc.example.com"]
    dns = dns_server(zone)
    run = await start_engine(engine_config(tmp_path, dns, check_interval=0))
    client = await ControlClient.connect(run.engine.config.server.state_dir / SOCKET_NAME)
    try:
        assert (await client.domain_report()).findings == ()
        report = await client.check_domains(["example.com"])
        assert report.status("example.com", "dmarc") == "fail"
        (dmarc,) = [f for f in report.findings if f.check == "dmarc"]
        assert dmarc.fix and dmarc.fix.startswith("_dmarc.example.com. IN TXT")
        assert (await client.domain_report()).findings == report.findings
    finally:
        await client.close()
    assert "domain-fail domain=example.com check=dmarc" in run.log_text()


async def test_the_first_check_runs_by_itself_after_start(start_engine, dns_server, tmp_path):
    dns = dns_server(good_zone("example.com", KEY))
    run = await start_engine(engine_config(tmp_path, dns, check_interval=3600))
    events = run.engine.bus.subscribe(types=(DomainsChecked,))
    await asyncio.wait_for(events.get(), 10)
    assert (await run.engine.admin.domain_report()).status("example.com", "spf") == "ok"


async def test_a_key_problem_seen_by_delivery_shows_at_once(
    start_engine, smtp_sink, dns_server, tmp_path
):
    """The check said the key was fine; then the record went away. The first signed message
    finds out, and the domain's DKIM finding turns to fail with the record to publish."""
    dns = dns_server(good_zone("example.com", KEY), negative_ttl=0)
    sink = await smtp_sink()
    route = to_sink(sink)
    run = await start_engine(engine_config(tmp_path, dns, routes=(route,), check_interval=0))
    assert (await run.engine.admin.check_domains()).status("example.com", "dkim") == "ok"
    dns.delete(f"{SELECTOR}._domainkey.example.com")
    events = run.engine.bus.subscribe(types=(DkimKeyChecked, DomainsChecked))
    await send(run, "alice@example.com", ["bob@example.org"], MESSAGE)
    await sink.wait_for(1)
    seen = [await asyncio.wait_for(events.get(), 5) for _ in range(2)]
    assert [type(e).__name__ for e in seen] == ["DkimKeyChecked", "DomainsChecked"]
    report = await run.engine.admin.domain_report()
    (dkim,) = [f for f in report.findings if f.check == "dkim"]
    assert dkim.status == "fail" and dkim.summary.startswith("Seen by delivery:")
    assert dkim.fix and dkim.fix.startswith(f"{SELECTOR}._domainkey.example.com. IN TXT")
