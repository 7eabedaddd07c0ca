"""Resource quantities as users write them: CPUs, memory sizes and durations.

The parsers take what YAML hands over (numbers or strings) and raise ValueError
with a message that names the bad value and shows what would have been valid.
Zero, negative, infinite and boolean values are refused everywhere: YAML reads
`yes` as True, and True is an int in Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SIGNED: Final = rf"[+-]?{_NUMBER}(?:[eE][+-]?\d+)?"

_CPU_EXAMPLES: Final = "use a number of CPUs or millicores, e.g. 0.5, 2 or 500m"
_MEMORY_EXAMPLES: Final = "use a number of bytes or 512Mi, 2Gi, 1G"
_DURATION_EXAMPLES: Final = "use a number of seconds or 90s, 30m, 2h, 1d, 1h30m"

_MEMORY_RE: Final = re.compile(rf"({_SIGNED})\s*([KMGTPE]i|[kKMGTPE])?")
_MEMORY_FACTORS: Final[Mapping[str | None, int]] = MappingProxyType(
    {
        None: 1,
        **{f"{prefix}i": 1024 ** (i + 1) for i, prefix in enumerate("KMGTPE")},
        **{prefix: 1000 ** (i + 1) for i, prefix in enumerate("KMGTPE")},
        "k": 1000,
    }
)

_DURATION_UNITS: Final = ("d", "h", "m", "s", "ms")
_DURATION_SECONDS: Final = MappingProxyType(
    {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
)
_DURATION_PART_RE: Final = re.compile(rf"\s*({_NUMBER})\s*(ms|[dhms])")

_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def parse_cpu(value: object) -> float:
    """A CPU count: 2, 0.5, "0.5" or "500m" (millicores)."""
    text = _text(value, "cpu", "CPU count", _CPU_EXAMPLES)
    millis = text.endswith("m")
    number = _float(text[:-1] if millis else text)
    if number is None:
        raise ValueError(f"cpu {_show(value)} is not a CPU count: {_CPU_EXAMPLES}")
    cpus = number / 1000 if millis else number
    return _positive(cpus, value, "cpu", _CPU_EXAMPLES)


def parse_memory(value: object, what: str = "memory") -> int:
    """A size in bytes: 1048576, "512Mi", "2Gi", "1G", "100M", "1024Ki", "1k"; `what`
    names the value in an error (memory, limits.disk, ...)."""
    text = _text(value, what, "size", _MEMORY_EXAMPLES)
    match = _MEMORY_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{what} {_show(value)} is not a size: {_MEMORY_EXAMPLES}")
    number, suffix = match.groups()
    size = float(number) * _MEMORY_FACTORS[suffix]
    _positive(size, value, what, _MEMORY_EXAMPLES)
    if size < 1:
        raise ValueError(f"{what} {_show(value)} is less than one byte: {_MEMORY_EXAMPLES}")
    if not size.is_integer() and suffix is None:
        raise ValueError(f"{what} {_show(value)} is not a whole number of bytes")
    # Exact integer arithmetic for whole numbers: float would round sizes above 2**53.
    if re.fullmatch(r"\+?\d+", number):
        return int(number) * _MEMORY_FACTORS[suffix]
    return int(size)


RUN_MEMORY_FLOOR = 6 * 1024 * 1024  # Docker will not start a container limited to less


def parse_run_memory(value: object) -> int:
    """A run's memory limit: a size (`parse_memory`) the engine can start a container with."""
    size = parse_memory(value)
    if size < RUN_MEMORY_FLOOR:
        raise ValueError(f"memory {_show(value)} is less than Docker's least, 6Mi: no "
                         "container starts with less")
    return size


def parse_duration(value: object) -> float:
    """Seconds: 90, "90s", "30m", "2h", "1d", "1h30m", "1.5h", "450ms"."""
    text = _text(value, "duration", "duration", _DURATION_EXAMPLES)
    plain = _float(text)
    if plain is not None:
        return _positive(plain, value, "duration", _DURATION_EXAMPLES)
    # "-5m" parses as 5m negated, so that it gets the "greater than zero" message.
    negative = text.startswith("-")
    seconds = _duration_parts(text[1:] if negative else text, value)
    return _positive(-seconds if negative else seconds, value, "duration", _DURATION_EXAMPLES)


def format_duration(seconds: float) -> str:
    """A short human duration that parse_duration reads back: "1m30s", "2h", "450ms"."""
    if isinstance(seconds, bool) or not math.isfinite(seconds):
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds < 0:
        return "-" + format_duration(-seconds)
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        size = round(_DURATION_SECONDS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{_trim(f'{millis / 1000:.3f}')}s")
    return "".join(parts)


def format_bytes(n: int) -> str:
    """A size in binary units with at most one decimal: "512 B", "1.5 GiB"."""
    if isinstance(n, bool):
        raise ValueError(f"cannot format {n!r} as a size")
    if n < 0:
        return "-" + format_bytes(-n)
    for power, unit in enumerate(_BYTE_UNITS):
        scaled = n / 1024**power
        shown = _trim(f"{scaled:.1f}")
        # 1023.96 KiB shows as "1024 KiB": move on to "1 MiB" instead.
        if float(shown) < 1024 or power == len(_BYTE_UNITS) - 1:
            return f"{shown} {unit}"
    raise AssertionError("unreachable")


def _duration_parts(text: str, value: object) -> float:
    seconds = 0.0
    position = 0
    last_unit = -1
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        unit = _DURATION_UNITS.index(match.group(2))
        if unit <= last_unit:
            raise ValueError(
                f"duration {_show(value)} repeats a unit or has them out of order: "
                "write the largest first, e.g. 1h30m"
            )
        seconds += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        position, last_unit = match.end(), unit
    if position != len(text) or position == 0:
        raise ValueError(f"duration {_show(value)} is not a duration: {_DURATION_EXAMPLES}")
    return seconds


def _text(value: object, what: str, noun: str, examples: str) -> str:
    """The value as stripped text, refusing anything that is neither number nor string."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is a yes/no value, not a {noun}: {examples}")
    if not isinstance(value, int | float | str):
        raise ValueError(f"{what} {_show(value)} is not a {noun}: {examples}")
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} {value!r} is not a finite number: {examples}")
    return repr(value) if isinstance(value, float) else str(value)


def _float(text: str) -> float | None:
    if re.fullmatch(_SIGNED, text) is None:
        return None
    return float(text)


def _positive(number: float, value: object, what: str, examples: str) -> float:
    if not math.isfinite(number):
        raise ValueError(f"{what} {_show(value)} is not a finite number: {examples}")
    if number <= 0:
        raise ValueError(f"{what} {_show(value)} must be greater than zero: {examples}")
    return number


def _show(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number
