"""``ordo executioner``: Executioner job configs run as-is, with the same flags and
console contract (``../shared/compat/executioner.md``), on ordo's engine and store.
The Executioner's run id is the ordo execution id; a resume is a restart of it in place;
``--mark-success`` marks its task runs. The summary, the log files and the mailed report
are in :mod:`ordo.cli.executioner_output`; plugins in :mod:`ordo.cli.executioner_plugins`."""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec
from msgspec import Struct

from ordo import services
from ordo.cli import display
from ordo.cli.common import fmt_time, open_db, secret_box, skipped_tasks
from ordo.cli.executioner_output import (
    Console,
    job_details,
    main_log_path,
    report,
    summary,
    tally,
    use_color,
    write_logs,
)
from ordo.cli.executioner_plugins import PluginError, Registry, load_plugins
from ordo.cli.recover import reap_dead, who
from ordo.cli.run import work
from ordo.definitions.executioner import NAMESPACE, Config, load_config
from ordo.errors import EXIT_FAILED, EXIT_OK, DefinitionError, NotFound, UsageError
from ordo.masking import mask
from ordo.model import Flow, State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.records import ExecutionRow, Revision
from ordo.worker import Worker, WorkerSettings

SAMPLE = {
    "application_name": "nightly_etl",
    "working_dir": ".",
    "parallel": True,
    "max_workers": 2,
    "default_timeout": 600,
    "env_variables": {"DATA": "data"},
    "jobs": [
        {"id": "extract", "description": "fetch the input", "command": "mkdir -p ${DATA}"},
        {
            "id": "transform",
            "command": "echo transformed > transform.out",
            "dependencies": ["extract"],
            "max_retries": 2,
            "retry_delay": 1,
            "post_checks": [{"name": "check_file_exists", "params": {"path": "transform.out"}}],
        },
        {"id": "report", "command": "cat transform.out", "dependencies": ["transform"]},
    ],
}


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.sample_config:
        print(json.dumps(SAMPLE, indent=2))
        return EXIT_OK
    if args.resume_failed_only and args.resume_from is None:
        raise UsageError("--resume-failed-only needs --resume-from ID")
    if args.list_runs is not None or args.show_run is not None or args.mark_success:
        store = open_db(args.db, environ)
        try:
            if args.list_runs is not None:
                return list_runs(store, args.list_runs, args.limit)
            if args.show_run is not None:
                return show_run(store, args.show_run)
            return mark_success(store, args.run_id, args.jobs)
        finally:
            store.close()
    # --no-color: defined with the parser (getattr: it may be built elsewhere, cli/main.py)
    console = Console(use_color(getattr(args, "no_color", False), environ, sys.stdout))
    if args.resume_from is not None and args.resume_from <= 0:
        console.log("ERROR", f"--resume-from must be a run id above 0, found {args.resume_from}")
        return EXIT_FAILED
    try:
        config = load_config(args.config, cli_env(console, args.env))
        registry = load_plugins(config.plugins)
    except DefinitionError as exc:
        for problem in exc.problems:
            console.log("ERROR", str(problem))
        if any("circular" in p.message for p in exc.problems):
            console.log("ERROR", "Circular dependencies detected")
        return EXIT_FAILED
    except PluginError as exc:
        console.log("ERROR", f"dependency_plugins: {exc}")
        return EXIT_FAILED
    console.secrets = config.secrets
    for warning in [*config.warnings, *unregistered(config, registry)]:
        console.log("WARNING", warning)
    parallel = (args.parallel or config.parallel) and not args.sequential
    workers = (args.workers if args.workers > 0 else config.max_workers) if parallel else 1
    skip = skipped_tasks(args.skip)
    if args.dry_run:
        return dry_run(config, skip, parallel, workers)
    return run(console, config, args, environ, skip, workers)


