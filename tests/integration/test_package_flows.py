"""Packages are flows like any other: their ``flow.yaml`` takes triggers, active,
allow_manual, inputs (given to ``.py``, ``.sh`` and ``.sql`` scripts), notify, retry and
timeout; the scheduler (with an injected clock) and events start them; ``ordo deploy``
and ``ordo server --flows DIR --watch`` pick package folders up with their triggers.
Real stores on both backends, real python hosts, shells and databases."""

from __future__ import annotations

import datetime
import textwrap
import time
from pathlib import Path

import pytest
from server_support import running_server, server_env
from support import ordo, work_on

from ordo import definitions, engine, services
from ordo.errors import DefinitionError, Forbidden
from ordo.model import State
from ordo.store import Store
from ordo.triggers.scheduler import Scheduler

START = datetime.datetime(2026, 12, 3, 10, 0, 30, tzinfo=datetime.UTC).timestamp()

FLOW_YAML = """\
id: reports
namespace: ops
labels: {team: data}
inputs:
  day: {type: int, default: 3}
  who: {type: string, required: true}
  extra: {type: json, default: {a: 1}}
triggers:
  - {type: schedule, cron: "20 * * * *", inputs: {who: cron}}
  - {type: event, event: file.arrived, inputs: {who: events}}
retry: {attempts: 2, delay: 0s}
timeout: 5m
notify:
  - {on: failed, webhook: "http://127.0.0.1:9/hook"}
connection: pkdb
"""

SCRIPTS = {
    "10_prep.sh": 'echo "day=$ORDO_INPUT_DAY who=$ORDO_INPUT_WHO extra=$ORDO_INPUT_EXTRA"\n'
    'echo "event=$ORDO_INPUT_EVENT"\n',
    "20_load.sql": "CREATE TABLE IF NOT EXISTS loads (day INTEGER, who TEXT);\n"
    "INSERT INTO loads VALUES (:day, :who);\n"
    "SELECT count(*) AS n, max(day) AS day FROM loads WHERE who = :who;\n",
    "30_show.py": "from ordo import this\n"
    "this.output('seen', {k: v for k, v in this.inputs.items() if k != 'config'})\n",
    "40_handler.py": "def handler(system, this, inputs):\n"
    "    return this.success(f\"day {inputs['day']} for {inputs['who']}\", "
    "limit=inputs['config']['limit'])\n",
    "50_notes.txt": "not a script\n",
}


def make_package(folder: Path, flow_yaml: str = FLOW_YAML) -> Path:
    package = folder / "reports"
    package.mkdir(parents=True, exist_ok=True)
    (package / "flow.yaml").write_text(flow_yaml)
    (package / "config.json").write_text('{"limit": 7}')
    for name, text in SCRIPTS.items():
        (package / name).write_text(text)
    return package


def sql_url(db: str, folder: Path) -> str:
    """Where the package's .sql script runs: the test's PostgreSQL database on that
    backend (``:name`` parameters bound by the client there), else a SQLite file."""
    return db if db.startswith("postgresql") else f"sqlite:///{folder / 'data.db'}"


def test_a_package_flow_yaml_takes_every_flow_key(tmp_path: Path) -> None:
    flow = definitions.load(make_package(tmp_path))
    assert flow.key == "ops/reports" and flow.labels == {"team": "data"}
    assert [(t.type, t.cron or t.event) for t in flow.triggers] == [
        ("schedule", "20 * * * *"),
        ("event", "file.arrived"),
    ]
    assert [i.name for i in flow.inputs] == ["day", "who", "extra"]
    assert flow.timeout == 300 and flow.notify[0].webhook == "http://127.0.0.1:9/hook"
    assert {t.retry.attempts for t in flow.tasks} == {2}
    assert flow.active and flow.allow_manual


def test_wrong_package_settings_are_located_in_flow_yaml(tmp_path: Path) -> None:
    package = make_package(
        tmp_path,
        textwrap.dedent(
            """\
            id: reports
            connection: pkdb
            inputs:
              config: {type: string}
            retry: {attempts: 2}
            defaults: {retry: {attempts: 3}}
            active: maybe
            triggers:
              - {type: event}
            """
        ),
    )
    with pytest.raises(DefinitionError) as caught:
        definitions.load(package)
    text = str(caught.value)
    assert "flow.yaml:4:3: inputs.config: an input of a package cannot be named 'config'" in text
    assert "flow.yaml:5:8: retry: give retry or defaults.retry, not both" in text
    assert "flow.yaml:7:9: active: expected true or false" in text
    assert "flow.yaml:9:5: triggers[0]: missing required key 'event'" in text


