"""Executions: creating one (and its task runs, dependencies and first ready rows), a
replay of one, a schedule's, and stopping one (killed, failed by its timeout) with its
running children. What follows from each is the state core's: :mod:`ordo.store.outcomes`
ends executions, :mod:`ordo.store.recovery` restarts them. Shared by both backends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ordo.errors import Conflict, NotFound
from ordo.model import ON_REQUEST, Flow, RunOptions, State
from ordo.store import queries as q
from ordo.store.db import Db, dumps, parts
from ordo.store.flows import Flows
from ordo.store.limits import Limits
from ordo.store.outcomes import End, Outcomes
from ordo.store.reads import Reads
from ordo.store.records import RecordResult, TaskRunRow
from ordo.store.recovery import Recovery
from ordo.store.transitions import Transitions

#: Task runs waiting for their next attempt: RUNNING, their last attempt ended and no
#: for_each items of theirs still to end.
BETWEEN_ATTEMPTS = """
SELECT t.id FROM task_runs t JOIN attempts a ON a.id = t.last_attempt_id
WHERE t.execution_id = ? AND t.state = 'RUNNING' AND a.state <> 'RUNNING'
  AND t.forks_pending = 0 AND (a.reason IS NULL OR a.reason <> 'forked')
ORDER BY t.id
"""
DELETE_READY_OF_RUNS = "DELETE FROM ready WHERE task_run_id {ids}"
BY_IDEMPOTENCY_KEY = "SELECT id FROM executions WHERE idempotency_key = ?"
EXECUTION_ROOT = "SELECT root_id, dev FROM executions WHERE id = ?"
INSERT_EXECUTION = """
INSERT INTO executions
    (revision_id, namespace, flow_id, state, inputs, labels, pending, created_at, deadline,
     parent_id, root_id, parent_attempt_id, continue_on_error, dev, original_id,
     idempotency_key, started_by, queue, options, scope, kind)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_TASK_RUNS = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     concurrency_key)
