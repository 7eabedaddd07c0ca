from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from croniter import CroniterBadDateError, croniter

from runner.project.schedule import MAX_DUE, due_times, next_time
from runner.project.when import parse_at, parse_cron

BERLIN = "Europe/Berlin"
# 2024 in Berlin: clocks jump 02:00 -> 03:00 on 31 March (01:00 UTC) and
# fall back 03:00 -> 02:00 on 27 October (01:00 UTC).


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def hours(times: list[datetime]) -> list[str]:
    return [moment.strftime("%m-%d %H:%M") for moment in times]


# --- parse_cron ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0 3 * * *",
        "*/15 * * * *",
        "0 9-17 * * mon-fri",
        "30 2 1,15 * *",
        "  0   3 * * *  ",
        "0 0 L * *",
        "0 0 29 2 *",
        "@daily",
        "@hourly",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
        "@Daily",
    ],
)
def test_parse_cron_accepts(text: str) -> None:
    parse_cron(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "has 0 fields, not 5"),
        ("* * *", "has 3 fields, not 5"),
        ("0 3 * * * *", "has 6 fields, not 5"),
        ("0 0 3 * * * 2030", "has 7 fields, not 5"),
        ("61 * * * *", "is not valid cron"),
        ("* 25 * * *", "is not valid cron"),
        ("0 3 * * funday", "is not valid cron"),
        ("H * * * *", "is not valid cron"),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "is not a known macro"),
        ("@fortnightly", "is not a known macro"),
    ],
)
def test_parse_cron_rejects_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(text)
    message = str(caught.value)
    assert message.startswith(f"schedule '{text}'")
    assert fragment in message


def test_parse_cron_message_shows_examples() -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron("daily at 3")
    assert str(caught.value) == (
        "schedule 'daily at 3' has 3 fields, not 5: use 5 fields (minute hour day-of-month "
        "month day-of-week), e.g. '0 3 * * *', or @hourly, @daily, @weekly, @monthly, @yearly"
    )


def test_parse_cron_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="is not a cron string"):
        parse_cron(3)  # type: ignore[arg-type]



# Tokens of each field, well and badly formed, croniter's quirks among them.
_CRON_TOKENS = (
    ("*", "0", "59", "60", "*/15", "*/0", "5/15", "0-59/0", "5-2", "1-31/40", "00", "+1", "-1",
     "a", "?", "1,2", "*,1", "1,", "**", "*/", "/2", "1/", "L", "mon", "1-", "59-0/7", "5-5",
     "\u0663"),
    ("*", "0", "23", "24", "9-17", "*/2", "22-2", "?", "L", "3,4,5", "1-2/0"),
    ("*", "?", "1", "0", "31", "32", "L", "l", "L-2", "1-L", "1,L", "15W", "31W", "W", "LW",
     "1-15W", "15W,L", "30", "29", "28-31", "30-29", "31-1", "*/2", "?/2", "L/2", "1/L", "29-31",
     "30,31", "1-31/40", "31-30/2", "*/L", "2/3", "30-30"),
    ("*", "?", "1", "2", "4", "2,4", "4,6", "12", "13", "0", "jan", "FEB", "jan-3", "dec-jan",
     "jan/2", "*/2", "1-12/13", "2-2", "feb-feb", "*/0", "sun", "3-2"),
    ("*", "?", "0", "7", "8", "1-5", "mon-fri", "sat-sun", "7-0", "5L", "L", "0L", "5#3", "mon#1",
     "mon#6", "7#1", "0#0", "1#1,2#2", "1-2#1", "1#1/2", "*/2", "1/2", "1-7", "6-7", "*/1", "sun",
     "1-5/0", "jan", "?,1", "7-6", "6-1", "sun#5"),
)


def _verdict(check: Callable[[str], object], text: str, never: type[Exception] | str) -> str:
    try:
        check(text)
    except Exception as error:  # what each says, to compare
        told = error if isinstance(never, type) else str(error)
        if (isinstance(never, type) and isinstance(told, never)) or \
                (isinstance(never, str) and never in str(told)):
            return "never fires"
        return "invalid"
    return "fires"


