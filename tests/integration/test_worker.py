"""The engine end to end in one process: real store file, real runners, real processes."""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support import patient, run_file

from ordo import engine
from ordo.clock import FakeClock
from ordo.engine import open_store, policy
from ordo.errors import IllegalTransition
from ordo.model import Outcome, State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.ports import Ending
from ordo.store.records import Claim
from ordo.worker import Worker, WorkerSettings


def run_flow(
    store: Store,
    folder: Path,
    text: str,
    inputs: Mapping[str, Any] | None = None,
    **kw: Any,
) -> tuple[int, State]:
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return run_file(store, folder, path, inputs, **kw)


def runs(store: Store, ex_id: int) -> dict[str, Any]:
    return {r.task_id: r for r in store.task_runs(ex_id)}


def test_outputs_flow_from_shell_to_python_through_templates(store: Store, tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "from ordo import this\n"
        "def double(n, label):\n"
        "    this.metric('seen', 1)\n"
        "    print('doubling', n)\n"
        "    return {'value': n * 2, 'label': label}\n"
    )
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: pass-values
        inputs:
          name: {type: string, default: world}
        vars: {n: "{{ outputs.count.n }}"}
        tasks:
          - id: count
            type: shell
            command: 'echo n=21 >> "$ORDO_OUTPUTS"; echo "hello {{ inputs.name }}"'
          - id: double
            type: python
            function: steps:double
            with: {n: "{{ vars.n }}", label: "x-{{ execution.id }}"}
            depends_on: [count]
    """,
    )
    assert final is State.SUCCESS
    outputs = store.outputs(ex_id)
    assert outputs["count"] == {"n": 21}
    assert outputs["double"] == {"value": 42, "label": f"x-{ex_id}"}
    lines = [(ln.stream, ln.line) for ln in store.logs(ex_id)]
    assert ("stdout", "hello world") in lines
    assert ("stdout", "doubling 21") in lines
    assert [m.name for m in store.metrics(ex_id)] == ["seen"]


def test_flaky_task_succeeds_on_retry_after_its_delay(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: flaky
        tasks:
          - id: flaky
            type: shell
            command: '[ "$ORDO_ATTEMPT" -ge 2 ] || exit 75'
            retry: {attempts: 3, delay: 1m, on_exit_codes: [75]}
    """,
        clock=clock,
    )
    assert final is State.SUCCESS
    first, second = store.attempts(ex_id)
    assert (first.state, first.exit_code, second.state) == (State.FAILED, 75, State.SUCCESS)
    assert second.started_at is not None and first.ended_at is not None
    assert second.started_at - first.ended_at >= 60.0


def test_a_retry_keeps_its_slot_when_asked(store: Store, tmp_path: Path) -> None:
    """``retry_keeps_slot`` (``ordo executioner``): with one slot, a task waiting for its
    retry delay holds it, so the next ready task starts after its last attempt."""
    clock = FakeClock()
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: hold
        tasks:
          - id: flaky
            type: shell
            command: '[ "$ORDO_ATTEMPT" -ge 2 ] || exit 75'
            retry: {attempts: 2, delay: 1m, on_exit_codes: [75]}
          - id: other
            type: shell
            command: 'true'
    """,
        clock=clock,
        slots=1,
        prefetch=0,
        retry_keeps_slot=True,
    )
    assert final is State.SUCCESS
    by_task = {r.id: r.task_id for r in store.task_runs(ex_id)}
    order = [(by_task[a.task_run_id], a.number) for a in store.attempts(ex_id)]
    assert order == [("flaky", 1), ("flaky", 2), ("other", 1)]


def test_retries_stop_after_attempts_and_task_fails(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: always-fails
        tasks:
          - id: bad
            type: shell
            command: exit 3
            retry: {attempts: 3, delay: 0}
          - id: after
            type: shell
            command: "true"
            depends_on: [bad]
    """,
    )
    assert final is State.FAILED
    assert [a.exit_code for a in store.attempts(ex_id)] == [3, 3, 3]
    task_runs = runs(store, ex_id)
    assert task_runs["after"].state is State.SKIPPED
    assert task_runs["after"].reason == "dependency 'bad' failed"
    assert store.get_execution(ex_id).reason == "task 'bad' failed: exit code 3"


