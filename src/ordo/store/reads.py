"""The store's reading side: every query that only looks. Shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ordo.errors import NotFound
from ordo.model import Flow, RetryPolicy, RunOptions, State, Task
from ordo.store import history
from ordo.store import queries as q
from ordo.store.db import Db, Row
from ordo.store.flows import Flows
from ordo.store.records import (
    AttemptRow,
    CheckRow,
    Claim,
    ExecutionRow,
    HistoryRow,
    LogLine,
    MetricRow,
    TaskRunRow,
    WorkerRow,
)


class StoreReads:
    """Queries over executions, task runs, attempts, logs, outputs, metrics and flow
    revisions. Flow definitions are cached per store: a revision never changes."""

    db: Db
    flows: Flows

    # -- the shared SQL layer (the concerns still inheriting reach it here) ------------
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, params)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        return self.db.insert(sql, params)

    def _values(self, rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
        return self.db.values(rows, types)

    def _ids(self, values: Sequence[int]) -> tuple[str, list[Any]]:
        return self.db.ids(values)

    def _lock(self, name: str) -> None:
        self.db.lock(name)

    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction; nested uses join the outer one."""
        return self.db.transaction()

    def running_claims(self, worker_id: str) -> list[Claim]:
        """The attempts leased to ``worker_id`` that have not ended, as claims."""
        return [claim_of(r) for r in self._all(q.OWN_RUNNING, (worker_id,))]

    def list_workers(self, since: float, limit: int = 100) -> list[WorkerRow]:
        """Workers running now, or stopped after ``since``; newest first."""
        return [WorkerRow(*r) for r in self._all(q.LIST_WORKERS, (since, limit))]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.db.one(sql, params)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.db.all(sql, params)

    def get_execution(self, execution_id: int) -> ExecutionRow:
        row = self._one(q.GET_EXECUTION, (execution_id,))
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
        sql = q.LIST_EXECUTIONS
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
        return [_execution(r) for r in self._all(sql, params)]

    def queue_of(self, execution_id: int, task: Task) -> str:
        """Where ``execution_id``'s task runs of ``task`` are queued: the execution's
        queue when it has one, else the task's."""
        row = self._one(q.EXECUTION_QUEUE, (execution_id,))
        return str(row[0]) if row and row[0] else task.queue

    def run_options(self, execution_id: int) -> RunOptions:
        """What "run with options" set for this execution (empty: nothing)."""
        row = self._one(q.EXECUTION_OPTIONS, (execution_id,))
        return RunOptions.from_dict(json.loads(row[0]) if row and row[0] else None)

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
        return [_task_run(r) for r in self._all(q.TASK_RUNS, (execution_id,))]

    def attempts(self, execution_id: int) -> list[AttemptRow]:
        return [_attempt(r) for r in self._all(q.ATTEMPTS, (execution_id,))]

    def history(self, execution_id: int) -> list[HistoryRow]:
        """Every change of state of the execution and its task runs, oldest first: the
        ``state_history`` rows and the routine moves its attempts hold
        (:mod:`ordo.store.history`)."""
        rows = self._all(q.HISTORY, (execution_id,))
        return history.merge(rows, self._all(q.HISTORY_ATTEMPTS, (execution_id,)))

    def called_outputs(self, execution_id: int) -> dict[int, dict[str, Any]]:
        """The outputs of the execution's called task runs (a handler's calls, a flow
        function's steps), each its own, by task run id."""
        found: dict[int, dict[str, Any]] = {}
        for run_id, key, value in self._all(q.CALLED_OUTPUTS, (execution_id,)):
            found.setdefault(int(run_id), {})[key] = json.loads(value)
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
        for task_id, fork_index, key, value in self._all(q.OUTPUTS, (execution_id,)):
            if wanted is not None and task_id not in wanted:
                continue
            if fork_index is None:
                result.setdefault(task_id, {})[key] = json.loads(value)
            else:
                items.setdefault(task_id, {}).setdefault(fork_index, {})[key] = json.loads(value)
        forked = {t: n for t, n in self._all(q.FORK_COUNTS, (execution_id,))}
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
        row = self._one(q.ACTIVE_EXECUTIONS, (namespace, flow_id, 0))
        return int(row[0]) if row else 0

    def fork_item(self, task_run_id: int) -> tuple[int | None, int | None, Any]:
        """``(fork_of, fork_index, fork_value)`` of a task run; Nones unless an item."""
        row = self._one(q.TASK_RUN_FORK, (task_run_id,))
        if row is None:
            raise NotFound(f"task run {task_run_id} not found")
        value = json.loads(row[2]) if row[2] is not None else None
        return row[0], row[1], value

    def children(self, execution_id: int) -> list[ExecutionRow]:
        """The executions started by this one (flow tasks, ``this.flow``; a schedule's
        ticks), oldest first; its ``this.connect`` calls are :meth:`calls`."""
        return [_execution(r) for r in self._all(q.CHILDREN, (execution_id,))]

    def calls(self, execution_id: int) -> list[ExecutionRow]:
        """The CONNECTION executions of this one's ``this.connect`` calls, oldest first."""
        return [_execution(r) for r in self._all(q.CALLS, (execution_id,))]

    def calling_task(self, attempt_id: int) -> str | None:
        """The task id of the task run attempt ``attempt_id`` belongs to (the flow task
        a child execution was started by), None if there is no such attempt."""
        row = self._one(q.ATTEMPT_TASK, (attempt_id,))
        return None if row is None else str(row[0])

    def calling_run(self, attempt_id: int) -> int | None:
        """The task run attempt ``attempt_id`` belongs to, None if there is none."""
        row = self._one(q.ATTEMPT_TASK, (attempt_id,))
        return None if row is None else int(row[1])

    def lineage(self, execution_id: int) -> list[tuple[int, str]]:
        """``(id, namespace/flow)`` from the root execution down to this one."""
        chain: list[tuple[int, str]] = []
        current: int | None = execution_id
        while current is not None and len(chain) < 1000:
            row = self._one(q.EXECUTION_LINEAGE, (current,))
            if row is None:
                raise NotFound(f"execution {current} not found")
            chain.append((current, f"{row[1]}/{row[2]}"))
            current = row[0]
        return chain[::-1]

    def ended_among(self, execution_ids: Sequence[int]) -> dict[int, State]:
        """Which of these executions have ended, and how."""
        if not execution_ids:
            return {}
        sql = q.EXECUTIONS_ENDED.format(", ".join("?" * len(execution_ids)))
        return {r[0]: State(r[1]) for r in self._all(sql, list(execution_ids))}

    def attempt_outputs(self, attempt_id: int) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._all(q.ATTEMPT_OUTPUTS, (attempt_id,))}

    def metrics(self, execution_id: int) -> list[MetricRow]:
        return [
            MetricRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])
            for r in self._all(q.METRICS, (execution_id,))
        ]

    def checks(self, execution_id: int) -> list[CheckRow]:
        """The results of every pre and post check that ran in the execution, in the
        order they ran (attempt by attempt)."""
        return [
            CheckRow(
                r["attempt_id"],
                r["task_run_id"],
                r["phase"],
                int(r["position"]),
                r["kind"],
                bool(r["ok"]),
                r["message"],
                r["output"],
                r["started_at"],
                r["ended_at"],
            )
            for r in self._all(q.CHECKS, (execution_id,))
        ]

    def logs(
        self,
        execution_id: int,
        *,
        attempt_ids: Sequence[int] | None = None,
        after_id: int = 0,
        limit: int = 10_000,
    ) -> list[LogLine]:
        """Log lines in order (of ``attempt_ids`` only, when given), ``limit`` at a time;
        page with ``after_id``."""
        if attempt_ids is None:
            rows = self._all(q.LOGS, (execution_id, after_id, limit))
        elif not attempt_ids:
            rows = []
        else:
            marks = ", ".join("?" * len(attempt_ids))
            rows = self._all(
                "SELECT id, execution_id, attempt_id, at, stream, line FROM logs "
                f"WHERE execution_id = ? AND attempt_id IN ({marks}) AND id > ? "
                "ORDER BY id LIMIT ?",
                (execution_id, *attempt_ids, after_id, limit),
            )
        return [LogLine(*r) for r in rows]

    def killing_among(self, execution_ids: Iterable[int]) -> set[int]:
        """Which of these executions are being killed."""
        ids = list(execution_ids)
        if not ids:
            return set()
        return {r[0] for r in self._all(q.KILLING_AMONG.format(q.marks(ids)), ids)}

    def tree_workers(self, root_id: int) -> list[str]:
        """The workers with running attempts in this execution or its descendants."""
        return [r[0] for r in self._all(q.TREE_WORKERS, (root_id,))]

    def expired_executions(self, now: float) -> list[int]:
        return [r[0] for r in self._all(q.EXPIRED_EXECUTIONS, (now,))]

    def running_attempt_ids(self, execution_id: int) -> list[int]:
        return [r[0] for r in self._all(q.RUNNING_ATTEMPTS, (execution_id,))]

    def next_ready_time(
        self,
        after: float,
        *,
        execution_id: int | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """When the earliest ready row due after ``after`` becomes due (a retry's delay)."""
        sql = "SELECT min(not_before) FROM ready WHERE not_before > ?"
        params: list[Any] = [after]
        if execution_id is not None:
            sql += f" AND {q.OF_ROOT}"
            params.append(execution_id)
        if queues:
            sql += f" AND queue IN ({', '.join('?' * len(queues))})"
            params.extend(queues)
        row = self._one(sql, params)
        return row[0] if row and row[0] is not None else None


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
