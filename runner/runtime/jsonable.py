"""Turning what handlers log or return into JSON, and writing JSON files safely."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any


Warn = Callable[[str], None]

# Deeper than any real result; it stops self-referencing containers from recursing forever.
_MAX_DEPTH = 64
_SCALARS = (str, int, float, bool, type(None))
_SEQUENCES = (list, tuple, set, frozenset)


def to_jsonable(value: object, warn: Warn, where: str) -> Any:
    """`value` as JSON data: numpy-like objects through `.tolist()`/`.item()`, else repr."""
    return _convert(value, warn, where, 0)


def _convert(value: object, warn: Warn, where: str, depth: int) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(k): _convert(v, warn, where, depth + 1) for k, v in value.items()}
        if isinstance(value, _SEQUENCES):
            return [_convert(item, warn, where, depth + 1) for item in _ordered(value)]
        for method in ("tolist", "item"):
            converted = _call(value, method)
            if converted is not value:
                return _convert(converted, warn, where, depth + 1)
    warn(f"{where}: a {type(value).__name__} is not JSON-serialisable; recorded as its repr")
    return repr(value)


def _ordered(items: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any]) -> list[Any]:
    if isinstance(items, (list, tuple)):
        return list(items)
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def _call(value: object, method: str) -> object:
    """`value.method()`, or `value` itself when there is no such method or it fails."""
    function = getattr(value, method, None)
    if not callable(function):
        return value
    try:
        result: object = function()
    except Exception:
        return value
    return result


def write_json(path: str, data: object) -> None:
    """Write `data` to `path` atomically, so a reader never sees half a file."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=repr) + "\n"
    partial = f"{path}.partial"
    # a lone surrogate (a file name's undecodable byte) as its JSON escape, not a crash
    with open(partial, "w", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(text)
    os.replace(partial, path)
