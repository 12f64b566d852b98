"""Logs and retention: attempts' log lines, metrics and checks; saved executions and
``ordo gc``. Shared by both backends.

A saved execution has a unique name and is never deleted. ``ordo gc`` deletes whole
execution trees (a root execution and every child execution under it): a tree goes when
its root ended (a terminal state) before the cutoff and is not saved, and every execution
in it ended before the cutoff too and none is saved; otherwise the whole tree stays, so
no child outlives its parent and no child of a kept parent goes. Trees are found through
an index in (end time, id) order, ``batch`` roots at a time, each batch deleted with all
its rows in one transaction: memory stays bounded whatever the history's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from ordo.errors import Conflict, NotFound
from ordo.model import State
from ordo.store.db import Db, marks
from ordo.store.reads import Reads
from ordo.store.records import (
    CheckRow,
    ExecutionRow,
    LogLine,
    MetricRow,
    NewLog,
    Reclaimed,
    Swept,
)

_TERMINAL = ", ".join(f"'{s.value}'" for s in State if s.terminal)

SAVED_OF = "SELECT root_id, saved_name FROM executions WHERE id = ?"
#: ``{lock}`` is the backend's row lock (``FOR UPDATE`` on PostgreSQL; SQLite's write
#: transactions exclude each other already).
LOCK_EXECUTION = "SELECT id FROM executions WHERE id = ?{lock}"
SAVED_BY_NAME = "SELECT id FROM executions WHERE saved_name = ?"
SAVE_EXECUTION = """
UPDATE executions
SET saved_name = ?, saved_description = coalesce(?, saved_description),
    saved_at = coalesce(saved_at, ?)
WHERE id = ?
"""
UNSAVE_EXECUTION = """
UPDATE executions SET saved_name = NULL, saved_description = NULL, saved_at = NULL
WHERE id = ?
"""
SAVED_NAMES = """
SELECT saved_name FROM executions WHERE saved_name IS NOT NULL ORDER BY saved_name LIMIT ?
"""

#: The next ``batch`` candidate roots after the cursor ``(ended_at, id)``: a range of the
#: ``executions_retention`` index.
GC_CANDIDATES = f"""
SELECT id, ended_at FROM executions
WHERE dev = ? AND parent_id IS NULL AND saved_name IS NULL AND ended_at IS NOT NULL
  AND ended_at < ? AND (ended_at, id) > (?, ?) AND state IN ({_TERMINAL})
ORDER BY ended_at, id LIMIT ?{{lock}}
"""
#: Roots among the candidates whose tree must stay: an execution in it still runs, ended
#: after the cutoff, or is saved.
GC_KEPT_TREES = f"""
SELECT DISTINCT root_id FROM executions
WHERE root_id {{ids}}
  AND (ended_at IS NULL OR ended_at >= ? OR saved_name IS NOT NULL
       OR state NOT IN ({_TERMINAL}))
"""
GC_TREES = """
SELECT count(*) AS n, min(ended_at) AS oldest, max(ended_at) AS newest FROM executions
WHERE root_id {ids}
"""
_TREE = "SELECT id FROM executions WHERE root_id {ids}"
#: Every table with rows of an execution, and which rows belong to the trees. Referencing
#: tables come before the tables they reference (PostgreSQL checks foreign keys); the
#: executions themselves go last. A new table keyed by execution must be added here
#: (tests/store/test_contract_retention.py checks that every table is accounted for).
GC_TABLES = (
    (
        "task_run_deps",  # both task runs of a dependency are of one execution
        f"upstream_id IN (SELECT id FROM task_runs WHERE execution_id IN ({_TREE}))",
    ),
    ("ready", f"execution_id IN ({_TREE})"),
    ("outputs", f"execution_id IN ({_TREE})"),
    ("metrics", f"execution_id IN ({_TREE})"),
    ("logs", f"execution_id IN ({_TREE})"),
    ("state_history", f"execution_id IN ({_TREE})"),
    ("checks", f"execution_id IN ({_TREE})"),
    ("trigger_ticks", f"execution_id IN ({_TREE})"),
    ("notifications", f"execution_id IN ({_TREE})"),
    ("steps", f"execution_id IN ({_TREE})"),
    ("attempts", f"execution_id IN ({_TREE})"),
    ("task_runs", f"execution_id IN ({_TREE})"),
    ("executions", "root_id {ids}"),
)
INSERT_LOG = """
INSERT INTO logs (execution_id, attempt_id, at, stream, line) VALUES (?, ?, ?, ?, ?)
"""
LOGS = """
SELECT id, execution_id, attempt_id, at, stream, line FROM logs
WHERE execution_id = ? AND id > ? ORDER BY id LIMIT ?
"""
METRICS = """
SELECT attempt_id, task_run_id, name, kind, value, tags, at FROM metrics
WHERE execution_id = ? ORDER BY id
"""
CHECKS = """
SELECT attempt_id, task_run_id, phase, position, kind, ok, message, output, started_at,
       ended_at