def test_task_timeout_kills_the_process_and_fails_with_reason_timeout(
    store: Store, tmp_path: Path
) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: slow
        tasks:
          - id: sleepy
            type: shell
            command: sleep 30
            timeout: 300ms
    """,
    )
    assert final is State.FAILED
    (attempt,) = store.attempts(ex_id)
    assert attempt.reason == "timeout"
    assert attempt.ended_at is not None and attempt.ended_at - attempt.started_at < 10


def test_execution_timeout_stops_running_and_skips_the_rest(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: too-long
        timeout: 500ms
        tasks:
          - id: first
            type: shell
            command: sleep 30
          - id: second
            type: shell
            command: "true"
            depends_on: [first]
    """,
    )
    assert final is State.FAILED
    task_runs = runs(store, ex_id)
    assert task_runs["first"].state is State.FAILED
    assert task_runs["second"].state is State.SKIPPED
    (attempt,) = store.attempts(ex_id)
    assert attempt.reason == "timeout"
    assert store.get_execution(ex_id).reason == "execution timed out"


def test_missing_reference_fails_the_task_naming_it(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: bad-ref
        tasks:
          - id: a
            type: shell
            command: "true"
          - id: b
            type: shell
            command: "echo {{ outputs.a.missing }}"
            depends_on: [a]
    """,
    )
    assert final is State.FAILED
    (_, attempt) = store.attempts(ex_id)
    assert attempt.reason == "template"
    assert attempt.error is not None
    assert "task 'b'" in attempt.error and "outputs.a.missing" in attempt.error


def test_allowed_failure_ends_warning_and_dependents_run(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: soft
        tasks:
          - id: optional
            type: shell
            command: exit 1
            allow_failure: true
          - id: after
            type: shell
            command: echo done
            depends_on: [optional]
    """,
    )
    assert final is State.WARNING
    assert runs(store, ex_id)["after"].state is State.SUCCESS


def test_independent_tasks_run_in_parallel(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: fan
        tasks:
          - {id: a, type: shell, command: "sleep 0.3"}
          - {id: b, type: shell, command: "sleep 0.3"}
          - {id: c, type: shell, command: "sleep 0.3"}
    """,
        slots=3,
    )
    assert final is State.SUCCESS
    attempts = store.attempts(ex_id)
    latest_start = max(a.started_at for a in attempts)
    earliest_end = min(a.ended_at or 0 for a in attempts)
    assert latest_start < earliest_end


def test_cpu_and_memory_of_each_attempt_are_recorded(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: measure
        tasks:
          - {id: busy, type: shell, command: "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"}
    """,
    )
    assert final is State.SUCCESS
    (attempt,) = store.attempts(ex_id)
    assert attempt.cpu_seconds is not None and attempt.cpu_seconds > 0
    assert attempt.peak_rss_kb is not None and attempt.peak_rss_kb > 0


def test_long_output_is_cut_with_a_marker(store: Store, tmp_path: Path) -> None:
    ex_id, final = run_flow(
        store,
        tmp_path,
        """
        id: chatty
        tasks:
          - {id: talk, type: shell, command: "seq 1 5000"}
    """,
        max_log_bytes=1000,
        log_batch_lines=50,
    )
    assert final is State.SUCCESS
    lines = [ln.line for ln in store.logs(ex_id)]
    assert lines[0] == "1"
    assert lines[-2] == "[ordo: output truncated after 1000 bytes; the rest was not kept]"
    assert lines[-1].endswith("of output after the cap were dropped]")
    assert len(lines) < 300


