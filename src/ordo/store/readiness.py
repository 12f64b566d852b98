"""Where a task run becomes ready, and where it is skipped instead.

A task run is **ready** when it has a row in the ``ready`` table: workers claim from
there (:meth:`~ordo.store.sql.SqlStore.claim`). It gets one when

- its execution starts (or leaves QUEUED) and it waits for nothing
  (:meth:`Readiness._ready_roots`);
- the last task run it depends on ends well: SUCCESS, WARNING, SKIPPED, or FAILED with
  ``allow_failure`` (:meth:`Readiness._release_dependents`, and
  :meth:`Readiness._release_many` for a batch of successes);
- it is a for_each item, among the first ``concurrency`` of its task run's items
  (:meth:`Readiness._release_items`) or the next one when an item ends
  (:meth:`Readiness._release_next_item`), also after a restart;
- a retry is due (:meth:`Readiness._ready_again`, with ``not_before`` its delay), or a
  claim was handed back;
- a restart or a mark runs it again (:meth:`Readiness._ready_restarted`).

A task run that can no longer run is **skipped** instead, transitively
(:meth:`Readiness._skip`): the dependents of a task that failed (not allowed to), was
killed or was skipped; and, once an execution fails (without ``continue_on_error``),
every task run of it not started yet.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence

from ordo.model import State
from ordo.store import queries as q
from ordo.store.records import RecordResult
from ordo.store.transitions import UNSTARTED, Transitions


class Readiness(Transitions):
    """The ready list and skipping; :class:`~ordo.store.outcomes.Outcomes` decides when."""

    def __init__(self) -> None:
        super().__init__()
        self.readied = False  # ready rows were added since the caller last cleared it
        # task runs made ready in this transaction and not claimed in it again: other
        # workers are told of them at commit (a chain's next task, claimed by the
        # transaction that released it, wakes nobody)
        self._fresh: set[int] = set()

    @abstractmethod
    def _pending_down(self, ex_id: int) -> int:
        """One task run fewer left in the execution; how many remain."""

    @abstractmethod
    def _item_ended(self, fork_of: int, ex_id: int, now: float, result: RecordResult) -> None:
        """One item of the for_each task run ``fork_of`` ended."""

    def _made_ready(self, ids: Iterable[int] | None = None) -> None:
        """Ready rows were added: those of ``ids``, or (None) some not named."""
        self.readied = True
        if ids is None:
            self.db.notify_ready()
        else:
            self._fresh.update(ids)

    def _taken(self, ids: Iterable[int]) -> None:
        """These ready rows were claimed in this transaction."""
        self._fresh.difference_update(ids)

    def _ready_settled(self, committing: bool) -> None:
        """The transaction ends: wake other workers for what is still ready from it."""
        if committing and self._fresh:
            self.db.notify_ready()
        self._fresh.clear()

    # -- becoming ready ----------------------------------------------------------------
    def _ready_roots(self, ex_id: int, now: float) -> None:
        """The execution starts: every task run of it waiting for nothing is ready."""
        if self._execute(q.READY_STARTABLE, (now, ex_id)).rowcount:
            self._made_ready()

    def _release_dependents(self, tr_id: int, now: float) -> None:
        """``tr_id`` ended well: its dependents wait for one fewer; those waiting for
        nothing more are ready."""
        self._execute(q.DEPENDENTS_DOWN, (tr_id,))
        ready = [int(r[0]) for r in self._all(q.READY_DEPENDENTS, (now, tr_id))]
        if ready:
            self._made_ready(ready)

    def _release_many(self, upstream: Sequence[int], now: float) -> None:
        """:meth:`_release_dependents` for many task runs, in one statement (PostgreSQL)
        or two, whatever their number."""
        if not upstream:
            return
        test, params = self._ids(upstream)
        if self.db.writable_ctes:
            sql = q.DEPENDENTS_DOWN_AND_READY.format(ids=test)
            ready = [int(r[0]) for r in self._all(sql, [*params, *params, now])]
            if ready:
                self._made_ready(ready)
            return
        down = q.DEPENDENTS_DOWN_MANY.format(ids=test)
        released = [
            (tr_id, ex_id, now, queue, key)
            for tr_id, ex_id, queue, left, state, key in self._all(down, [*params, *params])
            if left == 0 and State(state) in UNSTARTED
        ]
        if released:
            self._executemany(q.INSERT_READY, released)
            self._made_ready(r[0] for r in released)

    def _release_items(self, fork_of: int, first: int, now: float) -> None:
        """A for_each task run forked: its first ``first`` items are ready."""
        self._execute(q.READY_ITEMS, (now, fork_of, first))
        self._made_ready()

    def _release_next_item(self, fork_of: int, now: float) -> None:
        """An item ended: the next one held back by ``concurrency`` (the lowest index
        not started and not ready; a restart's items too) is ready."""
        if self._execute(q.READY_NEXT_ITEM, (now, fork_of)).rowcount:
            self._made_ready()

    def _ready_again(self, tr_id: int, not_before: float) -> None:
        """A retry (due at ``not_before``) or a claim handed back: ready again."""
        self._execute(q.REQUEUE, (not_before, tr_id))
        self._made_ready()

    def _ready_restarted(
        self, tr_id: int, ex_id: int, queue: str, key: str | None, now: float
    ) -> None:
        """A restart or a mark runs ``tr_id`` again and it waits for nothing: ready."""
        self._execute(q.INSERT_READY, (tr_id, ex_id, now, queue, key))
        self._made_ready()

    # -- skipped instead ---------------------------------------------------------------
    def _skip_dependents(
        self, tr_id: int, ex_id: int, task_id: str, state: State, now: float, *, stop: bool = False
    ) -> None:
        """``tr_id`` ended badly (or answered STOP): its dependents are skipped,
        transitively."""
        verb = "stopped" if stop else "failed" if state is State.FAILED else state.value.lower()
        for (dep_id,) in self._all(q.DEPENDENTS, (tr_id,)):
            self._skip(dep_id, ex_id, f"dependency '{task_id}' {verb}", now)

    def _skip(
        self, tr_id: int, ex_id: int, reason: str, now: float, result: RecordResult | None = None
    ) -> None:
        """SKIP a not-started task run and, transitively, its dependents."""
        stack = [(tr_id, reason)]
        while stack:
            current, why = stack.pop()
            row = self._set_task_run_state(
                current, ex_id, State.SKIPPED, now, why, only_from=UNSTARTED
            )
            if row is None:
                continue
            self._execute(q.DELETE_READY, (current,))
            self._pending_down(ex_id)
            if row.fork_of is not None:
                self._item_ended(row.fork_of, ex_id, now, result or RecordResult())
                continue
            for (dep_id,) in self._all(q.DEPENDENTS, (current,)):
                stack.append((dep_id, f"dependency '{row.task_id}' was skipped"))

    def _skip_unstarted(
        self, ex_id: int, reason: str, now: float, result: RecordResult | None = None
    ) -> None:
        """The execution fails or stops: every task run of it not started is skipped."""
        for (tr_id,) in self._all(q.UNSTARTED_TASK_RUNS, (ex_id,)):
            self._skip(tr_id, ex_id, reason, now, result)
