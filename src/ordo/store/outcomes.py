"""Recording attempt outcomes and everything they decide, in the transaction that
records them: a task run's end or its retry, the dependents made ready or skipped,
for_each items and the task run they belong to, run_if's SKIP and STOP, the end of an
execution (its state, reason and outputs) and the flow task waiting for it.

Each change of state goes through :class:`~ordo.store.transitions.Transitions` (one
conditional ``UPDATE ... WHERE state = :expected`` allowed by the one table in
:mod:`ordo.model`, written to ``state_history`` in the same transaction); ready rows
through :class:`~ordo.store.readiness.Readiness`. What follows is asked of the policy
(:mod:`ordo.store.ports`). Also here: executions starting and ending under their flow's
limit (a QUEUED one admitted when another ends). Rows are locked in one order everywhere
(an execution before its task runs, executions by id), so workers recording at once do
not deadlock.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ordo.model import DROPPED, ON_REQUEST, CheckResult, Flow, Outcome, State
from ordo.store import queries as q
from ordo.store.db import Db, Row, dumps
from ordo.store.flows import Flows
from ordo.store.history import routine_end
from ordo.store.limits import Limits
from ordo.store.ports import Decisions, EndFacts, OutputFacts, RetryFacts, RunGroup, default_policy
from ordo.store.readiness import RELEASE_CTES, Readiness
from ordo.store.reads import Reads, claim_of
from ordo.store.records import Claim, RecordResult
from ordo.store.transitions import UNSTARTED, Change, Succeeded, Transitions

ATTEMPT_CLAIM = f"""
SELECT {q.CLAIM_COLUMNS}
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.id = ?
"""
COUNTED_ATTEMPTS = f"""
SELECT count(*) AS n FROM attempts a JOIN task_runs t ON t.id = a.task_run_id
WHERE a.task_run_id = ? AND {q.COUNTED.format(a="a", t="t")}
"""
DEPENDENTS = "SELECT task_run_id FROM task_run_deps WHERE upstream_id = ?"
#: the task runs of an execution not started, and the dependencies between them
UNSTARTED_RUNS = """
SELECT id, state, task_id FROM task_runs
WHERE execution_id = ? AND state IN ('CREATED', 'RESTARTED') ORDER BY id
"""
#: the task runs not started downstream of one (through task runs not started): it
#: and those (``SKIP_FROM``), or only those (``SKIP_BELOW``); its id the parameter
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
    "WHERE d.upstream_id = ? AND n.state IN ('CREATED', 'RESTARTED')"
)

UNSTARTED_DEPS = """
SELECT d.task_run_id, d.upstream_id FROM task_run_deps d JOIN task_runs t ON t.id = d.task_run_id
WHERE t.execution_id = ? AND t.state IN ('CREATED', 'RESTARTED')
"""
#: skipped many at once: in statements of at most this many (SQLite's parameters)
SKIPS_AT_ONCE = 1000
DELETE_SKIPPED_READY = """
DELETE FROM ready WHERE execution_id = ?
  AND task_run_id IN (SELECT id FROM task_runs WHERE execution_id = ? AND state = 'SKIPPED')
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
FIRST_ITEM_FAILURE = """
SELECT fork_index, reason FROM task_runs WHERE fork_of = ? AND state = ?
ORDER BY fork_index LIMIT 1
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
#: One item of a for_each task run ended: one fewer pending.
ITEM_ENDED = """
UPDATE task_runs SET forks_pending = forks_pending - ?, forks_next = forks_next + ? WHERE id = ?
RETURNING forks_pending, forks_next
"""
ITEM_STATES = """
SELECT state, allow_failure, count(*) AS n FROM task_runs WHERE fork_of = ?
GROUP BY state, allow_failure
"""
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
        policy: Decisions | None = None,
    ) -> None:
        self.db = db
        self.flows = flows
        self.reads = reads
        self.transitions = transitions
        self.readiness = readiness
        self.limits = limits
        #: the jitter of retries decided while recording (the caller's, when it gives one)
        self.rng = random.Random()
        self._policy = policy
        self._well: frozenset[State] | None = None

    @property
    def policy(self) -> Decisions:
        """The engine's policy this store asks (see :mod:`ordo.store.ports`)."""
        if self._policy is None:
            self._policy = default_policy()
        return self._policy

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
        :meth:`record_one` gives it)."""
        if outcome.state is State.SKIPPED:
            return outcome.error or RUN_IF_SKIP
        return outcome.error

    def record_successes(
        self, done: Sequence[tuple[Claim, Outcome]], now: float, result: RecordResult
    ) -> Callable[[], None]:
        """Record attempts that ended well (:meth:`ends_well`) in a few statements
        whatever their number: the attempts, their outputs and metrics, the task runs,
        their history, the pending counts, and the dependents they make ready (what
        :meth:`record_one` does for any other outcome). On PostgreSQL the first
        statement (which also makes the dependents ready) goes with the next one: the
        function returned reads it and does the rest (elsewhere, all is done before it
        returns)."""
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
        for ex_id in sorted(per_execution):  # the execution first, as in finish_task_run
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
        for ex_id, fork_of in sorted(items):  # items: their for_each task run may end too
            left = self.pending_down(ex_id)
            self.item_ended(fork_of, ex_id, now, result)
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
        """An attempt that failed (:meth:`record_failures`): FAILED, or a state an
        attempt does not end in, which is recorded as FAILED."""
        return outcome.forks is None and outcome.state not in RECORDED

    def record_failures(
        self,
        failed: Sequence[tuple[Claim, Outcome]],
        now: float,
        rng: random.Random,
        result: RecordResult,
    ) -> None:
        """Record FAILED attempts (``failed``, in their lock order) as :meth:`record_one`
        would one by one, their retries in a few statements whatever their number: the
        attempts, their outputs, the facts the policy decides retries from, and the
        ready rows of those that try again. Those that do not end their task runs one
        by one (what each decides differs: the dependents it skips)."""
        if not failed:
            return
        rows = [
            (
                c.attempt_id,
                o.exit_code,
                o.cpu_seconds,
                o.peak_rss_kb,
                "FAILED",
                o.reason,
                o.error,
                None,
            )
            for c, o in failed
        ]
        recorded = self.transitions.finish_attempts(rows, now)
        result.lost.extend(c.attempt_id for c, _ in failed if c.attempt_id not in recorded)
        kept = [(c, o) for c, o in failed if c.attempt_id in recorded]
        if not kept:
            return
        self._write_results(kept, now)
        runs, ex_ids = [c.task_run_id for c, _ in kept], sorted({c.execution_id for c, _ in kept})
        table, params = self.db.ids(runs)
        facts = {int(r["id"]): r for r in self.db.all(FAILED_FACTS.format(ids=table), params)}
        table, params = self.db.ids(ex_ids)
        running = {
            int(r["id"])
            for r in self.db.all(EXECUTION_STATES.format(ids=table), params)
            if r["state"] == State.RUNNING.value
        }
        going = running - self.reads.failing_among(ex_ids).keys()  # (nor stopping)
        options = {ex_id: self.reads.run_options(ex_id) for ex_id in ex_ids}
        again: list[tuple[int, float]] = []
        ending: list[tuple[Claim, Outcome]] = []
        for claim, outcome in kept:
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
            ending.append((claim, outcome))
            keep_going = functools.partial(self._continue_on_error, ex_id)
            if ex_id in going and self.policy.fails_execution(
                State.FAILED, bool(fact["allow_failure"]), keep_going
            ):
                going.discard(ex_id)  # failing now: what fails after it is not retried
        self.readiness.ready_again_many(again)
        for claim, outcome in ending:
            why = outcome.error or outcome.reason or "failed"
            self.finish_task_run(
                claim.task_run_id, claim.execution_id, State.FAILED, why, now, result
            )

    def record_one(
        self, claim: Claim, outcome: Outcome, now: float, rng: random.Random, result: RecordResult
    ) -> None:
        if outcome.forks is not None:
            self._fork(claim, outcome.forks, now, result)
            return
        if self.fails(outcome):
            self.record_failures([(claim, outcome)], now, rng, result)
            return
        state = outcome.state
        cur = self.db.execute(
            q.FINISH_ATTEMPT, finish_params(claim.attempt_id, state, outcome, now)
        )
        if cur.rowcount == 0:
            result.lost.append(claim.attempt_id)
            return
        ids = (claim.attempt_id, claim.task_run_id, claim.execution_id)
        if outcome.outputs:
            self.db.executemany(
                q.INSERT_OUTPUT, [(*ids, k, dumps(v)) for k, v in outcome.outputs.items()]
            )
        if outcome.metrics:
            self.db.executemany(
                INSERT_METRIC,
                [
                    (*ids, m.name, m.kind, m.value, dumps(dict(m.tags)), now)
                    for m in outcome.metrics
                ],
            )
        if outcome.checks:
            self.db.executemany(INSERT_CHECK, [_check_row(ids, r) for r in outcome.checks])
        if state in (State.SUCCESS, State.WARNING):
            why = outcome.error  # a warning's, or a handler's this.success(message)
            routine = routine_end(state, outcome.reason, outcome.error)  # the attempt says it
            self.finish_task_run(
                claim.task_run_id, claim.execution_id, state, why, now, result, routine=routine
            )
            return
        if state is State.SKIPPED and outcome.reason == DROPPED:
            # never launched: it does not count (q.COUNTED), as a hand-back
            counted = self.db.one(COUNTED_ATTEMPTS, (claim.task_run_id,))
            earlier = int(counted["n"]) if counted else 0
            ending = self.policy.dropped(earlier, outcome.error or DROPPED)
            self.finish_task_run(
                claim.task_run_id,
                claim.execution_id,
                ending.state,
                ending.reason,
                now,
                result,
                failing_already=True,
            )
            return
        if state is State.SKIPPED:
            self._run_if_skipped(claim, outcome, now, result)
            return
        why = outcome.error or outcome.reason or "failed"
        if state is State.KILLED:  # RUNNING -> KILLING -> KILLED, as the table says
            self.transitions.set_task_run_state(
                claim.task_run_id, claim.execution_id, State.KILLING, now, why
            )
        self.finish_task_run(claim.task_run_id, claim.execution_id, state, why, now, result)

    def finish_task_run(
        self,
        tr_id: int,
        ex_id: int,
        state: State,
        reason: str | None,
        now: float,
        result: RecordResult,
        *,
        stop: bool = False,
        routine: bool = False,
        failing_already: bool = False,
    ) -> None:
        """End a task run, then propagate: dependents become ready, or are skipped
        (``stop``: it answered STOP, nothing downstream of it runs). ``routine``: its
        attempt ended SUCCESS and holds the move's history. ``failing_already``: its
        execution is failing (or stopping) already, and the caller skips what has not
        started: a failure of it stops nothing more."""
        row = self.transitions.set_task_run_state(tr_id, ex_id, state, now, reason, routine=routine)
        if row is None:
            return
        task_id, allowed, fork_of = row.task_id, row.allow_failure, row.fork_of
        pending: int | None = self.pending_down(ex_id)
        policy = self.policy
        failing = not failing_already and policy.fails_execution(
            state, allowed, lambda: self._continue_on_error(ex_id)
        )
        why = f"execution failed: task '{task_id}' failed"
        if fork_of is not None:  # an item: its for_each task run may end with it
            if failing:
                self.skip_unstarted(ex_id, why, now, result)
            self.item_ended(fork_of, ex_id, now, result)
            self.maybe_end(ex_id, now, result)
            return
        if policy.releases(state, allowed, stop=stop):
            self.readiness.release_dependents(tr_id, now)
        else:
            self._skip_dependents(tr_id, ex_id, task_id, state, now, result, stop=stop)
            if failing:
                self.skip_unstarted(ex_id, why, now, result)
            pending = None  # skipping changed it (read it again)
        self.maybe_end(ex_id, now, result, pending)

    def _run_if_skipped(
        self, claim: Claim, outcome: Outcome, now: float, result: RecordResult
    ) -> None:
        """The task answered SKIP (it ends SKIPPED, its dependents run) or STOP (it ends
        SKIPPED and so does everything downstream of it; independent branches go on;
        the execution ends by the usual rule, its STOP reason recorded) — by its run_if,
        by ``raise this.Skip/Stop`` or by returning ``"SKIP"``/``"STOP"``."""
        why = outcome.error or RUN_IF_SKIP
        stop = outcome.reason == "stop"
        if stop:
            self.db.execute(q.SET_STOPPED, (why, claim.execution_id))
        self.finish_task_run(
            claim.task_run_id, claim.execution_id, State.SKIPPED, why, now, result, stop=stop
        )

    def _fork(self, claim: Claim, items: Sequence[Any], now: float, result: RecordResult) -> None:
        """A for_each task run expands: its attempt ends SUCCESS, one item task run per
        value is created (the first ``concurrency`` of them ready) and the task run
        itself stays RUNNING until every item has ended."""
        cur = self.db.execute(
            q.FINISH_ATTEMPT,
            (State.SUCCESS.value, now, None, "forked", None, None, None, claim.attempt_id),
        )
        if cur.rowcount == 0:
            result.lost.append(claim.attempt_id)
            return
        ex_id, tr_id = claim.execution_id, claim.task_run_id
        if not items:
            self.finish_task_run(tr_id, ex_id, State.SUCCESS, None, now, result)
            return
        task = self.flows.flow_of(claim.revision_id).task(claim.task_id)
        count = len(items)
        first = self.policy.items_at_once(count, task.concurrency)
        queue = self.reads.queue_of(ex_id, task)
        self.db.executemany(
            q.INSERT_ITEM,
            [
                (
                    ex_id,
                    task.id,
                    int(task.allow_failure),
                    now,
                    queue,
                    tr_id,
                    i,
                    dumps(v),
                    task.concurrency_key,
                )
                for i, v in enumerate(items)
            ],
        )
        self.db.execute(q.FORKED, (count, first, tr_id))
        self.db.execute(q.EXECUTION_PENDING_DOWN, (-count, ex_id))
        self.readiness.release_items(tr_id, first, now)
        failing = self.reads.failing_among((ex_id,))
        if failing:  # (a failure recorded before it, in this transaction or another)
            self.skip_unstarted(ex_id, failing[ex_id], now, result)

    def item_ended(
        self, fork_of: int, ex_id: int, now: float, result: RecordResult, count: int = 1
    ) -> None:
        """One item fewer (or ``count``): start the next one held back by
        ``concurrency``, or end the for_each task run once none is left."""
        row = self.db.execute(ITEM_ENDED, (count, count, fork_of)).fetchone()
        if int(row["forks_pending"]) > 0:
            self.readiness.release_next_item(fork_of, now)
            return
        counts = {
            (State(r["state"]), bool(r["allow_failure"])): int(r["n"])
            for r in self.db.all(ITEM_STATES, (fork_of,))
        }

        def first(state: State) -> tuple[int, str]:
            row = self.db.one(FIRST_ITEM_FAILURE, (fork_of, state.value))
            assert row is not None
            return int(row["fork_index"]), str(row["reason"])

        verdict = self.policy.items_verdict(counts, first)
        state, why = verdict.state, verdict.reason
        if state is State.KILLED:
            self.transitions.set_task_run_state(fork_of, ex_id, State.KILLING, now, why)
        self.finish_task_run(fork_of, ex_id, state, why, now, result)

    def _continue_on_error(self, ex_id: int) -> bool:
        """The execution's own setting (``ordo run --continue-on-error``), else its flow's."""
        row = self.db.one(EXECUTION_REVISION, (ex_id,))
        assert row is not None
        if row["continue_on_error"] is not None:
            return bool(row["continue_on_error"])
        return self.flows.flow_of(row["revision_id"]).continue_on_error

    def pending_down(self, ex_id: int) -> int:
        """One task run fewer left in the execution; how many remain."""
        row = self.db.execute(q.EXECUTION_PENDING_DOWN, (1, ex_id)).fetchone()
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
    def _skip_dependents(
        self,
        tr_id: int,
        ex_id: int,
        task_id: str,
        state: State,
        now: float,
        result: RecordResult,
        *,
        stop: bool = False,
    ) -> None:
        """``tr_id`` ended badly (or answered STOP): its dependents are skipped,
        transitively."""
        verb = "stopped" if stop else "failed" if state is State.FAILED else state.value.lower()
        runs = self._unstarted(SKIP_BELOW, (tr_id,))
        direct = {int(r["task_run_id"]) for r in self.db.all(DEPENDENTS, (tr_id,))}
        why = f"dependency '{task_id}' {verb}"
        self._skip_all(ex_id, runs, {r: why for r in runs if r in direct}, now, result)

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
        and one waiting to run again (a retry's delay, an attempt handed back) ends as
        if its claim had been dropped (the policy's ``dropped``): nothing new starts."""
        result = result or RecordResult()
        runs = self._unstarted(UNSTARTED_RUNS, (ex_id,))
        self._skip_all(ex_id, runs, dict.fromkeys(runs, reason), now, result)
        for r in self.db.all(WAITING_AGAIN, (ex_id,)):
            tr_id = r["task_run_id"]
            if not self.db.execute(q.DELETE_READY, (tr_id,)).rowcount:
                continue  # (claimed meanwhile: its claim is dropped)
            counted = self.db.one(COUNTED_ATTEMPTS, (tr_id,))
            ending = self.policy.dropped(int(counted["n"]) if counted else 0, reason)
            self.finish_task_run(
                tr_id, ex_id, ending.state, ending.reason, now, result, failing_already=True
            )

    def _unstarted(self, sql: str, params: tuple[Any, ...]) -> dict[int, Row]:
        """The task runs not started that ``sql`` finds (``id, state, task_id``), by id."""
        return {int(r["id"]): r for r in self.db.all(sql, params)}

    def _skip_all(
        self,
        ex_id: int,
        runs: Mapping[int, Row],
        reasons: Mapping[int, str],
        now: float,
        result: RecordResult,
    ) -> None:
        """SKIP the task runs ``runs`` (not started: ``id, state, task_id``), in a few
        statements whatever their number: one that depends on another of them with
        ``dependency 'x' was skipped`` (the first such by id), the others with their
        ``reasons``; their ready rows go, their execution waits for them no more, and
        the for_each task runs of the items among them may end."""
        if not runs:
            return
        upstream: dict[int, int] = {}  # the first of its upstream skipped with it
        for d in self.db.all(UNSTARTED_DEPS, (ex_id,)):
            run_id, up = int(d["task_run_id"]), int(d["upstream_id"])
            if run_id in runs and up in runs and up < upstream.get(run_id, up + 1):
                upstream[run_id] = up
        changes = [
            Change(
                ex_id,
                run_id,
                State(r["state"]),
                State.SKIPPED,
                f"dependency '{runs[upstream[run_id]]['task_id']}' was skipped"
                if run_id in upstream
                else reasons[run_id],
            )
            for run_id, r in sorted(runs.items())
        ]
        moved: dict[int, int | None] = {}
        for at in range(0, len(changes), SKIPS_AT_ONCE):
            moved.update(self.transitions.transition(changes[at : at + SKIPS_AT_ONCE], now))
        if not moved:
            return
        self.db.execute(DELETE_SKIPPED_READY, (ex_id, ex_id))
        self.db.execute(q.EXECUTION_PENDING_DOWN, (len(moved), ex_id))
        items: dict[int, int] = {}
        for fork_of in moved.values():
            if fork_of is not None:
                items[fork_of] = items.get(fork_of, 0) + 1
        for fork_of, count in sorted(items.items()):
            self.item_ended(fork_of, ex_id, now, result, count)

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
        for r in self.db.all(q.UNSTARTED_TASK_RUNS, (ex_id,)):
            tr_id = r["id"]
            self.transitions.set_task_run_state(tr_id, ex_id, each, now, why, only_from=UNSTARTED)
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
