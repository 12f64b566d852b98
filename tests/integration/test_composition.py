"""Composition end to end: flow tasks and child executions, for_each fork/join, run_if,
python handlers calling back into ordo, connections. Real store, real runners."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support import run_file

from ordo import engine
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.records import TaskRunRow
from ordo.worker import Worker, WorkerSettings


def add_flow(store: Store, folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    engine.register_flow(store, path, time.time())
    return path


def run_flow(
    store: Store,
    folder: Path,
    text: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    slots: int = 2,
) -> tuple[int, State]:
    return run_file(store, folder, add_flow(store, folder, "main.yaml", text), inputs, slots=slots)


def runs(store: Store, ex_id: int) -> dict[str, TaskRunRow]:
    return {r.label: r for r in store.task_runs(ex_id)}


CHILD = """
id: child
inputs:
  n: {type: int, required: true}
outputs:
  doubled: "{{ outputs.double.value }}"
tasks:
  - id: double
    type: python
    function: "steps:double"
    with: {n: "{{ inputs.n }}"}
"""
STEPS = """
from ordo import this

def double(n):
    return {"value": n * 2}

def listing():
    return {"files": ["a.csv", "b.csv", "c.csv"]}

def total(values):
    return {"sum": sum(values)}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    return tmp_path


def test_flow_task_waits_for_its_child_and_takes_its_outputs(store: Store, folder: Path) -> None:
    add_flow(store, folder, "child.yaml", CHILD)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: parent
        outputs:
          result: "{{ outputs.report.text }}"
        tasks:
          - id: run_child
            type: flow
            flow: default/child
            with: {n: 21}
          - id: report
            type: shell
            depends_on: run_child
            command: echo "text={{ outputs.run_child.doubled }}" >> "$ORDO_OUTPUTS"
        """,
    )
    assert final is State.SUCCESS
    parent = store.get_execution(ex_id)
    assert parent.outputs == {"result": 42}
    (child,) = store.children(ex_id)
    assert child.parent_id == ex_id and child.root_id == ex_id
    assert child.state is State.SUCCESS and child.outputs == {"doubled": 42}
    out = store.outputs(ex_id)
    assert out["run_child"] == {"execution_id": child.id, "doubled": 42}


def test_child_failure_is_seen_from_the_parent(store: Store, folder: Path) -> None:
    add_flow(
        store,
        folder,
        "bad.yaml",
        """
        id: bad
        tasks:
          - {id: boom, type: shell, command: "echo nope >&2; exit 3"}
        """,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: parent
        tasks:
          - {id: call, type: flow, flow: bad}
          - {id: after, type: shell, command: "true", depends_on: call}
        """,
    )
    assert final is State.FAILED
    call = runs(store, ex_id)["call"]
    assert call.state is State.FAILED
    (child,) = store.children(ex_id)
    assert call.reason == (
        f"child execution {child.id} (default/bad) failed: task 'boom' failed: exit code 3: nope"
    )
    assert runs(store, ex_id)["after"].state is State.SKIPPED


def test_flow_task_without_waiting_gives_the_child_id(store: Store, folder: Path) -> None:
    add_flow(store, folder, "child.yaml", CHILD)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: parent
        tasks:
          - {id: fire, type: flow, flow: child, wait: false, with: {n: 1}}
        """,
    )
    assert final is State.SUCCESS
    (child,) = store.children(ex_id)
    assert store.outputs(ex_id)["fire"] == {"execution_id": child.id}


def test_unknown_child_flow_and_bad_inputs_fail_the_task(store: Store, folder: Path) -> None:
    add_flow(store, folder, "child.yaml", CHILD)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: parent
        continue_on_error: true
        tasks:
          - {id: missing, type: flow, flow: nowhere/none}
          - {id: no_input, type: flow, flow: child}
        """,
    )
    assert final is State.FAILED
    by_id = runs(store, ex_id)
    assert by_id["missing"].reason is not None
    assert "unknown flow 'nowhere/none'" in by_id["missing"].reason
    assert "default/child" in by_id["missing"].reason
    assert by_id["no_input"].reason is not None and "n" in by_id["no_input"].reason


