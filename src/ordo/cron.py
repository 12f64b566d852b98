"""Cron schedules: validation, next fire times and the ticks due after a pause. Pure.

Time is passed in as epoch seconds (UTC floats); nothing here reads a clock or does I/O
beyond the standard library's time zone database. Iteration is delegated to ``cronsim``.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or are one of
:data:`ALIASES`. Aliases always mean their standard expression, in either dialect
(``@weekly`` is Sunday 00:00). Day-of-month and day-of-week both restricted (neither field
starts with ``*``) match a day when EITHER matches (Vixie/Debian cron OR semantics);
if either field starts with ``*`` both must match. ``L``/``LW`` (last day, last weekday) in
day-of-month and ``5L`` (last Friday), ``1#2`` (second Monday) in day-of-week are
supported; ``W`` (nearest weekday) and ``?`` are not.

Dialects: ``standard`` has day-of-week 0 and 7 = Sunday. ``monday0`` (the Executor seed's
cron) has 0 = Monday ... 6 = Sunday; it is translated to standard (d -> (d + 1) % 7,
ranges expanded to lists so 5-6 becomes 6,0); day names (MON ... SUN) keep their meaning.

Daylight saving policy (that of Debian cron, as implemented by cronsim), for a zone like
Europe/Vienna (2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00):

* A fixed-time job (neither minute nor hour starts with ``*``, e.g. ``30 2 * * *``) follows
  the local wall clock. A time in the hour skipped in spring fires once, right after the
  jump (``30 2 * * *`` fires at 03:00 CEST on 2026-03-29; ``0 2,3 * * *`` fires once at
  03:00 that day, both ticks being the same instant). A time in the repeated autumn hour
  fires once, at its first occurrence (``30 2 * * *`` fires at 02:30 CEST, not again at
  02:30 CET).
* A job with ``*`` at the start of the minute or hour field (``0 * * * *``, ``*/15 * * * *``)
  follows real time: it fires every real hour or minute that matches, so ``0 * * * *``
  fires 23 times on the spring day and 25 times on the autumn day.
* No tick ever fires twice (fire times are strictly increasing epoch seconds) and a
  fixed-time tick is never lost. The one exception, as in Debian cron: a job with a
  wildcard minute limited to the skipped hour (``*/30 2 * * *``) has no tick on the spring
  day, because no 02:xx wall time exists then.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Struct

if TYPE_CHECKING:
    from cronsim import CronSim

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
ON_TIME = 60.0  # seconds: a tick at most this late counts as on time, not missed

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_FIELD_COUNT = (
    "a cron expression has 5 fields (minute hour day-of-month month day-of-week) "
    "or is one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually"
)


class Schedule(Struct, frozen=True):
    """When a flow starts: a cron expression read in ``timezone`` and ``dialect``, and what
    to do about ticks missed while nothing ran (``catchup``, one of :data:`CATCHUP`)."""

    cron: str
    timezone: str = "UTC"
    dialect: str = "standard"
    catchup: str = "none"
    max_catchup: int = 10


class _Problem(Exception):
    """One field's problem, raised inside the checker; ``str()`` is the user message."""


def schedule_problems(cron: object, timezone: object, dialect: object) -> list[tuple[str, str]]:
    """Every problem as (field, message): field is "cron", "timezone" or "dialect"; the
    message says why in words a user understands, e.g. ("cron", "'61 * * * *': minute 61
    is out of range 0-59"). Non-string values are problems too. Empty list when valid."""
    problems: list[tuple[str, str]] = []
    dialect_ok = isinstance(dialect, str) and dialect in DIALECTS
    if not dialect_ok:
        problems.append(("dialect", f"{dialect!r} must be standard or monday0"))
    if not isinstance(cron, str):
        problems.append(("cron", f"{cron!r} must be a string like '0 * * * *' or '@daily'"))
    else:
        try:
            _expression(cron, dialect if dialect_ok else "standard")  # type: ignore[arg-type]
        except _Problem as exc:
            problems.append(("cron", f"{cron!r}: {exc}"))
    if not isinstance(timezone, str) or _zone(timezone) is None:
        problems.append(
            (
                "timezone",
                f"{timezone!r} is not a known time zone (an IANA name like Europe/Vienna or UTC)",
            )
        )
    return problems


def next_times(schedule: Schedule, after: float, count: int) -> list[float]:
    """The next `count` fire times strictly after `after` (epoch seconds, UTC), in order.

    Fewer when the expression has no more ticks (cronsim gives up after 50 years without
    a match). Raises ValueError when the schedule has problems (see
    :func:`schedule_problems`)."""
    out: list[float] = []
    if count <= 0:
        return out
    for t in _forward(schedule, after):
        out.append(t)
        if len(out) == count:
            break
    return out


