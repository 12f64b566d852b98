"""The store's reading side of executions, task runs and attempts: every query that only
looks at them (an execution's rows, lineage, outputs, history). Shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ordo.errors import NotFound
from ordo.model import Flow, RetryPolicy, RunOptions, State, Task
from ordo.store import history
from ordo.store import queries as q
from ordo.store.db import Db, Row, marks
from ordo.store.flows import Flows
from ordo.store.records import (
    AttemptRow,
    Claim,
    ExecutionRow,
    HistoryRow,
    TaskRunRow,
    WorkerRow,
)

EXECUTION_COLUMNS = """id, revision_id, namespace, flow_id, state, inputs, labels, pending,
    reason, created_at, started_at, ended_at, deadline, parent_id, root_id, parent_attempt_id,
    outputs, stopped, dev, saved_name, saved_description, saved_at, original_id, started_by,
    queue, options, scope, kind"""
GET_EXECUTION = f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?"
LIST_EXECUTIONS = f"SELECT {EXECUTION_COLUMNS} FROM executions"
EXECUTION_QUEUES = "SELECT id, queue FROM executions WHERE id IN ({})"
EXECUTION_OPTIONS = "SELECT options FROM executions WHERE id = ?"
CHILDREN = f"""
SELECT {EXECUTION_COLUMNS} FROM executions WHERE parent_id = ? AND kind <> 'CONNECTION'
ORDER BY id
"""
CALLS = f"""
SELECT {EXECUTION_COLUMNS} FROM executions WHERE parent_id = ? AND kind = 'CONNECTION'
ORDER BY id
"""
EXECUTION_LINEAGE = "SELECT parent_id, namespace, flow_id FROM executions WHERE id = ?"
EXECUTIONS_ENDED = "SELECT id, state FROM executions WHERE id IN ({}) AND ended_at IS NOT NULL"
ATTEMPT_TASK = """
SELECT task_runs.task_id, task_runs.id FROM attempts
JOIN task_runs ON task_runs.id = attempts.task_run_id
WHERE attempts.id = ?
"""
TASK_RUN_COLUMNS = f"""id, execution_id, task_id, state, pending_deps, allow_failure, attempts,
    last_attempt_id, reason, created_at, started_at, ended_at, fork_of, fork_index,
    parent_run_id, {q.SKIPPED_UNSTARTED} AS skipped_unstarted"""
TASK_RUNS = f"SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE execution_id = ? ORDER BY id"
FORK_COUNTS = """
SELECT task_id, count(*) AS n FROM task_runs
WHERE execution_id = ? AND fork_of IS NOT NULL GROUP BY task_id
"""
KILLING_AMONG = "SELECT id FROM executions WHERE state = 'KILLING' AND id IN ({})"
TREE_WORKERS = """
SELECT DISTINCT a.worker_id FROM attempts a JOIN executions e ON e.id = a.execution_id
WHERE e.root_id = ? AND a.state = 'RUNNING' AND a.worker_id IS NOT NULL
"""
EXPIRED_EXECUTIONS = """
SELECT id FROM executions
WHERE deadline IS NOT NULL AND deadline <= ? AND state IN ('CREATED', 'RUNNING')
  AND reason IS NULL
