"""What ``ordo server`` keeps: flow flags, schedule ticks, leader leases, API tokens,
received events and sent notifications. Shared by both backends.

A schedule tick starts exactly one execution: the tick's row (keyed by flow, trigger and
scheduled time) is written in the transaction that creates the execution, under a lock
on the trigger, so a second scheduler that reaches the same tick finds it taken.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ordo.errors import NotFound
from ordo.store.db import dumps
from ordo.store.records import BUCKETS, ExecutionRow
from ordo.store.retention import Retention

UPSERT_FLOW_ACTIVE = """
INSERT INTO flows (namespace, flow_id, active, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, flow_id) DO UPDATE SET active = excluded.active,
    updated_at = excluded.updated_at
"""
FLOW_ACTIVE = "SELECT active FROM flows WHERE namespace = ? AND flow_id = ?"
ALL_FLOW_FLAGS = "SELECT namespace, flow_id, active FROM flows"
SCHEDULE_CHECKED = """
SELECT checked_at FROM schedules WHERE namespace = ? AND flow_id = ? AND trigger_id = ?
"""
UPSERT_SCHEDULE = """
INSERT INTO schedules (namespace, flow_id, trigger_id, checked_at) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, flow_id, trigger_id) DO UPDATE SET checked_at = excluded.checked_at
"""
TICK_TAKEN = """
SELECT execution_id FROM trigger_ticks
WHERE namespace = ? AND flow_id = ? AND trigger_id = ? AND scheduled_at = ?
"""
INSERT_TICK = """
INSERT INTO trigger_ticks (namespace, flow_id, trigger_id, scheduled_at, execution_id,
                           created_at)
VALUES (?, ?, ?, ?, ?, ?)
"""
TICKS = """
SELECT trigger_id, scheduled_at, execution_id, created_at FROM trigger_ticks
WHERE namespace = ? AND flow_id = ? ORDER BY scheduled_at DESC LIMIT ?
"""
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
LEASE = "SELECT holder, expires_at FROM leases WHERE name = ?{lock}"
INSERT_LEASE = "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"
RENEW_LEASE = "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?"
DROP_LEASE = "DELETE FROM leases WHERE name = ? AND holder = ?"
INSERT_EVENT = "INSERT INTO events (type, data, received_at, executions) VALUES (?, ?, ?, ?)"
SET_EVENT_EXECUTIONS = "UPDATE events SET executions = ? WHERE id = ?"
LIST_EVENTS = """
SELECT id, type, data, received_at, executions FROM events
WHERE (CAST(? AS TEXT) IS NULL OR type = ?)
ORDER BY id DESC LIMIT ?
"""
OLD_EVENTS = "SELECT id FROM events WHERE received_at < ? ORDER BY id LIMIT ?"
COUNT_OLD_EVENTS = "SELECT count(*) FROM events WHERE received_at < ?"
ENDED_SINCE = """
SELECT id, ended_at, revision_id, options FROM executions
WHERE ended_at IS NOT NULL AND ended_at >= ? AND dev = 0 ORDER BY ended_at, id LIMIT ?
"""
NOTIFIED = """
SELECT 1 FROM notifications WHERE execution_id = ? AND ended_at = ? AND target = ?
"""
INSERT_NOTIFICATION = """
INSERT INTO notifications (execution_id, ended_at, target, ok, error, sent_at)
VALUES (?, ?, ?, ?, ?, ?)
"""
NOTIFICATIONS = """
SELECT execution_id, ended_at, target, ok, error, sent_at FROM notifications
WHERE execution_id = ? ORDER BY id
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


@dataclass(frozen=True)
class TickRow:
    trigger_id: str
    scheduled_at: float
    execution_id: int
    created_at: float


@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    data: Any
    received_at: float
    executions: list[int]


