"""Schedules: the fire times of cron expressions in an IANA timezone (croniter; the
expressions themselves are read and checked by when.py, which a run imports instead).

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
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from croniter import croniter

from runner.project import when

MAX_DUE: Final = 1000

# Walking the wall clock, look this far past each end of the interval: a
# daylight-saving shift moves wall time against UTC by at most two hours.
_SLACK: Final = timedelta(hours=3)


def due_times(cron: str, tz: str, last: datetime | None, now: datetime) -> list[datetime]:
    """The fire times in (last, now], oldest first, at most the newest MAX_DUE of them.

    `last` None means the schedule was never checked: nothing is due yet, as a
    new schedule starts from now rather than catching up on the past.
    """
    expression, zone = when.parse_cron(cron), when.zone(tz)
    if last is None:
        return []
    start, end = when.utc(last), when.utc(now)
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
    expression, zone = when.parse_cron(cron), when.zone(tz)
    start = when.utc(after)
    best: datetime | None = None
    for wall in _walk(expression, _wall(start, zone) - _SLACK, backwards=False):
        if best is not None and wall > _wall(best, zone) + _SLACK:
            return best
        for moment in _instants(expression, wall, zone):
            if moment > start and (best is None or moment < best):
                best = moment
    raise AssertionError("unreachable: a cron schedule fires forever")


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
    if first.utcoffset() == second.utcoffset() or _wall(when.utc(first), zone) != wall:
        # An ordinary time, or one the clock skips: fold=0 reads it with the old offset.
        return [when.utc(first)]
    if expression.split()[1].startswith("*"):
        return [when.utc(first), when.utc(second)]
    return [when.utc(first)]


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)