SELECT * FROM {values}
RETURNING id, task_id
"""
RUNNING_CHILDREN = """
SELECT id FROM executions WHERE parent_id = ? AND state IN ('CREATED', 'QUEUED', 'RUNNING')
ORDER BY id
"""
SET_EXECUTION_REASON = "UPDATE executions SET reason = coalesce(reason, ?) WHERE id = ?"
SET_ROOT = "UPDATE executions SET root_id = id WHERE id = ?"
TASK_RUN_TYPES = (
    "BIGINT",
    "TEXT",
    "TEXT",
    "BIGINT",
    "BIGINT",
    "DOUBLE PRECISION",
    "TEXT",
    "TEXT",
)

#: An execution no worker has taken up yet: killed, it ends at once.
_NOT_CLAIMED = frozenset({State.CREATED, State.QUEUED})


FIND_SCHEDULE = """
SELECT id FROM executions
WHERE kind = 'SCHEDULE' AND state = 'RUNNING' AND namespace = ? AND flow_id = ? AND started_by = ?
ORDER BY id LIMIT 1
"""
RUNNING_SCHEDULES = """
SELECT id, namespace, flow_id, started_by FROM executions
WHERE kind = 'SCHEDULE' AND state = 'RUNNING' ORDER BY id
"""


class Executions:
    """Creating, replaying and stopping executions."""

    def __init__(
        self,
        db: Db,
        flows: Flows,
        reads: Reads,
        transitions: Transitions,
        limits: Limits,
        outcomes: Outcomes,
        recovery: Recovery,
    ) -> None:
        self.db = db
        self.flows = flows
        self.reads = reads
        self.transitions = transitions
        self.limits = limits
        self.outcomes = outcomes
        self.recovery = recovery

    def create_execution(
        self,
        revision_id: int,
        inputs: Mapping[str, Any],
        labels: Mapping[str, str],
        now: float,
        *,
        parent_id: int | None = None,
        parent_attempt_id: int | None = None,
        skip: tuple[str, str] | None = None,
        skip_tasks: Sequence[str] = (),
        continue_on_error: bool | None = None,
        dev: bool = False,
        original_id: int | None = None,
        reuse: Mapping[str, TaskRunRow] | None = None,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        queue: str | None = None,
        options: RunOptions | None = None,
        scope: Sequence[str] | None = None,
        schedule_id: int | None = None,
    ) -> int:
        """Record a new execution of a revision and start it: CREATED -> RUNNING, one
        task run per task, and the tasks without dependencies made ready. Under the
        flow's concurrency limit it is QUEUED instead (started when another ends), or
        ends at once KILLED (``cancel``) or FAILED (``fail``).

        ``parent_id`` makes it a child execution; ``parent_attempt_id`` is the attempt of
        a flow task waiting for it (its lease is dropped: the child's end records it).
        ``skip`` is what the flow's run_if answered when not RUN: ``("SKIP", why)`` ends
        the execution SKIPPED at once, ``("STOP", why)`` ends it SUCCESS with every task
        run SKIPPED. ``skip_tasks`` end SKIPPED at once and count as done for their
        dependents; ``continue_on_error`` overrides the flow's setting. ``dev`` marks a
        dev execution; a child execution is dev when its parent is. ``original_id`` and
        ``reuse`` make it a replay: those task runs of the original are copied.
        ``idempotency_key``: when an execution was created with this key already, nothing
        is recorded and its id is returned. ``started_by`` says what started it. ``queue``
        puts every task run on that queue instead of its task's. ``options`` are what "run
        with options" set for this run (retry, timeout, notify); ``scope`` the namespaces
        its starter may use (None: every one). ``schedule_id``: the SCHEDULE execution
        whose tick started it, its parent (it is the root of its own tree all the same:
        the schedule runs on, its executions end and are kept or swept on their own)."""
        flow = self.flows.flow_of(revision_id)
        timeout = options.timeout if options and options.timeout is not None else flow.timeout
        deadline = now + timeout if timeout else None
        result = RecordResult()
        with self.db.transaction():
            if idempotency_key is not None:
                self.db.lock(f"idempotency:{idempotency_key}")
                known = self.db.one(BY_IDEMPOTENCY_KEY, (idempotency_key,))
                if known is not None:
                    return int(known["id"])
            root_id = None
            if parent_id is not None:
                row = self.db.one(EXECUTION_ROOT, (parent_id,))
                if row is None:
                    raise NotFound(f"execution {parent_id} not found")
                root_id, dev = row["root_id"], dev or bool(row["dev"])
            ex_id = self.db.insert(
                INSERT_EXECUTION,
                (
                    revision_id,
                    flow.namespace,
                    flow.id,
                    State.CREATED.value,
                    dumps(inputs),
                    dumps(dict(labels)),
                    len(flow.tasks),
                    now,
                    deadline,
                    parent_id if schedule_id is None else schedule_id,
                    root_id,
                    parent_attempt_id,
                    None if continue_on_error is None else int(continue_on_error),
                    int(dev),
                    original_id,
                    idempotency_key,
                    started_by,
                    queue,
                    dumps(options.to_dict()) if options else None,
                    dumps(sorted(set(scope))) if scope is not None else None,
                    flow.kind,
                ),
            )
            if root_id is None:
                self.db.execute(SET_ROOT, (ex_id,))
            if parent_attempt_id is not None:
                self.db.execute(q.UNLEASE, (parent_attempt_id,))
            self.transitions.created(ex_id, None, now)
            ids = self._insert_task_runs(ex_id, flow, now, queue)
            self.db.executemany(
                q.INSERT_DEP,
                [(ids[d], ids[t.id]) for t in flow.tasks for d in t.depends_on],
            )
            if skip is not None:
                child = parent_attempt_id is not None
                self._start_skipped(ex_id, skip, ids.values(), now, child=child)
                return ex_id
            if original_id is not None and reuse:
                self.recovery.reuse(ex_id, original_id, reuse, ids, flow, now)
            for task_id in dict.fromkeys(skip_tasks):  # as if done: their dependents may run
                tr_id = ids[task_id]
                self.transitions.set_task_run_state(tr_id, ex_id, State.SKIPPED, now, ON_REQUEST)
                self.outcomes.pending_down(ex_id)
                self.db.execute(q.DEPENDENTS_DOWN, (tr_id,))
            admission = self._admission(flow, ex_id)
            if admission is None:
                self.outcomes.begin_running(ex_id, flow, now, result)
            elif admission[0] is State.QUEUED:
                self.transitions.set_execution_state(ex_id, State.QUEUED, now, admission[1])
            else:
                self.outcomes.turn_away(ex_id, admission[0], admission[1], now, result)
        return ex_id

    def replay_execution(
        self,
        ex_id: int,
        from_task: str,
        now: float,
        *,
        inputs: Mapping[str, Any] | None = None,
        revision_id: int | None = None,
    ) -> int:
        """A new execution of the same revision (or of ``revision_id``, another of the
        flow's), linked to ``ex_id`` (``original_id``), that reuses every task run
        outside ``from_task``'s downstream which ended well (its state and outputs
        copied) and runs ``from_task``, everything downstream of it, and whatever else
        did not end well. Of another revision, only the tasks it has with the same
        dependencies, all reused, are reused. Its id."""
        with self.db.transaction():
            original = self.reads.get_execution(ex_id)
            if not original.state.terminal:
                raise Conflict(
                    f"execution {ex_id} is {original.state.value}; replay needs an ended "
                    "execution (kill it first, or wait for it)"
                )
            old_flow = self.flows.flow_of(original.revision_id)
            revision_id = revision_id or original.revision_id
            flow = self.flows.flow_of(revision_id)
            runs = self.reads.task_runs(ex_id)
            reused = self.outcomes.policy.to_reuse(old_flow, flow, runs, from_task)
            return self.create_execution(
                revision_id,
                {**original.inputs, **(inputs or {})},
                original.labels,
                now,
                original_id=ex_id,
                reuse=reused,
                dev=original.dev,
                continue_on_error=None,
                queue=original.queue,
                options=RunOptions.from_dict(original.options),
                scope=original.scope,
            )

    def _insert_task_runs(
        self, ex_id: int, flow: Flow, now: float, queue: str | None = None
    ) -> dict[str, int]:
        """One CREATED task run per task, 500 to a statement; their ids by task id."""
        rows = [
            (
                ex_id,
                t.id,
                State.CREATED.value,
                len(t.depends_on),
                int(t.allow_failure),
                now,
                queue or t.queue,
                t.concurrency_key,
            )
            for t in flow.tasks
        ]
        ids: dict[str, int] = {}
        for chunk in parts(rows, min(500, self.db.rows_at_once(len(TASK_RUN_TYPES)))):
            table, params = self.db.values(chunk, TASK_RUN_TYPES)
            sql = INSERT_TASK_RUNS.format(values=table)
            ids.update({r["task_id"]: int(r["id"]) for r in self.db.all(sql, params)})
        return ids

    def _start_skipped(
        self,
        ex_id: int,
        skip: tuple[str, str],
        task_runs: Iterable[int],
        now: float,
        *,
        child: bool = False,
    ) -> None:
        """A flow's run_if answered SKIP or STOP: every task run ends SKIPPED. SKIP ends
        the execution SKIPPED; STOP ends it SUCCESS, or, a child, SKIPPED with the STOP
        recorded (the flow task waiting for it stops too: nothing downstream of it runs)."""
        answer, why = skip
        result = RecordResult()
        if answer == "STOP":
            self.db.execute(q.SET_STOPPED, (why, ex_id))
            if not child:
                self.transitions.set_execution_state(ex_id, State.RUNNING, now, None)
        for tr_id in task_runs:
            self.outcomes.skip(tr_id, ex_id, why, now, result)
        if answer == "STOP" and not child:
            self.outcomes.maybe_end(ex_id, now, result)
            return
        self.transitions.set_execution_state(ex_id, State.SKIPPED, now, why)
        self.db.execute(q.EXECUTION_ENDED, (now, why, None, ex_id))
        self.outcomes.child_ended(ex_id, State.SKIPPED, why, None, now, result)

    def fail_execution(self, ex_id: int, reason: str, now: float) -> RecordResult:
        """Stop starting work for an execution (its timeout passed): unstarted task runs
        end SKIPPED; it ends FAILED with ``reason`` once running attempts report."""
        result = RecordResult()
        with self.db.transaction():
            self._fail_tree(ex_id, reason, now, result)
        return result

    def kill_execution(self, ex_id: int, reason: str, now: float) -> RecordResult:
        """Kill an execution and its running children (see :meth:`_kill_tree`); the
        workers running its attempts stop them and their outcomes end it KILLED."""
        result = RecordResult()
        with self.db.transaction():
            self._kill_tree(ex_id, reason, now, result)
        return result

    def schedule_execution(self, revision_id: int, trigger_id: str, now: float) -> int:
        """The SCHEDULE execution of trigger ``trigger_id`` of revision ``revision_id``'s
        flow: RUNNING while the schedule is active, the parent of the executions its
        ticks start; made the first time a tick needs it."""
        flow = self.flows.flow_of(revision_id)
        started_by = f"schedule:{trigger_id}"
        with self.db.transaction():
            row = self.db.one(FIND_SCHEDULE, (flow.namespace, flow.id, started_by))
            if row is not None:
                return int(row["id"])
            ex_id = self.db.insert(
                INSERT_EXECUTION,
                (revision_id, flow.namespace, flow.id, State.CREATED.value, "{}",
                 dumps(dict(flow.labels)), 0, now, None, None, None, None, None, 0, None,
                 None, started_by, None, None, None, "SCHEDULE"),
            )  # fmt: skip
            self.db.execute(SET_ROOT, (ex_id,))
            self.transitions.created(ex_id, None, now, f"schedule {trigger_id} of {flow.key}")
            self.transitions.set_execution_state(ex_id, State.RUNNING, now, None)
            return ex_id

    def close_schedules(self, active: set[tuple[str, str, str]], now: float) -> list[int]:
        """End the SCHEDULE executions whose schedule is no longer among ``active``
        (namespace, flow id, trigger id): removed, or deactivated with its flow; the ids
        ended. The executions they started are left as they are."""
        ended = []
        with self.db.transaction():
            for r in self.db.all(RUNNING_SCHEDULES):
                ex_id, namespace, flow_id = r["id"], r["namespace"], r["flow_id"]
                trigger = str(r["started_by"]).removeprefix("schedule:")
                if (namespace, flow_id, trigger) in active:
                    continue
                why = f"schedule {trigger} of {namespace}/{flow_id} removed or deactivated"
                # (it has no task runs: the one rule ends it SUCCESS)
                facts = self.outcomes.end_facts(int(ex_id), State.RUNNING, None, None)
                state = self.outcomes.policy.end_state(facts).state
                if self.transitions.set_execution_state(int(ex_id), state, now, why) is not None:
                    self.db.execute(q.EXECUTION_ENDED, (now, why, None, ex_id))
                    ended.append(int(ex_id))
        return ended

    # -- limits and stopping ----------------------------------------------------------
    def _admission(self, flow: Flow, ex_id: int) -> tuple[State, str] | None:
        """None when execution ``ex_id`` of ``flow`` may run now; else what it becomes
        (QUEUED, KILLED for ``cancel``, FAILED for ``fail``) and why."""
        limit = flow.concurrency
        if limit is None:
            return None
        ending = self.outcomes.policy.admission(
            limit, self.limits.active(flow, exclude=ex_id), flow.key
        )
        return None if ending is None else (ending.state, ending.reason or "")

    def _kill_queued(
        self,
        ex_id: int,
        reason: str,
        now: float,
        result: RecordResult,
        waiting: frozenset[State] = frozenset({State.QUEUED}),
    ) -> bool:
        """Kill an execution still waiting (for its flow's limit; or, in ``waiting``,
        for a worker); False if it is not."""
        if self.transitions.execution_state(ex_id) not in waiting:
            return False
        self.outcomes.turn_away(ex_id, State.KILLED, reason, now, result)
        return True

    def _kill_tree(self, ex_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Kill an execution and, first, its running children: RUNNING -> KILLING; task
        runs not started end KILLED; task runs between attempts (a retry waiting) end
        KILLED; running attempts are left to their workers, which see KILLING and stop
        them; the execution ends KILLED when the last task run has ended."""
        result.stopped.add(ex_id)
        for r in self.db.all(RUNNING_CHILDREN, (ex_id,)):
            child_id = r["id"]
            self._kill_tree(child_id, f"parent execution {ex_id} killed: {reason}", now, result)
        if self._kill_queued(ex_id, reason, now, result, _NOT_CLAIMED):
            return
        if self.transitions.set_execution_state(ex_id, State.KILLING, now, reason) is None:
            return
        self.outcomes.kill_unstarted(ex_id, reason, now, result)
        between = [int(r["id"]) for r in self.db.all(BETWEEN_ATTEMPTS, (ex_id,))]
        for part in parts(between, self.db.rows_at_once(1)):
            test, params = self.db.ids(part)
            self.db.execute(DELETE_READY_OF_RUNS.format(ids=test), params)
            ends = [End(tr_id, ex_id, State.KILLED, reason) for tr_id in part]
            self.outcomes.end_task_runs(ends, now, result)
        self.outcomes.maybe_end(ex_id, now, result)

    def _fail_tree(self, ex_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Fail an execution and, first, its running child executions."""
        result.stopped.add(ex_id)
        for r in self.db.all(RUNNING_CHILDREN, (ex_id,)):
            child_id = r["id"]
            self._fail_tree(child_id, f"parent execution {ex_id} stopped: {reason}", now, result)
        if self._kill_queued(ex_id, reason, now, result):
            return
        if self.transitions.execution_state(ex_id).terminal:  # it ended already: nothing to stop
            return
        self.db.execute(SET_EXECUTION_REASON, (reason, ex_id))
        self.outcomes.skip_unstarted(ex_id, reason, now, result)
        self.outcomes.maybe_end(ex_id, now, result)
