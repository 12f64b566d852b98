"""Pre and post checks end to end: real executions through a real Worker, on SQLite and
PostgreSQL, with real files, processes and python hosts."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support import patient, work_on

from ordo import engine
from ordo.engine import open_store
from ordo.model import State
from ordo.store import Store
from ordo.store.records import AttemptRow, CheckRow

CHECKS_PY = """
def has_rows(inputs, outputs, task):
    rows = outputs[task["id"]].get("rows", 0) if task["phase"] == "post" else None
    if task["phase"] == "pre":
        return inputs["day"] == "2026-01-01"
    return (rows >= inputs["min_rows"], f"{rows} rows loaded (at least {inputs['min_rows']})")

def never(**facts):
    return False

def broken(task):
    raise ValueError(f"cannot check {task['id']} attempt {task['attempt']}")
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "checks.py").write_text(CHECKS_PY)
    return tmp_path


def start(store: Store, folder: Path, text: str) -> int:
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    revision = engine.register_flow(store, path, time.time())
    return engine.start_execution(store, revision, {}, time.time())


def run_flow(store: Store, folder: Path, text: str) -> tuple[int, State]:
    return work_on(store, folder, start(store, folder, text))


def checks_of(store: Store, ex_id: int) -> list[tuple[int, str, int, str, bool, str]]:
    """``(attempt number, phase, position, kind, ok, message)`` of every check."""
    numbers = {a.id: a.number for a in store.attempts(ex_id)}
    return [
        (numbers[c.attempt_id], c.phase, c.position, c.kind, c.ok, c.message)
        for c in store.checks(ex_id)
    ]


def attempts(store: Store, ex_id: int) -> list[AttemptRow]:
    return store.attempts(ex_id)


def only_check(store: Store, ex_id: int) -> CheckRow:
    (row,) = store.checks(ex_id)
    return row


def test_a_failed_pre_check_ends_the_task_without_running_or_retrying_it(
    store: Store, folder: Path
) -> None:
    (folder / "in.csv").write_text("a,b\n")
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: guarded
        tasks:
          - id: load
            type: shell
            retry: {attempts: 3}
            pre_checks:
              - file_exists: in.csv
              - file_exists: {path: missing/today.csv}
              - command: "touch never-checked"
            command: "touch ran.flag"
        """,
    )
    assert final is State.FAILED
    assert not (folder / "ran.flag").exists()  # the task did not run
    assert not (folder / "never-checked").exists()  # checks stop at the first failure
    (attempt,) = attempts(store, ex_id)  # and it was not retried
    assert attempt.state is State.FAILED and attempt.reason == "pre_check"
    assert attempt.error == "pre_check file_exists: missing/today.csv does not exist"
    assert checks_of(store, ex_id) == [
        (1, "pre", 1, "file_exists", True, "in.csv exists"),
        (1, "pre", 2, "file_exists", False, "missing/today.csv does not exist"),
    ]
    reason = store.get_execution(ex_id).reason
    assert reason == "task 'load' failed: pre_check file_exists: missing/today.csv does not exist"


def test_passing_checks_let_the_task_run_and_are_all_stored(store: Store, folder: Path) -> None:
    (folder / "in").mkdir()
    (folder / "in" / "orders-1.csv").write_text("x\n")
    ex_id, final = run_flow(
        store,
        folder,
        f"""
        id: fine
        tasks:
          - id: load
            type: shell
            env: {{MODE: nightly}}
            pre_checks:
              - file_exists: {{path: "in/*.csv"}}
              - file_exists: {folder / "in"}
              - command: 'test "$MODE" = nightly && test "$PWD" = "{folder}" && echo env ok'
            command: "echo path=out.csv >> $ORDO_OUTPUTS; echo done > out.csv"
            post_checks:
              - file_exists: "{{{{ outputs.load.path }}}}"
        """,
    )
    assert final is State.SUCCESS, store.get_execution(ex_id).reason
    assert checks_of(store, ex_id) == [
        (1, "pre", 1, "file_exists", True, "in/*.csv matches in/orders-1.csv"),
        (1, "pre", 2, "file_exists", True, f"{folder / 'in'} exists"),
        (1, "pre", 3, "command", True, "exit code 0"),
        (1, "post", 1, "file_exists", True, "out.csv exists"),
    ]
    command = store.checks(ex_id)[2]
    assert command.output == "env ok"
    assert command.started_at <= command.ended_at
    logged = [ln.line for ln in store.logs(ex_id)]
    assert "env ok" in logged
    assert "pre_check 3 command: passed: exit code 0" in logged


ORA_LOG = """\
connecting to warehouse
ORA-00942: table or view does not exist
ORA-01017: invalid username/password
"""


def test_no_match_fails_on_an_ora_line_in_a_real_log_and_is_retried_by_policy(
    store: Store, folder: Path
) -> None:
    (folder / "sqlplus.sh").write_text(f"cat <<'EOF'\n{ORA_LOG}EOF\n")
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: oracle
        tasks:
          - id: load
            type: shell
            retry: {attempts: 2}
            command: |
              mkdir -p logs
              sh sqlplus.sh > logs/load.log
              echo "quiet" > logs/other.log
            post_checks:
              - no_match: {path: "logs/*.log", pattern: "ORA-[0-9]+"}
        """,
    )
    assert final is State.FAILED
    tries = attempts(store, ex_id)
    assert [(a.number, a.state, a.reason) for a in tries] == [
        (1, State.FAILED, "post_check"),
        (2, State.FAILED, "post_check"),
    ]
    message = "logs/load.log:2 matches 'ORA-[0-9]+': ORA-00942: table or view does not exist"
    assert tries[0].error == f"post_check no_match: {message}"
    assert tries[0].exit_code == 0  # the task itself succeeded
    assert checks_of(store, ex_id) == [
        (1, "post", 1, "no_match", False, message),
        (2, "post", 1, "no_match", False, message),
    ]


