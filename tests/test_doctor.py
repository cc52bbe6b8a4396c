"""`relaybox doctor` as a real process: its exit codes, its text and its JSON, with a config
whose `[dns] resolvers` is a loopback DNS server serving the zones of `healthzones`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relaybox.config.keys import DkimKey
from relaybox.signing.keys import dns_record

from .dnsserver import DNSServer, DNSServerFactory
from .healthzones import HELO, OUTBOUND_IP, SELECTOR, good_zone, key_file
from .relayproc import Cli

D = "example.org"


def write_config(tmp_path: Path, server: DNSServer, key: DkimKey, *, dkim: bool = True) -> Path:
    key_path = key_file(tmp_path, key)
    block = (
        f'[[dkim]]\ndomain = "{D}"\nselector = "{SELECTOR}"\nprivate_key = "{key_path}"\n'
        if dkim
        else ""
    )
    path = tmp_path / "relaybox.toml"
    path.write_text(
        f'[server]\nhostname = "{HELO}"\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[dns]\nresolvers = ["{server.hostport}"]\ntimeout = 1\n\n'
        f'[delivery]\noutbound_ips = ["{OUTBOUND_IP}"]\n\n{block}'
    )
    return path


def doctor(cli: Cli, config: Path, *args: str) -> Any:
    return cli("doctor", "--config", config, *args)


def test_a_healthy_domain_exits_0_and_json_lists_every_finding(
    tmp_path: Path, cli: Cli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    server = dns_server(good_zone(D, key))
    result = doctor(cli, write_config(tmp_path, server, key), "--json")
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert [(f["check"], f["status"]) for f in findings] == [
        ("spf", "ok"),
        ("dkim", "ok"),
        ("dmarc", "ok"),
        ("mx", "ok"),
        ("ptr", "ok"),
        ("mta-sts", "ok"),
        ("tls-rpt", "ok"),
    ]
    base = {"domain", "check", "status", "summary", "fix"}
    for finding in findings:
        extra = {"dkim": {"selector"}, "ptr": {"ip"}}.get(finding["check"], set())
        assert set(finding) == base | extra
        assert finding["domain"] == D and finding["fix"] is None
    assert findings[1]["selector"] == SELECTOR and findings[4]["ip"] == OUTBOUND_IP
    assert server.query_count(D, "TXT") >= 1


def test_a_failed_check_exits_1_and_prints_the_record_to_publish(
    tmp_path: Path, cli: Cli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    zone = good_zone(D, key)
    zone[D]["TXT"] = "v=spf1 mx -all"
    zone.pop(f"{SELECTOR}._domainkey.{D}")
    server = dns_server(zone)
    result = doctor(cli, write_config(tmp_path, server, key))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == D
    spf = lines.index(next(line for line in lines if line.startswith("  FAIL   spf: ")))
    assert lines[spf + 1] == f'         fix: {D}. IN TXT "v=spf1 ip4:{OUTBOUND_IP} mx -all"'
    dkim = lines.index(
        next(line for line in lines if line.startswith(f"  FAIL   dkim {SELECTOR}: "))
    )
    assert lines[dkim + 1] == f"         fix: {dns_record(D, SELECTOR, key)}"
    assert any(line.startswith("  OK     mx: ") for line in lines)
    # DMARC warns that nothing aligns, without a fix of its own: SPF's and DKIM's are it.
    dmarc = lines.index(next(line for line in lines if line.startswith("  WARN   dmarc: ")))
    assert "aligns with neither DKIM" in lines[dmarc] and "fix:" not in lines[dmarc + 1]
    assert lines[-1] == "1 domain checked: 2 failed, 0 could not be checked, 1 warning"


def test_a_check_that_could_not_run_exits_2(
    tmp_path: Path, cli: Cli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    """No failure, but one lookup timed out: the domain is not known to be fine."""
    zone = good_zone(D, key)
    zone[f"_mta-sts.{D}"] = "TIMEOUT"
    zone.pop(f"_smtp._tls.{D}")  # a warning does not change the exit code
    server = dns_server(zone)
    result = doctor(cli, write_config(tmp_path, server, key), "--json")
    assert result.returncode == 2, result.stderr
    statuses = {f["check"]: f["status"] for f in json.loads(result.stdout)}
    assert statuses["mta-sts"] == "error" and statuses["tls-rpt"] == "warn"
    assert {s for c, s in statuses.items() if c not in ("mta-sts", "tls-rpt")} == {"ok"}


def test_warnings_alone_exit_0(
    tmp_path: Path, cli: Cli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    zone = good_zone(D, key)
    zone[f"_dmarc.{D}"]["TXT"] = "v=DMARC1; p=none"
    server = dns_server(zone)
    result = doctor(cli, write_config(tmp_path, server, key))
    assert result.returncode == 0, result.stderr
    assert "  WARN   dmarc: " in result.stdout
    assert f'fix: _dmarc.{D}. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@{D}"' in (
        result.stdout
    )


def test_named_domains_are_checked_instead_of_the_configs(
    tmp_path: Path, cli: Cli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    server = dns_server({**good_zone(D, key), **good_zone("other.example", key)})
    config = write_config(tmp_path, server, key, dkim=False)
    result = doctor(cli, config, "Other.Example.", "--json")
    findings = json.loads(result.stdout)
    assert {f["domain"] for f in findings} == {"other.example"}
    # Without a [[dkim]] key its mail is unsigned: a warning, so still exit 0.
    assert result.returncode == 0, result.stdout
    bad = doctor(cli, config, "../etc")
    assert bad.returncode == 2 and "not a domain name" in bad.stderr


def test_no_sending_domain_says_so_and_exits_2(
    tmp_path: Path, cli: Cli, dns_server: DNSServerFactory, key: DkimKey
) -> None:
    server = dns_server({})
    result = doctor(cli, write_config(tmp_path, server, key, dkim=False))
    assert result.returncode == 2
    assert "no sending domains to check" in result.stderr
    assert sum(server.queries.values()) == 0


def test_a_config_that_does_not_load_exits_3_with_its_problems(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "relaybox.toml"
    path.write_text('[dns]\nresolvers = ["not-an-address"]\n')
    result = cli("doctor", "--config", path, "--json")
    assert result.returncode == 3
    assert "dns.resolvers" in result.stderr and result.stdout == ""
