"""Checks of the `[[dkim]]` blocks: one exact domain and a valid selector each, no pair twice,
and a key file that can sign, read now rather than at the first delivery. Signing is
`relaybox.signing`'s job. (Not named `dkim.py`, which would read like the dkimpy package.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from relaybox.config.keys import DkimKeyError, check_selector, load_private_key
from relaybox.config.model import DkimConfig
from relaybox.config.positions import join_key
from relaybox.config.problems import Report
from relaybox.config.readers import read_domain_pattern
from relaybox.config.tables import blocks_of, read_table

__all__ = ["read_dkim"]

_SHAPE = (
    "write each key as its own [[dkim]] block (with double square brackets), with "
    "domain, selector and private_key lines (relaybox dkim keygen prints one)"
)


def read_dkim(report: Report, data: dict[str, Any]) -> tuple[DkimConfig, ...]:
    """The `[[dkim]]` blocks, each key file read and checked now (not at delivery)."""
    blocks = blocks_of(report, data, "dkim", noun=None, shape=_SHAPE)
    built: list[DkimConfig] = []
    seen: dict[tuple[str, str], int] = {}
    for index, block in enumerate(blocks or []):
        prefix = f"dkim[{index}]"
        entry: DkimConfig | None = read_table(report, prefix, DkimConfig, block, block="dkim")
        if entry is None:
            continue
        domain = read_domain_pattern(report, join_key(prefix, "domain"), entry.domain)
        if domain is None:
            continue
        if domain.startswith("*"):
            report.error(
                join_key(prefix, "domain"),
                f'"{entry.domain}": a DKIM key signs for one domain; write it exactly, '
                "and add a block for each subdomain that sends mail",
            )
            continue
        selector = entry.selector.strip().lower()
        problem = check_selector(selector)
        if problem:
            report.error(join_key(prefix, "selector"), problem)
            continue
        if (domain, selector) in seen:
            report.error(
                join_key(prefix, "selector"),
                f"{domain} already has a key under selector {selector} (dkim"
                f"[{seen[domain, selector]}]); one key per domain and selector",
            )
            continue
        seen[domain, selector] = index
        try:
            key = load_private_key(entry.private_key, entry.algorithm)
        except DkimKeyError as exc:
            report.error(join_key(prefix, "private_key"), str(exc))
            continue
        if entry.algorithm == "rsa-sha256" and key.bits < 2048:
            report.warn(
                join_key(prefix, "private_key"),
                f"a {key.bits}-bit RSA key: receivers may treat it as weak; make a "
                f"2048-bit one (relaybox dkim keygen {domain} --selector NEW)",
            )
        built.append(dataclasses.replace(entry, domain=domain, selector=selector, key=key))
    return tuple(built)
