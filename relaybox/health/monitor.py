"""The running engine's view of its sending domains' health, kept fresh in the background.

The checks (`checks.py`) run at start, every `[health] check_interval`, and when an admin asks
(the Domains pane's re-check); what delivery itself learns about a signing key in DNS
(`DkimKeyChecked`) replaces that selector's finding at once, so a key unpublished an hour
after the last check shows up with the first message signed with it. Checks run on the event
loop as async DNS (pyspf in a thread) and never stall the relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relaybox.clock import Clock, system_clock
from relaybox.config.model import Config
from relaybox.events import DkimKeyChecked, DomainsChecked, EventBus
from relaybox.health.checks import check_domains, resolver_for, sending_domains
from relaybox.health.findings import Finding, Status, worst
from relaybox.maillog import MailLog
from relaybox.signing.keys import dns_record

__all__ = ["DomainMonitor", "DomainReport"]

FIRST_CHECK_DELAY = 2.0
"""Seconds after start before the first check, so it does not compete with start-up."""
_KEY_FINDING: dict[str, Status] = {
    "ok": "ok",
    "missing": "fail",
    "mismatch": "fail",
    "revoked": "fail",
    "unparsable": "fail",
    "error": "error",
}


@dataclass(frozen=True)
class DomainReport:
    """Every finding of every sending domain, and when they were made."""

    findings: tuple[Finding, ...]
    checked_at: dict[str, float]
    """Domain -> when its checks last finished (wall clock); absent until the first."""
    checking: bool
    """Whether a check is running now."""

    def domains(self) -> list[str]:
        """The domains with findings, in the order checked."""
        return list(dict.fromkeys(f.domain for f in self.findings))

    def of(self, domain: str) -> list[Finding]:
        return [f for f in self.findings if f.domain == domain]

    def status(self, domain: str, check: str) -> str | None:
        """The worst status of one check of one domain; None when it was not made."""
        found = [f.status for f in self.findings if f.domain == domain and f.check == check]
        return worst(found) if found else None


class DomainMonitor:
    """Holds the latest findings; `check()` refreshes them, `run()` does so periodically."""

    def __init__(
        self,
        config: Callable[[], Config],
        bus: EventBus,
        log: MailLog,
        clock: Clock = system_clock,
    ) -> None:
        self._config = config
        self.bus = bus
        self.log = log
        self.clock = clock
        self._findings: dict[str, list[Finding]] = {}
        self._checked_at: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def report(self) -> DomainReport:
        """What is known now, without looking anything up."""
        wanted = sending_domains(self._config())
        extra = [d for d in self._findings if d not in wanted]
        findings = [f for d in (*wanted, *extra) for f in self._findings.get(d, [])]
        return DomainReport(tuple(findings), dict(self._checked_at), self._lock.locked())

    async def check(self, domains: Sequence[str] | None = None) -> DomainReport:
        """Check these domains (by default every sending domain) now and keep the findings.

        One check runs at a time; a request made during one waits for it and then runs.
        """
        async with self._lock:
            config = self._config()
            names = list(domains) if domains else sending_domains(config)
            findings = await check_domains(config, resolver_for(config), names) if names else []
            now = self.clock()
            by_domain: dict[str, list[Finding]] = {d.lower().rstrip("."): [] for d in names}
            for finding in findings:
                by_domain.setdefault(finding.domain, []).append(finding)
            for domain, found in by_domain.items():
                self._log_changes(domain, self._findings.get(domain, []), found)
                self._findings[domain] = found
                self._checked_at[domain] = now
            if by_domain:
                self.bus.publish(DomainsChecked(tuple(by_domain), now, at=now))
        return self.report()

    def note_key(self, event: DkimKeyChecked) -> None:
        """Delivery looked a signing key up: that selector's finding becomes what it saw."""
        status = _KEY_FINDING.get(event.status, "error")
        fix = None
        if status == "fail":
            entry = next(
                (
                    e
                    for e in self._config().dkim
                    if e.domain == event.domain and e.selector == event.selector
                ),
                None,
            )
            if entry is not None and entry.key is not None:
                fix = dns_record(entry.domain, entry.selector, entry.key)
        finding = Finding(
            event.domain,
            "dkim",
            status,
            f"Seen by delivery: {event.detail}",
            fix,
            selector=event.selector,
        )
        found = self._findings.setdefault(event.domain, [])
        for i, old in enumerate(found):
            if old.check == "dkim" and old.selector == event.selector:
                if old.status == finding.status and status == "ok":
                    return  # the check already said so; keep its fuller words
                found[i] = finding
                break
        else:
            found.append(finding)
        now = self.clock()
        self.bus.publish(DomainsChecked((event.domain,), now, at=now))

    async def run(self) -> None:
        """Check soon after start, then every `[health] check_interval` (0: only on request;
        the interval is read each round, so a reload changes it)."""
        await asyncio.sleep(FIRST_CHECK_DELAY)
        last: float | None = None
        while True:
            interval = self._config().health.check_interval
            if last is None or (interval > 0 and self.clock() - last >= interval):
                last = self.clock()
                try:
                    await self.check()
                except Exception:  # a bug in one check must not end the monitoring
                    self.log.exception("domain-check-failed")
            await asyncio.sleep(min(interval, 60.0) if interval > 0 else 60.0)

    def _log_changes(self, domain: str, before: list[Finding], after: list[Finding]) -> None:
        """One log line per finding that turned to fail or error, or back to ok."""
        old = {(f.check, f.selector, f.ip): f.status for f in before}
        for finding in after:
            was = old.get((finding.check, finding.selector, finding.ip))
            if was == finding.status:
                continue
            if finding.status in ("fail", "error"):
                self.log.warning(
                    "domain-" + finding.status,
                    domain=domain,
                    check=finding.check,
                    selector=finding.selector,
                    ip=finding.ip,
                    note=finding.summary,
                )
            elif was in ("fail", "error"):
                self.log.event("domain-fixed", domain=domain, check=finding.check)
