from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.project.units import format_bytes, format_duration, parse_cpu, parse_duration, parse_memory

GIB = 1024**3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, 0.5),
        (2, 2.0),
        ("0.5", 0.5),
        ("2", 2.0),
        ("500m", 0.5),
        ("1500m", 1.5),
        (" 4 ", 4.0),
        ("1e-1", 0.1),
        ("250.5m", 0.2505),
    ],
)
def test_parse_cpu_accepts(value: object, expected: float) -> None:
    assert parse_cpu(value) == pytest.approx(expected)
    assert isinstance(parse_cpu(value), float)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "must be greater than zero"),
        ("0", "must be greater than zero"),
        ("0m", "must be greater than zero"),
        (-1, "must be greater than zero"),
        ("-500m", "must be greater than zero"),
        (True, "yes/no value"),
        (False, "yes/no value"),
        ("two", "is not a CPU count"),
        ("m", "is not a CPU count"),
        ("500M", "is not a CPU count"),
        ("", "is not a CPU count"),
        ("nan", "is not a CPU count"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (None, "is not a CPU count"),
        ([1], "is not a CPU count"),
    ],
)
def test_parse_cpu_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^cpu ") as caught:
        parse_cpu(value)
    assert fragment in str(caught.value)


def test_parse_cpu_message_names_value_and_examples() -> None:
    with pytest.raises(ValueError) as caught:
        parse_cpu("lots")
    assert str(caught.value) == (
        "cpu 'lots' is not a CPU count: use a number of CPUs or millicores, e.g. 0.5, 2 or 500m"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1048576, 1048576),
        ("1048576", 1048576),
        ("512Mi", 512 * 1024**2),
        ("2Gi", 2 * GIB),
        ("1G", 10**9),
        ("100M", 100 * 10**6),
        ("1024Ki", 1024**2),
        ("1k", 1000),
        ("1K", 1000),
        ("1Ti", 1024**4),
        ("1.5Gi", 3 * GIB // 2),
        ("0.5Ki", 512),
        (" 2Gi ", 2 * GIB),
        ("2 Gi", 2 * GIB),
        ("8Ei", 8 * 1024**6),
        (1e3, 1000),
        ("1e3", 1000),
    ],
)
def test_parse_memory_accepts(value: object, expected: int) -> None:
    result = parse_memory(value)
    assert result == expected
    assert type(result) is int


def test_parse_memory_is_exact_for_huge_sizes() -> None:
    # float arithmetic would round this.
    assert parse_memory("9007199254740993") == 9007199254740993
    assert parse_memory("9007199254740993Ki") == 9007199254740993 * 1024


def test_parse_memory_message_matches_the_documented_one() -> None:
    with pytest.raises(ValueError) as caught:
        parse_memory("2GB")
    assert (
        str(caught.value) == "memory '2GB' is not a size: use a number of bytes or 512Mi, 2Gi, 1G"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2GB", "is not a size"),
        ("2gi", "is not a size"),
        ("Gi", "is not a size"),
        ("1.2.3Mi", "is not a size"),
        ("", "is not a size"),
        (0, "must be greater than zero"),
        ("0Gi", "must be greater than zero"),
        (-5, "must be greater than zero"),
        ("-1Gi", "must be greater than zero"),
        ("0.5", "less than one byte"),
        ("1.5", "not a whole number of bytes"),
        (True, "yes/no value"),
        (None, "is not a size"),
        ("1e999", "not a finite number"),
    ],
)
def test_parse_memory_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^memory ") as caught:
        parse_memory(value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, 90.0),
        (0.25, 0.25),
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("450ms", 0.45),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4.005),
        ("1h 30m", 5400.0),
        (" 2h ", 7200.0),
    ],
)
def test_parse_duration_accepts(value: object, expected: float) -> None:
    assert parse_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("90x", "is not a duration"),
        ("h", "is not a duration"),
        ("1h30", "is not a duration"),
        ("", "is not a duration"),
        ("1 h 3", "is not a duration"),
        ("30m1h", "out of order"),
        ("1h1h", "repeats a unit"),
        (0, "must be greater than zero"),
        ("0s", "must be greater than zero"),
        ("-5m", "must be greater than zero"),
        (-1.5, "must be greater than zero"),
        (True, "yes/no value"),
        (None, "is not a duration"),
        (float("inf"), "not a finite number"),
    ],
)
def test_parse_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^duration ") as caught:
        parse_duration(value)
    assert fragment in str(caught.value)


def test_parse_duration_message_shows_examples() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("soon")
    assert str(caught.value) == (
        "duration 'soon' is not a duration: use a number of seconds or 90s, 30m, 2h, 1d, 1h30m"
    )


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (90, "1m30s"),
        (7200, "2h"),
        (0.45, "450ms"),
        (0, "0s"),
        (1, "1s"),
        (59.9996, "1m"),
        (90.5, "1m30.5s"),
        (86400 + 3600 + 1, "1d1h1s"),
        (3 * 86400, "3d"),
        (-90, "-1m30s"),
        (0.0004, "0s"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, True])
def test_format_duration_rejects_non_durations(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


@given(st.integers(min_value=1, max_value=10**10))
def test_format_duration_reads_back(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (3 * GIB // 2, "1.5 GiB"),
        (2 * GIB, "2 GiB"),
        (1024**2 - 1, "1 MiB"),
        (1024**4 * 5, "5 TiB"),
        (1024**7, "1024 EiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_format_bytes(size: int, expected: str) -> None:
    assert format_bytes(size) == expected


def test_format_bytes_rejects_booleans() -> None:
    with pytest.raises(ValueError):
        format_bytes(True)


@given(st.integers(min_value=1, max_value=2**60))
def test_format_bytes_shows_a_number_below_1024(size: int) -> None:
    number, unit = format_bytes(size).split()
    assert 0 < float(number) < 1024
    assert unit in {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