def test_recursion_deeper_than_the_limit_fails_with_the_chain(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: loop
        tasks:
          - {id: again, type: flow, flow: loop}
        """,
    )
    assert final is State.FAILED
    deepest = ex_id
    while children := store.children(deepest):
        deepest = children[0].id
    reason = runs(store, deepest)["again"].reason or ""
    assert "subflow recursion deeper than 10" in reason
    assert "default/loop -> default/loop" in reason
    assert store.get_execution(ex_id).reason is not None


def test_for_each_forks_and_the_dependent_joins_in_item_order(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: fork-join
        tasks:
          - {id: list_files, type: python, function: "steps:listing"}
          - id: size
            type: shell
            depends_on: list_files
            for_each: "{{ outputs.list_files.files }}"
            concurrency: 2
            command: echo "name={{ fork.index }}-{{ fork.value }}" >> "$ORDO_OUTPUTS"
          - id: join
            type: python
            depends_on: size
            function: "steps:total"
            with: {values: "{{ outputs.size | map(attribute='name') | map('length') | list }}"}
        """,
    )
    assert final is State.SUCCESS
    by_label = runs(store, ex_id)
    assert [by_label[f"size[{i}]"].state for i in range(3)] == [State.SUCCESS] * 3
    assert by_label["size"].state is State.SUCCESS
    outputs = store.outputs(ex_id)
    assert outputs["size"] == [{"name": "0-a.csv"}, {"name": "1-b.csv"}, {"name": "2-c.csv"}]
    assert outputs["join"] == {"sum": 21}


def test_for_each_over_a_non_list_fails_naming_the_template(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: bad-fork
        tasks:
          - {id: make, type: shell, command: 'echo "m={\\"a\\": 1}" >> "$ORDO_OUTPUTS"'}
          - id: each
            type: shell
            depends_on: make
            for_each: "{{ outputs.make.m }}"
            command: "true"
        """,
    )
    assert final is State.FAILED
    reason = runs(store, ex_id)["each"].reason or ""
    assert "for_each expected a list, got dict" in reason
    assert "outputs.make.m" in reason


def test_item_failure_fails_the_for_each_task(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: fork-fail
        tasks:
          - id: each
            type: shell
            for_each: [1, 2, 3]
            command: "test {{ fork.value }} -ne 2"
        """,
    )
    assert final is State.FAILED
    by_label = runs(store, ex_id)
    assert by_label["each[1]"].state is State.FAILED
    assert by_label["each"].state is State.FAILED
    assert by_label["each"].reason == "item 1 failed: exit code 1"


def test_for_each_over_flow_tasks_forks_child_executions(store: Store, folder: Path) -> None:
    add_flow(store, folder, "child.yaml", CHILD)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: fan-out
        outputs:
          all: "{{ outputs.each | map(attribute='doubled') | list }}"
        tasks:
          - id: each
            type: flow
            flow: child
            for_each: [1, 2, 3, 4]
            with: {n: "{{ fork.value }}"}
        """,
    )
    assert final is State.SUCCESS
    assert store.get_execution(ex_id).outputs == {"all": [2, 4, 6, 8]}
    assert len(store.children(ex_id)) == 4


def test_empty_for_each_succeeds_with_an_empty_list(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: none
        outputs: {n: "{{ outputs.each | length }}"}
        tasks:
          - {id: each, type: shell, for_each: [], command: "false"}
        """,
    )
    assert final is State.SUCCESS
    assert store.get_execution(ex_id).outputs == {"n": 0}


def test_run_if_skip_lets_dependents_run(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: skipping
        inputs:
          full: {type: bool, default: false}
        tasks:
          - {id: heavy, type: shell, command: "false", run_if: "{{ inputs.full }}"}
          - {id: after, type: shell, command: "true", depends_on: heavy}
        """,
    )
    assert final is State.SUCCESS
    by_id = runs(store, ex_id)
    assert by_id["heavy"].state is State.SKIPPED
    assert by_id["heavy"].reason == "run_if is false"
    assert by_id["after"].state is State.SUCCESS


def test_run_if_stop_ends_the_execution_successfully(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: stopping
        sequential: true
        tasks:
          - {id: first, type: shell, command: "true"}
          - {id: gate, type: shell, command: "false", run_if: "STOP: nothing new today"}
          - {id: later, type: shell, command: "false"}
        """,
    )
    assert final is State.SUCCESS
    by_id = runs(store, ex_id)
    assert by_id["gate"].state is State.SKIPPED and by_id["later"].state is State.SKIPPED
    assert store.get_execution(ex_id).reason == "nothing new today"


