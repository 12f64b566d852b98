"""State history as read (``ordo.store.history``): a task run's claim and its success
are held by its attempt, not written as rows, and read back in place; every other move
is a row; nothing is doubled, also in a store written before (rows for every move)."""

from __future__ import annotations

import random

from test_contract import LATER, NOW, claim_all, fail, flow_of, ok, start, task

from ordo.model import Outcome, RetryPolicy, State
from ordo.store import Store

RNG = random.Random(5)


def moves(store: Store, ex_id: int, task_run_id: int | None) -> list[tuple[str | None, str]]:
    return [
        (h.from_state.value if h.from_state else None, h.to_state.value)
        for h in store.history(ex_id)
        if h.task_run_id == task_run_id
    ]


def rows_written(store: Store, ex_id: int) -> int:
    row = store.db.one("SELECT count(*) FROM state_history WHERE execution_id = ?", (ex_id,))
    return int(row[0])


def test_a_claim_and_a_success_write_no_row_and_read_back_in_place(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], LATER + 1, RNG)
    (b,) = claim_all(store, ex_id, LATER + 1)
    store.record_outcomes([(b, ok())], LATER + 2, RNG)
    # the execution's three moves only: created, running, success
    assert rows_written(store, ex_id) == 3
    history = [
        (h.task_run_id, h.from_state, h.to_state, h.at, h.reason) for h in store.history(ex_id)
    ]
    running, success = State.RUNNING, State.SUCCESS
    assert history == [
        (None, None, State.CREATED, NOW, None),
        (None, State.CREATED, running, LATER, None),
        (a.task_run_id, State.CREATED, running, LATER, None),
        (a.task_run_id, running, success, LATER + 1, None),
        (b.task_run_id, State.CREATED, running, LATER + 1, None),
        (b.task_run_id, running, success, LATER + 2, None),
        (None, running, success, LATER + 2, None),
    ]


def test_a_retry_and_a_failure_read_as_before(store: Store) -> None:
    ex_id = start(store, flow_of(task("a", retry=RetryPolicy(attempts=2)), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, fail())], LATER + 1, RNG)
    (again,) = claim_all(store, ex_id, LATER + 100)
    store.record_outcomes([(again, fail(3))], LATER + 101, RNG)
    assert moves(store, ex_id, a.task_run_id) == [("CREATED", "RUNNING"), ("RUNNING", "FAILED")]
    failed = [h for h in store.history(ex_id) if h.task_run_id == a.task_run_id][-1]
    assert (failed.at, failed.reason) == (LATER + 101, "exit code 3")


def test_a_restarted_task_runs_moves_are_rows_and_nothing_is_doubled(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, fail())], LATER + 1, RNG)
    b_id = next(r.id for r in store.task_runs(ex_id) if r.task_id == "b")
    store.restart_execution(ex_id, LATER + 2)
    (a2,) = claim_all(store, ex_id, LATER + 3)
    store.record_outcomes([(a2, ok())], LATER + 4, RNG)
    (b,) = claim_all(store, ex_id, LATER + 5)
    store.record_outcomes([(b, ok())], LATER + 6, RNG)
    assert moves(store, ex_id, a.task_run_id) == [
        ("CREATED", "RUNNING"),
        ("RUNNING", "FAILED"),
        ("FAILED", "RESTARTED"),
        ("RESTARTED", "RUNNING"),
        ("RUNNING", "SUCCESS"),
    ]
    # b never ran before the restart: its first attempt starts it from RESTARTED
    assert moves(store, ex_id, b_id) == [
        ("CREATED", "SKIPPED"),
        ("SKIPPED", "RESTARTED"),
        ("RESTARTED", "RUNNING"),
        ("RUNNING", "SUCCESS"),
    ]


def test_a_mark_and_a_replays_copy_are_rows_only(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, fail())], LATER + 1, RNG)
    b_id = next(r.id for r in store.task_runs(ex_id) if r.task_id == "b")
    store.mark_task_run(ex_id, "b", State.SUCCESS, "ann", "done by hand", LATER + 2)
    assert moves(store, ex_id, b_id) == [("CREATED", "SKIPPED"), ("SKIPPED", "SUCCESS")]
    store.mark_task_run(ex_id, "a", State.SUCCESS, "ann", None, LATER + 3)
    replay = store.replay_execution(ex_id, "b", LATER + 4)
    copied = next(r.id for r in store.task_runs(replay) if r.task_id == "a")
    assert moves(store, replay, copied) == [("CREATED", "SUCCESS")]


def test_a_handlers_call_reads_as_created_running_and_its_end(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    good = store.record_call(a, "a.connect", "w1", LATER + 1, ok(), LATER + 2)
    bad = store.record_call(
        a, "a.connect", "w1", LATER + 3, Outcome(State.FAILED, error="refused"), LATER + 4
    )
    assert moves(store, ex_id, good) == [
        (None, "CREATED"),
        ("CREATED", "RUNNING"),
        ("RUNNING", "SUCCESS"),
    ]
    assert moves(store, ex_id, bad) == [
        (None, "CREATED"),
        ("CREATED", "RUNNING"),
        ("RUNNING", "FAILED"),
    ]


def test_rows_written_for_routine_moves_before_are_not_doubled(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], LATER + 1, RNG)
    # as ordo wrote them before the attempts held these moves
    with store.transaction():
        store.db.executemany(
            "INSERT INTO state_history (execution_id, task_run_id, from_state, to_state, at, "
            "reason) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (ex_id, a.task_run_id, "CREATED", "RUNNING", LATER, None),
                (ex_id, a.task_run_id, "RUNNING", "SUCCESS", LATER + 1, None),
            ],
        )
    assert moves(store, ex_id, a.task_run_id) == [("CREATED", "RUNNING"), ("RUNNING", "SUCCESS")]


def test_a_live_page_sees_claims_and_successes(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b")))
    seen = [store.last_change(ex_id), store.last_change()]
    a, b = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], LATER + 1, RNG)  # b still runs: only a moved
    assert store.last_change(ex_id) != seen[0]
    assert store.last_change() != seen[1]
    seen = [store.last_change(ex_id), store.last_change()]
    store.record_outcomes([(b, ok())], LATER + 2, RNG)
    assert store.last_change(ex_id) != seen[0]
    assert store.last_change() != seen[1]
