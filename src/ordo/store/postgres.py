"""The PostgreSQL backend (psycopg 3): the shared SQL with ``$1`` placeholders, sent in
batches (:mod:`ordo.store.wire`), claims with ``FOR UPDATE SKIP LOCKED``, and migrations
serialized by an advisory lock."""

from __future__ import annotations

import contextlib
import logging
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

import psycopg

from ordo.errors import StoreError, StoreUnavailable
from ordo.store import migrate
from ordo.store.db import FAIR_SHARE, Db, Row, inserts
from ordo.store.records import Reclaimed
from ordo.store.secrets import SECRETS_VERSION
from ordo.store.wire import Result, Statement, Wire

MIGRATION_LOCK = 7_240_001  # pg_advisory_xact_lock key: one migrator at a time
LIMIT_LOCKS = 7_240  # pg_advisory_xact_lock(class, hashtext(name)): concurrency limits
NOTIFY_CHANNEL = "ordo_ready"
logger = logging.getLogger(__name__)


@lru_cache(maxsize=512)
def to_wire(sql: str) -> bytes:
    """The shared SQL as the server takes it: ``$1``, ``$2``... placeholders, ``IS NOT
    DISTINCT FROM`` for a compared-with-NULL parameter."""
    parts = re.sub(r"\bIS \?", "IS NOT DISTINCT FROM ?", sql).split("?")
    numbered = [f"{part}${i}" for i, part in enumerate(parts[:-1], 1)]
    return ("".join(numbered) + parts[-1]).encode()


def _many(sql: str, rows: list[Sequence[Any]]) -> list[Statement]:
    """``sql`` run for each of ``rows``: an ``INSERT ... VALUES (...)`` as one statement
    per 500 rows, anything else as one statement per row."""
    chunks = inserts(sql, rows)
    if chunks is not None:
        return [(to_wire(text), params) for text, params in chunks]
    text = to_wire(sql)
    return [(text, row) for row in rows]


_NOTIFY = f"NOTIFY {NOTIFY_CHANNEL}".encode()


@lru_cache(maxsize=1024)
def _row_class(fields: tuple[bytes | None, ...]) -> type[tuple[Any, ...]]:
    """A tuple whose columns are read by name too (``row["state"]``), one class per
    statement's column names."""
    names = tuple((field or b"").decode() for field in fields)
    index = {name: i for i, name in enumerate(names)}
    at = tuple.__getitem__

    class NamedRow(tuple[Any, ...]):
        __slots__ = ()

        def __getitem__(self, key: Any) -> Any:
            return at(self, index[key] if key.__class__ is str else key)

        def keys(self) -> tuple[str, ...]:
            return names

    return NamedRow


