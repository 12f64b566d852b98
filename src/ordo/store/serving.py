"""What ``ordo server`` keeps: flow flags, schedule ticks, leader leases, API tokens,
received events and sent notifications. Shared by both backends.

A schedule tick starts exactly one execution: the tick's row (keyed by flow, trigger and
scheduled time) is written in the transaction that creates the execution, under a lock
on the trigger, so a second scheduler that reaches the same tick finds it taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ordo.errors import NotFound
from ordo.store.records import BUCKETS
from ordo.store.retention import Retention

UPSERT_FLOW_ACTIVE = """
INSERT INTO flows (namespace, flow_id, active, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, flow_id) DO UPDATE SET active = excluded.active,
    updated_at = excluded.updated_at
"""
FLOW_ACTIVE = "SELECT active FROM flows WHERE namespace = ? AND flow_id = ?"
ALL_FLOW_FLAGS = "SELECT namespace, flow_id, active FROM flows"
REVISIONS = """
SELECT revision, id, created_at, content_hash, path, origin FROM flow_revisions
WHERE namespace = ? AND flow_id = ? ORDER BY revision DESC LIMIT ?
"""
REVISION_EXECUTIONS = """
SELECT revision_id, count(*) FROM executions WHERE namespace = ? AND flow_id = ?
GROUP BY revision_id
"""
SOURCE = "SELECT source, scripts FROM flow_revisions WHERE id = ?"
DEPLOYED = """
SELECT namespace, flow_id, active, removed_at FROM flows WHERE deploy_source = ?
ORDER BY namespace, flow_id
"""
FLOW_DEPLOY = "SELECT deploy_source, removed_at FROM flows WHERE namespace = ? AND flow_id = ?"
SET_DEPLOYED = """
INSERT INTO flows (namespace, flow_id, active, updated_at, deploy_source)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, flow_id) DO UPDATE SET deploy_source = excluded.deploy_source,
    updated_at = excluded.updated_at, removed_at = NULL,
    active = CASE WHEN flows.removed_at IS NULL THEN flows.active ELSE excluded.active END
