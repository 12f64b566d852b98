"""Handlers written for Cloudomation run on ordo: ``this.connect(name, fetchval=...)``
and its siblings, ``connector_type='REST'``, ``system.project(name)``, children in
another namespace with ``init={'project_id': ...}`` (refused out of the starter's
scope), and ``this.success(message)`` recorded as the reason. Real python hosts, a real
SQLite database, a real HTTP server, real stores on both backends."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path

import pytest
from support import work_on

from ordo import engine
from ordo.model import State
from ordo.store import Store
from ordo.store.records import Revision

HANDLERS = """
import flow_api  # noqa: F401  (a Cloudomation handler's first line; see flow_api.py)


def spellings(system, this, inputs):
    value = this.connect("db", fetchval="SELECT 1+1")
    rows = this.connect("db", fetch="SELECT x FROM items ORDER BY x")
    row = this.connect("db", fetchrow="SELECT x FROM items WHERE x > 1 ORDER BY x")
    none = this.connect("db", fetchrow="SELECT x FROM items WHERE x > 99")
    changed = this.connect("db", execute="UPDATE items SET x = x * 10 WHERE x < 3")
    rest = this.connect(connector_type="REST", url=inputs["url"] + "/hello")
    http = this.connect(connector_type="http", url=inputs["url"] + "/hello")
    sql = this.connect(
        connector_type="Sql", url=inputs["db"], fetchval="SELECT count(*) FROM items"
    )
    this.output("value", value)
    this.output("rows", rows)
    this.output("row", row)
    this.output("none", none)
    this.output("changed", changed)
    this.output("rest", rest["status"])
    this.output("http", http["text"])
    this.output("sql", sql)
    return this.success("all done")


def in_other_project(system, this, inputs):
    project = system.project("other")
    answer = this.flow("child", n=2, init={"project_id": project.get("id")})
    again = this.flow("child", n=3, namespace="other")
    this.connect("db", fetchval="SELECT 1", init={"project_id": system.project("other")["id"]})
    return this.success(f"children said {answer['doubled']} and {again['doubled']}",
                        project=project)


def refused(system, this, inputs):
    messages = []
    for attempt in (
        lambda: this.flow("child", n=1, init={"project_id": "nowhere"}),
        lambda: system.project("nowhere"),
        lambda: this.connect("db", fetchval="SELECT 1", namespace="nowhere"),
        lambda: this.flow("child", n=1, init={"project": "other"}),
        lambda: this.connect("db", fetchval="SELECT 1", fetch="SELECT 2"),
        lambda: this.connect(connector_type="SOAP", url="http://x"),
        lambda: this.connect(connector_type="REST", url="http://x", fetchval="SELECT 1"),
    ):
        try:
            attempt()
        except this.OrdoCallError as exc:
            messages.append(str(exc))
    return {"messages": messages}


def scoped(system, this, inputs):
    try:
        this.flow("other/child", n=1)
    except this.OrdoCallError as exc:
        return this.fail(str(exc))
    return this.success("should have been refused")
"""

CHILD = """
id: child
namespace: other
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


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    (tmp_path / "flow_api.py").write_text("")  # Cloudomation's module, for the import
    (tmp_path / "steps.py").write_text(
        "from ordo import this\n\ndef double(n):\n    this.output('value', n * 2)\n"
    )
    return tmp_path


def add(store: Store, folder: Path, name: str, text: str) -> Revision:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return engine.register_flow(store, path, time.time())


def run_handler(
    store: Store,
    folder: Path,
    handler: str,
    inputs: dict[str, str] | None = None,
    scope: list[str] | None = None,
) -> tuple[int, State]:
    revision = add(
        store,
        folder,
        f"{handler}.yaml",
        f"""
        id: {handler}
        tasks:
          - id: work
            type: python
            handler: "handlers:{handler}"
            with: {inputs or {}}
        """,
    )
    ex_id = engine.start_execution(store, revision, {}, time.time(), scope=scope)
    return work_on(store, folder, ex_id, slots=1)


