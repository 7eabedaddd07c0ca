"""What a schedule trigger says, read and checked: a cron expression, a one-off `at`
time, a timezone. Standard library only: a run loads (and checks) its project, and
needs none of the fire-time arithmetic of schedule.py (croniter), which only the
scheduler imports.

The cron syntax accepted is croniter's for five fields (tests/test_schedule.py checks
the two agree): lists, ranges (a reversed one wraps round), steps, month and weekday
names, 0 or 7 for Sunday, `?` for a whole day field, `L` (the last day of the month)
and `NW` (the weekday nearest day N) in the day of the month, `D#N` (the Nth weekday D
of the month) in the day of the week, and the @macros.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

MACROS: Final = MappingProxyType(
    {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
)
CRON_EXAMPLES: Final = (
    "use 5 fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * *', "
    "or @hourly, @daily, @weekly, @monthly, @yearly"
)
_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                  "dec")
_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_LONGEST: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # days of each month, at most
_DIGITS: Final = re.compile(r"[0-9]+")
_ITEM: Final = re.compile(r"(?P<start>\*|[0-9a-z]+)(?:-(?P<end>[0-9a-z]+))?(?:/(?P<step>[0-9]+))?")


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0  # the number of names[0]


_FIELDS: Final = (_Field("minute", 0, 59), _Field("hour", 0, 23), _Field("day of month", 1, 31),
                  _Field("month", 1, 12, _MONTHS, 1), _Field("day of week", 0, 7, _DAYS, 0))


class _BadCron(ValueError):
    """What is wrong with one field."""


def parse_cron(text: object) -> str:
    """`text` as a 5-field expression (macros expanded); ValueError with a user-facing
    message unless it is a cron schedule that fires."""
    if not isinstance(text, str):
        raise ValueError(f"schedule {text!r} is not a cron string: {CRON_EXAMPLES}")
    stripped = " ".join(text.split())
    if stripped.startswith("@"):
        if stripped.lower() not in MACROS:
            raise ValueError(f"schedule '{text}' is not a known macro: {CRON_EXAMPLES}")
        return MACROS[stripped.lower()]
    fields = stripped.lower().split()
    if len(fields) != 5:
        raise ValueError(f"schedule '{text}' has {len(fields)} fields, not 5: {CRON_EXAMPLES}")
    try:
        selected = [_selection(value, field) for value, field in zip(fields, _FIELDS, strict=True)]
    except _BadCron as error:
        raise ValueError(f"schedule '{text}' is not valid cron ({error}): {CRON_EXAMPLES}") from None
    if not _fires(fields, selected[2], selected[3].values, selected[4]):
        raise ValueError(f"schedule '{text}' never fires (no such date)")
    return stripped


class _Selection(NamedTuple):
    """What one field selects: plain numbers, and the days of the month or week told
    otherwise (the last day, `L`; the weekday nearest day N, `NW`; the Nth weekday D, `D#N`)."""

    values: frozenset[int]
    last: bool = False
    nearest: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def special(self) -> bool:
        return self.last or bool(self.nearest or self.nth)


def _selection(text: str, field: _Field) -> _Selection:
    if text == "?" and field.name in ("day of month", "day of week"):
        return _Selection(frozenset(range(field.low, field.high + 1)))
    items = text.split(",")
    values: set[int] = set()
    last, nearest, nth = False, set(), set()
    for item in items:
        if field.name == "day of month" and item == "l":
            last = True
        elif field.name == "day of month" and re.fullmatch(r"[0-9]+w", item):
            if len(items) > 1:
                raise _BadCron(f"{field.name} '{text}': W goes with a single day")
            nearest.add(_number(item[:-1], field))
        elif field.name == "day of week" and "#" in item:
            day, _, count = item.partition("#")
            if not _DIGITS.fullmatch(count) or not 1 <= int(count) <= 5:
                raise _BadCron(f"{field.name} '{item}': the N of D#N is 1 to 5")
            nth.add((_number(day, field) % 7, int(count)))
        else:
            values |= _item(item, field)
    return _Selection(frozenset(values), last, frozenset(nearest), frozenset(nth))


def _fires(fields: list[str], days: _Selection, months: frozenset[int], weekdays: _Selection) -> bool:
    """Whether some date has a day of the month and a day of the week that fire. As
    croniter: a day of the month or of the week (`*` or `?` for either: any day), both
    given (OR) unless one says L, W or #, which must both hold (AND)."""
    any_day, any_weekday = fields[2] in ("*", "?"), fields[4] in ("*", "?")
    if not (days.special() or weekdays.special()):
        return not any_weekday or any_day or any(
            d <= _LONGEST[m - 1] for d in days.values for m in months)
    if any_weekday and not weekdays.special():
        return True  # L and NW come every month
    every = date(2000, 1, 1).toordinal()  # 28 years: every calendar there is
    for ordinal in range(every, every + 28 * 366):
        day = date.fromordinal(ordinal)
        if day.month in months and (any_day or _day_fires(day, days)) and \
                (any_weekday or _weekday_fires(day, weekdays)):
            return True
    return False


