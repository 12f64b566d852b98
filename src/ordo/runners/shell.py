"""``shell`` tasks: a command through ``/bin/sh -c``, or an argv list run directly."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from msgspec.structs import replace

from ordo.masking import passed_environ
from ordo.model import Outcome, State
from ordo.runners.base import RunContext
from ordo.runners.process import AttemptFiles, Finished, OutputFileError, child_env, run_process
from ordo.runners.watch import stopped_outcome

#: ``sh: 1: foo: not found`` (dash), ``bash: line 1: foo: command not found`` (bash).
_NOT_FOUND = re.compile(r"([^\s:]+): (?:command )?not found\s*$")


def working_dir(ctx: RunContext) -> str:
    """The task's ``cwd`` (relative to the flow's folder), else the flow's folder."""
    cwd = ctx.fields.get("cwd")
    return os.path.join(ctx.base_dir, str(cwd)) if cwd else ctx.base_dir


class ShellRunner:
    """Runs ``command`` (a string for ``/bin/sh -c``, or an argv list) in its own session
    with the task's environment (``inherit_env``: true, false or a list of names, then
    ``ctx.env``, then ``ORDO_*``) and working directory (``cwd``, relative to the flow's
    folder). Exit code 0 is SUCCESS; anything else FAILED with reason ``exit_code``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = passed_environ(os.environ if environ is None else environ)

    def run(self, ctx: RunContext) -> Outcome:
        command = ctx.fields["command"]
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        files = AttemptFiles(ctx.attempt_id)
        try:
            env = child_env(
                ctx.fields.get("inherit_env", True), self.environ, {**ctx.env, **files.env(ctx)}
            )
            cwd = working_dir(ctx)
            if not os.path.isdir(cwd):
                return Outcome(
                    State.FAILED, reason="error", error=f"working directory not found: {cwd}"
                )
            try:
                finished = run_process(argv, cwd=cwd, env=env, ctx=ctx)
            except FileNotFoundError:
                return Outcome(
                    State.FAILED,
                    exit_code=127,
                    reason="exit_code",
                    error=f"command not found: {argv[0]}",
                )
            except OSError as exc:
                return Outcome(
                    State.FAILED, reason="error", error=f"cannot start {argv[0]}: {exc.strerror}"
                )
            return process_outcome(finished, files, ctx, argv)
        finally:
            files.remove()

    def close(self) -> None:
        pass


def process_outcome(
    finished: Finished, files: AttemptFiles, ctx: RunContext, argv: list[str]
) -> Outcome:
    """Turn how a process ended, and the files it wrote, into an outcome."""
    usage: dict[str, Any] = {
        "cpu_seconds": finished.cpu_seconds,
        "peak_rss_kb": finished.peak_rss_kb,
    }
    stopped = stopped_outcome(
        "timeout" if finished.timed_out else "killed" if finished.cancelled else None, ctx
    )
    if stopped is not None:
        return replace(stopped, **usage)
    try:
        outputs, metrics = files.read()
    except OutputFileError as exc:
        return Outcome(
            State.FAILED, exit_code=finished.exit_code, reason="error", error=str(exc), **usage
        )
    code = finished.exit_code
    if code == 0:
        return Outcome(State.SUCCESS, exit_code=0, outputs=outputs, metrics=metrics, **usage)
    return Outcome(
        State.FAILED,
        exit_code=code,
        reason="exit_code",
        error=_exit_message(code, finished, argv),
        outputs=outputs,
        metrics=metrics,
        **usage,
    )


def _exit_message(code: int | None, finished: Finished, argv: list[str]) -> str:
    last = finished.last_stderr[-1] if finished.last_stderr else ""
    if code == 127 and "not found" in last:
        named = _NOT_FOUND.search(last)
        if named:
            return f"command not found: {named.group(1)}"
        words = argv[2].split() if argv[:2] == ["/bin/sh", "-c"] else argv
        return f"command not found: {words[0] if words else argv[0]}"
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}" + (f": {last}" if last else "")
