"""Where a task run becomes ready: the ready list, and whom to tell of it.

A task run is **ready** when it has a row in the ``ready`` table: workers claim from
there (:meth:`~ordo.store.taskruns.TaskRuns.claim`). It gets one when

- its execution starts (or leaves QUEUED) and it waits for nothing
  (:meth:`Readiness.ready_roots`);
- the last task run it depends on ends well: SUCCESS, WARNING, SKIPPED, or FAILED with
  ``allow_failure`` (:meth:`Readiness.release_dependents`; for a batch of successes,
  :meth:`Readiness.release_many`, or on PostgreSQL the statement that records them:
  :data:`RELEASE_CTES`);
- it is a for_each item, among the first ``concurrency`` of its task run's items
  (:meth:`Readiness.release_items`) or the next one when an item ends
  (:meth:`Readiness.release_next_items`), also after a restart;
- a retry is due (:meth:`Readiness.ready_again`, with ``not_before`` its delay), or a
  claim was handed back;
- a restart or a mark runs it again (:meth:`Readiness.ready_restarted`).

A task run that can no longer run is **skipped** instead, transitively
(:meth:`~ordo.store.outcomes.Outcomes.skip`): the dependents of a task that failed (not
allowed to), was killed or was skipped; and, once an execution fails (without
``continue_on_error``), every task run of it not started yet.

Ready rows made in a transaction are told of when it commits (a hook on the Db): other
workers are woken (PostgreSQL notifies, SQLite wakes this process's listeners), except
for rows claimed again in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ordo.model import State
from ordo.store import queries as q
from ordo.store.db import Db
from ordo.store.transitions import UNSTARTED

# -- batches: one statement for many rows. ``{values}`` is a table of rows (columns
# column1, column2, ...) and ``{ids}`` a membership test, both from the Db (VALUES and IN
# lists on SQLite; unnest() and = ANY() of arrays on PostgreSQL, so that the text is the
# same whatever the batch size and the server can keep its plan).
DEPENDENTS_DOWN_MANY = """
UPDATE task_runs
SET pending_deps = pending_deps - (
    SELECT count(*) FROM task_run_deps d
    WHERE d.task_run_id = task_runs.id AND d.upstream_id {ids})
WHERE id IN (SELECT task_run_id FROM task_run_deps WHERE upstream_id {ids})
RETURNING id, execution_id, queue, pending_deps, state, concurrency_key
"""
#: the ready rows of the task runs ``down`` counted down that wait for nothing more
#: (its one parameter: their ``not_before``); the task runs made ready
_READY_DOWN = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM down
WHERE pending_deps = 0 AND state IN ('CREATED', 'RESTARTED')
RETURNING task_run_id
"""
#: PostgreSQL: :data:`DEPENDENTS_DOWN_MANY` and the ready rows of those waiting for
#: nothing more, as common table expressions of the statement that ends task runs well
#: (:meth:`~ordo.store.transitions.Transitions.succeeded`), whose CTE ``u`` returns them
#: (``id``, ``fork_of``: a for_each item has no dependents); CTE ``readied`` returns the
#: task runs made ready. One parameter, the ready rows' ``not_before``.
_ENDED_WELL = "IN (SELECT id FROM u WHERE fork_of IS NULL)"
RELEASE_CTES = f"""down AS ({DEPENDENTS_DOWN_MANY.format(ids=_ENDED_WELL)}),
readied AS ({_READY_DOWN})"""
INSERT_READY = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
VALUES (?, ?, ?, ?, ?)
"""
READY_DEPENDENTS = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT t.id, t.execution_id, ?, t.queue, t.concurrency_key
FROM task_run_deps d JOIN task_runs t ON t.id = d.task_run_id
WHERE d.upstream_id = ? AND t.pending_deps = 0 AND t.state IN ('CREATED', 'RESTARTED')
RETURNING task_run_id
"""
#: for_each task runs forked, rows ``(id, first)``: their first items ready
READY_ITEMS = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT t.id, t.execution_id, ?, t.queue, t.concurrency_key
FROM task_runs t JOIN {values} ON t.fork_of = v.column1
WHERE t.fork_index < CAST(v.column2 AS BIGINT)
"""
#: items ended, rows ``(for_each task run, how many)``: as many of the next (the lowest
#: indexes not started and not ready) ready
READY_NEXT_ITEMS = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM (
    SELECT t.id, t.execution_id, t.queue, t.concurrency_key, v.column2 AS room,
        row_number() OVER (PARTITION BY t.fork_of ORDER BY t.fork_index) AS n
    FROM task_runs t JOIN {values} ON t.fork_of = v.column1
    WHERE t.state IN ('CREATED', 'RESTARTED')
      AND NOT EXISTS (SELECT 1 FROM ready r WHERE r.task_run_id = t.id)) AS next
WHERE n <= CAST(room AS BIGINT)
"""
#: An execution starts (or leaves QUEUED): every task run waiting for nothing is ready.
READY_STARTABLE = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM task_runs
WHERE execution_id = ? AND state = 'CREATED' AND pending_deps = 0 AND fork_of IS NULL
  AND parent_run_id IS NULL
