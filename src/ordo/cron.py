"""Cron maths: when a schedule fires. Pure: times come in and go out as epoch seconds.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or are one of
:data:`ALIASES`; they are read in the schedule's time zone by cronsim. Day of week is
0 or 7 = Sunday, except in the ``monday0`` dialect (the Executor seed's cron), where
0 = Monday ... 6 = Sunday. When both day fields are restricted, either may match (as in
Vixie cron).

Daylight-saving policy (Debian cron's, which cronsim follows): a time that does not exist
because clocks jump forward (02:30 on the spring day in Europe/Vienna) fires once, right
after the jump; a time that exists twice because clocks go back fires once, at its first
occurrence; expressions with ``*`` in the hour field fire every real hour. So no tick
fires twice and none is lost silently across either transition.

Missed ticks (the scheduler was down) are decided by the schedule's ``catchup``:
``none`` starts none of them (only a tick at most :data:`ON_TIME` seconds old counts as
on time), ``last`` starts the newest, ``all`` starts all of them, at most ``max_catchup``
(the newest ones).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CATCHUP = ("none", "last", "all")
DIALECTS = ("standard", "monday0")
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
ON_TIME = 60.0
FIELDS = "minute hour day-of-month month day-of-week"
_DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class Schedule:
    cron: str
    timezone: str = "UTC"
    dialect: str = "standard"
    catchup: str = "none"
    max_catchup: int = 10


def schedule_problems(cron: object, timezone: object, dialect: object) -> list[tuple[str, str]]:
    """Every problem as (field, message); empty when the schedule is valid."""
    problems: list[tuple[str, str]] = []
    if dialect not in DIALECTS:
        problems.append(("dialect", f"{dialect!r} must be standard or monday0"))
    if not isinstance(timezone, str) or not _zone_ok(timezone):
        problems.append(
            (
                "timezone",
                f"{timezone!r} is not a known time zone (an IANA name like Europe/Vienna or UTC)",
            )
        )
    if not isinstance(cron, str):
        problems.append(("cron", f"expected a cron expression (a string), found {cron!r}"))
        return problems
    try:
        expression = _standard(cron, dialect if dialect in DIALECTS else "standard")
        CronSim(expression, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    except (CronSimError, ValueError) as exc:
        problems.append(("cron", f"{cron!r}: {_why(exc)}"))
    return problems


def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _why(exc: Exception) -> str:
    text = str(exc)
    if "number of fields" in text:
        return f"a cron expression has 5 fields ({FIELDS}) or is one of {', '.join(ALIASES)}"
    for name, span in _RANGES.items():
        if text.lower() in (f"bad {name}", f"bad {name.replace('-of-', ' of ')}"):
            return f"bad {name} field: it takes {span}, lists (a,b), ranges (a-b) and steps (*/n)"
    return text[0].lower() + text[1:] if text else "not a valid cron expression"


_RANGES = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 (or L)",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 (0 and 7 = Sunday) or MON-SUN",
}


def _standard(cron: str, dialect: str) -> str:
    """The expression as cronsim reads it: aliases expanded, monday0 day-of-week made
    Sunday-based."""
    text = ALIASES.get(cron.strip().lower(), cron.strip())
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron expression has 5 fields ({FIELDS}) or is one of {', '.join(ALIASES)}"
        )
    if dialect == "monday0":
        fields[4] = _monday0(fields[4])
    return " ".join(fields)


def _monday0(field: str) -> str:
    """A monday0 day-of-week field (0 = Monday ... 6 = Sunday) in cronsim's terms."""
    days: set[int] = set()
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            if not step_text:
                return "*"
            lo, hi = 0, 6
        elif "-" in body:
            lo, hi = (_day(x) for x in body.split("-", 1))
        else:
            lo = hi = _day(body)
            if step_text:
                hi = 6
        if lo > hi or step < 1:
            raise ValueError(f"day-of-week {part!r}: not a range monday0 knows (0-6)")
        days.update(range(lo, hi + 1, step))
    return ",".join(str((d + 1) % 7) for d in sorted(days))


def _day(text: str) -> int:
    name = text.strip().upper()
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    if not name.isdigit() or int(name) > 6:
        raise ValueError(f"day-of-week {text!r} is out of range 0-6 (monday0: 0 = Monday)")
    return int(name)


def _iterate(schedule: Schedule, after: float) -> CronSim:
    zone = ZoneInfo(schedule.timezone)
    start = datetime.datetime.fromtimestamp(after, zone)
    return CronSim(_standard(schedule.cron, schedule.dialect), start)


def next_times(schedule: Schedule, after: float, count: int) -> list[float]:
    """The next ``count`` fire times strictly after ``after``, ascending."""
    found: list[float] = []
    for moment in _iterate(schedule, after):
        ts = moment.timestamp()
        if ts <= after or (found and ts <= found[-1]):
            continue
        found.append(ts)
        if len(found) >= count:
            break
    return found


def previous_times(schedule: Schedule, before: float, count: int) -> list[float]:
    """Up to ``count`` fire times at or before ``before``, newest first."""
    it = CronSim(
        _standard(schedule.cron, schedule.dialect),
        datetime.datetime.fromtimestamp(before + 1, ZoneInfo(schedule.timezone)),
        reverse=True,
    )
    found: list[float] = []
    for moment in it:
        ts = moment.timestamp()
        if ts > before or (found and ts >= found[-1]):
            continue
        found.append(ts)
        if len(found) >= count:
            break
    return found


def due_times(schedule: Schedule, last: float, now: float) -> list[float]:
    """The ticks in ``(last, now]`` to start now, ascending, by ``schedule.catchup``."""
    if now <= last:
        return []
    wanted = schedule.max_catchup if schedule.catchup == "all" else 1
    newest = [t for t in previous_times(schedule, now, wanted) if t > last]
    if schedule.catchup == "none":
        newest = [t for t in newest if now - t <= ON_TIME]
    return sorted(newest)
