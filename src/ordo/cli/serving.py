"""``ordo server``, ``ordo tokens create|list|revoke``, ``ordo emit`` and ``ordo flows
next|activate|deactivate``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from ordo import services
from ordo.cli import logconfig
from ordo.cli.common import (
    configure_logging,
    database_url,
    fmt_time,
    load_settings,
    open_db,
    print_json,
    secret_box,
    session_key,
    table,
)
from ordo.definitions.schema import ID_RE
from ordo.errors import EXIT_OK, UsageError
from ordo.model import parse_duration
from ordo.triggers.scheduler import iso, next_fire_times

TOKEN_PREFIX = "ordo_"


def flow_key(text: str) -> tuple[str, str]:
    namespace, _, flow_id = text.rpartition("/")
    return namespace or "default", flow_id


def server_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from ordo.server import ServerOptions, serve

    box = secret_box(environ)
    logconfig.configure(args)  # --log-level, --log-format
    configure_logging(box)  # every record masked; libraries' loggers from WARNING
    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        raise UsageError(f"--grace: {exc}") from None
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, found {args.workers} (or --no-workers)")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1 to 65535, found {args.port}")
    if args.watch and not args.flows:
        raise UsageError("--watch needs --flows DIR (the folder to watch)")
    if args.flows and not os.path.isdir(args.flows):
        raise UsageError(f"--flows: {args.flows} is not a folder")
    _check_address(args.host, args.port)
    workers = 0 if args.no_workers else (args.workers or os.cpu_count() or 2)
    url = database_url(args.db, environ)
    open_db(args.db, environ).close()  # a bad URL or an unreachable server fails here
    serve(
        ServerOptions(
            db_url=url,
            host=args.host,
            port=args.port,
            workers=workers,
            grace=grace,
            settings=load_settings(environ),
            environ=dict(environ),
            flows_dir=args.flows,
            watch=args.watch,
            secrets=box,
            session_key=session_key(environ),
        )
    )
    return EXIT_OK


def _check_address(host: str, port: int) -> None:
    """A clear error now for an address the server could not listen on."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (--host/--port)"
        ) from None


def tokens_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        if args.action == "create":
            if not args.name.strip() or len(args.name) > 100:
                raise UsageError("--name must be 1 to 100 characters")
            scope = _namespaces(args.namespace)
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            store.add_token(
                args.name, services.token_hash(token), args.read_only, time.time(), scope
            )
            kind = "read-only " if args.read_only else ""
            limited = f" for namespaces {', '.join(scope)}" if scope else ""
            print(
                f"{kind}token {args.name!r}{limited} (shown once; keep it secret):",
                file=sys.stderr,
            )
            print(token)
        elif args.action == "revoke":
            store.revoke_token(args.name, time.time())
            print(f"token {args.name} revoked")
        else:
            rows = store.list_tokens()
            if args.json:
                print_json([msgspec.structs.asdict(r) for r in rows])
            else:
                print(
                    table(
                        ["ID", "NAME", "ACCESS", "NAMESPACES", "CREATED", "LAST USED", "REVOKED"],
                        [
                            [
                                str(r.id),
                                r.name,
                                "read-only" if r.read_only else "read-write",
                                ",".join(r.namespaces) if r.namespaces is not None else "*",
                                fmt_time(r.created_at),
                                fmt_time(r.last_used_at),
                                fmt_time(r.revoked_at),
                            ]
                            for r in rows
                        ],
                    )
                )
    finally:
        store.close()
    return EXIT_OK


def _namespaces(values: list[str] | None) -> list[str] | None:
    """``--namespace`` values, checked: None when there are none (every namespace)."""
    if not values:
        return None
    for value in values:
        if not ID_RE.match(value):
            raise UsageError(
                f"--namespace: {value!r} is not a namespace (letters, digits, -, _ and .)"
            )
    return sorted(set(values))


def parse_data(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--data: not JSON: {exc}") from None


def emit_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    data = parse_data(args.data)
    store = open_db(args.db, environ)
    try:
        emitted = services.emit(store, args.type, data, time.time())
    finally:
        store.close()
    return print_emitted(
        {"id": emitted.event_id, "executions": emitted.executions, "errors": emitted.errors},
        args.type,
        args.json,
    )


def print_emitted(doc: Mapping[str, Any], event_type: str, as_json: bool) -> int:
    if as_json:
        print_json(doc)
        return EXIT_OK
    started = ", ".join(str(i) for i in doc["executions"]) or "none"
    print(f"event {doc['id']} {event_type}: started executions {started}")
    for error in doc["errors"]:
        print(f"warning: {error}", file=sys.stderr)
    return EXIT_OK


def flows_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    namespace, flow_id = flow_key(args.id)
    store = open_db(args.db, environ)
    try:
        if args.action in ("activate", "deactivate"):
            services.set_active(store, namespace, flow_id, args.action == "activate", time.time())
            print(f"flow {namespace}/{flow_id} {args.action}d")
            return EXIT_OK
        flow = services.find_flow(store, namespace, flow_id).flow
    finally:
        store.close()
    schedules = [t for t in flow.triggers if t.type == "schedule"]
    if not schedules:
        raise UsageError(f"flow {flow.key} has no schedule trigger")
    if not 1 <= args.count <= 1000:
        raise UsageError(f"--count must be 1 to 1000, found {args.count}")
    now = time.time()
    for trigger in schedules:
        print(f"{trigger.id}: {trigger.cron} ({trigger.timezone}, {trigger.dialect})")
        for ts in next_fire_times(trigger, now, args.count):
            print(f"  {iso(ts)}  {_local(ts, trigger.timezone)}")
    return EXIT_OK


def _local(ts: float, zone: str) -> str:
    return datetime.datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


COMMANDS = {
    "server": server_command,
    "tokens": tokens_command,
    "emit": emit_command,
    "flows": flows_command,
}
