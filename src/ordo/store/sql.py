"""The store's shared shape: every operation in SQL that both backends speak.

Backends (:mod:`ordo.store.sqlite`, :mod:`ordo.store.postgres`) supply the connection,
the transaction opening (``BEGIN IMMEDIATE`` on SQLite), the placeholder style and the
few queries that really differ (claiming). State lives here and nowhere else; what an
outcome decides is in :mod:`ordo.store.outcomes`. Claims and successes are recorded with
a few set-based statements per batch, whatever its size.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ordo.errors import Conflict, NotFound
from ordo.model import CONNECTIONS, Flow, Outcome, RunOptions, State, Task
from ordo.store import queries as q
from ordo.store.db import Closable, Db, Row, dumps
from ordo.store.flows import Flows
from ordo.store.history import routine_end
from ordo.store.outcomes import RECORDED, finish_params
from ordo.store.overview import Overview
from ordo.store.ports import Decisions
from ordo.store.reads import Reads, claim_of
from ordo.store.records import (
    AttemptProcess,
    Claim,
    NewLog,
    RecordResult,
    TaskRunRow,
)
from ordo.store.retention import Logs, Retention
from ordo.store.secrets import Connections, Secrets, Tokens
from ordo.store.steps import Steps
from ordo.store.transitions import Change
from ordo.store.triggers import Triggers


def _still_reusable(
    old: Flow, new: Flow, reused: Mapping[str, TaskRunRow]
) -> dict[str, TaskRunRow]:
    """Of the task runs reused from ``old``'s execution, those ``new`` has with the same
    dependencies, all of them reused too."""
    old_ids = {t.id for t in old.tasks}
    kept = {
        t.id
        for t in new.tasks
        if t.id in reused
        and t.id in old_ids
        and set(t.depends_on) == set(old.task(t.id).depends_on)
    }
    changed = True
    while changed:  # a task is reused only when everything upstream of it is
        changed = False
        for task in new.tasks:
            if task.id in kept and not all(d in kept for d in task.depends_on):
                kept.discard(task.id)
                changed = True
    return {task_id: reused[task_id] for task_id in kept}


FIND_SCHEDULE = """
SELECT id FROM executions
WHERE kind = 'SCHEDULE' AND state = 'RUNNING' AND namespace = ? AND flow_id = ? AND started_by = ?
ORDER BY id LIMIT 1
"""
RUNNING_SCHEDULES = """
SELECT id, namespace, flow_id, started_by FROM executions
WHERE kind = 'SCHEDULE' AND state = 'RUNNING' ORDER BY id
"""


class SqlStore(Steps):
    """The store over one :class:`~ordo.store.db.Db`; use from one thread at a time."""

    def __init__(self, db: Db, *, policy: Decisions | None = None) -> None:
        super().__init__()
        self.db = db
        # -- flows and revisions
        self.flows = flows = Flows(db)
        self.add_revision = flows.add_revision
        self.find_revision = flows.find_revision
        self.newest_at = flows.newest_at
        self.get_revision = flows.get_revision
        self.flow_of = flows.flow_of
        self.find_flow = flows.find_flow
        self.list_flows = flows.list_flows
        self.namespaces = flows.namespaces
        self.revisions = flows.revisions
        self.revision_source = flows.revision_source
        self.revision_scripts = flows.revision_scripts
        self.set_flow_active = flows.set_flow_active
        self.flow_active = flows.flow_active
        self.flow_flags = flows.flow_flags
        self.deployed_flows = flows.deployed_flows
        self.flow_deploy = flows.flow_deploy
        self.set_deployed = flows.set_deployed
        self.set_removed = flows.set_removed
        # -- executions, task runs and attempts: reads
        self.reads = reads = Reads(db, flows)
        self.running_claims = reads.running_claims
        self.list_workers = reads.list_workers
        self.get_execution = reads.get_execution
        self.list_executions = reads.list_executions
        self.queue_of = reads.queue_of
        self.run_options = reads.run_options
        self.task_retry = reads.task_retry
        self.run_timeout = reads.run_timeout
        self.task_runs = reads.task_runs
        self.attempts = reads.attempts
        self.history = reads.history
        self.called_outputs = reads.called_outputs
        self.outputs = reads.outputs
        self.active_executions = reads.active_executions
        self.fork_item = reads.fork_item
        self.children = reads.children
        self.calls = reads.calls
        self.calling_task = reads.calling_task
        self.calling_run = reads.calling_run
        self.lineage = reads.lineage
        self.ended_among = reads.ended_among
        self.attempt_outputs = reads.attempt_outputs
        self.killing_among = reads.killing_among
        self.tree_workers = reads.tree_workers
        self.expired_executions = reads.expired_executions
        self.running_attempt_ids = reads.running_attempt_ids
        self.next_ready_time = reads.next_ready_time
        # -- logs and retention
        logs = Logs(db)
        self.add_logs = logs.add_logs
        self.logs = logs.logs
        self.metrics = logs.metrics
        self.checks = logs.checks
        retention = Retention(db, reads)
        self.reclaim_space = retention.reclaim_space
        self.save_execution = retention.save_execution
        self.unsave_execution = retention.unsave_execution
        self.find_saved = retention.find_saved
        self.collect_garbage = retention.collect_garbage
        # -- the overview
        overview = Overview(db)
        self.states_since = overview.states_since
        self.recent_outcomes = overview.recent_outcomes
        self.last_change = overview.last_change
        self.ping = overview.ping
        self.gauges = overview.gauges
        self._policy = policy
        db.on_commit(self._write_history)
        db.on_commit(lambda: self._ready_settled(committing=True))
        db.on_rollback(self._forget_history)
        db.on_rollback(lambda: self._ready_settled(committing=False))
        # -- tokens and secrets
        self.secrets = secrets = Secrets(db)
        self.set_secret = secrets.set_secret
        self.get_secret = secrets.get_secret
        self.secret_rows = secrets.secret_rows
        self.list_secrets = secrets.list_secrets
        self.remove_secret = secrets.remove_secret
        tokens = Tokens(db)
        self.add_token = tokens.add_token
        self.find_token = tokens.find_token
        self.token_used = tokens.token_used
        self.list_tokens = tokens.list_tokens
        self.revoke_token = tokens.revoke_token
        self.session_token = tokens.session_token
        # -- triggers and leases
        triggers = Triggers(db)
        self.add_schedule = triggers.add_schedule
        self.update_schedule = triggers.update_schedule
        self.get_schedule = triggers.get_schedule
        self.list_schedules = triggers.list_schedules
        self.remove_schedule = triggers.remove_schedule
        self.schedule_checked = triggers.schedule_checked
        self.set_schedule_checked = triggers.set_schedule_checked
        self.tick_taken = triggers.tick_taken
        self.add_tick = triggers.add_tick
        self.ticks = triggers.ticks
        self.take_lease = triggers.take_lease
        self.drop_lease = triggers.drop_lease
        self.add_event = triggers.add_event
        self.set_event_executions = triggers.set_event_executions
        self.list_events = triggers.list_events
        self.collect_events = triggers.collect_events
        self.ended_since = triggers.ended_since
        self.notified = triggers.notified
        self.add_notification = triggers.add_notification
        self.notifications = triggers.notifications
        connections = Connections(db)
        self.save_connection = connections.save_connection
        self.remove_connection = connections.remove_connection
        self.get_connection = connections.get_connection
        self.list_connections = connections.list_connections

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.db.backend

    def upgrade(self) -> int:
        """Apply pending migrations; returns the schema version now in force."""
        return self.db.upgrade()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def listen(self, wake: Callable[[], None]) -> Closable | None:
        """Call ``wake`` (from another thread) when ready rows are added; None when the
        backend has no such notifications. A listener whose ``cross_process`` is false
        hears only this process (SQLite)."""
        return self.db.listen(wake)

    def reconnect(self) -> None:
        """Open a new connection after :class:`StoreUnavailable`."""
        self.db.reconnect()

    def close(self) -> None:
        self.db.close()

    # -- executions ------------------------------------------------------------------
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
        with self.transaction():
            if idempotency_key is not None:
                self._lock(f"idempotency:{idempotency_key}")
                known = self._one(q.BY_IDEMPOTENCY_KEY, (idempotency_key,))
                if known is not None:
                    return int(known[0])
            root_id = None
            if parent_id is not None:
                row = self._one(q.EXECUTION_ROOT, (parent_id,))
                if row is None:
                    raise NotFound(f"execution {parent_id} not found")
                root_id, dev = row[0], dev or bool(row[1])
            ex_id = self._insert(
                q.INSERT_EXECUTION,
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
                self._execute(q.SET_ROOT, (ex_id,))
            if parent_attempt_id is not None:
                self._execute(q.UNLEASE, (parent_attempt_id,))
            self._created(ex_id, None, now)
            ids = self._insert_task_runs(ex_id, flow, now, queue)
            self._executemany(
                q.INSERT_DEP,
                [(ids[d], ids[t.id]) for t in flow.tasks for d in t.depends_on],
            )
            if skip is not None:
                child = parent_attempt_id is not None
                self._start_skipped(ex_id, skip, ids.values(), now, child=child)
                return ex_id
            if original_id is not None and reuse:
                self._reuse(ex_id, original_id, reuse, ids, flow, now)
            for task_id in dict.fromkeys(skip_tasks):  # as if done: their dependents may run
                tr_id = ids[task_id]
                self._set_task_run_state(tr_id, ex_id, State.SKIPPED, now, "skipped on request")
                self._pending_down(ex_id)
                self._execute(q.DEPENDENTS_DOWN, (tr_id,))
            admission = self._admission(flow, ex_id)
            if admission is None:
                self._begin_running(ex_id, flow, now, result)
            elif admission[0] is State.QUEUED:
                self._set_execution_state(ex_id, State.QUEUED, now, admission[1])
            else:
                self._turn_away(ex_id, admission[0], admission[1], now, result)
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
        with self.transaction():
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
            again = self.policy.to_run_again(old_flow, runs, from_task)
            reused = {
                r.task_id: r
                for r in runs
                if r.fork_of is None and r.parent_run_id is None and r.id not in again
            }
            if revision_id != original.revision_id:
                reused = _still_reusable(old_flow, flow, reused)
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
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            table, params = self._values(chunk, q.TASK_RUN_TYPES)
            sql = q.INSERT_TASK_RUNS.format(values=table)
            ids.update({task_id: int(tr_id) for tr_id, task_id in self._all(sql, params)})
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
            self._execute(q.SET_STOPPED, (why, ex_id))
            if not child:
                self._set_execution_state(ex_id, State.RUNNING, now, None)
        for tr_id in task_runs:
            self._skip(tr_id, ex_id, why, now, result)
        if answer == "STOP" and not child:
            self._maybe_end(ex_id, now, result)
            return
        self._set_execution_state(ex_id, State.SKIPPED, now, why)
        self._execute(q.EXECUTION_ENDED, (now, why, None, ex_id))
        self._child_ended(ex_id, State.SKIPPED, why, None, now, result)

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
        only: Sequence[int] | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` ready task runs (of one execution and its child executions,
        and of the given queues, when asked; among the task runs ``only``, when given) and
        start an attempt of each, leased to ``worker_id`` until ``now + lease_seconds``."""
        if limit <= 0 or (only is not None and not only):
            return []
        where: list[str] = ["not_before <= ?"]
        params: list[Any] = [now]
        if only is not None:
            where.append(f"task_run_id IN ({', '.join('?' * len(only))})")
            params.extend(only)
        if execution_id is not None:
            where.append(q.OF_ROOT)
            params.append(execution_id)
        if queues:
            where.append(f"queue IN ({', '.join('?' * len(queues))})")
            params.extend(queues)
        test = " AND ".join(where)
        with self.transaction():
            found = self.db.take_ready(limit, test, params)
            if found:
                self.secrets.saw((int(found[0]["secrets"]), found[0]["changed"]))
            taken = [r for r in found if r[0] is not None]
            if len(taken) < limit and (not found or found[0][8]):  # keyed rows wait
                taken = [*taken, *self._take_keyed(now, limit - len(taken), test, params)]
            if not taken:
                return []
            self._taken(r[0] for r in taken)
            return self._start_attempts(taken, worker_id, now, now + lease_seconds)

    def _start_attempts(
        self, taken: Sequence[Row], worker_id: str, now: float, lease: float
    ) -> list[Claim]:
        """Start an attempt of each taken task run still startable (its execution
        running, itself not ended), in a few statements whatever their number; the first
        attempt also moves the task run CREATED -> RUNNING. ``taken`` rows are
        ``(task_run_id, execution_id, task_id, state, attempts, started_at, revision_id,
        execution_state)``."""
        open_states = (State.CREATED.value, State.RUNNING.value)
        startable = [r for r in taken if r[7] in open_states and not State(r[3]).terminal]
        if not startable:
            return []
        first = {r[1] for r in startable if r[7] == State.CREATED.value}
        for ex_id in sorted(first):  # its first claim: the execution is handled now
            self._transition([Change(ex_id, None, State.CREATED, State.RUNNING)], now)
        values = [
            (r[0], r[1], r[4] + 1, State.RUNNING.value, worker_id, lease, now) for r in startable
        ]
        waiting = (State.CREATED.value, State.RESTARTED.value)
        moves = [
            Change(r[1], r[0], State(r[3]), State.RUNNING) for r in startable if r[3] in waiting
        ]
        attempt_of = self._claimed(values, moves, now)
        return [
            Claim(attempt_of[r[0]], r[0], r[1], r[6], r[2], r[4] + 1, r[5] or now)
            for r in startable
        ]

    def heartbeat(self, worker_id: str, attempt_ids: Sequence[int], lease_until: float) -> None:
        """Extend the leases of ``worker_id``'s running attempts."""
        if not attempt_ids:
            return
        with self.transaction():
            self._executemany(q.HEARTBEAT, [(lease_until, a, worker_id) for a in attempt_ids])

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
        self._rng = rng
        # one lock order for every transaction (executions by id, then task runs), so
        # that workers recording at once never deadlock
        outcomes = sorted(outcomes, key=lambda item: (item[0].execution_id, item[0].task_run_id))
        # (a success with a message, a handler's this.success(message), keeps it as its
        # task run's reason: recorded one by one)
        plain = [
            (c, o)
            for c, o in outcomes
            if o.state is State.SUCCESS and o.forks is None and o.error is None
        ]
        with self.transaction():
            if any(self._keyed(c) for c, _ in outcomes):
                self._made_ready()  # a concurrency key's slot frees: others may start
            if plain:
                self._record_successes(plain, now, result)
                outcomes = [
                    (c, o)
                    for c, o in outcomes
                    if o.state is not State.SUCCESS or o.forks or o.error is not None
                ]
            for claim, outcome in outcomes:
                self._record_one(claim, outcome, now, rng, result)
        return result

    def _keyed(self, claim: Claim) -> bool:
        return self.flows.flow_of(claim.revision_id).task(claim.task_id).concurrency_key is not None

    def fail_execution(self, ex_id: int, reason: str, now: float) -> RecordResult:
        """Stop starting work for an execution (its timeout passed): unstarted task runs
        end SKIPPED; it ends FAILED with ``reason`` once running attempts report."""
        result = RecordResult()
        with self.transaction():
            self._fail_tree(ex_id, reason, now, result)
        return result

    def kill_execution(self, ex_id: int, reason: str, now: float) -> RecordResult:
        """Kill an execution and its running children (see :meth:`_kill_tree`); the
        workers running its attempts stop them and their outcomes end it KILLED."""
        result = RecordResult()
        with self.transaction():
            self._kill_tree(ex_id, reason, now, result)
        return result

    def reap_workers(
        self, worker_ids: Sequence[str], now: float, rng: random.Random
    ) -> RecordResult:
        """Attempts of workers known to be dead (their process is gone): recorded as
        FAILED, reason ``lost``, at once rather than when their leases expire."""
        result = RecordResult()
        self._rng = rng
        with self.transaction():
            for worker_id in worker_ids:
                for row in self._all(q.WORKERS_ATTEMPTS, (worker_id,)):
                    self._take_back(row, now, rng, result)
        return result

    def _take_back(self, row: Row, now: float, rng: random.Random, result: RecordResult) -> None:
        """An attempt of a lost worker: recorded as lost (the retry policy decides) when
        the worker had started it; handed back (not counted) when it was only claimed."""
        claim = claim_of(row)
        worker = row["worker_id"]
        if row["launched_at"] is None:
            why = f"claimed by a worker lost before it started the attempt ({worker})"
            self._hand_back_one(claim, why, now)
            return
        lost = Outcome(State.FAILED, reason="lost", error=f"worker lost ({worker})")
        self._record_one(claim, lost, now, rng, result)
        if self._keyed(claim):
            self._made_ready()

    def mark_launched(self, attempt_ids: Sequence[int], now: float, lease_until: float) -> None:
        """These claimed attempts were started (see :meth:`_take_back`): leased until
        ``lease_until`` from now on."""
        if attempt_ids:
            test, params = self._ids(attempt_ids)
            with self.transaction():
                self._execute(q.MARK_LAUNCHED.format(ids=test), [now, lease_until, *params])

    def record_processes(self, host: str, processes: Sequence[AttemptProcess]) -> None:
        """The process group each of these running attempts started on ``host``."""
        if processes:
            with self.transaction():
                self._executemany(
                    q.SET_PROCESS,
                    [(host, p.group, p.started, p.attempt_id) for p in processes],
                )

    def lost_processes(
        self,
        host: str,
        *,
        expired_at: float | None = None,
        worker_ids: Sequence[str] = (),
        limit: int = 100,
    ) -> list[AttemptProcess]:
        """The process groups started on ``host`` by running attempts about to be taken
        back: those whose lease expired before ``expired_at`` (as :meth:`reap_expired`
        takes them), or those of ``worker_ids`` (as :meth:`reap_workers` does)."""
        rows: list[Row] = []
        if expired_at is not None:
            rows += self._all(q.EXPIRED_PROCESSES, (expired_at, host, limit))
        for worker_id in worker_ids:
            rows += self._all(q.WORKER_PROCESSES, (worker_id, host))
        return [AttemptProcess(int(r[0]), int(r[1]), r[2]) for r in rows]

    def reap_expired(self, now: float, rng: random.Random, limit: int = 100) -> RecordResult:
        """Attempts whose lease expired belong to a worker that died: record each as
        FAILED (reason ``lost``, naming the worker) and let the retry policy decide."""
        result = RecordResult()
        self._rng = rng
        with self.transaction():
            for row in self._all(q.EXPIRED_LEASES, (now, limit)):
                self._take_back(row, now, rng, result)
        return result

    def hand_back(
        self,
        claims: Sequence[Claim],
        now: float,
        why: str = "the worker stopped before the attempt ended",
    ) -> None:
        """Return claimed attempts a worker will not finish (it stops, or it was held up
        past half a claim's lease): each attempt ends KILLED (reason ``handed back``, not
        counted by retries, ``why`` as its message) and its task run is ready again at
        once. An attempt already taken back by someone else is left as it is."""
        with self.transaction():
            for claim in claims:
                self._hand_back_one(claim, why, now)

    def _hand_back_one(self, claim: Claim, why: str, now: float) -> None:
        """The attempt ends KILLED (``handed back``, not counted) and its task run is
        ready again, if its execution still runs; else the attempt is recorded KILLED
        like any stopped attempt (the execution is being killed or failed)."""
        stopping = self._one(q.EXECUTION_REASON, (claim.execution_id,))
        if self._execution_state(claim.execution_id) is not State.RUNNING or (
            stopping and stopping[0]
        ):
            stopped = Outcome(State.KILLED, reason="killed", error=why)
            self._record_one(claim, stopped, now, self._rng, RecordResult())
            return
        params = (State.KILLED.value, now, None, "handed back", why, None, None, claim.attempt_id)
        if self._execute(q.FINISH_ATTEMPT, params).rowcount:
            self._ready_again(claim.task_run_id, now)

    def schedule_execution(self, revision_id: int, trigger_id: str, now: float) -> int:
        """The SCHEDULE execution of trigger ``trigger_id`` of revision ``revision_id``'s
        flow: RUNNING while the schedule is active, the parent of the executions its
        ticks start; made the first time a tick needs it."""
        flow = self.flows.flow_of(revision_id)
        started_by = f"schedule:{trigger_id}"
        with self.transaction():
            row = self._one(FIND_SCHEDULE, (flow.namespace, flow.id, started_by))
            if row is not None:
                return int(row[0])
            ex_id = self._insert(
                q.INSERT_EXECUTION,
                (revision_id, flow.namespace, flow.id, State.CREATED.value, "{}",
                 dumps(dict(flow.labels)), 0, now, None, None, None, None, None, 0, None,
                 None, started_by, None, None, None, "SCHEDULE"),
            )  # fmt: skip
            self._execute(q.SET_ROOT, (ex_id,))
            self._created(ex_id, None, now, f"schedule {trigger_id} of {flow.key}")
            self._set_execution_state(ex_id, State.RUNNING, now, None)
            return ex_id

    def close_schedules(self, active: set[tuple[str, str, str]], now: float) -> list[int]:
        """End the SCHEDULE executions whose schedule is no longer among ``active``
        (namespace, flow id, trigger id): removed, or deactivated with its flow; the ids
        ended. The executions they started are left as they are."""
        ended = []
        with self.transaction():
            for ex_id, namespace, flow_id, started_by in self._all(RUNNING_SCHEDULES):
                trigger = str(started_by).removeprefix("schedule:")
                if (namespace, flow_id, trigger) in active:
                    continue
                why = f"schedule {trigger} of {namespace}/{flow_id} removed or deactivated"
                if self._set_execution_state(int(ex_id), State.SUCCESS, now, why) is not None:
                    self._execute(q.EXECUTION_ENDED, (now, why, None, ex_id))
                    ended.append(int(ex_id))
        return ended

    def record_connection(
        self,
        parent: Claim,
        name: str,
        kind: str,
        worker_id: str,
        started: float,
        outcome: Outcome,
        now: float,
        rng: random.Random,
        lines: Sequence[tuple[float, str, str]] = (),
    ) -> int:
        """Record a handler's ``this.connect`` call as a child execution of kind
        CONNECTION (flow ``connections/<name>``, one task run ``call``): started,
        attempted once with the call's outcome and log ``lines`` (at, stream, line),
        ended by the usual rule, in one transaction; its task run's id."""
        flow = Flow(
            id=name,
            namespace=CONNECTIONS,
            tasks=(Task(id="call", type=kind),),
            description=f"this.connect calls of {name}",
            kind="CONNECTION",
        )
        source = dumps(flow.to_dict())
        digest = hashlib.sha256(source.encode()).hexdigest()
        with self.transaction():
            revision = self.add_revision(flow, source, digest, now)
            caller = self.reads.get_execution(parent.execution_id)
            ex_id = self.create_execution(
                revision.id,
                {},
                {},
                started,
                parent_id=caller.id,
                started_by=f"connect:{parent.task_id}",
                scope=caller.scope,
            )
            self._execute(q.DELETE_READY_OF, (ex_id,))  # taken here, by this call
            (run,) = self.reads.task_runs(ex_id)
            self._set_execution_state(ex_id, State.RUNNING, started, None)
            self._set_task_run_state(
                run.id, ex_id, State.RUNNING, started, None, known=State.CREATED, routine=True
            )
            attempt_id = self._insert(
                q.INSERT_ATTEMPT,
                (run.id, ex_id, 1, State.RUNNING.value, worker_id, None, started),
            )
            self._execute(q.TASK_RUN_STARTED, (1, attempt_id, started, run.id))
            self.add_logs([NewLog(ex_id, attempt_id, at, s, line) for at, s, line in lines])
            claim = Claim(attempt_id, run.id, ex_id, revision.id, "call", 1, started)
            self._record_one(claim, outcome, now, rng, RecordResult())
            return run.id

    def record_call(
        self,
        parent: Claim,
        task_id: str,
        worker_id: str,
        started: float,
        outcome: Outcome,
        now: float,
    ) -> int:
        """Record a call a handler made (``this.connect``) as an ended task run of its
        execution, under the handler's task run: one attempt with the call's outcome. It
        does not count among the task runs the execution waits for."""
        ex_id = parent.execution_id
        state = outcome.state if outcome.state in RECORDED else State.FAILED
        with self.transaction():
            tr_id = self._insert(
                q.INSERT_CALL_RUN, (ex_id, task_id, now, parent.task_run_id, started)
            )
            self._created(ex_id, tr_id, started)
            created = State.CREATED
            # its attempt, numbered 1, holds the routine moves' history
            self._set_task_run_state(
                tr_id, ex_id, State.RUNNING, started, None, known=created, routine=True
            )
            attempt_id = self._insert(
                q.INSERT_ATTEMPT, (tr_id, ex_id, 1, State.RUNNING.value, worker_id, None, started)
            )
            self._execute(q.TASK_RUN_STARTED, (1, attempt_id, started, tr_id))
            self._execute(q.FINISH_ATTEMPT, finish_params(attempt_id, state, outcome, now))
            ids = (attempt_id, tr_id, ex_id)
            self._executemany(
                q.INSERT_OUTPUT, [(*ids, k, dumps(v)) for k, v in outcome.outputs.items()]
            )
            routine = routine_end(state, outcome.reason, outcome.error)
            self._set_task_run_state(
                tr_id, ex_id, state, now, outcome.error, known=State.RUNNING, routine=routine
            )
        return tr_id

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