def test_run_if_function_and_its_errors(store: Store, folder: Path) -> None:
    (folder / "checks.py").write_text(
        "def big(inputs):\n"
        "    return 'RUN' if inputs['n'] > 5 else 'SKIP: too small'\n"
        "def broken(outputs):\n"
        "    raise RuntimeError('cannot tell')\n"
        "def odd():\n"
        "    return 'MAYBE'\n"
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: functions
        continue_on_error: true
        inputs:
          n: {type: int, default: 3}
        tasks:
          - {id: a, type: shell, command: "true", run_if: {function: "checks:big"}}
          - {id: b, type: shell, command: "true", run_if: {function: "checks:broken"}}
          - {id: c, type: shell, command: "true", run_if: {function: "checks:odd"}}
          - {id: d, type: shell, command: "true", run_if: "{{ inputs.n + 1 }}"}
        """,
    )
    assert final is State.FAILED
    by_id = runs(store, ex_id)
    assert by_id["a"].state is State.SKIPPED and by_id["a"].reason == "too small"
    assert by_id["b"].state is State.FAILED
    assert "RuntimeError: cannot tell" in (by_id["b"].reason or "")
    assert "run_if answered 'MAYBE'" in (by_id["c"].reason or "")
    assert "run_if answered 4" in (by_id["d"].reason or "")


def test_flow_level_run_if_skips_the_whole_execution(store: Store, folder: Path) -> None:
    path = add_flow(
        store,
        folder,
        "gated.yaml",
        """
        id: gated
        inputs:
          go: {type: bool, default: false}
        run_if: "{{ inputs.go }}"
        tasks:
          - {id: work, type: shell, command: "false"}
        """,
    )
    revision = engine.register_flow(store, path, time.time())
    ex_id = engine.start_execution(store, revision, {}, time.time())
    execution = store.get_execution(ex_id)
    assert execution.state is State.SKIPPED
    assert execution.reason == "flow run_if answered SKIP: run_if is false"
    assert [r.state for r in store.task_runs(ex_id)] == [State.SKIPPED]


HANDLERS = """
import sqlite3


def starts_children(system, this, inputs):
    doubled = this.flow("child", n=inputs["n"])
    later = this.flow("child", wait=False, n=5)
    this.log(f"started {later.id}")
    info = system.flow("child")
    me = system.execution()
    rows = this.connect("db", query="SELECT count(*) AS n FROM items")["rows"]
    this.output("me", me["id"])
    this.output("db_type", system.connection("db")["type"])
    return this.success(
        "all done",
        doubled=doubled["doubled"],
        later=later.wait()["doubled"],
        child_inputs=sorted(info["inputs"]),
        count=rows[0]["n"],
    )


def child_fails(system, this, inputs):
    try:
        this.flow("bad")
    except this.ChildFailed as exc:
        return this.warning(f"child said: {exc}")
    return this.fail("the child should have failed")


def says_fail(system, this, inputs):
    return this.fail("not today")


def wrong_signature(inputs):
    return {}


def calls_http(system, this, inputs):
    reply = this.connect(connection_type="http", url=inputs["url"] + "/hello", method="GET")
    api = this.connect("api", url="/things", method="POST", json={"a": 1})
    return {"status": reply["status"], "body": reply["text"], "token": api["json"]["token"]}


def unknown_connection(system, this, inputs):
    this.connect("nope", query="SELECT 1")
"""


def make_db(folder: Path) -> str:
    import sqlite3

    path = folder / "data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (x)")
    conn.executemany("INSERT INTO items VALUES (?)", [(1,), (2,), (3,)])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_handler_starts_children_and_queries_a_connection(store: Store, folder: Path) -> None:
    (folder / "handlers.py").write_text(HANDLERS)
    add_flow(store, folder, "child.yaml", CHILD)
    store.save_connection("db", "sql", {"url": make_db(folder)}, time.time(), replace=False)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: orchestrate
        tasks:
          - {id: work, type: python, handler: "handlers:starts_children", with: {n: 4}}
        """,
        slots=1,  # the handler lends its slot while it waits for its children
    )
    assert final is State.SUCCESS, store.task_runs(ex_id)
    outputs = store.outputs(ex_id)["work"]
    assert outputs == {
        "me": ex_id,
        "db_type": "sql",
        "doubled": 8,
        "later": 10,
        "child_inputs": ["n"],
        "count": 3,
    }
    assert len(store.children(ex_id)) == 2
    # the this.connect call: a child execution of kind CONNECTION, with its own run
    (call,) = store.calls(ex_id)
    assert (call.flow_key, call.state, call.started_by) == (
        "connections/db",
        State.SUCCESS,
        "connect:work",
    )
    assert store.outputs(call.id)["call"]["rows"] == [{"n": 3}]
    # its log lines are its own too (and still in the handler's log)
    lines = [x.line for x in store.logs(call.id)]
    assert lines and lines[0].startswith("sqlite "), lines  # what the sql runner said
    assert [r.parent_run_id for r in store.task_runs(ex_id)] == [None]  # none in the caller
    assert "connections/db" not in [r.flow.key for r in store.list_flows()]