def test_on_post_check_false_does_not_retry_a_failed_post_check(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: once
        defaults:
          retry: {attempts: 3, on_post_check: false}
        tasks:
          - id: write
            type: shell
            command: "echo ORA-12541 > run.log"
            post_checks:
              - no_match: {path: run.log, pattern: "ORA-"}
        """,
    )
    assert final is State.FAILED
    assert [a.reason for a in attempts(store, ex_id)] == ["post_check"]


def test_a_post_check_that_passes_on_the_retry_ends_the_task_success(
    store: Store, folder: Path
) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: eventually
        tasks:
          - id: make
            type: shell
            retry: {attempts: 3}
            command: 'if [ "$ORDO_ATTEMPT" -ge 2 ]; then touch done.flag; fi'
            post_checks:
              - command: {run: "test -f done.flag || { echo 'no flag yet' >&2; exit 4; }"}
        """,
    )
    assert final is State.SUCCESS
    assert checks_of(store, ex_id) == [
        (1, "post", 1, "command", False, "exit code 4: no flag yet"),
        (2, "post", 1, "command", True, "exit code 0"),
    ]
    assert store.checks(ex_id)[0].output == "no flag yet"


def test_no_match_passes_without_matching_lines_or_files(store: Store, folder: Path) -> None:
    (folder / "clean.log").write_text("all good\n" * 1000)
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: clean
        tasks:
          - id: t
            type: shell
            command: "true"
            post_checks:
              - no_match: {path: "*.log", pattern: "ORA-"}
              - no_match: {path: "nowhere/**/*.log", pattern: "ORA-"}
        """,
    )
    assert final is State.SUCCESS
    assert checks_of(store, ex_id) == [
        (1, "post", 1, "no_match", True, "no line matches 'ORA-' in 1 file (*.log)"),
        (1, "post", 2, "no_match", True, "no file matches nowhere/**/*.log: nothing to scan"),
    ]


def test_a_task_that_failed_itself_runs_no_post_checks(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: broken
        tasks:
          - id: t
            type: shell
            command: "exit 3"
            post_checks:
              - command: "touch checked.flag"
        """,
    )
    assert final is State.FAILED
    assert attempts(store, ex_id)[0].reason == "exit_code"
    assert store.checks(ex_id) == []
    assert not (folder / "checked.flag").exists()


def test_function_checks_take_the_facts_they_name(store: Store, folder: Path) -> None:
    (folder / "steps.py").write_text("def load():\n    return {'rows': 7}\n")
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: functions
        inputs:
          day: {type: string, default: "2026-01-01"}
          min_rows: {type: int, default: 5}
        tasks:
          - id: load
            type: python
            function: "steps:load"
            pre_checks:
              - function: checks:has_rows
            post_checks:
              - function: checks:has_rows
          - id: again
            type: shell
            command: "true"
            depends_on: load
            allow_failure: true
            post_checks:
              - function: checks:never
          - id: third
            type: shell
            command: "true"
            depends_on: again
            allow_failure: true
            pre_checks:
              - function: checks:broken
        """,
    )
    assert final is State.WARNING
    assert checks_of(store, ex_id) == [
        (1, "pre", 1, "function", True, "checks:has_rows returned True"),
        (1, "post", 1, "function", True, "7 rows loaded (at least 5)"),
        (1, "post", 1, "function", False, "checks:never returned False"),
        (
            1,
            "pre",
            1,
            "function",
            False,
            "function check checks:broken failed: ValueError: cannot check third attempt 1",
        ),
    ]


def test_a_check_template_that_cannot_render_fails_that_check(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: typo
        inputs:
          day: {type: string, default: "2026-01-01"}
        tasks:
          - id: t
            type: shell
            retry: {attempts: 2}
            command: "touch ran.flag"
            pre_checks:
              - file_exists: "in/{{ execution.inputs.dy }}.csv"
        """,
    )
    assert final is State.FAILED
    assert not (folder / "ran.flag").exists()
    row = only_check(store, ex_id)
    assert not row.ok
    assert row.message == (
        "undefined reference 'execution.inputs.dy' (did you mean 'execution.inputs.day'?)"
    )
    assert attempts(store, ex_id)[0].reason == "pre_check"


