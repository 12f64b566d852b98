"""The engine's policy: what follows from what happened, decided from plain facts.

Every function here is pure: it reads the facts it is given (and asks for more only
through the callables among them) and answers; the store asks it inside the
transaction that records what happened and writes what it answers
(:class:`ordo.store.ports.Decisions` is the port, this module its implementation).
Nothing here touches a database, a clock or a process.

- A failed attempt tries again (:func:`retry_delay`), or its task run ends; nothing is
  tried again once the execution is failing.
- A task run that ended well releases its dependents (:func:`releases`); one that
  failed, not allowed to, stops its execution unless it continues on error
  (:func:`fails_execution`).
- A for_each task run releases ``concurrency`` items at once (:func:`items_at_once`)
  and ends as its items say (:func:`items_verdict`).
- An execution ends in the state :func:`end_state` gives, the one rule used when its
  last task run ends, when recovery ends it and when a mark settles it
  (:func:`settle`); its ``outputs:`` are rendered by :func:`flow_outputs`.
- A flow's concurrency limit admits, queues, cancels or refuses an execution
  (:func:`admission`); a flow task ends as its child execution did
  (:func:`child_outcome`).
- A restart runs again what :func:`to_run_again` names (each waiting for
  :func:`waits_for`), a replay copies what :func:`to_reuse` names; a mark is refused or
  allowed by :func:`mark_refusal` and reopens what :func:`reopened` names.
- A claim dropped because its execution is failing ends as :func:`dropped` says; a task
  run skipped because something failed is told apart by :func:`by_failure`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from ordo import retry
from ordo.model import (
    MARKS,
    NOT_RETRIED,
    ON_REQUEST,
    SETTLES,
    Flow,
    FlowConcurrency,
    Outcome,
    State,
    Task,
)
from ordo.store.ports import EndFacts, Ending, OutputFacts, RetryFacts
from ordo.store.records import TaskRunRow

#: Ended well: a task run in one of these states releases its dependents.
RELEASING = frozenset({State.SUCCESS, State.WARNING, State.SKIPPED})
#: What a restart runs again (besides ``--from``): ended badly.
AGAIN = frozenset({State.FAILED, State.KILLED})
#: The states a restart starts from.
RESTARTABLE = (State.FAILED, State.KILLED, State.WARNING)


# -- a task run ------------------------------------------------------------------------
def dropped(earlier_attempts: int, why: str) -> Ending:
    """How a task run ends whose claim was dropped before its launch, its execution
    failing (``why``): once a task has failed, nothing new of it starts. It ends
    SKIPPED, never having run, or FAILED when the claim was a retry (``earlier_attempts``
    counted since its last restart): its last attempt failed, and it is not tried again.
    A restart runs either again."""
    if earlier_attempts > 0:
        return Ending(State.FAILED, f"{NOT_RETRIED}{why}")
    return Ending(State.SKIPPED, why)


#: How often a flow function whose worker was lost runs again beyond its retries.
LOST_AGAIN = 3


def retry_delay(facts: RetryFacts, rng: random.Random) -> float | None:
    """Seconds until a failed attempt's task run tries again, or None when it does not
    (no attempts left, a reason never retried, its execution stopping: see
    :func:`ordo.retry.decide`). A flow function whose worker was lost runs again at once
    (up to :data:`LOST_AGAIN` times more than its retries): its completed steps are not
    done again, so running it again only finishes it."""
    if not facts.execution_going:
        return None
    lost = facts.durable and facts.reason == "lost"
    if lost and facts.attempt_number < facts.policy.attempts + LOST_AGAIN:
        return 0.0
    decision = retry.decide(
        facts.policy,
        attempt_number=facts.attempt_number,
        reason=facts.reason,
        exit_code=facts.exit_code,
        elapsed=facts.elapsed,
        rng=rng,
    )
    return decision.delay if decision.retry else None


def releases(state: State, allow_failure: bool, *, stop: bool = False) -> bool:
    """Whether a task run that ended ``state`` lets its dependents run (else they are
    skipped): it ended well (SKIP included), or failed and was allowed to; never when
    it answered STOP (``stop``: nothing downstream of it runs)."""
    if stop:
        return False
    return state in RELEASING or (state is State.FAILED and allow_failure)


def fails_execution(state: State, allow_failure: bool, keep_going: Callable[[], bool]) -> bool:
    """Whether a task run that ended ``state`` fails its execution at once: every task
    run of it not started is skipped and no new attempt starts. Not when it was allowed
    to fail, nor when the execution continues on error (``keep_going``, asked last)."""
    return state is State.FAILED and not allow_failure and not keep_going()


# -- for_each --------------------------------------------------------------------------
def items_at_once(count: int, concurrency: int | None) -> int:
    """How many of a for_each task run's ``count`` items may run at once."""
    return min(count, concurrency or count)


