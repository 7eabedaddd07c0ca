"""Compare models' metrics (one JSON file an input) and name the best by one metric."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any


def compare(context: Any, metric: str = "accuracy", higher_is_better: bool = True) -> None:
    higher = higher_is_better if isinstance(higher_is_better, bool) else \
        str(higher_is_better).lower() in ("1", "true", "yes")
    models = {name: _numbers(name, item.local_path()) for name, item in sorted(context.inputs.items())}
    if not models:
        raise ValueError("no models to compare: give each model's metrics file as an input")
    scored = {name: values for name, values in models.items() if metric in values}
    if not scored:
        raise ValueError(f"no input has the metric {metric!r}; they have "
                         f"{sorted({key for values in models.values() for key in values})}")
    for name in sorted(set(models) - set(scored)):
        context.logger.warning(f"{name} has no {metric!r}: left out of the ranking")
    ranked = sorted(scored, key=lambda name: scored[name][metric], reverse=higher)
    columns = sorted({key for values in scored.values() for key in values})
    table = [[str(rank), name, *[_cell(scored[name].get(key)) for key in columns]]
             for rank, name in enumerate(ranked, 1)]
    header = ["rank", "model", *columns]
    context.log_artifact("comparison", body=_csv(header, table), format="csv")
    context.log_artifact("comparison-md", body=_markdown(header, table), format="md")
    best = ranked[0]
    context.log_results({"best": best, "best_value": scored[best][metric], "metric": metric,
                         "compared": len(ranked)})
    context.logger.info(f"best by {metric}: {best} ({scored[best][metric]})")


def _numbers(name: str, path: str) -> dict[str, float]:
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError as error:
            raise ValueError(f"input {name!r} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"input {name!r} is not a JSON object of metrics")
    return {key: float(value) for key, value in data.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |\n" for line in lines)
