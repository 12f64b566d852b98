"""Schedules kept in the store beside flows' own triggers (``ordo schedules``, the
schedule helper of the UI, ``/api/schedules``). The store only keeps them; the scheduler
turns each active one into a ``schedule`` trigger of its flow. Shared by both backends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ordo.errors import NotFound
from ordo.store.steps import Steps

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


@dataclass(frozen=True)
class ScheduleRow:
    """A stored schedule: its flow, cron expression and time zone, the inputs its
    executions get, and whether it is active."""

    id: int
    namespace: str
    flow_id: str
    cron: str
    timezone: str
    inputs: dict[str, Any]
    active: bool
    created_by: str | None
    created_at: float
    updated_at: float

    @property
    def trigger_id(self) -> str:
        """The id of the trigger it is to the scheduler (``#ID``: never a flow file's
        trigger id, which has no ``#``); its executions say ``started_by: schedule:#ID``."""
        return f"#{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": f"{self.namespace}/{self.flow_id}",
            "cron": self.cron,
            "timezone": self.timezone,
            "inputs": self.inputs,
            "active": self.active,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Schedules(Steps):
    """Stored schedules; :class:`~ordo.store.sql.SqlStore` adds the rest."""

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
        with self.transaction():
            new_id = self._insert(
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
        with self.transaction():
            params = (cron, timezone, json.dumps(inputs), int(active), now, schedule_id)
            if not self._execute(UPDATE_SCHEDULE, params).rowcount:
                raise NotFound(f"schedule {schedule_id} not found")
        return self.get_schedule(schedule_id)

    def get_schedule(self, schedule_id: int) -> ScheduleRow:
        row = self._one(SCHEDULE, (schedule_id,))
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found (ordo schedules list)")
        return _row(row)

    def list_schedules(
        self, namespace: str | None = None, flow_id: str | None = None
    ) -> list[ScheduleRow]:
        """Every stored schedule (of one flow when both are given), oldest first."""
        if namespace is not None and flow_id is not None:
            return [_row(r) for r in self._all(FLOW_SCHEDULES, (namespace, flow_id))]
        return [_row(r) for r in self._all(ALL_SCHEDULES)]

    def remove_schedule(self, schedule_id: int) -> None:
        row = self.get_schedule(schedule_id)
        with self.transaction():
            if not self._execute(DELETE_SCHEDULE, (schedule_id,)).rowcount:
                raise NotFound(f"schedule {schedule_id} not found (ordo schedules list)")
            self._execute(DELETE_CHECKED, (row.namespace, row.flow_id, row.trigger_id))


def _row(r: Any) -> ScheduleRow:
    return ScheduleRow(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        json.loads(r[5]),
        bool(r[6]),
        r[7],
        float(r[8]),
        float(r[9]),
    )
