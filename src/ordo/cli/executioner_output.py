"""What ``ordo executioner`` shows and writes: the console lines of a run (also kept in
its main log file ``<log_dir>/executioner.<app>.run-<id>.log``), the summary (coloured
on a terminal), each job's log file and the mailed report."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TextIO

from msgspec import Struct, field

from ordo.cli.common import fmt_time
from ordo.definitions.executioner import Config
from ordo.masking import mask
from ordo.model import State
from ordo.store import Store
from ordo.store.records import ExecutionRow, TaskRunRow

#: ANSI colours of the summary (``NO_COLOR`` or ``--no-color`` turn them off).
GREEN, RED, YELLOW, BOLD, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"


def use_color(no_color_flag: bool, environ: Mapping[str, str], stream: TextIO) -> bool:
    """Colour when ``stream`` is a terminal, unless ``--no-color`` or ``NO_COLOR``."""
    return not no_color_flag and not environ.get("NO_COLOR") and stream.isatty()


class Console:
    """The run's console: logger-style lines and the summary, printed, and kept for the
    main log file from the moment :meth:`open` names it (earlier lines are written then)."""

    def __init__(self, color: bool = False, secrets: Sequence[str] = ()) -> None:
        self.color = color
        self.secrets = tuple(secrets)
        self.path: str | None = None
        self._file: TextIO | None = None
        self._held: list[str] = []

    def log(self, level: str, message: str) -> None:
        """``YYYY-mm-dd HH:MM:SS - LEVEL - message``: errors and warnings on stderr."""
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} - {level} - {mask(message, self.secrets)}"
        stream = sys.stderr if level in ("ERROR", "WARNING") else sys.stdout
        print(line, file=stream, flush=True)
        self._keep(line)

    def say(self, text: str, paint: str = "") -> None:
        """A line of the summary, in ``paint`` on a colour terminal."""
        print(f"{paint}{text}{RESET}" if paint and self.color else text, flush=True)
        self._keep(text)

    def note(self, text: str) -> None:
        """A line for the main log file only."""
        self._keep(text)

    def open(self, path: str) -> None:
        """Write to the main log file ``path`` (appended: a resume adds to its run's)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        for line in self._held:
            self._file.write(line + "\n")
        self._held = []
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _keep(self, line: str) -> None:
        if self._file is None:
            self._held.append(line)
        else:
            self._file.write(line + "\n")
            self._file.flush()


class Tally(Struct):
    """The jobs of a run by what the summary counts them as. ``skipped``: on request
    (``--skip``) or taken over from an earlier attempt; ``blocked``: not run because a
    dependency failed or the run stopped."""

    done: list[TaskRunRow] = field(default_factory=list)
    failed: list[TaskRunRow] = field(default_factory=list)
    skipped: list[TaskRunRow] = field(default_factory=list)
    blocked: list[TaskRunRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def tally(runs: Sequence[TaskRunRow], taken: Collection[str] = ()) -> Tally:
    """Count ``runs``; ``taken`` are the jobs a resume kept from earlier attempts (a
    success among them is both completed and skipped, as in the engine)."""
    t = Tally()
    for r in runs:
        if r.state in (State.SUCCESS, State.WARNING):
            t.done.append(r)
        elif r.state in (State.FAILED, State.KILLED):
            t.failed.append(r)
        if r.task_id in taken or (r.state is State.SKIPPED and _asked(r)):
            t.skipped.append(r)
        elif r.state is State.SKIPPED or not r.state.terminal:
            t.blocked.append(r)
    return t


def _asked(run: TaskRunRow) -> bool:
    return (run.reason or "").startswith("skipped")


def shown_reason(reason: str | None) -> str:
    """A failed job's reason as the engine words a failed check: ``Pre-check failed:
    ...`` or ``Post-check failed: ...`` (what the check said), else as recorded."""
    text = reason or "failed"
    for phase, label in (("pre_check", "Pre-check failed"), ("post_check", "Post-check failed")):
        if text.startswith(phase + " "):
            said = text.split(": ", 1)[1] if ": " in text else text
            return f"{label}: {re.sub(r'^exit code [0-9]+: ', '', said)}"
    return text


def summary(
    console: Console,
    store: Store,
    config: Config,
    execution: ExecutionRow,
    attempt: int,
    extra_skips: int = 0,
    taken: Collection[str] = (),
    logs: Mapping[str, str] | None = None,
) -> bool:
    """The Executioner's summary block; whether every job succeeded. ``attempt`` is the
    run's attempt (1 for a first run); ``extra_skips`` the ``--skip`` ids no job has."""
    t = tally(store.task_runs(execution.id), taken)
    duration = (execution.ended_at or time.time()) - (execution.started_at or execution.created_at)
    say = console.say
    say("=" * 60)
    say("EXECUTION SUMMARY", BOLD)
    say(f"Application: {config.application}")
    say(f"Run ID: {execution.id}" + (f" (Attempt {attempt})" if attempt > 1 else ""))
    say(f"Status: {'SUCCESS' if t.ok else 'FAILED'}", GREEN if t.ok else RED)
    say(f"Start Time: {fmt_time(execution.started_at or execution.created_at)}")
    say(f"End Time: {fmt_time(execution.ended_at)}")
    say(f"Duration: {duration:.1f}s")
    say(f"Jobs Completed: {len(t.done)}", GREEN if t.done else "")
    say(f"Jobs Failed: {len(t.failed)}", RED if t.failed else "")
    skipped = len(t.skipped) + extra_skips
    say(f"Jobs Skipped: {skipped}", YELLOW if skipped else "")
    for line, paint in job_sections(config, t, logs or {}):
        say(line, paint)
    if t.ok:
        say("RUN INFORMATION", BOLD)
        say(f"  ordo executions show {execution.id}")
        if console.path:
            say(f"  Log: {console.path}")
    else:
        say("RESUME OPTIONS", BOLD)
        say(f"  ordo executioner -c {config.flow.path} --resume-from {execution.id}")
        say(f"  ordo executioner --mark-success -r {execution.id} -j <job,...>")
        if console.path:
            say(f"  Log: {console.path}")
    say("=" * 60)
    return t.ok


def job_sections(config: Config, t: Tally, logs: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ``Failed Jobs:`` and ``Skipped Jobs (unmet dependencies):`` sections, each
    line with its colour."""
    lines: list[tuple[str, str]] = []
    if t.failed:
        lines.append(("Failed Jobs:", RED))
        for r in t.failed:
            lines.append((f"  - {r.task_id}: {config.descriptions.get(r.task_id, '')}", RED))
            lines.append((f"    Reason: {mask(shown_reason(r.reason), config.secrets)}", ""))
            if r.task_id in logs:
                lines.append((f"    Log: {logs[r.task_id]}", ""))
    if t.blocked:
        lines.append(("Skipped Jobs (unmet dependencies):", YELLOW))
        for r in t.blocked:
            lines.append((f"  - {r.task_id}: {config.descriptions.get(r.task_id, '')}", YELLOW))
            lines.append((f"    Skipped ({r.reason or 'failed dependencies'})", ""))
    return lines


def job_details(console: Console, store: Store, execution_id: int, since: float) -> None:
    """Every attempt of the run since ``since`` (this attempt of it), for the main log."""
    runs = {r.id: r.task_id for r in store.task_runs(execution_id)}
    attempts = [a for a in store.attempts(execution_id) if a.started_at >= since]
    if not attempts:
        return
    console.note("JOB ATTEMPTS")
    for a in sorted(attempts, key=lambda a: (a.started_at, a.id)):
        took = f"{a.ended_at - a.started_at:.1f}s" if a.ended_at is not None else "-"
        code = "" if a.exit_code is None else f", exit code {a.exit_code}"
        why = f": {mask(a.error, console.secrets)}" if a.error else ""
        console.note(
            f"  {fmt_time(a.started_at)} {runs.get(a.task_run_id, '?')} attempt {a.number}: "
            f"{a.state.value} in {took}{code}{why}"
        )


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


def main_log_path(config: Config, ex_id: int) -> str:
    return os.path.join(config.log_dir, f"executioner.{config.application}.run-{ex_id}.log")


def report(
    console: Console,
    store: Store,
    config: Config,
    execution: ExecutionRow,
    extra_skips: int,
    taken: Collection[str],
    logs: Mapping[str, str],
) -> None:
    """Mail the run's report when the config asks for it; a mail error is logged only."""
    mail = config.mail
    t = tally(store.task_runs(execution.id), taken)
    if not mail.to or not (mail.on_success if t.ok else mail.on_failure):
        if not t.ok and mail.on_failure and not mail.to:
            console.log("WARNING", "email_on_failure is set but email_address names no address")
        return
    status = "SUCCESS" if t.ok else "FAILURE"
    lines = [
        f"Application: {config.application}",
        f"Run ID: {execution.id}",
        f"Status: {status}",
        f"Start Time: {fmt_time(execution.started_at or execution.created_at)}",
        f"End Time: {fmt_time(execution.ended_at)}",
        f"Jobs Completed: {len(t.done)}",
        f"Jobs Failed: {len(t.failed)}",
        f"Jobs Skipped: {len(t.skipped) + extra_skips + len(t.blocked)}",
    ]
    lines += [line for line, _ in job_sections(config, t, logs)]
    from ordo.runners.mail import Letter, send

    attached = [*logs.values(), *([console.path] if console.path else [])]
    letter = Letter(
        subject=f"[{config.application}] Run #{execution.id} {status}",
        body="\n".join(lines) + "\n",
        to=mail.to,
        sender=mail.user or mail.to[0],
        attachments=tuple(p for p in attached if os.path.exists(p)),
    )
    error = send(letter, mail.server, mail.port, mail.user, mail.password)
    if error:
        console.log("ERROR", f"could not send the report to {', '.join(mail.to)}: {error}")
    else:
        console.log("INFO", f"report mailed to {', '.join(mail.to)}")
