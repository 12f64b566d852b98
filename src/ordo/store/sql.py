"""The store's shared shape: every operation in SQL that both backends speak.

Backends (:mod:`ordo.store.sqlite`, later PostgreSQL) supply the connection, the
transaction opening (``BEGIN IMMEDIATE`` on SQLite), the placeholder style and the few
queries that really differ (claiming). State lives here and nowhere else: every
transition is a conditional ``UPDATE ... WHERE state IN (...)`` and is written to
``state_history`` in the same transaction.
"""

from __future__ import annotations

import json
import random
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from ordo import retry
from ordo.errors import NotFound
from ordo.model import Flow, Outcome, State, check_transition, sources_of
from ordo.store import queries as q
from ordo.store.reads import Row, StoreReads
from ordo.store.records import (
    Claim,
    NewLog,
    RecordResult,
    Revision,
)


class Closable(Protocol):
    def close(self) -> None: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class SqlStore(StoreReads):
    """One connection to one database; use from one thread at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    # -- backend hooks ---------------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT and return the new row's id."""

    @abstractmethod
    def _take_ready(self, now: float, limit: int, where: str, params: list[Any]) -> list[Row]:
        """Remove up to ``limit`` due rows from ``ready`` matching ``where`` and return
        ``(task_run_id, execution_id)`` pairs, oldest first, safely under concurrency."""

    def listen(self, wake: Callable[[], None]) -> Closable | None:
        """Call ``wake`` (from another thread) when ready rows are added by any process;
        None when the backend has no such notifications (SQLite)."""
        return None

    def reconnect(self) -> None:
        """Open a new connection after :class:`StoreUnavailable`."""

    def _ready_added(self) -> None:
        """Ready rows were added in this transaction: wake workers elsewhere (PostgreSQL
        sends a notification at commit; SQLite's workers live in this process)."""

    @abstractmethod
    def close(self) -> None: ...

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    # -- flow revisions --------------------------------------------------------------
    def add_revision(self, flow: Flow, source: str, content_hash: str, now: float) -> Revision:
        """Store ``flow`` as its next revision (the caller found no matching one)."""
        with self.transaction():
            row = self._one(q.MAX_REVISION, (flow.namespace, flow.id))
            number = (row[0] if row and row[0] is not None else 0) + 1
            definition = _dumps(flow.to_dict())
            rev_id = self._insert(
                q.INSERT_REVISION,
                (flow.namespace, flow.id, number, content_hash, flow.path, source, definition, now),
            )
        self._flows[rev_id] = flow
        return Revision(rev_id, flow.namespace, flow.id, number, content_hash, flow.path, now, flow)

    # -- executions ------------------------------------------------------------------
    def create_execution(
        self,
        revision_id: int,
        inputs: Mapping[str, Any],
        labels: Mapping[str, str],
        now: float,
        *,
        parent_id: int | None = None,
    ) -> int:
        """Record a new execution of a revision and start it: CREATED -> RUNNING, one
        task run per task, and the tasks without dependencies made ready."""
        flow = self.flow_of(revision_id)
        deadline = now + flow.timeout if flow.timeout else None
        with self.transaction():
            ex_id = self._insert(
                q.INSERT_EXECUTION,
                (
                    revision_id,
                    flow.namespace,
                    flow.id,
                    State.CREATED.value,
                    _dumps(inputs),
                    _dumps(dict(labels)),
                    len(flow.tasks),
                    now,
                    deadline,
                    parent_id,
                ),
            )
            self._history(ex_id, None, None, State.CREATED, now, None)
            ids: dict[str, int] = {}
            for task in flow.tasks:
                ids[task.id] = self._insert(
                    q.INSERT_TASK_RUN,
                    (
                        ex_id,
                        task.id,
                        State.CREATED.value,
                        len(task.depends_on),
                        int(task.allow_failure),
                        now,
                        task.queue,
                    ),
                )
            self._executemany(
                q.INSERT_DEP,
                [(ids[d], ids[t.id]) for t in flow.tasks for d in t.depends_on],
            )
            self._executemany(
                q.INSERT_READY,
                [(ids[t.id], ex_id, now, t.queue) for t in flow.tasks if not t.depends_on],
            )
            self._ready_added()
            self._set_execution_state(ex_id, State.RUNNING, now, None)
            if not flow.tasks:
                self._end_execution(ex_id, now)
        return ex_id

    # -- the worker's side -----------------------------------------------------------
    def claim(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_seconds: float,
        *,
        execution_id: int | None = None,
        queues: Sequence[str] | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` ready task runs (of one execution, and of the given queues,
        when asked) and start an attempt of each, leased to ``worker_id`` until
        ``now + lease_seconds``."""
        claims: list[Claim] = []
        if limit <= 0:
            return claims
        where: list[str] = ["not_before <= ?"]
        params: list[Any] = [now]
        if execution_id is not None:
            where.append("execution_id = ?")
            params.append(execution_id)
        if queues:
            where.append(f"queue IN ({', '.join('?' * len(queues))})")
            params.extend(queues)
        with self.transaction():
            for tr_id, ex_id in self._take_ready(now, limit, " AND ".join(where), params):
                claim = self._start_attempt(tr_id, ex_id, worker_id, now, now + lease_seconds)
                if claim is not None:
                    claims.append(claim)
        return claims

    def _start_attempt(
        self, tr_id: int, ex_id: int, worker_id: str, now: float, lease: float
    ) -> Claim | None:
        row = self._one(q.TASK_RUN_FOR_CLAIM, (tr_id,))
        if row is None:
            return None
        task_id, state, attempts, started_at, revision_id, ex_state = row
        if ex_state != State.RUNNING.value or State(state).terminal:
            return None
        number = attempts + 1
        attempt_id = self._insert(
            q.INSERT_ATTEMPT, (tr_id, ex_id, number, State.RUNNING.value, worker_id, lease, now)
        )
        if state == State.CREATED.value:  # the first attempt also starts the task run
            check_transition(State.CREATED, State.RUNNING, f"task run {tr_id}")
            self._execute(q.TASK_RUN_FIRST_START, (number, attempt_id, now, tr_id))
            self._history(ex_id, tr_id, State.CREATED, State.RUNNING, now, None)
        else:
            self._execute(q.TASK_RUN_STARTED, (number, attempt_id, now, tr_id))
        return Claim(attempt_id, tr_id, ex_id, revision_id, task_id, number, started_at or now)

    def heartbeat(self, worker_id: str, attempt_ids: Sequence[int], lease_until: float) -> None:
        """Extend the leases of ``worker_id``'s running attempts."""
        if not attempt_ids:
            return
        with self.transaction():
            self._executemany(q.HEARTBEAT, [(lease_until, a, worker_id) for a in attempt_ids])

    def add_logs(self, lines: Sequence[NewLog]) -> None:
        if not lines:
            return
        with self.transaction():
            self._executemany(
                q.INSERT_LOG,
                [(ln.execution_id, ln.attempt_id, ln.at, ln.stream, ln.line) for ln in lines],
            )

    def record_outcomes(
        self,
        outcomes: Sequence[tuple[Claim, Outcome]],
        now: float,
        rng: random.Random,
    ) -> RecordResult:
        """Record each attempt's outcome and everything it decides, atomically: its
        outputs and metrics, a retry (a new ready row with ``not_before``) or the task
        run's end, the dependents it makes ready or skips, and the execution's end."""
        result = RecordResult()
        with self.transaction():
            for claim, outcome in outcomes:
                self._record_one(claim, outcome, now, rng, result)
        return result

    def _record_one(
        self, claim: Claim, outcome: Outcome, now: float, rng: random.Random, result: RecordResult
    ) -> None:
        state = outcome.state if outcome.state in (State.SUCCESS, State.KILLED) else State.FAILED
        cur = self._execute(
            q.FINISH_ATTEMPT,
            (
                state.value,
                now,
                outcome.exit_code,
                outcome.reason,
                outcome.error,
                outcome.cpu_seconds,
                outcome.peak_rss_kb,
                claim.attempt_id,
            ),
        )
        if cur.rowcount == 0:
            result.lost.append(claim.attempt_id)
            return
        ids = (claim.attempt_id, claim.task_run_id, claim.execution_id)
        if outcome.outputs:
            self._executemany(
                q.INSERT_OUTPUT, [(*ids, k, _dumps(v)) for k, v in outcome.outputs.items()]
            )
        if outcome.metrics:
            self._executemany(
                q.INSERT_METRIC,
                [
                    (*ids, m.name, m.kind, m.value, _dumps(dict(m.tags)), now)
                    for m in outcome.metrics
                ],
            )
        if state is State.SUCCESS:
            self._finish_task_run(
                claim.task_run_id, claim.execution_id, State.SUCCESS, None, now, result
            )
            return
        if state is State.FAILED and self._retry(claim, outcome, now, rng):
            result.retries.append(claim.task_run_id)
            return
        why = outcome.error or outcome.reason or "failed"
        if state is State.KILLED:  # RUNNING -> KILLING -> KILLED, as the table says
            self._set_task_run_state(claim.task_run_id, claim.execution_id, State.KILLING, now, why)
        self._finish_task_run(claim.task_run_id, claim.execution_id, state, why, now, result)

    def _retry(self, claim: Claim, outcome: Outcome, now: float, rng: random.Random) -> bool:
        stopping = self._one(q.EXECUTION_REASON, (claim.execution_id,))
        if self._execution_state(claim.execution_id) is not State.RUNNING or (
            stopping and stopping[0]
        ):
            return False
        policy = self.flow_of(claim.revision_id).task(claim.task_id).retry
        counted = self._one(q.COUNTED_ATTEMPTS, (claim.task_run_id,))
        decision = retry.decide(
            policy,
            attempt_number=int(counted[0]) if counted else claim.number,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            elapsed=now - claim.first_started_at,
            rng=rng,
        )
        if not decision.retry:
            return False
        self._execute(q.REQUEUE, (now + decision.delay, claim.task_run_id))
        self._ready_added()
        return True

    def _finish_task_run(
        self,
        tr_id: int,
        ex_id: int,
        state: State,
        reason: str | None,
        now: float,
        result: RecordResult,
    ) -> None:
        """End a task run, then propagate: dependents become ready, or are skipped."""
        row = self._set_task_run_state(tr_id, ex_id, state, now, reason)
        if row is None:
            return
        _, task_id, allow_failure = row
        pending: int | None = self._pending_down(ex_id)
        if state is State.SUCCESS or (state is State.FAILED and allow_failure):
            self._release_dependents(tr_id, ex_id, now)
        else:
            self._skip_dependents(tr_id, ex_id, task_id, state, now)
            if state is State.FAILED and not self._continue_on_error(ex_id):
                self._skip_unstarted(ex_id, f"execution failed: task '{task_id}' failed", now)
                pending = None  # skipping changed it
        self._maybe_end(ex_id, now, result, pending)

    def _release_dependents(self, tr_id: int, ex_id: int, now: float) -> None:
        self._execute(q.DEPENDENTS_DOWN, (tr_id,))
        if self._execute(q.READY_DEPENDENTS, (now, tr_id)).rowcount:
            self._ready_added()

    def _skip_dependents(
        self, tr_id: int, ex_id: int, task_id: str, state: State, now: float
    ) -> None:
        verb = "failed" if state is State.FAILED else state.value.lower()
        for (dep_id,) in self._all(q.DEPENDENTS, (tr_id,)):
            self._skip(dep_id, ex_id, f"dependency '{task_id}' {verb}", now)

    def _skip(self, tr_id: int, ex_id: int, reason: str, now: float) -> None:
        """SKIP a not-started task run and, transitively, its dependents."""
        stack = [(tr_id, reason)]
        while stack:
            current, why = stack.pop()
            row = self._set_task_run_state(current, ex_id, State.SKIPPED, now, why)
            if row is None:
                continue
            self._execute(q.DELETE_READY, (current,))
            self._pending_down(ex_id)
            for (dep_id,) in self._all(q.DEPENDENTS, (current,)):
                stack.append((dep_id, f"dependency '{row[1]}' was skipped"))

    def _skip_unstarted(self, ex_id: int, reason: str, now: float) -> None:
        for (tr_id,) in self._all(q.UNSTARTED_TASK_RUNS, (ex_id,)):
            self._skip(tr_id, ex_id, reason, now)

    def _continue_on_error(self, ex_id: int) -> bool:
        row = self._one(q.EXECUTION_REVISION, (ex_id,))
        assert row is not None
        return self.flow_of(row[0]).continue_on_error

    def _pending_down(self, ex_id: int) -> int:
        """One task run fewer left in the execution; how many remain."""
        row = self._execute(q.EXECUTION_PENDING_DOWN, (1, ex_id)).fetchone()
        return int(row[0])

    def _maybe_end(
        self, ex_id: int, now: float, result: RecordResult, pending: int | None = None
    ) -> None:
        if pending is None:
            row = self._one(q.EXECUTION_PENDING, (ex_id,))
            pending = int(row[0]) if row else 1
        if pending <= 0:
            final = self._end_execution(ex_id, now)
            if final is not None:
                result.ended_executions[ex_id] = final

    def _end_execution(self, ex_id: int, now: float) -> State | None:
        counts = {State(s): n for s, n in self._all(q.TASK_RUN_COUNTS, (ex_id,))}
        reason_row = self._one(q.EXECUTION_REASON, (ex_id,))
        reason = reason_row[0] if reason_row else None
        if reason:
            final = State.FAILED
        elif self._has_hard_failure(ex_id):
            final, reason = State.FAILED, self._first_failure(ex_id)
        elif counts.get(State.KILLED):
            final, reason = State.FAILED, "a task was killed"
        elif counts.get(State.FAILED):
            final, reason = State.WARNING, "a task allowed to fail failed"
        else:
            final = State.SUCCESS
        if not self._set_execution_state(ex_id, final, now, reason):
            return None
        self._execute(q.EXECUTION_ENDED, (now, reason, ex_id))
        return final

    def _has_hard_failure(self, ex_id: int) -> bool:
        return self._one(q.HARD_FAILURE, (ex_id,)) is not None

    def _first_failure(self, ex_id: int) -> str:
        row = self._one(q.FIRST_FAILURE, (ex_id,))
        return f"task '{row[0]}' failed: {row[1]}" if row else "a task failed"

    def fail_execution(self, ex_id: int, reason: str, now: float) -> RecordResult:
        """Stop starting work for an execution (its timeout passed): unstarted task runs
        end SKIPPED; it ends FAILED with ``reason`` once running attempts report."""
        result = RecordResult()
        with self.transaction():
            self._execute(q.SET_EXECUTION_REASON, (reason, ex_id))
            self._skip_unstarted(ex_id, reason, now)
            self._maybe_end(ex_id, now, result)
        return result

    def reap_expired(self, now: float, rng: random.Random, limit: int = 100) -> RecordResult:
        """Attempts whose lease expired belong to a worker that died: record each as
        FAILED (reason ``lost``, naming the worker) and let the retry policy decide."""
        result = RecordResult()
        with self.transaction():
            for row in self._all(q.EXPIRED_LEASES, (now, limit)):
                claim = Claim(*row[:7])
                lost = Outcome(State.FAILED, reason="lost", error=f"worker lost ({row[7]})")
                self._record_one(claim, lost, now, rng, result)
        return result

    def hand_back(self, claims: Sequence[Claim], now: float) -> None:
        """Return claimed attempts a stopping worker will not finish: each attempt ends
        KILLED (reason ``handed back``, not counted by retries) and its task run is ready
        again at once."""
        with self.transaction():
            for claim in claims:
                cur = self._execute(
                    q.FINISH_ATTEMPT,
                    (
                        State.KILLED.value,
                        now,
                        None,
                        "handed back",
                        "the worker stopped before the attempt ended",
                        None,
                        None,
                        claim.attempt_id,
                    ),
                )
                if cur.rowcount:
                    self._execute(q.REQUEUE, (now, claim.task_run_id))
                    self._ready_added()

    def register_worker(
        self, worker_id: str, host: str, pid: int, queues: Sequence[str], now: float
    ) -> None:
        with self.transaction():
            self._execute(q.REGISTER_WORKER, (worker_id, host, pid, ",".join(queues), now, now))

    def worker_heartbeat(self, worker_id: str, running: int, now: float) -> None:
        with self.transaction():
            self._execute(q.WORKER_HEARTBEAT, (now, running, worker_id))

    def worker_stopped(self, worker_id: str, now: float) -> None:
        with self.transaction():
            self._execute(q.WORKER_STOPPED, (now, now, worker_id))

    # -- transitions -----------------------------------------------------------------
    def _execution_state(self, ex_id: int) -> State:
        row = self._one(q.EXECUTION_STATE, (ex_id,))
        if row is None:
            raise NotFound(f"execution {ex_id} not found")
        return State(row[0])

    def _set_execution_state(
        self, ex_id: int, new: State, now: float, reason: str | None
    ) -> Row | None:
        old = self._one(q.EXECUTION_STATE, (ex_id,))
        if old is None:
            raise NotFound(f"execution {ex_id} not found")
        params = (new.value, reason, ex_id, old[0])
        if not self._transition(q.SET_EXECUTION_STATE, params, State(old[0]), new):
            return None
        self._history(ex_id, None, State(old[0]), new, now, reason)
        if new is State.RUNNING:
            self._execute(q.EXECUTION_STARTED, (now, ex_id))
        return old

    def _set_task_run_state(
        self,
        tr_id: int,
        ex_id: int,
        new: State,
        now: float,
        reason: str | None,
        *,
        known: State | None = None,
    ) -> Row | None:
        """``-> new`` for a task run; its ``(state, task_id, allow_failure)`` before, or
        None when the table forbids it or another process changed it first. ``known``
        skips reading the current state when the caller just read it."""
        row: Row | None = (known.value, None, None) if known else None
        if row is None:
            row = self._one(q.TASK_RUN_STATE, (tr_id,))
            if row is None:
                raise NotFound(f"task run {tr_id} not found")
        ended = now if new.terminal else None
        params = (new.value, reason, ended, tr_id, row[0])
        if not self._transition(q.SET_TASK_RUN_STATE, params, State(row[0]), new):
            return None
        self._history(ex_id, tr_id, State(row[0]), new, now, reason)
        return row

    def _transition(self, update: str, params: Sequence[Any], old: State, new: State) -> bool:
        """Apply ``old -> new`` only if the table allows it, as an update conditional on
        ``old``; False on a lost race."""
        if old not in sources_of(new):
            return False
        return bool(self._execute(update, params).rowcount == 1)

    def _history(
        self,
        ex_id: int,
        tr_id: int | None,
        old: State | None,
        new: State,
        now: float,
        reason: str | None,
    ) -> None:
        self._execute(
            q.INSERT_HISTORY, (ex_id, tr_id, old.value if old else None, new.value, now, reason)
        )
