"""Recording attempt outcomes and everything they decide, in the transaction that
records them: a task run's end or its retry, the dependents made ready or skipped,
for_each items and the task run they belong to, run_if's SKIP and STOP, the end of an
execution (its state, reason and outputs) and the flow task waiting for it.

Every transition is a conditional ``UPDATE ... WHERE state = :expected`` allowed by the
one table in :mod:`ordo.model`, written to ``state_history`` in the same transaction.
Rows are locked in one order everywhere (an execution before its task runs, executions
by id), so workers recording at once do not deadlock.
"""

from __future__ import annotations

import json
import random
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ordo import retry, templating
from ordo.errors import NotFound
from ordo.model import CheckResult, Flow, Outcome, State
from ordo.store import queries as q
from ordo.store.history import routine_end
from ordo.store.readiness import Readiness
from ordo.store.records import Claim, RecordResult
from ordo.store.transitions import Change


def dumps(value: Any) -> str:
    """JSON as the store keeps it: compact, anything unknown as text."""
    return json.dumps(value, separators=(",", ":"), default=str)


class Outcomes(Readiness):
    """The store's deciding half; :class:`~ordo.store.sql.SqlStore` adds the rest."""

    def __init__(self) -> None:
        super().__init__()
        self._rng = random.Random()  # jitter of retries decided while recording

    @abstractmethod
    def _admit_queued(self, flow: Flow, now: float, result: RecordResult) -> None:
        """An execution of ``flow`` ended: start what waits for its concurrency limit
        (:class:`~ordo.store.limits.Limits`)."""

    def _record_successes(
        self, done: Sequence[tuple[Claim, Outcome]], now: float, result: RecordResult
    ) -> None:
        """Record successful attempts in a few statements whatever their number: the
        attempts, their outputs and metrics, the task runs, their history, the pending
        counts, and the dependents they make ready (what :meth:`_record_one` does for
        any other outcome)."""
        values = [(c.attempt_id, o.exit_code, o.cpu_seconds, o.peak_rss_kb) for c, o in done]
        changes = [
            Change(c.execution_id, c.task_run_id, State.RUNNING, State.SUCCESS) for c, _ in done
        ]
        recorded, succeeded = self._succeeded(values, changes, now)
        result.lost.extend(c.attempt_id for c, _ in done if c.attempt_id not in recorded)
        kept = [(c, o) for c, o in done if c.attempt_id in recorded]
        if not kept:
            return
        ids_of = [(c.attempt_id, c.task_run_id, c.execution_id) for c, _ in kept]
        self._executemany(
            q.INSERT_OUTPUT,
            [
                (*ids, k, dumps(v))
                for ids, (_, o) in zip(ids_of, kept, strict=True)
                for k, v in o.outputs.items()
            ],
        )
        self._executemany(
            q.INSERT_METRIC,
            [
                (*ids, m.name, m.kind, m.value, dumps(dict(m.tags)), now)
                for ids, (_, o) in zip(ids_of, kept, strict=True)
                for m in o.metrics
            ],
        )
        self._executemany(
            q.INSERT_CHECK,
            [
                _check_row(ids, r)
                for ids, (_, o) in zip(ids_of, kept, strict=True)
                for r in o.checks
            ],
        )
        per_execution: dict[int, int] = {}
        upstream: list[int] = []
        items: list[tuple[int, int]] = []
        for c in changes:
            if c.run_id is None or c.run_id not in succeeded:
                continue
            tr_id, ex_id, fork_of = c.run_id, c.execution_id, succeeded[c.run_id]
            if fork_of is not None:
                items.append((ex_id, fork_of))
            else:
                per_execution[ex_id] = per_execution.get(ex_id, 0) + 1
                upstream.append(tr_id)
        pending: dict[int, int] = {}
        for ex_id in sorted(per_execution):  # the execution first, as in _finish_task_run
            row = self._execute(q.EXECUTION_PENDING_DOWN, (per_execution[ex_id], ex_id))
            pending[ex_id] = int(row.fetchone()[0])
        self._release_many(upstream, now)
        for ex_id, count in pending.items():
            self._maybe_end(ex_id, now, result, count)
        for ex_id, fork_of in sorted(items):  # items: their for_each task run may end too
            left = self._pending_down(ex_id)
            self._item_ended(fork_of, ex_id, now, result)
            if left <= 0:  # (the for_each task run ending has ended the execution itself)
                self._maybe_end(ex_id, now, result)

    def _record_one(
        self, claim: Claim, outcome: Outcome, now: float, rng: random.Random, result: RecordResult
    ) -> None:
        if outcome.forks is not None:
            self._fork(claim, outcome.forks, now, result)
            return
        state = outcome.state if outcome.state in RECORDED else State.FAILED
        cur = self._execute(q.FINISH_ATTEMPT, finish_params(claim.attempt_id, state, outcome, now))
        if cur.rowcount == 0:
            result.lost.append(claim.attempt_id)
            return
        ids = (claim.attempt_id, claim.task_run_id, claim.execution_id)
        if outcome.outputs:
            self._executemany(
                q.INSERT_OUTPUT, [(*ids, k, dumps(v)) for k, v in outcome.outputs.items()]
            )
        if outcome.metrics:
            self._executemany(
                q.INSERT_METRIC,
                [
                    (*ids, m.name, m.kind, m.value, dumps(dict(m.tags)), now)
                    for m in outcome.metrics
                ],
            )
        if outcome.checks:
            self._executemany(q.INSERT_CHECK, [_check_row(ids, r) for r in outcome.checks])
        if state in (State.SUCCESS, State.WARNING):
            why = outcome.error if state is State.WARNING else None
            routine = routine_end(state, outcome.reason, outcome.error)  # the attempt says it
            self._finish_task_run(
                claim.task_run_id, claim.execution_id, state, why, now, result, routine=routine
            )
            return
        if state is State.SKIPPED:
            self._run_if_skipped(claim, outcome, now, result)
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
        self._ready_again(claim.task_run_id, now + decision.delay)
        return True

    def _finish_task_run(
        self,
        tr_id: int,
        ex_id: int,
        state: State,
        reason: str | None,
        now: float,
        result: RecordResult,
        *,
        routine: bool = False,
    ) -> None:
        """End a task run, then propagate: dependents become ready, or are skipped.
        ``routine``: its attempt ended SUCCESS and holds the move's history."""
        row = self._set_task_run_state(tr_id, ex_id, state, now, reason, routine=routine)
        if row is None:
            return
        _, task_id, allow_failure, fork_of = row
        pending: int | None = self._pending_down(ex_id)
        if fork_of is not None:  # an item: its for_each task run may end with it
            if state is State.FAILED and not allow_failure and not self._continue_on_error(ex_id):
                self._skip_unstarted(ex_id, f"execution failed: task '{task_id}' failed", now)
            self._item_ended(fork_of, ex_id, now, result)
            self._maybe_end(ex_id, now, result)
            return
        if state in _RELEASING or (state is State.FAILED and allow_failure):
            self._release_dependents(tr_id, now)
        else:
            self._skip_dependents(tr_id, ex_id, task_id, state, now)
            if state is State.FAILED and not self._continue_on_error(ex_id):
                self._skip_unstarted(ex_id, f"execution failed: task '{task_id}' failed", now)
            pending = None  # skipping changed it (read it again)
        self._maybe_end(ex_id, now, result, pending)

    def _run_if_skipped(
        self, claim: Claim, outcome: Outcome, now: float, result: RecordResult
    ) -> None:
        """run_if answered SKIP (the task run ends SKIPPED, its dependents run) or STOP
        (every task run not started ends SKIPPED too; the execution ends SUCCESS)."""
        why = outcome.error or "run_if answered SKIP"
        if outcome.reason == "stop":
            self._execute(q.SET_STOPPED, (why, claim.execution_id))
            self._skip_unstarted(claim.execution_id, why, now, result)
        self._finish_task_run(
            claim.task_run_id, claim.execution_id, State.SKIPPED, why, now, result
        )

    def _fork(self, claim: Claim, items: Sequence[Any], now: float, result: RecordResult) -> None:
        """A for_each task run expands: its attempt ends SUCCESS, one item task run per
        value is created (the first ``concurrency`` of them ready) and the task run
        itself stays RUNNING until every item has ended."""
        cur = self._execute(
            q.FINISH_ATTEMPT,
            (State.SUCCESS.value, now, None, "forked", None, None, None, claim.attempt_id),
        )
        if cur.rowcount == 0:
            result.lost.append(claim.attempt_id)
            return
        ex_id, tr_id = claim.execution_id, claim.task_run_id
        if not items:
            self._finish_task_run(tr_id, ex_id, State.SUCCESS, None, now, result)
            return
        task = self.flow_of(claim.revision_id).task(claim.task_id)
        count = len(items)
        first = min(count, task.concurrency or count)
        queue = self.queue_of(ex_id, task)
        self._executemany(
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
        self._execute(q.FORKED, (count, first, tr_id))
        self._execute(q.EXECUTION_PENDING_DOWN, (-count, ex_id))
        self._release_items(tr_id, first, now)

    def _item_ended(self, fork_of: int, ex_id: int, now: float, result: RecordResult) -> None:
        """One item fewer: start the next one held back by ``concurrency``, or end the
        for_each task run once none is left."""
        row = self._execute(q.ITEM_ENDED, (fork_of,)).fetchone()
        if int(row[0]) > 0:
            self._release_next_item(fork_of, now)
            return
        state, why = self._items_verdict(fork_of)
        if state is State.KILLED:
            self._set_task_run_state(fork_of, ex_id, State.KILLING, now, why)
        self._finish_task_run(fork_of, ex_id, state, why, now, result)

    def _items_verdict(self, fork_of: int) -> tuple[State, str | None]:
        """How a for_each task run ends, from its items' states."""
        counts: dict[tuple[str, int], int] = {}
        for state, allowed, n, _ in self._all(q.ITEM_STATES, (fork_of,)):
            counts[(state, int(allowed))] = int(n)
        for state, allowed in ((State.FAILED, 0), (State.KILLED, 0), (State.KILLED, 1)):
            if counts.get((state.value, allowed)):
                first = self._one(q.FIRST_ITEM_FAILURE, (fork_of, state.value))
                assert first is not None
                verb = "failed" if state is State.FAILED else "was killed"
                return state, f"item {first[0]} {verb}: {first[1]}"
        if counts.get((State.FAILED.value, 1)):
            first = self._one(q.FIRST_ITEM_FAILURE, (fork_of, State.FAILED.value))
            assert first is not None
            return State.FAILED, f"item {first[0]} failed: {first[1]}"
        if any(s == State.WARNING.value for s, _ in counts):
            return State.WARNING, "an item ended with a warning"
        return State.SUCCESS, None

    def failing_among(self, execution_ids: Iterable[int]) -> dict[int, str]:
        """Which of these running executions no new attempt should start for, each with
        why: a task failed (not allowed to, and no ``continue_on_error``) or the
        execution is being stopped (its timeout passed)."""
        ids = sorted(set(execution_ids))
        if not ids:
            return {}
        found = {}
        for ex_id, reason, revision_id, cont, failed in self._all(
            q.FAILING_AMONG.format(q.marks(ids)), ids
        ):
            if reason:
                found[int(ex_id)] = str(reason)
            elif failed is not None:
                keep_going = self.flow_of(revision_id).continue_on_error if cont is None else cont
                if not keep_going:
                    found[int(ex_id)] = f"execution failed: task '{failed}' failed"
        return found

    def _continue_on_error(self, ex_id: int) -> bool:
        """The execution's own setting (``ordo run --continue-on-error``), else its flow's."""
        row = self._one(q.EXECUTION_REVISION, (ex_id,))
        assert row is not None
        if row[1] is not None:
            return bool(row[1])
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
            self._end_execution(ex_id, now, result)

    def _end_execution(self, ex_id: int, now: float, result: RecordResult) -> State | None:
        """End an execution whose task runs have all ended: its final state and reason
        from theirs, its outputs rendered, and a flow task waiting for it told."""
        counts = {State(s): n for s, n in self._all(q.TASK_RUN_COUNTS, (ex_id,))}
        info = self._one(q.EXECUTION_END_INFO, (ex_id,))
        assert info is not None
        reason, stopped, revision_id, _ = info
        current = self._execution_state(ex_id)
        if current.terminal:  # ended already (by another path of this transaction)
            return None
        if current is State.KILLING:
            final = State.KILLED
        elif reason:
            final = State.FAILED
        elif self._has_hard_failure(ex_id):
            final, reason = State.FAILED, self._first_failure(ex_id)
        elif counts.get(State.KILLED):
            final, reason = State.FAILED, "a task was killed"
        elif counts.get(State.FAILED):
            final, reason = State.WARNING, "a task allowed to fail failed"
        elif counts.get(State.WARNING):
            final, reason = State.WARNING, "a task ended with a warning"
        else:
            final, reason = State.SUCCESS, stopped
        outputs = None
        if stopped and final is State.SUCCESS:
            # stopped early (run_if STOP): what its outputs cannot render yet is left out
            outputs, left_out = self._stopped_outputs(ex_id, self.flow_of(revision_id))
            if left_out:
                reason = f"{stopped}; outputs left out: {'; '.join(left_out)}"
        elif final in (State.SUCCESS, State.WARNING):
            try:
                outputs = self._execution_outputs(ex_id, self.flow_of(revision_id))
            except templating.TemplateError as exc:
                final, reason = State.FAILED, f"flow outputs: {exc}"
        if current is State.CREATED and final in (State.SUCCESS, State.WARNING):
            # nothing was left to claim (all skipped or reused): it ran, in no time
            self._set_execution_state(ex_id, State.RUNNING, now, None)
        if not self._set_execution_state(ex_id, final, now, reason):
            return None
        shown = None if outputs is None else dumps(outputs)
        self._execute(q.EXECUTION_ENDED, (now, reason, shown, ex_id))
        result.ended_executions[ex_id] = final
        self._child_ended(ex_id, final, reason, outputs, now, result)
        self._admit_queued(self.flow_of(revision_id), now, result)
        return final

    def _execution_outputs(self, ex_id: int, flow: Flow) -> dict[str, Any] | None:
        """The flow's ``outputs:`` rendered against the ended execution."""
        if not flow.outputs:
            return None
        return dict(templating.render(dict(flow.outputs), self._outputs_context(ex_id, flow)))

    def _stopped_outputs(self, ex_id: int, flow: Flow) -> tuple[dict[str, Any] | None, list[str]]:
        """The flow's ``outputs:`` of an execution stopped early: each one that renders,
        and, named with why, those that do not (the tasks they need were skipped)."""
        if not flow.outputs:
            return None, []
        try:
            context = self._outputs_context(ex_id, flow)
        except templating.TemplateError as exc:
            return {}, [f"{', '.join(flow.outputs)} ({exc})"]
        rendered: dict[str, Any] = {}
        left_out: list[str] = []
        for key, value in flow.outputs.items():
            try:
                rendered[key] = templating.render(value, context)
            except templating.TemplateError as exc:
                left_out.append(f"{key} ({exc})")
        return rendered, left_out

    def _outputs_context(self, ex_id: int, flow: Flow) -> dict[str, Any]:
        execution = self.get_execution(ex_id)
        needed = templating.referenced_tasks(
            flow.outputs, flow.vars, every=[t.id for t in flow.tasks]
        )
        return dict(
            templating.make_context(
                execution.inputs,
                self.outputs(ex_id, needed, flow=flow),
                flow.vars,
                execution.template_info(),
                {},
            )
        )

    def _child_ended(
        self,
        ex_id: int,
        final: State,
        reason: str | None,
        outputs: Mapping[str, Any] | None,
        now: float,
        result: RecordResult,
    ) -> None:
        """A flow task waits for this execution: its attempt ends as the child did."""
        info = self._one(q.EXECUTION_END_INFO, (ex_id,))
        if info is None or info[3] is None:
            return
        row = self._one(q.ATTEMPT_CLAIM, (info[3],))
        if row is None:
            return
        claim = Claim(*row)
        execution = self.get_execution(ex_id)
        what = f"child execution {ex_id} ({execution.flow_key})"
        outcome = _child_outcome(what, ex_id, final, reason, outputs)
        self._record_one(claim, outcome, now, self._rng, result)
        result.nested.append((claim, outcome, claim.task_run_id in result.retries))

    def _has_hard_failure(self, ex_id: int) -> bool:
        return self._one(q.HARD_FAILURE, (ex_id,)) is not None

    def _first_failure(self, ex_id: int) -> str:
        row = self._one(q.FIRST_FAILURE, (ex_id,))
        if row is None:
            return "a task failed"
        # errors found before running (templates, run_if) already name their task
        error = str(row[1]).removeprefix(f"task '{row[0]}': ")
        return f"task '{row[0]}' failed: {error}"

    def _execution_state(self, ex_id: int) -> State:
        row = self._one(q.EXECUTION_STATE, (ex_id,))
        if row is None:
            raise NotFound(f"execution {ex_id} not found")
        return State(row[0])


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
_RELEASING = (State.SUCCESS, State.WARNING, State.SKIPPED)


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


def _child_outcome(
    what: str,
    ex_id: int,
    final: State,
    reason: str | None,
    outputs: Mapping[str, Any] | None,
) -> Outcome:
    """How a flow task ends when the child execution it waits for ended ``final``."""
    values = {"execution_id": ex_id, **(outputs or {})}
    if final is State.SUCCESS:
        return Outcome(State.SUCCESS, outputs=values)
    if final is State.WARNING:
        return Outcome(State.WARNING, error=f"{what} ended WARNING: {reason}", outputs=values)
    if final is State.SKIPPED:
        return Outcome(State.SKIPPED, reason="skip", error=f"{what} was skipped: {reason}")
    if final is State.KILLED:
        return Outcome(State.KILLED, reason="killed", error=f"{what} was killed: {reason}")
    return Outcome(State.FAILED, reason="child", error=f"{what} failed: {reason}", outputs=values)
