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

from ordo.model import Flow
from ordo.store import queries as q
from ordo.store.db import Db, Row
from ordo.store.flows import Flows


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
        row = self.db.one(q.ACTIVE_EXECUTIONS, (flow.namespace, flow.id, exclude))
        return int(row[0]) if row else 0

    # -- stopping --------------------------------------------------------------------
    # -- task concurrency keys -------------------------------------------------------
    def take_keyed(self, now: float, room: int, where: str, params: Sequence[Any]) -> list[Row]:
        """Take up to ``room`` ready task runs that have a concurrency key, as many of
        each key as its limit leaves room for; rows shaped like those of
        :meth:`~ordo.store.sql.SqlStore._take_ready`."""
        self.key_blocked = False
        keys = sorted(k for (k,) in self.db.all(q.READY_KEYS.format(where=where), params))
        taken: list[Row] = []
        for key in keys:  # one lock order, whatever the process
            if room <= 0:
                self.key_blocked = True
                break
            self.db.lock(f"key:{key}")
            row = self.db.one(q.KEY_RUNNING, (key,))
            running = int(row[0]) if row else 0
            chosen = []
            for candidate in self.db.all(q.KEYED_READY.format(where=where), [key, *params, room]):
                limit = self.flows.flow_of(candidate[6]).task(candidate[2]).concurrency_limit
                if running < limit:
                    chosen.append(candidate)
                    running += 1
                else:
                    self.key_blocked = True
            if not chosen:
                continue
            test, ids = self.db.ids([c[0] for c in chosen])
            gone = {int(r[0]) for r in self.db.all(q.TAKE_READY.format(ids=test), ids)}
            kept = [c for c in chosen if c[0] in gone]
            taken.extend(kept)
            room -= len(kept)
        return taken

    def key_usage(self, key: str) -> int:
        """How many task runs with concurrency key ``key`` run now."""
        row = self.db.one(q.KEY_RUNNING, (key,))
        return int(row[0]) if row else 0
