"""Plain python attempts driven by the worker's loop (``ordo.worker.hosts``): the loop
sends them to warm hosts and reads the hosts' pipes in its own wait; no task thread takes
part, until a call into ordo or a stop needs one."""

from __future__ import annotations

import gc
import os
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import patient, wait_for

from ordo import engine, services
from ordo.clock import SystemClock
from ordo.engine import open_store
from ordo.model import State, Task
from ordo.runners import make_runners
from ordo.runners.base import RunContext
from ordo.runners.python import Listening
from ordo.store import Store
from ordo.store.records import Claim
from ordo.worker import Worker, WorkerSettings
from ordo.worker.calls import Running
from ordo.worker.events import Inbox
from ordo.worker.hosts import HostDriver


def _run(store: Store, folder: Path, flow: str, module: str) -> tuple[int, State, Worker]:
    (folder / "steps.py").write_text(textwrap.dedent(module))
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(flow))
    now = time.time()
    ex_id = engine.start_execution(store, engine.register_flow(store, path, now), {}, now)
    worker = Worker(
        store,
        make_runners(2),
        settings=WorkerSettings(slots=2, kill_grace=1.0),
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )
    try:
        return ex_id, worker.run_execution(ex_id), worker
    finally:
        worker.close()


def _lines(store: Store, ex_id: int, task: str) -> list[tuple[str, str]]:
    (run,) = [r for r in store.task_runs(ex_id) if r.task_id == task]
    attempts = {a.id for a in store.attempts(ex_id) if a.task_run_id == run.id}
    return [(line.stream, line.line) for line in store.logs(ex_id) if line.attempt_id in attempts]


def test_plain_python_tasks_run_on_no_thread_with_lines_and_outputs_kept(
    store: Store, tmp_path: Path
) -> None:
    ex_id, final, worker = _run(
        store,
        tmp_path,
        """
        id: plain
        tasks:
          - {id: a, type: python, function: 'steps:talk', with: {n: 1}}
          - {id: b, type: python, function: 'steps:talk', with: {n: 2}}
          - {id: c, type: python, function: 'steps:talk', with: {n: 3}, depends_on: [a, b]}
        """,
        """
        import os, sys
        def talk(n):
            print('out', n, flush=True)
            print('err', n, file=sys.stderr, flush=True)
            os.write(1, b'fd-level line\\n')
            sys.stdout.write('no newline at the end')
            return {'twice': n * 2}
        """,
    )
    assert final is State.SUCCESS
    assert not worker.launcher._pool._threads  # nothing ran on a task thread
    assert store.outputs(ex_id) == {"a": {"twice": 2}, "b": {"twice": 4}, "c": {"twice": 6}}
    lines = _lines(store, ex_id, "c")  # (the two pipes' lines may interleave either way)
    assert [line for stream, line in lines if stream == "stdout"] == [
        "out 3",
        "fd-level line",
        "no newline at the end",
    ]
    assert [line for stream, line in lines if stream == "stderr"] == ["err 3"]


def test_a_call_into_ordo_hands_the_attempt_to_a_thread_and_is_answered(
    store: Store, tmp_path: Path
) -> None:
    ex_id, final, worker = _run(
        store,
        tmp_path,
        """
        id: asks
        tasks:
          - {id: before, type: python, function: 'steps:say'}
          - {id: asks, type: python, function: 'steps:ask', depends_on: [before]}
        """,
        """
        from ordo.this import system
        def say():
            print('said')
        def ask():
            print('before the call')
            state = system.execution()['state']
            print('after the call')
            return {'state': state}
        """,
    )
    assert final is State.SUCCESS
    assert store.outputs(ex_id)["asks"] == {"state": "RUNNING"}
    assert worker.launcher._pool._threads  # its rest ran on a task thread
    assert _lines(store, ex_id, "asks") == [
        ("stdout", "before the call"),
        ("stdout", "after the call"),
    ]


