"""Check a CSV data set against thresholds; fail the run when a check fails."""

from __future__ import annotations

import csv
import json
from collections import Counter
from typing import Any

MISSING = {"", "na", "n/a", "nan", "null", "none"}


class QualityCheckFailed(Exception):
    """The data set failed at least one check."""


def check(context: Any, dataset: Any, max_missing_ratio: float = 0.0, min_rows: int = 1,
          required_columns: Any = (), unique_columns: Any = (), max_duplicate_ratio: float | None = None,
          delimiter: str = ",") -> None:
    with open(dataset.local_path(), newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None) or []
        rows = [row for row in reader if row]
    columns = {name: [row[i].strip() if i < len(row) else "" for row in rows]
               for i, name in enumerate(header)}
    checks = [_row_count(rows, int(min_rows)), *_missing(columns, len(rows), float(max_missing_ratio))]
    checks += [_required(header, name) for name in _names(required_columns)]
    checks += [_unique(columns, name) for name in _names(unique_columns)]
    duplicates = len(rows) - len({tuple(row) for row in rows})
    if max_duplicate_ratio is not None:
        checks.append(_check("duplicate_rows", float(max_duplicate_ratio), "at most",
                             duplicates / len(rows) if rows else 0.0, None))
    failed = [item for item in checks if not item["passed"]]
    ratios = {name: _missing_ratio(values) for name, values in columns.items()}
    worst = max(ratios, key=lambda name: ratios[name], default="")
    context.log_artifact("quality-report", body=json.dumps({"checks": checks}, indent=2),
                         format="json", kind="report")
    context.log_results({"rows": len(rows), "worst_missing_ratio": ratios.get(worst, 0.0),
                         "worst_missing_column": worst, "duplicate_rows": duplicates,
                         "checks": len(checks), "failed_checks": len(failed)})
    if failed:
        raise QualityCheckFailed("; ".join(_say(item) for item in failed))
    context.logger.info(f"all {len(checks)} checks passed on {len(rows)} rows")


def _check(name: str, threshold: Any, rule: str, found: Any, column: str | None) -> dict[str, Any]:
    passed = found <= threshold if rule == "at most" else found >= threshold if rule == "at least" \
        else bool(found)
    return {"check": name, "column": column, "rule": rule, "threshold": threshold,
            "found": round(found, 6) if isinstance(found, float) else found, "passed": passed}


def _row_count(rows: list[list[str]], least: int) -> dict[str, Any]:
    return _check("row_count", least, "at least", len(rows), None)


def _missing(columns: dict[str, list[str]], rows: int, most: float) -> list[dict[str, Any]]:
    return [_check("missing_ratio", most, "at most", _missing_ratio(values), name)
            for name, values in columns.items()] if rows else []


def _missing_ratio(values: list[str]) -> float:
    return round(sum(value.lower() in MISSING for value in values) / len(values), 6) if values else 0.0


def _required(header: list[str], name: str) -> dict[str, Any]:
    return _check("required_column", True, "present", name in header, name)


def _unique(columns: dict[str, list[str]], name: str) -> dict[str, Any]:
    values = columns.get(name)
    if values is None:
        return _check("unique_column", True, "present", False, name)
    repeated = sum(count - 1 for count in Counter(values).values() if count > 1)
    return _check("unique_values", 0, "at most", repeated, name)


def _names(value: Any) -> list[str]:
    """A list of column names, or a comma-separated string (as `-p unique_columns=id` gives it)."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return [str(name) for name in value or ()]


def _say(item: dict[str, Any]) -> str:
    where = f" of column {item['column']!r}" if item["column"] else ""
    if item["rule"] == "present":
        return f"{item['check']}{where}: the column is missing"
    return f"{item['check']}{where} is {item['found']}, but must be {item['rule']} {item['threshold']}"
