"""Flows written in Python (``@flow`` / ``@task``) through the real ``ordo`` command, on
SQLite and PostgreSQL: steps as task runs, parallel ``.submit()``, failures the flow
handles, and durable replay after the worker is SIGKILLed mid-flow."""

from __future__ import annotations

import datetime
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import running_server, server_env, sign_in
from support import ordo, wait_for, work_on

import ordo as ordo_api
from ordo import engine
from ordo.engine import open_store
from ordo.errors import NotFound
from ordo.model import State
from ordo.store import Store
from ordo.triggers.scheduler import Scheduler

PIPELINE = """
from ordo import flow, task, this


@task(retry={"attempts": 2, "delay": "0.1s"})
def extract(day: str) -> list:
    return [{"day": day, "n": i} for i in range(3)]


@task
def load(row: dict) -> int:
    print("loading", row["n"])
    return row["n"] * 10


@task
def boom() -> None:
    raise RuntimeError("no")


@task
def takes(values) -> int:
    return len(values)


@flow(id="etl", namespace="analytics", description="Load one day.")
def etl(day: str = "2026-01-01", scale: int = 1) -> dict:
    rows = extract(day)
    parts = [load.submit(r) for r in rows]
    try:
        boom()
        caught = None
    except this.TaskFailed as exc:
        caught = str(exc)
    try:
        takes({1, 2})
        refused = None
    except this.TaskFailed as exc:
        refused = str(exc)
    total = sum(p.result() for p in parts) * scale
    return {"loaded": total, "caught": caught, "refused": refused, "day": day}
"""

CRASHING = """
import os
import signal

from ordo import flow, task, this


def mark(name):
    with open("marks.txt", "a") as f:
        f.write(name + "\\n")


@task
def step(name: str) -> str:
    mark(name)
    return name.upper()


@flow(id="crashy")
def crashy() -> dict:
    a = step("a")
    child = this.flow("kid", wait=False)
    b = step("b")
    when = this.now().isoformat()
    if not os.path.exists("crashed"):
        open("crashed", "w").close()
        with open("when.txt", "w") as f:
            f.write(when)
        os.kill(os.getppid(), signal.SIGKILL)  # the worker dies mid-flow
        import time
        time.sleep(30)
    c = step("c")
    return {"got": [a, b, c], "child": child.id, "child_outputs": child.wait(), "when": when}
"""

KID = """
id: kid
outputs:
  n: "{{ outputs.k.n }}"
tasks:
  - {id: k, type: shell, command: 'echo k >> marks.txt; echo n=1 >> "$ORDO_OUTPUTS"'}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def killed_then_resumed(
    cmd: list[str], env: dict[str, str], db: str, flow: Path
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """``ordo run FLOW`` (whose code SIGKILLs its worker mid-way), then ``ordo resume 1``,
    both in the flow's folder."""
    runs = []
    for args in (["run", str(flow), "-q"], ["resume", "1", "-q"]):
        runs.append(
            subprocess.run(
                [*cmd, "--db", db, *args],
                env=env,
                cwd=flow.parent,
                capture_output=True,
                text=True,
            )
        )
    return runs[0], runs[1]


