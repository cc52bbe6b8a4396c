"""`relaybox suppress add|remove|list`: the recipients refused at RCPT, through the admin layer."""

from __future__ import annotations

import argparse
import json
import sys

from relaybox.admin.client import AdminClient
from relaybox.cli.common import EXIT_FAIL, EXIT_OK, REFUSED, iso, line_writer
from relaybox.untrusted import visible

__all__ = ["suppress"]


async def suppress(admin: AdminClient, args: argparse.Namespace) -> int:
    """`relaybox suppress ACTION`: add, remove or list entries."""
    if args.action == "add":
        try:
            address = await admin.suppress_add(args.address, args.reason, args.days)
        except REFUSED as exc:
            print(f"relaybox: {visible(str(exc))}", file=sys.stderr)
            return EXIT_FAIL
        print(
            f"suppressed {address}: mail to it is refused at RCPT (a running engine picks "
            "this up within 5 seconds)"
        )
        return EXIT_OK
    if args.action == "remove":
        if await admin.suppress_remove(args.address):
            print(f"removed {visible(args.address.lower())}")
            return EXIT_OK
        print(f"relaybox: {visible(args.address)} is not on the suppression list", file=sys.stderr)
        return EXIT_FAIL
    rows = await admin.suppress_list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "address": r.address,
                        "reason": r.reason,
                        "created_at": iso(r.created_at),
                        "expires_at": iso(r.expires_at),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("The suppression list is empty")
    # A reason is often a next hop's reply (a hard bounce), so it is made visible.
    w = line_writer(sys.stdout)
    for r in rows:
        expires = f" expires {iso(r.expires_at)}" if r.expires_at else ""
        w(f"{r.address}  since {iso(r.created_at)}{expires}  {r.reason}")
    return EXIT_OK
