"""The store's batches to PostgreSQL (:class:`ordo.store.wire.Wire`): a batch's
statements run in order in one round trip, an error stops the batch and names itself,
statements run again and again are prepared, and a batch not read to its end leaves
no answer behind for the next one."""

from __future__ import annotations

import signal
import threading
from typing import Any

import psycopg
import pytest

from ordo.errors import StoreError, StoreUnavailable
from ordo.store import Store
from ordo.store import wire as wire_module
from ordo.store.postgres import PostgresDb, to_wire
from ordo.store.wire import Wire


@pytest.fixture
def store_url(postgres_url: str) -> str:
    """PostgreSQL only (the ``store`` fixture opens it)."""
    return postgres_url


def db_of(store: Store) -> PostgresDb:
    db = store.db
    assert isinstance(db, PostgresDb)
    return db


def prepared(db: PostgresDb) -> list[str]:
    """The test's statements prepared on ``db``'s connection, as the server lists them."""
    rows = db.conn.execute(
        "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1 + %'"
        " ORDER BY statement"
    ).fetchall()
    return [r[0] for r in rows]


def test_a_batch_runs_in_order_in_one_round_trip_and_reads_rows_by_name(store: Store) -> None:
    db = db_of(store)
    results = db.wire.run(
        [
            (b"CREATE TEMP TABLE t (id BIGINT PRIMARY KEY, name TEXT, at DOUBLE PRECISION)", ()),
            (b"INSERT INTO t VALUES ($1, $2, $3), ($4, $5, $6)", (1, "a", 1.5, 2, None, 2.5)),
            (b"UPDATE t SET at = at + 1 WHERE id >= $1", (1,)),
            (b"SELECT id, name, at FROM t ORDER BY id", ()),
        ]
    )
    assert [r.rowcount for r in results[1:3]] == [2, 2]
    rows = results[3].fetchall()
    assert [(r["id"], r["name"], r["at"]) for r in rows] == [(1, "a", 2.5), (2, None, 3.5)]
    assert rows[0][1] == "a" and rows[0].keys() == ("id", "name", "at")


def test_the_first_failing_statement_raises_and_those_after_it_do_not_run(store: Store) -> None:
    db = db_of(store)
    db.wire.run([(b"CREATE TEMP TABLE u (id BIGINT PRIMARY KEY)", ())])
    with pytest.raises(psycopg.errors.UniqueViolation, match="u_pkey"):
        db.wire.run(
            [
                (b"INSERT INTO u VALUES ($1)", (1,)),
                (b"INSERT INTO u VALUES ($1)", (1,)),  # the key is taken
                (b"INSERT INTO u VALUES ($1)", (3,)),
            ]
        )
    # without a transaction, the batch is one: nothing of it is kept
    (found,) = db.wire.run([(b"SELECT count(*) AS n FROM u", ())])
    assert found.fetchone()["n"] == 0
    # the store names the server and goes on working
    with pytest.raises(StoreError, match=r"PostgreSQL error at host .* duplicate key"):  # noqa: SIM117
        with store.transaction():
            db.execute("INSERT INTO u VALUES (?)", (5,))
            db.later("INSERT INTO u VALUES (?)", (5,))
            db.execute("SELECT 1")
    assert db.scalar("SELECT count(*) FROM u") == 0


