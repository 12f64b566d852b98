"""Many ``ordo worker`` processes on one PostgreSQL database: exactly once, chaos,
graceful stop, queues."""

from __future__ import annotations

import collections
import json
import random
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import patient

from ordo.engine import open_store
from ordo.runners.process import stop_groups, this_machine
from ordo.store.records import AttemptRow


def ordo(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)


class Workers:
    """Starts ``ordo worker`` processes and ends them (only those) at the end."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.cmd, self.env, self.log_dir = cmd, env, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*self.cmd, "worker", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def workers(
    ordo_cmd: list[str], ordo_env: dict[str, str], postgres_url: str, tmp_path: Path
) -> Iterator[Workers]:
    pool = Workers(ordo_cmd, {**ordo_env, "ORDO_DB": postgres_url}, tmp_path)
    yield pool
    pool.stop_all()


def wait_for(what: str, check: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + patient(timeout)
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def taken(url: str, ex_id: int) -> bool:
    """Whether a worker has claimed one of the execution's task runs."""
    store = open_store(url)
    try:
        return any(r.state.value != "CREATED" for r in store.task_runs(ex_id))
    finally:
        store.close()


def finished(url: str, ids: list[int]) -> bool:
    store = open_store(url)
    try:
        return all(store.get_execution(i).state.terminal for i in ids)
    finally:
        store.close()


def test_four_workers_run_2000_task_runs_exactly_once(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    flow = tmp_path / "many.yaml"
    flow.write_text(
        "id: many\ntasks:\n"
        + "".join(f"  - {{id: t{i}, type: python, function: 'noop:noop'}}\n" for i in range(500))
    )
    ids = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout) for _ in range(4)]
    for _ in range(4):
        workers.start("--workers", "2")
    wait_for("4 executions", lambda: finished(postgres_url, ids))
    store = open_store(postgres_url)
    try:
        for ex_id in ids:
            assert store.get_execution(ex_id).state.value == "SUCCESS"
            runs = store.task_runs(ex_id)
            attempts = store.attempts(ex_id)
            assert len(runs) == 500 and {r.state.value for r in runs} == {"SUCCESS"}
            assert sorted(a.task_run_id for a in attempts) == sorted(r.id for r in runs)
            assert {a.number for a in attempts} == {1}
        used = {a.worker_id for ex_id in ids for a in store.attempts(ex_id)}
        assert len(used) >= 2  # the work was shared
    finally:
        store.close()


