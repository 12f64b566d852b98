"""Poison pills: templates written to break the process that renders them (an assertion
inside a filter, a macro that calls itself, a float overflow, a repeat of ten billion
characters) fail their task, their flow's outputs or their event's match with a clear
reason, and `ordo run`, `ordo worker` (SQLite and PostgreSQL) and `ordo server` go on
running the next execution."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from server_support import running_server, server_env

from ordo.engine import open_store

PILLS = """\
id: pills
inputs:
  x: {type: string, default: x}
  n: {type: int, default: 100000}
tasks:
  - id: truncate
    type: shell
    command: "echo {{ inputs.x|truncate(-1) }}"
  - id: macro
    type: shell
    command: "{% macro m(n) %}{{ m(n) }}{% endmacro %}echo {{ m(inputs.x) }}"
  - id: repeat
    type: shell
    command: "echo {{ inputs.x * 10**10 }}"
  - id: loops
    type: shell
    command: "{% for i in range(inputs.n) %}{% for j in range(inputs.n) %}{% endfor %}{% endfor %}"
  - id: gate
    type: shell
    run_if: "{{ [inputs.x] * 10**10 }}"
    command: echo never
  - id: overflow
    type: shell
    command: "echo {{ 1e308 * 10 }}"
  - id: fine
    type: shell
    command: echo fine
"""

OUTPUTS_PILL = """\
id: outpill
tasks:
  - id: fine
    type: shell
    command: echo fine
outputs:
  bad: "{{ execution.flow|truncate(-1) }}"
"""

GOOD = """\
id: good
tasks:
  - id: hello
    type: shell
    command: echo hello
"""

# what each pill task's error must say (and the pills must not show object addresses)
EXPECTED = {
    "truncate": "AssertionError: expected length >= 3, got -1",
    "macro": "recursion or nesting too deep",
    "repeat": "over a limit of the sandbox",
    "loops": "range() would give more than",
    "gate": "over a limit of the sandbox",
}


def _write_flows(folder: Path) -> dict[str, Path]:
    files = {}
    for name, text in (("pills", PILLS), ("outpill", OUTPUTS_PILL), ("good", GOOD)):
        files[name] = folder / f"{name}.yaml"
        files[name].write_text(text)
    return files


def _ordo(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)


def _check_pills(doc: dict[str, Any]) -> None:
    assert doc["state"] == "FAILED", doc
    runs = {r["task"]: r for r in doc["task_runs"]}
    for task, words in EXPECTED.items():
        assert runs[task]["state"] == "FAILED", runs[task]
        error = runs[task]["attempts"][-1]["error"]
        assert "cannot render" in error and words in error, error
        assert " at 0x" not in error
    assert runs["overflow"]["state"] == "SUCCESS"  # 1e308 * 10 is inf, not a crash
    assert runs["fine"]["state"] == "SUCCESS"


def _check_outputs_pill(doc: dict[str, Any]) -> None:
    assert doc["state"] == "FAILED", doc
    assert doc["reason"].startswith("flow outputs: cannot render"), doc["reason"]


def _wait(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_ordo_run_fails_each_poison_pill_with_its_reason(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    files = _write_flows(tmp_path)
    db = str(tmp_path / "run.db")
    ran = _ordo(ordo_cmd, ordo_env, "--db", db, "run", str(files["pills"]))
    assert ran.returncode == 1, ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    ran = _ordo(ordo_cmd, ordo_env, "--db", db, "run", str(files["outpill"]))
    assert ran.returncode == 1 and "flow outputs: cannot render" in ran.stdout + ran.stderr
    assert _ordo(ordo_cmd, ordo_env, "--db", db, "run", str(files["good"])).returncode == 0
    shown = _ordo(ordo_cmd, ordo_env, "--db", db, "executions", "show", "1", "--json")
    _check_pills(json.loads(shown.stdout))


def test_ordo_validate_refuses_templates_that_read_no_data_and_always_fail(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = tmp_path / "constant.yaml"
    flow.write_text(
        "id: constant\ninputs:\n  y: {type: int, default: 1}\ntasks:\n"
        "  - id: a\n    type: shell\n    command: \"echo {{ 'x'|truncate(-1) }}\"\n"
        "  - id: b\n    type: shell\n"
        '    command: "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"\n'
        "  - id: c\n    type: shell\n    command: \"echo {{ 'x' * 10**10 }}\"\n"
        "  - id: d\n    type: shell\n"
        "    command: \"echo {{ 'x' * 3 }} {{ inputs.y|default(1) }}\"\n"
    )
    done = _ordo(ordo_cmd, ordo_env, "validate", str(flow))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3 and all("fails every time" in line for line in lines), lines
    assert "constant.yaml:7:14: tasks[0].command:" in lines[0]
    pills = _write_flows(tmp_path)["pills"]  # these read data: left to run time
    assert _ordo(ordo_cmd, ordo_env, "validate", str(pills)).returncode == 0


@pytest.mark.timeout(300)  # a dozen ordo processes on a loaded 2-core runner
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_ordo_worker_survives_every_poison_pill(
    backend: str,
    ordo_cmd: list[str],
    ordo_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    db = str(tmp_path / "w.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    files = _write_flows(tmp_path)

    def submit(name: str) -> int:
        done = _ordo(ordo_cmd, ordo_env, "--db", db, "submit", str(files[name]))
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def show(execution_id: int) -> dict[str, Any]:
        done = _ordo(
            ordo_cmd, ordo_env, "--db", db, "executions", "show", str(execution_id), "--json"
        )
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def ended(execution_id: int) -> bool:  # read from the store: cheaper than a CLI run
        store = open_store(db)
        try:
            return store.get_execution(execution_id).state.value in ("SUCCESS", "FAILED")
        finally:
            store.close()

    pills, outpill = submit("pills"), submit("outpill")
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [*ordo_cmd, "--db", db, "worker", "--workers", "2"],
            env=ordo_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait("the poison pills to end", lambda: ended(pills) and ended(outpill))
        good = submit("good")  # submitted after the pills: the same worker runs it
        _wait("the next execution to end", lambda: ended(good))
        assert worker.poll() is None, log.read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    _check_pills(show(pills))
    _check_outputs_pill(show(outpill))
    assert show(good)["state"] == "SUCCESS"
    assert "Traceback" not in log.read_text()


EVENT_PILL = """\
id: on-pill
triggers:
  - {type: event, event: pill, filter: "{{ event.data.name|truncate(-1) }}"}
  - {type: event, event: pill, filter: "{{ event.data.name * 10**10 }}"}
