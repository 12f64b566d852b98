"""Concurrency limits, decided in the store's transactions so that they hold whatever
the number of processes: a flow's ``concurrency`` (executions of the flow at once) and a
task's ``concurrency_key`` (task runs sharing the key at once, in the whole store).

Both count what runs (rows in RUNNING or KILLING) under a lock named after the flow or
the key, taken before counting and held to the commit: ``BEGIN IMMEDIATE`` already is
one on SQLite; PostgreSQL takes an advisory transaction lock (:meth:`_lock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ordo.model import Flow, State
from ordo.store import queries as q
from ordo.store.db import Row
from ordo.store.outcomes import Outcomes
from ordo.store.records import RecordResult
from ordo.store.transitions import UNSTARTED

#: An execution no worker has taken up yet: killed, it ends at once.
_NOT_CLAIMED = frozenset({State.CREATED, State.QUEUED})


class Limits(Outcomes):
    """Admitting executions under their flow's limit and claiming keyed task runs."""

    def __init__(self) -> None:
        super().__init__()
        #: the last claim left ready task runs waiting for a concurrency key's slot
        self.key_blocked = False

    # -- flows -----------------------------------------------------------------------
    def _admission(self, flow: Flow, ex_id: int) -> tuple[State, str] | None:
        """None when execution ``ex_id`` of ``flow`` may run now; else what it becomes
        (QUEUED, KILLED for ``cancel``, FAILED for ``fail``) and why."""
        limit = flow.concurrency
        if limit is None:
            return None
        ending = self.policy.admission(limit, self._active(flow, exclude=ex_id), flow.key)
        return None if ending is None else (ending.state, ending.reason or "")

    def _active(self, flow: Flow, exclude: int = 0) -> int:
        """Executions of ``flow`` admitted and not ended (CREATED ones too: admitted,
        not claimed yet), but ``exclude``."""
        self._lock(f"flow:{flow.key}")
        row = self._one(q.ACTIVE_EXECUTIONS, (flow.namespace, flow.id, exclude))
        return int(row[0]) if row else 0

    def _begin_running(self, ex_id: int, flow: Flow, now: float, result: RecordResult) -> None:
        """Every task run waiting for nothing is ready. A new execution stays CREATED
        until a worker claims its first task run; a QUEUED one goes RUNNING now."""
        if self._execution_state(ex_id) is State.QUEUED:
            old = self._set_execution_state(ex_id, State.RUNNING, now, None)
            if old is None:
                return
            # its waiting reason goes, its timeout starts
            timeout = self.reads.run_timeout(ex_id, flow)
            deadline = now + timeout if timeout else None
            self._execute(q.EXECUTION_DEQUEUED, (deadline, ex_id))
        self._ready_roots(ex_id, now)
        self._maybe_end(ex_id, now, result)

    def _turn_away(
        self, ex_id: int, state: State, why: str, now: float, result: RecordResult
    ) -> None:
        """End an execution that never ran (refused or cancelled by its flow's limit,
        killed while QUEUED): its task runs end KILLED (or SKIPPED when it FAILED)."""
        if self._set_execution_state(ex_id, state, now, why) is None:
            return
        each = State.KILLED if state is State.KILLED else State.SKIPPED
        for (tr_id,) in self._all(q.UNSTARTED_TASK_RUNS, (ex_id,)):
            self._set_task_run_state(tr_id, ex_id, each, now, why, only_from=UNSTARTED)
        self._execute(q.DELETE_READY_OF, (ex_id,))
        self._execute(q.EXECUTION_ENDED, (now, why, None, ex_id))
        result.ended_executions[ex_id] = state
        self._child_ended(ex_id, state, why, None, now, result)

    def _admit_queued(self, flow: Flow, now: float, result: RecordResult) -> None:
        """An execution of ``flow`` ended: start the oldest QUEUED ones it has room for."""
        limit = flow.concurrency
        if limit is None:
            return
        running = self._active(flow)
        while running < limit.limit:
            row = self._one(q.OLDEST_QUEUED, (flow.namespace, flow.id))
            if row is None:
                return
            self._begin_running(int(row[0]), self.flows.flow_of(int(row[1])), now, result)
            running += 1

    def _kill_queued(
        self,
        ex_id: int,
        reason: str,
        now: float,
        result: RecordResult,
        waiting: frozenset[State] = frozenset({State.QUEUED}),
    ) -> bool:
        """Kill an execution still waiting (for its flow's limit; or, in ``waiting``,
        for a worker); False if it is not."""
        if self._execution_state(ex_id) not in waiting:
            return False
        self._turn_away(ex_id, State.KILLED, reason, now, result)
        return True

    # -- stopping --------------------------------------------------------------------
    def _kill_tree(self, ex_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Kill an execution and, first, its running children: RUNNING -> KILLING; task
        runs not started end KILLED; task runs between attempts (a retry waiting) end
        KILLED; running attempts are left to their workers, which see KILLING and stop
        them; the execution ends KILLED when the last task run has ended."""
        result.stopped.add(ex_id)
        for (child_id,) in self._all(q.RUNNING_CHILDREN, (ex_id,)):
            self._kill_tree(child_id, f"parent execution {ex_id} killed: {reason}", now, result)
        if self._kill_queued(ex_id, reason, now, result, _NOT_CLAIMED):
            return
        if self._set_execution_state(ex_id, State.KILLING, now, reason) is None:
            return
        for (tr_id,) in self._all(q.UNSTARTED_TASK_RUNS, (ex_id,)):
            row = self._set_task_run_state(
                tr_id, ex_id, State.KILLED, now, reason, only_from=UNSTARTED
            )
            if row is None:
                continue
            self._execute(q.DELETE_READY, (tr_id,))
            self._pending_down(ex_id)
            if row.fork_of is not None:
                self._item_ended(row.fork_of, ex_id, now, result)
        for (tr_id,) in self._all(q.BETWEEN_ATTEMPTS, (ex_id,)):
            self._execute(q.DELETE_READY, (tr_id,))
            self._set_task_run_state(tr_id, ex_id, State.KILLING, now, reason)
            self._finish_task_run(tr_id, ex_id, State.KILLED, reason, now, result)
        self._maybe_end(ex_id, now, result)

    def _fail_tree(self, ex_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Fail an execution and, first, its running child executions."""
        result.stopped.add(ex_id)
        for (child_id,) in self._all(q.RUNNING_CHILDREN, (ex_id,)):
            self._fail_tree(child_id, f"parent execution {ex_id} stopped: {reason}", now, result)
        if self._kill_queued(ex_id, reason, now, result):
            return
        if self._execution_state(ex_id).terminal:  # it ended already: nothing to stop
            return
        self._execute(q.SET_EXECUTION_REASON, (reason, ex_id))
        self._skip_unstarted(ex_id, reason, now, result)
        self._maybe_end(ex_id, now, result)

    # -- task concurrency keys -------------------------------------------------------
    def _take_keyed(self, now: float, room: int, where: str, params: Sequence[Any]) -> list[Row]:
        """Take up to ``room`` ready task runs that have a concurrency key, as many of
        each key as its limit leaves room for; rows shaped like those of
        :meth:`~ordo.store.sql.SqlStore._take_ready`."""
        self.key_blocked = False
        keys = sorted(k for (k,) in self._all(q.READY_KEYS.format(where=where), params))
        taken: list[Row] = []
        for key in keys:  # one lock order, whatever the process
            if room <= 0:
                self.key_blocked = True
                break
            self._lock(f"key:{key}")
            row = self._one(q.KEY_RUNNING, (key,))
            running = int(row[0]) if row else 0
            chosen = []
            for candidate in self._all(q.KEYED_READY.format(where=where), [key, *params, room]):
                limit = self.flows.flow_of(candidate[6]).task(candidate[2]).concurrency_limit
                if running < limit:
                    chosen.append(candidate)
                    running += 1
                else:
                    self.key_blocked = True
            if not chosen:
                continue
            test, ids = self._ids([c[0] for c in chosen])
            gone = {int(r[0]) for r in self._all(q.TAKE_READY.format(ids=test), ids)}
            kept = [c for c in chosen if c[0] in gone]
            taken.extend(kept)
            room -= len(kept)
        return taken

    def key_usage(self, key: str) -> int:
        """How many task runs with concurrency key ``key`` run now."""
        row = self._one(q.KEY_RUNNING, (key,))
        return int(row[0]) if row else 0