def test_chaos_killed_workers_lose_nothing(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "lines.txt"
    flow = tmp_path / "chaos.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: chaos
        defaults:
          retry: {attempts: 10}
        tasks:
    """)
        + "".join(
            f"  - {{id: t{i}, type: shell, command: 'echo $ORDO_TASK_ID >> {out}; sleep 0.1'}}\n"
            for i in range(300)
        )
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout)]
    args = ("--workers", "2", "--lease", "2s", "--grace", "1s")
    live = [workers.start(*args) for _ in range(3)]
    rng = random.Random(3)
    killed_pids: list[int] = []
    for _ in range(10):
        time.sleep(1)
        victim = live.pop(rng.randrange(len(live)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_pids.append(victim.pid)
        live.append(workers.start(*args))
    wait_for("the chaos execution", lambda: finished(postgres_url, [ex_id]), timeout=120)
    store = open_store(postgres_url)
    try:
        assert store.get_execution(ex_id).state.value == "SUCCESS"
        attempts = store.attempts(ex_id)
        runs = {r.id: r.task_id for r in store.task_runs(ex_id)}
    finally:
        store.close()
    appended = collections.Counter(out.read_text().split())
    tries = collections.Counter(runs[a.task_run_id] for a in attempts)
    assert set(appended) == set(runs.values())
    assert all(appended[t] <= tries[t] for t in appended)
    assert not [a for a in attempts if a.state.value == "RUNNING"]
    lost = [a for a in attempts if a.state.value != "SUCCESS"]
    assert lost, "ten kills of busy workers lost no attempt"
    for attempt in lost:  # started: lost; only claimed (prefetched): handed back
        assert int((attempt.worker_id or "").split(":")[1]) in killed_pids
        if attempt.reason == "lost":
            assert attempt.error == f"worker lost ({attempt.worker_id})"
        else:  # by the reaper, or by the worker itself, held up on a busy machine
            assert attempt.reason == "handed back"
            assert attempt.error in (
                f"claimed by a worker lost before it started the attempt ({attempt.worker_id})",
                "its claim was not renewed in time (the worker was held up)",
            )


def test_sigterm_lets_a_running_task_finish(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "long.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: long
        tasks:
          - {{id: long, type: shell, command: "touch {tmp_path}/started; sleep 2"}}
    """)
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "run", str(flow), "--detach").stdout)]
    proc = workers.start("--grace", "30s")
    wait_for("the task to start", (tmp_path / "started").exists, timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    store = open_store(postgres_url)
    try:
        assert store.get_execution(ex_id).state.value == "SUCCESS"
        (attempt,) = store.attempts(ex_id)
        assert attempt.state.value == "SUCCESS"
    finally:
        store.close()


def test_sigterm_past_the_grace_hands_the_task_back(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "longer.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: longer
        tasks:
          - {{id: slow, type: shell, command: "touch {tmp_path}/started-$ORDO_ATTEMPT; sleep 30"}}
    """)
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout)]
    first = workers.start("--grace", "0.3s")
    wait_for("the task to start", (tmp_path / "started-1").exists, timeout=30)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    store = open_store(postgres_url)
    try:
        (attempt,) = store.attempts(ex_id)
        assert (attempt.state.value, attempt.reason) == ("KILLED", "handed back")
        assert store.get_execution(ex_id).state.value == "RUNNING"
    finally:
        store.close()
    workers.start()
    wait_for("the task to start again", (tmp_path / "started-2").exists, timeout=30)


def test_queues_send_tasks_to_the_workers_that_serve_them(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "queues.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: queues
        tasks:
          - {id: anywhere, type: shell, command: "true"}
          - {id: special, type: shell, command: "true", queue: gpu, depends_on: [anywhere]}
    """)
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout)]
    plain = workers.start()
    store = open_store(postgres_url)
    try:
        wait_for(
            "the default task",
            lambda: bool(
                store.outputs(ex_id) is not None
                and [
                    r
                    for r in store.task_runs(ex_id)
                    if r.task_id == "anywhere" and r.state.terminal
                ]
            ),
            timeout=30,
        )
        time.sleep(1.5)  # a default worker must not take the gpu task
        assert {r.task_id: r.state.value for r in store.task_runs(ex_id)}["special"] == "CREATED"
        gpu = workers.start("--queue", "gpu")
        wait_for("the gpu task", lambda: finished(postgres_url, [ex_id]), timeout=30)
        attempts = {a.task_run_id: a.worker_id for a in store.attempts(ex_id)}
        runs = {r.task_id: r.id for r in store.task_runs(ex_id)}
        assert str(gpu.pid) in (attempts[runs["special"]] or "")
        assert str(plain.pid) in (attempts[runs["anywhere"]] or "")
        listed = json.loads(ordo(ordo_cmd, workers.env, "workers", "list", "--json").stdout)
        assert {w["queues"] for w in listed} == {"default", "gpu"}
    finally:
        store.close()


def test_workers_reconnect_when_the_server_drops_their_connections(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    import psycopg

    flow = tmp_path / "steady.yaml"
    flow.write_text(
        "id: steady\ntasks:\n"
        + "".join(f"  - {{id: t{i}, type: shell, command: 'sleep 0.1'}}\n" for i in range(40))
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout)]
    workers.start("--workers", "2")
    wait_for("the worker to take tasks", lambda: taken(postgres_url, ex_id))
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as admin:

        def drop_connections() -> bool:
            # between rounds the workers may still be reconnecting: wait until they are back
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
            return bool(dropped and dropped[0] >= 1)

        for _ in range(6):
            time.sleep(0.3)
            wait_for("a worker connection to drop", drop_connections, timeout=20)
    wait_for("the execution", lambda: finished(postgres_url, [ex_id]), timeout=60)
    store = open_store(postgres_url)
    try:
        assert store.get_execution(ex_id).state.value == "SUCCESS"
        assert {r.state.value for r in store.task_runs(ex_id)} == {"SUCCESS"}
    finally:
        store.close()
    log = (tmp_path / "worker-0.log").read_text()
    assert "reconnecting" in log