def _croniter_next(text: str) -> object:
    return croniter(text, datetime(2000, 1, 1)).get_next(datetime)


def test_parse_cron_agrees_with_croniter_which_computes_the_times() -> None:
    """The project's checks read cron without croniter (a run need not load it): what they
    accept, refuse or find never firing, croniter (the scheduler's) does the same."""
    chooser = random.Random(13)
    expressions = {" ".join(chooser.choice(field) for field in _CRON_TOKENS) for _ in range(3000)}
    for number, field in enumerate(_CRON_TOKENS):
        for token in field:
            for base in (["0", "0", "1", "*", "*"], ["0", "0", "*", "*", "*"]):
                expressions.add(" ".join([*base[:number], token, *base[number + 1:]]))
    differ = []
    for text in sorted(expressions):
        ours = _verdict(parse_cron, text, "never fires")
        theirs = _verdict(_croniter_next, text, CroniterBadDateError)
        if ours != theirs:
            differ.append(f"{text!r}: runyard {ours}, croniter {theirs}")
    verdicts = {_verdict(parse_cron, text, "never fires") for text in expressions}
    assert verdicts == {"fires", "invalid", "never fires"}
    assert differ == []

# --- parse_at ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T10:00:00Z", utc(2026, 12, 1, 10)),
        ("2026-12-01T10:00:00+00:00", utc(2026, 12, 1, 10)),
        ("2026-12-01T11:30:00+01:00", utc(2026, 12, 1, 10, 30)),
        ("2026-12-01T10:00:00", utc(2026, 12, 1, 10)),
        ("2026-12-01 10:00", utc(2026, 12, 1, 10)),
        ("2026-12-01T10:00:00.250Z", datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-12-01", utc(2026, 12, 1)),
        (" 2026-12-01T10:00:00Z ", utc(2026, 12, 1, 10)),
    ],
)
def test_parse_at_accepts_iso_8601(text: str, expected: datetime) -> None:
    result = parse_at(text)
    assert result == expected
    assert result.tzinfo is UTC


def test_parse_at_accepts_what_yaml_reads() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert parse_at(datetime(2026, 12, 1, 5, tzinfo=eastern)) == utc(2026, 12, 1, 10)
    assert parse_at(datetime(2026, 12, 1, 10)).tzinfo is UTC
    assert parse_at(date(2026, 12, 1)) == utc(2026, 12, 1)


@pytest.mark.parametrize(
    "text", ["tomorrow", "", "2026-13-01T10:00:00Z", "10:00", "2026-12-01T25:00"]
)
def test_parse_at_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_at(text)
    assert str(caught.value) == (
        f"time {text!r} is not an ISO-8601 date and time: use e.g. 2026-12-01T10:00:00Z"
    )


def test_parse_at_rejects_other_types() -> None:
    with pytest.raises(ValueError, match="is not an ISO-8601"):
        parse_at(1764583200)  # type: ignore[arg-type]


# --- due_times -----------------------------------------------------------------------------


def test_due_times_in_utc() -> None:
    due = due_times("0 * * * *", "UTC", utc(2024, 5, 1, 10, 0), utc(2024, 5, 1, 13, 0))
    assert due == [utc(2024, 5, 1, 11), utc(2024, 5, 1, 12), utc(2024, 5, 1, 13)]
    assert all(moment.tzinfo is UTC for moment in due)


def test_due_times_interval_is_open_at_last_and_closed_at_now() -> None:
    assert due_times("0 3 * * *", "UTC", utc(2024, 5, 1, 3), utc(2024, 5, 2, 3)) == [
        utc(2024, 5, 2, 3)
    ]
    assert due_times("0 3 * * *", "UTC", utc(2024, 5, 1, 3), utc(2024, 5, 2, 2, 59)) == []


def test_due_times_without_last_or_with_time_going_backwards_is_empty() -> None:
    assert due_times("* * * * *", "UTC", None, utc(2024, 5, 1)) == []
    assert due_times("* * * * *", "UTC", utc(2024, 5, 1), utc(2024, 5, 1)) == []
    assert due_times("* * * * *", "UTC", utc(2024, 5, 2), utc(2024, 5, 1)) == []


