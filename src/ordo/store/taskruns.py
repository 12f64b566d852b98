"""Task runs on the worker's side: claiming ready task runs (an attempt each, leased to
the worker), heartbeats, recording attempts' outcomes, handing claims back, taking back
the attempts of lost workers (and finding their process groups), the calls a handler
makes, and the workers' own rows. What an outcome decides is
:mod:`ordo.store.outcomes`'s. Claims and successes are recorded with a few set-based
statements per batch, whatever its size. Shared by both backends."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ordo.model import CONNECTIONS, TERMINAL, Flow, Outcome, State, Task
from ordo.store import queries as q
from ordo.store.db import Db, Row, columns, dumps, parts
from ordo.store.executions import Executions
from ordo.store.flows import Flows
from ordo.store.history import routine_end
from ordo.store.limits import Limits
from ordo.store.outcomes import ATTEMPT_COLUMNS, RECORDED, Outcomes, finish_params
from ordo.store.readiness import Readiness
from ordo.store.reads import Reads, claim_of
from ordo.store.records import AttemptProcess, Claim, NewLog, RecordResult
from ordo.store.retention import Logs
from ordo.store.secrets import Secrets
from ordo.store.transitions import Change, Transitions

_OPEN = frozenset({State.CREATED, State.RUNNING})  # an execution whose task runs start
_WAITING = frozenset({State.CREATED, State.RESTARTED})  # a task run's first attempt moves it
#: The columns of a taken row that starting its attempt reads (:meth:`TaskRuns._start_attempts`)
_TAKEN = (
    "task_run_id", "execution_id", "execution_state", "state", "attempts", "attempt_id",
    "revision_id", "task_id", "started_at",
)  # fmt: skip
EXPIRED_LEASES = f"""
SELECT {q.CLAIM_COLUMNS}, a.worker_id, a.launched_at
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.state = 'RUNNING' AND a.lease_expires_at < ?
ORDER BY a.lease_expires_at LIMIT ?
"""
EXPIRED_PROCESSES = """
SELECT id, process_group, process_started FROM attempts
WHERE state = 'RUNNING' AND lease_expires_at < ? AND process_host = ?
  AND process_group IS NOT NULL
ORDER BY lease_expires_at LIMIT ?
"""
HEARTBEAT = """
UPDATE attempts SET lease_expires_at = ?
WHERE id = ? AND worker_id = ? AND state = 'RUNNING'
"""
INSERT_ATTEMPT = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, worker_id, lease_expires_at, started_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
INSERT_CALL_RUN = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     parent_run_id, started_at)
VALUES (?, ?, 'CREATED', 0, 1, ?, 'default', ?, ?)
"""
# launched: the full lease from now on (a claim waiting for a slot has a short one); an
# attempt already ended or waiting unleased for its child execution is left as it is
MARK_LAUNCHED = """
UPDATE attempts SET launched_at = ?, lease_expires_at = ?
WHERE id {ids} AND launched_at IS NULL AND state = 'RUNNING' AND lease_expires_at IS NOT NULL
"""
REGISTER_WORKER = """
INSERT INTO workers (id, host, pid, queues, started_at, heartbeat_at, running)
VALUES (?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    queues = excluded.queues, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL
"""
SET_PROCESS = """
UPDATE attempts SET process_host = ?, process_group = ?, process_started = ?
WHERE id = ? AND state = 'RUNNING'
"""
EXECUTIONS_GOING = "SELECT id, state, reason FROM executions WHERE id {ids}"
WORKERS_ATTEMPTS = f"""
SELECT {q.CLAIM_COLUMNS}, a.worker_id, a.launched_at
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.state = 'RUNNING' AND a.worker_id = ? AND a.lease_expires_at IS NOT NULL
ORDER BY a.id
"""
WORKER_HEARTBEAT = "UPDATE workers SET heartbeat_at = ?, running = ? WHERE id = ?"
WORKER_PROCESSES = """
SELECT id, process_group, process_started FROM attempts
WHERE state = 'RUNNING' AND worker_id = ? AND lease_expires_at IS NOT NULL
  AND process_host = ? AND process_group IS NOT NULL
ORDER BY id
"""
WORKER_STOPPED = "UPDATE workers SET stopped_at = ?, running = 0, heartbeat_at = ? WHERE id = ?"