def test_a_command_check_past_its_timeout_fails(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: slow
        tasks:
          - id: t
            type: shell
            command: "true"
            post_checks:
              - command: {run: "echo waiting; sleep 30", timeout: 300ms}
        """,
    )
    assert final is State.FAILED
    row = only_check(store, ex_id)
    assert (row.ok, row.message, row.output) == (False, "timed out after 0.3s", "waiting")


def test_defaults_give_checks_to_every_task_that_has_none(store: Store, folder: Path) -> None:
    ex_id, final = run_flow(
        store,
        folder,
        """
        id: defaults
        defaults:
          post_checks:
            - no_match: {path: "*.out", pattern: "ERROR"}
        tasks:
          - {id: a, type: shell, command: "echo fine > a.out"}
          - {id: b, type: shell, command: "echo ERROR > b.out", depends_on: a,
             post_checks: []}
        """,
    )
    assert final is State.SUCCESS
    assert checks_of(store, ex_id) == [
        (1, "post", 1, "no_match", True, "no line matches 'ERROR' in 1 file (*.out)"),
    ]


def test_a_kill_during_a_check_stops_it_and_the_task_never_runs(
    store: Store, db: str, folder: Path
) -> None:
    ex_id = start(
        store,
        folder,
        """
        id: killed
        tasks:
          - id: t
            type: shell
            command: "touch ran.flag"
            pre_checks:
              - command: "touch checking.flag; sleep 60"
        """,
    )
    ended: list[State] = []
    thread = threading.Thread(target=lambda: ended.append(work_on(store, folder, ex_id)[1]))
    thread.start()
    try:
        deadline = time.monotonic() + patient(30)
        while not (folder / "checking.flag").exists():
            assert time.monotonic() < deadline, "the check never started"
            time.sleep(0.05)
        other = open_store(db)
        try:
            other.kill_execution(ex_id, "killed on request", time.time())
        finally:
            other.close()
    finally:
        thread.join(timeout=60)
    assert ended == [State.KILLED]
    assert not (folder / "ran.flag").exists()
    (attempt,) = attempts(store, ex_id)
    assert (attempt.state, attempt.reason) == (State.KILLED, "killed")
    row = only_check(store, ex_id)
    assert (row.phase, row.ok, row.message) == ("pre", False, "stopped on request")


def test_executions_show_lists_each_attempts_checks(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, folder: Path
) -> None:
    flow = folder / "shown.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: shown
        tasks:
          - id: load
            type: shell
            retry: {attempts: 2, on_post_check: false}
            pre_checks:
              - file_exists: shown.yaml
            command: "echo 'ORA-01017: invalid username/password' > load.log"
            post_checks:
              - command: "echo checking the log; grep -c ORA load.log; exit 2"
        """)
    )

    def ordo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ordo_cmd, *args, "--db", db],
            env=ordo_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ran = ordo("run", str(flow))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    shown = ordo("executions", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert (
        "checks of load attempt 1:\n"
        "  pre  1 file_exists  passed  shown.yaml exists\n"
        "  post 1 command      FAILED  exit code 2: 1\n"
        "      | checking the log\n"
        "      | 1\n"
    ) in shown.stdout
    doc = json.loads(ordo("executions", "show", "1", "--json").stdout)
    (attempt,) = doc["task_runs"][0]["attempts"]  # on_post_check: false: no retry
    assert attempt["reason"] == "post_check"
    assert [(c["phase"], c["kind"], c["ok"], c["message"]) for c in attempt["checks"]] == [
        ("pre", "file_exists", True, "shown.yaml exists"),
        ("post", "command", False, "exit code 2: 1"),
    ]
    assert attempt["checks"][1]["output"] == "checking the log\n1"
