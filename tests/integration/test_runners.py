"""Each runner against real things: processes, a local HTTP server, SQLite, PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ordo.model import State, Task
from ordo.runners import RunnerSet, make_runners
from ordo.runners.base import RunContext

PG_URL = os.environ.get("ORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def runners() -> Iterator[RunnerSet]:
    rs = make_runners(2)
    yield rs
    rs.close()


class Logs(list[tuple[str, str]]):
    def __call__(self, stream: str, line: str) -> None:
        self.append((stream, line))


def context(
    base: Path,
    fields: dict[str, Any],
    *,
    with_: dict[str, Any] | None = None,
    timeout: float | None = None,
    attempt: int = 1,
    env: dict[str, str] | None = None,
) -> RunContext:
    return RunContext(
        execution_id=1,
        task_run_id=2,
        attempt_id=3,
        attempt_number=attempt,
        task=Task(id="t", type="x"),
        fields=fields,
        with_=with_ or {},
        env=env or {},
        base_dir=str(base),
        log=Logs(),
        timeout=timeout,
        kill_grace=0.5,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


# -- shell ----------------------------------------------------------------------------
def test_shell_outputs_metrics_and_streamed_logs(runners: RunnerSet, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        {
            "command": (
                "echo one; echo two >&2; echo 'rows=[1, 2]' >> $ORDO_OUTPUTS; "
                "echo name=plain text >> $ORDO_OUTPUTS; echo 'n=3' >> $ORDO_METRICS; "
                'echo \'{"name": "t", "value": 1.5, "kind": "duration"}\' >> $ORDO_METRICS'
            )
        },
        env={"GREETING": "hi"},
    )
    outcome = runners.get("shell").run(ctx)
    assert outcome.state is State.SUCCESS and outcome.exit_code == 0
    assert outcome.outputs == {"rows": [1, 2], "name": "plain text"}
    assert [(m.name, m.value, m.kind) for m in outcome.metrics] == [
        ("n", 3.0, "counter"),
        ("t", 1.5, "duration"),
    ]
    assert ctx.log == [("stdout", "one"), ("stderr", "two")]  # type: ignore[comparison-overlap]
    assert outcome.cpu_seconds is not None and outcome.peak_rss_kb


def test_shell_exit_code_and_command_not_found(runners: RunnerSet, tmp_path: Path) -> None:
    failed = runners.get("shell").run(context(tmp_path, {"command": "echo bad >&2; exit 3"}))
    assert (failed.state, failed.exit_code, failed.error) == (State.FAILED, 3, "exit code 3: bad")
    missing = runners.get("shell").run(context(tmp_path, {"command": "nosuch-cmd-x --flag"}))
    assert missing.exit_code == 127
    assert missing.error is not None and missing.error.startswith("command not found: nosuch-cmd-x")


def test_shell_argv_env_and_cwd(runners: RunnerSet, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    ctx = context(
        tmp_path,
        {
            "command": ["sh", "-c", "pwd; echo $A-$ORDO_ATTEMPT"],
            "cwd": "sub",
            "inherit_env": ["PATH"],
        },
        env={"A": "x"},
        attempt=2,
    )
    assert runners.get("shell").run(ctx).ok
    assert ctx.log == [("stdout", str(tmp_path / "sub")), ("stdout", "x-2")]  # type: ignore[comparison-overlap]


def test_shell_bad_outputs_line_fails_naming_it(runners: RunnerSet, tmp_path: Path) -> None:
    outcome = runners.get("shell").run(context(tmp_path, {"command": "echo oops >> $ORDO_OUTPUTS"}))
    assert outcome.state is State.FAILED
    assert outcome.error == "$ORDO_OUTPUTS line 1: expected key=value, found 'oops'"


def test_shell_timeout_kills_the_whole_tree(runners: RunnerSet, tmp_path: Path) -> None:
    script = (
        "trap '' TERM; sleep 100 & echo $! > child.pid; "
        "sh -c 'trap \"\" TERM; sleep 100' & echo $! > grandchild.pid; wait"
    )
    started = time.monotonic()
    outcome = runners.get("shell").run(context(tmp_path, {"command": script}, timeout=0.5))
    assert outcome.state is State.FAILED and outcome.reason == "timeout"
    assert outcome.error == "timed out after 0.5s"
    assert time.monotonic() - started < 0.5 + 0.5 + 1.0
    for name in ("child.pid", "grandchild.pid"):
        pid = int((tmp_path / name).read_text())
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(pid), f"{name} survived"


def test_shell_cancel_ends_killed(runners: RunnerSet, tmp_path: Path) -> None:
    ctx = context(tmp_path, {"command": "sleep 30"})
    threading.Timer(0.2, ctx.cancel.set).start()
    outcome = runners.get("shell").run(ctx)
    assert (outcome.state, outcome.reason) == (State.KILLED, "killed")


# -- python ---------------------------------------------------------------------------
@pytest.fixture
def module(tmp_path: Path) -> Path:
    (tmp_path / "tasks_mod.py").write_text(
        "import os, time\n"
        "from ordo import this\n"
        "def add(a, b):\n"
        "    print('adding', a, b)\n"
        "    this.output('early', True)\n"
        "    this.metric('calls', 1, tags={'k': 'v'})\n"
        "    return {'sum': a + b}\n"
        "def pid():\n"
        "    return {'pid': os.getpid()}\n"
        "def boom():\n"
        "    raise ValueError('bad row')\n"
        "def slow():\n"
        "    time.sleep(60)\n"
        "def wrong():\n"
        "    return [1]\n"
    )
    (tmp_path / "script.py").write_text(
        "from ordo import this\nimport sys\nprint('script got', this.inputs['x'])\n"
        "this.output('seen', this.inputs['x'])\nsys.exit(0)\n"
    )
    return tmp_path


def test_python_function_outputs_metrics_logs(runners: RunnerSet, module: Path) -> None:
    ctx = context(module, {"function": "tasks_mod:add"}, with_={"a": 2, "b": 3})
    outcome = runners.get("python").run(ctx)
    assert outcome.state is State.SUCCESS
    assert outcome.outputs == {"early": True, "sum": 5}
    assert [(m.name, m.tags) for m in outcome.metrics] == [("calls", {"k": "v"})]
    assert ctx.log == [("stdout", "adding 2 3")]  # type: ignore[comparison-overlap]


def test_python_script_sees_inputs(runners: RunnerSet, module: Path) -> None:
    ctx = context(module, {"script": "script.py"}, with_={"x": 41})
    outcome = runners.get("python").run(ctx)
    assert outcome.state is State.SUCCESS, outcome.error
    assert outcome.outputs == {"seen": 41}
    assert ("stdout", "script got 41") in ctx.log  # type: ignore[operator]


def test_python_errors_are_clear(runners: RunnerSet, module: Path) -> None:
    py = runners.get("python")
    boom = context(module, {"function": "tasks_mod:boom"})
    outcome = py.run(boom)
    assert (outcome.state, outcome.error) == (State.FAILED, "ValueError: bad row")
    assert ("stderr", "ValueError: bad row") in boom.log  # type: ignore[operator]
    assert "pyhost" not in json.dumps(boom.log)
    assert py.run(context(module, {"function": "tasks_mod:ad"})).error == (
        "module 'tasks_mod' has no function 'ad' (did you mean 'add'?)"
    )
    assert py.run(context(module, {"function": "nomod:f"})).error == (
        "cannot import module 'nomod' (from function 'nomod:f'): No module named 'nomod'"
    )
    assert py.run(context(module, {"script": "nope.py"})).error == (
        f"script not found: {module / 'nope.py'}"
    )
    assert "expected a dict of outputs or None" in (
        py.run(context(module, {"function": "tasks_mod:wrong"})).error or ""
    )


def test_python_hosts_are_reused_and_replaced_after_timeout(
    runners: RunnerSet, module: Path
) -> None:
    py = runners.get("python")
    first = py.run(context(module, {"function": "tasks_mod:pid"})).outputs["pid"]
    second = py.run(context(module, {"function": "tasks_mod:pid"})).outputs["pid"]
    assert first == second
    slow = py.run(context(module, {"function": "tasks_mod:slow"}, timeout=0.3))
    assert (slow.state, slow.reason) == (State.FAILED, "timeout")
    third = py.run(context(module, {"function": "tasks_mod:pid"})).outputs["pid"]
    assert not alive(first) and third != first


def test_python_module_edits_are_picked_up(runners: RunnerSet, module: Path) -> None:
    py = runners.get("python")
    assert py.run(context(module, {"function": "tasks_mod:add"}, with_={"a": 1, "b": 1})).ok
    source = (module / "tasks_mod.py").read_text().replace("a + b", "a * 10 + b")
    (module / "tasks_mod.py").write_text(source)
    os.utime(module / "tasks_mod.py", (time.time() + 5, time.time() + 5))
    again = py.run(context(module, {"function": "tasks_mod:add"}, with_={"a": 1, "b": 1}))
    assert again.outputs["sum"] == 11


# -- sql ------------------------------------------------------------------------------
def test_sqlite_rows_cap_and_errors(runners: RunnerSet, tmp_path: Path) -> None:
    sql = runners.get("sql")
    url = "sqlite:///w.db"
    made = sql.run(
        context(
            tmp_path,
            {
                "url": url,
                "script": (
                    "create table t (n integer, s text); "
                    "insert into t values (1, 'a'), (2, 'b'), (3, 'c');"
                ),
            },
        )
    )
    assert made.ok, made.error
    rows = sql.run(
        context(
            tmp_path,
            {
                "url": url,
                "query": "select * from t where n > ? order by n",
                "params": [0],
                "max_rows": 2,
            },
        )
    )
    assert rows.outputs == {
        "columns": ["n", "s"],
        "rows": [{"n": 1, "s": "a"}, {"n": 2, "s": "b"}],
        "rowcount": 2,
        "truncated": True,
    }
    changed = sql.run(context(tmp_path, {"url": url, "query": "update t set s = 'z'"}))
    assert changed.outputs["rowcount"] == 3
    assert sqlite3.connect(tmp_path / "w.db").execute(
        "select count(*) from t where s='z'"
    ).fetchone() == (3,)
    bad = sql.run(context(tmp_path, {"url": url, "query": "select * from missing"}))
    assert (bad.state, bad.error) == (State.FAILED, "SQL error: no such table: missing")


def test_postgres_query(runners: RunnerSet, tmp_path: Path, postgres_url: str) -> None:
    pg_url = postgres_url
    sql = runners.get("sql")
    out = sql.run(
        context(tmp_path, {"url": pg_url, "query": "select %s::int + 1 as n", "params": [41]})
    )
    assert out.outputs["rows"] == [{"n": 42}]
    bad = sql.run(context(tmp_path, {"url": pg_url, "query": "select * from no_such_table_x"}))
    assert bad.state is State.FAILED and "no_such_table_x" in (bad.error or "")


# -- http -----------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._reply(200, "application/json", json.dumps({"got": body}).encode())

    def do_GET(self) -> None:
        if self.path == "/fail":
            self._reply(500, "text/plain", b"broken")
        else:
            self._reply(200, "text/plain", b"hello")

    def _reply(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_http_json_text_and_status(runners: RunnerSet, tmp_path: Path, server: str) -> None:
    http = runners.get("http")
    posted = http.run(context(tmp_path, {"method": "POST", "url": f"{server}/x", "json": {"a": 1}}))
    assert posted.ok and posted.outputs["json"] == {"got": {"a": 1}}
    assert posted.outputs["status"] == 200
    text = http.run(context(tmp_path, {"url": f"{server}/hello"}))
    assert text.outputs["text"] == "hello"
    failed = http.run(context(tmp_path, {"url": f"{server}/fail"}))
    assert (failed.state, failed.reason) == (State.FAILED, "status")
    assert failed.error == "expected status 2xx; got 500"
    allowed = http.run(context(tmp_path, {"url": f"{server}/fail", "expect_status": [500]}))
    assert allowed.ok
    single = http.run(context(tmp_path, {"url": f"{server}/fail", "expect_status": 500}))
    assert single.ok


def test_http_unreachable_names_the_url(runners: RunnerSet, tmp_path: Path) -> None:
    outcome = runners.get("http").run(context(tmp_path, {"url": "http://127.0.0.1:9/x"}))
    assert outcome.state is State.FAILED
    assert outcome.error == "cannot connect to http://127.0.0.1:9/x: Connection refused"


def test_python_script_exit_code_is_an_exit_code_failure(
    runners: RunnerSet, tmp_path: Path
) -> None:
    (tmp_path / "leave.py").write_text("import sys\nsys.exit(3)\n")
    outcome = runners.get("python").run(context(tmp_path, {"script": "leave.py"}))
    assert (outcome.state, outcome.exit_code, outcome.reason) == (State.FAILED, 3, "exit_code")
