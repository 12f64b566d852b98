"""``ordo kill`` and ``ordo resume`` with real processes and real signals, on SQLite and
PostgreSQL."""

from __future__ import annotations

import collections
import json
import random
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

from support import ordo, start, state_of, wait_for

from ordo.engine import open_store
from ordo.model import State
from ordo.runners.process import this_machine


def running_attempts(db: str, execution_id: int) -> int:
    store = open_store(db)
    try:
        return sum(1 for a in store.attempts(execution_id) if a.state is State.RUNNING)
    finally:
        store.close()


def processes_with(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


def test_kill_stops_running_tasks_children_and_what_has_not_started(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    marker = f"stubborn-{uuid.uuid4().hex[:8]}"
    (tmp_path / "child.yaml").write_text(
        textwrap.dedent(f"""
        id: child
        tasks:
          - {{id: deep, type: shell, command: "sleep 60 # {marker}-child"}}
        """)
    )
    assert (
        ordo(ordo_cmd, ordo_env, db, "flows", "add", str(tmp_path / "child.yaml")).returncode == 0
    )
    flow = tmp_path / "long.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: long
        tasks:
          - {{id: stubborn, type: shell, command: "trap '' TERM; sleep 60 # {marker}"}}
          - {{id: call, type: flow, flow: child}}
          - {{id: after, type: shell, command: "true", depends_on: [stubborn]}}
        """)
    )
    run = start(ordo_cmd, ordo_env, db, "run", str(flow))
    try:
        wait_for("both tasks to run", lambda: len(processes_with(marker)) == 2)
        killed = ordo(ordo_cmd, ordo_env, db, "kill", "1")
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert killed.stdout.strip() == "execution 1 default/long: KILLED"
        assert run.wait(timeout=30) == 1
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert processes_with(marker) == []
    store = open_store(db)
    try:
        execution = store.get_execution(1)
        runs = {r.task_id: r for r in store.task_runs(1)}
        (child,) = store.children(1)
    finally:
        store.close()
    assert execution.state is State.KILLED
    assert execution.reason is not None and execution.reason.endswith("with ordo kill")
    assert runs["stubborn"].state is State.KILLED
    assert runs["after"].state is State.KILLED
    assert runs["call"].state is State.KILLED
    assert child.state is State.KILLED
    assert child.reason is not None and child.reason.startswith("parent execution 1 killed")
    again = ordo(ordo_cmd, ordo_env, db, "kill", "1")
    assert again.returncode == 2
    assert "execution 1 already ended KILLED at" in again.stderr
    assert "nothing to kill" in again.stderr


def test_kill_of_an_execution_whose_run_died_ends_it_at_once(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "nap.yaml"
    flow.write_text("id: nap\ntasks:\n  - {id: nap, type: shell, command: 'sleep 2'}\n")
    run = start(ordo_cmd, ordo_env, db, "run", str(flow))
    wait_for("the task to start", lambda: running_attempts(db, 1) == 1)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed = ordo(ordo_cmd, ordo_env, db, "kill", "1", "--wait", "10")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert state_of(db, 1) is State.KILLED


def test_resume_finishes_an_execution_after_kill_9(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    """The issue's chaos test: 20 random kill -9s during a 200-task execution whose tasks
    append a line to a file, each followed by ordo resume."""
    out = tmp_path / "lines.txt"
    tasks = "\n".join(
        f"  - {{id: t{i}, type: shell, command: 'sleep 0.05; echo t{i} >> {out}'}}"
        for i in range(200)
    )
    flow = tmp_path / "chaos.yaml"
    flow.write_text(f"id: chaos\ndefaults:\n  retry: {{attempts: 30}}\ntasks:\n{tasks}\n")
    rng = random.Random(7)
    current = start(ordo_cmd, ordo_env, db, "run", str(flow), "--workers", "4")
    wait_for("the execution to start", lambda: out.exists())
    for _ in range(20):
        time.sleep(rng.uniform(0.1, 0.4))
        if current.poll() is not None:
            break  # it finished before this kill
        current.send_signal(signal.SIGKILL)
        current.wait()
        current = start(ordo_cmd, ordo_env, db, "resume", "1", "--workers", "4")
    assert current.wait(timeout=120) == 0
    wait_for("orphaned tasks to finish", lambda: not processes_with(str(out)), timeout=10)
    store = open_store(db)
    try:
        execution = store.get_execution(1)
        attempts = store.attempts(1)
        names = {r.id: r.task_id for r in store.task_runs(1)}
    finally:
        store.close()
    assert execution.state is State.SUCCESS
    appended = collections.Counter(out.read_text().split())
    tries = collections.Counter(names[a.task_run_id] for a in attempts)
    assert set(appended) == set(names.values())
    assert all(appended[t] <= tries[t] for t in appended), (appended, tries)
    assert not [a for a in attempts if a.state is State.RUNNING]


def recorded_groups(db: str, execution_id: int) -> int:
    """How many process groups of the execution's running attempts were recorded."""
    store = open_store(db)
    try:
        worker_ids = {a.worker_id for a in store.attempts(execution_id) if a.worker_id}
        return len(store.lost_processes(this_machine(), worker_ids=sorted(worker_ids)))
    finally:
        store.close()


def test_resume_stops_a_dead_workers_task_before_it_runs_again(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    """kill -9 of ``ordo worker`` leaves its task's shell running; ``ordo resume`` right
    after stops that process group (and waits for it) before the task runs again, so
    the two runs never overlap: the first never writes its end mark."""
    marks = tmp_path / "marks.txt"
    flow = tmp_path / "slow.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: slow
        tasks:
          - id: slow
            type: shell
            retry: {{attempts: 2}}
            command: 'echo "start $$" >> {marks}; sleep 3; echo "end $$" >> {marks}'
        """)
    )
    submitted = ordo(ordo_cmd, ordo_env, db, "submit", str(flow))
    assert submitted.returncode == 0, submitted.stderr
    ex_id = int(submitted.stdout)
    worker = start(ordo_cmd, ordo_env, db, "worker", "--workers", "1", "--lease", "300s")
    try:
        wait_for("the task's process group recorded", lambda: recorded_groups(db, ex_id) == 1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    resumed = ordo(ordo_cmd, ordo_env, db, "resume", str(ex_id))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    lines = [line.split() for line in marks.read_text().splitlines()]
    assert [mark for mark, _ in lines] == ["start", "start", "end"], lines
    (_, first), (_, second), (_, ended) = lines
    assert ended == second != first  # the lost run was stopped before the new one began
    store = open_store(db)
    try:
        attempts = store.attempts(ex_id)
        assert store.get_execution(ex_id).state is State.SUCCESS
    finally:
        store.close()
    assert [(a.state, a.reason) for a in attempts] == [
        (State.FAILED, "lost"),
        (State.SUCCESS, None),
    ]


def test_resume_and_kill_refuse_what_they_cannot_do(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "ok.yaml"
    flow.write_text("id: ok\ntasks:\n  - {id: a, type: shell, command: 'true'}\n")
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 0
    resumed = ordo(ordo_cmd, ordo_env, db, "resume", "1")
    assert resumed.returncode == 2
    assert "execution 1 already ended SUCCESS at" in resumed.stderr
    assert "nothing to resume" in resumed.stderr
    missing = ordo(ordo_cmd, ordo_env, db, "kill", "99")
    assert missing.returncode == 2 and "execution 99 not found" in missing.stderr
    shown = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "1", "--json").stdout)
    assert shown["state"] == "SUCCESS"


def test_skip_and_continue_on_error(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "steps.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: steps
        tasks:
          - {id: a, type: shell, command: "true"}
          - {id: b, type: shell, command: "false", depends_on: a}
          - {id: c, type: shell, command: "true", depends_on: b}
          - {id: slow, type: shell, command: "sleep 1"}
          - {id: later, type: shell, command: "true", depends_on: slow}
        """)
    )
    skipped = ordo(ordo_cmd, ordo_env, db, "run", str(flow), "--skip", "b", "--json", "-q")
    assert skipped.returncode == 0, skipped.stderr
    runs = {r["task"]: r for r in json.loads(skipped.stdout)["task_runs"]}
    assert runs["b"]["state"] == "SKIPPED" and runs["b"]["reason"] == "skipped on request"
    assert runs["c"]["state"] == "SUCCESS"

    def states(*args: str) -> dict[str, str]:
        done = ordo(ordo_cmd, ordo_env, db, "run", str(flow), "--json", "-q", *args)
        assert done.returncode == 1
        return {r["task"]: r["state"] for r in json.loads(done.stdout)["task_runs"]}

    assert states()["later"] == "SKIPPED"  # the first failure stops the rest
    carried_on = states("--continue-on-error")
    assert carried_on["later"] == "SUCCESS" and carried_on["c"] == "SKIPPED"
    unknown = ordo(ordo_cmd, ordo_env, db, "run", str(flow), "--skip", "a,nope")
    assert unknown.returncode == 2
    assert "--skip: default/steps has no task 'nope' (tasks: a, b, c, slow, later)" in (
        unknown.stderr
    )


def test_restart_runs_failed_and_skipped_task_runs_again_in_place(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "rs.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: rs
        continue_on_error: true
        inputs:
          ok: {type: bool, default: false}
        tasks:
          - {id: a, type: shell, command: 'echo "v=1" >> "$ORDO_OUTPUTS"'}
          - {id: b, type: shell, command: "{{ 'true' if inputs.ok else 'false' }}", depends_on: a}
          - {id: c, type: shell, command: "echo got {{ outputs.a.v }}", depends_on: b}
          - id: each
            type: shell
            for_each: [1, 2, 3]
            command: "test {{ fork.value }} -ne 2 || {{ 'true' if inputs.ok else 'false' }}"
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 1

    def runs(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, int]]:
        doc = json.loads(result.stdout)
        return {r["task"]: (r["state"], len(r["attempts"])) for r in doc["task_runs"]}

    again = ordo(ordo_cmd, ordo_env, db, "restart", "1", "--json", "-q")
    assert again.returncode == 1
    assert runs(again) == {
        "a": ("SUCCESS", 1),
        "b": ("FAILED", 2),
        "c": ("SKIPPED", 0),
        "each": ("FAILED", 1),
        "each[0]": ("SUCCESS", 1),
        "each[1]": ("FAILED", 2),
        "each[2]": ("SUCCESS", 1),
    }
    fixed = ordo(ordo_cmd, ordo_env, db, "restart", "1", "-i", "ok=true", "--json", "-q")
    assert fixed.returncode == 0, fixed.stderr
    assert runs(fixed) == {
        "a": ("SUCCESS", 1),
        "b": ("SUCCESS", 3),
        "c": ("SUCCESS", 1),
        "each": ("SUCCESS", 1),
        "each[0]": ("SUCCESS", 1),
        "each[1]": ("SUCCESS", 3),
        "each[2]": ("SUCCESS", 1),
    }
    logs = ordo(ordo_cmd, ordo_env, db, "logs", "1", "--task", "c")
    assert "got 1" in logs.stdout  # a kept its outputs
    store = open_store(db)
    try:
        states = [(h.from_state, h.to_state) for h in store.history(1) if h.task_run_id is None]
    finally:
        store.close()
    assert (State.FAILED, State.RESTARTED) in states
    assert (State.RESTARTED, State.RUNNING) in states
    refused = ordo(ordo_cmd, ordo_env, db, "restart", "1")
    assert refused.returncode == 2
    assert "execution 1 is SUCCESS; restart needs FAILED, KILLED or WARNING" in refused.stderr


def test_restart_from_a_task_runs_it_and_what_depends_on_it(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "from.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: from
        continue_on_error: true
        tasks:
          - {id: a, type: shell, command: "true"}
          - {id: b, type: shell, command: "true", depends_on: a}
          - {id: c, type: shell, command: "true", depends_on: b}
          - {id: x, type: shell, command: "false"}
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 1
    unknown = ordo(ordo_cmd, ordo_env, db, "restart", "1", "--from", "nope")
    assert unknown.returncode == 2
    assert "--from: default/from has no task 'nope' (tasks: a, b, c, x)" in unknown.stderr
    done = ordo(ordo_cmd, ordo_env, db, "restart", "1", "--from", "b", "--json", "-q")
    doc = json.loads(done.stdout)
    attempts = {r["task"]: len(r["attempts"]) for r in doc["task_runs"]}
    assert attempts == {"a": 1, "b": 2, "c": 2, "x": 2}


def test_replay_reuses_what_ended_well_upstream_and_runs_the_rest(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    counter = tmp_path / "runs.txt"
    flow = tmp_path / "rp.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: rp
        inputs:
          ok: {{type: bool, default: false}}
        tasks:
          - {{id: a, type: shell, command: 'echo a >> {counter}; echo "v=7" >> "$ORDO_OUTPUTS"'}}
          - id: b
            type: shell
            command: "echo b >> {counter}; {{{{ 'true' if inputs.ok else 'false' }}}}"
            depends_on: a
          - id: c
            type: shell
            command: 'echo "got={{{{ outputs.a.v }}}}" >> "$ORDO_OUTPUTS"'
            depends_on: b
          - id: each
            type: shell
            for_each: [1, 2]
            command: 'echo "n={{{{ fork.value }}}}" >> "$ORDO_OUTPUTS"'
          - id: join
            type: shell
            command: "echo {{{{ outputs.each | length }}}}"
            depends_on: each
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 1
    running = ordo(ordo_cmd, ordo_env, db, "replay", "1", "--from", "nope")
    assert running.returncode == 2
    assert "--from: default/rp has no task 'nope' (tasks: a, b, c, each, join)" in running.stderr
    done = ordo(ordo_cmd, ordo_env, db, "replay", "1", "--from", "b", "-i", "ok=true", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["id"] == 2 and doc["original_id"] == 1 and doc["state"] == "SUCCESS"
    runs = {r["task"]: r for r in doc["task_runs"]}
    assert [a["number"] for a in runs["a"]["attempts"]] == [0]  # copied, not run
    assert runs["a"]["attempts"][0]["reason"] == "replayed"
    assert runs["a"]["outputs"] == {"v": 7}
    assert runs["c"]["outputs"] == {"got": 7}
    assert runs["each[1]"]["outputs"] == {"n": 2} and runs["join"]["state"] == "SUCCESS"
    assert [a["number"] for a in runs["b"]["attempts"]] == [1]
    assert counter.read_text().split() == ["a", "b", "b"]  # a ran once, in the original
    shown = ordo(ordo_cmd, ordo_env, db, "executions", "show", "2")
    assert "replay of execution 1" in shown.stdout
    assert "reused from execution 1" in shown.stdout
    original = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "1", "--json").stdout)
    assert original["state"] == "FAILED"  # untouched


def test_mark_sets_a_task_run_by_hand_and_settles_the_execution(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "mk.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: mk
        tasks:
          - {id: a, type: shell, command: "true"}
          - {id: b, type: shell, command: "false", depends_on: a}
          - {id: c, type: shell, command: "true", depends_on: b}
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 1
    unknown = ordo(ordo_cmd, ordo_env, db, "mark", "1", "zz", "success")
    assert unknown.returncode == 2
    assert "default/mk has no task 'zz' in this execution (tasks: a, b, c)" in unknown.stderr
    marked = ordo(ordo_cmd, ordo_env, db, "mark", "1", "b", "success", "--reason", "fixed")
    assert marked.returncode == 0, marked.stderr
    assert "task b of execution 1: FAILED -> SUCCESS" in marked.stdout
    assert "ordo restart 1 runs what is left" in marked.stdout
    again = ordo(ordo_cmd, ordo_env, db, "mark", "1", "b", "success")
    assert again.returncode == 2 and "task b of execution 1 is SUCCESS already" in again.stderr
    doc = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "1", "--json").stdout)
    b = next(r for r in doc["task_runs"] if r["task"] == "b")
    manual = b["attempts"][-1]
    assert manual["number"] == 2 and manual["reason"] == "marked"
    assert manual["error"].startswith("marked SUCCESS by ") and manual["error"].endswith(": fixed")
    assert manual["worker"] and "@" in manual["worker"]
    restarted = ordo(ordo_cmd, ordo_env, db, "restart", "1", "--json", "-q")
    assert restarted.returncode == 0, restarted.stderr
    runs = {
        r["task"]: (r["state"], len(r["attempts"]))
        for r in json.loads(restarted.stdout)["task_runs"]
    }
    assert runs == {"a": ("SUCCESS", 1), "b": ("SUCCESS", 2), "c": ("SUCCESS", 1)}
    failed = ordo(ordo_cmd, ordo_env, db, "mark", "1", "c", "failed")
    assert failed.returncode == 0, failed.stderr
    assert "execution 1: SUCCESS -> FAILED" in failed.stdout
    rerun = json.loads(ordo(ordo_cmd, ordo_env, db, "restart", "1", "--json", "-q").stdout)
    assert {r["task"]: len(r["attempts"]) for r in rerun["task_runs"]}["c"] == 3
    assert rerun["state"] == "SUCCESS"


def test_mark_of_the_only_failure_ends_the_execution_successfully(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "one.yaml"
    flow.write_text("id: one\ntasks:\n  - {id: a, type: shell, command: 'false'}\n")
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 1
    marked = ordo(ordo_cmd, ordo_env, db, "mark", "1", "a", "success")
    assert "execution 1: FAILED -> SUCCESS" in marked.stdout
    assert state_of(db, 1) is State.SUCCESS


def test_mark_settles_by_the_rule_an_execution_ends_by_outputs_included(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    """A mark settles an ended execution by the same rule as its end: the flow's
    outputs that cannot render (the marked task never made them) keep it FAILED, with
    no traceback; outputs that can are rendered."""
    flow = tmp_path / "outs.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: outs
        outputs:
          made: "{{ outputs.b.made }}"
        tasks:
          - {id: b, type: shell, command: "false"}
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow)).returncode == 1
    marked = ordo(ordo_cmd, ordo_env, db, "mark", "1", "b", "success")
    assert marked.returncode == 0, marked.stderr
    assert "Traceback" not in marked.stderr
    assert state_of(db, 1) is State.FAILED  # outputs.b.made does not render
    fine = tmp_path / "fine.yaml"
    fine.write_text(
        textwrap.dedent("""
        id: fine
        outputs:
          n: "{{ inputs.n }}"
        inputs:
          n: {type: int, default: 3}
        tasks:
          - {id: b, type: shell, command: "false"}
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "run", str(fine)).returncode == 1
    marked = ordo(ordo_cmd, ordo_env, db, "mark", "2", "b", "success")
    assert "execution 2: FAILED -> SUCCESS" in marked.stdout, marked.stdout
    doc = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "2", "--json").stdout)
    assert doc["outputs"] == {"n": 3}


def test_mark_success_in_a_running_execution_lets_what_it_skipped_run_on_resume(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    flow = tmp_path / "crash.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: crash
        tasks:
          - {id: bad, type: shell, command: "false"}
          - {id: after, type: shell, command: "true", depends_on: bad}
          - id: slow
            type: shell
            command: 'test "$ORDO_ATTEMPT" -gt 1 || sleep 30'
            retry: {attempts: 2}
        """)
    )
    run = start(ordo_cmd, ordo_env, db, "run", str(flow))
    wait_for("slow to run", lambda: running_attempts(db, 1) == 1 and _ended(db, 1, "bad"))
    run.send_signal(signal.SIGKILL)
    run.wait()
    marked = ordo(ordo_cmd, ordo_env, db, "mark", "1", "bad", "success")
    assert marked.returncode == 0, marked.stderr
    assert "to run again: after" in marked.stdout
    resumed = ordo(ordo_cmd, ordo_env, db, "resume", "1", "--json", "-q")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    doc = json.loads(resumed.stdout)
    states = {r["task"]: r["state"] for r in doc["task_runs"]}
    assert states == {"bad": "SUCCESS", "after": "SUCCESS", "slow": "SUCCESS"}


def _ended(db: str, execution_id: int, task: str) -> bool:
    store = open_store(db)
    try:
        return any(r.task_id == task and r.state.terminal for r in store.task_runs(execution_id))
    finally:
        store.close()


def test_restart_latest_revision_runs_new_tasks_and_restarts_failed_children_in_place(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    gate = tmp_path / "fixed"
    child = tmp_path / "child.yaml"
    child.write_text(
        textwrap.dedent(f"""
        id: child
        tasks:
          - {{id: prep, type: shell, command: 'echo prep >> {tmp_path}/prep.txt'}}
          - {{id: load, type: shell, command: 'test -e {gate}', depends_on: prep}}
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "flows", "add", str(child)).returncode == 0
    parent = tmp_path / "parent.yaml"
    parent.write_text("id: parent\ntasks:\n  - {id: call, type: flow, flow: child}\n")
    assert ordo(ordo_cmd, ordo_env, db, "run", str(parent)).returncode == 1
    parent.write_text(
        "id: parent\ntasks:\n  - {id: call, type: flow, flow: child}\n"
        "  - {id: report, type: shell, command: 'true', depends_on: call}\n"
    )
    assert ordo(ordo_cmd, ordo_env, db, "flows", "add", str(parent)).returncode == 0
    gate.touch()
    done = ordo(ordo_cmd, ordo_env, db, "restart", "1", "--revision", "latest", "--json", "-q")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["state"] == "SUCCESS"
    assert {r["task"]: r["state"] for r in doc["task_runs"]} == {
        "call": "SUCCESS",
        "report": "SUCCESS",
    }
    assert [c["id"] for c in doc["children"]] == [2]  # the same child, restarted in place
    kid = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "2", "--json").stdout)
    assert kid["state"] == "SUCCESS"
    assert {r["task"]: len(r["attempts"]) for r in kid["task_runs"]} == {"prep": 1, "load": 2}
    assert (tmp_path / "prep.txt").read_text().split() == ["prep"]
