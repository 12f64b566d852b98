"""``ordo``: the command line. Imports stay lazy so start-up is fast.

Exit codes: 0 success (SUCCESS or WARNING), 1 failed, 2 usage or definition error. An
:class:`~ordo.errors.OrdoError` is printed as its message, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import ordo.cli.startup  # noqa: F401  (first: see there)
from ordo.errors import EXIT_USAGE, OrdoError

#: ordo.masking.WITHHELD, spelled here so that ``ordo --help`` does not import masking.
WITHHELD = ("ORDO_SECRET_KEY", "ORDO_SESSION_KEY")

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


class _Skipped:
    """Stands for the parser of a command this invocation does not run: every call on it
    is a no-op that returns it, so building it costs nothing."""

    def __getattr__(self, name: str) -> Any:
        return self._nothing

    def _nothing(self, *args: Any, **kwargs: Any) -> _Skipped:
        return self


class _Commands:
    """The top-level subparsers, building only the command ``only`` (all when None)."""

    def __init__(self, sub: Any, only: str | None) -> None:
        self._sub = sub
        self._only = only
        self.found = only is None

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self._only is not None and name != self._only:
            return _Skipped()
        self.found = True
        return self._sub.add_parser(name, **kwargs)


def _command_word(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option or the value of
    a top-level option), or None."""
    words = iter(argv)
    for word in words:
        if word in ("--db", "--server", "--token"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line. It imports no command's code (each command imports its module
    when it runs), and given ``argv`` it builds only the parser of the command argv names
    (the whole tree when it names none it knows): ``ordo --help`` and a one-task
    ``ordo run`` start fast."""
    only = _command_word(argv) if argv is not None else None
    if only == "completion":
        only = None  # the completion script describes every command
    parser = _build_parser(only)
    return parser if parser is not None else _build_parser(None)  # type: ignore[return-value]


def _build_parser(only: str | None) -> argparse.ArgumentParser | None:
    from ordo import __version__

    parser = argparse.ArgumentParser(
        prog="ordo", description="Run flows of shell, python, sql and http tasks, durably."
    )
    parser.add_argument("--version", action="version", version=f"ordo {__version__}")
    db_help = (
        "database URL or SQLite file (default: $ORDO_DB, else db in settings.toml, else "
        "$ORDO_HOME/ordo.db, ORDO_HOME defaulting to ~/.ordo)"
    )
    parser.add_argument("--db", help=db_help)
    server_help = "talk to this ordo server instead of a store (default: $ORDO_SERVER)"
    token_help = "the API token for --server (default: $ORDO_TOKEN)"
    parser.add_argument("--server", help=server_help)
    parser.add_argument("--token", help=token_help)
    common = argparse.ArgumentParser(add_help=False)  # --db also after the command
    common.add_argument("--db", help=db_help, default=argparse.SUPPRESS)
    common.add_argument("--server", help=server_help, default=argparse.SUPPRESS)
    common.add_argument("--token", help=token_help, default=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    sub = _Commands(subparsers, only)

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
    _skip_options(run)
    _preset_options(run)
    _run_options(run)

    validate = sub.add_parser(
        "validate", parents=[common], help="check flow files; print OK or every error"
    )
    validate.add_argument("files", nargs="+")
    validate.add_argument(
        "--json", action="store_true", help="print one JSON document: each file, OK or its errors"
    )

    plan = sub.add_parser(
        "plan", parents=[common], help="show the order and parallel waves; run nothing"
    )
    plan.add_argument("file")
    plan.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE")
    plan.add_argument("--json", action="store_true", help="print the waves as JSON")

    executions = sub.add_parser("executions", parents=[common], help="list or show executions")
    ex_sub = executions.add_subparsers(dest="action", metavar="ACTION")
    ex_sub.required = True
    ls = ex_sub.add_parser("list", parents=[common], help="newest executions first")
    ls.add_argument("--flow", help="flow id or namespace/id")
    ls.add_argument("--state", choices=STATES, type=str.upper)
    ls.add_argument(
        "--kind",
        choices=("FLOW", "SCRIPT", "CONNECTION", "SCHEDULE"),
        type=str.upper,
        help="only executions of this kind (a flow of tasks, a script run directly, a "
        "handler's this.connect call, a schedule); without it, flows and scripts",
    )
    ls.add_argument(
        "--saved",
        action=argparse.BooleanOptionalAction,
        help="only saved executions (--no-saved: only the others)",
    )
    ls.add_argument(
        "--dev",
        action=argparse.BooleanOptionalAction,
        help="only dev executions (--no-dev: only the others)",
    )
    ls.add_argument("--limit", type=int, default=20)
    _label_filter(ls)
    ls.add_argument("--json", action="store_true")
    show = ex_sub.add_parser(
        "show", parents=[common], help="task runs, attempts, outputs, metrics, errors"
    )
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    history = ex_sub.add_parser(
        "history",
        parents=[common],
        help="every state change of an execution and its task runs, with time and reason",
    )
    history.add_argument("id", type=int)
    history.add_argument("--json", action="store_true")
    save = ex_sub.add_parser(
        "save",
        parents=[common],
        help="keep an execution for good under a name (a preset for ordo run --from-saved)",
    )
    save.add_argument("id", type=int)
    save.add_argument("--name", required=True, help="a unique name")
    save.add_argument("--description", help="what it is kept for")
    unsave = ex_sub.add_parser(
        "unsave", parents=[common], help="forget an execution's saved name (gc may delete it)"
    )
    unsave.add_argument("id", type=int)

    gc = sub.add_parser(
        "gc",
        parents=[common],
        help="delete ended, unsaved executions older than the retention; reclaim space",
    )
    gc.add_argument("--dry-run", action="store_true", help="print what would go; delete nothing")
    gc.add_argument(
        "--batch",
        type=int,
        default=500,
        metavar="N",
        help="execution trees deleted per transaction (default 500)",
    )
    gc.add_argument("--json", action="store_true", help="print the figures as JSON")

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
    _skip_options(submit)
    _preset_options(submit)
    _run_options(submit)

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
    _log_options(worker)

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
    fls.add_argument("--namespace", help="only the flows of this namespace")
    _label_filter(fls)
    fls.add_argument("--json", action="store_true")
    fadd = fl_sub.add_parser(
        "add",
        parents=[common],
        help="register or update flows (files or package folders) without running them",
    )
    fadd.add_argument("files", nargs="+", metavar="FILE")
    _serving_flow_parsers(fl_sub, common)
    _deploy_flow_parsers(fl_sub, common)
    _deploy_parsers(sub, common)

    kill = sub.add_parser(
        "kill", parents=[common], help="kill an execution and its children; wait for it"
    )
    kill.add_argument("id", type=int)
    kill.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the execution to end KILLED (default 30)",
    )
    resume = sub.add_parser(
        "resume", parents=[common], help="finish an execution whose ordo run died"
    )
    resume.add_argument("id", type=int)
    resume.add_argument("--workers", type=int, default=None, help="tasks run in parallel")
    resume.add_argument("--json", action="store_true", help="print the result as JSON")
    resume.add_argument("--quiet", "-q", action="store_true", help="print only the summary")

    restart = sub.add_parser(
        "restart", parents=[common], help="run a FAILED, KILLED or WARNING execution again"
    )
    restart.add_argument("id", type=int)
    restart.add_argument(
        "--from",
        dest="from_task",
        metavar="TASK",
        help="also run this task and everything downstream of it again",
    )
    restart.add_argument(
        "-i", "--input", action="append", default=[], metavar="KEY=VALUE", help="a new input"
    )
    restart.add_argument(
        "--revision",
        choices=("pinned", "latest"),
        default="pinned",
        help="pinned (default): the revision it ran; latest: the flow's newest revision "
        "(new tasks run, removed ones stay)",
    )
    restart.add_argument("--workers", type=int, default=None, help="tasks run in parallel")
    restart.add_argument("--json", action="store_true", help="print the result as JSON")
    restart.add_argument("--quiet", "-q", action="store_true", help="print only the summary")

    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="a new execution reusing an ended one's results upstream of a task",
    )
    replay.add_argument("id", type=int)
    replay.add_argument(
        "--from",
        dest="from_task",
        metavar="TASK",
        required=True,
        help="run this task and everything downstream of it again",
    )
    replay.add_argument(
        "-i", "--input", action="append", default=[], metavar="KEY=VALUE", help="a new input"
    )
    replay.add_argument(
        "--revision",
        choices=("pinned", "latest"),
        default="pinned",
        help="pinned (default): the revision the execution ran; latest: the flow's newest "
        "revision (results are reused for the tasks it still has)",
    )
    replay.add_argument(
        "--detach", action="store_true", help="record it, print its id and exit; workers run it"
    )
    replay.add_argument("--workers", type=int, default=None, help="tasks run in parallel")
    replay.add_argument("--json", action="store_true", help="print the result as JSON")
    replay.add_argument("--quiet", "-q", action="store_true", help="print only the summary")

    mark = sub.add_parser(
        "mark", parents=[common], help="set an ended task run SUCCESS or FAILED by hand"
    )
    mark.add_argument("id", type=int)
    mark.add_argument("task", help="a task id, or task[N] for a for_each item")
    mark.add_argument("state", choices=("success", "failed"))
    mark.add_argument("--reason", help="why (kept with the manual attempt)")

    _executioner_parser(sub)
    _serving_parsers(sub, common)

    conns = sub.add_parser("connections", parents=[common], help="named databases and APIs")
    cn_sub = conns.add_subparsers(dest="action", metavar="ACTION")
    cn_sub.required = True
    cadd = cn_sub.add_parser("add", parents=[common], help="add (or --replace) a connection")
    cadd.add_argument("name")
    cadd.add_argument("--type", required=True, choices=("sql", "http"))
    cadd.add_argument("--url", help="sql: the database URL (sqlite:///... or postgresql://...)")
    cadd.add_argument("--base-url", help="http: the URL task urls are relative to")
    cadd.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="http: a header sent with every request (repeatable)",
    )
    cadd.add_argument("--replace", action="store_true", help="change it if it exists")
    cls = cn_sub.add_parser("list", parents=[common], help="every connection, masked")
    cls.add_argument("--json", action="store_true")
    cshow = cn_sub.add_parser("show", parents=[common], help="one connection, masked")
    cshow.add_argument("name")
    cshow.add_argument("--json", action="store_true")
    crm = cn_sub.add_parser("remove", parents=[common], help="delete a connection")
    crm.add_argument("name")
    _secrets_parser(sub, common)
    _schedules_parser(sub, common)
    completion = sub.add_parser(
        "completion", help="print a shell completion script (bash, zsh or fish)"
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser if sub.found else None


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` holds: ``ordo executions list`` gives the
    parser of ``executions list``."""
    current = parser
    for name in ("command", "action"):
        value = getattr(args, name, None)
        choices = next(
            (a.choices for a in current._actions if isinstance(a, argparse._SubParsersAction)),
            None,
        )
        if not isinstance(value, str) or not choices or value not in choices:
            break
        current = choices[value]
    return current


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parsed arguments; an unknown option is reported with the usage of the command it
    was given to (argparse would show the top-level usage)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        _chosen(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _deploy_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    dep = sub.add_parser(
        "deploy",
        parents=[common],
        help="store every flow file and package of a folder or git ref; deactivate removed ones",
    )
    dep.add_argument("target", metavar="DIR|git+URL@REF", help="a folder, or git+URL@REF")
    dep.add_argument("--dry-run", action="store_true", help="list what would change; store nothing")
    dep.add_argument("--json", action="store_true", help="print the report as JSON")


def _deploy_flow_parsers(fl_sub: Any, common: argparse.ArgumentParser) -> None:
    hist = fl_sub.add_parser("history", parents=[common], help="every revision of a flow")
    hist.add_argument("id", help="namespace/id, or id in namespace default")
    hist.add_argument("--json", action="store_true")
    show = fl_sub.add_parser(
        "show", parents=[common], help="a revision's stored source and referenced files"
    )
    show.add_argument("id", help="namespace/id, or id in namespace default")
    show.add_argument("--revision", type=int, metavar="N", help="this revision (default: newest)")
    show.add_argument("--json", action="store_true")
    diff = fl_sub.add_parser("diff", parents=[common], help="a unified diff of two revisions")
    diff.add_argument("id", help="namespace/id, or id in namespace default")
    diff.add_argument("old", type=int, metavar="N")
    diff.add_argument("new", type=int, metavar="M")


def _serving_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    server = sub.add_parser(
        "server", parents=[common], help="serve the API, run schedules, events and workers"
    )
    server.add_argument("--host", default="127.0.0.1", help="address to listen on")
    server.add_argument("--port", type=int, default=8080)
    group = server.add_mutually_exclusive_group()
    group.add_argument(
        "--workers", type=int, default=None, help="embedded worker slots (default: CPUs)"
    )
    group.add_argument(
        "--no-workers", action="store_true", help="no embedded workers (ordo worker runs them)"
    )
    server.add_argument("--grace", default="30s", help="SIGTERM: time running attempts get")
    server.add_argument(
        "--flows",
        metavar="DIR",
        help="deploy this folder's flow files and packages at start (see ordo deploy)",
    )
    server.add_argument(
        "--watch",
        action="store_true",
        help="with --flows: deploy the folder again whenever a file in it changes",
    )
    _log_options(server)

    tokens = sub.add_parser("tokens", parents=[common], help="API tokens")
    tk_sub = tokens.add_subparsers(dest="action", metavar="ACTION")
    tk_sub.required = True
    create = tk_sub.add_parser("create", parents=[common], help="make a token; printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--read-only", action="store_true", help="it can only read")
    create.add_argument(
        "--namespace",
        action="append",
        metavar="NAMESPACE",
        help="limit it to this namespace (repeatable; default: every namespace)",
    )
    tls = tk_sub.add_parser("list", parents=[common], help="every token (never its value)")
    tls.add_argument("--json", action="store_true")
    revoke = tk_sub.add_parser("revoke", parents=[common], help="a token stops working")
    revoke.add_argument("name", help="the token's name or id")

    emit = sub.add_parser("emit", parents=[common], help="record an event; subscribed flows start")
    emit.add_argument("type", help="the event type, e.g. file.arrived")
    emit.add_argument("--data", default="{}", help="the payload as JSON")
    emit.add_argument("--json", action="store_true")


def _serving_flow_parsers(fl_sub: Any, common: argparse.ArgumentParser) -> None:
    nxt = fl_sub.add_parser("next", parents=[common], help="the next fire times of schedules")
    nxt.add_argument("id", help="namespace/id, or id in namespace default")
    nxt.add_argument("-n", "--count", type=int, default=5)
    for verb, what in (("activate", "let triggers start it"), ("deactivate", "triggers ignore it")):
        p = fl_sub.add_parser(verb, parents=[common], help=what)
        p.add_argument("id", help="namespace/id, or id in namespace default")


def _schedules_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    schedules = sub.add_parser(
        "schedules", parents=[common], help="schedules kept in the store beside flows' triggers"
    )
    sc_sub = schedules.add_subparsers(dest="action", metavar="ACTION")
    sc_sub.required = True
    ls = sc_sub.add_parser("list", parents=[common], help="every stored schedule")
    ls.add_argument("flow", nargs="?", help="only this flow's (namespace/id)")
    ls.add_argument("--json", action="store_true")
    add = sc_sub.add_parser("add", parents=[common], help="start a flow on a schedule")
    add.add_argument("flow", help="namespace/id, or id in namespace default")
    add.add_argument("--cron", help="a cron expression, e.g. '20 * * * *'")
    add.add_argument("--every", type=int, metavar="MINUTES", help="every N minutes instead")
    add.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC)")
    add.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE")
    add.add_argument("--inactive", action="store_true", help="keep it, but do not fire")
    rm = sc_sub.add_parser("remove", parents=[common], help="forget a stored schedule")
    rm.add_argument("id", type=int)


