"""SPF records as text (RFC 7208): read one into terms, count its DNS lookups through includes,
and write the corrected record the SPF check proposes.

The SPF *result* for an address is pyspf's job (`pyspf_query.py`); this module is about the
record as written, which pyspf does not explain: which term is wrong, how many lookups the
includes add up to, and what the record should say instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from relaybox.resolver import Resolver

__all__ = [
    "MAX_LOOKUPS",
    "LookupFailed",
    "SpfRecord",
    "Term",
    "Walk",
    "count_lookups",
    "flatten",
    "ip_term",
    "is_spf",
    "merge",
]

MAX_LOOKUPS = 10
"""RFC 7208 §4.6.4: more than 10 terms that query DNS make the result permerror."""
# The terms that cost one of those lookups (RFC 7208 §4.6.4).
_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_MODIFIER = re.compile(r"([a-z][a-z0-9_.-]*)=(.*)", re.IGNORECASE)  # RFC 7208 §12 `name`
# How deep includes are followed: well beyond the 10-lookup limit, which any deeper chain
# exceeds anyway; it only guards against loops the `seen` set would miss.
_MAX_DEPTH = 12


class LookupFailed(Exception):
    """DNS did not answer while following the record (the check is then an error)."""


def is_spf(text: str) -> bool:
    """Whether a TXT record is an SPF record: "v=spf1" alone or followed by a space
    (RFC 7208 §4.5)."""
    lowered = text.lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


@dataclass(frozen=True)
class Term:
    """One mechanism or modifier of an SPF record."""

    text: str
    """As written (qualifier included)."""
    name: str
    """The mechanism or modifier name, lower case ("ip4", "include", "redirect")."""
    qualifier: str = "+"
    """"+", "-", "~" or "?" for mechanisms ("+" when none is written); "" for modifiers."""
    value: str = ""
    """What follows ":" (mechanisms) or "=" (modifiers), without a "/cidr" suffix."""
    cidr: bool = False
    """Whether a "/prefix" follows (a/24, mx//64): such terms are not flattened."""

    @property
    def modifier(self) -> bool:
        return self.qualifier == ""

    @property
    def costs_lookup(self) -> bool:
        return self.name in _LOOKUP_TERMS

    @property
    def target_text(self) -> str:
        """The domain the term names (its value), lower case without the final dot."""
        return self.value.rstrip(".").lower()


@dataclass(frozen=True)
class SpfRecord:
    """A parsed SPF record: its valid terms, and what was wrong with the others."""

    terms: tuple[Term, ...]
    problems: tuple[str, ...] = ()
    """Terms dropped because they are not valid SPF, each in words; any makes the record
    a permerror for receivers (RFC 7208 §4.6)."""

    @classmethod
    def parse(cls, text: str) -> SpfRecord:
        """Read an SPF record (the text of one TXT record that `is_spf`)."""
        terms: list[Term] = []
        problems: list[str] = []
        for token in text.split()[1:]:
            term, problem = _parse_term(token)
            if term is not None:
                terms.append(term)
            if problem:
                problems.append(problem)
        return cls(tuple(terms), tuple(problems))

    @property
    def all_term(self) -> Term | None:
        return next((t for t in self.terms if t.name == "all"), None)

    def text(self) -> str:
        """The record as it is published: "v=spf1" and the terms."""
        return " ".join(["v=spf1", *(t.text for t in self.terms)])

    def with_terms(self, terms: Iterable[Term]) -> SpfRecord:
        return SpfRecord(tuple(terms), ())

    def allowing(self, addresses: Iterable[str]) -> SpfRecord:
        """This record with an ip4:/ip6: term in front for each address it lacks, so the
        addresses pass before any other term is evaluated (RFC 7208 §4.6.2: left to right)."""
        present = {t.text.lower() for t in self.terms}
        added = [ip_term(a) for a in addresses]
        new = [t for t in dict.fromkeys(added) if t.text.lower() not in present]
        return self.with_terms([*new, *self.terms])

    def softened(self) -> SpfRecord:
        """This record with "+all" or "?all" replaced by "~all" (softfail): strangers'
        mail is no longer let through, and mail from forgotten senders is marked, not lost."""
        return self.with_terms(
            Term("~all", "all", "~") if t.name == "all" and t.qualifier in "+?" else t
            for t in self.terms
        )


def _parse_term(token: str) -> tuple[Term | None, str | None]:
    modifier = _MODIFIER.fullmatch(token)
    if modifier:
        name = modifier.group(1).lower()
        if name in ("redirect", "exp") and not modifier.group(2):
            return None, f'"{token}" names no domain'
        return Term(token, name, "", modifier.group(2)), None
    qualifier = token[0] if token[:1] in ("+", "-", "~", "?") else "+"
    body = token[1:] if token[:1] in ("+", "-", "~", "?") else token
    name, colon, rest = body.partition(":")
    cidr = False
    if not colon and "/" in name:
        name, _slash, _prefix = name.partition("/")
        cidr = True
    name = name.lower()
    if name not in _MECHANISMS:
        return None, f'"{token}" is not an SPF mechanism'
    value = rest
    if name in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(rest, strict=False)
        except ValueError:
            return None, f'"{token}" is not a valid {name} address'
        if network.version != int(name[2]):
            return None, f'"{token}": that address is not IPv{name[2]}'
        return Term(token, name, qualifier, rest), None
    if name in ("a", "mx") and "/" in rest:
        value, cidr = rest.split("/", 1)[0], True
    if name in ("include", "exists") and not rest:
        return None, f'"{token}" names no domain'
    if name == "all" and colon:
        return None, f'"{token}" is not an SPF mechanism'
    return Term(token, name, qualifier, value, cidr), None


def ip_term(address: str) -> Term:
    """The ip4: or ip6: term for one address or network."""
    version = ipaddress.ip_network(address, strict=False).version
    name = f"ip{version}"
    return Term(f"{name}:{address}", name, "+", address)


_STRICTNESS = {"-": 3, "~": 2, "?": 1, "+": 0}


def merge(records: Iterable[SpfRecord]) -> SpfRecord:
    """Several SPF records of one domain folded into the one record RFC 7208 §3.2 allows:
    every mechanism once, then the strictest "all" of them (or the first redirect) and exp.

    DNS returns records in no fixed order, so they are taken sorted by text: the same zone
    always gives the same fix.
    """
    mechanisms: list[Term] = []
    ending: Term | None = None
    redirect: Term | None = None
    exp: Term | None = None
    seen: set[str] = set()
    for record in sorted(records, key=SpfRecord.text):
        for term in record.terms:
            if term.name == "all":
                if ending is None or _STRICTNESS[term.qualifier] > _STRICTNESS[ending.qualifier]:
                    ending = term
            elif term.name == "redirect":
                redirect = redirect or term
            elif term.name == "exp":
                exp = exp or term
            elif term.modifier:
                continue  # unknown modifiers are ignored by receivers (RFC 7208 §6)
            elif term.text.lower() not in seen:
                seen.add(term.text.lower())
                mechanisms.append(term)
    # RFC 7208 §6.1: redirect is ignored when the record has "all"; keep what takes effect.
    tail = [ending] if ending else ([redirect] if redirect else [])
    return SpfRecord((*mechanisms, *tail, *([exp] if exp else [])))


@dataclass
class Walk:
    """What following a record's includes found."""

    lookups: int = 0
    """DNS-querying terms, counted through includes and redirects (RFC 7208 §4.6.4)."""
    costs: dict[Term, int] = field(default_factory=dict)
    """The lookups each top-level term costs, itself and everything below it."""
    problems: list[str] = field(default_factory=list)
    """Includes that cannot work (no SPF record there, two records, a loop): permerrors."""


async def count_lookups(domain: str, record: SpfRecord, resolver: Resolver) -> Walk:
    """Count the DNS lookups evaluating `record` of `domain` costs, following includes.

    Raises:
        LookupFailed: DNS failed while fetching an included record.
    """
    walk = Walk()
    for term in record.terms:
        cost = await _cost(term, walk, resolver, depth=1, seen=frozenset({domain}))
        walk.costs[term] = cost
        walk.lookups += cost
    return walk


async def _cost(
    term: Term, walk: Walk, resolver: Resolver, *, depth: int, seen: frozenset[str]
) -> int:
    if not term.costs_lookup:
        return 0
    if term.name not in ("include", "redirect"):
        return 1
    target = term.target_text
    if "%" in target:
        return 1  # a macro: the domain depends on the message; its record is unknowable here
    if target in seen or depth > _MAX_DEPTH:
        walk.problems.append(f"{term.text} loops back to a record that includes it")
        return 1
    record = await _record_at(target, term, walk, resolver)
    if record is None:
        return 1
    total = 1
    for inner in record.terms:
        total += await _cost(inner, walk, resolver, depth=depth + 1, seen=seen | {target})
    return total


async def _record_at(domain: str, term: Term, walk: Walk, resolver: Resolver) -> SpfRecord | None:
    """The one SPF record at `domain`, or None with the problem noted in `walk`."""
    found = await resolver.txt(domain)
    if found.kind == "temporary":
        raise LookupFailed(found.error or f"DNS lookup of {domain} TXT failed")
    records = [r for r in found.records if is_spf(r)]
    if len(records) != 1:
        what = "no SPF record" if not records else f"{len(records)} SPF records"
        walk.problems.append(f"{term.text}: {domain} has {what}")
        return None
    record = SpfRecord.parse(records[0])
    walk.problems.extend(f"{term.text}: {problem}" for problem in record.problems)
    return record


async def flatten(domain: str, record: SpfRecord, walk: Walk, resolver: Resolver) -> SpfRecord:
    """`record` with its costliest include/a/mx terms replaced by the addresses they name
    today, until it needs at most MAX_LOOKUPS lookups (or nothing more can be replaced).

    Terms that depend on the message (macros, ptr, exists) or on more than addresses
    (an include holding "-" terms or a redirect) are kept as they are.

    Raises:
        LookupFailed: DNS failed while resolving a term's addresses.
    """
    total = walk.lookups
    replaced: dict[Term, list[Term]] = {}
    by_cost = sorted(record.terms, key=lambda t: walk.costs.get(t, 0), reverse=True)
    for term in by_cost:
        if total <= MAX_LOOKUPS or walk.costs.get(term, 0) == 0:
            break
        if term.name not in ("include", "a", "mx") or term.qualifier != "+":
            continue
        addresses = await _addresses(term, domain, resolver, depth=1)
        if addresses is None:
            continue
        replaced[term] = [ip_term(a) for a in dict.fromkeys(addresses)]
        total -= walk.costs[term]
    terms: list[Term] = []
    present: set[str] = set()
    for term in record.terms:
        for new in replaced.get(term, [term]):
            if new.text.lower() not in present:
                present.add(new.text.lower())
                terms.append(new)
    return record.with_terms(terms)


async def _addresses(
    term: Term, domain: str, resolver: Resolver, *, depth: int
) -> list[str] | None:
    """The addresses `term` lets pass, or None when it cannot be written as addresses."""
    target = term.target_text or domain
    if term.qualifier != "+" or "%" in target or term.cidr or depth > _MAX_DEPTH:
        return None
    if term.name in ("ip4", "ip6"):
        return [term.value]
    if term.name == "a":
        return await _host_addresses(target, resolver)
    if term.name == "mx":
        mx = await resolver.mx(target)
        if mx.kind == "temporary":
            raise LookupFailed(mx.error or f"DNS lookup of {target} MX failed")
        if mx.kind != "hosts":  # RFC 7208 §5.4: no implicit MX for the mx mechanism
            return []
        found: list[str] = []
        for _preference, host in mx.hosts[:10]:
            found.extend(await _host_addresses(host, resolver))
        return found
    if term.name != "include":
        return None
    txt = await resolver.txt(target)
    if txt.kind == "temporary":
        raise LookupFailed(txt.error or f"DNS lookup of {target} TXT failed")
    records = [r for r in txt.records if is_spf(r)]
    if len(records) != 1:
        return None
    found = []
    for inner in SpfRecord.parse(records[0]).terms:
        if inner.name == "all" and inner.qualifier != "+":
            break  # nothing after "all" is evaluated
        if inner.name == "exp":
            continue
        addresses = await _addresses(inner, target, resolver, depth=depth + 1)
        if addresses is None:
            return None
        found.extend(addresses)
    return found


async def _host_addresses(host: str, resolver: Resolver) -> list[str]:
    result = await resolver.addresses(host)
    if result.kind == "temporary":
        raise LookupFailed(result.error or f"DNS lookup of {host} failed")
    return list(result.addresses)
