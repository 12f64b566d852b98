"""How an execution stops: the first failure starts nothing more of it (claims taken
ahead included), and STOP ends it SUCCESS whatever its ``outputs:``. Real store, real
runners, a worker in this process."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from support import run_file, work_on

from ordo import engine, services
from ordo.model import State
from ordo.store import Store


def write(folder: Path, text: str) -> Path:
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def a_and_others(folder: Path, flow_id: str, command: str, others: list[str]) -> Path:
    """A flow of task ``a`` running ``command`` and independent ones running ``true``."""
    rest = "".join(f"  - {{id: {t}, type: shell, command: 'true'}}\n" for t in others)
    return write(
        folder, f"id: {flow_id}\ntasks:\n  - {{id: a, type: shell, command: '{command}'}}\n{rest}"
    )


def test_the_first_failure_launches_nothing_claimed_ahead(store: Store, tmp_path: Path) -> None:
    """One slot, 16 claims taken ahead: once ``a`` failed, none of them is launched;
    each ends SKIPPED with the failure as its reason, without an attempt that ran."""
    path = a_and_others(tmp_path, "stop-at-once", "exit 3", [f"t{i:02d}" for i in range(20)])
    ex_id, final = run_file(store, tmp_path, path, slots=1, prefetch=16)
    assert final is State.FAILED
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["a"].state is State.FAILED
    rest = [r for r in runs.values() if r.task_id != "a"]
    assert {r.state for r in rest} == {State.SKIPPED}
    assert {r.reason for r in rest} == {"execution failed: task 'a' failed"}
    ran = [a for a in store.attempts(ex_id) if a.task_run_id != runs["a"].id]
    assert all(a.state is State.SKIPPED for a in ran)  # claimed ahead, never launched
    assert len(ran) >= 1  # (the claims taken ahead are what this test is about)


def test_a_restart_runs_what_was_dropped_again(store: Store, tmp_path: Path) -> None:
    """The claims dropped when ``a`` failed made attempts that never ran: a restart
    runs their task runs again (their next attempt numbered after the dropped one)."""
    fixed = tmp_path / "fixed"
    path = a_and_others(tmp_path, "dropped", f"test -e {fixed}", [f"t{i}" for i in range(4)])
    ex_id, final = run_file(store, tmp_path, path, slots=1, prefetch=16)
    assert final is State.FAILED
    dropped = [a for a in store.attempts(ex_id) if a.state is State.SKIPPED]
    assert dropped  # (what this test is about)
    fixed.touch()
    again = services.restart(store, ex_id, time.time())
    assert sorted(again) == ["a", "t0", "t1", "t2", "t3"]
    assert work_on(store, tmp_path, ex_id, slots=1, prefetch=16)[1] is State.SUCCESS
    numbers = {(a.task_run_id, a.number) for a in store.attempts(ex_id)}
    assert len(numbers) == len(store.attempts(ex_id))


def fixed_and_restarted(store: Store, folder: Path, ex_id: int, again: list[str]) -> None:
    """With ``folder/fixed`` made, a restart runs ``again`` and the execution succeeds."""
    (folder / "fixed").touch()
    assert sorted(services.restart(store, ex_id, time.time())) == again
    assert work_on(store, folder, ex_id)[1] is State.SUCCESS


def _retried_and_failing(tmp_path: Path, delay: str, flaky_sleep: float) -> Path:
    """``bad`` fails (until ``fixed`` exists) while ``flaky``, which may retry, is
    running or waits for its retry; ``flaky`` fails until ``fixed`` exists."""
    fixed = tmp_path / "fixed"
    return write(
        tmp_path,
        f"""
        id: retried-while-failing
        tasks:
          - {{id: bad, type: shell, command: 'sleep 0.3; test -e {fixed}'}}
          - id: flaky
            type: shell
            command: 'sleep {flaky_sleep}; test -e {fixed}'
            retry: {{attempts: 3, delay: {delay}}}
        """,
    )


def test_a_task_failing_once_its_execution_fails_is_not_retried_and_runs_on_restart(
    store: Store, tmp_path: Path
) -> None:
    """``flaky`` fails after ``bad`` has failed the execution: it is not retried (no new
    attempt once the execution is failing), it ends FAILED, and a restart runs it."""
    path = _retried_and_failing(tmp_path, "0s", 1.2)
    ex_id, final = run_file(store, tmp_path, path)
    assert final is State.FAILED
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["flaky"].state is State.FAILED
    assert runs["flaky"].attempts == 1
    fixed_and_restarted(store, tmp_path, ex_id, ["bad", "flaky"])


def test_a_retry_due_after_the_execution_failed_ends_failed_and_runs_on_restart(
    store: Store, tmp_path: Path
) -> None:
    """``flaky`` failed first and waits for its retry when ``bad`` fails the execution:
    its retry is not made, and it ends FAILED at once (its last attempt failed), not
    SKIPPED (which a restart would leave as it is, the execution then ending SUCCESS)."""
    path = _retried_and_failing(tmp_path, "1s", 0)
    ex_id, final = run_file(store, tmp_path, path)
    assert final is State.FAILED
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["flaky"].state is State.FAILED
    assert runs["flaky"].reason is not None
    assert "execution failed: task 'bad' failed" in runs["flaky"].reason
    ran = [a for a in store.attempts(ex_id) if a.task_run_id == runs["flaky"].id]
    assert [a.state for a in ran] == [State.FAILED]  # no retry
    fixed_and_restarted(store, tmp_path, ex_id, ["bad", "flaky"])


def test_a_retry_claimed_ahead_when_the_execution_fails_ends_failed(
    store: Store, tmp_path: Path
) -> None:
    """``flaky``'s retry is claimed at once but waits for a slot (``bad`` and ``long``
    hold both) when ``bad`` fails: the claim is dropped, never launched and not counted,
    and ``flaky`` ends FAILED (its last attempt failed); a restart runs it again."""
    fixed = tmp_path / "fixed"
    path = write(
        tmp_path,
        f"""
        id: retry-claimed-ahead
        tasks:
          - {{id: bad, type: shell, command: 'sleep 1; test -e {fixed}'}}
          - {{id: flaky, type: shell, command: 'test -e {fixed}', retry: {{attempts: 3}}}}
          - {{id: long, type: shell, command: 'sleep 2'}}
        """,
    )
    ex_id, final = run_file(store, tmp_path, path, slots=2, prefetch=4)
    assert final is State.FAILED
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["flaky"].state is State.FAILED
    assert runs["flaky"].reason == "not retried: execution failed: task 'bad' failed"
    ran = [a for a in store.attempts(ex_id) if a.task_run_id == runs["flaky"].id]
    assert [a.state for a in ran] == [State.FAILED, State.SKIPPED]
    assert runs["long"].state is State.SUCCESS
    fixed_and_restarted(store, tmp_path, ex_id, ["bad", "flaky"])


def test_continue_on_error_still_runs_what_was_claimed_ahead(store: Store, tmp_path: Path) -> None:
    others = "\n".join(f"  - {{id: t{i}, type: shell, command: 'true'}}" for i in range(5))
    path = write(
        tmp_path,
        "id: keep-going\ncontinue_on_error: true\ntasks:\n"
        f"  - {{id: a, type: shell, command: 'exit 3'}}\n{others}\n",
    )
    ex_id, final = run_file(store, tmp_path, path, slots=1, prefetch=16)
    assert final is State.FAILED
    states = {r.task_id: r.state for r in store.task_runs(ex_id)}
    assert states.pop("a") is State.FAILED
    assert set(states.values()) == {State.SUCCESS}


def test_flow_level_stop_ends_success_even_with_outputs(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: stopped-with-outputs
        run_if: "STOP: holiday"
        tasks:
          - {id: work, type: shell, command: 'echo n=1 >> "$ORDO_OUTPUTS"'}
        outputs:
          kind: daily
          n: "{{ outputs.work.n }}"
        """,
    )
    revision = engine.register_flow(store, path, time.time())
    ex_id = engine.start_execution(store, revision, {}, time.time())
    execution = store.get_execution(ex_id)
    assert execution.state is State.SUCCESS
    assert execution.outputs == {"kind": "daily"}
    assert execution.reason is not None
    assert execution.reason.startswith("flow run_if answered STOP: holiday; outputs left out: n (")


def test_task_level_stop_ends_success_even_with_outputs(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: stopped-later
        tasks:
          - {id: gate, type: shell, command: 'true', run_if: "STOP: nothing to do"}
          - {id: work, type: shell, command: 'echo n=1 >> "$ORDO_OUTPUTS"', depends_on: gate}
        outputs:
          n: "{{ outputs.work.n }}"
        """,
    )
    ex_id, final = run_file(store, tmp_path, path)
    assert final is State.SUCCESS
    execution = store.get_execution(ex_id)
    assert execution.outputs == {}
    assert execution.reason is not None
    assert "outputs left out: n (" in execution.reason
