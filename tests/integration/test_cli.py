"""The ``ordo`` command through a real subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from support import patient


def ordo(
    cmd: list[str], env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    return write(
        tmp_path / "hello.yaml",
        """
        id: hello
        inputs:
          who: {type: string, default: world}
          times: {type: int, default: 1}
        tasks:
          - id: greet
            type: shell
            command: >-
              echo "hello {{ inputs.who }}";
              echo times={{ inputs.times }} >> "$ORDO_OUTPUTS"
          - id: shout
            type: shell
            command: 'echo "{{ outputs.greet.times }}" | tr 1 X'
            depends_on: [greet]
    """,
    )


def test_run_succeeds_prints_summary_and_exits_0(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    result = ordo(ordo_cmd, ordo_env, "run", str(hello), "-i", "who=ordo", "-i", "times=1")
    assert result.returncode == 0, result.stderr
    assert "greet" in result.stdout and "SUCCESS" in result.stdout
    assert "execution 1 default/hello: SUCCESS" in result.stdout
    assert Path(ordo_env["ORDO_HOME"], "ordo.db").exists()


def test_run_of_failing_flow_exits_1_and_show_explains(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = write(
        tmp_path / "bad.yaml",
        """
        id: bad
        tasks:
          - {id: missing, type: shell, command: "no-such-command-xyz"}
    """,
    )
    result = ordo(ordo_cmd, ordo_env, "run", str(flow))
    assert result.returncode == 1
    shown = ordo(ordo_cmd, ordo_env, "executions", "show", "1")
    assert shown.returncode == 0
    assert "FAILED" in shown.stdout
    assert "no-such-command-xyz" in shown.stdout
    assert "Traceback" not in result.stderr + shown.stderr


def test_invalid_flow_exits_2_with_file_line_and_no_traceback(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = write(
        tmp_path / "typo.yaml",
        """
        id: typo
        tasks:
          - id: a
            type: shell
            comand: "true"
    """,
    )
    for verb in ("run", "validate"):
        result = ordo(ordo_cmd, ordo_env, verb, str(flow))
        assert result.returncode == 2
        assert f"{flow}:5:5: tasks[0].comand: unknown key" in result.stderr
        assert "comand" in result.stderr and "command" in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_input_value_is_a_usage_error(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    result = ordo(ordo_cmd, ordo_env, "run", str(hello), "-i", "times=many")
    assert result.returncode == 2
    assert "inputs.times" in result.stderr
    assert "Traceback" not in result.stderr
    missing = ordo(ordo_cmd, ordo_env, "run", str(hello), "-i", "nonsense")
    assert missing.returncode == 2 and "KEY=VALUE" in missing.stderr


def test_validate_prints_ok(ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path) -> None:
    result = ordo(ordo_cmd, ordo_env, "validate", str(hello))
    assert result.returncode == 0
    assert "OK" in result.stdout


def test_plan_shows_waves_and_runs_nothing(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    result = ordo(ordo_cmd, ordo_env, "plan", str(hello), "-i", "who=plan")
    assert result.returncode == 0, result.stderr
    assert "wave 1:" in result.stdout and "wave 2:" in result.stdout
    assert "hello plan" in result.stdout
    assert not Path(ordo_env["ORDO_HOME"], "ordo.db").exists()


def test_executions_list_show_logs_and_flows_as_json(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    assert ordo(ordo_cmd, ordo_env, "run", str(hello)).returncode == 0
    assert ordo(ordo_cmd, ordo_env, "run", str(hello), "-i", "who=again").returncode == 0
    listed = json.loads(ordo(ordo_cmd, ordo_env, "executions", "list", "--json").stdout)
    assert [e["id"] for e in listed] == [2, 1]
    assert listed[0]["inputs"] == {"who": "again", "times": 1}
    shown = json.loads(ordo(ordo_cmd, ordo_env, "executions", "show", "2", "--json").stdout)
    greet = shown["task_runs"][0]
    assert greet["outputs"] == {"times": 1}
    assert greet["attempts"][0]["exit_code"] == 0
    logs = ordo(ordo_cmd, ordo_env, "logs", "2", "--task", "greet")
    assert "greet#1 stdout: hello again" in logs.stdout
    flows = json.loads(ordo(ordo_cmd, ordo_env, "flows", "list", "--json").stdout)
    assert [(f["id"], f["revision"]) for f in flows] == [("hello", 1)]


def test_changed_file_makes_a_new_revision(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    assert ordo(ordo_cmd, ordo_env, "run", str(hello)).returncode == 0
    hello.write_text(hello.read_text().replace("hello {{", "hi {{"))
    assert ordo(ordo_cmd, ordo_env, "run", str(hello)).returncode == 0
    flows = json.loads(ordo(ordo_cmd, ordo_env, "flows", "list", "--json").stdout)
    assert flows[0]["revision"] == 2


def test_unknown_execution_is_a_clear_error(ordo_cmd: list[str], ordo_env: dict[str, str]) -> None:
    result = ordo(ordo_cmd, ordo_env, "executions", "show", "99")
    assert result.returncode == 2
    assert "execution 99 not found" in result.stderr


def test_kill_9_mid_run_leaves_a_consistent_store(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = write(
        tmp_path / "long.yaml",
        """
        id: long
        tasks:
          - {id: quick, type: shell, command: "echo fast"}
          - id: slow
            type: shell
            command: "echo started > slow.txt; sleep 30"
            depends_on: [quick]
    """,
    )
    proc = subprocess.Popen(
        [*ordo_cmd, "run", str(flow)],
        env=ordo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + patient(20)
    while not (tmp_path / "slow.txt").exists():
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(Path(ordo_env["ORDO_HOME"], "ordo.db"))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT state FROM executions").fetchall() == [("RUNNING",)]
    states = db.execute("SELECT task_id, state FROM task_runs ORDER BY id").fetchall()
    assert states == [("quick", "SUCCESS"), ("slow", "RUNNING")]
    lease = db.execute("SELECT lease_expires_at FROM attempts WHERE state = 'RUNNING'").fetchone()
    assert lease is not None and lease[0] > time.time() - 1
    db.close()
    shown = ordo(ordo_cmd, ordo_env, "executions", "show", "1")
    assert shown.returncode == 0 and "RUNNING" in shown.stdout


def test_ctrl_c_stops_the_run_and_fails_the_execution(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = write(
        tmp_path / "wait.yaml",
        """
        id: wait
        tasks:
          - {id: sleepy, type: shell, command: "echo go > started.txt; sleep 30"}
          - {id: later, type: shell, command: "true", depends_on: [sleepy]}
    """,
    )
    proc = subprocess.Popen(
        [*ordo_cmd, "run", str(flow)],
        env=ordo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + patient(20)
    while not (tmp_path / "started.txt").exists():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert "FAILED" in out and "interrupted by signal SIGINT" in out
    shown = json.loads(ordo(ordo_cmd, ordo_env, "executions", "show", "1", "--json").stdout)
    assert [(r["task"], r["state"]) for r in shown["task_runs"]] == [
        ("sleepy", "KILLED"),
        ("later", "SKIPPED"),
    ]


def test_logs_follow_prints_until_the_execution_ends(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = write(
        tmp_path / "slow.yaml",
        """
        id: slow
        tasks:
          - {id: talk, type: shell, command: "echo one; sleep 1; echo two"}
    """,
    )
    runner = subprocess.Popen(
        [*ordo_cmd, "run", str(flow)],
        env=ordo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = Path(ordo_env["ORDO_HOME"], "ordo.db")
    deadline = time.monotonic() + patient(20)
    while not db.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    followed = ordo(ordo_cmd, ordo_env, "logs", "1", "--follow", timeout=30)
    runner.wait(timeout=30)
    lines = followed.stdout.splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == ["talk#1 stdout: one", "talk#1 stdout: two"]


def test_demo_flow_runs_with_all_task_types(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(
        Path(__file__).parents[2] / "examples" / "nightly-report",
        demo,
        ignore=shutil.ignore_patterns("*.db", "out", "__pycache__"),
    )
    result = ordo(ordo_cmd, ordo_env, "run", str(demo / "flow.yaml"), "-i", "limit=2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" in result.stdout
    shown = json.loads(ordo(ordo_cmd, ordo_env, "executions", "show", "1", "--json").stdout)
    runs = {r["task"]: r for r in shown["task_runs"]}
    assert [a["state"] for a in runs["flaky-check"]["attempts"]] == ["FAILED", "SUCCESS"]
    assert runs["report"]["outputs"]["rows"] == [
        {"customer": "acme", "total": 150.5},
        {"customer": "globex", "total": 92.0},
    ]
    assert runs["notify"]["state"] == "FAILED"
    assert {r["state"] for t, r in runs.items() if t != "notify"} == {"SUCCESS"}


def test_db_option_works_before_and_after_the_command(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path, tmp_path: Path
) -> None:
    db = tmp_path / "elsewhere.db"
    assert ordo(ordo_cmd, ordo_env, "run", str(hello), "--db", str(db)).returncode == 0
    assert ordo(ordo_cmd, ordo_env, "--db", f"sqlite:///{db}", "run", str(hello)).returncode == 0
    listed = json.loads(
        ordo(ordo_cmd, ordo_env, "executions", "list", "--json", "--db", str(db)).stdout
    )
    assert len(listed) == 2
    assert not Path(ordo_env["ORDO_HOME"], "ordo.db").exists()
    bad = ordo(ordo_cmd, ordo_env, "executions", "list", "--db", "mysql://x/y")
    assert bad.returncode == 2 and "unknown database URL scheme 'mysql'" in bad.stderr


def test_run_json_prints_only_the_document(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    result = ordo(ordo_cmd, ordo_env, "run", str(hello), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["state"] == "SUCCESS"
    assert [r["task"] for r in document["task_runs"]] == ["greet", "shout"]
