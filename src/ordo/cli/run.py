"""``ordo run FILE``: register the flow, start an execution, work on it to its end."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Mapping
from types import FrameType

from ordo import engine
from ordo.cli import display
from ordo.cli.common import open_db, parse_pairs, print_json
from ordo.errors import EXIT_FAILED, EXIT_OK, UsageError
from ordo.model import State
from ordo.runners import make_runners
from ordo.worker import Worker, WorkerSettings


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    inputs = parse_pairs(args.input, "-i")
    labels = parse_pairs(args.label, "-l")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, found {args.workers}")
    store = open_db(args.db, environ)
    try:
        revision = engine.register_flow(store, args.file, time.time())
        execution_id = engine.start_execution(store, revision, inputs, time.time(), labels=labels)
        settings = WorkerSettings()
        if args.workers:
            settings.slots = args.workers
        quiet = args.quiet or args.json  # stdout carries the JSON document only
        listener = display.listener_for(store, execution_id, revision.flow, quiet=quiet)
        worker = Worker(
            store, make_runners(settings.slots), settings=settings, env=environ, listener=listener
        )
        final = _work(worker, execution_id, listener)
        if args.json:
            from ordo.cli.inspect import execution_document

            print_json(execution_document(store, execution_id))
        else:
            display.summary(store, execution_id, sys.stdout)
    finally:
        store.close()
    return EXIT_OK if final in (State.SUCCESS, State.WARNING) else EXIT_FAILED


def _work(worker: Worker, execution_id: int, listener: display.Progress) -> State:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.interrupt(f"interrupted by signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    listener.begin()
    try:
        return worker.run_execution(execution_id)
    finally:
        listener.end()
        for s, handler in previous.items():
            signal.signal(s, handler)
        worker.close()
