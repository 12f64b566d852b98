"""Pre and post checks of a task, run around its runner for one attempt.

Pre checks run in order before the task and stop at the first failure: the attempt ends
FAILED with reason ``pre_check`` and the task does not run. Post checks run in order
after a run that ended SUCCESS or WARNING and stop at the first failure: the attempt ends
FAILED with reason ``post_check`` (the retry policy decides). Every check that ran is a
:class:`~ordo.model.CheckResult` on the outcome, and one line in the attempt's log.

The kinds:

- ``file_exists``: the path (relative to the flow's folder, or absolute) exists; a glob
  (``in/*.csv``) passes when anything matches it. ``type: file`` or ``dir`` asks for one.
- ``no_match``: no line of any file matching the glob matches the regular expression.
  Files are read line by line, never whole; no file matching the glob passes, unless
  ``missing: fail``.
- ``command``: ``/bin/sh -c`` in the flow's folder with the task's environment; exit
  code 0 passes. Its lines go to the attempt's log and its last ones to the result.
- ``function``: ``module:func`` beside the flow, called on a python host with the
  keyword arguments it names (``inputs``, ``outputs``, ``execution``, ``fork``,
  ``task``); a truthy value passes, ``(ok, message)`` says both, raising fails.
"""

from __future__ import annotations

import glob
import os
import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from msgspec import Struct

from ordo.errors import OrdoError
from ordo.model import Check, CheckResult, Outcome, State
from ordo.runners.base import CheckPlan, RunContext
from ordo.runners.process import MAX_LINE, child_env, run_process
from ordo.runners.watch import timeout_error

#: How long a command or function check may take when neither it nor its task says.
DEFAULT_TIMEOUT = 300.0
#: How much of a command check's output is kept with its result (the end of it).
OUTPUT_CHARS = 4000
SHOWN_LINE = 200  # characters of a matching line in a no_match message

Now = Callable[[], float]
#: ``evaluate(function, base_dir, facts, ctx)``: a python host's answer (see
#: :meth:`PythonRunner.evaluate`); raises OrdoError with the reason.
Evaluate = Callable[[str, str, Mapping[str, Any], RunContext], Any]


class _Said(Struct):
    """What one check found."""

    ok: bool
    message: str
    output: str | None = None


