"""An execution's run options (``create_execution(options=)``: retry, timeout, notify of
that run only) and scope (the namespaces its starter's token was limited to), on both
backends: kept, applied to retries and to its deadline, copied by a replay."""

from __future__ import annotations

import random

from test_contract import NOW, fail, flow_of, ok, task

from ordo.model import NotifyRule, RetryPolicy, RunOptions, State
from ordo.store import Store


def test_run_options_retry_and_time_out_that_execution_only(store: Store) -> None:
    flow = flow_of(task("a"), timeout=60.0)
    rev = store.add_revision(flow, "source", "hash-options", NOW)
    rule = NotifyRule(on=("failed",), webhook="http://127.0.0.1:9/h")
    options = RunOptions(retry={"attempts": 2, "delay": 5.0}, timeout=600.0, notify=(rule,))
    ex_id = store.create_execution(rev.id, {}, {}, NOW, options=options, scope=["ops", "etl"])
    plain = store.create_execution(rev.id, {}, {}, NOW)
    execution = store.get_execution(ex_id)
    assert RunOptions.from_dict(execution.options) == options
    assert execution.scope == ("etl", "ops")
    assert execution.deadline == NOW + 600.0
    assert store.get_execution(plain).deadline == NOW + 60.0
    assert store.get_execution(plain).options is None and store.get_execution(plain).scope is None

    claims = {c.execution_id: c for c in store.claim("w1", 10, NOW + 1, 30)}
    assert store.task_retry(claims[ex_id]) == RetryPolicy(attempts=2, delay=5.0)
    assert store.task_retry(claims[plain]) == RetryPolicy()
    result = store.record_outcomes(
        [(claims[ex_id], fail()), (claims[plain], fail())], NOW + 2, random.Random(1)
    )
    assert result.retries == [claims[ex_id].task_run_id]  # a retry for this run only
    assert store.get_execution(plain).state is State.FAILED
    assert store.claim("w1", 10, NOW + 3, 30) == []  # its delay: 5 s
    [again] = store.claim("w1", 10, NOW + 8, 30)
    store.record_outcomes([(again, ok())], NOW + 9, random.Random(1))
    assert store.get_execution(ex_id).state is State.SUCCESS
    ended = {row[0]: row[3] for row in store.ended_since(NOW)}
    assert ended == {ex_id: True, plain: False}  # the notifier looks at its targets

    replay = store.replay_execution(ex_id, "a", NOW + 10)
    copied = store.get_execution(replay)
    assert copied.options == execution.options and copied.scope == ("etl", "ops")
