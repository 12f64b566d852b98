"""The embedded SQLite backend: WAL, ``synchronous=NORMAL``, a busy timeout, and every
write transaction opened with ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ordo.errors import NotFound, StoreError
from ordo.store import migrate
from ordo.store.db import FAIR_SHARE, PARAMETERS, Db, Row, inserts
from ordo.store.records import Reclaimed
from ordo.store.secrets import SECRETS_VERSION


class _Wakers:
    """In-process wake-ups: stores of one file in this process tell each other's
    listeners when a commit made task runs ready (other processes poll)."""

    cross_process = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[str, list[tuple[object, Callable[[], None]]]] = {}

    def add(self, path: str, owner: object, wake: Callable[[], None]) -> _Listening:
        with self._lock:
            self._by_path.setdefault(path, []).append((owner, wake))
        return _Listening(self, path, owner, wake)

    def remove(self, path: str, owner: object, wake: Callable[[], None]) -> None:
        with self._lock:
            found = self._by_path.get(path, [])
            if (owner, wake) in found:
                found.remove((owner, wake))

    def wake(self, path: str, owner: object) -> None:
        with self._lock:
            found = [w for o, w in self._by_path.get(path, []) if o is not owner]
        for wake in found:
            wake()


class _Listening:
    cross_process = False

    def __init__(self, wakers: _Wakers, path: str, owner: object, wake: Callable[[], None]):
        self._args = (wakers, path, owner, wake)

    def close(self) -> None:
        wakers, path, owner, wake = self._args
        wakers.remove(path, owner, wake)


_WAKERS = _Wakers()

#: A claim's one statement (:meth:`SqliteDb.take_ready`); ``{where}`` is on ready's
#: columns. RETURNING may name only the deleted table: the rest comes by subqueries.
_TAKE = (
    "DELETE FROM ready WHERE task_run_id IN (SELECT task_run_id FROM ready "
    "WHERE {where} AND concurrency_key IS NULL ORDER BY not_before, task_run_id "
    f"LIMIT min(?, max(?, {FAIR_SHARE}))) "
    "RETURNING task_run_id, execution_id, "
    + ", ".join(
        f"(SELECT {column} FROM task_runs t WHERE t.id = ready.task_run_id) AS {column}"
        for column in ("task_id", "state", "attempts", "started_at")
    )
    + ", (SELECT revision_id FROM executions e WHERE e.id = ready.execution_id) AS revision_id"
    + ", (SELECT state FROM executions e WHERE e.id = ready.execution_id) AS execution_state"
    + ", EXISTS (SELECT 1 FROM ready WHERE concurrency_key IS NOT NULL AND {where}) AS keyed, "
    + SECRETS_VERSION
    + ", NULL AS attempt_id"
)


class SqliteDb(Db):
    """One SQLite file (created, with its folder, when missing)."""

    backend = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = str(path)
        self._notify = False
        self._key = self.path if self.path == ":memory:" else os.path.realpath(self.path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout,
            )
            self.conn.row_factory = sqlite3.Row
            if self.conn.execute("PRAGMA page_count").fetchone()["page_count"] == 0:
                # a new file: deleted rows' pages can be given back (ordo gc); this
                # must come before WAL and any table
                self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._wal(busy_timeout)
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self.upgrade()

    def _wal(self, patience: float) -> None:
        """Switch to WAL. A new file being switched by another process at the same moment
        answers "locked" without waiting, so try again for a while."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def upgrade(self) -> int:
        """Apply pending migrations; returns the schema version now in force."""
        current = self.schema_version()
        if current >= migrate.LATEST["sqlite"]:
            return current
        with self.transaction():
            self.conn.execute(migrate.CREATE_VERSION_TABLE)
            current = self.schema_version()
            for m in migrate.migrations("sqlite"):
                if m.version <= current:
                    continue
                for statement in m.statements():
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, time.time()),
                )
                current = m.version
        return current

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT max(version) AS v FROM schema_migrations").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row["v"] or 0)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.path}: {exc}") from exc
        except OverflowError:
            raise NotFound("a number that large is no id here (at most 2**63 - 1)") from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Many rows: an ``INSERT ... VALUES (...)`` becomes one statement per 500 rows;
        anything else is one prepared statement stepped once per row."""
        batch = list(rows)
        if not batch:
            return
        chunks = inserts(sql, batch, self._parameters())
        if chunks is not None:
            for text, params in chunks:
                self.execute(text, params)
            return
        try:
            self.conn.executemany(sql, batch)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.path}: {exc}") from exc

    def _parameters(self) -> int:
        """The parameters one statement may take: this build's limit (32,766 by
        default, 999 in old ones) less a few for the statement's own."""
        return min(PARAMETERS, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 16)

    def rows_at_once(self, columns: int) -> int:
        return max(1, self._parameters() // columns)

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.execute(sql, params).lastrowid or 0)

    def _begin(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def lock(self, name: str) -> None:
        """Nothing to take: ``BEGIN IMMEDIATE`` holds the database's one write lock."""

    def _commit(self) -> None:
        self.execute("COMMIT")
        if self._notify:
            self._notify = False
            _WAKERS.wake(self._key, self)

    def notify_ready(self) -> None:
        self._notify = True

    def listen(self, wake: Callable[[], None]) -> _Listening:
        """``wake`` is called when another store of this file in this process commits
        ready task runs; other processes are not heard (poll for them)."""
        return _WAKERS.add(self._key, self, wake)

    def _rollback(self) -> None:
        self._notify = False
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def take_ready(
        self, limit: int, where: str, params: list[Any], fair: tuple[int, float] | None = None
    ) -> list[Row]:
        """``DELETE ... RETURNING`` under ``BEGIN IMMEDIATE`` (the database's one write
        lock), what the claim needs read by subqueries of its RETURNING."""
        rows = self.all(
            _TAKE.format(where=where), [*params, *self.shares(limit, params, fair), *params]
        )
        return sorted(rows, key=lambda r: int(r["task_run_id"]))

    def reclaim_space(self) -> Reclaimed:
        """``PRAGMA incremental_vacuum``: the free pages go back to the file system (at
        the next checkpoint). A file created without ``auto_vacuum=INCREMENTAL`` (before
        ordo set it) keeps its free pages for new rows until one ``VACUUM``."""
        if self.scalar("PRAGMA auto_vacuum") != 2:
            return Reclaimed(
                None,
                "this database file was created without auto_vacuum=INCREMENTAL: its free "
                "pages are reused for new rows; to shrink it, run once: sqlite3 "
                f"{self.path} 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'",
            )
        size = self.scalar("PRAGMA page_size")
        before = self.scalar("PRAGMA freelist_count")
        try:
            # executescript steps the pragma to its end (execute frees one page a step)
            self.conn.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(PASSIVE);")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.path}: {exc}") from exc
        after = self.scalar("PRAGMA freelist_count")
        freed = (before - after) * size if size and before is not None and after is not None else 0
        return Reclaimed(max(freed, 0), "incremental vacuum")

    def close(self) -> None:
        self.conn.close()