class CheckRunner:
    """Runs a task's checks around its runner. ``evaluate`` answers function checks;
    ``environ`` is what the task environment of command checks inherits from."""

    def __init__(self, evaluate: Evaluate, environ: Mapping[str, str] | None = None) -> None:
        self.evaluate = evaluate
        self.environ = dict(os.environ if environ is None else environ)

    def around(self, ctx: RunContext, run: Callable[[], Outcome], now: Now) -> Outcome:
        """The attempt's outcome: ``run()``'s, between the pre and post checks of
        ``ctx.checks``, with every check result on it."""
        plan = ctx.checks or CheckPlan()
        results: list[CheckResult] = []
        failed = self._phase("pre", plan, ctx, None, now, results)
        if ctx.cancel.is_set():
            return Outcome(
                State.KILLED, reason="killed", error="killed on request", checks=(*results,)
            )
        if failed is not None:
            return Outcome(State.FAILED, reason="pre_check", error=failed, checks=(*results,))
        outcome = run()
        ran_ok = outcome.state in (State.SUCCESS, State.WARNING) and outcome.forks is None
        if not plan.post or not ran_ok or ctx.cancel.is_set():
            return msgspec.structs.replace(outcome, checks=(*results, *outcome.checks))
        failed = self._phase("post", plan, ctx, outcome, now, results)
        if ctx.cancel.is_set():
            return msgspec.structs.replace(
                outcome,
                state=State.KILLED,
                reason="killed",
                error="killed on request",
                checks=(*results,),
            )
        if failed is not None:
            return msgspec.structs.replace(
                outcome, state=State.FAILED, reason="post_check", error=failed, checks=(*results,)
            )
        return msgspec.structs.replace(outcome, checks=(*results,))

    def _phase(
        self,
        phase: str,
        plan: CheckPlan,
        ctx: RunContext,
        outcome: Outcome | None,
        now: Now,
        results: list[CheckResult],
    ) -> str | None:
        """Run one phase's checks in order until one fails: its error message, or None."""
        checks = plan.pre if phase == "pre" else plan.post
        own = dict(outcome.outputs) if outcome is not None else None
        for position, check in enumerate(checks, start=1):
            started = now()
            try:
                rendered = plan.render(check, own)
            except OrdoError as exc:
                said = _Said(False, str(exc))
            else:
                said = self._one(phase, rendered, ctx, plan, outcome)
            result = CheckResult(
                phase, position, check.kind, said.ok, said.message, started, now(), said.output
            )
            results.append(result)
            verdict = "passed" if said.ok else "failed"
            ctx.log(
                "stdout" if said.ok else "stderr", f"{_label(result)}: {verdict}: {said.message}"
            )
            if not said.ok or ctx.cancel.is_set():
                return f"{phase}_check {check.kind}: {said.message}"
        return None

    def _one(
        self, phase: str, check: Check, ctx: RunContext, plan: CheckPlan, outcome: Outcome | None
    ) -> _Said:
        fields = check.fields
        if check.kind == "file_exists":
            return file_exists(str(fields["path"]), ctx.base_dir, fields.get("type", "any"))
        if check.kind == "no_match":
            missing_fails = fields.get("missing") == "fail"
            return no_match(str(fields["path"]), str(fields["pattern"]), ctx, missing_fails)
        limit = fields.get("timeout") or ctx.timeout or DEFAULT_TIMEOUT
        if check.kind == "command":
            return self._command(phase, str(fields["run"]), float(limit), ctx)
        return self._function(phase, str(fields["function"]), float(limit), ctx, plan, outcome)

    def _command(self, phase: str, command: str, limit: float, ctx: RunContext) -> _Said:
        tail = _Tail(ctx.log)
        sub = msgspec.structs.replace(ctx, timeout=limit, log=tail)
        extra = {
            **ctx.env,
            "ORDO_EXECUTION_ID": str(ctx.execution_id),
            "ORDO_TASK_RUN_ID": str(ctx.task_run_id),
            "ORDO_TASK_ID": ctx.task.id,
            "ORDO_ATTEMPT": str(ctx.attempt_number),
            "ORDO_CHECK_PHASE": phase,
        }
        env = child_env(ctx.fields.get("inherit_env", True), self.environ, extra)
        try:
            finished = run_process(["/bin/sh", "-c", command], cwd=ctx.base_dir, env=env, ctx=sub)
        except OSError as exc:
            return _Said(False, f"cannot run /bin/sh in {ctx.base_dir}: {exc.strerror or exc}")
        output = tail.text()
        if finished.timed_out:
            return _Said(False, timeout_error(limit), output)
        if finished.cancelled:
            return _Said(False, "stopped on request", output)
        code = finished.exit_code
        if code == 0:
            return _Said(True, "exit code 0", output)
        if code is not None and code < 0:
            return _Said(False, f"killed by signal {-code}", output)
        last = tail.last()
        return _Said(False, f"exit code {code}" + (f": {last}" if last else ""), output)

    def _function(
        self,
        phase: str,
        function: str,
        limit: float,
        ctx: RunContext,
        plan: CheckPlan,
        outcome: Outcome | None,
    ) -> _Said:
        facts = dict(plan.facts)
        task: dict[str, Any] = {
            "id": ctx.task.id,
            "type": ctx.task.type,
            "attempt": ctx.attempt_number,
            "phase": phase,
        }
        if outcome is not None:
            facts["outputs"] = {**facts.get("outputs", {}), ctx.task.id: dict(outcome.outputs)}
            task.update(state=outcome.state.value, exit_code=outcome.exit_code)
        facts["task"] = task
        sub = msgspec.structs.replace(ctx, timeout=limit)
        try:
            value = self.evaluate(function, ctx.base_dir, facts, sub)
        except OrdoError as exc:
            return _Said(False, str(exc))
        if isinstance(value, list) and len(value) == 2:
            ok, message = bool(value[0]), value[1]
            return _Said(ok, str(message) if message else _returned(function, ok))
        return _Said(bool(value), _returned(function, value))