def _secrets_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    secrets = sub.add_parser(
        "secrets", parents=[common], help="values kept encrypted, masked as **** everywhere"
    )
    sc_sub = secrets.add_subparsers(dest="action", metavar="ACTION")
    sc_sub.required = True
    put = sc_sub.add_parser(
        "set",
        parents=[common],
        help="set (or change) a secret; the value is read from standard input",
    )
    put.add_argument("name", help="letters, digits, _ . - (starting with a letter or _)")
    sls = sc_sub.add_parser("list", parents=[common], help="names and times (never values)")
    sls.add_argument("--json", action="store_true")
    rm = sc_sub.add_parser("remove", parents=[common], help="forget a secret")
    rm.add_argument("name")


def _executioner_parser(sub: Any) -> None:
    p = sub.add_parser(
        "executioner",
        help="run an Executioner JSON config as-is (same flags, same summary)",
        description="Run an Executioner job config on ordo: ordo executioner -c jobs.json",
    )
    p.add_argument("-c", "--config", default="jobs_config.json", help="the JSON config")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--parallel", action="store_true", help="run ready jobs at once")
    mode.add_argument("--sequential", action="store_true", help="one job at a time")
    p.add_argument("--workers", type=int, default=0, help="parallel jobs at most")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--resume-from", type=int, metavar="ID", help="continue run ID")
    p.add_argument("--resume-failed-only", action="store_true", help="with --resume-from")
    p.add_argument("--skip", action="append", default=[], metavar="A,B", help="jobs not to run")
    p.add_argument("--continue-on-error", action="store_true", help="go on after a failure")
    p.add_argument("--env", action="append", default=[], metavar="K=V,...", help="variables")
    p.add_argument("--verbose", action="store_true", help="say more")
    p.add_argument("--list-runs", nargs="?", const="", default=None, metavar="APP")
    p.add_argument("--limit", type=int, default=20, help="with --list-runs")
    p.add_argument("--show-run", type=int, metavar="ID")
    p.add_argument("--mark-success", action="store_true", help="mark failed jobs of -r as done")
    p.add_argument("-r", "--run-id", type=int, metavar="ID")
    p.add_argument("-j", "--jobs", metavar="A,B")
    p.add_argument("--sample-config", "--simple-config", action="store_true")
    p.add_argument("--no-color", action="store_true", help="no colour in the summary")
    p.add_argument("--db", help="the store (default: ORDO_DB, else ~/.ordo/ordo.db)")


