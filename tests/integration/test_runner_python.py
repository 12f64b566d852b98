"""The python runner and its warm hosts, against real host processes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import run_file

from ordo import this
from ordo.model import Metric, State
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext
from ordo.store import Store

RunnerCtx = Callable[..., RunContext]

TASKS = """
import logging, os, subprocess, sys, time
from ordo import this

def add(a, b):
    print("adding", a, b)
    print("to stderr", file=sys.stderr)
    this.output("early", True)
    this.output("sum", "overwritten by the return value")
    this.metric("calls", 1, tags={"k": "v"})
    return {"sum": a + b}

def noisy():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("etl").info("from logging")
    os.write(1, b"fd level\\n")
    subprocess.run(["echo", "from a child"], check=True)
    this.log("via this.log")
    sys.stdout.write("no newline at the end")

def where():
    return {"cwd": os.getcwd(), "x": os.environ.get("X"), "pid": os.getpid()}

def wander():
    os.chdir("/")

def boom():
    helper()

def helper():
    raise ValueError("bad row")

def slow():
    time.sleep(60)

def wrong():
    return [1]

def unjson():
    return {"when": object()}

def die():
    os._exit(7)

def wait_for(path):
    print("waiting", flush=False)
    while not os.path.exists(path):
        time.sleep(0.01)
    print("went on")

def burn():
    sum(i * i for i in range(300_000))
    return {"big": len(bytearray(30_000_000))}

def uses_stdlib_names():
    import http.client, urllib.request
    return {"http": http.client.__name__}
