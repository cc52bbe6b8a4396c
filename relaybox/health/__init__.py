"""Domain authentication health: SPF, DKIM, DMARC, MX, reverse DNS, MTA-STS and TLS-RPT
checks of the domains relaybox sends mail for, each giving findings with the record to
publish. `relaybox doctor` prints them; the UI shows them."""

from __future__ import annotations

from relaybox.health.checks import check_domain, check_domains, resolver_for, sending_domains
from relaybox.health.findings import CHECKS, STATUSES, Finding, worst

__all__ = [
    "CHECKS",
    "STATUSES",
    "Finding",
    "check_domain",
    "check_domains",
    "resolver_for",
    "sending_domains",
    "worst",
]