class TaskRuns:
    """The worker's side of task runs."""

    def __init__(
        self,
        db: Db,
        flows: Flows,
        reads: Reads,
        transitions: Transitions,
        readiness: Readiness,
        limits: Limits,
        outcomes: Outcomes,
        executions: Executions,
        secrets: Secrets,
        logs: Logs,
    ) -> None:
        self.db = db
        self.flows = flows
        self.reads = reads
        self.transitions = transitions
        self.readiness = readiness
        self.limits = limits
        self.outcomes = outcomes
        self.executions = executions
        self.secrets = secrets
        self.logs = logs

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
        launch: int = 0,
        launch_lease_seconds: float = 0.0,
        held: Collection[int] = (),
        fair: tuple[int, float] | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` ready task runs (of one execution and its child executions,
        and of the given queues, when asked; among the task runs ``only``, when given) and
        start an attempt of each, leased to ``worker_id`` until ``now + lease_seconds``.
        ``fair`` ``(least, alive_since)``: no more than this claim's share of the ready
        task runs among the workers alive since then, but at least ``least``
        (:meth:`~ordo.store.db.Db.shares`).
        The first ``launch`` of them whose execution is not ``held`` are launched at once
        (slots are free for them): those are recorded launched now and leased for
        ``launch_lease_seconds``, as :meth:`mark_launched` does for the others later."""
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
        with self.db.transaction():
            found = self.db.take_ready(limit, test, params, fair)
            if found:
                self.secrets.saw((int(found[0]["secrets"]), found[0]["changed"]))
            taken = [r for r in found if r["task_run_id"] is not None]
            if len(taken) < limit and (not found or found[0]["keyed"]):  # keyed rows wait
                taken = [*taken, *self.limits.take_keyed(now, limit - len(taken), test, params)]
            if not taken:
                return []
            self.readiness.taken(r["task_run_id"] for r in taken)
            launching = (launch, now + launch_lease_seconds, held)
            return self._start_attempts(taken, worker_id, now, now + lease_seconds, launching)

    def _start_attempts(
        self,
        taken: Sequence[Row],
        worker_id: str,
        now: float,
        lease: float,
        launching: tuple[int, float, Collection[int]] = (0, 0.0, ()),
    ) -> list[Claim]:
        """Start an attempt of each taken task run still startable (its execution
        running, itself not ended), in a few statements whatever their number; the first
        attempt also moves the task run CREATED -> RUNNING. ``taken`` rows have the
        columns of :meth:`~ordo.store.db.Db.take_ready`'s."""
        startable = [  # (a StrEnum's members are their values: the rows' text is found)
            r for r in columns(taken, _TAKEN) if r[2] in _OPEN and r[3] not in TERMINAL
        ]
        if not startable:
            return []
        first = {r[1] for r in startable if r[2] == "CREATED"}
        for ex_id in sorted(first):  # its first claim: the execution is handled now
            self.transitions.transition([Change(ex_id, None, State.CREATED, State.RUNNING)], now)
        launch, launch_lease, held = launching
        values = []
        moves = []
        for run_id, ex_id, _, state, attempts, *_ in startable:
            starts = launch > 0 and ex_id not in held
            launch -= starts
            values.append(
                (run_id, ex_id, attempts + 1, State.RUNNING.value,
                 worker_id, launch_lease if starts else lease, now, now if starts else None)
            )  # fmt: skip
            if state in _WAITING:
                moves.append(Change(ex_id, run_id, State(state), State.RUNNING))
        reserved = [r[5] for r in startable]
        ids = reserved if None not in reserved else None
        attempt_of = self.transitions.claimed(values, moves, now, ids)
        return [
            Claim(
                attempt_id=attempt_of[run_id],
                task_run_id=run_id,
                execution_id=ex_id,
                revision_id=revision_id,
                task_id=task_id,
                number=attempts + 1,
                first_started_at=started_at or now,
            )
            for run_id, ex_id, _, _, attempts, _, revision_id, task_id, started_at in startable
        ]

    def heartbeat(self, worker_id: str, attempt_ids: Sequence[int], lease_until: float) -> None:
        """Extend the leases of ``worker_id``'s running attempts."""
        if not attempt_ids:
            return
        with self.db.transaction():
            self.db.later_many(HEARTBEAT, [(lease_until, a, worker_id) for a in attempt_ids])

    def record_outcomes(
        self,
        outcomes: Sequence[tuple[Claim, Outcome]],
        now: float,
        rng: random.Random,
        then: Callable[[RecordResult], None] | None = None,
    ) -> RecordResult:
        """Record each attempt's outcome and everything it decides, atomically: its
        outputs and metrics, a retry (a new ready row with ``not_before``) or the task
        run's end, the dependents it makes ready or skips, and the execution's end.

        Those that ended well (:meth:`~ordo.store.outcomes.Outcomes.ends_well`: most
        of them) are recorded together in a few statements whatever their number; so
        are the others (:meth:`~ordo.store.outcomes.Outcomes.record_others`), with a few
        more for each execution they touch.

        ``then``, when the outcomes all ended well (or there are none), runs in the same
        transaction once the statements that record them and make their dependents
        ready are sent, before their answer is read (on PostgreSQL a claim made there
        goes in the same round trip: a chain's step is then 2 round trips, not 3), given
        the result so far (on SQLite, all of it: the executions that ended, say);
        ``result.readied_after``: something was made ready after it ran that no claim
        of the transaction took. Otherwise it does not run."""
        result = RecordResult()
        self.outcomes.rng = rng
        # one lock order for every transaction (task runs by execution and id; see
        # ordo.store.outcomes), so that workers recording at once never deadlock
        outcomes = sorted(outcomes, key=lambda item: (item[0].execution_id, item[0].task_run_id))
        plain: list[tuple[Claim, Outcome]] = []
        others: list[tuple[Claim, Outcome]] = []
        for c, o in outcomes:
            if self.outcomes.ends_well(o):
                plain.append((c, o))
            else:
                others.append((c, o))
        with self.db.transaction():
            if any(self._keyed(c) for c, _ in outcomes):
                self.readiness.made_ready()  # a concurrency key's slot frees: others may start
            finish = self.outcomes.record_successes(plain, now, result) if plain else None
            if then is not None and not others:  # with the successes' statement
                then(result)
                self.readiness.untaken = False
                if finish is not None:
                    finish()
                result.readied_after = self.readiness.untaken
                return result
            if finish is not None:
                finish()
            self.outcomes.record_others(others, now, rng, result)
        return result

    def _keyed(self, claim: Claim) -> bool:
        return self.flows.flow_of(claim.revision_id).task(claim.task_id).concurrency_key is not None

    def reap_workers(
        self, worker_ids: Sequence[str], now: float, rng: random.Random
    ) -> RecordResult:
        """Attempts of workers known to be dead (their process is gone): recorded as
        FAILED, reason ``lost``, at once rather than when their leases expire."""
        result = RecordResult()
        self.outcomes.rng = rng
        with self.db.transaction():
            rows = [r for w in worker_ids for r in self.db.all(WORKERS_ATTEMPTS, (w,))]
            self._take_back(rows, now, rng, result)
        return result

    def _take_back(
        self, rows: Sequence[Row], now: float, rng: random.Random, result: RecordResult
    ) -> None:
        """Attempts of lost workers: each recorded as lost (the retry policy decides)
        when its worker had started it; handed back (not counted) when it was only
        claimed. Together, whatever their number."""
        back: list[tuple[Claim, str]] = []
        lost: list[tuple[Claim, Outcome]] = []
        for row in rows:
            claim, worker = claim_of(row), row["worker_id"]
            if row["launched_at"] is None:
                why = f"claimed by a worker lost before it started the attempt ({worker})"
                back.append((claim, why))
            else:
                error = f"worker lost ({worker})"
                lost.append((claim, Outcome(State.FAILED, reason="lost", error=error)))
        self._hand_back(back, now, result)
        lost.sort(key=lambda item: (item[0].execution_id, item[0].task_run_id))  # lock order
        self.outcomes.record_others(lost, now, rng, result)
        if any(self._keyed(c) for c, _ in lost):
            self.readiness.made_ready()

    def mark_launched(self, attempt_ids: Sequence[int], now: float, lease_until: float) -> None:
        """These claimed attempts were started (see :meth:`_take_back`): leased until
        ``lease_until`` from now on."""
        if attempt_ids:
            with self.db.transaction():
                for part in parts(attempt_ids, self.db.rows_at_once(1)):
                    test, params = self.db.ids(part)
                    self.db.later(MARK_LAUNCHED.format(ids=test), [now, lease_until, *params])

    def record_processes(self, host: str, processes: Sequence[AttemptProcess]) -> None:
        """The process group each of these running attempts started on ``host``."""
        if processes:
            with self.db.transaction():
                self.db.later_many(
                    SET_PROCESS,
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
            rows += self.db.all(EXPIRED_PROCESSES, (expired_at, host, limit))
        for worker_id in worker_ids:
            rows += self.db.all(WORKER_PROCESSES, (worker_id, host))
        return [
            AttemptProcess(int(r["id"]), int(r["process_group"]), r["process_started"])
            for r in rows
        ]

    def reap_expired(self, now: float, rng: random.Random, limit: int = 100) -> RecordResult:
        """Attempts whose lease expired belong to a worker that died: record each as
        FAILED (reason ``lost``, naming the worker) and let the retry policy decide."""
        result = RecordResult()
        self.outcomes.rng = rng
        with self.db.transaction():
            self._take_back(self.db.all(EXPIRED_LEASES, (now, limit)), now, rng, result)
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
        with self.db.transaction():
            self._hand_back([(c, why) for c in claims], now, RecordResult())

    def _hand_back(
        self, claims: Sequence[tuple[Claim, str]], now: float, result: RecordResult
    ) -> None:
        """Each attempt ends KILLED (``handed back``, not counted; its message given)
        and its task run is ready again, if its execution still runs; else the attempt
        is recorded KILLED like any stopped attempt (the execution is being killed or
        failed). Together, whatever their number."""
        for part in parts(claims, self.db.rows_at_once(ATTEMPT_COLUMNS)):
            self._hand_back_part(part, now, result)

    def _hand_back_part(
        self, claims: Sequence[tuple[Claim, str]], now: float, result: RecordResult
    ) -> None:
        test, params = self.db.ids(sorted({c.execution_id for c, _ in claims}))
        going = {
            int(r["id"])
            for r in self.db.all(EXECUTIONS_GOING.format(ids=test), params)
            if r["state"] == State.RUNNING.value and not r["reason"]
        }
        stopped = [
            (c, Outcome(State.KILLED, reason="killed", error=why))
            for c, why in claims
            if c.execution_id not in going
        ]
        stopped.sort(key=lambda item: (item[0].execution_id, item[0].task_run_id))  # lock order
        self.outcomes.record_others(stopped, now, self.outcomes.rng, result)
        back = [(c, why) for c, why in claims if c.execution_id in going]
        if not back:
            return
        rows = [
            (c.attempt_id, None, None, None, State.KILLED.value, q.HANDED_BACK, why, None)
            for c, why in back
        ]
        recorded = self.transitions.finish_attempts(rows, now)
        again = [(c.task_run_id, now) for c, _ in back if c.attempt_id in recorded]
        self.readiness.ready_again_many(again)

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
        with self.db.transaction():
            revision = self.flows.add_revision(flow, source, digest, now)
            caller = self.reads.get_execution(parent.execution_id)
            ex_id = self.executions.create_execution(
                revision.id,
                {},
                {},
                started,
                parent_id=caller.id,
                started_by=f"connect:{parent.task_id}",
                scope=caller.scope,
            )
            self.db.execute(q.DELETE_READY_OF, (ex_id,))  # taken here, by this call
            (run,) = self.reads.task_runs(ex_id)
            self.transitions.set_execution_state(ex_id, State.RUNNING, started, None)
            self.transitions.set_task_run_state(
                run.id, ex_id, State.RUNNING, started, None, known=State.CREATED, routine=True
            )
            attempt_id = self.db.insert(
                INSERT_ATTEMPT,
                (run.id, ex_id, 1, State.RUNNING.value, worker_id, None, started),
            )
            self.db.execute(q.TASK_RUN_STARTED, (1, attempt_id, started, run.id))
            self.logs.add_logs([NewLog(ex_id, attempt_id, at, s, line) for at, s, line in lines])
            claim = Claim(attempt_id, run.id, ex_id, revision.id, "call", 1, started)
            self.outcomes.record_one(claim, outcome, now, rng, RecordResult())
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
        with self.db.transaction():
            tr_id = self.db.insert(
                INSERT_CALL_RUN, (ex_id, task_id, now, parent.task_run_id, started)
            )
            self.transitions.created(ex_id, tr_id, started)
            created = State.CREATED
            # its attempt, numbered 1, holds the routine moves' history
            self.transitions.set_task_run_state(
                tr_id, ex_id, State.RUNNING, started, None, known=created, routine=True
            )
            attempt_id = self.db.insert(
                INSERT_ATTEMPT, (tr_id, ex_id, 1, State.RUNNING.value, worker_id, None, started)
            )
            self.db.execute(q.TASK_RUN_STARTED, (1, attempt_id, started, tr_id))
            self.db.execute(q.FINISH_ATTEMPT, finish_params(attempt_id, state, outcome, now))
            ids = (attempt_id, tr_id, ex_id)
            self.db.executemany(
                q.INSERT_OUTPUT, [(*ids, k, dumps(v)) for k, v in outcome.outputs.items()]
            )
            routine = routine_end(state, outcome.reason, outcome.error)
            self.transitions.set_task_run_state(
                tr_id, ex_id, state, now, outcome.error, known=State.RUNNING, routine=routine
            )
        return tr_id

    def register_worker(
        self, worker_id: str, host: str, pid: int, queues: Sequence[str], now: float
    ) -> None:
        with self.db.transaction():
            self.db.execute(REGISTER_WORKER, (worker_id, host, pid, ",".join(queues), now, now))

    def worker_heartbeat(self, worker_id: str, running: int, now: float) -> None:
        with self.db.transaction():
            self.db.execute(WORKER_HEARTBEAT, (now, running, worker_id))

    def worker_stopped(self, worker_id: str, now: float) -> None:
        with self.db.transaction():
            self.db.execute(WORKER_STOPPED, (now, now, worker_id))