def _day_fires(day: date, days: _Selection) -> bool:
    last = (date(day.year + day.month // 12, day.month % 12 + 1, 1).toordinal()
            - date(day.year, day.month, 1).toordinal())
    return day.day in days.values or (days.last and day.day == last) or any(
        day.day == _nearest_weekday(day, min(n, last), last) for n in days.nearest)


def _nearest_weekday(day: date, n: int, last: int) -> int:
    weekday = day.replace(day=n).isoweekday() % 7  # Sunday 0
    if weekday == 6:
        return n - 1 if n > 1 else n + 2
    if weekday == 0:
        return n + 1 if n < last else n - 2
    return n


def _weekday_fires(day: date, weekdays: _Selection) -> bool:
    weekday = day.isoweekday() % 7
    return weekday in {d % 7 for d in weekdays.values} or \
        (weekday, (day.day - 1) // 7 + 1) in weekdays.nth


def _item(item: str, field: _Field) -> set[int]:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise _BadCron(f"{field.name} '{item}' is not a value, a range or a step")
    start, end, step = match["start"], match["end"], match["step"]
    if step is not None and int(step) == 0:
        raise _BadCron(f"{field.name} '{item}': a step of 0")
    if start == "*":
        if end is not None:
            raise _BadCron(f"{field.name} '{item}' is not a range")
        low, high = field.low, field.high
    else:
        low = _number(start, field)
        high = (field.high if end is None and step is not None
                else low if end is None else _number(end, field, last=True))
        if field.name == "day of week":
            low, high = low % 7, high % 7
        if end is not None and low == high:  # croniter reads a range such as 5-5 as `*`
            low, high = field.low, field.high
    span = (list(range(low, high + 1)) if low <= high
            else [*range(low, field.high + 1), *range(field.low, high + 1)])  # wraps round
    return set(span[::int(step or 1)])


def _number(text: str, field: _Field, *, last: bool = False) -> int:
    if _DIGITS.fullmatch(text):
        value = int(text)
    elif text in field.names:
        value = field.names.index(text) + field.first_name
    elif last and text == "l" and field.name == "day of month":
        return field.high
    else:
        raise _BadCron(f"{field.name} '{text}' is not a number")
    if not field.low <= value <= field.high:
        raise _BadCron(f"{field.name} {value} is out of range {field.low}-{field.high}")
    return value


def parse_at(text: str | date) -> datetime:
    """An ISO-8601 time ('Z' accepted, naive means UTC) as an aware UTC datetime.

    YAML reads an unquoted timestamp as a datetime (or a date), so those are accepted too.
    """
    if isinstance(text, datetime):
        return utc(text)
    if isinstance(text, date):
        return datetime(text.year, text.month, text.day, tzinfo=UTC)
    if isinstance(text, str):
        try:
            return utc(datetime.fromisoformat(text.strip()))
        except ValueError:
            pass
    raise ValueError(
        f"time {text!r} is not an ISO-8601 date and time: use e.g. 2026-12-01T10:00:00Z"
    )


def zone(tz: str) -> ZoneInfo:
    """The IANA timezone `tz`; ValueError when there is none of that name."""
    # Only schedules have time zones; zoneinfo looks its database up with sysconfig, some
    # 3 ms of every command that loads a project if it were imported with this module.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError(f"unknown timezone {tz!r}{_nearest_zone(tz)}: use an IANA name "
                         "such as 'Europe/Berlin' or 'UTC'") from None


def _nearest_zone(tz: object) -> str:
    """'; did you mean ...?' with the IANA name nearest to `tz` (case aside), or ''."""
    import difflib
    from zoneinfo import available_timezones

    if not isinstance(tz, str):
        return ""
    names = {name.lower(): name for name in available_timezones()}
    near = difflib.get_close_matches(tz.lower(), names, n=1, cutoff=0.8)
    return f" (did you mean {names[near[0]]!r}?)" if near else ""


def utc(moment: datetime) -> datetime:
    """`moment` in UTC (a naive one taken as UTC)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
