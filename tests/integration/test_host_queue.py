"""Quick plain python attempts queued on a busy python host (``ordo.worker.hosts``):
the host goes on to them without waiting for the loop. Each keeps its own lines and
outputs; none starts after a task of its execution failed; those a host never started
run again elsewhere (or end KILLED with their execution)."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import patient, wait_for

from ordo import engine, services
from ordo.engine import open_store
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.worker import Worker, WorkerSettings

#: Tasks that establish their function as quick before the ones a test is about.
WARM = 12


def _flow(tasks: list[str], *, extra: str = "") -> str:
    return "id: queue\n" + extra + "tasks:\n" + "".join(f"  - {t}\n" for t in tasks)


def _steps(count: int, extra: str = "") -> list[str]:
    """Tasks t0, t1... calling ``steps:step(n)`` with their number (``extra``: more of
    each task's fields)."""
    return [
        f"{{id: t{i}, type: python, function: 'steps:step', with: {{n: {i}}}{extra}}}"
        for i in range(count)
    ]


def _start(store: Store, folder: Path, flow: str, module: str) -> int:
    (folder / "steps.py").write_text(textwrap.dedent(module))
    path = folder / "flow.yaml"
    path.write_text(flow)
    now = time.time()
    return engine.start_execution(store, engine.register_flow(store, path, now), {}, now)


def _worker(store: Store, folder: Path, slots: int = 1, **settings: Any) -> Worker:
    settings.setdefault("host_queue", 3)
    # (a function's first attempt waits for its host to boot: on a busy machine its
    # typical time may still read above the default 5 ms after the warm-up tasks)
    settings.setdefault("host_queue_below", 0.05)
    worker = Worker(
        store,
        make_runners(slots),
        settings=WorkerSettings(slots=slots, kill_grace=1.0, **settings),
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )
    queued: list[int] = []
    start = worker.launcher.hosts.start

    def noting(running: Any, behind: Any = None) -> None:  # (observed, not changed)
        if behind is not None:
            queued.append(running.claim.attempt_id)
        start(running, behind)

    worker.launcher.hosts.start = noting  # type: ignore[method-assign]
    worker.queued = queued  # type: ignore[attr-defined]
    announced: list[int] = []  # the attempts the listener heard start
    listener = worker.launcher.listener
    heard = listener.started

    def hearing(claim: Any) -> None:
        announced.append(claim.attempt_id)
        heard(claim)

    listener.started = hearing  # type: ignore[method-assign]
    worker.announced = announced  # type: ignore[attr-defined]
    return worker


def _run(
    store: Store, folder: Path, flow: str, module: str, **settings: Any
) -> tuple[int, State, Worker]:
    ex_id = _start(store, folder, flow, module)
    worker = _worker(store, folder, **settings)
    try:
        return ex_id, worker.run_execution(ex_id), worker
    finally:
        worker.close()


def _runs(store: Store, ex_id: int) -> dict[str, Any]:
    return {r.task_id: r for r in store.task_runs(ex_id)}


def _lines(store: Store, ex_id: int) -> dict[str, list[tuple[str, str]]]:
    runs = {r.id: r.task_id for r in store.task_runs(ex_id)}
    task_of = {a.id: runs[a.task_run_id] for a in store.attempts(ex_id)}
    found: dict[str, list[tuple[str, str]]] = {}
    for line in store.logs(ex_id):
        if line.attempt_id in task_of:
            found.setdefault(task_of[line.attempt_id], []).append((line.stream, line.line))
    return found


def test_quick_attempts_are_queued_on_a_busy_host_and_keep_their_own_lines_and_outputs(
    store: Store, tmp_path: Path
) -> None:
    tasks = [
        f"{{id: t{i}, type: python, function: 'steps:talk', with: {{n: {i}}}}}" for i in range(40)
    ]
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks),
        """
        import os, sys
        def talk(n):
            print('out', n)
            print('err', n, file=sys.stderr)
            os.write(1, b'fd-level %d\\n' % n)
            sys.stdout.write('unfinished %d' % n)
            return {'n': n}
        """,
    )
    assert final is State.SUCCESS
    assert worker.queued  # type: ignore[attr-defined]
    assert store.outputs(ex_id) == {f"t{i}": {"n": i} for i in range(40)}
    lines = _lines(store, ex_id)
    for i in range(40):
        mine = lines[f"t{i}"]
        assert [x for s, x in mine if s == "stdout"] == [
            f"out {i}",
            f"fd-level {i}",
            f"unfinished {i}",
        ]
        assert [x for s, x in mine if s == "stderr"] == [f"err {i}"]