def test_a_statement_run_again_and_again_is_prepared_and_the_least_used_dropped(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_of(store)
    monkeypatch.setattr(wire_module, "PREPARED_MAX", 2)
    texts = [to_wire(f"SELECT ? + {n} AS x") for n in range(3)]
    for _ in range(wire_module.PREPARE_AT - 1):
        db.wire.run([(texts[0], (1,))])
    assert prepared(db) == []  # as psycopg: from the fifth run
    for text in texts:
        for _ in range(wire_module.PREPARE_AT):
            (r,) = db.wire.run([(text, (1,))])
    assert r.fetchone()["x"] == 3
    # three prepared, at most two kept: the first is deallocated with the next batch
    db.wire.run([(texts[1], (1,))])
    assert prepared(db) == ["SELECT $1 + 1 AS x", "SELECT $1 + 2 AS x"]
    # the same text with other parameter types is another statement (as in psycopg)
    for _ in range(wire_module.PREPARE_AT):
        (r,) = db.wire.run([(texts[2], (2**40,))])
    assert r.fetchone()["x"] == 2**40 + 2


def test_a_parameter_that_cannot_be_adapted_raises_before_anything_is_sent(store: Store) -> None:
    db = db_of(store)
    with pytest.raises(StoreError, match="cannot adapt type 'object'"), store.transaction():
        db.later("CREATE TEMP TABLE v (id BIGINT)")
        db.execute("SELECT ?", (object(),))
    assert db.scalar("SELECT to_regclass('pg_temp.v') IS NULL") is True


def test_a_batch_larger_than_the_socket_buffers_goes_through(store: Store) -> None:
    """Sending waits for the server, which may wait for us to read its answers."""
    db = db_of(store)
    db.wire.run([(b"CREATE TEMP TABLE w (id BIGINT, pad TEXT)", ())])
    pad = "x" * 2000
    batch: list[Any] = [
        (b"INSERT INTO w VALUES ($1, $2) RETURNING pad", (i, pad)) for i in range(3000)
    ]
    results = db.wire.run(batch)
    assert len(results) == 3000 and results[-1].fetchone()["pad"] == pad
    assert db.scalar("SELECT count(*) FROM w") == 3000


def test_a_batch_not_read_to_its_end_closes_the_connection_and_the_store_connects_again(
    store: Store,
) -> None:
    """A signal's exception while the server works: its answer must not be read as the
    next batch's. The connection is closed; the store's next statement says it is
    unavailable (a worker then reconnects), and a reconnection works."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are set in the main thread")
    db = db_of(store)

    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    main = threading.main_thread().ident
    assert main is not None
    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(Interrupted):
            db.wire.run([(b"SELECT pg_sleep(2)", ()), (b"SELECT 1 AS one", ())])
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert db.conn.closed
    with pytest.raises(StoreUnavailable):
        db.scalar("SELECT 2")
    db.reconnect()
    assert db.scalar("SELECT 3") == 3


def test_the_store_sends_its_transactions_through_the_wire(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN with the first statement, what waits with the COMMIT: two batches."""
    batches: list[list[bytes]] = []
    real = Wire.run

    def run(wire: Wire, batch: Any) -> Any:
        batches.append([text for text, _ in batch])
        return real(wire, batch)

    monkeypatch.setattr(Wire, "run", run)
    db = db_of(store)
    with store.transaction():
        assert db.scalar("SELECT ? + 1", (1,)) == 2
        db.later("SELECT 3")
    assert batches == [[b"BEGIN", b"SELECT $1 + 1"], [b"SELECT 3", b"COMMIT"]]


def test_a_batch_that_cannot_be_adapted_leaves_nothing_noted_as_prepared(store: Store) -> None:
    """A statement at its fifth run, in a batch that fails before sending (a later
    parameter psycopg cannot pass): it was not prepared, and it still runs after."""
    db = db_of(store)
    text = to_wire("SELECT ? + 7 AS x")
    for _ in range(wire_module.PREPARE_AT - 1):
        db.wire.run([(text, (1,))])
    with pytest.raises(psycopg.DataError, match="NUL"):
        db.wire.run([(text, (1,)), (to_wire("SELECT ?"), ("a\x00b",))])
    for n in range(wire_module.PREPARE_AT + 1):
        (r,) = db.wire.run([(text, (n,))])
        assert r.fetchone()["x"] == n + 7
    assert prepared(db) == ["SELECT $1 + 7 AS x"]


def test_a_prepared_statement_the_server_lost_is_prepared_again(store: Store) -> None:
    """Should the server forget a statement prepared on the connection (``DEALLOCATE
    ALL`` by hand), its next run fails once, and the one after prepares it again."""
    db = db_of(store)
    text = to_wire("SELECT ? + 8 AS x")
    for _ in range(wire_module.PREPARE_AT):
        db.wire.run([(text, (1,))])
    db.conn.execute("DEALLOCATE ALL")
    with pytest.raises(psycopg.errors.InvalidSqlStatementName):
        db.wire.run([(text, (1,))])
    for n in range(wire_module.PREPARE_AT + 1):
        (r,) = db.wire.run([(text, (n,))])
        assert r.fetchone()["x"] == n + 8
