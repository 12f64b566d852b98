"""``ordo worker``, ``ordo workers list`` and ``ordo submit``: work shared by many
processes through one store."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Mapping
from types import FrameType

import msgspec

from ordo import engine, services
from ordo.cli import logconfig
from ordo.cli.common import (
    configure_logging,
    fmt_time,
    open_db,
    parse_pairs,
    print_json,
    secret_box,
    table,
)
from ordo.cli.retention import start_from_args
from ordo.errors import EXIT_OK, UsageError
from ordo.model import Flow, parse_duration
from ordo.runners import make_runners
from ordo.store import Store
from ordo.worker import Worker, WorkerSettings


def worker_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Serve queues until SIGTERM/SIGINT (graceful: running attempts get ``--grace``)."""
    box = secret_box(environ)
    logconfig.configure(args)  # --log-level, --log-format
    configure_logging(box)  # every record masked; libraries' loggers from WARNING
    settings = WorkerSettings(queues=tuple(args.queue or ["default"]))
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError(f"--workers must be at least 1, found {args.workers}")
        settings.slots = args.workers
    try:
        settings.grace = parse_duration(args.grace)
        settings.lease_seconds = max(parse_duration(args.lease), 0.5)
    except ValueError as exc:
        raise UsageError(f"--grace/--lease: {exc}") from None
    settings.heartbeat_every = settings.lease_seconds / 3
    settings.claim_lease_seconds = min(settings.claim_lease_seconds, settings.lease_seconds)
    # claims a dead worker had not launched come back once their short lease ends
    settings.reap_every = min(settings.lease_seconds, settings.claim_lease_seconds) / 2
    store = open_db(args.db, environ)
    worker = Worker(
        store,
        make_runners(settings.slots),
        settings=settings,
        env=environ,
        secrets=box,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("ordo").info("%s: stopping", signal.Signals(signum).name)
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        worker.serve()
    finally:
        worker.close()
        store.close()
    return EXIT_OK


def workers_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        now = time.time()
        rows = store.list_workers(since=now - 3600)
    finally:
        store.close()
    if args.json:
        print_json(
            [
                {
                    **msgspec.structs.asdict(row),
                    "alive": _alive(row.heartbeat_at, row.stopped_at, now),
                }
                for row in rows
            ]
        )
        return EXIT_OK
    print(
        table(
            ["WORKER", "HOST", "PID", "QUEUES", "STARTED", "LAST HEARTBEAT", "RUNNING", "STATE"],
            [
                [
                    r.id,
                    r.host,
                    str(r.pid),
                    r.queues,
                    fmt_time(r.started_at),
                    fmt_time(r.heartbeat_at),
                    str(r.running),
                    _alive(r.heartbeat_at, r.stopped_at, now),
                ]
                for r in rows
            ],
        )
    )
    return EXIT_OK


#: A worker whose last heartbeat is older than this is lost (it beats every lease/3).
ALIVE_FOR = 35.0


def _alive(heartbeat_at: float, stopped_at: float | None, now: float) -> str:
    if stopped_at is not None:
        return "stopped"
    return "alive" if now - heartbeat_at < ALIVE_FOR else "lost"


def unserved_note(store: Store, flow: Flow, now: float) -> str | None:
    """What to tell who just submitted an execution of ``flow`` if no live worker (one
    of ``ordo worker`` or ``ordo server``, heartbeat within :data:`ALIVE_FOR`) serves
    the queues of its tasks; None when they are all served."""
    alive = [
        w
        for w in store.list_workers(since=now - ALIVE_FOR)
        if _alive(w.heartbeat_at, w.stopped_at, now) == "alive"
    ]
    served = {q for w in alive for q in w.queues.split(",")}
    needed = sorted({t.queue for t in flow.tasks} - served)
    if not needed:
        return None
    if not alive:
        return (
            "no worker serves this store (none has sent a heartbeat in the last "
            f"{ALIVE_FOR:.0f}s): the execution waits until one starts "
            "(ordo worker, or ordo server)"
        )
    names = ", ".join(needed)
    flags = " ".join(f"-Q {q}" for q in needed)
    return f"no live worker serves queue {names}: the execution waits (ordo worker {flags})"


def submit_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Record an execution and print its id; workers run it."""
    labels = parse_pairs(args.label, "-l")
    store = open_db(args.db, environ)
    try:
        revision = services.register_file(store, args.file, time.time())
        engine.check_children(store, revision.flow)
        execution_id = start_from_args(store, revision, args, labels)
        note = unserved_note(store, revision.flow, time.time())
    finally:
        store.close()
    print(execution_id)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK
