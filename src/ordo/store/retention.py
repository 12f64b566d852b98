"""Saved executions and ``ordo gc``: the store's retention side, shared by both backends.

A saved execution has a unique name and is never deleted. ``ordo gc`` deletes whole
execution trees (a root execution and every child execution under it): a tree goes when
its root ended (a terminal state) before the cutoff and is not saved, and every execution
in it ended before the cutoff too and none is saved; otherwise the whole tree stays, so
no child outlives its parent and no child of a kept parent goes. Trees are found through
an index in (end time, id) order, ``batch`` roots at a time, each batch deleted with all
its rows in one transaction: memory stays bounded whatever the history's size.
"""

from __future__ import annotations

from collections.abc import Iterator

from ordo.errors import Conflict, NotFound
from ordo.model import State
from ordo.store.records import ExecutionRow, Reclaimed, Swept
from ordo.store.recovery import Recovery

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
GC_TREES = "SELECT count(*), min(ended_at), max(ended_at) FROM executions WHERE root_id {ids}"
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


class Retention(Recovery):
    """Saving executions and deleting old ones; :class:`~ordo.store.sql.SqlStore` adds
    the rest."""

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
        with self.transaction():
            root_id, current = self._saved_of(execution_id)
            self._one(LOCK_EXECUTION.format(lock=self.db.lock_rows), (root_id,))  # vs. gc
            if current is not None and current != name:
                raise Conflict(
                    f"execution {execution_id} is already saved as {current!r}; to save it "
                    f"as {name!r}, unsave it first: ordo executions unsave {execution_id}"
                )
            if current is None:
                other = self._one(SAVED_BY_NAME, (name,))
                if other is not None:
                    raise Conflict(
                        f"the name {name!r} is taken by execution {other[0]}: choose another "
                        f"name, or unsave it first: ordo executions unsave {other[0]}"
                    )
            if not self._execute(SAVE_EXECUTION, (name, description, now, execution_id)).rowcount:
                raise NotFound(f"execution {execution_id} not found")

    def unsave_execution(self, execution_id: int) -> str:
        """Forget an execution's saved name (gc may delete it again); the name it had."""
        with self.transaction():
            _, current = self._saved_of(execution_id)
            if current is None:
                raise NotFound(f"execution {execution_id} is not saved")
            self._execute(UNSAVE_EXECUTION, (execution_id,))
            return str(current)

    def _saved_of(self, execution_id: int) -> tuple[int, str | None]:
        row = self._one(SAVED_OF, (execution_id,))
        if row is None:
            raise NotFound(f"execution {execution_id} not found")
        return int(row[0]), row[1]

    def find_saved(self, name: str) -> ExecutionRow:
        """The execution saved as ``name``; NotFound names the saved ones."""
        row = self._one(SAVED_BY_NAME, (name,))
        if row is None:
            names = [str(r[0]) for r in self._all(SAVED_NAMES, (21,))]
            if not names:
                known = "no execution is saved: ordo executions save ID --name NAME"
            else:
                known = "saved: " + ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise NotFound(f"no saved execution named {name!r} ({known})")
        return self.get_execution(int(row[0]))

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
                with self.transaction():
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
        candidates = self._all(GC_CANDIDATES.format(lock=lock), params)
        nothing = Swept(0, {}, None, None)
        if not candidates:
            return nothing, after, False
        cursor = (float(candidates[-1][1]), int(candidates[-1][0]))
        more = len(candidates) == batch
        roots = [int(r[0]) for r in candidates]
        test, ids = self._ids(roots)
        kept = {r[0] for r in self._all(GC_KEPT_TREES.format(ids=test), [*ids, before])}
        roots = [r for r in roots if r not in kept]
        if not roots:
            return nothing, cursor, more
        test, ids = self._ids(roots)
        tree = self._one(GC_TREES.format(ids=test), ids)
        assert tree is not None
        rows: dict[str, int] = {}
        for table, where in GC_TABLES:
            condition = where.format(ids=test)
            if dry_run:
                found = self._one(f"SELECT count(*) FROM {table} WHERE {condition}", ids)
                rows[table] = int(found[0]) if found else 0
            else:
                deleted = self._execute(f"DELETE FROM {table} WHERE {condition}", ids)
                rows[table] = int(deleted.rowcount)
        executions = rows.pop("executions")
        return Swept(executions, rows, tree[1], tree[2], dev), cursor, more
