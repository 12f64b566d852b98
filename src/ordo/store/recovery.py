"""What users do to executions after the fact: restart in place, replay as a new
execution, and mark a task run by hand. Each is one transaction; every change of state
is written to ``state_history`` with who asked and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from msgspec import Struct

from ordo.errors import Conflict, NotFound, did_you_mean
from ordo.model import By, Flow, State
from ordo.store import queries as q
from ordo.store.db import Db, dumps
from ordo.store.flows import Flows
from ordo.store.outcomes import Outcomes
from ordo.store.readiness import Readiness
from ordo.store.reads import Reads
from ordo.store.records import Claim, TaskRunRow
from ordo.store.transitions import Change, Transitions

ADOPT_CHILD = "UPDATE executions SET parent_attempt_id = ? WHERE id = ?"
#: The child a flow task's first attempt after a restart (number = retries_from + 1)
#: restarts: the one the attempt before it waited for, if that ended badly.
CHILD_TO_RESTART = """
SELECT e.id FROM executions e
JOIN attempts a ON a.id = e.parent_attempt_id
JOIN task_runs t ON t.id = a.task_run_id
WHERE t.id = ? AND t.retries_from > 0 AND a.number = t.retries_from
  AND ? = t.retries_from + 1 AND e.state IN ('FAILED', 'KILLED', 'WARNING')
ORDER BY e.id DESC LIMIT 1
"""
CLEAR_EXECUTION_REASON = "UPDATE executions SET reason = NULL WHERE id = ?"
#: a copied task run: its attempt 0 counts (``retries_from`` -1: see q.COUNTED) as the
#: original's did, until a restart makes it ``attempts`` (0)
COPIED_RUN = """
UPDATE task_runs SET started_at = ?, ended_at = ?, last_attempt_id = ?, retries_from = -1
WHERE id = ?
"""
COPY_OUTPUTS = """
INSERT INTO outputs (attempt_id, task_run_id, execution_id, key, value)
SELECT ?, ?, ?, key, value FROM outputs WHERE attempt_id = ?
"""
DELETE_DEPS_OF = """
DELETE FROM task_run_deps
WHERE task_run_id IN (SELECT id FROM task_runs WHERE execution_id = ? AND fork_of IS NULL)
"""
INSERT_COPIED_ATTEMPT = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, started_at, ended_at, reason, error)
VALUES (?, ?, 0, ?, ?, ?, ?, ?)
"""
INSERT_MARK_ATTEMPT = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, worker_id, started_at, ended_at, reason, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_TASK_RUN = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     concurrency_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
RESTART_EXECUTION = """
UPDATE executions SET reason = NULL, ended_at = NULL, outputs = NULL, stopped = NULL,
    pending = ?, inputs = ?, deadline = ?
WHERE id = ?
"""
SET_REVISION = "UPDATE executions SET revision_id = ? WHERE id = ?"
TASK_RUN_RESUMED = "UPDATE task_runs SET started_at = ? WHERE id = ?"


class Marked(Struct, frozen=True):
    """What ``ordo mark`` changed: the task run's state before and after, the
    execution's, and the task runs made to run again (a RUNNING execution only)."""

    label: str
    old: State
    new: State
    execution_old: State
    execution_new: State
    reopened: tuple[str, ...] = ()


