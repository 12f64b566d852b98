"""How an execution stops: the first failure starts nothing more of it (claims taken
ahead included), and STOP ends it SUCCESS whatever its ``outputs:``. Real store, real
runners, a worker in this process."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from support import run_file

from ordo import engine
from ordo.model import State
from ordo.store import Store


def write(folder: Path, text: str) -> Path:
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_first_failure_launches_nothing_claimed_ahead(store: Store, tmp_path: Path) -> None:
    """One slot, 16 claims taken ahead: once ``a`` failed, none of them is launched;
    each ends SKIPPED with the failure as its reason, without an attempt that ran."""
    others = "\n".join(f"  - {{id: t{i:02d}, type: shell, command: 'true'}}" for i in range(20))
    path = write(
        tmp_path,
        f"id: stop-at-once\ntasks:\n  - {{id: a, type: shell, command: 'exit 3'}}\n{others}\n",
    )
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
