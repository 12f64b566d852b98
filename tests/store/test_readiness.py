"""Where a task run becomes ready (``ordo.store.readiness``): for_each items under their
``concurrency`` cap, also when a restart runs them again."""

from __future__ import annotations

import random

from test_contract import LATER, NOW, claim_all, fail, flow_of, ok, start, task

from ordo.model import Outcome, State
from ordo.store import Store

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