"""
OWN_RUNNING = f"""
SELECT {q.CLAIM_COLUMNS}
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.state = 'RUNNING' AND a.worker_id = ?
ORDER BY a.id
"""
ATTEMPT_COLUMNS = """id, task_run_id, execution_id, number, state, worker_id,
    lease_expires_at, started_at, ended_at, exit_code, reason, error, cpu_seconds,
    peak_rss_kb"""
ATTEMPTS = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE execution_id = ? ORDER BY id"
RUNNING_ATTEMPTS = "SELECT id FROM attempts WHERE execution_id = ? AND state = 'RUNNING'"
HISTORY = """
SELECT execution_id, task_run_id, from_state, to_state, at, reason, id
FROM state_history WHERE execution_id = ? ORDER BY id
"""
#: What the attempts of an execution say of its routine moves (:mod:`ordo.store.history`).
HISTORY_ATTEMPTS = """
SELECT id, task_run_id, execution_id, number, state, reason, error, started_at, ended_at
FROM attempts WHERE execution_id = ? AND number >= 1
"""
OUTPUTS = """
SELECT t.task_id, t.fork_index, o.key, o.value
FROM outputs o JOIN task_runs t ON t.id = o.task_run_id AND t.last_attempt_id = o.attempt_id
WHERE o.execution_id = ?
"""
ATTEMPT_OUTPUTS = "SELECT key, value FROM outputs WHERE attempt_id = ?"
#: the outputs of the called task runs (a handler's calls, a flow function's steps)
CALLED_OUTPUTS = """
SELECT t.id, o.key, o.value
FROM outputs o JOIN task_runs t ON t.id = o.task_run_id AND t.last_attempt_id = o.attempt_id
WHERE o.execution_id = ? AND t.parent_run_id IS NOT NULL
"""
LIST_WORKERS = """
SELECT id, host, pid, queues, started_at, heartbeat_at, running, stopped_at FROM workers
WHERE stopped_at IS NULL OR stopped_at > ? ORDER BY started_at DESC, id LIMIT ?
"""

#: Running executions among some: why each stops (a timeout) and its first hard failure.
FAILING_AMONG = f"""
SELECT e.id, e.reason, e.revision_id, e.continue_on_error,
       (SELECT t.task_id FROM task_runs t
        WHERE t.execution_id = e.id AND t.state = 'FAILED' AND t.allow_failure = 0
        ORDER BY {q.ENDED_BY_FAILURE.format(reason="t.reason")}, t.id LIMIT 1) AS failed