def show(cmd: list[str], env: dict[str, str], db: str, ex_id: int) -> dict[str, Any]:
    done = ordo(cmd, env, db, "executions", "show", str(ex_id), "--json")
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_a_python_flow_runs_its_tasks_as_task_runs(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    write(tmp_path, "pipeline.py", PIPELINE)
    checked = ordo(ordo_cmd, ordo_env, db, "validate", str(tmp_path / "pipeline.py"))
    assert checked.returncode == 0 and "OK (analytics/etl, 1 task)" in checked.stdout
    planned = ordo(ordo_cmd, ordo_env, db, "plan", str(tmp_path / "pipeline.py"))
    assert "inputs: day=2026-01-01, scale=1" in planned.stdout
    run = ordo(ordo_cmd, ordo_env, db, "run", str(tmp_path / "pipeline.py"), "-i", "scale=2")
    assert run.returncode == 0, run.stdout + run.stderr
    doc = show(ordo_cmd, ordo_env, db, 1)
    assert doc["state"] == "SUCCESS"
    assert doc["outputs"]["loaded"] == 60 and doc["outputs"]["day"] == "2026-01-01"
    assert doc["outputs"]["caught"] == "task boom (step 5) ended FAILED: RuntimeError: no"
    assert doc["outputs"]["refused"] == (
        "task takes (step 6) ended FAILED: argument 'values' of task takes is a set, "
        "which cannot be stored as JSON"
    )
    runs = [(r["task"], r["state"], len(r["attempts"])) for r in doc["task_runs"]]
    assert runs[0] == ("etl", "SUCCESS", 1)
    assert sorted(runs[1:]) == [
        ("boom", "FAILED", 1),
        ("extract", "SUCCESS", 1),
        ("load", "SUCCESS", 1),
        ("load", "SUCCESS", 1),
        ("load", "SUCCESS", 1),
        ("takes", "FAILED", 1),
    ]
    loads = [r for r in doc["task_runs"] if r["task"] == "load"]
    assert sorted(r["outputs"]["return"] for r in loads) == [0, 10, 20]
    logs = ordo(ordo_cmd, ordo_env, db, "logs", "1", "--task", "load")
    assert "loading 2" in logs.stdout


def test_a_killed_flow_resumes_without_redoing_its_steps(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    """The worker is SIGKILLed mid-flow; ``ordo resume`` runs the flow function again:
    each step ran exactly once, its child is the same execution, this.now() the same
    time, and the flow ends SUCCESS."""
    write(tmp_path, "crash.py", CRASHING)
    kid = write(tmp_path, "kid.yaml", KID)
    assert ordo(ordo_cmd, ordo_env, db, "flows", "add", str(kid)).returncode == 0
    killed, resumed = killed_then_resumed(ordo_cmd, ordo_env, db, tmp_path / "crash.py")
    assert killed.returncode == -9
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    marks = (tmp_path / "marks.txt").read_text().split()
    assert sorted(m for m in marks if m != "k") == ["a", "b", "c"]  # every step once
    # the child's own shell task may run again if the worker died while it ran (a task
    # is at least once; the flow's steps are not): the child is the same execution
    assert "k" in marks
    doc = show(ordo_cmd, ordo_env, db, 1)
    assert doc["state"] == "SUCCESS"
    assert doc["outputs"]["got"] == ["A", "B", "C"]
    assert doc["outputs"]["when"] == (tmp_path / "when.txt").read_text()
    children = [c["id"] for c in doc["children"]]
    assert children == [doc["outputs"]["child"]]  # the same child, not a second one
    assert doc["outputs"]["child_outputs"] == {"n": 1}
    flow_runs = [r for r in doc["task_runs"] if r["task"] == "crashy"]
    assert flow_runs[0]["attempts"][0]["reason"] == "lost"


def test_a_different_call_at_a_recorded_step_is_refused(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    write(
        tmp_path,
        "drift.py",
        """
        import os
        import signal

        from ordo import flow, task


        @task
        def load() -> int:
            return 1


        @task
        def extract() -> int:
            return 2


        @flow(id="drift")
        def drift() -> dict:
            if not os.path.exists("first"):
                open("first", "w").close()
                load()
                os.kill(os.getppid(), signal.SIGKILL)
                import time
                time.sleep(30)
            extract()
            return {}
        """,
    )
    _, resumed = killed_then_resumed(ordo_cmd, ordo_env, db, tmp_path / "drift.py")
    assert resumed.returncode == 1
    doc = show(ordo_cmd, ordo_env, db, 1)
    assert doc["state"] == "FAILED"
    assert "non-deterministic replay: step 1 was load(...), now is extract(...)" in doc["reason"]


def test_bad_python_flow_files_are_named_at_their_line(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    syntax = write(tmp_path, "syntax.py", "from ordo import flow\n@flow\ndef f(:\n    pass\n")
    shown = ordo(ordo_cmd, ordo_env, db, "validate", str(syntax))
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert f"{syntax}:3:" in shown.stderr and "Python syntax error" in shown.stderr
    imports = write(
        tmp_path,
        "imports.py",
        "from ordo import flow\nimport not_a_module\n@flow\ndef f():\n    return {}\n",
    )
    shown = ordo(ordo_cmd, ordo_env, db, "validate", str(imports))
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert (
        f"{imports}:2: importing it fails: ModuleNotFoundError: No module named 'not_a_module'"
        in shown.stderr
    )
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("one.py", "other.py"):
        write(folder, name, "from ordo import flow\n@flow(id='same')\ndef f():\n    return {}\n")
    deployed = ordo(ordo_cmd, ordo_env, db, "deploy", str(folder))
    assert "flow default/same is defined in one.py too" in deployed.stdout + deployed.stderr
    with pytest.raises(NotFound, match="flow file not found"):
        ordo_api.run(tmp_path / "missing.py", db=db)


SCHEDULED = """
from ordo import flow, task


@task
def double(n: int) -> int:
    return n * 2


@flow(id="nightly", namespace="py", triggers=[{"type": "schedule", "cron": "* * * * *"}])
def nightly(n: int = 4, label: str = "x") -> dict:
    return {"doubled": double(n), "label": label}
"""


def test_a_python_flow_runs_by_its_schedule_and_from_python(
    store: Store, db: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "nightly.py", SCHEDULED)
    engine.register_flow(store, path, 0)
    now = [datetime.datetime(2026, 12, 3, 10, 0, 30, tzinfo=datetime.UTC).timestamp()]
    scheduler = Scheduler(store, "a", clock=lambda: now[0])
    assert scheduler.tick() == []  # first sight
    now[0] += 30
    (ex_id,) = scheduler.tick()
    _, final = work_on(store, tmp_path, ex_id)
    assert final is State.SUCCESS
    assert store.get_execution(ex_id).outputs == {"doubled": 8, "label": "x"}
    assert store.get_execution(ex_id).started_by == "schedule:schedule1"
    ran = ordo_api.run(path, inputs={"n": 5}, db=db)
    assert ran.state is ordo_api.State.SUCCESS and ran.outputs == {"doubled": 10, "label": "x"}
    assert [r.task for r in ran.task_runs] == ["nightly", "double"]


def test_a_python_flow_deployed_to_a_server_has_a_run_form_and_runs(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    write(folder, "nightly.py", SCHEDULED)
    with running_server(
        str(tmp_path / "ordo.db"),
        server_env(tmp_path),
        tmp_path,
        "--workers",
        "2",
        "--flows",
        str(folder),
    ) as server:
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            sign_in(browser, server.token)
            page = browser.get("/flows/py/nightly")
            assert page.status_code == 200
            assert 'name="input.n"' in page.text and 'name="input.label"' in page.text
        started = server.http.post("/api/flows/py/nightly/executions", json={"inputs": {"n": 6}})
        assert started.status_code == 201, started.text
        doc = server.wait_state(started.json()["id"], "SUCCESS", "FAILED")
        assert doc["state"] == "SUCCESS" and doc["outputs"] == {"doubled": 12, "label": "x"}
        assert [r["task"] for r in doc["task_runs"]] == ["nightly", "double"]


HANDLER = """
import os
import signal


def handler(system, this, inputs):
    inserted = this.connect("db", query="INSERT INTO hits (n) VALUES (1)")
    child = this.flow("kid", wait=False)
    token = this.random()
    if not os.path.exists("crashed"):
        open("crashed", "w").close()
        with open("token.txt", "w") as f:
            f.write(repr(token))
        os.kill(os.getppid(), signal.SIGKILL)
        import time
        time.sleep(30)
    return {"child": child.id, "kid": child.wait(), "token": token}
"""


def test_a_killed_handler_resumes_with_the_same_child_and_calls(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    import sqlite3

    target = tmp_path / "hits.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE hits (n INTEGER)")
    write(tmp_path, "steps.py", HANDLER)
    flow = write(
        tmp_path,
        "handled.yaml",
        "id: handled\ntasks:\n  - {id: work, type: python, handler: 'steps:handler'}\n",
    )
    kid = write(tmp_path, "kid.yaml", KID)
    assert ordo(ordo_cmd, ordo_env, db, "flows", "add", str(kid)).returncode == 0
    added = ordo(
        ordo_cmd,
        ordo_env,
        db,
        "connections",
        "add",
        "db",
        "--type",
        "sql",
        "--url",
        f"sqlite:///{target}",
    )
    assert added.returncode == 0, added.stderr
    _, resumed = killed_then_resumed(ordo_cmd, ordo_env, db, flow)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM hits").fetchone()[0] == 1  # once
    doc = show(ordo_cmd, ordo_env, db, 1)
    outputs = next(r["outputs"] for r in doc["task_runs"] if r["task"] == "work")
    assert [c["id"] for c in doc["children"]] == [outputs["child"]]  # the same child
    assert [c["flow"] for c in doc["calls"]] == ["connections/db"]  # not done again
    assert outputs["kid"] == {"n": 1}
    assert repr(outputs["token"]) == (tmp_path / "token.txt").read_text()
    # the child is the same execution; its own shell task, lost with the worker while
    # it ran, may have run again (a task is at least once; the handler's steps are not)
    assert set((tmp_path / "marks.txt").read_text().split()) == {"k"}


IN_HOST = """
import os
import subprocess
import sys
import time

from ordo import flow, task, this


@task
def talk(x: int) -> dict:
    print("said", x)
    print("warned", x, file=sys.stderr)
    this.output("extra", x)
    this.metric("talked", 1)
    this.now()  # a step of its own task run, not of the flow function
    os.environ["LEAKED"] = "1"  # put back after it, as a host does between tasks
    os.chdir("/")
    return {"x": x, "pid": os.getpid(), "pair": (x, x), "inputs": dict(this.inputs),
            "run": _run_ids()}


def _run_ids() -> list:  # the task run id os.environ says, and a process started now
    child = subprocess.run(["sh", "-c", "printf %s $ORDO_TASK_RUN_ID"], capture_output=True)
    return [os.environ["ORDO_TASK_RUN_ID"], child.stdout.decode()]


@task(timeout=30)
def apart() -> int:
    return os.getpid()


@task(queue="elsewhere")
def queued() -> int:
    return os.getpid()


@task(timeout="0.5s")
def slow() -> None:
    time.sleep(30)


@task(retry={"attempts": 2, "delay": "0.1s"})
def flaky() -> int:
    if not os.path.exists("flaked"):
        open("flaked", "w").close()
        raise RuntimeError("first time")
    return os.getpid()


@task
def skipper() -> None:
    raise this.Skip("not today")


@flow(id="inhost")
def inhost() -> dict:
    print("flow begins")
    where = os.getcwd()
    said = talk(x=1)
    said["kept"] = os.getcwd() == where and "LEAKED" not in os.environ
    said["after"] = _run_ids()  # the flow function's own again
    when = this.now()  # step 2 of the flow: the task's own calls are not its steps
    try:
        slow()
        timed_out = None
    except this.TaskFailed as exc:
        timed_out = exc.state + ": " + str(exc)
    try:
        skipper()
        skipped = None
    except this.TaskFailed as exc:
        skipped = exc.state
    print("flow ends")
    return {
        "flow_pid": os.getpid(),
        "said": said,
        "when": when.isoformat(),
        "apart": apart(),
        "queued": queued(),
        "timed_out": timed_out,
        "flaky": flaky(),
        "skipped": skipped,
    }
"""


def test_a_task_call_runs_in_its_flow_functions_host_as_its_own_task_run(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    """A ``@task`` call runs in the flow function's own python host, still as a task run
    of its own: its lines, outputs, metrics, this.inputs and calls into ordo are its
    own; a task with a timeout runs on a host of its own (and is stopped at it), so
    does one with a queue of its own; a failed one is retried elsewhere; this.Skip
    skips it."""
    flow = write(tmp_path, "inhost.py", IN_HOST)
    run = subprocess.run(
        [*ordo_cmd, "--db", db, "run", str(flow), "-q"],
        env=ordo_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = show(ordo_cmd, ordo_env, db, 1)
    out = doc["outputs"]
    assert out["said"]["pid"] == out["flow_pid"]  # in the flow function's host
    assert out["said"]["pair"] == [1, 1]  # as JSON gives it back, as on replay
    assert out["said"]["inputs"] == {"x": 1}
    assert out["said"]["kept"] is True
    assert out["apart"] != out["flow_pid"]  # a timeout: a host of its own
    assert out["queued"] != out["flow_pid"]  # a queue of its own: a worker of it
    assert out["timed_out"].startswith("FAILED: task slow (step 3) ended FAILED")
    assert out["skipped"] == "SKIPPED"
    assert out["flaky"] != out["flow_pid"]  # its retry ran elsewhere
    runs = {r["task"]: r for r in doc["task_runs"]}
    talk = runs["talk"]
    assert talk["state"] == "SUCCESS" and len(talk["attempts"]) == 1
    # its own ORDO_* variables, also for a process it starts; the flow's after it
    assert out["said"]["run"] == [str(talk["id"])] * 2
    assert out["said"]["after"] == [str(runs["inhost"]["id"])] * 2
    assert talk["outputs"]["extra"] == 1 and talk["outputs"]["return"]["x"] == 1
    assert [m["name"] for m in talk["metrics"]] == ["talked"]
    assert runs["slow"]["attempts"][0]["reason"] == "timeout"
    assert [a["state"] for a in runs["flaky"]["attempts"]] == ["FAILED", "SUCCESS"]
    assert runs["skipper"]["state"] == "SKIPPED"
    logs = ordo(ordo_cmd, ordo_env, db, "logs", "1", "--task", "talk").stdout
    assert "said 1" in logs and "warned 1" in logs and "flow" not in logs
    flow_logs = ordo(ordo_cmd, ordo_env, db, "logs", "1", "--task", "inhost").stdout
    assert "flow begins" in flow_logs and "flow ends" in flow_logs
    assert "said" not in flow_logs and "warned" not in flow_logs
    store = open_store(db)  # the task's this.now() is its own task run's step
    try:
        flow_run = next(r for r in store.task_runs(1) if r.task_id == "inhost")
        talk_run = next(r for r in store.task_runs(1) if r.task_id == "talk")
        assert store.step_count(talk_run.id) == 1
        kinds = [getattr(store.step(flow_run.id, n), "kind", None) for n in (1, 2)]
        assert kinds == ["task", "now"]
    finally:
        store.close()


MID_TASK = """
import os
import signal
import time

from ordo import flow, task


def mark(name):
    with open("marks.txt", "a") as f:
        f.write(name + "\\n")


@task
def step(name: str) -> str:
    mark(name)
    return name.upper()


@task
def risky(name: str) -> str:
    mark(name)
    if not os.path.exists("crashed"):
        open("crashed", "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the worker dies while the task runs
        time.sleep(30)
    return name.upper()


@flow(id="midtask")
def midtask() -> dict:
    return {"got": [step("a"), risky("r"), step("c")]}
"""


def test_a_worker_killed_while_a_task_runs_in_the_flow_host_runs_it_again(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    """SIGKILL while a ``@task`` runs in its flow function's host: on resume the
    completed step is not done again, the interrupted one runs again."""
    write(tmp_path, "mid.py", MID_TASK)
    killed, resumed = killed_then_resumed(ordo_cmd, ordo_env, db, tmp_path / "mid.py")
    assert killed.returncode == -9
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "marks.txt").read_text().split() == ["a", "r", "r", "c"]
    doc = show(ordo_cmd, ordo_env, db, 1)
    assert doc["state"] == "SUCCESS" and doc["outputs"]["got"] == ["A", "R", "C"]
    risky = next(r for r in doc["task_runs"] if r["task"] == "risky")
    assert risky["state"] == "SUCCESS"
    assert risky["attempts"][0]["reason"] == "lost"


NAPPING = """
import time

from ordo import flow, task


@task
def nap() -> None:
    open("napping", "w").close()
    print("napping")
    time.sleep(60)


@flow(id="napper")
def napper() -> dict:
    nap()
    return {}
"""


def test_a_killed_execution_kills_the_task_running_in_its_flow_host(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = write(tmp_path, "napper.py", NAPPING)
    run = subprocess.Popen(
        [*ordo_cmd, "--db", db, "run", str(flow), "-q"],
        env=ordo_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("the task to run", lambda: (tmp_path / "napping").exists())
        killed = ordo(ordo_cmd, ordo_env, db, "kill", "1")
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert run.wait(timeout=30) == 1
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    doc = show(ordo_cmd, ordo_env, db, 1)
    assert doc["state"] == "KILLED"
    assert {r["task"]: r["state"] for r in doc["task_runs"]} == {
        "napper": "KILLED",
        "nap": "KILLED",
    }
    logs = ordo(ordo_cmd, ordo_env, db, "logs", "1", "--task", "nap").stdout
    assert "napping" in logs


FANNED = """
from ordo import flow, task, this


@task
def square(i: int) -> int:
    if i == 7:
        raise ValueError("seven")
    return i * i


@flow(id="fanned")
def fanned(n: int = 30) -> dict:
    futures = [square.submit(i) for i in range(n)]
    got, failed = [], []
    for i, future in enumerate(reversed(futures)):  # waited for out of order
        try:
            got.append(future.result())
        except this.TaskFailed as exc:
            failed.append(exc.state)
    again = futures[3].result()  # a result asked for twice
    return {"sum": sum(got), "failed": failed, "again": again}
"""


def test_submitted_steps_answer_in_any_order_each_with_its_own_result(
    db: str, tmp_path: Path
) -> None:
    """A wait for one submitted step learns how those that ended meanwhile ended: each
    future still gets its own value or failure, whatever the order of the waits."""
    path = write(tmp_path, "fanned.py", FANNED)
    ran = ordo_api.run(path, inputs={"n": 30}, db=db, workers=2)
    assert ran.state is ordo_api.State.SUCCESS, ran.reason
    assert ran.outputs == {
        "sum": sum(i * i for i in range(30)) - 49,
        "failed": ["FAILED"],
        "again": 9,
    }
    assert len(ran.task_runs) == 31