def file_exists(path: str, base_dir: str, kind: str = "any") -> _Said:
    """The path exists (as a file or a folder when ``kind`` says so); a glob passes
    when anything (of that kind) matches it."""
    full = os.path.join(base_dir, path)
    fits = {"any": os.path.exists, "file": os.path.isfile, "dir": os.path.isdir}[kind]
    what = {"any": "", "file": " as a file", "dir": " as a folder"}[kind]
    if glob.has_magic(path):
        found = [p for p in glob.glob(full, recursive=True) if fits(p)]
        if not found:
            return _Said(False, f"nothing matches {path}{what}")
        first = _shown(found[0], base_dir, path)
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        return _Said(True, f"{path} matches {first}{more}")
    if fits(full):
        return _Said(True, f"{path} exists{what}")
    if kind != "any" and os.path.exists(full):
        return _Said(False, f"{path} exists but not{what}")
    return _Said(False, f"{path} does not exist")


def no_match(path: str, pattern: str, ctx: RunContext, missing_fails: bool = False) -> _Said:
    """No line of the files matching ``path`` matches ``pattern``: the first line that
    does fails it, named ``file:line``. No file matching passes, unless
    ``missing_fails``."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        return _Said(False, f"invalid regular expression {pattern!r}: {exc}")
    full = os.path.join(ctx.base_dir, path)
    files = sorted(p for p in glob.iglob(full, recursive=True) if os.path.isfile(p))
    if not files:
        if missing_fails:
            return _Said(False, f"no file matches {path} (missing: fail)")
        return _Said(True, f"no file matches {path}: nothing to scan")
    for name in files:
        try:
            hit = first_match(name, regex, ctx)
        except OSError as exc:
            return _Said(False, f"cannot read {_shown(name, ctx.base_dir, path)}: {exc.strerror}")
        if ctx.cancel.is_set():
            return _Said(False, "stopped on request")
        if hit is not None:
            number, line = hit
            shown = line if len(line) <= SHOWN_LINE else line[: SHOWN_LINE - 3] + "..."
            where = f"{_shown(name, ctx.base_dir, path)}:{number}"
            return _Said(False, f"{where} matches {pattern!r}: {shown}")
    count = f"{len(files)} file" + ("s" if len(files) > 1 else "")
    return _Said(True, f"no line matches {pattern!r} in {count} ({path})")


def first_match(path: str, regex: re.Pattern[str], ctx: RunContext) -> tuple[int, str] | None:
    """``(line number, line)`` of the first line of the file matching ``regex``. Read a
    line at a time (a line longer than 64 KiB in pieces), stopping early on cancel."""
    with open(path, "rb") as f:
        number = 1
        while chunk := f.readline(MAX_LINE):
            text = chunk.decode("utf-8", errors="replace").rstrip("\r\n")
            if regex.search(text):
                return number, text
            if chunk.endswith(b"\n"):
                number += 1
                if number % 10_000 == 0 and ctx.cancel.is_set():
                    return None
    return None


def _shown(found: str, base_dir: str, given: str) -> str:
    """A found path as the user would write it: relative when the glob was."""
    return found if os.path.isabs(given) else os.path.relpath(found, base_dir)


def _returned(function: str, value: Any) -> str:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{function} returned {shown}"


def _label(result: CheckResult) -> str:
    return f"{result.phase}_check {result.position} {result.kind}"


class _Tail:
    """A command check's log sink: every line to the attempt's log, and the last
    :data:`OUTPUT_CHARS` characters kept for its result."""

    def __init__(self, log: Callable[[str, str], None]) -> None:
        self.log = log
        self.lines: deque[str] = deque()
        self.size = 0
        self.cut = False

    def __call__(self, stream: str, line: str) -> None:
        self.log(stream, line)
        self.lines.append(line)
        self.size += len(line) + 1
        while self.size > OUTPUT_CHARS and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1
            self.cut = True

    def last(self) -> str:
        """The last line that is not blank, shortened."""
        for line in reversed(self.lines):
            if line.strip():
                return line if len(line) <= SHOWN_LINE else line[: SHOWN_LINE - 3] + "..."
        return ""

    def text(self) -> str | None:
        if not self.lines:
            return None
        text = "\n".join(self.lines)
        if len(text) > OUTPUT_CHARS:
            text = text[-OUTPUT_CHARS:]
        return ("[earlier output not kept: see ordo logs]\n" if self.cut else "") + text