def test_a_driven_attempt_past_its_timeout_is_stopped_and_the_next_one_runs(
    store: Store, tmp_path: Path
) -> None:
    started = time.monotonic()
    ex_id, final, _ = _run(
        store,
        tmp_path,
        """
        id: slow
        tasks:
          - {id: sleepy, type: python, function: 'steps:sleepy', timeout: 300ms,
             allow_failure: true}
          - {id: after, type: python, function: 'steps:quick', depends_on: [sleepy]}
        """,
        """
        import time
        def sleepy():
            print('going to sleep', flush=True)
            time.sleep(30)
        def quick():
            return {'ok': True}
        """,
    )
    assert time.monotonic() - started < patient(20)
    assert final is State.WARNING
    attempts = {a.task_run_id: a for a in store.attempts(ex_id)}
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert attempts[runs["sleepy"].id].reason == "timeout"
    assert runs["after"].state is State.SUCCESS
    assert store.outputs(ex_id)["after"] == {"ok": True}
    assert _lines(store, ex_id, "sleepy") == [("stdout", "going to sleep")]


def test_a_host_that_dies_fails_its_attempt_and_a_new_host_runs_the_next(
    store: Store, tmp_path: Path
) -> None:
    ex_id, final, _ = _run(
        store,
        tmp_path,
        """
        id: dies
        tasks:
          - {id: dies, type: python, function: 'steps:die', allow_failure: true}
          - {id: after, type: python, function: 'steps:quick', depends_on: [dies]}
        """,
        """
        import os
        def die():
            print('last words', flush=True)
            os._exit(3)
        def quick():
            return {'ok': True}
        """,
    )
    assert final is State.WARNING
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    (attempt,) = [a for a in store.attempts(ex_id) if a.task_run_id == runs["dies"].id]
    assert attempt.state is State.FAILED and attempt.exit_code == 3
    assert "ended unexpectedly (exit code 3)" in (attempt.error or "")
    assert _lines(store, ex_id, "dies") == [("stdout", "last words")]
    assert store.outputs(ex_id)["after"] == {"ok": True}


def test_a_killed_execution_stops_a_driven_attempt_and_its_host(
    store: Store, db: str, tmp_path: Path
) -> None:
    (tmp_path / "steps.py").write_text(
        "import os, time\n"
        "def sleepy():\n"
        "    print('pid', os.getpid(), flush=True)\n"
        "    time.sleep(60)\n"
    )
    path = tmp_path / "flow.yaml"
    path.write_text("id: killed\ntasks:\n  - {id: sleepy, type: python, function: steps:sleepy}\n")
    now = time.time()
    ex_id = engine.start_execution(store, engine.register_flow(store, path, now), {}, now)
    worker = Worker(
        store,
        make_runners(2),
        settings=WorkerSettings(slots=2, kill_grace=1.0, kill_check_every=0.1),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    other = open_store(db)  # the kill comes from elsewhere, as `ordo kill` does

    def pid() -> int | None:
        lines = [x.line for x in other.logs(ex_id) if x.line.startswith("pid ")]
        return int(lines[0].split()[1]) if lines else None

    def kill_when_running() -> None:
        wait_for("the task to print its pid", lambda: pid() is not None)
        services.kill(other, ex_id, "a test", time.time())

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    started = time.monotonic()
    try:
        final = worker.run_execution(ex_id)
    finally:
        worker.close()
        killer.join()
    host = pid()
    other.close()
    assert final is State.KILLED
    assert time.monotonic() - started < patient(30)
    (attempt,) = store.attempts(ex_id)
    assert attempt.state is State.KILLED
    assert host is not None and not _alive(host)  # its host was stopped with it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_attempt_that_spoils_its_outputs_file_fails_clearly_and_the_host_serves_on(
    store: Store, tmp_path: Path
) -> None:
    ex_id, final, _ = _run(
        store,
        tmp_path,
        """
        id: spoils
        tasks:
          - {id: asks, type: python, function: 'steps:asks', allow_failure: true}
          - {id: slow, type: python, function: 'steps:slow', timeout: 300ms,
             allow_failure: true}
          - {id: after, type: python, function: 'steps:quick', depends_on: [asks, slow]}
        """,
        """
        import os, time
        from ordo import this
        def asks():
            this.now()  # a call into ordo: the rest of it runs on a thread
            os.mkdir(os.environ['ORDO_OUTPUTS'])
        def slow():
            os.mkdir(os.environ['ORDO_OUTPUTS'])
            time.sleep(30)
        def quick():
            return {'ok': True}
        """,
    )
    assert final is State.WARNING
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    attempts = {a.task_run_id: a for a in store.attempts(ex_id)}
    asks = attempts[runs["asks"].id]
    assert asks.state is State.FAILED
    assert asks.error == "$ORDO_OUTPUTS cannot be read: Is a directory"
    assert attempts[runs["slow"].id].reason == "timeout"
    assert store.outputs(ex_id)["after"] == {"ok": True}


