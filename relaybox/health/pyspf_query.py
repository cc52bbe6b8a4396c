"""pyspf's SPF evaluation, asking relaybox's configured DNS servers instead of the system's.

pyspf looks everything up in one place, `spf.query.dns`, which calls the module-level
`spf.DNSLookup` and so dnspython's process-wide default resolver (the system's). Overriding
that method in a subclass changes one query object and nothing else: no module global is
patched, so concurrent evaluations (and any other pyspf user in the process) are unaffected.
The evaluation blocks; callers run `evaluate` in a worker thread.
"""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import spf

__all__ = ["evaluate"]


class _ConfiguredQuery(spf.query):  # type: ignore[misc]  # pyspf has no type hints
    """A `spf.query` whose DNS lookups go to a given dnspython resolver."""

    def __init__(self, *args: Any, resolver: dns.resolver.Resolver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolver = resolver

    def dns(
        self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False
    ) -> list[Any]:
        """pyspf's `query.dns`, same contract, through `self._resolver`.

        Answers are cached per query and an empty one counts as a void lookup (RFC 7208
        §4.6.4: more than two is a permerror), as pyspf does; CNAMEs are followed by
        dnspython. Values are shaped as pyspf's dnspython driver shapes them: addresses as
        text, MX as (preference, host), PTR as host text, TXT as a tuple of bytes strings.

        Raises:
            spf.TempError: DNS failed (timeout, SERVFAIL): the result is temperror.
            spf.PermError: too many void lookups.
        """
        text = str(name).rstrip(".").lower()
        if not text:
            raise spf.PermError("empty domain name in an SPF term")
        if not all(0 < len(label) < 64 for label in text.split(".")):
            return []  # not a valid DNS name: pyspf treats it as no data
        cached: list[Any] | None = self.cache.get((text, qtype))
        if cached:
            return cached
        result = self._lookup(text, qtype)
        if result:
            self.cache[(text, qtype)] = result
        elif not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def _lookup(self, name: str, qtype: str) -> list[Any]:
        try:
            answer = self._resolver.resolve(
                dns.name.from_text(name, origin=dns.name.root),
                dns.rdatatype.from_text(qtype),
                raise_on_no_answer=False,
            )
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
            raise spf.TempError(f"DNS lookup of {name} {qtype} failed: {exc}") from None
        if answer.rrset is None:
            return []
        values: list[Any] = []
        for rdata in answer.rrset:
            if qtype in ("A", "AAAA"):
                values.append(rdata.address)
            elif qtype == "MX":
                values.append((rdata.preference, rdata.exchange.to_text(omit_final_dot=True)))
            elif qtype == "PTR":
                values.append(rdata.target.to_text(omit_final_dot=True))
            elif qtype in ("TXT", "SPF"):
                values.append(tuple(rdata.strings))
        return values


def evaluate(ip: str, domain: str, helo: str, resolver: dns.resolver.Resolver) -> tuple[str, str]:
    """The SPF result for mail from `postmaster@domain` sent from `ip` (RFC 7208 §2.6).

    Blocking: run it in a thread.

    Args:
        ip: the address receivers see the mail come from.
        domain: the envelope sender domain whose SPF record is evaluated.
        helo: the HELO name, for macros that use it.
        resolver: the configured servers (`relaybox.resolver.Resolver.blocking()`).

    Returns:
        (result, explanation): result is one of pass, fail, softfail, neutral, none,
        permerror, temperror.
    """
    query = _ConfiguredQuery(i=ip, s=f"postmaster@{domain}", h=helo, resolver=resolver)
    result, _code, explanation = query.check()
    return str(result), str(explanation)
