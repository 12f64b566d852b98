"""Recording attempt outcomes and everything they decide, in the transaction that
records them: a task run's end or its retry, the dependents made ready or skipped,
for_each items and the task run they belong to, run_if's SKIP and STOP, the end of an
execution (its state, reason and outputs) and the flow task waiting for it.

Each change of state goes through :class:`~ordo.store.transitions.Transitions` (one
conditional ``UPDATE ... WHERE state = :expected`` allowed by the one table in
:mod:`ordo.model`, written to ``state_history`` in the same transaction); ready rows
through :class:`~ordo.store.readiness.Readiness`. What follows is asked of the policy
(:mod:`ordo.store.ports`). Also here: executions starting and ending under their flow's
limit (a QUEUED one admitted when another ends).

Everything is recorded in batches (:meth:`Outcomes.record_successes`,
:meth:`Outcomes.record_others`, :meth:`Outcomes.end_task_runs`): a few statements per
execution touched, whatever the number of task runs (on SQLite, per part of as many
rows as a statement takes: :meth:`~ordo.store.db.Db.rows_at_once`). Recording locks
the task runs that end, then their executions by id, then the task runs below them
(released or skipped), so workers recording at once do not deadlock; an execution that
ends then records its parent's flow task the same way. A command on an execution (a
kill, a timeout) locks it first and then only task runs no attempt runs.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from msgspec import Struct

from ordo.model import DROPPED, ON_REQUEST, CheckResult, Flow, Outcome, State
from ordo.store import queries as q
from ordo.store.db import Db, Row, dumps, parts
from ordo.store.flows import Flows
from ordo.store.history import routine_end
from ordo.store.limits import Limits
from ordo.store.ports import Decisions, EndFacts, OutputFacts, RetryFacts, RunGroup
from ordo.store.readiness import RELEASE_CTES, Readiness
from ordo.store.reads import Reads, claim_of
from ordo.store.records import Claim, RecordResult
from ordo.store.transitions import Before, Change, Succeeded, Transitions

ATTEMPT_CLAIM = f"""
SELECT {q.CLAIM_COLUMNS}
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.id = ?
"""
#: the task runs of an execution not started, and the dependencies between them
UNSTARTED_RUNS = """
SELECT id, state, task_id FROM task_runs
WHERE execution_id = ? AND state IN ('CREATED', 'RESTARTED') ORDER BY id
"""
#: the task runs not started downstream of one (through task runs not started): it
#: and those (``SKIP_FROM``, its id the parameter), or only those of any of many
#: (``SKIP_BELOW``, ``{ids}`` a membership test of theirs)
_DOWN = """
WITH RECURSIVE down(id) AS (
    {anchor}
    UNION
    SELECT d.task_run_id FROM task_run_deps d
    JOIN down ON d.upstream_id = down.id
    JOIN task_runs n ON n.id = d.task_run_id
    WHERE n.state IN ('CREATED', 'RESTARTED')
)
SELECT t.id, t.state, t.task_id FROM task_runs t JOIN down ON t.id = down.id
WHERE t.state IN ('CREATED', 'RESTARTED') ORDER BY t.id
"""
SKIP_FROM = _DOWN.format(
    anchor="SELECT id FROM task_runs WHERE id = ? AND state IN ('CREATED', 'RESTARTED')"
)
SKIP_BELOW = _DOWN.format(
    anchor="SELECT d.task_run_id FROM task_run_deps d JOIN task_runs n ON n.id = d.task_run_id "
    "WHERE d.upstream_id {ids} AND n.state IN ('CREATED', 'RESTARTED')"
)
#: the task runs right below any of many, each with its upstream among them, by upstream
DEPENDENTS = """
SELECT task_run_id, upstream_id FROM task_run_deps WHERE upstream_id {ids}
ORDER BY upstream_id, task_run_id
"""

#: the parameters of an attempt's row ending it (:meth:`Transitions.finish_attempts`),
#: the widest row of what recording an outcome sends for it
ATTEMPT_COLUMNS = 8
DELETE_ENDED_READY = """
DELETE FROM ready WHERE execution_id = ?
  AND task_run_id IN (SELECT id FROM task_runs WHERE execution_id = ? AND state = ?)
"""
#: what decides the retry of failed attempts' task runs: the attempts counted (theirs
#: included) and whether they may fail
FAILED_FACTS = f"""
SELECT t.id, t.allow_failure,
    (SELECT count(*) FROM attempts a
     WHERE a.task_run_id = t.id AND {q.COUNTED.format(a="a", t="t")}) AS n
FROM task_runs t WHERE t.id {{ids}}
"""
EXECUTION_STATES = "SELECT id, state FROM executions WHERE id {ids}"
#: task runs of an execution that wait to run again (RUNNING, with a ready row)
WAITING_AGAIN = """
SELECT r.task_run_id FROM ready r JOIN task_runs t ON t.id = r.task_run_id
WHERE r.execution_id = ? AND t.state = 'RUNNING' ORDER BY r.task_run_id
"""
#: What the end of an execution is decided from: its task runs (not a handler's calls)
#: by state, allow_failure, whether SKIPPED without a counted attempt and whether
#: skipped on request (its reason the parameter).
END_FACTS = f"""
SELECT state, allow_failure, {q.SKIPPED_UNSTARTED} AS unstarted,
    CASE WHEN coalesce(reason, '') = ? THEN 1 ELSE 0 END AS on_request, count(*) AS n
