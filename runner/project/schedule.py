"""Schedules: cron expressions in an IANA timezone, and one-off `at` times.

Cron times are computed on the zone's wall clock and returned as aware UTC
datetimes. Around daylight-saving changes this follows Vixie cron:

* a wall time the clock skips (02:30 when it jumps from 02:00 to 03:00) runs
  once, as if the clock had not jumped (03:30 for 02:30);
* a wall time the clock passes twice (02:30 when it falls back from 03:00 to
  02:00) runs once, at its first occurrence, unless the hour field starts with
  `*` (hourly and more frequent jobs), which keep running by real time.

Naive datetimes given to these functions are taken as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

MAX_DUE: Final = 1000

_MACROS: Final = MappingProxyType(
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
_CRON_EXAMPLES: Final = (
    "use 5 fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * *', "
    "or @hourly, @daily, @weekly, @monthly, @yearly"
)
# Walking the wall clock, look this far past each end of the interval: a
# daylight-saving shift moves wall time against UTC by at most two hours.
_SLACK: Final = timedelta(hours=3)
_CHECK_FROM: Final = datetime(2000, 1, 1)


def parse_cron(text: str) -> None:
    """Raise ValueError with a user-facing message unless `text` is a usable cron schedule."""
    _expression(text)


def parse_at(text: str | date) -> datetime:
    """An ISO-8601 time ('Z' accepted, naive means UTC) as an aware UTC datetime.

    YAML reads an unquoted timestamp as a datetime (or a date), so those are accepted too.
    """
    if isinstance(text, datetime):
        return _utc(text)
    if isinstance(text, date):
        return datetime(text.year, text.month, text.day, tzinfo=UTC)
    if isinstance(text, str):
        try:
            return _utc(datetime.fromisoformat(text.strip()))
        except ValueError:
            pass
    raise ValueError(
        f"time {text!r} is not an ISO-8601 date and time: use e.g. 2026-12-01T10:00:00Z"
    )


def due_times(cron: str, tz: str, last: datetime | None, now: datetime) -> list[datetime]:
    """The fire times in (last, now], oldest first, at most the newest MAX_DUE of them.

    `last` None means the schedule was never checked: nothing is due yet, as a
    new schedule starts from now rather than catching up on the past.
    """
    expression, zone = _expression(cron), _zone(tz)
    if last is None:
        return []
    start, end = _utc(last), _utc(now)
    if start >= end:
        return []
    floor = _wall(start, zone) - _SLACK
    found: set[datetime] = set()
    stop_below: datetime | None = None
    for wall in _walk(expression, _wall(end, zone) + _SLACK, backwards=True):
        if wall < floor or (stop_below is not None and wall < stop_below):
            break
        found.update(t for t in _instants(expression, wall, zone) if start < t <= end)
        if stop_below is None and len(found) >= MAX_DUE:
            # Keep walking a little: near a DST change wall order and UTC order differ.
            stop_below = wall - _SLACK
    return sorted(found)[-MAX_DUE:]


def next_time(cron: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`, as an aware UTC datetime."""
    expression, zone = _expression(cron), _zone(tz)
    start = _utc(after)
    best: datetime | None = None
    for wall in _walk(expression, _wall(start, zone) - _SLACK, backwards=False):
        if best is not None and wall > _wall(best, zone) + _SLACK:
            return best
        for moment in _instants(expression, wall, zone):
            if moment > start and (best is None or moment < best):
                best = moment
    raise AssertionError("unreachable: a cron schedule fires forever")


def _expression(text: object) -> str:
    """The schedule as a 5-field expression (macros expanded), checked with croniter."""
    if not isinstance(text, str):
        raise ValueError(f"schedule {text!r} is not a cron string: {_CRON_EXAMPLES}")
    stripped = " ".join(text.split())
    if stripped.startswith("@"):
        if stripped.lower() not in _MACROS:
            raise ValueError(f"schedule '{text}' is not a known macro: {_CRON_EXAMPLES}")
        return _MACROS[stripped.lower()]
    count = len(stripped.split())
    if count != 5:
        raise ValueError(f"schedule '{text}' has {count} fields, not 5: {_CRON_EXAMPLES}")
    try:
        croniter(stripped, _CHECK_FROM).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"schedule '{text}' never fires (no such date)") from None
    except (CroniterError, ValueError, KeyError, IndexError) as error:
        raise ValueError(
            f"schedule '{text}' is not valid cron ({error}): {_CRON_EXAMPLES}"
        ) from None
    return stripped


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError(
            f"unknown timezone {tz!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def _walk(expression: str, origin: datetime, *, backwards: bool) -> Iterator[datetime]:
    """Naive wall-clock fire times from `origin` (exclusive), one direction, forever."""
    iterator = croniter(expression, origin)
    while True:
        wall: datetime = iterator.get_prev(datetime) if backwards else iterator.get_next(datetime)
        yield wall


def _instants(expression: str, wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the wall time `wall` in `zone` fires (see module doc)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset() or _wall(_utc(first), zone) != wall:
        # An ordinary time, or one the clock skips: fold=0 reads it with the old offset.
        return [_utc(first)]
    if expression.split()[1].startswith("*"):
        return [_utc(first), _utc(second)]
    return [_utc(first)]


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def check_timezone(tz: str) -> None:
    """Raise ValueError when `tz` is not an IANA timezone name."""
    _zone(tz)
