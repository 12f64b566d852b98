"""What recording outcomes and claiming cost in statements, counted where the database
drivers receive them (``bench/statements.py`` counts the same way): a chain hop is at
most 8, and a batch of successes costs the same whatever its size."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from test_contract import LATER, claim_all, fail, flow_of, ok, start, task

from ordo.errors import StoreError
from ordo.model import DROPPED, Flow, Outcome, RetryPolicy, State
from ordo.store import Store
from ordo.store.wire import Wire

RNG = random.Random(11)
EDGES = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@contextmanager
def counting(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The statements sent meanwhile (one per row of an ``executemany``), without the
    transactions' BEGIN and COMMIT."""
    sent: list[str] = []

    def note(sql: object) -> None:
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        if not text.lstrip().upper().startswith(EDGES):
            sent.append(" ".join(text.split()))

    conn = getattr(store.db, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        conn.set_trace_callback(note)

    def wrap(real: Callable[..., Any], many: bool) -> Callable[..., Any]:
        def call(cur: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            if many and params is not None:
                params = list(params)
                sent.extend(" ".join(str(query).split()) for _ in params)
            else:
                note(query)
            return real(cur, query, params, **kw)

        return call

    def run(wire: Wire, batch: Any) -> Any:
        for text, _ in batch:
            note(text)
        return real_run(wire, batch)

    real_run = Wire.run
    monkeypatch.setattr(psycopg.Cursor, "execute", wrap(psycopg.Cursor.execute, False))
    monkeypatch.setattr(psycopg.Cursor, "executemany", wrap(psycopg.Cursor.executemany, True))
    monkeypatch.setattr(Wire, "run", run)
    try:
        yield sent
    finally:
        if isinstance(conn, sqlite3.Connection):
            conn.set_trace_callback(None)


def step(store: Store, done: list[Any], now: float, ex_id: int) -> list[Any]:
    """What a worker's step does working on one execution: record what ended and claim
    what that made ready, that claim sent with what records them (one slot free: the
    claim records it launched itself)."""
    claimed: list[Any] = []

    def claim(so_far: object = None) -> None:
        claimed.extend(
            store.claim("w1", 17, now, 6.0, execution_id=ex_id, launch=1, launch_lease_seconds=30.0)
        )

    with store.transaction():
        result = store.record_outcomes([(c, ok()) for c in done], now, RNG, claim)
    assert not result.readied_after  # the claim saw all that was made ready
    return claimed


def test_a_chain_hop_is_at_most_8_statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a"), task("c", "b")))
    (a,) = claim_all(store, ex_id)
    (b,) = step(store, [a], LATER + 1, ex_id)  # the first hop reads the secrets
    with counting(store, monkeypatch) as sent:
        (c,) = step(store, [b], LATER + 2, ex_id)
    assert len(sent) <= 8, "\n".join(sent)
    assert c.task_id == "c"


def test_a_batch_of_successes_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cost = {}
    for size in (3, 40):
        fan = [task(f"t{i}") for i in range(size)]
        tasks = (*fan, task("join", *(t.id for t in fan)))
        ex_id = start(store, Flow(id=f"fan{size}", tasks=tasks, base_dir="/tmp"))
        claims = claim_all(store, ex_id)
        assert len(claims) == size
        with counting(store, monkeypatch) as sent:
            (join,) = step(store, claims, LATER + 1, ex_id)
        assert join.task_id == "join"
        cost[size] = len(sent)
    # the attempts, the task runs, the execution's count, the dependents (one statement
    # on PostgreSQL, two on SQLite), the claim (take, attempts, task runs)
    assert cost[3] == cost[40] <= 8, cost


def _well(i: int) -> Outcome:
    """A success, a success with a message, a warning or a run_if's SKIP."""
    return [
        Outcome(State.SUCCESS, exit_code=0),
        Outcome(State.SUCCESS, exit_code=0, error=f"said {i}"),
        Outcome(State.WARNING, exit_code=0, error=f"warned {i}"),
        Outcome(State.SKIPPED, reason="skip", error=f"nothing to do {i}"),
    ][i % 4]


def test_a_batch_of_outcomes_that_ended_well_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings, SKIPs and successes with a message are recorded together too; each
    task run ends with its state and reason, and the moves no attempt holds are in
    the history."""
    cost = {}
    for size in (4, 40):
        fan = [task(f"t{i}") for i in range(size)]
        tasks = (*fan, task("join", *(t.id for t in fan)))
        ex_id = start(store, Flow(id=f"well{size}", tasks=tasks, base_dir="/tmp"))
        claims = sorted(claim_all(store, ex_id), key=lambda c: c.task_run_id)
        with counting(store, monkeypatch) as sent, store.transaction():
            store.record_outcomes([(c, _well(i)) for i, c in enumerate(claims)], LATER, RNG)
        cost[size] = len(sent)
        runs = {r.task_id: r for r in store.task_runs(ex_id)}
        for i in range(size):
            expected = _well(i)
            assert runs[f"t{i}"].state is expected.state
            assert runs[f"t{i}"].reason == expected.error
        (join,) = claim_all(store, ex_id, LATER + 1)  # all released it
        assert join.task_id == "join"
        history = {(h.task_run_id, h.to_state, h.reason) for h in store.history(ex_id)}
        assert (runs["t2"].id, State.WARNING, "warned 2") in history
        assert (runs["t3"].id, State.SKIPPED, "nothing to do 3") in history
    assert cost[4] == cost[40] <= 10, cost


def test_the_first_failure_skips_what_has_not_started_in_the_same_statements_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``a`` fails while everything else waits: all of it is skipped together, each
    with the failure as its reason, or naming the task before it skipped with it."""
    cost = {}
    for size in (3, 40):
        fan = [task(f"t{i}") for i in range(size)]
        tasks = (task("a"), *fan, task("after", "t0"))
        ex_id = start(store, Flow(id=f"stop{size}", tasks=tasks, base_dir="/tmp"))
        (a,) = store.claim("w1", 1, LATER, 30, execution_id=ex_id, only=[min_run(store, ex_id)])
        with counting(store, monkeypatch) as sent:
            store.record_outcomes([(a, fail())], LATER + 1, RNG)
        cost[size] = len(sent)
        runs = {r.task_id: r for r in store.task_runs(ex_id)}
        assert runs["t1"].reason == "execution failed: task 'a' failed"
        assert runs["after"].reason == "dependency 't0' was skipped"
        assert {r.state for r in runs.values() if r.task_id != "a"} == {State.SKIPPED}
        assert store.get_execution(ex_id).state is State.FAILED
        assert claim_all(store, ex_id, LATER + 2) == []
    assert cost[3] == cost[40], cost


def test_a_batch_of_failures_that_retry_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cost = {}
    for size in (3, 40):
        policy = RetryPolicy(attempts=2, delay=5.0)
        tasks = [task(f"t{i}", retry=policy) for i in range(size)]
        ex_id = start(store, Flow(id=f"retry{size}", tasks=tuple(tasks), base_dir="/tmp"))
        claims = claim_all(store, ex_id)
        with counting(store, monkeypatch) as sent:
            result = store.record_outcomes([(c, fail()) for c in claims], LATER, RNG)
        cost[size] = len(sent)
        assert sorted(result.retries) == sorted(c.task_run_id for c in claims)
        assert claim_all(store, ex_id, LATER + 4.9) == []
        again = claim_all(store, ex_id, LATER + 5)
        assert sorted(c.number for c in again) == [2] * size
    assert cost[3] == cost[40], cost


def test_a_failure_skips_its_dependents_in_the_same_statements_whatever_their_number(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``continue_on_error`` only what depends on ``a`` is skipped: those right
    below it naming it, the one below them naming the first of them."""
    cost = {}
    for size in (3, 40):
        below = [task(f"b{i}", "a") for i in range(size)]
        tasks = (task("a"), *below, task("c", *(t.id for t in below)), task("free"))
        flow = Flow(id=f"below{size}", tasks=tasks, base_dir="/tmp", continue_on_error=True)
        ex_id = start(store, flow)
        claims = {c.task_id: c for c in claim_all(store, ex_id)}
        with counting(store, monkeypatch) as sent:
            store.record_outcomes([(claims["a"], fail())], LATER, RNG)
        cost[size] = len(sent)
        runs = {r.task_id: r for r in store.task_runs(ex_id)}
        assert {runs[f"b{i}"].reason for i in range(size)} == {"dependency 'a' failed"}
        assert runs["c"].reason == "dependency 'b0' was skipped"
        assert runs["free"].state is State.RUNNING  # claimed, and left to run
    assert cost[3] == cost[40], cost


def _pairs(size: int, **kw: object) -> Flow:
    """``size`` tasks ``t{i}``, each with one dependent ``d{i}``, and ``free``."""
    tasks = [task(f"t{i}") for i in range(size)] + [task(f"d{i}", f"t{i}") for i in range(size)]
    return Flow(id=f"pairs{size}", tasks=(*tasks, task("free")), base_dir="/tmp", **kw)  # type: ignore[arg-type]


def _batch_cost(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    outcome: Callable[[int], Outcome],
    check: Callable[[int, dict[str, Any]], None],
    before: Callable[[int, dict[str, Any]], None] = lambda ex_id, claims: None,
    **kw: object,
) -> int:
    """Statements recording ``outcome(i)`` for each ``t{i}`` of :func:`_pairs` in one
    batch (``free`` left running); ``check`` then sees the execution and its runs."""
    ex_id = start(store, _pairs(size, **kw))
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    before(ex_id, claims)
    batch = [(claims[f"t{i}"], outcome(i)) for i in range(size)]
    with counting(store, monkeypatch) as sent, store.transaction():
        store.record_outcomes(batch, LATER + 1, RNG)
    check(ex_id, {r.task_id: r for r in store.task_runs(ex_id)})
    if "free" in claims:  # (the last one ends the execution)
        store.record_outcomes([(claims["free"], ok())], LATER + 2, RNG)
    return len(sent)


def _costs_the_same(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    outcome: Callable[[int], Outcome],
    check: Callable[[int, dict[str, Any]], None],
    before: Callable[[int, dict[str, Any]], None] = lambda ex_id, claims: None,
    **kw: object,
) -> None:
    """:func:`_batch_cost` of 3 and of 40: the same."""
    cost = {
        size: _batch_cost(store, monkeypatch, size, outcome, check, before, **kw)
        for size in (3, 40)
    }
    assert cost[3] == cost[40], (kw, cost)


def test_a_batch_of_failures_that_end_their_task_runs_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fails (no retry) and skips its own dependent, naming it; with
    ``continue_on_error`` the rest goes on, without it the first (by id) fails the
    execution and what has not started is skipped naming it."""

    def going(ex_id: int, runs: dict[str, Any]) -> None:
        size = len(runs) // 2
        for i in range(size):
            assert (runs[f"t{i}"].state, runs[f"t{i}"].reason) == (State.FAILED, "exit code 1")
            assert runs[f"d{i}"].state is State.SKIPPED
            assert runs[f"d{i}"].reason == f"dependency 't{i}' failed"
        assert runs["free"].state is State.RUNNING
        assert store.get_execution(ex_id).state is State.RUNNING
        ended.append(ex_id)

    for keep_going in (True, False):
        ended: list[int] = []
        _costs_the_same(store, monkeypatch, lambda i: fail(), going, continue_on_error=keep_going)
        execution = store.get_execution(ended[-1])
        assert execution.state is State.FAILED
        assert execution.reason == "task 't0' failed: exit code 1"


def test_a_batch_of_kills_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An execution is killed; its workers' attempts end KILLED together: each task run
    by way of KILLING, its dependent skipped naming it."""

    def killed(ex_id: int, runs: dict[str, Any]) -> None:
        size = len(runs) // 2
        moves = {(h.task_run_id, h.from_state, h.to_state) for h in store.history(ex_id)}
        for i in range(size):
            run = runs[f"t{i}"]
            assert (run.state, run.reason) == (State.KILLED, "stopped")
            assert (run.id, State.RUNNING, State.KILLING) in moves
            assert (run.id, State.KILLING, State.KILLED) in moves
            assert runs[f"d{i}"].state is State.KILLED  # (not started: killed with it)

    outcome = Outcome(State.KILLED, reason="killed", error="stopped")
    kill = lambda ex_id, claims: store.kill_execution(ex_id, "by hand", LATER)  # noqa: E731
    _costs_the_same(store, monkeypatch, lambda i: outcome, killed, kill)


def test_a_batch_of_stops_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answers STOP: it ends SKIPPED and its dependent is skipped naming it."""

    def stopped(ex_id: int, runs: dict[str, Any]) -> None:
        size = len(runs) // 2
        for i in range(size):
            assert (runs[f"t{i}"].state, runs[f"t{i}"].reason) == (State.SKIPPED, f"stop {i}")
            assert runs[f"d{i}"].reason == f"dependency 't{i}' stopped"
        assert store.get_execution(ex_id).state is State.RUNNING  # (free runs on)

    stop = lambda i: Outcome(State.SKIPPED, reason="stop", error=f"stop {i}")  # noqa: E731
    _costs_the_same(store, monkeypatch, stop, stopped)


def test_a_batch_of_dropped_claims_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``free`` failed; the claims of the others, never launched, end SKIPPED."""

    def dropped(ex_id: int, runs: dict[str, Any]) -> None:
        size = len(runs) // 2
        why = "execution failed: task 'free' failed"
        for i in range(size):
            assert (runs[f"t{i}"].state, runs[f"t{i}"].reason) == (State.SKIPPED, why)
            assert runs[f"t{i}"].attempts == 1
        assert store.get_execution(ex_id).state is State.FAILED

    def free_fails(ex_id: int, claims: dict[str, Any]) -> None:
        store.record_outcomes([(claims.pop("free"), fail())], LATER, RNG)

    outcome = Outcome(State.SKIPPED, reason=DROPPED, error="execution failed: task 'free' failed")
    _costs_the_same(store, monkeypatch, lambda i: outcome, dropped, free_fails)


def test_a_batch_of_for_each_expanding_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ``t{i}`` is a for_each of two items: both are ready at once."""

    def forked(ex_id: int, runs: dict[str, Any]) -> None:
        items = [r for r in store.task_runs(ex_id) if r.fork_of is not None]
        assert len(items) == 2 * (len(runs) // 2)
        assert len(claim_all(store, ex_id, LATER + 2)) == len(items)

    fork = lambda i: Outcome(State.SUCCESS, forks=[i, i + 1])  # noqa: E731
    _costs_the_same(store, monkeypatch, fork, forked)


def test_a_batch_of_items_ending_costs_the_same_whatever_its_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items of ``size`` for_each task runs (two each, one at a time) end together,
    some well and some not: each for_each task run starts its next item."""
    cost = {}
    for size in (3, 40):
        tasks = [task(f"e{i}", for_each=[1, 2], concurrency=1) for i in range(size)]
        flow = Flow(id=f"items{size}", tasks=tuple(tasks), base_dir="/tmp", continue_on_error=True)
        ex_id = start(store, flow)
        forks = [(c, Outcome(State.SUCCESS, forks=[1, 2])) for c in claim_all(store, ex_id)]
        store.record_outcomes(forks, LATER, RNG)
        items = claim_all(store, ex_id, LATER + 1)
        assert len(items) == size
        batch = [(c, ok() if i % 2 else fail()) for i, c in enumerate(items)]
        with counting(store, monkeypatch) as sent, store.transaction():
            store.record_outcomes(batch, LATER + 2, RNG)
        cost[size] = len(sent)
        assert len(claim_all(store, ex_id, LATER + 3)) == size  # each one's second item
    assert cost[3] == cost[40], cost


def test_a_lost_workers_attempts_are_taken_back_in_the_same_statements_whatever_their_number(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half its claims launched (each recorded lost), half not (each handed back, then
    dropped by the first failure): together."""
    cost = {}
    for size in (4, 40):
        tasks = tuple(task(f"t{i}") for i in range(size))
        ex_id = start(store, Flow(id=f"lost{size}", tasks=tasks, base_dir="/tmp"))
        store.register_worker(f"w{size}", "host", 1, ("default",), LATER)
        claims = store.claim(
            f"w{size}", size, LATER, 6.0, execution_id=ex_id, launch=size // 2,
            launch_lease_seconds=30.0,
        )  # fmt: skip
        assert len(claims) == size
        with counting(store, monkeypatch) as sent:
            result = store.reap_workers([f"w{size}"], LATER + 1, RNG)
        cost[size] = len(sent)
        assert result.ended_executions == {ex_id: State.FAILED}
        runs = sorted(store.task_runs(ex_id), key=lambda r: r.id)
        lost = [r for r in runs if r.state is State.FAILED]
        assert len(lost) == size // 2
        assert {r.reason for r in lost} == {f"worker lost (w{size})"}
        assert {r.state for r in runs if r not in lost} == {State.SKIPPED}
    assert cost[4] == cost[40], cost


def min_run(store: Store, ex_id: int) -> int:
    return min(r.id for r in store.task_runs(ex_id))


def test_a_transaction_that_fails_after_writing_leaves_nothing(store: Store) -> None:
    """PostgreSQL sends BEGIN with the transaction's first statement: what that
    statement wrote still rolls back with the rest, and a later one still commits."""
    with pytest.raises(RuntimeError), store.transaction():
        store.db.execute(
            "INSERT INTO secrets (name, ciphertext, created_at, updated_at) VALUES (?, ?, ?, ?)",
            ("A", "c", 1.0, 1.0),
        )
        raise RuntimeError("boom")
    assert store.secret_rows() == []
    with store.transaction():
        pass  # sends nothing
    store.set_secret("B", "c", 2.0)
    assert store.secret_rows() == [("B", "c")]


def test_postgresql_a_workers_connection_plans_each_prepared_statement_once(
    store: Store,
) -> None:
    """A worker's statements are planned once, not on every run (a custom plan per run
    cost 0.1-0.3 ms of a chain step); other connections keep plans made for their
    arguments (a server's reads by a rare state)."""
    conn = getattr(store.db, "conn", None)
    if not isinstance(conn, psycopg.Connection):
        pytest.skip("PostgreSQL only")
    assert conn.execute("SHOW plan_cache_mode").fetchone()[0] == "auto"
    store.plan_once()
    assert conn.execute("SHOW plan_cache_mode").fetchone()[0] == "force_generic_plan"
    store.db.reconnect()  # a connection made again keeps it
    again = store.db.conn  # type: ignore[attr-defined]
    assert again.execute("SHOW plan_cache_mode").fetchone()[0] == "force_generic_plan"


def test_a_statement_sent_later_is_seen_by_the_next_and_fails_its_transaction(
    store: Store,
) -> None:
    """``Db.later``: a write no one reads the answer of may wait for the next statement
    or the commit (PostgreSQL sends them together). It still runs before the next
    statement, and its error fails the whole transaction: nothing of it is kept, and the
    connection goes on working."""
    insert = "INSERT INTO secrets (name, ciphertext, created_at, updated_at) VALUES (?, ?, ?, ?)"
    with store.transaction():
        store.db.later(insert, ("A", "c", 1.0, 1.0))
        assert store.secret_rows() == [("A", "c")]
    with pytest.raises(StoreError), store.transaction():
        store.db.later(insert, ("B", "c", 2.0, 2.0))
        store.db.later(insert, ("A", "again", 2.0, 2.0))  # the name is taken
    assert store.secret_rows() == [("A", "c")]
    store.set_secret("C", "c", 3.0)
    assert store.secret_rows() == [("A", "c"), ("C", "c")]


@contextmanager
def round_trips(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """PostgreSQL: the round trips made meanwhile, each named by its statements (a
    batch's statements go in one)."""
    trips: list[str] = []
    real_run = Wire.run

    def run(wire: Wire, batch: Any) -> Any:
        trips.append(" + ".join(" ".join(text.decode().split()[:3]) for text, _ in batch))
        return real_run(wire, batch)

    monkeypatch.setattr(Wire, "run", run)
    yield trips


def test_postgresql_a_chain_hop_is_2_round_trips(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN goes with the success (which releases its dependent in the same statement)
    and the claim; the attempt's insert (its id reserved by the claim) with the COMMIT:
    success, release, claim, insert and commit in 2 round trips."""
    if not isinstance(getattr(store.db, "conn", None), psycopg.Connection):
        pytest.skip("PostgreSQL only")
    ex_id = start(store, flow_of(task("a"), task("b", "a"), task("c", "b")))
    (a,) = claim_all(store, ex_id)
    (b,) = step(store, [a], LATER + 1, ex_id)
    with round_trips(store, monkeypatch) as trips:
        (c,) = step(store, [b], LATER + 2, ex_id)
    assert len(trips) <= 2, "\n".join(trips)
    assert trips[0].startswith("BEGIN") and trips[-1].endswith("COMMIT"), trips
    assert c.attempt_id in store.running_attempt_ids(ex_id)  # inserted with the id reserved


def test_sqlite_batches_larger_than_its_statements_take_are_split(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SQLite's limit of parameters a statement down to 999 (old builds'), 300
    failures that retry, 300 for_each items, a failure ending the 300 runs waiting for
    their retry, a kill of 300 task runs, a lost worker's 300 attempts, 300 claims
    handed back and 300 successes all go through, in statements that fit."""
    conn = getattr(store.db, "conn", None)
    if not isinstance(conn, sqlite3.Connection):
        pytest.skip("SQLite only")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    size = 300
    waiting = tuple(task(f"t{i}", retry=RetryPolicy(attempts=3, delay=3600)) for i in range(size))
    ex_id = start(store, Flow(id="big", tasks=(*waiting, task("bad")), base_dir="/tmp"))
    claims = {c.task_id: c for c in store.claim("w1", size + 1, LATER, 30.0, execution_id=ex_id)}
    batch = [(claims[f"t{i}"], fail()) for i in range(size)]
    assert len(store.record_outcomes(batch, LATER, RNG).retries) == size
    result = store.record_outcomes([(claims["bad"], fail())], LATER + 1, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}
    reasons = {r.reason for r in store.task_runs(ex_id) if r.task_id != "bad"}
    assert reasons == {"not retried: execution failed: task 'bad' failed"}

    flow = Flow(id="each", tasks=(task("each", for_each=list(range(size))),), base_dir="/tmp")
    ex_id = start(store, flow)
    (each,) = claim_all(store, ex_id)
    store.record_outcomes([(each, Outcome(State.SUCCESS, forks=list(range(size))))], LATER, RNG)
    items = store.claim("w2", size, LATER, 30.0, execution_id=ex_id, launch=size // 2)
    assert len(items) == size
    store.register_worker("w2", "host", 1, ("default",), LATER)
    result = store.reap_workers(["w2"], LATER + 1, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}

    tasks = tuple(task(f"k{i}", "k") for i in range(size))
    ex_id = start(store, Flow(id="kill", tasks=(task("k"), *tasks), base_dir="/tmp"))
    claim_all(store, ex_id)
    store.kill_execution(ex_id, "by hand", LATER)
    assert {r.state for r in store.task_runs(ex_id) if r.task_id != "k"} == {State.KILLED}

    tasks = tuple(task(f"s{i}") for i in range(size))
    ex_id = start(store, Flow(id="well", tasks=(*tasks, task("join", "s0", "s1")), base_dir="/"))
    claims = claim_all(store, ex_id)
    store.hand_back(claims, LATER)
    claims = store.claim("w3", size, LATER, 30.0, execution_id=ex_id)
    assert len(claims) == size  # (handed back: ready again)
    store.record_outcomes([(c, ok()) for c in claims], LATER + 1, RNG)
    (join,) = claim_all(store, ex_id, LATER + 2)
    assert join.task_id == "join"
