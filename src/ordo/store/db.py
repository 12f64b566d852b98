"""The store's shared SQL layer: one connection, its transactions, and the few dialect
helpers every concern needs. One subclass per backend (:mod:`ordo.store.sqlite`,
:mod:`ordo.store.postgres`) supplies the connection, the transaction's opening and the
statements that really differ (claiming); the concerns of the store
(:mod:`ordo.store.facade`) speak through it and own their SQL.

Rows are read by column name (``row["state"]``) on both backends: ``sqlite3.Row`` on
SQLite, a tuple with names on PostgreSQL (made by :class:`ordo.store.wire.Wire`).

A transaction knows none of the concerns: those that keep something until the
transaction ends (the history rows, the ready rows to tell other workers of, the secrets'
version a claim saw) register hooks run when it begins, just before it commits, or when
it rolls back.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from ordo.store.records import Reclaimed

T = TypeVar("T")

#: A claim's share of the ready rows it may take (``{where}`` on ready's columns): the
#: rows there, counted up to a bound, over the workers alive (at least 1), rounded up;
#: 0 when none are there. Claims taken ahead are what a worker runs after the others
#: ran out of work: at the end of a fan-out, the last rows are split instead of going
#: to whoever claims first (on the 2-core machine, one of two workers went on alone for
#: 4-20 ms of PostgreSQL W2's 100 before, 3-7 ms since). The rows are counted before
#: the join with the workers' count: joined row by row, the server counted the workers
#: again for every ready row (464 times in a claim of W2).
FAIR_SHARE = """coalesce((
    SELECT (s.found + w.n - 1) / w.n
    FROM (SELECT count(*) AS found
          FROM (SELECT 1 FROM ready WHERE {where} AND concurrency_key IS NULL LIMIT ?) AS m) AS s
    CROSS JOIN (SELECT CASE WHEN count(*) > 1 THEN count(*) ELSE 1 END AS n FROM workers
                WHERE stopped_at IS NULL AND heartbeat_at >= ?) AS w), 0)"""
#: Ready rows counted for :data:`FAIR_SHARE`: up to this many times a claim's limit.
FAIR_COUNT = 8


class Row(Protocol):
    """A row read from the store: its columns by name."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Sequence[str]: ...

    def __iter__(self) -> Iterator[Any]: ...


