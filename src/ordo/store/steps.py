"""Steps of running flow functions and handlers, for durable replay.

A flow function (``@flow``) or a handler calls into ordo step by step: a ``@task`` (a
task run of the execution, run by any worker), ``this.flow`` (a child execution),
``this.connect`` (a task run of its own), ``this.now()`` and ``this.random()``. Each
call is recorded here under the attempt's task run with its number in the order the
code made them; when the task run is run again (a retry, a restart, a resume after a
crash) the code starts from the top and each call finds its step: a completed one
answers what it gave then, one that failed or never finished runs again.

A ``@task`` step's task run counts among the task runs its execution waits for (so the
execution cannot end under it) and may fail without failing the execution: the flow
function is told, and decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from msgspec import Struct

from ordo.errors import Conflict
from ordo.model import State, Task
from ordo.store import queries as q
from ordo.store.db import Db, Row, dumps, marks
from ordo.store.readiness import Readiness
from ordo.store.reads import Reads
from ordo.store.records import Claim
from ordo.store.transitions import Transitions

STEP_COLUMNS = (
    "id, execution_id, task_run_id, number, kind, name, run_id, child_id, value, attempt_id"
)
GET_STEP = f"SELECT {STEP_COLUMNS} FROM steps WHERE task_run_id = ? AND number = ?"
STEP_OF_RUN = f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?"
INSERT_STEP = """
INSERT INTO steps
    (execution_id, task_run_id, number, kind, name, run_id, child_id, value, attempt_id,
     created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
#: a step done again (its connect call run again, its child restarted): what it is now
UPDATE_STEP = """
UPDATE steps SET run_id = ?, child_id = ?, value = ?, attempt_id = ?
WHERE task_run_id = ? AND number = ?
"""
STEP_RESULT = "SELECT state, reason, last_attempt_id FROM task_runs WHERE id = ?"
INSERT_STEP_RUN = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     parent_run_id)
VALUES (?, ?, 'CREATED', 0, 1, ?, ?, ?)
"""
RUN_STATES = "SELECT id, state, reason FROM task_runs WHERE id IN ({})"
COUNT_STEPS = "SELECT count(*) FROM steps WHERE task_run_id = ?"


class StepRow(Struct, frozen=True):
    """One recorded step: ``kind`` task, flow, connect, now or random; ``name`` what
    was called; ``run_id`` its task run (task, connect), ``child_id`` its child
    execution (flow), ``value`` its arguments (task) or value (now, random);
    ``attempt_id`` the caller's attempt that recorded it (an earlier one: the caller is
    being run again)."""

    id: int
    execution_id: int
    task_run_id: int
    number: int
    kind: str
    name: str
    run_id: int | None
    child_id: int | None
    value: Any
    attempt_id: int | None


def _step(row: Row) -> StepRow:
    return StepRow(
        id=int(row["id"]),
        execution_id=int(row["execution_id"]),
        task_run_id=int(row["task_run_id"]),
        number=int(row["number"]),
        kind=str(row["kind"]),
        name=str(row["name"]),
        run_id=_id(row["run_id"]),
        child_id=_id(row["child_id"]),
        value=None if row["value"] is None else json.loads(row["value"]),
        attempt_id=_id(row["attempt_id"]),
    )


def _id(value: Any) -> int | None:
    return None if value is None else int(value)


class Steps:
    """Recording steps and finding them again."""

    def __init__(
        self, db: Db, reads: Reads, transitions: Transitions, readiness: Readiness
    ) -> None:
        self.db = db
        self.reads = reads
        self.transitions = transitions
        self.readiness = readiness

    def step(self, task_run_id: int, number: int) -> StepRow | None:
        """Step ``number`` of the flow function or handler running as ``task_run_id``."""
        row = self.db.one(GET_STEP, (task_run_id, number))
        return None if row is None else _step(row)

    def step_of_run(self, run_id: int) -> StepRow | None:
        """The step a task run is (a ``@task`` call's), if it is one."""
        row = self.db.one(STEP_OF_RUN, (run_id,))
        return None if row is None else _step(row)

    def step_count(self, task_run_id: int) -> int:
        return int(self.db.scalar(COUNT_STEPS, (task_run_id,)) or 0)

    def record_step(
        self,
        claim: Claim,
        number: int,
        kind: str,
        name: str,
        now: float,
        *,
        value: Any = None,
        run_id: int | None = None,
        child_id: int | None = None,
    ) -> StepRow:
        """Record a step that has happened (``this.now()``, ``this.random()``, the child
        a ``this.flow`` started, the task run of a ``this.connect``); a step recorded
        before under this number (done again) is what it is now."""
        with self.db.transaction():
            shown = None if value is None else dumps(value)
            if self.step(claim.task_run_id, number) is not None:
                again = (run_id, child_id, shown, claim.attempt_id, claim.task_run_id, number)
                self.db.execute(UPDATE_STEP, again)
            else:
                params = (claim.execution_id, claim.task_run_id, number, kind, name)
                row = (*params, run_id, child_id, shown, claim.attempt_id, now)
                self.db.insert(INSERT_STEP, row)
            found = self.step(claim.task_run_id, number)
            assert found is not None
            return found

    def start_step(
        self, claim: Claim, number: int, task: Task, args: Mapping[str, Any], now: float
    ) -> StepRow:
        """A ``@task`` call: a task run of ``task`` in the claim's execution, under the
        caller's task run, ready for any worker, with ``args`` as its ``with``."""
        with self.db.transaction():
            ex_id = claim.execution_id
            queue = self.reads.queue_of(ex_id, task)
            run_id = self.db.insert(
                INSERT_STEP_RUN, (ex_id, task.id, now, queue, claim.task_run_id)
            )
            self.transitions.created(ex_id, run_id, now, f"step {number} of {claim.task_id}")
            self.db.execute(q.EXECUTION_PENDING_DOWN, (-1, ex_id))  # one more to wait for
            self.readiness.ready_restarted(run_id, ex_id, queue, None, now)
            params = (ex_id, claim.task_run_id, number, "task", task.id, run_id, None)
            self.db.insert(INSERT_STEP, (*params, dumps(dict(args)), claim.attempt_id, now))
            found = self.step(claim.task_run_id, number)
            assert found is not None
            return found

    def again_step(self, step: StepRow, task: Task, now: float) -> None:
        """A ``@task`` step that failed, was killed or skipped runs again (the flow
        function was run again): its task run RESTARTED and ready."""
        if step.run_id is None:
            raise Conflict(f"step {step.number} ({step.name}) has no task run to run again")
        with self.db.transaction():
            ex_id = step.execution_id
            again = self.transitions.set_task_run_state(
                step.run_id,
                ex_id,
                State.RESTARTED,
                now,
                "run again: the flow function was run again",
                only_from=frozenset({State.FAILED, State.KILLED, State.SKIPPED}),
            )
            if again is None:
                return  # running, or done: nothing to run again
            self.db.execute(q.RESTART_TASK_RUN, (0, 0, step.run_id))
            self.db.execute(q.EXECUTION_PENDING_DOWN, (-1, ex_id))
            self.readiness.ready_restarted(
                step.run_id, ex_id, self.reads.queue_of(ex_id, task), None, now
            )

    def step_result(self, run_id: int) -> tuple[State, str | None, dict[str, Any]]:
        """A step's task run: its state, reason and its last attempt's outputs."""
        row = self.db.one(STEP_RESULT, (run_id,))
        if row is None:
            raise Conflict(f"task run {run_id} not found")
        last = row["last_attempt_id"]
        outputs = self.reads.attempt_outputs(int(last)) if last is not None else {}
        return State(row["state"]), row["reason"], outputs

    def run_states(self, run_ids: Iterable[int]) -> dict[int, tuple[State, str | None]]:
        """The state and reason of each of these task runs."""
        ids = sorted(set(run_ids))
        if not ids:
            return {}
        rows = self.db.all(RUN_STATES.format(marks(ids)), ids)
        return {int(r["id"]): (State(r["state"]), r["reason"]) for r in rows}
