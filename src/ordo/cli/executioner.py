"""``ordo executioner``: Executioner job configs run as-is, with the same flags and
console contract (``../shared/compat/executioner.md``), on ordo's engine and store.
The Executioner's run id is the ordo execution id; a resume is a restart of it in place;
``--mark-success`` marks its task runs."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from ordo import engine, services
from ordo.cli import display
from ordo.cli.common import fmt_time, open_db, secret_box, skipped_tasks
from ordo.cli.recover import reap_dead, who
from ordo.cli.run import work
from ordo.definitions.executioner import NAMESPACE, Config, load_config
from ordo.errors import EXIT_FAILED, EXIT_OK, DefinitionError, UsageError
from ordo.masking import mask
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.records import ExecutionRow, Revision, TaskRunRow
from ordo.worker import Worker, WorkerSettings

SAMPLE = {
    "application_name": "nightly_etl",
    "working_dir": "/tmp",
    "parallel": True,
    "max_workers": 2,
    "default_timeout": 600,
    "env_variables": {"DATA": "/tmp/data"},
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--db", help="the store (default: ORDO_DB, else ~/.ordo/ordo.db)")


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
    if args.resume_from is not None and args.resume_from <= 0:
        log("ERROR", f"--resume-from must be a run id above 0, found {args.resume_from}")
        return EXIT_FAILED
    try:
        config = load_config(args.config, cli_env(args.env))
    except DefinitionError as exc:
        for problem in exc.problems:
            log("ERROR", str(problem))
        if any("circular" in p.message for p in exc.problems):
            log("ERROR", "Circular dependencies detected")
        return EXIT_FAILED
    for warning in config.warnings:
        log("WARNING", warning)
    parallel = (args.parallel or config.parallel) and not args.sequential
    workers = (args.workers if args.workers > 0 else config.max_workers) if parallel else 1
    skip = skipped_tasks(args.skip)
    if args.dry_run:
        return dry_run(config, skip, parallel, workers)
    return run(config, args, environ, skip, workers)


def cli_env(values: Sequence[str]) -> dict[str, str]:
    """``--env A=1,B=2 --env C=3``; entries without a name or a value are skipped."""
    out: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            name, sep, text = item.partition("=")
            if not sep or not name.strip() or not text:
                log("WARNING", f"--env: skipped {item!r} (expected NAME=VALUE)")
                continue
            out[name.strip()] = text
    return out


def log(level: str, message: str) -> None:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    stream = sys.stderr if level in ("ERROR", "WARNING") else sys.stdout
    print(f"{stamp} - {level} - {message}", file=stream, flush=True)


def dry_run(config: Config, skip: list[str], parallel: bool, workers: int) -> int:
    mode = f"PARALLEL: {workers} workers" if parallel else "SEQUENTIAL"
    log("INFO", f"DRY RUN Application {config.application} [{mode}]")
    for n, task in enumerate(config.flow.tasks, 1):
        after = f" (after {', '.join(task.depends_on)})" if task.depends_on else ""
        state = " [skipped]" if task.id in skip else ""
        command = task.spec["command"]
        shown = command if isinstance(command, str) else " ".join(command)
        print(f"  {n}. {task.id}{after}{state}: {mask(shown, config.secrets)}")
    print("Run ID: 0 (dry run: nothing stored)")
    return EXIT_OK


def register(store: Store, config: Config, now: float) -> Revision:
    """The config's revision: reused when the same flow (with the same --env) is known."""
    text = json.dumps(config.flow.to_dict(), sort_keys=True)
    digest = "executioner-" + hashlib.sha256(text.encode()).hexdigest()
    return services.register_flow(store, config.flow, text, digest, now)


def run(
    config: Config,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    skip: list[str],
    workers: int,
) -> int:
    store = open_db(args.db, environ)
    try:
        now = time.time()
        revision = register(store, config, now)
        known = {t.id for t in config.flow.tasks}
        mode = f"PARALLEL: {workers} workers" if workers > 1 else "SEQUENTIAL"
        if args.resume_from is not None:
            ex_id = args.resume_from
            resumed = resume(store, ex_id, revision, now)
            if resumed is None:
                summary(store, config, store.get_execution(ex_id), [])
                return EXIT_OK
            log("INFO", f"RESUMING RUN #{ex_id} (Attempt {resumed}) [{mode}]")
        else:
            ex_id = engine.start_execution(
                store,
                revision,
                {},
                now,
                skip_tasks=[s for s in skip if s in known],
                continue_on_error=args.continue_on_error,
            )
            log(
                "INFO",
                f"STARTING EXECUTION Application {config.application} - RUN #{ex_id} [{mode}]",
            )
        settings = WorkerSettings(slots=workers)
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
        logs = write_logs(store, config, ex_id)
        unknown = [s for s in skip if s not in known]
        ok = summary(store, config, execution, unknown, logs)
        report(store, config, execution, unknown, logs)
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        store.close()


