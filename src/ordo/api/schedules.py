"""``/api/schedules``: schedules kept in the store beside flows' own triggers (what the
UI's *Schedule…* helper and ``ordo schedules`` make), and the next fire times of one
being written."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from ordo import services
from ordo.api.app import Caller, Reader, StoreDep, Writer
from ordo.errors import UsageError
from ordo.store import Store
from ordo.store.records import ScheduleRow
from ordo.triggers.scheduler import iso

router = APIRouter(prefix="/api/schedules", tags=["schedules"])
ID = Path(ge=1, le=2**63 - 1)


class ScheduleBody(BaseModel):
    flow: str | None = Field(default=None, description="namespace/id (only when adding)")
    cron: str | None = Field(default=None, description="a cron expression, e.g. '20 * * * *'")
    every: int | None = Field(default=None, ge=1, description="or: every N minutes")
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    active: bool = True

    def expression(self) -> str:
        if (self.cron is None) == (self.every is None):
            raise UsageError("a schedule has a cron expression or every N minutes (not both)")
        return self.cron if self.cron is not None else services.every_to_cron(self.every or 0)


class Schedule(BaseModel):
    """A stored schedule, with its next five fire times (none while inactive)."""

    id: int
    flow: str = Field(description="namespace/id")
    cron: str
    timezone: str
    inputs: dict[str, Any]
    active: bool
    created_by: str | None
    created_at: float
    updated_at: float
    next: list[str | None]


class NextTimes(BaseModel):
    """The next fire times of a cron expression (or every N minutes) in a time zone."""

    cron: str
    timezone: str
    times: list[str | None]


def _visible(store: Store, who: Caller, schedule_id: int) -> ScheduleRow:
    row = store.get_schedule(schedule_id)
    who.find(row.namespace, f"schedule {schedule_id}")
    return row


def shown(row: ScheduleRow, now: float) -> dict[str, Any]:
    times = services.next_schedule_times(row.cron, row.timezone, now, 5) if row.active else []
    return {**row.to_dict(), "next": [iso(t) for t in times]}


@router.get(
    "",
    summary="Stored schedules (of one flow with ?flow=namespace/id)",
    response_model=list[Schedule],
)
def list_schedules(
    store: StoreDep, who: Reader, flow: str | None = Query(default=None)
) -> list[dict[str, Any]]:
    now = time.time()
    rows = [r for r in store.list_schedules() if who.sees(r.namespace)]
    if flow:
        namespace, _, flow_id = flow.rpartition("/")
        rows = [r for r in rows if (r.namespace, r.flow_id) == (namespace or "default", flow_id)]
    return [shown(r, now) for r in rows]


@router.post(
    "",
    summary="Start a flow on a schedule kept in the store",
    status_code=201,
    response_model=Schedule,
)
def add_schedule(store: StoreDep, who: Writer, body: ScheduleBody) -> dict[str, Any]:
    if not body.flow:
        raise UsageError("flow: name the flow (namespace/id) the schedule starts")
    namespace, _, flow_id = body.flow.rpartition("/")
    namespace = namespace or "default"
    who.find(namespace, f"flow {namespace}/{flow_id}")
    now = time.time()
    row = services.add_schedule(
        store,
        namespace,
        flow_id,
        body.expression(),
        body.timezone,
        body.inputs,
        body.active,
        f"api:{who.name}",
        now,
    )
    return shown(row, now)


@router.get(
    "/next",
    summary="The next fire times of a cron expression being written",
    response_model=NextTimes,
)
def next_times(
    who: Reader,
    cron: str | None = Query(default=None, max_length=200),
    every: int | None = Query(default=None, ge=1),
    timezone: str = Query(default="UTC", max_length=100),
    count: int = Query(default=5, ge=1, le=50),
) -> dict[str, Any]:
    expression = ScheduleBody(cron=cron, every=every, timezone=timezone).expression()
    times = services.next_schedule_times(expression, timezone, time.time(), count)
    return {"cron": expression, "timezone": timezone, "times": [iso(t) for t in times]}


@router.get("/{schedule_id}", summary="One stored schedule", response_model=Schedule)
def get_schedule(store: StoreDep, who: Reader, schedule_id: int = ID) -> dict[str, Any]:
    return shown(_visible(store, who, schedule_id), time.time())


@router.put("/{schedule_id}", summary="Change a stored schedule", response_model=Schedule)
def change_schedule(
    store: StoreDep, who: Writer, body: ScheduleBody, schedule_id: int = ID
) -> dict[str, Any]:
    _visible(store, who, schedule_id)
    now = time.time()
    row = services.change_schedule(
        store, schedule_id, body.expression(), body.timezone, body.inputs, body.active, now
    )
    return shown(row, now)


@router.delete("/{schedule_id}", summary="Forget a stored schedule", status_code=204)
def remove_schedule(store: StoreDep, who: Writer, schedule_id: int = ID) -> None:
    _visible(store, who, schedule_id)
    services.remove_schedule(store, schedule_id)