def due_times(schedule: Schedule, last: float, now: float) -> list[float]:
    """The ticks to start now: ticks in the half-open interval (last, now], chosen by
    schedule.catchup: "none" -> only ticks at most ON_TIME seconds old (missed ones are
    dropped); "last" -> the newest tick in the interval, if any; "all" -> every tick in
    the interval, but at most the newest max_catchup of them. Ascending order.

    Cheap however long ago `last` is: only a few ticks near `now` are looked at. Raises
    ValueError when the schedule has problems, catchup is not one of :data:`CATCHUP` or
    max_catchup is below 1."""
    if schedule.catchup not in CATCHUP:
        raise ValueError(f"catchup {schedule.catchup!r} must be none, last or all")
    if schedule.max_catchup < 1:
        raise ValueError(f"max_catchup {schedule.max_catchup!r} must be at least 1")
    if now <= last:
        return []
    if schedule.catchup == "none":
        start = max(last, now - ON_TIME - 1.0)
        return [t for t in _between(schedule, start, now) if t > last and now - t <= ON_TIME]
    keep = 1 if schedule.catchup == "last" else schedule.max_catchup
    return _newest(schedule, last, now, keep)


def _newest(schedule: Schedule, last: float, now: float, keep: int) -> list[float]:
    """The newest `keep` ticks in (last, now], ascending.

    Reverse iteration only finds where to start, with two ticks of margin: near DST
    changes cronsim's reverse and forward iteration may disagree by a tick. The ticks
    themselves come from forward iteration, the same as :func:`next_times`."""
    start = last
    sim = _sim(schedule, now + 1.0, reverse=True)
    seen = 0
    for dt in sim:
        t = dt.timestamp()
        if t <= last:
            break
        if t <= now:
            seen += 1
        if seen > keep + 1:
            start = max(last, t - 1.0)
            break
    return _between(schedule, start, now)[-keep:]


def _between(schedule: Schedule, start: float, end: float) -> list[float]:
    """Ticks in (start, end], ascending; callers keep the interval short."""
    out: list[float] = []
    for t in _forward(schedule, start):
        if t > end:
            break
        out.append(t)
    return out


def _forward(schedule: Schedule, after: float) -> Iterator[float]:
    """Ticks strictly after `after`, strictly increasing.

    cronsim iterates fixed-time jobs on the naive local clock, so a start inside the
    repeated autumn hour can yield the hour's first occurrence, which is before `after`:
    such ticks (and any out of order) are dropped."""
    previous = after
    for dt in _sim(schedule, after, reverse=False):
        t = dt.timestamp()
        if t > previous:
            previous = t
            yield t


def _sim(schedule: Schedule, at: float, *, reverse: bool) -> CronSim:
    """A cronsim iterator for `schedule` starting at epoch `at` in the schedule's zone.

    The day-of-month/day-of-week AND-or-OR choice is taken from the expression as
    written: a monday0 ``*/2`` translates to a list, which alone would turn AND into OR."""
    problems = schedule_problems(schedule.cron, schedule.timezone, schedule.dialect)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    zone = _zone(schedule.timezone)
    assert zone is not None
    fields = _expression(schedule.cron, schedule.dialect)
    from cronsim import CronSim  # imported when a schedule is computed: start-up speed

    sim = CronSim(" ".join(fields), datetime.fromtimestamp(at, zone), reverse=reverse)
    written = ALIASES.get(schedule.cron.strip().lower(), schedule.cron).split()
    sim.day_and = written[2].startswith("*") or written[4].startswith("*")
    return sim


def _zone(name: str) -> ZoneInfo | None:
    """The IANA zone called `name`, or None when there is none."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _expression(cron: str, dialect: str) -> list[str]:
    """The 5 standard-dialect fields for `cron`; raises _Problem saying what is wrong."""
    text = cron.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise _Problem(f"{text} is not one of {', '.join(ALIASES)}")
        return ALIASES[text.lower()].split()
    fields = text.upper().split()
    if len(fields) != len(FIELDS):
        guess = _spaced(text)
        if guess is not None:
            raise _Problem(
                f"a cron expression has 5 fields separated by spaces; did you mean {guess!r}?"
            )
        raise _Problem(_FIELD_COUNT)
    for index, field in enumerate(fields):
        _check_field(index, field, dialect)
    _check_days_exist(fields)
    if dialect == "monday0":
        fields[4] = _monday0_to_standard(fields[4])
    from cronsim import CronSim, CronSimError  # imported when needed: start-up speed

    try:
        CronSim(" ".join(fields), datetime(2000, 1, 1))
    except CronSimError as exc:  # a case the checks above do not know about
        raise _Problem(f"cronsim rejects it ({exc})") from exc
    return fields


# One field written without the spaces around it: `*`, `*/5`, `5`, `1-5`, `1,3`, `0-30/10`.
_FIELD_TERM = re.compile(r"\*(?:/\d+)?|\d+(?:[-,]\d+)*(?:/\d+)?")


def _spaced(text: str) -> str | None:
    """`text` with fewer than 5 fields read as 5 fields run together, when it can be read
    only one sensible way (the Executor seed writes ``20****`` for ``20 * * * *``)."""
    chunks = text.split()
    if len(chunks) >= len(FIELDS):
        return None
    terms: list[str] = []
    for chunk in chunks:
        found = _FIELD_TERM.findall(chunk)
        if "".join(found) != chunk:
            return None
        terms += found
    return " ".join(terms) if len(terms) == len(FIELDS) else None


def _check_field(index: int, field: str, dialect: str) -> None:
    """Raise _Problem for the first bad term of field number `index` (0 = minute)."""
    name = FIELDS[index]
    if field == "?":
        raise _Problem(f"{name} '?' is not supported: use *")
    for term in field.split(","):
        if index == 2 and term in ("L", "LW"):
            continue
        if index == 2 and term.endswith("W"):
            raise _Problem(f"{name} {term!r}: W (nearest weekday) is not supported, L and LW are")
        if index == 4 and (term.endswith("L") or "#" in term):
            _check_nth_weekday(term, dialect)
            continue
        _values(index, term, dialect)


def _check_nth_weekday(term: str, dialect: str) -> None:
    """Check a day-of-week ``5L`` (last Friday) or ``1#2`` (second Monday) term."""
    if term.endswith("L"):
        day = term[:-1]
        if not day.isdigit():
            raise _Problem(f"day-of-week {term!r}: L needs a day number before it, e.g. 5L")
        _number(4, day, dialect)
        return
    day, _, nth = term.partition("#")
    _number(4, day, dialect)
    if not nth.isdigit() or not 1 <= int(nth) <= 5:
        raise _Problem(f"day-of-week {term!r}: the number after # must be 1-5")


