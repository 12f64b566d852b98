"""``ordo connections add|list|show|remove``: named databases and HTTP APIs. What is
printed is masked: passwords in URLs and header values show as ``****``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from ordo import services, views
from ordo.cli.common import fmt_time, open_db, print_json, short, table
from ordo.errors import EXIT_OK, UsageError
from ordo.store import Store


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    config = _config(args) if args.action == "add" else {}
    store = open_db(args.db, environ)
    try:
        if args.action == "add":
            store.save_connection(args.name, args.type, config, time.time(), replace=args.replace)
            shown = short(store.get_connection(args.name).masked(), 90)
            print(f"connection {args.name} saved: {shown}")
        elif args.action == "remove":
            store.remove_connection(args.name)
            print(f"connection {args.name} removed")
        elif args.action == "show":
            _show(store, args)
        else:
            _list(store, args)
    finally:
        store.close()
    return EXIT_OK


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of ``add``, checked against the type."""
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header expects NAME:VALUE, found {item!r}")
        headers[name.strip()] = value.strip()
    return services.connection_config(
        args.name, args.type, args.url, args.base_url, headers, flags=True
    )


def _show(store: Store, args: argparse.Namespace) -> None:
    connection = store.get_connection(args.name)
    if args.json:
        print_json(views.connection_dict(connection))
        return
    print(f"connection {connection.name}  ({connection.type})")
    for key, value in connection.masked().items():
        print(f"  {key}: {short(value, 100)}")
    print(f"  updated: {fmt_time(connection.updated_at)}")


def _list(store: Store, args: argparse.Namespace) -> None:
    found = store.list_connections()
    if args.json:
        print_json([views.connection_dict(c) for c in found])
        return
    print(
        table(
            ["NAME", "TYPE", "SETTINGS", "UPDATED"],
            [[c.name, c.type, short(c.masked(), 70), fmt_time(c.updated_at)] for c in found],
        )
    )
