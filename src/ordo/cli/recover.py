"""``ordo kill``, ``resume``, ``restart``, ``replay`` and ``mark``: stop an execution (and
its children) for good, finish one whose ``ordo run`` died, run an ended one again in
place or as a new execution, set a task run's state by hand."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from collections.abc import Mapping

from ordo import services
from ordo.cli import display
from ordo.cli.common import fmt_time, open_db, parse_pairs, print_json, secret_box
from ordo.cli.run import work
from ordo.errors import EXIT_FAILED, EXIT_OK, UsageError
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.records import ExecutionRow
from ordo.worker import Worker, WorkerSettings


def kill_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        execution = store.get_execution(args.id)
        if execution.state.terminal:
            raise UsageError(_already_ended(execution, "nothing to kill"))
        services.kill(store, args.id, f"{who()} with ordo kill", time.time())
        final = _wait_killed(store, execution, args.wait)
    finally:
        store.close()
    return EXIT_OK if final is State.KILLED else EXIT_FAILED


def _wait_killed(store: Store, execution: ExecutionRow, wait: float) -> State:
    """Wait until the execution is KILLED: its workers stop their attempts within their
    grace; attempts of workers that died on this machine are taken back at once."""
    deadline = time.monotonic() + wait
    while True:
        reap_dead(store, execution.root_id or execution.id)
        current = store.get_execution(execution.id)
        if current.state.terminal or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if current.state.terminal:
        print(f"execution {current.id} {current.flow_key}: {current.state.value}")
    else:
        running = [a for a in store.attempts(current.id) if a.state is State.RUNNING]
        workers = sorted({a.worker_id or "?" for a in running})
        print(
            f"execution {current.id} is KILLING: {len(running)} attempt(s) still running on "
            f"{', '.join(workers)}; their workers stop them (see ordo executions show "
            f"{current.id})"
        )
    return current.state


def restart_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    given = parse_pairs(args.input, "-i")
    store = open_db(args.db, environ)
    try:
        execution = services.top_execution(store, args.id, "restart")
        again = services.restart(
            store,
            args.id,
            time.time(),
            from_task=args.from_task,
            inputs=given,
            latest=args.revision == "latest",
        )
        if not args.quiet and not args.json:
            print(f"execution {args.id} restarted: {', '.join(again)} run again")
        return _run_to_end(store, execution.id, args, environ)
    finally:
        store.close()


def replay_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    given = parse_pairs(args.input, "-i")
    store = open_db(args.db, environ)
    try:
        new_id = services.replay(
            store,
            args.id,
            args.from_task,
            time.time(),
            inputs=given,
            latest=args.revision == "latest",
        )
        if args.detach:
            from ordo.cli.serve import unserved_note

            flow = store.flow_of(store.get_execution(new_id).revision_id)
            note = unserved_note(store, flow, time.time())
            print(new_id)
            if note:
                print(f"note: {note}", file=sys.stderr)
            return EXIT_OK
        if not args.quiet and not args.json:
            print(f"execution {new_id} replays execution {args.id} from {args.from_task}")
        return _run_to_end(store, new_id, args, environ)
    finally:
        store.close()


def mark_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        new = State.SUCCESS if args.state == "success" else State.FAILED
        marked = services.mark(
            store, args.id, args.task, new.value, who(), time.time(), args.reason
        )
    finally:
        store.close()
    print(f"task {marked.label} of execution {args.id}: {marked.old.value} -> {marked.new.value}")
    if marked.execution_new is not marked.execution_old:
        print(f"execution {args.id}: {marked.execution_old.value} -> {marked.execution_new.value}")
    if marked.reopened:
        print(f"to run again: {', '.join(marked.reopened)} (ordo resume {args.id} runs them)")
    elif marked.execution_new in (State.FAILED, State.KILLED) and new is State.SUCCESS:
        print(f"ordo restart {args.id} runs what is left")
    return EXIT_OK


def _run_to_end(
    store: Store, execution_id: int, args: argparse.Namespace, environ: Mapping[str, str]
) -> int:
    """Work on the execution in this process until it ends, like ``ordo run``."""
    execution = store.get_execution(execution_id)
    settings = WorkerSettings()
    if args.workers:
        settings.slots = args.workers
    flow = store.flow_of(execution.revision_id)
    out = sys.stderr if args.json else sys.stdout  # stdout carries the JSON document only
    listener = display.listener_for(store, execution.id, flow, quiet=args.quiet, out=out)
    worker = Worker(
        store,
        make_runners(settings.slots),
        settings=settings,
        env=environ,
        listener=listener,
        secrets=secret_box(environ),
    )
    final = work(worker, execution.id, listener, reap=True)
    if args.json:
        from ordo.views import execution_document

        print_json(execution_document(store, execution.id))
    else:
        display.summary(store, execution.id, sys.stdout)
    return EXIT_OK if final in (State.SUCCESS, State.WARNING) else EXIT_FAILED


def resume_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        execution = services.top_execution(store, args.id, "resume")
        if execution.state.terminal:
            raise UsageError(_already_ended(execution, "nothing to resume"))
        taken = reap_dead(store, execution.id)
        if taken and not args.json:
            print(f"took back the attempts of {', '.join(taken)} (no longer running)")
        return _run_to_end(store, execution.id, args, environ)
    finally:
        store.close()


def reap_dead(store: Store, root_id: int) -> list[str]:
    """Record the running attempts of this tree's workers that are known to be dead
    (processes of this machine that are gone) as lost; their ids."""
    return services.take_back_dead(store, root_id, time.time())


def who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return socket.gethostname()


def _already_ended(execution: ExecutionRow, what: str) -> str:
    when = fmt_time(execution.ended_at)
    return (
        f"execution {execution.id} already ended {execution.state.value} at {when}; {what} "
        f"(ordo restart {execution.id} or ordo replay {execution.id} --from TASK run it again)"
    )


COMMANDS = {
    "kill": kill_command,
    "resume": resume_command,
    "restart": restart_command,
    "replay": replay_command,
    "mark": mark_command,
}