FROM checks WHERE execution_id = ? ORDER BY id
"""
#: the log lines of some attempts (``{}``: their marks)
LOGS_OF_ATTEMPTS = """
SELECT id, execution_id, attempt_id, at, stream, line FROM logs
WHERE execution_id = ? AND attempt_id IN ({}) AND id > ? ORDER BY id LIMIT ?
"""
#: Tables that hold no execution's rows: gc leaves them alone.
NOT_EXECUTION_TABLES = (
    "flow_revisions",
    "workers",
    "connections",
    "schema_migrations",
    "flows",
    "schedules",
    "leases",
    "api_tokens",
    "secrets",
    "flow_schedules",
    "events",
)


class Logs:
    """Attempts' log lines, metrics and check results."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def add_logs(self, lines: Sequence[NewLog]) -> None:
        if not lines:
            return
        with self.db.transaction():
            self.db.later_many(
                INSERT_LOG,
                [(ln.execution_id, ln.attempt_id, ln.at, ln.stream, ln.line) for ln in lines],
            )

    def metrics(self, execution_id: int) -> list[MetricRow]:
        return [
            MetricRow(
                r["attempt_id"],
                r["task_run_id"],
                r["name"],
                r["kind"],
                r["value"],
                json.loads(r["tags"]),
                r["at"],
            )
            for r in self.db.all(METRICS, (execution_id,))
        ]

    def checks(self, execution_id: int) -> list[CheckRow]:
        """The results of every pre and post check that ran in the execution, in the
        order they ran (attempt by attempt)."""
        return [
            CheckRow(
                r["attempt_id"],
                r["task_run_id"],
                r["phase"],
                int(r["position"]),
                r["kind"],
                bool(r["ok"]),
                r["message"],
                r["output"],
                r["started_at"],
                r["ended_at"],
            )
            for r in self.db.all(CHECKS, (execution_id,))
        ]

    def logs(
        self,
        execution_id: int,
        *,
        attempt_ids: Sequence[int] | None = None,
        after_id: int = 0,
        limit: int = 10_000,
    ) -> list[LogLine]:
        """Log lines in order (of ``attempt_ids`` only, when given), ``limit`` at a time;
        page with ``after_id``."""
        if attempt_ids is None:
            rows = self.db.all(LOGS, (execution_id, after_id, limit))
        elif not attempt_ids:
            rows = []
        else:
            sql = LOGS_OF_ATTEMPTS.format(marks(attempt_ids))
            rows = self.db.all(sql, (execution_id, *attempt_ids, after_id, limit))
        return [
            LogLine(r["id"], r["execution_id"], r["attempt_id"], r["at"], r["stream"], r["line"])
            for r in rows
        ]


