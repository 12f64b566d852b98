"""``ordo``: the command line. Imports stay lazy so start-up is fast.

Exit codes: 0 success (SUCCESS or WARNING), 1 failed, 2 usage or definition error. An
:class:`~ordo.errors.OrdoError` is printed as its message, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ordo.errors import EXIT_USAGE, OrdoError

STATES = (
    "CREATED",
    "QUEUED",
    "RUNNING",
    "SUCCESS",
    "WARNING",
    "FAILED",
    "KILLING",
    "KILLED",
    "RESTARTED",
    "SKIPPED",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordo", description="Run flows of shell, python, sql and http tasks, durably."
    )
    db_help = (
        "database URL or SQLite file (default: $ORDO_DB, else $ORDO_HOME/ordo.db, "
        "ORDO_HOME defaulting to ~/.ordo)"
    )
    parser.add_argument("--db", help=db_help)
    common = argparse.ArgumentParser(add_help=False)  # --db also after the command
    common.add_argument("--db", help=db_help, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", parents=[common], help="run a flow file to its end")
    run.add_argument("file")
    run.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input value (repeatable)",
    )
    run.add_argument(
        "-l",
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label for the execution (repeatable)",
    )
    run.add_argument(
        "--workers", type=int, default=None, help="tasks run in parallel (default: number of CPUs)"
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument(
        "--detach",
        action="store_true",
        help="record the execution, print its id and exit; workers run it",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="print only the summary")

    validate = sub.add_parser(
        "validate", parents=[common], help="check flow files; print OK or every error"
    )
    validate.add_argument("files", nargs="+")

    plan = sub.add_parser(
        "plan", parents=[common], help="show the order and parallel waves; run nothing"
    )
    plan.add_argument("file")
    plan.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE")

    executions = sub.add_parser("executions", parents=[common], help="list or show executions")
    ex_sub = executions.add_subparsers(dest="action", metavar="ACTION")
    ex_sub.required = True
    ls = ex_sub.add_parser("list", parents=[common], help="newest executions first")
    ls.add_argument("--flow", help="flow id or namespace/id")
    ls.add_argument("--state", choices=STATES, type=str.upper)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    show = ex_sub.add_parser(
        "show", parents=[common], help="task runs, attempts, outputs, metrics, errors"
    )
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")

    logs = sub.add_parser("logs", parents=[common], help="print an execution's logs")
    logs.add_argument("id", type=int)
    logs.add_argument("--task", help="only this task")
    logs.add_argument("--attempt", type=int, help="only this attempt number")
    logs.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new lines until the execution ends",
    )

    submit = sub.add_parser(
        "submit", parents=[common], help="record an execution for workers; print its id"
    )
    submit.add_argument("file")
    submit.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")

    worker = sub.add_parser(
        "worker", parents=[common], help="run ready tasks of any execution until stopped"
    )
    worker.add_argument(
        "--queue",
        "-Q",
        action="append",
        metavar="QUEUE",
        help="serve this queue (repeatable; default: default)",
    )
    worker.add_argument(
        "--workers", type=int, default=None, help="tasks run in parallel (default: number of CPUs)"
    )
    worker.add_argument(
        "--grace", default="30s", help="on SIGTERM, how long running tasks may finish (default 30s)"
    )
    worker.add_argument(
        "--lease",
        default="30s",
        help="how long an attempt stays this worker's without a heartbeat; a dead worker's "
        "attempts are taken back after it (default 30s)",
    )

    workers = sub.add_parser("workers", parents=[common], help="registered workers")
    wk_sub = workers.add_subparsers(dest="action", metavar="ACTION")
    wk_sub.required = True
    wls = wk_sub.add_parser("list", parents=[common], help="workers alive or stopped lately")
    wls.add_argument("--json", action="store_true")

    db = sub.add_parser("db", parents=[common], help="the store's schema")
    db_sub = db.add_subparsers(dest="action", metavar="ACTION")
    db_sub.required = True
    db_sub.add_parser(
        "upgrade", parents=[common], help="apply pending migrations; print the schema version"
    )

    flows = sub.add_parser("flows", parents=[common], help="stored flows")
    fl_sub = flows.add_subparsers(dest="action", metavar="ACTION")
    fl_sub.required = True
    fls = fl_sub.add_parser("list", parents=[common], help="newest revision of every flow")
    fls.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ordo`` console script."""
    args = _parser().parse_args(argv)
    environ = dict(os.environ)
    try:
        if args.command == "run" and not args.detach:
            from ordo.cli import run

            return run.command(args, environ)
        if args.command in ("worker", "workers", "submit", "run"):
            from ordo.cli import serve

            if args.command == "worker":
                return serve.worker_command(args, environ)
            if args.command == "workers":
                return serve.workers_command(args, environ)
            return serve.submit_command(args, environ)
        if args.command in ("validate", "plan"):
            from ordo.cli import check

            return check.command(args, environ)
        from ordo.cli import inspect

        return inspect.command(args, environ)
    except OrdoError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