@dataclass(frozen=True)
class NotificationRow:
    execution_id: int
    ended_at: float
    target: str
    ok: bool
    error: str | None
    sent_at: float


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

    # -- schedules -------------------------------------------------------------------
    def schedule_checked(self, namespace: str, flow_id: str, trigger_id: str) -> float | None:
        """Up to when the trigger's ticks have been looked at; None before the first."""
        row = self._one(SCHEDULE_CHECKED, (namespace, flow_id, trigger_id))
        return float(row[0]) if row else None

    def set_schedule_checked(
        self, namespace: str, flow_id: str, trigger_id: str, checked_at: float
    ) -> None:
        with self.transaction():
            self._execute(UPSERT_SCHEDULE, (namespace, flow_id, trigger_id, checked_at))

    def tick_taken(self, namespace: str, flow_id: str, trigger_id: str, at: float) -> bool:
        """In a transaction: lock the trigger and tell whether the tick at ``at`` has
        started its execution already (then :meth:`add_tick` must not be called)."""
        self._lock(f"trigger:{namespace}/{flow_id}/{trigger_id}")
        return self._one(TICK_TAKEN, (namespace, flow_id, trigger_id, at)) is not None

    def add_tick(
        self,
        namespace: str,
        flow_id: str,
        trigger_id: str,
        at: float,
        execution_id: int,
        now: float,
    ) -> None:
        self._execute(INSERT_TICK, (namespace, flow_id, trigger_id, at, execution_id, now))

    def ticks(self, namespace: str, flow_id: str, limit: int = 20) -> list[TickRow]:
        """The flow's newest ticks that started an execution."""
        rows = self._all(TICKS, (namespace, flow_id, limit))
        return [TickRow(r[0], float(r[1]), int(r[2]), float(r[3])) for r in rows]

    # -- leases ----------------------------------------------------------------------
    def take_lease(self, name: str, holder: str, now: float, seconds: float) -> bool:
        """Hold the lease ``name`` until ``now + seconds`` if it is free, expired or
        already ``holder``'s; whether ``holder`` holds it now. A lease of ``holder``
        with more than half its time left is not written again (one read)."""
        row = self._one(LEASE.format(lock=""), (name,))
        if row is not None and row[0] == holder and float(row[1]) - now > seconds / 2:
            return True
        with self.transaction():
            self._lock(f"lease:{name}")
            row = self._one(LEASE.format(lock=self.db.lock_rows), (name,))
            if row is None:
                self._execute(INSERT_LEASE, (name, holder, now + seconds))
                return True
            if row[0] != holder and float(row[1]) > now:
                return False
            self._execute(RENEW_LEASE, (holder, now + seconds, name))
            return True

    def drop_lease(self, name: str, holder: str) -> None:
        with self.transaction():
            self._execute(DROP_LEASE, (name, holder))

    # -- events ----------------------------------------------------------------------
    def add_event(self, event_type: str, data: Any, now: float) -> int:
        with self.transaction():
            return self._insert(INSERT_EVENT, (event_type, dumps(data), now, "[]"))

    def set_event_executions(self, event_id: int, execution_ids: Sequence[int]) -> None:
        with self.transaction():
            self._execute(SET_EVENT_EXECUTIONS, (json.dumps(list(execution_ids)), event_id))

    def list_events(self, event_type: str | None = None, limit: int = 50) -> list[EventRow]:
        rows = self._all(LIST_EVENTS, (event_type, event_type, limit))
        return [
            EventRow(int(r[0]), r[1], json.loads(r[2]), float(r[3]), json.loads(r[4])) for r in rows
        ]

    def collect_events(self, before: float, *, batch: int = 500, dry_run: bool = False) -> int:
        """Delete the events received before ``before``, ``batch`` per transaction (with
        ``dry_run``: count them); how many. The executions they started stay."""
        if dry_run:
            row = self._one(COUNT_OLD_EVENTS, (before,))
            return int(row[0]) if row else 0
        total = 0
        while True:
            with self.transaction():
                ids = [int(r[0]) for r in self._all(OLD_EVENTS, (before, batch))]
                if ids:
                    test, params = self._ids(ids)
                    self._execute(f"DELETE FROM events WHERE id {test}", params)
            total += len(ids)
            if len(ids) < batch:
                return total

    # -- notifications ---------------------------------------------------------------
    def ended_since(self, since: float, limit: int = 200) -> list[tuple[int, float, int, bool]]:
        """(id, ended_at, revision_id, whether its run options name notify targets) of
        the executions (not dev) that ended at or after ``since``, oldest end first."""
        rows = self._all(ENDED_SINCE, (since, limit))
        return [
            (int(r[0]), float(r[1]), int(r[2]), bool(r[3] and json.loads(r[3]).get("notify")))
            for r in rows
        ]

    def notified(self, execution_id: int, ended_at: float, target: str) -> bool:
        return self._one(NOTIFIED, (execution_id, ended_at, target)) is not None

    def add_notification(
        self,
        execution: ExecutionRow,
        target: str,
        error: str | None,
        now: float,
    ) -> None:
        """Record that ``target`` was told of the execution's end (``error``: why not)."""
        ended = execution.ended_at or now
        with self.transaction():
            if self._one(NOTIFIED, (execution.id, ended, target)) is None:
                self._execute(
                    INSERT_NOTIFICATION,
                    (execution.id, ended, target, int(error is None), error, now),
                )

    def notifications(self, execution_id: int) -> list[NotificationRow]:
        return [
            NotificationRow(int(r[0]), float(r[1]), r[2], bool(r[3]), r[4], float(r[5]))
            for r in self._all(NOTIFICATIONS, (execution_id,))
        ]
