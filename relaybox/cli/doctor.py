"""`relaybox doctor`: the sending domains' DNS (SPF, DKIM, DMARC, MX, reverse DNS, MTA-STS,
TLS-RPT) checked now and printed with the record to publish; the checks are `health`'s. It also
says (on stderr, as a failure) what would keep the engine from starting on its state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from relaybox.cli.common import (
    EXIT_DOCTOR_CONFIG,
    EXIT_DOCTOR_ERROR,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    line_writer,
    load_config,
)
from relaybox.cli.spool import state_problem
from relaybox.config.keys import check_domain as check_dkim_domain
from relaybox.health import Finding, check_domains, resolver_for, sending_domains, worst

__all__ = ["doctor"]


def doctor(args: argparse.Namespace) -> int:
    """`relaybox doctor`: the domain health findings, for people or (--json) for scripts."""
    config = load_config(args)
    if config is None:
        return EXIT_DOCTOR_CONFIG
    # What would keep the engine from starting is a failure too, whatever the DNS says.
    state = state_problem(config.server.state_dir)
    if state:
        print(f"relaybox: FAIL state directory: {state}", file=sys.stderr)
    domains: list[str] = []
    for name in args.domains:
        domain = name.strip().lower().rstrip(".")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # check_dkim_domain says what is wrong
        problem = check_dkim_domain(domain)
        if problem:
            print(f"relaybox: {problem}", file=sys.stderr)
            return EXIT_USAGE
        domains.append(domain)
    domains = domains or sending_domains(config)
    if not domains:
        # Nothing was checked, so nothing can be said to be fine: exit as "could not check".
        print(
            "relaybox: no sending domains to check: the config has no [[dkim]] blocks and no "
            "[[users]] with allowed_senders. Name the domains: relaybox doctor example.org",
            file=sys.stderr,
        )
        if args.json:
            print("[]")
        return EXIT_FAIL if state else EXIT_DOCTOR_ERROR
    findings = asyncio.run(check_domains(config, resolver_for(config), domains))
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=2))
    else:
        _print_findings(findings, sys.stdout)
    status = "fail" if state else worst([f.status for f in findings])
    return {"fail": EXIT_FAIL, "error": EXIT_DOCTOR_ERROR}.get(status, EXIT_OK)


def _print_findings(findings: Sequence[Finding], out: TextIO) -> None:
    """One line per finding (status, check, summary), the record to publish on the next;
    grouped by domain, with a count at the end."""
    domain = None
    w = line_writer(out)  # a summary may quote a DNS record: strangers' text
    for finding in findings:
        if finding.domain != domain:
            if domain is not None:
                w("")
            w(finding.domain)
            domain = finding.domain
        what = finding.check + "".join(f" {x}" for x in (finding.selector, finding.ip) if x)
        w(f"  {finding.status.upper():<5}  {what}: {finding.summary}")
        if finding.fix:
            w(f"         fix: {finding.fix}")
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("fail", "error", "warn")}
    domains = len({f.domain for f in findings})
    out.write(
        f"\n{domains} domain{'s' if domains != 1 else ''} checked: {counts['fail']} failed, "
        f"{counts['error']} could not be checked, {counts['warn']} "
        f"warning{'s' if counts['warn'] != 1 else ''}\n"
    )
