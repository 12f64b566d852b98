"""Cron maths with explicit times: fire times, the monday0 dialect, daylight saving in
both directions, catch-up after downtime, and what is wrong with a bad schedule."""

from __future__ import annotations

import datetime
import itertools
from zoneinfo import ZoneInfo

import pytest

from ordo.cron import Schedule, due_times, next_times, schedule_problems

VIENNA = ZoneInfo("Europe/Vienna")


def at(*parts: int, zone: datetime.tzinfo = datetime.UTC) -> float:
    return datetime.datetime(*parts, tzinfo=zone).timestamp()


def local(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, VIENNA).strftime("%Y-%m-%d %H:%M %Z")


def weekday(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%a")


def test_next_times_are_strictly_after_and_ascending() -> None:
    times = next_times(Schedule("*/15 * * * *"), at(2026, 12, 3, 10, 0), 4)
    assert times == [at(2026, 12, 3, 10, m) for m in (15, 30, 45)] + [at(2026, 12, 3, 11, 0)]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [("@hourly", at(2026, 12, 3, 11)), ("@daily", at(2026, 12, 4)), ("@monthly", at(2027, 1, 1))],
)
def test_aliases(alias: str, expected: float) -> None:
    assert next_times(Schedule(alias), at(2026, 12, 3, 10, 30), 1) == [expected]


def test_monday0_counts_days_of_week_from_monday() -> None:
    start = at(2026, 12, 3)  # a Thursday
    assert {weekday(t) for t in next_times(Schedule("0 9 * * 0", dialect="monday0"), start, 3)} == {
        "Mon"
    }
    assert {weekday(t) for t in next_times(Schedule("0 9 * * 6", dialect="monday0"), start, 3)} == {
        "Sun"
    }
    weekdays = next_times(Schedule("0 9 * * 0-4", dialect="monday0"), start, 10)
    assert {weekday(t) for t in weekdays} == {"Mon", "Tue", "Wed", "Thu", "Fri"}
    weekend = next_times(Schedule("0 9 * * 5-6", dialect="monday0"), start, 4)
    assert [weekday(t) for t in weekend] == ["Sat", "Sun", "Sat", "Sun"]
    assert {weekday(t) for t in next_times(Schedule("0 9 * * 0"), start, 3)} == {"Sun"}


def test_a_time_skipped_in_spring_fires_once_right_after_the_jump() -> None:
    s = Schedule("30 2 * * *", "Europe/Vienna")
    times = next_times(s, at(2026, 3, 28, 12, zone=VIENNA), 3)
    assert [local(t) for t in times] == [
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]


def test_a_time_repeated_in_autumn_fires_once() -> None:
    s = Schedule("30 2 * * *", "Europe/Vienna")
    times = next_times(s, at(2026, 10, 24, 12, zone=VIENNA), 2)
    assert [local(t) for t in times] == ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]


def test_every_real_hour_fires_across_both_transitions_and_nothing_twice() -> None:
    hourly = Schedule("0 * * * *", "Europe/Vienna")
    autumn = next_times(hourly, at(2026, 10, 25, zone=VIENNA) - 1, 30)
    spring = next_times(hourly, at(2026, 3, 29, zone=VIENNA) - 1, 30)
    assert len([t for t in autumn if t < at(2026, 10, 26, zone=VIENNA)]) == 25
    assert len([t for t in spring if t < at(2026, 3, 30, zone=VIENNA)]) == 23
    quarter = next_times(Schedule("*/15 * * * *", "Europe/Vienna"), at(2026, 10, 24), 400)
    assert len(set(quarter)) == len(quarter) and quarter == sorted(quarter)
    assert all(b - a == 900 for a, b in itertools.pairwise(quarter))


@pytest.mark.parametrize(
    ("catchup", "count"),
    [("none", 0), ("last", 1), ("all", 3)],
)
def test_after_three_hours_down_the_catchup_policy_decides(catchup: str, count: int) -> None:
    last = at(2026, 12, 3, 10, 0, 30)
    now = at(2026, 12, 3, 13, 10)
    due = due_times(Schedule("@hourly", catchup=catchup), last, now)
    assert len(due) == count and due == sorted(due)
    if due:
        assert due[-1] == at(2026, 12, 3, 13)


def test_all_is_capped_by_max_catchup_and_an_on_time_tick_always_fires() -> None:
    capped = due_times(
        Schedule("@hourly", catchup="all", max_catchup=2), at(2026, 12, 1), at(2026, 12, 3)
    )
    assert capped == [at(2026, 12, 2, 23), at(2026, 12, 3)]
    assert due_times(Schedule("@hourly"), at(2026, 12, 3, 9, 59), at(2026, 12, 3, 10, 0, 20)) == [
        at(2026, 12, 3, 10)
    ]
    years = due_times(Schedule("* * * * *", catchup="all"), at(2016, 1, 1), at(2026, 12, 3, 10))
    assert len(years) == 10 and years[-1] == at(2026, 12, 3, 10)


@pytest.mark.parametrize(
    ("cron", "timezone", "dialect", "field", "words"),
    [
        ("61 * * * *", "UTC", "standard", "cron", "minute field: it takes 0-59"),
        ("* * *", "UTC", "standard", "cron", "5 fields"),
        ("* * * * 8", "UTC", "standard", "cron", "day-of-week"),
        ("* * * * 7", "UTC", "monday0", "cron", "0-6"),
        ("* * * * *", "Europe/Viena", "standard", "timezone", "not a known time zone"),
        ("* * * * *", "UTC", "sunday1", "dialect", "standard or monday0"),
        (5, "UTC", "standard", "cron", "a string"),
    ],
)
def test_bad_schedules_say_which_field_and_why(
    cron: object, timezone: str, dialect: str, field: str, words: str
) -> None:
    problems = schedule_problems(cron, timezone, dialect)
    assert [f for f, _ in problems] == [field]
    assert words in problems[0][1]


def test_a_good_schedule_has_no_problems() -> None:
    assert schedule_problems("0 9 * * MON-FRI", "Europe/Vienna", "standard") == []
    assert schedule_problems("@daily", "UTC", "monday0") == []