def items_verdict(
    counts: Mapping[tuple[State, bool], int], first: Callable[[State], tuple[int, str]]
) -> Ending:
    """How a for_each task run ends, from its items' states (``counts`` by state and
    allow_failure); ``first(state)`` gives the first item in ``state`` and its reason."""
    for state, allowed in ((State.FAILED, False), (State.KILLED, False), (State.KILLED, True)):
        if counts.get((state, allowed)):
            index, why = first(state)
            verb = "failed" if state is State.FAILED else "was killed"
            return Ending(state, f"item {index} {verb}: {why}")
    if counts.get((State.FAILED, True)):
        index, why = first(State.FAILED)
        return Ending(State.FAILED, f"item {index} failed: {why}")
    if any(state is State.WARNING for state, _ in counts):
        return Ending(State.WARNING, "an item ended with a warning")
    return Ending(State.SUCCESS)


# -- the end of an execution -----------------------------------------------------------
def end_state(facts: EndFacts) -> Ending:
    """The state an execution whose task runs have all ended takes, and why. The one
    rule, wherever an execution ends or is settled again."""

    def count(test: Callable[[State, bool, bool], bool]) -> int:
        return sum(
            g.count
            for g in facts.runs
            if test(g.state, g.allow_failure, by_failure(g.state, g.unstarted, g.on_request))
        )

    killed = count(lambda s, _a, _b: s is State.KILLED)
    # stopped by run_if STOP, the task runs it skipped are no failure
    skipped = 0 if facts.stopped else count(lambda _s, _a, b: b)
    if facts.current is State.KILLING or (facts.current is State.KILLED and (killed or skipped)):
        return Ending(State.KILLED, facts.failing)
    if facts.failing:
        return Ending(State.FAILED, facts.failing)
    if count(lambda s, a, _b: s is State.FAILED and not a):
        return Ending(State.FAILED, facts.first_failure())
    if killed:
        return Ending(State.FAILED, "a task was killed")
    if skipped:
        return Ending(State.FAILED, "a task was skipped because another failed")
    if count(lambda s, a, _b: s is State.FAILED and a):
        return Ending(State.WARNING, "a task allowed to fail failed")
    if count(lambda s, _a, _b: s is State.WARNING):
        return Ending(State.WARNING, "a task ended with a warning")
    return Ending(State.SUCCESS, facts.stopped)


def settle(facts: EndFacts, why: str) -> Ending | None:
    """An ended execution after a mark changed one of its task runs: the state
    :func:`end_state` now gives, when a mark may take it there (see
    :data:`ordo.model.SETTLES`), with the mark's ``why``; None to leave it as it is."""
    new = end_state(facts).state
    if new is facts.current or facts.current not in SETTLES.get(new, frozenset()):
        return None
    return Ending(new, None if new is State.SUCCESS else why)


def flow_outputs(
    flow: Flow, ending: Ending, stopped: str | None, facts: OutputFacts
) -> tuple[Ending, dict[str, Any] | None]:
    """The flow's ``outputs:`` rendered for an execution ending as ``ending``, and the
    ending they leave: an execution that ran to its end fails when they cannot be
    rendered; one stopped early (run_if STOP) leaves out, and names, those that cannot
    (the tasks they need were skipped)."""
    if ending.state not in (State.SUCCESS, State.WARNING):
        return ending, None
    if (flow.group is not None or flow.python is not None) and not flow.outputs:
        return ending, group_outputs(flow, facts)  # a chain's last task's, a @flow's return
    if not flow.outputs:
        return ending, None
    from ordo import templating  # (when needed: opening a store loads this module)

    early = stopped is not None and ending.state is State.SUCCESS
    try:
        needed = templating.referenced_tasks(
            flow.outputs, flow.vars, every=[t.id for t in flow.tasks]
        )
        context = templating.make_context(
            facts.inputs, facts.outputs_of(needed), flow.vars, facts.info, {}
        )
    except templating.TemplateError as exc:
        if early:
            return _left_out(ending, [f"{', '.join(flow.outputs)} ({exc})"]), {}
        return Ending(State.FAILED, f"flow outputs: {exc}"), None
    if not early:
        try:
            return ending, dict(templating.render(dict(flow.outputs), context))
        except templating.TemplateError as exc:
            return Ending(State.FAILED, f"flow outputs: {exc}"), None
    rendered: dict[str, Any] = {}
    left_out: list[str] = []
    for key, value in flow.outputs.items():
        try:
            rendered[key] = templating.render(value, context)
        except templating.TemplateError as exc:
            left_out.append(f"{key} ({exc})")
    return _left_out(ending, left_out), rendered