FROM task_runs WHERE execution_id = ? AND parent_run_id IS NULL
GROUP BY 1, 2, 3, 4
"""
EXECUTION_DEQUEUED = "UPDATE executions SET reason = NULL, deadline = ? WHERE id = ?"
EXECUTION_END_INFO = (
    "SELECT reason, stopped, revision_id, parent_attempt_id FROM executions WHERE id = ?"
)
EXECUTION_PENDING = "SELECT pending FROM executions WHERE id = ?"
EXECUTION_REVISION = "SELECT revision_id, continue_on_error FROM executions WHERE id = ?"
FIRST_FAILURE = f"""
SELECT task_id, reason FROM task_runs
WHERE execution_id = ? AND state = 'FAILED' AND allow_failure = 0 AND parent_run_id IS NULL
ORDER BY {q.ENDED_BY_FAILURE.format(reason="reason")}, ended_at, id LIMIT 1
"""
#: of each of many for_each task runs, its first item FAILED and its first KILLED
FIRST_ITEM_FAILURES = """
SELECT fork_of, state, fork_index, reason FROM (
    SELECT fork_of, state, fork_index, reason,
        row_number() OVER (PARTITION BY fork_of, state ORDER BY fork_index) AS n
    FROM task_runs WHERE fork_of {ids} AND state IN ('FAILED', 'KILLED')) AS f