def columns(rows: Iterable[Row], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The columns ``names`` of each row, in that order, read by position: for the
    store's hot paths, where reading a row's columns one by one by name costs a call of
    Python each (about 20 an attempt when claiming)."""
    found: list[tuple[Any, ...]] = []
    getters: dict[tuple[str, ...], Callable[[tuple[Any, ...]], Any]] = {}
    for row in rows:
        keys = tuple(row.keys())
        get = getters.get(keys)
        if get is None:
            get = getters[keys] = _getter([keys.index(name) for name in names])
        found.append(get(tuple(row)))
    return found


def _getter(at: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The items at ``at`` of a tuple, as a tuple."""
    if len(at) == 1:
        (i,) = at
        return lambda values: (values[i],)
    return operator.itemgetter(*at)


class Cursor(Protocol):
    """What a statement answers: its row count and rows."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Closable(Protocol):
    def close(self) -> None: ...


Hook = Callable[[], None]


class Db(ABC):
    """One connection to one database; use from one thread at a time."""

    #: ``sqlite`` or ``postgresql``
    backend: str
    #: PostgreSQL: one statement may change two tables (``WITH ... INSERT ... UPDATE``)
    writable_ctes = False
    #: appended to a SELECT to lock its rows until the transaction ends
    lock_rows = ""
    #: SQL true when the text column holds the text parameter (``{}``: the column)
    contains = "instr({}, ?) > 0"

    def __init__(self) -> None:
        self._depth = 0
        self._on_begin: list[Hook] = []
        self._on_commit: list[Hook] = []
        self._on_rollback: list[Hook] = []

    # -- hooks -----------------------------------------------------------------------
    def on_begin(self, hook: Hook) -> None:
        """Call ``hook`` when an outermost transaction begins."""
        self._on_begin.append(hook)

    def on_commit(self, hook: Hook) -> None:
        """Call ``hook`` just before an outermost transaction commits (it may write)."""
        self._on_commit.append(hook)

    def on_rollback(self, hook: Hook) -> None:
        """Call ``hook`` when an outermost transaction rolls back."""
        self._on_rollback.append(hook)

    # -- transactions ----------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        for hook in self._on_begin:
            hook()
        try:
            yield
            for hook in self._on_commit:
                hook()
            self._depth = 0
            self._commit()  # (a commit that fails rolls back, as anything before it)
        except BaseException:
            self._depth = 0
            for hook in self._on_rollback:
                hook()
            self._rollback()
            raise

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    # -- statements ------------------------------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` placeholders) and return its cursor."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many rows (an ``INSERT ... VALUES``: a few statements)."""

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement whose answer no one reads (a write): in a transaction, a
        backend may send it with the next statement or with the commit, in order (on
        PostgreSQL: in the same round trip). Its error, if any, then fails that statement
        or the commit, and so the transaction."""
        self.execute(sql, params)

    def later_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """:meth:`executemany` as :meth:`later` runs one statement."""
        self.executemany(sql, rows)

    def soon(self, sql: str, params: Sequence[Any] = ()) -> Callable[[], list[Row]]:
        """Run one statement whose rows are read later, if at all: as :meth:`later`, it may
        go with the next statement or the commit; the function returned reads them
        (sending it first if it has not gone yet). Read them before the commit, or in a
        hook the commit runs (:meth:`on_commit`)."""
        rows = self.all(sql, params)
        return lambda: rows

    @abstractmethod
    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT and return the new row's id."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self.execute(sql, params).fetchall()
        return rows

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None without a row): a count, an id."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- dialect ---------------------------------------------------------------------
    def values(self, rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
        """``rows`` as a table for ``FROM {values}`` (columns ``column1``...) and its
        parameters; ``types`` are the columns' SQL types (PostgreSQL needs them)."""
        return f"(VALUES {value_rows(rows)}) AS v", flat(rows)

    def ids(self, values: Sequence[int]) -> tuple[str, list[Any]]:
        """A membership test for ``x {ids}`` and its parameters."""
        return f"IN ({marks(values)})", list(values)

    def rows_at_once(self, columns: int) -> int:
        """How many rows of ``columns`` parameters each one statement of :meth:`values`
        or :meth:`ids` takes at most: a larger batch goes in parts (:func:`parts`).
        Unbounded here (PostgreSQL sends arrays, one parameter each)."""
        return 1 << 62

    @abstractmethod
    def lock(self, name: str) -> None:
        """Hold a lock named ``name`` until this transaction ends."""

    @abstractmethod
    def take_ready(
        self, limit: int, where: str, params: list[Any], fair: tuple[int, float] | None = None
    ) -> list[Row]:
        """In one statement, remove up to ``limit`` due rows without a concurrency key
        (with ``fair``, no more than a fair share of them: :meth:`shares`)
        from ``ready`` matching ``where`` (on ready's columns), safely under concurrency,
        oldest first, and return them by task run id with the columns ``task_run_id,
        execution_id, task_id, state, attempts, started_at, revision_id,
        execution_state`` (the task run's and its execution's), ``keyed`` (whether rows
        with a concurrency key match ``where`` too), ``secrets, changed`` (the
        secrets' version, :data:`~ordo.store.secrets.SecretsVersion`) and ``attempt_id``
        (an id the backend reserved for the attempt to start, or None: the attempt's
        insert then needs no answer, and can go with the commit). A backend may answer
        one row of ``keyed, secrets, changed`` only (the others None) when it takes
        nothing."""

    @staticmethod
    def shares(limit: int, params: list[Any], fair: tuple[int, float] | None = None) -> list[Any]:
        """The parameters of a claim's ``LIMIT`` (:data:`FAIR_SHARE`): up to ``limit``
        rows; with ``fair`` ``(least, alive_since)``, no more than the claim's share of
        the ready rows ``params`` match, among the workers alive since then, but at
        least ``least`` (what the claimer's free slots start now)."""
        if fair is None:
            return [limit, limit, *params, 0, 0.0]
        least, alive_since = fair
        return [limit, min(least, limit), *params, limit * FAIR_COUNT, alive_since]

    def notify_ready(self) -> None:  # noqa: B027 (a backend may have no one to tell)
        """Ready rows were added in this transaction: wake workers elsewhere at commit
        (PostgreSQL sends a notification; SQLite wakes this process's listeners)."""

    # -- the database ----------------------------------------------------------------
    @abstractmethod
    def upgrade(self) -> int:
        """Apply pending migrations; returns the schema version now in force."""

    @abstractmethod
    def schema_version(self) -> int: ...

    def listen(self, wake: Callable[[], None]) -> Closable | None:
        """Call ``wake`` (from another thread) when ready rows are added; None when the
        backend has no such notifications."""
        return None

    def reconnect(self) -> None:  # noqa: B027 (a file needs no reconnecting)
        """Open a new connection after :class:`~ordo.errors.StoreUnavailable`."""

    def plan_once(self) -> None:  # noqa: B027 (SQLite plans each statement once anyway)
        """Plan each statement prepared on this connection once, whatever its arguments:
        for a worker's, whose statements are lookups by key run again and again (a
        server's reads keep plans made for their arguments: a rare state, a big flow)."""

    @abstractmethod
    def reclaim_space(self) -> Reclaimed:
        """Give the space of deleted rows back (SQLite: ``PRAGMA incremental_vacuum``)."""

    @abstractmethod
    def close(self) -> None: ...


def dumps(value: Any) -> str:
    """JSON as the store keeps it: compact, anything unknown as text."""
    return json.dumps(value, separators=(",", ":"), default=str)


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?``: one placeholder per value (an IN list)."""
    return ", ".join("?" * len(values))


def value_rows(rows: Sequence[Sequence[Any]]) -> str:
    """``(?, ?), (?, ?)``: placeholders for a VALUES list of these rows."""
    return _value_rows(len(rows[0]), len(rows))


@functools.lru_cache(maxsize=256)
def _value_rows(width: int, count: int) -> str:
    """(The same few shapes every step: made once each.)"""
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * count)


def flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    """The rows' values in one list, for :func:`value_rows`."""
    return [value for row in rows for value in row]


#: ``INSERT ... VALUES (...)`` with one plain tuple (no nested parentheses) at its end
_ONE_TUPLE = re.compile(r"^(?P<head>\s*INSERT\b.*\bVALUES)\s*(?P<one>\([^()]*\))\s*$", re.S | re.I)


@functools.lru_cache(maxsize=256)
def _insert_parts(sql: str) -> tuple[str, str] | None:
    """``(INSERT ... VALUES, (?, ...))`` of an insert of one plain tuple, else None (the
    same few statements every step: matched once each)."""
    found = _ONE_TUPLE.match(sql)
    return None if found is None else (found["head"], found["one"])


def parts(rows: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``rows`` in parts of at most ``size`` (see :meth:`Db.rows_at_once`)."""
    for at in range(0, len(rows), size):
        yield rows[at : at + size]


#: The parameters a statement may take (SQLite's default limit is 32,766; PostgreSQL's
#: protocol allows 65,535), less a few for the statement's own.
PARAMETERS = 30_000


def inserts(
    sql: str, rows: Sequence[Sequence[Any]], budget: int = PARAMETERS
) -> list[tuple[str, list[Any]]] | None:
    """An ``INSERT ... VALUES (?, ...)`` for many rows as a few statements of up to 500
    rows each, and ``budget`` parameters (one round trip and one plan per chunk,
    whatever the backend), with their parameters; None when ``sql`` is not such an
    INSERT."""
    parts = _insert_parts(sql)
    if parts is None or not rows:
        return None
    size = max(1, min(500, budget // max(len(rows[0]), 1)))
    return [
        (_insert_text(sql, len(chunk)), flat(chunk))
        for chunk in (rows[i : i + size] for i in range(0, len(rows), size))
    ]


@functools.lru_cache(maxsize=256)
def _insert_text(sql: str, count: int) -> str:
    """:func:`inserts`' statement for ``count`` rows (made once for each)."""
    parts = _insert_parts(sql)
    assert parts is not None
    head, one = parts
    return f"{head} {', '.join([one] * count)}"