def test_nothing_queued_behind_a_failure_runs_and_the_rest_is_skipped(
    store: Store, tmp_path: Path
) -> None:
    tasks = _steps(40)
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks),
        f"""
        def step(n):
            print('ran', n)
            if n == {WARM + 4}:
                raise ValueError('no')
        """,
    )
    assert final is State.FAILED
    assert worker.queued  # type: ignore[attr-defined]
    runs = _runs(store, ex_id)
    ran = [f"t{i}" for i in range(40) if runs[f"t{i}"].state is State.SUCCESS]
    assert ran == [f"t{i}" for i in range(WARM + 4)]  # (one slot: they run in order)
    assert runs[f"t{WARM + 4}"].state is State.FAILED
    for i in range(WARM + 5, 40):
        assert runs[f"t{i}"].state is State.SKIPPED
    lines = _lines(store, ex_id)
    assert not any(f"t{i}" in lines for i in range(WARM + 5, 40))  # none of them ran


def test_with_continue_on_error_what_a_failure_held_back_runs_after_it(
    store: Store, tmp_path: Path
) -> None:  # (queued behind the failure, the host did not run them: they run after it)
    tasks = _steps(30)
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks, extra="continue_on_error: true\n"),
        f"""
        import os
        def step(n):
            if n == {WARM + 2}:
                raise ValueError('no')
            return {{'n': n, 'pid': os.getpid()}}
        """,
    )
    assert final is State.FAILED
    assert worker.queued  # type: ignore[attr-defined]
    runs = _runs(store, ex_id)
    assert [t for t, r in runs.items() if r.state is not State.SUCCESS] == [f"t{WARM + 2}"]
    pids = {o["pid"] for o in store.outputs(ex_id).values() if o}
    assert len(pids) == 1  # (one slot: its host read through what it did not run, and stayed)
    assert all(
        len([a for a in store.attempts(ex_id) if a.task_run_id == r.id]) == 1 for r in runs.values()
    )
    announced = worker.announced  # type: ignore[attr-defined]
    assert sorted(announced) == sorted({a.id for a in store.attempts(ex_id)})  # each once


def test_what_a_dead_host_never_started_runs_on_another(store: Store, tmp_path: Path) -> None:
    tasks = _steps(30, ", allow_failure: true")
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks),
        f"""
        import os
        def step(n):
            print('ran', n, flush=True)
            if n == {WARM + 2}:
                os._exit(3)
            return {{'n': n}}
        """,
    )
    assert final is State.WARNING
    assert worker.queued  # type: ignore[attr-defined]
    runs = _runs(store, ex_id)
    assert [t for t, r in runs.items() if r.state is not State.SUCCESS] == [f"t{WARM + 2}"]
    lines = _lines(store, ex_id)
    assert all(lines[f"t{i}"] == [("stdout", f"ran {i}")] for i in range(30))  # each ran once


def test_a_task_with_a_timeout_is_never_queued(store: Store, tmp_path: Path) -> None:
    tasks = [f"{{id: t{i}, type: python, function: 'steps:step', timeout: 1m}}" for i in range(30)]
    _, final, worker = _run(store, tmp_path, _flow(tasks), "def step():\n    pass\n")
    assert final is State.SUCCESS
    assert not worker.queued  # type: ignore[attr-defined]


def test_no_queue_when_host_queue_is_zero(store: Store, tmp_path: Path) -> None:
    tasks = [f"{{id: t{i}, type: python, function: 'steps:step'}}" for i in range(30)]
    _, final, worker = _run(store, tmp_path, _flow(tasks), "def step():\n    pass\n", host_queue=0)
    assert final is State.SUCCESS
    assert not worker.queued  # type: ignore[attr-defined]


