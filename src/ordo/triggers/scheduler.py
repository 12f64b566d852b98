"""The scheduler: starts the executions that flows' ``schedule`` triggers are due for.

One pass (:meth:`Scheduler.tick`) looks at every active flow's schedule triggers and at
the active schedules kept in the store (``ordo schedules``; trigger id ``#ID``), alike. Only the
holder of the store's ``scheduler`` lease runs a pass, so with many servers on one
PostgreSQL one of them schedules and another takes over within the lease's length when
it dies; and each tick's execution is created in one transaction with the tick's unique
row, so even two schedulers that both think they lead start a tick once.

A trigger seen for the first time starts from now: no catch-up of the past before it
existed. After downtime, its ``catchup`` policy decides what missed ticks start (see
:mod:`ordo.cron`). Time is passed in (``clock``), so tests move it by hand.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable

from ordo import cron, services
from ordo.errors import OrdoError
from ordo.model import Trigger
from ordo.store import Store
from ordo.store.records import Revision

logger = logging.getLogger(__name__)

LEASE = "scheduler"


class Scheduler:
    def __init__(
        self,
        store: Store,
        holder: str,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.holder = holder
        self.clock = clock
        self.lease_seconds = lease_seconds
        #: up to when each trigger's ticks were looked at by this process; the store
        #: keeps it only when a tick started (enough: a started tick is never started
        #: again, and the policy decides about the others after a restart)
        self._checked: dict[tuple[str, str, str], float] = {}

    def tick(self) -> list[int]:
        """One pass when this scheduler leads: the executions it started."""
        now = self.clock()
        if not self.store.take_lease(LEASE, self.holder, now, self.lease_seconds):
            return []
        started: list[int] = []
        due = services.subscribed(self.store, "schedule") + services.stored_subscribed(self.store)
        for revision, trigger in due:
            started += self._due(revision, trigger, now)
        active = {(r.flow.namespace, r.flow.id, t.id) for r, t in due}
        for ended in self.store.close_schedules(active, now):  # removed or deactivated
            logger.info("schedule execution %d ended", ended, extra={"execution_id": ended})
        return started

    def _due(self, revision: Revision, trigger: Trigger, now: float) -> list[int]:
        flow = revision.flow
        key = (flow.namespace, flow.id, trigger.id)
        last = self._checked.get(key)
        if last is None:
            last = self.store.schedule_checked(*key)
        if last is None:  # a new trigger starts from now
            self.store.set_schedule_checked(*key, now)
            self._checked[key] = now
            return []
        started = []
        for at in cron.due_times(schedule_of(trigger), last, now):
            try:
                execution_id = self._start(revision, trigger, at, now)
            except OrdoError as exc:
                logger.warning(
                    "schedule %s of %s: tick %s not started: %s",
                    trigger.id,
                    flow.key,
                    iso(at),
                    exc,
                    extra={"event": "schedule_failed"},
                )
                continue
            if execution_id is not None:
                started.append(execution_id)
        if started:
            self.store.set_schedule_checked(*key, now)
        self._checked[key] = now
        return started

    def _start(self, revision: Revision, trigger: Trigger, at: float, now: float) -> int | None:
        flow = revision.flow
        with self.store.transaction():
            if self.store.tick_taken(flow.namespace, flow.id, trigger.id, at):
                return None
            passed = {"schedule": {"time": iso(at), "trigger": trigger.id}}
            schedule = self.store.schedule_execution(revision.id, trigger.id, now)
            execution_id = services.start_by_trigger(
                self.store, revision, trigger, passed, now, schedule_id=schedule
            )
            self.store.add_tick(flow.namespace, flow.id, trigger.id, at, execution_id, now)
        logger.info(
            "schedule %s of %s: tick %s started execution %d (%.3f s late)",
            trigger.id,
            flow.key,
            iso(at),
            execution_id,
            now - at,
            extra={"event": "scheduled", "execution_id": execution_id},
        )
        return execution_id

    def stop(self) -> None:
        """Give the lease up so that another server takes over at once."""
        self.store.drop_lease(LEASE, self.holder)


def schedule_of(trigger: Trigger) -> cron.Schedule:
    return cron.Schedule(
        trigger.cron, trigger.timezone, trigger.dialect, trigger.catchup, trigger.max_catchup
    )


def next_fire_times(trigger: Trigger, after: float, count: int = 5) -> list[float]:
    return cron.next_times(schedule_of(trigger), after, count)


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")