"""
SET_REMOVED = """
UPDATE flows SET active = 0, removed_at = ?, updated_at = ?
WHERE namespace = ? AND flow_id = ? AND deploy_source = ?
"""
EXECUTIONS_BY_STATE = "SELECT state, count(*) FROM executions GROUP BY state"
_DURATION = "(ended_at - started_at)"
TASK_RUN_DURATIONS = (
    "SELECT "
    + ", ".join(
        f"sum(CASE WHEN {_DURATION} <= {b} THEN 1 ELSE 0 END) AS le{i}"
        for i, b in enumerate(BUCKETS)
    )
    + f", count(*) AS n, coalesce(sum({_DURATION}), 0) AS total FROM task_runs "
    "WHERE ended_at IS NOT NULL AND started_at IS NOT NULL"
)
READY_DEPTH = "SELECT count(*) FROM ready"
WORKERS_ALIVE = "SELECT count(*) FROM workers WHERE stopped_at IS NULL AND heartbeat_at > ?"


@dataclass(frozen=True)
class Gauges:
    """What ``/metrics`` shows: executions by state, the task-run duration histogram
    (cumulative counts per bucket of :data:`BUCKETS`, count, sum), the ready queue's
    depth and the workers alive."""

    executions: dict[str, int]
    durations: list[int]
    duration_count: int
    duration_sum: float
    ready: int
    workers: int


class Serving(Retention):
    """The server's tables; :class:`~ordo.store.sql.SqlStore` adds the rest."""

    def ping(self) -> None:
        """One round trip: StoreError when the database does not answer."""
        self._one("SELECT 1")

    # -- flow flags ------------------------------------------------------------------
    def set_flow_active(self, namespace: str, flow_id: str, active: bool, now: float) -> None:
        """Let triggers start the flow (or not); NotFound for an unknown flow."""
        if self.find_flow(namespace, flow_id, None) is None:
            raise NotFound(f"flow {namespace}/{flow_id} not found")
        with self.transaction():
            self._execute(UPSERT_FLOW_ACTIVE, (namespace, flow_id, int(active), now))

    def flow_active(self, namespace: str, flow_id: str) -> bool:
        """Whether triggers start the flow: its flag, else its newest revision's file."""
        row = self._one(FLOW_ACTIVE, (namespace, flow_id))
        if row is not None:
            return bool(row[0])
        revision = self.find_flow(namespace, flow_id, None)
        return revision is not None and revision.flow.active

    def flow_flags(self) -> dict[tuple[str, str], bool]:
        """Every flow's active flag that has been set, by (namespace, flow id)."""
        return {(r[0], r[1]): bool(r[2]) for r in self._all(ALL_FLOW_FLAGS)}

    def revisions(self, namespace: str, flow_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The flow's revisions, newest first: number, id, created_at, hash, path,
        origin (where a deploy took it from) and how many executions pinned it."""
        rows = self._all(REVISION_EXECUTIONS, (namespace, flow_id))
        counts = {int(r[0]): int(r[1]) for r in rows}
        return [
            {
                "revision": r[0],
                "id": r[1],
                "created_at": r[2],
                "content_hash": r[3],
                "path": r[4],
                "origin": r[5],
                "executions": counts.get(int(r[1]), 0),
            }
            for r in self._all(REVISIONS, (namespace, flow_id, limit))
        ]

    def revision_source(self, revision_id: int) -> str:
        """The text the revision was stored from (a package's: a JSON summary)."""
        row = self._one(SOURCE, (revision_id,))
        if row is None:
            raise NotFound(f"flow revision {revision_id} not found")
        return str(row[0])

    def revision_scripts(self, revision_id: int) -> dict[str, str | None]:
        """The files the revision references, by relative path: their text then, or
        None (missing, not text or too large to keep)."""
        row = self._one(SOURCE, (revision_id,))
        if row is None:
            raise NotFound(f"flow revision {revision_id} not found")
        found: dict[str, str | None] = json.loads(row[1]) if row[1] else {}
        return found

    # -- deploys ---------------------------------------------------------------------
    def deployed_flows(self, source: str) -> list[tuple[str, str, bool, float | None]]:
        """``(namespace, flow_id, active, removed_at)`` of the flows ``source`` owns."""
        return [
            (r[0], r[1], bool(r[2]), None if r[3] is None else float(r[3]))
            for r in self._all(DEPLOYED, (source,))
        ]

    def flow_deploy(self, namespace: str, flow_id: str) -> tuple[str | None, float | None]:
        """The deploy source owning the flow (None: not deployed) and when that source
        deactivated it because its file was gone (None: it was not)."""
        row = self._one(FLOW_DEPLOY, (namespace, flow_id))
        return (row[0], None if row[1] is None else float(row[1])) if row else (None, None)

    def set_deployed(
        self, namespace: str, flow_id: str, source: str, active: bool, now: float
    ) -> None:
        """``source`` owns the flow now; a flow it had deactivated because its file was
        gone is back (``active`` again as its file says)."""
        with self.transaction():
            self._execute(SET_DEPLOYED, (namespace, flow_id, int(active), now, source))

    def set_removed(self, namespace: str, flow_id: str, source: str, now: float) -> None:
        """The flow's file is gone from ``source``: inactive, its history kept."""
        with self.transaction():
            self._execute(SET_REMOVED, (now, now, namespace, flow_id, source))

    def gauges(self, now: float, alive_for: float = 35.0) -> Gauges:
        by_state = {str(r[0]): int(r[1]) for r in self._all(EXECUTIONS_BY_STATE)}
        row = self._one(TASK_RUN_DURATIONS)
        assert row is not None  # an aggregate: always one row
        durations = [int(row[f"le{i}"] or 0) for i in range(len(BUCKETS))]
        return Gauges(
            by_state,
            durations,
            int(row["n"] or 0),
            float(row["total"] or 0),
            int(self.db.scalar(READY_DEPTH) or 0),
            int(self.db.scalar(WORKERS_ALIVE, (now - alive_for,)) or 0),
        )