def test_a_killed_execution_ends_what_is_queued_behind_a_slow_task_killed(
    store: Store, db: str, tmp_path: Path
) -> None:
    tasks = [
        *(
            f"{{id: t{i}, type: python, function: 'steps:step', with: {{n: {i}}}}}"
            for i in range(WARM)
        ),
        *(
            f"{{id: s{i}, type: python, function: 'steps:step', with: {{n: {100 + i}}},"
            f" depends_on: [t{WARM - 1}]}}"
            for i in range(6)
        ),
    ]
    ex_id = _start(
        store,
        tmp_path,
        _flow(tasks),
        """
        import time
        def step(n):
            print('ran', n, flush=True)
            if n == 100:
                time.sleep(60)
        """,
    )
    worker = _worker(store, tmp_path, kill_check_every=0.1)
    other = open_store(db)  # the kill comes from elsewhere, as `ordo kill` does

    def kill_when_slow() -> None:
        wait_for(
            "the slow task to run", lambda: any(x.line == "ran 100" for x in other.logs(ex_id))
        )
        services.kill(other, ex_id, "a test", time.time())

    killer = threading.Thread(target=kill_when_slow)
    killer.start()
    started = time.monotonic()
    try:
        final = worker.run_execution(ex_id)
    finally:
        worker.close()
        killer.join()
    other.close()
    assert final is State.KILLED
    assert time.monotonic() - started < patient(30)
    assert worker.queued  # type: ignore[attr-defined]  # (behind s0, which was quick so far)
    runs = _runs(store, ex_id)
    lines = _lines(store, ex_id)
    assert runs["s0"].state is State.KILLED
    for i in range(1, 6):
        assert runs[f"s{i}"].state is State.KILLED
        assert f"s{i}" not in lines  # it never ran


def test_a_call_into_ordo_with_attempts_queued_behind_it_is_answered_and_they_run(
    store: Store, tmp_path: Path
) -> None:
    tasks = _steps(30)
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks),
        f"""
        from ordo.this import system
        def step(n):
            print('before', n)
            state = system.execution()['state'] if n in ({WARM + 2}, {WARM + 3}) else None
            print('after', n)
            return {{'n': n, 'state': state}}
        """,
    )
    assert final is State.SUCCESS
    assert worker.queued  # type: ignore[attr-defined]
    outputs = store.outputs(ex_id)
    assert outputs[f"t{WARM + 2}"] == {"n": WARM + 2, "state": "RUNNING"}
    assert outputs[f"t{WARM + 3}"] == {"n": WARM + 3, "state": "RUNNING"}
    lines = _lines(store, ex_id)
    assert all(
        lines[f"t{i}"] == [("stdout", f"before {i}"), ("stdout", f"after {i}")] for i in range(30)
    )


def test_each_call_into_ordo_is_answered_as_the_attempt_that_made_it(
    store: Store, tmp_path: Path
) -> None:
    """A call read after the reply of the attempt ahead is the next one's, also while
    the attempt ahead is read on a thread (its own call handed it there)."""
    tasks = _steps(36)
    (tmp_path / "steps.py").write_text(
        textwrap.dedent(
            f"""
            from ordo.this import OrdoCallError, system
            def step(n):
                if n >= {WARM}:
                    try:
                        system.secret('s%d' % n)
                    except OrdoCallError:  # (there is no such secret)
                        pass
            """
        )
    )
    path = tmp_path / "flow.yaml"
    path.write_text(_flow(tasks))
    now = time.time()
    ex_id = engine.start_execution(store, engine.register_flow(store, path, now), {}, now)
    worker = _worker(store, tmp_path)
    asked: list[tuple[str, str]] = []
    call = worker.launcher.calls.call

    def noting(running: Any, request: Any) -> Any:  # (observed, not changed)
        asked.append((running.claim.task_id, str(request.get("name"))))
        return call(running, request)

    worker.launcher.calls.call = noting  # type: ignore[method-assign]
    try:
        assert worker.run_execution(ex_id) is State.SUCCESS
    finally:
        worker.close()
    assert worker.queued  # type: ignore[attr-defined]
    assert sorted(asked) == sorted((f"t{i}", f"s{i}") for i in range(WARM, 36))


def _until_a_failure_is_recorded(db: str) -> str:
    """A module part: ``_failure_recorded()`` returns once a task run of the attempt's
    execution is FAILED in the store (the worker has seen the failure by then)."""
    return f"""
        import os, time
        def _failure_recorded():
            from ordo.engine import open_store
            store = open_store({db!r})
            try:
                ex_id = int(os.environ['ORDO_EXECUTION_ID'])
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if any(r.state.value == 'FAILED' for r in store.task_runs(ex_id)):
                        return
                    time.sleep(0.01)
            finally:
                store.close()
        """


