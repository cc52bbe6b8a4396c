"""The tag=value lists of DKIM keys (RFC 6376 §3.2), DMARC (RFC 7489 §6.4), MTA-STS
(RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3) records: read one, and write one back.

Parsing only; what each tag means is the business of the check that reads it.
"""

from __future__ import annotations

import re

__all__ = ["TagError", "format_tags", "parse_tags"]

# RFC 6376 §3.2: tag-name = ALPHA *ALNUMPUNC (ALNUMPUNC is ALPHA / DIGIT / "_").
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class TagError(ValueError):
    """A record that is not a tag list; the message says where, in plain words."""


def parse_tags(text: str) -> dict[str, str]:
    """The tags of `text` in the order written, names lower-cased, values stripped.

    Args:
        text: the whole record, e.g. "v=DMARC1; p=none; rua=mailto:d@example.org".

    Returns:
        name -> value; a trailing ";" and empty parts are allowed (RFC 6376 §3.2).

    Raises:
        TagError: a part without "=", a name that is not a tag name, or a tag given twice
            (RFC 6376 §3.2: "Tags with duplicate names MUST NOT occur").
    """
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq:
            raise TagError(f'"{part.strip()}" is not a tag=value pair')
        if not _TAG_NAME.fullmatch(name):
            raise TagError(f'"{name}" is not a tag name')
        key = name.lower()
        if key in tags:
            raise TagError(f"the tag {name}= is given twice")
        tags[key] = value.strip()
    return tags


def format_tags(tags: dict[str, str]) -> str:
    """`tags` written back as "a=1; b=2", in their order."""
    return "; ".join(f"{name}={value}" for name, value in tags.items())