"""

SCRIPT = """
import sys
from ordo import this
print("script got", this.inputs["x"], sys.argv[0].endswith("job.py"))
this.output("seen", this.inputs["x"])
sys.exit(this.inputs.get("code", 0))
"""


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    (tmp_path / "tasks_mod.py").write_text(TASKS)
    (tmp_path / "job.py").write_text(SCRIPT)
    (tmp_path / "etl").mkdir()
    (tmp_path / "etl" / "__init__.py").write_text("")
    (tmp_path / "etl" / "steps.py").write_text(
        "from .shared import K\ndef run():\n    return {'k': K}\n"
    )
    (tmp_path / "etl" / "shared.py").write_text("K = 1\n")
    return tmp_path


def lines(ctx: RunContext, stream: str) -> list[str]:
    log: Any = ctx.log
    return [line for s, line in log if s == stream]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_function_outputs_metrics_and_logs(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    ctx = runner_ctx(flow_dir, {"function": "tasks_mod:add"}, with_={"a": 2, "b": 3})
    outcome = runner_set.get("python").run(ctx)
    assert outcome.state is State.SUCCESS, outcome.error
    assert outcome.outputs == {"early": True, "sum": 5}
    assert outcome.metrics == (Metric("calls", 1.0, "counter", {"k": "v"}),)
    assert lines(ctx, "stdout") == ["adding 2 3"]
    assert lines(ctx, "stderr") == ["to stderr"]


def test_logging_fd_writes_and_children_reach_the_attempt_log(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    ctx = runner_ctx(flow_dir, {"function": "tasks_mod:noisy"})
    assert runner_set.get("python").run(ctx).ok
    assert lines(ctx, "stdout") == [
        "fd level",
        "from a child",
        "via this.log",
        "no newline at the end",
    ]
    assert lines(ctx, "stderr") == ["INFO from logging"]


def test_lines_are_streamed_while_the_function_runs(
    runner_set: RunnerSet,
    runner_ctx: RunnerCtx,
    flow_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the host must stream anyway
    go = flow_dir / "go"
    ctx = runner_ctx(flow_dir, {"function": "tasks_mod:wait_for"}, with_={"path": str(go)})
    log: Any = ctx.log
    log.on_line = lambda stream, line: go.touch() if line == "waiting" else None
    ctx.timeout = 10
    outcome = runner_set.get("python").run(ctx)
    assert outcome.ok, outcome.error
    assert lines(ctx, "stdout") == ["waiting", "went on"]


def test_script_reads_inputs_and_exit_codes_count(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    ctx = runner_ctx(flow_dir, {"script": "job.py"}, with_={"x": 41})
    outcome = py.run(ctx)
    assert outcome.state is State.SUCCESS, outcome.error
    assert outcome.outputs == {"seen": 41}
    assert lines(ctx, "stdout") == ["script got 41 True"]
    failed = py.run(runner_ctx(flow_dir, {"script": "job.py"}, with_={"x": 1, "code": 3}))
    assert (failed.state, failed.exit_code, failed.reason) == (State.FAILED, 3, "exit_code")
    assert failed.outputs == {"seen": 1}


def test_user_errors_are_clear(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    boom = runner_ctx(flow_dir, {"function": "tasks_mod:boom"})
    outcome = py.run(boom)
    assert (outcome.state, outcome.reason) == (State.FAILED, "error")
    assert outcome.error == "ValueError: bad row"
    trace = lines(boom, "stderr")
    assert trace[0] == "Traceback (most recent call last):"
    assert trace[-1] == "ValueError: bad row"
    assert "in helper" in "\n".join(trace) and "pyhost" not in "\n".join(trace)


@pytest.mark.parametrize(
    ("fields", "reason", "error"),
    [
        (
            {"function": "etl.stepz:transform"},
            "import",
            "cannot import module 'etl.stepz' (from function 'etl.stepz:transform'): "
            "No module named 'etl.stepz'",
        ),
        (
            {"function": "tasks_mod:ad"},
            "import",
            "module 'tasks_mod' has no function 'ad' (did you mean 'add'?)",
        ),
        (
            {"function": "tasks_mod"},
            "import",
            "function must be 'module:function', found 'tasks_mod'",
        ),
        (
            {"function": "tasks_mod:wrong"},
            "error",
            "function tasks_mod:wrong returned list, expected a dict of outputs, None, "
            "this.success/warning/fail(...), or 'SKIP'/'STOP'",
        ),
    ],
)
def test_missing_or_wrong_functions_are_named(
    runner_set: RunnerSet,
    runner_ctx: RunnerCtx,
    flow_dir: Path,
    fields: dict[str, str],
    reason: str,
    error: str,
) -> None:
    """What cannot be imported has reason ``import`` (never retried); a function that
    ran and answered wrongly is an ``error`` like any other."""
    outcome = runner_set.get("python").run(runner_ctx(flow_dir, fields))
    assert (outcome.state, outcome.reason, outcome.error) == (State.FAILED, reason, error)


def test_missing_script_and_unserializable_outputs(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    missing = py.run(runner_ctx(flow_dir, {"script": "nope.py"}))
    assert missing.error == f"script not found: {flow_dir / 'nope.py'}"
    assert missing.reason == "import"
    unjson = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:unjson"}))
    assert unjson.state is State.FAILED
    assert (unjson.error or "").startswith(
        "function tasks_mod:unjson returned outputs that are not"
    )


def test_hosts_are_reused_and_replaced_after_a_timeout(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    first = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:where"})).outputs["pid"]
    second = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:where"})).outputs["pid"]
    assert first == second
    slow = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:slow"}, timeout=0.3))
    assert (slow.state, slow.reason, slow.error) == (
        State.FAILED,
        "timeout",
        "timed out after 0.3s",
    )
    assert not alive(first)
    third = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:where"}))
    assert third.ok and third.outputs["pid"] != first


def test_cancel_stops_the_function(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    ctx = runner_ctx(flow_dir, {"function": "tasks_mod:slow"})
    timer = threading.Timer(0.2, ctx.cancel.set)
    timer.start()
    started = time.monotonic()
    outcome = runner_set.get("python").run(ctx)
    timer.join()
    assert (outcome.state, outcome.reason) == (State.KILLED, "killed")
    assert time.monotonic() - started < 0.2 + ctx.kill_grace + 1.0


def test_a_host_that_dies_fails_the_attempt_and_is_replaced(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    died = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:die"}))
    assert (died.state, died.exit_code) == (State.FAILED, 7)
    assert "ended unexpectedly" in (died.error or "")
    assert py.run(runner_ctx(flow_dir, {"function": "tasks_mod:where"})).ok


def test_cwd_and_env_apply_to_one_task_only(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    (flow_dir / "sub").mkdir()
    inside = py.run(
        runner_ctx(flow_dir, {"function": "tasks_mod:where", "cwd": "sub"}, env={"X": "1"})
    )
    assert (inside.outputs["cwd"], inside.outputs["x"]) == (str(flow_dir / "sub"), "1")
    after = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:where"}))
    assert after.outputs["pid"] == inside.outputs["pid"]
    assert (after.outputs["cwd"], after.outputs["x"]) == (str(flow_dir), None)
    assert py.run(runner_ctx(flow_dir, {"function": "tasks_mod:wander"})).ok  # (moves away)
    again = py.run(runner_ctx(flow_dir, {"function": "tasks_mod:where", "cwd": "sub"}))
    assert (again.outputs["pid"], again.outputs["cwd"]) == (
        inside.outputs["pid"],
        inside.outputs["cwd"],
    )


def test_each_task_gets_its_own_environment_whatever_the_last_one_did(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path, tmp_path: Path
) -> None:
    """A host is sent only what differs from the last task's environment; a task that
    changed ``os.environ`` itself (set, changed, removed variables) leaves nothing of it
    behind, and what the next task is given is there."""
    (tmp_path / "envs.py").write_text(
        "import os\n"
        "def tamper():\n"
        "    os.environ['LEAK'] = '1'\n"
        "    os.environ['X'] = 'changed'\n"
        "    del os.environ['Y']\n"
        "def show():\n"
        "    return {k: os.environ.get(k) for k in ('LEAK', 'X', 'Y', 'Z')}\n"
    )
    py = runner_set.get("python")
    given = {"X": "1", "Y": "2"}
    assert py.run(runner_ctx(flow_dir, {"function": "envs:tamper"}, env=given)).ok
    seen = py.run(runner_ctx(flow_dir, {"function": "envs:show"}, env=given)).outputs
    assert seen == {"LEAK": None, "X": "1", "Y": "2", "Z": None}
    seen = py.run(runner_ctx(flow_dir, {"function": "envs:show"}, env={"Z": "3"})).outputs
    assert seen == {"LEAK": None, "X": None, "Y": None, "Z": "3"}
    seen = py.run(runner_ctx(flow_dir, {"function": "envs:show"}, env={"Z": "4"})).outputs
    assert seen == {"LEAK": None, "X": None, "Y": None, "Z": "4"}


def test_a_host_that_leaves_still_runs_what_tasks_registered_with_atexit(
    runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    """A host leaves without the interpreter's teardown once its input ends, but a
    task's ``atexit`` function still runs then, and what it prints is flushed."""
    from ordo.runners import make_runners

    done = tmp_path / "done.txt"
    (tmp_path / "leaving.py").write_text(
        "import atexit\n"
        "def run(path):\n"
        "    atexit.register(lambda: open(path, 'w').write('cleaned up'))\n"
    )
    runners = make_runners(1)
    try:
        ctx = runner_ctx(tmp_path, {"function": "leaving:run"}, with_={"path": str(done)})
        assert runners.get("python").run(ctx).ok
        assert not done.exists()  # the host lives on for the next task
    finally:
        runners.close()  # waits for the hosts to end
    assert done.read_text() == "cleaned up"


