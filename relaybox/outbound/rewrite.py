"""Sender rewriting in the message header, as Postfix's canonical maps do for header senders.

A route's `rewrite_senders` maps a printer's `scanner@printer.local` to an address the
upstream accepts. The envelope sender is mapped by `RouteConfig.rewrite_sender`; this module
maps the same addresses where they appear in the From: and Sender: fields, keeping display
names, folding and every other byte of the message as they were. It runs before signing, so
the DKIM signature covers what the receiver sees.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable

from relaybox.message.headers import header_end

__all__ = ["rewrite_header_senders"]

_FIELDS = (b"from", b"sender")


def rewrite_header_senders(data: bytes, rewrite: Callable[[str], str]) -> bytes:
    """`data` with each From:/Sender: address replaced by `rewrite(address)`.

    Returns `data` itself when nothing changes. An address is replaced where it appears in
    the field (case-insensitively, so a display name that repeats the address changes too);
    the display name and comments stay. A new address that is not plain ASCII is written
    only when the original field already held non-ASCII text (the message then needs
    SMTPUTF8 anyway); otherwise the field is left alone.
    """
    end = header_end(data)
    if end is None or end < 4:  # no header block found, or no fields in it
        return data
    end -= 2  # keep the fields' last CRLF in `head`; the empty line goes with the body
    head = data[:end]
    lines = head.split(b"\r\n")
    changed = False
    i = 0
    while i < len(lines):
        name = lines[i].split(b":", 1)[0].strip().lower()
        last = i
        while last + 1 < len(lines) and lines[last + 1][:1] in (b" ", b"\t"):
            last += 1
        if name in _FIELDS:
            field = b"\r\n".join(lines[i : last + 1])
            new = _rewrite_field(field, rewrite)
            if new != field:
                lines[i : last + 1] = new.split(b"\r\n")
                changed = True
                last = i + new.count(b"\r\n")
        i = last + 1
    if not changed:
        return data
    return b"\r\n".join(lines) + data[end:]


def _rewrite_field(field: bytes, rewrite: Callable[[str], str]) -> bytes:
    name, _, value = field.partition(b":")
    text = value.decode("utf-8", "surrogateescape")
    for _, address in email.utils.getaddresses([text]):
        if "@" not in address:
            continue
        new = rewrite(address)
        if new.lower() == address.lower():
            continue
        if not new.isascii() and text.isascii():
            continue
        text = re.sub(re.escape(address), new.replace("\\", "\\\\"), text, flags=re.IGNORECASE)
    return name + b":" + text.encode("utf-8", "surrogateescape")