def child_results(flow: Flow, facts: OutputFacts) -> dict[str, Any]:
    """What a flow task exposes of the child execution it waited for, besides the
    child's ``outputs:`` (Metalus's results by path): every task's outputs under
    ``tasks`` and the child's vars, rendered at its end, under ``vars`` (a var that
    cannot render is left out)."""
    tasks = dict(facts.outputs_of([t.id for t in flow.tasks]))
    values: dict[str, Any] = {}
    if flow.vars:
        from ordo import templating  # (when needed)

        seen = templating.make_context(facts.inputs, tasks, flow.vars, facts.info, {})["vars"]
        for name in flow.vars:
            try:
                values[name] = seen[name]
            except templating.TemplateError:
                continue  # it reads what the child never made: not there
    return {"tasks": tasks, "vars": values}


def group_outputs(flow: Flow, facts: OutputFacts) -> dict[str, Any]:
    """What one value of a task group gives the task after the group: the outputs of
    its chain's last task, or, when the chain ends in several, theirs by task id (a
    ``@flow``'s: the dict its function returned)."""
    needed = {d for t in flow.tasks for d in t.depends_on}
    last = [t.id for t in flow.tasks if t.id not in needed]
    found = facts.outputs_of(last)
    if len(last) == 1:
        return dict(found.get(last[0]) or {})
    return {t: found.get(t) for t in last}


def _left_out(ending: Ending, left_out: Sequence[str]) -> Ending:
    if not left_out:
        return ending
    return Ending(ending.state, f"{ending.reason}; outputs left out: {'; '.join(left_out)}")


# -- limits and children ---------------------------------------------------------------
def admission(limit: FlowConcurrency, running: int, key: str) -> Ending | None:
    """None when an execution of flow ``key`` may run now, ``running`` others running
    under its ``limit``; else what it becomes (QUEUED; KILLED for ``cancel``; FAILED
    for ``fail``) and why."""
    if running < limit.limit:
        return None
    if limit.behavior == "queue":
        return Ending(State.QUEUED, f"waiting for {key}: {running} of {limit.limit} running")
    verb = "cancelled" if limit.behavior == "cancel" else "refused"
    why = f"{verb}: {key} already has {running} of {limit.limit} running"
    return Ending(State.KILLED if limit.behavior == "cancel" else State.FAILED, why)


def child_outcome(
    what: str,
    ex_id: int,
    final: State,
    reason: str | None,
    outputs: Mapping[str, Any] | None,
    stopped: bool = False,
) -> Outcome:
    """How a flow task ends when the child execution it waits for ended ``final``: as
    the child did; a child SKIPPED by its flow's STOP (``stopped``) stops the flow task
    too (nothing downstream of it runs), one skipped by SKIP lets its dependents run."""
    values = {"execution_id": ex_id, **(outputs or {})}
    if final is State.SUCCESS:
        return Outcome(State.SUCCESS, outputs=values)
    if final is State.WARNING:
        return Outcome(State.WARNING, error=f"{what} ended WARNING: {reason}", outputs=values)
    if final is State.SKIPPED:
        answer = "stop" if stopped else "skip"
        verb = "stopped" if stopped else "was skipped"
        return Outcome(State.SKIPPED, reason=answer, error=f"{what} {verb}: {reason}")
    if final is State.KILLED:
        return Outcome(State.KILLED, reason="killed", error=f"{what} was killed: {reason}")
    return Outcome(State.FAILED, reason="child", error=f"{what} failed: {reason}", outputs=values)


# -- restart and mark ------------------------------------------------------------------
def restart_refusal(ex_id: int, state: State) -> str | None:
    """Why execution ``ex_id`` in ``state`` cannot be restarted, or None."""
    if state in RESTARTABLE:
        return None
    return f"execution {ex_id} is {state.value}; restart needs FAILED, KILLED or WARNING"