def unregistered(config: Config, registry: Registry) -> list[str]:
    """A warning for each check or dependency type no plugin registered: the jobs
    naming them fail when they start (their pre-check, or the post-check), as in the
    engine."""
    out = []
    for ref in config.custom:
        known = registry.checks if ref.kind == "check" else registry.types
        if ref.name in known:
            continue
        hint = difflib.get_close_matches(ref.name, list(known), n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        what = "its check" if ref.kind == "check" else "when it starts"
        out.append(
            f"{ref.where}: unknown {ref.kind} '{ref.name}'{tip}: no plugin registers it, "
            f"so job '{ref.job}' will fail {what}"
        )
    return out


def cli_env(console: Console, values: Sequence[str]) -> dict[str, str]:
    """``--env A=1,B=2 --env C=3``; entries without a name or a value are skipped."""
    out: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            name, sep, text = item.partition("=")
            if not sep or not name.strip() or not text:
                console.log("WARNING", f"--env: skipped {item!r} (expected NAME=VALUE)")
                continue
            out[name.strip()] = text
    return out


def log(level: str, message: str) -> None:
    """A logger-style line of the commands that do not run (list, show, mark)."""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    stream = sys.stderr if level in ("ERROR", "WARNING") else sys.stdout
    print(f"{stamp} - {level} - {message}", file=stream, flush=True)


def dry_run(config: Config, skip: list[str], parallel: bool, workers: int) -> int:
    mode = f"PARALLEL: {workers} workers" if parallel else "SEQUENTIAL"
    log("INFO", f"DRY RUN Application {config.application} [{mode}]")
    for n, task in enumerate(config.flow.tasks, 1):
        waits = [c.name for c in config.custom if c.job == task.id and c.kind != "check"]
        after = ", ".join([*task.depends_on, *(f"plugin {w}" for w in waits)])
        after = f" (after {after})" if after else ""
        state = " [SKIPPED]" if task.id in skip else ""
        command = task.spec["command"]
        shown = command if isinstance(command, str) else " ".join(command)
        print(f"  {n}. {task.id}{after}{state}: {mask(shown, config.secrets)}")
    print("Run ID: 0 (dry run: nothing stored)")
    return EXIT_OK


def register(store: Store, flow: Flow, now: float) -> Revision:
    """The flow's revision: reused when the same flow (with the same --env) is known."""
    text = json.dumps(flow.to_dict(), sort_keys=True)
    digest = "executioner-" + hashlib.sha256(text.encode()).hexdigest()
    return services.register_flow(store, flow, text, digest, now)


def with_skips(flow: Flow, skip: Sequence[str]) -> Flow:
    """The flow whose jobs in ``skip`` answer SKIP when they come to run (a resume's
    ``--skip``: the restarted execution moves to this revision)."""
    if not set(skip) & {t.id for t in flow.tasks}:
        return flow
    tasks = tuple(
        msgspec.structs.replace(t, run_if="SKIP: skipped on request (--skip)")
        if t.id in skip
        else t
        for t in flow.tasks
    )
    return msgspec.structs.replace(flow, tasks=tasks)


class Resumed(Struct, frozen=True):
    """A resume: the run's attempt number, the jobs kept from earlier attempts, and
    whether anything runs (not when the run had already succeeded)."""

    attempt: int
    taken: frozenset[str]
    runs: bool = True


def run(
    console: Console,
    config: Config,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    skip: list[str],
    workers: int,
) -> int:
    store = open_db(args.db, environ)
    try:
        now = time.time()
        mode = f"PARALLEL: {workers} workers" if workers > 1 else "SEQUENTIAL"
        begun = begin(console, store, config, args, skip, mode, now)
        if begun is None:
            return EXIT_FAILED
        ex_id, resumed = begun
        unknown = len(set(skip) - {t.id for t in config.flow.tasks})
        if resumed.runs:
            # one job per slot, retries included: the next job starts after the last attempt
            settings = WorkerSettings(slots=workers, prefetch=0, retry_keeps_slot=True)
            listener = display.listener_for(store, ex_id, config.flow, quiet=not args.verbose)
            worker = Worker(
                store,
                make_runners(workers),
                settings=settings,
                env=environ,
                listener=listener,
                secrets=secret_box(environ),
            )
            work(worker, ex_id, listener, reap=args.resume_from is not None)
        execution = store.get_execution(ex_id)
        logs = write_logs(store, config, ex_id) if resumed.runs else {}
        job_details(console, store, ex_id, now)
        ok = summary(
            console, store, config, execution, resumed.attempt, unknown, resumed.taken, logs
        )
        if resumed.runs:
            report(console, store, config, execution, unknown, resumed.taken, logs)
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        console.close()
        store.close()


def begin(
    console: Console,
    store: Store,
    config: Config,
    args: argparse.Namespace,
    skip: list[str],
    mode: str,
    now: float,
) -> tuple[int, Resumed] | None:
    """Start the run, or resume ``--resume-from``'s, and open its main log: its id and
    what the resume kept. None (logged) for a run id that is not an Executioner run."""
    if args.resume_from is None:
        ex_id = services.start(
            store,
            register(store, config.flow, now),
            {},
            now,
            skip_tasks=[s for s in skip if s in {t.id for t in config.flow.tasks}],
            continue_on_error=args.continue_on_error,
        )
        console.open(main_log_path(config, ex_id))
        banner = f"STARTING EXECUTION Application {config.application} - RUN #{ex_id} [{mode}]"
        console.log("INFO", banner)
        return ex_id, Resumed(1, frozenset())
    ex_id = args.resume_from
    if _run(store, ex_id) is None:
        console.log("ERROR", f"--resume-from {ex_id}: no Executioner run has that id")
        return None
    resumed = resume(console, store, ex_id, with_skips(config.flow, skip), now)
    console.open(main_log_path(config, ex_id))
    if resumed.runs:
        console.log("INFO", f"RESUMING RUN #{ex_id} (Attempt {resumed.attempt}) [{mode}]")
    else:
        console.log(
            "WARNING",
            f"run {ex_id} already succeeded: nothing to resume; attempt {resumed.attempt} "
            "counts every job as skipped",
        )
    return ex_id, resumed


def resume(console: Console, store: Store, ex_id: int, flow: Flow, now: float) -> Resumed:
    """Run ``ex_id`` again in place, as ``flow`` (the config now, with this resume's
    skips): which attempt this is and the jobs kept as they ended."""
    execution = store.get_execution(ex_id)
    attempt = 1 + restarts(store, ex_id)
    runs = store.task_runs(ex_id)
    if execution.state is State.SUCCESS:  # a new attempt all the same: every job skipped
        services.rerun_nothing(store, ex_id, "resumed: every job had succeeded", now)
        return Resumed(attempt + 1, frozenset(r.task_id for r in runs), runs=False)
    if execution.state.terminal:
        revision = register(store, flow, now)
        again = set(services.restart_on(store, ex_id, revision.id, now))
        kept = frozenset(r.task_id for r in runs if r.task_id not in again)
        return Resumed(attempt + 1, kept)
    taken = reap_dead(store, ex_id)  # crashed while running: take back its attempts
    if taken:
        console.log("INFO", f"took back the attempts of {', '.join(taken)} (no longer running)")
    return Resumed(attempt, frozenset(r.task_id for r in runs if r.state.terminal))


def list_runs(store: Store, app: str, limit: int) -> int:
    rows = [
        e
        for e in store.list_executions(limit=max(limit, 1) * 20 + 100)
        if e.namespace == NAMESPACE and (not app or e.labels.get("application") == app)
    ][: max(limit, 1)]
    print(
        f"{'Run':>6}  {'Attempt':>7}  {'Application':<20}  {'Status':<8}  {'Start':<19}  "
        f"{'Duration':>9}  Jobs"
    )
    for e in rows:
        runs = store.task_runs(e.id)
        t = tally(runs)
        took = (e.ended_at - e.started_at) if e.ended_at and e.started_at else None
        print(
            f"{e.id:>6}  {restarts(store, e.id) + 1:>7}  "
            f"{e.labels.get('application', e.flow_id)[:20]:<20}  {e.state.value:<8}  "
            f"{fmt_time(e.started_at or e.created_at):<19}  "
            f"{(f'{took:.1f}s' if took is not None else '-'):>9}  "
            f"{len(t.done)}/{len(runs)} ({len(t.failed)} failed)"
        )
    return EXIT_OK


def _run(store: Store, run_id: int) -> ExecutionRow | None:
    try:
        execution = store.get_execution(run_id)
    except NotFound:
        return None
    return execution if execution.namespace == NAMESPACE else None


def show_run(store: Store, run_id: int) -> int:
    execution = _run(store, run_id)
    if execution is None:
        log("ERROR", f"run {run_id} not found")
        return EXIT_FAILED
    attempts = {a.id: a for a in store.attempts(run_id)}
    app = execution.labels.get("application", execution.flow_id)
    print(f"Run {run_id}: {app} {execution.state.value}")
    print(f"{'Job':<24}  {'Status':<8}  {'Attempts':>8}  {'Exit':>4}  Reason")
    for r in store.task_runs(run_id):
        last = attempts.get(r.last_attempt_id) if r.last_attempt_id else None
        code = "" if last is None or last.exit_code is None else str(last.exit_code)
        print(f"{r.task_id:<24}  {r.state.value:<8}  {r.attempts:>8}  {code:>4}  {r.reason or ''}")
    if execution.state is not State.SUCCESS:
        print(f"resume: ordo executioner -c CONFIG --resume-from {run_id}")
    return EXIT_OK


def mark_success(store: Store, run_id: int | None, jobs: str | None) -> int:
    if run_id is None or not jobs:
        log("ERROR", "--mark-success needs -r RUN_ID and -j job1,job2")
        return EXIT_FAILED
    execution = _run(store, run_id)
    if execution is None:
        log("ERROR", f"run {run_id} not found")
        return EXIT_FAILED
    wanted = [j.strip() for j in jobs.split(",") if j.strip()]
    runs = {r.task_id: r for r in store.task_runs(run_id)}
    unknown = [j for j in wanted if j not in runs]
    if unknown:
        log("ERROR", f"run {run_id} has no job {unknown[0]!r} (jobs: {', '.join(runs)})")
        return EXIT_FAILED
    for j in wanted:
        print(f"  {j}: {runs[j].state.value}")
    flippable = [j for j in wanted if runs[j].state in (State.FAILED, State.KILLED)]
    if not flippable:
        log("WARNING", "none of these jobs failed: nothing to mark")
        return EXIT_OK
    print(f"Mark {', '.join(flippable)} of run {run_id} as SUCCESS? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        print("cancelled")
        return EXIT_OK
    for j in flippable:
        services.mark(store, run_id, j, "success", who(), time.time(), "marked success")
    count = f"{len(flippable)} job" + ("s" if len(flippable) > 1 else "")
    print(
        f"marked {count} SUCCESS ({', '.join(flippable)}); a resume of run {run_id} "
        "treats them as done"
    )
    return EXIT_OK


def restarts(store: Store, ex_id: int) -> int:
    """How often the execution was run again in place (its Executioner attempt - 1)."""
    return sum(
        1 for h in store.history(ex_id) if h.task_run_id is None and h.to_state is State.RESTARTED
    )
