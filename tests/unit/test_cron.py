"""Cron schedules: aliases, dialects, daylight saving, catch-up after a pause, validation."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from ordo.cron import (
    ALIASES,
    ON_TIME,
    Schedule,
    due_times,
    next_times,
    schedule_problems,
)

VIENNA = "Europe/Vienna"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = "UTC", fold: int = 0) -> float:
    """Epoch seconds of a wall time in `tz` (fold=1: the second of a repeated time)."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz), fold=fold).timestamp()


def local(t: float, tz: str = "UTC") -> datetime:
    return datetime.fromtimestamp(t, ZoneInfo(tz))


def ticks_between(schedule: Schedule, start: float, end: float) -> list[float]:
    """All ticks in (start, end], through next_times only."""
    out: list[float] = []
    after = start
    while True:
        (t,) = next_times(schedule, after, 1)
        if t > end:
            return out
        out.append(t)
        after = t


def local_day(y: int, mo: int, d: int, tz: str) -> tuple[float, float]:
    """(start, end) of a local calendar day as a half-open epoch interval [start, end)."""
    start = datetime(y, mo, d, tzinfo=ZoneInfo(tz))
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def ticks_on_day(schedule: Schedule, y: int, mo: int, d: int) -> list[float]:
    start, end = local_day(y, mo, d, schedule.timezone)
    return ticks_between(schedule, start - 1, end - 1)


# --- next_times -------------------------------------------------------------------------


def test_next_times_are_strictly_after_and_in_order() -> None:
    hourly = Schedule("0 * * * *")
    t10 = at(2026, 1, 5, 10)
    assert next_times(hourly, t10, 3) == [t10 + 3600, t10 + 7200, t10 + 10800]
    assert next_times(hourly, t10 - 0.5, 1) == [t10]
    assert next_times(hourly, t10 + 0.5, 1) == [t10 + 3600]
    assert next_times(hourly, t10, 0) == []


def test_aliases_mean_their_standard_expressions() -> None:
    start = at(2026, 5, 13, 10, 30)  # a Wednesday
    expected = {
        "@hourly": at(2026, 5, 13, 11),
        "@daily": at(2026, 5, 14),
        "@midnight": at(2026, 5, 14),
        "@weekly": at(2026, 5, 17),  # Sunday
        "@monthly": at(2026, 6, 1),
        "@yearly": at(2027, 1, 1),
        "@annually": at(2027, 1, 1),
    }
    assert set(expected) == set(ALIASES)
    for alias, first in expected.items():
        assert next_times(Schedule(alias), start, 1) == [first], alias
    assert next_times(Schedule("@weekly", dialect="monday0"), start, 1) == [at(2026, 5, 17)]


def test_timezone_reads_the_expression_on_the_local_clock() -> None:
    nine_vienna = Schedule("0 9 * * *", timezone=VIENNA)
    assert next_times(nine_vienna, at(2026, 7, 1), 1) == [at(2026, 7, 1, 7)]  # CEST = UTC+2
    assert next_times(nine_vienna, at(2026, 1, 1), 1) == [at(2026, 1, 1, 8)]  # CET = UTC+1


def test_standard_dialect_sunday_is_0_and_7() -> None:
    start = at(2026, 5, 13)
    for expr in ("0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"):
        assert [local(t).weekday() for t in next_times(Schedule(expr), start, 3)] == [6, 6, 6]


def weekdays(expr: str, dialect: str, count: int = 14) -> list[int]:
    """Python weekdays (0 = Monday) of the next ticks of a daily-at-09:00 style expr."""
    schedule = Schedule(expr, timezone=VIENNA, dialect=dialect)
    return [local(t, VIENNA).weekday() for t in next_times(schedule, at(2026, 5, 13), count)]


def test_monday0_day_numbers_start_on_monday() -> None:
    assert set(weekdays("0 9 * * 0", "monday0")) == {0}
    assert set(weekdays("0 9 * * 6", "monday0")) == {6}
    assert set(weekdays("0 9 * * 0-4", "monday0")) == {0, 1, 2, 3, 4}
    assert set(weekdays("0 9 * * 5-6", "monday0")) == {5, 6}
    assert set(weekdays("0 9 * * 1,3", "monday0")) == {1, 3}
    assert set(weekdays("0 9 * * */2", "monday0")) == {0, 2, 4, 6}
    assert set(weekdays("0 9 * * 4-6/2", "monday0")) == {4, 6}
    assert set(weekdays("0 9 * * *", "monday0", 7)) == set(range(7))


def test_monday0_day_names_keep_their_meaning() -> None:
    assert set(weekdays("0 9 * * MON", "monday0")) == {0}
    assert set(weekdays("0 9 * * sun", "monday0")) == {6}
    assert set(weekdays("0 9 * * MON-FRI", "monday0")) == {0, 1, 2, 3, 4}
    assert set(weekdays("0 9 * * SAT-SUN", "monday0")) == {5, 6}
    assert set(weekdays("0 9 * * MON-FRI", "standard")) == {0, 1, 2, 3, 4}