def test_logs_are_stored_while_the_attempt_runs(store: Store, tmp_path: Path) -> None:
    seen: list[str] = []
    db = getattr(store.db, "url", None) or store.db.path  # type: ignore[attr-defined]

    def watch() -> None:
        reader = open_store(db)
        deadline = time.monotonic() + patient(20)
        while time.monotonic() < deadline and not seen:
            for ex in reader.list_executions():
                attempts = [a for a in reader.attempts(ex.id) if a.state is State.RUNNING]
                lines = [ln.line for ln in reader.logs(ex.id)]
                if attempts and "first line" in lines:
                    seen.append("while running")
            time.sleep(0.05)
        reader.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, final = run_flow(
        store,
        tmp_path,
        """
        id: streaming
        tasks:
          - {id: slow, type: shell, command: "echo first line; sleep 2; echo second"}
    """,
    )
    watcher.join()
    assert final is State.SUCCESS
    assert seen == ["while running"]


def test_claims_a_held_up_worker_could_not_start_in_time_are_handed_back(
    store: Store, tmp_path: Path
) -> None:
    """A claim waiting for a slot is leased briefly (those that fit in free slots are
    marked launched, with the full lease, as they are claimed). When the loop is held up
    past half of that short lease before starting one (here: the clock jumps 10 s while
    the first task starts), it is not started, since another worker may take it back
    any time now: it is handed back (not counted) and runs later, once."""
    clock = FakeClock()

    class HeldUp:
        jumped = False

        def started(self, claim: Claim) -> None:
            if not self.jumped:
                self.jumped = True
                clock.advance(10.0)

        def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None:
            pass

    path = tmp_path / "four.yaml"
    path.write_text(
        "id: four\ntasks:\n"
        + "".join(f"  - {{id: t{i}, type: shell, command: 'echo t{i}'}}\n" for i in range(4))
    )
    revision = engine.register_flow(store, path, clock.now())
    ex_id = engine.start_execution(store, revision, {}, clock.now())
    worker = Worker(
        store,
        make_runners(2),
        settings=WorkerSettings(slots=2, prefetch=2, claim_lease_seconds=6.0),
        clock=clock,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        listener=HeldUp(),
    )
    try:
        assert worker.run_execution(ex_id) is State.SUCCESS
    finally:
        worker.close()
    attempts = store.attempts(ex_id)
    late = [a for a in attempts if a.reason == "handed back"]
    names = {r.id: r.task_id for r in store.task_runs(ex_id)}
    assert sorted(names[a.task_run_id] for a in late) == ["t2", "t3"]  # t1 had a slot
    assert {a.error for a in late} == {"its claim was not renewed in time (the worker was held up)"}
    ran = [a for a in attempts if a.state is State.SUCCESS]
    assert sorted(a.task_run_id for a in ran) == sorted(r.id for r in store.task_runs(ex_id))
    assert {a.number for a in ran} == {1, 2}  # the first ran at once, the others after
    lines = sorted(ln.line for ln in store.logs(ex_id))
    assert lines == ["t0", "t1", "t2", "t3"]  # each task ran once


class _Broken:
    """The engine's policy, except that a for_each task run ends CREATED: a bug."""

    def __getattr__(self, name: str) -> Any:
        return getattr(policy, name)

    def items_verdict(self, counts: Any, first: Any) -> Ending:
        return Ending(State.CREATED, "a bug")


def test_an_illegal_transition_is_logged_naming_the_run_and_nothing_of_its_step_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(str(tmp_path / "ordo.db"), policy=_Broken())  # type: ignore[arg-type]
    (tmp_path / "steps.py").write_text("def noop():\n    return None\n")
    flow = "id: each\ntasks:\n  - {id: each, type: python, function: 'steps:noop', for_each: [1]}\n"
    with caplog.at_level(logging.ERROR), pytest.raises(IllegalTransition):
        run_flow(store, tmp_path, flow)
    (each,) = [r for r in store.task_runs(1) if r.fork_of is None]
    (item,) = [r for r in store.task_runs(1) if r.fork_of is not None]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        f"task run {each.id} of execution 1: illegal transition RUNNING -> CREATED" in m
        for m in logged
    ), logged
    assert (each.state, item.state) == (State.RUNNING, State.RUNNING)  # its step rolled back
    store.close()
