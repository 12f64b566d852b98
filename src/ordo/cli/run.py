"""``ordo run FILE``: register the flow, start an execution, work on it to its end."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING

from ordo import graph
from ordo.errors import EXIT_FAILED, EXIT_OK, UsageError
from ordo.model import Flow, State, Task
from ordo.runners import RunnerSet, make_runners
from ordo.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from ordo.cli.display import Progress
    from ordo.runners.spawn import Spawned
    from ordo.worker import Worker


def command(
    args: argparse.Namespace, environ: Mapping[str, str], host: Spawned | None = None
) -> int:
    """``host``: a python host the caller started before importing this module (when
    the flow file mentions python), kept as the first of the run's."""
    settings = WorkerSettings()
    if args.workers:
        settings.slots = args.workers
    runners = make_runners(settings.slots)
    if host is not None:
        runners.adopt_python(host)
    try:
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"--workers must be at least 1, found {args.workers}")
        return _run(args, environ, settings, runners)
    finally:
        runners.close()  # reaps the hosts: the run only told them to exit


def _run(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    settings: WorkerSettings,
    runners: RunnerSet,
) -> int:
    import logging

    from ordo import engine, services
    from ordo.cli import display
    from ordo.cli.common import configure_logging, open_db, parse_pairs, print_json, secret_box
    from ordo.cli.retention import start_from_args
    from ordo.worker import Worker

    labels = parse_pairs(args.label, "-l")
    box = secret_box(environ)
    configure_logging(box, logging.WARNING, "%(message)s")  # what Python shows without one
    store = open_db(args.db, environ)
    try:
        revision = services.register_file(store, args.file, time.time())
        engine.check_children(store, revision.flow)
        at_once = _python_at_once(revision.flow)
        if at_once:  # more hosts boot while the execution is recorded
            runners.warm_python(at_once)
        execution_id = start_from_args(store, revision, args, labels)
        # with --json, standard output carries the JSON document only: progress on stderr
        out = sys.stderr if args.json else sys.stdout
        listener = display.listener_for(
            store, execution_id, revision.flow, quiet=args.quiet, out=out
        )
        worker = Worker(
            store,
            runners,
            settings=settings,
            env=environ,
            listener=listener,
            secrets=box,
        )
        final = work(worker, execution_id, listener, reap_hosts=False)
        if args.json:
            from ordo.views import execution_document, with_iso

            print_json(with_iso(execution_document(store, execution_id)))
        else:
            display.summary(store, execution_id, sys.stdout)
    finally:
        store.close()
    return EXIT_OK if final in (State.SUCCESS, State.WARNING) else EXIT_FAILED


def _python_at_once(flow: Flow) -> int:
    """How many python tasks of ``flow`` may run at once, at most: as many hosts are
    warmed before the run starts (capped by the slots; more boot when more attempts run
    at once). The most in one wave: a chain needs one, a fan-out one per task, a
    for_each task one per item it runs at once."""

    def hosts(task: Task) -> int:
        if task.type != "python":
            return 0
        return (task.concurrency or sys.maxsize) if task.for_each is not None else 1

    by_id = {t.id: t for t in flow.tasks}
    try:
        waves = graph.waves(flow.tasks)
    except ValueError:  # (a stored flow has been checked: never, but count them all)
        waves = [list(by_id)]
    return max((sum(hosts(by_id[i]) for i in wave) for wave in waves), default=0)


def work(
    worker: Worker,
    execution_id: int,
    listener: Progress,
    *,
    reap: bool = False,
    reap_hosts: bool = True,
) -> State:
    """Run ``execution_id`` to its end in this process; Ctrl-C or SIGTERM stops it.
    ``reap_hosts=False``: the python hosts exit while the caller prints and closes the
    store, and the caller closes the runners."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.interrupt(f"interrupted by signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    execution = worker.store.get_execution(execution_id)
    listener.begin(execution.reason if execution.state is State.QUEUED else None)
    try:
        return worker.run_execution(execution_id, reap=reap)
    finally:
        listener.end()
        for s, handler in previous.items():
            signal.signal(s, handler)
        worker.close(reap=reap_hosts)