def test_monday0_last_and_nth_weekday() -> None:
    last_friday = Schedule("0 9 * * 4L", dialect="monday0")
    assert [local(t).date().isoformat() for t in next_times(last_friday, at(2026, 5, 1), 2)] == [
        "2026-05-29",
        "2026-06-26",
    ]
    second_monday = Schedule("0 9 * * 0#2", dialect="monday0")
    assert [local(t).day for t in next_times(second_monday, at(2026, 5, 1), 2)] == [11, 8]


def test_day_of_month_and_day_of_week_both_restricted_match_either() -> None:
    # Vixie/Debian cron: the 13th OR any Friday.
    days = [local(t).date() for t in next_times(Schedule("0 0 13 * 5"), at(2026, 4, 30), 5)]
    assert [d.isoformat() for d in days] == [
        "2026-05-01",
        "2026-05-08",
        "2026-05-13",
        "2026-05-15",
        "2026-05-22",
    ]


def test_day_of_week_starting_with_star_means_both_must_match() -> None:
    # */2 starts with *: the 1st-7th AND Sun/Tue/Thu/Sat (standard) or Mon/Wed/Fri/Sun
    # (monday0, where */2 becomes a list but keeps the AND). 2026-05-01 is a Friday.
    first_week = "0 0 1-7 * */2"
    standard = next_times(Schedule(first_week), at(2026, 4, 30), 4)
    assert [local(t).day for t in standard] == [2, 3, 5, 7]
    monday0 = next_times(Schedule(first_week, dialect="monday0"), at(2026, 4, 30), 4)
    assert [local(t).day for t in monday0] == [1, 3, 4, 6]


# --- daylight saving (Europe/Vienna 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00) --


def test_fixed_time_in_skipped_spring_hour_fires_once_right_after_the_jump() -> None:
    s = Schedule("30 2 * * *", timezone=VIENNA)
    assert ticks_on_day(s, 2026, 3, 29) == [at(2026, 3, 29, 3, 0, VIENNA)]
    assert ticks_on_day(s, 2026, 3, 30) == [at(2026, 3, 30, 2, 30, VIENNA)]


def test_fixed_time_in_repeated_autumn_hour_fires_once_at_first_occurrence() -> None:
    s = Schedule("30 2 * * *", timezone=VIENNA)
    assert ticks_on_day(s, 2026, 10, 25) == [at(2026, 10, 25, 2, 30, VIENNA, fold=0)]


def test_fixed_times_merged_by_the_spring_jump_fire_once() -> None:
    s = Schedule("0 2,3 * * *", timezone=VIENNA)
    assert ticks_on_day(s, 2026, 3, 29) == [at(2026, 3, 29, 3, 0, VIENNA)]


def test_hourly_follows_real_hours_across_transitions() -> None:
    s = Schedule("0 * * * *", timezone=VIENNA)
    autumn = ticks_on_day(s, 2026, 10, 25)
    spring = ticks_on_day(s, 2026, 3, 29)
    assert len(autumn) == 25
    assert len(spring) == 23
    for day in (autumn, spring):
        assert all(b - a == 3600 for a, b in pairwise(day))


def test_wildcard_minute_in_skipped_hour_has_no_tick_that_day() -> None:
    # Documented exception (as in Debian cron): no 02:xx wall time exists on the spring day.
    s = Schedule("*/30 2 * * *", timezone=VIENNA)
    assert ticks_on_day(s, 2026, 3, 29) == []
    autumn = ticks_on_day(s, 2026, 10, 25)
    assert len(autumn) == 4  # 02:00, 02:30 CEST and again CET: four distinct instants
    assert len(set(autumn)) == 4


def test_quarter_hourly_has_no_duplicates_across_transitions() -> None:
    s = Schedule("*/15 * * * *", timezone=VIENNA)
    for y, mo, d, hours in ((2026, 3, 29, 23), (2026, 10, 25, 25)):
        day = ticks_on_day(s, y, mo, d)
        assert len(day) == len(set(day)) == hours * 4
        assert all(b - a == 900 for a, b in pairwise(day))


@pytest.mark.parametrize(
    "expr",
    ["30 2 * * *", "0 * * * *", "*/15 * * * *", "0 2,3 * * *", "30 1-3 * * *", "15 */3 * * *"],
)
@pytest.mark.parametrize("tz", [VIENNA, "America/New_York", "Australia/Lord_Howe", "UTC"])
def test_next_times_strictly_increasing_across_transitions(expr: str, tz: str) -> None:
    s = Schedule(expr, timezone=tz)
    for start in (at(2026, 3, 27, tz=tz), at(2026, 10, 23, tz=tz), at(2026, 4, 3, tz=tz)):
        times = next_times(s, start, 200)
        assert times[0] > start
        assert all(a < b for a, b in pairwise(times))


