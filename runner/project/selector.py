"""A hyper-parameter selector, `min.loss` or `max.accuracy`: which result, which way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Selector(NamedTuple):
    best: str  # "min" or "max"
    key: str

    @classmethod
    def parse(cls, text: str | None) -> Selector | None:
        if not text:
            return None
        best, _, key = text.partition(".")
        return cls(best, key)

    def value(self, results: Mapping[str, Any]) -> float | None:
        """The selected result as a number, or None when it is missing or not a number."""
        value = results.get(self.key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    def sort_key(self, results: Mapping[str, Any]) -> tuple[int, float]:
        """Best first; results without the selected number last."""
        value = self.value(results)
        if value is None:
            return (1, 0.0)
        return (0, value if self.best == "min" else -value)