def test_handler_results_and_errors(store: Store, folder: Path) -> None:
    (folder / "handlers.py").write_text(HANDLERS)
    add_flow(
        store,
        folder,
        "bad.yaml",
        """
        id: bad
        tasks:
          - {id: boom, type: shell, command: "exit 3"}
        """,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: results
        continue_on_error: true
        tasks:
          - {id: warns, type: python, handler: "handlers:child_fails"}
          - {id: fails, type: python, handler: "handlers:says_fail"}
          - {id: wrong, type: python, handler: "handlers:wrong_signature"}
          - {id: unknown, type: python, handler: "handlers:unknown_connection"}
        """,
    )
    assert final is State.FAILED
    by_id = runs(store, ex_id)
    assert by_id["warns"].state is State.WARNING
    assert "child said: child execution" in (by_id["warns"].reason or "")
    assert "ended FAILED: task 'boom' failed: exit code 3" in (by_id["warns"].reason or "")
    assert by_id["fails"].state is State.FAILED and by_id["fails"].reason == "not today"
    assert by_id["wrong"].reason == (
        "handler handlers:wrong_signature must take (system, this, inputs), it takes (inputs)"
    )
    assert "unknown connection 'nope' (connections: none)" in (by_id["unknown"].reason or "")


def test_connections_in_http_tasks_and_handlers_are_masked(
    store: Store, folder: Path, runner_http_server: str
) -> None:
    (folder / "handlers.py").write_text(HANDLERS)
    store.save_connection(
        "api",
        "http",
        {"base_url": runner_http_server, "headers": {"X-Token": "s3cret-token"}},
        time.time(),
        replace=False,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: http-calls
        inputs:
          url: {type: string, required: true}
        tasks:
          - id: post
            type: http
            connection: api
            method: POST
            url: /items
            json: {name: x}
          - id: show
            type: shell
            command: echo "token s3cret-token in a log"
          - id: handler
            type: python
            handler: "handlers:calls_http"
            with: {url: "{{ inputs.url }}"}
        """,
        {"url": runner_http_server},
    )
    assert final is State.SUCCESS, store.task_runs(ex_id)
    outputs = store.outputs(ex_id)
    assert outputs["post"]["json"] == {
        "got": {"name": "x"},
        "path": "/items",
        "token": "****",  # the server echoed the credential: masked in outputs too
    }
    assert outputs["handler"]["status"] == 200 and outputs["handler"]["body"] == "héllo"
    lines = [log.line for log in store.logs(ex_id)]
    assert not any("s3cret-token" in line for line in lines if "token s3cret" not in line)
    connection = store.get_connection("api")
    assert connection.masked()["headers"] == {"X-Token": "****"}