def test_a_failure_the_worker_finds_itself_withdraws_what_is_queued_behind_it(
    store: Store, db: str, tmp_path: Path
) -> None:
    """Its host replied success, but its outputs file does not read: the attempts
    queued behind it that its host has not started yet do not run."""
    bad, held = WARM, WARM + 1
    tasks = _steps(30)
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks),
        _until_a_failure_is_recorded(db)
        + f"""
        def step(n):
            print('ran', n, flush=True)
            if n == {bad}:
                with open(os.environ['ORDO_OUTPUTS'], 'w') as f:
                    f.write('not an output line\\n')
            if n == {held}:  # (queued behind it, it started before the worker looked)
                _failure_recorded()
        """,
    )
    assert final is State.FAILED
    assert worker.queued  # type: ignore[attr-defined]
    runs = _runs(store, ex_id)
    assert runs[f"t{bad}"].state is State.FAILED
    errors = [a.error for a in store.attempts(ex_id) if a.task_run_id == runs[f"t{bad}"].id]
    assert errors and "ORDO_OUTPUTS" in (errors[0] or "")
    assert runs[f"t{held}"].state in (State.SUCCESS, State.SKIPPED)
    lines = _lines(store, ex_id)
    for i in range(held + 1, 30):
        assert runs[f"t{i}"].state is State.SKIPPED
        assert f"t{i}" not in lines  # it never ran


def test_a_failure_on_another_host_withdraws_what_is_queued_on_this_one(
    store: Store, db: str, tmp_path: Path
) -> None:
    """Two slots: the attempt ahead on one host waits until a failure on the other
    host is recorded; what was queued behind it does not run."""
    slow, failing = WARM, WARM + 10  # (quick ones between them fill its host's queue)
    tasks = [
        f"{{id: t{i}, type: python, function: 'steps:step', with: {{n: {i}}}"
        + (", timeout: 1m}" if i == failing else "}")  # (never queued: it starts on a slot)
        for i in range(30)
    ]
    ex_id, final, worker = _run(
        store,
        tmp_path,
        _flow(tasks),
        _until_a_failure_is_recorded(db)
        + f"""
        def step(n):
            print('ran', n, flush=True)
            if n == {slow}:
                _failure_recorded()
            if n == {failing}:
                raise ValueError('no')
        """,
        slots=2,
    )
    assert final is State.FAILED
    runs = _runs(store, ex_id)
    assert runs[f"t{failing}"].state is State.FAILED
    assert runs[f"t{slow}"].state is State.SUCCESS
    behind_slow = [f"t{i}" for i in range(slow, failing) if runs[f"t{i}"].state is State.SKIPPED]
    lines = _lines(store, ex_id)
    assert worker.queued  # type: ignore[attr-defined]
    assert behind_slow  # what was queued behind it was withdrawn, and never ran
    assert not any(t in lines for t in behind_slow)
    for i in range(failing + 1, 30):
        assert runs[f"t{i}"].state is State.SKIPPED
        assert f"t{i}" not in lines


def test_what_is_queued_behind_a_task_allowed_to_fail_runs_where_it_was_queued(
    store: Store, tmp_path: Path
) -> None:
    """Its failure stops nothing: its host goes on, and nothing comes back unstarted."""
    tasks = _steps(30, ", allow_failure: true")
    ex_id = _start(
        store,
        tmp_path,
        _flow(tasks),
        f"""
        def step(n):
            if n in ({WARM + 2}, {WARM + 6}):
                raise ValueError('no')
            return {{'n': n}}
        """,
    )
    worker = _worker(store, tmp_path)
    back: list[int] = []
    put_back = worker.launcher.put_back

    def noting(claim: Any) -> None:  # (observed, not changed)
        back.append(claim.attempt_id)
        put_back(claim)

    worker.launcher.put_back = noting  # type: ignore[method-assign]
    try:
        assert worker.run_execution(ex_id) is State.WARNING
    finally:
        worker.close()
    assert worker.queued  # type: ignore[attr-defined]
    assert back == []
    runs = _runs(store, ex_id)
    failed = {f"t{WARM + 2}", f"t{WARM + 6}"}
    assert {t for t, r in runs.items() if r.state is not State.SUCCESS} == failed


