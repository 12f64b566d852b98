"""``ordo secrets set|list|remove``: named values kept encrypted in the store, for
``{{ secret('NAME') }}`` in templates and ``system.secret('NAME')`` in handlers. A value
is read from standard input and never printed."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Mapping

import msgspec

from ordo.cli.common import fmt_time, open_db, print_json, secret_box, table
from ordo.errors import EXIT_OK, UsageError
from ordo.secrets import check_name, check_value


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.action in ("set", "remove"):
        check_name(args.name)
    value = read_value(args.name) if args.action == "set" else ""
    store = open_db(args.db, environ)
    try:
        if args.action == "set":
            token = secret_box(environ).encrypt(args.name, value)
            new = store.set_secret(args.name, token, time.time())
            print(f"secret {args.name} {'set' if new else 'changed'}")
        elif args.action == "remove":
            store.remove_secret(args.name)
            print(f"secret {args.name} removed")
        else:
            rows = store.list_secrets()
            if args.json:
                print_json([msgspec.structs.asdict(r) for r in rows])
            else:
                print(
                    table(
                        ["NAME", "CREATED", "UPDATED"],
                        [[r.name, fmt_time(r.created_at), fmt_time(r.updated_at)] for r in rows],
                    )
                )
    finally:
        store.close()
    return EXIT_OK


def read_value(name: str) -> str:
    """The value from standard input, less one trailing newline; asked for without echo
    on a terminal."""
    if sys.stdin is None:
        raise UsageError(f"secret {name}: no standard input to read the value from")
    if sys.stdin.isatty():
        return check_value(name, getpass.getpass(f"value of secret {name}: "))
    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"secret {name}: the value on standard input is not UTF-8 text (byte {exc.start})"
        ) from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return check_value(name, text)