def test_due_times_still_checks_its_arguments_without_last() -> None:
    with pytest.raises(ValueError, match="has 1 fields"):
        due_times("never", "UTC", None, utc(2024, 5, 1))
    with pytest.raises(ValueError, match="unknown timezone"):
        due_times("@daily", "Mars/Olympus", None, utc(2024, 5, 1))


def test_due_times_uses_the_zone_wall_clock() -> None:
    # 03:00 in Berlin is 01:00 UTC in summer and 02:00 UTC in winter.
    summer = due_times("0 3 * * *", BERLIN, utc(2024, 7, 1), utc(2024, 7, 3))
    assert summer == [utc(2024, 7, 1, 1), utc(2024, 7, 2, 1)]
    winter = due_times("0 3 * * *", BERLIN, utc(2024, 1, 1), utc(2024, 1, 3))
    assert winter == [utc(2024, 1, 1, 2), utc(2024, 1, 2, 2)]
    tokyo = due_times("@daily", "Asia/Tokyo", utc(2024, 1, 1), utc(2024, 1, 2))
    assert tokyo == [utc(2024, 1, 1, 15)]


def test_due_times_across_the_spring_change_in_berlin() -> None:
    last, now = utc(2024, 3, 30, 20), utc(2024, 3, 31, 4)
    # 02:30 does not exist on 31 March: it runs once, at 03:30 CEST (01:30 UTC).
    assert hours(due_times("30 2 * * *", BERLIN, last, now)) == ["03-31 01:30"]
    # The daily 03:00 job runs at 03:00 CEST, one hour of real time earlier than usual.
    assert hours(due_times("0 3 * * *", BERLIN, last, now)) == ["03-31 01:00"]
    # An hourly job runs every real hour, without a duplicate or a gap.
    assert hours(due_times("@hourly", BERLIN, last, now)) == [
        f"03-{day} {hour:02}:00" for day, hour in [(30, 21), (30, 22), (30, 23)]
    ] + [f"03-31 {hour:02}:00" for hour in range(5)]


def test_due_times_across_the_autumn_change_in_berlin() -> None:
    last, now = utc(2024, 10, 26, 20), utc(2024, 10, 27, 4)
    # 02:30 happens twice on 27 October: a daily job runs at the first one only.
    assert hours(due_times("30 2 * * *", BERLIN, last, now)) == ["10-27 00:30"]
    # An hourly job keeps running by real time, so it runs at both 02:30s.
    assert hours(due_times("30 * * * *", BERLIN, last, now)) == [
        "10-26 20:30",
        "10-26 21:30",
        "10-26 22:30",
        "10-26 23:30",
        "10-27 00:30",
        "10-27 01:30",
        "10-27 02:30",
        "10-27 03:30",
    ]
    every_20 = due_times("*/20 * * * *", BERLIN, utc(2024, 10, 27, 0), utc(2024, 10, 27, 2))
    assert every_20 == [utc(2024, 10, 27, 0) + timedelta(minutes=20 * i) for i in range(1, 7)]