def test_sql_task_with_a_connection(store: Store, folder: Path) -> None:
    store.save_connection("db", "sql", {"url": make_db(folder)}, time.time(), replace=False)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: sql-conn
        tasks:
          - {id: q, type: sql, connection: db, query: "SELECT sum(x) AS total FROM items"}
          - {id: missing, type: sql, connection: other, query: "SELECT 1", depends_on: q}
        """,
    )
    assert final is State.FAILED
    assert store.outputs(ex_id)["q"]["rows"] == [{"total": 6}]
    assert runs(store, ex_id)["missing"].reason == (
        "task 'missing': unknown connection 'other' (connections: db)"
    )


def test_stopping_a_parent_stops_its_children(store: Store, folder: Path) -> None:
    add_flow(
        store,
        folder,
        "slow.yaml",
        """
        id: slow
        tasks:
          - {id: nap, type: shell, command: "sleep 30"}
        """,
    )
    path = add_flow(
        store,
        folder,
        "main.yaml",
        """
        id: parent
        tasks:
          - {id: call, type: flow, flow: slow}
        """,
    )
    revision = engine.register_flow(store, path, time.time())
    ex_id = engine.start_execution(store, revision, {}, time.time())
    worker = Worker(store, make_runners(2), settings=WorkerSettings(slots=2, kill_grace=1.0))
    timer = threading.Timer(1.0, worker.interrupt, ["interrupted by signal SIGINT"])
    timer.start()
    started = time.monotonic()
    try:
        final = worker.run_execution(ex_id)
    finally:
        timer.cancel()
        worker.close()
    assert final is State.FAILED
    assert time.monotonic() - started < 10
    (child,) = store.children(ex_id)
    assert child.state is State.FAILED
    assert child.reason == f"parent execution {ex_id} stopped: interrupted by signal SIGINT"
    assert runs(store, child.id)["nap"].state is State.KILLED


def test_a_child_uses_its_own_vars_and_nested_forks_work(store: Store, folder: Path) -> None:
    add_flow(
        store,
        folder,
        "inner.yaml",
        """
        id: inner
        inputs:
          base: {type: int, required: true}
        vars:
          label: inner
        outputs:
          values: "{{ outputs.each | map(attribute='v') | list }}"
          label: "{{ vars.label }}"
        tasks:
          - id: each
            type: shell
            for_each: [1, 2]
            command: echo "v={{ inputs.base * 10 + fork.value }}" >> "$ORDO_OUTPUTS"
        """,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: outer
        vars:
          label: outer
        outputs:
          all: "{{ outputs.fan | map(attribute='values') | list }}"
          labels: "{{ outputs.fan | map(attribute='label') | list }} {{ vars.label }}"
        tasks:
          - id: fan
            type: flow
            flow: inner
            for_each: [1, 2, 3]
            concurrency: 2
            with: {base: "{{ fork.value }}"}
        """,
    )
    assert final is State.SUCCESS
    outputs = store.get_execution(ex_id).outputs
    assert outputs == {
        "all": [[11, 12], [21, 22], [31, 32]],
        "labels": "['inner', 'inner', 'inner'] outer",
    }


def test_flow_level_run_if_stop_ends_the_execution_successfully(store: Store, folder: Path) -> None:
    path = add_flow(
        store,
        folder,
        "stopped.yaml",
        """
        id: stopped
        run_if: "STOP: holiday"
        tasks:
          - {id: work, type: shell, command: "false"}
        """,
    )
    revision = engine.register_flow(store, path, time.time())
    ex_id = engine.start_execution(store, revision, {}, time.time())
    execution = store.get_execution(ex_id)
    assert execution.state is State.SUCCESS
    assert execution.reason == "flow run_if answered STOP: holiday"
    assert [r.state for r in store.task_runs(ex_id)] == [State.SKIPPED]


