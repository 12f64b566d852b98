"""Automatic expiry (``ordo server`` applying the retention itself) and stored schedules
fired by the scheduler, on every backend, with an injected clock."""

from __future__ import annotations

import random

from ordo import services
from ordo.engine import open_store
from ordo.model import Flow, Outcome, State, Task
from ordo.store import Store
from ordo.triggers.expiry import Expiry
from ordo.triggers.scheduler import Scheduler

DAY = 86_400.0
NOW = 1_800_000_000.0
FLOW = Flow(id="f", tasks=(Task(id="a", type="shell", spec={"command": "true"}),), base_dir="/tmp")


def ended(store: Store, at: float) -> int:
    found = store.find_revision("hash-f", None)
    revision = found.id if found else store.add_revision(FLOW, "source", "hash-f", at).id
    execution_id = store.create_execution(revision, {}, {}, at)
    for claim in store.claim("w1", 10, at, 30.0, execution_id=execution_id):
        store.record_outcomes([(claim, Outcome(State.SUCCESS, exit_code=0))], at, random.Random(1))
    assert store.get_execution(execution_id).state is State.SUCCESS
    return execution_id


def test_the_server_expires_old_executions_daily_keeping_saved_ones(store: Store) -> None:
    _old, saved, recent = (
        ended(store, NOW - 40 * DAY),
        ended(store, NOW - 40 * DAY),
        ended(store, NOW - DAY),
    )
    services.save(store, saved, "keep me", None, NOW)
    clock = [NOW]
    expiry = Expiry(store, "server-a", 30, 3, 1, clock=lambda: clock[0])
    first = expiry.tick()
    assert first is not None and first.executions == 1
    remaining = {e.id for e in store.list_executions(limit=10)}
    assert remaining == {saved, recent}
    late = ended(store, NOW - 50 * DAY)
    clock[0] = NOW + 3600  # not a day later: nothing happens
    assert expiry.tick() is None
    assert late in {e.id for e in store.list_executions(limit=10)}
    clock[0] = NOW + DAY + 1
    again = expiry.tick()
    assert again is not None and again.executions == 1
    assert {e.id for e in store.list_executions(limit=10)} == {saved, recent}


def test_one_server_at_a_time_applies_the_retention(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        ended(a, NOW - 40 * DAY)
        one = Expiry(a, "server-a", 30, 3, 1, clock=lambda: NOW)
        other = Expiry(b, "server-b", 30, 3, 1, clock=lambda: NOW + 60)
        assert one.tick() is not None
        assert other.tick() is None  # server-a holds the lease
    finally:
        a.close()
        b.close()


def test_a_stored_schedule_fires_once_per_tick_with_two_schedulers(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        revision = a.add_revision(FLOW, "source", "hash-f", NOW)
        services.add_schedule(a, "default", "f", "*/5 * * * *", "UTC", {}, True, "test", NOW)
        clock = [NOW]
        first = Scheduler(a, "a", clock=lambda: clock[0])
        second = Scheduler(b, "b", clock=lambda: clock[0])
        assert first.tick() == [] and second.tick() == []  # seen from now on
        clock[0] = NOW + 300
        started = first.tick()
        first.stop()
        second._checked.clear()
        started += second.tick()
        started += second.tick()
        assert len(started) == 1
        execution = a.get_execution(started[0])
        assert execution.revision_id == revision.id
        assert execution.started_by and execution.started_by.startswith("schedule:#")
        schedule = a.list_schedules("default", "f")[0]
        assert a.schedule_checked("default", "f", schedule.trigger_id) is not None
        services.remove_schedule(a, schedule.id)
        assert a.schedule_checked("default", "f", schedule.trigger_id) is None
        assert a.list_schedules() == []
    finally:
        a.close()
        b.close()
