"""ordo from Python: ``ordo.run`` and ``ordo.Client`` on a store (SQLite and
PostgreSQL) and through a real ``ordo server``, with the same answers and errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import Server, running_server, server_env

import ordo
from ordo.errors import Conflict, NotFound

FLOW = """
id: greet
namespace: demo
inputs:
  who: {type: string, default: world}
outputs:
  said: "{{ outputs.hello.said }}"
tasks:
  - id: hello
    type: shell
    command: echo "hello {{ inputs.who }}"; echo "said={{ inputs.who }}" >> "$ORDO_OUTPUTS"
  - {id: after, type: shell, command: "true", depends_on: hello}
"""

FAILING = """
id: broken
namespace: demo
tasks:
  - {id: ok, type: shell, command: "echo fine"}
  - {id: boom, type: shell, command: "echo nope >&2; exit 3", depends_on: ok}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_import_ordo_loads_nothing_heavy() -> None:
    code = (
        "import sys, ordo\n"
        "heavy = [m for m in ('jinja2', 'pydantic', 'httpx', 'fastapi', 'rich', 'ordo.client')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.stdout.strip() == "[]", shown.stderr


def test_run_a_flow_file_and_read_the_execution(db: str, tmp_path: Path) -> None:
    path = write(tmp_path, "greet.yaml", FLOW)
    ex = ordo.run(path, inputs={"who": "ada"}, db=db, labels={"team": "data"})
    assert isinstance(ex, ordo.Execution)
    assert ex.state is ordo.State.SUCCESS and ex.ended
    assert ex.outputs == {"said": "ada"}
    assert ex.flow == "demo/greet" and ex.labels == {"team": "data"}
    assert [(r.task, r.state, r.attempts) for r in ex.task_runs] == [
        ("hello", ordo.State.SUCCESS, 1),
        ("after", ordo.State.SUCCESS, 1),
    ]
    assert ex.task_runs[0].outputs == {"said": "ada"}


def test_the_client_starts_waits_lists_logs_and_steers(db: str, tmp_path: Path) -> None:
    write(tmp_path, "greet.yaml", FLOW)
    broken = write(tmp_path, "broken.yaml", FAILING)
    with ordo.Client(db=db) as client:
        started = client.start(tmp_path / "greet.yaml", inputs={"who": "bob"})
        assert client.get(started.id).state is ordo.State.CREATED  # no worker yet
        done = started.wait(timeout=60)
        assert done.state is ordo.State.SUCCESS and done.outputs == {"said": "bob"}
        again = client.start("demo/greet")  # a stored flow, by its key
        assert again.wait().outputs == {"said": "world"}
        failed = client.run(broken)
        assert failed.state is ordo.State.FAILED
        assert failed.reason == "task 'boom' failed: exit code 3: nope"
        every = [(x.task, x.line) for x in client.logs(failed.id)]  # of every task
        assert every == [("ok", "fine"), ("boom", "nope")]
        listed = client.list(flow="demo/greet")
        assert [e.id for e in listed] == [again.id, started.id]
        assert [e.id for e in client.list(state="failed")] == [failed.id]
        lines = client.logs(started.id, task="hello")
        assert [(x.task, x.attempt, x.line) for x in lines] == [("hello", 1, "hello bob")]
        replayed = client.replay(failed.id, from_task="boom").wait()
        assert replayed.state is ordo.State.FAILED and replayed.id != failed.id
        client.restart(failed.id, from_task="ok").wait()
        assert client.get(failed.id).task_runs[0].attempts == 2
        with pytest.raises(NotFound, match="execution 999 not found"):
            client.get(999)
        with pytest.raises(NotFound, match="flow demo/nope not found"):
            client.start("demo/nope")
        with pytest.raises(NotFound, match="flow file not found"):
            client.start(tmp_path / "missing.yaml")
        with pytest.raises(Conflict):
            client.kill(started.id)  # it has ended


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("pyapi")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder, "--workers", "2") as s:
        s.add_flow(FLOW)
        s.add_flow(FAILING)
        yield s


def test_the_client_of_a_server_answers_the_same(server: Server, tmp_path: Path) -> None:
    with ordo.Client(server=server.url, token=server.token) as client:
        ex = client.start("demo/greet", inputs={"who": "cy"}).wait(timeout=60)
        assert ex.state is ordo.State.SUCCESS and ex.outputs == {"said": "cy"}
        assert [r.task for r in ex.task_runs] == ["hello", "after"]
        by_file = client.run(write(tmp_path, "greet.yaml", FLOW), {"who": "di"})
        assert by_file.outputs == {"said": "di"}
        failed = client.start("demo/broken").wait(timeout=60)
        assert failed.reason == "task 'boom' failed: exit code 3: nope"
        assert [x.line for x in client.logs(ex.id, task="hello")] == ["hello cy"]
        assert failed.id in [e.id for e in client.list(state="FAILED")]
        with pytest.raises(NotFound, match="execution 999 not found"):
            client.get(999)
        with pytest.raises(Conflict):
            client.kill(ex.id)
    assert ordo.run("demo/greet", server=server.url, token=server.token).outputs == {
        "said": "world"
    }


def test_the_api_and_the_ui_filter_executions_by_kind(server: Server, tmp_path: Path) -> None:
    from server_support import sign_in

    job = tmp_path / "job.py"
    job.write_text("def handler(system, this, inputs):\n    return {'ok': 1}\n")
    with ordo.Client(server=server.url, token=server.token) as client:
        flow_run = client.start("demo/greet").wait(timeout=60)
    scripts = server.http.get("/api/executions", params={"kind": "script"}).json()["items"]
    flows = server.http.get("/api/executions", params={"kind": "FLOW"}).json()["items"]
    assert flow_run.id in [e["id"] for e in flows]
    assert all(e["kind"] == "SCRIPT" for e in scripts)
    bad = server.http.get("/api/executions", params={"kind": "nope"})
    assert bad.status_code == 422 and "kind: unknown kind 'nope'" in bad.text
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as browser:
        sign_in(browser, server.token)
        page = browser.get("/executions", params={"kind": "SCRIPT"})
        assert page.status_code == 200 and 'option value="SCRIPT" selected' in page.text