def test_requests_too_big_for_a_hosts_input_are_not_queued(store: Store, tmp_path: Path) -> None:
    """A host reads its input only between tasks: what is queued must fit in its pipe
    (else the worker's loop would wait for the host), so big requests start on a slot."""
    blob = "x" * 20_000
    tasks = [
        f"{{id: t{i}, type: python, function: 'steps:step', with: {{n: {i}, blob: {blob}}}}}"
        for i in range(24)
    ]
    ex_id, final, _ = _run(
        store,
        tmp_path,
        _flow(tasks),
        """
        def step(n, blob):
            return {'n': n, 'size': len(blob)}
        """,
    )
    assert final is State.SUCCESS
    assert store.outputs(ex_id) == {f"t{i}": {"n": i, "size": 20_000} for i in range(24)}
    runs = _runs(store, ex_id)
    assert all(r.attempts == 1 for r in runs.values())


def test_a_failure_another_worker_recorded_withdraws_what_is_queued_here(
    db: str, tmp_path: Path
) -> None:
    """Two workers: one serves the queue of the task that fails; the other, with
    attempts queued behind a slow one, withdraws them at its next step."""
    slow, failing = WARM, WARM + 8
    tasks = _steps(failing)
    tasks.append(
        f"{{id: t{failing}, type: python, function: 'steps:step', with: {{n: {failing}}},"
        f" queue: other, depends_on: [t{slow - 1}]}}"
    )
    grace = patient(2.0)  # (for the other worker's next step, once the failure is in)
    module = (
        _until_a_failure_is_recorded(db)
        + f"""
        def step(n):
            print('ran', n, flush=True)
            if n == {slow}:
                _failure_recorded()
                time.sleep({grace})
            if n == {failing}:
                time.sleep(0.2)
                raise ValueError('no')
        """
    )
    store = open_store(db)
    ex_id = _start(store, tmp_path, _flow(tasks), module)
    here = _worker(open_store(db), tmp_path, queues=("default",))
    there = _worker(open_store(db), tmp_path, queues=("other",))
    threads = [threading.Thread(target=w.serve) for w in (here, there)]
    for thread in threads:
        thread.start()
    try:
        wait_for("the execution to end", lambda: store.get_execution(ex_id).state.terminal, 60)
    finally:
        for worker in (here, there):
            worker.stop()
        for thread in threads:
            thread.join()
        for worker in (here, there):
            worker.close()
            worker.store.close()
    runs = _runs(store, ex_id)
    lines = _lines(store, ex_id)
    task_of = {
        a.id: t for t, r in runs.items() for a in store.attempts(ex_id) if a.task_run_id == r.id
    }
    store.close()
    assert runs[f"t{failing}"].state is State.FAILED
    assert runs[f"t{slow}"].state is State.SUCCESS
    queued = {task_of[a] for a in here.queued}  # type: ignore[attr-defined]
    behind = queued & {f"t{i}" for i in range(slow + 1, failing)}
    assert behind  # queued behind the slow one: withdrawn, and never ran
    assert all(runs[t].state is State.SKIPPED and t not in lines for t in behind)


def test_an_attempt_back_from_its_host_is_leased_as_a_running_one_while_it_waits(
    store: Store, tmp_path: Path
) -> None:
    """Launched already, it is renewed by the heartbeat (with the running attempts),
    not as a claim: another worker must not take it back while it waits for a slot."""
    ex_id = _start(
        store,
        tmp_path,
        _flow(["{id: t0, type: python, function: 'steps:step'}"]),
        "def step(): pass",
    )
    worker = _worker(store, tmp_path)
    s = worker.settings
    try:
        now = time.time()
        claim = worker.launcher.claim(store.task_runs(ex_id)[0].id, now)
        assert claim is not None
        worker.launcher.put_back(claim)  # (its host never started it)
        assert claim.attempt_id not in worker.launcher.renewals(now)  # (not as a claim)
        worker.housekeeping.start(now, reap=False)
        later = now + s.heartbeat_every + 1
        worker.housekeeping.run(later, None)
        (attempt,) = store.attempts(ex_id)
        assert attempt.lease_expires_at == pytest.approx(later + s.lease_seconds, abs=0.5)
        assert worker.launcher.leased_until[claim.attempt_id] > later + s.claim_lease_seconds
    finally:
        worker.close()