def to_reuse(
    old: Flow, new: Flow, runs: Sequence[TaskRunRow], from_task: str | None
) -> dict[str, TaskRunRow]:
    """What a replay of an execution of ``old`` (its task runs ``runs``) on ``new``
    copies instead of running, by task: the top-level task runs it would not run again
    (:func:`to_run_again`). On another revision, only the tasks ``new`` has with the
    same dependencies, everything upstream of them reused too."""
    again = to_run_again(old, runs, from_task)
    reused = {
        r.task_id: r
        for r in runs
        if r.fork_of is None and r.parent_run_id is None and r.id not in again
    }
    if new is old:
        return reused
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


def waits_for(task: Task, again: Collection[str]) -> int:
    """How many dependencies a task run restarted waits for: those running again."""
    return sum(1 for d in task.depends_on if d in again)


def to_run_again(flow: Flow, runs: Sequence[TaskRunRow], from_task: str | None) -> set[int]:
    """The task runs a restart (or a replay) runs again: failed, killed, skipped
    because of a failure, never started, their for_each task runs, and ``from_task``
    with everything downstream of it. A for_each task run running again without items
    re-forks (its old items stay as they ended); with items to run again, only those
    run."""
    again: set[int] = set()
    for run in runs:
        if run.parent_run_id is not None:
            continue  # a handler's calls are part of the handler's attempt
        if run.state in AGAIN or skipped_by_failure(run) or run.state is State.CREATED:
            again.add(run.id)
    if from_task is not None:
        downstream = _downstream(flow, from_task)
        again |= {r.id for r in runs if r.task_id in downstream and r.parent_run_id is None}
    by_id = {r.id: r for r in runs}
    for tr_id in list(again):  # an item runs again: so does its for_each task run
        parent = by_id[tr_id].fork_of
        if parent is not None:
            again.add(parent)
    return again


def mark_refusal(ex_id: int, run: TaskRunRow, new: State) -> str | None:
    """Why task run ``run`` of execution ``ex_id`` cannot be marked ``new``, or None."""
    if new not in MARKS:
        return f"a task run can be marked {' or '.join(s.value for s in MARKS)}"
    if not run.state.terminal:
        return (
            f"task {run.label} of execution {ex_id} is {run.state.value}; only an "
            "ended task run can be marked (kill the execution first, or wait)"
        )
    if run.state not in MARKS[new]:
        return f"task {run.label} of execution {ex_id} is {run.state.value} already"
    return None


def reopened(
    flow: Flow, runs: Sequence[TaskRunRow], marked: TaskRunRow
) -> list[tuple[TaskRunRow, int]]:
    """A task run of a RUNNING execution marked SUCCESS: the task runs skipped because
    of a failure run after all, each with how many of its dependencies are not done."""
    settled = {r.task_id for r in runs if r.fork_of is None and _done(r)} | {marked.task_id}
    again = [
        r
        for r in runs
        if r.fork_of is None
        and r.parent_run_id is None
        and r.id != marked.id
        and skipped_by_failure(r)
    ]
    return [
        (run, sum(1 for d in flow.task(run.task_id).depends_on if d not in settled))
        for run in again
    ]


def skipped_by_failure(run: TaskRunRow) -> bool:
    """Never started because something failed (:func:`by_failure`)."""
    return by_failure(run.state, run.skipped_unstarted, run.reason == ON_REQUEST)


def by_failure(state: State, unstarted: bool, on_request: bool) -> bool:
    """A task run SKIPPED without running (``unstarted``: no attempt of it counts, see
    :data:`~ordo.store.queries.COUNTED`) because
    something failed: not on request (``on_request``: its reason is
    :data:`~ordo.model.ON_REQUEST`), not by its run_if (an attempt answered that)."""
    return state is State.SKIPPED and unstarted and not on_request


def _done(run: TaskRunRow) -> bool:
    return run.state in (State.SUCCESS, State.WARNING) or (
        run.state is State.SKIPPED and not skipped_by_failure(run)
    )


def _downstream(flow: Flow, task_id: str) -> set[str]:
    """``task_id`` and every task depending on it, directly or not."""
    found = {task_id}
    changed = True
    while changed:
        changed = False
        for task in flow.tasks:
            if task.id not in found and found.intersection(task.depends_on):
                found.add(task.id)
                changed = True
    return found
