"""Concurrency limits with real processes on SQLite and PostgreSQL: a flow's
``concurrency`` (queue, cancel, fail) under a burst of submissions from separate
processes, and task ``concurrency_key`` limits across executions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from support import ordo, patient, state_of, wait_for

from ordo.engine import open_store
from ordo.errors import StoreError
from ordo.model import State
from ordo.store import Store

#: How many submissions arrive together, and from how many processes: each process
#: submits from as many threads, each with its own store connection, so the burst crosses
#: processes (as separate ``ordo submit`` calls would) without starting hundreds of them on
#: a 2-core runner.
BURST, SUBMITTERS = 200, 8

#: A submitter as small as it gets (what ``ordo submit`` does, without the CLI's
#: start-up), THREADS times at once: every thread waits for the go file, so that the
#: submissions of all processes start at the same moment.
SUBMIT = """
import os, sys, threading, time
from ordo import engine
from ordo.engine import open_store

db, flow, go, threads = sys.argv[1:]
ids, errors = [], []

def connect():
    for _ in range(20):  # a loaded machine's PostgreSQL may time a connection out
        try:
            return open_store(db)
        except Exception:
            time.sleep(0.5)
    return open_store(db)

def submit():
    try:
        store = connect()
        try:
            while not os.path.exists(go):
                time.sleep(0.005)
            revision = engine.register_flow(store, flow, time.time())
            ids.append(engine.start_execution(store, revision, {}, time.time()))
        finally:
            store.close()
    except Exception as e:
        errors.append(repr(e))

workers = [threading.Thread(target=submit) for _ in range(int(threads))]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(*ids)
if errors:
    sys.exit("\\n".join(errors))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def burst_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store for 200 connections at once: a SQLite file, or on PostgreSQL a private
    cluster allowing 300 connections (the shared server allows 100 in all)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("roomy_postgres_url")
        return url
    return str(tmp_path / "ordo.db")


def open_patiently(db: str) -> Store:
    """The store, connecting again while a loaded machine's PostgreSQL times out the
    connection (the burst's 200 connections and its worker share 2 cores)."""
    deadline = time.monotonic() + patient(60)
    while True:
        try:
            return open_store(db)
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def all_ended(db: str) -> bool:
    store = open_patiently(db)
    try:
        return all(e.state.terminal for e in store.list_executions(limit=10_000))
    finally:
        store.close()


def most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end at the same instant
    as a start does not overlap it)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def task_intervals(log: Path) -> list[tuple[float, float]]:
    """``S <id> <time>`` and ``E <id> <time>`` lines written by the tasks."""
    starts: dict[str, float] = {}
    spans = []
    for line in log.read_text().split("\n"):
        if not line:
            continue
        kind, key, at = line.split()
        if kind == "S":
            starts[key] = float(at)
        else:
            spans.append((starts.pop(key), float(at)))
    assert not starts, f"tasks that never ended: {sorted(starts)}"
    return spans


def stamped(log: Path, seconds: float) -> str:
    """A shell command writing its start and end to ``log``."""
    return (
        f'k="$ORDO_TASK_RUN_ID"; echo "S $k $(date +%s.%N)" >> {log}; sleep {seconds}; '
        f'echo "E $k $(date +%s.%N)" >> {log}'
    )