def test_inputs_reach_sh_py_and_sql_scripts(store: Store, db: str, tmp_path: Path) -> None:
    package = make_package(tmp_path)
    store.save_connection("pkdb", "sql", {"url": sql_url(db, tmp_path)}, time.time(), replace=False)
    revision = engine.register_flow(store, package, time.time())
    ex_id = services.start(store, revision, {"who": "ann", "day": "5"}, time.time())
    _, final = work_on(store, tmp_path, ex_id)
    runs = {r.label: r for r in store.task_runs(ex_id)}
    assert final is State.SUCCESS, runs
    logs = [line.line for line in store.logs(ex_id) if line.stream == "stdout"]
    assert 'day=5 who=ann extra={"a": 1}' in logs and "event=" in logs
    outputs = store.outputs(ex_id)
    assert outputs["20_load.sql"]["rows"] == [{"n": 1, "day": 5}]
    assert outputs["30_show.py"]["seen"] == {
        "day": 5,
        "who": "ann",
        "extra": {"a": 1},
        "schedule": None,
        "event": None,
    }
    assert outputs["40_handler.py"]["limit"] == 7
    assert runs["40_handler.py"].reason == "day 5 for ann"
    assert runs["50_notes.txt"].state is State.SKIPPED
    with pytest.raises(DefinitionError, match="input 'who' is required"):
        services.start(store, revision, {}, time.time())
    if db.startswith("postgresql"):  # the test's database: leave it as it was
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("DROP TABLE loads")


def test_the_scheduler_and_events_start_a_package(store: Store, tmp_path: Path) -> None:
    # (no timeout: the injected clock is in the past, the execution would time out)
    flow_yaml = FLOW_YAML.replace("timeout: 5m\n", "") + "allow_manual: false\n"
    package = make_package(tmp_path, flow_yaml)
    store.save_connection(
        "pkdb", "sql", {"url": f"sqlite:///{tmp_path / 'd.db'}"}, time.time(), replace=False
    )
    revision = engine.register_flow(store, package, 0)
    clock = START
    scheduler = Scheduler(store, "a", clock=lambda: clock)
    assert scheduler.tick() == []  # first sight: nothing from the past
    clock = START + 20 * 60  # 10:20:30: the "20 * * * *" tick of 10:20
    assert len(scheduler.tick()) == 1
    assert scheduler.tick() == []
    emitted = services.emit(store, "file.arrived", {"path": "/in/x.csv"}, clock)
    assert len(emitted.executions) == 1
    runs = list(reversed(store.list_executions(flow="ops/reports", limit=10)))
    assert [e.started_by for e in runs] == ["schedule:schedule1", "event:event2"]
    assert [e.inputs["who"] for e in runs] == ["cron", "events"]
    assert runs[0].inputs["schedule"]["time"] == "2026-12-03T10:20:00Z"
    _, final = work_on(store, tmp_path, runs[1].id)
    assert final is State.SUCCESS
    logs = [line.line for line in store.logs(runs[1].id)]
    event = '{"data": {"path": "/in/x.csv"}, "id": 1, "type": "file.arrived"}'
    assert f"event={event}" in logs
    with pytest.raises(Forbidden, match="does not allow manual starts"):
        services.start(store, revision, {"who": "me"}, time.time())


def test_an_inactive_package_is_neither_scheduled_nor_started_by_events(
    store: Store, tmp_path: Path
) -> None:
    package = make_package(tmp_path, FLOW_YAML + "active: false\n")
    engine.register_flow(store, package, 0)
    clock = START
    scheduler = Scheduler(store, "a", clock=lambda: clock)
    scheduler.tick()
    clock = START + 3600
    assert scheduler.tick() == []
    assert services.emit(store, "file.arrived", {}, clock).executions == []


def test_deploy_and_the_watching_server_pick_up_a_package_and_its_triggers(
    tmp_path: Path, ordo_cmd: list[str]
) -> None:
    site = tmp_path / "site"
    make_package(site)
    env = server_env(tmp_path)
    db = str(tmp_path / "ordo.db")
    deployed = ordo(ordo_cmd, env, db, "deploy", str(site))
    assert deployed.returncode == 0, deployed.stderr
    upcoming = ordo(ordo_cmd, env, db, "flows", "next", "ops/reports", "-n", "1")
    assert "schedule1: 20 * * * *" in upcoming.stdout
    url = f"sqlite:///{tmp_path / 'data.db'}"
    made = ordo(ordo_cmd, env, db, "connections", "add", "pkdb", "--type", "sql", "--url", url)
    assert made.returncode == 0, made.stderr
    with running_server(db, env, tmp_path, "--workers", "2", "--flows", str(site), "--watch") as s:
        started = s.http.post("/api/events/file.arrived", json={"path": "/x"}).json()
        assert len(started["executions"]) == 1
        doc = s.wait_state(started["executions"][0], "SUCCESS", timeout=60)
        assert doc["started_by"] == "event:event2"
        ran = s.http.post(
            "/api/flows/ops/reports/executions", json={"inputs": {"who": "api", "day": 9}}
        )
        assert ran.status_code == 201, ran.text
        doc = s.wait_state(ran.json()["id"], "SUCCESS", timeout=60)
        runs = {r["task"]: r for r in doc["task_runs"]}
        assert runs["40_handler.py"]["reason"] == "day 9 for api"
        (site / "reports" / "flow.yaml").write_text(FLOW_YAML + "active: false\n")
        deadline = time.monotonic() + 60
        while s.http.get("/api/flows/ops/reports").json()["revision"] != 2:
            assert time.monotonic() < deadline, s.log.read_text()
            time.sleep(0.1)
        assert s.http.post("/api/events/file.arrived", json={}).json()["executions"] == []