def test_a_busy_inbox_never_holds_up_the_hosts_the_loop_reads(tmp_path: Path) -> None:
    """Events always waiting (outcomes of other attempts, log wake-ups, notifications):
    the loop's wait still reads its hosts, and their attempts end."""
    (tmp_path / "steps.py").write_text("def plain():\n    return {'ok': 2}\n")
    runners = make_runners(1)
    inbox = Inbox(SystemClock())
    pool = ThreadPoolExecutor(2)
    ended: list[State] = []
    driver = HostDriver(runners, inbox, pool, lambda running, outcome: ended.append(outcome.state))
    busy = threading.Event()

    def wake_every_millisecond() -> None:
        while not busy.is_set():
            inbox.wake("busy")
            time.sleep(0.001)

    waker = threading.Thread(target=wake_every_millisecond)
    waker.start()
    claim = Claim(1, 1, 1, 1, "t", 1, 0.0)
    task = Task("t", "python")
    ctx = RunContext(1, 1, 1, 1, task, {"function": "steps:plain"}, {}, {}, str(tmp_path), _drop)
    try:
        driver.start(Running(claim, ctx))
        wait_for("the attempt to end", lambda: bool(inbox.take(0.05)) and bool(ended))
    finally:
        busy.set()
        waker.join()
        driver.release()
        pool.shutdown()
        inbox.close()
        runners.close()
    assert ended == [State.SUCCESS]


def _drop(stream: str, line: str) -> None:
    pass


def test_an_attempt_whose_end_fails_leaves_the_one_queued_behind_it_running(
    tmp_path: Path,
) -> None:
    """A bug where an attempt with others queued behind it ends (its host's fds kept for
    the next) is logged; the one behind it still runs and ends, and no fd of the host
    is left in the loop's poll (with nothing to read it, it would wake the loop at once,
    every time)."""
    (tmp_path / "steps.py").write_text("def plain():\n    return None\n")
    runners = make_runners(1)
    inbox = Inbox(SystemClock())
    pool = ThreadPoolExecutor(2)
    ended: list[int] = []

    def end(running: Running, outcome: object) -> None:
        ended.append(running.claim.attempt_id)
        if running.claim.attempt_id == 2:
            raise RuntimeError("a bug where the outcome goes")

    task = Task("t", "python")

    def attempt(i: int) -> Running:
        claim = Claim(i, i, 1, 1, "t", 1, 0.0)
        fields = {"function": "steps:plain"}
        ctx = RunContext(1, i, i, 1, task, fields, {}, {}, str(tmp_path), _drop)
        return Running(claim, ctx, since=time.time())

    driver = HostDriver(runners, inbox, pool, end, lambda running: None, queue=3, below=60.0)
    try:
        driver.start(attempt(1))  # (how long its function takes is known after it)
        wait_for("the first attempt to end", lambda: inbox.take(0.05) is not None and bool(ended))
        driver.start(attempt(2))
        behind = driver.behind(1, task)
        assert behind is not None  # (its reply is not read yet: it runs, as far as we know)
        driver.start(attempt(3), behind)
        wait_for("the third attempt to end", lambda: inbox.take(0.05) is not None and 3 in ended)
        assert ended == [1, 2, 3]
        assert inbox._watched == {}
    finally:
        driver.release()
        pool.shutdown()
        inbox.close()
        runners.close()


def test_an_ended_attempt_is_freed_at_once_not_left_to_the_garbage_collector(
    store: Store, tmp_path: Path
) -> None:
    """What reads an attempt and runs it (its context, its reading of the host's pipes)
    is let go of when it ends, so no garbage collection is needed to free it: with the
    collector off, none is left after a run (a worker running quick tasks spent 8 % of
    its time collecting them)."""
    tasks = "\n".join(f"  - {{id: t{i}, type: python, function: 'steps:f'}}" for i in range(8))
    kinds = (Listening, Running, RunContext)
    was_on = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = {id(o) for o in gc.get_objects() if isinstance(o, kinds)}
        _, final, worker = _run(store, tmp_path, f"id: quick\ntasks:\n{tasks}\n", "def f(): pass\n")
        del worker
        left = [o for o in gc.get_objects() if isinstance(o, kinds) and id(o) not in before]
    finally:
        if was_on:
            gc.enable()
    assert final is State.SUCCESS
    assert left == []
