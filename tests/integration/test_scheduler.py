"""The scheduler and event triggers on each backend, with a fake clock: a tick starts
exactly one execution (even with three schedulers on one store), missed ticks follow
the catchup policy, inactive flows are ignored."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ordo import engine, services
from ordo.engine import open_store
from ordo.model import State
from ordo.store import Store
from ordo.triggers.scheduler import Scheduler

pytestmark = pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)

START = datetime.datetime(2026, 12, 3, 10, 0, 30, tzinfo=datetime.UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def flow_file(tmp_path: Path, triggers: str, flow_id: str = "tick") -> Path:
    path = tmp_path / f"{flow_id}.yaml"
    path.write_text(
        f"id: {flow_id}\ntriggers:\n{triggers}\ntasks:\n  - id: a\n    type: shell\n"
        "    command: 'true'\n"
    )
    return path


def started(store: Store, flow_id: str = "tick") -> list[str]:
    return [
        e.inputs["schedule"]["time"]
        for e in reversed(store.list_executions(flow=flow_id, limit=1000))
        if e.started_by and e.started_by.startswith("schedule")
    ]


def test_each_tick_starts_one_execution_and_a_new_trigger_starts_from_now(
    store: Store, tmp_path: Path
) -> None:
    engine.register_flow(store, flow_file(tmp_path, "  - {type: schedule, cron: '* * * * *'}"), 0)
    clock = Clock(START)
    scheduler = Scheduler(store, "a", clock=clock)
    assert scheduler.tick() == []  # first sight: nothing from the past
    clock.now += 30  # 10:01:00
    assert len(scheduler.tick()) == 1
    assert scheduler.tick() == []  # the same tick again: nothing
    clock.now += 60.2
    scheduler.tick()
    assert started(store) == ["2026-12-03T10:01:00Z", "2026-12-03T10:02:00Z"]
    execution = store.list_executions(flow="tick", limit=1)[0]
    assert execution.started_by == "schedule:schedule1"


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("none", []),
        ("last", ["2026-12-03T13:00:00Z"]),
        ("all", ["2026-12-03T11:00:00Z", "2026-12-03T12:00:00Z", "2026-12-03T13:00:00Z"]),
    ],
)
def test_missed_ticks_follow_the_catchup_policy(
    store: Store, tmp_path: Path, catchup: str, expected: list[str]
) -> None:
    path = flow_file(tmp_path, f"  - {{type: schedule, cron: '@hourly', catchup: {catchup}}}")
    engine.register_flow(store, path, 0)
    clock = Clock(START)
    Scheduler(store, "a", clock=clock).tick()
    clock.now += 3 * 3600 + 600  # down for three hours: 13:10:30
    Scheduler(store, "b", clock=clock, lease_seconds=10).tick()  # a new process
    assert started(store) == expected


def test_three_schedulers_on_one_store_start_each_tick_once(db: str, tmp_path: Path) -> None:
    setup = open_store(db)
    engine.register_flow(setup, flow_file(tmp_path, "  - {type: schedule, cron: '* * * * *'}"), 0)
    clock = Clock(START)
    stores = [open_store(db) for _ in range(3)]
    # each thinks it leads (leases of 0 s), so only the tick's key keeps them apart
    schedulers = [Scheduler(s, f"s{i}", clock=clock, lease_seconds=0) for i, s in enumerate(stores)]
    for s in schedulers:
        s.tick()
    for _ in range(5):
        clock.now += 60
        threads = [threading.Thread(target=s.tick) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(started(setup)) == 5 and len(set(started(setup))) == 5
    for s in stores:
        s.close()
    setup.close()


def test_only_the_lease_holder_schedules_and_another_takes_over(
    store: Store, tmp_path: Path
) -> None:
    engine.register_flow(store, flow_file(tmp_path, "  - {type: schedule, cron: '* * * * *'}"), 0)
    clock = Clock(START)
    a = Scheduler(store, "a", clock=clock, lease_seconds=45)
    b = Scheduler(store, "b", clock=clock, lease_seconds=45)
    a.tick()
    b.tick()
    clock.now += 30
    assert b.tick() == []  # a holds the lease
    assert len(a.tick()) == 1
    clock.now += 30
    assert b.tick() == []  # renewed by a at its last pass
    a.stop()  # gives the lease up
    clock.now += 30
    assert len(b.tick()) == 1


def test_inactive_flows_are_not_scheduled_nor_started_by_events(
    store: Store, tmp_path: Path
) -> None:
    triggers = "  - {type: schedule, cron: '* * * * *'}\n  - {type: event, event: go}"
    engine.register_flow(store, flow_file(tmp_path, triggers), 0)
    services.set_active(store, "default", "tick", False, 0)
    clock = Clock(START)
    scheduler = Scheduler(store, "a", clock=clock)
    scheduler.tick()
    clock.now += 60
    assert scheduler.tick() == []
    assert services.emit(store, "go", {}, START).executions == []
    services.set_active(store, "default", "tick", True, 0)
    assert len(services.emit(store, "go", {"n": 1}, START).executions) == 1
    clock.now += 60
    assert scheduler.tick() == []  # active again: from now on, nothing of the time before
    clock.now += 60
    assert len(scheduler.tick()) == 1


def test_events_start_each_subscribed_flow_whose_filter_holds(store: Store, tmp_path: Path) -> None:
    big = "  - {type: event, event: file.arrived, filter: '{{ event.data.size > 10 }}'}"
    engine.register_flow(store, flow_file(tmp_path, big, "big"), 0)
    engine.register_flow(
        store, flow_file(tmp_path, "  - {type: event, event: file.arrived}", "any"), 0
    )
    small = services.emit(store, "file.arrived", {"size": 3}, START)
    large = services.emit(store, "file.arrived", {"size": 30}, START)
    assert len(small.executions) == 1 and len(large.executions) == 2
    execution = store.get_execution(large.executions[0])
    assert execution.inputs["event"] == {
        "id": large.event_id,
        "type": "file.arrived",
        "data": {"size": 30},
    }
    assert [e.executions for e in store.list_events("file.arrived")] == [
        large.executions,
        small.executions,
    ]


@pytest.mark.parametrize("day", [(2026, 3, 29), (2026, 10, 25)])  # 01:00-04:00: 2 or 4 h
def test_across_daylight_saving_a_daily_tick_starts_once(
    store: Store, tmp_path: Path, day: tuple[int, int, int]
) -> None:
    trigger = "  - {type: schedule, cron: '30 2 * * *', timezone: Europe/Vienna}"
    engine.register_flow(store, flow_file(tmp_path, trigger), 0)
    vienna = ZoneInfo("Europe/Vienna")
    clock = Clock(datetime.datetime(*day, 1, 0, tzinfo=vienna).timestamp())
    end = datetime.datetime(*day, 4, 0, tzinfo=vienna).timestamp()
    scheduler = Scheduler(store, "a", clock=clock, lease_seconds=120)
    while clock.now < end:
        scheduler.tick()
        clock.now += 20
    assert len(started(store)) == 1


def test_a_schedule_is_a_schedule_execution_with_the_executions_it_started(
    store: Store, tmp_path: Path
) -> None:
    """Each active schedule is a long-lived execution of kind SCHEDULE, RUNNING while it
    is active, the parent of the executions its ticks start; it ends when the schedule
    is deactivated (its executions stay as they are)."""
    engine.register_flow(store, flow_file(tmp_path, "  - {type: schedule, cron: '* * * * *'}"), 0)
    clock = Clock(START)
    scheduler = Scheduler(store, "a", clock=clock)
    scheduler.tick()
    clock.now += 30
    (first,) = scheduler.tick()
    clock.now += 60
    (second,) = scheduler.tick()
    schedules = store.list_executions(kind="SCHEDULE")
    assert len(schedules) == 1
    schedule = schedules[0]
    assert (schedule.state, schedule.kind, schedule.flow_key) == (
        State.RUNNING,
        "SCHEDULE",
        "default/tick",
    )
    assert schedule.started_by == "schedule:schedule1"
    assert [c.id for c in store.children(schedule.id)] == [first, second]
    started = store.get_execution(first)
    assert started.parent_id == schedule.id and started.root_id == first  # a tree of its own
    assert started.kind == "FLOW"
    services.set_active(store, "default", "tick", False, clock.now)
    clock.now += 60
    assert scheduler.tick() == []
    ended = store.get_execution(schedule.id)
    assert ended.state is State.SUCCESS
    assert ended.reason == "schedule schedule1 of default/tick removed or deactivated"
    services.set_active(store, "default", "tick", True, clock.now)
    clock.now += 60
    scheduler.tick()
    assert len(store.list_executions(kind="SCHEDULE")) == 2  # a new one while active again