def test_cpu_and_peak_memory_are_measured(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    outcome = runner_set.get("python").run(runner_ctx(flow_dir, {"function": "tasks_mod:burn"}))
    assert outcome.ok
    assert outcome.cpu_seconds is not None and outcome.cpu_seconds > 0.005
    assert outcome.peak_rss_kb is not None and outcome.peak_rss_kb > 30_000


def test_edited_modules_and_their_imports_are_read_again(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    py = runner_set.get("python")
    assert py.run(runner_ctx(flow_dir, {"function": "etl.steps:run"})).outputs == {"k": 1}
    (flow_dir / "etl" / "shared.py").write_text("K = 22\n")  # a module the task imports
    assert py.run(runner_ctx(flow_dir, {"function": "etl.steps:run"})).outputs == {"k": 22}


def test_same_module_names_in_two_flow_folders_do_not_mix(
    runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    from ordo.runners import make_runners

    runners = make_runners(1)  # one host serves both folders
    try:
        py = runners.get("python")
        for name in ("a", "b", "a"):
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            (folder / "tasks.py").write_text(f"def run():\n    return {{'flow': {name!r}}}\n")
            assert py.run(runner_ctx(folder, {"function": "tasks:run"})).outputs == {"flow": name}
    finally:
        runners.close()


def test_flow_modules_never_shadow_the_standard_library(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, flow_dir: Path
) -> None:
    outcome = runner_set.get("python").run(
        runner_ctx(flow_dir, {"function": "tasks_mod:uses_stdlib_names"})
    )
    assert outcome.outputs == {"http": "http.client"}, outcome.error


def test_this_outside_a_task_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDO_OUTPUTS", raising=False)
    monkeypatch.delenv("ORDO_METRICS", raising=False)
    with pytest.raises(RuntimeError, match="only inside an ordo task"):
        this.output("k", 1)
    with pytest.raises(RuntimeError, match="ORDO_METRICS"):
        this.metric("m", 1)


def test_a_function_that_cannot_be_imported_fails_once_without_retry(
    store: Store, tmp_path: Path
) -> None:
    """The README's first mistake: ``checks:length_ok`` with no checks.py beside the
    flow. Three attempts are allowed; one is made, and its reason says why."""
    flow = tmp_path / "quick.yaml"
    flow.write_text(
        "id: quick\n"
        "tasks:\n"
        "  - id: check\n"
        "    type: python\n"
        "    function: checks:length_ok\n"
        "    retry: {attempts: 3, delay: 1s}\n"
    )
    ex_id, state = run_file(store, tmp_path, flow)
    assert state is State.FAILED
    (run,) = store.task_runs(ex_id)
    (attempt,) = store.attempts(ex_id)
    assert (attempt.reason, run.attempts) == ("import", 1)
    assert attempt.error == (
        "cannot import module 'checks' (from function 'checks:length_ok'): No module named 'checks'"
    )