FROM executions e WHERE e.state = 'RUNNING' AND e.id IN ({{}})
"""


class Reads:
    """Queries over executions, task runs and attempts."""

    def __init__(self, db: Db, flows: Flows) -> None:
        self.db = db
        self.flows = flows

    def running_claims(self, worker_id: str) -> list[Claim]:
        """The attempts leased to ``worker_id`` that have not ended, as claims."""
        return [claim_of(r) for r in self.db.all(OWN_RUNNING, (worker_id,))]

    def list_workers(self, since: float, limit: int = 100) -> list[WorkerRow]:
        """Workers running now, or stopped after ``since``; newest first."""
        return [
            WorkerRow(
                r["id"], r["host"], r["pid"], r["queues"], r["started_at"], r["heartbeat_at"],
                r["running"], r["stopped_at"],
            )
            for r in self.db.all(LIST_WORKERS, (since, limit))
        ]  # fmt: skip

    def get_execution(self, execution_id: int) -> ExecutionRow:
        row = self.db.one(GET_EXECUTION, (execution_id,))
        if row is None:
            raise NotFound(f"execution {execution_id} not found")
        return _execution(row)

    def list_executions(
        self,
        *,
        flow: str | None = None,
        state: State | None = None,
        saved: bool | None = None,
        dev: bool | None = None,
        limit: int = 20,
        before: int | None = None,
        namespace: str | None = None,
        namespaces: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
    ) -> list[ExecutionRow]:
        """Newest first. ``flow`` is ``id`` or ``namespace/id``; ``saved`` and ``dev``
        keep only the saved (or unsaved) and dev (or not dev) executions; ``before``
        (an execution id) is the cursor of the next page: only older ids.
        ``namespaces`` keeps those of these namespaces only (none when empty);
        ``labels`` those with every one of these labels; ``since`` and ``until`` bound
        the creation time (``since <= created_at < until``); ``kind`` keeps one kind
        (FLOW, SCRIPT, CONNECTION, SCHEDULE; without it, FLOW and SCRIPT)."""
        sql = LIST_EXECUTIONS
        params: list[Any] = []
        where = []
        if flow:
            if "/" in flow:
                ns, fid = flow.split("/", 1)
                where.append("namespace = ? AND flow_id = ?")
                params += [ns, fid]
            else:
                where.append("flow_id = ?")
                params.append(flow)
        if state:
            where.append("state = ?")
            params.append(state.value)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.upper())
        else:  # calls and schedules are listed with their parent, or when asked for
            where.append("kind IN ('FLOW', 'SCRIPT')")
        if saved is not None:
            where.append(f"saved_name IS {'NOT ' if saved else ''}NULL")
        if dev is not None:
            where.append("dev = ?")
            params.append(int(dev))
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if until is not None:
            where.append("created_at < ?")
            params.append(until)
        if namespaces is not None:
            marks = ", ".join("?" * len(namespaces))
            where.append(f"namespace IN ({marks})" if namespaces else "1 = 0")
            params.extend(namespaces)
        for key, value in (labels or {}).items():
            # labels are stored as compact JSON: this pair appears exactly so, and only
            # as a key and its value (quotes inside keys and values are escaped)
            where.append(self.db.contains.format("labels"))
            params.append(f"{json.dumps(str(key))}:{json.dumps(str(value))}")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_execution(r) for r in self.db.all(sql, params)]

    def queue_of(self, execution_id: int, task: Task) -> str:
        """Where ``execution_id``'s task runs of ``task`` are queued: the execution's
        queue when it has one, else the task's (:meth:`queues_of`)."""
        return self.queues_of([execution_id])(execution_id, task)

    def queues_of(self, execution_ids: Iterable[int]) -> Callable[[int, Task], str]:
        """Where the task runs of these executions are queued, read in one statement:
        a function of an execution and a task (see :meth:`queue_of`)."""
        ids = sorted(set(execution_ids))
        own = (
            {}
            if not ids
            else {
                int(r["id"]): r["queue"]
                for r in self.db.all(EXECUTION_QUEUES.format(marks(ids)), ids)
            }
        )
        return lambda ex_id, task: str(own[ex_id]) if own.get(ex_id) else task.queue

    def run_options(self, execution_id: int) -> RunOptions:
        """What "run with options" set for this execution (empty: nothing)."""
        options = self.db.scalar(EXECUTION_OPTIONS, (execution_id,))
        return RunOptions.from_dict(json.loads(options) if options else None)

    def task_retry(self, claim: Claim) -> RetryPolicy:
        """The retry policy of the claimed task run: its task's, with its execution's
        run options over it."""
        policy = self.flows.flow_of(claim.revision_id).task(claim.task_id).retry
        return self.run_options(claim.execution_id).retry_policy(policy)

    def run_timeout(self, execution_id: int, flow: Flow) -> float | None:
        """The execution's timeout: its run option's, else its flow's."""
        timeout = self.run_options(execution_id).timeout
        return timeout if timeout is not None else flow.timeout

    def task_runs(self, execution_id: int) -> list[TaskRunRow]:
        return [_task_run(r) for r in self.db.all(TASK_RUNS, (execution_id,))]

    def attempts(self, execution_id: int) -> list[AttemptRow]:
        return [_attempt(r) for r in self.db.all(ATTEMPTS, (execution_id,))]

    def history(self, execution_id: int) -> list[HistoryRow]:
        """Every change of state of the execution and its task runs, oldest first: the
        ``state_history`` rows and the routine moves its attempts hold
        (:mod:`ordo.store.history`)."""
        rows = self.db.all(HISTORY, (execution_id,))
        return history.merge(rows, self.db.all(HISTORY_ATTEMPTS, (execution_id,)))

    def called_outputs(self, execution_id: int) -> dict[int, dict[str, Any]]:
        """The outputs of the execution's called task runs (a handler's calls, a flow
        function's steps), each its own, by task run id."""
        found: dict[int, dict[str, Any]] = {}
        for r in self.db.all(CALLED_OUTPUTS, (execution_id,)):
            found.setdefault(int(r["id"]), {})[r["key"]] = json.loads(r["value"])
        return found

    def outputs(
        self, execution_id: int, task_ids: Iterable[str] | None = None, *, flow: Flow | None = None
    ) -> dict[str, Any]:
        """The outputs of each task run's latest attempt, by task id; a for_each task's
        are the list of its items' outputs in item order. With ``flow``, every wanted
        task has an entry (``{}``, or ``[]`` for a for_each task) even without outputs."""
        wanted = None if task_ids is None else set(task_ids)
        result: dict[str, Any] = {}
        items: dict[str, dict[int, dict[str, Any]]] = {}
        for r in self.db.all(OUTPUTS, (execution_id,)):
            task_id, fork_index = r["task_id"], r["fork_index"]
            if wanted is not None and task_id not in wanted:
                continue
            value = json.loads(r["value"])
            if fork_index is None:
                result.setdefault(task_id, {})[r["key"]] = value
            else:
                items.setdefault(task_id, {}).setdefault(fork_index, {})[r["key"]] = value
        forked = {r["task_id"]: r["n"] for r in self.db.all(FORK_COUNTS, (execution_id,))}
        for task_id, count in forked.items():
            if wanted is None or task_id in wanted:
                found = items.get(task_id, {})
                result[task_id] = [found.get(i, {}) for i in range(int(count))]
        if flow is not None:
            for task in flow.tasks:
                if wanted is None or task.id in wanted:
                    result.setdefault(task.id, [] if task.for_each is not None else {})
        return result

    def active_executions(self, namespace: str, flow_id: str) -> int:
        """How many executions of a flow run now, or are admitted and wait for a worker
        (what its concurrency limit counts)."""
        return int(self.db.scalar(q.ACTIVE_EXECUTIONS, (namespace, flow_id, 0)) or 0)

    def fork_item(self, task_run_id: int) -> tuple[int | None, int | None, Any]:
        """``(fork_of, fork_index, fork_value)`` of a task run; Nones unless an item."""
        row = self.db.one(q.TASK_RUN_FORK, (task_run_id,))
        if row is None:
            raise NotFound(f"task run {task_run_id} not found")
        value = row["fork_value"]
        return row["fork_of"], row["fork_index"], None if value is None else json.loads(value)

    def children(self, execution_id: int) -> list[ExecutionRow]:
        """The executions started by this one (flow tasks, ``this.flow``; a schedule's
        ticks), oldest first; its ``this.connect`` calls are :meth:`calls`."""
        return [_execution(r) for r in self.db.all(CHILDREN, (execution_id,))]

    def calls(self, execution_id: int) -> list[ExecutionRow]:
        """The CONNECTION executions of this one's ``this.connect`` calls, oldest first."""
        return [_execution(r) for r in self.db.all(CALLS, (execution_id,))]

    def calling_task(self, attempt_id: int) -> str | None:
        """The task id of the task run attempt ``attempt_id`` belongs to (the flow task
        a child execution was started by), None if there is no such attempt."""
        row = self.db.one(ATTEMPT_TASK, (attempt_id,))
        return None if row is None else str(row["task_id"])

    def calling_run(self, attempt_id: int) -> int | None:
        """The task run attempt ``attempt_id`` belongs to, None if there is none."""
        row = self.db.one(ATTEMPT_TASK, (attempt_id,))
        return None if row is None else int(row["id"])

    def lineage(self, execution_id: int) -> list[tuple[int, str]]:
        """``(id, namespace/flow)`` from the root execution down to this one."""
        chain: list[tuple[int, str]] = []
        current: int | None = execution_id
        while current is not None and len(chain) < 1000:
            row = self.db.one(EXECUTION_LINEAGE, (current,))
            if row is None:
                raise NotFound(f"execution {current} not found")
            chain.append((current, f"{row['namespace']}/{row['flow_id']}"))
            current = row["parent_id"]
        return chain[::-1]

    def ended_among(self, execution_ids: Sequence[int]) -> dict[int, State]:
        """Which of these executions have ended, and how."""
        if not execution_ids:
            return {}
        sql = EXECUTIONS_ENDED.format(marks(execution_ids))
        return {r["id"]: State(r["state"]) for r in self.db.all(sql, list(execution_ids))}

    def attempt_outputs(self, attempt_id: int) -> dict[str, Any]:
        rows = self.db.all(ATTEMPT_OUTPUTS, (attempt_id,))
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def failing_among(self, execution_ids: Iterable[int]) -> dict[int, str]:
        """Which of these running executions no new attempt should start for, each with
        why: a task failed (not allowed to, and no ``continue_on_error``) or the
        execution is being stopped (its timeout passed)."""
        ids = sorted(set(execution_ids))
        if not ids:
            return {}
        found = {}
        for r in self.db.all(FAILING_AMONG.format(marks(ids)), ids):
            ex_id, failed, cont = int(r["id"]), r["failed"], r["continue_on_error"]
            if r["reason"]:
                found[ex_id] = str(r["reason"])
            elif failed is not None:
                flow = self.flows.flow_of(r["revision_id"])
                if not (flow.continue_on_error if cont is None else cont):
                    found[ex_id] = f"execution failed: task '{failed}' failed"
        return found

    def killing_among(self, execution_ids: Iterable[int]) -> set[int]:
        """Which of these executions are being killed."""
        ids = list(execution_ids)
        if not ids:
            return set()
        return {r["id"] for r in self.db.all(KILLING_AMONG.format(marks(ids)), ids)}

    def tree_workers(self, root_id: int) -> list[str]:
        """The workers with running attempts in this execution or its descendants."""
        return [r["worker_id"] for r in self.db.all(TREE_WORKERS, (root_id,))]

    def expired_executions(self, now: float) -> list[int]:
        return [r["id"] for r in self.db.all(EXPIRED_EXECUTIONS, (now,))]

    def running_attempt_ids(self, execution_id: int) -> list[int]:
        return [r["id"] for r in self.db.all(RUNNING_ATTEMPTS, (execution_id,))]

    def next_ready_time(
        self,
        after: float,
        *,
        execution_id: int | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """When the earliest ready row due after ``after`` becomes due (a retry's delay)."""
        sql = "SELECT min(not_before) AS due FROM ready WHERE not_before > ?"
        params: list[Any] = [after]
        if execution_id is not None:
            sql += f" AND {q.OF_ROOT}"
            params.append(execution_id)
        if queues:
            sql += f" AND queue IN ({', '.join('?' * len(queues))})"
            params.extend(queues)
        due: float | None = self.db.scalar(sql, params)
        return due


def _json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _execution(r: Row) -> ExecutionRow:
    return ExecutionRow(
        id=r["id"],
        revision_id=r["revision_id"],
        namespace=r["namespace"],
        flow_id=r["flow_id"],
        state=State(r["state"]),
        inputs=json.loads(r["inputs"]),
        labels=json.loads(r["labels"]),
        pending=r["pending"],
        reason=r["reason"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        deadline=r["deadline"],
        parent_id=r["parent_id"],
        root_id=r["root_id"],
        parent_attempt_id=r["parent_attempt_id"],
        outputs=_json(r["outputs"]),
        stopped=r["stopped"],
        dev=bool(r["dev"]),
        saved_name=r["saved_name"],
        saved_description=r["saved_description"],
        saved_at=r["saved_at"],
        original_id=r["original_id"],
        started_by=r["started_by"],
        queue=r["queue"],
        options=_json(r["options"]),
        scope=None if r["scope"] is None else tuple(json.loads(r["scope"])),
        kind=str(r["kind"]),
    )


def _task_run(r: Row) -> TaskRunRow:
    return TaskRunRow(
        id=r["id"],
        execution_id=r["execution_id"],
        task_id=r["task_id"],
        state=State(r["state"]),
        pending_deps=r["pending_deps"],
        allow_failure=bool(r["allow_failure"]),
        attempts=r["attempts"],
        last_attempt_id=r["last_attempt_id"],
        reason=r["reason"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        fork_of=r["fork_of"],
        fork_index=r["fork_index"],
        parent_run_id=r["parent_run_id"],
        skipped_unstarted=bool(r["skipped_unstarted"]),
    )


def _attempt(r: Row) -> AttemptRow:
    return AttemptRow(
        id=r["id"],
        task_run_id=r["task_run_id"],
        execution_id=r["execution_id"],
        number=r["number"],
        state=State(r["state"]),
        worker_id=r["worker_id"],
        lease_expires_at=r["lease_expires_at"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        exit_code=r["exit_code"],
        reason=r["reason"],
        error=r["error"],
        cpu_seconds=r["cpu_seconds"],
        peak_rss_kb=r["peak_rss_kb"],
    )


def claim_of(r: Row) -> Claim:
    """A claim from a row of :data:`~ordo.store.queries.CLAIM_COLUMNS`."""
    return Claim(
        attempt_id=r["attempt_id"],
        task_run_id=r["task_run_id"],
        execution_id=r["execution_id"],
        revision_id=r["revision_id"],
        task_id=r["task_id"],
        number=r["number"],
        first_started_at=r["first_started_at"],
    )