def resume(store: Store, ex_id: int, revision: Revision, now: float) -> int | None:
    """Run ``ex_id`` again in place: its attempt number, or None when it already
    succeeded (nothing to resume)."""
    execution = store.get_execution(ex_id)
    if execution.namespace != NAMESPACE:
        raise UsageError(
            f"run {ex_id} is execution {execution.namespace}/{execution.flow_id}, "
            "not an Executioner run"
        )
    attempt = 1 + restarts(store, ex_id)
    if execution.state is State.SUCCESS:
        log("WARNING", f"run {ex_id} already succeeded: nothing to resume")
        return None
    if execution.state.terminal:
        services.restart_on(store, ex_id, revision.id, now)
        return attempt + 1
    taken = reap_dead(store, ex_id)  # crashed while running: take back its attempts
    if taken:
        log("INFO", f"took back the attempts of {', '.join(taken)} (no longer running)")
    return attempt


def write_logs(store: Store, config: Config, ex_id: int) -> dict[str, str]:
    """Each job's output, every attempt, in its file under the log dir:
    ``executioner.<app>.job-<job>.run-<id>.log``."""
    os.makedirs(config.log_dir, exist_ok=True)
    runs = {r.id: r.task_id for r in store.task_runs(ex_id)}
    by_attempt = {a.id: runs[a.task_run_id] for a in store.attempts(ex_id)}
    lines: dict[str, list[str]] = {task: [] for task in runs.values()}
    after = 0
    while True:
        page = store.logs(ex_id, after_id=after)
        if not page:
            break
        for line in page:
            task = by_attempt.get(line.attempt_id) if line.attempt_id else None
            if task is not None:
                stamp = datetime.fromtimestamp(line.at).strftime("%Y-%m-%d %H:%M:%S")
                lines[task].append(f"{stamp} {line.line}")
        after = page[-1].id
    paths = {}
    for task, text in lines.items():
        path = os.path.join(
            config.log_dir, f"executioner.{config.application}.job-{task}.run-{ex_id}.log"
        )
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(mask(t, config.secrets) + "\n" for t in text)
        paths[task] = path
    return paths


def counts(
    runs: Sequence[TaskRunRow],
) -> tuple[list[TaskRunRow], list[TaskRunRow], list[TaskRunRow], list[TaskRunRow]]:
    """Completed, failed, skipped (asked for) and blocked (unmet dependencies) jobs."""
    done = [r for r in runs if r.state in (State.SUCCESS, State.WARNING)]
    failed = [r for r in runs if r.state in (State.FAILED, State.KILLED)]
    skipped = [r for r in runs if r.state is State.SKIPPED and _asked(r)]
    blocked = [r for r in runs if r.state is State.SKIPPED and not _asked(r)]
    blocked += [r for r in runs if not r.state.terminal]
    return done, failed, skipped, blocked


def _asked(run: TaskRunRow) -> bool:
    return (run.reason or "").startswith("skipped")


def summary(
    store: Store,
    config: Config,
    execution: ExecutionRow,
    unknown_skips: Sequence[str],
    logs: Mapping[str, str] | None = None,
) -> bool:
    """The Executioner's summary block; whether every job succeeded."""
    runs = store.task_runs(execution.id)
    done, failed, skipped, blocked = counts(runs)
    ok = not failed and not blocked
    attempt = restarts(store, execution.id)
    duration = (execution.ended_at or time.time()) - (execution.started_at or execution.created_at)
    p = print
    p("=" * 60)
    p("EXECUTION SUMMARY")
    p(f"Application: {config.application}")
    p(f"Run ID: {execution.id}" + (f" (Attempt {attempt + 1})" if attempt else ""))
    p(f"Status: {'SUCCESS' if ok else 'FAILED'}")
    p(f"Start Time: {fmt_time(execution.started_at or execution.created_at)}")
    p(f"End Time: {fmt_time(execution.ended_at)}")
    p(f"Duration: {duration:.1f}s")
    p(f"Jobs Completed: {len(done)}")
    p(f"Jobs Failed: {len(failed)}")
    p(f"Jobs Skipped: {len(skipped) + len(unknown_skips)}")
    for line in job_sections(config, failed, blocked, logs or {}):
        p(line)
    if ok:
        p("RUN INFORMATION")
        p(f"  ordo executions show {execution.id}")
    else:
        p("RESUME OPTIONS")
        p(f"  ordo executioner -c {config.flow.path} --resume-from {execution.id}")
        p(f"  ordo executioner --mark-success -r {execution.id} -j <job,...>")
    p("=" * 60)
    return ok