WHERE n = 1
"""
INSERT_CHECK = """
INSERT INTO checks
    (attempt_id, task_run_id, execution_id, phase, position, kind, ok, message, output,
     started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_METRIC = """
INSERT INTO metrics (attempt_id, task_run_id, execution_id, name, kind, value, tags, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
#: Items of for_each task runs ended, rows ``(for_each task run, how many)``: fewer pending.
ITEMS_ENDED = """
UPDATE task_runs
SET forks_pending = forks_pending - CAST(v.column2 AS BIGINT),
    forks_next = forks_next + CAST(v.column2 AS BIGINT)
FROM {values}
WHERE task_runs.id = v.column1
RETURNING task_runs.id AS id, task_runs.forks_pending AS forks_pending
"""
ITEM_STATES = """
SELECT fork_of, state, allow_failure, count(*) AS n FROM task_runs WHERE fork_of {ids}
GROUP BY fork_of, state, allow_failure
"""
#: for_each task runs' items, rows of :data:`_ITEM_TYPES`: created (CREATED)
INSERT_ITEMS = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue, fork_of,
     fork_index, fork_value, concurrency_key)
SELECT v.column1, v.column2, 'CREATED', 0, v.column3, v.column4, v.column5, v.column6,
    v.column7, v.column8, v.column9
FROM {values}
"""
_ITEM_TYPES = (
    "BIGINT", "TEXT", "BIGINT", "DOUBLE PRECISION", "TEXT", "BIGINT", "BIGINT", "TEXT", "TEXT"
)  # fmt: skip
#: for_each task runs expanded, rows ``(id, items, items at once)``
FORKED_MANY = """
UPDATE task_runs
SET forks_pending = CAST(v.column2 AS BIGINT), forks_next = CAST(v.column3 AS BIGINT)
FROM {values} WHERE task_runs.id = v.column1
"""
#: the ready rows of task runs (``{ids}``) taken away; the task runs whose rows they were
TAKE_READY = "DELETE FROM ready WHERE task_run_id {ids} RETURNING task_run_id"
OLDEST_QUEUED = """
SELECT id, revision_id FROM executions
WHERE state = 'QUEUED' AND namespace = ? AND flow_id = ? ORDER BY id LIMIT 1
"""


class Outcomes:
    """Recording outcomes and writing what the policy decides follows from them."""

    def __init__(
        self,
        db: Db,
        flows: Flows,
        reads: Reads,
        transitions: Transitions,
        readiness: Readiness,
        limits: Limits,
        policy: Decisions,
    ) -> None:
        self.db = db
        self.flows = flows
        self.reads = reads
        self.transitions = transitions
        self.readiness = readiness
        self.limits = limits
        #: the jitter of retries decided while recording (the caller's, when it gives one)
        self.rng = random.Random()
        #: the engine's policy this store asks (see :mod:`ordo.store.ports`)
        self.policy = policy
        self._well: frozenset[State] | None = None

    def ends_well(self, outcome: Outcome) -> bool:
        """Whether :meth:`record_successes` records the outcome: a success (with a
        handler's message or not), a warning or its run_if's SKIP (not STOP), whose task
        run releases its dependents and fails nothing, as the policy says; not a
        for_each expanding."""
        state = outcome.state
        if outcome.forks is not None or state not in self._releasing():
            return False
        if state is State.SUCCESS:
            return outcome.reason is None  # (else its attempt does not hold the move)
        return state is State.WARNING or outcome.reason not in (DROPPED, "stop")

    def _releasing(self) -> frozenset[State]:
        """Of the states an attempt ends well in, those whose task run releases its
        dependents whether or not allowed to fail, and fails no execution (the
        policy's, asked once)."""
        if self._well is None:
            p = self.policy
            self._well = frozenset(
                s
                for s in (State.SUCCESS, State.WARNING, State.SKIPPED)
                if p.releases(s, False)
                and p.releases(s, True)
                and not p.fails_execution(s, False, lambda: False)
            )
        return self._well

    @staticmethod
    def _why_well(outcome: Outcome) -> str | None:
        """The reason the task run of an outcome that ended well ends with (as
        :meth:`_end_of` gives it)."""
        if outcome.state is State.SKIPPED:
            return outcome.error or RUN_IF_SKIP
        return outcome.error

    def record_successes(
        self, done: Sequence[tuple[Claim, Outcome]], now: float, result: RecordResult
    ) -> Callable[[], None]:
        """Record attempts that ended well (:meth:`ends_well`) in a few statements
        whatever their number: the attempts, their outputs and metrics, the task runs,
        their history, the pending counts, and the dependents they make ready (what
        :meth:`record_others` does for any other outcome). On PostgreSQL the first
        statement (which also makes the dependents ready) goes with the next one: the
        function returned reads it and does the rest (elsewhere, all is done before it
        returns). A batch larger than a statement takes (SQLite) goes in parts."""
        size = self.db.rows_at_once(ATTEMPT_COLUMNS)
        if len(done) > size:  # (never on PostgreSQL: arrays)
            for part in parts(done, size):
                self.record_successes(part, now, result)()
            return lambda: None
        values: list[tuple[Any, ...]]
        if all(o.state is State.SUCCESS and o.error is None for _, o in done):  # plain
            values = [(c.attempt_id, o.exit_code, o.cpu_seconds, o.peak_rss_kb) for c, o in done]
            changes = [
                Change(c.execution_id, c.task_run_id, State.RUNNING, State.SUCCESS) for c, _ in done
            ]
        else:
            values, changes = [], []
            for c, o in done:
                why = self._why_well(o)
                ended = (o.state.value, o.reason, o.error, why)
                values.append((c.attempt_id, o.exit_code, o.cpu_seconds, o.peak_rss_kb, *ended))
                changes.append(Change(c.execution_id, c.task_run_id, State.RUNNING, o.state, why))
        read = self.transitions.succeeded(values, changes, now, RELEASE_CTES)
        if not self.db.writable_ctes:  # (sent already: the release follows it at once)
            self._succeeded(done, changes, read(), now, result)
            return lambda: None
        return lambda: self._succeeded(done, changes, read(), now, result)

    def _succeeded(
        self,
        done: Sequence[tuple[Claim, Outcome]],
        changes: Sequence[Change],
        found: Succeeded,
        now: float,
        result: RecordResult,
    ) -> None:
        result.lost.extend(c.attempt_id for c, _ in done if c.attempt_id not in found.recorded)
        kept = [(c, o) for c, o in done if c.attempt_id in found.recorded]
        if not kept:
            return
        self._write_results(kept, now)
        per_execution: dict[int, int] = {}
        upstream: list[int] = []
        items: list[tuple[int, int]] = []
        for c in changes:
            if c.run_id is None or c.run_id not in found.moved:
                continue
            tr_id, ex_id, fork_of = c.run_id, c.execution_id, found.moved[c.run_id]
            if fork_of is not None:
                items.append((ex_id, fork_of))
            else:
                per_execution[ex_id] = per_execution.get(ex_id, 0) + 1
                upstream.append(tr_id)
        pending: dict[int, int] = {}
        for ex_id in sorted(per_execution):  # the execution first, as in end_task_runs
            if ex_id in found.pending:
                pending[ex_id] = found.pending[ex_id]
            else:
                row = self.db.execute(q.EXECUTION_PENDING_DOWN, (per_execution[ex_id], ex_id))
                pending[ex_id] = int(row.fetchone()["pending"])
        if found.readied is None:
            self.readiness.release_many(upstream, now)
        elif found.readied:  # (by the statement sent before a claim sent with it)
            self.readiness.made_ready(found.readied, seen=True)
        for ex_id, count in pending.items():
            self.maybe_end(ex_id, now, result, count)
        for ex_id in sorted({ex_id for ex_id, _ in items}):  # their for_each task runs
            mine = Counter(fork_of for at, fork_of in items if at == ex_id)
            left = self.pending_down(ex_id, sum(mine.values()))
            self.items_ended(ex_id, mine, now, result)
            if left <= 0:  # (the for_each task run ending has ended the execution itself)
                self.maybe_end(ex_id, now, result)

    def _write_results(self, kept: Sequence[tuple[Claim, Outcome]], now: float) -> None:
        """The outputs, metrics and checks of recorded attempts, a statement a table."""
        ids_of = [(c.attempt_id, c.task_run_id, c.execution_id) for c, _ in kept]
        self.db.later_many(
            q.INSERT_OUTPUT,
            [
                (*ids, k, dumps(v))
                for ids, (_, o) in zip(ids_of, kept, strict=True)
                for k, v in o.outputs.items()
            ],
        )
        self.db.later_many(
            INSERT_METRIC,
            [
                (*ids, m.name, m.kind, m.value, dumps(dict(m.tags)), now)
                for ids, (_, o) in zip(ids_of, kept, strict=True)
                for m in o.metrics
            ],
        )
        self.db.later_many(
            INSERT_CHECK,
            [
                _check_row(ids, r)
                for ids, (_, o) in zip(ids_of, kept, strict=True)
                for r in o.checks
            ],
        )

    @staticmethod
    def fails(outcome: Outcome) -> bool:
        """An attempt that failed: FAILED, or a state an attempt does not end in, which
        is recorded as FAILED."""
        return outcome.forks is None and outcome.state not in RECORDED

    def record_one(
        self, claim: Claim, outcome: Outcome, now: float, rng: random.Random, result: RecordResult
    ) -> None:
        """Record one attempt's outcome (:meth:`record_others`, a batch of one)."""
        self.record_others([(claim, outcome)], now, rng, result)

    def record_others(
        self,
        batch: Sequence[tuple[Claim, Outcome]],
        now: float,
        rng: random.Random,
        result: RecordResult,
    ) -> None:
        """Record the outcomes :meth:`record_successes` does not take (``batch``, in
        lock order): failures, each tried again or ending its task run; kills; run_if
        STOPs; claims dropped before their launch; successes with a reason; for_each
        task runs expanding. In a few statements whatever their number (on SQLite, per
        part of as many as a statement takes): the attempts, their outputs, the facts
        retries and dropped claims are decided from, then the task runs' ends
        (:meth:`end_task_runs`) and the expansions (:meth:`_fork`)."""
        for part in parts(batch, self.db.rows_at_once(ATTEMPT_COLUMNS)):
            self._record_part(part, now, rng, result)

    def _record_part(
        self,
        batch: Sequence[tuple[Claim, Outcome]],
        now: float,
        rng: random.Random,
        result: RecordResult,
    ) -> None:
        rows = [
            (c.attempt_id, o.exit_code, o.cpu_seconds, o.peak_rss_kb, *self._attempt_end(o), None)
            for c, o in batch
        ]
        recorded = self.transitions.finish_attempts(rows, now)
        result.lost.extend(c.attempt_id for c, _ in batch if c.attempt_id not in recorded)
        kept = [(c, o) for c, o in batch if c.attempt_id in recorded]
        if not kept:
            return
        self._write_results([(c, o) for c, o in kept if o.forks is None], now)
        failed = [(c, o) for c, o in kept if self.fails(o)]
        dropped = [c for c, o in kept if o.state is State.SKIPPED and o.reason == DROPPED]
        facts = self._counted([c.task_run_id for c, _ in failed] + [c.task_run_id for c in dropped])
        ends = self._not_retried(failed, facts, now, rng, result)
        for c, o in kept:
            if o.forks is not None or self.fails(o):
                continue
            fact = facts.get(c.task_run_id)
            ends.append(self._end_of(c, o, int(fact["n"]) if fact else 0))
        ends.sort(key=lambda e: (e.execution_id, e.run_id))
        self.end_task_runs(ends, now, result)
        self._fork([(c, o.forks) for c, o in kept if o.forks is not None], now, result)

    def _attempt_end(self, outcome: Outcome) -> tuple[str, str | None, str | None]:
        """The state, reason and error an attempt that ended so is recorded with."""
        if outcome.forks is not None:
            return State.SUCCESS.value, "forked", None
        state = State.FAILED if self.fails(outcome) else outcome.state
        return state.value, outcome.reason, outcome.error

    def _end_of(self, claim: Claim, outcome: Outcome, earlier: int) -> End:
        """How the task run of an attempt that neither failed nor expanded ends: as it
        did (a success with a reason, a warning, a kill), SKIPPED by its run_if (STOP:
        and nothing downstream of it), or as the policy ends a claim dropped before its
        launch (``earlier``: the attempts counted before it)."""
        tr_id, ex_id, state = claim.task_run_id, claim.execution_id, outcome.state
        if state in (State.SUCCESS, State.WARNING):  # a warning's, or this.success(message)
            routine = routine_end(state, outcome.reason, outcome.error)  # the attempt says it
            return End(tr_id, ex_id, state, outcome.error, routine=routine)
        if state is State.SKIPPED and outcome.reason == DROPPED:
            # never launched: it does not count (q.COUNTED), as a hand-back
            ending = self.policy.dropped(earlier, outcome.error or DROPPED)
            return End(tr_id, ex_id, ending.state, ending.reason, failing_already=True)
        if state is State.SKIPPED:
            stop = outcome.reason == "stop"
            return End(tr_id, ex_id, State.SKIPPED, outcome.error or RUN_IF_SKIP, stop=stop)
        return End(tr_id, ex_id, state, outcome.error or outcome.reason or "failed")

    def _counted(self, runs: Sequence[int]) -> dict[int, Row]:
        """Of task runs ``runs``: whether allowed to fail, and the attempts counted
        (:data:`q.COUNTED`), by id."""
        if not runs:
            return {}
        table, params = self.db.ids(runs)
        return {int(r["id"]): r for r in self.db.all(FAILED_FACTS.format(ids=table), params)}

    def _not_retried(
        self,
        failed: Sequence[tuple[Claim, Outcome]],
        facts: Mapping[int, Row],
        now: float,
        rng: random.Random,
        result: RecordResult,
    ) -> list[End]:
        """Failed attempts (in lock order, recorded): the policy decides each one's
        retry, asked in order (once one fails its execution, what fails after it is not
        tried again); those tried again are ready again, in one statement. The ends of
        the others."""
        if not failed:
            return []
        ex_ids = sorted({c.execution_id for c, _ in failed})
        table, params = self.db.ids(ex_ids)
        running = {
            int(r["id"])
            for r in self.db.all(EXECUTION_STATES.format(ids=table), params)
            if r["state"] == State.RUNNING.value
        }
        going = running - self.reads.failing_among(ex_ids).keys()  # (nor stopping)
        options = {ex_id: self.reads.run_options(ex_id) for ex_id in ex_ids}
        keep_going = {  # (asked once an execution)
            ex_id: functools.cache(functools.partial(self._continue_on_error, ex_id))
            for ex_id in ex_ids
        }
        again: list[tuple[int, float]] = []
        ends: list[End] = []
        for claim, outcome in failed:
            ex_id, fact = claim.execution_id, facts[claim.task_run_id]
            task = self.flows.flow_of(claim.revision_id).task(claim.task_id)
            delay = self.policy.retry_delay(
                RetryFacts(
                    policy=options[ex_id].retry_policy(task.retry),
                    attempt_number=int(fact["n"]),
                    reason=outcome.reason,
                    exit_code=outcome.exit_code,
                    elapsed=now - claim.first_started_at,
                    execution_going=ex_id in going,
                    durable=_durable(task.spec),
                ),
                rng,
            )
            if delay is not None:
                again.append((claim.task_run_id, now + delay))
                result.retries.append(claim.task_run_id)
                continue
            why = outcome.error or outcome.reason or "failed"
            ends.append(End(claim.task_run_id, ex_id, State.FAILED, why))
            if ex_id in going and self.policy.fails_execution(
                State.FAILED, bool(fact["allow_failure"]), keep_going[ex_id]
            ):
                going.discard(ex_id)  # failing now: what fails after it is not retried
        self.readiness.ready_again_many(again)
        return ends

    # -- task runs ending ----------------------------------------------------------------
    def end_task_runs(self, ends: Sequence[End], now: float, result: RecordResult) -> None:
        """End task runs (each from the state it is read in: one another process ends
        meanwhile is left alone; a running one killed goes by way of KILLING, as the
        table says), then what follows, as the policy decides, in a few statements per
        execution whatever their number: their executions wait for them no more; the
        dependents of those that release them wait for one fewer (ready when for none);
        the others' dependents are skipped, transitively; the first that fails its
        execution skips every task run of it not started; the for_each task runs of
        items among them start their next items or end; the execution ends when
        nothing is left. Rows are locked as everywhere: the task runs ending, their
        executions (by id), then their dependents."""
        for part in parts(ends, self.db.rows_at_once(ATTEMPT_COLUMNS)):
            self._end_part(part, now, result)

    def _end_part(self, ends: Sequence[End], now: float, result: RecordResult) -> None:
        before = self.transitions.before_many([e.run_id for e in ends])
        killing = [
            Change(e.execution_id, e.run_id, State.RUNNING, State.KILLING, e.reason)
            for e in ends
            if e.state is State.KILLED and before[e.run_id].state is State.RUNNING
        ]
        self.transitions.transition(killing, now)
        was = {c.run_id: State.KILLING for c in killing}
        changes = [
            (
                e,
                Change(
                    e.execution_id,
                    e.run_id,
                    was.get(e.run_id, before[e.run_id].state),
                    e.state,
                    e.reason,
                ),
            )
            for e in ends
        ]
        moved = self.transitions.transition([c for e, c in changes if e.routine], now, routine=True)
        moved.update(self.transitions.transition([c for e, c in changes if not e.routine], now))
        done = [e for e in ends if e.run_id in moved]
        if not done:
            return
        per_execution = Counter(e.execution_id for e in done)
        pending = {ex_id: self.pending_down(ex_id, n) for ex_id, n in sorted(per_execution.items())}
        policy = self.policy
        releasing = {
            e.run_id
            for e in done
            if policy.releases(e.state, before[e.run_id].allow_failure, stop=e.stop)
        }
        self.readiness.release_many(
            [e.run_id for e in done if e.run_id in releasing and before[e.run_id].fork_of is None],
            now,
        )
        for ex_id in sorted(per_execution):
            mine = [e for e in done if e.execution_id == ex_id]
            self._ended(ex_id, mine, before, releasing, pending[ex_id], now, result)

    def _ended(
        self,
        ex_id: int,
        ends: Sequence[End],
        before: Mapping[int, Before],
        releasing: Collection[int],
        left: int,
        now: float,
        result: RecordResult,
    ) -> None:
        """What follows task runs of execution ``ex_id`` ending (see :meth:`end_task_runs`),
        ``left`` task runs of it left after them."""
        pending: int | None = left
        stop = next((e for e in ends if e.stop), None)
        if stop is not None:  # the first STOP's reason is the execution's (kept if set)
            self.db.execute(q.SET_STOPPED, (stop.reason, ex_id))
        keep_going = functools.cache(lambda: self._continue_on_error(ex_id))
        failing = next(
            (
                e
                for e in ends
                if not e.failing_already
                and self.policy.fails_execution(e.state, before[e.run_id].allow_failure, keep_going)
            ),
            None,
        )
        anchors = [
            e for e in ends if e.run_id not in releasing and before[e.run_id].fork_of is None
        ]
        if anchors:
            self._skip_below(ex_id, anchors, before, now, result)
            pending = None  # skipping changed it (read it again)
        if failing is not None:
            why = f"execution failed: task '{before[failing.run_id].task_id}' failed"
            self.skip_unstarted(ex_id, why, now, result)
            pending = None
        items = Counter(f for e in ends if (f := before[e.run_id].fork_of) is not None)
        if items:
            self.items_ended(ex_id, items, now, result)
            pending = None
        self.maybe_end(ex_id, now, result, pending)

    # -- for_each ----------------------------------------------------------------------
    def _fork(
        self, forks: Sequence[tuple[Claim, Sequence[Any]]], now: float, result: RecordResult
    ) -> None:
        """for_each task runs expand (their attempts ended SUCCESS): one item task run per
        value is created (the first ``concurrency`` of each ready) and each for_each task
        run stays RUNNING until every item of it has ended; one without items ends
        SUCCESS. In a few statements whatever their number."""
        if not forks:
            return
        rows: list[tuple[Any, ...]] = []
        counts: list[tuple[int, int, int]] = []  # (for_each task run, items, at once)
        per_execution: Counter[int] = Counter()
        empty: list[End] = []
        queue_of = self.reads.queues_of(c.execution_id for c, items in forks if items)
        for claim, items in forks:
            ex_id, tr_id = claim.execution_id, claim.task_run_id
            if not items:
                empty.append(End(tr_id, ex_id, State.SUCCESS, None))
                continue
            task = self.flows.flow_of(claim.revision_id).task(claim.task_id)
            queue = queue_of(ex_id, task)
            allowed, key = int(task.allow_failure), task.concurrency_key
            rows.extend(
                (ex_id, task.id, allowed, now, queue, tr_id, i, dumps(v), key)
                for i, v in enumerate(items)
            )
            counts.append(
                (tr_id, len(items), self.policy.items_at_once(len(items), task.concurrency))
            )
            per_execution[ex_id] += len(items)
        self.end_task_runs(empty, now, result)
        if not rows:
            return
        for part in parts(rows, self.db.rows_at_once(len(_ITEM_TYPES))):
            table, params = self.db.values(part, _ITEM_TYPES)
            self.db.execute(INSERT_ITEMS.format(values=table), params)
        table, params = self.db.values(counts, ("BIGINT", "BIGINT", "BIGINT"))
        self.db.execute(FORKED_MANY.format(values=table), params)
        for ex_id, count in sorted(per_execution.items()):
            self.db.execute(q.EXECUTION_PENDING_DOWN, (-count, ex_id))
        self.readiness.release_items([(tr_id, first) for tr_id, _, first in counts], now)
        failing = self.reads.failing_among(per_execution)
        for ex_id, why in sorted(failing.items()):  # (a failure before them: none starts)
            self.skip_unstarted(ex_id, why, now, result)

    def items_ended(
        self, ex_id: int, counts: Mapping[int, int], now: float, result: RecordResult
    ) -> None:
        """Items of for_each task runs of execution ``ex_id`` ended (``counts``: how many
        of each): each starts as many of its items held back by ``concurrency``, or
        ends, as the policy decides from its items, once none is left."""
        rows = sorted(counts.items())
        for part in parts(rows, self.db.rows_at_once(ATTEMPT_COLUMNS)):
            self._items_part(ex_id, part, now, result)

    def _items_part(
        self, ex_id: int, rows: Sequence[tuple[int, int]], now: float, result: RecordResult
    ) -> None:
        table, params = self.db.values(rows, ("BIGINT", "BIGINT"))
        left = {
            int(r["id"]): int(r["forks_pending"])
            for r in self.db.all(ITEMS_ENDED.format(values=table), params)
        }
        self.readiness.release_next_items([(f, n) for f, n in rows if left.get(f, 0) > 0], now)
        over = sorted(f for f, n in left.items() if n <= 0)
        if not over:
            return
        table, params = self.db.ids(over)
        states: dict[int, dict[tuple[State, bool], int]] = {f: {} for f in over}
        for r in self.db.all(ITEM_STATES.format(ids=table), params):
            states[int(r["fork_of"])][State(r["state"]), bool(r["allow_failure"])] = int(r["n"])
        firsts: dict[tuple[int, str], tuple[int, str]] = {}

        def first_of(fork_of: int) -> Callable[[State], tuple[int, str]]:
            def first(state: State) -> tuple[int, str]:
                if not firsts:
                    for r in self.db.all(FIRST_ITEM_FAILURES.format(ids=table), params):
                        at = (int(r["fork_of"]), str(r["state"]))
                        firsts[at] = int(r["fork_index"]), str(r["reason"])
                return firsts[fork_of, state.value]

            return first

        ends = []
        for fork_of in over:
            verdict = self.policy.items_verdict(states[fork_of], first_of(fork_of))
            ends.append(End(fork_of, ex_id, verdict.state, verdict.reason))
        self.end_task_runs(ends, now, result)

    def _continue_on_error(self, ex_id: int) -> bool:
        """The execution's own setting (``ordo run --continue-on-error``), else its flow's."""
        row = self.db.one(EXECUTION_REVISION, (ex_id,))
        assert row is not None
        if row["continue_on_error"] is not None:
            return bool(row["continue_on_error"])
        return self.flows.flow_of(row["revision_id"]).continue_on_error

    def pending_down(self, ex_id: int, count: int = 1) -> int:
        """One task run fewer left in the execution (or ``count``); how many remain."""
        row = self.db.execute(q.EXECUTION_PENDING_DOWN, (count, ex_id)).fetchone()
        return int(row["pending"])

    def maybe_end(
        self, ex_id: int, now: float, result: RecordResult, pending: int | None = None
    ) -> None:
        if pending is None:
            row = self.db.one(EXECUTION_PENDING, (ex_id,))
            pending = int(row["pending"]) if row else 1
        if pending <= 0:
            self._end_execution(ex_id, now, result)

    def _end_execution(self, ex_id: int, now: float, result: RecordResult) -> State | None:
        """End an execution whose task runs have all ended: its final state and reason
        as the policy decides from theirs, its outputs rendered, and a flow task
        waiting for it told."""
        current = self.transitions.execution_state(ex_id)
        if current.terminal:  # ended already (by another path of this transaction)
            return None
        info = self.db.one(EXECUTION_END_INFO, (ex_id,))
        assert info is not None
        reason, stopped = info["reason"], info["stopped"]
        policy = self.policy
        flow = self.flows.flow_of(info["revision_id"])
        ending = policy.end_state(self.end_facts(ex_id, current, reason, stopped))
        ending, outputs = policy.flow_outputs(flow, ending, stopped, self.output_facts(ex_id))
        final, reason = ending.state, ending.reason
        if current is State.CREATED and final in (State.SUCCESS, State.WARNING):
            # nothing was left to claim (all skipped or reused): it ran, in no time
            self.transitions.set_execution_state(ex_id, State.RUNNING, now, None)
        if not self.transitions.set_execution_state(ex_id, final, now, reason):
            return None
        shown = None if outputs is None else dumps(outputs)
        self.db.execute(q.EXECUTION_ENDED, (now, reason, shown, ex_id))
        result.ended_executions[ex_id] = final
        self.child_ended(ex_id, final, reason, outputs, now, result)
        self._admit_queued(flow, now, result)
        return final

    def end_facts(
        self, ex_id: int, current: State, failing: str | None, stopped: str | None
    ) -> EndFacts:
        """What the policy decides the end of execution ``ex_id`` from."""
        groups = [
            RunGroup(
                State(r["state"]),
                bool(r["allow_failure"]),
                bool(r["unstarted"]),
                bool(r["on_request"]),
                int(r["n"]),
            )
            for r in self.db.all(END_FACTS, (ON_REQUEST, ex_id))
        ]
        first = lambda: self._first_failure(ex_id)  # noqa: E731 (read only when needed)
        return EndFacts(ex_id, current, failing, stopped, groups, first)

    def output_facts(self, ex_id: int) -> OutputFacts:
        """What the flow's ``outputs:`` of execution ``ex_id`` render against."""
        execution = self.reads.get_execution(ex_id)

        def outputs_of(tasks: Iterable[str]) -> Mapping[str, Any]:
            return self.reads.outputs(ex_id, tasks, flow=self.flows.flow_of(execution.revision_id))

        return OutputFacts(execution.inputs, execution.template_info(), outputs_of)

    def child_ended(
        self,
        ex_id: int,
        final: State,
        reason: str | None,
        outputs: Mapping[str, Any] | None,
        now: float,
        result: RecordResult,
    ) -> None:
        """A flow task waits for this execution: its attempt ends as the child did."""
        info = self.db.one(EXECUTION_END_INFO, (ex_id,))
        if info is None or info["parent_attempt_id"] is None:
            return
        row = self.db.one(ATTEMPT_CLAIM, (info["parent_attempt_id"],))
        if row is None:
            return
        claim = claim_of(row)
        execution = self.reads.get_execution(ex_id)
        what = f"child execution {ex_id} ({execution.flow_key})"
        stopped = info["stopped"] is not None
        outcome = self.policy.child_outcome(what, ex_id, final, reason, outputs, stopped)
        self.record_one(claim, outcome, now, self.rng, result)
        result.nested.append((claim, outcome, claim.task_run_id in result.retries))

    def _first_failure(self, ex_id: int) -> str:
        row = self.db.one(FIRST_FAILURE, (ex_id,))
        if row is None:
            return "a task failed"
        # errors found before running (templates, run_if) already name their task
        task_id = row["task_id"]
        error = str(row["reason"]).removeprefix(f"task '{task_id}': ")
        return f"task '{task_id}' failed: {error}"

    # -- skipped instead of run ------------------------------------------------------
    def _skip_below(
        self,
        ex_id: int,
        anchors: Sequence[End],
        before: Mapping[int, Before],
        now: float,
        result: RecordResult,
    ) -> None:
        """``anchors`` ended badly (or answered STOP): their dependents are skipped,
        transitively, one right below one of them naming the first such (by id)."""
        test, params = self.db.ids([e.run_id for e in anchors])
        runs = self._unstarted(SKIP_BELOW.format(ids=test), params)
        if not runs:
            return
        why = {e.run_id: f"dependency '{before[e.run_id].task_id}' {_verb(e)}" for e in anchors}
        reasons: dict[int, str] = {}
        for d in self.db.all(DEPENDENTS.format(ids=test), params):  # (by upstream)
            reasons.setdefault(int(d["task_run_id"]), why[int(d["upstream_id"])])
        self._skip_all(ex_id, runs, reasons, now, result)

    def skip(
        self, tr_id: int, ex_id: int, reason: str, now: float, result: RecordResult | None = None
    ) -> None:
        """SKIP a not-started task run and, transitively, its dependents."""
        runs = self._unstarted(SKIP_FROM, (tr_id,))
        self._skip_all(ex_id, runs, {tr_id: reason}, now, result or RecordResult())

    def skip_unstarted(
        self, ex_id: int, reason: str, now: float, result: RecordResult | None = None
    ) -> None:
        """The execution fails or stops: every task run of it not started is skipped,
        and those waiting to run again (a retry's delay, an attempt handed back) end as
        if their claims had been dropped (the policy's ``dropped``): nothing new starts."""
        result = result or RecordResult()
        runs = self._unstarted(UNSTARTED_RUNS, (ex_id,))
        self._skip_all(ex_id, runs, {}, now, result, default=reason)
        waiting = [int(r["task_run_id"]) for r in self.db.all(WAITING_AGAIN, (ex_id,))]
        if not waiting:
            return
        for part in parts(waiting, self.db.rows_at_once(ATTEMPT_COLUMNS)):
            test, params = self.db.ids(part)
            # (one claimed meanwhile keeps its ready row no more: its claim is dropped)
            taken = sorted(
                int(r["task_run_id"]) for r in self.db.all(TAKE_READY.format(ids=test), params)
            )
            facts = self._counted(taken)
            ends = []
            for tr_id in taken:
                ending = self.policy.dropped(int(facts[tr_id]["n"]), reason)
                ends.append(End(tr_id, ex_id, ending.state, ending.reason, failing_already=True))
            self.end_task_runs(ends, now, result)

    def kill_unstarted(self, ex_id: int, reason: str, now: float, result: RecordResult) -> None:
        """The execution is being killed: every task run of it not started ends KILLED,
        each with ``reason``, in a few statements whatever their number."""
        runs = self._unstarted(UNSTARTED_RUNS, (ex_id,))
        self._skip_all(ex_id, runs, {}, now, result, default=reason, state=State.KILLED)

    def _unstarted(self, sql: str, params: Sequence[Any]) -> dict[int, Row]:
        """The task runs not started that ``sql`` finds (``id, state, task_id``), by id."""
        return {int(r["id"]): r for r in self.db.all(sql, params)}

    def _skip_all(
        self,
        ex_id: int,
        runs: Mapping[int, Row],
        named: Mapping[int, str],
        now: float,
        result: RecordResult,
        *,
        default: str | None = None,
        state: State = State.SKIPPED,
    ) -> None:
        """SKIP the task runs ``runs`` (not started: ``id, state, task_id``), in a few
        statements whatever their number: those ``named`` with their reason, one that
        depends on another of them with ``dependency 'x' was skipped`` (the first such
        by id), the others with ``default``; their ready rows go, their execution waits
        for them no more, and the for_each task runs of the items among them may end.
        ``state`` KILLED: they end KILLED instead, each with its reason."""
        if not runs:
            return
        upstream: dict[int, int] = {}  # the first of its upstream skipped with it
        below = sorted(runs) if state is State.SKIPPED else []
        for part in parts(below, self.db.rows_at_once(1)):  # (by the index of upstream)
            test, params = self.db.ids(part)
            for d in self.db.all(DEPENDENTS.format(ids=test), params):
                run_id, up = int(d["task_run_id"]), int(d["upstream_id"])
                if run_id in runs and up < upstream.get(run_id, up + 1):
                    upstream[run_id] = up

        def why(run_id: int) -> str | None:
            if run_id in named:
                return named[run_id]
            if run_id in upstream:
                return f"dependency '{runs[upstream[run_id]]['task_id']}' was skipped"
            return default

        changes = [
            Change(ex_id, run_id, State(r["state"]), state, why(run_id))
            for run_id, r in sorted(runs.items())
        ]
        moved = self.transitions.transition(changes, now)
        if not moved:
            return
        self.db.execute(DELETE_ENDED_READY, (ex_id, ex_id, state.value))
        self.db.execute(q.EXECUTION_PENDING_DOWN, (len(moved), ex_id))
        items = Counter(fork_of for fork_of in moved.values() if fork_of is not None)
        if items:
            self.items_ended(ex_id, items, now, result)

    # -- executions starting and ending under their flow's limit ---------------------
    def begin_running(self, ex_id: int, flow: Flow, now: float, result: RecordResult) -> None:
        """Every task run waiting for nothing is ready. A new execution stays CREATED
        until a worker claims its first task run; a QUEUED one goes RUNNING now."""
        if self.transitions.execution_state(ex_id) is State.QUEUED:
            old = self.transitions.set_execution_state(ex_id, State.RUNNING, now, None)
            if old is None:
                return
            # its waiting reason goes, its timeout starts
            timeout = self.reads.run_timeout(ex_id, flow)
            deadline = now + timeout if timeout else None
            self.db.execute(EXECUTION_DEQUEUED, (deadline, ex_id))
        self.readiness.ready_roots(ex_id, now)
        self.maybe_end(ex_id, now, result)

    def turn_away(
        self, ex_id: int, state: State, why: str, now: float, result: RecordResult
    ) -> None:
        """End an execution that never ran (refused or cancelled by its flow's limit,
        killed while QUEUED): its task runs end KILLED (or SKIPPED when it FAILED)."""
        if self.transitions.set_execution_state(ex_id, state, now, why) is None:
            return
        each = State.KILLED if state is State.KILLED else State.SKIPPED
        runs = self.db.all(UNSTARTED_RUNS, (ex_id,))
        changes = [Change(ex_id, int(r["id"]), State(r["state"]), each, why) for r in runs]
        self.transitions.transition(changes, now)
        self.db.execute(q.DELETE_READY_OF, (ex_id,))
        self.db.execute(q.EXECUTION_ENDED, (now, why, None, ex_id))
        result.ended_executions[ex_id] = state
        self.child_ended(ex_id, state, why, None, now, result)

    def _admit_queued(self, flow: Flow, now: float, result: RecordResult) -> None:
        """An execution of ``flow`` ended: start the oldest QUEUED ones it has room for."""
        limit = flow.concurrency
        if limit is None:
            return
        running = self.limits.active(flow)
        while self.policy.admission(limit, running, flow.key) is None:
            row = self.db.one(OLDEST_QUEUED, (flow.namespace, flow.id))
            if row is None:
                return
            flow_of = self.flows.flow_of(int(row["revision_id"]))
            self.begin_running(int(row["id"]), flow_of, now, result)
            running += 1


def finish_params(attempt_id: int, state: State, outcome: Outcome, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`q.FINISH_ATTEMPT` for an attempt ending ``state``."""
    return (
        state.value,
        now,
        outcome.exit_code,
        outcome.reason,
        outcome.error,
        outcome.cpu_seconds,
        outcome.peak_rss_kb,
        attempt_id,
    )


RECORDED = (State.SUCCESS, State.KILLED, State.WARNING, State.SKIPPED)


class End(Struct, frozen=True):
    """A task run to end ``state`` with ``reason`` (:meth:`Outcomes.end_task_runs`).
    ``stop``: it answered STOP (nothing downstream of it runs); ``routine``: its attempt
    ended SUCCESS and holds the move; ``failing_already``: its execution is failing (or
    stopping) already and the caller skips what has not started, so it fails nothing
    more."""

    run_id: int
    execution_id: int
    state: State
    reason: str | None
    stop: bool = False
    routine: bool = False
    failing_already: bool = False


def _verb(end: End) -> str:
    """How the reason of a task run skipped below ``end`` says it ended."""
    if end.stop:
        return "stopped"
    return "failed" if end.state is State.FAILED else end.state.value.lower()


#: the reason of a task run whose run_if answered SKIP without one
RUN_IF_SKIP = "run_if answered SKIP"


def _durable(spec: Mapping[str, Any]) -> bool:
    """A flow function or a handler: run again, its completed steps are not done again."""
    return bool(spec.get("flow_function") or spec.get("handler"))


def _check_row(ids: tuple[int, int, int], r: CheckResult) -> tuple[Any, ...]:
    """An ``INSERT_CHECK`` row: the attempt's ids, then the result."""
    return (
        *ids,
        r.phase,
        r.position,
        r.kind,
        int(r.ok),
        r.message,
        r.output,
        r.started_at,
        r.ended_at,
    )