def test_continue_on_error_ends_when_the_last_task_is_skipped(store: Store, folder: Path) -> None:
    """A failure whose dependents are the last task runs left ends the execution."""
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: last-skipped
        continue_on_error: true
        tasks:
          - {id: x, type: shell, command: "false"}
          - {id: y, type: shell, command: "true", depends_on: x}
        """,
    )
    assert final is State.FAILED
    assert runs(store, ex_id)["y"].state is State.SKIPPED


def test_stop_skips_only_what_is_downstream_and_independent_branches_go_on(
    store: Store, folder: Path
) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: stop-branch
        tasks:
          - {id: gate, type: shell, command: "true", run_if: "STOP: nothing new"}
          - {id: after, type: shell, command: "true", depends_on: gate}
          - {id: later, type: shell, command: "true", depends_on: after}
          - {id: other, type: shell, command: "true"}
          - {id: join, type: shell, command: "true", depends_on: [other]}
        """,
    )
    assert final is State.SUCCESS
    by_id = runs(store, ex_id)
    assert by_id["gate"].state is State.SKIPPED and by_id["gate"].reason == "nothing new"
    assert by_id["after"].state is State.SKIPPED
    assert by_id["after"].reason == "dependency 'gate' stopped"
    assert by_id["later"].state is State.SKIPPED
    assert by_id["other"].state is State.SUCCESS and by_id["join"].state is State.SUCCESS
    assert store.get_execution(ex_id).reason == "nothing new"


def test_a_task_answers_skip_or_stop_by_raising_or_returning(store: Store, folder: Path) -> None:
    (folder / "answers.py").write_text(
        textwrap.dedent("""
        from ordo import this

        def skip_me():
            raise this.Skip("not today")

        def stop_me():
            raise this.Stop("enough")

        def returns_skip():
            return "SKIP"

        def gate():
            raise this.Stop("closed")
        """)
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: answers
        tasks:
          - {id: s, type: python, function: "answers:skip_me"}
          - {id: after_s, type: shell, command: "true", depends_on: s}
          - {id: t, type: python, function: "answers:stop_me"}
          - {id: after_t, type: shell, command: "true", depends_on: t}
          - {id: r, type: python, function: "answers:returns_skip"}
          - {id: after_r, type: shell, command: "true", depends_on: r}
          - id: g
            type: shell
            command: "true"
            run_if: {function: "answers:gate"}
          - {id: after_g, type: shell, command: "true", depends_on: g}
        """,
    )
    assert final is State.SUCCESS
    by_id = runs(store, ex_id)
    assert (by_id["s"].state, by_id["s"].reason) == (State.SKIPPED, "not today")
    assert by_id["after_s"].state is State.SUCCESS  # SKIP: dependents run
    assert (by_id["t"].state, by_id["t"].reason) == (State.SKIPPED, "enough")
    assert by_id["after_t"].state is State.SKIPPED  # STOP: nothing downstream runs
    assert by_id["r"].state is State.SKIPPED and by_id["after_r"].state is State.SUCCESS
    assert (by_id["g"].state, by_id["g"].reason) == (State.SKIPPED, "closed")
    assert by_id["after_g"].state is State.SKIPPED


def test_a_child_flow_that_stops_ends_skipped_and_stops_its_flow_task(
    store: Store, folder: Path
) -> None:
    add_flow(
        store,
        folder,
        "closed.yaml",
        """
        id: closed
        run_if: "STOP: shop closed"
        tasks:
          - {id: work, type: shell, command: "true"}
        """,
    )
    add_flow(
        store,
        folder,
        "quiet.yaml",
        """
        id: quiet
        run_if: "SKIP: nothing to do"
        tasks:
          - {id: work, type: shell, command: "true"}
        """,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: parent
        tasks:
          - {id: shop, type: flow, flow: closed}
          - {id: after_shop, type: shell, command: "true", depends_on: shop}
          - {id: calm, type: flow, flow: quiet}
          - {id: after_calm, type: shell, command: "true", depends_on: calm}
        """,
    )
    assert final is State.SUCCESS
    by_id = runs(store, ex_id)
    children = {c.flow_key: c for c in store.children(ex_id)}
    closed = children["default/closed"]
    assert closed.state is State.SKIPPED
    assert closed.reason == "flow run_if answered STOP: shop closed"
    assert by_id["shop"].state is State.SKIPPED
    assert by_id["shop"].reason == f"child execution {closed.id} (default/closed) stopped: " + (
        "flow run_if answered STOP: shop closed"
    )
    assert by_id["after_shop"].state is State.SKIPPED  # the child's STOP stops the parent's branch
    assert children["default/quiet"].state is State.SKIPPED
    assert by_id["calm"].state is State.SKIPPED
    assert by_id["after_calm"].state is State.SUCCESS  # a child's SKIP lets dependents run