def job_sections(
    config: Config,
    failed: Sequence[TaskRunRow],
    blocked: Sequence[TaskRunRow],
    logs: Mapping[str, str],
) -> list[str]:
    """The ``Failed Jobs:`` and ``Skipped Jobs (unmet dependencies):`` sections."""
    lines = []
    if failed:
        lines.append("Failed Jobs:")
        for r in failed:
            lines.append(f"  - {r.task_id}: {config.descriptions.get(r.task_id, '')}")
            lines.append(f"    Reason: {mask(r.reason or 'failed', config.secrets)}")
            if r.task_id in logs:
                lines.append(f"    Log: {logs[r.task_id]}")
    if blocked:
        lines.append("Skipped Jobs (unmet dependencies):")
        for r in blocked:
            lines.append(f"  - {r.task_id}: {config.descriptions.get(r.task_id, '')}")
            lines.append(f"    Skipped ({r.reason or 'failed dependencies'})")
    return lines


def list_runs(store: Store, app: str, limit: int) -> int:
    rows = [
        e
        for e in store.list_executions(limit=max(limit, 1) * 20 + 100)
        if e.namespace == NAMESPACE and (not app or e.labels.get("application") == app)
    ][: max(limit, 1)]
    print(f"{'Run':>6}  {'Application':<20}  {'Status':<8}  {'Start':<19}  {'Duration':>9}  Jobs")
    for e in rows:
        runs = store.task_runs(e.id)
        done, failed, _, _ = counts(runs)
        took = (e.ended_at - e.started_at) if e.ended_at and e.started_at else None
        print(
            f"{e.id:>6}  {e.labels.get('application', e.flow_id)[:20]:<20}  {e.state.value:<8}  "
            f"{fmt_time(e.started_at or e.created_at):<19}  "
            f"{(f'{took:.1f}s' if took is not None else '-'):>9}  "
            f"{len(done)}/{len(runs)} ({len(failed)} failed)"
        )
    return EXIT_OK


def _run(store: Store, run_id: int) -> ExecutionRow | None:
    from ordo.errors import NotFound

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
    print(f"marked {', '.join(flippable)} SUCCESS; a resume of run {run_id} treats them as done")
    return EXIT_OK


def restarts(store: Store, ex_id: int) -> int:
    """How often the execution was run again in place (its Executioner attempt - 1)."""
    return sum(
        1 for h in store.history(ex_id) if h.task_run_id is None and h.to_state is State.RESTARTED
    )


def report(
    store: Store,
    config: Config,
    execution: ExecutionRow,
    unknown_skips: Sequence[str],
    logs: Mapping[str, str],
) -> None:
    """Mail the run's report when the config asks for it; a mail error is logged only."""
    mail = config.mail
    runs = store.task_runs(execution.id)
    done, failed, skipped, blocked = counts(runs)
    ok = not failed and not blocked
    if not mail.to or not (mail.on_success if ok else mail.on_failure):
        if not ok and mail.on_failure and not mail.to:
            log("WARNING", "email_on_failure is set but email_address names no address")
        return
    status = "SUCCESS" if ok else "FAILURE"
    lines = [
        f"Application: {config.application}",
        f"Run ID: {execution.id}",
        f"Status: {status}",
        f"Start Time: {fmt_time(execution.started_at or execution.created_at)}",
        f"End Time: {fmt_time(execution.ended_at)}",
        f"Jobs Completed: {len(done)}",
        f"Jobs Failed: {len(failed)}",
        f"Jobs Skipped: {len(skipped) + len(unknown_skips) + len(blocked)}",
    ]
    lines += job_sections(config, failed, blocked, logs)
    from ordo.runners.mail import Letter, send

    letter = Letter(
        subject=f"[{config.application}] Run #{execution.id} {status}",
        body="\n".join(lines) + "\n",
        to=mail.to,
        sender=mail.user or mail.to[0],
        attachments=tuple(p for p in logs.values() if os.path.exists(p)),
    )
    error = send(letter, mail.server, mail.port, mail.user, mail.password)
    if error:
        log("ERROR", f"could not send the report to {', '.join(mail.to)}: {error}")
    else:
        log("INFO", f"report mailed to {', '.join(mail.to)}")