def test_next_times_from_inside_repeated_hour_never_goes_back() -> None:
    s = Schedule("30 2 * * *", timezone=VIENNA)
    after = at(2026, 10, 25, 2, 10, VIENNA, fold=1)  # 40 min after the 02:30 CEST tick
    assert next_times(s, after, 1) == [at(2026, 10, 26, 2, 30, VIENNA)]


# --- due_times --------------------------------------------------------------------------

HOURLY = Schedule("0 * * * *")
T10 = at(2026, 5, 13, 10)
H = 3600.0


def hourly(catchup: str, max_catchup: int = 10) -> Schedule:
    return Schedule("0 * * * *", catchup=catchup, max_catchup=max_catchup)


def test_none_drops_missed_ticks_after_an_outage() -> None:
    now = T10 + 3 * H + 30 * 60  # 13:30: 11:00, 12:00 and 13:00 were missed
    assert due_times(hourly("none"), T10, now) == []


def test_none_starts_a_tick_at_most_on_time_late() -> None:
    assert due_times(hourly("none"), T10, T10 + 3 * H + 30) == [T10 + 3 * H]
    assert due_times(hourly("none"), T10, T10 + 3 * H + ON_TIME) == [T10 + 3 * H]
    assert due_times(hourly("none"), T10, T10 + 3 * H + ON_TIME + 1) == []


def test_last_starts_only_the_newest_missed_tick() -> None:
    assert due_times(hourly("last"), T10, T10 + 3 * H + 1800) == [T10 + 3 * H]


def test_all_starts_every_missed_tick() -> None:
    assert due_times(hourly("all"), T10, T10 + 3 * H + 1800) == [
        T10 + H,
        T10 + 2 * H,
        T10 + 3 * H,
    ]


def test_all_keeps_only_the_newest_max_catchup() -> None:
    assert due_times(hourly("all", 2), T10, T10 + 3 * H + 1800) == [T10 + 2 * H, T10 + 3 * H]


def test_interval_is_open_at_last_and_closed_at_now() -> None:
    assert due_times(hourly("all"), T10, T10 + H) == [T10 + H]
    assert due_times(hourly("all"), T10, T10 + H - 1) == []
    assert due_times(hourly("all"), T10, T10) == []
    assert due_times(hourly("all"), T10 + H, T10) == []


def test_last_years_ago_gives_the_newest_ticks() -> None:
    every_minute = Schedule("* * * * *", catchup="all", max_catchup=3)
    last, now = at(2000, 1, 1), at(2026, 5, 13, 10, 0) + 20
    newest = [now - 20 - 120, now - 20 - 60, now - 20]
    assert due_times(every_minute, last, now) == newest
    assert due_times(Schedule("* * * * *", catchup="last"), last, now) == newest[-1:]
    assert due_times(Schedule("* * * * *", catchup="none"), last, now) == newest[-1:]
    yearly = Schedule("@yearly", catchup="all", max_catchup=2)
    assert due_times(yearly, last, now) == [at(2025, 1, 1), at(2026, 1, 1)]


def test_catchup_inside_repeated_autumn_hour() -> None:
    # now is 02:10 CET, 40 minutes after the 02:30 CEST tick: it is the newest tick.
    s = Schedule("30 2 * * *", timezone=VIENNA, catchup="all", max_catchup=2)
    now = at(2026, 10, 25, 2, 10, VIENNA, fold=1)
    today = at(2026, 10, 25, 2, 30, VIENNA, fold=0)
    assert due_times(s, at(2026, 10, 1), now) == [at(2026, 10, 24, 2, 30, VIENNA), today]
    last = Schedule("30 2 * * *", timezone=VIENNA, catchup="last")
    assert due_times(last, at(2026, 10, 1), now) == [today]


def test_all_across_a_transition_gives_each_tick_once() -> None:
    s = Schedule("0 * * * *", timezone=VIENNA, catchup="all", max_catchup=100)
    start, end = local_day(2026, 10, 25, VIENNA)
    assert due_times(s, start - 1, end - 1) == ticks_on_day(s, 2026, 10, 25)


def test_bad_catchup_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="catchup 'some' must be none, last or all"):
        due_times(Schedule("@daily", catchup="some"), 0, 1)
    with pytest.raises(ValueError, match="max_catchup 0 must be at least 1"):
        due_times(Schedule("@daily", catchup="all", max_catchup=0), 0, 1)


def test_invalid_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="minute 61 is out of range 0-59"):
        next_times(Schedule("61 * * * *"), 0, 1)
    with pytest.raises(ValueError, match="not a known time zone"):
        due_times(Schedule("@daily", timezone="Mars/Olympus"), 0, 1)