def test_results_by_path_inherited_vars_and_parents(store: Store, folder: Path) -> None:
    """Metalus's executions of executions: a flow task exposes its child's task
    outputs and vars by path; a child sees its parent's results so far, its vars (its
    own win a clash), and the outputs of the flow tasks its flow task depends on."""
    add_flow(
        store,
        folder,
        "measure.yaml",
        """
        id: measure
        vars:
          unit: kg
          label: "{{ outputs.weigh.value }} {{ vars.unit }}"
        tasks:
          - id: weigh
            type: shell
            command: >-
              echo "value=5" >> "$ORDO_OUTPUTS";
              echo "region={{ vars.region }}" >> "$ORDO_OUTPUTS";
              echo "prep={{ parent.outputs.prep.x }}" >> "$ORDO_OUTPUTS";
              echo "parent_unit={{ parent.vars.unit }}" >> "$ORDO_OUTPUTS"
        """,
    )
    add_flow(
        store,
        folder,
        "compare.yaml",
        """
        id: compare
        tasks:
          - id: look
            type: shell
            command: >-
              echo "before={{ parents.first.tasks.weigh.value }}" >> "$ORDO_OUTPUTS";
              echo "label={{ parents.first.vars.label }}" >> "$ORDO_OUTPUTS"
        """,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: pipeline
        vars:
          region: north
          unit: lb
        tasks:
          - {id: prep, type: shell, command: 'echo "x=7" >> "$ORDO_OUTPUTS"'}
          - {id: first, type: flow, flow: measure, depends_on: prep}
          - {id: second, type: flow, flow: compare, depends_on: first}
          - id: report
            type: shell
            depends_on: second
            command: >-
              echo "v={{ outputs.first.tasks.weigh.value }}" >> "$ORDO_OUTPUTS";
              echo "label={{ outputs.first.vars.label }}" >> "$ORDO_OUTPUTS";
              echo "seen={{ outputs.second.tasks.look.before }}" >> "$ORDO_OUTPUTS"
        """,
    )
    assert final is State.SUCCESS, (store.get_execution(ex_id).reason, runs(store, ex_id))
    out = store.outputs(ex_id)
    assert out["report"] == {"v": 5, "label": "5 kg", "seen": 5}  # the child's own var wins
    children = {c.flow_key: c.id for c in store.children(ex_id)}
    assert store.outputs(children["default/measure"])["weigh"] == {
        "value": 5,
        "region": "north",  # the parent's var, inherited
        "prep": 7,  # the parent's results so far
        "parent_unit": "lb",
    }
    assert store.outputs(children["default/compare"])["look"] == {"before": 5, "label": "5 kg"}
    # what is stored for the flow task is what the child declared (none here): paths are
    # read from the child when a template uses them
    assert out["first"] == {"execution_id": children["default/measure"]}


def test_a_path_the_child_does_not_have_names_the_child(store: Store, folder: Path) -> None:
    add_flow(
        store,
        folder,
        "small.yaml",
        """
        id: small
        tasks:
          - {id: weigh, type: shell, command: 'echo "value=5" >> "$ORDO_OUTPUTS"'}
        """,
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: asks
        tasks:
          - {id: call, type: flow, flow: small}
          - id: use
            type: shell
            depends_on: call
            command: echo {{ outputs.call.tasks.weight.value }}
        """,
    )
    assert final is State.FAILED
    (child,) = store.children(ex_id)
    reason = runs(store, ex_id)["use"].reason or ""
    assert f"child execution {child.id} has no task with outputs 'weight'" in reason
    assert "(it has: weigh)" in reason and "did you mean 'outputs.call.tasks.weigh'?" in reason