def _values(index: int, term: str, dialect: str) -> list[int]:
    """The values one term (``*``, ``a``, ``a-b``, each optionally ``/step``) selects,
    numbered as written in `dialect`; raises _Problem."""
    name = FIELDS[index]
    low, high = _bounds(index, dialect)
    base, slash, step_text = term.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) < 1:
            raise _Problem(f"{name} step {step_text!r} must be a whole number of at least 1")
        step = int(step_text)
    if base == "*":
        first, last = low, high
    elif "-" in base:
        start_text, _, end_text = base.partition("-")
        first, last = _number(index, start_text, dialect), _number(index, end_text, dialect)
        if last < first:
            raise _Problem(f"{name} range {base} runs backwards (start after end)")
    else:
        first = _number(index, base, dialect)
        last = high if slash else first
    return list(range(first, last + 1, step))


def _bounds(index: int, dialect: str) -> tuple[int, int]:
    """The allowed range of field number `index`: monday0 day-of-week is 0-6."""
    if index == 4 and dialect == "monday0":
        return 0, 6
    return _RANGES[index]


def _number(index: int, text: str, dialect: str) -> int:
    """One value of field `index`: a number in range or a month/day name."""
    name = FIELDS[index]
    if index == 3 and text in _MONTHS:
        return _MONTHS.index(text) + 1
    if index == 4 and text in _DAYS:
        sunday0 = _DAYS.index(text)
        return (sunday0 - 1) % 7 if dialect == "monday0" else sunday0
    if not text.isdigit():
        names = {3: " or a month name (JAN-DEC)", 4: " or a day name (MON-SUN)"}
        raise _Problem(f"{name} {text!r} is not a number{names.get(index, '')}")
    low, high = _bounds(index, dialect)
    if not low <= int(text) <= high:
        hint = " (monday0: 0 = Monday ... 6 = Sunday)" if (index, dialect) == (4, "monday0") else ""
        raise _Problem(f"{name} {int(text)} is out of range {low}-{high}{hint}")
    return int(text)


def _check_days_exist(fields: list[str]) -> None:
    """Raise _Problem when day-of-month must match but never occurs in the chosen months
    (e.g. ``0 0 30 2 *``)."""
    if not (fields[2].startswith("*") or fields[4].startswith("*")):
        return  # OR semantics: the day-of-week alone can match
    terms = fields[2].split(",")
    if any(term in ("L", "LW") for term in terms):
        return
    days = [day for term in terms for day in _values(2, term, "standard")]
    months = [month for term in fields[3].split(",") for month in _values(3, term, "standard")]
    longest = max(_MONTH_DAYS[month - 1] for month in months)
    if min(days) > longest:
        raise _Problem(f"day-of-month {min(days)} never occurs in the chosen months")


def _monday0_to_standard(field: str) -> str:
    """Translate a checked monday0 day-of-week field to cronsim's Sunday = 0 numbering."""
    if field == "*":
        return field
    standard: set[int] = set()
    special: list[str] = []
    for term in field.split(","):
        if term.endswith("L") or "#" in term:
            day, mark, rest = (term[:-1], "L", "") if term.endswith("L") else term.partition("#")
            special.append(f"{(_number(4, day, 'monday0') + 1) % 7}{mark}{rest}")
        else:
            standard.update((day + 1) % 7 for day in _values(4, term, "monday0"))
    return ",".join([str(day) for day in sorted(standard)] + special)
