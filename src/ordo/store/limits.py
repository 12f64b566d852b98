"""Concurrency limits, decided in the store's transactions so that they hold whatever
the number of processes: a flow's ``concurrency`` (executions of the flow at once) and a
task's ``concurrency_key`` (task runs sharing the key at once, in the whole store).

Both count what runs (rows in RUNNING or KILLING) under a lock named after the flow or
the key, taken before counting and held to the commit: ``BEGIN IMMEDIATE`` already is
one on SQLite; PostgreSQL takes an advisory transaction lock
(:meth:`~ordo.store.db.Db.lock`). Whether an execution may start is the policy's
(asked by :class:`~ordo.store.executions.Executions`); what starts when one ends is
:class:`~ordo.store.outcomes.Outcomes`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ordo.model import Flow
from ordo.store import queries as q
from ordo.store.db import Db, Row
from ordo.store.flows import Flows

KEYED_READY = """
SELECT t.id AS task_run_id, t.execution_id, t.task_id, t.state, t.attempts, t.started_at,
       e.revision_id, e.state AS execution_state, NULL AS attempt_id
FROM (SELECT task_run_id, not_before FROM ready WHERE concurrency_key = ? AND {where}
      ORDER BY not_before, task_run_id LIMIT ?) AS r
JOIN task_runs t ON t.id = r.task_run_id JOIN executions e ON e.id = t.execution_id
ORDER BY r.not_before, t.id
"""
#: Task runs holding a slot of a key: running (a for_each task run whose items run holds
#: none; its items do), not waiting in ``ready`` for a retry.
KEY_RUNNING = """
SELECT count(*) AS n FROM task_runs t
WHERE t.concurrency_key = ? AND t.state IN ('RUNNING', 'KILLING') AND t.forks_pending = 0
  AND NOT EXISTS (SELECT 1 FROM ready r WHERE r.task_run_id = t.id)
"""
READY_KEYS = """
SELECT DISTINCT concurrency_key FROM ready WHERE concurrency_key IS NOT NULL AND {where}
"""
TAKE_READY = "DELETE FROM ready WHERE task_run_id {ids} RETURNING task_run_id"


class Limits:
    """Counting what runs under a flow's limit or a concurrency key, and claiming keyed
    task runs as many as their keys leave room for."""

    def __init__(self, db: Db, flows: Flows) -> None:
        self.db = db
        self.flows = flows
        #: the last claim left ready task runs waiting for a concurrency key's slot
        self.key_blocked = False

    # -- flows -----------------------------------------------------------------------
    def active(self, flow: Flow, exclude: int = 0) -> int:
        """Executions of ``flow`` admitted and not ended (CREATED ones too: admitted,
        not claimed yet), but ``exclude``."""
        self.db.lock(f"flow:{flow.key}")
        return int(self.db.scalar(q.ACTIVE_EXECUTIONS, (flow.namespace, flow.id, exclude)) or 0)

    # -- task concurrency keys -------------------------------------------------------
    def take_keyed(self, now: float, room: int, where: str, params: Sequence[Any]) -> list[Row]:
        """Take up to ``room`` ready task runs that have a concurrency key, as many of
        each key as its limit leaves room for; rows shaped like those of
        :meth:`~ordo.store.db.Db.take_ready`."""
        self.key_blocked = False
        found = self.db.all(READY_KEYS.format(where=where), params)
        keys = sorted(r["concurrency_key"] for r in found)
        taken: list[Row] = []
        for key in keys:  # one lock order, whatever the process
            if room <= 0:
                self.key_blocked = True
                break
            self.db.lock(f"key:{key}")
            running = self.key_usage(key)
            chosen = []
            for candidate in self.db.all(KEYED_READY.format(where=where), [key, *params, room]):
                task = self.flows.flow_of(candidate["revision_id"]).task(candidate["task_id"])
                limit = task.concurrency_limit
                if running < limit:
                    chosen.append(candidate)
                    running += 1
                else:
                    self.key_blocked = True
            if not chosen:
                continue
            test, ids = self.db.ids([c["task_run_id"] for c in chosen])
            gone = {int(r["task_run_id"]) for r in self.db.all(TAKE_READY.format(ids=test), ids)}
            kept = [c for c in chosen if c["task_run_id"] in gone]
            taken.extend(kept)
            room -= len(kept)
        return taken

    def key_usage(self, key: str) -> int:
        """How many task runs with concurrency key ``key`` run now."""
        return int(self.db.scalar(KEY_RUNNING, (key,)) or 0)
