"""The shell runner against real processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import patient

from ordo.model import Metric, State
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext
from ordo.runners.shell import ShellRunner

RunnerCtx = Callable[..., RunContext]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + patient(timeout)
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def logs(ctx: RunContext) -> Any:
    """The context's recording sink (``RunnerLogs`` of conftest)."""
    return ctx.log


def test_outputs_and_metrics_files_are_parsed(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    command = (
        'echo "count=3" >> "$ORDO_OUTPUTS"\n'
        'echo \'items=[1, "a"]\' >> "$ORDO_OUTPUTS"\n'
        'echo "" >> "$ORDO_OUTPUTS"\n'
        'echo "name=plain text = fine" >> "$ORDO_OUTPUTS"\n'
        'echo "rows=12" >> "$ORDO_METRICS"\n'
        'echo \'{"name": "load", "value": 1.5, "kind": "duration", "tags": {"t": "x"}}\''
        ' >> "$ORDO_METRICS"\n'
    )
    outcome = runner_set.get("shell").run(runner_ctx(tmp_path, {"command": command}))
    assert (outcome.state, outcome.exit_code) == (State.SUCCESS, 0)
    assert outcome.outputs == {"count": 3, "items": [1, "a"], "name": "plain text = fine"}
    assert outcome.metrics == (
        Metric("rows", 12.0),
        Metric("load", 1.5, "duration", {"t": "x"}),
    )


def test_attempt_variables_are_set_and_files_removed(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    command = (
        'echo "ids=$ORDO_EXECUTION_ID/$ORDO_TASK_RUN_ID/$ORDO_TASK_ID/$ORDO_ATTEMPT"'
        ' >> "$ORDO_OUTPUTS"; echo "file=\\"$ORDO_OUTPUTS\\"" >> "$ORDO_OUTPUTS"'
    )
    outcome = runner_set.get("shell").run(runner_ctx(tmp_path, {"command": command}, attempt=2))
    assert outcome.outputs["ids"] == "11/22/step/2"
    assert not os.path.exists(outcome.outputs["file"])


def test_a_bad_outputs_line_fails_naming_its_number(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    command = 'printf "a=1\\n\\nno equals sign\\n" >> "$ORDO_OUTPUTS"'
    outcome = runner_set.get("shell").run(runner_ctx(tmp_path, {"command": command}))
    assert (outcome.state, outcome.reason) == (State.FAILED, "error")
    assert outcome.error is not None and "line 3" in outcome.error
    bad_metric = runner_set.get("shell").run(
        runner_ctx(tmp_path, {"command": 'echo "rows=many" >> "$ORDO_METRICS"'})
    )
    assert bad_metric.state is State.FAILED and "$ORDO_METRICS line 1" in (bad_metric.error or "")


def test_lines_are_streamed_while_the_command_runs(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = (
        f"echo one; echo warn >&2; echo two\nwhile [ ! -e {go} ]; do sleep 0.01; done\necho three"
    )
    ctx = runner_ctx(tmp_path, {"command": command}, timeout=10)
    log = logs(ctx)
    log.on_line = lambda stream, line: go.touch() if line == "two" else None
    outcome = runner_set.get("shell").run(ctx)
    assert outcome.ok, outcome.error  # "three" came only because "two" arrived first
    assert log.lines("stdout") == ["one", "two", "three"]
    assert log.lines("stderr") == ["warn"]


def test_long_lines_are_split_and_bad_bytes_replaced(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    command = "head -c 150000 /dev/zero | tr '\\0' x; echo; printf 'caf\\351\\n'"
    ctx = runner_ctx(tmp_path, {"command": command})
    assert runner_set.get("shell").run(ctx).ok
    sizes = [len(line) for line in logs(ctx).lines("stdout")]
    assert sizes[:3] == [65536, 65536, 150000 - 2 * 65536]
    assert logs(ctx).lines("stdout")[-1] == "caf\ufffd"


def test_exit_codes_and_command_not_found(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    shell = runner_set.get("shell")
    failed = shell.run(runner_ctx(tmp_path, {"command": "exit 3"}))
    assert (failed.state, failed.reason, failed.exit_code) == (State.FAILED, "exit_code", 3)
    assert failed.error == "exit code 3"
    missing = shell.run(runner_ctx(tmp_path, {"command": "nosuch-cmd-x --flag"}))
    assert (missing.exit_code, missing.error) == (127, "command not found: nosuch-cmd-x")
    argv = shell.run(runner_ctx(tmp_path, {"command": ["nosuch-cmd-y", "a"]}))
    assert (argv.state, argv.exit_code, argv.error) == (
        State.FAILED,
        127,
        "command not found: nosuch-cmd-y",
    )


def test_argv_env_and_cwd(runner_ctx: RunnerCtx, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    shell = ShellRunner({**os.environ, "ORDO_TEST_INHERITED": "yes"})
    show = 'echo "$(pwd)|${ORDO_TEST_INHERITED:-none}|$GREETING|${HOME:+home}"'
    for inherit, seen in ((True, "yes"), (False, "none"), (["ORDO_TEST_INHERITED"], "yes")):
        ctx = runner_ctx(
            tmp_path,
            {"command": ["/bin/sh", "-c", show], "cwd": "sub", "inherit_env": inherit},
            env={"GREETING": "hi"},
        )
        assert shell.run(ctx).ok
        home = "" if isinstance(inherit, list) else "home"
        assert logs(ctx).lines("stdout") == [f"{tmp_path / 'sub'}|{seen}|hi|{home}"]


def test_cpu_and_peak_memory_are_measured(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    burn = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"
    outcome = runner_set.get("shell").run(runner_ctx(tmp_path, {"command": burn}))
    assert outcome.ok
    assert outcome.cpu_seconds is not None and outcome.cpu_seconds > 0.01
    assert outcome.peak_rss_kb is not None and outcome.peak_rss_kb > 100


TREE = """
trap '' TERM
for i in 1 2 3; do sleep 100 & echo $! >> pids; done
echo $$ >> pids
echo started
wait
"""


def test_timeout_kills_the_whole_tree(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    ctx = runner_ctx(tmp_path, {"command": TREE}, timeout=1.0)
    started = time.monotonic()
    outcome = runner_set.get("shell").run(ctx)
    assert (outcome.state, outcome.reason) == (State.FAILED, "timeout")
    assert outcome.error == "timed out after 1.0s"
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 4
    assert wait_until(lambda: not any(alive(p) for p in pids), ctx.kill_grace + 1.0)
    assert time.monotonic() - started < ctx.timeout + ctx.kill_grace + 1.5  # type: ignore[operator]


def test_cancel_kills_the_tree_and_reports_killed(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    ctx = runner_ctx(tmp_path, {"command": TREE})
    logs(ctx).on_line = lambda stream, line: ctx.cancel.set() if line == "started" else None
    outcome = runner_set.get("shell").run(ctx)
    assert (outcome.state, outcome.reason) == (State.KILLED, "killed")
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert wait_until(lambda: not any(alive(p) for p in pids), ctx.kill_grace + 1.0)


def test_a_background_child_holding_the_pipes_does_not_hang_the_attempt(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    command = "sleep 30 & echo $! > bg; echo done"
    started = time.monotonic()
    outcome = runner_set.get("shell").run(runner_ctx(tmp_path, {"command": command}))
    try:
        assert outcome.ok and time.monotonic() - started < 5
    finally:
        os.kill(int((tmp_path / "bg").read_text()), signal.SIGKILL)


def test_runs_from_many_threads_at_once(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    shell = runner_set.get("shell")
    results: dict[int, object] = {}

    def one(n: int) -> None:
        out = shell.run(runner_ctx(tmp_path, {"command": f'echo "n={n}" >> "$ORDO_OUTPUTS"'}))
        results[n] = out.outputs.get("n")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: n for n in range(8)}
