"""Triggers and leases: what ``ordo server`` keeps to start executions and to tell of
their ends. Stored schedules (``ordo schedules``, the UI's schedule helper,
``/api/schedules``: the store only keeps them; the scheduler turns each active one into
a ``schedule`` trigger of its flow), schedule ticks, leader leases, received events and
sent notifications. Shared by both backends.

A schedule tick starts exactly one execution: the tick's row (keyed by flow, trigger and
scheduled time) is written in the transaction that creates the execution, under a lock
on the trigger, so a second scheduler that reaches the same tick finds it taken.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from msgspec import Struct

from ordo.errors import NotFound
from ordo.store.db import Db, Row, dumps
from ordo.store.records import ExecutionRow, ScheduleRow

_COLUMNS = (
    "id, namespace, flow_id, cron, timezone, inputs, active, created_by, created_at, updated_at"
)
INSERT_SCHEDULE = """
INSERT INTO flow_schedules (namespace, flow_id, cron, timezone, inputs, active, created_by,
                            created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
UPDATE_SCHEDULE = """
UPDATE flow_schedules SET cron = ?, timezone = ?, inputs = ?, active = ?, updated_at = ?
WHERE id = ?
"""
SCHEDULE = f"SELECT {_COLUMNS} FROM flow_schedules WHERE id = ?"
ALL_SCHEDULES = f"SELECT {_COLUMNS} FROM flow_schedules ORDER BY id"
FLOW_SCHEDULES = f"""
SELECT {_COLUMNS} FROM flow_schedules WHERE namespace = ? AND flow_id = ? ORDER BY id
"""
DELETE_SCHEDULE = "DELETE FROM flow_schedules WHERE id = ?"
#: Up to when the scheduler looked at its ticks (see ``schedule_checked``): gone with it.
DELETE_CHECKED = "DELETE FROM schedules WHERE namespace = ? AND flow_id = ? AND trigger_id = ?"


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
COUNT_OLD_EVENTS = "SELECT count(*) AS n FROM events WHERE received_at < ?"
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


class TickRow(Struct, frozen=True):
    """A schedule's fire time and the execution it started."""

    trigger_id: str
    scheduled_at: float
    execution_id: int
    created_at: float


class EventRow(Struct, frozen=True):
    """An event received, and the executions it started."""

    id: int
    type: str
    data: Any
    received_at: float
    executions: list[int]


class NotificationRow(Struct, frozen=True):
    """A notification sent (or tried) for an execution's end."""

    execution_id: int
    ended_at: float
    target: str
    ok: bool
    error: str | None
    sent_at: float


class Triggers:
    """Stored schedules, ticks, leases, events and notifications."""

    def __init__(self, db: Db) -> None:
        self.db = db

    # -- stored schedules ------------------------------------------------------------
    def add_schedule(
        self,
        namespace: str,
        flow_id: str,
        cron: str,
        timezone: str,
        inputs: dict[str, Any],
        active: bool,
        created_by: str | None,
        now: float,
    ) -> ScheduleRow:
        """Keep a new schedule (checked by the caller) and return it."""
        with self.db.transaction():
            new_id = self.db.insert(
                INSERT_SCHEDULE,
                (
                    namespace,
                    flow_id,
                    cron,
                    timezone,
                    json.dumps(inputs),
                    int(active),
                    created_by,
                    now,
                    now,
                ),
            )
        return self.get_schedule(new_id)

    def update_schedule(
        self,
        schedule_id: int,
        cron: str,
        timezone: str,
        inputs: dict[str, Any],
        active: bool,
        now: float,
    ) -> ScheduleRow:
        with self.db.transaction():
            params = (cron, timezone, json.dumps(inputs), int(active), now, schedule_id)
            if not self.db.execute(UPDATE_SCHEDULE, params).rowcount:
                raise NotFound(f"schedule {schedule_id} not found")
        return self.get_schedule(schedule_id)

    def get_schedule(self, schedule_id: int) -> ScheduleRow:
        row = self.db.one(SCHEDULE, (schedule_id,))
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found (ordo schedules list)")
        return _row(row)

    def list_schedules(
        self, namespace: str | None = None, flow_id: str | None = None
    ) -> list[ScheduleRow]:
        """Every stored schedule (of one flow when both are given), oldest first."""
        if namespace is not None and flow_id is not None:
            return [_row(r) for r in self.db.all(FLOW_SCHEDULES, (namespace, flow_id))]
        return [_row(r) for r in self.db.all(ALL_SCHEDULES)]

    def remove_schedule(self, schedule_id: int) -> None:
        row = self.get_schedule(schedule_id)
        with self.db.transaction():
            if not self.db.execute(DELETE_SCHEDULE, (schedule_id,)).rowcount:
                raise NotFound(f"schedule {schedule_id} not found (ordo schedules list)")
            self.db.execute(DELETE_CHECKED, (row.namespace, row.flow_id, row.trigger_id))

    # -- schedules -------------------------------------------------------------------
    def schedule_checked(self, namespace: str, flow_id: str, trigger_id: str) -> float | None:
        """Up to when the trigger's ticks have been looked at; None before the first."""
        row = self.db.one(SCHEDULE_CHECKED, (namespace, flow_id, trigger_id))
        return float(row["checked_at"]) if row else None

    def set_schedule_checked(
        self, namespace: str, flow_id: str, trigger_id: str, checked_at: float
    ) -> None:
        with self.db.transaction():
            self.db.execute(UPSERT_SCHEDULE, (namespace, flow_id, trigger_id, checked_at))

    def tick_taken(self, namespace: str, flow_id: str, trigger_id: str, at: float) -> bool:
        """In a transaction: lock the trigger and tell whether the tick at ``at`` has
        started its execution already (then :meth:`add_tick` must not be called)."""
        self.db.lock(f"trigger:{namespace}/{flow_id}/{trigger_id}")
        return self.db.one(TICK_TAKEN, (namespace, flow_id, trigger_id, at)) is not None

    def add_tick(
        self,
        namespace: str,
        flow_id: str,
        trigger_id: str,
        at: float,
        execution_id: int,
        now: float,
    ) -> None:
        self.db.execute(INSERT_TICK, (namespace, flow_id, trigger_id, at, execution_id, now))

    def ticks(self, namespace: str, flow_id: str, limit: int = 20) -> list[TickRow]:
        """The flow's newest ticks that started an execution."""
        rows = self.db.all(TICKS, (namespace, flow_id, limit))
        return [
            TickRow(
                r["trigger_id"],
                float(r["scheduled_at"]),
                int(r["execution_id"]),
                float(r["created_at"]),
            )
            for r in rows
        ]

    # -- leases ----------------------------------------------------------------------
    def take_lease(self, name: str, holder: str, now: float, seconds: float) -> bool:
        """Hold the lease ``name`` until ``now + seconds`` if it is free, expired or
        already ``holder``'s; whether ``holder`` holds it now. A lease of ``holder``
        with more than half its time left is not written again (one read)."""
        row = self.db.one(LEASE.format(lock=""), (name,))
        if row is not None and row["holder"] == holder and row["expires_at"] - now > seconds / 2:
            return True
        with self.db.transaction():
            self.db.lock(f"lease:{name}")
            row = self.db.one(LEASE.format(lock=self.db.lock_rows), (name,))
            if row is None:
                self.db.execute(INSERT_LEASE, (name, holder, now + seconds))
                return True
            if row["holder"] != holder and float(row["expires_at"]) > now:
                return False
            self.db.execute(RENEW_LEASE, (holder, now + seconds, name))
            return True

    def drop_lease(self, name: str, holder: str) -> None:
        with self.db.transaction():
            self.db.execute(DROP_LEASE, (name, holder))

    # -- events ----------------------------------------------------------------------
    def add_event(self, event_type: str, data: Any, now: float) -> int:
        with self.db.transaction():
            return self.db.insert(INSERT_EVENT, (event_type, dumps(data), now, "[]"))

    def set_event_executions(self, event_id: int, execution_ids: Sequence[int]) -> None:
        with self.db.transaction():
            self.db.execute(SET_EVENT_EXECUTIONS, (json.dumps(list(execution_ids)), event_id))

    def list_events(self, event_type: str | None = None, limit: int = 50) -> list[EventRow]:
        rows = self.db.all(LIST_EVENTS, (event_type, event_type, limit))
        return [
            EventRow(
                int(r["id"]),
                r["type"],
                json.loads(r["data"]),
                float(r["received_at"]),
                json.loads(r["executions"]),
            )
            for r in rows
        ]

    def collect_events(self, before: float, *, batch: int = 500, dry_run: bool = False) -> int:
        """Delete the events received before ``before``, ``batch`` per transaction (with
        ``dry_run``: count them); how many. The executions they started stay."""
        if dry_run:
            return int(self.db.scalar(COUNT_OLD_EVENTS, (before,)) or 0)
        total = 0
        while True:
            with self.db.transaction():
                ids = [int(r["id"]) for r in self.db.all(OLD_EVENTS, (before, batch))]
                if ids:
                    test, params = self.db.ids(ids)
                    self.db.execute(f"DELETE FROM events WHERE id {test}", params)
            total += len(ids)
            if len(ids) < batch:
                return total

    # -- notifications ---------------------------------------------------------------
    def ended_since(self, since: float, limit: int = 200) -> list[tuple[int, float, int, bool]]:
        """(id, ended_at, revision_id, whether its run options name notify targets) of
        the executions (not dev) that ended at or after ``since``, oldest end first."""
        rows = self.db.all(ENDED_SINCE, (since, limit))
        return [
            (
                int(r["id"]),
                float(r["ended_at"]),
                int(r["revision_id"]),
                bool(r["options"] and json.loads(r["options"]).get("notify")),
            )
            for r in rows
        ]

    def notified(self, execution_id: int, ended_at: float, target: str) -> bool:
        return self.db.one(NOTIFIED, (execution_id, ended_at, target)) is not None

    def add_notification(
        self,
        execution: ExecutionRow,
        target: str,
        error: str | None,
        now: float,
    ) -> None:
        """Record that ``target`` was told of the execution's end (``error``: why not)."""
        ended = execution.ended_at or now
        with self.db.transaction():
            if self.db.one(NOTIFIED, (execution.id, ended, target)) is None:
                self.db.execute(
                    INSERT_NOTIFICATION,
                    (execution.id, ended, target, int(error is None), error, now),
                )

    def notifications(self, execution_id: int) -> list[NotificationRow]:
        return [
            NotificationRow(
                int(r["execution_id"]),
                float(r["ended_at"]),
                r["target"],
                bool(r["ok"]),
                r["error"],
                float(r["sent_at"]),
            )
            for r in self.db.all(NOTIFICATIONS, (execution_id,))
        ]


def _row(r: Row) -> ScheduleRow:
    return ScheduleRow(
        id=int(r["id"]),
        namespace=str(r["namespace"]),
        flow_id=str(r["flow_id"]),
        cron=str(r["cron"]),
        timezone=str(r["timezone"]),
        inputs=json.loads(r["inputs"]),
        active=bool(r["active"]),
        created_by=r["created_by"],
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )
