"""An execution's queue (``create_execution(queue=)``): every task run of it, also those
made later (dependents, replays), waits on that queue instead of its task's."""

from __future__ import annotations

import random

from test_contract import NOW, flow_of, ok, task

from ordo.model import State
from ordo.store import Store


def test_an_execution_queue_moves_every_task_run_there(store: Store) -> None:
    flow = flow_of(task("a"), task("b", "a", queue="io"))
    rev = store.add_revision(flow, "source", "hash-queue", NOW)
    ex_id = store.create_execution(rev.id, {}, {}, NOW, queue="gpu")
    assert store.get_execution(ex_id).queue == "gpu"
    assert store.claim("w1", 10, NOW + 1, 30, queues=["default", "io"]) == []
    [a] = store.claim("w1", 10, NOW + 1, 30, queues=["gpu"])
    store.record_outcomes([(a, ok())], NOW + 2, random.Random(1))
    assert store.claim("w1", 10, NOW + 3, 30, queues=["io"]) == []
    [b] = store.claim("w1", 10, NOW + 3, 30, queues=["gpu"])
    assert b.task_id == "b"
    store.record_outcomes([(b, ok())], NOW + 4, random.Random(1))
    assert store.get_execution(ex_id).state is State.SUCCESS
    again = store.replay_execution(ex_id, "b", NOW + 5)
    assert store.get_execution(again).queue == "gpu"
    assert [c.task_id for c in store.claim("w1", 10, NOW + 6, 30, queues=["gpu"])] == ["b"]


def test_without_one_each_task_keeps_its_own_queue(store: Store) -> None:
    flow = flow_of(task("a", queue="io"))
    rev = store.add_revision(flow, "source", "hash-own-queue", NOW)
    ex_id = store.create_execution(rev.id, {}, {}, NOW)
    assert store.get_execution(ex_id).queue is None
    assert [c.task_id for c in store.claim("w1", 10, NOW + 1, 30, queues=["io"])] == ["a"]
