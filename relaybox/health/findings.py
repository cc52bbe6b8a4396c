"""What a domain check found: one `Finding` per thing checked, and the zone-file lines that fix it.

This module only describes results; the checks that make them live beside it (spf.py,
dkim_check.py, ...), and nothing here looks anything up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from relaybox.signing.keys import txt_strings

__all__ = ["CHECKS", "STATUSES", "Check", "Finding", "Status", "worst", "zone_txt"]

Check = Literal["spf", "dkim", "dmarc", "mx", "ptr", "mta-sts", "tls-rpt"]
Status = Literal["ok", "warn", "fail", "error"]
CHECKS: tuple[Check, ...] = ("spf", "dkim", "dmarc", "mx", "ptr", "mta-sts", "tls-rpt")
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "error")

# How bad a status is, for summing findings up: a check that could not run (error) says less
# than one that found a failure, so fail outranks it.
_RANK: dict[Status, int] = {"ok": 0, "warn": 1, "error": 2, "fail": 3}


@dataclass(frozen=True)
class Finding:
    """One result of one check of one sending domain.

    A check may give several findings: DKIM one per selector, PTR one per outbound IP.
    """

    domain: str
    """The sending domain checked, lower case."""
    check: Check
    """Which check: spf, dkim, dmarc, mx, ptr, mta-sts or tls-rpt."""
    status: Status
    """`ok`; `warn` (works, but should be improved); `fail` (receivers will reject or
    distrust the mail); `error` (the check could not be made now, e.g. DNS timed out: neither
    pass nor fail)."""
    summary: str
    """What was found and why it matters, in plain words."""
    fix: str | None
    """The whole record to publish, as one zone-file line, keeping what the present record
    has that is right; None when the finding is ok, when it is an error, and when the record
    depends on something only the admin knows (the summary then says what to publish)."""
    selector: str | None = None
    """The DKIM selector of a `dkim` finding."""
    ip: str | None = None
    """The outbound IP address of a `ptr` finding."""

    def to_json(self) -> dict[str, Any]:
        """The finding as `relaybox doctor --json` prints it: domain, check, status, summary,
        fix, plus selector on DKIM findings and ip on PTR findings."""
        out: dict[str, Any] = {
            "domain": self.domain,
            "check": self.check,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
        }
        if self.check == "dkim":
            out["selector"] = self.selector
        if self.check == "ptr":
            out["ip"] = self.ip
        return out


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    """The most serious of `statuses` (fail > error > warn > ok); ok when there are none."""
    return max(statuses, key=_RANK.__getitem__, default="ok")


def zone_txt(owner: str, value: str) -> str:
    """The zone-file line publishing one TXT record: `owner. IN TXT "..." "..."`, the value
    cut into strings of at most 255 octets (RFC 1035 §3.3.14), quotes and backslashes
    escaped (RFC 1035 §5.1)."""
    escaped = [s.replace("\\", "\\\\").replace('"', '\\"') for s in txt_strings(value)]
    return f"{owner.rstrip('.')}. IN TXT " + " ".join(f'"{s}"' for s in escaped)
