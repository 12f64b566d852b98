"""Where a task run becomes ready (``ordo.store.readiness``): for_each items under their
``concurrency`` cap, also when a restart runs them again."""

from __future__ import annotations

import random

from test_contract import LATER, NOW, claim_all, fail, flow_of, ok, start, task

from ordo.model import DROPPED, Outcome, State
from ordo.store import Store
from ordo.store.records import Claim

RNG = random.Random(3)


def test_a_restart_keeps_a_for_each_under_its_concurrency(store: Store) -> None:
    ex_id = start(store, flow_of(task("each", for_each=[1, 2, 3, 4], concurrency=2)))
    (parent,) = claim_all(store, ex_id)
    store.record_outcomes([(parent, Outcome(State.SUCCESS, forks=[1, 2, 3, 4]))], NOW + 1, RNG)
    items = claim_all(store, ex_id)
    assert len(items) == 2  # two at a time
    store.record_outcomes([(i, fail()) for i in items], NOW + 2, RNG)  # the rest is skipped
    assert store.get_execution(ex_id).state is State.FAILED

    store.restart_execution(ex_id, LATER + 1)
    seen = 0
    while True:
        items = claim_all(store, ex_id, LATER + 2 + seen)
        if not items:
            break
        assert len(items) <= 2  # never more than the cap at once
        seen += len(items)
        store.record_outcomes([(i, ok()) for i in items], LATER + 2 + seen, RNG)
    assert seen == 4
    assert store.get_execution(ex_id).state is State.SUCCESS


def test_an_item_dropped_unlaunched_by_a_failure_runs_again_in_a_replay(store: Store) -> None:
    """A claim a worker dropped before launching it (its execution was failing) is an
    attempt that does not count: the item was skipped by the failure, so a replay runs
    it (and its for_each task run) again rather than copying it SKIPPED."""
    flow = flow_of(task("b"), task("c", "b"), task("each", for_each=[1, 2]))
    ex_id = start(store, flow)
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    forks = Outcome(State.SUCCESS, forks=[1, 2])
    store.record_outcomes([(claims["each"], forks)], NOW + 1, RNG)
    first, second = sorted(claim_all(store, ex_id), key=lambda c: c.task_run_id)
    store.record_outcomes([(claims["b"], fail()), (first, ok())], NOW + 2, RNG)
    dropped = Outcome(State.SKIPPED, reason=DROPPED, error="execution failed: task 'b' failed")
    store.record_outcomes([(second, dropped)], NOW + 3, RNG)
    assert store.get_execution(ex_id).state is State.FAILED
    item = next(r for r in store.task_runs(ex_id) if r.id == second.task_run_id)
    assert (item.state, item.skipped_unstarted) == (State.SKIPPED, True)

    replay = store.replay_execution(ex_id, "b", LATER)
    again = {c.task_id: c for c in claim_all(store, replay, LATER + 1)}
    assert set(again) == {"b", "each"}  # the for_each task run forks again
    store.record_outcomes([(again["b"], ok()), (again["each"], forks)], LATER + 2, RNG)
    for _ in range(3):
        store.record_outcomes(
            [(c, ok()) for c in claim_all(store, replay, LATER + 3)], LATER + 4, RNG
        )
    assert store.get_execution(replay).state is State.SUCCESS


def test_what_is_made_ready_after_a_claim_sent_with_the_successes_is_said(store: Store) -> None:
    """A worker on one execution claims with the statements that record its successes
    (``record_outcomes``' ``then``). On PostgreSQL that claim is sent before their
    answer is read, and an item that ends lets the next one start only afterwards (its
    for_each task run's cap is read then): the result says so, and the worker claims
    again. On SQLite all is recorded before the claim, which takes the next item."""
    ex_id = start(store, flow_of(task("each", for_each=[1, 2], concurrency=1)))
    (parent,) = claim_all(store, ex_id)
    store.record_outcomes([(parent, Outcome(State.SUCCESS, forks=[1, 2]))], NOW + 1, RNG)
    (first,) = claim_all(store, ex_id, LATER)
    claimed: list[Claim] = []

    def claim(so_far: object = None) -> None:
        claimed.extend(claim_all(store, ex_id, LATER + 1))

    with store.transaction():
        result = store.record_outcomes([(first, ok())], LATER + 1, RNG, claim)
        assert result.readied_after is (store.db.backend == "postgresql")
        if result.readied_after:
            assert claimed == []
            claim()
    (second,) = claimed
    assert second.task_id == "each" and second.task_run_id != first.task_run_id
    with store.transaction():
        result = store.record_outcomes([(second, ok())], LATER + 2, RNG, claim)
    assert not result.readied_after and claimed == [second]
    assert store.get_execution(ex_id).state is State.SUCCESS