def make_db(folder: Path) -> str:
    path = folder / "data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (x)")
    conn.executemany("INSERT INTO items VALUES (?)", [(1,), (2,), (3,)])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_sql_spellings_connector_types_and_success_message(
    store: Store, folder: Path, runner_http_server: str
) -> None:
    url = make_db(folder)
    store.save_connection("db", "sql", {"url": url}, time.time(), replace=False)
    ex_id, final = run_handler(store, folder, "spellings", {"url": runner_http_server, "db": url})
    runs = {r.label: r for r in store.task_runs(ex_id)}
    assert final is State.SUCCESS, runs
    assert runs["work"].reason == "all done"  # this.success(message) is kept
    outputs = store.outputs(ex_id)["work"]
    assert outputs["value"] == 2
    assert outputs["rows"] == [{"x": 1}, {"x": 2}, {"x": 3}]
    assert outputs["row"] == {"x": 2}
    assert outputs["none"] is None
    assert outputs["changed"] == 2
    assert outputs["rest"] == 200
    assert outputs["http"] == "héllo"
    assert outputs["sql"] == 3


def test_children_run_in_another_namespace_and_unknown_ones_are_refused(
    store: Store, folder: Path
) -> None:
    store.save_connection("db", "sql", {"url": make_db(folder)}, time.time(), replace=False)
    add(store, folder, "child.yaml", CHILD)
    ex_id, final = run_handler(store, folder, "in_other_project")
    runs = {r.label: r for r in store.task_runs(ex_id)}
    assert final is State.SUCCESS, runs
    assert runs["work"].reason == "children said 4 and 6"
    assert store.outputs(ex_id)["work"]["project"] == {"id": "other", "name": "other"}
    children = store.children(ex_id)
    assert [(c.namespace, c.flow_id) for c in children] == [("other", "child")] * 2

    ex_id, final = run_handler(store, folder, "refused")
    assert final is State.SUCCESS
    messages = store.outputs(ex_id)["work"]["messages"]
    unknown = "namespace 'nowhere' does not exist (did you mean 'other'?) (namespaces: "
    assert messages[0].startswith(unknown) and "default" in messages[0]
    assert messages[1] == messages[0] == messages[2]
    assert "init takes 'project_id'" in messages[3]
    assert messages[4] == "this.connect: give one statement, found fetchval= and fetch="
    assert "unknown connection type 'SOAP'; one of SQL, REST, HTTP" in messages[5]
    assert messages[6] == "this.connect: fetchval= runs SQL, but this is a http call"
    assert len(messages) == 7


def test_a_child_outside_the_starters_token_scope_is_refused(store: Store, folder: Path) -> None:
    add(store, folder, "child.yaml", CHILD)
    ex_id, final = run_handler(store, folder, "scoped", scope=["default"])
    runs = {r.label: r for r in store.task_runs(ex_id)}
    assert final is State.FAILED
    assert runs["work"].reason == (
        "namespace 'other' is outside this execution's scope: it was started with a "
        "token limited to namespaces default"
    )
    assert store.get_execution(ex_id).scope == ("default",)
    assert store.children(ex_id) == []
    # unscoped (the CLI, a trigger, an unlimited token): the same handler may
    ex_id, final = run_handler(store, folder, "scoped")
    assert final is State.SUCCESS
    assert store.task_runs(ex_id)[0].reason == "should have been refused"


def test_a_flow_task_outside_the_scope_fails_and_children_inherit_the_scope(
    store: Store, folder: Path
) -> None:
    add(store, folder, "child.yaml", CHILD)
    revision = add(
        store,
        folder,
        "parent.yaml",
        """
        id: parent
        tasks:
          - {id: call, type: flow, flow: other/child, with: {n: 2}}
        """,
    )
    ex_id = engine.start_execution(store, revision, {}, time.time(), scope=["default"])
    _, final = work_on(store, folder, ex_id, slots=1)
    assert final is State.FAILED
    assert "namespace 'other' is outside this execution's scope" in (
        store.task_runs(ex_id)[0].reason or ""
    )
    ex_id = engine.start_execution(store, revision, {}, time.time(), scope=["default", "other"])
    _, final = work_on(store, folder, ex_id, slots=1)
    assert final is State.SUCCESS
    [child] = store.children(ex_id)
    assert child.scope == ("default", "other")