class Recovery:
    """Restart, replay and mark."""

    def __init__(
        self,
        db: Db,
        flows: Flows,
        reads: Reads,
        transitions: Transitions,
        readiness: Readiness,
        outcomes: Outcomes,
    ) -> None:
        self.db = db
        self.flows = flows
        self.reads = reads
        self.transitions = transitions
        self.readiness = readiness
        self.outcomes = outcomes

    # -- restart in place ------------------------------------------------------------
    def restart_execution(
        self,
        ex_id: int,
        now: float,
        *,
        from_task: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        revision_id: int | None = None,
    ) -> list[str]:
        """Run an ended execution again in place: FAILED, KILLED, WARNING -> RESTARTED
        -> RUNNING. Task runs that failed, were killed, or were skipped because of a
        failure (and, with ``from_task``, that task and everything downstream of it) go
        RESTARTED and get new attempts; the rest keep their state and outputs. With
        ``revision_id`` the execution moves to that revision of its flow first: its new
        tasks run, tasks it no longer has stay as they ended. Returns the labels of the
        task runs restarted."""
        with self.db.transaction():
            execution = self.reads.get_execution(ex_id)
            refusal = self.outcomes.policy.restart_refusal(ex_id, execution.state)
            if refusal:
                raise Conflict(refusal)
            if revision_id is not None and revision_id != execution.revision_id:
                self._move_to_revision(ex_id, revision_id, now)
            flow = self.flows.flow_of(revision_id or execution.revision_id)
            runs = [r for r in self.reads.task_runs(ex_id) if r.task_id in flow._by_id]
            again = self.outcomes.policy.to_run_again(flow, runs, from_task)
            if not again:
                raise Conflict(f"execution {ex_id} has no task run to run again")
            if self.transitions.set_execution_state(ex_id, State.RESTARTED, now, None) is None:
                raise Conflict(f"execution {ex_id} changed while restarting it; try again")
            self.transitions.set_execution_state(ex_id, State.RUNNING, now, None)
            timeout = self.reads.run_timeout(ex_id, flow)
            deadline = now + timeout if timeout else None
            merged = {**execution.inputs, **(inputs or {})}
            params = (len(again), dumps(merged), deadline, ex_id)
            self.db.execute(RESTART_EXECUTION, params)
            by_id = {r.id: r for r in runs}
            again_tasks = {by_id[i].task_id for i in again if by_id[i].fork_of is None}
            released: dict[int, int] = {}  # items made ready, by for_each task run
            for tr_id in sorted(again):
                self._restart_task_run(by_id[tr_id], flow, again, again_tasks, released, now)
            self.readiness.made_ready()
            return [by_id[i].label for i in sorted(again)]

    def rerun_nothing(self, ex_id: int, why: str, now: float) -> None:
        """A new attempt of an execution that succeeded, with nothing left to run
        (every task run kept as it ended; an Executioner resume of a run that already
        succeeded): SUCCESS -> RESTARTED -> RUNNING -> SUCCESS, in its history."""
        with self.db.transaction():
            steps = ((State.SUCCESS, State.RESTARTED, why), (State.RESTARTED, State.RUNNING, None))
            for old, new, reason in (*steps, (State.RUNNING, State.SUCCESS, None)):
                if not self.transitions.transition([Change(ex_id, None, old, new, reason)], now):
                    raise Conflict(f"execution {ex_id} is not SUCCESS; nothing to record")

    def _move_to_revision(self, ex_id: int, revision_id: int, now: float) -> None:
        """The execution runs ``revision_id`` from now on: a task run for each task it
        lacks, and dependencies as the new revision has them."""
        flow = self.flows.flow_of(revision_id)
        runs = self.reads.task_runs(ex_id)
        have = {r.task_id: r.id for r in runs if r.fork_of is None and r.parent_run_id is None}
        for task in flow.tasks:
            if task.id not in have:
                have[task.id] = self.db.insert(
                    INSERT_TASK_RUN,
                    (
                        ex_id,
                        task.id,
                        State.CREATED.value,
                        len(task.depends_on),
                        int(task.allow_failure),
                        now,
                        self.reads.queue_of(ex_id, task),
                        task.concurrency_key,
                    ),
                )
                self.transitions.created(ex_id, have[task.id], now, "new in revision")
        self.db.execute(DELETE_DEPS_OF, (ex_id,))
        self.db.executemany(
            q.INSERT_DEP, [(have[d], have[t.id]) for t in flow.tasks for d in t.depends_on]
        )
        self.db.execute(SET_REVISION, (revision_id, ex_id))

    def _restart_task_run(
        self,
        run: TaskRunRow,
        flow: Flow,
        again: set[int],
        again_tasks: set[str],
        released: dict[int, int],
        now: float,
    ) -> None:
        ex_id = run.execution_id
        items = [i for i in again if i != run.id and self._fork_parent(i) == run.id]
        pending = 0  # (an item waits for nothing but its for_each task run's cap)
        if run.fork_of is None:
            pending = self.outcomes.policy.waits_for(flow.task(run.task_id), again_tasks)
        if run.state is not State.CREATED:  # never started (new in the revision): as it is
            self.transitions.set_task_run_state(run.id, ex_id, State.RESTARTED, now, "restarted")
        self.db.execute(q.RESTART_TASK_RUN, (pending, len(items), run.id))
        if items:  # a for_each task run whose items run again: it waits for them
            self.transitions.set_task_run_state(run.id, ex_id, State.RUNNING, now, None)
            self.db.execute(TASK_RUN_RESUMED, (now, run.id))
            return
        if pending == 0 and (run.fork_of is None or run.fork_of in again):
            task = flow.task(run.task_id)
            if run.fork_of is not None:  # an item: no more at once than the policy lets
                started = released.get(run.fork_of, 0)
                if started >= self.outcomes.policy.items_at_once(started + 1, task.concurrency):
                    return  # released when an item before it ends
                released[run.fork_of] = started + 1
            queue = self.reads.queue_of(ex_id, task)
            self.readiness.ready_restarted(run.id, ex_id, queue, task.concurrency_key, now)

    def _fork_parent(self, tr_id: int) -> int | None:
        row = self.db.one(q.TASK_RUN_FORK, (tr_id,))
        return row["fork_of"] if row else None

    def child_to_restart(self, claim: Claim) -> int | None:
        """The child execution a flow task's attempt restarts instead of starting a new
        one: the one its attempt before a restart waited for, if that ended badly and
        this is the first attempt since the restart."""
        row = self.db.one(CHILD_TO_RESTART, (claim.task_run_id, claim.number))
        return int(row["id"]) if row else None

    def restart_child(self, child_id: int, claim: Claim, now: float) -> list[str]:
        """Restart ``child_id`` in place for the flow task attempt ``claim``, which then
        waits for it (see :meth:`restart_execution`)."""
        with self.db.transaction():
            again = self.restart_execution(child_id, now)
            self.db.execute(ADOPT_CHILD, (claim.attempt_id, child_id))
            self.db.execute(q.UNLEASE, (claim.attempt_id,))
            return again

    # -- replay (the new execution is made by Executions.replay_execution) --------
    def reuse(
        self,
        ex_id: int,
        original_id: int,
        reused: Mapping[str, TaskRunRow],
        ids: Mapping[str, int],
        flow: Flow,
        now: float,
    ) -> None:
        """Copy the reused task runs of ``original_id`` into the new execution ``ex_id``
        (state, reason, outputs; for_each items too) and count them as done."""
        items: dict[int, list[TaskRunRow]] = {}
        for run in self.reads.task_runs(original_id):
            if run.fork_of is not None:
                items.setdefault(run.fork_of, []).append(run)
        why = f"reused from execution {original_id}"
        for task_id, old in reused.items():
            tr_id = ids[task_id]
            self._copy_run(ex_id, tr_id, old, why, now)
            self.outcomes.pending_down(ex_id)
            if self.outcomes.policy.releases(old.state, old.allow_failure):
                self.db.execute(q.DEPENDENTS_DOWN, (tr_id,))
            forks = sorted(items.get(old.id, []), key=lambda r: r.fork_index or 0)
            task = flow.task(task_id)
            for item in forks:
                value = self.reads.fork_item(item.id)[2]
                new_id = self.db.insert(
                    q.INSERT_ITEM,
                    (
                        ex_id,
                        task_id,
                        int(item.allow_failure),
                        now,
                        self.reads.queue_of(ex_id, task),
                        tr_id,
                        item.fork_index,
                        dumps(value),
                        task.concurrency_key,
                    ),
                )
                self._copy_run(ex_id, new_id, item, why, now)
            if forks:
                self.db.execute(q.FORKED, (0, len(forks), tr_id))

    def _copy_run(self, ex_id: int, tr_id: int, old: TaskRunRow, why: str, now: float) -> None:
        """``tr_id`` ends as ``old`` did, through an attempt numbered 0 holding a copy
        of ``old``'s outputs (it ran nothing, so no retry counts it)."""
        attempt_id = self.db.insert(
            INSERT_COPIED_ATTEMPT,
            (tr_id, ex_id, old.state.value, now, now, "replayed", why),
        )
        if old.last_attempt_id is not None:
            self.db.execute(COPY_OUTPUTS, (attempt_id, tr_id, ex_id, old.last_attempt_id))
        self.db.execute(COPIED_RUN, (now, now, attempt_id, tr_id))
        copy = Change(ex_id, tr_id, State.CREATED, old.state, old.reason)
        self.transitions.transition([copy], now, By.COPY)

    # -- mark ------------------------------------------------------------------------
    def mark_task_run(
        self, ex_id: int, label: str, new: State, who: str, why: str | None, now: float
    ) -> Marked:
        """Set an ended task run SUCCESS or FAILED by hand, through a manual attempt
        (reason ``marked``, ``who`` as its worker, ``why`` in its message), then settle
        the execution: a RUNNING one runs again what the old state had skipped (when
        marked SUCCESS); an ended one takes the state its task runs now give it, when
        nothing is left to run (else a restart runs what is)."""
        with self.db.transaction():
            execution = self.reads.get_execution(ex_id)
            runs = self.reads.task_runs(ex_id)
            run = _find_run(runs, label, execution.flow_key)
            refusal = self.outcomes.policy.mark_refusal(ex_id, run, new)
            if refusal:
                raise Conflict(refusal)
            message = f"marked {new.value} by {who}" + (f": {why}" if why else "")
            attempt_id = self.db.insert(
                INSERT_MARK_ATTEMPT,
                (run.id, ex_id, run.attempts + 1, new.value, who, now, now, "marked", message),
            )
            self.db.execute(q.TASK_RUN_STARTED, (run.attempts + 1, attempt_id, now, run.id))
            mark = Change(ex_id, run.id, run.state, new, message)
            if not self.transitions.transition([mark], now, By.MARK):
                raise Conflict(f"task {run.label} of execution {ex_id} changed; try again")
            reopened: tuple[str, ...] = ()
            final = execution.state
            if execution.state is State.RUNNING and new is State.SUCCESS:
                reopened = self._reopen(ex_id, runs, run, now)
            elif execution.state.terminal:
                final = self._settle(ex_id, execution.state, message, now)
            return Marked(run.label, run.state, new, execution.state, final, reopened)

    def _reopen(
        self, ex_id: int, runs: Sequence[TaskRunRow], marked: TaskRunRow, now: float
    ) -> tuple[str, ...]:
        """In a RUNNING execution, the task runs the policy reopens after a mark (those
        skipped because of a failure) run after all: SKIPPED -> RESTARTED, ready once
        their dependencies are done."""
        flow = self.flows.flow_of(self.reads.get_execution(ex_id).revision_id)
        again = self.outcomes.policy.reopened(flow, runs, marked)
        for run, pending in again:
            task = flow.task(run.task_id)
            self.transitions.set_task_run_state(
                run.id, ex_id, State.RESTARTED, now, "marked upstream"
            )
            self.db.execute(q.RESTART_TASK_RUN, (pending, 0, run.id))
            self.db.execute(q.EXECUTION_PENDING_DOWN, (-1, ex_id))
            if pending == 0:
                queue = self.reads.queue_of(ex_id, task)
                self.readiness.ready_restarted(run.id, ex_id, queue, task.concurrency_key, now)
        if again:
            self.db.execute(CLEAR_EXECUTION_REASON, (ex_id,))
        return tuple(r.label for r, _ in again)

    def _settle(self, ex_id: int, old: State, why: str, now: float) -> State:
        """An ended execution after a mark: the state the policy now gives it (the same
        rule as when it ended), its outputs rendered again when it ends well."""
        execution = self.reads.get_execution(ex_id)
        policy = self.outcomes.policy
        facts = self.outcomes.end_facts(ex_id, old, None, execution.stopped)
        settled = policy.settle(facts, why)
        if settled is None:
            return old
        flow = self.flows.flow_of(execution.revision_id)
        ending, outputs = policy.flow_outputs(
            flow, settled, execution.stopped, self.outcomes.output_facts(ex_id)
        )
        if ending.state is not settled.state:  # its outputs cannot render: it stays
            return old
        self.transitions.transition(
            [Change(ex_id, None, old, ending.state, ending.reason)], now, By.MARK
        )
        if ending.state in (State.SUCCESS, State.WARNING):
            shown = None if outputs is None else dumps(outputs)
            ended = execution.ended_at or now
            self.db.execute(q.EXECUTION_ENDED, (ended, ending.reason, shown, ex_id))
        return ending.state


def _find_run(runs: Iterable[TaskRunRow], label: str, flow_key: str) -> TaskRunRow:
    """The task run named ``label`` (``task`` or ``task[2]``); NotFound lists them."""
    listed = [r for r in runs if r.parent_run_id is None]
    for run in listed:
        if run.label == label:
            return run
    known = ", ".join(r.label for r in listed)
    tip = did_you_mean(label, (r.label for r in listed))
    raise NotFound(f"{flow_key} has no task {label!r} in this execution{tip} (tasks: {known})")