class Retention:
    """Saving executions and deleting old ones."""

    def __init__(self, db: Db, reads: Reads) -> None:
        self.db = db
        self.reads = reads

    def reclaim_space(self) -> Reclaimed:
        """Give the space of deleted rows back (SQLite: ``PRAGMA incremental_vacuum``)."""
        return self.db.reclaim_space()

    # -- saved executions -----------------------------------------------------------
    def save_execution(
        self, execution_id: int, name: str, description: str | None, now: float
    ) -> None:
        """Save an execution under ``name`` (unique). Saving it again under the same name
        changes its description (when given); under another name it is a Conflict, as is
        a name another execution has."""
        with self.db.transaction():
            root_id, current = self._saved_of(execution_id)
            self.db.one(LOCK_EXECUTION.format(lock=self.db.lock_rows), (root_id,))  # vs. gc
            if current is not None and current != name:
                raise Conflict(
                    f"execution {execution_id} is already saved as {current!r}; to save it "
                    f"as {name!r}, unsave it first: ordo executions unsave {execution_id}"
                )
            if current is None:
                other = self.db.one(SAVED_BY_NAME, (name,))
                if other is not None:
                    raise Conflict(
                        f"the name {name!r} is taken by execution {other['id']}: choose another "
                        f"name, or unsave it first: ordo executions unsave {other['id']}"
                    )
            if not self.db.execute(SAVE_EXECUTION, (name, description, now, execution_id)).rowcount:
                raise NotFound(f"execution {execution_id} not found")

    def unsave_execution(self, execution_id: int) -> str:
        """Forget an execution's saved name (gc may delete it again); the name it had."""
        with self.db.transaction():
            _, current = self._saved_of(execution_id)
            if current is None:
                raise NotFound(f"execution {execution_id} is not saved")
            self.db.execute(UNSAVE_EXECUTION, (execution_id,))
            return str(current)

    def _saved_of(self, execution_id: int) -> tuple[int, str | None]:
        row = self.db.one(SAVED_OF, (execution_id,))
        if row is None:
            raise NotFound(f"execution {execution_id} not found")
        return int(row["root_id"]), row["saved_name"]

    def find_saved(self, name: str) -> ExecutionRow:
        """The execution saved as ``name``; NotFound names the saved ones."""
        row = self.db.one(SAVED_BY_NAME, (name,))
        if row is None:
            names = [str(r["saved_name"]) for r in self.db.all(SAVED_NAMES, (21,))]
            if not names:
                known = "no execution is saved: ordo executions save ID --name NAME"
            else:
                known = "saved: " + ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise NotFound(f"no saved execution named {name!r} ({known})")
        return self.reads.get_execution(int(row["id"]))

    # -- gc ---------------------------------------------------------------------------
    def collect_garbage(
        self,
        ended_before: float,
        dev_ended_before: float,
        *,
        batch: int = 500,
        dry_run: bool = False,
    ) -> Iterator[Swept]:
        """Delete the trees of executions that ended before ``ended_before`` (dev ones:
        ``dev_ended_before``) with all their rows, ``batch`` trees per transaction, and
        yield what each batch deleted. With ``dry_run`` count them and delete nothing."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        yield from self._sweep(False, ended_before, batch, dry_run)
        yield from self._sweep(True, dev_ended_before, batch, dry_run)

    def _sweep(self, dev: bool, before: float, batch: int, dry_run: bool) -> Iterator[Swept]:
        after: tuple[float, int] = (-1.0, 0)
        while True:
            if dry_run:
                swept, after, more = self._sweep_batch(dev, before, after, batch, dry_run)
            else:
                with self.db.transaction():
                    swept, after, more = self._sweep_batch(dev, before, after, batch, dry_run)
            if swept.executions:
                yield swept
            if not more:
                return

    def _sweep_batch(
        self, dev: bool, before: float, after: tuple[float, int], batch: int, dry_run: bool
    ) -> tuple[Swept, tuple[float, int], bool]:
        """One batch: the swept trees, the cursor for the next batch, whether there may
        be more. The candidate roots are locked first (PostgreSQL), so that a restart or
        a save in their trees waits for this transaction or is seen by it."""
        lock = "" if dry_run else self.db.lock_rows
        params = (int(dev), before, after[0], after[1], batch)
        candidates = self.db.all(GC_CANDIDATES.format(lock=lock), params)
        nothing = Swept(0, {}, None, None)
        if not candidates:
            return nothing, after, False
        cursor = (float(candidates[-1]["ended_at"]), int(candidates[-1]["id"]))
        more = len(candidates) == batch
        roots = [int(r["id"]) for r in candidates]
        test, ids = self.db.ids(roots)
        kept = {r["root_id"] for r in self.db.all(GC_KEPT_TREES.format(ids=test), [*ids, before])}
        roots = [r for r in roots if r not in kept]
        if not roots:
            return nothing, cursor, more
        test, ids = self.db.ids(roots)
        tree = self.db.one(GC_TREES.format(ids=test), ids)
        assert tree is not None
        rows: dict[str, int] = {}
        for table, where in GC_TABLES:
            condition = where.format(ids=test)
            if dry_run:
                found = self.db.scalar(f"SELECT count(*) FROM {table} WHERE {condition}", ids)
                rows[table] = int(found or 0)
            else:
                deleted = self.db.execute(f"DELETE FROM {table} WHERE {condition}", ids)
                rows[table] = int(deleted.rowcount)
        executions = rows.pop("executions")
        return Swept(executions, rows, tree["oldest"], tree["newest"], dev), cursor, more