tasks:
  - id: never
    type: shell
    command: echo never
"""

EVENT_FINE = """\
id: on-fine
triggers:
  - {type: event, event: pill, filter: "{{ event.data.name == 'x' }}"}
tasks:
  - id: hello
    type: shell
    command: echo hello
"""


@pytest.mark.timeout(300)
def test_a_server_and_its_embedded_worker_survive_poison_pills(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    db = str(tmp_path / "server.db")
    with running_server(db, env, tmp_path) as server:
        for text in (PILLS, OUTPUTS_PILL, GOOD, EVENT_PILL, EVENT_FINE):
            server.add_flow(text)
        started = {}
        for flow in ("pills", "outpill", "good"):
            answer = server.http.post(f"/api/flows/default/{flow}/executions", json={})
            assert answer.status_code == 201, answer.text
            started[flow] = answer.json()["id"]
        _check_pills(server.wait_state(started["pills"], "FAILED", timeout=120))
        _check_outputs_pill(server.wait_state(started["outpill"], "FAILED", timeout=120))
        server.wait_state(started["good"], "SUCCESS", timeout=120)

        emitted = server.http.post("/api/events/pill", json={"name": "x"})
        assert emitted.status_code == 202, emitted.text
        body = emitted.json()
        assert len(body["executions"]) == 1  # on-fine's filter held
        assert len(body["errors"]) == 2 and all("cannot render" in e for e in body["errors"])
        server.wait_state(body["executions"][0], "SUCCESS", timeout=120)

        again = server.http.post("/api/flows/default/good/executions", json={})
        server.wait_state(again.json()["id"], "SUCCESS", timeout=120)
        assert server.process.poll() is None
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_scheduler_goes_on_past_a_flow_whose_run_if_is_a_poison_pill(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import datetime

    from ordo import engine
    from ordo.engine import open_store
    from ordo.triggers.scheduler import Scheduler

    db = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    texts = {
        "pill": 'run_if: "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"\n',
        "fine": "",
    }
    for flow_id, extra in texts.items():
        (tmp_path / f"{flow_id}.yaml").write_text(
            f"id: {flow_id}\n{extra}triggers:\n  - {{type: schedule, cron: '* * * * *'}}\n"
            "tasks:\n  - id: a\n    type: shell\n    command: 'true'\n"
        )
    now = [datetime.datetime(2026, 12, 3, 10, 0, 30, tzinfo=datetime.UTC).timestamp()]
    store = open_store(db)
    try:
        for flow_id in texts:
            engine.register_flow(store, tmp_path / f"{flow_id}.yaml", now[0])
        scheduler = Scheduler(store, "a", clock=lambda: now[0])
        assert scheduler.tick() == []
        for _ in range(2):  # two ticks: the pill fails each time, the other flow starts
            now[0] += 60
            assert len(scheduler.tick()) == 1
        flows = [e.flow_id for e in store.list_executions(limit=10)]
        assert flows == ["fine", "fine"], flows
    finally:
        store.close()