def test_a_killed_workers_prefetched_claims_come_back_before_its_lease_ends(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    """A worker with 2 slots claims 18 task runs (2 to run, 16 ahead) and is SIGKILLed:
    the 16 it never started are handed back once their short claim lease ends and run
    on another worker, while the 2 it started stay its own until their (long) lease
    ends."""
    go = tmp_path / "go"
    flow = tmp_path / "ahead.yaml"
    command = f"while [ ! -e {go} ]; do sleep 0.05; done"
    flow.write_text(
        "id: ahead\ntasks:\n"
        + "".join(f"  - {{id: t{i:02}, type: shell, command: '{command}'}}\n" for i in range(18))
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout)]
    args = ("--workers", "2", "--lease", "300s")
    victim = workers.start(*args)

    def attempts() -> list[AttemptRow]:
        store = open_store(postgres_url)
        try:
            return store.attempts(ex_id)
        finally:
            store.close()

    def claimed_and_started() -> bool:
        store = open_store(postgres_url)
        try:
            groups = store.lost_processes(this_machine(), worker_ids=[victim_id()])
        finally:
            store.close()
        return len(attempts()) == 18 and len(groups) == 2

    def victim_id() -> str:
        return next((a.worker_id or "" for a in attempts()), "")

    wait_for("18 claims, 2 of them started", claimed_and_started)
    lost_id = victim_id()
    store = open_store(postgres_url)
    try:
        groups = store.lost_processes(this_machine(), worker_ids=[lost_id])
    finally:
        store.close()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    go.touch()  # the tasks may end now (the victim's two orphans too)
    workers.start(*args)

    def prefetched_done() -> bool:
        return sum(1 for a in attempts() if a.state.value == "SUCCESS") == 16

    try:
        wait_for("the 16 claims taken ahead to run elsewhere", prefetched_done)
        rows = attempts()
    finally:
        stop_groups([(g.group, g.started) for g in groups], 1.0)  # the victim's orphans
    started = {g.attempt_id for g in groups}
    ours = [a for a in rows if a.worker_id == lost_id]
    assert len(ours) == 18
    # the two it started: still its own (RUNNING, leased) while the others ran elsewhere
    assert {(a.id, a.state.value) for a in ours if a.id in started} == {
        (i, "RUNNING") for i in started
    }
    for attempt in (a for a in ours if a.id not in started):
        assert (attempt.state.value, attempt.reason) == ("KILLED", "handed back")
        assert (
            attempt.error == f"claimed by a worker lost before it started the attempt ({lost_id})"
        )
    elsewhere = [a for a in rows if a.worker_id != lost_id]
    assert len(elsewhere) == 16 and {a.state.value for a in elsewhere} == {"SUCCESS"}
    assert {a.task_run_id for a in elsewhere} == {
        a.task_run_id for a in ours if a.id not in started
    }


def test_a_reaped_attempt_is_stopped_on_this_machine_before_it_runs_again(
    workers: Workers, ordo_cmd: list[str], postgres_url: str, tmp_path: Path
) -> None:
    """A worker is SIGKILLed while its task's shell runs; another worker on this machine
    takes the attempt back when its lease ends, stopping that shell first: the two runs
    of the task never overlap (the first never writes its end mark)."""
    marks = tmp_path / "marks.txt"
    flow = tmp_path / "slow.yaml"
    flow.write_text(
        textwrap.dedent(f"""
        id: slow
        tasks:
          - id: slow
            type: shell
            retry: {{attempts: 2}}
            command: 'echo "start $$" >> {marks}; sleep 4; echo "end $$" >> {marks}'
        """)
    )
    (ex_id,) = [int(ordo(ordo_cmd, workers.env, "submit", str(flow)).stdout)]
    args = ("--workers", "1", "--lease", "2s")
    victim = workers.start(*args)

    def recorded() -> bool:
        store = open_store(postgres_url)
        try:
            ids = sorted({a.worker_id or "" for a in store.attempts(ex_id)})
            return len(store.lost_processes(this_machine(), worker_ids=ids)) == 1
        finally:
            store.close()

    wait_for("the task's process group recorded", recorded)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    workers.start(*args)
    wait_for("the execution", lambda: finished(postgres_url, [ex_id]))
    lines = [line.split() for line in marks.read_text().splitlines()]
    assert [mark for mark, _ in lines] == ["start", "start", "end"], lines
    (_, first), (_, second), (_, ended) = lines
    assert ended == second != first
    store = open_store(postgres_url)
    try:
        assert store.get_execution(ex_id).state.value == "SUCCESS"
        reasons = [(a.state.value, a.reason) for a in store.attempts(ex_id)]
    finally:
        store.close()
    assert reasons == [("FAILED", "lost"), ("SUCCESS", None)]