def _log_options(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format`` of ``ordo server`` and ``ordo worker``
    (:mod:`ordo.cli.logconfig` applies them)."""
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        type=str.lower,
        default="info",
        help="the least important log lines shown (default: info)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text (default): 'time LEVEL message' lines; json: one JSON object a line",
    )


def _label_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l",
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only those with this label (repeatable: all must match)",
    )


def _skip_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="TASK[,TASK...]",
        help="end these tasks SKIPPED at once; they count as done for their dependents",
    )
    parser.add_argument(
        "--continue-on-error",
        action="store_true",
        default=None,
        help="after a failure, branches that do not depend on it go on (the flow's "
        "continue_on_error for this execution)",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    """Run with options: retry, timeout and notification targets of this run only."""
    parser.add_argument(
        "--retry",
        type=int,
        metavar="N",
        help="this run only: every task tries N times in all (over its own retry.attempts)",
    )
    parser.add_argument(
        "--retry-delay", metavar="DURATION", help="this run only: the first retry's delay (30s)"
    )
    parser.add_argument(
        "--retry-backoff",
        type=float,
        metavar="FACTOR",
        help="this run only: each retry waits FACTOR times longer than the one before",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        help="this run only: stop the execution after DURATION (like 10m; over the flow's)",
    )
    parser.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="[STATES:]TARGET",
        help="this run only: tell an e-mail address or POST to an http(s) URL when it ends "
        "in one of STATES (default failed; like success,failed:ops@example.com); repeatable",
    )


def _preset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-saved",
        metavar="NAME",
        help="start from the inputs of the execution saved as NAME (-i values override them)",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="a dev execution (and its children): kept retention.dev_days by ordo gc",
    )


def _may_have_python_tasks(path: str) -> bool:
    """A first guess, before the file is loaded: does it mention python at all? (A
    package folder, or a file that cannot be read, says no: its hosts start later.)"""
    try:
        with open(path, "rb") as f:
            return b"python" in f.read(1 << 20)
    except OSError:
        return False


def console() -> int:
    """The ``ordo`` command: :func:`main`, then a quick exit (:func:`ordo.exiting.leave`:
    about 15 ms of a 90 ms ``ordo run`` went to tearing the interpreter down)."""
    code = main()
    from ordo.exiting import leave

    leave(code)
    return code  # (only when something still runs: the usual exit)


def main(argv: Sequence[str] | None = None) -> int:
    """What the ``ordo`` command does (:func:`console`); its exit code."""
    parser = _parser(sys.argv[1:] if argv is None else argv)
    args = _parse(parser, argv)
    environ = dict(os.environ)
    for name in WITHHELD:  # no subprocess of ordo (task, python host, git) inherits a key
        os.environ.pop(name, None)
    if args.command == "completion":
        from ordo.cli import completion

        sys.stdout.write(completion.script(parser, args.shell))
        return 0
    try:
        server = args.server or environ.get("ORDO_SERVER")
        local = ("server", "tokens", "worker", "db", "executioner", "secrets", "schedules")
        if server and args.command not in local:
            from ordo.runners.http import load_httpx

            load_httpx()  # before remote imports httpx: without httpx's CLI (rich, click)
            from ordo.cli import remote

            return remote.command(args, server, args.token or environ.get("ORDO_TOKEN"))
        if args.command == "deploy" or (
            args.command == "flows" and args.action in ("history", "show", "diff")
        ):
            from ordo.cli import deploy as deploy_commands

            if args.command == "deploy":
                return deploy_commands.deploy_command(args, environ)
            return deploy_commands.flows_command(args, environ)
        if args.command in ("server", "tokens", "emit") or (
            args.command == "flows" and args.action in ("next", "activate", "deactivate")
        ):
            from ordo.cli import serving as serving_commands

            return serving_commands.COMMANDS[args.command](args, environ)
        if args.command == "run" and not args.detach:
            host = None
            if _may_have_python_tasks(args.file):  # it boots while the rest is imported
                from ordo.runners.spawn import spawn_host

                host = spawn_host(os.environ)  # (ordo's keys are out of it already)
            from ordo.cli import run

            return run.command(args, environ, host)
        if args.command in ("worker", "workers", "submit", "run"):
            from ordo.cli import serve

            if args.command == "worker":
                return serve.worker_command(args, environ)
            if args.command == "workers":
                return serve.workers_command(args, environ)
            return serve.submit_command(args, environ)
        if args.command in ("kill", "resume", "restart", "replay", "mark"):
            from ordo.cli import recover

            return recover.COMMANDS[args.command](args, environ)
        if args.command == "gc" or (
            args.command == "executions" and args.action in ("save", "unsave")
        ):
            from ordo.cli import retention

            if args.command == "gc":
                return retention.gc_command(args, environ)
            return retention.save_command(args, environ)
        if args.command == "executioner":
            from ordo.cli import executioner

            return executioner.command(args, environ)
        if args.command == "connections":
            from ordo.cli import connections

            return connections.command(args, environ)
        if args.command == "schedules":
            from ordo.cli import schedules as schedule_commands

            return schedule_commands.command(args, environ)
        if args.command == "secrets":
            from ordo.cli import secrets as secret_commands

            return secret_commands.command(args, environ)
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
    sys.exit(console())