def named_rows(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    """psycopg's row factory for what the store runs through psycopg itself (migrations,
    settings): rows read by column name, as the batches' rows (:class:`Wire`). The names
    come from the result's raw field names (``cursor.description`` would cost ten times
    as much, per statement)."""
    result = cursor.pgresult
    count = result.nfields if result is not None else 0
    return _row_class(tuple([result.fname(i) for i in range(count)]))


#: Each statement prepared is planned once, and for reading rows by key (see
#: :meth:`PostgresDb.plan_once`).
_PLAN_ONCE = "SET plan_cache_mode = force_generic_plan; SET random_page_cost = 1.1"


@lru_cache(maxsize=32)
def _column_names(count: int) -> str:
    """``column1, column2, ...``: the names :meth:`PostgresDb.values`' columns get."""
    return ", ".join(f"column{i}" for i in range(1, count + 1))


def describe_url(url: str) -> str:
    """``host:port/database`` of a connection URL, for messages (no password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable PostgreSQL URL"
    host = info.get("host") or "localhost"
    return f"host {host} port {info.get('port') or 5432} database {info.get('dbname') or '?'}"


class _Notifications:
    """A thread with its own connection that LISTENs and calls ``wake`` on each
    notification; reconnects with growing pauses when the server goes away."""

    def __init__(self, url: str, wake: Callable[[], None], own: Callable[[], int]) -> None:
        self.url = url
        self.wake = wake
        self.own = own  # our store connection's backend pid: its own news wakes nobody
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ordo-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pause = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    pause = 0.1
                    self.wake()  # anything added while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            if note.pid != self.own():
                                self.wake()
            except psycopg.Error as exc:
                logger.warning("notifications lost (%s); listening again in %.1fs", exc, pause)
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)

    def close(self) -> None:
        """Stop listening. Not waited for: the thread (a daemon) ends on its own within
        0.5 s, once its wait for a notification times out (waiting for it cost every
        ``ordo run`` on PostgreSQL 50 ms)."""
        self._stop.set()


#: A claim's one statement (:meth:`PostgresDb.take_ready`); ``{where}`` is on
#: ready's columns. One row of flags (the task run's columns NULL) when it takes none.
_TAKE = f"""
WITH r AS (
    DELETE FROM ready WHERE task_run_id IN (
        SELECT task_run_id FROM ready WHERE {{where}} AND concurrency_key IS NULL
        ORDER BY not_before, task_run_id LIMIT least(?, greatest(?, {FAIR_SHARE}))
        FOR UPDATE SKIP LOCKED)
    RETURNING task_run_id)
SELECT t.id AS task_run_id, t.execution_id, t.task_id, t.state, t.attempts, t.started_at,
       e.revision_id, e.state AS execution_state, k.keyed, k.secrets, k.changed,
       CASE WHEN t.id IS NOT NULL THEN nextval('attempts_id_seq') END AS attempt_id
FROM (SELECT EXISTS (SELECT 1 FROM ready WHERE concurrency_key IS NOT NULL AND {{where}}),
             {SECRETS_VERSION}) AS k (keyed, secrets, changed)
LEFT JOIN (r JOIN task_runs t ON t.id = r.task_run_id
           JOIN executions e ON e.id = t.execution_id) ON true
ORDER BY t.id
"""


_INTEGERS = frozenset({"BIGINT", "INTEGER"})


def array(values: Sequence[Any], sql_type: str) -> Any:
    """``values`` as a parameter cast to ``sql_type[]``: for numbers and text, the array's
    text form (``{1,2,NULL}``, ``{"a","b \\"c\\""}``), which psycopg passes as it is:
    adapting a list costs it about 1.5 µs more an element (3 columns of 14 rows: 89 µs
    against 27); other types as a list."""
    if sql_type in _INTEGERS:  # (a float is rounded, as PostgreSQL's cast does)
        if None not in values:  # (the usual case: no call of Python a value)
            return "{" + ",".join(map(str, map(round, values))) + "}"
        return "{" + ",".join("NULL" if v is None else str(round(v)) for v in values) + "}"
    if sql_type == "DOUBLE PRECISION":  # (+x: a bool as a number)
        if None not in values:
            return "{" + ",".join(map(str, map(operator.pos, values))) + "}"
        return "{" + ",".join("NULL" if v is None else str(+v) for v in values) + "}"
    if sql_type == "TEXT":
        return "{" + ",".join("NULL" if v is None else _quoted(str(v)) for v in values) + "}"
    return list(values)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PostgresDb(Db):
    """One PostgreSQL database."""

    backend = "postgresql"
    writable_ctes = True
    lock_rows = " FOR UPDATE"
    contains = "strpos({}, ?) > 0"

    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        super().__init__()
        self.url = url
        self._notify = False
        self._begun = True  # False: a transaction began, its BEGIN not sent yet
        #: statements of this transaction no one reads the answer of, not sent yet: they
        #: go with the next statement or the COMMIT (see :meth:`Db.later`)
        self._waiting: list[tuple[bytes, Sequence[Any], list[Any] | None]] = []
        self.connect_timeout = connect_timeout
        self._plan_once = False  # (see plan_once; a reconnection keeps it)
        try:
            self.conn = self._connect()
        except StoreUnavailable as exc:
            raise StoreError(str(exc)) from exc
        self.upgrade()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                row_factory=named_rows,
            )
            if self._plan_once:
                conn.execute(_PLAN_ONCE)
            self.wire = Wire(conn, _row_class)
            return conn
        except psycopg.Error as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            reason = " ".join(lines) or type(exc).__name__
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {describe_url(self.url)}: {reason}"
            ) from exc

    def plan_once(self) -> None:
        # psycopg prepares a statement run 5 times; the server would then still plan
        # some on every run (those over arrays of ids: a custom plan looks cheaper for
        # one id than the generic one for "some"), 0.1-0.3 ms each, a tenth of a chain
        # step. A worker's statements are keyed lookups: one plan serves. And reading a
        # row by its key costs about what reading it in a scan does (the pages are in
        # memory, or on an SSD): at the default random_page_cost (4), a claim's
        # statements scanned task_runs, ready and task_run_deps whole while the tables
        # were young (a few thousand rows), 170 rows per task run of PostgreSQL W2, and
        # their server used 10-13 µs more CPU per task run (103-106 against 93).
        self._plan_once = True
        self.conn.execute(_PLAN_ONCE)

    def reconnect(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        self._depth = 0
        self._notify = False
        self._begun = True
        self._waiting = []
        self.conn = self._connect()

    def listen(self, wake: Callable[[], None]) -> _Notifications:
        return _Notifications(self.url, wake, lambda: self.conn.info.backend_pid)

    def upgrade(self) -> int:
        """Apply pending migrations under an advisory lock; returns the version."""
        current = self.schema_version()
        if current >= migrate.LATEST["postgresql"]:
            return current
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            self.execute(migrate.CREATE_VERSION_TABLE.replace("REAL", "DOUBLE PRECISION"))
            current = self.schema_version()
            for m in migrate.migrations("postgresql"):
                if m.version <= current:
                    continue
                for statement in m.statements():
                    self.conn.execute(statement.encode())
                self.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, time.time()),
                )
                current = m.version
        return current

    def schema_version(self) -> int:
        if not self.scalar("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            return 0
        return int(self.scalar("SELECT max(version) FROM schema_migrations") or 0)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # the transaction's BEGIN and what waits go with this statement: one round trip
        return self._send([(to_wire(sql), params)])[0]

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        if not self._depth:  # no transaction: now
            self.execute(sql, params)
            return
        self._waiting.append((to_wire(sql), params, None))

    def soon(self, sql: str, params: Sequence[Any] = ()) -> Callable[[], list[Row]]:
        if not self._depth:
            return super().soon(sql, params)
        sent: list[Result] = []  # its result, once sent
        self._waiting.append((to_wire(sql), params, sent))

        def rows() -> list[Row]:
            if not sent:
                self._send([])
            found: list[Row] = sent[0].fetchall()
            return found

        return rows

    def later_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if not batch:
            return
        if not self._depth:
            self.executemany(sql, batch)
            return
        self._waiting.extend((text, params, None) for text, params in _many(sql, batch))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Many rows: an ``INSERT ... VALUES (...)`` becomes one statement per 500 rows
        (one plan); anything else is one statement per row; all in one round trip."""
        batch = list(rows)
        if batch:
            self._send(_many(sql, batch))

    def _send(self, statements: list[Statement]) -> list[Result]:
        """The transaction's BEGIN, unless sent, what waits, then ``statements``, in one
        round trip; the results of ``statements``."""
        head: list[Statement] = []
        if not self._begun:
            self._begun = True
            head.append((b"BEGIN", ()))
        waiting, self._waiting = self._waiting, []
        try:
            results = self.wire.run([*head, *((t, p) for t, p, _ in waiting), *statements])
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        for (_, _, sent), result in zip(waiting, results[len(head) :], strict=False):
            if sent is not None:
                sent.append(result)
        return results[len(head) + len(waiting) :]

    def _error(self, exc: psycopg.Error) -> StoreError:
        """A lost connection is StoreUnavailable (the worker reconnects); the rest is a
        StoreError naming the server."""
        where = describe_url(self.url)
        if isinstance(exc, psycopg.OperationalError) or self.conn.closed:
            return StoreUnavailable(f"PostgreSQL at {where} unavailable: {exc}")
        return StoreError(f"PostgreSQL error at {where}: {exc}")

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        row = self.execute(sql.rstrip() + " RETURNING id", params).fetchone()
        return int(row["id"])

    def _begin(self) -> None:
        """Sent with the transaction's first statement (nothing, when it has none)."""
        self._begun = False

    def _rollback(self) -> None:
        self._notify = False
        self._waiting = []
        if not self._begun:
            self._begun = True
            return
        with contextlib.suppress(psycopg.Error):
            self.wire.run([(b"ROLLBACK", ())])

    def take_ready(
        self, limit: int, where: str, params: list[Any], fair: tuple[int, float] | None = None
    ) -> list[Row]:
        """``DELETE ... RETURNING`` of rows locked with ``FOR UPDATE SKIP LOCKED`` (rows
        another claim holds are passed over), joined to what the claim needs."""
        return self.all(
            _TAKE.format(where=where), [*params, *self.shares(limit, params, fair), *params]
        )

    def values(self, rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
        """Arrays, one per column, and ``unnest``: the same text for any number of rows.
        One row (a chain's step): plain parameters, which psycopg adapts in a fraction of
        the time it takes for arrays (75 µs less for a row of 8)."""
        names = _column_names(len(types))
        if len(rows) == 1:
            casts = ", ".join(f"CAST(? AS {t})" for t in types)
            return f"(VALUES ({casts})) AS v({names})", list(rows[0])
        casts = ", ".join(f"CAST(? AS {t}[])" for t in types)
        columns = zip(*rows, strict=True)
        arrays = [array(column, t) for column, t in zip(columns, types, strict=True)]
        return f"unnest({casts}) AS v({names})", arrays

    def ids(self, values: Sequence[int]) -> tuple[str, list[Any]]:
        if len(values) == 1:  # (as in values)
            return "= CAST(? AS BIGINT)", [values[0]]
        return "= ANY(CAST(? AS BIGINT[]))", [array(values, "BIGINT")]

    def lock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (LIMIT_LOCKS, name))

    def notify_ready(self) -> None:
        self._notify = True

    def _commit(self) -> None:
        if not self._begun and not self._waiting:  # nothing sent: nothing to commit
            self._begun = True
            return
        notify, self._notify = self._notify, False
        # what waits, then the COMMIT: one round trip
        self._send([(_NOTIFY, ()), (b"COMMIT", ())] if notify else [(b"COMMIT", ())])

    def reclaim_space(self) -> Reclaimed:
        """Nothing: autovacuum makes the deleted rows' space reusable."""
        return Reclaimed(None, "on PostgreSQL, autovacuum makes the space reusable")

    def close(self) -> None:
        self.conn.close()