def test_a_flow_limit_holds_under_a_burst_of_200_simultaneous_submissions(
    ordo_cmd: list[str], ordo_env: dict[str, str], burst_db: str, tmp_path: Path
) -> None:
    db = burst_db
    log = tmp_path / "spans.txt"
    flow = tmp_path / "limited.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: limited
        concurrency: {{limit: 2}}
        tasks:
          - id: work
            type: shell
            command: '{stamped(log, 0.02)}'
        """)
    )
    assert ordo(ordo_cmd, ordo_env, db, "flows", "add", str(flow)).returncode == 0
    worker = subprocess.Popen(
        [*ordo_cmd, "worker", "--workers", "4", "--db", db],
        env=ordo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    go = tmp_path / "go"
    submitters = []
    try:
        submitters = [
            subprocess.Popen(
                [sys.executable, "-c", SUBMIT, db, str(flow), str(go), str(BURST // SUBMITTERS)],
                env=ordo_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(SUBMITTERS)
        ]
        go.touch()
        ids = []
        for proc in submitters:
            out, err = proc.communicate(timeout=patient(120))
            assert proc.returncode == 0, err
            ids.extend(int(i) for i in out.split())
        assert len(set(ids)) == BURST
        wait_for("every execution to end", lambda: all_ended(db), timeout=240)
    finally:
        for proc in submitters:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        worker.terminate()
        worker.wait(timeout=60)
    store = open_patiently(db)
    try:
        executions = [store.get_execution(i) for i in ids]
        histories = {i: store.history(i) for i in ids}
    finally:
        store.close()
    assert {e.state for e in executions} == {State.SUCCESS}
    running = []
    for history in histories.values():
        moves = [h for h in history if h.task_run_id is None]
        began = [h.at for h in moves if h.to_state is State.RUNNING]
        ended = [h.at for h in moves if h.to_state is State.SUCCESS]
        running.append((began[0], ended[0]))
    queued = [i for i, h in histories.items() if any(x.to_state is State.QUEUED for x in h)]
    assert queued, f"a burst of {BURST} with a limit of 2 queues some"
    assert most_at_once(running) <= 2
    assert most_at_once(task_intervals(log)) <= 2


def test_cancel_and_fail_turn_away_what_is_over_the_limit(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    for behavior in ("cancel", "fail"):
        (tmp_path / f"{behavior}.yaml").write_text(
            textwrap.dedent(f"""
            id: {behavior}
            concurrency: {{limit: 1, behavior: {behavior}}}
            tasks:
              - id: a
                type: shell
                command: 'touch {started}-{behavior}; while [ ! -e {gate} ]; do sleep 0.05; done'
            """)
        )
    runs = {
        b: subprocess.Popen(
            [*ordo_cmd, "run", str(tmp_path / f"{b}.yaml"), "--db", db],
            env=ordo_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for b in ("cancel", "fail")
    }
    try:
        wait_for("both to run", lambda: all(Path(f"{started}-{b}").exists() for b in runs))
        cancelled = ordo(ordo_cmd, ordo_env, db, "run", str(tmp_path / "cancel.yaml"), "--json")
        refused = ordo(ordo_cmd, ordo_env, db, "run", str(tmp_path / "fail.yaml"), "--json")
    finally:
        gate.touch()
        for proc in runs.values():
            proc.wait(timeout=60)
    assert cancelled.returncode == 1, cancelled.stderr
    doc = json.loads(cancelled.stdout)
    assert doc["state"] == "KILLED"
    assert doc["reason"] == "cancelled: default/cancel already has 1 of 1 running"
    assert [r["state"] for r in doc["task_runs"]] == ["KILLED"]
    assert refused.returncode == 1, refused.stderr
    doc = json.loads(refused.stdout)
    assert doc["state"] == "FAILED"
    assert doc["reason"] == "refused: default/fail already has 1 of 1 running"
    assert [r["state"] for r in doc["task_runs"]] == ["SKIPPED"]


def test_a_queued_execution_shows_why_starts_when_a_slot_frees_and_can_be_killed(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    flow = tmp_path / "nightly.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: nightly-report
        concurrency: {{limit: 1}}
        tasks:
          - {{id: a, type: shell, command: 'while [ ! -e {gate} ]; do sleep 0.05; done'}}
        """)
    )
    first = subprocess.Popen(
        [*ordo_cmd, "run", str(flow), "--db", db],
        env=ordo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("the first to run", lambda: state_of(db, 1) is State.RUNNING)
        second = subprocess.Popen(
            [*ordo_cmd, "run", str(flow), "--db", db, "--json"],
            env=ordo_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        wait_for("the second to be queued", lambda: state_of(db, 2) is State.QUEUED)
        third = ordo(ordo_cmd, ordo_env, db, "submit", str(flow))
        assert third.stdout.strip() == "3"
        shown = ordo(ordo_cmd, ordo_env, db, "executions", "show", "2")
        assert "QUEUED" in shown.stdout
        assert "reason: waiting for default/nightly-report: 1 of 1 running" in shown.stdout
        as_json = json.loads(
            ordo(ordo_cmd, ordo_env, db, "executions", "show", "2", "--json").stdout
        )
        assert as_json["waiting_for"] == {
            "kind": "flow",
            "name": "default/nightly-report",
            "running": 1,
            "limit": 1,
        }
        killed = ordo(ordo_cmd, ordo_env, db, "kill", "3")
        assert killed.returncode == 0, killed.stderr
        assert killed.stdout.strip() == "execution 3 default/nightly-report: KILLED"
        gate.touch()
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0
        assert json.loads(out)["state"] == "SUCCESS"
        assert first.wait(timeout=60) == 0
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    store = open_store(db)
    try:
        moves = [(h.from_state, h.to_state) for h in store.history(2) if h.task_run_id is None]
        third_state = store.get_execution(3).state
    finally:
        store.close()
    assert moves[:3] == [
        (None, State.CREATED),
        (State.CREATED, State.QUEUED),
        (State.QUEUED, State.RUNNING),
    ]
    assert third_state is State.KILLED


def test_task_runs_sharing_a_concurrency_key_run_at_most_its_limit_at_once(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    log = tmp_path / "spans.txt"
    flow = tmp_path / "loads.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: loads
        tasks:
          - id: load
            type: shell
            for_each: [1, 2, 3, 4]
            concurrency_key: warehouse
            concurrency_limit: 2
            command: '{stamped(log, 0.3)}'
          - {{id: free, type: shell, command: 'true'}}
        """)
    )
    runs = [
        subprocess.Popen(
            [*ordo_cmd, "run", str(flow), "--db", db, "--workers", "4"],
            env=ordo_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in runs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    spans = task_intervals(log)
    assert len(spans) == 8
    assert most_at_once(spans) == 2  # two executions of four items each, two at a time
