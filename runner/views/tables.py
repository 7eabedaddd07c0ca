"""Views on run records: summaries, tables and comparisons, as lines of text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runner.project.selector import Selector
from runner.record.results import run_folder


def summary_lines(record: Mapping[str, Any], branch: str) -> list[str]:
    meta, spec, status = record["metadata"], record["spec"], record["status"]
    lines = [f"run {meta['uid']} ({meta['name']}): {status['state']}"
             + (f" ({status['reason']})" if status.get("reason") else "")
             + (f" in {status['duration']:.2f}s" if status.get("duration") is not None else "")]
    if status.get("error"):
        lines.append(f"  error: {status['error']}")
    for key, value in (status.get("results") or {}).items():
        lines.append(f"  result   {key} = {_value(value)}")
    for artifact in status.get("artifacts") or []:
        lines.append(f"  artifact {artifact['key']} ({artifact['kind']}, {artifact['size']} bytes, "
                     f"{artifact['hash'][:19]})")
    lines.append(f"  params   {_value(spec['params'].get('resolved', {}))}")
    lines.append(f"  record   git show {branch}:{run_folder(meta['uid'])}/run.yaml")
    return lines


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    cells = [[str(h) for h in headers]] + [[_value(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


def list_rows(records: Iterable[Mapping[str, Any]]) -> list[list[object]]:
    return [[r["metadata"]["uid"], r["metadata"]["name"], r["metadata"].get("job") or "-",
             r["status"]["state"], (r["status"].get("start") or "")[:19],
             _results_brief(r["status"].get("results") or {})] for r in records]


def compare_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Params and results side by side; '*' marks a row whose values differ."""
    headers = ["", *[r["metadata"]["uid"] for r in records]]
    rows: list[list[object]] = []
    for section, pick in (("param", _params), ("result", _results)):
        keys = sorted({k for r in records for k in pick(r)})
        for key in keys:
            values = [pick(r).get(key, "-") for r in records]
            differ = len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
            rows.append([f"{'*' if differ else ' '} {section} {key}", *values])
    return table(headers, rows)


def _params(record: Mapping[str, Any]) -> Mapping[str, Any]:
    resolved: Mapping[str, Any] = record["spec"]["params"].get("resolved", {})
    return resolved


def _results(record: Mapping[str, Any]) -> Mapping[str, Any]:
    results: Mapping[str, Any] = record["status"].get("results") or {}
    return results


def _results_brief(results: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_value(v)}" for k, v in list(results.items())[:4])


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def trial_lines(record: Mapping[str, Any]) -> list[str]:
    """A parent run's trials, best first by its selector, the best marked with '*'."""
    trials = record["status"].get("trials") or []
    if not trials:
        return []
    selector = Selector.parse((record["spec"].get("hyper") or {}).get("selector"))
    param_keys = sorted({k for t in trials for k in t.get("params", {})})
    result_keys = sorted({k for t in trials for k in t.get("results", {})})

    def order(trial: Mapping[str, Any]) -> tuple[int, float, int]:
        rank = selector.sort_key(trial.get("results", {})) if selector else (1, 0.0)
        return (*rank, trial["iteration"])

    chosen = record["status"].get("best_iteration")
    rows = [["*" if t["iteration"] == chosen else "", t["iteration"], t["state"],
             *[t.get("params", {}).get(k, "") for k in param_keys],
             *[t.get("results", {}).get(k, "") for k in result_keys]]
            for t in sorted(trials, key=order)]
    result_headers = [f"{k} (result)" if k in param_keys else k for k in result_keys]
    return table(["", "#", "STATE", *param_keys, *result_headers], rows)


def step_lines(record: Mapping[str, Any]) -> list[str]:
    steps = record["status"].get("steps") or []
    return table(["STEP", "UID", "STATE", "REASON"],
                 [[s["name"], s["uid"], s["state"], s.get("reason") or ""] for s in steps]) \
        if steps else []