def test_a_task_group_runs_each_values_chain_on_its_own(store: Store, folder: Path) -> None:
    """Fork chains: ``for_each`` over a group of tasks; each value's chain goes on as
    soon as its own previous step ends; the join sees each value's last outputs."""
    (folder / "chain.py").write_text(
        textwrap.dedent("""
        def transform(n, index):
            return {"doubled": n * 2, "index": index}
        """)
    )
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: chains
        inputs:
          scale: {type: int, default: 10}
        vars:
          unit: kg
        tasks:
          - id: per_value
            for_each: [1, 2, 3]
            concurrency: 2
            tasks:
              - id: extract
                type: shell
                command: echo "n={{ fork.value * inputs.scale }}" >> "$ORDO_OUTPUTS"
              - id: transform
                type: python
                function: "chain:transform"
                with: {n: "{{ outputs.extract.n }}", index: "{{ fork.index }}"}
              - id: load
                type: shell
                command: >-
                  echo "total={{ outputs.transform.doubled }}" >> "$ORDO_OUTPUTS";
                  echo "unit={{ vars.unit }}" >> "$ORDO_OUTPUTS"
          - id: join
            type: shell
            depends_on: per_value
            command: >-
              echo "totals={{ outputs.per_value | map(attribute='total') | join(',') }}"
              >> "$ORDO_OUTPUTS"
        """,
    )
    assert final is State.SUCCESS, store.get_execution(ex_id).reason
    out = store.outputs(ex_id)
    assert out["join"] == {"totals": "20,40,60"}
    assert [o["unit"] for o in out["per_value"]] == ["kg", "kg", "kg"]
    children = store.children(ex_id)
    assert len(children) == 3
    assert {c.flow_key for c in children} == {"default/chains--per_value"}
    second = next(c for c in children if store.outputs(c.id)["transform"]["index"] == 1)
    assert store.outputs(second.id)["extract"] == {"n": 20}


def test_a_task_group_is_checked_like_a_flow(tmp_path: Path) -> None:
    from ordo.definitions import parse_flow
    from ordo.errors import DefinitionError

    text = textwrap.dedent("""
    id: bad-group
    tasks:
      - {id: prep, type: shell, command: "true"}
      - id: per_value
        for_each: [1, 2]
        sequential: false
        tasks:
          - {id: a, type: shell, command: "true", depends_on: prep}
          - {id: b, type: shel, command: "true", depends_on: a}
      - id: nothing_to_fork
        tasks:
          - {id: c, type: shell, command: "true"}
    """)
    with pytest.raises(DefinitionError) as caught:
        parse_flow(text, str(tmp_path / "bad.yaml"))
    shown = str(caught.value)
    assert "task 'a' of group 'per_value' depends on 'prep', outside the group" in shown
    assert "tasks[1].tasks[0].depends_on" in shown
    assert "unknown task type string 'shel' (did you mean 'shell'?)" in shown
    assert "tasks[1].tasks[1].type" in shown
    assert "a task group runs its tasks once per value: give for_each" in shown


def test_a_claim_sent_as_the_execution_ends_goes_back(store: Store, folder: Path) -> None:
    """A worker on one execution claims what its successes make ready with what records
    them, on PostgreSQL before it knows the execution ends. With one slot, the task of a
    child that does not wait (its tree is the parent's) is claimed in the step where the
    parent ends: it goes back, ready for whoever serves the child, not left claimed by a
    worker that has stopped looking."""
    add_flow(
        store,
        folder,
        "late.yaml",
        """
        id: late
        tasks:
          - {id: first, type: shell, command: "true"}
          - {id: second, type: shell, command: "true", depends_on: [first]}
        """,
    )
    parent = add_flow(
        store,
        folder,
        "main.yaml",
        """
        id: parent
        tasks:
          - {id: fire, type: flow, flow: late, wait: false}
          - {id: last, type: shell, command: "true", depends_on: [fire]}
        """,
    )
    ex_id, final = run_file(store, folder, parent, slots=1, prefetch=0)
    assert final is State.SUCCESS
    (child,) = store.children(ex_id)
    second = runs(store, child.id)["second"]
    tried = [(a.state, a.reason) for a in store.attempts(child.id) if a.task_run_id == second.id]
    if store.db.backend == "postgresql":  # claimed before the parent's end was read
        assert tried == [(State.KILLED, "handed back")]  # not left RUNNING
    else:  # (SQLite knows the parent ended before that claim: it is not made)
        assert tried == []
    (again,) = store.claim("another", 5, time.time(), 30.0)  # ready: any worker takes it
    assert again.task_run_id == second.id