# --- schedule_problems ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cron",
    [
        "0 * * * *",
        "*/15 9-17 * * MON-FRI",
        "0 0 L * *",
        "0 0 LW * *",
        "0 0 * * 5L",
        "0 0 * * 1#2",
        "0 0 1,15 JAN-MAR *",
        "0 0 29 2 *",
        " @daily ",
        "@Hourly",
    ],
)
def test_valid_expressions_have_no_problems(cron: str) -> None:
    assert schedule_problems(cron, "UTC", "standard") == []
    assert schedule_problems(cron, VIENNA, "monday0") == []


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "'61 * * * *': minute 61 is out of range 0-59"),
        ("0 24 * * *", "'0 24 * * *': hour 24 is out of range 0-23"),
        ("0 0 0 * *", "'0 0 0 * *': day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "'0 0 * 13 *': month 13 is out of range 1-12"),
        ("0 0 * * 8", "'0 0 * * 8': day-of-week 8 is out of range 0-7"),
        (
            "* * *",
            "'* * *': a cron expression has 5 fields (minute hour day-of-month month "
            "day-of-week) or is one of @hourly, @daily, @midnight, @weekly, @monthly, "
            "@yearly, @annually",
        ),
        ("0 0 0 * * *", "'0 0 0 * * *': a cron expression has 5 fields"),
        (
            "20****",
            "'20****': a cron expression has 5 fields separated by spaces; "
            "did you mean '20 * * * *'?",
        ),
        ("*/5 2**1-5", "did you mean '*/5 2 * * 1-5'?"),
        ("", "'': a cron expression has 5 fields"),
        ("@reboot", "'@reboot': @reboot is not one of @yearly, @annually"),
        ("x * * * *", "'x * * * *': minute 'X' is not a number"),
        ("0 0 * FOO *", "month 'FOO' is not a number or a month name (JAN-DEC)"),
        ("0 0 * * FUN", "day-of-week 'FUN' is not a number or a day name (MON-SUN)"),
        ("0 5-1 * * *", "'0 5-1 * * *': hour range 5-1 runs backwards (start after end)"),
        ("*/0 * * * *", "minute step '0' must be a whole number of at least 1"),
        ("0 0 15W * *", "day-of-month '15W': W (nearest weekday) is not supported"),
        ("0 0 W * *", "day-of-month 'W': W (nearest weekday) is not supported"),
        ("L * * * *", "minute 'L' is not a number"),
        ("0 0 * * L", "day-of-week 'L': L needs a day number before it, e.g. 5L"),
        ("0 0 * * 1#6", "day-of-week '1#6': the number after # must be 1-5"),
        ("0 0 ? * *", "day-of-month '?' is not supported: use *"),
        ("0 0 30 2 *", "'0 0 30 2 *': day-of-month 30 never occurs in the chosen months"),
        ("0 0 31 4,6 *", "day-of-month 31 never occurs in the chosen months"),
    ],
)
def test_cron_problems_say_why(cron: str, message: str) -> None:
    problems = schedule_problems(cron, "UTC", "standard")
    assert len(problems) == 1
    field, text = problems[0]
    assert field == "cron"
    assert text.startswith(message) if message.startswith("'") else message in text


def test_monday0_day_of_week_is_0_to_6() -> None:
    assert schedule_problems("0 0 * * 7", "UTC", "monday0") == [
        (
            "cron",
            "'0 0 * * 7': day-of-week 7 is out of range 0-6 (monday0: 0 = Monday ... 6 = Sunday)",
        )
    ]
    assert schedule_problems("0 0 * * 7", "UTC", "standard") == []


def test_timezone_problems() -> None:
    assert schedule_problems("@daily", "Europe/Viena", "standard") == [
        (
            "timezone",
            "'Europe/Viena' is not a known time zone (an IANA name like Europe/Vienna or UTC)",
        )
    ]
    for bad in ("", "Europe", "../etc/passwd", "/etc/localtime", 1, None):
        assert [f for f, _ in schedule_problems("@daily", bad, "standard")] == ["timezone"]


def test_dialect_problems() -> None:
    assert schedule_problems("@daily", "UTC", "x") == [
        ("dialect", "'x' must be standard or monday0")
    ]
    assert schedule_problems("@daily", "UTC", None) == [
        ("dialect", "None must be standard or monday0")
    ]


def test_non_string_values_and_every_problem_at_once() -> None:
    assert schedule_problems(5, 7, 9) == [
        ("dialect", "9 must be standard or monday0"),
        ("cron", "5 must be a string like '0 * * * *' or '@daily'"),
        ("timezone", "7 is not a known time zone (an IANA name like Europe/Vienna or UTC)"),
    ]