def test_due_times_at_the_dst_change_in_new_york() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
    spring = due_times("30 2 * * *", "America/New_York", utc(2024, 3, 9, 12), utc(2024, 3, 10, 12))
    assert spring == [utc(2024, 3, 10, 7, 30)]  # 03:30 EDT
    autumn = due_times("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), utc(2024, 11, 3, 12))
    assert autumn == [utc(2024, 11, 3, 5, 30)]  # the first 01:30, EDT


def test_due_times_is_capped_to_the_most_recent() -> None:
    due = due_times("* * * * *", "UTC", utc(2020, 1, 1), utc(2024, 1, 1))
    assert len(due) == MAX_DUE
    assert due[-1] == utc(2024, 1, 1)
    assert due[0] == utc(2024, 1, 1) - timedelta(minutes=MAX_DUE - 1)
    assert due == sorted(set(due))


def test_due_times_cap_near_a_dst_change_keeps_the_newest() -> None:
    now = utc(2024, 10, 27, 12)
    due = due_times("* * * * *", BERLIN, utc(2024, 10, 1), now)
    assert len(due) == MAX_DUE
    assert due == [now - timedelta(minutes=MAX_DUE - 1 - i) for i in range(MAX_DUE)]


def test_due_times_takes_naive_datetimes_as_utc() -> None:
    naive = due_times("0 * * * *", "UTC", datetime(2024, 5, 1, 10), datetime(2024, 5, 1, 12))
    aware = due_times("0 * * * *", "UTC", utc(2024, 5, 1, 10), utc(2024, 5, 1, 12))
    assert naive == aware


def test_due_times_accepts_aware_datetimes_in_any_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    due = due_times("0 * * * *", "UTC", datetime(2024, 5, 1, 12, tzinfo=plus2), utc(2024, 5, 1, 12))
    assert due == [utc(2024, 5, 1, 11), utc(2024, 5, 1, 12)]


@pytest.mark.parametrize("zone, near", [
    ("Mars/Olympus", ""), ("", ""), ("../etc/passwd", ""), ("Europe", ""),
    ("utc ", " (did you mean 'UTC'?)"), ("America/New York", " (did you mean 'America/New_York'?)"),
    ("europe/pariss", " (did you mean 'Europe/Paris'?)"),
])
def test_unknown_zones_are_refused(zone: str, near: str) -> None:
    """With the IANA name a typo was near, if one is near enough to be meant."""
    with pytest.raises(ValueError) as caught:
        due_times("@daily", zone, utc(2024, 1, 1), utc(2024, 1, 2))
    assert str(caught.value) == (
        f"unknown timezone {zone!r}{near}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
    )
    with pytest.raises(ValueError, match="unknown timezone"):
        next_time("@daily", zone, utc(2024, 1, 1))


def test_due_times_refuses_bad_cron() -> None:
    with pytest.raises(ValueError, match="is not valid cron"):
        due_times("99 * * * *", "UTC", utc(2024, 1, 1), utc(2024, 1, 2))


# --- next_time -----------------------------------------------------------------------------


def test_next_time_is_strictly_after() -> None:
    assert next_time("0 3 * * *", "UTC", utc(2024, 5, 1, 2, 59)) == utc(2024, 5, 1, 3)
    assert next_time("0 3 * * *", "UTC", utc(2024, 5, 1, 3)) == utc(2024, 5, 2, 3)
    assert next_time("@hourly", "UTC", datetime(2024, 5, 1, 3, 30)) == utc(2024, 5, 1, 4)


def test_next_time_in_a_zone_and_across_dst() -> None:
    assert next_time("0 3 * * *", BERLIN, utc(2024, 6, 1)) == utc(2024, 6, 1, 1)
    assert next_time("30 2 * * *", BERLIN, utc(2024, 3, 30, 12)) == utc(2024, 3, 31, 1, 30)
    assert next_time("30 2 * * *", BERLIN, utc(2024, 10, 26, 12)) == utc(2024, 10, 27, 0, 30)
    # After the first 02:30 of the autumn night, a daily job waits for the next day.
    assert next_time("30 2 * * *", BERLIN, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)
    # An hourly job runs at the second 02:30 too.
    assert next_time("30 * * * *", BERLIN, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 27, 1, 30)


def test_next_time_finds_rare_schedules() -> None:
    assert next_time("0 0 29 2 *", "UTC", utc(2024, 3, 1)) == utc(2028, 2, 29)


def test_next_time_agrees_with_due_times() -> None:
    start = utc(2024, 10, 26, 18)
    for cron in ["*/20 * * * *", "30 2 * * *", "0 * * * *", "15 1-3 * * *"]:
        due = due_times(cron, BERLIN, start, start + timedelta(hours=12))
        chain = [next_time(cron, BERLIN, start)]
        while len(chain) < len(due):
            chain.append(next_time(cron, BERLIN, chain[-1]))
        assert chain == due, cron