"""
REQUEUE = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM task_runs WHERE id = ?
"""
REQUEUE_MANY = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT t.id, t.execution_id, CAST(v.column2 AS DOUBLE PRECISION), t.queue, t.concurrency_key
FROM {values} JOIN task_runs t ON t.id = CAST(v.column1 AS BIGINT)
"""


class Readiness:
    """The ready list; :class:`~ordo.store.outcomes.Outcomes` decides when a task run
    gets a row there (or is skipped instead)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        db.on_commit(lambda: self._ready_settled(committing=True))
        db.on_rollback(lambda: self._ready_settled(committing=False))
        self._readied = False
        # task runs made ready in this transaction and not claimed in it again: other
        # workers are told of them at commit (a chain's next task, claimed by the
        # transaction that released it, wakes nobody)
        self._fresh: set[int] = set()
        self._taken: set[int] = set()  # claimed in this transaction
        #: made ready and not claimed by this transaction, where a claim may take them
        #: (rows a claim saw and left, a key's held by others say, are not counted; the
        #: caller clears it)
        self.untaken = False

    @property
    def readied(self) -> bool:
        """Ready rows were added since the caller last cleared this."""
        return self._readied

    @readied.setter
    def readied(self, value: bool) -> None:
        self._readied = value

    def made_ready(self, ids: Iterable[int] | None = None, *, seen: bool = False) -> None:
        """Ready rows were added: those of ``ids``, or (None) some not named. ``seen``:
        by a statement sent before the last claim (which saw them: see ``untaken``)."""
        self._readied = True
        if ids is None:
            self.db.notify_ready()
            self.untaken = True
        else:
            fresh = [i for i in ids if i not in self._taken]
            self._fresh.update(fresh)
            self.untaken = self.untaken or (bool(fresh) and not seen)

    def taken(self, ids: Iterable[int]) -> None:
        """These ready rows were claimed in this transaction."""
        self._taken.update(ids)
        self._fresh.difference_update(self._taken)

    def _ready_settled(self, committing: bool) -> None:
        """The transaction ends: wake other workers for what is still ready from it."""
        if committing and self._fresh:
            self.db.notify_ready()
        self._fresh.clear()
        self._taken.clear()

    # -- becoming ready ----------------------------------------------------------------
    def ready_roots(self, ex_id: int, now: float) -> None:
        """The execution starts: every task run of it waiting for nothing is ready."""
        if self.db.execute(READY_STARTABLE, (now, ex_id)).rowcount:
            self.made_ready()

    def release_dependents(self, tr_id: int, now: float) -> None:
        """``tr_id`` ended well: its dependents wait for one fewer; those waiting for
        nothing more are ready."""
        self.db.execute(q.DEPENDENTS_DOWN, (tr_id,))
        ready = [int(r["task_run_id"]) for r in self.db.all(READY_DEPENDENTS, (now, tr_id))]
        if ready:
            self.made_ready(ready)

    def release_many(self, upstream: Sequence[int], now: float) -> None:
        """:meth:`release_dependents` for many task runs, in two statements whatever
        their number (on PostgreSQL the statement that ends them does it: see
        :data:`RELEASE_CTES`)."""
        if not upstream:
            return
        test, params = self.db.ids(upstream)
        down = DEPENDENTS_DOWN_MANY.format(ids=test)
        released = [
            (r["id"], r["execution_id"], now, r["queue"], r["concurrency_key"])
            for r in self.db.all(down, [*params, *params])
            if r["pending_deps"] == 0 and State(r["state"]) in UNSTARTED
        ]
        if released:
            self.db.executemany(INSERT_READY, released)
            self.made_ready(r[0] for r in released)

    def release_items(self, forks: Sequence[tuple[int, int]], now: float) -> None:
        """for_each task runs forked, rows ``(id, first)``: the first ``first`` items of
        each are ready, in one statement."""
        if forks:
            table, params = self.db.values(forks, ("BIGINT", "BIGINT"))
            self.db.execute(READY_ITEMS.format(values=table), [now, *params])
            self.made_ready()

    def release_next_items(self, forks: Sequence[tuple[int, int]], now: float) -> None:
        """Items ended, rows ``(for_each task run, how many)``: as many of the next held
        back by ``concurrency`` (the lowest indexes not started and not ready; a
        restart's items too) are ready, in one statement."""
        if not forks:
            return
        table, params = self.db.values(forks, ("BIGINT", "BIGINT"))
        if self.db.execute(READY_NEXT_ITEMS.format(values=table), [now, *params]).rowcount:
            self.made_ready()

    def ready_again_many(self, rows: Sequence[tuple[int, float]]) -> None:
        """Retries: each task run ``(id, not_before)`` ready again, in one statement."""
        if rows:
            table, params = self.db.values(rows, ("BIGINT", "DOUBLE PRECISION"))
            self.db.execute(REQUEUE_MANY.format(values=table), params)
            self.made_ready()

    def ready_again(self, tr_id: int, not_before: float) -> None:
        """A retry (due at ``not_before``) or a claim handed back: ready again."""
        self.db.execute(REQUEUE, (not_before, tr_id))
        self.made_ready()

    def ready_restarted(
        self, tr_id: int, ex_id: int, queue: str, key: str | None, now: float
    ) -> None:
        """A restart or a mark runs ``tr_id`` again and it waits for nothing: ready."""
        self.db.execute(INSERT_READY, (tr_id, ex_id, now, queue, key))
        self.made_ready()

    # -- skipped instead ---------------------------------------------------------------
